package nftmodel

import (
	"encoding/binary"
	"reflect"
	"strings"
	"testing"
)

// Element texts parse, print canonically, and survive the kernel's
// encoding and back.
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
		{[]KeyType{KeyInetProto}, false, "ipv6-icmp", "icmpv6"},
		{[]KeyType{KeyIfname, KeyIfname}, false, "a . b", "a . b"},
		{[]KeyType{KeyIPv4, KeyInetService}, true, "10.0.0.0/8 . 80-90", "10.0.0.0/8 . 80-90"},
		{[]KeyType{KeyEther}, false, "02:00:00:00:00:AB", "02:00:00:00:00:ab"},
		{[]KeyType{KeyEther}, true, "02:00:00:00:00:00-02:00:00:00:00:ff", "02:00:00:00:00:00-02:00:00:00:00:ff"},
		{[]KeyType{KeyEtherType}, false, "0x86dd", "ip6"},
		{[]KeyType{KeyEtherType}, false, "2054", "arp"},
		{[]KeyType{KeyEtherType}, false, "0x88cc", "0x88cc"},
		{[]KeyType{KeyICMPv6Type}, false, "135", "nd-neighbor-solicit"},
		{[]KeyType{KeyICMPv6Type}, true, "133-137", "nd-router-solicit-nd-redirect"},
		{[]KeyType{KeyICMPv6Type}, false, "200", "200"},
		{[]KeyType{KeyIfname, KeyEther}, false, "hnv1 . 02:00:00:00:00:01", "hnv1 . 02:00:00:00:00:01"},
		{[]KeyType{KeyIfname, KeyEther}, false, `"hnv1" . 02:00:00:00:00:01`, `hnv1 . 02:00:00:00:00:01`},
		{[]KeyType{KeyInteger}, false, "4294967295", "4294967295"},
		{[]KeyType{KeyInteger, KeyIPv4}, false, "1 . 10.0.0.1", "1 . 10.0.0.1"},
	} {
		e, err := parseElement(tc.keys, tc.in, modeFor(tc.interval))
		if err != nil {
			t.Errorf("parse %q: %v", tc.in, err)
			continue
		}
		if got := e.canonical(tc.keys); got != tc.want {
			t.Errorf("canonical(%q) = %q, want %q", tc.in, got, tc.want)
		}
		back, err := decodeElements(tc.keys, tc.interval, e.lower(tc.keys, tc.interval))
		if err != nil || len(back) != 1 || back[0].e.canonical(tc.keys) != tc.want {
			t.Errorf("kernel round trip of %q = %v, %v", tc.in, back, err)
		}
	}
	// Adjacent ranges decode apart.
	keys := []KeyType{KeyIPv4}
	a, _ := parseElement(keys, "10.0.0.0/25", modeInterval)
	b, _ := parseElement(keys, "10.0.0.128/25", modeInterval)
	back, err := decodeElements(keys, true, append(b.lower(keys, true), a.lower(keys, true)...))
	if err != nil || len(back) != 2 || back[0].e.canonical(keys) != "10.0.0.0/25" || back[1].e.canonical(keys) != "10.0.0.128/25" {
		t.Errorf("adjacent ranges decoded as %v, %v", back, err)
	}
	// An ifname . ether_addr key is 16 + 8 bytes, the MAC zero padded.
	e, _ := parseElement([]KeyType{KeyIfname, KeyEther}, "a . 02:00:00:00:00:01", modeSingle)
	if k := e.lower([]KeyType{KeyIfname, KeyEther}, false)[0].Key; len(k) != 24 || k[16] != 2 || k[21] != 1 || k[22] != 0 || k[23] != 0 {
		t.Errorf("ifname . ether_addr key = %x", k)
	}
	// An integer (what numgen and jhash produce) is in host order in the
	// kernel, in numeric order in the model.
	e, _ = parseElement([]KeyType{KeyInteger}, "258", modeSingle)
	if k := e.lower([]KeyType{KeyInteger}, false)[0].Key; binary.NativeEndian.Uint32(k) != 258 {
		t.Errorf("integer key = %x", k)
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
	a := &Table{Name: "t", Sets: []*Set{{Name: "s", Key: []KeyType{KeyIPv4}, Elements: []string{"10.0.0.1"}}},
		Chains: []*Chain{{Name: "c", Rules: []Rule{{Comment: "r", Exprs: []Expr{
			IPSaddr().InSet("s"), DNATMap(JHash(Concat(IPSaddr(), THSport()), 2, 0), "m"), Accept()}}}}}}
	b := a.Clone()
	if a.String() != b.String() {
		t.Fatal("clone renders differently")
	}
	a.Sets[0].Elements[0] = "172.16.0.1"
	a.Chains[0].Rules[0].Comment = "changed"
	a.Chains[0].Rules[0].Exprs[0].(Match).Field.parts[0].text = "mutated"
	a.Chains[0].Rules[0].Exprs[1].(NATMapStmt).Key.parts[0].inputs[0].text = "mutated"
	if a.String() == b.String() || strings.Contains(b.String(), "mutated") || strings.Contains(b.String(), "172.16") {
		t.Errorf("mutating the original changed the clone:\n%s", b)
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
	if err != nil || a.Def.Interval || len(a.Elems) != 2 || !a.Def.Anonymous || !a.Def.Constant || a.Def.Name != "__set%d" || a.Def.ID == 0 {
		t.Errorf("plain anon set = %+v, %v", a, err)
	}
	a, err = newAnonSet([]KeyType{KeyIPv4}, []string{"10.0.0.0/8", "10.1.0.0/16", "10.255.255.255-11.0.0.3", "192.168.0.1"})
	if err != nil || !a.Def.Interval {
		t.Fatalf("interval anon set = %+v, %v", a, err)
	}
	back, err := decodeElements([]KeyType{KeyIPv4}, true, a.Elems)
	var got []string
	for _, d := range back {
		got = append(got, d.e.canonical([]KeyType{KeyIPv4}))
	}
	if want := []string{"10.0.0.0-11.0.0.3", "192.168.0.1"}; err != nil || !reflect.DeepEqual(got, want) {
		t.Errorf("merged anon set = %q, %v; want %q", got, err, want)
	}
	// A concatenation with a range is a pipapo set (key and key end)...
	a, err = newAnonSet([]KeyType{KeyIPv4, KeyInetService}, []string{"10.0.0.0/24 . 80-90"})
	if err != nil || !a.Def.Interval || !a.Def.Concat || len(a.Elems) != 1 || len(a.Elems[0].KeyEnd) != 8 {
		t.Errorf("concat anon set = %+v, %v", a, err)
	}
	// ... which refuses an element whose first or last point lies in one
	// added before it (in key order).
	if _, err = newAnonSet([]KeyType{KeyIPv4, KeyInetService}, []string{"10.0.0.5 . 80", "10.0.0.0/24 . 0-1000"}); err == nil ||
		!strings.Contains(err.Error(), `element "10.0.0.5 . 80" overlaps "10.0.0.0/24 . 0-1000"`) {
		t.Errorf("clashing concat anon set: %v", err)
	}
	// Each rule gets its own set, with a batch-unique ID.
	c, err := Compile(&Table{Name: "t", Chains: []*Chain{{Name: "c", Rules: []Rule{{Exprs: []Expr{
		THDport().InAnon("80"), THSport().InAnon("1-1023"), Accept()}}}}}})
	if err != nil {
		t.Fatal(err)
	}
	anon := c.chains["c"].rules[0].ir.Anon
	if len(anon) != 2 || anon[0].Def.ID == anon[1].Def.ID || !anon[1].Def.Interval {
		t.Errorf("rule anon sets = %+v", anon)
	}
}

// The index finds the elements that keep the kernel from adding one: any
// overlap in a single-field set; a first or last point inside an element
// in a concatenation (checked against a real kernel in the dataplane).
func TestClash(t *testing.T) {
	parse := func(keys []KeyType, texts ...string) []element {
		var out []element
		for _, s := range texts {
			e, err := parseElement(keys, s, modeInterval)
			if err != nil {
				t.Fatal(err)
			}
			out = append(out, e)
		}
		return out
	}
	v4, svc := []KeyType{KeyIPv4}, []KeyType{KeyIPv4, KeyInetService}
	for _, tc := range []struct {
		keys      []KeyType
		have, add string
		clash     bool
	}{
		{v4, "10.0.0.0/24", "10.0.0.128/25", true},
		{v4, "10.0.0.0/24", "10.0.0.0/16", true},
		{v4, "10.0.0.5", "10.0.0.0/24", true},
		{v4, "10.0.0.0/24", "10.0.1.0/24", false},
		{v4, "10.0.0.0/24", "9.255.255.0-10.0.0.0", true},
		{v4, "10.0.0.0/24", "9.0.0.0-9.255.255.255", false},
		{svc, "10.0.0.0/24 . 80-90", "10.0.0.128/25 . 85-100", true},
		{svc, "10.0.0.0/24 . 80-90", "10.0.0.0/24 . 0-85", true},
		{svc, "10.0.0.0/24 . 80-90", "10.0.0.100 . 70-100", false}, // crosses it, no point inside
		{svc, "10.0.0.5 . 80", "10.0.0.0/24 . 0-1000", false},      // covers it
		{svc, "10.0.0.0/24 . 0-1000", "10.0.0.5 . 80", true},
		{svc, "10.0.0.0/24 . 80-90", "10.0.0.0/24 . 91-100", false},
		{svc, "10.0.0.0/8 . 80", "10.255.0.1 . 80", true}, // found despite elements in between
	} {
		// Elements around it, one inside the first field of the /8 case.
		others := []string{"1.1.1.1", "192.168.0.0/16"}
		if len(tc.keys) > 1 {
			others = []string{"1.1.1.1 . 1", "10.1.0.0/16 . 1"}
		}
		idx := newSortedElems(parse(tc.keys, append(others, tc.have)...))
		_, got := idx.clash(parse(tc.keys, tc.add)[0])
		if got != tc.clash {
			t.Errorf("%s + %s: clash %v, want %v", tc.have, tc.add, got, tc.clash)
		}
	}
}
