package reconcile

import (
	"context"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/hostnet/hostnet/internal/dataplane"
	"github.com/hostnet/hostnet/internal/netmodel"
	"github.com/hostnet/hostnet/internal/nftmodel"
)

// netdevLayout is what every network on uplink dev wants of a netdev
// table, as policy.DeviceHooks makes it: a dynamic set the rules fill, a
// verdict map, and a base chain bound to the device.
func netdevLayout(dev string) []netmodel.Object {
	tuple := []nftmodel.KeyType{nftmodel.KeyIPv4, nftmodel.KeyIPv4, nftmodel.KeyInetProto, nftmodel.KeyInetService, nftmodel.KeyInetService}
	flows := "flows_" + dev
	own := nftmodel.Concat(nftmodel.IPSaddr(), nftmodel.IPDaddr(), nftmodel.L4Proto(), nftmodel.THSport(), nftmodel.THDport())
	return []netmodel.Object{
		netmodel.NftSet{Family: nftmodel.FamilyNetdev, Table: table, Set: &nftmodel.Set{Name: flows, Key: tuple, Dynamic: true, Timeout: time.Minute, Size: 1024}},
		netmodel.NftSet{Family: nftmodel.FamilyNetdev, Table: table, Map: &nftmodel.Map{Name: "in_" + dev, Key: []nftmodel.KeyType{nftmodel.KeyIPv4}, Verdict: true}},
		netmodel.NftChain{Family: nftmodel.FamilyNetdev, Table: table, Chain: &nftmodel.Chain{Name: "ingress_" + dev, Type: nftmodel.ChainTypeFilter,
			Hook: nftmodel.HookIngress, Device: dev, Priority: nftmodel.PriorityFilter, Rules: []nftmodel.Rule{
				{Comment: "replies", Exprs: []nftmodel.Expr{nftmodel.L4Proto().InAnon("tcp", "udp"), own.InSet(flows), nftmodel.Accept()}},
				{Comment: "receiver", Exprs: []nftmodel.Expr{nftmodel.VMap(nftmodel.IPDaddr(), "in_"+dev)}},
				{Comment: "record", Exprs: []nftmodel.Expr{nftmodel.L4Proto().InAnon("tcp", "udp"), nftmodel.SetUpdate(flows, own, 0)}},
			}}},
	}
}

// macvlanUnit is an endpoint of a network on uplink dev: the layout, a
// profile chain shared by name, and its address's dispatch.
func macvlanUnit(owner, dev, addr string) *netmodel.Unit {
	return &netmodel.Unit{Owner: netmodel.Owner(owner), Objects: append(netdevLayout(dev),
		netmodel.NftChain{Family: nftmodel.FamilyNetdev, Table: table, Chain: &nftmodel.Chain{Name: "deny",
			Rules: []nftmodel.Rule{{Comment: "deny", Exprs: []nftmodel.Expr{nftmodel.Drop()}}}}},
		netmodel.NftElement{Family: nftmodel.FamilyNetdev, Table: table, Set: "in_" + dev, Elem: addr, Value: "jump deny"})}
}

func newNetdevTest(t *testing.T) (*Reconciler, *dataplane.Fake) {
	host := dataplane.NewFake(dataplane.HostConfig{LinkPrefixes: []string{"hn"}, NetnsDir: "/run/netns-test",
		Tables: []dataplane.TableName{{Family: nftmodel.FamilyInet, Name: table}, {Family: nftmodel.FamilyNetdev, Name: table}}})
	r := New(Config{Host: host, Logger: slog.New(slog.DiscardHandler), Resync: func(context.Context, string) error { return nil }})
	t.Cleanup(r.Close)
	return r, host
}

// A netdev table is made, shared, diffed, observed and repaired like an
// inet one: owners on one uplink share its chain, another uplink gets
// its own; a restart adopts it without sending anything; a table removed
// behind hostnet's back, or a chain emptied, is found and put back; the
// last owner takes it away.
func TestNetdevTableLifecycle(t *testing.T) {
	ctx := context.Background()
	r, host := newNetdevTest(t)
	a, b, c := macvlanUnit("endpoint/a", "up0", "10.0.0.2"), macvlanUnit("endpoint/b", "up0", "10.0.0.3"), macvlanUnit("endpoint/c", "up1", "10.1.0.2")
	all := []*netmodel.Unit{a, b, c}
	inSync := func(r *Reconciler, units []*netmodel.Unit) {
		t.Helper()
		rep, err := r.Sync(ctx, units, SyncOptions{DryRun: true})
		must(t, err)
		if !rep.InSync() {
			t.Fatalf("a full pass would change: %s", whats(rep.Problems))
		}
	}
	must(t, r.Apply(ctx, Change{Owner: a.Owner, New: a}, Change{Owner: b.Owner, New: b}, Change{Owner: c.Owner, New: c}))
	inSync(r, all)
	nd := host.FW.FamilyTable(nftmodel.FamilyNetdev, table)
	if nd == nil {
		t.Fatalf("no netdev table:\n%s", host.Dump())
	}
	var chains []string
	for _, ch := range nd.Chains {
		chains = append(chains, ch.Name+"@"+ch.Device)
	}
	if got := strings.Join(chains, " "); got != "ingress_up0@up0 ingress_up1@up1 deny@" {
		t.Errorf("chains: %s", got)
	}

	// A restart: a new reconciler over the same kernel adopts the table
	// and sends nothing.
	changes := host.FW.Changes()
	r2 := New(Config{Host: host, Logger: slog.New(slog.DiscardHandler), Resync: func(context.Context, string) error { return nil }})
	t.Cleanup(r2.Close)
	_, err := r2.Sync(ctx, all, SyncOptions{})
	must(t, err)
	if host.FW.Changes() != changes {
		t.Errorf("the restart changed the firewall: %q", host.FW.LastOps())
	}
	inSync(r2, all)

	// Removed behind hostnet's back: found, then put back.
	must(t, host.FW.DeleteTable(nftmodel.FamilyNetdev, table))
	rep, err := r2.Sync(ctx, all, SyncOptions{DryRun: true})
	must(t, err)
	if got := whats(rep.Problems); !strings.Contains(got, "netdev") {
		t.Errorf("the missing table is not reported: %q", got)
	}
	_, err = r2.Sync(ctx, all, SyncOptions{})
	must(t, err)
	inSync(r2, all)
	if got := host.FW.FamilyTable(nftmodel.FamilyNetdev, table); got == nil || got.String() != nd.String() {
		t.Errorf("repaired table:\n%v\nwant:\n%s", got, nd)
	}

	// A base chain emptied: found, then refilled.
	emptied := nd.Clone()
	emptied.Chains[0].Rules = nil
	must(t, host.FW.Apply(emptied))
	rep, err = r2.Sync(ctx, all, SyncOptions{DryRun: true})
	must(t, err)
	if got := whats(rep.Problems); !strings.Contains(got, "ingress_up0") {
		t.Errorf("the emptied chain is not reported: %q", got)
	}
	_, err = r2.Sync(ctx, all, SyncOptions{})
	must(t, err)
	inSync(r2, all)

	// a goes: up0's chain stays for b; c goes: up1's chain goes.
	must(t, r2.Apply(ctx, Change{Owner: a.Owner, Old: a}, Change{Owner: c.Owner, Old: c}))
	r2.Wait()
	inSync(r2, []*netmodel.Unit{b})
	d := host.Dump()
	if !strings.Contains(d, "ingress_up0") || strings.Contains(d, "ingress_up1") || strings.Contains(d, "10.0.0.2") {
		t.Errorf("after a and c went:\n%s", d)
	}
	must(t, r2.Apply(ctx, Change{Owner: b.Owner, Old: b}))
	r2.Wait()
	_, err = r2.Sync(ctx, nil, SyncOptions{})
	must(t, err)
	if host.FW.FamilyTable(nftmodel.FamilyNetdev, table) != nil {
		t.Errorf("the netdev table outlived its owners:\n%s", host.Dump())
	}
}
