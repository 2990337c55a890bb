package e2e

import (
	"context"
	"encoding/json"
	"errors"
	"net"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hostnet/hostnet/api"
	"github.com/vishvananda/netlink"
)

// The Transparent network over a bridge (UplinkMode Bridge): the network's
// bridge takes host 1's uplink seg0, whose addresses (192.0.2.11/24,
// 198.18.0.11/24) and default route (via the router) move to the bridge.

// uplinkState is what the host namespace holds of its uplink and a bridge.
type uplinkState struct {
	want         []netip.Prefix // the host's addresses (hostPrefixes unless a test says)
	master       string         // seg0's master ("" when none)
	uplinkAddrs  []netip.Prefix // global addresses of seg0
	bridgeAddrs  []netip.Prefix // of the bridge
	defaultVia   string         // the device of the default route through the router
	defaultVia6  string         // of the IPv6 one through the router ("" when none)
	bridgeMAC    string         // "" when the bridge is gone
	uplinkMAC    string
	bridgeExists bool
}

func readUplink(t *testing.T, s *segment, path, bridge string) uplinkState {
	t.Helper()
	h := s.handle(path)
	st := uplinkState{want: hostPrefixes}
	addrsOf := func(l netlink.Link) []netip.Prefix {
		list, err := h.AddrList(l, netlink.FAMILY_ALL)
		if err != nil {
			t.Fatal(err)
		}
		var out []netip.Prefix
		for _, a := range list {
			p := prefixOfNet(a.IPNet)
			if !p.Addr().IsLinkLocalUnicast() {
				out = append(out, p)
			}
		}
		slices.SortFunc(out, func(a, b netip.Prefix) int { return a.Addr().Compare(b.Addr()) })
		return out
	}
	up, err := h.LinkByName(segUplink)
	if err != nil {
		t.Fatal(err)
	}
	st.uplinkMAC = up.Attrs().HardwareAddr.String()
	st.uplinkAddrs = addrsOf(up)
	if up.Attrs().MasterIndex != 0 {
		if m, err := h.LinkByIndex(up.Attrs().MasterIndex); err == nil {
			st.master = m.Attrs().Name
		}
	}
	if br, err := h.LinkByName(bridge); err == nil {
		st.bridgeExists = true
		st.bridgeMAC = br.Attrs().HardwareAddr.String()
		st.bridgeAddrs = addrsOf(br)
	}
	routes, err := h.RouteList(nil, netlink.FAMILY_ALL)
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range routes {
		if (r.Dst != nil && !r.Dst.IP.IsUnspecified()) || r.Priority != segMetric {
			continue
		}
		var via *string
		switch {
		case r.Gw.Equal(net.ParseIP(routerA)):
			via = &st.defaultVia
		case r.Gw.Equal(net.ParseIP(routerV6)):
			via = &st.defaultVia6
		default:
			continue
		}
		if l, err := h.LinkByIndex(r.LinkIndex); err == nil {
			*via = l.Attrs().Name
		}
	}
	return st
}

func prefixOfNet(n *net.IPNet) netip.Prefix {
	a, _ := netip.AddrFromSlice(n.IP)
	ones, _ := n.Mask.Size()
	return netip.PrefixFrom(a.Unmap(), ones)
}

// segMetric is the metric of the host's default route through the segment.
const segMetric = 50

var hostPrefixes = []netip.Prefix{netip.MustParsePrefix("192.0.2.11/24"), netip.MustParsePrefix("198.18.0.11/24")}

// handedOver reports how the state differs from the uplink handed over to
// bridge ("" when it does not).
func (st uplinkState) handedOver(bridge string) string {
	switch {
	case !st.bridgeExists:
		return "the bridge is missing"
	case st.master != bridge:
		return "seg0's master is " + st.master
	case len(st.uplinkAddrs) != 0:
		return "seg0 keeps addresses"
	case !slices.Equal(st.bridgeAddrs, st.want):
		return "the bridge's addresses are not the host's"
	case st.defaultVia != bridge:
		return "the default route goes through " + st.defaultVia
	case st.bridgeMAC != st.uplinkMAC:
		return "the bridge's MAC is not seg0's"
	}
	return ""
}

// handedBack reports how the state differs from the uplink as it was.
func (st uplinkState) handedBack(string) string {
	switch {
	case st.bridgeExists:
		return "the bridge is left"
	case st.master != "":
		return "seg0's master is " + st.master
	case !slices.Equal(st.uplinkAddrs, st.want):
		return "seg0's addresses are not the host's"
	case st.defaultVia != segUplink:
		return "the default route goes through " + st.defaultVia
	}
	return ""
}

// waitUplink waits (seconds) until check says nothing of the state.
func waitUplink(t *testing.T, s *segment, path, bridge string, check func(uplinkState, string) string) string {
	t.Helper()
	var why string
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(100 * time.Millisecond) {
		if why = check(readUplink(t, s, path, bridge), bridge); why == "" {
			return ""
		}
	}
	return why
}

// bridgeLab is host 1 of a one-host segment with a default route through
// the router, servers on the host and the router, and a connection from
// the router to the host that stays open throughout.
type bridgeLab struct {
	seg  *segment
	h    *segHost
	conn net.Conn
}

func newBridgeLab(t *testing.T, flags ...string) *bridgeLab {
	t.Helper()
	seg := newSegment(t, 1, flags...)
	h := seg.hosts[0]
	hh := seg.handle(h.HostNS)
	up, err := hh.LinkByName(segUplink)
	if err != nil {
		t.Fatal(err)
	}
	// (The host's own default route, through its other link, has metric 0.)
	if err := hh.RouteAdd(&netlink.Route{LinkIndex: up.Attrs().Index, Gw: net.ParseIP(routerA), Priority: segMetric}); err != nil {
		t.Fatalf("the host's default route: %v", err)
	}
	serveHost(t, h.HostNS)
	serveHost(t, seg.router)
	c, err := Dial(t, seg.router, "tcp", netip.AddrPortFrom(h.addr, 7000).String(), 5*time.Second)
	if err != nil {
		t.Fatalf("dial the host from the router: %v", err)
	}
	t.Cleanup(func() { c.Close() })
	return &bridgeLab{seg: seg, h: h, conn: c}
}

// keepTalking exchanges a line with the host every 20 ms over a
// connection of its own from the router, from now until the returned stop
// is called (it lets a few more exchanges pass first), which reports the
// exchanges that failed (each may take 3 s: a segment lost for a moment
// costs a retransmission, not a failure).
func (l *bridgeLab) keepTalking(t *testing.T) (stop func() (failed []string, rounds int)) {
	t.Helper()
	c, err := Dial(t, l.seg.router, "tcp", netip.AddrPortFrom(l.h.addr, 7000).String(), 5*time.Second)
	if err != nil {
		t.Fatalf("dial the host from the router: %v", err)
	}
	done := make(chan struct{})
	type result struct {
		failed []string
		rounds int
	}
	out := make(chan result, 1)
	go func() {
		defer c.Close()
		var r result
		for {
			select {
			case <-done:
				out <- r
				return
			case <-time.After(20 * time.Millisecond):
			}
			r.rounds++
			if _, err := Exchange(c, "ping", 3*time.Second); err != nil {
				r.failed = append(r.failed, err.Error())
				if len(r.failed) > 3 {
					<-done
					out <- r
					return
				}
			}
		}
	}()
	var once sync.Once
	var r result
	stop = func() ([]string, int) {
		once.Do(func() { time.Sleep(200 * time.Millisecond); close(done); r = <-out })
		return r.failed, r.rounds
	}
	t.Cleanup(func() { stop() })
	return stop
}

// hostReachable checks that the router's connection to the host carries
// on and that the router reaches the host afresh.
func (l *bridgeLab) hostReachable(t *testing.T, step string) {
	t.Helper()
	if _, err := Exchange(l.conn, "still there", 5*time.Second); err != nil {
		t.Errorf("%s: the router's connection to the host broke: %v", step, err)
	}
	if !reachTCP(t, l.seg.router, netip.AddrPortFrom(l.h.addr, 7000).String()) {
		t.Errorf("%s: the router does not reach the host", step)
	}
}

const uplinkBridgeOpt = "hostnet.uplink_mode=bridge"

// create makes the bridge-mode network through the CLI.
func (l *bridgeLab) create(t *testing.T, name string) *api.Network {
	t.Helper()
	l.h.MustCLI("network", "create", "-d", "transparent", "--subnet", segA, "--ip-range", "192.0.2.128/26", "--gateway", routerA,
		"-o", "com.docker.network.windowsshim.interface="+segUplink, "-o", uplinkBridgeOpt, name)
	n, err := l.h.Client().GetNetwork(context.Background(), name)
	if err != nil {
		t.Fatal(err)
	}
	return n
}

// TestTransparentBridgeOnASegment: a Transparent network of UplinkMode
// Bridge takes the uplink (the host's addresses and default route move to
// its bridge, the host stays reachable throughout); its endpoints are on
// the segment with their own MACs and reach the router, each other and the
// host; ACLs and anti-spoofing hold; a connection survives restarts; an
// uplink freed by hand is taken again; the delete hands everything back.
func TestTransparentBridgeOnASegment(t *testing.T) {
	l := newBridgeLab(t)
	h, seg := l.h, l.seg
	talking := l.keepTalking(t)
	n := l.create(t, "lan")
	if n.UplinkMode != api.UplinkBridge || !strings.HasPrefix(n.BridgeName, "hnbr") {
		t.Fatalf("inspect: UplinkMode %q, BridgeName %q; want Bridge and the network's bridge", n.UplinkMode, n.BridgeName)
	}
	if out := h.MustCLI("network", "inspect", "lan"); !strings.Contains(strings.Join(strings.Fields(out), ""), `"UplinkMode":"Bridge"`) {
		t.Errorf("network inspect does not show UplinkMode Bridge:\n%s", out)
	}
	br := n.BridgeName
	if why := waitUplink(t, seg, h.HostNS, br, uplinkState.handedOver); why != "" {
		t.Fatalf("after the create: %s: %+v", why, readUplink(t, seg, h.HostNS, br))
	}
	l.hostReachable(t, "after the create")
	if failed, rounds := talking(); len(failed) > 0 {
		t.Errorf("the router's exchanges with the host failed during the create (%d of %d): %v", len(failed), rounds, failed)
	} else {
		t.Logf("the router's exchanges with the host during the create: %d, none failed", rounds)
	}

	wire := seg.capture(h.port)
	a1, a2 := attachL2(t, h, n.ID, "a1"), attachL2(t, h, n.ID, "a2")
	router := netip.MustParseAddr(routerA)
	ep := func(e l2Endpoint) string { return e.Namespace.NetNamespacePath }
	runMatrix(t, "Transparent over a bridge", []matrixRow{
		{"a1", "external (the router)", ep(a1), router, true},
		{"external (the router)", "a1", seg.router, a1.Addr, true},
		{"a1", "a2 (same host)", ep(a1), a2.Addr, true},
		{"a2", "a1 (same host)", ep(a2), a1.Addr, true},
		{"a2", "external (the router)", ep(a2), router, true},
		{"host", "a1 (its endpoint)", h.HostNS, a1.Addr, true},
		{"a1", "host", ep(a1), h.addr, true},
	})
	// The rows above keep the host's own traffic off the wire (it talks
	// to its endpoints through the bridge): the router's exchange with it
	// puts some there while the capture runs.
	l.hostReachable(t, "during the capture")
	seen := wire.sources()
	for _, e := range []l2Endpoint{a1, a2} {
		if macs := seen[e.Addr]; !macs[e.mac.String()] || macs[h.mac.String()] {
			t.Errorf("frames of %s (%s) left with source MACs %v, want its own %s and never the host's %s", e.Endpoint.Name, e.Addr, sortedMACs(macs), e.mac, h.mac)
		}
	}
	if macs := seen[h.addr]; !macs[h.mac.String()] || len(macs) != 1 {
		t.Errorf("the host's frames left with source MACs %v, want its own %s only", sortedMACs(macs), h.mac)
	}

	lab := &l2Lab{seg: seg, h1: h, a1: a1, a2: a2}
	lab.aclBlocks(t, seg.router, router)
	lab.aclBlocks(t, h.HostNS, h.addr)

	// Anti-spoofing: a free address of the segment sends nothing.
	free := netip.MustParseAddr("192.0.2.250")
	seg.addAddrByMAC(ep(a1), a1.mac, free.String()+"/24")
	toRouter := netip.AddrPortFrom(router, 7000).String()
	if a, err := talkFrom(t, ep(a1), free, toRouter); err == nil {
		t.Errorf("a1 reached the router from a free address: seen from %s", a)
	}
	if a, err := talkFrom(t, ep(a1), free, netip.AddrPortFrom(a2.Addr, 7000).String()); err == nil {
		t.Errorf("a1 reached a2 from a free address: seen from %s", a)
	}
	if a, err := talkFrom(t, ep(a1), a1.Addr, toRouter); err != nil || a != a1.Addr {
		t.Errorf("a1 from its own address after the spoofed ones: %v %v", a, err)
	}

	lab.restartKeepsTraffic(t)
	l.hostReachable(t, "after the restarts")
	if why := readUplink(t, seg, h.HostNS, br).handedOver(br); why != "" {
		t.Errorf("after the restarts: %s", why)
	}

	// Freed by hand, its addresses and route put back on it: taken again.
	hh := seg.handle(h.HostNS)
	up, _ := hh.LinkByName(segUplink)
	bl, _ := hh.LinkByName(br)
	if err := hh.LinkSetNoMaster(up); err != nil {
		t.Fatal(err)
	}
	for _, p := range hostPrefixes {
		a := &netlink.Addr{IPNet: &net.IPNet{IP: p.Addr().AsSlice(), Mask: net.CIDRMask(p.Bits(), 32)}}
		_ = hh.AddrDel(bl, a)
		if err := hh.AddrAdd(up, a); err != nil {
			t.Fatal(err)
		}
	}
	if err := hh.RouteReplace(&netlink.Route{LinkIndex: up.Attrs().Index, Gw: net.ParseIP(routerA), Priority: segMetric}); err != nil {
		t.Fatal(err)
	}
	if why := waitUplink(t, seg, h.HostNS, br, uplinkState.handedOver); why != "" {
		t.Errorf("the uplink freed by hand was not taken again: %s", why)
	}
	if !reachTCP(t, seg.router, netip.AddrPortFrom(a1.Addr, 7000).String()) {
		t.Error("after the repair, the router does not reach a1")
	}
	l.hostReachable(t, "after the repair")

	// The delete hands everything back.
	ctx := context.Background()
	talking = l.keepTalking(t)
	for _, e := range []l2Endpoint{a1, a2} {
		if err := h.Client().DeleteEndpoint(ctx, e.Endpoint.ID); err != nil {
			t.Fatal(err)
		}
	}
	if err := h.Client().DeleteNetwork(ctx, n.ID); err != nil {
		t.Fatal(err)
	}
	if why := waitUplink(t, seg, h.HostNS, br, uplinkState.handedBack); why != "" {
		t.Errorf("after the delete: %s: %+v", why, readUplink(t, seg, h.HostNS, br))
	}
	l.hostReachable(t, "after the delete")
	if failed, rounds := talking(); len(failed) > 0 {
		t.Errorf("the router's exchanges with the host failed during the delete (%d of %d): %v", len(failed), rounds, failed)
	} else {
		t.Logf("the router's exchanges with the host during the delete: %d, none failed", rounds)
	}
}

// TestTransparentBridgeRepairsOnNotice: with the periodic check an hour
// apart, only the kernel's notices start a repair: an uplink freed by hand
// is taken again, and an address of the host's put back on it (a DHCP
// client's renewal) moves to the bridge, while the router keeps talking
// with the host.
func TestTransparentBridgeRepairsOnNotice(t *testing.T) {
	l := newBridgeLab(t, "--repair-interval=1h")
	n := l.create(t, "lan")
	br := n.BridgeName
	if why := waitUplink(t, l.seg, l.h.HostNS, br, uplinkState.handedOver); why != "" {
		t.Fatalf("after the create: %s", why)
	}
	talking := l.keepTalking(t)
	hh := l.seg.handle(l.h.HostNS)
	up, err := hh.LinkByName(segUplink)
	if err != nil {
		t.Fatal(err)
	}
	if err := hh.LinkSetNoMaster(up); err != nil {
		t.Fatal(err)
	}
	if why := waitUplink(t, l.seg, l.h.HostNS, br, uplinkState.handedOver); why != "" {
		t.Errorf("the uplink freed by hand was not taken again: %s\n%s", why, l.h.LogTail(20))
	}
	p := hostPrefixes[0]
	if err := hh.AddrAdd(up, &netlink.Addr{IPNet: &net.IPNet{IP: p.Addr().AsSlice(), Mask: net.CIDRMask(p.Bits(), 32)}}); err != nil {
		t.Fatal(err)
	}
	if why := waitUplink(t, l.seg, l.h.HostNS, br, uplinkState.handedOver); why != "" {
		t.Errorf("the address put back on the uplink was not moved: %s\n%s", why, l.h.LogTail(20))
	}
	if failed, rounds := talking(); len(failed) > 0 {
		t.Errorf("the router's exchanges with the host failed (%d of %d): %v", len(failed), rounds, failed)
	}
	l.hostReachable(t, "after the repairs")
}

// TestTransparentBridgeCleanup: `hostnetd --cleanup` hands the uplink back
// as a delete does.
func TestTransparentBridgeCleanup(t *testing.T) {
	l := newBridgeLab(t)
	n := l.create(t, "lan")
	attachL2(t, l.h, n.ID, "a1")
	if why := waitUplink(t, l.seg, l.h.HostNS, n.BridgeName, uplinkState.handedOver); why != "" {
		t.Fatalf("after the create: %s", why)
	}
	l.h.Stop()
	out, code := l.h.cleanup(t, "--force")
	if code != 0 {
		t.Fatalf("cleanup: exit %d:\n%s", code, out)
	}
	if why := readUplink(t, l.seg, l.h.HostNS, n.BridgeName).handedBack(""); why != "" {
		t.Errorf("after the cleanup: %s:\n%s", why, out)
	}
	l.hostReachable(t, "after the cleanup")
}

// TestTransparentBridgeRefusals: UplinkMode on another type, an unknown
// mode, a bridge on an uplink another network uses, and any network on
// an uplink a bridge holds are each a 400 naming the field; the uplink is
// left as it was.
func TestTransparentBridgeRefusals(t *testing.T) {
	l := newBridgeLab(t)
	h := l.h
	ctx := context.Background()
	settings, _ := json.Marshal(api.NetAdapterNameSettings{NetworkAdapterName: segUplink})
	doc := func(typ api.NetworkType, mode string) *api.Network {
		return &api.Network{Name: "bad", Type: typ, UplinkMode: mode,
			Ipams:    []api.Ipam{{Type: "Static", Subnets: []api.Subnet{{IpAddressPrefix: segA, IpRange: "192.0.2.192/26"}}}},
			Policies: []api.Policy{{Type: api.NetAdapterName, Settings: settings}}}
	}
	refused := func(what string, n *api.Network, want ...string) {
		t.Helper()
		_, err := h.Client().CreateNetwork(ctx, n)
		if err == nil {
			t.Errorf("%s: created, want a 400", what)
			return
		}
		if apiErr, ok := errors.AsType[*api.Error](err); !ok || apiErr.Status != 400 {
			t.Errorf("%s: %v, want a 400", what, err)
		}
		for _, w := range want {
			if !strings.Contains(err.Error(), w) {
				t.Errorf("%s: error %q does not name %s", what, err, w)
			}
		}
	}
	refused("UplinkMode on L2Bridge", doc(api.L2Bridge, "Bridge"), "UplinkMode")
	refused("an unknown mode", doc(api.Transparent, "Hub"), "UplinkMode", `"Hub"`)
	if why := readUplink(t, l.seg, h.HostNS, "none").handedBack(""); why != "" {
		t.Errorf("after the refusals: %s", why)
	}

	// A bridge on an uplink a network of macvlans uses.
	mv := h.l2Network(t, api.Transparent, "mv", segA, "192.0.2.128/26", routerA)
	refused("a bridge on a used uplink", doc(api.Transparent, "Bridge"), "Policies (NetAdapterName)", `"mv"`)
	if err := h.Client().DeleteNetwork(ctx, mv.ID); err != nil {
		t.Fatal(err)
	}
	// Any network on an uplink a bridge holds.
	n := l.create(t, "lan")
	// (A create retried with the same document is answered with the
	// network, though its own bridge holds the uplink now.)
	if again, err := h.Client().CreateNetwork(ctx, n); err != nil || again.ID != n.ID {
		t.Errorf("the create retried: %v, want the network %s", err, n.ID)
	}
	refused("a network of macvlans on an uplink a bridge holds", doc(api.Transparent, ""), "Policies (NetAdapterName)", `"lan"`)
	refused("an L2Bridge network on an uplink a bridge holds", doc(api.L2Bridge, ""), "Policies (NetAdapterName)", `"lan"`)
	if why := readUplink(t, l.seg, h.HostNS, n.BridgeName).handedOver(n.BridgeName); why != "" {
		t.Errorf("after the refusals on a held uplink: %s", why)
	}
	if err := h.Client().DeleteNetwork(ctx, n.ID); err != nil {
		t.Fatal(err)
	}
	if why := waitUplink(t, l.seg, h.HostNS, n.BridgeName, uplinkState.handedBack); why != "" {
		t.Errorf("after the delete: %s", why)
	}
	l.hostReachable(t, "after the refusals")
}

// TestTransparentBridgeDHCP: an endpoint of a DHCP network over a bridge
// takes its address from the segment's server (its discovery from 0.0.0.0
// passes the port's anti-spoofing), reaches the router and the host, and
// renews its lease.
func TestTransparentBridgeDHCP(t *testing.T) {
	seg := newSegment(t, 1, "--dhcp-timeout=5s")
	h := seg.hosts[0]
	srv := startDHCPServer(t, seg)
	h.MustCLI("network", "create", "-d", "transparent", "--ipam-driver", "dhcp", "-o", "com.docker.network.windowsshim.interface="+segUplink,
		"-o", uplinkBridgeOpt, "dhcp")
	n, err := h.Client().GetNetwork(context.Background(), "dhcp")
	if err != nil {
		t.Fatal(err)
	}
	if why := waitUplink(t, seg, h.HostNS, n.BridgeName, uplinkState.handedOver); why != "" && !strings.Contains(why, "default route") {
		t.Fatalf("after the create: %s", why)
	}
	ep := h.AttachNew(n.ID, "d1")
	mac, err := net.ParseMAC(ep.Endpoint.MacAddress)
	if err != nil {
		t.Fatal(err)
	}
	if bound, ok := srv.Bound(mac); !ok || bound != ep.Addr {
		t.Fatalf("endpoint has %s, the server holds %s (%t) for %s", ep.Addr, bound, ok, mac)
	}
	Serve(t, ep.Namespace.NetNamespacePath, "tcp", ":7000")
	serveHost(t, seg.router)
	serveHost(t, h.HostNS)
	to := func(a netip.Addr) string { return netip.AddrPortFrom(a, 7000).String() }
	if !reachTCP(t, ep.Namespace.NetNamespacePath, to(netip.MustParseAddr(routerA))) {
		t.Error("the DHCP endpoint does not reach the router")
	}
	if !reachTCP(t, seg.router, to(ep.Addr)) {
		t.Error("the router does not reach the DHCP endpoint")
	}
	if !reachTCP(t, h.HostNS, to(ep.Addr)) || !reachTCP(t, ep.Namespace.NetNamespacePath, to(h.addr)) {
		t.Error("the host and the DHCP endpoint do not reach each other")
	}
	if _, ok := srv.WaitFor(10*time.Second, mac, isRenewal(ep.Addr)); !ok {
		t.Error("the lease was not renewed")
	}
}
