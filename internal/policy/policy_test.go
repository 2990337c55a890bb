package policy

import (
	"fmt"
	"net"
	"net/netip"
	"strings"
	"testing"

	"github.com/hostnet/hostnet/api"
	"github.com/hostnet/hostnet/internal/nftmodel"
	"github.com/hostnet/hostnet/internal/nftmodel/nfttest"
	"github.com/hostnet/hostnet/internal/testutil"
)

func mustACL(t testing.TB, action, dir, protocols, local, lports, remote, rports string, priority uint16) api.ACLSpec {
	t.Helper()
	a := api.ACLSpec{Action: api.ACLAction(action), Direction: api.ACLDirection(dir), Priority: priority}
	var err error
	if a.Protocols, err = api.ParseProtocols(protocols); err != nil {
		t.Fatal(err)
	}
	if a.Local, err = api.ParseAddressList(local); err != nil {
		t.Fatal(err)
	}
	if a.Remote, err = api.ParseAddressList(remote); err != nil {
		t.Fatal(err)
	}
	if a.LocalPorts, err = api.ParsePortList(lports); err != nil {
		t.Fatal(err)
	}
	if a.RemotePorts, err = api.ParsePortList(rports); err != nil {
		t.Fatal(err)
	}
	return a
}

func sample(t testing.TB) Input {
	web := Endpoint{
		ID: "web", Network: "a", Port: "hnvweb", MAC: net.HardwareAddr{2, 0, 0, 0, 0, 2},
		Addrs: []netip.Addr{netip.MustParseAddr("172.16.0.2")},
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
		OutboundNAT: &api.OutboundNATSpec{Exceptions: []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8")}},
	}
	plain := Endpoint{ID: "plain", Network: "a", Port: "hnvplain", MAC: net.HardwareAddr{2, 0, 0, 0, 0, 3},
		Addrs: []netip.Addr{netip.MustParseAddr("172.16.0.3")}, DisableICC: true}
	dual := Endpoint{ID: "dual", Network: "b", Port: "hnvdual", MAC: net.HardwareAddr{2, 0, 0, 0, 0, 4},
		Addrs:    []netip.Addr{netip.MustParseAddr("10.2.0.2"), netip.MustParseAddr("fd00:2::2")},
		Mappings: []api.PortMappingSpec{{Protocol: api.ProtoTCP, ExternalPort: 8443, InternalPort: 443, IPv6: true}}}
	return Input{
		Networks: []Network{
			{ID: "b", Type: api.NAT, Bridge: "hnbr2", Subnets: []netip.Prefix{netip.MustParsePrefix("10.2.0.0/24"), netip.MustParsePrefix("fd00:2::/64")},
				ACLs: []api.ACLSpec{mustACL(t, "Allow", "In", "", "", "", "", "", 1000)}},
			{ID: "a", Type: api.NAT, Bridge: "hnbr1", Subnets: []netip.Prefix{netip.MustParsePrefix("172.16.0.0/20")}},
		},
		Endpoints: []Endpoint{web, plain, dual},
	}
}

func TestCompileGolden(t *testing.T) {
	tables := Compile(sample(t))
	for _, tb := range tables {
		if err := tb.Validate(); err != nil {
			t.Fatalf("%s table: %v", tb.Family, err)
		}
	}
	testutil.Golden(t, "inet.nft", tables[0].String())
	testutil.Golden(t, "bridge.nft", tables[1].String())
	empty := Compile(Input{})
	testutil.Golden(t, "empty.nft", empty[0].String()+"\n"+empty[1].String())
}

// The output does not depend on the order of the input, and applying it
// twice changes nothing the second time.
func TestCompileIsDeterministicAndIdempotent(t *testing.T) {
	in := sample(t)
	rev := Input{Networks: []Network{in.Networks[1], in.Networks[0]}, Endpoints: []Endpoint{in.Endpoints[2], in.Endpoints[1], in.Endpoints[0]}}
	for i, a := range Compile(in) {
		if b := Compile(rev)[i]; a.String() != b.String() {
			t.Errorf("table %d depends on input order", i)
		}
	}
	for i, tb := range Compile(in) {
		b := &nftmodel.Batch{}
		if err := b.Plan(nfttest.Compile(t, tb), nfttest.Compile(t, Compile(in)[i])); err != nil || len(b.Steps) != 0 {
			t.Errorf("applying table %s again: %q, %v", tb.Key(), b.Ops(), err)
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
	build := func(n int) Input {
		in := Input{Networks: []Network{{ID: "n", Type: api.NAT, Bridge: "hnbr1", Subnets: []netip.Prefix{netip.MustParsePrefix("10.200.0.0/16")}}}}
		for i := 0; i < n; i++ {
			e := Endpoint{ID: fmt.Sprint(i), Network: "n", Port: fmt.Sprintf("hnv%d", i), MAC: net.HardwareAddr{2, 0, 0, 0, byte(i >> 8), byte(i)},
				Addrs: []netip.Addr{netip.AddrFrom4([4]byte{10, 200, byte(i >> 8), byte(i)})}, ACLs: acls}
			for k := 0; k < 5; k++ {
				e.Mappings = append(e.Mappings, api.PortMappingSpec{Protocol: api.ProtoTCP, ExternalPort: uint16(10000 + 5*i + k), InternalPort: 80})
			}
			in.Endpoints = append(in.Endpoints, e)
		}
		return in
	}
	r1, e1 := countRules(Compile(build(1)))
	r1000, e1000 := countRules(Compile(build(1000)))
	if r1 != r1000 {
		t.Errorf("rules: %d with 1 endpoint, %d with 1,000", r1, r1000)
	}
	if e1000 <= e1 {
		t.Errorf("elements: %d with 1 endpoint, %d with 1,000", e1, e1000)
	}
	t.Logf("rules %d; elements %d -> %d", r1, e1, e1000)
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

// Endpoints with the same rules share one chain; different rules get
// their own.
func TestProfilesAreShared(t *testing.T) {
	in := sample(t)
	twin := in.Endpoints[0]
	twin.ID, twin.Port = "twin", "hnvtwin"
	in.Endpoints = append(in.Endpoints, twin)
	inet := Compile(in)[0]
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

// A sequence of incremental changes, applied as patches, leaves the same
// tables as compiling the final objects and applying them whole; and a
// patch for one endpoint among 1,000 is small.
func TestStatePatchesMatchCompile(t *testing.T) {
	in := sample(t)
	s := NewState()
	states := map[nftmodel.TableKey]*nftmodel.State{}
	for _, tb := range s.Tables() {
		states[tb.Key()] = nfttest.Compile(t, tb)
	}
	step := func(what string, patches []nftmodel.TablePatch) {
		t.Helper()
		if _, err := nftmodel.PatchAll(patches, states); err != nil {
			t.Fatalf("%s: %v", what, err)
		}
	}
	for _, n := range in.Networks {
		step("network "+n.ID, s.SetNetwork(n))
	}
	for _, e := range in.Endpoints {
		step("endpoint "+e.ID, s.SetEndpoint(e))
	}
	// Change an endpoint's rules, a network's ACLs, remove and re-add.
	web := in.Endpoints[0]
	web.ACLs = web.ACLs[:1]
	web.Mappings = web.Mappings[1:]
	step("web changed", s.SetEndpoint(web))
	netB := in.Networks[0]
	netB.ACLs = nil
	step("network b without ACLs", s.SetNetwork(netB))
	step("plain removed", s.RemoveEndpoint("plain"))
	final := Input{Networks: []Network{netB, in.Networks[1]}, Endpoints: []Endpoint{web, in.Endpoints[2]}}
	for _, tb := range Compile(final) {
		if got, exp := states[tb.Key()].String(), nfttest.Compile(t, tb).String(); got != exp {
			t.Errorf("patched table %s differs from the compiled one:\n--- patched\n%s\n--- compiled\n%s", tb.Key(), got, exp)
		}
	}

	// One endpoint more among 1,000: the patch carries its elements only.
	big := NewState()
	big.SetNetwork(Network{ID: "n", Type: api.NAT, Bridge: "hnbr1", Subnets: []netip.Prefix{netip.MustParsePrefix("10.200.0.0/16")}})
	ep := func(i int) Endpoint {
		return Endpoint{ID: fmt.Sprint(i), Network: "n", Port: fmt.Sprintf("hnv%d", i), MAC: net.HardwareAddr{2, 0, 0, 0, byte(i >> 8), byte(i)},
			Addrs:    []netip.Addr{netip.AddrFrom4([4]byte{10, 200, byte(i >> 8), byte(i)})},
			Mappings: []api.PortMappingSpec{{Protocol: api.ProtoTCP, ExternalPort: uint16(20000 + i), InternalPort: 80}}}
	}
	for i := 0; i < 1000; i++ {
		big.SetEndpoint(ep(i))
	}
	n := 0
	for _, p := range big.SetEndpoint(ep(1000)) {
		for _, els := range p.AddElements {
			n += len(els)
		}
		for _, kv := range p.SetMapElements {
			n += len(kv)
		}
	}
	// ports_v4 and acl_in_v4 in the inet table; endpoint_ports,
	// endpoint_mac and endpoint_v4 in the bridge table.
	if n != 5 {
		t.Errorf("the patch of one endpoint among 1,000 carries %d elements, want 5", n)
	}
}
