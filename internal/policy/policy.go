// Package policy compiles hostnet's objects into the desired content of its
// nftables tables. It is pure: the same objects give the same tables. The
// tables' chains are fixed; networks, endpoints, published ports and
// outbound NAT exceptions change only the elements of sets and maps, so the
// rules a packet meets do not grow with their number. Only an endpoint's
// own ACL rules add rules, in a chain of their own that endpoints with the
// same rules share, reached through a verdict map keyed by the endpoint's
// port.
//
// Two tables, because the kernel hooks them in two families: `inet hostnet`
// (isolation between networks, masquerade, published ports, outbound NAT,
// and ACLs, dispatched by the endpoint's address) and `bridge hostnet`
// (what each endpoint's port may send: its own MAC and addresses only).
// ACLs and DisableICC live in the inet table because they need connection
// tracking, which the bridge family lacks without nf_conntrack_bridge;
// bridged traffic reaches the inet hooks through br_netfilter, and keying
// them by address is sound because the bridge table drops every packet an
// endpoint sends from an address that is not its own.
package policy

import (
	"net"
	"net/netip"
	"strconv"

	"github.com/hostnet/hostnet/api"
	"github.com/hostnet/hostnet/internal/dataplane/nft"
	"github.com/hostnet/hostnet/internal/driver"
)

// TableName is the name of hostnet's tables in the host namespace.
const TableName = "hostnet"

// Sets and maps of the inet table.
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
	MapACLIn4      = "acl_in_v4" // endpoint address : jump to the chain of its In rules
	MapACLIn6      = "acl_in_v6"
	MapACLOut4     = "acl_out_v4" // endpoint address : jump to the chain of its Out rules
	MapACLOut6     = "acl_out_v6"
)

// Sets and maps of the bridge table.
const (
	SetPorts   = "endpoint_ports" // host sides of endpoints' veths
	SetPortMAC = "endpoint_mac"   // port . the endpoint's MAC
	SetPortV4  = "endpoint_v4"    // port . an IPv4 address of the endpoint
	SetPortV6  = "endpoint_v6"    // port . an IPv6 address of the endpoint
)

// Network is what the compiler needs of a network.
type Network struct {
	ID      string
	Type    api.NetworkType
	Bridge  string
	Subnets []netip.Prefix
	ACLs    []api.ACLSpec // NetworkACL: every endpoint's rules include these
}

// Endpoint is what the compiler needs of an attached endpoint.
type Endpoint struct {
	ID          string
	Network     string // network ID
	Port        string // host side of its veth
	MAC         net.HardwareAddr
	Addrs       []netip.Addr
	DisableICC  bool
	Mappings    []api.PortMappingSpec
	ACLs        []api.ACLSpec
	OutboundNAT *api.OutboundNATSpec
}

// Input is everything the compiler reads.
type Input struct {
	Networks  []Network
	Endpoints []Endpoint
}

// Compile returns the desired tables for in: the inet one, then the bridge
// one. It is State's materialisation of in; the service uses State to get
// the same tables incrementally.
func Compile(in Input) []*nft.Table {
	s := NewState()
	for _, n := range in.Networks {
		s.SetNetwork(n)
	}
	for _, e := range in.Endpoints {
		s.SetEndpoint(e)
	}
	return s.Tables()
}

func set(name, comment string, interval bool, keys ...nft.KeyType) *nft.Set {
	return &nft.Set{Name: name, Key: keys, Interval: interval, Comment: comment}
}

func dataMap(name, comment string, key, value []nft.KeyType) *nft.Map {
	return &nft.Map{Name: name, Key: key, Value: value, Elements: map[string]string{}, Comment: comment}
}

func verdictMap(name, comment string, key nft.KeyType) *nft.Map {
	return &nft.Map{Name: name, Key: []nft.KeyType{key}, Verdict: true, Elements: map[string]string{}, Comment: comment}
}

func rule(comment string, exprs ...nft.Expr) nft.Rule {
	return nft.Rule{Comment: comment, Exprs: exprs}
}

// inetSkeleton is the inet table without elements and without the
// endpoints' ACL chains: what never changes.
func inetSkeleton() *nft.Table {
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
	// The endpoints' ACLs, before the chains below (a lower priority runs
	// first): replies pass; every other packet meets its sender's Out rules
	// and its receiver's In rules. Judging every packet of a flow, not only
	// its first, is what makes a new Block stop an established flow at
	// once, without waiting for its connection to be forgotten.
	aclChain := func(name string, hook nft.Hook, dispatch ...nft.Rule) *nft.Chain {
		rules := append([]nft.Rule{
			rule("replies to admitted flows", nft.CtDirection("reply"), nft.Accept()),
			rule("errors about admitted flows", nft.CtState("related"), nft.Accept()),
		}, dispatch...)
		return &nft.Chain{Name: name, Type: nft.ChainTypeFilter, Hook: hook, Priority: nft.PriorityFilter - 10, Rules: rules}
	}
	sendersOut := []nft.Rule{
		rule("the sender's Out rules (IPv4)", nft.VMap(nft.IPSaddr(), MapACLOut4)),
		rule("the sender's Out rules (IPv6)", nft.VMap(nft.IP6Saddr(), MapACLOut6)),
	}
	receiversIn := []nft.Rule{
		rule("the receiver's In rules (IPv4)", nft.VMap(nft.IPDaddr(), MapACLIn4)),
		rule("the receiver's In rules (IPv6)", nft.VMap(nft.IP6Daddr(), MapACLIn6)),
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
	return &nft.Table{
		Name: TableName,
		Sets: []*nft.Set{
			set(SetBridges, "bridges of hostnet networks", false, nft.KeyIfname),
			set(SetNATBridges, "bridges of NAT networks", false, nft.KeyIfname),
			set(SetIntraBridge, "traffic that stays within one network", false, nft.KeyIfname, nft.KeyIfname),
			set(SetNATv4, "IPv4 subnets of NAT networks", true, nft.KeyIPv4),
			set(SetNATv6, "IPv6 subnets of NAT networks", true, nft.KeyIPv6),
			set(SetNATExcept4, "endpoint . destination not masqueraded (OutBoundNAT exceptions)", true, nft.KeyIPv4, nft.KeyIPv4),
			set(SetNATExcept6, "endpoint . destination not masqueraded (OutBoundNAT exceptions)", true, nft.KeyIPv6, nft.KeyIPv6),
			set(SetNoICC4, "DisableICC endpoint . its subnet: no traffic with its peers", true, nft.KeyIPv4, nft.KeyIPv4),
			set(SetNoICC6, "DisableICC endpoint . its subnet: no traffic with its peers", true, nft.KeyIPv6, nft.KeyIPv6),
		},
		Maps: []*nft.Map{
			dataMap(MapPorts4, "published ports on every address of the host", proto, to4),
			dataMap(MapPorts6, "published ports on every address of the host", proto, to6),
			dataMap(MapVIPPorts4, "published ports bound to one address of the host", append([]nft.KeyType{nft.KeyIPv4}, proto...), to4),
			dataMap(MapVIPPorts6, "published ports bound to one address of the host", append([]nft.KeyType{nft.KeyIPv6}, proto...), to6),
			dataMap(MapSNAT4, "OutBoundNAT VirtualIP of an endpoint", []nft.KeyType{nft.KeyIPv4}, []nft.KeyType{nft.KeyIPv4}),
			dataMap(MapSNAT6, "OutBoundNAT VirtualIP of an endpoint", []nft.KeyType{nft.KeyIPv6}, []nft.KeyType{nft.KeyIPv6}),
			verdictMap(MapACLIn4, "the In rules of each endpoint, by its address", nft.KeyIPv4),
			verdictMap(MapACLIn6, "the In rules of each endpoint, by its address", nft.KeyIPv6),
			verdictMap(MapACLOut4, "the Out rules of each endpoint, by its address", nft.KeyIPv4),
			verdictMap(MapACLOut6, "the Out rules of each endpoint, by its address", nft.KeyIPv6),
		},
		Chains: []*nft.Chain{
			guard, publish("publish", nft.HookPrerouting), publish("publish_local", nft.HookOutput),
			aclChain("acl_forward", nft.HookForward, append(append([]nft.Rule(nil), sendersOut...), receiversIn...)...),
			aclChain("acl_input", nft.HookInput, sendersOut...),
			aclChain("acl_output", nft.HookOutput, receiversIn...),
			forward, postrouting,
		},
	}
}

// networkElements is what a network adds to the tables.
func networkElements(n Network) *contribution {
	c := newContribution()
	if n.Bridge == "" {
		return c
	}
	c.add(nft.FamilyInet, SetBridges, n.Bridge)
	c.add(nft.FamilyInet, SetIntraBridge, n.Bridge+" . "+n.Bridge)
	if n.Type != api.NAT {
		return c
	}
	c.add(nft.FamilyInet, SetNATBridges, n.Bridge)
	for _, p := range n.Subnets {
		if p.Addr().Is4() {
			c.add(nft.FamilyInet, SetNATv4, p.Masked().String())
		} else {
			c.add(nft.FamilyInet, SetNATv6, p.Masked().String())
		}
	}
	return c
}

// endpointElements is what an attached endpoint adds to the tables, and
// the ACL chains it jumps to (n is its network, nil if unknown).
func endpointElements(e Endpoint, n *Network) (*contribution, []*nft.Chain) {
	c := newContribution()
	v4, v6 := firstAddrs(e.Addrs)
	for _, m := range e.Mappings {
		dst, ports, vips := v4, MapPorts4, MapVIPPorts4
		if m.IPv6 {
			dst, ports, vips = v6, MapPorts6, MapVIPPorts6
		}
		if !dst.IsValid() {
			continue // a mapping of a family the endpoint has no address of
		}
		key := m.ProtocolName() + " . " + strconv.Itoa(int(m.ExternalPort))
		value := dst.String() + " . " + strconv.Itoa(int(m.InternalPort))
		if m.VIP.IsValid() {
			c.put(nft.FamilyInet, vips, m.VIP.String()+" . "+key, value)
		} else {
			c.put(nft.FamilyInet, ports, key, value)
		}
	}
	var netACLs []api.ACLSpec
	if n != nil {
		netACLs = n.ACLs
	}
	p := NewProfile(netACLs, e.ACLs)
	in := p.chain(api.ACLIn)
	chains := []*nft.Chain{in}
	var out *nft.Chain
	if !p.Default {
		out = p.chain(api.ACLOut)
		chains = append(chains, out)
	}
	for _, a := range e.Addrs {
		inMap, outMap := MapACLIn4, MapACLOut4
		if a.Is6() {
			inMap, outMap = MapACLIn6, MapACLOut6
		}
		c.put(nft.FamilyInet, inMap, a.String(), "jump "+in.Name)
		if out != nil {
			c.put(nft.FamilyInet, outMap, a.String(), "jump "+out.Name)
		}
		if n != nil && e.DisableICC {
			for _, sub := range n.Subnets {
				if sub.Addr().Is4() == a.Is4() {
					c.add(nft.FamilyInet, pick(a, SetNoICC4, SetNoICC6), a.String()+" . "+sub.Masked().String())
				}
			}
		}
		if o := e.OutboundNAT; o != nil {
			for _, x := range o.Exceptions {
				if a.Is4() == x.Addr().Is4() {
					c.add(nft.FamilyInet, pick(a, SetNATExcept4, SetNATExcept6), a.String()+" . "+prefixText([]netip.Prefix{x})[0])
				}
			}
			if o.VirtualIP.IsValid() && o.VirtualIP.Is4() == a.Is4() {
				c.put(nft.FamilyInet, pick(a, MapSNAT4, MapSNAT6), a.String(), o.VirtualIP.String())
			}
		}
	}
	if e.Port != "" {
		c.add(nft.FamilyBridge, SetPorts, e.Port)
		if e.MAC != nil {
			c.add(nft.FamilyBridge, SetPortMAC, e.Port+" . "+e.MAC.String())
		}
		for _, a := range e.Addrs {
			c.add(nft.FamilyBridge, pick(a, SetPortV4, SetPortV6), e.Port+" . "+a.String())
		}
	}
	return c, chains
}

// pick returns v4 for an IPv4 address, else v6.
func pick(a netip.Addr, v4, v6 string) string {
	if a.Is4() {
		return v4
	}
	return v6
}

// firstAddrs returns the endpoint's first IPv4 and IPv6 addresses.
func firstAddrs(addrs []netip.Addr) (v4, v6 netip.Addr) {
	for _, a := range addrs {
		if a.Is4() && !v4.IsValid() {
			v4 = a
		}
		if a.Is6() && !v6.IsValid() {
			v6 = a
		}
	}
	return v4, v6
}

// bridgePrioritySpoof runs the bridge table's source checks before
// anything else sees a frame (br_netfilter runs at 0).
const bridgePrioritySpoof = -300

// bridgeSkeleton is the bridge table without elements.
func bridgeSkeleton() *nft.Table {
	antispoof := &nft.Chain{Name: "antispoof", Rules: []nft.Rule{
		rule("source MAC", nft.Concat(nft.Iifname(), nft.EtherSaddr()).NotInSet(SetPortMAC), nft.Drop()),
		rule("ARP sender MAC", nft.EtherType().Eq("arp"), nft.Concat(nft.Iifname(), nft.ArpSaddrEther()).NotInSet(SetPortMAC), nft.Drop()),
		rule("ARP sender address", nft.Concat(nft.Iifname(), nft.ArpSaddrIP()).NotInSet(SetPortV4), nft.Drop()),
		rule("IPv4 source", nft.Concat(nft.Iifname(), nft.IPSaddr()).NotInSet(SetPortV4), nft.Drop()),
		rule("IPv6 source", nft.IP6Saddr().Neq("fe80::/10"), nft.IP6Saddr().Neq("::"),
			nft.Concat(nft.Iifname(), nft.IP6Saddr()).NotInSet(SetPortV6), nft.Drop()),
		rule("neighbour advertisement target", nft.ICMPv6Type().Eq("nd-neighbor-advert"), nft.THRaw(64, nft.KeyIPv6).Neq("fe80::/10"),
			nft.Concat(nft.Iifname(), nft.THRaw(64, nft.KeyIPv6)).NotInSet(SetPortV6), nft.Drop()),
	}}
	prerouting := &nft.Chain{
		Name: "prerouting", Type: nft.ChainTypeFilter, Hook: nft.HookPrerouting, Priority: bridgePrioritySpoof,
		Rules: []nft.Rule{
			rule("a port of an endpoint being attached or detached sends nothing until hostnet knows it",
				nft.Iifname().Eq(driver.PortPrefix+"*"), nft.Iifname().NotInSet(SetPorts), nft.Drop()),
			rule("what an endpoint sends must come from its own MAC and addresses",
				nft.Iifname().InSet(SetPorts), nft.Jump("antispoof")),
		},
	}
	// Nor does anything reach it: the bridge's own frames (from the host)
	// pass the output hook, the others the forward hook.
	unknownPort := func(name string, hook nft.Hook) *nft.Chain {
		return &nft.Chain{Name: name, Type: nft.ChainTypeFilter, Hook: hook, Priority: bridgePrioritySpoof, Rules: []nft.Rule{
			rule("nothing reaches a port of an endpoint being attached or detached until hostnet knows it",
				nft.Oifname().Eq(driver.PortPrefix+"*"), nft.Oifname().NotInSet(SetPorts), nft.Drop()),
		}}
	}
	return &nft.Table{
		Family: nft.FamilyBridge,
		Name:   TableName,
		Sets: []*nft.Set{
			set(SetPorts, "host sides of endpoints", false, nft.KeyIfname),
			set(SetPortMAC, "the MAC each endpoint may send from", false, nft.KeyIfname, nft.KeyEther),
			set(SetPortV4, "the IPv4 addresses each endpoint may send from", false, nft.KeyIfname, nft.KeyIPv4),
			set(SetPortV6, "the IPv6 addresses each endpoint may send from", false, nft.KeyIfname, nft.KeyIPv6),
		},
		Chains: []*nft.Chain{prerouting, antispoof, unknownPort("forward", nft.HookForward), unknownPort("output", nft.HookOutput)},
	}
}
