package nft

import (
	"errors"
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata/")

// sampleTable is a representative hostnet table: the sets and chains of a
// NAT network, using every Expr the package offers.
func sampleTable() *Table {
	return &Table{
		Name: "hostnet",
		Sets: []*Set{
			{Name: "nat_v4", Key: []KeyType{KeyIPv4}, Interval: true,
				Elements: []string{"10.1.0.0/16", "10.0.0.0-10.0.0.255", "192.168.5.7", "10.2.0.1-10.2.0.9"}},
			{Name: "bridges", Key: []KeyType{KeyIfname}, Elements: []string{"hnbr-2", "hnbr-1"}, Comment: "hostnet bridges"},
			{Name: "intra", Key: []KeyType{KeyIfname, KeyIfname}, Elements: []string{"hnbr-2 . hnbr-2", "hnbr-1 . hnbr-1"}},
			{Name: "nat_v6", Key: []KeyType{KeyIPv6}, Interval: true, Elements: []string{"fd00:1::/64", "fd00::/64", "fd00:2::5"}},
			{Name: "ports", Key: []KeyType{KeyInetService}, Interval: true, Elements: []string{"8000-8080", "443", "80"}},
			{Name: "services", Key: []KeyType{KeyIPv4, KeyInetProto, KeyInetService}, Elements: []string{"10.0.0.5 . tcp . 80", "10.0.0.5 . 17 . 53"}},
			{Name: "empty", Key: []KeyType{KeyIPv6}},
		},
		Chains: []*Chain{
			{Name: "forward", Type: ChainTypeFilter, Hook: HookForward, Priority: PriorityFilter, Rules: []Rule{
				{Comment: "established", Exprs: []Expr{CtState("related", "established"), Accept()}},
				{Comment: "invalid", Exprs: []Expr{CtState("invalid"), Counter(), Drop()}},
				{Comment: "intra-network", Exprs: []Expr{Concat(Iifname(), Oifname()).InSet("intra"), Accept()}},
				{Comment: "inter-network", Exprs: []Expr{Iifname().InSet("bridges"), Oifname().InSet("bridges"), Jump("isolate")}},
				{Comment: "outbound", Exprs: []Expr{Iifname().InSet("bridges"), Oifname().NotInSet("bridges"), Accept()}},
			}},
			{Name: "isolate", Rules: []Rule{
				{Comment: "reject", Exprs: []Expr{Counter(), Reject()}},
			}},
			{Name: "postrouting", Type: ChainTypeNAT, Hook: HookPostrouting, Priority: PrioritySrcNAT, Rules: []Rule{
				{Comment: "masquerade v4", Exprs: []Expr{IPSaddr().InSet("nat_v4"), Oifname().NotInSet("bridges"), Masquerade()}},
				{Comment: "masquerade v6", Exprs: []Expr{IP6Saddr().InSet("nat_v6"), Oifname().NotInSet("bridges"), Masquerade()}},
			}},
			{Name: "input", Type: ChainTypeFilter, Hook: HookInput, Priority: PriorityFilter, Policy: VerdictDrop, Rules: []Rule{
				{Exprs: []Expr{Iifname().Eq("lo"), Accept()}},
				{Comment: "published ports", Exprs: []Expr{L4Proto().Eq("tcp"), THDport().InSet("ports"), Accept()}},
				{Comment: "dns", Exprs: []Expr{IPSaddr().Eq("10.0.0.0/8"), IPDaddr().Neq("10.0.0.1-10.0.0.3"), L4Proto().Eq("udp"), THDport().Eq("53"), Accept()}},
				{Comment: "service", Exprs: []Expr{Concat(IPDaddr(), L4Proto(), THDport()).InSet("services"), Goto("isolate")}},
				{Comment: "v6", Exprs: []Expr{Iifname().Eq("hnbr-*"), NFProto().Eq("ipv6"), IP6Daddr().Neq("fd00::1"), IP6Saddr().NotInSet("nat_v6"), Return()}},
				{Comment: "not established", Exprs: []Expr{CtStateMatch{States: []string{"established"}, Negate: true}, THSport().Neq("1-1023"), Counter()}},
			}},
		},
	}
}

func TestGoldenString(t *testing.T) {
	tbl := sampleTable()
	if err := tbl.Validate(); err != nil {
		t.Fatalf("sample table invalid: %v", err)
	}
	got := tbl.String()
	path := filepath.Join("testdata", "sample.nft")
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
	// Element order and set order in the input do not change the text.
	shuffled := sampleTable()
	shuffled.Sets[0], shuffled.Sets[1] = shuffled.Sets[1], shuffled.Sets[0]
	el := shuffled.Sets[1].Elements
	el[0], el[len(el)-1] = el[len(el)-1], el[0]
	if shuffled.String() != got {
		t.Error("String() depends on set or element order")
	}
}

func TestExprStrings(t *testing.T) {
	for _, tc := range []struct {
		e    Expr
		want string
	}{
		{Iifname().InSet("bridges"), "iifname @bridges"},
		{Oifname().NotInSet("bridges"), "oifname != @bridges"},
		{IPSaddr().InSet("nat_v4"), "ip saddr @nat_v4"},
		{Concat(Iifname(), Oifname()).InSet("intra"), "iifname . oifname @intra"},
		{Iifname().Eq("eth0"), `iifname "eth0"`},
		{Oifname().Neq("hn*"), `oifname != "hn*"`},
		{IP6Daddr().Eq("fd00:0::1"), "ip6 daddr fd00::1"},
		{IPDaddr().Eq("10.0.0.0-10.0.0.127"), "ip daddr 10.0.0.0/25"},
		{L4Proto().Eq("6"), "meta l4proto tcp"},
		{NFProto().Eq("ipv4"), "meta nfproto ipv4"},
		{THDport().Eq("8080"), "th dport 8080"},
		{CtState("related", "established"), "ct state established,related"},
		{CtState("invalid"), "ct state invalid"},
		{Counter(), "counter"},
		{Masquerade(), "masquerade"},
		{Accept(), "accept"},
		{Drop(), "drop"},
		{Return(), "return"},
		{Jump("x"), "jump x"},
		{Goto("y"), "goto y"},
		{Reject(), "reject"},
	} {
		if got := tc.e.String(); got != tc.want {
			t.Errorf("String() = %q, want %q", got, tc.want)
		}
	}
}

func TestValidateErrors(t *testing.T) {
	for _, tc := range []struct {
		name   string
		mutate func(*Table)
		want   string // substring of the error
	}{
		{"unknown set", func(t *Table) {
			t.Chains[0].Rules[0].Exprs = []Expr{Iifname().InSet("nope"), Accept()}
		}, `chain forward: rule 0 ("established"): iifname @nope: unknown set "nope"`},
		{"set type mismatch", func(t *Table) {
			t.Chains[0].Rules[0].Exprs = []Expr{IPSaddr().InSet("bridges"), Accept()}
		}, `set "bridges" has type ifname, field has type ipv4_addr`},
		{"bad ipv4 element", func(t *Table) { t.Sets[0].Elements = append(t.Sets[0].Elements, "10.0.0.300") },
			`set nat_v4: element "10.0.0.300": "10.0.0.300" is not an IPv4 address`},
		{"ipv6 in ipv4 set", func(t *Table) { t.Sets[0].Elements = []string{"fd00::1"} },
			`set nat_v4: element "fd00::1": "fd00::1" is not an IPv4 address`},
		{"host bits", func(t *Table) { t.Sets[0].Elements = []string{"10.0.0.1/24"} },
			`set nat_v4: element "10.0.0.1/24": prefix "10.0.0.1/24" has host bits set (want 10.0.0.0/24)`},
		{"prefix without interval", func(t *Table) {
			t.Sets = append(t.Sets, &Set{Name: "plain", Key: []KeyType{KeyIPv4}, Elements: []string{"10.0.0.0/24"}})
		}, `set plain: element "10.0.0.0/24": prefix "10.0.0.0/24" needs an interval set`},
		{"overlap", func(t *Table) { t.Sets[0].Elements = []string{"10.0.0.0/8", "10.1.0.0/16"} },
			`set nat_v4: elements "10.0.0.0/8" and "10.1.0.0/16" overlap`},
		{"duplicate element", func(t *Table) { t.Sets[1].Elements = []string{"a", "a"} },
			`set bridges: duplicate element "a"`},
		{"long ifname", func(t *Table) { t.Sets[1].Elements = []string{"a234567890123456"} },
			`set bridges: element "a234567890123456": interface name "a234567890123456" longer than 15 bytes`},
		{"concat arity", func(t *Table) { t.Sets[2].Elements = []string{"hnbr-1"} },
			`set intra: element "hnbr-1" has 1 fields, key ifname . ifname has 2`},
		{"bad port", func(t *Table) { t.Sets[4].Elements = []string{"70000"} },
			`set ports: element "70000": "70000" is not a valid number`},
		{"duplicate set", func(t *Table) { t.Sets = append(t.Sets, &Set{Name: "bridges", Key: []KeyType{KeyIfname}}) },
			`duplicate set name "bridges"`},
		{"duplicate chain", func(t *Table) { t.Chains = append(t.Chains, &Chain{Name: "isolate"}) },
			`duplicate chain name "isolate"`},
		{"jump to missing chain", func(t *Table) {
			t.Chains[0].Rules[3].Exprs = []Expr{Jump("missing")}
		}, `chain forward: rule 3 ("inter-network"): jump missing: unknown chain "missing"`},
		{"jump to base chain", func(t *Table) {
			t.Chains[0].Rules[3].Exprs = []Expr{Jump("input")}
		}, `jump input: chain "input" is a base chain`},
		{"statement after verdict", func(t *Table) {
			t.Chains[0].Rules[0].Exprs = []Expr{Accept(), Counter()}
		}, `"accept" must be the last expression of the rule`},
		{"mixed families", func(t *Table) {
			t.Chains[0].Rules[0].Exprs = []Expr{IPSaddr().InSet("nat_v4"), IP6Daddr().Eq("::1"), Accept()}
		}, `rule mixes ipv4 and ipv6 matches`},
		{"masquerade in filter chain", func(t *Table) {
			t.Chains[0].Rules[0].Exprs = []Expr{Masquerade()}
		}, `masquerade is only valid in a nat chain on hook postrouting`},
		{"bad ct state", func(t *Table) {
			t.Chains[0].Rules[0].Exprs = []Expr{CtState("establised"), Accept()}
		}, `unknown ct state "establised"`},
		{"regular chain with policy", func(t *Table) { t.Chains[1].Policy = VerdictDrop },
			`chain isolate: a regular chain (no hook) takes no type, priority or policy`},
		{"bad hook", func(t *Table) { t.Chains[0].Hook = "ingress" }, `chain forward: unknown hook "ingress"`},
		{"bad table name", func(t *Table) { t.Name = "host net" }, `invalid table name "host net"`},
		{"comment quote", func(t *Table) { t.Chains[0].Rules[0].Comment = `a"b` }, `contains a double quote`},
		{"concat literal", func(t *Table) {
			t.Chains[0].Rules[0].Exprs = []Expr{Concat(Iifname(), Oifname()).Eq("a . b")}
		}, `can only be matched against a set`},
		{"interval ifname", func(t *Table) { t.Sets[1].Interval = true }, `set bridges: key type ifname cannot be an interval`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tbl := sampleTable()
			tc.mutate(tbl)
			err := tbl.Validate()
			if err == nil {
				t.Fatalf("Validate() = nil, want error containing %q", tc.want)
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Errorf("Validate() = %q, want it to contain %q", err, tc.want)
			}
		})
	}
}

func TestElementRoundTrip(t *testing.T) {
	for _, tc := range []struct {
		keys     []KeyType
		interval bool
		in, want string
	}{
		{[]KeyType{KeyIPv4}, true, "10.0.0.0-10.0.0.255", "10.0.0.0/24"},
		{[]KeyType{KeyIPv4}, true, "0.0.0.0/0", "0.0.0.0/0"},
		{[]KeyType{KeyIPv4}, true, "10.0.0.1-10.0.0.2", "10.0.0.1-10.0.0.2"},
		{[]KeyType{KeyIPv4}, true, "255.255.255.0/24", "255.255.255.0/24"},
		{[]KeyType{KeyIPv4}, false, "10.0.0.1/32", "10.0.0.1"},
		{[]KeyType{KeyIPv6}, true, "FD00::/8", "fd00::/8"},
		{[]KeyType{KeyIPv6}, true, "::/0", "::/0"},
		{[]KeyType{KeyInetService}, true, "0-65535", "0-65535"},
		{[]KeyType{KeyInetService}, true, "65535", "65535"},
		{[]KeyType{KeyInetProto}, false, "58", "icmpv6"},
		{[]KeyType{KeyIfname, KeyIfname}, false, "a . b", "a . b"},
		{[]KeyType{KeyIPv4, KeyInetService}, true, "10.0.0.0/8 . 80-90", "10.0.0.0/8 . 80-90"},
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
	// Adjacent ranges decode apart.
	keys := []KeyType{KeyIPv4}
	a, _ := parseElement(keys, "10.0.0.0/25", modeInterval)
	b, _ := parseElement(keys, "10.0.0.128/25", modeInterval)
	kel := append(b.kernelElements(true), a.kernelElements(true)...)
	back, err := decodeElements(keys, true, kel)
	if err != nil || len(back) != 2 || back[0].canonical(keys) != "10.0.0.0/25" || back[1].canonical(keys) != "10.0.0.128/25" {
		t.Errorf("adjacent ranges decoded as %v, %v", back, err)
	}
}

func TestRuleIDChangesWithBody(t *testing.T) {
	r1 := Rule{Comment: "x", Exprs: []Expr{Iifname().Eq("a"), Accept()}}
	r2 := Rule{Comment: "x", Exprs: []Expr{Iifname().Eq("b"), Accept()}}
	id1, id2 := ruleID(r1, nil), ruleID(r2, nil)
	if id1 == id2 {
		t.Errorf("rules with different bodies share id %q", id1)
	}
	if !strings.HasPrefix(id1, "x #") || len(id1) != len("x #")+8 {
		t.Errorf("id %q is not \"<comment> #<8 hex>\"", id1)
	}
	if id := ruleID(Rule{Exprs: r1.Exprs}, nil); !strings.HasPrefix(id, "#") || len(id) != 9 {
		t.Errorf("id without comment is %q, want \"#<8 hex>\"", id)
	}
}

func TestCloneIsDeep(t *testing.T) {
	a := sampleTable()
	b := a.Clone()
	if a.String() != b.String() {
		t.Fatal("clone renders differently")
	}
	a.Sets[0].Elements[0] = "172.16.0.0/12"
	a.Chains[0].Rules[0].Comment = "changed"
	a.Chains[0].Rules[2].Exprs[0].(Match).Field.parts[0].text = "mutated"
	if a.String() == b.String() || strings.Contains(b.String(), "mutated") || strings.Contains(b.String(), "172.16") {
		t.Error("mutating the original changed the clone")
	}
}

func TestFake(t *testing.T) {
	f := NewFake()
	tbl := sampleTable()
	if err := f.Apply(tbl); err != nil {
		t.Fatal(err)
	}
	first := f.Dump()
	if first != tbl.String() {
		t.Error("Dump differs from the applied table's String")
	}
	// Same content again, even reordered: no change.
	again := sampleTable()
	again.Sets[1].Elements = []string{"hnbr-1", "hnbr-2"}
	if err := f.Apply(again); err != nil {
		t.Fatal(err)
	}
	if f.Changes() != 1 || f.Applies() != 2 {
		t.Errorf("changes=%d applies=%d, want 1 and 2", f.Changes(), f.Applies())
	}
	// The Fake holds a copy: mutating the caller's table changes nothing.
	tbl.Sets[0].Elements = nil
	if f.Dump() != first {
		t.Error("Fake shares memory with the applied table")
	}
	// Atomic failure: an invalid table changes nothing.
	bad := sampleTable()
	bad.Sets[1].Elements = append(bad.Sets[1].Elements, "hnbr-3")
	bad.Chains[0].Rules[0].Exprs = []Expr{IPSaddr().InSet("missing"), Accept()}
	if err := f.Apply(bad); err == nil || !strings.Contains(err.Error(), `unknown set "missing"`) {
		t.Errorf("Apply(bad) = %v", err)
	}
	if f.Dump() != first || f.Changes() != 1 {
		t.Error("failed Apply changed the Fake")
	}
	// Injected failure.
	boom := errors.New("boom")
	f.FailNext(boom)
	changed := sampleTable()
	changed.Sets[1].Elements = []string{"hnbr-9"}
	if err := f.Apply(changed); !errors.Is(err, boom) {
		t.Errorf("Apply after FailNext = %v", err)
	}
	if f.Dump() != first {
		t.Error("injected failure changed the Fake")
	}
	if err := f.Apply(changed); err != nil || f.Changes() != 2 || !strings.Contains(f.Dump(), `"hnbr-9"`) {
		t.Errorf("Apply(changed) = %v, changes %d", err, f.Changes())
	}
	// Maps are accepted, as by the Kernel.
	withMap := sampleTable()
	withMap.Maps = []*Map{{Name: "m", Key: []KeyType{KeyIPv4}, Verdict: true, Elements: map[string]string{"10.0.0.1": "jump isolate"}}}
	if err := f.Apply(withMap); err != nil {
		t.Errorf("Apply(with map) = %v", err)
	}
	if err := f.Apply(changed); err != nil {
		t.Fatal(err)
	}
	// Determinism: two Fakes with tables applied in different orders dump alike.
	other := &Table{Name: "aaa", Chains: []*Chain{{Name: "c"}}}
	f1, f2 := NewFake(), NewFake()
	f1.Apply(sampleTable())
	f1.Apply(other)
	f2.Apply(other)
	f2.Apply(sampleTable())
	if f1.Dump() != f2.Dump() || !strings.HasPrefix(f1.Dump(), "table inet aaa") {
		t.Error("Dump is not deterministic")
	}
	if err := f1.Delete("aaa"); err != nil {
		t.Fatal(err)
	}
	if err := f1.Delete("aaa"); err != nil {
		t.Errorf("second Delete: %v", err)
	}
	if f1.Table("aaa") != nil || f1.Dump() != sampleTable().String() {
		t.Error("Delete left the table")
	}
}

func TestMapRendering(t *testing.T) {
	tbl := &Table{Name: "t",
		Chains: []*Chain{{Name: "ep1"}},
		Maps: []*Map{
			{Name: "fwd", Key: []KeyType{KeyIPv4}, Verdict: true, Elements: map[string]string{"10.0.0.9": "jump ep1", "10.0.0.1": "drop"}},
			{Name: "dnat", Key: []KeyType{KeyInetProto, KeyInetService}, Value: []KeyType{KeyIPv4}, Elements: map[string]string{"tcp . 80": "10.0.0.2"}},
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
