package service

import (
	"net/netip"
	"testing"

	"github.com/hostnet/hostnet/api"
	"github.com/hostnet/hostnet/internal/dataplane"
	"github.com/hostnet/hostnet/internal/policy"
)

func TestFlowJudge(t *testing.T) {
	ep := netip.MustParseAddr("172.20.0.2")
	host := netip.MustParseAddr("192.0.2.1")
	peer := netip.MustParseAddr("198.51.100.7")
	ap := netip.AddrPortFrom
	web := api.PortMappingSpec{Protocol: api.ProtoTCP, ExternalPort: 8080, InternalPort: 80}
	// A flow from peer to host:8080, DNATed to the endpoint's port 80.
	published := dataplane.Flow{Proto: api.ProtoTCP, OrigSrc: ap(peer, 40000), OrigDst: ap(host, 8080), ReplySrc: ap(ep, 80), ReplyDst: ap(peer, 40000)}
	// A flow from peer straight to the endpoint's port 22.
	direct := dataplane.Flow{Proto: api.ProtoTCP, OrigSrc: ap(peer, 40001), OrigDst: ap(ep, 22), ReplySrc: ap(ep, 22), ReplyDst: ap(peer, 40001)}
	// A flow the endpoint opened to peer's port 53.
	outgoing := dataplane.Flow{Proto: api.ProtoUDP, OrigSrc: ap(ep, 5000), OrigDst: ap(peer, 53), ReplySrc: ap(peer, 53), ReplyDst: ap(host, 5000)}

	blockIn22 := api.ACLSpec{Action: api.ACLBlock, Direction: api.ACLIn, Protocols: []uint8{api.ProtoTCP}, LocalPorts: []api.PortRange{{From: 22, To: 22}}, Priority: 10}
	allowAll := []api.ACLSpec{
		{Action: api.ACLAllow, Direction: api.ACLIn, Priority: 100},
		{Action: api.ACLAllow, Direction: api.ACLOut, Priority: 100},
	}
	endpoint := func(m []api.PortMappingSpec, acls ...api.ACLSpec) policy.Endpoint {
		return policy.Endpoint{ID: "e", Addrs: []netip.Addr{ep}, Mappings: m, ACLs: acls}
	}
	cases := []struct {
		name  string
		after policy.Endpoint
		net   policy.Network
		ends  []dataplane.Flow
		stays []dataplane.Flow
	}{
		{"no change", endpoint([]api.PortMappingSpec{web}), policy.Network{}, nil, []dataplane.Flow{published, direct, outgoing}},
		{"mapping removed", endpoint(nil), policy.Network{}, []dataplane.Flow{published}, []dataplane.Flow{direct, outgoing}},
		{"block in 22", endpoint([]api.PortMappingSpec{web}, append([]api.ACLSpec{blockIn22}, allowAll...)...), policy.Network{}, []dataplane.Flow{direct}, []dataplane.Flow{published, outgoing}},
		{"network blocks in 22", endpoint([]api.PortMappingSpec{web}, allowAll...), policy.Network{ACLs: []api.ACLSpec{blockIn22}}, []dataplane.Flow{direct}, []dataplane.Flow{published, outgoing}},
		{"only inbound allowed", endpoint([]api.PortMappingSpec{web}, allowAll[0]), policy.Network{}, []dataplane.Flow{outgoing}, []dataplane.Flow{published, direct}},
		{"gone", policy.Endpoint{ID: "e"}, gone(endpoint(nil)).network, []dataplane.Flow{published, direct, outgoing}, nil},
	}
	for _, c := range cases {
		j := newFlowJudge(flowChange{before: endpoint([]api.PortMappingSpec{web}), after: c.after, network: c.net})
		judge := func(f dataplane.Flow) bool {
			return (f.ReplySrc.Addr() == ep && j.endsIncoming(f)) || (f.OrigSrc.Addr() == ep && j.endsOutgoing(f))
		}
		for _, f := range c.ends {
			if !judge(f) {
				t.Errorf("%s: %v stays, want it ended", c.name, f)
			}
		}
		for _, f := range c.stays {
			if judge(f) {
				t.Errorf("%s: %v ended, want it kept", c.name, f)
			}
		}
	}
}

func TestDroppedMapping(t *testing.T) {
	a := api.PortMappingSpec{Protocol: api.ProtoTCP, ExternalPort: 8080, InternalPort: 80}
	b := api.PortMappingSpec{Protocol: api.ProtoUDP, ExternalPort: 53, InternalPort: 53}
	for _, c := range []struct {
		before, after []api.PortMappingSpec
		want          bool
	}{
		{nil, nil, false},
		{nil, []api.PortMappingSpec{a}, false},
		{[]api.PortMappingSpec{a}, []api.PortMappingSpec{b, a}, false},
		{[]api.PortMappingSpec{a, b}, []api.PortMappingSpec{b}, true},
		{[]api.PortMappingSpec{a}, nil, true},
	} {
		if got := droppedMapping(policy.Endpoint{Mappings: c.before}, policy.Endpoint{Mappings: c.after}); got != c.want {
			t.Errorf("droppedMapping(%v, %v) = %v, want %v", c.before, c.after, got, c.want)
		}
	}
}
