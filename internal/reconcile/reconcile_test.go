package reconcile

import (
	"context"
	"errors"
	"log/slog"
	"net"
	"net/netip"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hostnet/hostnet/internal/dataplane"
	"github.com/hostnet/hostnet/internal/netmodel"
	"github.com/hostnet/hostnet/internal/nftmodel"
)

const table = "t"

var tables = []dataplane.TableName{{Family: nftmodel.FamilyInet, Name: table}}

func newTest(t *testing.T) (*Reconciler, *dataplane.Fake) {
	host := dataplane.NewFake(dataplane.HostConfig{LinkPrefixes: []string{"hn"}, NetnsDir: "/run/netns-test", Tables: tables})
	r := New(Config{Host: host, Logger: slog.New(slog.DiscardHandler), Resync: func(context.Context, string) error { return nil }})
	t.Cleanup(r.Close)
	return r, host
}

// layout is a table with one set and one chain, shared by the owners that
// use it.
func testLayout() []netmodel.Object {
	return []netmodel.Object{
		netmodel.NftSet{Table: table, Set: &nftmodel.Set{Name: "s", Key: []nftmodel.KeyType{nftmodel.KeyIfname}}},
		netmodel.NftChain{Table: table, Chain: &nftmodel.Chain{Name: "c", Type: nftmodel.ChainTypeFilter, Hook: nftmodel.HookForward,
			Rules: []nftmodel.Rule{{Comment: "r", Exprs: []nftmodel.Expr{nftmodel.Iifname().InSet("s"), nftmodel.Accept()}}}}},
	}
}

// bridgeUnit is an owner with a bridge, its address, and an element.
func bridgeUnit(owner, name, addr string) *netmodel.Unit {
	return &netmodel.Unit{Owner: netmodel.Owner(owner), Objects: append(testLayout(),
		netmodel.Link{Name: name, Kind: netmodel.LinkBridge, Up: true, MAC: net.HardwareAddr{2, 0, 0, 0, 0, byte(len(name))}},
		netmodel.Addr{Link: name, Prefix: netip.MustParsePrefix(addr)},
		netmodel.Sysctl{Name: "net/ipv4/ip_forward", Value: "1"},
		netmodel.NftElement{Table: table, Set: "s", Elem: name})}
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

// Owners come and go; shared objects stay while one owner wants them;
// after each step a full pass finds nothing to do.
func TestApplySequence(t *testing.T) {
	ctx := context.Background()
	r, host := newTest(t)
	a, b := bridgeUnit("network/a", "hnbra", "10.1.0.1/24"), bridgeUnit("network/b", "hnbrb", "10.2.0.1/24")
	inSync := func(units ...*netmodel.Unit) {
		t.Helper()
		rep, err := r.Sync(ctx, units, SyncOptions{DryRun: true})
		must(t, err)
		if !rep.InSync() {
			t.Fatalf("a full pass would change: %+v", rep.Problems)
		}
	}
	must(t, r.Apply(ctx, Change{Owner: a.Owner, New: a}))
	inSync(a)
	must(t, r.Apply(ctx, Change{Owner: b.Owner, New: b}))
	inSync(a, b)
	// The same change again sends nothing.
	applies, changes := host.Applies(), host.FW.Changes()
	must(t, r.Apply(ctx, Change{Owner: b.Owner, Old: b, New: b}))
	if host.Applies() != applies || host.FW.Changes() != changes {
		t.Errorf("a change to the same state reached the host")
	}
	must(t, r.Apply(ctx, Change{Owner: a.Owner, Old: a}))
	inSync(b)
	if d := host.Dump(); strings.Contains(d, "hnbra") || !strings.Contains(d, "chain c") {
		t.Errorf("after a went:\n%s", d)
	}
	must(t, r.Apply(ctx, Change{Owner: b.Owner, Old: b}))
	inSync()
	if d := host.Dump(); strings.Contains(d, "table") || strings.Contains(d, "hnbr") {
		t.Errorf("after both went:\n%s", d)
	}
}

// One owner's failure leaves the others applied, and names that owner.
func TestFailureIsIsolated(t *testing.T) {
	ctx := context.Background()
	r, host := newTest(t)
	a, b := bridgeUnit("network/a", "hnbra", "10.1.0.1/24"), bridgeUnit("network/b", "hnbrb", "10.2.0.1/24")
	host.FailNext(netmodel.Link{Name: "hnbrb"}.Key(), errors.New("injected"))
	err := r.Apply(ctx, Change{Owner: a.Owner, New: a}, Change{Owner: b.Owner, New: b})
	var oe *OwnerError
	if !errors.As(err, &oe) || oe.Of(b.Owner) == nil || oe.Of(a.Owner) != nil {
		t.Fatalf("error %v, want b's alone", err)
	}
	if !strings.Contains(host.Dump(), "hnbra") {
		t.Error("a was not applied")
	}
	if f := r.Failed(); f[b.Owner] == nil || len(f) != 1 {
		t.Errorf("failed owners: %v", f)
	}
	// The full pass repairs b and clears its failure.
	rep, err := r.Sync(ctx, []*netmodel.Unit{a, b}, SyncOptions{})
	must(t, err)
	if len(rep.Failed) != 0 || len(r.Failed()) != 0 || !strings.Contains(host.Dump(), "hnbrb") {
		t.Errorf("after the pass: %+v, failed %v", rep, r.Failed())
	}
}

// A full pass adopts what is right, repairs what drifted, removes what
// carries the tags and no owner wants, and leaves what is not hostnet's.
func TestSyncRepairsAndPrunes(t *testing.T) {
	ctx := context.Background()
	r, host := newTest(t)
	a := bridgeUnit("network/a", "hnbra", "10.1.0.1/24")
	must(t, r.Apply(ctx, Change{Owner: a.Owner, New: a}))
	other := bridgeUnit("network/x", "hnbrx", "10.9.0.1/24")
	foreign := bridgeUnit("network/y", "docker0", "10.8.0.1/24")
	must(t, r.Apply(ctx, Change{Owner: other.Owner, New: other}, Change{Owner: foreign.Owner, New: foreign}))
	host.SetLinkUp(netmodel.Host, "hnbra", false)
	host.SetSysctl(netmodel.Host, "net/ipv4/ip_forward", "0")
	rep, err := r.Sync(ctx, []*netmodel.Unit{a}, SyncOptions{DryRun: true})
	must(t, err)
	var what []string
	for _, p := range rep.Problems {
		what = append(what, p.What)
	}
	got := strings.Join(what, "\n")
	for _, want := range []string{"bridge hnbra is down", "sysctl net.ipv4.ip_forward is 0, not 1", "device hnbrx is hostnet's but no network or endpoint claims it"} {
		if !strings.Contains(got, want) {
			t.Errorf("problems lack %q:\n%s", want, got)
		}
	}
	if strings.Contains(got, "docker0") {
		t.Errorf("a device without hostnet's tag is reported:\n%s", got)
	}
	if _, err := r.Sync(ctx, []*netmodel.Unit{a}, SyncOptions{}); err != nil {
		t.Fatal(err)
	}
	d := host.Dump()
	if strings.Contains(d, "hnbrx") || !strings.Contains(d, "docker0") || !strings.Contains(d, "link hnbra type bridge address 02:00:00:00:00:05 up") {
		t.Errorf("after the pass:\n%s", d)
	}
	rep, err = r.Sync(ctx, []*netmodel.Unit{a}, SyncOptions{DryRun: true})
	must(t, err)
	if !rep.InSync() {
		t.Errorf("still drifting: %+v", rep.Problems)
	}
}

// A changed flow guard ends the flows it no longer keeps: at once when a
// published port goes, later otherwise.
func TestFlowsFollowGuards(t *testing.T) {
	ctx := context.Background()
	r, host := newTest(t)
	ep := netip.MustParseAddr("10.1.0.2")
	peer := netip.MustParseAddr("192.0.2.7")
	ap := netip.AddrPortFrom
	published := netmodel.Flow{Proto: 6, OrigSrc: ap(peer, 4000), OrigDst: ap(netip.MustParseAddr("198.51.100.2"), 8080), ReplySrc: ap(ep, 80), ReplyDst: ap(peer, 4000)}
	direct := netmodel.Flow{Proto: 6, OrigSrc: ap(peer, 4001), OrigDst: ap(ep, 22), ReplySrc: ap(ep, 22), ReplyDst: ap(peer, 4001)}
	host.AddFlows(published, direct)
	admitAll := admitFunc(func(netmodel.FlowPacket) bool { return true })
	withPort := &netmodel.Unit{Owner: "endpoint/e", Flows: &netmodel.FlowGuard{Addrs: []netip.Addr{ep},
		Published: []netmodel.PublishedPort{{Proto: 6, ExternalPort: 8080, InternalPort: 80}}, Admit: admitAll}}
	without := &netmodel.Unit{Owner: "endpoint/e", Flows: &netmodel.FlowGuard{Addrs: []netip.Addr{ep}, Admit: admitAll}}
	must(t, r.Apply(ctx, Change{Owner: "endpoint/e", New: withPort}))
	must(t, r.Apply(ctx, Change{Owner: "endpoint/e", Old: withPort, New: without}))
	if flows := host.Flows(); len(flows) != 1 || flows[0] != direct {
		t.Errorf("after the port went: %v, want the direct flow alone", flows)
	}
	must(t, r.Apply(ctx, Change{Owner: "endpoint/e", Old: without}))
	r.Wait()
	if flows := host.Flows(); len(flows) != 0 {
		t.Errorf("after the endpoint went: %v", flows)
	}
}

type admitFunc func(netmodel.FlowPacket) bool

func (f admitFunc) Admits(p netmodel.FlowPacket) bool { return f(p) }
func (f admitFunc) String() string                    { return "func" }

// The self-repair loop runs a pass when the host reports a change, and
// subscribes again when a subscription ends.
func TestRunFollowsNotifications(t *testing.T) {
	host := dataplane.NewFake(dataplane.HostConfig{LinkPrefixes: []string{"hn"}})
	var passes atomic.Int32
	reasons := make(chan string, 16)
	r := New(Config{Host: host, Logger: slog.New(slog.DiscardHandler), Resync: func(_ context.Context, reason string) error {
		passes.Add(1)
		reasons <- reason
		return nil
	}})
	defer r.Close()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); r.Run(ctx, time.Hour) }()
	waitFor := func(what string, cond func() bool) {
		t.Helper()
		for deadline := time.Now().Add(10 * time.Second); !cond(); time.Sleep(10 * time.Millisecond) {
			if time.Now().After(deadline) {
				t.Fatalf("no %s within 10 s", what)
			}
		}
	}
	waitFor("subscription", func() bool { return host.Watches() == 1 })
	host.Notify(dataplane.Change{Reason: "device hnv1 was removed", Link: "hnv1"})
	if got := <-reasons; got != "device hnv1 was removed" {
		t.Errorf("pass for %q", got)
	}
	host.FailWatch(errors.New("no buffer space"))
	if got := <-reasons; !strings.Contains(got, "interrupted") {
		t.Errorf("pass for %q", got)
	}
	waitFor("second subscription", func() bool { return host.Watches() == 2 })
	cancel()
	<-done
}
