package driver_test

import (
	"net/netip"
	"strings"
	"testing"

	"github.com/hostnet/hostnet/api"
	"github.com/hostnet/hostnet/internal/driver"
	"github.com/hostnet/hostnet/internal/netmodel"
	"github.com/hostnet/hostnet/internal/testutil"
)

// The routes of an endpoint, one case a block: an endpoint has one
// default route per family, the first explicit one (its Routes, its
// SDNRoute policies, its route objects, in that order; then its subnet's
// own), else the gateway's.
func TestEndpointRoutesGolden(t *testing.T) {
	pfx, addr := netip.MustParsePrefix, netip.MustParseAddr
	plain := api.SubnetSpec{Prefix: pfx("10.7.0.0/24"), Gateway: addr("10.7.0.1")}
	withDefault := plain
	withDefault.Routes = []api.RouteSpec{{Dst: pfx("0.0.0.0/0"), NextHop: addr("10.7.0.253")}, {Dst: pfx("192.0.2.0/24"), NextHop: addr("10.7.0.9"), Metric: 5}}
	v6 := api.SubnetSpec{Prefix: pfx("fd00:7::/64"), Gateway: addr("fd00:7::1")}
	def4, def6 := pfx("0.0.0.0/0"), pfx("::/0")
	cases := []struct {
		name    string
		subnets []api.SubnetSpec
		routes  []api.RouteSpec
		low     bool
	}{
		{"the gateway's default route", []api.SubnetSpec{plain}, nil, false},
		{"an explicit default route wins over the gateway's", []api.SubnetSpec{plain}, []api.RouteSpec{{Dst: def4, NextHop: addr("10.7.0.254")}}, false},
		{"the first of two explicit default routes wins", []api.SubnetSpec{plain},
			[]api.RouteSpec{{Dst: def4, NextHop: addr("10.7.0.254")}, {Dst: def4, NextHop: addr("10.7.0.253"), Metric: 7}}, false},
		{"the subnet's default route wins over the gateway's", []api.SubnetSpec{withDefault}, nil, false},
		{"the endpoint's default route wins over the subnet's", []api.SubnetSpec{withDefault}, []api.RouteSpec{{Dst: def4, NextHop: addr("10.7.0.254"), Metric: 20}}, false},
		{"one default per family", []api.SubnetSpec{plain, v6}, []api.RouteSpec{{Dst: def6, NextHop: addr("fd00:7::fe")}}, true},
		{"an explicit route to a subnet route's destination and metric wins", []api.SubnetSpec{withDefault},
			[]api.RouteSpec{{Dst: pfx("192.0.2.0/24"), NextHop: addr("10.7.0.10"), Metric: 5}}, false},
	}
	var b strings.Builder
	for _, c := range cases {
		n := &driver.Network{ID: "n", Spec: &api.NetworkSpec{Type: api.NAT, Subnets: c.subnets}}
		ep := &driver.Endpoint{ID: "e", NS: netmodel.NS{Path: "/run/ns/e"}, Interface: "eth1", LowMetric: c.low, Routes: c.routes,
			Addrs: []netip.Prefix{pfx("10.7.0.5/24"), pfx("fd00:7::5/64")}}
		b.WriteString("# " + c.name + "\n")
		defaults := map[bool]int{}
		for _, r := range driver.EndpointRoutes(n, ep) {
			b.WriteString(r.String() + "\n")
			if r.Dst.Bits() == 0 {
				defaults[r.Dst.Addr().Is4()]++
			}
		}
		for fam, k := range defaults {
			if k > 1 {
				t.Errorf("%s: %d default routes of one family (IPv4 %v)", c.name, k, fam)
			}
		}
		b.WriteString("\n")
	}
	testutil.Golden(t, "routes.golden", b.String())
}
