package policy

import (
	"net/netip"
	"strings"
	"testing"

	"github.com/hostnet/hostnet/api"
	"github.com/hostnet/hostnet/internal/netmodel"
	"github.com/hostnet/hostnet/internal/testutil"
)

// rule is a TierAcl rule of direction dir: an ACL whose action may be Pass.
func tierRule(t testing.TB, action, dir, protocols, lports, remote string, priority uint16) api.ACLSpec {
	r := mustACL(t, "Allow", dir, protocols, "", lports, "", "", priority)
	r.Action = api.ACLAction(action)
	if remote != "" {
		var err error
		if r.Remote, r.RemoteSets, err = api.ParseRemoteAddresses(remote); err != nil {
			t.Fatal(err)
		}
	}
	return r
}

func ipSets(t testing.TB, docs ...string) *api.IPSets {
	var ps []api.Policy
	for _, d := range docs {
		ps = append(ps, api.Policy{Type: api.SetPolicy, Settings: []byte(d)})
	}
	s, err := api.ParseSetPolicies("test network", ps)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// The tiers of the golden test: In, "first" (Order 100) passes c1's web
// traffic on, blocks c2, allows DNS; "second" (Order 200) allows the web
// and blocks the rest of TCP; Out, one tier blocking port 81 to the
// members of set "web".
func goldenTiers(t testing.TB) []api.TierSpec {
	return []api.TierSpec{
		{Name: "second", Direction: api.ACLIn, Order: 200, Rules: []api.ACLSpec{
			tierRule(t, "Allow", "In", "6", "80", "", 10),
			tierRule(t, "Block", "In", "6", "", "", 20)}},
		{Name: "first", Direction: api.ACLIn, Order: 100, Rules: []api.ACLSpec{
			tierRule(t, "Block", "In", "", "", "10.0.0.3", 20),
			tierRule(t, "Pass", "In", "6", "80", "10.0.0.4,web", 10),
			tierRule(t, "Allow", "In", "17", "53", "", 30)}},
		{Name: "out", Direction: api.ACLOut, Order: 1, Rules: []api.ACLSpec{
			tierRule(t, "Block", "Out", "6", "", "web", 10)}},
	}
}

// The compiled model of tiers and IP sets in hostnet's inet table: the
// network's sets, two endpoints with the same tiers (sharing their
// chains), one with an ACL after its tiers, one quarantined (tiers
// ignored).
func TestTiersGolden(t *testing.T) {
	sets := ipSets(t, `{"Id":"web","Name":"web servers","PolicyType":"IPSET","Values":"10.0.0.7,10.0.1.0/24,fd00::7"}`,
		`{"Id":"db","Name":"","PolicyType":"IPSET","Values":"10.0.2.9"}`,
		`{"Id":"all","Name":"","PolicyType":"NESTEDIPSET","Values":"web,db"}`)
	scope := ScopeOf("net1", sets)
	h := AddressHooks
	var objs []netmodel.Object
	objs = append(objs, h.Layout()...)
	objs = append(objs, h.IPSets("net1", sets)...)
	a := []netip.Addr{netip.MustParseAddr("10.0.0.2"), netip.MustParseAddr("fd00::2")}
	b := []netip.Addr{netip.MustParseAddr("10.0.0.5")}
	c := []netip.Addr{netip.MustParseAddr("10.0.0.6")}
	d := []netip.Addr{netip.MustParseAddr("10.0.0.8")}
	objs = append(objs, h.FilterProfile(a, NewTieredProfile(nil, nil, goldenTiers(t), scope))...)
	objs = append(objs, h.FilterProfile(b, NewTieredProfile(nil, nil, goldenTiers(t), scope))...)
	withACL := []api.ACLSpec{mustACL(t, "Allow", "In", "", "", "", "", "", 100)}
	withACL[0].RemoteSets = []string{"all"}
	objs = append(objs, h.FilterProfile(c, NewTieredProfile(nil, withACL, goldenTiers(t), scope))...)
	objs = append(objs, h.FilterProfile(d, Quarantine())...)
	testutil.Golden(t, "tiers.nft", compose(t, dedup(t, objs)))
}

// The reference semantics of tiers (Profile.Admits): Pass, Allow and
// Block across tiers, Order over list order, priorities, sets, and what
// the tiers leave to the ACL profile.
func TestTiersAdmit(t *testing.T) {
	sets := ipSets(t, `{"Id":"web","Name":"","PolicyType":"IPSET","Values":"10.0.0.7,10.0.1.0/24"}`)
	scope := ScopeOf("net1", sets)
	me := netip.MustParseAddr("10.0.0.2")
	in := func(proto uint8, remote string, port uint16) Packet {
		return Packet{Dir: api.ACLIn, Proto: proto, Local: me, Remote: netip.MustParseAddr(remote), LocalPort: port, RemotePort: 40000}
	}
	out := func(proto uint8, remote string, port uint16) Packet {
		return Packet{Dir: api.ACLOut, Proto: proto, Local: me, Remote: netip.MustParseAddr(remote), LocalPort: 40000, RemotePort: port}
	}
	tiered := NewTieredProfile(nil, nil, goldenTiers(t), scope)
	denyRest := NewTieredProfile(nil, []api.ACLSpec{mustACL(t, "Allow", "In", "6", "", "80", "", "", 1)}, goldenTiers(t), scope)
	cases := []struct {
		name string
		p    Profile
		pkt  Packet
		want bool
	}{
		{"Pass (set member), then Allow in the second tier", tiered, in(6, "10.0.1.9", 80), true},
		{"Pass (address), then Allow", tiered, in(6, "10.0.0.4", 80), true},
		{"Block in the first tier beats Allow in the second", tiered, in(6, "10.0.0.3", 80), false},
		{"no match in the first, Block in the second", tiered, in(6, "10.0.0.9", 81), false},
		{"Allow in the first beats the defaults", tiered, in(17, "10.0.0.9", 53), true},
		{"undecided by the tiers: the firewall defaults", tiered, in(17, "10.0.0.9", 54), true},
		{"undecided: the defaults refuse GRE", tiered, in(47, "10.0.0.9", 0), false},
		{"Out tier: Block to a set member", tiered, out(6, "10.0.0.7", 443), false},
		{"Out tier: not a member, the defaults let it out", tiered, out(6, "10.0.0.9", 443), true},
		{"undecided: the endpoint's ACLs deny", denyRest, in(17, "10.0.0.9", 54), false},
		{"Allow in a tier beats the ACLs' default deny", denyRest, in(17, "10.0.0.9", 53), true},
		{"quarantine ignores tiers", Quarantine(), in(17, "10.0.0.9", 53), false},
	}
	for _, c := range cases {
		if got := c.p.Admits(c.pkt); got != c.want {
			t.Errorf("%s: %s admitted %v, want %v", c.name, c.pkt, got, c.want)
		}
	}
}

// A change of a set's members changes the set's elements and nothing
// else: the same chains, the same map elements.
func TestSetChangeIsElementsOnly(t *testing.T) {
	profile := func(values string) (rules, elements []string) {
		sets := ipSets(t, `{"Id":"web","Name":"","PolicyType":"IPSET","Values":"`+values+`"}`)
		acls := []api.ACLSpec{mustACL(t, "Allow", "In", "6", "", "80", "", "", 100)}
		acls[0].RemoteSets = []string{"web"}
		objs := AddressHooks.IPSets("net1", sets)
		objs = append(objs, AddressHooks.FilterProfile([]netip.Addr{netip.MustParseAddr("10.0.0.2")},
			NewTieredProfile(nil, acls, goldenTiers(t), ScopeOf("net1", sets)))...)
		for _, o := range objs {
			if el, ok := o.(netmodel.NftElement); ok && strings.HasPrefix(el.Set, "ipset_") {
				elements = append(elements, o.String())
			} else {
				rules = append(rules, o.String())
			}
		}
		return rules, elements
	}
	r1, e1 := profile("10.0.0.7,10.0.0.8")
	r2, e2 := profile("10.0.0.7,10.0.0.9")
	if strings.Join(r1, "\n") != strings.Join(r2, "\n") {
		t.Errorf("a member change changed more than set elements:\n%s\n---\n%s", strings.Join(r1, "\n"), strings.Join(r2, "\n"))
	}
	if strings.Join(e1, "\n") == strings.Join(e2, "\n") {
		t.Error("a member change left the set's elements alone")
	}
}

// Two networks' sets of one Id are two sets, and rules naming them two
// chains.
func TestSetsAreScopedByNetwork(t *testing.T) {
	if IPSetName("a", "web", false) == IPSetName("b", "web", false) {
		t.Error("two networks' sets share a name")
	}
	acls := []api.ACLSpec{mustACL(t, "Allow", "In", "", "", "", "", "", 1)}
	acls[0].RemoteSets = []string{"web"}
	pa := NewTieredProfile(nil, acls, nil, ScopeOf("a", nil))
	pb := NewTieredProfile(nil, acls, nil, ScopeOf("b", nil))
	if pa.chainName(api.ACLIn) == pb.chainName(api.ACLIn) {
		t.Error("rules naming two networks' sets share a chain")
	}
}

// The longest comments a tier compiles to fit nftables' bound: a tier
// name and a rule Id of the longest, the highest Order, Priority and rule
// number, the most sets and addresses.
func TestTierCommentsFit(t *testing.T) {
	name := strings.Repeat("n", api.MaxTierNameLen)
	var remote []string
	for i := 0; i < api.MaxSetRefs; i++ {
		remote = append(remote, "set"+strings.Repeat("x", 40)+string(rune('a'+i)))
	}
	for i := 0; i < 40; i++ {
		remote = append(remote, netip.AddrFrom4([4]byte{10, 1, 0, byte(i)}).String(), netip.AddrFrom16([16]byte{0xfd, 15: byte(i)}).String())
	}
	r := tierRule(t, "Block", "Out", "", "", strings.Join(remote, ","), 65535)
	r.ID = strings.Repeat("i", api.MaxACLIDLen)
	tr := api.TierSpec{Name: name, Direction: api.ACLOut, Order: 65535}
	small := tierRule(t, "Allow", "Out", "6", "", "", 1)
	for i := 0; i < api.MaxTierRules-1; i++ {
		tr.Rules = append(tr.Rules, small)
	}
	tr.Rules = append(tr.Rules, r) // the last, by Priority too
	p := NewTieredProfile(nil, nil, []api.TierSpec{tr}, ScopeOf("net1", nil))
	objs := append(AddressHooks.Layout(), AddressHooks.FilterProfile([]netip.Addr{netip.MustParseAddr("10.0.0.2")}, p)...)
	compose(t, dedup(t, objs))
}
