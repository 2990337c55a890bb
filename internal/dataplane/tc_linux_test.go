package dataplane

import (
	"context"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/hostnet/hostnet/internal/netmodel"
	"github.com/hostnet/hostnet/internal/testutil"
	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// Shapers in the kernel: applied and read back as applied (the burst
// within the rounding to scheduler ticks), changed in place without the
// link going down or its index changing, and removed with only
// hostnet's qdiscs going.
func TestShapersKernel(t *testing.T) {
	ctx := context.Background()
	hostPath, hostNS := testutil.NewNS(t, "host")
	epPath, _ := testutil.NewNS(t, "ep")
	h, err := OpenLinux(hostPath, HostConfig{LinkPrefixes: []string{"hn"}})
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close()
	ep := netmodel.NS{Path: epPath}
	port := netmodel.Link{Name: "hnvq", Kind: netmodel.LinkVeth, Up: true, Seal: true, Peer: &netmodel.LinkRef{NS: ep, Name: "eth0"}}
	peer := netmodel.Link{NS: ep, Name: "eth0", Kind: netmodel.LinkVeth, MAC: net.HardwareAddr{2, 0, 0, 0, 0, 9}, Up: true, Peer: &netmodel.LinkRef{Name: "hnvq"}}
	ifb := netmodel.Link{Name: "hnqq", Kind: netmodel.LinkIFB, MTU: 1500, Up: true}
	shapers := func(in, out uint64) []netmodel.Object {
		return []netmodel.Object{
			netmodel.Shaper{Link: "hnvq", Direction: netmodel.TCEgress, Rate: out, Burst: 65536},
			netmodel.Shaper{Link: "hnvq", Direction: netmodel.TCIngress, IFB: "hnqq", Rate: in, Burst: 40000},
		}
	}
	check := func(want []netmodel.Object) {
		t.Helper()
		obs, err := h.Observe(ctx, netmodel.Query{})
		if err != nil {
			t.Fatal(err)
		}
		t.Logf("observed %v", obs.Shapers)
		if len(obs.Shapers) != len(want) {
			t.Fatalf("observed %v, want %v", obs.Shapers, want)
		}
		for _, w := range want {
			s := w.(netmodel.Shaper)
			have, ok := obs.Shapers[s.Key()]
			if !ok || !s.SameShaping(have) {
				t.Errorf("observed %v, want %v", have, s)
			}
		}
	}
	if err := h.Apply(ctx, append([]netmodel.Object{port, peer, ifb}, shapers(1_000_000, 2_000_000)...), nil); err != nil {
		t.Fatal(err)
	}
	check(shapers(1_000_000, 2_000_000))
	nh, err := netlink.NewHandleAt(hostNS, unix.NETLINK_ROUTE)
	if err != nil {
		t.Fatal(err)
	}
	defer nh.Close()
	before, err := nh.LinkByName("hnvq")
	if err != nil {
		t.Fatal(err)
	}
	// Applied again, and with other rates: in place.
	for _, s := range [][]netmodel.Object{shapers(1_000_000, 2_000_000), shapers(5_000_000, 7_000_000)} {
		if err := h.Apply(ctx, s, nil); err != nil {
			t.Fatal(err)
		}
	}
	check(shapers(5_000_000, 7_000_000))
	after, err := nh.LinkByName("hnvq")
	if err != nil {
		t.Fatal(err)
	}
	if after.Attrs().Index != before.Attrs().Index || after.Attrs().Flags&net.FlagUp == 0 {
		t.Errorf("the port changed: index %d -> %d, flags %v", before.Attrs().Index, after.Attrs().Index, after.Attrs().Flags)
	}
	// Applying again added no second redirect.
	filters, err := nh.FilterList(after, netlink.MakeHandle(0xffff, 0))
	if err != nil || len(filters) != 1 {
		t.Fatalf("ingress filters of the port: %v, %v", filters, err)
	}
	// A deleted token bucket is seen missing, and reported; hostnet's
	// own deletions are not.
	changes := make(chan Change, 16)
	wctx, stop := context.WithCancel(ctx)
	defer stop()
	if err := h.Watch(wctx, func(c Change) { changes <- c }, func(err error) { t.Logf("watch: %v", err) }); err != nil {
		t.Fatal(err)
	}
	if err := nh.QdiscDel(&netlink.Tbf{QdiscAttrs: netlink.QdiscAttrs{LinkIndex: after.Attrs().Index, Handle: netlink.MakeHandle(netmodel.QdiscHandle, 0), Parent: netlink.HANDLE_ROOT}}); err != nil {
		t.Fatal(err)
	}
	check(shapers(5_000_000, 7_000_000)[1:])
	select {
	case c := <-changes:
		if !strings.Contains(c.Reason, "a shaper of device hnvq was deleted") {
			t.Errorf("reported: %+v", c)
		}
	case <-time.After(2 * time.Second):
		t.Error("a deleted token bucket was not reported")
	}
	if err := h.Apply(ctx, nil, shapers(5_000_000, 7_000_000)); err != nil {
		t.Fatal(err)
	}
	check(nil)
	select {
	case c := <-changes:
		t.Errorf("hostnet's own removal reported: %+v", c)
	case <-time.After(300 * time.Millisecond):
	}
	qs, err := nh.QdiscList(after)
	if err != nil {
		t.Fatal(err)
	}
	for _, q := range qs {
		if q.Type() == "tbf" || q.Type() == "ingress" {
			t.Errorf("left on the port: %v", q)
		}
	}
	if err := h.Apply(ctx, nil, []netmodel.Object{ifb, port, peer}); err != nil {
		t.Fatal(err)
	}
}
