// Package nfttest holds sample tables and a patch scenario that the tests
// of nftmodel and of its appliers share.
package nfttest

import (
	"slices"
	"testing"
	"time"

	"github.com/hostnet/hostnet/internal/nftmodel"
)

// Sample is a representative hostnet table: the sets and chains of a
// NAT network, using every Expr the package offers.
func Sample() *nftmodel.Table {
	return &nftmodel.Table{
		Name: "hostnet",
		Sets: []*nftmodel.Set{
			{Name: "nat_v4", Key: []nftmodel.KeyType{nftmodel.KeyIPv4}, Interval: true,
				Elements: []string{"10.1.0.0/16", "10.0.0.0-10.0.0.255", "192.168.5.7", "10.2.0.1-10.2.0.9"}},
			{Name: "bridges", Key: []nftmodel.KeyType{nftmodel.KeyIfname}, Elements: []string{"hnbr-2", "hnbr-1"}, Comment: "hostnet bridges"},
			{Name: "intra", Key: []nftmodel.KeyType{nftmodel.KeyIfname, nftmodel.KeyIfname}, Elements: []string{"hnbr-2 . hnbr-2", "hnbr-1 . hnbr-1"}},
			{Name: "nat_v6", Key: []nftmodel.KeyType{nftmodel.KeyIPv6}, Interval: true, Elements: []string{"fd00:1::/64", "fd00::/64", "fd00:2::5"}},
			{Name: "ports", Key: []nftmodel.KeyType{nftmodel.KeyInetService}, Interval: true, Elements: []string{"8000-8080", "443", "80"}},
			{Name: "services", Key: []nftmodel.KeyType{nftmodel.KeyIPv4, nftmodel.KeyInetProto, nftmodel.KeyInetService}, Elements: []string{"10.0.0.5 . tcp . 80", "10.0.0.5 . 17 . 53"}},
			{Name: "empty", Key: []nftmodel.KeyType{nftmodel.KeyIPv6}},
		},
		Chains: []*nftmodel.Chain{
			{Name: "forward", Type: nftmodel.ChainTypeFilter, Hook: nftmodel.HookForward, Priority: nftmodel.PriorityFilter, Rules: []nftmodel.Rule{
				{Comment: "established", Exprs: []nftmodel.Expr{nftmodel.CtState("related", "established"), nftmodel.Accept()}},
				{Comment: "invalid", Exprs: []nftmodel.Expr{nftmodel.CtState("invalid"), nftmodel.Counter(), nftmodel.Drop()}},
				{Comment: "intra-network", Exprs: []nftmodel.Expr{nftmodel.Concat(nftmodel.Iifname(), nftmodel.Oifname()).InSet("intra"), nftmodel.Accept()}},
				{Comment: "inter-network", Exprs: []nftmodel.Expr{nftmodel.Iifname().InSet("bridges"), nftmodel.Oifname().InSet("bridges"), nftmodel.Jump("isolate")}},
				{Comment: "outbound", Exprs: []nftmodel.Expr{nftmodel.Iifname().InSet("bridges"), nftmodel.Oifname().NotInSet("bridges"), nftmodel.Accept()}},
			}},
			{Name: "isolate", Rules: []nftmodel.Rule{
				{Comment: "reject", Exprs: []nftmodel.Expr{nftmodel.Counter(), nftmodel.Reject()}},
			}},
			{Name: "postrouting", Type: nftmodel.ChainTypeNAT, Hook: nftmodel.HookPostrouting, Priority: nftmodel.PrioritySrcNAT, Rules: []nftmodel.Rule{
				{Comment: "masquerade v4", Exprs: []nftmodel.Expr{nftmodel.IPSaddr().InSet("nat_v4"), nftmodel.Oifname().NotInSet("bridges"), nftmodel.Masquerade()}},
				{Comment: "masquerade v6", Exprs: []nftmodel.Expr{nftmodel.IP6Saddr().InSet("nat_v6"), nftmodel.Oifname().NotInSet("bridges"), nftmodel.Masquerade()}},
			}},
			{Name: "input", Type: nftmodel.ChainTypeFilter, Hook: nftmodel.HookInput, Priority: nftmodel.PriorityFilter, Policy: nftmodel.VerdictDrop, Rules: []nftmodel.Rule{
				{Exprs: []nftmodel.Expr{nftmodel.Iifname().Eq("lo"), nftmodel.Accept()}},
				{Comment: "published ports", Exprs: []nftmodel.Expr{nftmodel.L4Proto().Eq("tcp"), nftmodel.THDport().InSet("ports"), nftmodel.Accept()}},
				{Comment: "dns", Exprs: []nftmodel.Expr{nftmodel.IPSaddr().Eq("10.0.0.0/8"), nftmodel.IPDaddr().Neq("10.0.0.1-10.0.0.3"), nftmodel.L4Proto().Eq("udp"), nftmodel.THDport().Eq("53"), nftmodel.Accept()}},
				{Comment: "service", Exprs: []nftmodel.Expr{nftmodel.Concat(nftmodel.IPDaddr(), nftmodel.L4Proto(), nftmodel.THDport()).InSet("services"), nftmodel.Goto("isolate")}},
				{Comment: "v6", Exprs: []nftmodel.Expr{nftmodel.Iifname().Eq("hnbr-*"), nftmodel.NFProto().Eq("ipv6"), nftmodel.IP6Daddr().Neq("fd00::1"), nftmodel.IP6Saddr().NotInSet("nat_v6"), nftmodel.Return()}},
				{Comment: "not established", Exprs: []nftmodel.Expr{nftmodel.CtState("established").Not(), nftmodel.THSport().Neq("1-1023"), nftmodel.Counter()}},
			}},
		},
	}
}

// Bridge is a bridge table of the kind hostnet builds for a
// network's ports: anti-spoofing, verdict maps to per-endpoint chains.
func Bridge() *nftmodel.Table {
	return &nftmodel.Table{
		Family: nftmodel.FamilyBridge,
		Name:   "hostnet",
		Sets: []*nftmodel.Set{
			{Name: "ports", Key: []nftmodel.KeyType{nftmodel.KeyIfname}, Elements: []string{"hnv2", "hnv1"}},
			{Name: "macs", Key: []nftmodel.KeyType{nftmodel.KeyIfname, nftmodel.KeyEther}, Elements: []string{"hnv1 . 02:00:00:00:00:01", "hnv2 . 02:00:00:00:00:AB"}},
			{Name: "v4", Key: []nftmodel.KeyType{nftmodel.KeyIfname, nftmodel.KeyIPv4}, Elements: []string{"hnv1 . 10.0.0.1"}},
			{Name: "v6", Key: []nftmodel.KeyType{nftmodel.KeyIfname, nftmodel.KeyIPv6}, Elements: []string{"hnv1 . fd00::1"}},
			{Name: "types", Key: []nftmodel.KeyType{nftmodel.KeyEtherType}, Elements: []string{"ip6", "0x0800", "arp"}},
		},
		Maps: []*nftmodel.Map{
			{Name: "acl_in", Key: []nftmodel.KeyType{nftmodel.KeyIfname}, Verdict: true, Elements: map[string]string{"hnv2": "jump acl_b", "hnv1": "jump  acl_a", "hnv3": "drop"}},
			{Name: "acl_out", Key: []nftmodel.KeyType{nftmodel.KeyIfname}, Verdict: true, Elements: map[string]string{"hnv1": "goto acl_a", "hnv2": "accept", "hnv9": "return"}},
		},
		Chains: []*nftmodel.Chain{
			{Name: "prerouting", Type: nftmodel.ChainTypeFilter, Hook: nftmodel.HookPrerouting, Priority: -300, Rules: []nftmodel.Rule{
				{Comment: "ports", Exprs: []nftmodel.Expr{nftmodel.Iifname().InSet("ports"), nftmodel.Jump("antispoof")}},
			}},
			{Name: "antispoof", Rules: []nftmodel.Rule{
				{Comment: "mac", Exprs: []nftmodel.Expr{nftmodel.Concat(nftmodel.Iifname(), nftmodel.EtherSaddr()).NotInSet("macs"), nftmodel.Drop()}},
				{Comment: "arp mac", Exprs: []nftmodel.Expr{nftmodel.EtherType().Eq("arp"), nftmodel.Concat(nftmodel.Iifname(), nftmodel.ArpSaddrEther()).NotInSet("macs"), nftmodel.Drop()}},
				{Comment: "arp ip", Exprs: []nftmodel.Expr{nftmodel.Concat(nftmodel.Iifname(), nftmodel.ArpSaddrIP()).NotInSet("v4"), nftmodel.Drop()}},
				{Comment: "v4", Exprs: []nftmodel.Expr{nftmodel.Concat(nftmodel.Iifname(), nftmodel.IPSaddr()).NotInSet("v4"), nftmodel.Drop()}},
				{Comment: "v6", Exprs: []nftmodel.Expr{nftmodel.IP6Saddr().Neq("fe80::/10"), nftmodel.Concat(nftmodel.Iifname(), nftmodel.IP6Saddr()).NotInSet("v6"), nftmodel.Drop()}},
				{Comment: "nd", Exprs: []nftmodel.Expr{nftmodel.ICMPv6Type().Eq("nd-neighbor-advert"), nftmodel.THRaw(64, nftmodel.KeyIPv6).Neq("fe80::/10"),
					nftmodel.Concat(nftmodel.Iifname(), nftmodel.THRaw(64, nftmodel.KeyIPv6)).NotInSet("v6"), nftmodel.Drop()}},
				{Comment: "types", Exprs: []nftmodel.Expr{nftmodel.EtherType().NotInSet("types"), nftmodel.Drop()}},
			}},
			{Name: "forward", Type: nftmodel.ChainTypeFilter, Hook: nftmodel.HookForward, Priority: 100, Policy: nftmodel.VerdictAccept, Rules: []nftmodel.Rule{
				{Comment: "out", Exprs: []nftmodel.Expr{nftmodel.VMap(nftmodel.Iifname(), "acl_out")}},
				{Comment: "in", Exprs: []nftmodel.Expr{nftmodel.VMap(nftmodel.Oifname(), "acl_in")}},
			}},
			{Name: "acl_a", Rules: []nftmodel.Rule{
				{Comment: "nd", Exprs: []nftmodel.Expr{nftmodel.ICMPv6Type().InAnon("nd-neighbor-solicit", "136", "nd-router-advert"), nftmodel.Return()}},
				{Comment: "web", Exprs: []nftmodel.Expr{nftmodel.L4Proto().InAnon("tcp", "17"), nftmodel.IPSaddr().InAnon("10.0.0.0/8", "192.168.1.5"),
					nftmodel.THDport().InAnon("8000-8080", "80"), nftmodel.Return()}},
				{Comment: "not these", Exprs: []nftmodel.Expr{nftmodel.IP6Daddr().NotInAnon("fd00::1", "fd00::/64"), nftmodel.Counter(), nftmodel.Drop()}},
				{Comment: "pairs", Exprs: []nftmodel.Expr{nftmodel.Concat(nftmodel.IPDaddr(), nftmodel.THDport()).InAnon("10.0.0.1 . 80", "10.0.0.2 . 443"), nftmodel.Accept()}},
				{Comment: "mac", Exprs: []nftmodel.Expr{nftmodel.EtherSaddr().Eq("02:00:00:00:00:01"), nftmodel.Counter(), nftmodel.Accept()}},
			}},
			{Name: "acl_b", Rules: []nftmodel.Rule{{Comment: "deny", Exprs: []nftmodel.Expr{nftmodel.Drop()}}}},
			{Name: "output", Type: nftmodel.ChainTypeFilter, Hook: nftmodel.HookOutput, Priority: nftmodel.PriorityBridgeFilter, Policy: nftmodel.VerdictDrop},
		},
	}
}

// NAT is an inet table with hostnet's published-port and outbound
// NAT maps.
func NAT() *nftmodel.Table {
	return &nftmodel.Table{
		Name: "hostnet",
		Maps: []*nftmodel.Map{
			{Name: "pm4", Key: []nftmodel.KeyType{nftmodel.KeyInetProto, nftmodel.KeyInetService}, Value: []nftmodel.KeyType{nftmodel.KeyIPv4, nftmodel.KeyInetService},
				Elements: map[string]string{"tcp . 8080": "10.0.0.2 . 80", "udp . 53": "10.0.0.3 . 5353"}},
			{Name: "pm6", Key: []nftmodel.KeyType{nftmodel.KeyInetProto, nftmodel.KeyInetService}, Value: []nftmodel.KeyType{nftmodel.KeyIPv6, nftmodel.KeyInetService},
				Elements: map[string]string{"6 . 8080": "fd00::2 . 80"}},
			{Name: "pm4_vip", Key: []nftmodel.KeyType{nftmodel.KeyIPv4, nftmodel.KeyInetProto, nftmodel.KeyInetService}, Value: []nftmodel.KeyType{nftmodel.KeyIPv4, nftmodel.KeyInetService},
				Elements: map[string]string{"192.168.1.10 . tcp . 443": "10.0.0.2 . 8443"}},
			{Name: "pm6_vip", Key: []nftmodel.KeyType{nftmodel.KeyIPv6, nftmodel.KeyInetProto, nftmodel.KeyInetService}, Value: []nftmodel.KeyType{nftmodel.KeyIPv6, nftmodel.KeyInetService},
				Elements: map[string]string{"2001:db8::10 . tcp . 443": "fd00::2 . 8443"}},
			{Name: "obnat4", Key: []nftmodel.KeyType{nftmodel.KeyIPv4}, Value: []nftmodel.KeyType{nftmodel.KeyIPv4}, Elements: map[string]string{"10.0.0.2": "192.168.1.10"}},
			{Name: "obnat6", Key: []nftmodel.KeyType{nftmodel.KeyIPv6}, Value: []nftmodel.KeyType{nftmodel.KeyIPv6}, Elements: map[string]string{"fd00::2": "2001:db8::10"}},
			{Name: "ranges", Key: []nftmodel.KeyType{nftmodel.KeyIPv4}, Value: []nftmodel.KeyType{nftmodel.KeyIPv4}, Interval: true,
				Elements: map[string]string{"10.1.0.0/16": "192.168.1.11", "10.2.0.1-10.2.0.9": "192.168.1.12"}},
			{Name: "fwd", Key: []nftmodel.KeyType{nftmodel.KeyIfname}, Verdict: true, Elements: map[string]string{"hnbr-1": "jump fwd_1"}},
		},
		Chains: []*nftmodel.Chain{
			{Name: "publish", Type: nftmodel.ChainTypeNAT, Hook: nftmodel.HookPrerouting, Priority: nftmodel.PriorityDstNAT, Rules: []nftmodel.Rule{
				{Comment: "vip4", Exprs: []nftmodel.Expr{nftmodel.FibDaddrTypeLocal(), nftmodel.DNATMap(nftmodel.Concat(nftmodel.IPDaddr(), nftmodel.L4Proto(), nftmodel.THDport()), "pm4_vip")}},
				{Comment: "any4", Exprs: []nftmodel.Expr{nftmodel.FibDaddrTypeLocal(), nftmodel.DNATMap(nftmodel.Concat(nftmodel.L4Proto(), nftmodel.THDport()), "pm4")}},
				{Comment: "vip6", Exprs: []nftmodel.Expr{nftmodel.FibDaddrTypeLocal(), nftmodel.DNATMap(nftmodel.Concat(nftmodel.IP6Daddr(), nftmodel.L4Proto(), nftmodel.THDport()), "pm6_vip")}},
				{Comment: "any6", Exprs: []nftmodel.Expr{nftmodel.FibDaddrTypeLocal(), nftmodel.DNATMap(nftmodel.Concat(nftmodel.L4Proto(), nftmodel.THDport()), "pm6")}},
			}},
			{Name: "forward", Type: nftmodel.ChainTypeFilter, Hook: nftmodel.HookForward, Priority: nftmodel.PriorityFilter, Policy: nftmodel.VerdictDrop, Rules: []nftmodel.Rule{
				{Comment: "published", Exprs: []nftmodel.Expr{nftmodel.CtStatus("dnat"), nftmodel.Accept()}},
				{Comment: "not local", Exprs: []nftmodel.Expr{nftmodel.FibMatch{Negate: true}, nftmodel.CtMatch{Key: nftmodel.CtKeyStatus, Bits: []string{"snat", "dnat"}, Negate: true}, nftmodel.VMap(nftmodel.Iifname(), "fwd")}},
			}},
			{Name: "fwd_1", Rules: []nftmodel.Rule{{Comment: "ok", Exprs: []nftmodel.Expr{nftmodel.Accept()}}}},
			{Name: "postrouting", Type: nftmodel.ChainTypeNAT, Hook: nftmodel.HookPostrouting, Priority: nftmodel.PrioritySrcNAT, Rules: []nftmodel.Rule{
				{Comment: "obnat4", Exprs: []nftmodel.Expr{nftmodel.Oifname().Neq("hnbr-1"), nftmodel.SNATMap(nftmodel.IPSaddr(), "obnat4")}},
				{Comment: "obnat6", Exprs: []nftmodel.Expr{nftmodel.SNATMap(nftmodel.IP6Saddr(), "obnat6")}},
				{Comment: "ranges", Exprs: []nftmodel.Expr{nftmodel.SNATMap(nftmodel.IPSaddr(), "ranges")}},
			}},
		},
	}
}

// Netdev is a netdev table of the kind hostnet puts on an uplink device:
// a flow table kept in dynamic sets stands in for conntrack (the netdev
// hooks have none). What leaves by dev (hook egress) records the tuple of
// its replies, TCP and UDP by ports, ICMP echo by its identifier (at
// offset 4 of the ICMP header, the same in a request and its reply);
// what comes in by dev (hook ingress) passes as a reply if its tuple is
// recorded, and every other IPv4 packet is dropped. Counters tell which
// rule judged: ingress rules 0 (TCP and UDP replies), 1 (echo replies), 2
// (the rest, dropped); IPv6 has the same rules after them.
func Netdev(dev string) *nftmodel.Table {
	tuple4 := []nftmodel.KeyType{nftmodel.KeyIPv4, nftmodel.KeyIPv4, nftmodel.KeyInetProto, nftmodel.KeyInetService, nftmodel.KeyInetService}
	tuple6 := []nftmodel.KeyType{nftmodel.KeyIPv6, nftmodel.KeyIPv6, nftmodel.KeyInetProto, nftmodel.KeyInetService, nftmodel.KeyInetService}
	echoID := nftmodel.THRaw(32, nftmodel.KeyInetService)
	ports := []string{"tcp", "udp"}
	return &nftmodel.Table{
		Family: nftmodel.FamilyNetdev,
		Name:   "hostnet",
		Sets: []*nftmodel.Set{
			{Name: "replies4", Key: tuple4, Dynamic: true, Timeout: 2 * time.Minute, Size: 4096, Comment: "replies to what left"},
			{Name: "replies6", Key: tuple6, Dynamic: true, Timeout: 2 * time.Minute, Size: 4096},
		},
		Chains: []*nftmodel.Chain{
			{Name: "egress", Type: nftmodel.ChainTypeFilter, Hook: nftmodel.HookEgress, Device: dev, Priority: nftmodel.PriorityFilter, Rules: []nftmodel.Rule{
				{Comment: "tcp and udp (IPv4)", Exprs: []nftmodel.Expr{nftmodel.L4Proto().InAnon(ports...),
					nftmodel.SetUpdate("replies4", nftmodel.Concat(nftmodel.IPDaddr(), nftmodel.IPSaddr(), nftmodel.L4Proto(), nftmodel.THDport(), nftmodel.THSport()), 0)}},
				{Comment: "echo (IPv4)", Exprs: []nftmodel.Expr{nftmodel.ICMPType().Eq("echo-request"),
					nftmodel.SetUpdate("replies4", nftmodel.Concat(nftmodel.IPDaddr(), nftmodel.IPSaddr(), nftmodel.L4Proto(), echoID, echoID), 30*time.Second)}},
				{Comment: "tcp and udp (IPv6)", Exprs: []nftmodel.Expr{nftmodel.L4Proto().InAnon(ports...),
					nftmodel.SetUpdate("replies6", nftmodel.Concat(nftmodel.IP6Daddr(), nftmodel.IP6Saddr(), nftmodel.L4Proto(), nftmodel.THDport(), nftmodel.THSport()), 0)}},
				{Comment: "echo (IPv6)", Exprs: []nftmodel.Expr{nftmodel.ICMPv6Type().Eq("echo-request"),
					nftmodel.SetUpdate("replies6", nftmodel.Concat(nftmodel.IP6Daddr(), nftmodel.IP6Saddr(), nftmodel.L4Proto(), echoID, echoID), 30*time.Second)}},
			}},
			{Name: "ingress", Type: nftmodel.ChainTypeFilter, Hook: nftmodel.HookIngress, Device: dev, Priority: nftmodel.PriorityFilter, Rules: []nftmodel.Rule{
				{Comment: "tcp and udp replies (IPv4)", Exprs: []nftmodel.Expr{nftmodel.L4Proto().InAnon(ports...),
					nftmodel.Concat(nftmodel.IPSaddr(), nftmodel.IPDaddr(), nftmodel.L4Proto(), nftmodel.THSport(), nftmodel.THDport()).InSet("replies4"), nftmodel.Counter(), nftmodel.Accept()}},
				{Comment: "echo replies (IPv4)", Exprs: []nftmodel.Expr{nftmodel.ICMPType().Eq("echo-reply"),
					nftmodel.Concat(nftmodel.IPSaddr(), nftmodel.IPDaddr(), nftmodel.L4Proto(), echoID, echoID).InSet("replies4"), nftmodel.Counter(), nftmodel.Accept()}},
				{Comment: "the rest (IPv4)", Exprs: []nftmodel.Expr{nftmodel.EtherType().Eq("ip"), nftmodel.Counter(), nftmodel.Drop()}},
				{Comment: "tcp and udp replies (IPv6)", Exprs: []nftmodel.Expr{nftmodel.L4Proto().InAnon(ports...),
					nftmodel.Concat(nftmodel.IP6Saddr(), nftmodel.IP6Daddr(), nftmodel.L4Proto(), nftmodel.THSport(), nftmodel.THDport()).InSet("replies6"), nftmodel.Counter(), nftmodel.Accept()}},
				{Comment: "echo replies (IPv6)", Exprs: []nftmodel.Expr{nftmodel.ICMPv6Type().Eq("echo-reply"),
					nftmodel.Concat(nftmodel.IP6Saddr(), nftmodel.IP6Daddr(), nftmodel.L4Proto(), echoID, echoID).InSet("replies6"), nftmodel.Counter(), nftmodel.Accept()}},
			}},
		},
	}
}

// PatchBase is the inet table the patch tests start from: a set of each
// kind, a data map with concatenated keys and values, a verdict map, and
// a regular chain that map elements and rules jump to.
func PatchBase() *nftmodel.Table {
	return &nftmodel.Table{
		Name: "hostnet",
		Sets: []*nftmodel.Set{
			{Name: "ports", Key: []nftmodel.KeyType{nftmodel.KeyIfname}, Elements: []string{"hnv0"}},
			{Name: "pairs", Key: []nftmodel.KeyType{nftmodel.KeyIfname, nftmodel.KeyIfname}},
			{Name: "nets", Key: []nftmodel.KeyType{nftmodel.KeyIPv4}, Interval: true, Elements: []string{"10.0.0.0/24"}},
			{Name: "svc", Key: []nftmodel.KeyType{nftmodel.KeyIPv4, nftmodel.KeyInetService}, Interval: true},
		},
		Maps: []*nftmodel.Map{
			{Name: "pm4", Key: []nftmodel.KeyType{nftmodel.KeyInetProto, nftmodel.KeyInetService}, Value: []nftmodel.KeyType{nftmodel.KeyIPv4, nftmodel.KeyInetService},
				Elements: map[string]string{"udp . 53": "10.0.0.3 . 5353"}},
			{Name: "acl", Key: []nftmodel.KeyType{nftmodel.KeyIPv4}, Verdict: true, Elements: map[string]string{"10.0.0.3": "jump acl_default"}},
			{Name: "snat", Key: []nftmodel.KeyType{nftmodel.KeyIPv4}, Value: []nftmodel.KeyType{nftmodel.KeyIPv4}, Elements: map[string]string{}},
		},
		Chains: []*nftmodel.Chain{
			{Name: "forward", Type: nftmodel.ChainTypeFilter, Hook: nftmodel.HookForward, Priority: nftmodel.PriorityFilter, Rules: []nftmodel.Rule{
				{Comment: "acl", Exprs: []nftmodel.Expr{nftmodel.VMap(nftmodel.IPDaddr(), "acl")}},
				{Comment: "pairs", Exprs: []nftmodel.Expr{nftmodel.Concat(nftmodel.Iifname(), nftmodel.Oifname()).InSet("pairs"), nftmodel.Accept()}},
				{Comment: "svc", Exprs: []nftmodel.Expr{nftmodel.Concat(nftmodel.IPDaddr(), nftmodel.THDport()).InSet("svc"), nftmodel.Accept()}},
				{Comment: "ports", Exprs: []nftmodel.Expr{nftmodel.Iifname().InSet("ports"), nftmodel.Drop()}},
			}},
			{Name: "publish", Type: nftmodel.ChainTypeNAT, Hook: nftmodel.HookPrerouting, Priority: nftmodel.PriorityDstNAT, Rules: []nftmodel.Rule{
				{Comment: "ports", Exprs: []nftmodel.Expr{nftmodel.FibDaddrTypeLocal(), nftmodel.DNATMap(nftmodel.Concat(nftmodel.L4Proto(), nftmodel.THDport()), "pm4")}},
			}},
			{Name: "postrouting", Type: nftmodel.ChainTypeNAT, Hook: nftmodel.HookPostrouting, Priority: nftmodel.PrioritySrcNAT, Rules: []nftmodel.Rule{
				{Comment: "snat", Exprs: []nftmodel.Expr{nftmodel.IPSaddr().InSet("nets"), nftmodel.SNATMap(nftmodel.IPSaddr(), "snat")}},
			}},
			{Name: "acl_default", Rules: []nftmodel.Rule{
				{Comment: "web", Exprs: []nftmodel.Expr{nftmodel.L4Proto().Eq("tcp"), nftmodel.THDport().Eq("80"), nftmodel.Accept()}},
				{Comment: "deny", Exprs: []nftmodel.Expr{nftmodel.Counter(), nftmodel.Drop()}},
			}},
		},
	}
}

// PatchStep is a change made both ways: as patches, and on the full table
// that the patched table must then equal.
type PatchStep struct {
	Name    string
	Patches []nftmodel.TablePatch
	Full    func(inet, bridge *nftmodel.Table) // the same change on the full tables
	Ops     []string                           // the batch sent
}

// AddTo adds elements to a set of t.
func AddTo(t *nftmodel.Table, set string, els ...string) {
	SetOf(t, set).Elements = append(SetOf(t, set).Elements, els...)
}

// RemoveFrom removes elements from a set of t.
func RemoveFrom(t *nftmodel.Table, set string, els ...string) {
	s := SetOf(t, set)
	var keep []string
	for _, e := range s.Elements {
		if !slices.Contains(els, e) {
			keep = append(keep, e)
		}
	}
	s.Elements = keep
}

// MapOf returns the map name of t; it panics when there is none.
func MapOf(t *nftmodel.Table, name string) *nftmodel.Map {
	for _, m := range t.Maps {
		if m.Name == name {
			return m
		}
	}
	panic(name)
}

// Put sets keys to values (kv alternates them) in map m of t.
func Put(t *nftmodel.Table, m string, kv ...string) {
	for i := 0; i < len(kv); i += 2 {
		MapOf(t, m).Elements[kv[i]] = kv[i+1]
	}
}

// Endpoint1Chain is the chain of the first endpoint of PatchSteps.
func Endpoint1Chain() *nftmodel.Chain {
	return &nftmodel.Chain{Name: "acl_e1", Rules: []nftmodel.Rule{
		{Comment: "ssh", Exprs: []nftmodel.Expr{nftmodel.L4Proto().Eq("tcp"), nftmodel.THDport().Eq("22"), nftmodel.Accept()}},
		{Comment: "rest", Exprs: []nftmodel.Expr{nftmodel.Jump("acl_default")}},
	}}
}

// PatchSteps is the scenario both appliers go through.
func PatchSteps() []PatchStep {
	return []PatchStep{{
		Name: "add an endpoint: its chain, set elements, map elements jumping to the chain",
		Patches: []nftmodel.TablePatch{{Table: "hostnet",
			AddChains: []*nftmodel.Chain{Endpoint1Chain()},
			AddElements: map[string][]string{"ports": {"hnv1"}, "pairs": {"hnv1 . hnbr0"}, "nets": {"10.1.0.0/24"},
				"svc": {"10.0.0.1 . 80-90"}},
			SetMapElements: map[string]map[string]string{"acl": {"10.0.0.1": "jump acl_e1"},
				"pm4": {"tcp . 8080": "10.0.0.1 . 80"}, "snat": {"10.0.0.1": "192.168.0.1"}},
		}},
		Full: func(t, _ *nftmodel.Table) {
			t.Chains = append(t.Chains, Endpoint1Chain())
			AddTo(t, "ports", "hnv1")
			AddTo(t, "pairs", "hnv1 . hnbr0")
			AddTo(t, "nets", "10.1.0.0/24")
			AddTo(t, "svc", "10.0.0.1 . 80-90")
			Put(t, "acl", "10.0.0.1", "jump acl_e1")
			Put(t, "pm4", "tcp . 8080", "10.0.0.1 . 80")
			Put(t, "snat", "10.0.0.1", "192.168.0.1")
		},
		Ops: []string{"add chain acl_e1",
			"add 1 elements to set nets", "add 1 elements to set pairs", "add 1 elements to set ports", "add 1 elements to set svc",
			"add 1 elements to map acl", "add 1 elements to map pm4", "add 1 elements to map snat",
			"add 2 rules to chain acl_e1"},
	}, {
		Name: "repeat in other spellings, remove absent elements: nothing",
		Patches: []nftmodel.TablePatch{{Table: "hostnet",
			AddElements:       map[string][]string{"ports": {`"hnv1"`, "hnv1"}, "nets": {"10.1.0.0-10.1.0.255"}, "svc": {"10.0.0.1 . 80-90"}},
			DeleteElements:    map[string][]string{"ports": {"hnv9"}, "nets": {"10.1.0.0/25"}},
			SetMapElements:    map[string]map[string]string{"acl": {"10.0.0.1": "jump  acl_e1"}, "pm4": {"6 . 8080": "10.0.0.1 . 80"}},
			DeleteMapElements: map[string][]string{"snat": {"10.9.9.9"}},
		}},
		Full: func(_, _ *nftmodel.Table) {},
		Ops:  []string{},
	}, {
		Name: "update map values",
		Patches: []nftmodel.TablePatch{{Table: "hostnet",
			SetMapElements: map[string]map[string]string{"pm4": {"tcp . 8080": "10.0.0.2 . 8080"},
				"snat": {"10.0.0.1": "192.168.0.2"}, "acl": {"10.0.0.3": "accept"}},
		}},
		Full: func(t, _ *nftmodel.Table) {
			Put(t, "pm4", "tcp . 8080", "10.0.0.2 . 8080")
			Put(t, "snat", "10.0.0.1", "192.168.0.2")
			Put(t, "acl", "10.0.0.3", "accept")
		},
		Ops: []string{"delete 1 elements from map acl", "delete 1 elements from map pm4", "delete 1 elements from map snat",
			"add 1 elements to map acl", "add 1 elements to map pm4", "add 1 elements to map snat"},
	}, {
		Name: "two new chains, one jumping to the other, listed in reverse",
		Patches: []nftmodel.TablePatch{{Table: "hostnet",
			AddChains: []*nftmodel.Chain{
				{Name: "acl_e2", Rules: []nftmodel.Rule{{Comment: "on", Exprs: []nftmodel.Expr{nftmodel.Jump("acl_e2b")}}}},
				{Name: "acl_e2b", Rules: []nftmodel.Rule{{Comment: "ok", Exprs: []nftmodel.Expr{nftmodel.Counter(), nftmodel.Accept()}}}},
			},
			SetMapElements: map[string]map[string]string{"acl": {"10.0.0.2": "goto acl_e2"}},
		}},
		Full: func(t, _ *nftmodel.Table) {
			t.Chains = append(t.Chains,
				&nftmodel.Chain{Name: "acl_e2", Rules: []nftmodel.Rule{{Comment: "on", Exprs: []nftmodel.Expr{nftmodel.Jump("acl_e2b")}}}},
				&nftmodel.Chain{Name: "acl_e2b", Rules: []nftmodel.Rule{{Comment: "ok", Exprs: []nftmodel.Expr{nftmodel.Counter(), nftmodel.Accept()}}}})
			Put(t, "acl", "10.0.0.2", "goto acl_e2")
		},
		Ops: []string{"add chain acl_e2", "add chain acl_e2b", "add 1 elements to map acl",
			"add 1 rules to chain acl_e2", "add 1 rules to chain acl_e2b"},
	}, {
		Name: "replace a referenced chain (in AddChains and DeleteChains)",
		Patches: []nftmodel.TablePatch{{Table: "hostnet",
			AddChains:    []*nftmodel.Chain{{Name: "acl_default", Rules: []nftmodel.Rule{{Comment: "all", Exprs: []nftmodel.Expr{nftmodel.Counter(), nftmodel.Accept()}}}}},
			DeleteChains: []string{"acl_default"},
		}},
		Full: func(t, _ *nftmodel.Table) {
			ChainOf(t, "acl_default").Rules = []nftmodel.Rule{{Comment: "all", Exprs: []nftmodel.Expr{nftmodel.Counter(), nftmodel.Accept()}}}
		},
		Ops: []string{"flush chain acl_default", "add 1 rules to chain acl_default"},
	}, {
		Name: "remove the first endpoint: its chain goes with its last reference",
		Patches: []nftmodel.TablePatch{{Table: "hostnet",
			DeleteChains: []string{"acl_e1"},
			DeleteElements: map[string][]string{"ports": {"hnv1"}, "pairs": {"hnv1 . hnbr0"}, "nets": {"10.1.0.0/24"},
				"svc": {"10.0.0.1 . 80-90"}},
			DeleteMapElements: map[string][]string{"acl": {"10.0.0.1"}, "pm4": {"tcp . 8080"}, "snat": {"10.0.0.1"}},
		}},
		Full: func(t, _ *nftmodel.Table) {
			t.Chains = WithoutChain(t.Chains, "acl_e1")
			RemoveFrom(t, "ports", "hnv1")
			RemoveFrom(t, "pairs", "hnv1 . hnbr0")
			RemoveFrom(t, "nets", "10.1.0.0/24")
			RemoveFrom(t, "svc", "10.0.0.1 . 80-90")
			delete(MapOf(t, "acl").Elements, "10.0.0.1")
			delete(MapOf(t, "pm4").Elements, "tcp . 8080")
			delete(MapOf(t, "snat").Elements, "10.0.0.1")
		},
		Ops: []string{"flush chain acl_e1",
			"delete 1 elements from map acl", "delete 1 elements from map pm4", "delete 1 elements from map snat",
			"delete 1 elements from set nets", "delete 1 elements from set pairs", "delete 1 elements from set ports",
			"delete 1 elements from set svc", "delete chain acl_e1"},
	}, {
		Name: "both tables in one batch",
		Patches: []nftmodel.TablePatch{
			{Table: "hostnet", AddElements: map[string][]string{"ports": {"hnv5"}}},
			{Family: nftmodel.FamilyBridge, Table: "hostnet", AddElements: map[string][]string{"ports": {"hnv5"}, "macs": {"hnv5 . 02:00:00:00:00:05"}},
				SetMapElements: map[string]map[string]string{"acl_in": {"hnv5": "jump acl_b"}}},
			{Table: "hostnet"}, // empty: ignored
		},
		Full: func(t, b *nftmodel.Table) {
			AddTo(t, "ports", "hnv5")
			AddTo(b, "ports", "hnv5")
			AddTo(b, "macs", "hnv5 . 02:00:00:00:00:05")
			Put(b, "acl_in", "hnv5", "jump acl_b")
		},
		Ops: []string{"inet hostnet: add 1 elements to set ports",
			"bridge hostnet: add 1 elements to set macs", "bridge hostnet: add 1 elements to set ports",
			"bridge hostnet: add 1 elements to map acl_in"},
	}, {
		Name: "remove two chains that jump to each other, and the element that reaches them",
		Patches: []nftmodel.TablePatch{{Table: "hostnet",
			DeleteChains:      []string{"acl_e2b", "acl_e2"},
			DeleteMapElements: map[string][]string{"acl": {"10.0.0.2"}},
		}},
		Full: func(t, _ *nftmodel.Table) {
			t.Chains = WithoutChain(WithoutChain(t.Chains, "acl_e2"), "acl_e2b")
			delete(MapOf(t, "acl").Elements, "10.0.0.2")
		},
		Ops: []string{"flush chain acl_e2b", "flush chain acl_e2", "delete 1 elements from map acl",
			"delete chain acl_e2b", "delete chain acl_e2"},
	}, {
		Name: "two patches of one table in one call: the second sees the first",
		Patches: []nftmodel.TablePatch{
			{Table: "hostnet", AddChains: []*nftmodel.Chain{{Name: "acl_e3", Rules: []nftmodel.Rule{{Exprs: []nftmodel.Expr{nftmodel.Drop()}}}}},
				AddElements: map[string][]string{"ports": {"hnv3"}}},
			{Table: "hostnet", SetMapElements: map[string]map[string]string{"acl": {"10.0.0.4": "jump acl_e3"}},
				DeleteElements: map[string][]string{"ports": {"hnv3"}}},
		},
		Full: func(t, _ *nftmodel.Table) {
			t.Chains = append(t.Chains, &nftmodel.Chain{Name: "acl_e3", Rules: []nftmodel.Rule{{Exprs: []nftmodel.Expr{nftmodel.Drop()}}}})
			Put(t, "acl", "10.0.0.4", "jump acl_e3")
		},
		Ops: []string{"add chain acl_e3", "add 1 elements to set ports", "add 1 rules to chain acl_e3",
			"delete 1 elements from set ports", "add 1 elements to map acl"},
	}}
}

// Refusal is a patch that must be refused without changing anything.
type Refusal struct {
	Name    string
	Patches []nftmodel.TablePatch
	Err     string // a part of the error
}

// Refusals run after the first step of PatchSteps.
func Refusals() []Refusal {
	in := func(p nftmodel.TablePatch) []nftmodel.TablePatch {
		p.Table = "hostnet"
		return []nftmodel.TablePatch{p}
	}
	return []Refusal{
		{"unknown table", []nftmodel.TablePatch{{Table: "nope", AddElements: map[string][]string{"ports": {"x"}}}}, "table nope does not exist"},
		{"invalid family", []nftmodel.TablePatch{{Family: 7, Table: "hostnet", AddElements: map[string][]string{"ports": {"x"}}}}, "invalid family"},
		{"unknown set", in(nftmodel.TablePatch{AddElements: map[string][]string{"nope": {"x"}}}), `patch 0 (table hostnet): unknown set "nope"`},
		{"a map as a set", in(nftmodel.TablePatch{DeleteElements: map[string][]string{"acl": {"10.0.0.1"}}}), `"acl" is a map, not a set`},
		{"unknown map", in(nftmodel.TablePatch{DeleteMapElements: map[string][]string{"ports": {"x"}}}), `"ports" is a set, not a map`},
		{"bad element", in(nftmodel.TablePatch{AddElements: map[string][]string{"nets": {"10.0.0.300"}}}), `set nets: element "10.0.0.300"`},
		{"bad key", in(nftmodel.TablePatch{SetMapElements: map[string]map[string]string{"pm4": {"tcp": "10.0.0.1 . 80"}}}), `map pm4: element "tcp" has 1 fields`},
		{"bad value", in(nftmodel.TablePatch{SetMapElements: map[string]map[string]string{"pm4": {"tcp . 1": "10.0.0.1"}}}), `map pm4: element "tcp . 1": value`},
		{"wildcard in a set", in(nftmodel.TablePatch{AddElements: map[string][]string{"ports": {"hnv*"}}}), `set ports: element "hnv*": invalid interface name`},
		{"overlap", in(nftmodel.TablePatch{AddElements: map[string][]string{"nets": {"10.0.0.128/25"}}}), `element "10.0.0.128/25" overlaps "10.0.0.0/24"`},
		{"duplicate map key", in(nftmodel.TablePatch{SetMapElements: map[string]map[string]string{"acl": {"10.0.0.9": "drop", "10.0.0.9/32": "accept"}}}), `map acl: duplicate key "10.0.0.9/32" (also "10.0.0.9")`},
		{"jump to an unknown chain", in(nftmodel.TablePatch{SetMapElements: map[string]map[string]string{"acl": {"10.0.0.9": "jump nope"}}}), `unknown chain "nope"`},
		{"jump to a base chain", in(nftmodel.TablePatch{SetMapElements: map[string]map[string]string{"acl": {"10.0.0.9": "jump forward"}}}), "is a base chain"},
		{"jump to a chain the patch deletes", in(nftmodel.TablePatch{DeleteChains: []string{"acl_e1"}, DeleteMapElements: map[string][]string{"acl": {"10.0.0.1"}},
			SetMapElements: map[string]map[string]string{"acl": {"10.0.0.9": "jump acl_e1"}}}), "cannot delete chain acl_e1: still referenced after the patch (by element 10.0.0.9 of map acl)"},
		{"delete a chain rules and elements reference", in(nftmodel.TablePatch{DeleteChains: []string{"acl_default"}}),
			"cannot delete chain acl_default: still referenced after the patch (by rule 1 of chain acl_e1, element 10.0.0.3 of map acl)"},
		{"delete a chain an element references", in(nftmodel.TablePatch{DeleteChains: []string{"acl_e1"}}), "(by element 10.0.0.1 of map acl)"},
		{"delete a base chain", in(nftmodel.TablePatch{DeleteChains: []string{"forward"}}), "cannot delete chain forward: a patch deletes regular chains only"},
		{"delete an absent chain", in(nftmodel.TablePatch{DeleteChains: []string{"nope"}}), "cannot delete chain nope: no such chain"},
		{"delete a chain twice", in(nftmodel.TablePatch{DeleteChains: []string{"acl_e1", "acl_e1"}, DeleteMapElements: map[string][]string{"acl": {"10.0.0.1"}}}), "listed twice"},
		{"add an existing chain", in(nftmodel.TablePatch{AddChains: []*nftmodel.Chain{Endpoint1Chain()}}), "chain acl_e1 already exists"},
		{"add a base chain", in(nftmodel.TablePatch{AddChains: []*nftmodel.Chain{{Name: "in", Type: nftmodel.ChainTypeFilter, Hook: nftmodel.HookInput}}}), "a patch adds regular chains only"},
		{"add a chain with a bad rule", in(nftmodel.TablePatch{AddChains: []*nftmodel.Chain{{Name: "x", Rules: []nftmodel.Rule{{Comment: "r", Exprs: []nftmodel.Expr{nftmodel.IPSaddr().InSet("zzz"), nftmodel.Accept()}}}}}}),
			`chain x: rule 0 ("r"): ip saddr @zzz: unknown set "zzz"`},
		{"add a chain jumping to itself", in(nftmodel.TablePatch{AddChains: []*nftmodel.Chain{{Name: "x", Rules: []nftmodel.Rule{{Exprs: []nftmodel.Expr{nftmodel.Jump("x")}}}}}}), "jumps to itself"},
		{"add a chain with an invalid name", in(nftmodel.TablePatch{AddChains: []*nftmodel.Chain{{Name: "a b"}}}), `invalid chain name "a b"`},
		{"valid changes, then a bad element of a later set", in(nftmodel.TablePatch{
			AddChains:      []*nftmodel.Chain{{Name: "acl_x", Rules: []nftmodel.Rule{{Exprs: []nftmodel.Expr{nftmodel.Accept()}}}}},
			SetMapElements: map[string]map[string]string{"acl": {"10.0.0.7": "jump acl_x", "10.0.0.1": "drop"}},
			DeleteElements: map[string][]string{"ports": {"hnv1"}},
			AddElements:    map[string][]string{"nets": {"10.9.0.0/24"}, "ports": {"bad name"}}}), `set ports: element "bad name"`},
		{"a valid patch, then a refused one", []nftmodel.TablePatch{
			{Table: "hostnet", AddElements: map[string][]string{"ports": {"hnv7"}}, DeleteChains: []string{"acl_e1"},
				DeleteMapElements: map[string][]string{"acl": {"10.0.0.1"}}},
			{Table: "hostnet", AddElements: map[string][]string{"svc": {"10.0.0.1"}}},
		}, `patch 1 (table hostnet): set svc: element "10.0.0.1" has 1 fields`},
	}
}

// SetOf returns the set name of t; it panics when there is none.
func SetOf(t *nftmodel.Table, name string) *nftmodel.Set {
	for _, s := range t.Sets {
		if s.Name == name {
			return s
		}
	}
	panic(name)
}

// ChainOf returns the chain name of t; it panics when there is none.
func ChainOf(t *nftmodel.Table, name string) *nftmodel.Chain {
	for _, c := range t.Chains {
		if c.Name == name {
			return c
		}
	}
	panic(name)
}

// OneRule is a table "t" of family with one chain "c" (a base chain
// when hook is set) holding one rule of exprs.
func OneRule(family nftmodel.Family, typ nftmodel.ChainType, hook nftmodel.Hook, exprs ...nftmodel.Expr) *nftmodel.Table {
	return &nftmodel.Table{Family: family, Name: "t", Chains: []*nftmodel.Chain{{Name: "c", Type: typ, Hook: hook, Rules: []nftmodel.Rule{{Exprs: exprs}}}}}
}

// WithoutChain returns cs without the chain name.
func WithoutChain(cs []*nftmodel.Chain, name string) []*nftmodel.Chain {
	return slices.DeleteFunc(slices.Clone(cs), func(c *nftmodel.Chain) bool { return c.Name == name })
}

// WithoutMap returns ms without the map name.
func WithoutMap(ms []*nftmodel.Map, name string) []*nftmodel.Map {
	return slices.DeleteFunc(slices.Clone(ms), func(m *nftmodel.Map) bool { return m.Name == name })
}

// Compile compiles tbl, failing the test if it does not.
func Compile(t testing.TB, tbl *nftmodel.Table) *nftmodel.State {
	t.Helper()
	st, err := nftmodel.Compile(tbl)
	if err != nil {
		t.Fatal(err)
	}
	return st
}

// ChainDef is the definition of chain name of tbl as an applier creates
// it.
func ChainDef(t testing.TB, tbl *nftmodel.Table, name string) *nftmodel.ChainDef {
	t.Helper()
	b := &nftmodel.Batch{}
	if err := b.Plan(Compile(t, tbl), nil); err != nil {
		t.Fatal(err)
	}
	for _, s := range b.Steps {
		if s.Kind == nftmodel.StepAddChain && s.Name == name {
			return s.Chain
		}
	}
	t.Fatalf("no chain %s", name)
	return nil
}
