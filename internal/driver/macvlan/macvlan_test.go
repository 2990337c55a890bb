package macvlan

import (
	"fmt"
	"net"
	"net/netip"
	"strings"
	"testing"

	"github.com/hostnet/hostnet/api"
	"github.com/hostnet/hostnet/internal/driver"
	"github.com/hostnet/hostnet/internal/netmodel"
	"github.com/hostnet/hostnet/internal/nftmodel"
	"github.com/hostnet/hostnet/internal/testutil"
)

func mustACL(t testing.TB, action, dir, protocols, local, lports, remote, rports string, priority uint16) api.ACLSpec {
	return testutil.ACL(t, action, dir, protocols, local, lports, remote, rports, priority)
}

func subnet(prefix, gateway string) api.SubnetSpec {
	p := netip.MustParsePrefix(prefix)
	return api.SubnetSpec{Prefix: p, Gateway: netip.MustParseAddr(gateway), Range: p}
}

// sample is two Transparent networks on uplink up0 (the second with a
// NetworkACL), one L2Tunnel network on up1, and endpoints with their own
// rules, the defaults, quarantined, dual stack.
func sample(t testing.TB) (nets []*driver.Network, drivers map[string]Driver, eps map[string][]*driver.Endpoint) {
	ns := func(name string) netmodel.NS { return netmodel.NS{Path: "/run/hostnet/netns/" + name} }
	ep := func(id string, mac byte, acls []api.ACLSpec, addrs ...string) *driver.Endpoint {
		e := &driver.Endpoint{ID: id, NS: ns(id), Interface: "eth0", MAC: net.HardwareAddr{2, 0, 0, 0, 0, mac}, ACLs: acls}
		for _, a := range addrs {
			e.Addrs = append(e.Addrs, netip.MustParsePrefix(a))
		}
		return e
	}
	webOnly := []api.ACLSpec{
		mustACL(t, "Allow", "Out", "", "", "", "", "", 100),
		mustACL(t, "Allow", "In", "6", "", "80", "", "", 100),
		mustACL(t, "Block", "In", "", "", "", "", "", 1000),
	}
	a := &driver.Network{ID: "a", Name: "a", Spec: &api.NetworkSpec{Type: api.Transparent, Uplink: "up0",
		Subnets: []api.SubnetSpec{subnet("192.168.10.0/24", "192.168.10.1"), subnet("fd10::/64", "fd10::1")}}}
	b := &driver.Network{ID: "b", Name: "b", Spec: &api.NetworkSpec{Type: api.Transparent, Uplink: "up0",
		Subnets: []api.SubnetSpec{subnet("192.168.20.0/24", "192.168.20.1")}},
		ACLs: []api.ACLSpec{mustACL(t, "Block", "In", "17", "", "", "", "", 50)}}
	c := &driver.Network{ID: "c", Name: "c", Spec: &api.NetworkSpec{Type: api.L2Tunnel, Uplink: "up1",
		Subnets: []api.SubnetSpec{subnet("10.30.0.0/24", "10.30.0.1")}}}
	web := ep("web", 2, webOnly, "192.168.10.20/24", "fd10::20/64")
	plain := ep("plain", 3, nil, "192.168.10.21/24")
	jail := ep("jail", 4, webOnly, "192.168.20.20/24")
	jail.Quarantine = true
	netOnly := ep("netonly", 5, nil, "192.168.20.21/24")
	tunnel := ep("tunnel", 6, webOnly, "10.30.0.20/24")
	return []*driver.Network{a, b, c}, map[string]Driver{"a": Transparent(), "b": Transparent(), "c": L2Tunnel()},
		map[string][]*driver.Endpoint{"a": {web, plain}, "b": {jail, netOnly}, "c": {tunnel}}
}

func planAll(nets []*driver.Network, drivers map[string]Driver, eps map[string][]*driver.Endpoint) []*netmodel.Unit {
	var out []*netmodel.Unit
	for _, n := range nets {
		out = append(out, driver.Plan(drivers[n.ID], n, eps[n.ID], driver.HostFacts{})...)
	}
	return out
}

// firewallOf composes the tables the units want, as the reconciler does:
// an object wanted by several owners must be wanted alike.
func firewallOf(t testing.TB, units []*netmodel.Unit) []*nftmodel.Table {
	t.Helper()
	tables, err := netmodel.UnitsFirewall(units)
	if err != nil {
		t.Fatal(err)
	}
	return tables
}

// The plans and the firewall they make are pinned by golden files: the
// inet table filters the host's traffic with the endpoints (through the
// shim), the netdev table their traffic with the wire, one pair of base
// chains per uplink.
func TestPlanGolden(t *testing.T) {
	nets, drivers, eps := sample(t)
	units := planAll(nets, drivers, eps)
	var b strings.Builder
	for _, u := range units {
		fmt.Fprintf(&b, "== %s\n%s", u.Owner, u.String())
	}
	testutil.Golden(t, "units.golden", b.String())
	tables := firewallOf(t, units)
	if len(tables) != 2 || tables[0].Family != nftmodel.FamilyInet || tables[1].Family != nftmodel.FamilyNetdev {
		t.Fatalf("%d tables, want an inet and a netdev one", len(tables))
	}
	testutil.Golden(t, "inet.nft", tables[0].String())
	testutil.Golden(t, "netdev.nft", tables[1].String())
}

// Each uplink gets its own base chains, bound to it; networks on one
// uplink share them.
func TestChainsPerUplink(t *testing.T) {
	nets, drivers, eps := sample(t)
	netdev := firewallOf(t, planAll(nets, drivers, eps))[1]
	var base []string
	for _, c := range netdev.Chains {
		if c.Hook != "" {
			base = append(base, fmt.Sprintf("%s %s %s", c.Name, c.Hook, c.Device))
		}
	}
	want := "ingress_up0 ingress up0, ingress_up1 ingress up1, egress_up0 egress up0, egress_up1 egress up1"
	if got := strings.Join(base, ", "); got != want {
		t.Errorf("base chains: %s, want %s", got, want)
	}
}

// Every endpoint's addresses are dispatched at its uplink both ways (the
// defaults let everything out: no Out chain), and a quarantined one to
// the chains that deny everything.
func TestEndpointsAtTheirUplink(t *testing.T) {
	nets, drivers, eps := sample(t)
	netdev := firewallOf(t, planAll(nets, drivers, eps))[1]
	maps := map[string]map[string]string{}
	for _, m := range netdev.Maps {
		maps[m.Name] = m.Elements
	}
	for _, c := range []struct{ m, addr, want string }{
		{"acl_in_v4_up0", "192.168.10.20", "jump acl_in_"},
		{"acl_in_v6_up0", "fd10::20", "jump acl_in_"},
		{"acl_out_v4_up0", "192.168.10.20", "jump acl_out_"},
		{"acl_in_v4_up0", "192.168.10.21", "jump acl_default_in"},
		{"acl_out_v4_up0", "192.168.10.21", ""},
		{"acl_in_v4_up0", "192.168.20.20", "jump acl_deny_in"},
		{"acl_out_v4_up0", "192.168.20.20", "jump acl_deny_out"},
		{"acl_in_v4_up0", "192.168.20.21", "jump acl_in_"},
		{"acl_in_v4_up1", "10.30.0.20", "jump acl_in_"},
		{"acl_out_v4_up1", "10.30.0.20", "jump acl_out_"},
		{"acl_in_v4_up0", "10.30.0.20", ""},
	} {
		got := maps[c.m][c.addr]
		if c.want == "" && got != "" || !strings.HasPrefix(got, c.want) {
			t.Errorf("%s %s: %q, want %q...", c.m, c.addr, got, c.want)
		}
	}
	// The network's rule alone (netonly) is a profile of its own, not the
	// defaults.
	if v := maps["acl_in_v4_up0"]["192.168.20.21"]; v == maps["acl_in_v4_up0"]["192.168.10.21"] {
		t.Errorf("the NetworkACL is not in netonly's profile: %s", v)
	}
}

// The same profiles at both hook points: what the netdev table jumps to
// for an address is what the inet table does.
func TestSameProfileBothHooks(t *testing.T) {
	nets, drivers, eps := sample(t)
	tables := firewallOf(t, planAll(nets, drivers, eps))
	inet := map[string]string{}
	for _, m := range tables[0].Maps {
		for k, v := range m.Elements {
			inet[m.Name+" "+k] = v
		}
	}
	n := 0
	for _, m := range tables[1].Maps {
		for k, v := range m.Elements {
			base := strings.TrimSuffix(strings.TrimSuffix(m.Name, "_up0"), "_up1")
			if got := inet[base+" "+k]; got != v {
				t.Errorf("%s %s: netdev %s, inet %s", m.Name, k, v, got)
			}
			n++
		}
	}
	if n == 0 {
		t.Error("no netdev dispatch")
	}
}

// Planning is pure: the same records give the same units.
func TestPlanIsDeterministic(t *testing.T) {
	nets, drivers, eps := sample(t)
	a, b := planAll(nets, drivers, eps), planAll(nets, drivers, eps)
	for i := range a {
		if !netmodel.SameUnit(a[i], b[i]) {
			t.Errorf("%s: planned twice, two different units", a[i].Owner)
		}
	}
}
