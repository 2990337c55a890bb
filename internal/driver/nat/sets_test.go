package nat

import (
	"encoding/json"
	"net"
	"net/netip"
	"strings"
	"testing"

	"github.com/hostnet/hostnet/api"
	"github.com/hostnet/hostnet/internal/driver"
	"github.com/hostnet/hostnet/internal/netmodel"
)

// setNetwork is a NAT network whose SetPolicy "pods" holds n addresses,
// with one endpoint whose ACL and tiers name it.
func setNetwork(t *testing.T, n int) (*driver.Network, *driver.Endpoint) {
	t.Helper()
	var values []string
	a := netip.MustParseAddr("10.100.0.0")
	for i := 0; i < n; i++ {
		values = append(values, a.String())
		a = a.Next()
	}
	doc, _ := json.Marshal(api.SetPolicySettings{Id: "pods", PolicyType: "IPSET", Values: strings.Join(values, ",")})
	sets, err := api.ParseSetPolicies("test", []api.Policy{{Type: api.SetPolicy, Settings: doc}})
	if err != nil {
		t.Fatal(err)
	}
	nw := &driver.Network{ID: "s", Name: "s", Spec: &api.NetworkSpec{Type: api.NAT, Subnets: []api.SubnetSpec{subnet("10.3.0.0/24")}}, Sets: sets}
	acl := mustACL(t, "Allow", "In", "6", "", "80", "", "", 100)
	acl.RemoteSets = []string{"pods"}
	block := mustACL(t, "Block", "Out", "", "", "", "", "", 1)
	block.RemoteSets = []string{"pods"}
	ep := &driver.Endpoint{ID: "e", NS: netmodel.NS{Path: "/run/hostnet/netns/e"}, Interface: "eth0", MAC: net.HardwareAddr{2, 0, 0, 0, 0, 9},
		Addrs: []netip.Prefix{netip.MustParsePrefix("10.3.0.2/24")}, ACLs: []api.ACLSpec{acl},
		Tiers: []api.TierSpec{{Name: "t", Direction: api.ACLOut, Order: 1, Rules: []api.ACLSpec{block}}}}
	return nw, ep
}

// A network's sets and the endpoint rules that name them make valid
// tables (the set declarations the network and its endpoints want are
// alike), and the rules do not grow with the set's members: only its
// elements do, all in the network's unit.
func TestSetsPlan(t *testing.T) {
	small, smallEP := setNetwork(t, 10)
	big, bigEP := setNetwork(t, 10000)
	us := driver.Plan(New(), small, []*driver.Endpoint{smallEP}, driver.HostFacts{})
	ub := driver.Plan(New(), big, []*driver.Endpoint{bigEP}, driver.HostFacts{})
	rs, es := countRules(firewallOf(t, us))
	rb, eb := countRules(firewallOf(t, ub))
	if rs != rb {
		t.Errorf("rules grew with the set's members: %d with 10, %d with 10,000", rs, rb)
	}
	if eb-es != 10000-10 {
		t.Errorf("elements grew by %d from 10 to 10,000 members, want %d", eb-es, 10000-10)
	}
	if a, b := objectsText(us[1]), objectsText(ub[1]); a != b {
		t.Errorf("the endpoint's objects depend on the set's members:\n%s\n---\n%s", a, b)
	}
}

func objectsText(u *netmodel.Unit) string {
	var b strings.Builder
	for _, o := range u.Objects {
		b.WriteString(o.String() + "\n")
	}
	return b.String()
}
