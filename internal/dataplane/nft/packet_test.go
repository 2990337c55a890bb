package nft

import (
	"errors"
	"net"
	"net/netip"
	"os"
	"reflect"
	"testing"
	"time"

	"github.com/hostnet/hostnet/internal/dataplane/netns"
	"github.com/hostnet/hostnet/internal/nftmodel"
	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// Real-packet tests: throwaway namespaces joined by veth pairs, UDP
// sockets opened inside them, and a hostnet table installed in one of them.

func nlHandle(t *testing.T, ns netns.Handle) *netlink.Handle {
	t.Helper()
	h, err := netlink.NewHandleAt(ns)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(h.Close)
	return h
}

// veth links namespace a (interface nameA) to namespace b (nameB), both up.
func veth(t *testing.T, a, b netns.Handle, nameA, nameB string) {
	t.Helper()
	ha, hb := nlHandle(t, a), nlHandle(t, b)
	if err := ha.LinkAdd(&netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: nameA}, PeerName: nameB, PeerNamespace: netlink.NsFd(int(b))}); err != nil {
		t.Fatalf("add veth %s/%s: %v", nameA, nameB, err)
	}
	for _, x := range []struct {
		h    *netlink.Handle
		name string
	}{{ha, nameA}, {hb, nameB}} {
		l, err := x.h.LinkByName(x.name)
		if err != nil {
			t.Fatal(err)
		}
		if err := x.h.LinkSetUp(l); err != nil {
			t.Fatal(err)
		}
	}
}

// addrs assigns addresses (without IPv6 duplicate address detection).
func addrs(t *testing.T, ns netns.Handle, link string, cidrs ...string) {
	t.Helper()
	h := nlHandle(t, ns)
	l, err := h.LinkByName(link)
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range cidrs {
		a, err := netlink.ParseAddr(c)
		if err != nil {
			t.Fatal(err)
		}
		a.Flags = unix.IFA_F_NODAD
		if err := h.AddrAdd(l, a); err != nil {
			t.Fatalf("add %s to %s: %v", c, link, err)
		}
	}
}

func defaultRoute(t *testing.T, ns netns.Handle, gw string) {
	t.Helper()
	if err := nlHandle(t, ns).RouteAdd(&netlink.Route{Gw: net.ParseIP(gw)}); err != nil {
		t.Fatalf("default route via %s: %v", gw, err)
	}
}

// listenUDP opens a UDP socket bound to addr inside ns.
func listenUDP(t *testing.T, ns netns.Handle, addr string) *net.UDPConn {
	t.Helper()
	var c *net.UDPConn
	err := netns.Do(ns, func() error {
		var err error
		c, err = net.ListenUDP("udp", net.UDPAddrFromAddrPort(netip.MustParseAddrPort(addr)))
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// sendUDP sends one datagram from address from (port 0) to address to,
// inside ns.
func sendUDP(t *testing.T, ns netns.Handle, from, to, payload string) {
	t.Helper()
	err := netns.Do(ns, func() error {
		l := &net.UDPAddr{IP: net.ParseIP(from)}
		c, err := net.DialUDP("udp", l, net.UDPAddrFromAddrPort(netip.MustParseAddrPort(to)))
		if err != nil {
			return err
		}
		defer c.Close()
		_, err = c.Write([]byte(payload))
		return err
	})
	if err != nil {
		t.Fatalf("send %s -> %s: %v", from, to, err)
	}
}

// recvUDP returns the next datagram on c, or "" after timeout.
func recvUDP(t *testing.T, c *net.UDPConn, timeout time.Duration) string {
	t.Helper()
	buf := make([]byte, 1500)
	c.SetReadDeadline(time.Now().Add(timeout))
	n, err := c.Read(buf)
	if errors.Is(err, os.ErrDeadlineExceeded) {
		return ""
	}
	if err != nil {
		t.Fatal(err)
	}
	return string(buf[:n])
}

// expectFlow sends payload from src to dst inside ns and checks that it
// arrives (pass) or not. Markers from markerSrc, an address the rules let
// through, resolve neighbours first (so neither ARP nor ND depends on the
// packet under test) and catch a payload that arrives late.
func expectFlow(t *testing.T, ns netns.Handle, markerSrc, src string, c *net.UDPConn, dst, payload string, pass bool) {
	t.Helper()
	expectFlowVia(t, ns, markerSrc, ns, src, c, dst, payload, pass)
}

// TestPacketInputDrop installs, in namespace B, an input chain that drops
// packets whose source address is in an interval set, or whose source
// address and destination port are in a concatenated interval set (a
// prefix and a port range: multi-field intervals), and sends UDP from
// namespace A with source addresses and ports inside and outside the sets.
func TestPacketInputDrop(t *testing.T) {
	a, b := newNS(t), newNS(t)
	veth(t, a, b, "a0", "b0")
	addrs(t, a, "a0", "10.77.0.1/24", "10.77.0.5/24", "10.77.0.9/24", "fd77::1/64", "fd77::5/64")
	addrs(t, b, "b0", "10.77.0.10/24", "fd77::10/64")

	tbl := &nftmodel.Table{
		Name: "hostnet",
		Sets: []*nftmodel.Set{
			{Name: "blocked_v4", Key: []nftmodel.KeyType{nftmodel.KeyIPv4}, Interval: true, Elements: []string{"10.77.0.4/30", "10.77.0.100-10.77.0.200"}},
			{Name: "blocked_v6", Key: []nftmodel.KeyType{nftmodel.KeyIPv6}, Interval: true, Elements: []string{"fd77::4/126"}},
			{Name: "blocked_svc", Key: []nftmodel.KeyType{nftmodel.KeyIPv4, nftmodel.KeyInetService}, Interval: true,
				Elements: []string{"10.77.0.8/30 . 9000-9999"}},
		},
		Chains: []*nftmodel.Chain{{Name: "input", Type: nftmodel.ChainTypeFilter, Hook: nftmodel.HookInput, Priority: nftmodel.PriorityFilter, Rules: []nftmodel.Rule{
			{Comment: "block v4", Exprs: []nftmodel.Expr{nftmodel.IPSaddr().InSet("blocked_v4"), nftmodel.Counter(), nftmodel.Drop()}},
			{Comment: "block v6", Exprs: []nftmodel.Expr{nftmodel.IP6Saddr().InSet("blocked_v6"), nftmodel.Counter(), nftmodel.Drop()}},
			{Comment: "block services", Exprs: []nftmodel.Expr{nftmodel.L4Proto().Eq("udp"),
				nftmodel.Concat(nftmodel.IPSaddr(), nftmodel.THDport()).InSet("blocked_svc"), nftmodel.Counter(), nftmodel.Drop()}},
		}}},
	}
	k := newKernel(t, b)
	mustApply(t, k, tbl, nil)

	c4 := listenUDP(t, b, "10.77.0.10:9999")
	c6 := listenUDP(t, b, "[fd77::10]:9999")
	at8888 := listenUDP(t, b, "10.77.0.10:8888")
	expectFlow(t, a, "10.77.0.1", "10.77.0.1", c4, "10.77.0.10:9999", "v4 outside the set", true)
	expectFlow(t, a, "10.77.0.1", "10.77.0.5", c4, "10.77.0.10:9999", "v4 inside the set", false)
	expectFlow(t, a, "fd77::1", "fd77::1", c6, "[fd77::10]:9999", "v6 outside the set", true)
	expectFlow(t, a, "fd77::1", "fd77::5", c6, "[fd77::10]:9999", "v6 inside the set", false)
	expectFlow(t, a, "10.77.0.1", "10.77.0.9", c4, "10.77.0.10:9999", "address and port inside", false)
	expectFlow(t, a, "10.77.0.1", "10.77.0.9", at8888, "10.77.0.10:8888", "port outside", true)

	if got := packets(t, k, "hostnet", "input"); !reflect.DeepEqual(got, []uint64{1, 1, 1}) {
		t.Errorf("drop counters = %v, want [1 1 1]", got)
	}

	// Remove the elements: the same sources now pass. A patch adds a
	// second service interval, ports 8000-8888 from 10.77.0.9.
	tbl.Sets[0].Elements = []string{"10.77.0.100-10.77.0.200"}
	tbl.Sets[1].Elements = nil
	mustApply(t, k, tbl, []string{"delete 1 elements from set blocked_v4", "delete 1 elements from set blocked_v6"})
	expectFlow(t, a, "10.77.0.1", "10.77.0.5", c4, "10.77.0.10:9999", "v4 no longer blocked", true)
	expectFlow(t, a, "fd77::1", "fd77::5", c6, "[fd77::10]:9999", "v6 no longer blocked", true)
	if err := k.Patch(nftmodel.TablePatch{Table: "hostnet", AddElements: map[string][]string{"blocked_svc": {"10.77.0.9 . 8000-8888"}}}); err != nil {
		t.Fatal(err)
	}
	expectFlow(t, a, "10.77.0.1", "10.77.0.9", at8888, "10.77.0.10:8888", "port now inside", false)
	expectFlow(t, a, "10.77.0.1", "10.77.0.5", at8888, "10.77.0.10:8888", "address outside", true)
}

// TestPacketForwardConcat routes between A and B through R, whose forward
// chain (policy drop) accepts only the (input, output) interface pairs in
// an ifname . ifname set: this proves the two names land in adjacent
// registers as the set's key expects.
func TestPacketForwardConcat(t *testing.T) {
	a, r, b := newNS(t), newNS(t), newNS(t)
	veth(t, a, r, "a0", "ra")
	veth(t, r, b, "rb", "b0")
	addrs(t, a, "a0", "10.78.1.2/24")
	addrs(t, r, "ra", "10.78.1.1/24")
	addrs(t, r, "rb", "10.78.2.1/24")
	addrs(t, b, "b0", "10.78.2.2/24")
	defaultRoute(t, a, "10.78.1.1")
	defaultRoute(t, b, "10.78.2.1")
	if err := netns.Do(r, func() error {
		return os.WriteFile("/proc/sys/net/ipv4/ip_forward", []byte("1"), 0o644)
	}); err != nil {
		t.Fatal(err)
	}

	tbl := &nftmodel.Table{
		Name: "hostnet",
		Sets: []*nftmodel.Set{{Name: "pairs", Key: []nftmodel.KeyType{nftmodel.KeyIfname, nftmodel.KeyIfname}, Elements: []string{"ra . rb", "rb . rb"}}},
		Chains: []*nftmodel.Chain{{Name: "forward", Type: nftmodel.ChainTypeFilter, Hook: nftmodel.HookForward, Priority: nftmodel.PriorityFilter, Policy: nftmodel.VerdictDrop, Rules: []nftmodel.Rule{
			{Comment: "allowed pairs", Exprs: []nftmodel.Expr{nftmodel.Concat(nftmodel.Iifname(), nftmodel.Oifname()).InSet("pairs"), nftmodel.Accept()}},
		}}},
	}
	k := newKernel(t, r)
	mustApply(t, k, tbl, nil)

	atB := listenUDP(t, b, "10.78.2.2:9999")
	atA := listenUDP(t, a, "10.78.1.2:9999")
	// Markers need a path too: send them from R itself (not forwarded).
	expectFlowVia(t, r, "10.78.2.1", a, "10.78.1.2", atB, "10.78.2.2:9999", "a to b", true)
	expectFlowVia(t, r, "10.78.1.1", b, "10.78.2.2", atA, "10.78.1.2:9999", "b to a", false)

	tbl.Sets[0].Elements = append(tbl.Sets[0].Elements, "rb . ra")
	mustApply(t, k, tbl, []string{"add 1 elements to set pairs"})
	expectFlowVia(t, r, "10.78.1.1", b, "10.78.2.2", atA, "10.78.1.2:9999", "b to a, now allowed", true)
}

// expectFlowVia sends payload from src inside from to dst and checks that
// it arrives (pass) or not. Markers, sent from routerSrc inside router (for
// forwarded traffic: the router's own output, not subject to the forward
// chain), resolve neighbours first and catch a payload that arrives late.
func expectFlowVia(t *testing.T, router netns.Handle, routerSrc string, from netns.Handle, src string, c *net.UDPConn, dst, payload string, pass bool) {
	t.Helper()
	marker := func(m string) func() {
		return func() {
			sendUDP(t, router, routerSrc, dst, m)
			if got := recvUDP(t, c, 3*time.Second); got != m {
				t.Fatalf("marker %q to %s: got %q", m, dst, got)
			}
		}
	}
	marker("before")()
	expectUDP(t, from, src, c, dst, payload, pass, marker("after"))
}

// expectUDP sends payload from src inside from to dst and checks whether
// c gets it; a dropped payload is followed by marker, if any, which must
// then be the next thing c gets (a late payload would come before it).
func expectUDP(t *testing.T, from netns.Handle, src string, c *net.UDPConn, dst, payload string, pass bool, marker func()) {
	t.Helper()
	sendUDP(t, from, src, dst, payload)
	if pass {
		if got := recvUDP(t, c, 3*time.Second); got != payload {
			t.Errorf("%s -> %s: %q did not arrive (got %q)", src, dst, payload, got)
		}
		return
	}
	if got := recvUDP(t, c, 500*time.Millisecond); got != "" {
		t.Errorf("%s -> %s: %q was not dropped (got %q)", src, dst, payload, got)
	}
	if marker != nil {
		marker()
	}
}
