package reconcile

import (
	"context"
	"slices"
	"strings"
	"testing"

	"github.com/hostnet/hostnet/internal/netmodel"
)

// shapedUnit is an endpoint whose port is shaped both ways, outgoing
// through an ifb device.
func shapedUnit(rate uint64) *netmodel.Unit {
	return &netmodel.Unit{Owner: "endpoint/e", Objects: []netmodel.Object{
		netmodel.Link{Name: "hnve", Kind: netmodel.LinkBridge, Up: true}, // a link of the fake's to shape
		netmodel.Link{Name: "hnqe", Kind: netmodel.LinkIFB, Up: true},
		netmodel.Shaper{Link: "hnve", Direction: netmodel.TCEgress, Rate: 2 * rate, Burst: 65536},
		netmodel.Shaper{Link: "hnve", Direction: netmodel.TCIngress, IFB: "hnqe", Rate: rate, Burst: 32768},
	}}
}

func shapers(host interface {
	Shapers(netmodel.NS) []netmodel.Shaper
}) string {
	var out []string
	for _, s := range host.Shapers(netmodel.Host) {
		out = append(out, s.String())
	}
	slices.Sort(out)
	return strings.Join(out, "; ")
}

// A shaper is applied, changed in place, found missing or wrong by a
// check and repaired by a full pass, and removed with its owner, the
// ifb device with it.
func TestShaperLifecycle(t *testing.T) {
	ctx := context.Background()
	r, host := newTest(t)
	a := shapedUnit(1_000_000)
	must(t, r.Apply(ctx, Change{Owner: a.Owner, New: a}))
	if got, want := shapers(host), "tc hnve egress tbf rate 2000000B/s burst 65536B; tc hnve ingress via hnqe tbf rate 1000000B/s burst 32768B"; got != want {
		t.Fatalf("shapers:\n got %s\nwant %s", got, want)
	}
	rep, err := r.Check(ctx)
	must(t, err)
	if !rep.InSync() {
		t.Fatalf("after apply, a check finds %+v", rep.Problems)
	}

	b := shapedUnit(3_000_000)
	must(t, r.Apply(ctx, Change{Owner: a.Owner, Old: a, New: b}))
	if got := shapers(host); !strings.Contains(got, "rate 3000000B/s") || !strings.Contains(got, "rate 6000000B/s") {
		t.Fatalf("after a change of rate: %s", got)
	}

	host.DeleteShaper(netmodel.Host, "hnve", netmodel.TCIngress)
	rep, err = r.Check(ctx)
	must(t, err)
	if rep.InSync() || !strings.Contains(rep.Problems[0].What, "ingress traffic of hnve is not shaped") {
		t.Fatalf("a check after the shaper was deleted: %+v", rep.Problems)
	}
	rep, err = r.Sync(ctx, []*netmodel.Unit{b}, SyncOptions{})
	must(t, err)
	if len(rep.Failed) > 0 {
		t.Fatal(rep.Failed)
	}
	if got := shapers(host); !strings.Contains(got, "ingress via hnqe tbf rate 3000000B/s") {
		t.Fatalf("not repaired: %s", got)
	}

	// A full pass that no longer wants the shapers (the QoS was removed
	// while the daemon was down) removes them; the links stay.
	plain := &netmodel.Unit{Owner: b.Owner, Objects: b.Objects[:1]}
	rep, err = r.Sync(ctx, []*netmodel.Unit{plain}, SyncOptions{})
	must(t, err)
	if got := shapers(host); got != "" {
		t.Fatalf("shapers no one wants stay: %s (%+v)", got, rep.Problems)
	}

	must(t, r.Apply(ctx, Change{Owner: b.Owner, Old: plain, New: b}))
	must(t, r.Apply(ctx, Change{Owner: b.Owner, Old: b}))
	if got := shapers(host); got != "" {
		t.Fatalf("shapers stay after their owner: %s", got)
	}
	if strings.Contains(host.Dump(), "hnqe") {
		t.Fatalf("the ifb device stays after its owner:\n%s", host.Dump())
	}
}
