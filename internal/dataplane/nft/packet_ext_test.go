package nft

import (
	"fmt"
	"io"
	"net"
	"os"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/hostnet/hostnet/internal/dataplane/netns"
	"github.com/hostnet/hostnet/internal/nftmodel"
	"github.com/hostnet/hostnet/internal/nftmodel/nfttest"
	"github.com/vishvananda/netlink"
)

// serveTCP listens on addr inside ns (network "tcp4" or "tcp6"); each
// connection is answered with "LOCAL from REMOTE" (the server's view of
// it) and closed.
func serveTCP(t *testing.T, ns netns.Handle, network, addr string) {
	t.Helper()
	var l net.Listener
	if err := netns.Do(ns, func() error {
		var err error
		l, err = net.Listen(network, addr)
		return err
	}); err != nil {
		t.Fatalf("listen on %s: %v", addr, err)
	}
	t.Cleanup(func() { l.Close() })
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			fmt.Fprintf(c, "%s from %s", c.LocalAddr(), c.RemoteAddr())
			c.Close()
		}
	}()
}

// dialTCP connects from inside ns to addr and returns what the server
// says.
func dialTCP(ns netns.Handle, addr string, timeout time.Duration) (string, error) {
	var c net.Conn
	if err := netns.Do(ns, func() error {
		var err error
		c, err = net.DialTimeout("tcp", addr, timeout)
		return err
	}); err != nil {
		return "", err
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(timeout))
	b, err := io.ReadAll(c)
	return string(b), err
}

// expectTCP dials addr from ns and checks the server's answer starts with
// want ("" = the connection must fail).
func expectTCP(t *testing.T, ns netns.Handle, addr, want string) {
	t.Helper()
	got, err := dialTCP(ns, addr, 2*time.Second)
	switch {
	case want == "" && err == nil:
		t.Errorf("connect to %s succeeded (%q), want it refused or dropped", addr, got)
	case want == "":
		t.Logf("connect to %s failed as expected: %v", addr, err)
	case err != nil:
		t.Errorf("connect to %s: %v (want %q)", addr, err, want)
	case !strings.HasPrefix(got, want):
		t.Errorf("connect to %s reached %q, want %q", addr, got, want)
	}
}

func sysctl(t *testing.T, ns netns.Handle, path, value string) {
	t.Helper()
	if err := netns.Do(ns, func() error { return os.WriteFile(path, []byte(value), 0o644) }); err != nil {
		t.Fatal(err)
	}
}

// routed builds client C — router R — server S: C and R on 10.81.1.0/24
// and fd81:1::/64, R and S on 10.81.2.0/24 and fd81:2::/64; R forwards
// and also owns 10.81.1.100 (a second host address, the "VIP"). S listens
// on ports 80 and 81.
func routed(t *testing.T) (c, r, s netns.Handle) {
	t.Helper()
	c, r, s = newNS(t), newNS(t), newNS(t)
	for _, ns := range []netns.Handle{c, r, s} {
		// No duplicate address detection on the links to come, so that
		// neighbour discovery works at once.
		sysctl(t, ns, "/proc/sys/net/ipv6/conf/default/accept_dad", "0")
	}
	veth(t, c, r, "c0", "rc")
	veth(t, r, s, "rs", "s0")
	addrs(t, c, "c0", "10.81.1.2/24", "fd81:1::2/64")
	addrs(t, r, "rc", "10.81.1.1/24", "10.81.1.100/24", "fd81:1::1/64")
	addrs(t, r, "rs", "10.81.2.1/24", "fd81:2::1/64")
	addrs(t, s, "s0", "10.81.2.2/24", "fd81:2::2/64")
	defaultRoute(t, c, "10.81.1.1")
	defaultRoute(t, c, "fd81:1::1")
	defaultRoute(t, s, "10.81.2.1")
	defaultRoute(t, s, "fd81:2::1")
	sysctl(t, r, "/proc/sys/net/ipv4/ip_forward", "1")
	sysctl(t, r, "/proc/sys/net/ipv6/conf/all/forwarding", "1")
	for _, port := range []string{"80", "81"} {
		serveTCP(t, s, "tcp4", "0.0.0.0:"+port)
		serveTCP(t, s, "tcp6", "[::]:"+port)
	}
	return c, r, s
}

// publishTable is R's table: published ports through DNAT maps, keyed by
// protocol and port (any host address) or by address, protocol and port.
func publishTable() *nftmodel.Table {
	return &nftmodel.Table{
		Name: "hostnet",
		Maps: []*nftmodel.Map{
			{Name: "pm", Key: []nftmodel.KeyType{nftmodel.KeyInetProto, nftmodel.KeyInetService}, Value: []nftmodel.KeyType{nftmodel.KeyIPv4, nftmodel.KeyInetService}},
			{Name: "pm6", Key: []nftmodel.KeyType{nftmodel.KeyInetProto, nftmodel.KeyInetService}, Value: []nftmodel.KeyType{nftmodel.KeyIPv6, nftmodel.KeyInetService}},
			{Name: "pm4_vip", Key: []nftmodel.KeyType{nftmodel.KeyIPv4, nftmodel.KeyInetProto, nftmodel.KeyInetService}, Value: []nftmodel.KeyType{nftmodel.KeyIPv4, nftmodel.KeyInetService}},
		},
		Chains: []*nftmodel.Chain{
			{Name: "publish", Type: nftmodel.ChainTypeNAT, Hook: nftmodel.HookPrerouting, Priority: nftmodel.PriorityDstNAT, Rules: []nftmodel.Rule{
				{Comment: "vip", Exprs: []nftmodel.Expr{nftmodel.FibDaddrTypeLocal(), nftmodel.DNATMap(nftmodel.Concat(nftmodel.IPDaddr(), nftmodel.L4Proto(), nftmodel.THDport()), "pm4_vip")}},
				{Comment: "any4", Exprs: []nftmodel.Expr{nftmodel.FibDaddrTypeLocal(), nftmodel.DNATMap(nftmodel.Concat(nftmodel.L4Proto(), nftmodel.THDport()), "pm")}},
				{Comment: "any6", Exprs: []nftmodel.Expr{nftmodel.FibDaddrTypeLocal(), nftmodel.DNATMap(nftmodel.Concat(nftmodel.L4Proto(), nftmodel.THDport()), "pm6")}},
			}},
		},
	}
}

// TestPacketDNATMap publishes S's ports on R's addresses through DNAT maps
// with concatenated keys and address . port values, and connects from C.
func TestPacketDNATMap(t *testing.T) {
	c, r, _ := routed(t)
	k := newKernel(t, r)
	tbl := publishTable()
	mustApply(t, k, tbl, nil)

	// No element: R has nothing on 8080, the connection is refused.
	expectTCP(t, c, "10.81.1.1:8080", "")
	expectTCP(t, c, "[fd81:1::1]:8080", "")

	tbl.Maps[0].Elements = map[string]string{"tcp . 8080": "10.81.2.2 . 80"}
	tbl.Maps[1].Elements = map[string]string{"tcp . 8080": "fd81:2::2 . 80"}
	mustApply(t, k, tbl, []string{"add 1 elements to map pm", "add 1 elements to map pm6"})
	// The server sees the client's own address: DNAT only.
	expectTCP(t, c, "10.81.1.1:8080", "10.81.2.2:80 from 10.81.1.2:")
	expectTCP(t, c, "[fd81:1::1]:8080", "[fd81:2::2]:80 from [fd81:1::2]:")
	// Another port, another protocol: not published.
	expectTCP(t, c, "10.81.1.1:8081", "")

	// The VIP-keyed map wins for its address; the other address keeps
	// the any-address mapping.
	tbl.Maps[2].Elements = map[string]string{"10.81.1.100 . tcp . 8080": "10.81.2.2 . 81"}
	mustApply(t, k, tbl, []string{"add 1 elements to map pm4_vip"})
	expectTCP(t, c, "10.81.1.100:8080", "10.81.2.2:81 from 10.81.1.2:")
	expectTCP(t, c, "10.81.1.1:8080", "10.81.2.2:80 from 10.81.1.2:")

	// Changing a value re-targets new connections.
	tbl.Maps[0].Elements["tcp . 8080"] = "10.81.2.2 . 81"
	mustApply(t, k, tbl, []string{"delete 1 elements from map pm", "add 1 elements to map pm"})
	expectTCP(t, c, "10.81.1.1:8080", "10.81.2.2:81 from 10.81.1.2:")

	// Removing the elements unpublishes.
	for _, m := range tbl.Maps {
		m.Elements = nil
	}
	mustApply(t, k, tbl, nil)
	expectTCP(t, c, "10.81.1.1:8080", "")
	expectTCP(t, c, "10.81.1.100:8080", "")
	expectTCP(t, c, "[fd81:1::1]:8080", "")
}

// TestPacketCtStatusDNAT: with a forward chain of policy drop, `ct status
// dnat accept` lets a published (DNATed) connection through, both ways,
// and not a direct one to the same server port. Then SNATMap rewrites the
// source of forwarded traffic to the mapped address.
func TestPacketCtStatusDNAT(t *testing.T) {
	c, r, _ := routed(t)
	k := newKernel(t, r)
	tbl := publishTable()
	tbl.Maps[0].Elements = map[string]string{"tcp . 8080": "10.81.2.2 . 80"}
	tbl.Chains = append(tbl.Chains, &nftmodel.Chain{
		Name: "forward", Type: nftmodel.ChainTypeFilter, Hook: nftmodel.HookForward, Priority: nftmodel.PriorityFilter, Policy: nftmodel.VerdictDrop,
		Rules: []nftmodel.Rule{{Comment: "published", Exprs: []nftmodel.Expr{nftmodel.CtStatus("dnat"), nftmodel.Counter(), nftmodel.Accept()}}},
	})
	mustApply(t, k, tbl, nil)

	expectTCP(t, c, "10.81.1.1:8080", "10.81.2.2:80 from 10.81.1.2:")
	expectTCP(t, c, "10.81.2.2:80", "") // direct: dropped by the policy
	if got := packets(t, k, "hostnet", "forward"); len(got) != 1 || got[0] < 4 {
		t.Errorf("ct status dnat counter = %v, want the packets of one connection both ways", got)
	}

	// Let non-DNATed traffic through too, and source-NAT C's address for it
	// to an address R does not even own (S routes replies to R).
	tbl.Maps = append(tbl.Maps, &nftmodel.Map{Name: "obnat", Key: []nftmodel.KeyType{nftmodel.KeyIPv4}, Value: []nftmodel.KeyType{nftmodel.KeyIPv4},
		Elements: map[string]string{"10.81.1.2": "10.81.7.7"}})
	fwd := nfttest.ChainOf(tbl, "forward")
	fwd.Rules = append(fwd.Rules, nftmodel.Rule{Comment: "not dnat", Exprs: []nftmodel.Expr{nftmodel.CtStatus("dnat").Not(), nftmodel.Accept()}})
	tbl.Chains = append(tbl.Chains, &nftmodel.Chain{Name: "postrouting", Type: nftmodel.ChainTypeNAT, Hook: nftmodel.HookPostrouting, Priority: nftmodel.PrioritySrcNAT,
		Rules: []nftmodel.Rule{{Comment: "obnat", Exprs: []nftmodel.Expr{nftmodel.Oifname().Eq("rs"), nftmodel.SNATMap(nftmodel.IPSaddr(), "obnat")}}}})
	mustApply(t, k, tbl, nil)
	expectTCP(t, c, "10.81.2.2:80", "10.81.2.2:80 from 10.81.7.7:")
	// A published connection is rewritten both ways.
	expectTCP(t, c, "10.81.1.1:8080", "10.81.2.2:80 from 10.81.7.7:")
}

// bridged builds namespace X with bridge br0 and ports pa and pb, veth
// pairs to namespaces A and B (eth0, 10.82.0.1 and 10.82.0.2, fixed MACs).
func bridged(t *testing.T) (x, a, b netns.Handle) {
	t.Helper()
	x, a, b = newNS(t), newNS(t), newNS(t)
	hx := nlHandle(t, x)
	br := &netlink.Bridge{LinkAttrs: netlink.LinkAttrs{Name: "br0"}}
	if err := hx.LinkAdd(br); err != nil {
		t.Fatal(err)
	}
	veth(t, x, a, "pa", "eth0")
	veth(t, x, b, "pb", "eth0")
	for _, p := range []string{"pa", "pb"} {
		l, err := hx.LinkByName(p)
		if err != nil {
			t.Fatal(err)
		}
		if err := hx.LinkSetMaster(l, br); err != nil {
			t.Fatal(err)
		}
	}
	if err := hx.LinkSetUp(br); err != nil {
		t.Fatal(err)
	}
	setMAC(t, a, macA)
	setMAC(t, b, macB)
	addrs(t, a, "eth0", "10.82.0.1/24")
	addrs(t, b, "eth0", "10.82.0.2/24")
	return x, a, b
}

const (
	macA  = "02:00:00:00:0a:01"
	macB  = "02:00:00:00:0b:01"
	macA2 = "02:00:00:00:0a:02"
)

func setMAC(t *testing.T, ns netns.Handle, mac string) {
	t.Helper()
	h := nlHandle(t, ns)
	l, err := h.LinkByName("eth0")
	if err != nil {
		t.Fatal(err)
	}
	hw, _ := net.ParseMAC(mac)
	if err := h.LinkSetHardwareAddr(l, hw); err != nil {
		t.Fatal(err)
	}
}

// TestPacketBridge: a bridge table in X with a forward chain at priority
// 100 drops frames whose (input port, source MAC) is not in a set, and
// sends frames for B's port through a verdict map to a chain that drops
// UDP to port 9.
func TestPacketBridge(t *testing.T) {
	x, a, b := bridged(t)
	tbl := &nftmodel.Table{
		Family: nftmodel.FamilyBridge,
		Name:   "hostnet",
		Sets:   []*nftmodel.Set{{Name: "macs", Key: []nftmodel.KeyType{nftmodel.KeyIfname, nftmodel.KeyEther}, Elements: []string{"pa . " + macA, `"pb" . ` + macB}}},
		Maps:   []*nftmodel.Map{{Name: "in", Key: []nftmodel.KeyType{nftmodel.KeyIfname}, Verdict: true, Elements: map[string]string{"pb": "jump deny_in"}}},
		Chains: []*nftmodel.Chain{
			{Name: "forward", Type: nftmodel.ChainTypeFilter, Hook: nftmodel.HookForward, Priority: 100, Rules: []nftmodel.Rule{
				{Comment: "source mac", Exprs: []nftmodel.Expr{nftmodel.Concat(nftmodel.Iifname(), nftmodel.EtherSaddr()).NotInSet("macs"), nftmodel.Counter(), nftmodel.Drop()}},
				{Comment: "in", Exprs: []nftmodel.Expr{nftmodel.VMap(nftmodel.Oifname(), "in")}},
			}},
			{Name: "deny_in", Rules: []nftmodel.Rule{
				{Comment: "discard", Exprs: []nftmodel.Expr{nftmodel.L4Proto().Eq("udp"), nftmodel.THDport().Eq("9"), nftmodel.Counter(), nftmodel.Drop()}},
			}},
		},
	}
	k := newKernel(t, x)
	mustApply(t, k, tbl, nil)

	at9 := listenUDP(t, b, "10.82.0.2:9")
	at10 := listenUDP(t, b, "10.82.0.2:10")
	pass10 := func(payload string) func() {
		return func() {
			sendUDP(t, a, "10.82.0.1", "10.82.0.2:10", payload)
			if got := recvUDP(t, at10, 3*time.Second); got != payload {
				t.Errorf("marker %q: got %q", payload, got)
			}
		}
	}
	expectUDP(t, a, "10.82.0.1", at10, "10.82.0.2:10", "to 10", true, nil)
	expectUDP(t, a, "10.82.0.1", at9, "10.82.0.2:9", "to 9", false, pass10("after 9"))
	if got := recvUDP(t, at9, 200*time.Millisecond); got != "" {
		t.Errorf("port 9 got %q late", got)
	}
	if got := familyPackets(t, k, nftmodel.FamilyBridge, "hostnet", "deny_in"); !reflect.DeepEqual(got, []uint64{1}) {
		t.Errorf("deny_in counter = %v, want [1]", got)
	}

	// A's MAC changes: its frames are dropped at the bridge. (The change
	// flushes A's neighbours; a permanent entry for B makes A send the
	// datagram itself rather than queue it behind an ARP request that the
	// bridge drops.)
	setMAC(t, a, macA2)
	ha := nlHandle(t, a)
	eth0, err := ha.LinkByName("eth0")
	if err != nil {
		t.Fatal(err)
	}
	hwB, _ := net.ParseMAC(macB)
	if err := ha.NeighAdd(&netlink.Neigh{LinkIndex: eth0.Attrs().Index, IP: net.ParseIP("10.82.0.2"), HardwareAddr: hwB, State: netlink.NUD_PERMANENT}); err != nil {
		t.Fatal(err)
	}
	before := familyPackets(t, k, nftmodel.FamilyBridge, "hostnet", "forward")[0]
	expectUDP(t, a, "10.82.0.1", at10, "10.82.0.2:10", "from a new mac", false, nil)
	// (A also sends IPv6 neighbour discovery from its new MAC.)
	if got := familyPackets(t, k, nftmodel.FamilyBridge, "hostnet", "forward")[0]; got <= before {
		t.Errorf("source mac counter went from %d to %d, want drops", before, got)
	}
	// Admit the new MAC: A's frames pass again, and the dropped payload
	// never shows up.
	tbl.Sets[0].Elements = []string{"pa . " + macA2, "pb . " + macB}
	mustApply(t, k, tbl, []string{"delete 1 elements from set macs", "add 1 elements to set macs"})
	pass10("admitted")()

	// Re-point B's port at a chain that lets everything in: port 9 works.
	tbl.Chains = append(tbl.Chains, &nftmodel.Chain{Name: "allow_in", Rules: []nftmodel.Rule{{Comment: "all", Exprs: []nftmodel.Expr{nftmodel.Accept()}}}})
	tbl.Maps[0].Elements["pb"] = "jump allow_in"
	mustApply(t, k, tbl, []string{"delete 1 elements from map in", "add chain allow_in", "add 1 elements to map in", "add 1 rules to chain allow_in"})
	expectUDP(t, a, "10.82.0.1", at9, "10.82.0.2:9", "to 9 allowed", true, nil)
}
