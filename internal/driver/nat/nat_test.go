package nat

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

func golden(t *testing.T, name, got string) { testutil.Golden(t, name, got) }

func mustACL(t testing.TB, action, dir, protocols, local, lports, remote, rports string, priority uint16) api.ACLSpec {
	return testutil.ACL(t, action, dir, protocols, local, lports, remote, rports, priority)
}

func subnet(prefix string) api.SubnetSpec {
	p := netip.MustParsePrefix(prefix)
	return api.SubnetSpec{Prefix: p, Gateway: p.Addr().Next(), ReserveGateway: true, Range: p}
}

// sample is two NAT networks and three endpoints that use every policy.
func sample(t testing.TB) (nets []*driver.Network, eps map[string][]*driver.Endpoint) {
	a := &driver.Network{ID: "a", Name: "a", Spec: &api.NetworkSpec{Type: api.NAT, Subnets: []api.SubnetSpec{subnet("172.16.0.0/20")}}}
	b := &driver.Network{ID: "b", Name: "b", Spec: &api.NetworkSpec{Type: api.NAT, Subnets: []api.SubnetSpec{subnet("10.2.0.0/24"), subnet("fd00:2::/64")}},
		ACLs: []api.ACLSpec{mustACL(t, "Allow", "In", "", "", "", "", "", 1000)}}
	ns := func(name string) netmodel.NS { return netmodel.NS{Path: "/run/hostnet/netns/" + name} }
	web := &driver.Endpoint{ID: "web", NS: ns("web"), Interface: "eth0", MAC: net.HardwareAddr{2, 0, 0, 0, 0, 2},
		Addrs:  []netip.Prefix{netip.MustParsePrefix("172.16.0.2/20")},
		Routes: []api.RouteSpec{{Dst: netip.MustParsePrefix("192.0.2.0/24"), NextHop: netip.MustParseAddr("172.16.0.9")}},
		Mappings: []api.PortMappingSpec{
			{Protocol: api.ProtoTCP, ExternalPort: 8080, InternalPort: 80},
			{Protocol: api.ProtoUDP, ExternalPort: 5353, InternalPort: 53},
			{Protocol: api.ProtoTCP, ExternalPort: 9000, InternalPort: 90, VIP: netip.MustParseAddr("127.0.0.1")},
		},
		ACLs: []api.ACLSpec{
			mustACL(t, "Allow", "In", "6", "", "80,8000-8080", "10.0.0.0/8,fd00::/8", "", 100),
			mustACL(t, "Block", "In", "", "", "", "10.9.9.9", "", 50),
			mustACL(t, "Allow", "Out", "", "", "", "", "", 200),
		},
		OutboundNAT: &api.OutboundNATSpec{Exceptions: []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8"), netip.MustParsePrefix("10.1.0.0/16"),
			netip.MustParsePrefix("10.0.0.0/8")}},
	}
	plain := &driver.Endpoint{ID: "plain", NS: ns("plain"), Interface: "eth1", MAC: net.HardwareAddr{2, 0, 0, 0, 0, 3},
		Addrs: []netip.Prefix{netip.MustParsePrefix("172.16.0.3/20")}, DisableICC: true, LowMetric: true}
	dual := &driver.Endpoint{ID: "dual", NS: ns("dual"), Interface: "eth0", MAC: net.HardwareAddr{2, 0, 0, 0, 0, 4},
		Addrs:    []netip.Prefix{netip.MustParsePrefix("10.2.0.2/24"), netip.MustParsePrefix("fd00:2::2/64")},
		Mappings: []api.PortMappingSpec{{Protocol: api.ProtoTCP, ExternalPort: 8443, InternalPort: 443, IPv6: true}}}
	return []*driver.Network{a, b}, map[string][]*driver.Endpoint{"a": {web, plain}, "b": {dual}}
}

func planAll(nets []*driver.Network, eps map[string][]*driver.Endpoint) []*netmodel.Unit {
	var out []*netmodel.Unit
	for _, n := range nets {
		out = append(out, driver.Plan(New(), n, eps[n.ID], driver.HostFacts{})...)
	}
	return out
}

func firewallOf(t testing.TB, units []*netmodel.Unit) []*nftmodel.Table {
	t.Helper()
	tables, err := netmodel.UnitsFirewall(units)
	if err != nil {
		t.Fatal(err)
	}
	return tables
}

// The plans and the firewall they make are pinned by golden files.
func TestPlanGolden(t *testing.T) {
	nets, eps := sample(t)
	units := planAll(nets, eps)
	var b strings.Builder
	for _, u := range units {
		fmt.Fprintf(&b, "== %s\n%s", u.Owner, u.String())
	}
	golden(t, "units.golden", b.String())
	tables := firewallOf(t, units)
	if len(tables) != 2 {
		t.Fatalf("%d tables, want an inet and a bridge one", len(tables))
	}
	golden(t, "inet.nft", tables[0].String())
	golden(t, "bridge.nft", tables[1].String())
}

// Planning is deterministic: the same records give the same units.
func TestPlanIsDeterministic(t *testing.T) {
	nets, eps := sample(t)
	a, b := planAll(nets, eps), planAll(nets, eps)
	for i := range a {
		if !netmodel.SameUnit(a[i], b[i]) {
			t.Errorf("%s: planned twice, two different units", a[i].Owner)
		}
	}
}

func countRules(tables []*nftmodel.Table) (rules, elements int) {
	for _, tb := range tables {
		for _, c := range tb.Chains {
			rules += len(c.Rules)
		}
		for _, s := range tb.Sets {
			elements += len(s.Elements)
		}
		for _, m := range tb.Maps {
			elements += len(m.Elements)
		}
	}
	return rules, elements
}

// From 1 to 1,000 endpoints, each with 5 published ports and the same 10
// ACL rules, the tables keep the same rules: only set and map elements grow.
func TestRulesDoNotGrowWithEndpoints(t *testing.T) {
	var acls []api.ACLSpec
	for i := 0; i < 10; i++ {
		acls = append(acls, mustACL(t, "Allow", "In", "6", "", fmt.Sprint(1000+i), "10.0.0.0/8", "", uint16(100+i)))
	}
	n := &driver.Network{ID: "n", Spec: &api.NetworkSpec{Type: api.NAT, Subnets: []api.SubnetSpec{subnet("10.200.0.0/16")}}}
	build := func(count int) []*netmodel.Unit {
		var eps []*driver.Endpoint
		for i := 0; i < count; i++ {
			e := &driver.Endpoint{ID: fmt.Sprint(i), NS: netmodel.NS{Path: fmt.Sprintf("/ns/%d", i)}, Interface: "eth0",
				MAC:   net.HardwareAddr{2, 0, 0, 0, byte(i >> 8), byte(i)},
				Addrs: []netip.Prefix{netip.PrefixFrom(netip.AddrFrom4([4]byte{10, 200, byte(i >> 8), byte(i)}), 16)}, ACLs: acls}
			for k := 0; k < 5; k++ {
				e.Mappings = append(e.Mappings, api.PortMappingSpec{Protocol: api.ProtoTCP, ExternalPort: uint16(10000 + 5*i + k), InternalPort: 80})
			}
			eps = append(eps, e)
		}
		return driver.Plan(New(), n, eps, driver.HostFacts{})
	}
	r1, e1 := countRules(firewallOf(t, build(1)))
	r1000, e1000 := countRules(firewallOf(t, build(1000)))
	if r1 != r1000 {
		t.Errorf("rules: %d with 1 endpoint, %d with 1,000", r1, r1000)
	}
	if e1000 <= e1 {
		t.Errorf("elements: %d with 1 endpoint, %d with 1,000", e1, e1000)
	}
	t.Logf("rules %d; elements %d -> %d", r1, e1, e1000)
}

// Endpoints with the same rules share one chain; different rules get
// their own.
func TestProfilesAreShared(t *testing.T) {
	nets, eps := sample(t)
	twin := *eps["a"][0]
	twin.ID, twin.NS = "twin", netmodel.NS{Path: "/run/hostnet/netns/twin"}
	twin.Addrs = []netip.Prefix{netip.MustParsePrefix("172.16.0.4/20")}
	twin.Mappings = nil // two endpoints never publish one host port
	eps["a"] = append(eps["a"], &twin)
	inet := firewallOf(t, planAll(nets, eps))[0]
	var aclChains []string
	for _, c := range inet.Chains {
		if strings.HasPrefix(c.Name, "acl_") && c.Hook == "" {
			aclChains = append(aclChains, c.Name)
		}
	}
	// web and twin share in and out chains; plain (defaults) and dual
	// (network rules only) bring theirs: default in, dual's in and out.
	if len(aclChains) != 5 {
		t.Errorf("ACL chains: %v", aclChains)
	}
}

// An endpoint whose own default route goes elsewhere gets no second one
// through the subnet's gateway.
func TestOwnDefaultRouteWins(t *testing.T) {
	nets, eps := sample(t)
	ep := *eps["a"][1]
	ep.Routes = []api.RouteSpec{{Dst: netip.MustParsePrefix("0.0.0.0/0"), NextHop: netip.MustParseAddr("172.16.0.254")}}
	u := New().PlanEndpoint(nets[0], &ep, driver.HostFacts{})
	var defaults []string
	for _, o := range u.Objects {
		if r, ok := o.(netmodel.Route); ok && r.Dst.Bits() == 0 {
			defaults = append(defaults, r.String())
		}
	}
	if len(defaults) != 1 || !strings.Contains(defaults[0], "172.16.0.254") {
		t.Errorf("default routes: %v, want only the endpoint's own", defaults)
	}
}

// A quarantined endpoint gets a firewall that admits nothing.
func TestQuarantineFailsClosed(t *testing.T) {
	nets, eps := sample(t)
	ep := *eps["a"][1]
	ep.Quarantine = true
	u := New().PlanEndpoint(nets[0], &ep, driver.HostFacts{})
	found := false
	for _, o := range u.Objects {
		if e, ok := o.(netmodel.NftElement); ok && strings.HasPrefix(e.Set, "acl_") {
			found = true
			if !strings.Contains(e.Value, "acl_deny_") {
				t.Errorf("quarantined endpoint dispatched to %s", e.Value)
			}
		}
	}
	if !found {
		t.Error("no ACL dispatch for the quarantined endpoint")
	}
	if u.Flows.Admit.Admits(netmodel.FlowPacket{In: true, Proto: api.ProtoTCP, LocalPort: 80}) {
		t.Error("the quarantined endpoint's flows are admitted")
	}
}
