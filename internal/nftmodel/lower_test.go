package nftmodel_test

import (
	"encoding/binary"
	"reflect"
	"strings"
	"testing"

	"github.com/hostnet/hostnet/internal/nftmodel"
	"github.com/hostnet/hostnet/internal/nftmodel/nfttest"
)

// fresh plans the creation of tbl: the batch an applier sends to an empty
// kernel.
func fresh(t *testing.T, tbl *nftmodel.Table) *nftmodel.Batch {
	t.Helper()
	b := &nftmodel.Batch{}
	if err := b.Plan(nfttest.Compile(t, tbl), nil); err != nil {
		t.Fatal(err)
	}
	return b
}

// ruleIR returns the IR of rule i of chain.
func ruleIR(t *testing.T, tbl *nftmodel.Table, chain string, i int) []nftmodel.IRExpr {
	t.Helper()
	for _, s := range fresh(t, tbl).Steps {
		if s.Kind == nftmodel.StepAddRules && s.Name == chain {
			return s.Rules[i].Exprs
		}
	}
	t.Fatalf("no rules of chain %s", chain)
	return nil
}

// A map's elements survive the kernel's encoding (as a batch creates them,
// as a reading of the kernel records them) and back.
func TestMapElementRoundTrip(t *testing.T) {
	tbl := nfttest.NAT()
	want := nfttest.Compile(t, tbl).Table(nil)
	got := nftmodel.NewState(tbl.Family, tbl.Name)
	for _, s := range fresh(t, tbl).Steps {
		if s.Kind != nftmodel.StepAddElements {
			continue
		}
		m := nfttest.MapOf(tbl, s.Name)
		var elems []nftmodel.SetElem
		for _, g := range s.Elems {
			elems = append(elems, g...)
		}
		got.ReadMap(s.Name, m.Key, m.Value, m.Verdict, m.Interval, elems)
	}
	if g, w := got.Table(nil).String(), want.String(); g != w {
		t.Errorf("round trip:\n%s\nwant:\n%s", g, w)
	}
	// A concatenated value is padded like a concatenated key.
	for _, s := range fresh(t, tbl).Steps {
		if s.Kind == nftmodel.StepAddElements && s.Name == "pm4" {
			if v := s.Elems[0][0].Val; !reflect.DeepEqual(v, []byte{10, 0, 0, 2, 0, 80, 0, 0}) { // tcp . 8080 (tcp sorts before udp)
				t.Errorf("value of tcp . 8080 = %v", v)
			}
		}
	}
	// A verdict the model does not write makes the map unreadable: it is
	// recreated.
	bad := nftmodel.NewState(tbl.Family, tbl.Name)
	bad.ReadMap("fwd", []nftmodel.KeyType{nftmodel.KeyIfname}, nil, true, false,
		[]nftmodel.SetElem{{Key: make([]byte, 16), Verdict: &nftmodel.IRVerdict{Code: -1}}})
	if b := (&nftmodel.Batch{}); b.Plan(nfttest.Compile(t, tbl), bad) != nil || !strings.Contains(strings.Join(b.Ops(), ";"), "delete map fwd") {
		t.Errorf("an unreadable map is not recreated: %q", b.Ops())
	}
}

// Key types map to nft's data types and back.
func TestDatatypes(t *testing.T) {
	keys := []nftmodel.KeyType{nftmodel.KeyIfname, nftmodel.KeyIPv4, nftmodel.KeyInetService}
	d := nftmodel.DatatypeOf(keys)
	if d.Name != "ifname . ipv4_addr . inet_service" || d.Bytes != 16+4+4 || d.Magic != 41<<12|7<<6|13 {
		t.Errorf("DatatypeOf = %+v", d)
	}
	if back, ok := nftmodel.KeysOf(d.Magic, d.Bytes); !ok || !reflect.DeepEqual(back, keys) {
		t.Errorf("KeysOf = %v, %v", back, ok)
	}
	if _, ok := nftmodel.KeysOf(d.Magic, d.Bytes+4); ok {
		t.Error("KeysOf accepted a wrong length")
	}
	if _, ok := nftmodel.KeysOf(19, 4); ok {
		t.Error("KeysOf accepted mark, which the model does not know")
	}
}

// The MAC rewrite statement: its text, its IR, and what the model
// refuses of it.
func TestMACRewrite(t *testing.T) {
	for _, tc := range []struct {
		e    nftmodel.Expr
		want string
	}{
		{nftmodel.SetPayload(nftmodel.EtherSaddr(), "02:00:00:00:00:AB"), "ether saddr set 02:00:00:00:00:ab"},
		{nftmodel.SetPayload(nftmodel.EtherDaddr(), "02:00:00:00:00:01"), "ether daddr set 02:00:00:00:00:01"},
	} {
		if got := tc.e.String(); got != tc.want {
			t.Errorf("String() = %q, want %q", got, tc.want)
		}
	}
	mac := nfttest.OneRule(nftmodel.FamilyBridge, nftmodel.ChainTypeFilter, nftmodel.HookPostrouting,
		nftmodel.EtherSaddr().Eq("02:00:00:00:00:02"), nftmodel.SetPayload(nftmodel.EtherSaddr(), "02:00:00:00:00:01"), nftmodel.Accept())
	ir := ruleIR(t, mac, "c", 0)
	if want := []nftmodel.IRExpr{
		nftmodel.IRImmediate{Dest: nftmodel.Reg1, Data: []byte{2, 0, 0, 0, 0, 1}},
		nftmodel.IRPayloadWrite{Source: nftmodel.Reg1, Base: nftmodel.PayloadLinkHeader, Offset: 6, Len: 6},
	}; !reflect.DeepEqual(ir[2:4], want) {
		t.Errorf("ether saddr set: %#v", ir)
	}
	for _, tc := range []struct {
		name string
		tbl  *nftmodel.Table
		want string
	}{
		{"set in inet", nfttest.OneRule(nftmodel.FamilyInet, "", "", nftmodel.SetPayload(nftmodel.EtherSaddr(), "02:00:00:00:00:01")),
			"ether saddr is only valid in a bridge or netdev table"},
		{"set an IP field", nfttest.OneRule(nftmodel.FamilyBridge, "", "", nftmodel.SetPayload(nftmodel.IPSaddr(), "10.0.0.1")),
			"only link-layer header fields can be set"},
		{"set a bad MAC", nfttest.OneRule(nftmodel.FamilyBridge, "", "", nftmodel.SetPayload(nftmodel.EtherSaddr(), "02:00")),
			`"02:00" is not an Ethernet address`},
	} {
		if err := tc.tbl.Validate(); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: Validate() = %v, want %q", tc.name, err, tc.want)
		}
	}
}

// The expressions of load balancing, numgen and jhash, as map keys: their
// text, their IR, and what the model refuses of them.
func TestBalance(t *testing.T) {
	for _, tc := range []struct {
		e    nftmodel.Expr
		want string
	}{
		{nftmodel.NumgenRandom(2).Eq("1"), "numgen random mod 2 1"},
		{nftmodel.DNATMap(nftmodel.NumgenRandom(2), "lb"), "dnat to numgen random mod 2 map @lb"},
		{nftmodel.DNATMap(nftmodel.NumgenInc(3), "lb"), "dnat to numgen inc mod 3 map @lb"},
		{nftmodel.VMap(nftmodel.JHash(nftmodel.Concat(nftmodel.IPSaddr(), nftmodel.THSport()), 4, 0xbeef), "pick"),
			"jhash ip saddr . th sport mod 4 seed 0xbeef vmap @pick"},
		{nftmodel.Concat(nftmodel.JHash(nftmodel.IPSaddr(), 2, 0), nftmodel.THDport()).InSet("s"), "jhash ip saddr mod 2 . th dport @s"},
	} {
		if got := tc.e.String(); got != tc.want {
			t.Errorf("String() = %q, want %q", got, tc.want)
		}
	}
	lb := &nftmodel.Table{Name: "t",
		Maps: []*nftmodel.Map{{Name: "lb", Key: []nftmodel.KeyType{nftmodel.KeyInteger}, Value: []nftmodel.KeyType{nftmodel.KeyIPv4},
			Elements: map[string]string{"0": "10.0.0.1", "1": "10.0.0.2"}}},
		Chains: []*nftmodel.Chain{{Name: "c", Type: nftmodel.ChainTypeNAT, Hook: nftmodel.HookPrerouting, Priority: nftmodel.PriorityDstNAT, Rules: []nftmodel.Rule{
			{Exprs: []nftmodel.Expr{nftmodel.DNATMap(nftmodel.NumgenRandom(2), "lb")}},
			{Exprs: []nftmodel.Expr{nftmodel.L4Proto().Eq("tcp"), nftmodel.DNATMap(nftmodel.JHash(nftmodel.Concat(nftmodel.IPSaddr(), nftmodel.THSport()), 2, 0), "lb")}},
		}}}}
	if got, want := ruleIR(t, lb, "c", 0), []nftmodel.IRExpr{
		nftmodel.IRMeta{Key: nftmodel.MetaNFProto, Dest: nftmodel.Reg1},
		nftmodel.IRCmp{Op: nftmodel.CmpEq, Reg: nftmodel.Reg1, Data: []byte{2}},
		nftmodel.IRNumgen{Type: nftmodel.NumgenTypeRandom, Modulus: 2, Dest: nftmodel.Reg1},
		nftmodel.IRLookup{Source: nftmodel.Reg1, Set: "lb", Dest: nftmodel.Reg1, HasDest: true},
		nftmodel.IRNAT{Type: nftmodel.NATTypeDst, Family: nftmodel.NetProtoIPv4, AddrMin: nftmodel.Reg1, AddrMax: nftmodel.Reg1},
	}; !reflect.DeepEqual(got, want) {
		t.Errorf("dnat to numgen:\n%#v\nwant\n%#v", got, want)
	}
	// jhash loads its inputs where its value goes, as a concatenation,
	// and hashes their 8 bytes.
	got := ruleIR(t, lb, "c", 1)
	if want := []nftmodel.IRExpr{
		nftmodel.IRPayload{Base: nftmodel.PayloadNetworkHeader, Offset: 12, Len: 4, Dest: nftmodel.Reg1},
		nftmodel.IRPayload{Base: nftmodel.PayloadTransportHeader, Offset: 0, Len: 2, Dest: nftmodel.Reg32(1)},
		nftmodel.IRHash{Type: nftmodel.HashJenkins, Source: nftmodel.Reg1, Dest: nftmodel.Reg1, Len: 8, Modulus: 2},
	}; !reflect.DeepEqual(got[4:7], want) {
		t.Errorf("jhash:\n%#v", got)
	}
	// Map keys of numgen are host-order integers.
	for _, s := range fresh(t, lb).Steps {
		if s.Kind == nftmodel.StepAddElements && binary.NativeEndian.Uint32(s.Elems[1][0].Key) != 1 {
			t.Errorf("key of 1: %x", s.Elems[1][0].Key)
		}
		if s.Kind == nftmodel.StepAddSet && (s.Set.Key.Name != "integer" || s.Set.Key.Bytes != 4 || !s.Set.KeyHostOrder) {
			t.Errorf("map lb: %+v", s.Set)
		}
	}

	for _, tc := range []struct {
		name string
		tbl  *nftmodel.Table
		want string
	}{
		{"modulus 0", nfttest.OneRule(nftmodel.FamilyInet, "", "", nftmodel.NumgenRandom(0).Eq("0"), nftmodel.Accept()), "numgen random mod 0: modulus 0"},
		{"hash of a hash", nfttest.OneRule(nftmodel.FamilyInet, "", "", nftmodel.JHash(nftmodel.NumgenInc(2), 2, 0).Eq("0"), nftmodel.Accept()),
			"the input must be packet or meta fields"},
		{"integer range", nfttest.OneRule(nftmodel.FamilyInet, "", "", nftmodel.NumgenInc(4).Eq("0-1"), nftmodel.Accept()),
			"a range of integer values can only be matched against a set"},
		{"integer interval", &nftmodel.Table{Name: "t", Sets: []*nftmodel.Set{{Name: "s", Key: []nftmodel.KeyType{nftmodel.KeyInteger}, Interval: true}}},
			"key type integer cannot be an interval"},
		{"hash inputs beyond the registers", nfttest.OneRule(nftmodel.FamilyInet, "", "",
			nftmodel.Concat(nftmodel.IP6Saddr(), nftmodel.IP6Daddr(), nftmodel.IP6Saddr(), nftmodel.JHash(nftmodel.Concat(nftmodel.IP6Saddr(), nftmodel.IP6Daddr()), 2, 0)).InAnon(
				"::1 . ::1 . ::1 . 1"), nftmodel.Accept()),
			"concatenation of 80 bytes exceeds 64"},
	} {
		if err := tc.tbl.Validate(); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: Validate() = %v, want %q", tc.name, err, tc.want)
		}
	}
}

// Plan refuses what the kernel refuses of a concatenated interval set:
// an element added whose first or last point lies in an element the set
// holds, in the order the batch adds them (key order). Whether a table is
// refused depends on what the set held before.
func TestPlanRefusesIntervalClashes(t *testing.T) {
	svc := func(els ...string) *nftmodel.Table {
		return &nftmodel.Table{Name: "t", Sets: []*nftmodel.Set{{Name: "svc", Key: []nftmodel.KeyType{nftmodel.KeyIPv4, nftmodel.KeyInetService},
			Interval: true, Elements: els}}}
	}
	small, big := "10.0.0.5 . 80", "10.0.0.0/24 . 0-1000"
	// Created at once, the big one goes first and the small one is refused.
	if err := (&nftmodel.Batch{}).Plan(nfttest.Compile(t, svc(small, big)), nil); err == nil ||
		!strings.Contains(err.Error(), `set svc: element "10.0.0.5 . 80" overlaps "10.0.0.0/24 . 0-1000"`) {
		t.Errorf("Plan = %v", err)
	}
	// Added to a set that holds the small one, the big one goes.
	if err := (&nftmodel.Batch{}).Plan(nfttest.Compile(t, svc(small, big)), nfttest.Compile(t, svc(small))); err != nil {
		t.Errorf("Plan = %v", err)
	}
	// Table.Validate does not know the order: it accepts both.
	if err := svc(small, big).Validate(); err != nil {
		t.Errorf("Validate() = %v", err)
	}
}
