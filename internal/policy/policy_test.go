package policy

import (
	"net/netip"
	"testing"

	"github.com/hostnet/hostnet/api"
	"github.com/hostnet/hostnet/internal/testutil"
)

func mustACL(t testing.TB, action, dir, protocols, local, lports, remote, rports string, priority uint16) api.ACLSpec {
	return testutil.ACL(t, action, dir, protocols, local, lports, remote, rports, priority)
}

// The reference semantics of ACLs: priority, ties, defaults, directions.
func TestProfileAdmits(t *testing.T) {
	a := func(action, dir, protocols, local, lports, remote, rports string, p uint16) api.ACLSpec {
		return mustACL(t, action, dir, protocols, local, lports, remote, rports, p)
	}
	me, peer, other := netip.MustParseAddr("10.0.0.2"), netip.MustParseAddr("10.0.0.3"), netip.MustParseAddr("192.0.2.9")
	in := func(proto uint8, remote netip.Addr, port uint16) Packet {
		return Packet{Dir: api.ACLIn, Proto: proto, Local: me, Remote: remote, LocalPort: port, RemotePort: 40000}
	}
	out := func(proto uint8, remote netip.Addr, port uint16) Packet {
		return Packet{Dir: api.ACLOut, Proto: proto, Local: me, Remote: remote, LocalPort: 40000, RemotePort: port}
	}
	cases := []struct {
		name string
		p    Profile
		pkt  Packet
		want bool
	}{
		{"defaults: TCP in", NewProfile(nil, nil), in(6, peer, 80), true},
		{"defaults: GRE in", NewProfile(nil, nil), in(47, peer, 0), false},
		{"defaults: IGMP in", NewProfile(nil, nil), in(2, peer, 0), true},
		{"defaults: GRE out", NewProfile(nil, nil), out(47, peer, 0), true},
		{"one rule denies the rest", NewProfile(nil, []api.ACLSpec{a("Allow", "In", "6", "", "80", "", "", 1)}), in(6, peer, 81), false},
		{"one rule denies out", NewProfile(nil, []api.ACLSpec{a("Allow", "In", "6", "", "80", "", "", 1)}), out(6, peer, 80), false},
		{"lower number wins", NewProfile(nil, []api.ACLSpec{a("Allow", "In", "", "", "", "", "", 2), a("Block", "In", "", "", "", "", "", 1)}), in(6, peer, 80), false},
		{"tie: Block wins", NewProfile(nil, []api.ACLSpec{a("Allow", "In", "", "", "", "", "", 1), a("Block", "In", "", "", "", "", "", 1)}), in(6, peer, 80), false},
		{"remote prefix", NewProfile(nil, []api.ACLSpec{a("Allow", "In", "", "", "", "10.0.0.0/24", "", 1)}), in(17, other, 53), false},
		{"ports imply TCP or UDP", NewProfile(nil, []api.ACLSpec{a("Allow", "In", "", "", "80", "", "", 1)}), in(1, peer, 80), false},
		{"port range", NewProfile(nil, []api.ACLSpec{a("Allow", "Out", "17", "", "", "", "50-60", 1)}), out(17, other, 53), true},
		{"network rules merged", NewProfile([]api.ACLSpec{a("Block", "In", "6", "", "", "", "", 1)}, []api.ACLSpec{a("Allow", "In", "", "", "", "", "", 5)}), in(6, peer, 80), false},
		{"local address filter", NewProfile(nil, []api.ACLSpec{a("Allow", "In", "", "10.0.0.9", "", "", "", 1)}), in(6, peer, 80), false},
	}
	for _, c := range cases {
		if got := c.p.Admits(c.pkt); got != c.want {
			t.Errorf("%s: %s admitted %v, want %v", c.name, c.pkt, got, c.want)
		}
	}
}

// Two profiles whose rules differ only by their Id get chains of their
// own: the Id shows in the chain (its comments), and one chain name must
// always have one content, or two endpoints would want one chain two ways
// (found by the API fuzzer: a 500 on an endpoint's creation).
func TestRuleIdsNameTheirChain(t *testing.T) {
	rule := func(id string) api.ACLSpec {
		a := mustACL(t, "Block", "Out", "", "", "", "", "", 239)
		a.ID = id
		return a
	}
	for _, ids := range [][2]string{{"", "a"}, {"a", "b"}} {
		p, q := NewProfile(nil, []api.ACLSpec{rule(ids[0])}), NewProfile(nil, []api.ACLSpec{rule(ids[1])})
		pc, qc := p.chain(api.ACLOut), q.chain(api.ACLOut)
		if pc.Name == qc.Name {
			t.Errorf("rules with Ids %q and %q share chain %s", ids[0], ids[1], pc.Name)
		}
	}
	if p, q := NewProfile(nil, []api.ACLSpec{rule("a")}), NewProfile(nil, []api.ACLSpec{rule("a")}); p.chainName(api.ACLOut) != q.chainName(api.ACLOut) {
		t.Error("equal rules do not share their chain")
	}
}
