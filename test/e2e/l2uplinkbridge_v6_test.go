package e2e

import (
	"context"
	"net/netip"
	"testing"
	"time"
)

// TestTransparentBridgeIPv6OnASegment: a dual-stack Transparent network
// over a bridge on a segment that carries IPv6. The host's IPv6 address
// (2001:db8:5e9::11/64) and IPv6 default route move from seg0 to the bridge
// with the IPv4 ones and come back at the delete, the router talking to
// the host over IPv6 throughout (the longest gap between two answers is
// logged); an endpoint with an IPv6 address of the segment reaches the
// router, the host and the router it over IPv6, its frames on the wire
// from its own MAC.
func TestTransparentBridgeIPv6OnASegment(t *testing.T) {
	l := newBridgeLab(t)
	h, seg := l.h, l.seg
	hs := l.withV6(t)
	ctx := context.Background()
	if why := hs.back(readUplink(t, seg, h.HostNS, "none"), ""); why != "" {
		t.Fatalf("the lab: %s", why)
	}
	watch := l.watchGaps(t, hostV6.Addr())
	n, err := h.Client().CreateNetwork(ctx, bridgeDoc("lan6", true))
	if err != nil {
		t.Fatal(err)
	}
	br := n.BridgeName
	if why := waitUplink(t, seg, h.HostNS, br, hs.over); why != "" {
		t.Fatalf("after the create: %s: %+v", why, readUplink(t, seg, h.HostNS, br))
	}

	wire := seg.capture(h.port)
	a1 := attachL2(t, h, n.ID, "a1")
	ep := a1.Namespace.NetNamespacePath
	a1v6, router6 := v6Of(t, a1), netip.MustParseAddr(routerV6)
	if !netip.MustParsePrefix(segV6Pool).Contains(a1v6) {
		t.Errorf("a1's IPv6 address %s is not from the pool %s", a1v6, segV6Pool)
	}
	runMatrix(t, "Transparent over a bridge, IPv6", []matrixRow{
		{"a1", "external (the router)", ep, router6, true},
		{"external (the router)", "a1", seg.router, a1v6, true},
		{"host", "a1 (its endpoint)", h.HostNS, a1v6, true},
		{"a1", "host", ep, hostV6.Addr(), true},
		{"external (the router)", "host", seg.router, hostV6.Addr(), true},
		{"a1 over IPv4", "external (the router)", ep, netip.MustParseAddr(routerA), true},
	})
	seen := wire.sources()
	if macs := seen[a1v6]; !macs[a1.mac.String()] || macs[h.mac.String()] {
		t.Errorf("frames of a1 (%s) left with source MACs %v, want its own %s and never the host's %s", a1v6, sortedMACs(macs), a1.mac, h.mac)
	}
	if macs := seen[hostV6.Addr()]; len(macs) > 0 && (!macs[h.mac.String()] || len(macs) != 1) {
		t.Errorf("the host's IPv6 frames left with source MACs %v, want its own %s only", sortedMACs(macs), h.mac)
	}

	// A killed daemon's restart keeps the IPv6 path and the handover.
	h.Restart(true)
	if why := waitUplink(t, seg, h.HostNS, br, hs.over); why != "" {
		t.Errorf("after the restart: %s", why)
	}
	if !reachTCP(t, ep, netip.AddrPortFrom(router6, 7000).String()) {
		t.Error("after the restart, a1 does not reach the router over IPv6")
	}

	if err := h.Client().DeleteEndpoint(ctx, a1.Endpoint.ID); err != nil {
		t.Fatal(err)
	}
	if err := h.Client().DeleteNetwork(ctx, n.ID); err != nil {
		t.Fatal(err)
	}
	if why := waitUplink(t, seg, h.HostNS, br, hs.back); why != "" {
		t.Errorf("after the delete: %s: %+v", why, readUplink(t, seg, h.HostNS, br))
	}
	if !reachTCP(t, seg.router, netip.AddrPortFrom(hostV6.Addr(), 7000).String()) {
		t.Error("after the delete, the router does not reach the host over IPv6")
	}
	time.Sleep(100 * time.Millisecond) // a few more exchanges after the delete
	watch.finish()
	watch.mu.Lock()
	defer watch.mu.Unlock()
	t.Logf("the router's exchanges with the host over IPv6: %d, %d failed; the longest gap between two answers: %v",
		watch.rounds, len(watch.failed), watch.longest.Round(time.Millisecond))
	if len(watch.failed) > 0 {
		t.Errorf("the router's exchanges with the host over IPv6 failed (no answer within 5 s): %v", watch.failed)
	}
}
