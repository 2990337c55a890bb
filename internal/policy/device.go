package policy

import (
	"cmp"
	"crypto/sha256"
	"encoding/hex"
	"net"
	"net/netip"
	"time"

	"github.com/hostnet/hostnet/api"
	"github.com/hostnet/hostnet/internal/netmodel"
	"github.com/hostnet/hostnet/internal/nftmodel"
)

// DeviceHooks is the hook point of drivers whose endpoint traffic never
// meets the host's inet hooks but passes an uplink device: macvlan
// endpoints (Transparent; L2Tunnel, whose VEPA mode sends every frame out
// by the uplink, even between two endpoints of the host, and takes it back
// by it). ACLs are enforced at the uplink's netdev hooks, in the host
// namespace: on egress, a packet meets its sender's Out rules (by ip
// saddr); on ingress, its receiver's In rules (by ip daddr).
//
// Netdev hooks have no conntrack, so a flow table kept in dynamic sets
// stands in for it: a packet a direction admits records the tuple of its
// replies (TCP and UDP by addresses, protocol and ports; ICMP echo by its
// identifier) in that direction's flow set, and a packet whose tuple is
// recorded passes the other way as a reply, without meeting its sender's
// rules. An entry lasts FlowTimeout after the last packet its flow's
// originator sent (EchoTimeout for a ping): the originator's packets
// refresh it, replies only read it. A write on both sides of a flow, on
// two CPUs at once, cost 3-4% of a TCP stream's throughput (the cache
// line of the entry goes back and forth); one writer costs under 1%. What
// conntrack would also admit is not: ICMP errors about admitted flows
// ("related") meet the rules like any packet, a flow idle longer than the
// timeout must be admitted again, and so must the replies of a flow whose
// originator went quiet longer than the timeout while its replies went
// on (a one-way stream after a single request).
//
// Frames between two bridge-mode macvlans of the device (Transparent
// endpoints, and the host's shim) never reach the wire nor its egress
// hook: the macvlan driver hands them to the device's receive path
// (dev_forward_skb), so they meet its ingress hook only, once per
// direction. The ingress chain tells them by their source MAC (the
// Bridged set, which the driver fills) and sends them to a chain of their
// own (ChainLocal) where a packet meets both its sender's Out rules and
// its receiver's In rules, and a flow table of their own admits the
// replies. Frames from or to the host's shim pass: the host's inet hooks
// filter that traffic, with conntrack. VEPA macvlans (L2Tunnel) are not
// in the set: their frames go to the wire and come back from it.
//
// Anti-spoofing holds each endpoint to its addresses where its frames
// leave it (egress, and the local chain): a frame from an endpoint's MAC
// must carry one of its addresses (IPv4, IPv6, ARP sender, a neighbour
// advertisement's target; the unspecified address of a DHCP client
// without a lease, and IPv6 link-local addresses, pass), and a frame with
// an endpoint's address must come from that endpoint's MAC. A container
// allowed to change its macvlan's MAC (CAP_NET_ADMIN) and to use an
// address no endpoint has is not told from another host's traffic: the
// uplink carries the host's and other programs' frames too.
//
// Several networks may share one uplink: the objects of one device are
// named after it (Name), so that DeviceHooks of different devices never
// clash in one table, and a Layout is the same for every network of its
// device (netmodel shares objects wanted alike). Profile chains are named
// by their content and shared by all endpoints of the table, whatever
// their device.
type DeviceHooks struct {
	Table  string // a netdev table, e.g. TableName
	Device string // the uplink
}

// Base names of a DeviceHooks' objects (Name appends the device), and
// the flow table's parameters. The dispatch maps are MapACLIn4, MapACLIn6
// (the receiver's In rules, by ip daddr) and MapACLOut4, MapACLOut6 (the
// sender's Out rules, by ip saddr).
const (
	ChainIngress       = "ingress"        // base chain, hook ingress: replies, then the receiver's In rules
	ChainEgress        = "egress"         // base chain, hook egress: replies, then the sender's Out rules
	SetFlowsIn4        = "flows_in_v4"    // tuples of the replies expected in, recorded by egress
	SetFlowsIn6        = "flows_in_v6"    //
	SetFlowsOut4       = "flows_out_v4"   // tuples of the replies expected out, recorded by ingress
	SetFlowsOut6       = "flows_out_v6"   //
	ChainLocal         = "local"          // regular chain: frames between two bridge-mode macvlans of the device
	SetBridged         = "bridged"        // MACs of the device's bridge-mode macvlans (endpoints and shims)
	SetShims           = "shims"          // MACs of the host's shims on the device
	SetFlowsLoc4       = "flows_local_v4" // tuples of the replies expected between two bridge-mode macvlans
	SetFlowsLoc6       = "flows_local_v6" //
	SetEndpoints4      = "endpoints_v4"   // the addresses of the endpoints behind the device: only their flows are recorded
	SetEndpoints6      = "endpoints_v6"   //
	ChainSpoof         = "antispoof"      // regular chain: what an endpoint sends comes from its own addresses
	ChainEgressChecked = "egress_checked" // regular chain: egress once the sender is held to its addresses
	ChainLocalChecked  = "local_checked"  // regular chain: local frames once the sender is held to its addresses
	ChainEgressOwn4    = "egress_own_v4"  // regular chain: egress of an endpoint's IPv4 packet from its own MAC and address
	SetMACs            = "macs"           // the MACs of the endpoints behind the device
	SetMACv4           = "mac_v4"         // an endpoint's MAC . one of its IPv4 addresses
	SetMACv6           = "mac_v6"         // an endpoint's MAC . one of its IPv6 addresses

	FlowTimeout = 2 * time.Minute  // how long a TCP or UDP flow's entry outlives its last packet
	EchoTimeout = 30 * time.Second // how long a ping's entry outlives its last packet
	// FlowSetSize bounds each flow set: a full set records no new flow
	// (whose replies are then judged as new packets) until entries expire.
	FlowSetSize = 65535
)

// Name returns the name of the object base (MapACLIn4, SetFlowsIn4,
// ChainEgress, ...) for the hook point's device: "base_DEVICE", or, for a
// device name that nft names cannot hold, "base_x" and a hash of it.
func (d DeviceHooks) Name(base string) string { return base + "_" + deviceTag(d.Device) }

// deviceTag is a device name as object names carry it.
func deviceTag(dev string) string {
	if dev != "" && len(dev) < 16 && isPlain(dev) {
		return dev
	}
	h := sha256.Sum256([]byte(dev))
	return "x" + hex.EncodeToString(h[:6])
}

// isPlain reports whether dev holds only letters, digits, '_', '.' and
// '-' (what nft names allow).
func isPlain(dev string) bool {
	for _, r := range dev {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '_' || r == '.' || r == '-') {
			return false
		}
	}
	return true
}

func (d DeviceHooks) hooks() HookPoint {
	return HookPoint{Family: nftmodel.FamilyNetdev, Table: d.Table}
}

// flowKeys are the key types of the flow sets.
func flowKeys(v6 bool) []nftmodel.KeyType {
	addr := nftmodel.KeyIPv4
	if v6 {
		addr = nftmodel.KeyIPv6
	}
	return []nftmodel.KeyType{addr, addr, nftmodel.KeyInetProto, nftmodel.KeyInetService, nftmodel.KeyInetService}
}

// ipFamily gathers the fields of one IP version.
type ipFamily struct {
	v6            bool
	saddr, daddr  nftmodel.Field
	echoRequest   nftmodel.Match
	echoReply     nftmodel.Match
	name          string // "IPv4"
	flowsIn       string // base names
	flowsOut      string
	flowsLocal    string
	endpoints     string
	mapIn, mapOut string
}

var ipFamilies = []ipFamily{
	{false, nftmodel.IPSaddr(), nftmodel.IPDaddr(), nftmodel.ICMPType().Eq("echo-request"), nftmodel.ICMPType().Eq("echo-reply"),
		"IPv4", SetFlowsIn4, SetFlowsOut4, SetFlowsLoc4, SetEndpoints4, MapACLIn4, MapACLOut4},
	{true, nftmodel.IP6Saddr(), nftmodel.IP6Daddr(), nftmodel.ICMPv6Type().Eq("echo-request"), nftmodel.ICMPv6Type().Eq("echo-reply"),
		"IPv6", SetFlowsIn6, SetFlowsOut6, SetFlowsLoc6, SetEndpoints6, MapACLIn6, MapACLOut6},
}

// echoID is the identifier of an ICMP or ICMPv6 echo (bytes 4-5 of its
// header, the same in a request and its reply): what stands for ports in
// a ping's tuple.
func echoID() nftmodel.Field { return nftmodel.THRaw(32, nftmodel.KeyInetService) }

// portProtos are the protocols whose flows are told apart by ports.
var portProtos = []string{"tcp", "udp"}

// tuples returns a packet's own tuple (as its replies record it) and its
// replies' tuple (what a packet records for them), with ports or, for
// echo, the identifier.
func (f ipFamily) tuples(echo bool) (own, reply nftmodel.Field) {
	sport, dport := nftmodel.THSport(), nftmodel.THDport()
	if echo {
		sport, dport = echoID(), echoID()
	}
	own = nftmodel.Concat(f.saddr, f.daddr, nftmodel.L4Proto(), sport, dport)
	reply = nftmodel.Concat(f.daddr, f.saddr, nftmodel.L4Proto(), dport, sport)
	return own, reply
}

// Layout returns the device's fixed part of the table: the flow sets, the
// dispatch maps, the sets of local MACs, the two base chains and the
// chain of local frames. Each base chain first lets replies through
// (those the other chain recorded), then sends a packet to the rules of
// the endpoint it concerns (a packet of no endpoint, e.g. the host's own
// or ARP, passes), then records the tuple of the replies of what it
// admitted. Ingress first sends local frames (from a Bridged MAC) to the
// local chain, which does all three with a flow set of its own and both
// endpoints' rules.
func (d DeviceHooks) Layout() []netmodel.Object {
	h := d.hooks()
	n := d.Name
	// replies lets through what the other direction recorded in flows
	// (base name), without refreshing the entry (its originator's
	// packets do); record records in flows the replies of what passed.
	replies := func(f ipFamily, flows string) []nftmodel.Rule {
		var out []nftmodel.Rule
		for _, echo := range []bool{false, true} {
			own, _ := f.tuples(echo)
			what, match := "replies to admitted flows", nftmodel.Expr(nftmodel.L4Proto().InAnon(portProtos...))
			if echo {
				what, match = "echo replies to admitted pings", f.echoReply
			}
			out = append(out, rule(what+" ("+f.name+")", match, own.InSet(n(flows)), nftmodel.Accept()))
		}
		return out
	}
	// record records in flows the replies of what passed; of an
	// endpoint's packets only (endpoint is the match on its address),
	// when given: the host's own flows on the uplink must not fill the
	// sets.
	record := func(f ipFamily, flows string, endpoint ...nftmodel.Expr) []nftmodel.Rule {
		_, tcp := f.tuples(false)
		_, ping := f.tuples(true)
		with := func(exprs ...nftmodel.Expr) []nftmodel.Expr {
			return append(append([]nftmodel.Expr{exprs[0]}, endpoint...), exprs[1:]...)
		}
		return []nftmodel.Rule{
			rule("admitted: its replies may pass ("+f.name+")", with(nftmodel.L4Proto().InAnon(portProtos...), nftmodel.SetUpdate(n(flows), tcp, 0))...),
			rule("admitted ping: its echo reply may pass ("+f.name+")", with(f.echoRequest, nftmodel.SetUpdate(n(flows), ping, EchoTimeout))...),
		}
	}
	// gate holds what leaves an endpoint to its addresses, then goes to
	// checked, the chain of the rest. Most packets are an endpoint's IPv4
	// packets from its own MAC and address: one lookup lets them on, to
	// own (checked when not given).
	gate := func(own, checked string) []nftmodel.Rule {
		return []nftmodel.Rule{
			rule("an endpoint's IPv4 packet from its own MAC and address", nftmodel.Concat(nftmodel.EtherSaddr(), nftmodel.IPSaddr()).InSet(n(SetMACv4)),
				nftmodel.Goto(cmp.Or(own, checked))),
			rule("from an endpoint: only its own addresses", nftmodel.EtherSaddr().InSet(n(SetMACs)), nftmodel.Jump(n(ChainSpoof))),
			rule("an endpoint's IPv4 address from another MAC", nftmodel.IPSaddr().InSet(n(SetEndpoints4)), nftmodel.Drop()),
			rule("an endpoint's IPv6 address from its own MAC only", nftmodel.IP6Saddr().InSet(n(SetEndpoints6)),
				nftmodel.Concat(nftmodel.EtherSaddr(), nftmodel.IP6Saddr()).NotInSet(n(SetMACv6)), nftmodel.Drop()),
			rule("the rest", nftmodel.Goto(checked)),
		}
	}
	chain := func(name string, hook nftmodel.Hook, in bool) (base, checked, own *nftmodel.Chain) {
		var rules []nftmodel.Rule
		if in {
			rules = append(rules, rule("between two bridge-mode macvlans of "+d.Device+" (never on the wire)",
				nftmodel.EtherSaddr().InSet(n(SetBridged)), nftmodel.Goto(n(ChainLocal))))
		}
		for _, f := range ipFamilies {
			flows := f.flowsOut // egress: replies to what ingress admitted
			if in {
				flows = f.flowsIn
			}
			rules = append(rules, replies(f, flows)...)
		}
		for _, f := range ipFamilies {
			if in {
				rules = append(rules, rule("the receiver's In rules ("+f.name+")", nftmodel.VMap(f.daddr, n(f.mapIn))))
			} else {
				rules = append(rules, rule("the sender's Out rules ("+f.name+")", nftmodel.VMap(f.saddr, n(f.mapOut))))
			}
		}
		for _, f := range ipFamilies {
			flows, endpoint := f.flowsIn, f.saddr.InSet(n(f.endpoints)) // egress records the replies expected in
			if in {
				flows, endpoint = f.flowsOut, f.daddr.InSet(n(f.endpoints))
			}
			rules = append(rules, record(f, flows, endpoint)...)
		}
		if in {
			return &nftmodel.Chain{Name: n(name), Type: nftmodel.ChainTypeFilter, Hook: hook, Device: d.Device,
				Priority: nftmodel.PriorityFilter, Rules: rules}, nil, nil
		}
		// Egress: what leaves an endpoint is held to its addresses first.
		// An endpoint's IPv4 packet from its own MAC and address, the
		// common packet, then meets the IPv4 rules only, and its sender
		// is known to be an endpoint.
		v4 := ipFamilies[0]
		ownRules := append(replies(v4, v4.flowsOut),
			rule("the sender's Out rules ("+v4.name+")", nftmodel.VMap(v4.saddr, n(v4.mapOut))))
		ownRules = append(ownRules, record(v4, v4.flowsIn)...)
		return &nftmodel.Chain{Name: n(name), Type: nftmodel.ChainTypeFilter, Hook: hook, Device: d.Device,
				Priority: nftmodel.PriorityFilter, Rules: gate(n(ChainEgressOwn4), n(ChainEgressChecked))},
			&nftmodel.Chain{Name: n(ChainEgressChecked), Rules: rules}, &nftmodel.Chain{Name: n(ChainEgressOwn4), Rules: ownRules}
	}
	local := func() (*nftmodel.Chain, *nftmodel.Chain) {
		rules := append([]nftmodel.Rule(nil),
			rule("from the host's shim: the host's inet hooks filter it", nftmodel.EtherSaddr().InSet(n(SetShims)), nftmodel.Accept()),
			rule("to the host's shim: the host's inet hooks filter it", nftmodel.EtherDaddr().InSet(n(SetShims)), nftmodel.Accept()))
		for _, f := range ipFamilies {
			rules = append(rules, replies(f, f.flowsLocal)...)
		}
		for _, f := range ipFamilies {
			rules = append(rules, rule("the sender's Out rules ("+f.name+")", nftmodel.VMap(f.saddr, n(f.mapOut))))
		}
		for _, f := range ipFamilies {
			rules = append(rules, rule("the receiver's In rules ("+f.name+")", nftmodel.VMap(f.daddr, n(f.mapIn))))
		}
		for _, f := range ipFamilies {
			rules = append(rules, record(f, f.flowsLocal)...)
		}
		rules = append(rules, rule("local frames never meet the wire's rules", nftmodel.Accept()))
		return &nftmodel.Chain{Name: n(ChainLocal), Rules: gate("", n(ChainLocalChecked))}, &nftmodel.Chain{Name: n(ChainLocalChecked), Rules: rules}
	}
	var out []netmodel.Object
	for _, f := range ipFamilies {
		for _, s := range []struct{ base, comment string }{
			{f.flowsIn, "replies expected in by " + d.Device},
			{f.flowsOut, "replies expected out by " + d.Device},
			{f.flowsLocal, "replies expected between two bridge-mode macvlans of " + d.Device},
		} {
			out = append(out, h.set(&nftmodel.Set{Name: n(s.base), Key: flowKeys(f.v6), Dynamic: true, Timeout: FlowTimeout,
				Size: FlowSetSize, Comment: s.comment}))
		}
	}
	for _, f := range ipFamilies {
		out = append(out, h.set(&nftmodel.Set{Name: n(f.endpoints), Key: []nftmodel.KeyType{addrKey(f.v6)},
			Comment: "the addresses of the endpoints by " + d.Device}))
	}
	for _, f := range ipFamilies {
		out = append(out,
			h.dmap(verdictMap(n(f.mapIn), "the In rules of each endpoint by "+d.Device+", by its address", addrKey(f.v6))),
			h.dmap(verdictMap(n(f.mapOut), "the Out rules of each endpoint by "+d.Device+", by its address", addrKey(f.v6))))
	}
	spoof := &nftmodel.Chain{Name: n(ChainSpoof), Rules: []nftmodel.Rule{
		rule("ARP sender MAC", nftmodel.EtherType().Eq("arp"), nftmodel.ArpSaddrEther().NotInSet(n(SetMACs)), nftmodel.Drop()),
		rule("ARP sender address", nftmodel.ArpSaddrIP().Neq("0.0.0.0"),
			nftmodel.Concat(nftmodel.EtherSaddr(), nftmodel.ArpSaddrIP()).NotInSet(n(SetMACv4)), nftmodel.Drop()),
		rule("IPv4 source", nftmodel.IPSaddr().Neq("0.0.0.0"),
			nftmodel.Concat(nftmodel.EtherSaddr(), nftmodel.IPSaddr()).NotInSet(n(SetMACv4)), nftmodel.Drop()),
		rule("IPv6 source", nftmodel.IP6Saddr().Neq("fe80::/10"), nftmodel.IP6Saddr().Neq("::"),
			nftmodel.Concat(nftmodel.EtherSaddr(), nftmodel.IP6Saddr()).NotInSet(n(SetMACv6)), nftmodel.Drop()),
		rule("neighbour advertisement target", nftmodel.ICMPv6Type().Eq("nd-neighbor-advert"), nftmodel.THRaw(64, nftmodel.KeyIPv6).Neq("fe80::/10"),
			nftmodel.Concat(nftmodel.EtherSaddr(), nftmodel.THRaw(64, nftmodel.KeyIPv6)).NotInSet(n(SetMACv6)), nftmodel.Drop()),
	}}
	out = append(out,
		h.set(&nftmodel.Set{Name: n(SetMACs), Key: []nftmodel.KeyType{nftmodel.KeyEther}, Comment: "the MACs of the endpoints by " + d.Device}),
		h.set(&nftmodel.Set{Name: n(SetMACv4), Key: []nftmodel.KeyType{nftmodel.KeyEther, nftmodel.KeyIPv4}, Comment: "an endpoint's MAC and IPv4 address, by " + d.Device}),
		h.set(&nftmodel.Set{Name: n(SetMACv6), Key: []nftmodel.KeyType{nftmodel.KeyEther, nftmodel.KeyIPv6}, Comment: "an endpoint's MAC and IPv6 address, by " + d.Device}),
		h.chain(spoof))
	out = append(out,
		h.set(&nftmodel.Set{Name: n(SetBridged), Key: []nftmodel.KeyType{nftmodel.KeyEther}, Comment: "bridge-mode macvlans of " + d.Device}),
		h.set(&nftmodel.Set{Name: n(SetShims), Key: []nftmodel.KeyType{nftmodel.KeyEther}, Comment: "the host's shims on " + d.Device}))
	ingress, _, _ := chain(ChainIngress, nftmodel.HookIngress, true)
	egress, egressChecked, egressOwn := chain(ChainEgress, nftmodel.HookEgress, false)
	localBase, localChecked := local()
	return append(out, h.chain(ingress), h.chain(egress), h.chain(egressChecked), h.chain(egressOwn), h.chain(localBase), h.chain(localChecked))
}

// Bridged returns what makes the frames that a bridge-mode macvlan of the
// device with MAC mac sends to another one (which never reach the wire)
// meet the rules of both: an endpoint's macvlan of a Transparent network.
func (d DeviceHooks) Bridged(mac net.HardwareAddr) []netmodel.Object {
	if mac == nil {
		return nil
	}
	return []netmodel.Object{d.hooks().element(d.Name(SetBridged), mac.String(), "")}
}

// Shim returns what makes the frames of the host's shim with MAC mac, a
// bridge-mode macvlan of the device, pass its hooks: the host's inet
// hooks filter its traffic with the endpoints.
func (d DeviceHooks) Shim(mac net.HardwareAddr) []netmodel.Object {
	if mac == nil {
		return nil
	}
	h := d.hooks()
	return []netmodel.Object{h.element(d.Name(SetBridged), mac.String(), ""), h.element(d.Name(SetShims), mac.String(), "")}
}

// AntiSpoof returns what holds the endpoint with MAC mac behind the device
// to its addresses addrs (none yet: a DHCP client without a lease may send
// from the unspecified address only).
func (d DeviceHooks) AntiSpoof(mac net.HardwareAddr, addrs []netip.Addr) []netmodel.Object {
	if mac == nil {
		return nil
	}
	h := d.hooks()
	out := []netmodel.Object{h.element(d.Name(SetMACs), mac.String(), "")}
	for _, a := range addrs {
		out = append(out, h.element(d.Name(pick(a, SetMACv4, SetMACv6)), mac.String()+" . "+a.String(), ""))
	}
	return out
}

func addrKey(v6 bool) nftmodel.KeyType {
	if v6 {
		return nftmodel.KeyIPv6
	}
	return nftmodel.KeyIPv4
}

// Filter returns what filters one endpoint behind the device, with the
// contract of HookPoint.Filter: the chains of its profile (its rules
// merged with its network's; shared by the endpoints of the table with
// the same rules) and the map elements that send its addresses' packets
// to them, and its addresses in the device's endpoint sets (whose flows
// are recorded). A quarantined endpoint gets a profile that admits
// nothing: the firewall fails closed (replies to flows admitted before
// still pass, until they expire).
func (d DeviceHooks) Filter(addrs []netip.Addr, network, own []api.ACLSpec, quarantine bool) []netmodel.Object {
	h := d.hooks()
	out := h.filter(addrs, profileOf(network, own, quarantine), d.Name)
	for _, a := range addrs {
		out = append(out, h.element(d.Name(pick(a, SetEndpoints4, SetEndpoints6)), a.String(), ""))
	}
	return out
}
