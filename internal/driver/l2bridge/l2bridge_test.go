package l2bridge

import (
	"fmt"
	"net"
	"net/netip"
	"strings"
	"testing"

	"github.com/hostnet/hostnet/api"
	"github.com/hostnet/hostnet/internal/driver"
	"github.com/hostnet/hostnet/internal/netmodel"
	"github.com/hostnet/hostnet/internal/testutil"
)

// sample is a dual-stack L2Bridge network on uplink seg0 with one
// endpoint, the segment's router as gateway of both families.
func sample() (*driver.Network, *driver.Endpoint) {
	sub := func(prefix, gw string) api.SubnetSpec {
		p := netip.MustParsePrefix(prefix)
		return api.SubnetSpec{Prefix: p, Gateway: netip.MustParseAddr(gw), Range: p}
	}
	n := &driver.Network{ID: "l2", Name: "l2", Spec: &api.NetworkSpec{Type: api.L2Bridge, Uplink: "seg0",
		Subnets: []api.SubnetSpec{sub("192.0.2.0/24", "192.0.2.1"), sub("2001:db8:5e9::/64", "2001:db8:5e9::1")}}}
	ep := &driver.Endpoint{ID: "web", NS: netmodel.NS{Path: "/run/hostnet/netns/web"}, Interface: "eth0",
		MAC:    net.HardwareAddr{2, 0, 0, 0, 0, 2},
		Addrs:  []netip.Prefix{netip.MustParsePrefix("192.0.2.130/24"), netip.MustParsePrefix("2001:db8:5e9::1:2/64")},
		Routes: []api.RouteSpec{{Dst: netip.MustParsePrefix("2001:db8:77::/48"), NextHop: netip.MustParseAddr("2001:db8:5e9::9")}}}
	return n, ep
}

// The plan of a dual-stack network is pinned: over IPv4 the endpoint is
// on its subnet (the bridge answers ARP for the rest); over IPv6 its
// address is a /128 and every route goes through the bridge's fe80::1,
// which the uplink's proxy NDP entries and forwarding complete.
func TestPlanGolden(t *testing.T) {
	n, ep := sample()
	var b strings.Builder
	for _, u := range driver.Plan(New(), n, []*driver.Endpoint{ep}, driver.HostFacts{}) {
		fmt.Fprintf(&b, "== %s\n", u.Owner)
		for _, o := range u.Objects {
			if k := o.Key(); k.Kind < netmodel.KindNftSet {
				fmt.Fprintln(&b, o)
			}
		}
	}
	testutil.Golden(t, "units.golden", b.String())
}

// No IPv6 route of an endpoint leaves it on-link or through a next hop
// on the segment: the bridge answers no neighbour solicitation but for
// its own address.
func TestIPv6RoutesGoThroughTheBridge(t *testing.T) {
	n, ep := sample()
	u := New().PlanEndpoint(n, ep, driver.HostFacts{})
	routes := 0
	for _, o := range u.Objects {
		switch v := o.(type) {
		case netmodel.Route:
			if v.NS == ep.NS && v.Dst.Addr().Is6() {
				routes++
				if v.Gateway != netmodel.RouterLinkLocal {
					t.Errorf("%s: want via %s", v, netmodel.RouterLinkLocal)
				}
			}
		case netmodel.Addr:
			if v.NS == ep.NS && v.Prefix.Addr().Is6() && v.Prefix.Bits() != 128 {
				t.Errorf("%s: want a /128", v)
			}
		}
	}
	if routes != 3 { // the subnet, the default, the endpoint's own
		t.Errorf("%d IPv6 routes in the endpoint's namespace, want 3", routes)
	}
}
