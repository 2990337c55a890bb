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
	"sort"
	"strconv"

	"github.com/hostnet/hostnet/api"
	"github.com/hostnet/hostnet/internal/dataplane/nft"
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

// Compile returns the desired tables: the inet one, then the bridge one.
func Compile(in Input) []*nft.Table {
	nets := append([]Network(nil), in.Networks...)
	sort.Slice(nets, func(i, j int) bool { return nets[i].Bridge < nets[j].Bridge })
	eps := append([]Endpoint(nil), in.Endpoints...)
	sort.Slice(eps, func(i, j int) bool { return eps[i].Port < eps[j].Port })
	byID := map[string]*Network{}
	for i := range nets {
		byID[nets[i].ID] = &nets[i]
	}
	return []*nft.Table{compileInet(nets, eps, byID), compileBridge(eps)}
}

func set(name, comment string, interval bool, keys ...nft.KeyType) *nft.Set {
	return &nft.Set{Name: name, Key: keys, Interval: interval, Comment: comment}
}

func dataMap(name, comment string, key, value []nft.KeyType) *nft.Map {
	return &nft.Map{Name: name, Key: key, Value: value, Elements: map[string]string{}, Comment: comment}
}

func rule(comment string, exprs ...nft.Expr) nft.Rule {
	return nft.Rule{Comment: comment, Exprs: exprs}
}

func compileInet(nets []Network, eps []Endpoint, byID map[string]*Network) *nft.Table {
	bridges := set(SetBridges, "bridges of hostnet networks", false, nft.KeyIfname)
	natBridges := set(SetNATBridges, "bridges of NAT networks", false, nft.KeyIfname)
	intra := set(SetIntraBridge, "traffic that stays within one network", false, nft.KeyIfname, nft.KeyIfname)
	nat4 := set(SetNATv4, "IPv4 subnets of NAT networks", true, nft.KeyIPv4)
	nat6 := set(SetNATv6, "IPv6 subnets of NAT networks", true, nft.KeyIPv6)
	except4 := set(SetNATExcept4, "endpoint . destination not masqueraded (OutBoundNAT exceptions)", true, nft.KeyIPv4, nft.KeyIPv4)
	except6 := set(SetNATExcept6, "endpoint . destination not masqueraded (OutBoundNAT exceptions)", true, nft.KeyIPv6, nft.KeyIPv6)
	noICC4 := set(SetNoICC4, "DisableICC endpoint . its subnet: no traffic with its peers", true, nft.KeyIPv4, nft.KeyIPv4)
	noICC6 := set(SetNoICC6, "DisableICC endpoint . its subnet: no traffic with its peers", true, nft.KeyIPv6, nft.KeyIPv6)
	proto := []nft.KeyType{nft.KeyInetProto, nft.KeyInetService}
	to4 := []nft.KeyType{nft.KeyIPv4, nft.KeyInetService}
	to6 := []nft.KeyType{nft.KeyIPv6, nft.KeyInetService}
	ports4 := dataMap(MapPorts4, "published ports on every address of the host", proto, to4)
	ports6 := dataMap(MapPorts6, "published ports on every address of the host", proto, to6)
	vip4 := dataMap(MapVIPPorts4, "published ports bound to one address of the host", append([]nft.KeyType{nft.KeyIPv4}, proto...), to4)
	vip6 := dataMap(MapVIPPorts6, "published ports bound to one address of the host", append([]nft.KeyType{nft.KeyIPv6}, proto...), to6)
	snat4 := dataMap(MapSNAT4, "OutBoundNAT VirtualIP of an endpoint", []nft.KeyType{nft.KeyIPv4}, []nft.KeyType{nft.KeyIPv4})
	snat6 := dataMap(MapSNAT6, "OutBoundNAT VirtualIP of an endpoint", []nft.KeyType{nft.KeyIPv6}, []nft.KeyType{nft.KeyIPv6})
	verdictMap := func(name, comment string, key nft.KeyType) *nft.Map {
		return &nft.Map{Name: name, Key: []nft.KeyType{key}, Verdict: true, Elements: map[string]string{}, Comment: comment}
	}
	aclIn4 := verdictMap(MapACLIn4, "the In rules of each endpoint, by its address", nft.KeyIPv4)
	aclIn6 := verdictMap(MapACLIn6, "the In rules of each endpoint, by its address", nft.KeyIPv6)
	aclOut4 := verdictMap(MapACLOut4, "the Out rules of each endpoint, by its address", nft.KeyIPv4)
	aclOut6 := verdictMap(MapACLOut6, "the Out rules of each endpoint, by its address", nft.KeyIPv6)
	profiles := map[string]*nft.Chain{}

	for _, n := range nets {
		if n.Bridge == "" {
			continue
		}
		bridges.Elements = append(bridges.Elements, n.Bridge)
		intra.Elements = append(intra.Elements, n.Bridge+" . "+n.Bridge)
		if n.Type != api.NAT {
			continue
		}
		natBridges.Elements = append(natBridges.Elements, n.Bridge)
		for _, p := range n.Subnets {
			if p.Addr().Is4() {
				nat4.Elements = append(nat4.Elements, p.Masked().String())
			} else {
				nat6.Elements = append(nat6.Elements, p.Masked().String())
			}
		}
	}
	for _, e := range eps {
		v4, v6 := firstAddrs(e.Addrs)
		for _, m := range e.Mappings {
			dst := v4
			ports, vips := ports4, vip4
			if m.IPv6 {
				dst, ports, vips = v6, ports6, vip6
			}
			if !dst.IsValid() {
				continue // a mapping of a family the endpoint has no address of
			}
			key := m.ProtocolName() + " . " + strconv.Itoa(int(m.ExternalPort))
			value := dst.String() + " . " + strconv.Itoa(int(m.InternalPort))
			if m.VIP.IsValid() {
				vips.Elements[m.VIP.String()+" . "+key] = value
			} else {
				ports.Elements[key] = value
			}
		}
		var netACLs []api.ACLSpec
		if n := byID[e.Network]; n != nil {
			netACLs = n.ACLs
		}
		p := NewProfile(netACLs, e.ACLs)
		in := p.chain(api.ACLIn)
		profiles[in.Name] = in
		var out *nft.Chain
		if !p.Default {
			out = p.chain(api.ACLOut)
			profiles[out.Name] = out
		}
		if n := byID[e.Network]; n != nil && e.DisableICC {
			for _, a := range e.Addrs {
				for _, sub := range n.Subnets {
					if sub.Addr().Is4() == a.Is4() {
						el := a.String() + " . " + sub.Masked().String()
						if a.Is4() {
							noICC4.Elements = append(noICC4.Elements, el)
						} else {
							noICC6.Elements = append(noICC6.Elements, el)
						}
					}
				}
			}
		}
		for _, a := range e.Addrs {
			inMap, outMap := aclIn4, aclOut4
			if a.Is6() {
				inMap, outMap = aclIn6, aclOut6
			}
			inMap.Elements[a.String()] = "jump " + in.Name
			if out != nil {
				outMap.Elements[a.String()] = "jump " + out.Name
			}
		}
		if o := e.OutboundNAT; o != nil {
			for _, a := range e.Addrs {
				for _, x := range o.Exceptions {
					if a.Is4() == x.Addr().Is4() {
						el := a.String() + " . " + prefixText([]netip.Prefix{x})[0]
						if a.Is4() {
							except4.Elements = append(except4.Elements, el)
						} else {
							except6.Elements = append(except6.Elements, el)
						}
					}
				}
				if o.VirtualIP.IsValid() && o.VirtualIP.Is4() == a.Is4() {
					if a.Is4() {
						snat4.Elements[a.String()] = o.VirtualIP.String()
					} else {
						snat6.Elements[a.String()] = o.VirtualIP.String()
					}
				}
			}
		}
	}

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
	// The endpoints' ACLs, before the chains above (a lower priority runs
	// first): replies pass; a new flow meets its sender's Out rules and
	// its receiver's In rules.
	aclChain := func(name string, hook nft.Hook, dispatch ...nft.Rule) *nft.Chain {
		rules := append([]nft.Rule{rule("replies to admitted flows", nft.CtState("established", "related"), nft.Accept())}, dispatch...)
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
	chains := []*nft.Chain{
		guard, publish("publish", nft.HookPrerouting), publish("publish_local", nft.HookOutput),
		aclChain("acl_forward", nft.HookForward, append(append([]nft.Rule(nil), sendersOut...), receiversIn...)...),
		aclChain("acl_input", nft.HookInput, sendersOut...),
		aclChain("acl_output", nft.HookOutput, receiversIn...),
		forward, postrouting,
	}
	names := make([]string, 0, len(profiles))
	for name := range profiles {
		names = append(names, name)
	}
	sort.Strings(names)
	for _, name := range names {
		chains = append(chains, profiles[name])
	}
	return &nft.Table{
		Name:   TableName,
		Sets:   []*nft.Set{bridges, natBridges, intra, nat4, nat6, except4, except6, noICC4, noICC6},
		Maps:   []*nft.Map{ports4, ports6, vip4, vip6, snat4, snat6, aclIn4, aclIn6, aclOut4, aclOut6},
		Chains: chains,
	}
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

func compileBridge(eps []Endpoint) *nft.Table {
	ports := set(SetPorts, "host sides of endpoints", false, nft.KeyIfname)
	macs := set(SetPortMAC, "the MAC each endpoint may send from", false, nft.KeyIfname, nft.KeyEther)
	v4 := set(SetPortV4, "the IPv4 addresses each endpoint may send from", false, nft.KeyIfname, nft.KeyIPv4)
	v6 := set(SetPortV6, "the IPv6 addresses each endpoint may send from", false, nft.KeyIfname, nft.KeyIPv6)
	for _, e := range eps {
		if e.Port == "" {
			continue
		}
		ports.Elements = append(ports.Elements, e.Port)
		if e.MAC != nil {
			macs.Elements = append(macs.Elements, e.Port+" . "+e.MAC.String())
		}
		for _, a := range e.Addrs {
			el := e.Port + " . " + a.String()
			if a.Is4() {
				v4.Elements = append(v4.Elements, el)
			} else {
				v6.Elements = append(v6.Elements, el)
			}
		}
	}
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
		Rules: []nft.Rule{rule("what an endpoint sends must come from its own MAC and addresses",
			nft.Iifname().InSet(SetPorts), nft.Jump("antispoof"))},
	}
	return &nft.Table{
		Family: nft.FamilyBridge,
		Name:   TableName,
		Sets:   []*nft.Set{ports, macs, v4, v6},
		Chains: []*nft.Chain{prerouting, antispoof},
	}
}
