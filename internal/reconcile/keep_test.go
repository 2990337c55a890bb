package reconcile

import (
	"context"
	"net/netip"
	"strings"
	"testing"

	"github.com/hostnet/hostnet/internal/netmodel"
	"github.com/hostnet/hostnet/internal/nftmodel"
)

// endpointUnit is an owner with a namespace of its own, a veth pair into
// it with an address, an element and a regular chain of its own.
func endpointUnit(owner, port, addr string) *netmodel.Unit {
	ns := netmodel.NS{Path: "/run/netns-test/" + port}
	return &netmodel.Unit{Owner: netmodel.Owner(owner), Objects: append(testLayout(),
		netmodel.Namespace{NS: ns},
		netmodel.Link{Name: port, Kind: netmodel.LinkVeth, Up: true, Peer: &netmodel.LinkRef{NS: ns, Name: "eth0"}},
		netmodel.Link{NS: ns, Name: "eth0", Kind: netmodel.LinkVeth, Up: true, Peer: &netmodel.LinkRef{Name: port}},
		netmodel.Addr{NS: ns, Link: "eth0", Prefix: netip.MustParsePrefix(addr)},
		netmodel.NftElement{Table: table, Set: "s", Elem: port},
		netmodel.NftChain{Table: table, Chain: &nftmodel.Chain{Name: "only_" + port, Rules: []nftmodel.Rule{{Comment: "r", Exprs: []nftmodel.Expr{nftmodel.Accept()}}}}},
	)}
}

func whats(ps []Problem) string {
	var out []string
	for _, p := range ps {
		out = append(out, p.What)
	}
	return strings.Join(out, "\n")
}

// While the reconciler keeps what no owner wants (after a restore from a
// backup, whose records lack what was made since), a full pass removes
// none of it, devices, namespaces and the firewall's content alike, and
// reports it as kept, not as drift; what the owners want is still made,
// the firewall only added to. The addresses kept devices hold inside
// namespaces are reported. Once keeping stops, the next pass removes it.
func TestKeepUnwanted(t *testing.T) {
	ctx := context.Background()
	r, host := newTest(t)
	a := bridgeUnit("network/a", "hnbra", "10.1.0.1/24")
	b := endpointUnit("endpoint/b", "hnvb", "10.1.0.7/24")
	must(t, r.Apply(ctx, Change{Owner: a.Owner, New: a}, Change{Owner: b.Owner, New: b}))
	before := host.Dump()

	// What the records now say: a, with an element the kernel lacks; b
	// is no one's.
	a2 := bridgeUnit("network/a", "hnbra", "10.1.0.1/24")
	a2.Objects = append(a2.Objects, netmodel.NftElement{Table: table, Set: "s", Elem: "hnnew"})
	r.SetKeep(KeepAll)
	rep, err := r.Sync(ctx, []*netmodel.Unit{a2}, SyncOptions{DryRun: true})
	must(t, err)
	kept := whats(rep.Kept)
	for _, want := range []string{"device hnvb is hostnet's", "namespace /run/netns-test/hnvb is hostnet's", "firewall: inet t: delete 1 elements from set s", "firewall: inet t: delete chain only_hnvb"} {
		if !strings.Contains(kept, want) {
			t.Errorf("kept lacks %q:\n%s", want, kept)
		}
	}
	if got := whats(rep.Problems); !strings.Contains(got, "add 1 elements to set s") || strings.Contains(got, "hnvb") || strings.Contains(got, "delete") {
		t.Errorf("problems: want the element to add alone:\n%s", got)
	}
	if len(rep.KeptAddrs) != 1 || rep.KeptAddrs[0].Prefix.String() != "10.1.0.7/24" || rep.KeptAddrs[0].NS.Path != "/run/netns-test/hnvb" {
		t.Errorf("kept addresses: %+v", rep.KeptAddrs)
	}
	if got := host.Dump(); got != before {
		t.Errorf("a dry run changed the host:\n%s", got)
	}

	rep, err = r.Sync(ctx, []*netmodel.Unit{a2}, SyncOptions{})
	must(t, err)
	if len(rep.Failed) > 0 {
		t.Fatalf("failed: %v", rep.Failed)
	}
	d := host.Dump()
	for _, want := range []string{"link hnvb", "/run/netns-test/hnvb", "hnnew", "only_hnvb", "10.1.0.7/24"} {
		if !strings.Contains(d, want) {
			t.Errorf("after a pass that keeps, the host lacks %q:\n%s", want, d)
		}
	}
	rep, err = r.Sync(ctx, []*netmodel.Unit{a2}, SyncOptions{DryRun: true})
	must(t, err)
	if !rep.InSync() || len(rep.Kept) == 0 {
		t.Errorf("after the pass: in sync %v (%s), kept %d", rep.InSync(), whats(rep.Problems), len(rep.Kept))
	}
	// The light check of self-repair sees no drift either.
	quick, err := r.Check(ctx)
	must(t, err)
	if !quick.InSync() || len(quick.Kept) == 0 {
		t.Errorf("light check: in sync %v (%s), kept %d", quick.InSync(), whats(quick.Problems), len(quick.Kept))
	}
	// Looking inside a namespace removes nothing kept either.
	nsb := netmodel.NS{Path: "/run/netns-test/hnvb"}
	must(t, host.Apply(ctx, []netmodel.Object{netmodel.Route{NS: nsb, Dst: netip.MustParsePrefix("0.0.0.0/0"), Gateway: netip.MustParseAddr("10.1.0.1"), Link: "eth0"}}, nil))
	must(t, r.Verify(ctx, nsb, nil))
	if d := host.Dump(); !strings.Contains(d, "route 0.0.0.0/0 via 10.1.0.1") {
		t.Errorf("a look inside removed a kept route:\n%s", d)
	}

	r.SetKeep(Keep{})
	rep, err = r.Sync(ctx, []*netmodel.Unit{a2}, SyncOptions{})
	must(t, err)
	if len(rep.Kept) != 0 || !strings.Contains(whats(rep.Problems), "device hnvb") {
		t.Errorf("once keeping stops: kept %s, problems %s", whats(rep.Kept), whats(rep.Problems))
	}
	r.Wait()
	d = host.Dump()
	for _, gone := range []string{"hnvb", "10.1.0.7"} {
		if strings.Contains(d, gone) {
			t.Errorf("once keeping stops, %q is still there:\n%s", gone, d)
		}
	}
	rep, err = r.Sync(ctx, []*netmodel.Unit{a2}, SyncOptions{DryRun: true})
	must(t, err)
	if !rep.InSync() {
		t.Errorf("still drifting: %s", whats(rep.Problems))
	}
}

// Keep.Object chooses: what it does not keep is removed as ever.
func TestKeepSome(t *testing.T) {
	ctx := context.Background()
	r, host := newTest(t)
	a := bridgeUnit("network/a", "hnbra", "10.1.0.1/24")
	x := bridgeUnit("network/x", "hnbrx", "10.2.0.1/24")
	y := bridgeUnit("network/y", "hnbry", "10.3.0.1/24")
	must(t, r.Apply(ctx, Change{Owner: a.Owner, New: a}, Change{Owner: x.Owner, New: x}, Change{Owner: y.Owner, New: y}))
	r.SetKeep(Keep{Object: func(o netmodel.Object) bool { l, ok := o.(netmodel.Link); return ok && l.Name == "hnbrx" }})
	rep, err := r.Sync(ctx, []*netmodel.Unit{a}, SyncOptions{})
	must(t, err)
	if !strings.Contains(whats(rep.Kept), "hnbrx") || strings.Contains(whats(rep.Kept), "hnbry") {
		t.Errorf("kept: %s", whats(rep.Kept))
	}
	r.Wait()
	if d := host.Dump(); !strings.Contains(d, "link hnbrx") || strings.Contains(d, "hnbry") {
		t.Errorf("after the pass:\n%s", d)
	}
}

// A firewall that lacks more than elements and regular chains (a set the
// owners now want) is synced whole even while it is kept: the owners come
// first, and the warning says what was kept in it is gone.
func TestKeptFirewallGivesWayToALayoutChange(t *testing.T) {
	ctx := context.Background()
	r, host := newTest(t)
	a := bridgeUnit("network/a", "hnbra", "10.1.0.1/24")
	b := endpointUnit("endpoint/b", "hnvb", "10.1.0.7/24")
	must(t, r.Apply(ctx, Change{Owner: a.Owner, New: a}, Change{Owner: b.Owner, New: b}))
	a2 := bridgeUnit("network/a", "hnbra", "10.1.0.1/24")
	a2.Objects = append(a2.Objects, netmodel.NftSet{Table: table, Set: &nftmodel.Set{Name: "s2", Key: []nftmodel.KeyType{nftmodel.KeyIfname}}},
		netmodel.NftElement{Table: table, Set: "s2", Elem: "hnbra"})
	r.SetKeep(KeepAll)
	rep, err := r.Sync(ctx, []*netmodel.Unit{a2}, SyncOptions{})
	must(t, err)
	if len(rep.Failed) > 0 {
		t.Fatalf("failed: %v", rep.Failed)
	}
	rep, err = r.Sync(ctx, []*netmodel.Unit{a2}, SyncOptions{DryRun: true})
	must(t, err)
	if !rep.InSync() || strings.Contains(whats(rep.Kept), "firewall") {
		t.Errorf("after the layout change: problems %s, kept %s", whats(rep.Problems), whats(rep.Kept))
	}
	if d := host.Dump(); !strings.Contains(d, "link hnvb") {
		t.Errorf("the kept device went with the firewall's content:\n%s", d)
	}
}

// While the firewall is kept, a change that wants a chain the kernel
// holds, kept, unknown to the reconciler, takes it over instead of
// failing on it.
func TestKeptChainIsTakenOver(t *testing.T) {
	ctx := context.Background()
	r, host := newTest(t)
	a := bridgeUnit("network/a", "hnbra", "10.1.0.1/24")
	b := endpointUnit("endpoint/b", "hnvb", "10.1.0.7/24")
	must(t, r.Apply(ctx, Change{Owner: a.Owner, New: a}, Change{Owner: b.Owner, New: b}))
	r.SetKeep(KeepAll)
	_, err := r.Sync(ctx, []*netmodel.Unit{a}, SyncOptions{})
	must(t, err)
	// c wants b's chain by name, as endpoints with the same rules share one.
	c := endpointUnit("endpoint/c", "hnvc", "10.1.0.8/24")
	for i, o := range c.Objects {
		if ch, ok := o.(netmodel.NftChain); ok && ch.Chain.Hook == "" && strings.HasPrefix(ch.Chain.Name, "only_") {
			c.Objects[i] = netmodel.NftChain{Table: table, Chain: &nftmodel.Chain{Name: "only_hnvb", Rules: ch.Chain.Rules}}
		}
	}
	must(t, r.Apply(ctx, Change{Owner: c.Owner, New: c}))
	if d := host.Dump(); !strings.Contains(d, "hnvc") || !strings.Contains(d, "only_hnvb") {
		t.Errorf("after c:\n%s", d)
	}
	// c goes: the chain stays while the firewall is kept (a kept element
	// may jump to it), and goes with the keeping.
	must(t, r.Apply(ctx, Change{Owner: c.Owner, Old: c}))
	r.Wait()
	if d := host.Dump(); strings.Contains(d, "hnvc") || !strings.Contains(d, "only_hnvb") {
		t.Errorf("after c went:\n%s", d)
	}
	r.SetKeep(Keep{})
	_, err = r.Sync(ctx, []*netmodel.Unit{a}, SyncOptions{})
	must(t, err)
	if d := host.Dump(); strings.Contains(d, "only_hnvb") {
		t.Errorf("once keeping stops:\n%s", d)
	}
}
