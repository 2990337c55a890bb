// Package hostfw is the firewall of the drivers whose endpoint traffic
// crosses the host's IP layer (bridged with br_netfilter, or routed): NAT
// and L2Bridge. It is one layout in hostnet's inet table (fixed chains
// over sets and maps, so that the rules a packet meets do not grow with
// networks, endpoints or published ports), and the elements a network or
// an endpoint adds to it.
package hostfw

import (
	"github.com/hostnet/hostnet/internal/netmodel"
	"github.com/hostnet/hostnet/internal/nftmodel"
	"github.com/hostnet/hostnet/internal/policy"
)

// Sets and maps of the layout in hostnet's inet table.
const (
	SetBridges     = "bridges"        // every hostnet bridge
	SetNATBridges  = "nat_bridges"    // bridges of NAT networks
	SetIntraBridge = "intra_bridge"   // bridge . same bridge: traffic within one network
	SetRouted      = "routed_bridges" // bridges of networks routed to each other by the host (L2Bridge)
	SetNATv4       = "nat_v4"         // IPv4 subnets masqueraded behind the host
	SetNATv6       = "nat_v6"         // IPv6 subnets masqueraded behind the host
	MapPorts4      = "ports_v4"       // proto . port : endpoint address . port, on every host address
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

// El is an element of set.
func El(set, elem string) netmodel.Object {
	return netmodel.NftElement{Family: nftmodel.FamilyInet, Table: policy.TableName, Set: set, Elem: elem}
}

// Put is key : value in map m.
func Put(m, key, value string) netmodel.Object {
	return netmodel.NftElement{Family: nftmodel.FamilyInet, Table: policy.TableName, Set: m, Elem: key, Value: value}
}

func rule(comment string, exprs ...nftmodel.Expr) nftmodel.Rule {
	return nftmodel.Rule{Comment: comment, Exprs: exprs}
}

// Layout is what the networks of these drivers add to the inet table,
// whatever their number.
func Layout() []netmodel.Object {
	proto := []nftmodel.KeyType{nftmodel.KeyInetProto, nftmodel.KeyInetService}
	to4 := []nftmodel.KeyType{nftmodel.KeyIPv4, nftmodel.KeyInetService}
	to6 := []nftmodel.KeyType{nftmodel.KeyIPv6, nftmodel.KeyInetService}
	guard := &nftmodel.Chain{
		Name: "guard", Type: nftmodel.ChainTypeFilter, Hook: nftmodel.HookPrerouting, Priority: nftmodel.PriorityRaw,
		Rules: []nftmodel.Rule{
			// The address first: most packets are not to the loopback, and
			// a comparison costs less than the set's lookup.
			rule("endpoints cannot reach the host's loopback (route_localnet is on for bridges)",
				nftmodel.IPDaddr().Eq("127.0.0.0/8"), nftmodel.Iifname().InSet(SetBridges), nftmodel.Drop()),
		},
	}
	publish := func(name string, hook nftmodel.Hook) *nftmodel.Chain {
		return &nftmodel.Chain{
			Name: name, Type: nftmodel.ChainTypeNAT, Hook: hook, Priority: nftmodel.PriorityDstNAT,
			Rules: []nftmodel.Rule{
				rule("published ports bound to one host address (IPv4)", nftmodel.FibDaddrTypeLocal(),
					nftmodel.DNATMap(nftmodel.Concat(nftmodel.IPDaddr(), nftmodel.L4Proto(), nftmodel.THDport()), MapVIPPorts4)),
				rule("published ports on every host address (IPv4)", nftmodel.NFProto().Eq("ipv4"), nftmodel.FibDaddrTypeLocal(),
					nftmodel.DNATMap(nftmodel.Concat(nftmodel.L4Proto(), nftmodel.THDport()), MapPorts4)),
				rule("published ports bound to one host address (IPv6)", nftmodel.FibDaddrTypeLocal(),
					nftmodel.DNATMap(nftmodel.Concat(nftmodel.IP6Daddr(), nftmodel.L4Proto(), nftmodel.THDport()), MapVIPPorts6)),
				rule("published ports on every host address (IPv6)", nftmodel.NFProto().Eq("ipv6"), nftmodel.FibDaddrTypeLocal(),
					nftmodel.DNATMap(nftmodel.Concat(nftmodel.L4Proto(), nftmodel.THDport()), MapPorts6)),
			},
		}
	}
	forward := &nftmodel.Chain{
		Name: "forward", Type: nftmodel.ChainTypeFilter, Hook: nftmodel.HookForward, Priority: nftmodel.PriorityFilter,
		Rules: []nftmodel.Rule{
			rule("replies", nftmodel.CtState("established", "related"), nftmodel.Accept()),
			rule("published ports", nftmodel.CtStatus("dnat"), nftmodel.Accept()),
			rule("DisableICC: not to its peers (IPv4)", nftmodel.Concat(nftmodel.IPSaddr(), nftmodel.IPDaddr()).InSet(SetNoICC4), nftmodel.Drop()),
			rule("DisableICC: not from its peers (IPv4)", nftmodel.Concat(nftmodel.IPDaddr(), nftmodel.IPSaddr()).InSet(SetNoICC4), nftmodel.Drop()),
			rule("DisableICC: not to its peers (IPv6)", nftmodel.Concat(nftmodel.IP6Saddr(), nftmodel.IP6Daddr()).InSet(SetNoICC6), nftmodel.Drop()),
			rule("DisableICC: not from its peers (IPv6)", nftmodel.Concat(nftmodel.IP6Daddr(), nftmodel.IP6Saddr()).InSet(SetNoICC6), nftmodel.Drop()),
			rule("bridged within one network", nftmodel.Concat(nftmodel.Iifname(), nftmodel.Oifname()).InSet(SetIntraBridge), nftmodel.Accept()),
			rule("networks of the host's segment are routed to each other", nftmodel.Iifname().InSet(SetRouted), nftmodel.Oifname().InSet(SetRouted), nftmodel.Accept()),
			rule("networks are isolated from each other", nftmodel.Iifname().InSet(SetBridges), nftmodel.Oifname().InSet(SetBridges), nftmodel.Drop()),
			rule("the outside reaches NAT endpoints only through their published ports", nftmodel.Oifname().InSet(SetNATBridges), nftmodel.Drop()),
		},
	}
	postrouting := &nftmodel.Chain{
		Name: "postrouting", Type: nftmodel.ChainTypeNAT, Hook: nftmodel.HookPostrouting, Priority: nftmodel.PrioritySrcNAT,
		Rules: []nftmodel.Rule{
			rule("the host's loopback to a published port", nftmodel.CtStatus("dnat"), nftmodel.IPSaddr().Eq("127.0.0.0/8"), nftmodel.Masquerade()),
			rule("an endpoint to a published port, back into a network (IPv4)", nftmodel.CtStatus("dnat"), nftmodel.IPSaddr().InSet(SetNATv4), nftmodel.Oifname().InSet(SetBridges), nftmodel.Masquerade()),
			rule("an endpoint to a published port, back into a network (IPv6)", nftmodel.CtStatus("dnat"), nftmodel.IP6Saddr().InSet(SetNATv6), nftmodel.Oifname().InSet(SetBridges), nftmodel.Masquerade()),
			rule("OutBoundNAT exceptions (IPv4)", nftmodel.Concat(nftmodel.IPSaddr(), nftmodel.IPDaddr()).InSet(SetNATExcept4), nftmodel.Accept()),
			rule("OutBoundNAT exceptions (IPv6)", nftmodel.Concat(nftmodel.IP6Saddr(), nftmodel.IP6Daddr()).InSet(SetNATExcept6), nftmodel.Accept()),
			rule("OutBoundNAT VirtualIP (IPv4)", nftmodel.Oifname().NotInSet(SetBridges), nftmodel.SNATMap(nftmodel.IPSaddr(), MapSNAT4)),
			rule("OutBoundNAT VirtualIP (IPv6)", nftmodel.Oifname().NotInSet(SetBridges), nftmodel.SNATMap(nftmodel.IP6Saddr(), MapSNAT6)),
			rule("NAT networks reach the outside behind the host (IPv4)", nftmodel.IPSaddr().InSet(SetNATv4), nftmodel.Oifname().NotInSet(SetBridges), nftmodel.Masquerade()),
			rule("NAT networks reach the outside behind the host (IPv6)", nftmodel.IP6Saddr().InSet(SetNATv6), nftmodel.Oifname().NotInSet(SetBridges), nftmodel.Masquerade()),
		},
	}
	set := func(name, comment string, interval bool, keys ...nftmodel.KeyType) netmodel.Object {
		return netmodel.NftSet{Table: policy.TableName, Set: &nftmodel.Set{Name: name, Key: keys, Interval: interval, Comment: comment}}
	}
	dmap := func(name, comment string, key, value []nftmodel.KeyType) netmodel.Object {
		return netmodel.NftSet{Table: policy.TableName, Map: &nftmodel.Map{Name: name, Key: key, Value: value, Comment: comment}}
	}
	chain := func(c *nftmodel.Chain) netmodel.Object { return netmodel.NftChain{Table: policy.TableName, Chain: c} }
	return []netmodel.Object{
		set(SetBridges, "bridges of hostnet networks", false, nftmodel.KeyIfname),
		set(SetNATBridges, "bridges of NAT networks", false, nftmodel.KeyIfname),
		set(SetRouted, "bridges of networks routed to each other by the host", false, nftmodel.KeyIfname),
		set(SetIntraBridge, "traffic that stays within one network", false, nftmodel.KeyIfname, nftmodel.KeyIfname),
		set(SetNATv4, "IPv4 subnets of NAT networks", true, nftmodel.KeyIPv4),
		set(SetNATv6, "IPv6 subnets of NAT networks", true, nftmodel.KeyIPv6),
		set(SetNATExcept4, "endpoint . destination not masqueraded (OutBoundNAT exceptions)", true, nftmodel.KeyIPv4, nftmodel.KeyIPv4),
		set(SetNATExcept6, "endpoint . destination not masqueraded (OutBoundNAT exceptions)", true, nftmodel.KeyIPv6, nftmodel.KeyIPv6),
		set(SetNoICC4, "DisableICC endpoint . its subnet: no traffic with its peers", true, nftmodel.KeyIPv4, nftmodel.KeyIPv4),
		set(SetNoICC6, "DisableICC endpoint . its subnet: no traffic with its peers", true, nftmodel.KeyIPv6, nftmodel.KeyIPv6),
		dmap(MapPorts4, "published ports on every address of the host", proto, to4),
		dmap(MapPorts6, "published ports on every address of the host", proto, to6),
		dmap(MapVIPPorts4, "published ports bound to one address of the host", append([]nftmodel.KeyType{nftmodel.KeyIPv4}, proto...), to4),
		dmap(MapVIPPorts6, "published ports bound to one address of the host", append([]nftmodel.KeyType{nftmodel.KeyIPv6}, proto...), to6),
		dmap(MapSNAT4, "OutBoundNAT VirtualIP of an endpoint", []nftmodel.KeyType{nftmodel.KeyIPv4}, []nftmodel.KeyType{nftmodel.KeyIPv4}),
		dmap(MapSNAT6, "OutBoundNAT VirtualIP of an endpoint", []nftmodel.KeyType{nftmodel.KeyIPv6}, []nftmodel.KeyType{nftmodel.KeyIPv6}),
		chain(guard), chain(publish("publish", nftmodel.HookPrerouting)), chain(publish("publish_local", nftmodel.HookOutput)),
		chain(forward), chain(postrouting),
	}
}
