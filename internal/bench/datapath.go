package bench

import (
	"context"
	"fmt"
	"io"
	"math"
	"net"
	"path/filepath"
	"runtime"
	"strings"
	"time"

	"github.com/hostnet/hostnet/api"
	"github.com/hostnet/hostnet/internal/testutil/lab"
)

// DatapathConfig sets up the per-packet benchmarks run on their own
// (hostnet-bench datapath).
type DatapathConfig struct {
	Duration  time.Duration // per measurement
	Rounds    int
	Mappings  int // the "many mappings" case
	Out       io.Writer
	DaemonCmd []string
}

// RunDatapath runs the datapath benchmark with the sizes of cfg and prints
// its rows as the suite's table.
func RunDatapath(cfg DatapathConfig) error {
	if cfg.Out == nil {
		cfg.Out = io.Discard
	}
	p := dpParams{Secs: max(1, int(math.Round(cfg.Duration.Seconds()))), RR: cfg.Duration,
		Rounds: max(1, cfg.Rounds), Mappings: max(1, cfg.Mappings)}
	rep := &Report{Started: time.Now(), Machine: machine(), Kernel: kernel(), GoVer: runtime.Version()}
	rows, err := runDatapath(p, cfg.DaemonCmd, cfg.Out)
	if err != nil {
		return err
	}
	rep.Rows, rep.Took = rows, time.Since(rep.Started)
	rep.Markdown(cfg.Out)
	return nil
}

// BenchDatapath measures packets on hostnet's data paths beside the same
// paths built by hand and beside docker-proxy, all in one run:
//
//   - endpoint to endpoint on one NAT network, against a hand-built bridge
//     with no rules at all;
//   - endpoint to an external host through the outbound NAT, against a
//     hand-built host with one nftables masquerade rule;
//   - external host to a published port, against docker-proxy in front of
//     the same endpoint, and against the external host reaching a
//     hand-built endpoint straight (routed, no DNAT);
//   - a published port's request/response rate with many mappings on the
//     host, against the same with the benchmark's own only.
//
// Throughput is iperf3's (one TCP stream), request/response a 64-byte
// ping-pong on one TCP connection. Rounds alternate the cases (and their
// order), so that the machine's noise falls on all of them; the rows give
// medians with their spread, and hostnet's median against each baseline's.
func BenchDatapath(cfg SuiteConfig) ([]Row, error) {
	out := cfg.Out
	if out == nil {
		out = io.Discard
	}
	p := dpParams{Secs: 3, RR: 3 * time.Second, Rounds: 5, Mappings: 10000}
	if cfg.Quick {
		p = dpParams{Secs: 1, RR: time.Second, Rounds: 2, Mappings: 1000, Quick: true}
	}
	return runDatapath(p, cfg.DaemonCmd, out)
}

// dpParams are the datapath benchmark's sizes.
type dpParams struct {
	Secs     int           // each throughput measurement (iperf3 counts whole seconds)
	RR       time.Duration // each request/response measurement
	Rounds   int
	Mappings int // mappings on the host in the many-mappings case
	Quick    bool
}

// Ports of the benchmark's servers and of the ways to them.
const (
	rrPort         = 80   // Go echo server, in every server namespace
	sinkPort       = 81   // Go sink, for throughput when iperf3 is missing
	iperfPort      = 5201 // iperf3 server
	pubRRPort      = 8080 // hostnet mapping to rrPort
	pubTputPort    = 8081 // hostnet mapping to the throughput port
	proxyRRPort    = 9080 // docker-proxy to rrPort
	proxyTputPort  = 9081 // docker-proxy to the throughput port
	fillerBasePort = 20000
)

// goSender names the throughput tool used when iperf3 cannot be had.
const goSender = "Go sender, iperf3 unavailable"

// dpCase is one way of carrying a flow, measured once per round.
type dpCase struct {
	name string // in the table
	key  string // in the raw numbers
	run  func() (float64, error)
}

// dpCompare is one row: hostnet's case first, then its baselines.
type dpCompare struct {
	bench, short string
	tput         bool
	cases        []dpCase
	samples      [][]float64
}

func (c *dpCompare) add(i int, v float64) { c.samples[i] = append(c.samples[i], v) }

func (c *dpCompare) median(i int) float64 { return Summarize(c.samples[i]).Median }

// fmtSample formats one measurement for the progress lines.
func (c *dpCompare) fmtSample(v float64) string {
	if c.tput {
		return num(v/1e9) + " Gbit/s"
	}
	return num(v) + " /s"
}

// summary formats case i's samples as the table shows them.
func (c *dpCompare) summary(i int) string {
	if c.tput {
		g := make([]float64, len(c.samples[i]))
		for k, v := range c.samples[i] {
			g[k] = v / 1e9
		}
		return Summarize(g).Fmt("Gbit/s")
	}
	return Summarize(c.samples[i]).Fmt("round trips/s")
}

// roundRatios is hostnet's sample over baseline i's, round by round.
func (c *dpCompare) roundRatios(i int) []float64 {
	var r []float64
	for k := range min(len(c.samples[0]), len(c.samples[i])) {
		if c.samples[i][k] > 0 {
			r = append(r, c.samples[0][k]/c.samples[i][k])
		}
	}
	return r
}

// raw is the row's raw numbers: every sample of every case, and hostnet's
// sample over each baseline's, round by round.
func (c *dpCompare) raw(p dpParams, tool string) map[string]any {
	unit, secs := "round trips/s", p.RR.Seconds()
	if c.tput {
		unit, secs = "bit/s", float64(p.Secs)
	}
	samples := map[string][]float64{}
	perRound := map[string][]float64{}
	for i, cs := range c.cases {
		samples[cs.key] = c.samples[i]
		if i > 0 {
			perRound[c.cases[0].key+"/"+cs.key] = c.roundRatios(i)
		}
	}
	m := map[string]any{"unit": unit, "secondsEach": secs, "rounds": p.Rounds, "samples": samples, "ratioPerRound": perRound}
	if c.tput {
		m["tool"] = tool
	}
	return m
}

// row builds the table's row. goals[i] is the least ratio of hostnet's
// median to baseline i+1's that meets the goal: met when all are, missed
// when none is, partly met in between.
func (c *dpCompare) row(p dpParams, tool string, goals []float64, goalText string) Row {
	r := Row{Benchmark: c.bench, Hostnet: c.summary(0), Goal: goalText, Raw: c.raw(p, tool)}
	if c.tput && tool == goSender {
		r.Benchmark += " (" + goSender + ")"
	}
	var base, ratios []string
	met := 0
	for i := 1; i < len(c.cases); i++ {
		base = append(base, c.cases[i].name+": "+c.summary(i))
		q := Ratio(c.median(0), c.median(i))
		if len(c.cases) > 2 {
			q += " " + c.cases[i].key
		}
		// The median of the rounds' own ratios, beside: each pairs
		// measurements taken moments apart, so it shows whether a gap
		// between the medians is the machine's noise or holds round by round.
		if pr := c.roundRatios(i); len(pr) > 1 {
			q += fmt.Sprintf(" (per round: %s)", Ratio(Summarize(pr).Median, 1))
		}
		ratios = append(ratios, q)
		if c.median(i) > 0 && c.median(0)/c.median(i) >= goals[i-1] {
			met++
		}
	}
	r.Baseline, r.Ratio = strings.Join(base, "; "), strings.Join(ratios, "; ")
	switch {
	case met == len(goals):
		r.Verdict = Met
	case met == 0:
		r.Verdict = Missed
	default:
		r.Verdict = Partial
	}
	return r
}

// runDatapath builds the topologies, measures and returns the rows; it
// removes every namespace, process and mount it made, also on error.
func runDatapath(p dpParams, daemonCmd []string, out io.Writer) (rows []Row, err error) {
	t0 := time.Now()
	iperf3, ierr := ensureIperf3(out)
	tool, tport := iperf3Version(iperf3), iperfPort
	if ierr != nil {
		// Measured all the same, with the Go sender: the rows say so.
		fmt.Fprintf(out, "  iperf3 unavailable, throughput measured with the Go sender instead: %v\n", ierr)
		iperf3, tool, tport = "", goSender, sinkPort
	}
	proxy, proxySource, err := ensureDockerProxy(out)
	if err != nil {
		return nil, err
	}

	dir, err := newBenchDir("hnt-bench-datapath-")
	if err != nil {
		return nil, err
	}
	defer removeBenchDir(dir)
	d, err := startDaemon(filepath.Join(dir, "hostnet"), daemonCmd, true)
	if err != nil {
		return nil, err
	}
	defer d.close()
	var procs peerProcs
	defer procs.stop()
	var stops []func()
	defer func() {
		for _, s := range stops {
			s()
		}
	}()

	// hostnet's side: a NAT network with two endpoints; a publishes its
	// echo and throughput ports.
	ctx := context.Background()
	if _, err := d.c.CreateNetwork(ctx, &api.Network{Name: "bench", Type: api.NAT,
		Ipams: []api.Ipam{{Subnets: []api.Subnet{{IpAddressPrefix: "10.200.0.0/16"}}}}}); err != nil {
		return nil, fmt.Errorf("create network: %w", err)
	}
	endpoint := func(name string, ps ...api.Policy) (nsPath, ip string, err error) {
		ns, err := d.c.CreateNamespace(ctx, &api.Namespace{})
		if err != nil {
			return "", "", fmt.Errorf("create namespace: %w", err)
		}
		ep, err := d.c.CreateEndpoint(ctx, &api.Endpoint{Name: name, HostComputeNetwork: "bench", HostComputeNamespace: ns.ID, Policies: ps})
		if err != nil {
			return "", "", fmt.Errorf("create endpoint %s: %w", name, err)
		}
		if len(ep.IpConfigurations) == 0 {
			return "", "", fmt.Errorf("endpoint %s has no address", name)
		}
		return ns.NetNamespacePath, ep.IpConfigurations[0].IpAddress, nil
	}
	nsA, ipA, err := endpoint("a", portMapping(pubRRPort, rrPort), portMapping(pubTputPort, uint16(tport)))
	if err != nil {
		return nil, err
	}
	nsB, _, err := endpoint("b")
	if err != nil {
		return nil, err
	}

	// The baselines' hosts, built by hand: a bridge with no rules at all,
	// and one behind an uplink like the daemon's with a masquerade rule.
	plain, err := buildHandHost(filepath.Join(dir, "plain"), 2, false, false)
	if err != nil {
		return nil, fmt.Errorf("hand-built bridge: %w", err)
	}
	masq, err := buildHandHost(filepath.Join(dir, "masq"), 1, true, true)
	if err != nil {
		return nil, fmt.Errorf("hand-built masquerade host: %w", err)
	}

	for _, ns := range []string{nsA, d.ExtNS, plain.eps[0], masq.ext, masq.eps[0]} {
		stop, err := serveBench(ns)
		if err != nil {
			return nil, fmt.Errorf("servers in %s: %w", ns, err)
		}
		stops = append(stops, stop)
		if iperf3 != "" {
			if err := procs.startIperf3Server(iperf3, ns, iperfPort); err != nil {
				return nil, err
			}
		}
	}
	// docker-proxy as dockerd runs it for -p: in the host namespace, on
	// the host's address, to the container's address.
	if err := procs.startDockerProxy(proxy, d.HostNS, benchHostAddr, proxyRRPort, ipA, rrPort); err != nil {
		return nil, err
	}
	if err := procs.startDockerProxy(proxy, d.HostNS, benchHostAddr, proxyTputPort, ipA, tport); err != nil {
		return nil, err
	}

	// Request/response cases read rrDur when they run: the warm-up pass
	// below runs them briefly before the measured rounds.
	rrDur := 200 * time.Millisecond
	tput, rr := probes(iperf3, p.Secs, &rrDur)
	const (
		handBridge = "hand-built bridge, no rules"
		handMasq   = "hand-built host, bridge + one nftables masquerade rule"
		dockerPx   = "docker-proxy (Debian docker.io 20.10) on the same host to the same endpoint"
		straight   = "straight to the endpoint, no DNAT (the hand-built NAT host; the external host routes to the endpoint)"
	)
	compares := []*dpCompare{
		{bench: "TCP throughput, endpoint to endpoint on one network", short: "endpoint to endpoint, throughput", tput: true, cases: []dpCase{
			{"hostnet", "hostnet", tput(nsB, ipA, tport)},
			{handBridge, "handBuilt", tput(plain.eps[1], plain.ips[0], tport)},
		}},
		{bench: "TCP request/response, endpoint to endpoint on one network", short: "endpoint to endpoint, request/response", cases: []dpCase{
			{"hostnet", "hostnet", rr(nsB, ipA, rrPort)},
			{handBridge, "handBuilt", rr(plain.eps[1], plain.ips[0], rrPort)},
		}},
		{bench: "TCP throughput, endpoint to an external host through outbound NAT", short: "outbound NAT, throughput", tput: true, cases: []dpCase{
			{"hostnet", "hostnet", tput(nsA, benchExtAddr, tport)},
			{handMasq, "handMasquerade", tput(masq.eps[0], benchExtAddr, tport)},
		}},
		{bench: "TCP request/response, endpoint to an external host through outbound NAT", short: "outbound NAT, request/response", cases: []dpCase{
			{"hostnet", "hostnet", rr(nsA, benchExtAddr, rrPort)},
			{handMasq, "handMasquerade", rr(masq.eps[0], benchExtAddr, rrPort)},
		}},
		{bench: "TCP throughput, external host to a published port", short: "published port, throughput", tput: true, cases: []dpCase{
			{"hostnet", "hostnet", tput(d.ExtNS, benchHostAddr, pubTputPort)},
			{dockerPx, "docker-proxy", tput(d.ExtNS, benchHostAddr, proxyTputPort)},
			{straight, "straight", tput(masq.ext, masq.ips[0], tport)},
		}},
		{bench: "TCP request/response, external host to a published port", short: "published port, request/response", cases: []dpCase{
			{"hostnet", "hostnet", rr(d.ExtNS, benchHostAddr, pubRRPort)},
			{dockerPx, "docker-proxy", rr(d.ExtNS, benchHostAddr, proxyRRPort)},
			{straight, "straight", rr(masq.ext, masq.ips[0], rrPort)},
		}},
	}
	many := &dpCompare{short: "published port with many mappings, request/response", cases: []dpCase{
		{fmt.Sprintf("%s mappings", group(fmt.Sprint(p.Mappings))), "many", rr(d.ExtNS, benchHostAddr, pubRRPort)},
		{"1 mapping (the benchmark's own two only)", "one", rr(d.ExtNS, benchHostAddr, pubRRPort)},
	}}
	many.bench = "published-port request/response rate with 1 vs 10,000 mappings on the host"
	if p.Mappings != 10000 {
		many.bench = fmt.Sprintf("published-port request/response rate with 1 vs %s mappings on the host (not the goal's 10,000: %s)",
			group(fmt.Sprint(p.Mappings)), map[bool]string{true: "quick run", false: "set by -mappings"}[p.Quick])
	}
	for _, c := range append(compares, many) {
		c.samples = make([][]float64, len(c.cases))
	}

	// Every request/response path once, briefly and unrecorded: it checks
	// that each carries traffic before minutes are spent, and warms
	// neighbour and route caches alike for all.
	for _, c := range append(compares, many) {
		if c.tput {
			continue
		}
		for _, cs := range c.cases {
			if _, err := cs.run(); err != nil {
				return nil, fmt.Errorf("%s, %s: %w", c.short, cs.key, err)
			}
		}
	}
	rrDur = p.RR
	fmt.Fprintf(out, "  set up in %s; %d rounds, throughput %d s (%s), request/response %s each\n",
		time.Since(t0).Round(100*time.Millisecond), p.Rounds, p.Secs, tool, p.RR)

	// Fillers: other endpoints carrying the many mappings (as many as a
	// document may hold, api.MaxPolicies, each), on the same network and
	// host. Their namespaces are made once and
	// kept: only the endpoints, and with them the mappings, come and go.
	var fillerNS, fillerEPs []string
	addFillers := func() error {
		const per = api.MaxPolicies
		for k := 0; k*per < p.Mappings; k++ {
			var ps []api.Policy
			for i := k * per; i < min((k+1)*per, p.Mappings); i++ {
				ps = append(ps, portMapping(uint16(fillerBasePort+i), rrPort))
			}
			if k == len(fillerNS) {
				ns, err := d.c.CreateNamespace(ctx, &api.Namespace{})
				if err != nil {
					return fmt.Errorf("filler namespace: %w", err)
				}
				fillerNS = append(fillerNS, ns.ID)
			}
			ep, err := d.c.CreateEndpoint(ctx, &api.Endpoint{HostComputeNetwork: "bench", HostComputeNamespace: fillerNS[k], Policies: ps})
			if err != nil {
				return fmt.Errorf("filler endpoint: %w", err)
			}
			fillerEPs = append(fillerEPs, ep.ID)
		}
		return nil
	}
	removeFillers := func() error {
		for _, id := range fillerEPs {
			if err := d.c.DeleteEndpoint(ctx, id); err != nil {
				return fmt.Errorf("remove filler endpoint: %w", err)
			}
		}
		fillerEPs = nil
		return nil
	}
	// settle follows each change of the fillers, before the next
	// measurement, whichever way the change went: veths are deleted in
	// the background after the API answers, and the kernel's work on them
	// must not fall on either case.
	settle := func() { time.Sleep(time.Second) }
	measure := func(c *dpCompare, i int, r int) (string, error) {
		v, err := c.cases[i].run()
		if err != nil {
			return "", fmt.Errorf("round %d, %s, %s: %w", r+1, c.short, c.cases[i].key, err)
		}
		c.add(i, v)
		return c.cases[i].key + " " + c.fmtSample(v), nil
	}
	runCompare := func(c *dpCompare, r int) error {
		// Odd rounds take the cases in the opposite order, so that
		// neither side always follows the same one.
		order := make([]int, len(c.cases))
		for i := range order {
			order[i] = i
			if r%2 == 1 {
				order[i] = len(c.cases) - 1 - i
			}
		}
		var parts []string
		for _, i := range order {
			s, err := measure(c, i, r)
			if err != nil {
				return err
			}
			parts = append(parts, s)
		}
		fmt.Fprintf(out, "  round %d/%d, %s: %s\n", r+1, p.Rounds, c.short, strings.Join(parts, ", "))
		return nil
	}
	// The many-mappings pair comes last in even rounds (one, fillers
	// added, many) and first in odd ones (many, fillers removed, one):
	// the fillers are added and removed once per two rounds, and are never
	// there while the other rows are measured.
	manyPair := func(r int) error {
		steps := []func() (string, error){
			func() (string, error) { return measure(many, 1, r) },
			func() (string, error) {
				t := time.Now()
				if err := addFillers(); err != nil {
					return "", err
				}
				defer settle()
				return fmt.Sprintf("(%s mappings added in %s)", group(fmt.Sprint(p.Mappings)), time.Since(t).Round(time.Millisecond)), nil
			},
			func() (string, error) { return measure(many, 0, r) },
		}
		if r%2 == 1 {
			steps = []func() (string, error){
				steps[2],
				func() (string, error) {
					t := time.Now()
					if err := removeFillers(); err != nil {
						return "", err
					}
					defer settle()
					return fmt.Sprintf("(removed in %s)", time.Since(t).Round(time.Millisecond)), nil
				},
				steps[0],
			}
		}
		var parts []string
		for _, st := range steps {
			s, err := st()
			if err != nil {
				return err
			}
			parts = append(parts, s)
		}
		fmt.Fprintf(out, "  round %d/%d, %s: %s\n", r+1, p.Rounds, many.short, strings.Join(parts, ", "))
		return nil
	}
	for r := 0; r < p.Rounds; r++ {
		if r%2 == 1 {
			if err := manyPair(r); err != nil {
				return nil, err
			}
		}
		for _, c := range compares {
			if err := runCompare(c, r); err != nil {
				return nil, err
			}
		}
		if r%2 == 0 {
			if err := manyPair(r); err != nil {
				return nil, err
			}
		}
	}

	for _, c := range compares[:4] {
		rows = append(rows, c.row(p, tool, []float64{0.95}, ">= 0.95x the hand-built path"))
	}
	for _, c := range compares[4:] {
		rows = append(rows, c.row(p, tool, []float64{2, 0.95}, ">= 2x docker-proxy; >= 0.95x straight"))
	}
	for _, r := range rows[4:] {
		r.Raw["dockerProxy"] = proxySource
	}
	rows = append(rows, many.row(p, tool, []float64{0.95}, ">= 0.95x the rate with 1 mapping"))
	rows[len(rows)-1].Raw["mappings"] = p.Mappings
	return rows, nil
}

// serveBench runs, inside the namespace at path, an echo server for
// request/response on :80 and a sink on :81.
func serveBench(path string) (func(), error) {
	var rr, sink net.Listener
	if err := lab.In(path, func() error {
		var err error
		if rr, err = net.Listen("tcp", ":80"); err != nil {
			return err
		}
		sink, err = net.Listen("tcp", ":81")
		return err
	}); err != nil {
		return nil, err
	}
	serve := func(l net.Listener, handle func(net.Conn)) {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			go func() { defer c.Close(); handle(c) }()
		}
	}
	go serve(rr, func(c net.Conn) {
		buf := make([]byte, 64)
		for {
			if _, err := io.ReadFull(c, buf); err != nil {
				return
			}
			if _, err := c.Write(buf); err != nil {
				return
			}
		}
	})
	go serve(sink, func(c net.Conn) { _, _ = io.Copy(io.Discard, c) })
	return func() { rr.Close(); sink.Close() }, nil
}

// requestResponse opens a TCP connection from the namespace at from to addr
// and counts 64-byte request/response exchanges per second.
func requestResponse(from, addr string, d time.Duration) (float64, error) {
	c, err := dialIn(from, addr)
	if err != nil {
		return 0, err
	}
	defer c.Close()
	buf := make([]byte, 64)
	n := 0
	start := time.Now()
	for time.Since(start) < d {
		if _, err := c.Write(buf); err != nil {
			return 0, err
		}
		if _, err := io.ReadFull(c, buf); err != nil {
			return 0, err
		}
		n++
	}
	return float64(n) / time.Since(start).Seconds(), nil
}

// throughput sends as fast as it can over TCP from the namespace at from
// to addr for d and returns bytes per second.
func throughput(from, addr string, d time.Duration) (float64, error) {
	c, err := dialIn(from, addr)
	if err != nil {
		return 0, err
	}
	defer c.Close()
	buf := make([]byte, 128<<10)
	var total int64
	start := time.Now()
	for time.Since(start) < d {
		n, err := c.Write(buf)
		total += int64(n)
		if err != nil {
			return 0, err
		}
	}
	return float64(total) / time.Since(start).Seconds(), nil
}

func dialIn(from, addr string) (net.Conn, error) {
	var c net.Conn
	err := lab.In(from, func() error {
		var err error
		c, err = net.DialTimeout("tcp", addr, 3*time.Second)
		return err
	})
	return c, err
}

// probes returns the cases' measures from a namespace to host:port: TCP
// throughput in bit/s for secs (iperf3 when installed, else the Go
// sender), and request/response rate for *rrDur, read when a case runs.
func probes(iperf3 string, secs int, rrDur *time.Duration) (tput, rr func(from, host string, port int) func() (float64, error)) {
	tput = func(from, host string, port int) func() (float64, error) {
		if iperf3 != "" {
			return func() (float64, error) { return iperf3Client(iperf3, from, host, port, secs) }
		}
		return func() (float64, error) {
			v, err := throughput(from, net.JoinHostPort(host, fmt.Sprint(port)), time.Duration(secs)*time.Second)
			return v * 8, err
		}
	}
	rr = func(from, host string, port int) func() (float64, error) {
		return func() (float64, error) {
			return requestResponse(from, net.JoinHostPort(host, fmt.Sprint(port)), *rrDur)
		}
	}
	return tput, rr
}
