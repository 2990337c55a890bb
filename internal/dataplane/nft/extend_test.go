package nft

import (
	"encoding/binary"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/google/nftables"
	"github.com/google/nftables/expr"
	"github.com/mdlayher/netlink"
	"golang.org/x/sys/unix"
)

// bridgeSample is a bridge table of the kind hostnet builds for a
// network's ports: anti-spoofing, verdict maps to per-endpoint chains.
func bridgeSample() *Table {
	return &Table{
		Family: FamilyBridge,
		Name:   "hostnet",
		Sets: []*Set{
			{Name: "ports", Key: []KeyType{KeyIfname}, Elements: []string{"hnv2", "hnv1"}},
			{Name: "macs", Key: []KeyType{KeyIfname, KeyEther}, Elements: []string{"hnv1 . 02:00:00:00:00:01", "hnv2 . 02:00:00:00:00:AB"}},
			{Name: "v4", Key: []KeyType{KeyIfname, KeyIPv4}, Elements: []string{"hnv1 . 10.0.0.1"}},
			{Name: "v6", Key: []KeyType{KeyIfname, KeyIPv6}, Elements: []string{"hnv1 . fd00::1"}},
			{Name: "types", Key: []KeyType{KeyEtherType}, Elements: []string{"ip6", "0x0800", "arp"}},
		},
		Maps: []*Map{
			{Name: "acl_in", Key: []KeyType{KeyIfname}, Verdict: true, Elements: map[string]string{"hnv2": "jump acl_b", "hnv1": "jump  acl_a", "hnv3": "drop"}},
			{Name: "acl_out", Key: []KeyType{KeyIfname}, Verdict: true, Elements: map[string]string{"hnv1": "goto acl_a", "hnv2": "accept", "hnv9": "return"}},
		},
		Chains: []*Chain{
			{Name: "prerouting", Type: ChainTypeFilter, Hook: HookPrerouting, Priority: -300, Rules: []Rule{
				{Comment: "ports", Exprs: []Expr{Iifname().InSet("ports"), Jump("antispoof")}},
			}},
			{Name: "antispoof", Rules: []Rule{
				{Comment: "mac", Exprs: []Expr{Concat(Iifname(), EtherSaddr()).NotInSet("macs"), Drop()}},
				{Comment: "arp mac", Exprs: []Expr{EtherType().Eq("arp"), Concat(Iifname(), ArpSaddrEther()).NotInSet("macs"), Drop()}},
				{Comment: "arp ip", Exprs: []Expr{Concat(Iifname(), ArpSaddrIP()).NotInSet("v4"), Drop()}},
				{Comment: "v4", Exprs: []Expr{Concat(Iifname(), IPSaddr()).NotInSet("v4"), Drop()}},
				{Comment: "v6", Exprs: []Expr{IP6Saddr().Neq("fe80::/10"), Concat(Iifname(), IP6Saddr()).NotInSet("v6"), Drop()}},
				{Comment: "nd", Exprs: []Expr{ICMPv6Type().Eq("nd-neighbor-advert"), THRaw(64, KeyIPv6).Neq("fe80::/10"),
					Concat(Iifname(), THRaw(64, KeyIPv6)).NotInSet("v6"), Drop()}},
				{Comment: "types", Exprs: []Expr{EtherType().NotInSet("types"), Drop()}},
			}},
			{Name: "forward", Type: ChainTypeFilter, Hook: HookForward, Priority: 100, Policy: VerdictAccept, Rules: []Rule{
				{Comment: "out", Exprs: []Expr{VMap(Iifname(), "acl_out")}},
				{Comment: "in", Exprs: []Expr{VMap(Oifname(), "acl_in")}},
			}},
			{Name: "acl_a", Rules: []Rule{
				{Comment: "nd", Exprs: []Expr{ICMPv6Type().InAnon("nd-neighbor-solicit", "136", "nd-router-advert"), Return()}},
				{Comment: "web", Exprs: []Expr{L4Proto().InAnon("tcp", "17"), IPSaddr().InAnon("10.0.0.0/8", "192.168.1.5"),
					THDport().InAnon("8000-8080", "80"), Return()}},
				{Comment: "not these", Exprs: []Expr{IP6Daddr().NotInAnon("fd00::1", "fd00::/64"), Counter(), Drop()}},
				{Comment: "pairs", Exprs: []Expr{Concat(IPDaddr(), THDport()).InAnon("10.0.0.1 . 80", "10.0.0.2 . 443"), Accept()}},
				{Comment: "mac", Exprs: []Expr{EtherSaddr().Eq("02:00:00:00:00:01"), Counter(), Accept()}},
			}},
			{Name: "acl_b", Rules: []Rule{{Comment: "deny", Exprs: []Expr{Drop()}}}},
			{Name: "output", Type: ChainTypeFilter, Hook: HookOutput, Priority: PriorityBridgeFilter, Policy: VerdictDrop},
		},
	}
}

// natSample is an inet table with hostnet's published-port and outbound
// NAT maps.
func natSample() *Table {
	return &Table{
		Name: "hostnet",
		Maps: []*Map{
			{Name: "pm4", Key: []KeyType{KeyInetProto, KeyInetService}, Value: []KeyType{KeyIPv4, KeyInetService},
				Elements: map[string]string{"tcp . 8080": "10.0.0.2 . 80", "udp . 53": "10.0.0.3 . 5353"}},
			{Name: "pm6", Key: []KeyType{KeyInetProto, KeyInetService}, Value: []KeyType{KeyIPv6, KeyInetService},
				Elements: map[string]string{"6 . 8080": "fd00::2 . 80"}},
			{Name: "pm4_vip", Key: []KeyType{KeyIPv4, KeyInetProto, KeyInetService}, Value: []KeyType{KeyIPv4, KeyInetService},
				Elements: map[string]string{"192.168.1.10 . tcp . 443": "10.0.0.2 . 8443"}},
			{Name: "pm6_vip", Key: []KeyType{KeyIPv6, KeyInetProto, KeyInetService}, Value: []KeyType{KeyIPv6, KeyInetService},
				Elements: map[string]string{"2001:db8::10 . tcp . 443": "fd00::2 . 8443"}},
			{Name: "obnat4", Key: []KeyType{KeyIPv4}, Value: []KeyType{KeyIPv4}, Elements: map[string]string{"10.0.0.2": "192.168.1.10"}},
			{Name: "obnat6", Key: []KeyType{KeyIPv6}, Value: []KeyType{KeyIPv6}, Elements: map[string]string{"fd00::2": "2001:db8::10"}},
			{Name: "ranges", Key: []KeyType{KeyIPv4}, Value: []KeyType{KeyIPv4}, Interval: true,
				Elements: map[string]string{"10.1.0.0/16": "192.168.1.11", "10.2.0.1-10.2.0.9": "192.168.1.12"}},
			{Name: "fwd", Key: []KeyType{KeyIfname}, Verdict: true, Elements: map[string]string{"hnbr-1": "jump fwd_1"}},
		},
		Chains: []*Chain{
			{Name: "publish", Type: ChainTypeNAT, Hook: HookPrerouting, Priority: PriorityDstNAT, Rules: []Rule{
				{Comment: "vip4", Exprs: []Expr{FibDaddrTypeLocal(), DNATMap(Concat(IPDaddr(), L4Proto(), THDport()), "pm4_vip")}},
				{Comment: "any4", Exprs: []Expr{FibDaddrTypeLocal(), DNATMap(Concat(L4Proto(), THDport()), "pm4")}},
				{Comment: "vip6", Exprs: []Expr{FibDaddrTypeLocal(), DNATMap(Concat(IP6Daddr(), L4Proto(), THDport()), "pm6_vip")}},
				{Comment: "any6", Exprs: []Expr{FibDaddrTypeLocal(), DNATMap(Concat(L4Proto(), THDport()), "pm6")}},
			}},
			{Name: "forward", Type: ChainTypeFilter, Hook: HookForward, Priority: PriorityFilter, Policy: VerdictDrop, Rules: []Rule{
				{Comment: "published", Exprs: []Expr{CtStatus("dnat"), Accept()}},
				{Comment: "not local", Exprs: []Expr{FibMatch{Negate: true}, CtStatusMatch{Flags: []string{"snat", "dnat"}, Negate: true}, VMap(Iifname(), "fwd")}},
			}},
			{Name: "fwd_1", Rules: []Rule{{Comment: "ok", Exprs: []Expr{Accept()}}}},
			{Name: "postrouting", Type: ChainTypeNAT, Hook: HookPostrouting, Priority: PrioritySrcNAT, Rules: []Rule{
				{Comment: "obnat4", Exprs: []Expr{Oifname().Neq("hnbr-1"), SNATMap(IPSaddr(), "obnat4")}},
				{Comment: "obnat6", Exprs: []Expr{SNATMap(IP6Saddr(), "obnat6")}},
				{Comment: "ranges", Exprs: []Expr{SNATMap(IPSaddr(), "ranges")}},
			}},
		},
	}
}

func golden(t *testing.T, name, got string) {
	t.Helper()
	path := filepath.Join("testdata", name)
	if *update {
		if err := os.WriteFile(path, []byte(got), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run with -update to create it)", err)
	}
	if got != string(want) {
		t.Errorf("String() differs from %s (run with -update to accept):\n%s", path, got)
	}
}

func TestGoldenBridgeAndMaps(t *testing.T) {
	for _, tc := range []struct {
		file string
		tbl  func() *Table
	}{{"bridge.nft", bridgeSample}, {"maps.nft", natSample}} {
		tbl := tc.tbl()
		if err := tbl.Validate(); err != nil {
			t.Fatalf("%s: %v", tc.file, err)
		}
		golden(t, tc.file, tbl.String())
		if tbl.Clone().String() != tbl.String() {
			t.Errorf("%s: clone renders differently", tc.file)
		}
	}
}

func TestNewExprStrings(t *testing.T) {
	for _, tc := range []struct {
		e    Expr
		want string
	}{
		{EtherSaddr().Eq("02:00:00:00:00:AB"), "ether saddr 02:00:00:00:00:ab"},
		{EtherType().Eq("0x0800"), "ether type ip"},
		{EtherType().Neq("0x88cc"), "ether type != 0x88cc"},
		{ArpSaddrEther().InSet("m"), "arp saddr ether @m"},
		{ArpSaddrIP().Eq("10.0.0.1"), "arp saddr ip 10.0.0.1"},
		{ICMPv6Type().Eq("136"), "icmpv6 type nd-neighbor-advert"},
		{ICMPv6Type().Eq("nd-neighbor-solicit"), "icmpv6 type nd-neighbor-solicit"},
		{THRaw(64, KeyIPv6).Neq("fe80::/10"), "@th,64,128 != fe80::/10"},
		{CtStatus("dnat"), "ct status dnat"},
		{CtStatusMatch{Flags: []string{"dnat", "snat"}, Negate: true}, "ct status != snat,dnat"},
		{FibDaddrTypeLocal(), "fib daddr type local"},
		{FibMatch{Negate: true}, "fib daddr type != local"},
		{L4Proto().InAnon("17", "6"), "meta l4proto { tcp, udp }"},
		{IPDaddr().InAnon("192.168.1.5", "10.0.0.0/8"), "ip daddr { 10.0.0.0/8, 192.168.1.5 }"},
		{THDport().NotInAnon("8000-8080", "80"), "th dport != { 80, 8000-8080 }"},
		{Concat(Iifname(), EtherSaddr()).InAnon("a . 02:00:00:00:00:01"), `iifname . ether saddr { "a" . 02:00:00:00:00:01 }`},
		{VMap(Iifname(), "acl_out"), "iifname vmap @acl_out"},
		{DNATMap(Concat(IPDaddr(), L4Proto(), THDport()), "pm4_vip"), "dnat to ip daddr . meta l4proto . th dport map @pm4_vip"},
		{SNATMap(IPSaddr(), "obnat"), "snat to ip saddr map @obnat"},
	} {
		if got := tc.e.String(); got != tc.want {
			t.Errorf("String() = %q, want %q", got, tc.want)
		}
		if got := tc.e.clone().String(); got != tc.want {
			t.Errorf("clone().String() = %q, want %q", got, tc.want)
		}
	}
	// In a table, a NAT map statement shows its map's family.
	s := natSample().String()
	for _, want := range []string{
		"fib daddr type local dnat ip to ip daddr . meta l4proto . th dport map @pm4_vip",
		"fib daddr type local dnat ip to meta l4proto . th dport map @pm4",
		"fib daddr type local dnat ip6 to meta l4proto . th dport map @pm6",
		"snat ip to ip saddr map @obnat4",
		"snat ip6 to ip6 saddr map @obnat6",
		"table inet hostnet {",
		"type inet_proto . inet_service : ipv4_addr . inet_service",
		"elements = { tcp . 8080 : 10.0.0.2 . 80, udp . 53 : 10.0.0.3 . 5353 }",
		`elements = { "hnbr-1" : jump fwd_1 }`,
	} {
		if !strings.Contains(s, want) {
			t.Errorf("table text lacks %q:\n%s", want, s)
		}
	}
	b := bridgeSample().String()
	for _, want := range []string{
		"table bridge hostnet {",
		"type filter hook prerouting priority dstnat; policy accept;",
		"type filter hook forward priority 100; policy accept;",
		"type filter hook output priority filter; policy drop;",
		`elements = { "hnv1" : jump acl_a, "hnv2" : jump acl_b, "hnv3" : drop }`,
		`elements = { "hnv1" . 02:00:00:00:00:01, "hnv2" . 02:00:00:00:00:ab }`,
		"elements = { ip, arp, ip6 }",
	} {
		if !strings.Contains(b, want) {
			t.Errorf("bridge text lacks %q:\n%s", want, b)
		}
	}
}

// ruleExprs compiles t and returns the kernel expressions of a rule.
func ruleExprs(t *testing.T, tbl *Table, chain string, i int) []expr.Any {
	t.Helper()
	c, err := compile(tbl)
	if err != nil {
		t.Fatal(err)
	}
	return c.chains[chain].rules[i].exprs
}

func oneRule(family Family, typ ChainType, hook Hook, exprs ...Expr) *Table {
	return &Table{Family: family, Name: "t", Chains: []*Chain{{Name: "c", Type: typ, Hook: hook, Rules: []Rule{{Exprs: exprs}}}}}
}

func TestImplicitDependencies(t *testing.T) {
	ll := func(et uint16) []expr.Any {
		b := make([]byte, 2)
		binary.BigEndian.PutUint16(b, et)
		return []expr.Any{
			&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseLLHeader, Offset: 12, Len: 2},
			&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: b},
		}
	}
	nfproto := func(p byte) []expr.Any {
		return []expr.Any{&expr.Meta{Key: expr.MetaKeyNFPROTO, Register: 1}, &expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: []byte{p}}}
	}
	l4 := func(p byte) []expr.Any {
		return []expr.Any{&expr.Meta{Key: expr.MetaKeyL4PROTO, Register: 1}, &expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: []byte{p}}}
	}
	cat := func(xs ...[]expr.Any) []expr.Any {
		var out []expr.Any
		for _, x := range xs {
			out = append(out, x...)
		}
		return out
	}
	for _, tc := range []struct {
		name string
		tbl  *Table
		want []expr.Any // the prefix of the rule's expressions
	}{
		{"bridge ip", oneRule(FamilyBridge, ChainTypeFilter, HookForward, IPSaddr().Eq("10.0.0.1"), Drop()), ll(unix.ETH_P_IP)},
		{"bridge ip6", oneRule(FamilyBridge, ChainTypeFilter, HookForward, IP6Saddr().Eq("::1"), Drop()), ll(unix.ETH_P_IPV6)},
		{"bridge arp", oneRule(FamilyBridge, ChainTypeFilter, HookForward, ArpSaddrIP().Eq("10.0.0.1"), Drop()),
			cat(ll(unix.ETH_P_ARP), []expr.Any{&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseNetworkHeader, Offset: 14, Len: 4}})},
		{"explicit ether type", oneRule(FamilyBridge, ChainTypeFilter, HookForward, EtherType().Eq("arp"), ArpSaddrEther().Eq("02:00:00:00:00:01"), Drop()),
			cat(ll(unix.ETH_P_ARP), []expr.Any{&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseNetworkHeader, Offset: 8, Len: 6}})},
		{"inet ip", oneRule(FamilyInet, "", "", IPSaddr().Eq("10.0.0.1"), Drop()), nfproto(unix.NFPROTO_IPV4)},
		{"icmpv6 inet", oneRule(FamilyInet, "", "", ICMPv6Type().Eq("nd-neighbor-advert"), Drop()),
			cat(nfproto(unix.NFPROTO_IPV6), l4(58), []expr.Any{&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseTransportHeader, Offset: 0, Len: 1}})},
		{"icmpv6 bridge after l4proto", oneRule(FamilyBridge, "", "", L4Proto().Eq("ipv6-icmp"), ICMPv6Type().Eq("136"), THRaw(64, KeyIPv6).Eq("fd00::1"), Drop()),
			cat(l4(58), ll(unix.ETH_P_IPV6), []expr.Any{
				&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseTransportHeader, Offset: 0, Len: 1},
				&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: []byte{136}},
				&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseTransportHeader, Offset: 8, Len: 16},
			})},
		{"ifname . ether", oneRule(FamilyBridge, "", "", Concat(Iifname(), EtherSaddr()).InAnon("a . 02:00:00:00:00:01"), Drop()),
			[]expr.Any{&expr.Meta{Key: expr.MetaKeyIIFNAME, Register: 1}, &expr.Payload{DestRegister: 2, Base: expr.PayloadBaseLLHeader, Offset: 6, Len: 6}}},
	} {
		got := ruleExprs(t, tc.tbl, "c", 0)
		if len(got) < len(tc.want) || exprDump(got[:len(tc.want)]) != exprDump(tc.want) {
			t.Errorf("%s:\n got %s\nwant %s...", tc.name, exprDump(got), exprDump(tc.want))
		}
	}
}

func TestNATAndFibLowering(t *testing.T) {
	tbl := natSample()
	rules := map[string][]expr.Any{
		"vip4": ruleExprs(t, tbl, "publish", 0), "any4": ruleExprs(t, tbl, "publish", 1),
		"vip6": ruleExprs(t, tbl, "publish", 2), "any6": ruleExprs(t, tbl, "publish", 3),
		"obnat4": ruleExprs(t, tbl, "postrouting", 0),
	}
	last := func(es []expr.Any, n int) string { return exprDump(es[len(es)-n:]) }
	for name, want := range map[string][]expr.Any{
		"vip4": {&expr.Lookup{SourceRegister: 1, SetName: "pm4_vip", DestRegister: 1, IsDestRegSet: true},
			&expr.NAT{Type: expr.NATTypeDestNAT, Family: unix.NFPROTO_IPV4, RegAddrMin: 1, RegAddrMax: 1, RegProtoMin: unix.NFT_REG32_01, RegProtoMax: unix.NFT_REG32_01, Specified: true}},
		"any6": {&expr.Lookup{SourceRegister: 1, SetName: "pm6", DestRegister: 1, IsDestRegSet: true},
			&expr.NAT{Type: expr.NATTypeDestNAT, Family: unix.NFPROTO_IPV6, RegAddrMin: 1, RegAddrMax: 1, RegProtoMin: unix.NFT_REG_2, RegProtoMax: unix.NFT_REG_2, Specified: true}},
		"obnat4": {&expr.Lookup{SourceRegister: 1, SetName: "obnat4", DestRegister: 1, IsDestRegSet: true},
			&expr.NAT{Type: expr.NATTypeSourceNAT, Family: unix.NFPROTO_IPV4, RegAddrMin: 1, RegAddrMax: 1}},
	} {
		if got := last(rules[name], len(want)); got != exprDump(want) {
			t.Errorf("%s ends with\n  %s\nwant\n  %s", name, got, exprDump(want))
		}
	}
	// any4: fib, then the implied family, then the key: meta l4proto in
	// register 1, th dport in the 4-byte register after it.
	local := make([]byte, 4)
	binary.NativeEndian.PutUint32(local, unix.RTN_LOCAL)
	want := []expr.Any{
		&expr.Fib{Register: 1, FlagDADDR: true, ResultADDRTYPE: true},
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: local},
		&expr.Meta{Key: expr.MetaKeyNFPROTO, Register: 1},
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: []byte{unix.NFPROTO_IPV4}},
		&expr.Meta{Key: expr.MetaKeyL4PROTO, Register: 1},
		&expr.Payload{DestRegister: unix.NFT_REG32_01, Base: expr.PayloadBaseTransportHeader, Offset: 2, Len: 2},
	}
	if got := exprDump(rules["any4"][:len(want)]); got != exprDump(want) {
		t.Errorf("any4 starts with\n  %s\nwant\n  %s", got, exprDump(want))
	}
	// vip6's address match already establishes ipv6: one family check.
	n := 0
	for _, e := range rules["vip6"] {
		if m, ok := e.(*expr.Meta); ok && m.Key == expr.MetaKeyNFPROTO {
			n++
		}
	}
	if n != 1 {
		t.Errorf("vip6 checks the family %d times", n)
	}
	// ct status.
	mask := make([]byte, 4)
	binary.NativeEndian.PutUint32(mask, 0x20)
	if got, want := exprDump(ruleExprs(t, tbl, "forward", 0)[:3]), exprDump([]expr.Any{
		&expr.Ct{Key: expr.CtKeySTATUS, Register: 1},
		&expr.Bitwise{SourceRegister: 1, DestRegister: 1, Len: 4, Mask: mask, Xor: make([]byte, 4)},
		&expr.Cmp{Op: expr.CmpOpNeq, Register: 1, Data: make([]byte, 4)},
	}); got != want {
		t.Errorf("ct status dnat:\n  %s\nwant\n  %s", got, want)
	}
}

func TestValidateNewErrors(t *testing.T) {
	bridge := func(exprs ...Expr) func() *Table {
		return func() *Table { return oneRule(FamilyBridge, ChainTypeFilter, HookForward, exprs...) }
	}
	inet := func(exprs ...Expr) func() *Table {
		return func() *Table { return oneRule(FamilyInet, ChainTypeFilter, HookForward, exprs...) }
	}
	withNAT := func(typ ChainType, hook Hook, e Expr, m *Map) func() *Table {
		return func() *Table {
			t := oneRule(FamilyInet, typ, hook, e)
			t.Maps = []*Map{m}
			return t
		}
	}
	pm := &Map{Name: "pm", Key: []KeyType{KeyInetProto, KeyInetService}, Value: []KeyType{KeyIPv4, KeyInetService}}
	vm := &Map{Name: "vm", Key: []KeyType{KeyIfname}, Verdict: true}
	dnat := DNATMap(Concat(L4Proto(), THDport()), "pm")
	for _, tc := range []struct {
		name string
		tbl  func() *Table
		want string
	}{
		{"nat chain in bridge", func() *Table { return oneRule(FamilyBridge, ChainTypeNAT, HookPrerouting, Accept()) },
			"chain c: a bridge table has no nat chains"},
		{"route chain in bridge", func() *Table { return oneRule(FamilyBridge, ChainTypeRoute, HookOutput, Accept()) },
			"chain c: a bridge table has no route chains"},
		{"unknown hook in bridge", func() *Table { return oneRule(FamilyBridge, ChainTypeFilter, "ingress", Accept()) },
			`chain c: unknown hook "ingress"`},
		{"bad family", func() *Table { t := oneRule(FamilyInet, "", "", Accept()); t.Family = 7; return t }, "invalid family 7"},
		{"ether in inet", inet(EtherSaddr().Eq("02:00:00:00:00:01"), Drop()), "ether saddr is only valid in a bridge table"},
		{"arp in inet", inet(ArpSaddrIP().InSet("x"), Drop()), "arp saddr ip is only valid in a bridge table"},
		{"nfproto in bridge", bridge(NFProto().Eq("ipv4"), Drop()), "meta nfproto never matches in a bridge table"},
		{"fib in bridge", bridge(FibDaddrTypeLocal(), Drop()), "fib daddr type local is not valid in a bridge table"},
		{"masquerade in bridge", bridge(Masquerade()), "masquerade is not valid in a bridge table"},
		{"ip and arp", bridge(IPSaddr().Eq("10.0.0.1"), ArpSaddrIP().Eq("10.0.0.1"), Drop()), "rule mixes ipv4 and arp matches"},
		{"icmpv6 after tcp", inet(L4Proto().Eq("tcp"), ICMPv6Type().Eq("136"), Drop()), "rule mixes meta l4proto tcp and icmpv6"},
		{"bad mac", bridge(EtherSaddr().Eq("02:00:00:00:01"), Drop()), `"02:00:00:00:01" is not an Ethernet address`},
		{"bad ether type", bridge(EtherType().Eq("ipx"), Drop()), `"ipx" is not a valid number`},
		{"bad icmpv6 type", inet(ICMPv6Type().Eq("nd-bogus"), Drop()), `"nd-bogus" is not a valid number`},
		{"THRaw offset", inet(THRaw(60, KeyIPv6).Eq("::1"), Drop()), "@th,60,128: offset 60 is not a non-negative multiple of 8 bits"},
		{"bad ct status", inet(CtStatus("dnatted"), Accept()), `unknown ct status "dnatted"`},
		{"empty anon", inet(THDport().InAnon(), Accept()), "th dport: anonymous set: no elements"},
		{"bad anon element", inet(IPSaddr().InAnon("10.0.0.1", "fd00::1"), Accept()), `element "fd00::1": "fd00::1" is not an IPv4 address`},
		{"anon ifname wildcard", inet(Iifname().InAnon("a", "b*"), Accept()), `invalid interface name "b*"`},
		{"dnat in filter chain", withNAT(ChainTypeFilter, HookPrerouting, dnat, pm), "dnat is only valid in a nat chain on hook prerouting or output"},
		{"dnat in postrouting", withNAT(ChainTypeNAT, HookPostrouting, dnat, pm), "dnat is only valid in a nat chain on hook prerouting or output"},
		{"snat in prerouting", withNAT(ChainTypeNAT, HookPrerouting, SNATMap(IPSaddr(), "pm"), pm), "snat is only valid in a nat chain on hook postrouting or input"},
		{"dnat unknown map", withNAT(ChainTypeNAT, HookPrerouting, DNATMap(L4Proto(), "nope"), pm), `unknown map "nope"`},
		{"dnat key mismatch", withNAT(ChainTypeNAT, HookPrerouting, DNATMap(Concat(IPDaddr(), THDport()), "pm"), pm),
			`map "pm" has key type inet_proto . inet_service, key has type ipv4_addr . inet_service`},
		{"dnat verdict map", withNAT(ChainTypeNAT, HookPrerouting, DNATMap(Iifname(), "vm"), vm), `map "vm" is a verdict map`},
		{"dnat value type", withNAT(ChainTypeNAT, HookPrerouting, DNATMap(Iifname(), "m"),
			&Map{Name: "m", Key: []KeyType{KeyIfname}, Value: []KeyType{KeyInetService}}), `map "m" has value type inet_service, want an address`},
		{"dnat mixes families", withNAT(ChainTypeNAT, HookPrerouting, DNATMap(Concat(IP6Daddr(), THDport()), "m"),
			&Map{Name: "m", Key: []KeyType{KeyIPv6, KeyInetService}, Value: []KeyType{KeyIPv4}}), "rule mixes ipv4 and ipv6 matches"},
		{"vmap to data map", withNAT(ChainTypeFilter, HookForward, VMap(Concat(L4Proto(), THDport()), "pm"), pm), `map "pm" is not a verdict map`},
		{"vmap unknown map", withNAT(ChainTypeFilter, HookForward, VMap(Iifname(), "nope"), vm), `iifname vmap @nope: unknown map "nope"`},
		{"vmap key mismatch", withNAT(ChainTypeFilter, HookForward, VMap(IPSaddr(), "vm"), vm), `map "vm" has key type ifname, field has type ipv4_addr`},
		{"set lookup of a map", withNAT(ChainTypeFilter, HookForward, Iifname().InSet("vm"), vm), `"vm" is a map, not a set`},
		{"vmap missing chain", withNAT(ChainTypeFilter, HookForward, Accept(),
			&Map{Name: "vm", Key: []KeyType{KeyIfname}, Verdict: true, Elements: map[string]string{"a": "jump gone"}}),
			`map vm: element "a": jump gone: unknown chain "gone"`},
		{"vmap to base chain", withNAT(ChainTypeFilter, HookForward, Accept(),
			&Map{Name: "vm", Key: []KeyType{KeyIfname}, Verdict: true, Elements: map[string]string{"a": "goto c"}}),
			`map vm: element "a": goto c: chain "c" is a base chain`},
		{"vmap bad verdict", withNAT(ChainTypeFilter, HookForward, Accept(),
			&Map{Name: "vm", Key: []KeyType{KeyIfname}, Verdict: true, Elements: map[string]string{"a": "continue"}}),
			`map vm: element "a": unknown verdict "continue"`},
		{"verdict map with value", withNAT(ChainTypeFilter, HookForward, Accept(),
			&Map{Name: "vm", Key: []KeyType{KeyIfname}, Verdict: true, Value: []KeyType{KeyIPv4}}),
			"map vm: a verdict map takes no value type (has ipv4_addr)"},
		{"map without value type", withNAT(ChainTypeFilter, HookForward, Accept(), &Map{Name: "m", Key: []KeyType{KeyIfname}}),
			"map m: value: no key type"},
		{"bad map value", withNAT(ChainTypeFilter, HookForward, Accept(),
			&Map{Name: "m", Key: []KeyType{KeyInetProto, KeyInetService}, Value: []KeyType{KeyIPv4, KeyInetService},
				Elements: map[string]string{"tcp . 80": "10.0.0.1 . http"}}),
			`map m: element "tcp . 80": value: element "10.0.0.1 . http": "http" is not a valid number`},
		{"map value arity", withNAT(ChainTypeFilter, HookForward, Accept(),
			&Map{Name: "m", Key: []KeyType{KeyInetService}, Value: []KeyType{KeyIPv4, KeyInetService}, Elements: map[string]string{"80": "10.0.0.1"}}),
			`element "10.0.0.1" has 1 fields, key ipv4_addr . inet_service has 2`},
		{"map overlap", withNAT(ChainTypeFilter, HookForward, Accept(),
			&Map{Name: "m", Key: []KeyType{KeyIPv4}, Value: []KeyType{KeyIPv4}, Interval: true,
				Elements: map[string]string{"10.0.0.0/8": "1.1.1.1", "10.1.0.0/16": "1.1.1.2"}}),
			`map m: elements "10.0.0.0/8" and "10.1.0.0/16" overlap`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.tbl().Validate()
			if err == nil {
				t.Fatalf("Validate() = nil, want error containing %q", tc.want)
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Errorf("Validate() = %q, want it to contain %q", err, tc.want)
			}
		})
	}
	// The samples themselves are valid, and regular chains may hold NAT
	// statements (the kernel checks the chains that jump to them).
	for _, tbl := range []*Table{bridgeSample(), natSample(), oneRule(FamilyInet, "", "", IPSaddr().Eq("10.0.0.1"), SNATMap(IPSaddr(), "obnat4"))} {
		if tbl.Name == "t" {
			tbl.Maps = natSample().Maps[4:5]
		}
		if err := tbl.Validate(); err != nil {
			t.Errorf("%s %s: %v", tbl.Family, tbl.Name, err)
		}
	}
}

func TestNewElementRoundTrip(t *testing.T) {
	for _, tc := range []struct {
		keys     []KeyType
		interval bool
		in, want string
	}{
		{[]KeyType{KeyEther}, false, "02:00:00:00:00:AB", "02:00:00:00:00:ab"},
		{[]KeyType{KeyEther}, true, "02:00:00:00:00:00-02:00:00:00:00:ff", "02:00:00:00:00:00-02:00:00:00:00:ff"},
		{[]KeyType{KeyEtherType}, false, "0x86dd", "ip6"},
		{[]KeyType{KeyEtherType}, false, "2054", "arp"},
		{[]KeyType{KeyEtherType}, false, "0x88cc", "0x88cc"},
		{[]KeyType{KeyICMPv6Type}, false, "135", "nd-neighbor-solicit"},
		{[]KeyType{KeyICMPv6Type}, true, "133-137", "nd-router-solicit-nd-redirect"},
		{[]KeyType{KeyICMPv6Type}, false, "200", "200"},
		{[]KeyType{KeyInetProto}, false, "ipv6-icmp", "icmpv6"},
		{[]KeyType{KeyIfname, KeyEther}, false, "hnv1 . 02:00:00:00:00:01", "hnv1 . 02:00:00:00:00:01"},
		{[]KeyType{KeyIfname, KeyEther}, false, `"hnv1" . 02:00:00:00:00:01`, `hnv1 . 02:00:00:00:00:01`},
	} {
		mode := modeSingle
		if tc.interval {
			mode = modeInterval
		}
		e, err := parseElement(tc.keys, tc.in, mode)
		if err != nil {
			t.Errorf("parse %q: %v", tc.in, err)
			continue
		}
		if got := e.canonical(tc.keys); got != tc.want {
			t.Errorf("canonical(%q) = %q, want %q", tc.in, got, tc.want)
		}
		back, err := decodeElements(tc.keys, tc.interval, e.kernelElements(tc.interval))
		if err != nil || len(back) != 1 || back[0].canonical(tc.keys) != tc.want {
			t.Errorf("kernel round trip of %q = %v, %v", tc.in, back, err)
		}
	}
	// An ifname . ether_addr key is 16 + 8 bytes, the MAC zero padded.
	e, _ := parseElement([]KeyType{KeyIfname, KeyEther}, "a . 02:00:00:00:00:01", modeSingle)
	if k := e.kernelElements(false)[0].Key; len(k) != 24 || k[16] != 2 || k[21] != 1 || k[22] != 0 || k[23] != 0 {
		t.Errorf("ifname . ether_addr key = %x", k)
	}
}

// kernelVerdict encodes verdict data as the kernel lists it (the attributes
// nested in NFTA_DATA_VERDICT, as google/nftables hands them over in Val).
func kernelVerdict(t *testing.T, v *expr.Verdict) []byte {
	t.Helper()
	attrs := []netlink.Attribute{{Type: unix.NFTA_VERDICT_CODE, Data: binary.BigEndian.AppendUint32(nil, uint32(v.Kind))}}
	if v.Chain != "" {
		attrs = append(attrs, netlink.Attribute{Type: unix.NFTA_VERDICT_CHAIN, Data: []byte(v.Chain + "\x00")})
	}
	b, err := netlink.MarshalAttributes(attrs)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestMapElementRoundTrip(t *testing.T) {
	for _, m := range natSample().Maps {
		ms, err := compileMap(m, map[string]*Chain{"fwd_1": {Name: "fwd_1"}})
		if err != nil {
			t.Fatal(err)
		}
		var kel []nftables.SetElement
		for _, me := range ms.elems {
			for _, x := range me.kernelElements(ms.interval, ms.verdict) {
				if x.VerdictData != nil {
					x.Val, x.VerdictData = kernelVerdict(t, x.VerdictData), nil
				}
				kel = append(kel, x)
			}
		}
		back, err := decodeMapElements(ms.keys, ms.vals, ms.interval, kel)
		if err != nil {
			t.Fatalf("map %s: %v", m.Name, err)
		}
		got := &mapState{elems: map[string]mapElem{}}
		for _, me := range back {
			got.elems[me.key.canonical(ms.keys)] = me
		}
		if g, w := mapText(got), mapText(ms); !reflect.DeepEqual(g, w) {
			t.Errorf("map %s: round trip %q, want %q", m.Name, g, w)
		}
	}
	// A concatenated value is padded like a concatenated key.
	ms, _ := compileMap(natSample().Maps[0], nil)
	if v := ms.elems["tcp . 8080"].kernelElements(false, false)[0].Val; !reflect.DeepEqual(v, []byte{10, 0, 0, 2, 0, 80, 0, 0}) {
		t.Errorf("value of tcp . 8080 = %v", v)
	}
	for _, v := range []*expr.Verdict{{Kind: expr.VerdictAccept}, {Kind: expr.VerdictDrop}, {Kind: expr.VerdictReturn}, {Kind: expr.VerdictGoto, Chain: "x"}} {
		got, err := decodeVerdict(kernelVerdict(t, v))
		if err != nil || verdictKinds[got.Verdict] != v.Kind || got.Chain != v.Chain {
			t.Errorf("decodeVerdict(%+v) = %+v, %v", v, got, err)
		}
	}
	if _, err := decodeVerdict(kernelVerdict(t, &expr.Verdict{Kind: expr.VerdictContinue})); err == nil {
		t.Error("continue decoded as a verdict hostnet writes")
	}
}

func TestAnonSets(t *testing.T) {
	// Identity follows the elements, not their order.
	r := func(els ...string) Rule { return Rule{Comment: "x", Exprs: []Expr{THDport().InAnon(els...), Accept()}} }
	if ruleID(r("80", "443"), nil) != ruleID(r("443", "80"), nil) {
		t.Error("element order changed the rule identity")
	}
	if ruleID(r("80", "443"), nil) == ruleID(r("80", "444"), nil) {
		t.Error("changing an element kept the rule identity")
	}
	// Interval flag only when needed; overlaps merged; duplicates collapsed.
	a, err := newAnonSet([]KeyType{KeyInetService}, []string{"80", "443", "80"})
	if err != nil || a.set.Interval || len(a.elems) != 2 || !a.set.Anonymous || !a.set.Constant || a.set.Name != "__set%d" || a.set.ID == 0 {
		t.Errorf("plain anon set = %+v, %v", a, err)
	}
	a, err = newAnonSet([]KeyType{KeyIPv4}, []string{"10.0.0.0/8", "10.1.0.0/16", "10.255.255.255-11.0.0.3", "192.168.0.1"})
	if err != nil || !a.set.Interval {
		t.Fatalf("interval anon set = %+v, %v", a, err)
	}
	back, err := decodeElements([]KeyType{KeyIPv4}, true, a.elems)
	var got []string
	for _, e := range back {
		got = append(got, e.canonical([]KeyType{KeyIPv4}))
	}
	if want := []string{"10.0.0.0-11.0.0.3", "192.168.0.1"}; err != nil || !reflect.DeepEqual(got, want) {
		t.Errorf("merged anon set = %q, %v; want %q", got, err, want)
	}
	// A concatenation with a range is a pipapo set (key and key end).
	a, err = newAnonSet([]KeyType{KeyIPv4, KeyInetService}, []string{"10.0.0.0/24 . 80-90"})
	if err != nil || !a.set.Interval || !a.set.Concatenation || len(a.elems) != 1 || len(a.elems[0].KeyEnd) != 8 {
		t.Errorf("concat anon set = %+v, %v", a, err)
	}
	// Each rule gets its own set, with a batch-unique ID.
	tbl := oneRule(FamilyInet, "", "", THDport().InAnon("80"), THSport().InAnon("1-1023"), Accept())
	c, err := compile(tbl)
	if err != nil {
		t.Fatal(err)
	}
	rs := c.chains["c"].rules[0]
	if len(rs.anon) != 2 || rs.anon[0].set.ID == rs.anon[1].set.ID || rs.anon[1].set.Interval != true {
		t.Errorf("rule anon sets = %+v", rs.anon)
	}
}

func TestFakeMapsAndFamilies(t *testing.T) {
	f := NewFake()
	inet, bridge := natSample(), bridgeSample()
	if err := f.Apply(inet); err != nil {
		t.Fatal(err)
	}
	if err := f.Apply(bridge); err != nil {
		t.Fatal(err)
	}
	if f.Changes() != 2 || f.FamilyTable(FamilyBridge, "hostnet").String() != bridge.String() || f.Table("hostnet").String() != inet.String() {
		t.Fatal("inet and bridge tables of one name are not kept apart")
	}
	if d := f.Dump(); d != inet.String()+"\n"+bridge.String() {
		t.Errorf("Dump:\n%s", d)
	}
	ops := func(want ...string) {
		t.Helper()
		if got := f.LastOps(); !reflect.DeepEqual(got, want) && !(len(got) == 0 && len(want) == 0) {
			t.Errorf("ops:\n  %s\nwant:\n  %s", strings.Join(got, "\n  "), strings.Join(want, "\n  "))
		}
	}
	// Same again: nothing.
	if err := f.Apply(natSample()); err != nil {
		t.Fatal(err)
	}
	ops()
	// A value change is a delete and an add; a new key an add; a removed
	// key a delete; rules are not touched.
	m := inet.Maps[0]
	m.Elements["tcp . 8080"] = "10.0.0.9 . 80"
	m.Elements["tcp . 9090"] = "10.0.0.9 . 90"
	delete(m.Elements, "udp . 53")
	if err := f.Apply(inet); err != nil {
		t.Fatal(err)
	}
	ops("delete 2 elements from map pm4", "add 2 elements to map pm4")
	// Re-point a vmap element at a new chain and remove the old chain.
	bridge.Chains = append(bridge.Chains, &Chain{Name: "acl_c", Rules: []Rule{{Exprs: []Expr{Accept()}}}})
	bridge.Maps[0].Elements["hnv2"] = "jump acl_c"
	bridge.Chains = slicesDelete(bridge.Chains, "acl_b")
	if err := f.Apply(bridge); err != nil {
		t.Fatal(err)
	}
	ops("flush chain acl_b", "delete 1 elements from map acl_in", "delete chain acl_b", "add chain acl_c",
		"add 1 elements to map acl_in", "add 1 rules to chain acl_c")
	// A map whose value type changes is recreated, and the chains whose
	// rules use it refilled.
	inet.Maps[4].Value = []KeyType{KeyIPv4, KeyInetService}
	inet.Maps[4].Elements = map[string]string{"10.0.0.2": "192.168.1.10 . 1024"}
	if err := f.Apply(inet); err != nil {
		t.Fatal(err)
	}
	ops("flush chain postrouting", "delete map obnat4", "add map obnat4", "add 1 elements to map obnat4", "add 3 rules to chain postrouting")
	// Removing a verdict map and the chain it jumps to.
	inet.Maps = slicesDeleteMap(inet.Maps, "fwd")
	inet.Chains = slicesDelete(inet.Chains, "fwd_1")
	chainOf(inet, "forward").Rules = chainOf(inet, "forward").Rules[:1]
	if err := f.Apply(inet); err != nil {
		t.Fatal(err)
	}
	ops("flush chain forward", "flush chain fwd_1", "delete map fwd", "delete chain fwd_1", "add 1 rules to chain forward")
	// An anonymous set's elements are part of its rule.
	acl := chainOf(bridge, "acl_a")
	acl.Rules[1].Exprs[2] = THDport().InAnon("8000-8080", "81")
	if err := f.Apply(bridge); err != nil {
		t.Fatal(err)
	}
	ops("flush chain acl_a", "add 5 rules to chain acl_a")
	// Deleting one family leaves the other.
	if err := f.DeleteTable(FamilyBridge, "hostnet"); err != nil {
		t.Fatal(err)
	}
	ops("delete table")
	if f.FamilyTable(FamilyBridge, "hostnet") != nil || f.Table("hostnet") == nil {
		t.Error("DeleteTable(bridge) did not delete just the bridge table")
	}
	if err := f.DeleteTable(FamilyBridge, "hostnet"); err != nil {
		t.Error(err)
	}
	ops()
}

func slicesDelete(cs []*Chain, name string) []*Chain {
	var out []*Chain
	for _, c := range cs {
		if c.Name != name {
			out = append(out, c)
		}
	}
	return out
}

func slicesDeleteMap(ms []*Map, name string) []*Map {
	var out []*Map
	for _, m := range ms {
		if m.Name != name {
			out = append(out, m)
		}
	}
	return out
}
