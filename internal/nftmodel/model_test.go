package nftmodel_test

import (
	"strings"
	"testing"

	"github.com/hostnet/hostnet/internal/nftmodel"
	"github.com/hostnet/hostnet/internal/nftmodel/nfttest"
	"github.com/hostnet/hostnet/internal/testutil"
)

// Element order and set order in the input do not change the text.
func TestStringIsCanonical(t *testing.T) {
	got := nfttest.Sample().String()
	shuffled := nfttest.Sample()
	shuffled.Sets[0], shuffled.Sets[1] = shuffled.Sets[1], shuffled.Sets[0]
	el := shuffled.Sets[1].Elements
	el[0], el[len(el)-1] = el[len(el)-1], el[0]
	if shuffled.String() != got {
		t.Error("String() depends on set or element order")
	}
}

func TestMapRendering(t *testing.T) {
	tbl := &nftmodel.Table{Name: "t",
		Chains: []*nftmodel.Chain{{Name: "ep1"}},
		Maps: []*nftmodel.Map{
			{Name: "fwd", Key: []nftmodel.KeyType{nftmodel.KeyIPv4}, Verdict: true, Elements: map[string]string{"10.0.0.9": "jump ep1", "10.0.0.1": "drop"}},
			{Name: "dnat", Key: []nftmodel.KeyType{nftmodel.KeyInetProto, nftmodel.KeyInetService}, Value: []nftmodel.KeyType{nftmodel.KeyIPv4}, Elements: map[string]string{"tcp . 80": "10.0.0.2"}},
		}}
	if err := tbl.Validate(); err != nil {
		t.Fatal(err)
	}
	want := "table inet t {\n" +
		"\tmap dnat {\n\t\ttype inet_proto . inet_service : ipv4_addr\n\t\telements = { tcp . 80 : 10.0.0.2 }\n\t}\n\n" +
		"\tmap fwd {\n\t\ttype ipv4_addr : verdict\n\t\telements = { 10.0.0.1 : drop, 10.0.0.9 : jump ep1 }\n\t}\n\n" +
		"\tchain ep1 {\n\t}\n}\n"
	if got := tbl.String(); got != want {
		t.Errorf("got:\n%s\nwant:\n%s", got, want)
	}
	tbl.Maps[0].Elements["10.0.0.2"] = "jump nowhere"
	if err := tbl.Validate(); err == nil || !strings.Contains(err.Error(), `map fwd: element "10.0.0.2": jump nowhere: unknown chain "nowhere"`) {
		t.Errorf("Validate() = %v", err)
	}
}

func TestGolden(t *testing.T) {
	for _, tc := range []struct {
		file string
		tbl  func() *nftmodel.Table
	}{{"sample.nft", nfttest.Sample}, {"bridge.nft", nfttest.Bridge}, {"maps.nft", nfttest.NAT}} {
		tbl := tc.tbl()
		if err := tbl.Validate(); err != nil {
			t.Fatalf("%s: %v", tc.file, err)
		}
		testutil.Golden(t, tc.file, tbl.String())
		if tbl.Clone().String() != tbl.String() {
			t.Errorf("%s: clone renders differently", tc.file)
		}
	}
}

func TestExprStrings(t *testing.T) {
	for _, tc := range []struct {
		e    nftmodel.Expr
		want string
	}{
		{nftmodel.Iifname().InSet("bridges"), "iifname @bridges"},
		{nftmodel.Oifname().NotInSet("bridges"), "oifname != @bridges"},
		{nftmodel.IPSaddr().InSet("nat_v4"), "ip saddr @nat_v4"},
		{nftmodel.Concat(nftmodel.Iifname(), nftmodel.Oifname()).InSet("intra"), "iifname . oifname @intra"},
		{nftmodel.Iifname().Eq("eth0"), `iifname "eth0"`},
		{nftmodel.Oifname().Neq("hn*"), `oifname != "hn*"`},
		{nftmodel.IP6Daddr().Eq("fd00:0::1"), "ip6 daddr fd00::1"},
		{nftmodel.IPDaddr().Eq("10.0.0.0-10.0.0.127"), "ip daddr 10.0.0.0/25"},
		{nftmodel.L4Proto().Eq("6"), "meta l4proto tcp"},
		{nftmodel.NFProto().Eq("ipv4"), "meta nfproto ipv4"},
		{nftmodel.THDport().Eq("8080"), "th dport 8080"},
		{nftmodel.CtState("related", "established"), "ct state established,related"},
		{nftmodel.CtState("invalid"), "ct state invalid"},
		{nftmodel.Counter(), "counter"},
		{nftmodel.Masquerade(), "masquerade"},
		{nftmodel.Accept(), "accept"},
		{nftmodel.Drop(), "drop"},
		{nftmodel.Return(), "return"},
		{nftmodel.Jump("x"), "jump x"},
		{nftmodel.Goto("y"), "goto y"},
		{nftmodel.Reject(), "reject"},
		{nftmodel.EtherSaddr().Eq("02:00:00:00:00:AB"), "ether saddr 02:00:00:00:00:ab"},
		{nftmodel.EtherType().Eq("0x0800"), "ether type ip"},
		{nftmodel.EtherType().Neq("0x88cc"), "ether type != 0x88cc"},
		{nftmodel.ArpSaddrEther().InSet("m"), "arp saddr ether @m"},
		{nftmodel.ArpSaddrIP().Eq("10.0.0.1"), "arp saddr ip 10.0.0.1"},
		{nftmodel.ICMPv6Type().Eq("136"), "icmpv6 type nd-neighbor-advert"},
		{nftmodel.ICMPv6Type().Eq("nd-neighbor-solicit"), "icmpv6 type nd-neighbor-solicit"},
		{nftmodel.THRaw(64, nftmodel.KeyIPv6).Neq("fe80::/10"), "@th,64,128 != fe80::/10"},
		{nftmodel.CtStatus("dnat"), "ct status dnat"},
		{nftmodel.CtStatus("dnat", "snat").Not(), "ct status != snat,dnat"},
		{nftmodel.FibDaddrTypeLocal(), "fib daddr type local"},
		{nftmodel.FibMatch{Negate: true}, "fib daddr type != local"},
		{nftmodel.L4Proto().InAnon("17", "6"), "meta l4proto { tcp, udp }"},
		{nftmodel.IPDaddr().InAnon("192.168.1.5", "10.0.0.0/8"), "ip daddr { 10.0.0.0/8, 192.168.1.5 }"},
		{nftmodel.THDport().NotInAnon("8000-8080", "80"), "th dport != { 80, 8000-8080 }"},
		{nftmodel.Concat(nftmodel.Iifname(), nftmodel.EtherSaddr()).InAnon("a . 02:00:00:00:00:01"), `iifname . ether saddr { "a" . 02:00:00:00:00:01 }`},
		{nftmodel.VMap(nftmodel.Iifname(), "acl_out"), "iifname vmap @acl_out"},
		{nftmodel.DNATMap(nftmodel.Concat(nftmodel.IPDaddr(), nftmodel.L4Proto(), nftmodel.THDport()), "pm4_vip"), "dnat to ip daddr . meta l4proto . th dport map @pm4_vip"},
		{nftmodel.SNATMap(nftmodel.IPSaddr(), "obnat"), "snat to ip saddr map @obnat"},
	} {
		if got := tc.e.String(); got != tc.want {
			t.Errorf("String() = %q, want %q", got, tc.want)
		}
		if got := cloneExpr(tc.e).String(); got != tc.want {
			t.Errorf("clone().String() = %q, want %q", got, tc.want)
		}
	}
	// In a table, a NAT map statement shows its map's family.
	for _, tc := range []struct {
		tbl   *nftmodel.Table
		wants []string
	}{{nfttest.NAT(), []string{
		"fib daddr type local dnat ip to ip daddr . meta l4proto . th dport map @pm4_vip",
		"fib daddr type local dnat ip to meta l4proto . th dport map @pm4",
		"fib daddr type local dnat ip6 to meta l4proto . th dport map @pm6",
		"snat ip to ip saddr map @obnat4",
		"snat ip6 to ip6 saddr map @obnat6",
		"table inet hostnet {",
		"type inet_proto . inet_service : ipv4_addr . inet_service",
		"elements = { tcp . 8080 : 10.0.0.2 . 80, udp . 53 : 10.0.0.3 . 5353 }",
		`elements = { "hnbr-1" : jump fwd_1 }`,
	}}, {nfttest.Bridge(), []string{
		"table bridge hostnet {",
		"type filter hook prerouting priority dstnat; policy accept;",
		"type filter hook forward priority 100; policy accept;",
		"type filter hook output priority filter; policy drop;",
		`elements = { "hnv1" : jump acl_a, "hnv2" : jump acl_b, "hnv3" : drop }`,
		`elements = { "hnv1" . 02:00:00:00:00:01, "hnv2" . 02:00:00:00:00:ab }`,
		"elements = { ip, arp, ip6 }",
	}},
	} {
		s := tc.tbl.String()
		for _, want := range tc.wants {
			if !strings.Contains(s, want) {
				t.Errorf("table text lacks %q:\n%s", want, s)
			}
		}
	}
}

func TestValidateErrors(t *testing.T) {
	sample := func(mutate func(*nftmodel.Table)) func() *nftmodel.Table {
		return func() *nftmodel.Table {
			t := nfttest.Sample()
			mutate(t)
			return t
		}
	}
	bridge := func(exprs ...nftmodel.Expr) func() *nftmodel.Table {
		return func() *nftmodel.Table {
			return nfttest.OneRule(nftmodel.FamilyBridge, nftmodel.ChainTypeFilter, nftmodel.HookForward, exprs...)
		}
	}
	inet := func(exprs ...nftmodel.Expr) func() *nftmodel.Table {
		return func() *nftmodel.Table {
			return nfttest.OneRule(nftmodel.FamilyInet, nftmodel.ChainTypeFilter, nftmodel.HookForward, exprs...)
		}
	}
	withNAT := func(typ nftmodel.ChainType, hook nftmodel.Hook, e nftmodel.Expr, m *nftmodel.Map) func() *nftmodel.Table {
		return func() *nftmodel.Table {
			t := nfttest.OneRule(nftmodel.FamilyInet, typ, hook, e)
			t.Maps = []*nftmodel.Map{m}
			return t
		}
	}
	pm := &nftmodel.Map{Name: "pm", Key: []nftmodel.KeyType{nftmodel.KeyInetProto, nftmodel.KeyInetService}, Value: []nftmodel.KeyType{nftmodel.KeyIPv4, nftmodel.KeyInetService}}
	vm := &nftmodel.Map{Name: "vm", Key: []nftmodel.KeyType{nftmodel.KeyIfname}, Verdict: true}
	dnat := nftmodel.DNATMap(nftmodel.Concat(nftmodel.L4Proto(), nftmodel.THDport()), "pm")
	for _, tc := range []struct {
		name string
		tbl  func() *nftmodel.Table
		want string
	}{
		{"unknown set", sample(func(t *nftmodel.Table) {
			t.Chains[0].Rules[0].Exprs = []nftmodel.Expr{nftmodel.Iifname().InSet("nope"), nftmodel.Accept()}
		}), `chain forward: rule 0 ("established"): iifname @nope: unknown set "nope"`},
		{"set type mismatch", sample(func(t *nftmodel.Table) {
			t.Chains[0].Rules[0].Exprs = []nftmodel.Expr{nftmodel.IPSaddr().InSet("bridges"), nftmodel.Accept()}
		}), `set "bridges" has type ifname, field has type ipv4_addr`},
		{"bad ipv4 element", sample(func(t *nftmodel.Table) { t.Sets[0].Elements = append(t.Sets[0].Elements, "10.0.0.300") }),
			`set nat_v4: element "10.0.0.300": "10.0.0.300" is not an IPv4 address`},
		{"ipv6 in ipv4 set", sample(func(t *nftmodel.Table) { t.Sets[0].Elements = []string{"fd00::1"} }),
			`set nat_v4: element "fd00::1": "fd00::1" is not an IPv4 address`},
		{"host bits", sample(func(t *nftmodel.Table) { t.Sets[0].Elements = []string{"10.0.0.1/24"} }),
			`set nat_v4: element "10.0.0.1/24": prefix "10.0.0.1/24" has host bits set (want 10.0.0.0/24)`},
		{"prefix without interval", sample(func(t *nftmodel.Table) {
			t.Sets = append(t.Sets, &nftmodel.Set{Name: "plain", Key: []nftmodel.KeyType{nftmodel.KeyIPv4}, Elements: []string{"10.0.0.0/24"}})
		}), `set plain: element "10.0.0.0/24": prefix "10.0.0.0/24" needs an interval set`},
		{"overlap", sample(func(t *nftmodel.Table) { t.Sets[0].Elements = []string{"10.0.0.0/8", "10.1.0.0/16"} }),
			`set nat_v4: elements "10.0.0.0/8" and "10.1.0.0/16" overlap`},
		{"duplicate element", sample(func(t *nftmodel.Table) { t.Sets[1].Elements = []string{"a", "a"} }),
			`set bridges: duplicate element "a"`},
		{"long ifname", sample(func(t *nftmodel.Table) { t.Sets[1].Elements = []string{"a234567890123456"} }),
			`set bridges: element "a234567890123456": interface name "a234567890123456" longer than 15 bytes`},
		{"concat arity", sample(func(t *nftmodel.Table) { t.Sets[2].Elements = []string{"hnbr-1"} }),
			`set intra: element "hnbr-1" has 1 fields, key ifname . ifname has 2`},
		{"bad port", sample(func(t *nftmodel.Table) { t.Sets[4].Elements = []string{"70000"} }),
			`set ports: element "70000": "70000" is not a valid number`},
		{"duplicate set", sample(func(t *nftmodel.Table) {
			t.Sets = append(t.Sets, &nftmodel.Set{Name: "bridges", Key: []nftmodel.KeyType{nftmodel.KeyIfname}})
		}),
			`duplicate set name "bridges"`},
		{"duplicate chain", sample(func(t *nftmodel.Table) { t.Chains = append(t.Chains, &nftmodel.Chain{Name: "isolate"}) }),
			`duplicate chain name "isolate"`},
		{"jump to missing chain", sample(func(t *nftmodel.Table) {
			t.Chains[0].Rules[3].Exprs = []nftmodel.Expr{nftmodel.Jump("missing")}
		}), `chain forward: rule 3 ("inter-network"): jump missing: unknown chain "missing"`},
		{"jump to base chain", sample(func(t *nftmodel.Table) {
			t.Chains[0].Rules[3].Exprs = []nftmodel.Expr{nftmodel.Jump("input")}
		}), `jump input: chain "input" is a base chain`},
		{"statement after verdict", sample(func(t *nftmodel.Table) {
			t.Chains[0].Rules[0].Exprs = []nftmodel.Expr{nftmodel.Accept(), nftmodel.Counter()}
		}), `"accept" must be the last expression of the rule`},
		{"mixed families", sample(func(t *nftmodel.Table) {
			t.Chains[0].Rules[0].Exprs = []nftmodel.Expr{nftmodel.IPSaddr().InSet("nat_v4"), nftmodel.IP6Daddr().Eq("::1"), nftmodel.Accept()}
		}), `rule mixes ipv4 and ipv6 matches`},
		{"masquerade in filter chain", sample(func(t *nftmodel.Table) {
			t.Chains[0].Rules[0].Exprs = []nftmodel.Expr{nftmodel.Masquerade()}
		}), `masquerade is only valid in a nat chain on hook postrouting`},
		{"bad ct state", sample(func(t *nftmodel.Table) {
			t.Chains[0].Rules[0].Exprs = []nftmodel.Expr{nftmodel.CtState("establised"), nftmodel.Accept()}
		}), `unknown ct state "establised"`},
		{"regular chain with policy", sample(func(t *nftmodel.Table) { t.Chains[1].Policy = nftmodel.VerdictDrop }),
			`chain isolate: a regular chain (no hook) takes no type, priority, policy or device`},
		{"bad hook", sample(func(t *nftmodel.Table) { t.Chains[0].Hook = "ingress" }), `chain forward: unknown hook "ingress"`},
		{"bad table name", sample(func(t *nftmodel.Table) { t.Name = "host net" }), `invalid table name "host net"`},
		{"comment quote", sample(func(t *nftmodel.Table) { t.Chains[0].Rules[0].Comment = `a"b` }), `contains a double quote`},
		{"concat literal", sample(func(t *nftmodel.Table) {
			t.Chains[0].Rules[0].Exprs = []nftmodel.Expr{nftmodel.Concat(nftmodel.Iifname(), nftmodel.Oifname()).Eq("a . b")}
		}), `can only be matched against a set`},
		{"interval ifname", sample(func(t *nftmodel.Table) { t.Sets[1].Interval = true }), `set bridges: key type ifname cannot be an interval`},
		{"nat chain in bridge", func() *nftmodel.Table {
			return nfttest.OneRule(nftmodel.FamilyBridge, nftmodel.ChainTypeNAT, nftmodel.HookPrerouting, nftmodel.Accept())
		},
			"chain c: a bridge table has no nat chains"},
		{"route chain in bridge", func() *nftmodel.Table {
			return nfttest.OneRule(nftmodel.FamilyBridge, nftmodel.ChainTypeRoute, nftmodel.HookOutput, nftmodel.Accept())
		},
			"chain c: a bridge table has no route chains"},
		{"unknown hook in bridge", func() *nftmodel.Table {
			return nfttest.OneRule(nftmodel.FamilyBridge, nftmodel.ChainTypeFilter, "ingress", nftmodel.Accept())
		},
			`chain c: unknown hook "ingress"`},
		{"bad family", func() *nftmodel.Table {
			t := nfttest.OneRule(nftmodel.FamilyInet, "", "", nftmodel.Accept())
			t.Family = 7
			return t
		}, "invalid family 7"},
		{"ether in inet", inet(nftmodel.EtherSaddr().Eq("02:00:00:00:00:01"), nftmodel.Drop()), "ether saddr is only valid in a bridge or netdev table"},
		{"arp in inet", inet(nftmodel.ArpSaddrIP().InSet("x"), nftmodel.Drop()), "arp saddr ip is only valid in a bridge or netdev table"},
		{"nfproto in bridge", bridge(nftmodel.NFProto().Eq("ipv4"), nftmodel.Drop()), "meta nfproto never matches in a bridge table"},
		{"fib in bridge", bridge(nftmodel.FibDaddrTypeLocal(), nftmodel.Drop()), "fib daddr type local is not valid in a bridge table"},
		{"masquerade in bridge", bridge(nftmodel.Masquerade()), "masquerade is not valid in a bridge table"},
		{"ip and arp", bridge(nftmodel.IPSaddr().Eq("10.0.0.1"), nftmodel.ArpSaddrIP().Eq("10.0.0.1"), nftmodel.Drop()), "rule mixes ipv4 and arp matches"},
		{"icmpv6 after tcp", inet(nftmodel.L4Proto().Eq("tcp"), nftmodel.ICMPv6Type().Eq("136"), nftmodel.Drop()), "rule mixes meta l4proto tcp and icmpv6"},
		{"bad mac", bridge(nftmodel.EtherSaddr().Eq("02:00:00:00:01"), nftmodel.Drop()), `"02:00:00:00:01" is not an Ethernet address`},
		{"bad ether type", bridge(nftmodel.EtherType().Eq("ipx"), nftmodel.Drop()), `"ipx" is not a valid number`},
		{"bad icmpv6 type", inet(nftmodel.ICMPv6Type().Eq("nd-bogus"), nftmodel.Drop()), `"nd-bogus" is not a valid number`},
		{"THRaw offset", inet(nftmodel.THRaw(60, nftmodel.KeyIPv6).Eq("::1"), nftmodel.Drop()), "@th,60,128: offset 60 is not a non-negative multiple of 8 bits"},
		{"bad ct status", inet(nftmodel.CtStatus("dnatted"), nftmodel.Accept()), `unknown ct status "dnatted"`},
		{"empty anon", inet(nftmodel.THDport().InAnon(), nftmodel.Accept()), "th dport: anonymous set: no elements"},
		{"bad anon element", inet(nftmodel.IPSaddr().InAnon("10.0.0.1", "fd00::1"), nftmodel.Accept()), `element "fd00::1": "fd00::1" is not an IPv4 address`},
		{"anon ifname wildcard", inet(nftmodel.Iifname().InAnon("a", "b*"), nftmodel.Accept()), `invalid interface name "b*"`},
		{"dnat in filter chain", withNAT(nftmodel.ChainTypeFilter, nftmodel.HookPrerouting, dnat, pm), "dnat is only valid in a nat chain on hook prerouting or output"},
		{"dnat in postrouting", withNAT(nftmodel.ChainTypeNAT, nftmodel.HookPostrouting, dnat, pm), "dnat is only valid in a nat chain on hook prerouting or output"},
		{"snat in prerouting", withNAT(nftmodel.ChainTypeNAT, nftmodel.HookPrerouting, nftmodel.SNATMap(nftmodel.IPSaddr(), "pm"), pm), "snat is only valid in a nat chain on hook postrouting or input"},
		{"dnat unknown map", withNAT(nftmodel.ChainTypeNAT, nftmodel.HookPrerouting, nftmodel.DNATMap(nftmodel.L4Proto(), "nope"), pm), `unknown map "nope"`},
		{"dnat key mismatch", withNAT(nftmodel.ChainTypeNAT, nftmodel.HookPrerouting, nftmodel.DNATMap(nftmodel.Concat(nftmodel.IPDaddr(), nftmodel.THDport()), "pm"), pm),
			`map "pm" has key type inet_proto . inet_service, key has type ipv4_addr . inet_service`},
		{"dnat verdict map", withNAT(nftmodel.ChainTypeNAT, nftmodel.HookPrerouting, nftmodel.DNATMap(nftmodel.Iifname(), "vm"), vm), `map "vm" is a verdict map`},
		{"dnat value type", withNAT(nftmodel.ChainTypeNAT, nftmodel.HookPrerouting, nftmodel.DNATMap(nftmodel.Iifname(), "m"),
			&nftmodel.Map{Name: "m", Key: []nftmodel.KeyType{nftmodel.KeyIfname}, Value: []nftmodel.KeyType{nftmodel.KeyInetService}}), `map "m" has value type inet_service, want an address`},
		{"dnat mixes families", withNAT(nftmodel.ChainTypeNAT, nftmodel.HookPrerouting, nftmodel.DNATMap(nftmodel.Concat(nftmodel.IP6Daddr(), nftmodel.THDport()), "m"),
			&nftmodel.Map{Name: "m", Key: []nftmodel.KeyType{nftmodel.KeyIPv6, nftmodel.KeyInetService}, Value: []nftmodel.KeyType{nftmodel.KeyIPv4}}), "rule mixes ipv4 and ipv6 matches"},
		{"vmap to data map", withNAT(nftmodel.ChainTypeFilter, nftmodel.HookForward, nftmodel.VMap(nftmodel.Concat(nftmodel.L4Proto(), nftmodel.THDport()), "pm"), pm), `map "pm" is not a verdict map`},
		{"vmap unknown map", withNAT(nftmodel.ChainTypeFilter, nftmodel.HookForward, nftmodel.VMap(nftmodel.Iifname(), "nope"), vm), `iifname vmap @nope: unknown map "nope"`},
		{"vmap key mismatch", withNAT(nftmodel.ChainTypeFilter, nftmodel.HookForward, nftmodel.VMap(nftmodel.IPSaddr(), "vm"), vm), `map "vm" has key type ifname, field has type ipv4_addr`},
		{"set lookup of a map", withNAT(nftmodel.ChainTypeFilter, nftmodel.HookForward, nftmodel.Iifname().InSet("vm"), vm), `"vm" is a map, not a set`},
		{"vmap missing chain", withNAT(nftmodel.ChainTypeFilter, nftmodel.HookForward, nftmodel.Accept(),
			&nftmodel.Map{Name: "vm", Key: []nftmodel.KeyType{nftmodel.KeyIfname}, Verdict: true, Elements: map[string]string{"a": "jump gone"}}),
			`map vm: element "a": jump gone: unknown chain "gone"`},
		{"vmap to base chain", withNAT(nftmodel.ChainTypeFilter, nftmodel.HookForward, nftmodel.Accept(),
			&nftmodel.Map{Name: "vm", Key: []nftmodel.KeyType{nftmodel.KeyIfname}, Verdict: true, Elements: map[string]string{"a": "goto c"}}),
			`map vm: element "a": goto c: chain "c" is a base chain`},
		{"vmap bad verdict", withNAT(nftmodel.ChainTypeFilter, nftmodel.HookForward, nftmodel.Accept(),
			&nftmodel.Map{Name: "vm", Key: []nftmodel.KeyType{nftmodel.KeyIfname}, Verdict: true, Elements: map[string]string{"a": "continue"}}),
			`map vm: element "a": unknown verdict "continue"`},
		{"verdict map with value", withNAT(nftmodel.ChainTypeFilter, nftmodel.HookForward, nftmodel.Accept(),
			&nftmodel.Map{Name: "vm", Key: []nftmodel.KeyType{nftmodel.KeyIfname}, Verdict: true, Value: []nftmodel.KeyType{nftmodel.KeyIPv4}}),
			"map vm: a verdict map takes no value type (has ipv4_addr)"},
		{"map without value type", withNAT(nftmodel.ChainTypeFilter, nftmodel.HookForward, nftmodel.Accept(), &nftmodel.Map{Name: "m", Key: []nftmodel.KeyType{nftmodel.KeyIfname}}),
			"map m: value: no key type"},
		{"bad map value", withNAT(nftmodel.ChainTypeFilter, nftmodel.HookForward, nftmodel.Accept(),
			&nftmodel.Map{Name: "m", Key: []nftmodel.KeyType{nftmodel.KeyInetProto, nftmodel.KeyInetService}, Value: []nftmodel.KeyType{nftmodel.KeyIPv4, nftmodel.KeyInetService},
				Elements: map[string]string{"tcp . 80": "10.0.0.1 . http"}}),
			`map m: element "tcp . 80": value: element "10.0.0.1 . http": "http" is not a valid number`},
		{"map value arity", withNAT(nftmodel.ChainTypeFilter, nftmodel.HookForward, nftmodel.Accept(),
			&nftmodel.Map{Name: "m", Key: []nftmodel.KeyType{nftmodel.KeyInetService}, Value: []nftmodel.KeyType{nftmodel.KeyIPv4, nftmodel.KeyInetService}, Elements: map[string]string{"80": "10.0.0.1"}}),
			`element "10.0.0.1" has 1 fields, key ipv4_addr . inet_service has 2`},
		{"map overlap", withNAT(nftmodel.ChainTypeFilter, nftmodel.HookForward, nftmodel.Accept(),
			&nftmodel.Map{Name: "m", Key: []nftmodel.KeyType{nftmodel.KeyIPv4}, Value: []nftmodel.KeyType{nftmodel.KeyIPv4}, Interval: true,
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
	for _, tbl := range []*nftmodel.Table{nfttest.Bridge(), nfttest.NAT(), nfttest.OneRule(nftmodel.FamilyInet, "", "", nftmodel.IPSaddr().Eq("10.0.0.1"), nftmodel.SNATMap(nftmodel.IPSaddr(), "obnat4"))} {
		if tbl.Name == "t" {
			tbl.Maps = nfttest.NAT().Maps[4:5]
		}
		if err := tbl.Validate(); err != nil {
			t.Errorf("%s %s: %v", tbl.Family, tbl.Name, err)
		}
	}
}

// cloneExpr returns a deep copy of e, as Chain.Clone makes it.
func cloneExpr(e nftmodel.Expr) nftmodel.Expr {
	c := &nftmodel.Chain{Rules: []nftmodel.Rule{{Exprs: []nftmodel.Expr{e}}}}
	return c.Clone().Rules[0].Exprs[0]
}
