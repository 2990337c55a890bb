package reconcile

import (
	"context"
	"net"
	"net/netip"
	"slices"
	"testing"

	"github.com/hostnet/hostnet/internal/netmodel"
)

// A bridge that takes the uplink eth1: the host's address and default
// route move to it and back; the next pass finds nothing to do (the
// host's address on the bridge is no stray); an uplink freed by hand is
// taken again; a pass that wants nothing (an uninstall) hands it back.
func TestUplinkHandover(t *testing.T) {
	ctx := context.Background()
	r, host := newTest(t)
	mac := net.HardwareAddr{2, 0, 0, 0, 0, 0x11}
	hostAddr := netip.MustParsePrefix("192.0.2.11/24")
	def := netmodel.Route{Dst: netip.MustParsePrefix("0.0.0.0/0"), Gateway: netip.MustParseAddr("192.0.2.1")}
	host.AddHostLink(netmodel.Link{Name: "eth1", MAC: mac}, []netip.Prefix{hostAddr}, []netmodel.Route{def})
	unit := &netmodel.Unit{Owner: "network/lan", Objects: []netmodel.Object{
		netmodel.Link{Name: "hnbr1", Kind: netmodel.LinkBridge, Up: true},
		netmodel.UplinkHandover{Uplink: "eth1", Bridge: "hnbr1"},
	}}
	handedOver := func(step string) {
		t.Helper()
		if got := host.HostAddrs("hnbr1"); !slices.Equal(got, []netip.Prefix{hostAddr}) {
			t.Errorf("%s: the bridge has %v, want the host's address", step, got)
		}
		if got := host.HostAddrs("eth1"); len(got) != 0 {
			t.Errorf("%s: the uplink keeps %v", step, got)
		}
		if got := host.HostRoutes("hnbr1"); len(got) != 1 || got[0].Gateway != def.Gateway {
			t.Errorf("%s: the bridge's routes are %v, want the default route", step, got)
		}
	}
	handedBack := func(step string) {
		t.Helper()
		if got := host.HostAddrs("eth1"); !slices.Equal(got, []netip.Prefix{hostAddr}) {
			t.Errorf("%s: the uplink has %v, want its address back", step, got)
		}
		if got := host.HostRoutes("eth1"); len(got) != 1 {
			t.Errorf("%s: the uplink's routes are %v, want the default route back", step, got)
		}
		obs, err := host.Observe(ctx, netmodel.Query{})
		must(t, err)
		if len(obs.Handovers) != 0 {
			t.Errorf("%s: the uplink is still a port: %v", step, obs.Handovers)
		}
	}
	must(t, r.Apply(ctx, Change{Owner: unit.Owner, New: unit}))
	handedOver("applied")
	obs, err := host.Observe(ctx, netmodel.Query{})
	must(t, err)
	if h := obs.Handovers[netmodel.UplinkHandover{Uplink: "eth1"}.Key()]; h.Bridge != "hnbr1" || len(h.Left) != 0 {
		t.Errorf("observed %+v, want eth1 handed over whole to hnbr1", h)
	}
	if l := obs.Links[netmodel.Link{Name: "hnbr1"}.Key()]; l.MAC.String() != mac.String() {
		t.Errorf("the bridge has MAC %s, want the uplink's %s", l.MAC, mac)
	}
	rep, err := r.Sync(ctx, []*netmodel.Unit{unit}, SyncOptions{})
	must(t, err)
	if !rep.InSync() {
		t.Errorf("a pass after the handover found %v", rep.Problems)
	}
	handedOver("after a pass")

	// Freed by hand, the address moved back: the check sees it, a pass
	// repairs it.
	host.SetMaster("eth1", "")
	host.DeleteAddr(netmodel.Addr{Link: "hnbr1", Prefix: hostAddr})
	host.AddHostLink(netmodel.Link{Name: "eth1", MAC: mac}, []netip.Prefix{hostAddr}, nil)
	rep, err = r.Check(ctx)
	must(t, err)
	if rep.InSync() {
		t.Error("the check missed the uplink freed by hand")
	}
	_, err = r.Sync(ctx, []*netmodel.Unit{unit}, SyncOptions{})
	must(t, err)
	handedOver("repaired")

	must(t, r.Apply(ctx, Change{Owner: unit.Owner, Old: unit}))
	handedBack("removed")

	// An uninstall (a pass that wants nothing) hands it back too, before
	// the bridge goes.
	must(t, r.Apply(ctx, Change{Owner: unit.Owner, New: unit}))
	handedOver("applied again")
	_, err = r.Sync(ctx, nil, SyncOptions{})
	must(t, err)
	handedBack("uninstalled")
}
