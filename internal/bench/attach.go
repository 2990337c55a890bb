package bench

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/hostnet/hostnet/api"
	"github.com/hostnet/hostnet/internal/dataplane/netns"
	"github.com/hostnet/hostnet/internal/testutil"
	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netlink/nl"
	"golang.org/x/sys/unix"
)

// AttachConfig sets up the attach benchmark.
type AttachConfig struct {
	N   int       // endpoints per path
	Out io.Writer // report
	// Policies gives each hostnet endpoint one published port and one ACL
	// rule (the suite's attach); the floor sets up no rules either way.
	Policies bool
	// PerNetwork is how many endpoints go on one network (or bridge)
	// before the next is made: a Linux bridge takes at most 1,023 ports.
	// 0: all on one.
	PerNetwork int
	// DaemonCmd starts hostnetd; the benchmark appends its flags.
	DaemonCmd []string
}

// Path is one way of attaching an endpoint, measured on its own host.
type Path struct {
	Name  string
	Times Series
}

// AttachResult holds the timings of each path, in the order taken.
type AttachResult struct {
	Paths []*Path
}

// RunAttach measures creating and attaching one endpoint whose namespace
// already exists, N times on one network, along four paths, each on its
// own throwaway host namespace, one after the other in this run:
//
//   - the kernel's floor with bare netlink calls, as a plain tool does it:
//     veth with its peer in the namespace, bridge port, up, address,
//     default route, on a bridge made the plain way
//   - the same calls on a bridge whose MTU and MAC were set, and with no
//     IPv6 link-local address on either side of the veth: the floor with
//     what keeps a bridge flat
//   - hostnet through its API, in one call (an endpoint created with its
//     namespace, as HNS allows), and in two (create, then attach)
func RunAttach(cfg AttachConfig) (*AttachResult, error) {
	dir, err := newBenchDir("hnt-bench-")
	if err != nil {
		return nil, err
	}
	defer removeBenchDir(dir)
	fmt.Fprintf(cfg.Out, "preparing %d namespaces per path...\n", cfg.N)

	res := &AttachResult{}
	run := func(name string, setup func() (attacher, error)) error {
		a, err := setup()
		if err != nil {
			return fmt.Errorf("%s: %w", name, err)
		}
		defer func() {
			// Each path gets a machine as clean as the first had: its
			// namespaces go, and the kernel's cleanup of them settles.
			a.close()
			testutil.UnmountUnder(a.dir(), func(p string) error { return unix.Unmount(p, unix.MNT_DETACH) })
			time.Sleep(5 * time.Second)
		}()
		time.Sleep(time.Second)
		p := &Path{Name: name}
		for i := 0; i < cfg.N; i++ {
			d, err := a.attach(i)
			if err != nil {
				return fmt.Errorf("%s, endpoint %d: %w", name, i, err)
			}
			p.Times = append(p.Times, d)
		}
		res.Paths = append(res.Paths, p)
		fmt.Fprintf(cfg.Out, "  %s: median %s\n", name, ms(p.Times.Median()))
		return nil
	}
	steps := []struct {
		name  string
		setup func() (attacher, error)
	}{
		{"floor: bare netlink, plain bridge", func() (attacher, error) { return newFloor(dir, "plain", false, cfg.N, cfg.perNetwork()) }},
		{"floor: bare netlink, bridge MTU+MAC set, no IPv6 link-local", func() (attacher, error) {
			return newFloor(dir, "quiet", true, cfg.N, cfg.perNetwork())
		}},
		{"hostnet: API, one call (create with namespace)", func() (attacher, error) { return newHostnetPath(dir, "one", cfg, true) }},
		{"hostnet: API, two calls (create, attach)", func() (attacher, error) { return newHostnetPath(dir, "two", cfg, false) }},
	}
	for _, st := range steps {
		if only := os.Getenv("HOSTNET_BENCH_ONLY"); only != "" && !strings.Contains(st.name, only) {
			continue
		}
		if err := run(st.name, st.setup); err != nil {
			return nil, err
		}
	}
	res.Report(cfg.Out)
	return res, nil
}

type attacher interface {
	attach(i int) (time.Duration, error)
	close()
	dir() string
}

// perNetwork is how many endpoints share a network or bridge.
func (cfg AttachConfig) perNetwork() int {
	if cfg.PerNetwork <= 0 {
		return max(cfg.N, 1)
	}
	return cfg.PerNetwork
}

// benchSubnet is the k-th network's subnet, 10.(200+k).0.0/16, and
// endpointAddr the j-th address handed out in it (the gateway is .0.1).
func benchSubnet(k int) string { return fmt.Sprintf("10.%d.0.0/16", 200+k) }

func endpointAddr(k, j int) netip.Addr {
	return netip.AddrFrom4([4]byte{10, byte(200 + k), byte((j + 2) >> 8), byte(j + 2)})
}

// Report prints the result as a Markdown table with the ratios.
func (r *AttachResult) Report(w io.Writer) {
	n := len(r.Paths[0].Times)
	win := max(1, min(100, n/10))
	fmt.Fprintf(w, "\nattach: create + attach one endpoint whose namespace exists, %d endpoints on one network\n\n", n)
	fmt.Fprintf(w, "| path | median | p99 | first %d (median) | last %d (median) | last/first |\n|---|---|---|---|---|---|\n", win, win)
	for _, p := range r.Paths {
		s := p.Times
		first, last := s.Window(0, win).Median(), s.Window(len(s)-win, len(s)).Median()
		fmt.Fprintf(w, "| %s | %s | %s | %s | %s | %s |\n", p.Name, ms(s.Median()), ms(s.Quantile(0.99)), ms(first), ms(last), ratio(last, first))
	}
	var floor time.Duration
	var ours []*Path
	for _, p := range r.Paths {
		if strings.HasPrefix(p.Name, "floor") {
			if m := p.Times.Median(); floor == 0 || m < floor {
				floor = m
			}
		} else {
			ours = append(ours, p)
		}
	}
	fmt.Fprintln(w)
	for _, p := range ours {
		s := p.Times
		fmt.Fprintf(w, "%s: median %s the best floor's (goal: at most 1.50x); last %d / first %d: %s (goal: flat)\n",
			p.Name, ratio(s.Median(), floor), win, win, ratio(s.Window(n-win, n).Median(), s.Window(0, win).Median()))
	}
}

// floor does the attach with bare netlink calls in its own host namespace.
type floor struct {
	root  string
	quiet bool
	per   int // endpoints per bridge
	host  *netlink.Handle
	brs   []netlink.Link
	nss   []netns.Handle
}

func newFloor(dir, name string, quiet bool, n, per int) (*floor, error) {
	f := &floor{root: filepath.Join(dir, name), quiet: quiet, per: max(per, 1)}
	hostPath := filepath.Join(f.root, "host")
	if err := netns.Create(hostPath); err != nil {
		return nil, err
	}
	h, err := netns.Open(hostPath)
	if err != nil {
		return nil, err
	}
	defer h.Close()
	if f.host, err = netlink.NewHandleAt(h, unix.NETLINK_ROUTE); err != nil {
		return nil, err
	}
	for k := 0; k*f.per < n; k++ {
		if err := f.addBridge(k); err != nil {
			return nil, err
		}
	}
	for i := 0; i < n; i++ {
		p := filepath.Join(f.root, fmt.Sprint("ep", i))
		if err := netns.Create(p); err != nil {
			return nil, err
		}
		ns, err := netns.Open(p)
		if err != nil {
			return nil, err
		}
		f.nss = append(f.nss, ns)
	}
	return f, nil
}

// addBridge makes the k-th bridge, with the k-th subnet's gateway.
func (f *floor) addBridge(k int) error {
	attrs := netlink.NewLinkAttrs()
	attrs.Name = fmt.Sprint("br", k)
	if err := f.host.LinkAdd(&netlink.Bridge{LinkAttrs: attrs}); err != nil {
		return err
	}
	br, err := f.host.LinkByName(attrs.Name)
	if err != nil {
		return err
	}
	if f.quiet {
		if err := f.host.LinkSetMTU(br, 1500); err != nil {
			return err
		}
		if err := f.host.LinkSetHardwareAddr(br, net.HardwareAddr{0x02, 0, 0, 0, byte(k >> 8), byte(k + 1)}); err != nil {
			return err
		}
	}
	gw := endpointAddr(k, -1)
	addr, _ := netlink.ParseAddr(gw.String() + "/16")
	if err := f.host.AddrAdd(br, addr); err != nil {
		return err
	}
	if err := f.host.LinkSetUp(br); err != nil {
		return err
	}
	f.brs = append(f.brs, br)
	return nil
}

func (f *floor) attach(i int) (time.Duration, error) {
	k := i / f.per
	ip, gw := endpointAddr(k, i%f.per), endpointAddr(k, -1)
	start := time.Now()
	attrs := netlink.NewLinkAttrs()
	attrs.Name = fmt.Sprintf("v%d", i)
	veth := &netlink.Veth{LinkAttrs: attrs, PeerName: "eth0", PeerNamespace: netlink.NsFd(f.nss[i])}
	if err := f.host.LinkAdd(veth); err != nil {
		return 0, err
	}
	if f.quiet {
		if err := f.host.LinkSetIP6AddrGenMode(veth, nl.IN6_ADDR_GEN_MODE_NONE); err != nil {
			return 0, err
		}
	}
	if err := f.host.LinkSetMaster(veth, f.brs[k]); err != nil {
		return 0, err
	}
	if err := f.host.LinkSetUp(veth); err != nil {
		return 0, err
	}
	eh, err := netlink.NewHandleAt(f.nss[i], unix.NETLINK_ROUTE)
	if err != nil {
		return 0, err
	}
	defer eh.Close()
	peer, err := eh.LinkByName("eth0")
	if err != nil {
		return 0, err
	}
	if f.quiet {
		if err := eh.LinkSetIP6AddrGenMode(peer, nl.IN6_ADDR_GEN_MODE_NONE); err != nil {
			return 0, err
		}
	}
	if err := eh.LinkSetUp(peer); err != nil {
		return 0, err
	}
	addr, _ := netlink.ParseAddr(ip.String() + "/16")
	if err := eh.AddrAdd(peer, addr); err != nil {
		return 0, err
	}
	if err := eh.RouteAdd(&netlink.Route{LinkIndex: peer.Attrs().Index, Gw: gw.AsSlice()}); err != nil {
		return 0, err
	}
	return time.Since(start), nil
}

// detach deletes endpoint i's veth, as a plain tool's DEL does.
func (f *floor) detach(i int) (time.Duration, error) {
	start := time.Now()
	err := f.host.LinkDel(&netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: fmt.Sprintf("v%d", i)}})
	return time.Since(start), err
}

func (f *floor) dir() string { return f.root }

func (f *floor) close() {
	for _, ns := range f.nss {
		ns.Close()
	}
	if f.host != nil {
		f.host.Close()
	}
}

// hostnetPath runs hostnetd in its own host namespace.
type hostnetPath struct {
	*benchDaemon
	nss      []string
	eps      []string
	oneCall  bool
	policies bool
	per      int
}

func newHostnetPath(dir, name string, cfg AttachConfig, oneCall bool) (*hostnetPath, error) {
	d, err := startDaemon(filepath.Join(dir, name), cfg.DaemonCmd, false)
	if err != nil {
		return nil, err
	}
	h := &hostnetPath{benchDaemon: d, oneCall: oneCall, policies: cfg.Policies, per: cfg.perNetwork()}
	ctx := context.Background()
	for k := 0; k*h.per < cfg.N; k++ {
		_, err = h.c.CreateNetwork(ctx, &api.Network{Name: fmt.Sprint("bench", k), Type: api.NAT,
			Ipams: []api.Ipam{{Subnets: []api.Subnet{{IpAddressPrefix: benchSubnet(k)}}}}})
		if err != nil {
			h.close()
			return nil, err
		}
	}
	for i := 0; i < cfg.N; i++ {
		ns, err := h.c.CreateNamespace(ctx, &api.Namespace{})
		if err != nil {
			h.close()
			return nil, err
		}
		h.nss = append(h.nss, ns.ID)
	}
	return h, nil
}

// attachPolicies are the suite's endpoint i's: its own published port
// and one ACL rule admitting it (which also turns on default deny).
func attachPolicies(i int) []api.Policy {
	return []api.Policy{portMapping(uint16(10000+i), 80), aclPolicy("Allow", "In", "", "80", 100)}
}

func (h *hostnetPath) attach(i int) (time.Duration, error) {
	ctx := context.Background()
	want := &api.Endpoint{HostComputeNetwork: fmt.Sprint("bench", i/h.per)}
	if h.policies {
		want.Policies = attachPolicies(i)
	}
	start := time.Now()
	if h.oneCall {
		want.HostComputeNamespace = h.nss[i]
		ep, err := h.c.CreateEndpoint(ctx, want)
		if err != nil {
			return 0, err
		}
		d := time.Since(start)
		h.eps = append(h.eps, ep.ID)
		return d, nil
	}
	ep, err := h.c.CreateEndpoint(ctx, want)
	if err != nil {
		return 0, err
	}
	if _, err := h.c.Attach(ctx, h.nss[i], ep.ID); err != nil {
		return 0, err
	}
	d := time.Since(start)
	h.eps = append(h.eps, ep.ID)
	return d, nil
}

// detach deletes endpoint i (detaching it) through the API.
func (h *hostnetPath) detach(i int) (time.Duration, error) {
	start := time.Now()
	err := h.c.DeleteEndpoint(context.Background(), h.eps[i])
	return time.Since(start), err
}

func (h *hostnetPath) dir() string { return h.Dir }

// logLevel is the benchmark daemons' log level: warn, unless
// HOSTNET_BENCH_LOG_LEVEL says otherwise (info logs each attach's timings).
func logLevel() string {
	if l := os.Getenv("HOSTNET_BENCH_LOG_LEVEL"); l != "" {
		return l
	}
	return "warn"
}
