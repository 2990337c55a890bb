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
	"github.com/hostnet/hostnet/internal/driver"
	"github.com/hostnet/hostnet/internal/nftmodel"
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
func Compile(in Input) []*nftmodel.Table {
	s := NewState()
	for _, n := range in.Networks {
		s.SetNetwork(n)
	}
	for _, e := range in.Endpoints {
		s.SetEndpoint(e)
	}
	return s.Tables()
}

func set(name, comment string, interval bool, keys ...nftmodel.KeyType) *nftmodel.Set {
	return &nftmodel.Set{Name: name, Key: keys, Interval: interval, Comment: comment}
}

func dataMap(name, comment string, key, value []nftmodel.KeyType) *nftmodel.Map {
	return &nftmodel.Map{Name: name, Key: key, Value: value, Elements: map[string]string{}, Comment: comment}
}

func verdictMap(name, comment string, key nftmodel.KeyType) *nftmodel.Map {
	return &nftmodel.Map{Name: name, Key: []nftmodel.KeyType{key}, Verdict: true, Elements: map[string]string{}, Comment: comment}
}

func rule(comment string, exprs ...nftmodel.Expr) nftmodel.Rule {
	return nftmodel.Rule{Comment: comment, Exprs: exprs}
}

// inetSkeleton is the inet table without elements and without the
// endpoints' ACL chains: what never changes.
func inetSkeleton() *nftmodel.Table {
	proto := []nftmodel.KeyType{nftmodel.KeyInetProto, nftmodel.KeyInetService}
	to4 := []nftmodel.KeyType{nftmodel.KeyIPv4, nftmodel.KeyInetService}
	to6 := []nftmodel.KeyType{nftmodel.KeyIPv6, nftmodel.KeyInetService}
	guard := &nftmodel.Chain{
		Name: "guard", Type: nftmodel.ChainTypeFilter, Hook: nftmodel.HookPrerouting, Priority: nftmodel.PriorityRaw,
		Rules: []nftmodel.Rule{
			rule("endpoints cannot reach the host's loopback (route_localnet is on for bridges)",
				nftmodel.Iifname().InSet(SetBridges), nftmodel.IPDaddr().Eq("127.0.0.0/8"), nftmodel.Drop()),
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
	// The endpoints' ACLs, before the chains below (a lower priority runs
	// first): replies pass; every other packet meets its sender's Out rules
	// and its receiver's In rules. Judging every packet of a flow, not only
	// its first, is what makes a new Block stop an established flow at
	// once, without waiting for its connection to be forgotten.
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
	return &nftmodel.Table{
		Name: TableName,
		Sets: []*nftmodel.Set{
			set(SetBridges, "bridges of hostnet networks", false, nftmodel.KeyIfname),
			set(SetNATBridges, "bridges of NAT networks", false, nftmodel.KeyIfname),
			set(SetIntraBridge, "traffic that stays within one network", false, nftmodel.KeyIfname, nftmodel.KeyIfname),
			set(SetNATv4, "IPv4 subnets of NAT networks", true, nftmodel.KeyIPv4),
			set(SetNATv6, "IPv6 subnets of NAT networks", true, nftmodel.KeyIPv6),
			set(SetNATExcept4, "endpoint . destination not masqueraded (OutBoundNAT exceptions)", true, nftmodel.KeyIPv4, nftmodel.KeyIPv4),
			set(SetNATExcept6, "endpoint . destination not masqueraded (OutBoundNAT exceptions)", true, nftmodel.KeyIPv6, nftmodel.KeyIPv6),
			set(SetNoICC4, "DisableICC endpoint . its subnet: no traffic with its peers", true, nftmodel.KeyIPv4, nftmodel.KeyIPv4),
			set(SetNoICC6, "DisableICC endpoint . its subnet: no traffic with its peers", true, nftmodel.KeyIPv6, nftmodel.KeyIPv6),
		},
		Maps: []*nftmodel.Map{
			dataMap(MapPorts4, "published ports on every address of the host", proto, to4),
			dataMap(MapPorts6, "published ports on every address of the host", proto, to6),
			dataMap(MapVIPPorts4, "published ports bound to one address of the host", append([]nftmodel.KeyType{nftmodel.KeyIPv4}, proto...), to4),
			dataMap(MapVIPPorts6, "published ports bound to one address of the host", append([]nftmodel.KeyType{nftmodel.KeyIPv6}, proto...), to6),
			dataMap(MapSNAT4, "OutBoundNAT VirtualIP of an endpoint", []nftmodel.KeyType{nftmodel.KeyIPv4}, []nftmodel.KeyType{nftmodel.KeyIPv4}),
			dataMap(MapSNAT6, "OutBoundNAT VirtualIP of an endpoint", []nftmodel.KeyType{nftmodel.KeyIPv6}, []nftmodel.KeyType{nftmodel.KeyIPv6}),
			verdictMap(MapACLIn4, "the In rules of each endpoint, by its address", nftmodel.KeyIPv4),
			verdictMap(MapACLIn6, "the In rules of each endpoint, by its address", nftmodel.KeyIPv6),
			verdictMap(MapACLOut4, "the Out rules of each endpoint, by its address", nftmodel.KeyIPv4),
			verdictMap(MapACLOut6, "the Out rules of each endpoint, by its address", nftmodel.KeyIPv6),
		},
		Chains: []*nftmodel.Chain{
			guard, publish("publish", nftmodel.HookPrerouting), publish("publish_local", nftmodel.HookOutput),
			aclChain("acl_forward", nftmodel.HookForward, append(append([]nftmodel.Rule(nil), sendersOut...), receiversIn...)...),
			aclChain("acl_input", nftmodel.HookInput, sendersOut...),
			aclChain("acl_output", nftmodel.HookOutput, receiversIn...),
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
	c.add(nftmodel.FamilyInet, SetBridges, n.Bridge)
	c.add(nftmodel.FamilyInet, SetIntraBridge, n.Bridge+" . "+n.Bridge)
	if n.Type != api.NAT {
		return c
	}
	c.add(nftmodel.FamilyInet, SetNATBridges, n.Bridge)
	for _, p := range n.Subnets {
		if p.Addr().Is4() {
			c.add(nftmodel.FamilyInet, SetNATv4, p.Masked().String())
		} else {
			c.add(nftmodel.FamilyInet, SetNATv6, p.Masked().String())
		}
	}
	return c
}

// endpointElements is what an attached endpoint adds to the tables, and
// the ACL chains it jumps to (n is its network, nil if unknown).
func endpointElements(e Endpoint, n *Network) (*contribution, []*nftmodel.Chain) {
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
			c.put(nftmodel.FamilyInet, vips, m.VIP.String()+" . "+key, value)
		} else {
			c.put(nftmodel.FamilyInet, ports, key, value)
		}
	}
	var netACLs []api.ACLSpec
	if n != nil {
		netACLs = n.ACLs
	}
	p := NewProfile(netACLs, e.ACLs)
	in := p.chain(api.ACLIn)
	chains := []*nftmodel.Chain{in}
	var out *nftmodel.Chain
	if !p.Default {
		out = p.chain(api.ACLOut)
		chains = append(chains, out)
	}
	for _, a := range e.Addrs {
		inMap, outMap := MapACLIn4, MapACLOut4
		if a.Is6() {
			inMap, outMap = MapACLIn6, MapACLOut6
		}
		c.put(nftmodel.FamilyInet, inMap, a.String(), "jump "+in.Name)
		if out != nil {
			c.put(nftmodel.FamilyInet, outMap, a.String(), "jump "+out.Name)
		}
		if n != nil && e.DisableICC {
			for _, sub := range n.Subnets {
				if sub.Addr().Is4() == a.Is4() {
					c.add(nftmodel.FamilyInet, pick(a, SetNoICC4, SetNoICC6), a.String()+" . "+sub.Masked().String())
				}
			}
		}
		if o := e.OutboundNAT; o != nil {
			for _, x := range o.Exceptions {
				if a.Is4() == x.Addr().Is4() {
					c.add(nftmodel.FamilyInet, pick(a, SetNATExcept4, SetNATExcept6), a.String()+" . "+prefixText([]netip.Prefix{x})[0])
				}
			}
			if o.VirtualIP.IsValid() && o.VirtualIP.Is4() == a.Is4() {
				c.put(nftmodel.FamilyInet, pick(a, MapSNAT4, MapSNAT6), a.String(), o.VirtualIP.String())
			}
		}
	}
	if e.Port != "" {
		c.add(nftmodel.FamilyBridge, SetPorts, e.Port)
		if e.MAC != nil {
			c.add(nftmodel.FamilyBridge, SetPortMAC, e.Port+" . "+e.MAC.String())
		}
		for _, a := range e.Addrs {
			c.add(nftmodel.FamilyBridge, pick(a, SetPortV4, SetPortV6), e.Port+" . "+a.String())
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
func bridgeSkeleton() *nftmodel.Table {
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
			rule("a port of an endpoint being attached or detached sends nothing until hostnet knows it",
				nftmodel.Iifname().Eq(driver.PortPrefix+"*"), nftmodel.Iifname().NotInSet(SetPorts), nftmodel.Drop()),
			rule("what an endpoint sends must come from its own MAC and addresses",
				nftmodel.Iifname().InSet(SetPorts), nftmodel.Jump("antispoof")),
		},
	}
	// Nor does anything reach it: the bridge's own frames (from the host)
	// pass the output hook, the others the forward hook.
	unknownPort := func(name string, hook nftmodel.Hook) *nftmodel.Chain {
		return &nftmodel.Chain{Name: name, Type: nftmodel.ChainTypeFilter, Hook: hook, Priority: bridgePrioritySpoof, Rules: []nftmodel.Rule{
			rule("nothing reaches a port of an endpoint being attached or detached until hostnet knows it",
				nftmodel.Oifname().Eq(driver.PortPrefix+"*"), nftmodel.Oifname().NotInSet(SetPorts), nftmodel.Drop()),
		}}
	}
	return &nftmodel.Table{
		Family: nftmodel.FamilyBridge,
		Name:   TableName,
		Sets: []*nftmodel.Set{
			set(SetPorts, "host sides of endpoints", false, nftmodel.KeyIfname),
			set(SetPortMAC, "the MAC each endpoint may send from", false, nftmodel.KeyIfname, nftmodel.KeyEther),
			set(SetPortV4, "the IPv4 addresses each endpoint may send from", false, nftmodel.KeyIfname, nftmodel.KeyIPv4),
			set(SetPortV6, "the IPv6 addresses each endpoint may send from", false, nftmodel.KeyIfname, nftmodel.KeyIPv6),
		},
		Chains: []*nftmodel.Chain{prerouting, antispoof, unknownPort("forward", nftmodel.HookForward), unknownPort("output", nftmodel.HookOutput)},
	}
}
