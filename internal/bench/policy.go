package bench

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"sort"
	"time"

	"github.com/hostnet/hostnet/api"
	"github.com/hostnet/hostnet/internal/dataplane/netns"
	"github.com/hostnet/hostnet/internal/testutil"
	"golang.org/x/sys/unix"
)

// ProgramConfig sets up the policy programming benchmark.
type ProgramConfig struct {
	N         int // endpoints
	Mappings  int // published ports per endpoint
	ACLs      int // ACL rules per endpoint
	Changes   int // incremental changes measured
	Out       io.Writer
	DaemonCmd []string
}

func portMapping(external, internal uint16) api.Policy {
	b, _ := json.Marshal(api.PortMappingSettings{Protocol: 6, ExternalPort: external, InternalPort: internal})
	return api.Policy{Type: api.PortMapping, Settings: b}
}

func aclPolicy(action, dir, remote, lports string, priority uint16) api.Policy {
	b, _ := json.Marshal(api.ACLSettings{Action: api.FlexString(action), Direction: api.FlexString(dir), Protocols: "6",
		RemoteAddresses: remote, LocalPorts: api.FlexString(lports), Priority: priority, RuleType: "Switch"})
	return api.Policy{Type: api.ACL, Settings: b}
}

// programRun is what one programming run measured.
type programRun struct {
	create  time.Duration // all endpoints, created and attached
	each    Series        // each endpoint's creation
	changes Series        // single changes
	full    Series        // daemon restarts re-applying everything
}

// RunProgram measures programming policies through the API: N endpoints,
// each created and attached with its published ports and ACL rules in one
// call, then single changes at that scale (one ACL rule added to or removed
// from one endpoint). It runs three times: with every endpoint's rules
// distinct (they name its own peer, so no two endpoints share an ACL
// chain: the worst case), with the same rules on every endpoint (they share
// one chain, as pods under one network policy do), and distinct again at a
// tenth of the scale, to show what grows. The baseline of a change is
// re-applying everything, as a full sync or a restart does.
func RunProgram(cfg ProgramConfig) error {
	distinct, err := programOnce(cfg, cfg.N, true, true)
	if err != nil {
		return err
	}
	shared, err := programOnce(cfg, cfg.N, false, false)
	if err != nil {
		return err
	}
	small, err := programOnce(cfg, max(1, cfg.N/10), true, false)
	if err != nil {
		return err
	}
	fmt.Fprintf(cfg.Out, "\nprogramming: %d endpoints x (%d published ports + %d ACL rules), through the API\n\n", cfg.N, cfg.Mappings, cfg.ACLs)
	fmt.Fprintf(cfg.Out, "| measure | value | baseline | ratio |\n|---|---|---|---|\n")
	fmt.Fprintf(cfg.Out, "| all %d endpoints created and attached with their policies (distinct ACLs) | %s total, %s median each | | |\n",
		cfg.N, distinct.create.Round(time.Millisecond), ms(distinct.each.Median()))
	fmt.Fprintf(cfg.Out, "| one change, %d endpoints, distinct ACLs (median of %d) | %s (p99 %s) | re-applying everything: %s | %s |\n",
		cfg.N, len(distinct.changes), ms(distinct.changes.Median()), ms(distinct.changes.Quantile(0.99)), ms(distinct.full.Median()), ratio(distinct.changes.Median(), distinct.full.Median()))
	fmt.Fprintf(cfg.Out, "| one change, %d endpoints, shared ACLs (median of %d) | %s (p99 %s) | one change with distinct ACLs: %s | %s |\n",
		cfg.N, len(shared.changes), ms(shared.changes.Median()), ms(shared.changes.Quantile(0.99)), ms(distinct.changes.Median()), ratio(shared.changes.Median(), distinct.changes.Median()))
	fmt.Fprintf(cfg.Out, "| one change, %d endpoints, distinct ACLs: growth from %d endpoints | %s | at %d endpoints: %s | %s |\n",
		cfg.N, max(1, cfg.N/10), ms(distinct.changes.Median()), max(1, cfg.N/10), ms(small.changes.Median()), ratio(distinct.changes.Median(), small.changes.Median()))
	fmt.Fprintf(cfg.Out, "\none change at %d endpoints: %s with distinct ACLs, %s with shared ones (goal: under 10 ms; kube-proxy's nftables mode: about 141 ms for one service at 10,000)\n",
		cfg.N, ms(distinct.changes.Median()), ms(shared.changes.Median()))
	return nil
}

// programOnce runs the programming benchmark on a daemon of its own with n
// endpoints; distinct gives every endpoint its own ACL rules; withRestart
// measures the full re-application.
func programOnce(cfg ProgramConfig, n int, distinct, withRestart bool) (*programRun, error) {
	dir, err := os.MkdirTemp("", "hnt-bench-")
	if err != nil {
		return nil, err
	}
	defer func() {
		testutil.UnmountUnder(dir, func(p string) error { return unix.Unmount(p, unix.MNT_DETACH) })
		os.RemoveAll(dir)
	}()
	d, err := startDaemon(filepath.Join(dir, "program"), cfg.DaemonCmd, false)
	if err != nil {
		return nil, err
	}
	defer func() { d.close() }()
	ctx := context.Background()
	if _, err := d.c.CreateNetwork(ctx, &api.Network{Name: "bench", Type: api.NAT,
		Ipams: []api.Ipam{{Subnets: []api.Subnet{{IpAddressPrefix: "10.200.0.0/16"}}}}}); err != nil {
		return nil, err
	}
	kind := "shared"
	if distinct {
		kind = "distinct"
	}
	fmt.Fprintf(cfg.Out, "%d endpoints, %s ACLs: preparing namespaces...\n", n, kind)
	var nss []string
	for i := 0; i < n; i++ {
		ns, err := d.c.CreateNamespace(ctx, &api.Namespace{})
		if err != nil {
			return nil, err
		}
		nss = append(nss, ns.ID)
	}
	policies := func(i int) []api.Policy {
		var ps []api.Policy
		for k := 0; k < cfg.Mappings; k++ {
			ps = append(ps, portMapping(uint16(10000+cfg.Mappings*i+k), uint16(80+k)))
		}
		peer := "10.201.0.0/16"
		if distinct {
			peer = fmt.Sprintf("10.201.%d.%d", i>>8, i&255)
		}
		for k := 0; k < cfg.ACLs; k++ {
			ps = append(ps, aclPolicy("Allow", "In", peer, fmt.Sprint(1000+k), uint16(100+k)))
		}
		return ps
	}
	r := &programRun{}
	start := time.Now()
	var ids []string
	for i := 0; i < n; i++ {
		t0 := time.Now()
		ep, err := d.c.CreateEndpoint(ctx, &api.Endpoint{HostComputeNetwork: "bench", HostComputeNamespace: nss[i], Policies: policies(i)})
		if err != nil {
			return nil, fmt.Errorf("endpoint %d: %w", i, err)
		}
		r.each = append(r.each, time.Since(t0))
		ids = append(ids, ep.ID)
	}
	r.create = time.Since(start)

	extra := aclPolicy("Block", "In", "192.0.2.1", "", 1)
	settings, _ := json.Marshal(api.PolicyRequest{Policies: []api.Policy{extra}})
	for k := 0; k < cfg.Changes; k++ {
		rt := api.RequestAdd
		if k%2 == 1 {
			rt = api.RequestRemove
		}
		t0 := time.Now()
		if _, err := d.c.ModifyEndpoint(ctx, ids[(k/2*37)%len(ids)], &api.ModifyRequest{ResourceType: api.ResourcePolicy, RequestType: rt, Settings: settings}); err != nil {
			return nil, fmt.Errorf("change %d: %w", k, err)
		}
		r.changes = append(r.changes, time.Since(t0))
	}
	if !withRestart {
		return r, nil
	}
	// The baseline of a change: what re-applying the whole tables takes
	// at this scale (a restart's reconciliation does exactly that).
	for k := 0; k < 3; k++ {
		t0 := time.Now()
		d.close()
		if d, err = restartDaemon(d); err != nil {
			return nil, err
		}
		r.full = append(r.full, time.Since(t0))
	}
	return r, nil
}

// restartDaemon starts the daemon of d again on the same state.
func restartDaemon(d *benchDaemon) (*benchDaemon, error) {
	args := d.cmd.Args
	nd := &benchDaemon{dir: d.dir, host: d.host, ext: d.ext, c: d.c}
	nd.cmd = cloneCmd(args, d.cmd.Stdout)
	if err := nd.cmd.Start(); err != nil {
		return nil, err
	}
	deadline := time.Now().Add(60 * time.Second)
	for {
		if _, err := nd.c.Version(context.Background()); err == nil {
			return nd, nil
		}
		if time.Now().After(deadline) {
			return nil, fmt.Errorf("hostnetd did not restart")
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// DatapathConfig sets up the per-packet benchmarks.
type DatapathConfig struct {
	Duration  time.Duration // per measurement
	Rounds    int
	Mappings  int // the "many mappings" case
	Out       io.Writer
	DaemonCmd []string
}

// RunDatapath measures packets through a published port: the TCP
// request/response rate from the outside with 1 mapping on the host and
// with many, and the throughput from the host through the published port
// and straight to the endpoint's address. Rounds alternate the cases.
func RunDatapath(cfg DatapathConfig) error {
	dir, err := os.MkdirTemp("", "hnt-bench-")
	if err != nil {
		return err
	}
	defer func() {
		testutil.UnmountUnder(dir, func(p string) error { return unix.Unmount(p, unix.MNT_DETACH) })
		os.RemoveAll(dir)
	}()
	d, err := startDaemon(filepath.Join(dir, "datapath"), cfg.DaemonCmd, true)
	if err != nil {
		return err
	}
	defer d.close()
	ctx := context.Background()
	if _, err := d.c.CreateNetwork(ctx, &api.Network{Name: "bench", Type: api.NAT,
		Ipams: []api.Ipam{{Subnets: []api.Subnet{{IpAddressPrefix: "10.200.0.0/16"}}}}}); err != nil {
		return err
	}
	ns, err := d.c.CreateNamespace(ctx, &api.Namespace{})
	if err != nil {
		return err
	}
	ep, err := d.c.CreateEndpoint(ctx, &api.Endpoint{Name: "server", HostComputeNetwork: "bench", HostComputeNamespace: ns.ID,
		Policies: []api.Policy{portMapping(8080, 80), portMapping(8081, 81)}})
	if err != nil {
		return err
	}
	serverIP := ep.IpConfigurations[0].IpAddress
	stop, err := serveBench(ns.NetNamespacePath)
	if err != nil {
		return err
	}
	defer stop()

	// Fillers: many mappings on other endpoints, added and removed.
	var fillers []string
	addFillers := func() error {
		per := 1000
		for k := 0; k*per < cfg.Mappings; k++ {
			var ps []api.Policy
			for i := k * per; i < min((k+1)*per, cfg.Mappings); i++ {
				ps = append(ps, portMapping(uint16(20000+i), 80))
			}
			fns, err := d.c.CreateNamespace(ctx, &api.Namespace{})
			if err != nil {
				return err
			}
			f, err := d.c.CreateEndpoint(ctx, &api.Endpoint{HostComputeNetwork: "bench", HostComputeNamespace: fns.ID, Policies: ps})
			if err != nil {
				return fmt.Errorf("filler endpoint: %w", err)
			}
			fillers = append(fillers, f.ID, fns.ID)
		}
		return nil
	}
	removeFillers := func() error {
		for i := 0; i+1 < len(fillers); i += 2 {
			if err := d.c.DeleteEndpoint(ctx, fillers[i]); err != nil {
				return err
			}
			if err := d.c.DeleteNamespace(ctx, fillers[i+1]); err != nil {
				return err
			}
		}
		fillers = nil
		return nil
	}

	var rrOne, rrMany []float64
	var viaPort, direct []float64
	for r := 0; r < cfg.Rounds; r++ {
		v, err := requestResponse(d.ext, benchHostAddr+":8080", cfg.Duration)
		if err != nil {
			return fmt.Errorf("rr, 1 mapping: %w", err)
		}
		rrOne = append(rrOne, v)
		if err := addFillers(); err != nil {
			return err
		}
		if v, err = requestResponse(d.ext, benchHostAddr+":8080", cfg.Duration); err != nil {
			return fmt.Errorf("rr, %d mappings: %w", cfg.Mappings, err)
		}
		rrMany = append(rrMany, v)
		if err := removeFillers(); err != nil {
			return err
		}
		if v, err = throughput(d.host, benchHostAddr+":8081", cfg.Duration); err != nil {
			return fmt.Errorf("throughput via the published port: %w", err)
		}
		viaPort = append(viaPort, v)
		if v, err = throughput(d.host, serverIP+":81", cfg.Duration); err != nil {
			return fmt.Errorf("throughput straight to the endpoint: %w", err)
		}
		direct = append(direct, v)
	}
	fmt.Fprintf(cfg.Out, "\ndata path through a published port (%d rounds of %s each, medians)\n\n", cfg.Rounds, cfg.Duration)
	fmt.Fprintf(cfg.Out, "| measure | hostnet | baseline | ratio | goal |\n|---|---|---|---|---|\n")
	fmt.Fprintf(cfg.Out, "| TCP request/response from the outside, %d mappings on the host vs 1 | %.0f /s | %.0f /s | %.2f | >= 0.95 |\n",
		cfg.Mappings, median(rrMany), median(rrOne), median(rrMany)/median(rrOne))
	fmt.Fprintf(cfg.Out, "| TCP throughput from the host, published port vs straight to the endpoint | %.0f MB/s | %.0f MB/s | %.2f | >= 0.95 |\n",
		median(viaPort)/1e6, median(direct)/1e6, median(viaPort)/median(direct))
	return nil
}

func median(v []float64) float64 {
	s := append([]float64(nil), v...)
	sort.Float64s(s)
	if len(s) == 0 {
		return 0
	}
	return s[len(s)/2]
}

// serveBench runs, inside the namespace at path, an echo server for
// request/response on :80 and a sink on :81.
func serveBench(path string) (func(), error) {
	h, err := netns.Open(path)
	if err != nil {
		return nil, err
	}
	defer h.Close()
	var rr, sink net.Listener
	if err := netns.Do(h, func() error {
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
	h, err := netns.Open(from)
	if err != nil {
		return nil, err
	}
	defer h.Close()
	var c net.Conn
	err = netns.Do(h, func() error {
		var err error
		c, err = net.DialTimeout("tcp", addr, 3*time.Second)
		return err
	})
	return c, err
}
