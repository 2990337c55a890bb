package bench

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/hostnet/hostnet/api"
	"github.com/hostnet/hostnet/internal/dataplane/netns"
	"github.com/hostnet/hostnet/internal/testutil"
	"github.com/hostnet/hostnet/internal/testutil/lab"
	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netlink/nl"
	"golang.org/x/sys/unix"
)

// The L2 benchmarks' segment: the lab host's uplink (lab.UplinkName,
// lab.HostAddr/24) and the external host on the other end of it
// (lab.ExtAddr), the endpoints' gateway. Endpoints take addresses of the
// uplink's subnet, as L2Bridge and Transparent want.
const (
	l2Subnet  = "198.51.100.0/24"
	l2Pool    = "198.51.100.128/26"
	l2HandIP  = "198.51.100.130" // the hand-built endpoint's
	l2Gateway = lab.ExtAddr
)

// l2Driver is one L2 network type and the way to build its equivalent by
// hand.
type l2Driver struct {
	typ api.NetworkType
	// overBridge: a Transparent network of UplinkMode Bridge (the uplink a
	// port of the network's bridge, which holds the host's addresses).
	overBridge bool
	hand       string // what the hand-built equivalent is, for the table
	// build makes the hand-built endpoint in the namespace at ep, on the
	// lab host whose namespace is host, with ip/prefix and a default
	// route through gw.
	build func(host, ep, ip string, prefix int, gw string) error
}

// String names the driver in the table: its type, "Transparent over a
// bridge" for a Transparent network of UplinkMode Bridge.
func (d l2Driver) String() string {
	if d.overBridge {
		return string(d.typ) + " over a bridge"
	}
	return string(d.typ)
}

// key names the driver in -l2-drivers and in directory names.
func (d l2Driver) key() string { return strings.ReplaceAll(d.String(), " over a bridge", "Bridge") }

// l2Drivers are the drivers the L2 benchmarks measure, in the table's
// order: those named in only (comma-separated keys: L2Bridge, Transparent,
// TransparentBridge, L2Tunnel), or all.
func l2Drivers(only string) []l2Driver {
	all := []l2Driver{
		{api.L2Bridge, false, "hand-built Linux bridge with proxy ARP, a host route and a proxy neighbour entry on the uplink, no rules", handBuilt(api.L2Bridge, false)},
		{api.Transparent, false, "hand-built macvlan (bridge mode) of the uplink, no rules", handBuilt(api.Transparent, false)},
		{api.Transparent, true, "hand-built Linux bridge holding the uplink and the host's address, a veth port, no rules", handBuilt(api.Transparent, true)},
		{api.L2Tunnel, false, "hand-built macvlan (VEPA) of the uplink, no rules", handBuilt(api.L2Tunnel, false)},
	}
	var out []l2Driver
	for _, d := range all {
		if only == "" || slices.Contains(strings.Split(only, ","), d.key()) {
			out = append(out, d)
		}
	}
	return out
}

// handL2 attaches endpoints by hand with bare netlink calls in a lab
// host's namespace, the way hostnet's driver of typ lays them out, with
// no nftables rule: for L2Bridge a veth port of a bridge with proxy ARP,
// a host route through the bridge and a proxy neighbour entry on the
// uplink; for Transparent a macvlan (bridge mode) of the uplink and,
// with a shim, a host route through it; for L2Tunnel a macvlan (VEPA).
type handL2 struct {
	typ        api.NetworkType
	overBridge bool // br is a bridge holding the uplink (Transparent over a bridge)
	host       *netlink.Handle
	uplink     netlink.Link
	br         netlink.Link // L2Bridge's bridge
	shim       netlink.Link // Transparent's host shim, when asked
}

// newHandL2 prepares the lab host whose namespace is hostPath: the
// bridge, its sysctls and forwarding for L2Bridge; the shim for
// Transparent when withShim.
func newHandL2(hostPath string, typ api.NetworkType, overBridge, withShim bool) (*handL2, error) {
	h, err := lab.Handle(hostPath)
	if err != nil {
		return nil, err
	}
	hl := &handL2{typ: typ, overBridge: overBridge, host: h}
	if hl.uplink, err = h.LinkByName(lab.UplinkName); err != nil {
		h.Close()
		return nil, err
	}
	fail := func(err error) (*handL2, error) { h.Close(); return nil, err }
	switch {
	case overBridge:
		if hl.br, err = bridgeUplink(h, hl.uplink); err != nil {
			return fail(err)
		}
	case typ == api.L2Bridge:
		attrs := netlink.NewLinkAttrs()
		attrs.Name, attrs.MTU, attrs.HardwareAddr = "br0", 1500, net.HardwareAddr{2, 0, 0, 0, 0xbb, 1}
		if hl.br, err = addQuiet(h, &netlink.Bridge{LinkAttrs: attrs}); err != nil {
			return fail(fmt.Errorf("bridge: %w", err))
		}
		if err := writeSysctls(hostPath, map[string]string{"net/ipv4/ip_forward": "1", "net/ipv4/conf/br0/proxy_arp": "1",
			"net/ipv4/neigh/br0/proxy_delay": "0", "net/ipv4/neigh/" + lab.UplinkName + "/proxy_delay": "0"}); err != nil {
			return fail(err)
		}
	case typ == api.Transparent && withShim:
		attrs := netlink.NewLinkAttrs()
		attrs.Name, attrs.ParentIndex, attrs.HardwareAddr = "shim0", hl.uplink.Attrs().Index, net.HardwareAddr{2, 0, 0, 0, 0x5e, 1}
		if hl.shim, err = addQuiet(h, &netlink.Macvlan{LinkAttrs: attrs, Mode: netlink.MACVLAN_MODE_BRIDGE}); err != nil {
			return fail(fmt.Errorf("shim: %w", err))
		}
	}
	return hl, nil
}

// addQuiet adds link (`ip link add`), without IPv6 (its chatter would
// weigh on the figures), and brings it up.
func addQuiet(h *netlink.Handle, link netlink.Link) (netlink.Link, error) {
	name := link.Attrs().Name
	if err := h.LinkAdd(link); err != nil {
		return nil, err
	}
	l, err := h.LinkByName(name)
	if err != nil {
		return nil, err
	}
	if err := h.LinkSetIP6AddrGenMode(l, nl.IN6_ADDR_GEN_MODE_NONE); err != nil {
		return nil, err
	}
	return l, h.LinkSetUp(l)
}

// bridgeUplink makes the bridge br0 that holds the uplink as
// hostnet's Transparent networks over a bridge do: the uplink's MAC, the
// uplink its port, the uplink's addresses moved to it.
func bridgeUplink(h *netlink.Handle, uplink netlink.Link) (netlink.Link, error) {
	attrs := netlink.NewLinkAttrs()
	attrs.Name, attrs.MTU, attrs.HardwareAddr = "br0", uplink.Attrs().MTU, uplink.Attrs().HardwareAddr
	if err := h.LinkAdd(&netlink.Bridge{LinkAttrs: attrs}); err != nil {
		return nil, fmt.Errorf("bridge: %w", err)
	}
	br, err := h.LinkByName("br0")
	if err != nil {
		return nil, err
	}
	if err := h.LinkSetUp(br); err != nil {
		return nil, err
	}
	if err := h.LinkSetMaster(uplink, br); err != nil {
		return nil, fmt.Errorf("uplink into the bridge: %w", err)
	}
	addrs, err := h.AddrList(uplink, netlink.FAMILY_V4)
	if err != nil {
		return nil, err
	}
	for _, a := range addrs {
		moved := netlink.Addr{IPNet: a.IPNet}
		if err := h.AddrAdd(br, &moved); err != nil {
			return nil, fmt.Errorf("address %s onto the bridge: %w", a.IPNet, err)
		}
		if err := h.AddrDel(uplink, &a); err != nil {
			return nil, err
		}
	}
	return br, nil
}

// writeSysctls sets sysctls (path under /proc/sys: value) inside the
// namespace at path.
func writeSysctls(path string, values map[string]string) error {
	return lab.In(path, func() error {
		for k, v := range values {
			if err := os.WriteFile("/proc/sys/"+k, []byte(v), 0o644); err != nil {
				return err
			}
		}
		return nil
	})
}

func (h *handL2) close() { h.host.Close() }

// attach gives the namespace ns its NIC (hostName names a veth's host
// side), with ip/prefix, up, and a default route through gw; then the
// host's side: routes and proxy entries.
func (h *handL2) attach(ns netns.Handle, hostName string, ip net.IP, prefix int, gw net.IP) error {
	attrs := netlink.NewLinkAttrs()
	attrs.MTU = 1500
	if h.br != nil {
		attrs.Name, attrs.MasterIndex = hostName, h.br.Attrs().Index
		veth := &netlink.Veth{LinkAttrs: attrs, PeerName: "eth0", PeerNamespace: netlink.NsFd(ns)}
		if err := h.host.LinkAdd(veth); err != nil {
			return fmt.Errorf("veth: %w", err)
		}
		if err := h.host.LinkSetIP6AddrGenMode(veth, nl.IN6_ADDR_GEN_MODE_NONE); err != nil {
			return err
		}
		if err := h.host.LinkSetUp(veth); err != nil {
			return err
		}
	} else {
		mode := netlink.MACVLAN_MODE_BRIDGE
		if h.typ == api.L2Tunnel {
			mode = netlink.MACVLAN_MODE_VEPA
		}
		attrs.Name, attrs.ParentIndex, attrs.Namespace = "eth0", h.uplink.Attrs().Index, netlink.NsFd(ns)
		if err := h.host.LinkAdd(&netlink.Macvlan{LinkAttrs: attrs, Mode: mode}); err != nil {
			return fmt.Errorf("macvlan: %w", err)
		}
	}
	eh, err := netlink.NewHandleAt(ns, unix.NETLINK_ROUTE)
	if err != nil {
		return err
	}
	defer eh.Close()
	nic, err := eh.LinkByName("eth0")
	if err != nil {
		return err
	}
	if err := eh.LinkSetIP6AddrGenMode(nic, nl.IN6_ADDR_GEN_MODE_NONE); err != nil {
		return err
	}
	for _, l := range []netlink.Link{&netlink.Device{LinkAttrs: netlink.LinkAttrs{Index: 1}}, nic} {
		if err := eh.LinkSetUp(l); err != nil {
			return err
		}
	}
	if err := eh.AddrAdd(nic, &netlink.Addr{IPNet: &net.IPNet{IP: ip, Mask: net.CIDRMask(prefix, 32)}}); err != nil {
		return err
	}
	if err := eh.RouteAdd(&netlink.Route{LinkIndex: nic.Attrs().Index, Gw: gw}); err != nil {
		return err
	}
	host := &net.IPNet{IP: ip, Mask: net.CIDRMask(32, 32)}
	switch {
	case h.overBridge:
		return nil // on the host's segment, through the bridge
	case h.br != nil:
		if err := h.host.RouteAdd(&netlink.Route{LinkIndex: h.br.Attrs().Index, Dst: host}); err != nil {
			return err
		}
		return h.host.NeighAdd(&netlink.Neigh{LinkIndex: h.uplink.Attrs().Index, IP: ip, Flags: netlink.NTF_PROXY})
	case h.shim != nil:
		return h.host.RouteAdd(&netlink.Route{LinkIndex: h.shim.Attrs().Index, Dst: host})
	}
	return nil
}

// detach removes endpoint ns's NIC (a veth, deleted by its host side, or
// a macvlan inside ns) and the host's routes and proxy entry for ip.
func (h *handL2) detach(ns netns.Handle, hostName string, ip net.IP) error {
	host := &net.IPNet{IP: ip, Mask: net.CIDRMask(32, 32)}
	switch {
	case h.overBridge:
		return h.host.LinkDel(&netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: hostName}})
	case h.br != nil:
		if err := h.host.NeighDel(&netlink.Neigh{LinkIndex: h.uplink.Attrs().Index, IP: ip, Flags: netlink.NTF_PROXY}); err != nil {
			return err
		}
		return h.host.LinkDel(&netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: hostName}})
	case h.shim != nil:
		_ = h.host.RouteDel(&netlink.Route{LinkIndex: h.shim.Attrs().Index, Dst: host})
	}
	eh, err := netlink.NewHandleAt(ns, unix.NETLINK_ROUTE)
	if err != nil {
		return err
	}
	defer eh.Close()
	nic, err := eh.LinkByName("eth0")
	if err != nil {
		return err
	}
	return eh.LinkDel(nic)
}

// handBuilt builds the datapath benchmark's hand-built endpoint of typ
// (over a bridge holding the uplink when overBridge).
func handBuilt(typ api.NetworkType, overBridge bool) func(host, ep, ip string, prefix int, gw string) error {
	return func(host, ep, ip string, prefix int, gw string) error {
		return handEndpointL2(typ, overBridge, host, ep, ip, prefix, gw)
	}
}

func handEndpointL2(typ api.NetworkType, overBridge bool, host, ep, ip string, prefix int, gw string) error {
	h, err := newHandL2(host, typ, overBridge, false)
	if err != nil {
		return err
	}
	defer h.close()
	if err := netns.Create(ep); err != nil {
		return err
	}
	ns, err := netns.Open(ep)
	if err != nil {
		return err
	}
	defer ns.Close()
	return h.attach(ns, "v0", net.ParseIP(ip).To4(), prefix, net.ParseIP(gw).To4())
}

// BenchL2Datapath measures, per L2 driver, TCP throughput (iperf3, one
// stream) and request/response (64 bytes, one connection) from an
// endpoint to the external host on its segment, beside the same endpoint
// built by hand with the kernel's objects alone (no nftables rules), in
// the same run. The endpoints have the firewall defaults (no ACL): their
// packets still pass hostnet's hooks (for Transparent and L2Tunnel the
// uplink's netdev chains and their flow table; for L2Bridge the inet and
// bridge tables, as NAT). One driver at a time has a network on the
// daemon's host, so that no driver's hooks weigh on another's figures;
// rounds alternate hostnet and the hand-built path, and their order.
func BenchL2Datapath(cfg SuiteConfig) ([]Row, error) {
	out := cfg.Out
	if out == nil {
		out = io.Discard
	}
	p := dpParams{Secs: 3, RR: 3 * time.Second, Rounds: 5}
	if cfg.Quick {
		p = dpParams{Secs: 1, RR: time.Second, Rounds: 2, Quick: true}
	}
	iperf3, ierr := ensureIperf3(out)
	tool, tport := iperf3Version(iperf3), iperfPort
	if ierr != nil {
		fmt.Fprintf(out, "  iperf3 unavailable, throughput measured with the Go sender instead: %v\n", ierr)
		iperf3, tool, tport = "", goSender, sinkPort
	}
	dir, err := newBenchDir("hnt-bench-l2-")
	if err != nil {
		return nil, err
	}
	defer removeBenchDir(dir)
	d, err := startDaemon(filepath.Join(dir, "hostnet"), cfg.DaemonCmd, true)
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
	serve := func(ns string) error {
		stop, err := serveBench(ns)
		if err != nil {
			return fmt.Errorf("servers in %s: %w", ns, err)
		}
		stops = append(stops, stop)
		if iperf3 != "" {
			return procs.startIperf3Server(iperf3, ns, iperfPort)
		}
		return nil
	}
	if err := serve(d.ExtNS); err != nil {
		return nil, err
	}
	rrDur := 200 * time.Millisecond
	tput, rr := probes(iperf3, p.Secs, &rrDur)

	ctx := context.Background()
	var rows []Row
	for _, drv := range l2Drivers(cfg.L2Drivers) {
		t0 := time.Now()
		// The hand-built equivalent, on a lab host of its own.
		hand, err := lab.NewHost(filepath.Join(dir, "hand-"+drv.key()), true)
		if err != nil {
			return nil, err
		}
		handEP := filepath.Join(hand.Dir, "ep.ns")
		if err := drv.build(hand.HostNS, handEP, l2HandIP, 24, l2Gateway); err != nil {
			return nil, fmt.Errorf("hand-built %s: %w", drv, err)
		}
		if err := serve(hand.ExtNS); err != nil {
			return nil, err
		}
		// L2Bridge endpoints' traffic is routed by the host, where hostnet,
		// as any host running Docker or kube-proxy, has the connection
		// tracker on: the same hand-built path with it on tells its cost
		// from that of hostnet's rules.
		var tracked string
		if drv.typ == api.L2Bridge {
			ct, err := lab.NewHost(filepath.Join(dir, "hand-conntrack-"+string(drv.typ)), true)
			if err != nil {
				return nil, err
			}
			tracked = filepath.Join(ct.Dir, "ep.ns")
			if err := drv.build(ct.HostNS, tracked, l2HandIP, 24, l2Gateway); err != nil {
				return nil, fmt.Errorf("hand-built %s with conntrack: %w", drv.typ, err)
			}
			cns, err := netns.Open(ct.HostNS)
			if err != nil {
				return nil, err
			}
			err = addConntrack(cns)
			cns.Close()
			if err != nil {
				return nil, fmt.Errorf("hand-built %s: conntrack: %w", drv.typ, err)
			}
			if err := serve(ct.ExtNS); err != nil {
				return nil, err
			}
		}
		// hostnet's: a network of the type on the daemon's uplink and one
		// endpoint, removed once measured.
		n, err := d.c.CreateNetwork(ctx, l2Network(drv, "bench-"+drv.key(), l2Subnet, l2Pool, l2Gateway))
		if err != nil {
			return nil, fmt.Errorf("create %s network: %w", drv, err)
		}
		ns, err := d.c.CreateNamespace(ctx, &api.Namespace{})
		if err != nil {
			return nil, err
		}
		ep, err := d.c.CreateEndpoint(ctx, &api.Endpoint{Name: "a", HostComputeNetwork: n.ID, HostComputeNamespace: ns.ID})
		if err != nil {
			return nil, fmt.Errorf("create %s endpoint: %w", drv, err)
		}
		compares := []*dpCompare{
			{bench: fmt.Sprintf("TCP throughput, %s endpoint to an external host on its segment", drv), short: drv.String() + ", throughput", tput: true,
				cases: []dpCase{{"hostnet", "hostnet", tput(ns.NetNamespacePath, l2Gateway, tport)}, {drv.hand, "handBuilt", tput(handEP, l2Gateway, tport)}}},
			{bench: fmt.Sprintf("TCP request/response, %s endpoint to an external host on its segment", drv), short: drv.String() + ", request/response",
				cases: []dpCase{{"hostnet", "hostnet", rr(ns.NetNamespacePath, l2Gateway, rrPort)}, {drv.hand, "handBuilt", rr(handEP, l2Gateway, rrPort)}}},
		}
		goals, goalText := []float64{0.95}, ">= 0.95x the hand-built path"
		if tracked != "" {
			const trackedName = "the same with the connection tracker on (one ct state rule, as on any host running Docker or kube-proxy)"
			compares[0].cases = append(compares[0].cases, dpCase{trackedName, "handBuiltConntrack", tput(tracked, l2Gateway, tport)})
			compares[1].cases = append(compares[1].cases, dpCase{trackedName, "handBuiltConntrack", rr(tracked, l2Gateway, rrPort)})
			goals, goalText = []float64{0.95, 0.95}, ">= 0.95x each hand-built path"
		}
		for _, c := range compares {
			c.samples = make([][]float64, len(c.cases))
		}
		// Each path once, unrecorded: it carries traffic, and neighbour
		// caches are warm alike.
		rrDur = 200 * time.Millisecond
		for _, cs := range compares[1].cases {
			if _, err := cs.run(); err != nil {
				return nil, fmt.Errorf("%s, %s: %w", compares[1].short, cs.key, err)
			}
		}
		rrDur = p.RR
		fmt.Fprintf(out, "  %s: set up in %s; %d rounds, throughput %d s (%s), request/response %s each\n",
			drv, time.Since(t0).Round(100*time.Millisecond), p.Rounds, p.Secs, tool, p.RR)
		for r := 0; r < p.Rounds; r++ {
			for _, c := range compares {
				if err := c.round(r, p.Rounds, out); err != nil {
					return nil, err
				}
			}
		}
		for _, c := range compares {
			rows = append(rows, c.row(p, tool, goals, goalText))
		}
		if err := d.c.DeleteEndpoint(ctx, ep.ID); err != nil {
			return nil, err
		}
		if err := d.c.DeleteNamespace(ctx, ns.ID); err != nil {
			return nil, err
		}
		if err := d.c.DeleteNetwork(ctx, n.ID); err != nil {
			return nil, err
		}
	}
	return rows, nil
}

// round measures every case of c once, in the opposite order in odd
// rounds (so that neither side always follows the same one), and prints
// the round's line.
func (c *dpCompare) round(r, rounds int, out io.Writer) error {
	var parts []string
	for k := range c.cases {
		i := k
		if r%2 == 1 {
			i = len(c.cases) - 1 - k
		}
		v, err := c.cases[i].run()
		if err != nil {
			return fmt.Errorf("round %d, %s, %s: %w", r+1, c.short, c.cases[i].key, err)
		}
		c.add(i, v)
		parts = append(parts, c.cases[i].key+" "+c.fmtSample(v))
	}
	fmt.Fprintf(out, "  round %d/%d, %s: %s\n", r+1, rounds, c.short, strings.Join(parts, ", "))
	return nil
}

// l2Network is a network of drv's on the lab host's uplink: subnet, with
// endpoints from pool, and a default route through gw.
func l2Network(drv l2Driver, name, subnet, pool, gw string) *api.Network {
	settings, _ := json.Marshal(api.NetAdapterNameSettings{NetworkAdapterName: lab.UplinkName})
	mode := ""
	if drv.overBridge {
		mode = api.UplinkBridge
	}
	return &api.Network{Name: name, Type: drv.typ, UplinkMode: mode,
		Ipams: []api.Ipam{{Type: "Static", Subnets: []api.Subnet{{IpAddressPrefix: subnet, IpRange: pool,
			Routes: []api.Route{{DestinationPrefix: "0.0.0.0/0", NextHop: gw}}}}}},
		Policies: []api.Policy{{Type: api.NetAdapterName, Settings: settings}}}
}

// The attach benchmark's subnet: added to the lab host's uplink (both
// L2Bridge and Transparent take only subnets of their uplink), big
// enough for the full run's endpoints.
const (
	l2AttachAddr    = "10.250.0.1/16" // the uplink's second address
	l2AttachSubnet  = "10.250.0.0/16"
	l2AttachPool    = "10.250.1.0/24"
	l2AttachGateway = "10.250.0.254"
)

// l2AttachIP is the floor's i-th endpoint address, in l2AttachPool.
func l2AttachIP(i int) net.IP { return net.IPv4(10, 250, 1, byte(i+1)).To4() }

// BenchL2Attach measures, per L2 driver, creating and attaching one
// endpoint with one ACL rule through the API in one call, n of them on
// one network, then deleting each, beside the kernel's floor doing the
// same with bare netlink calls the way the driver lays an endpoint out
// (see handL2; no rules), each on its own throwaway lab host.
func BenchL2Attach(cfg SuiteConfig) ([]Row, error) {
	out := cfg.Out
	if out == nil {
		out = io.Discard
	}
	n := 200
	if cfg.Quick {
		n = 30
	}
	dir, err := newBenchDir("hnt-bench-l2attach-")
	if err != nil {
		return nil, err
	}
	defer removeBenchDir(dir)
	var rows []Row
	for _, drv := range l2Drivers(cfg.L2Drivers) {
		floorA, floorD, err := l2AttachFloor(filepath.Join(dir, "floor-"+drv.key()), drv, n)
		if err != nil {
			return nil, fmt.Errorf("%s floor: %w", drv, err)
		}
		time.Sleep(cniSettle)
		apiA, apiD, err := l2AttachHostnet(filepath.Join(dir, "hostnet-"+drv.key()), cfg.DaemonCmd, drv, n)
		if err != nil {
			return nil, fmt.Errorf("%s through hostnet: %w", drv, err)
		}
		time.Sleep(cniSettle)
		a, f := Summarize(apiA.Millis()), Summarize(floorA.Millis())
		ad, fd := Summarize(apiD.Millis()), Summarize(floorD.Millis())
		fmt.Fprintf(out, "  %s: attach median %s ms (floor %s ms), delete median %s ms (floor %s ms)\n",
			drv, num(a.Median), num(f.Median), num(ad.Median), num(fd.Median))
		rows = append(rows, Row{
			Benchmark: fmt.Sprintf("attach: create + attach one %s endpoint with 1 ACL rule, through the API in one call, over %d on one network", drv, n),
			Hostnet:   a.FmtP99("ms"),
			Baseline:  fmt.Sprintf("bare netlink floor (%s): %s", l2FloorText(drv), f.FmtP99("ms")),
			Ratio:     Ratio(a.Median, f.Median) + " the floor",
			Goal:      "median within 1.5x of the floor",
			Verdict:   judge(f.Median > 0 && a.Median/f.Median <= 1.5),
			Raw:       map[string]any{"hostnetMs": apiA.Millis(), "floorMs": floorA.Millis()},
		}, Row{
			Benchmark: fmt.Sprintf("detach/delete: delete one %s endpoint through the API (with up to %d on the network)", drv, n),
			Hostnet:   ad.FmtP99("ms"),
			Baseline:  "bare netlink floor: " + fd.FmtP99("ms"),
			Ratio:     Ratio(ad.Median, fd.Median) + " the floor",
			Raw:       map[string]any{"hostnetMs": apiD.Millis(), "floorMs": floorD.Millis()},
		})
	}
	return rows, nil
}

// l2FloorText says what the floor does per endpoint for drv.
func l2FloorText(drv l2Driver) string {
	switch {
	case drv.overBridge:
		return "veth into the namespace, port of the bridge holding the uplink, up, address, default route"
	case drv.typ == api.L2Bridge:
		return "veth into the namespace, bridge port, up, address, default route, host route, proxy neighbour entry"
	case drv.typ == api.Transparent:
		return "macvlan (bridge mode) into the namespace, up, address, default route, host route through the shim"
	}
	return "macvlan (VEPA) into the namespace, up, address, default route"
}

// l2LabHost makes a lab host under dir whose uplink also holds
// l2AttachAddr.
func l2LabHost(dir string) (*lab.Host, error) {
	h, err := lab.NewHost(dir, true)
	if err != nil {
		return nil, err
	}
	hh, err := lab.Handle(h.HostNS)
	if err != nil {
		return nil, err
	}
	defer hh.Close()
	up, err := hh.LinkByName(lab.UplinkName)
	if err != nil {
		return nil, err
	}
	a, _ := netlink.ParseAddr(l2AttachAddr)
	return h, hh.AddrAdd(up, a)
}

// l2Namespaces makes n namespaces under dir, open.
func l2Namespaces(dir string, n int) ([]netns.Handle, error) {
	var out []netns.Handle
	for i := 0; i < n; i++ {
		p := filepath.Join(dir, fmt.Sprint("ep", i))
		if err := netns.Create(p); err != nil {
			return out, err
		}
		ns, err := netns.Open(p)
		if err != nil {
			return out, err
		}
		out = append(out, ns)
	}
	return out, nil
}

// l2AttachFloor attaches n endpoints by hand, then deletes them, timing
// each.
func l2AttachFloor(dir string, drv l2Driver, n int) (attach, del Series, err error) {
	h, err := l2LabHost(dir)
	if err != nil {
		return nil, nil, err
	}
	defer testutil.UnmountUnder(h.Dir, func(p string) error { return unix.Unmount(p, unix.MNT_DETACH) })
	hl, err := newHandL2(h.HostNS, drv.typ, drv.overBridge, true)
	if err != nil {
		return nil, nil, err
	}
	defer hl.close()
	nss, err := l2Namespaces(dir, n)
	defer func() {
		for _, ns := range nss {
			ns.Close()
		}
	}()
	if err != nil {
		return nil, nil, err
	}
	gw := net.ParseIP(l2AttachGateway).To4()
	time.Sleep(time.Second)
	for i := range nss {
		start := time.Now()
		if err := hl.attach(nss[i], fmt.Sprint("v", i), l2AttachIP(i), 16, gw); err != nil {
			return nil, nil, fmt.Errorf("endpoint %d: %w", i, err)
		}
		attach = append(attach, time.Since(start))
	}
	for i := range nss {
		start := time.Now()
		if err := hl.detach(nss[i], fmt.Sprint("v", i), l2AttachIP(i)); err != nil {
			return nil, nil, fmt.Errorf("delete %d: %w", i, err)
		}
		del = append(del, time.Since(start))
	}
	return attach, del, nil
}

// l2AttachHostnet creates and attaches n endpoints of a network of typ
// through hostnet's API, in one call each, then deletes them, timing
// each call.
func l2AttachHostnet(dir string, daemonCmd []string, drv l2Driver, n int) (attach, del Series, err error) {
	h, err := l2LabHost(dir)
	if err != nil {
		return nil, nil, err
	}
	d, err := startDaemonOn(h, daemonCmd, "")
	if err != nil {
		return nil, nil, err
	}
	defer func() {
		d.close()
		testutil.UnmountUnder(h.Dir, func(p string) error { return unix.Unmount(p, unix.MNT_DETACH) })
	}()
	ctx := context.Background()
	nw, err := d.c.CreateNetwork(ctx, l2Network(drv, "bench", l2AttachSubnet, l2AttachPool, l2AttachGateway))
	if err != nil {
		return nil, nil, fmt.Errorf("create network: %w", err)
	}
	var nss, eps []string
	for i := 0; i < n; i++ {
		ns, err := d.c.CreateNamespace(ctx, &api.Namespace{})
		if err != nil {
			return nil, nil, err
		}
		nss = append(nss, ns.ID)
	}
	time.Sleep(time.Second)
	for i := 0; i < n; i++ {
		want := &api.Endpoint{HostComputeNetwork: nw.ID, HostComputeNamespace: nss[i],
			Policies: []api.Policy{aclPolicy("Allow", "In", "", "80", 100)}}
		start := time.Now()
		ep, err := d.c.CreateEndpoint(ctx, want)
		if err != nil {
			return nil, nil, fmt.Errorf("endpoint %d: %w", i, err)
		}
		attach = append(attach, time.Since(start))
		eps = append(eps, ep.ID)
	}
	for i, id := range eps {
		start := time.Now()
		if err := d.c.DeleteEndpoint(ctx, id); err != nil {
			return nil, nil, fmt.Errorf("delete %d: %w", i, err)
		}
		del = append(del, time.Since(start))
	}
	return attach, del, nil
}
