package nat

import (
	"github.com/hostnet/hostnet/internal/dataplane/nft"
	"github.com/hostnet/hostnet/internal/netmodel"
	"github.com/hostnet/hostnet/internal/policy"
)

// Sets and maps of NAT networks in hostnet's inet table.
const (
	SetBridges     = "bridges"      // every hostnet bridge
	SetNATBridges  = "nat_bridges"  // bridges of NAT networks
	SetIntraBridge = "intra_bridge" // bridge . same bridge: traffic within one network
	SetNATv4       = "nat_v4"       // IPv4 subnets masqueraded behind the host
	SetNATv6       = "nat_v6"       // IPv6 subnets masqueraded behind the host
	MapPorts4      = "ports_v4"     // proto . port : endpoint address . port, on every host address
	MapPorts6      = "ports_v6"
	MapVIPPorts4   = "vip_ports_v4" // host address . proto . port : endpoint address . port
	MapVIPPorts6   = "vip_ports_v6"
	SetNATExcept4  = "nat_except_v4" // endpoint address . destination: not masqueraded
	SetNATExcept6  = "nat_except_v6"
	SetNoICC4      = "no_icc_v4" // DisableICC endpoint address . its subnet
	SetNoICC6      = "no_icc_v6"
	MapSNAT4       = "snat_v4" // endpoint address : OutBoundNAT VirtualIP
	MapSNAT6       = "snat_v6"
)

func el(set, elem string) netmodel.Object {
	return netmodel.NftElement{Family: nft.FamilyInet, Table: policy.TableName, Set: set, Elem: elem}
}

func put(m, key, value string) netmodel.Object {
	return netmodel.NftElement{Family: nft.FamilyInet, Table: policy.TableName, Set: m, Elem: key, Value: value}
}

func rule(comment string, exprs ...nft.Expr) nft.Rule {
	return nft.Rule{Comment: comment, Exprs: exprs}
}

// layout is what NAT networks add to the inet table, whatever their
// number: fixed chains over sets and maps, so that the rules a packet
// meets do not grow with networks, endpoints or published ports.
func layout() []netmodel.Object {
	proto := []nft.KeyType{nft.KeyInetProto, nft.KeyInetService}
	to4 := []nft.KeyType{nft.KeyIPv4, nft.KeyInetService}
	to6 := []nft.KeyType{nft.KeyIPv6, nft.KeyInetService}
	guard := &nft.Chain{
		Name: "guard", Type: nft.ChainTypeFilter, Hook: nft.HookPrerouting, Priority: nft.PriorityRaw,
		Rules: []nft.Rule{
			rule("endpoints cannot reach the host's loopback (route_localnet is on for bridges)",
				nft.Iifname().InSet(SetBridges), nft.IPDaddr().Eq("127.0.0.0/8"), nft.Drop()),
		},
	}
	publish := func(name string, hook nft.Hook) *nft.Chain {
		return &nft.Chain{
			Name: name, Type: nft.ChainTypeNAT, Hook: hook, Priority: nft.PriorityDstNAT,
			Rules: []nft.Rule{
				rule("published ports bound to one host address (IPv4)", nft.FibDaddrTypeLocal(),
					nft.DNATMap(nft.Concat(nft.IPDaddr(), nft.L4Proto(), nft.THDport()), MapVIPPorts4)),
				rule("published ports on every host address (IPv4)", nft.NFProto().Eq("ipv4"), nft.FibDaddrTypeLocal(),
					nft.DNATMap(nft.Concat(nft.L4Proto(), nft.THDport()), MapPorts4)),
				rule("published ports bound to one host address (IPv6)", nft.FibDaddrTypeLocal(),
					nft.DNATMap(nft.Concat(nft.IP6Daddr(), nft.L4Proto(), nft.THDport()), MapVIPPorts6)),
				rule("published ports on every host address (IPv6)", nft.NFProto().Eq("ipv6"), nft.FibDaddrTypeLocal(),
					nft.DNATMap(nft.Concat(nft.L4Proto(), nft.THDport()), MapPorts6)),
			},
		}
	}
	forward := &nft.Chain{
		Name: "forward", Type: nft.ChainTypeFilter, Hook: nft.HookForward, Priority: nft.PriorityFilter,
		Rules: []nft.Rule{
			rule("replies", nft.CtState("established", "related"), nft.Accept()),
			rule("published ports", nft.CtStatus("dnat"), nft.Accept()),
			rule("DisableICC: not to its peers (IPv4)", nft.Concat(nft.IPSaddr(), nft.IPDaddr()).InSet(SetNoICC4), nft.Drop()),
			rule("DisableICC: not from its peers (IPv4)", nft.Concat(nft.IPDaddr(), nft.IPSaddr()).InSet(SetNoICC4), nft.Drop()),
			rule("DisableICC: not to its peers (IPv6)", nft.Concat(nft.IP6Saddr(), nft.IP6Daddr()).InSet(SetNoICC6), nft.Drop()),
			rule("DisableICC: not from its peers (IPv6)", nft.Concat(nft.IP6Daddr(), nft.IP6Saddr()).InSet(SetNoICC6), nft.Drop()),
			rule("bridged within one network", nft.Concat(nft.Iifname(), nft.Oifname()).InSet(SetIntraBridge), nft.Accept()),
			rule("networks are isolated from each other", nft.Iifname().InSet(SetBridges), nft.Oifname().InSet(SetBridges), nft.Drop()),
			rule("the outside reaches NAT endpoints only through their published ports", nft.Oifname().InSet(SetNATBridges), nft.Drop()),
		},
	}
	postrouting := &nft.Chain{
		Name: "postrouting", Type: nft.ChainTypeNAT, Hook: nft.HookPostrouting, Priority: nft.PrioritySrcNAT,
		Rules: []nft.Rule{
			rule("the host's loopback to a published port", nft.CtStatus("dnat"), nft.IPSaddr().Eq("127.0.0.0/8"), nft.Masquerade()),
			rule("an endpoint to a published port, back into a network (IPv4)", nft.CtStatus("dnat"), nft.IPSaddr().InSet(SetNATv4), nft.Oifname().InSet(SetBridges), nft.Masquerade()),
			rule("an endpoint to a published port, back into a network (IPv6)", nft.CtStatus("dnat"), nft.IP6Saddr().InSet(SetNATv6), nft.Oifname().InSet(SetBridges), nft.Masquerade()),
			rule("OutBoundNAT exceptions (IPv4)", nft.Concat(nft.IPSaddr(), nft.IPDaddr()).InSet(SetNATExcept4), nft.Accept()),
			rule("OutBoundNAT exceptions (IPv6)", nft.Concat(nft.IP6Saddr(), nft.IP6Daddr()).InSet(SetNATExcept6), nft.Accept()),
			rule("OutBoundNAT VirtualIP (IPv4)", nft.Oifname().NotInSet(SetBridges), nft.SNATMap(nft.IPSaddr(), MapSNAT4)),
			rule("OutBoundNAT VirtualIP (IPv6)", nft.Oifname().NotInSet(SetBridges), nft.SNATMap(nft.IP6Saddr(), MapSNAT6)),
			rule("NAT networks reach the outside behind the host (IPv4)", nft.IPSaddr().InSet(SetNATv4), nft.Oifname().NotInSet(SetBridges), nft.Masquerade()),
			rule("NAT networks reach the outside behind the host (IPv6)", nft.IP6Saddr().InSet(SetNATv6), nft.Oifname().NotInSet(SetBridges), nft.Masquerade()),
		},
	}
	set := func(name, comment string, interval bool, keys ...nft.KeyType) netmodel.Object {
		return netmodel.NftSet{Table: policy.TableName, Set: &nft.Set{Name: name, Key: keys, Interval: interval, Comment: comment}}
	}
	dmap := func(name, comment string, key, value []nft.KeyType) netmodel.Object {
		return netmodel.NftSet{Table: policy.TableName, Map: &nft.Map{Name: name, Key: key, Value: value, Comment: comment}}
	}
	chain := func(c *nft.Chain) netmodel.Object { return netmodel.NftChain{Table: policy.TableName, Chain: c} }
	return []netmodel.Object{
		set(SetBridges, "bridges of hostnet networks", false, nft.KeyIfname),
		set(SetNATBridges, "bridges of NAT networks", false, nft.KeyIfname),
		set(SetIntraBridge, "traffic that stays within one network", false, nft.KeyIfname, nft.KeyIfname),
		set(SetNATv4, "IPv4 subnets of NAT networks", true, nft.KeyIPv4),
		set(SetNATv6, "IPv6 subnets of NAT networks", true, nft.KeyIPv6),
		set(SetNATExcept4, "endpoint . destination not masqueraded (OutBoundNAT exceptions)", true, nft.KeyIPv4, nft.KeyIPv4),
		set(SetNATExcept6, "endpoint . destination not masqueraded (OutBoundNAT exceptions)", true, nft.KeyIPv6, nft.KeyIPv6),
		set(SetNoICC4, "DisableICC endpoint . its subnet: no traffic with its peers", true, nft.KeyIPv4, nft.KeyIPv4),
		set(SetNoICC6, "DisableICC endpoint . its subnet: no traffic with its peers", true, nft.KeyIPv6, nft.KeyIPv6),
		dmap(MapPorts4, "published ports on every address of the host", proto, to4),
		dmap(MapPorts6, "published ports on every address of the host", proto, to6),
		dmap(MapVIPPorts4, "published ports bound to one address of the host", append([]nft.KeyType{nft.KeyIPv4}, proto...), to4),
		dmap(MapVIPPorts6, "published ports bound to one address of the host", append([]nft.KeyType{nft.KeyIPv6}, proto...), to6),
		dmap(MapSNAT4, "OutBoundNAT VirtualIP of an endpoint", []nft.KeyType{nft.KeyIPv4}, []nft.KeyType{nft.KeyIPv4}),
		dmap(MapSNAT6, "OutBoundNAT VirtualIP of an endpoint", []nft.KeyType{nft.KeyIPv6}, []nft.KeyType{nft.KeyIPv6}),
		chain(guard), chain(publish("publish", nft.HookPrerouting)), chain(publish("publish_local", nft.HookOutput)),
		chain(forward), chain(postrouting),
	}
}
