package policy

import (
	"net"
	"net/netip"

	"github.com/hostnet/hostnet/api"
	"github.com/hostnet/hostnet/internal/netmodel"
	"github.com/hostnet/hostnet/internal/nftmodel"
)

// A HookPoint is where a driver's traffic can be filtered per endpoint:
// a table, and the hooks a packet to or from an endpoint passes. Drivers
// name the hook point their traffic meets; the compiler puts each
// endpoint's ACL profile there.
//
// AddressHooks (the one drivers use today) dispatches by IP address in the
// inet family's forward, input and output hooks: the packet's source
// address finds the sender's Out rules, its destination address the
// receiver's In rules (verdict maps to per-profile chains). It suits
// drivers whose endpoint traffic crosses the host's IP layer (bridged
// traffic with br_netfilter, routed traffic); anti-spoofing (AntiSpoof)
// makes the address a sound key. A driver whose traffic never meets the
// host's inet hooks (macvlan) uses DeviceHooks, at its uplink's netdev
// hooks.
type HookPoint struct {
	Family nftmodel.Family
	Table  string
}

// AddressHooks is the hook point of hostnet's inet table.
var AddressHooks = HookPoint{Family: nftmodel.FamilyInet, Table: TableName}

func (h HookPoint) set(s *nftmodel.Set) netmodel.Object {
	return netmodel.NftSet{Family: h.Family, Table: h.Table, Set: s}
}

func (h HookPoint) dmap(m *nftmodel.Map) netmodel.Object {
	return netmodel.NftSet{Family: h.Family, Table: h.Table, Map: m}
}

func (h HookPoint) chain(c *nftmodel.Chain) netmodel.Object {
	return netmodel.NftChain{Family: h.Family, Table: h.Table, Chain: c}
}

func (h HookPoint) element(set, elem, value string) netmodel.Object {
	return netmodel.NftElement{Family: h.Family, Table: h.Table, Set: set, Elem: elem, Value: value}
}

// Layout returns the hook point's fixed part: the dispatch maps and the
// base chains that consult them. Replies to admitted flows and errors
// about them pass; every other packet meets its sender's Out rules and its
// receiver's In rules. Judging every packet of a flow, not only its first,
// is what makes a new Block stop an established flow at once, without
// waiting for its connection to be forgotten.
func (h HookPoint) Layout() []netmodel.Object {
	aclChain := func(name string, hook nftmodel.Hook, dispatch ...nftmodel.Rule) *nftmodel.Chain {
		rules := append([]nftmodel.Rule{
			rule("replies to admitted flows", nftmodel.CtDirection("reply"), nftmodel.Accept()),
			rule("errors about admitted flows", nftmodel.CtState("related"), nftmodel.Accept()),
		}, dispatch...)
		return &nftmodel.Chain{Name: name, Type: nftmodel.ChainTypeFilter, Hook: hook, Priority: nftmodel.PriorityFilter - 10, Rules: rules}
	}
	sendersOut := []nftmodel.Rule{
		rule("the sender's Out rules (IPv4)", nftmodel.VMap(nftmodel.IPSaddr(), MapACLOut4)),
		rule("the sender's Out rules (IPv6)", nftmodel.VMap(nftmodel.IP6Saddr(), MapACLOut6)),
	}
	receiversIn := []nftmodel.Rule{
		rule("the receiver's In rules (IPv4)", nftmodel.VMap(nftmodel.IPDaddr(), MapACLIn4)),
		rule("the receiver's In rules (IPv6)", nftmodel.VMap(nftmodel.IP6Daddr(), MapACLIn6)),
	}
	return []netmodel.Object{
		h.dmap(verdictMap(MapACLIn4, "the In rules of each endpoint, by its address", nftmodel.KeyIPv4)),
		h.dmap(verdictMap(MapACLIn6, "the In rules of each endpoint, by its address", nftmodel.KeyIPv6)),
		h.dmap(verdictMap(MapACLOut4, "the Out rules of each endpoint, by its address", nftmodel.KeyIPv4)),
		h.dmap(verdictMap(MapACLOut6, "the Out rules of each endpoint, by its address", nftmodel.KeyIPv6)),
		h.chain(aclChain("acl_forward", nftmodel.HookForward, append(append([]nftmodel.Rule(nil), sendersOut...), receiversIn...)...)),
		h.chain(aclChain("acl_input", nftmodel.HookInput, sendersOut...)),
		h.chain(aclChain("acl_output", nftmodel.HookOutput, receiversIn...)),
	}
}

// Filter returns what filters one endpoint at the hook point: the chains
// of its profile (its rules merged with its network's; shared by the
// endpoints with the same rules) and the map elements that send its
// addresses' packets to them. A quarantined endpoint (its stored policies
// could not be read) gets a profile that admits nothing: the firewall
// fails closed.
func (h HookPoint) Filter(addrs []netip.Addr, network, own []api.ACLSpec, quarantine bool) []netmodel.Object {
	return h.filter(addrs, profileOf(network, own, quarantine), func(m string) string { return m })
}

// FilterProfile returns what filters one endpoint with profile p (see
// NewTieredProfile; Quarantine for one whose policies cannot be read).
func (h HookPoint) FilterProfile(addrs []netip.Addr, p Profile) []netmodel.Object {
	return h.filter(addrs, p, func(m string) string { return m })
}

// filter returns the chains of profile p, the declarations of the IP sets
// its rules name, and the elements of the maps (named by mapName after the
// shared map names) that send addrs to them. A profile of the firewall
// defaults lets everything out: without Out tiers, it needs no Out chain.
func (h HookPoint) filter(addrs []netip.Addr, p Profile, mapName func(string) string) []netmodel.Object {
	var out []netmodel.Object
	inEntry, inChains := p.chains(api.ACLIn)
	outEntry, outChains := p.chains(api.ACLOut)
	for _, c := range append(inChains, outChains...) {
		out = append(out, h.chain(c))
	}
	out = append(out, h.referencedSets(p)...)
	for _, a := range addrs {
		if inEntry != "" {
			out = append(out, h.element(mapName(pick(a, MapACLIn4, MapACLIn6)), a.String(), "jump "+inEntry))
		}
		if outEntry != "" {
			out = append(out, h.element(mapName(pick(a, MapACLOut4, MapACLOut6)), a.String(), "jump "+outEntry))
		}
	}
	return out
}

// profileOf is an endpoint's profile: its rules merged with its
// network's, or, quarantined, one that admits nothing.
func profileOf(network, own []api.ACLSpec, quarantine bool) Profile {
	if quarantine {
		return Quarantine()
	}
	return NewProfile(network, own)
}

// Admission returns the profile an endpoint's flows are judged by, as the
// reconciler's flow guard wants it.
func Admission(network, own []api.ACLSpec, quarantine bool) netmodel.Admission {
	return admission{profileOf(network, own, quarantine)}
}

// AdmissionOf returns profile p as the reconciler's flow guard wants it.
func AdmissionOf(p Profile) netmodel.Admission { return admission{p} }

type admission struct{ p Profile }

func (a admission) Admits(pkt netmodel.FlowPacket) bool {
	dir := api.ACLOut
	if pkt.In {
		dir = api.ACLIn
	}
	return a.p.Admits(Packet{Dir: dir, Proto: pkt.Proto, Local: pkt.Local, Remote: pkt.Remote, LocalPort: pkt.LocalPort, RemotePort: pkt.RemotePort})
}

func (a admission) String() string {
	in, _ := a.p.chains(api.ACLIn)
	out, _ := a.p.chains(api.ACLOut)
	if out == "" {
		out = a.p.chainName(api.ACLOut)
	}
	return in + "/" + out
}

// AntiSpoof is the bridge table that holds every endpoint to its own MAC
// and addresses, at the ports of bridges: an inet table never sees ARP nor
// the Ethernet source of a bridged frame. Ports whose names start with
// PortPrefix and that it does not know send and receive nothing (an
// endpoint being attached or detached).
type AntiSpoof struct {
	Table      string
	PortPrefix string
}

func (a AntiSpoof) hooks() HookPoint { return HookPoint{Family: nftmodel.FamilyBridge, Table: a.Table} }

// Layout returns the table's fixed part.
func (a AntiSpoof) Layout() []netmodel.Object {
	h := a.hooks()
	antispoof := &nftmodel.Chain{Name: "antispoof", Rules: []nftmodel.Rule{
		rule("source MAC", nftmodel.Concat(nftmodel.Iifname(), nftmodel.EtherSaddr()).NotInSet(SetPortMAC), nftmodel.Drop()),
		rule("ARP sender MAC", nftmodel.EtherType().Eq("arp"), nftmodel.Concat(nftmodel.Iifname(), nftmodel.ArpSaddrEther()).NotInSet(SetPortMAC), nftmodel.Drop()),
		rule("ARP sender address", nftmodel.Concat(nftmodel.Iifname(), nftmodel.ArpSaddrIP()).NotInSet(SetPortV4), nftmodel.Drop()),
		rule("IPv4 source", nftmodel.Concat(nftmodel.Iifname(), nftmodel.IPSaddr()).NotInSet(SetPortV4), nftmodel.Drop()),
		rule("IPv6 source", nftmodel.IP6Saddr().Neq("fe80::/10"), nftmodel.IP6Saddr().Neq("::"),
			nftmodel.Concat(nftmodel.Iifname(), nftmodel.IP6Saddr()).NotInSet(SetPortV6), nftmodel.Drop()),
		rule("neighbour advertisement target", nftmodel.ICMPv6Type().Eq("nd-neighbor-advert"), nftmodel.THRaw(64, nftmodel.KeyIPv6).Neq("fe80::/10"),
			nftmodel.Concat(nftmodel.Iifname(), nftmodel.THRaw(64, nftmodel.KeyIPv6)).NotInSet(SetPortV6), nftmodel.Drop()),
	}}
	prerouting := &nftmodel.Chain{
		Name: "prerouting", Type: nftmodel.ChainTypeFilter, Hook: nftmodel.HookPrerouting, Priority: bridgePrioritySpoof,
		Rules: []nftmodel.Rule{
			rule("an endpoint's IPv4 packet from its own port, MAC and address (the full checks for the rest)",
				nftmodel.Concat(nftmodel.Iifname(), nftmodel.EtherSaddr(), nftmodel.IPSaddr()).InSet(SetPortFrom4), nftmodel.Accept()),
			rule("a port of an endpoint being attached or detached sends nothing until hostnet knows it",
				nftmodel.Iifname().Eq(a.PortPrefix+"*"), nftmodel.Iifname().NotInSet(SetPorts), nftmodel.Drop()),
			rule("what an endpoint sends must come from its own MAC and addresses",
				nftmodel.Iifname().InSet(SetPorts), nftmodel.Jump("antispoof")),
		},
	}
	// Nor does anything reach it: the bridge's own frames (from the host)
	// pass the output hook, the others the forward hook.
	unknownPort := func(name string, hook nftmodel.Hook) *nftmodel.Chain {
		return &nftmodel.Chain{Name: name, Type: nftmodel.ChainTypeFilter, Hook: hook, Priority: bridgePrioritySpoof, Rules: []nftmodel.Rule{
			rule("nothing reaches a port of an endpoint being attached or detached until hostnet knows it",
				nftmodel.Oifname().Eq(a.PortPrefix+"*"), nftmodel.Oifname().NotInSet(SetPorts), nftmodel.Drop()),
		}}
	}
	return []netmodel.Object{
		h.set(set(SetPorts, "host sides of endpoints", false, nftmodel.KeyIfname)),
		h.set(set(SetPortMAC, "the MAC each endpoint may send from", false, nftmodel.KeyIfname, nftmodel.KeyEther)),
		h.set(set(SetPortV4, "the IPv4 addresses each endpoint may send from", false, nftmodel.KeyIfname, nftmodel.KeyIPv4)),
		h.set(set(SetPortV6, "the IPv6 addresses each endpoint may send from", false, nftmodel.KeyIfname, nftmodel.KeyIPv6)),
		h.set(set(SetPortFrom4, "each endpoint's port, MAC and IPv4 address", false, nftmodel.KeyIfname, nftmodel.KeyEther, nftmodel.KeyIPv4)),
		h.chain(prerouting), h.chain(antispoof), h.chain(unknownPort("forward", nftmodel.HookForward)), h.chain(unknownPort("output", nftmodel.HookOutput)),
	}
}

// Port returns what lets an endpoint's port send from its MAC and
// addresses.
func (a AntiSpoof) Port(port string, mac net.HardwareAddr, addrs []netip.Addr) []netmodel.Object {
	h := a.hooks()
	out := []netmodel.Object{h.element(SetPorts, port, "")}
	if mac != nil {
		out = append(out, h.element(SetPortMAC, port+" . "+mac.String(), ""))
	}
	for _, addr := range addrs {
		out = append(out, h.element(pick(addr, SetPortV4, SetPortV6), port+" . "+addr.String(), ""))
		if mac != nil && addr.Is4() {
			out = append(out, h.element(SetPortFrom4, port+" . "+mac.String()+" . "+addr.String(), ""))
		}
	}
	return out
}
