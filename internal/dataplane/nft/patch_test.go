package nft

import (
	"errors"
	"reflect"
	"strings"
	"testing"
)

// patchBase is the inet table the patch tests start from: a set of each
// kind, a data map with concatenated keys and values, a verdict map, and
// a regular chain that map elements and rules jump to.
func patchBase() *Table {
	return &Table{
		Name: "hostnet",
		Sets: []*Set{
			{Name: "ports", Key: []KeyType{KeyIfname}, Elements: []string{"hnv0"}},
			{Name: "pairs", Key: []KeyType{KeyIfname, KeyIfname}},
			{Name: "nets", Key: []KeyType{KeyIPv4}, Interval: true, Elements: []string{"10.0.0.0/24"}},
			{Name: "svc", Key: []KeyType{KeyIPv4, KeyInetService}, Interval: true},
		},
		Maps: []*Map{
			{Name: "pm4", Key: []KeyType{KeyInetProto, KeyInetService}, Value: []KeyType{KeyIPv4, KeyInetService},
				Elements: map[string]string{"udp . 53": "10.0.0.3 . 5353"}},
			{Name: "acl", Key: []KeyType{KeyIPv4}, Verdict: true, Elements: map[string]string{"10.0.0.3": "jump acl_default"}},
			{Name: "snat", Key: []KeyType{KeyIPv4}, Value: []KeyType{KeyIPv4}, Elements: map[string]string{}},
		},
		Chains: []*Chain{
			{Name: "forward", Type: ChainTypeFilter, Hook: HookForward, Priority: PriorityFilter, Rules: []Rule{
				{Comment: "acl", Exprs: []Expr{VMap(IPDaddr(), "acl")}},
				{Comment: "pairs", Exprs: []Expr{Concat(Iifname(), Oifname()).InSet("pairs"), Accept()}},
				{Comment: "svc", Exprs: []Expr{Concat(IPDaddr(), THDport()).InSet("svc"), Accept()}},
				{Comment: "ports", Exprs: []Expr{Iifname().InSet("ports"), Drop()}},
			}},
			{Name: "publish", Type: ChainTypeNAT, Hook: HookPrerouting, Priority: PriorityDstNAT, Rules: []Rule{
				{Comment: "ports", Exprs: []Expr{FibDaddrTypeLocal(), DNATMap(Concat(L4Proto(), THDport()), "pm4")}},
			}},
			{Name: "postrouting", Type: ChainTypeNAT, Hook: HookPostrouting, Priority: PrioritySrcNAT, Rules: []Rule{
				{Comment: "snat", Exprs: []Expr{IPSaddr().InSet("nets"), SNATMap(IPSaddr(), "snat")}},
			}},
			{Name: "acl_default", Rules: []Rule{
				{Comment: "web", Exprs: []Expr{L4Proto().Eq("tcp"), THDport().Eq("80"), Accept()}},
				{Comment: "deny", Exprs: []Expr{Counter(), Drop()}},
			}},
		},
	}
}

// patchStep is a change made both ways: as patches, and on the full table
// that the patched table must then equal.
type patchStep struct {
	name    string
	patches []TablePatch
	full    func(inet, bridge *Table) // the same change on the full tables
	ops     []string                  // the batch sent
}

func addTo(t *Table, set string, els ...string) {
	setOf(t, set).Elements = append(setOf(t, set).Elements, els...)
}

func removeFrom(t *Table, set string, els ...string) {
	s := setOf(t, set)
	var keep []string
	for _, e := range s.Elements {
		if !contains(els, e) {
			keep = append(keep, e)
		}
	}
	s.Elements = keep
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

func mapIn(t *Table, name string) *Map {
	for _, m := range t.Maps {
		if m.Name == name {
			return m
		}
	}
	panic(name)
}

func put(t *Table, m string, kv ...string) {
	for i := 0; i < len(kv); i += 2 {
		mapIn(t, m).Elements[kv[i]] = kv[i+1]
	}
}

func endpoint1Chain() *Chain {
	return &Chain{Name: "acl_e1", Rules: []Rule{
		{Comment: "ssh", Exprs: []Expr{L4Proto().Eq("tcp"), THDport().Eq("22"), Accept()}},
		{Comment: "rest", Exprs: []Expr{Jump("acl_default")}},
	}}
}

// patchSteps is the scenario both appliers go through.
func patchSteps() []patchStep {
	return []patchStep{{
		name: "add an endpoint: its chain, set elements, map elements jumping to the chain",
		patches: []TablePatch{{Table: "hostnet",
			AddChains: []*Chain{endpoint1Chain()},
			AddElements: map[string][]string{"ports": {"hnv1"}, "pairs": {"hnv1 . hnbr0"}, "nets": {"10.1.0.0/24"},
				"svc": {"10.0.0.1 . 80-90"}},
			SetMapElements: map[string]map[string]string{"acl": {"10.0.0.1": "jump acl_e1"},
				"pm4": {"tcp . 8080": "10.0.0.1 . 80"}, "snat": {"10.0.0.1": "192.168.0.1"}},
		}},
		full: func(t, _ *Table) {
			t.Chains = append(t.Chains, endpoint1Chain())
			addTo(t, "ports", "hnv1")
			addTo(t, "pairs", "hnv1 . hnbr0")
			addTo(t, "nets", "10.1.0.0/24")
			addTo(t, "svc", "10.0.0.1 . 80-90")
			put(t, "acl", "10.0.0.1", "jump acl_e1")
			put(t, "pm4", "tcp . 8080", "10.0.0.1 . 80")
			put(t, "snat", "10.0.0.1", "192.168.0.1")
		},
		ops: []string{"add chain acl_e1",
			"add 1 elements to set nets", "add 1 elements to set pairs", "add 1 elements to set ports", "add 1 elements to set svc",
			"add 1 elements to map acl", "add 1 elements to map pm4", "add 1 elements to map snat",
			"add 2 rules to chain acl_e1"},
	}, {
		name: "repeat in other spellings, remove absent elements: nothing",
		patches: []TablePatch{{Table: "hostnet",
			AddElements:       map[string][]string{"ports": {`"hnv1"`, "hnv1"}, "nets": {"10.1.0.0-10.1.0.255"}, "svc": {"10.0.0.1 . 80-90"}},
			DeleteElements:    map[string][]string{"ports": {"hnv9"}, "nets": {"10.1.0.0/25"}},
			SetMapElements:    map[string]map[string]string{"acl": {"10.0.0.1": "jump  acl_e1"}, "pm4": {"6 . 8080": "10.0.0.1 . 80"}},
			DeleteMapElements: map[string][]string{"snat": {"10.9.9.9"}},
		}},
		full: func(_, _ *Table) {},
		ops:  []string{},
	}, {
		name: "update map values",
		patches: []TablePatch{{Table: "hostnet",
			SetMapElements: map[string]map[string]string{"pm4": {"tcp . 8080": "10.0.0.2 . 8080"},
				"snat": {"10.0.0.1": "192.168.0.2"}, "acl": {"10.0.0.3": "accept"}},
		}},
		full: func(t, _ *Table) {
			put(t, "pm4", "tcp . 8080", "10.0.0.2 . 8080")
			put(t, "snat", "10.0.0.1", "192.168.0.2")
			put(t, "acl", "10.0.0.3", "accept")
		},
		ops: []string{"delete 1 elements from map acl", "delete 1 elements from map pm4", "delete 1 elements from map snat",
			"add 1 elements to map acl", "add 1 elements to map pm4", "add 1 elements to map snat"},
	}, {
		name: "two new chains, one jumping to the other, listed in reverse",
		patches: []TablePatch{{Table: "hostnet",
			AddChains: []*Chain{
				{Name: "acl_e2", Rules: []Rule{{Comment: "on", Exprs: []Expr{Jump("acl_e2b")}}}},
				{Name: "acl_e2b", Rules: []Rule{{Comment: "ok", Exprs: []Expr{Counter(), Accept()}}}},
			},
			SetMapElements: map[string]map[string]string{"acl": {"10.0.0.2": "goto acl_e2"}},
		}},
		full: func(t, _ *Table) {
			t.Chains = append(t.Chains,
				&Chain{Name: "acl_e2", Rules: []Rule{{Comment: "on", Exprs: []Expr{Jump("acl_e2b")}}}},
				&Chain{Name: "acl_e2b", Rules: []Rule{{Comment: "ok", Exprs: []Expr{Counter(), Accept()}}}})
			put(t, "acl", "10.0.0.2", "goto acl_e2")
		},
		ops: []string{"add chain acl_e2", "add chain acl_e2b", "add 1 elements to map acl",
			"add 1 rules to chain acl_e2", "add 1 rules to chain acl_e2b"},
	}, {
		name: "replace a referenced chain (in AddChains and DeleteChains)",
		patches: []TablePatch{{Table: "hostnet",
			AddChains:    []*Chain{{Name: "acl_default", Rules: []Rule{{Comment: "all", Exprs: []Expr{Counter(), Accept()}}}}},
			DeleteChains: []string{"acl_default"},
		}},
		full: func(t, _ *Table) {
			chainOf(t, "acl_default").Rules = []Rule{{Comment: "all", Exprs: []Expr{Counter(), Accept()}}}
		},
		ops: []string{"flush chain acl_default", "add 1 rules to chain acl_default"},
	}, {
		name: "remove the first endpoint: its chain goes with its last reference",
		patches: []TablePatch{{Table: "hostnet",
			DeleteChains: []string{"acl_e1"},
			DeleteElements: map[string][]string{"ports": {"hnv1"}, "pairs": {"hnv1 . hnbr0"}, "nets": {"10.1.0.0/24"},
				"svc": {"10.0.0.1 . 80-90"}},
			DeleteMapElements: map[string][]string{"acl": {"10.0.0.1"}, "pm4": {"tcp . 8080"}, "snat": {"10.0.0.1"}},
		}},
		full: func(t, _ *Table) {
			t.Chains = slicesDelete(t.Chains, "acl_e1")
			removeFrom(t, "ports", "hnv1")
			removeFrom(t, "pairs", "hnv1 . hnbr0")
			removeFrom(t, "nets", "10.1.0.0/24")
			removeFrom(t, "svc", "10.0.0.1 . 80-90")
			delete(mapIn(t, "acl").Elements, "10.0.0.1")
			delete(mapIn(t, "pm4").Elements, "tcp . 8080")
			delete(mapIn(t, "snat").Elements, "10.0.0.1")
		},
		ops: []string{"flush chain acl_e1",
			"delete 1 elements from map acl", "delete 1 elements from map pm4", "delete 1 elements from map snat",
			"delete 1 elements from set nets", "delete 1 elements from set pairs", "delete 1 elements from set ports",
			"delete 1 elements from set svc", "delete chain acl_e1"},
	}, {
		name: "both tables in one batch",
		patches: []TablePatch{
			{Table: "hostnet", AddElements: map[string][]string{"ports": {"hnv5"}}},
			{Family: FamilyBridge, Table: "hostnet", AddElements: map[string][]string{"ports": {"hnv5"}, "macs": {"hnv5 . 02:00:00:00:00:05"}},
				SetMapElements: map[string]map[string]string{"acl_in": {"hnv5": "jump acl_b"}}},
			{Table: "hostnet"}, // empty: ignored
		},
		full: func(t, b *Table) {
			addTo(t, "ports", "hnv5")
			addTo(b, "ports", "hnv5")
			addTo(b, "macs", "hnv5 . 02:00:00:00:00:05")
			put(b, "acl_in", "hnv5", "jump acl_b")
		},
		ops: []string{"inet hostnet: add 1 elements to set ports",
			"bridge hostnet: add 1 elements to set macs", "bridge hostnet: add 1 elements to set ports",
			"bridge hostnet: add 1 elements to map acl_in"},
	}, {
		name: "remove two chains that jump to each other, and the element that reaches them",
		patches: []TablePatch{{Table: "hostnet",
			DeleteChains:      []string{"acl_e2b", "acl_e2"},
			DeleteMapElements: map[string][]string{"acl": {"10.0.0.2"}},
		}},
		full: func(t, _ *Table) {
			t.Chains = slicesDelete(slicesDelete(t.Chains, "acl_e2"), "acl_e2b")
			delete(mapIn(t, "acl").Elements, "10.0.0.2")
		},
		ops: []string{"flush chain acl_e2b", "flush chain acl_e2", "delete 1 elements from map acl",
			"delete chain acl_e2b", "delete chain acl_e2"},
	}, {
		name: "two patches of one table in one call: the second sees the first",
		patches: []TablePatch{
			{Table: "hostnet", AddChains: []*Chain{{Name: "acl_e3", Rules: []Rule{{Exprs: []Expr{Drop()}}}}},
				AddElements: map[string][]string{"ports": {"hnv3"}}},
			{Table: "hostnet", SetMapElements: map[string]map[string]string{"acl": {"10.0.0.4": "jump acl_e3"}},
				DeleteElements: map[string][]string{"ports": {"hnv3"}}},
		},
		full: func(t, _ *Table) {
			t.Chains = append(t.Chains, &Chain{Name: "acl_e3", Rules: []Rule{{Exprs: []Expr{Drop()}}}})
			put(t, "acl", "10.0.0.4", "jump acl_e3")
		},
		ops: []string{"add chain acl_e3", "add 1 elements to set ports", "add 1 rules to chain acl_e3",
			"delete 1 elements from set ports", "add 1 elements to map acl"},
	}}
}

// refusal is a patch that must be refused without changing anything.
type refusal struct {
	name    string
	patches []TablePatch
	err     string // a part of the error
}

// refusals run after the first step of patchSteps.
func refusals() []refusal {
	in := func(p TablePatch) []TablePatch { p.Table = "hostnet"; return []TablePatch{p} }
	return []refusal{
		{"unknown table", []TablePatch{{Table: "nope", AddElements: map[string][]string{"ports": {"x"}}}}, "table nope does not exist"},
		{"invalid family", []TablePatch{{Family: 7, Table: "hostnet", AddElements: map[string][]string{"ports": {"x"}}}}, "invalid family"},
		{"unknown set", in(TablePatch{AddElements: map[string][]string{"nope": {"x"}}}), `patch 0 (table hostnet): unknown set "nope"`},
		{"a map as a set", in(TablePatch{DeleteElements: map[string][]string{"acl": {"10.0.0.1"}}}), `"acl" is a map, not a set`},
		{"unknown map", in(TablePatch{DeleteMapElements: map[string][]string{"ports": {"x"}}}), `"ports" is a set, not a map`},
		{"bad element", in(TablePatch{AddElements: map[string][]string{"nets": {"10.0.0.300"}}}), `set nets: element "10.0.0.300"`},
		{"bad key", in(TablePatch{SetMapElements: map[string]map[string]string{"pm4": {"tcp": "10.0.0.1 . 80"}}}), `map pm4: element "tcp" has 1 fields`},
		{"bad value", in(TablePatch{SetMapElements: map[string]map[string]string{"pm4": {"tcp . 1": "10.0.0.1"}}}), `map pm4: element "tcp . 1": value`},
		{"wildcard in a set", in(TablePatch{AddElements: map[string][]string{"ports": {"hnv*"}}}), `set ports: element "hnv*": invalid interface name`},
		{"overlap", in(TablePatch{AddElements: map[string][]string{"nets": {"10.0.0.128/25"}}}), `element "10.0.0.128/25" overlaps "10.0.0.0/24"`},
		{"duplicate map key", in(TablePatch{SetMapElements: map[string]map[string]string{"acl": {"10.0.0.9": "drop", "10.0.0.9/32": "accept"}}}), `map acl: duplicate key "10.0.0.9/32" (also "10.0.0.9")`},
		{"jump to an unknown chain", in(TablePatch{SetMapElements: map[string]map[string]string{"acl": {"10.0.0.9": "jump nope"}}}), `unknown chain "nope"`},
		{"jump to a base chain", in(TablePatch{SetMapElements: map[string]map[string]string{"acl": {"10.0.0.9": "jump forward"}}}), "is a base chain"},
		{"jump to a chain the patch deletes", in(TablePatch{DeleteChains: []string{"acl_e1"}, DeleteMapElements: map[string][]string{"acl": {"10.0.0.1"}},
			SetMapElements: map[string]map[string]string{"acl": {"10.0.0.9": "jump acl_e1"}}}), "cannot delete chain acl_e1: still referenced after the patch (by element 10.0.0.9 of map acl)"},
		{"delete a chain rules and elements reference", in(TablePatch{DeleteChains: []string{"acl_default"}}),
			"cannot delete chain acl_default: still referenced after the patch (by rule 1 of chain acl_e1, element 10.0.0.3 of map acl)"},
		{"delete a chain an element references", in(TablePatch{DeleteChains: []string{"acl_e1"}}), "(by element 10.0.0.1 of map acl)"},
		{"delete a base chain", in(TablePatch{DeleteChains: []string{"forward"}}), "cannot delete chain forward: a patch deletes regular chains only"},
		{"delete an absent chain", in(TablePatch{DeleteChains: []string{"nope"}}), "cannot delete chain nope: no such chain"},
		{"delete a chain twice", in(TablePatch{DeleteChains: []string{"acl_e1", "acl_e1"}, DeleteMapElements: map[string][]string{"acl": {"10.0.0.1"}}}), "listed twice"},
		{"add an existing chain", in(TablePatch{AddChains: []*Chain{endpoint1Chain()}}), "chain acl_e1 already exists"},
		{"add a base chain", in(TablePatch{AddChains: []*Chain{{Name: "in", Type: ChainTypeFilter, Hook: HookInput}}}), "a patch adds regular chains only"},
		{"add a chain with a bad rule", in(TablePatch{AddChains: []*Chain{{Name: "x", Rules: []Rule{{Comment: "r", Exprs: []Expr{IPSaddr().InSet("zzz"), Accept()}}}}}}),
			`chain x: rule 0 ("r"): ip saddr @zzz: unknown set "zzz"`},
		{"add a chain jumping to itself", in(TablePatch{AddChains: []*Chain{{Name: "x", Rules: []Rule{{Exprs: []Expr{Jump("x")}}}}}}), "jumps to itself"},
		{"add a chain with an invalid name", in(TablePatch{AddChains: []*Chain{{Name: "a b"}}}), `invalid chain name "a b"`},
		{"valid changes, then a bad element of a later set", in(TablePatch{
			AddChains:      []*Chain{{Name: "acl_x", Rules: []Rule{{Exprs: []Expr{Accept()}}}}},
			SetMapElements: map[string]map[string]string{"acl": {"10.0.0.7": "jump acl_x", "10.0.0.1": "drop"}},
			DeleteElements: map[string][]string{"ports": {"hnv1"}},
			AddElements:    map[string][]string{"nets": {"10.9.0.0/24"}, "ports": {"bad name"}}}), `set ports: element "bad name"`},
		{"a valid patch, then a refused one", []TablePatch{
			{Table: "hostnet", AddElements: map[string][]string{"ports": {"hnv7"}}, DeleteChains: []string{"acl_e1"},
				DeleteMapElements: map[string][]string{"acl": {"10.0.0.1"}}},
			{Table: "hostnet", AddElements: map[string][]string{"svc": {"10.0.0.1"}}},
		}, `patch 1 (table hostnet): set svc: element "10.0.0.1" has 1 fields`},
	}
}

// checkRefs checks that the reference counts kept through patches equal
// a fresh count.
func checkRefs(t *testing.T, st *compiled) {
	t.Helper()
	got := st.refs
	st.countRefs()
	if !reflect.DeepEqual(got, st.refs) {
		t.Errorf("chain references kept %v, counted %v", got, st.refs)
	}
}

func TestFakePatch(t *testing.T) {
	f, full := NewFake(), NewFake()
	inet, bridge := patchBase(), bridgeSample()
	if err := f.ApplyAll(inet, bridge); err != nil {
		t.Fatal(err)
	}
	check := func(t *testing.T) {
		t.Helper()
		if err := full.ApplyAll(inet, bridge); err != nil {
			t.Fatalf("the full tables: %v", err)
		}
		if got, want := f.Dump(), full.Dump(); got != want {
			t.Fatalf("patched tables differ from the full ones:\n--- patched\n%s\n--- full\n%s", got, want)
		}
		for _, ft := range f.tables {
			checkRefs(t, ft.state)
		}
	}
	for i, step := range patchSteps() {
		t.Run(step.name, func(t *testing.T) {
			changes := f.Changes()
			if err := f.Patch(step.patches...); err != nil {
				t.Fatal(err)
			}
			if got := f.LastOps(); !reflect.DeepEqual(got, step.ops) && !(len(got) == 0 && len(step.ops) == 0) {
				t.Errorf("ops:\n  %s\nwant:\n  %s", strings.Join(got, "\n  "), strings.Join(step.ops, "\n  "))
			}
			if want := changes + min(1, len(step.ops)); f.Changes() != want {
				t.Errorf("Changes() = %d, want %d", f.Changes(), want)
			}
			step.full(inet, bridge)
			check(t)
			// Patched tables validate, and copies are deep.
			tbl := f.Table("hostnet")
			if err := tbl.Validate(); err != nil {
				t.Errorf("patched table does not validate: %v", err)
			}
			tbl.Chains[len(tbl.Chains)-1].Rules = nil
			if f.Dump() != full.Dump() {
				t.Error("Table returned the Fake's own chains")
			}
		})
		if i == 0 {
			t.Run("refusals", func(t *testing.T) {
				for _, r := range refusals() {
					before := f.Dump()
					err := f.Patch(r.patches...)
					if err == nil || !strings.Contains(err.Error(), r.err) {
						t.Errorf("%s: Patch = %v, want an error containing %q", r.name, err, r.err)
					}
					if f.Dump() != before {
						t.Errorf("%s: the refused patch changed the Fake", r.name)
					}
					for _, ft := range f.tables {
						checkRefs(t, ft.state)
					}
				}
				check(t)
				// The Kernel would send nothing for the full table.
				if err := f.Apply(inet); err != nil || len(f.LastOps()) != 0 {
					t.Errorf("Apply of the full table: %v, ops %q", err, f.LastOps())
				}
			})
		}
	}
	// A patch on a table applied whole goes on from there; failures are
	// injected as for Apply.
	boom := errors.New("boom")
	f.FailNext(boom)
	if err := f.Patch(TablePatch{Table: "hostnet", AddElements: map[string][]string{"ports": {"hnv8"}}}); !errors.Is(err, boom) {
		t.Errorf("Patch after FailNext = %v", err)
	}
	if err := f.Patch(); err != nil {
		t.Errorf("Patch() = %v", err)
	}
	if err := f.DeleteTable(FamilyBridge, "hostnet"); err != nil {
		t.Fatal(err)
	}
	if err := f.Patch(TablePatch{Family: FamilyBridge, Table: "hostnet", AddElements: map[string][]string{"ports": {"x"}}}); err == nil {
		t.Error("Patch of a deleted table succeeded")
	}
}

// TestFakeChainOrder checks where patched chains are rendered: merged by
// name into the regular chains that end the table.
func TestFakeChainOrder(t *testing.T) {
	f := NewFake()
	base := &Table{Name: "t", Chains: []*Chain{
		{Name: "m"}, {Name: "in", Type: ChainTypeFilter, Hook: HookInput}, {Name: "b"}, {Name: "k"}, {Name: "x"},
	}}
	if err := f.Apply(base); err != nil {
		t.Fatal(err)
	}
	if err := f.Patch(TablePatch{Table: "t", AddChains: []*Chain{{Name: "z"}, {Name: "a"}, {Name: "l"}}, DeleteChains: []string{"k"}}); err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, c := range f.Table("t").Chains {
		names = append(names, c.Name)
	}
	if want := []string{"m", "in", "a", "b", "l", "x", "z"}; !reflect.DeepEqual(names, want) {
		t.Errorf("chains %v, want %v", names, want)
	}
	// A chain deleted and created again counts as created.
	if err := f.Patch(TablePatch{Table: "t", DeleteChains: []string{"m"}}); err != nil {
		t.Fatal(err)
	}
	if err := f.Patch(TablePatch{Table: "t", AddChains: []*Chain{{Name: "m"}}}); err != nil {
		t.Fatal(err)
	}
	names = nil
	for _, c := range f.Table("t").Chains {
		names = append(names, c.Name)
	}
	if want := []string{"in", "a", "b", "l", "m", "x", "z"}; !reflect.DeepEqual(names, want) {
		t.Errorf("chains %v, want %v", names, want)
	}
	// A chain in AddChains and DeleteChains that does not exist is created.
	if err := f.Patch(TablePatch{Table: "t", AddChains: []*Chain{{Name: "n"}}, DeleteChains: []string{"n"}}); err != nil {
		t.Fatal(err)
	}
	if f.Table("t").Chains[5].Name != "n" || !reflect.DeepEqual(f.LastOps(), []string{"add chain n"}) {
		t.Errorf("chains %v, ops %q", f.Table("t").Chains, f.LastOps())
	}
}

func TestTablePatchEmpty(t *testing.T) {
	if !(TablePatch{Table: "x", AddElements: map[string][]string{"s": nil}, SetMapElements: map[string]map[string]string{"m": {}}}).Empty() {
		t.Error("a patch with empty lists is not empty")
	}
	for _, p := range []TablePatch{
		{AddChains: []*Chain{{Name: "c"}}}, {DeleteChains: []string{"c"}},
		{AddElements: map[string][]string{"s": {"x"}}}, {DeleteElements: map[string][]string{"s": {"x"}}},
		{SetMapElements: map[string]map[string]string{"m": {"k": "v"}}}, {DeleteMapElements: map[string][]string{"m": {"k"}}},
	} {
		if p.Empty() {
			t.Errorf("%+v is empty", p)
		}
	}
}

func TestFakeApplyAll(t *testing.T) {
	f := NewFake()
	bad := bridgeSample()
	bad.Chains[0].Rules[0].Exprs = []Expr{IPSaddr().InSet("nope"), Accept()}
	if err := f.ApplyAll(patchBase(), bad); err == nil || !strings.Contains(err.Error(), "apply table bridge hostnet") {
		t.Errorf("ApplyAll = %v", err)
	}
	if f.Dump() != "" {
		t.Error("a refused ApplyAll applied a table")
	}
	if err := f.ApplyAll(patchBase(), patchBase()); err == nil || !strings.Contains(err.Error(), "given twice") {
		t.Errorf("ApplyAll of one table twice = %v", err)
	}
	if err := f.ApplyAll(patchBase(), bridgeSample()); err != nil {
		t.Fatal(err)
	}
	if f.Changes() != 1 || f.Applies() != 3 {
		t.Errorf("changes %d applies %d, want 1 and 3", f.Changes(), f.Applies())
	}
	if ops := f.LastOps(); len(ops) == 0 || !strings.HasPrefix(ops[0], "inet hostnet: add table") || !strings.HasPrefix(ops[len(ops)-1], "bridge hostnet: ") {
		t.Errorf("ops %q", ops)
	}
	if err := f.ApplyAll(patchBase(), bridgeSample()); err != nil || len(f.LastOps()) != 0 || f.Changes() != 1 {
		t.Errorf("ApplyAll again: %v, ops %q, changes %d", err, f.LastOps(), f.Changes())
	}
}
