package e2e

import (
	"context"
	"fmt"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/google/nftables"
	"github.com/hostnet/hostnet/api"
)

// netdevChains lists the chains of hostnet's netdev table in the host
// namespace of e, each with its number of rules ("ingress_seg0 7"), or
// nil when there is no such table.
func netdevChains(t *testing.T, e *Env) []string {
	t.Helper()
	var out []string
	e.eachHostnetRule(t, nftables.TableFamilyNetdev, func(ch *nftables.Chain, rules []*nftables.Rule) {
		out = append(out, fmt.Sprintf("%s %d", ch.Name, len(rules)))
	})
	return out
}

// hasBaseChains reports whether the netdev chains hold the uplink's
// ingress and egress chains, with rules.
func hasBaseChains(chains []string, uplink string) bool {
	var in, eg bool
	for _, c := range chains {
		name, n, _ := strings.Cut(c, " ")
		in = in || name == "ingress_"+uplink && n != "0"
		eg = eg || name == "egress_"+uplink && n != "0"
	}
	return in && eg
}

// inSync waits until the daemon's check finds nothing to repair.
func inSync(t *testing.T, e *Env) {
	t.Helper()
	var rep *api.CheckReport
	var err error
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(100 * time.Millisecond) {
		if rep, err = e.Client().Check(context.Background()); err == nil && rep.InSync {
			return
		}
	}
	t.Fatalf("not in sync within 10 s: %+v, %v", rep, err)
}

// TestL2ACLsOnTheWire: the ACLs of Transparent and L2Tunnel endpoints
// hold for their traffic with the wire, which never passes the host's
// inet hooks (macvlan): hostnet enforces them at the uplink's netdev
// ingress and egress. An In Block cuts the external host off from a1
// (another port and another host still connect); an Out Block cuts a1
// off from the external host, whose own connections to a1 still get
// their replies (the flow table stands in for conntrack). Two endpoints
// of one host are filtered too (L2Tunnel's VEPA sends their traffic by
// the uplink; Transparent's bridge mode by the uplink's ingress), and an
// endpoint that admits nothing in gets the replies to what it opens, from
// the wire, its host's endpoints and the host. The rules survive restarts,
// gentle and killed, without breaking a connection; a flushed or deleted
// netdev table is repaired; networks on one uplink share its chains, and
// the table goes with the last of them.
func TestL2ACLsOnTheWire(t *testing.T) {
	for _, typ := range []api.NetworkType{api.Transparent, api.L2Tunnel} {
		t.Run(string(typ), func(t *testing.T) { l2ACLsOnTheWire(t, typ) })
	}
}

func l2ACLsOnTheWire(t *testing.T, typ api.NetworkType) {
	start := time.Now()
	phase := func(what string) { t.Logf("%6.1fs %s", time.Since(start).Seconds(), what) }
	t.Cleanup(func() { phase("cleaned up") })
	seg := newSegment(t, 1)
	h := seg.hosts[0]
	if typ == api.L2Tunnel {
		seg.hairpin(h.port)
	}
	netA := h.l2Network(t, typ, "seg-a", segA, "192.0.2.128/26", routerA)
	netB := h.l2Network(t, typ, "seg-b", segB, "198.18.0.128/26", routerB)
	a1, a2 := attachL2(t, h, netA.ID, "a1"), attachL2(t, h, netA.ID, "a2")
	b1 := attachL2(t, h, netB.ID, "b1")
	Serve(t, a1.Namespace.NetNamespacePath, "tcp", ":7001")
	serveHost(t, seg.router)
	serveHost(t, h.HostNS)
	router := netip.MustParseAddr(routerA)
	a1Web, a1Other := netip.AddrPortFrom(a1.Addr, 7000).String(), netip.AddrPortFrom(a1.Addr, 7001).String()
	routerWeb := netip.AddrPortFrom(router, 7000).String()
	ep := func(e l2Endpoint) string { return e.Namespace.NetNamespacePath }

	phase("set up")
	chains := netdevChains(t, h.Env)
	if !hasBaseChains(chains, segUplink) {
		t.Fatalf("netdev chains: %v, want ingress_%s and egress_%s with rules", chains, segUplink, segUplink)
	}
	for _, c := range chains {
		if strings.HasPrefix(c, "ingress_") && !strings.HasPrefix(c, "ingress_"+segUplink) {
			t.Errorf("two networks on %s made a second base chain: %v", segUplink, chains)
		}
	}
	if !reachTCP(t, seg.router, a1Web) || !reachTCP(t, ep(a1), routerWeb) {
		t.Fatal("no traffic between a1 and the router before any ACL")
	}

	policy := func(verb string, rules ...string) {
		t.Helper()
		args := []string{"endpoint", "policy", verb, "a1"}
		for _, r := range rules {
			args = append(args, "--acl", r)
		}
		h.MustCLI(args...)
	}
	// Once an endpoint has a rule, what no rule allows is denied (as on
	// Windows): each block comes with rules that allow the rest.
	blockIn := []string{fmt.Sprintf("block in proto tcp lport 7000 remote %s priority 100", router), "allow in priority 1000", "allow out priority 1000"}
	blockOut := []string{fmt.Sprintf("block out proto tcp rport 7000 remote %s priority 100", router), "allow in priority 1000", "allow out priority 1000"}

	phase("In Block")
	// In Block.
	policy("add", blockIn...)
	if settle(false, func() bool { return probeTCP(t, seg.router, a1Web) }) {
		t.Error("In Block: the router reaches a1's blocked port over the wire")
	}
	if !reachTCP(t, seg.router, a1Other) {
		t.Error("In Block: the router no longer reaches a1's other port")
	}
	if !reachTCP(t, seg.router, netip.AddrPortFrom(b1.Addr, 7000).String()) {
		t.Error("In Block on a1: the router no longer reaches b1 (another network on the uplink)")
	}
	if !reachTCP(t, ep(a2), a1Web) {
		t.Error("In Block against the router: a2 no longer reaches a1")
	}
	policy("rm", blockIn...)
	if !reachTCP(t, seg.router, a1Web) {
		t.Error("In Block removed: the router still does not reach a1")
	}

	phase("Out Block")
	// Out Block.
	policy("add", blockOut...)
	if settle(false, func() bool { return probeTCP(t, ep(a1), routerWeb) }) {
		t.Error("Out Block: a1 reaches the router's blocked port over the wire")
	}
	if !reachTCP(t, seg.router, a1Web) {
		t.Error("Out Block: the router's connections to a1 get no replies")
	}
	if !reachTCP(t, ep(b1), netip.AddrPortFrom(netip.MustParseAddr(routerB), 7000).String()) {
		t.Error("Out Block on a1: b1 no longer reaches the router")
	}
	policy("rm", blockOut...)
	if !reachTCP(t, ep(a1), routerWeb) {
		t.Error("Out Block removed: a1 still does not reach the router")
	}

	phase("same host")
	// Two endpoints of one host are filtered too: L2Tunnel's frames pass
	// the uplink both ways, Transparent's its ingress.
	blockA2 := []string{fmt.Sprintf("block in proto tcp lport 7000 remote %s priority 100", a2.Addr), "allow in priority 1000", "allow out priority 1000"}
	policy("add", blockA2...)
	if settle(false, func() bool { return probeTCP(t, ep(a2), a1Web) }) {
		t.Error("a1 blocks a2 (same host): a2 connects")
	}
	if !reachTCP(t, seg.router, a1Web) {
		t.Error("a1 blocks a2: the router no longer reaches a1")
	}
	policy("rm", blockA2...)
	if !reachTCP(t, ep(a2), a1Web) {
		t.Error("a1's block of a2 removed: a2 still does not reach a1")
	}

	phase("nothing in")
	// Nothing in: what a1 opens still gets its replies, from the wire,
	// from an endpoint of its host and from the host.
	nothingIn := []string{"allow out priority 1000"}
	policy("add", nothingIn...)
	if settle(false, func() bool { return probeTCP(t, seg.router, a1Web) }) || settle(false, func() bool { return probeTCP(t, ep(a2), a1Web) }) {
		t.Error("a1 admits nothing in, but is reached")
	}
	for _, to := range []struct {
		what string
		addr netip.Addr
	}{{"the router", router}, {"a2 (same host)", a2.Addr}, {"host 1", h.addr}} {
		if !reachTCP(t, ep(a1), netip.AddrPortFrom(to.addr, 7000).String()) {
			t.Errorf("a1 admits nothing in: its connection to %s gets no replies", to.what)
		}
	}
	policy("rm", nothingIn...)

	phase("restarts")
	// Restarts keep the rules and the flows.
	policy("add", blockIn...)
	before := netdevChains(t, h.Env)
	c, err := Dial(t, seg.router, "tcp", a1Other, 5*time.Second)
	if err != nil {
		t.Fatalf("dial a1's other port from the router: %v", err)
	}
	defer c.Close()
	for _, kill := range []bool{false, true} {
		h.Restart(kill)
		if _, err := Exchange(c, "still there", 5*time.Second); err != nil {
			t.Errorf("restart (killed: %t): the router's connection to a1 broke: %v", kill, err)
		}
		if settle(false, func() bool { return probeTCP(t, seg.router, a1Web) }) {
			t.Errorf("restart (killed: %t): the In Block no longer holds", kill)
		}
		if after := netdevChains(t, h.Env); strings.Join(after, ",") != strings.Join(before, ",") {
			t.Errorf("restart (killed: %t): netdev chains %v, were %v", kill, after, before)
		}
	}

	phase("repair")
	// A flushed netdev table (every rule gone), then a deleted one, is
	// repaired, and the block holds again.
	for _, harm := range []string{"flush", "delete"} {
		ns := mustNS(t, h.HostNS)
		nc, err := nftables.New(nftables.WithNetNSFd(int(ns)))
		if err != nil {
			t.Fatal(err)
		}
		tbl := &nftables.Table{Family: nftables.TableFamilyNetdev, Name: "hostnet"}
		if harm == "flush" {
			nc.FlushTable(tbl)
		} else {
			nc.DelTable(tbl)
		}
		if err := nc.Flush(); err != nil {
			t.Fatalf("%s the netdev table: %v", harm, err)
		}
		inSync(t, h.Env)
		if after := netdevChains(t, h.Env); strings.Join(after, ",") != strings.Join(before, ",") {
			t.Errorf("after a %s: netdev chains %v, want %v", harm, after, before)
		}
		if settle(false, func() bool { return probeTCP(t, seg.router, a1Web) }) {
			t.Errorf("after a %s and its repair: the In Block does not hold", harm)
		}
		if _, err := Exchange(c, "after the repair", 5*time.Second); err != nil {
			t.Errorf("after a %s and its repair: the router's connection to a1 broke: %v", harm, err)
		}
	}

	// Closed while a1 is there: a connection whose end goes with its
	// endpoint keeps a1's server waiting for the FIN until keepalive
	// gives up, minutes later.
	c.Close()
	phase("sharing")
	// Networks of one uplink share its chains: they stay for seg-b when
	// seg-a goes, and go with it.
	ctx := context.Background()
	cl := h.Client()
	for _, e := range []l2Endpoint{a1, a2} {
		if err := cl.DeleteEndpoint(ctx, e.Endpoint.ID); err != nil {
			t.Fatal(err)
		}
	}
	if err := cl.DeleteNetwork(ctx, netA.ID); err != nil {
		t.Fatal(err)
	}
	if chains := netdevChains(t, h.Env); !hasBaseChains(chains, segUplink) {
		t.Errorf("seg-a gone: netdev chains %v, want seg0's kept for seg-b", chains)
	}
	if !reachTCP(t, seg.router, netip.AddrPortFrom(b1.Addr, 7000).String()) {
		t.Error("seg-a gone: the router no longer reaches b1")
	}
	if err := cl.DeleteEndpoint(ctx, b1.Endpoint.ID); err != nil {
		t.Fatal(err)
	}
	if err := cl.DeleteNetwork(ctx, netB.ID); err != nil {
		t.Fatal(err)
	}
	if chains := netdevChains(t, h.Env); len(chains) != 0 {
		t.Errorf("every L2 network gone: netdev chains %v are left", chains)
	}
	phase("done")
}

// `hostnetd --cleanup` takes the netdev table and the shims with the rest:
// a Transparent network with an endpoint, the daemon stopped, a forced
// cleanup leaves no netdev chain and no device of hostnet's on the host.
func TestL2CleanupRemovesNetdevTable(t *testing.T) {
	seg := newSegment(t, 1)
	h := seg.hosts[0]
	n := h.l2Network(t, api.Transparent, "seg-a", segA, "192.0.2.128/26", routerA)
	attachL2(t, h, n.ID, "a1")
	if chains := netdevChains(t, h.Env); !hasBaseChains(chains, segUplink) {
		t.Fatalf("netdev chains: %v", chains)
	}
	h.Stop()
	out, code := h.cleanup(t, "--force")
	if code != 0 || !strings.Contains(out, "table netdev hostnet") {
		t.Errorf("cleanup: exit %d, does not say it removed the netdev table:\n%s", code, out)
	}
	if chains := netdevChains(t, h.Env); len(chains) != 0 {
		t.Errorf("after the cleanup: netdev chains %v", chains)
	}
	for _, l := range hostLinks(t, h.HostNS) {
		if strings.HasPrefix(l, "hn") {
			t.Errorf("after the cleanup: device %s is left", l)
		}
	}
}
