package nft

import (
	"fmt"
	"os"
	"reflect"
	"sort"
	"strings"
	"testing"

	"github.com/google/nftables"
	"github.com/google/nftables/expr"
	"github.com/hostnet/hostnet/internal/dataplane/netns"
	"github.com/hostnet/hostnet/internal/testutil"
)

// newNS creates a throwaway network namespace, removed when the test ends.
func newNS(t *testing.T) netns.Handle {
	_, h := testutil.NewNS(t, "ns")
	return h
}

func newKernel(t *testing.T, ns netns.Handle) *Kernel {
	t.Helper()
	k, err := NewKernel(int(ns))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { k.Close() })
	return k
}

// mustApply applies t and checks that the batch sent is exactly want (nil:
// skip the check).
func mustApply(t *testing.T, k *Kernel, tbl *Table, want []string) {
	t.Helper()
	if err := k.Apply(tbl); err != nil {
		t.Fatalf("Apply: %v", err)
	}
	if want != nil && !reflect.DeepEqual(k.lastBatch, want) && !(len(want) == 0 && len(k.lastBatch) == 0) {
		t.Errorf("batch sent:\n  %s\nwant:\n  %s", strings.Join(k.lastBatch, "\n  "), strings.Join(want, "\n  "))
	}
	checkKernel(t, k, tbl)
}

// checkKernel reads the table back from the kernel, bypassing the cache,
// and checks it holds exactly tbl: same sets with the same key types,
// flags and elements, same chains with the same hooks, priorities,
// policies and rule identities, and each rule's expressions as lowered.
func checkKernel(t *testing.T, k *Kernel, tbl *Table) {
	t.Helper()
	want, err := compile(tbl)
	if err != nil {
		t.Fatal(err)
	}
	got, err := k.read(tableKey{tbl.Family, tbl.Name})
	if err != nil {
		t.Fatalf("read back: %v", err)
	}
	if got == nil {
		t.Fatal("table absent after Apply")
	}
	if g, w := sortedKeys(got.sets), sortedKeys(want.sets); !reflect.DeepEqual(g, w) {
		t.Errorf("sets in kernel %v, want %v", g, w)
	}
	for name, ws := range want.sets {
		gs, ok := got.sets[name]
		if !ok {
			continue
		}
		if !gs.sameShape(ws) {
			t.Errorf("set %s: kernel has key %s interval %v, want %s interval %v", name, keyString(gs.keys), gs.interval, keyString(ws.keys), ws.interval)
		}
		if g, w := sortedKeys(gs.elems), sortedKeys(ws.elems); !reflect.DeepEqual(g, w) {
			t.Errorf("set %s: kernel elements %q, want %q", name, g, w)
		}
	}
	if g, w := sortedKeys(got.maps), sortedKeys(want.maps); !reflect.DeepEqual(g, w) {
		t.Errorf("maps in kernel %v, want %v", g, w)
	}
	for name, wm := range want.maps {
		gm, ok := got.maps[name]
		if !ok {
			continue
		}
		if !gm.sameShape(wm) {
			t.Errorf("map %s: kernel has key %s value %s verdict %v interval %v, want %s : %s verdict %v interval %v", name,
				keyString(gm.keys), keyString(gm.vals), gm.verdict, gm.interval, keyString(wm.keys), keyString(wm.vals), wm.verdict, wm.interval)
		}
		if g, w := mapText(gm), mapText(wm); !reflect.DeepEqual(g, w) {
			t.Errorf("map %s: kernel elements %q, want %q", name, g, w)
		}
	}
	if g, w := sortedKeys(got.chains), sortedKeys(want.chains); !reflect.DeepEqual(g, w) {
		t.Errorf("chains in kernel %v, want %v", g, w)
	}
	kt := &nftables.Table{Name: tbl.Name, Family: tbl.Family.kernel()}
	for name, wc := range want.chains {
		gc, ok := got.chains[name]
		if !ok {
			continue
		}
		if !gc.sameShape(wc) || gc.policy != wc.policy {
			t.Errorf("chain %s: kernel has %+v, want %+v", name, *gc, *wc)
		}
		var gids, wids []string
		for _, r := range gc.rules {
			gids = append(gids, r.id)
		}
		for _, r := range wc.rules {
			wids = append(wids, r.id)
		}
		if !reflect.DeepEqual(gids, wids) {
			t.Errorf("chain %s: kernel rules %q, want %q", name, gids, wids)
			continue
		}
		rules, err := k.conn.GetRules(kt, &nftables.Chain{Name: name, Table: kt})
		if err != nil {
			t.Fatal(err)
		}
		for i, r := range rules {
			if g, w := exprDump(r.Exprs), exprDump(wc.rules[i].exprs); g != w {
				t.Errorf("chain %s rule %d: kernel expressions\n  %s\nwant\n  %s", name, i, g, w)
			}
		}
	}
	// A fresh reading yields an empty plan.
	b := &batch{conn: k.conn, table: kt}
	plan(b, want, got)
	if len(b.ops) != 0 {
		t.Errorf("plan against a fresh reading is not empty: %q", b.ops)
	}
}

// mapText lists a map's elements as "key : value" texts, sorted.
func mapText(m *mapState) []string {
	var out []string
	for canon, e := range m.elems {
		out = append(out, canon+" : "+e.text)
	}
	sort.Strings(out)
	return out
}

// exprDump prints kernel expressions with their field values (counters
// zeroed, anonymous set names and IDs blanked: the kernel names them
// __setN and does not echo the batch ID).
func exprDump(es []expr.Any) string {
	s := make([]string, len(es))
	for i, e := range es {
		if _, ok := e.(*expr.Counter); ok {
			e = &expr.Counter{}
		}
		if l, ok := e.(*expr.Lookup); ok && strings.HasPrefix(l.SetName, "__set") {
			c := *l
			c.SetName, c.SetID = "__set", 0
			e = &c
		}
		s[i] = fmt.Sprintf("%T%+v", e, e)
	}
	return strings.Join(s, " ")
}

func TestNewKernelRefusesNonNamespace(t *testing.T) {
	for _, fd := range []int{-1, 0} {
		if _, err := NewKernel(fd); err == nil {
			t.Errorf("NewKernel(%d) succeeded", fd)
		}
	}
	f, err := os.Open(os.DevNull)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := NewKernel(int(f.Fd())); err == nil {
		t.Error("NewKernel(/dev/null) succeeded")
	}
}

func TestKernelApplySample(t *testing.T) {
	ns := newNS(t)
	k := newKernel(t, ns)
	tbl := sampleTable()
	mustApply(t, k, tbl, nil)
	// Same table again: nothing is sent.
	mustApply(t, k, sampleTable(), []string{})
	// A new applier (a daemon restart) adopts the table as it is.
	k2 := newKernel(t, ns)
	mustApply(t, k2, sampleTable(), []string{})
	if err := k.Delete("hostnet"); err != nil {
		t.Fatal(err)
	}
	if err := k.Delete("hostnet"); err != nil {
		t.Errorf("second Delete: %v", err)
	}
	if got, err := k.read(tableKey{FamilyInet, "hostnet"}); err != nil || got != nil {
		t.Errorf("after Delete: %v, %v", got, err)
	}
	// k2 trusts its cache (it believes the table is there) until Resync.
	k2.Resync()
	mustApply(t, k2, sampleTable(), nil)
}

// baseTable is a small table for incremental tests.
func baseTable() *Table {
	return &Table{
		Name: "hostnet",
		Sets: []*Set{
			{Name: "bridges", Key: []KeyType{KeyIfname}, Elements: []string{"hnbr-1", "hnbr-2"}},
			{Name: "intra", Key: []KeyType{KeyIfname, KeyIfname}, Elements: []string{"hnbr-1 . hnbr-1"}},
			{Name: "nat_v4", Key: []KeyType{KeyIPv4}, Interval: true, Elements: []string{"10.0.0.0/24", "10.0.1.0/24"}},
			{Name: "nat_v6", Key: []KeyType{KeyIPv6}, Interval: true, Elements: []string{"fd00::/64"}},
			{Name: "ports", Key: []KeyType{KeyInetService}, Interval: true, Elements: []string{"80", "8000-8080"}},
			{Name: "svc", Key: []KeyType{KeyIPv4, KeyInetService}, Interval: true, Elements: []string{"10.0.0.0/24 . 80-90"}},
		},
		Chains: []*Chain{
			{Name: "forward", Type: ChainTypeFilter, Hook: HookForward, Priority: PriorityFilter, Rules: []Rule{
				{Comment: "established", Exprs: []Expr{CtState("established", "related"), Accept()}},
				{Comment: "intra", Exprs: []Expr{Concat(Iifname(), Oifname()).InSet("intra"), Accept()}},
				{Comment: "inter", Exprs: []Expr{Iifname().InSet("bridges"), Oifname().InSet("bridges"), Jump("isolate")}},
			}},
			{Name: "isolate", Rules: []Rule{{Comment: "drop", Exprs: []Expr{Counter(), Drop()}}}},
			{Name: "input", Type: ChainTypeFilter, Hook: HookInput, Priority: PriorityFilter, Rules: []Rule{
				{Comment: "ports", Exprs: []Expr{L4Proto().Eq("tcp"), THDport().InSet("ports"), Accept()}},
				{Comment: "svc", Exprs: []Expr{Concat(IPDaddr(), THDport()).InSet("svc"), Accept()}},
			}},
			{Name: "postrouting", Type: ChainTypeNAT, Hook: HookPostrouting, Priority: PrioritySrcNAT, Rules: []Rule{
				{Comment: "masq4", Exprs: []Expr{IPSaddr().InSet("nat_v4"), Oifname().NotInSet("bridges"), Masquerade()}},
				{Comment: "masq6", Exprs: []Expr{IP6Saddr().InSet("nat_v6"), Oifname().NotInSet("bridges"), Masquerade()}},
			}},
		},
	}
}

// packets returns the packet count of the first counter of each rule of
// the chain of inet table.
func packets(t *testing.T, k *Kernel, table, chain string) []uint64 {
	t.Helper()
	return familyPackets(t, k, FamilyInet, table, chain)
}

// familyPackets is packets for a table of any family.
func familyPackets(t *testing.T, k *Kernel, family Family, table, chain string) []uint64 {
	t.Helper()
	kt := &nftables.Table{Name: table, Family: family.kernel()}
	rules, err := k.conn.GetRules(kt, &nftables.Chain{Name: chain, Table: kt})
	if err != nil {
		t.Fatal(err)
	}
	out := make([]uint64, len(rules))
	for i, r := range rules {
		for _, e := range r.Exprs {
			if c, ok := e.(*expr.Counter); ok {
				out[i] = c.Packets
				break
			}
		}
	}
	return out
}

func setOf(t *Table, name string) *Set {
	for _, s := range t.Sets {
		if s.Name == name {
			return s
		}
	}
	panic(name)
}

func chainOf(t *Table, name string) *Chain {
	for _, c := range t.Chains {
		if c.Name == name {
			return c
		}
	}
	panic(name)
}

// handles returns the kernel handles of the rules of each chain.
func handles(t *testing.T, k *Kernel, table string) map[string][]uint64 {
	t.Helper()
	kt := &nftables.Table{Name: table, Family: nftables.TableFamilyINet}
	chains, err := k.conn.ListChainsOfTableFamily(nftables.TableFamilyINet)
	if err != nil {
		t.Fatal(err)
	}
	out := map[string][]uint64{}
	for _, c := range chains {
		if c.Table.Name != table {
			continue
		}
		rules, err := k.conn.GetRules(kt, c)
		if err != nil {
			t.Fatal(err)
		}
		for _, r := range rules {
			out[c.Name] = append(out[c.Name], r.Handle)
		}
	}
	return out
}

func TestKernelIncremental(t *testing.T) {
	k := newKernel(t, newNS(t))
	tbl := baseTable()
	mustApply(t, k, tbl, nil)

	t.Run("elements", func(t *testing.T) {
		before := handles(t, k, "hostnet")
		setOf(tbl, "bridges").Elements = []string{"hnbr-2", "hnbr-3"}
		setOf(tbl, "intra").Elements = []string{"hnbr-2 . hnbr-2", "hnbr-3 . hnbr-3"}
		setOf(tbl, "nat_v4").Elements = []string{"10.0.1.0/24", "10.0.2.0-10.0.2.9", "10.0.3.0/25", "10.0.3.128/25"}
		setOf(tbl, "nat_v6").Elements = []string{"fd00::/64", "fd00:1::/48", "fd00:2::7"}
		setOf(tbl, "ports").Elements = []string{"80-88", "65535"}
		setOf(tbl, "svc").Elements = []string{"10.0.0.0/24 . 80-90", "10.0.9.1 . 53"}
		mustApply(t, k, tbl, []string{
			"delete 1 elements from set bridges",
			"delete 1 elements from set intra",
			"delete 1 elements from set nat_v4",
			"delete 2 elements from set ports",
			"add 1 elements to set bridges",
			"add 2 elements to set intra",
			"add 3 elements to set nat_v4",
			"add 2 elements to set nat_v6",
			"add 2 elements to set ports",
			"add 1 elements to set svc",
		})
		if after := handles(t, k, "hostnet"); !reflect.DeepEqual(before, after) {
			t.Errorf("element changes touched rules: %v -> %v", before, after)
		}
		mustApply(t, k, tbl, []string{})
	})

	t.Run("change one rule", func(t *testing.T) {
		before := handles(t, k, "hostnet")
		chainOf(tbl, "isolate").Rules[0].Exprs = []Expr{Counter(), Reject()}
		mustApply(t, k, tbl, []string{"flush chain isolate", "add 1 rules to chain isolate"})
		after := handles(t, k, "hostnet")
		for name := range before {
			same := reflect.DeepEqual(before[name], after[name])
			if name == "isolate" && same {
				t.Error("isolate was not refilled")
			}
			if name != "isolate" && !same {
				t.Errorf("chain %s was touched", name)
			}
		}
	})

	t.Run("reorder rules", func(t *testing.T) {
		r := chainOf(tbl, "postrouting").Rules
		r[0], r[1] = r[1], r[0]
		mustApply(t, k, tbl, []string{"flush chain postrouting", "add 2 rules to chain postrouting"})
	})

	t.Run("policy", func(t *testing.T) {
		chainOf(tbl, "input").Policy = VerdictDrop
		mustApply(t, k, tbl, []string{"set policy of chain input to drop"})
	})

	t.Run("recreate base chain", func(t *testing.T) {
		chainOf(tbl, "input").Priority = 10
		mustApply(t, k, tbl, []string{"flush chain input", "delete chain input", "add chain input", "add 2 rules to chain input"})
	})

	t.Run("recreate set with new flags", func(t *testing.T) {
		// ports becomes a plain set: it is recreated, and the chain whose
		// (unchanged) rule looks it up is refilled around it.
		p := setOf(tbl, "ports")
		p.Interval, p.Elements = false, []string{"80", "443"}
		mustApply(t, k, tbl, []string{
			"flush chain input", "delete set ports", "add set ports", "add 2 elements to set ports",
			"add 2 rules to chain input",
		})
	})

	t.Run("remove set and chain", func(t *testing.T) {
		tbl.Sets = tbl.Sets[1:] // bridges
		fwd := chainOf(tbl, "forward")
		fwd.Rules = fwd.Rules[:2]
		tbl.Chains = []*Chain{fwd, chainOf(tbl, "input")}
		mustApply(t, k, tbl, []string{
			"flush chain forward", "flush chain isolate", "flush chain postrouting",
			"delete chain isolate", "delete chain postrouting", "delete set bridges",
			"add 2 rules to chain forward",
		})
	})

	t.Run("empty table", func(t *testing.T) {
		empty := &Table{Name: "hostnet"}
		mustApply(t, k, empty, nil)
		mustApply(t, k, empty, []string{})
	})

	t.Run("delete", func(t *testing.T) {
		if err := k.Delete("hostnet"); err != nil {
			t.Fatal(err)
		}
		if err := k.Delete("hostnet"); err != nil {
			t.Errorf("second Delete: %v", err)
		}
		if len(k.lastBatch) != 0 {
			t.Errorf("Delete of an absent table sent %q", k.lastBatch)
		}
		mustApply(t, k, baseTable(), nil)
	})
}

// TestKernelAtomic applies a table that passes Validate but that the kernel
// refuses at commit (masquerade in a regular chain reached from a filter
// chain), together with element changes: nothing may change.
func TestKernelAtomic(t *testing.T) {
	k := newKernel(t, newNS(t))
	tbl := baseTable()
	mustApply(t, k, tbl, nil)

	bad := baseTable()
	setOf(bad, "bridges").Elements = []string{"hnbr-9"}
	chainOf(bad, "isolate").Rules = []Rule{{Comment: "bad", Exprs: []Expr{Masquerade()}}}
	if err := bad.Validate(); err != nil {
		t.Fatalf("the bad table should pass Validate: %v", err)
	}
	err := k.Apply(bad)
	if err == nil {
		t.Fatal("kernel accepted masquerade in a chain jumped to from a filter chain")
	}
	t.Logf("expected error: %v", err)
	if !strings.Contains(err.Error(), "apply table hostnet") || !strings.Contains(err.Error(), "isolate") {
		t.Errorf("error does not name the table and the chain: %v", err)
	}
	checkKernel(t, k, tbl)
	// The applier recovers: the next Apply rereads and works.
	setOf(tbl, "bridges").Elements = []string{"hnbr-9"}
	mustApply(t, k, tbl, []string{"delete 2 elements from set bridges", "add 1 elements to set bridges"})
}

func TestKernelLargeSets(t *testing.T) {
	k := newKernel(t, newNS(t))
	const n = 20000
	v4 := make([]string, 0, n)
	v6 := make([]string, 0, n)
	names := make([]string, 0, n)
	for i := 0; i < n; i++ {
		v4 = append(v4, fmt.Sprintf("10.%d.%d.0/25", i/256, i%256))
		v6 = append(v6, fmt.Sprintf("fd00:%x::/64", i))
		names = append(names, fmt.Sprintf("hn%d", i))
	}
	tbl := &Table{Name: "big", Sets: []*Set{
		{Name: "v4", Key: []KeyType{KeyIPv4}, Interval: true, Elements: v4},
		{Name: "v6", Key: []KeyType{KeyIPv6}, Interval: true, Elements: v6},
		{Name: "names", Key: []KeyType{KeyIfname, KeyIfname}, Elements: func() []string {
			out := make([]string, len(names))
			for i, s := range names {
				out[i] = s + " . " + s
			}
			return out
		}()},
	}}
	mustApply(t, k, tbl, nil)
	tbl.Sets[0].Elements = v4[:n-1]
	mustApply(t, k, tbl, []string{"delete 1 elements from set v4"})
	got, err := k.read(tableKey{FamilyInet, "big"})
	if err != nil {
		t.Fatal(err)
	}
	keys := sortedKeys(got.sets["v4"].elems)
	sort.Strings(keys)
	if len(keys) != n-1 {
		t.Errorf("v4 has %d elements, want %d", len(keys), n-1)
	}
}

// Drift sees what someone else changed in the kernel (an element removed,
// the whole table deleted) as the operations that would put it back, and
// nothing once it is back.
func TestKernelDrift(t *testing.T) {
	ns := newNS(t)
	k := newKernel(t, ns)
	other := newKernel(t, ns) // someone else, with a cache of its own
	tbl := sampleTable()
	if err := k.Apply(tbl); err != nil {
		t.Fatal(err)
	}
	if ops, err := k.Drift(tbl); err != nil || len(ops) != 0 {
		t.Fatalf("drift right after Apply: %v, %v", ops, err)
	}
	var set *Set
	for _, s := range tbl.Sets {
		if len(s.Elements) > 0 {
			set = s
			break
		}
	}
	if set == nil {
		t.Fatal("the sample table has no set with elements")
	}
	if err := other.Patch(TablePatch{Table: tbl.Name, DeleteElements: map[string][]string{set.Name: {set.Elements[0]}}}); err != nil {
		t.Fatal(err)
	}
	ops, err := k.Drift(tbl)
	if err != nil || len(ops) != 1 || !strings.Contains(ops[0], set.Name) {
		t.Errorf("drift after an element was removed by someone else: %v, %v", ops, err)
	}
	if err := other.Delete(tbl.Name); err != nil {
		t.Fatal(err)
	}
	if ops, err := k.Drift(tbl); err != nil || len(ops) == 0 {
		t.Errorf("drift after the table was deleted: %v, %v", ops, err)
	}
	if err := k.Apply(tbl); err != nil {
		t.Fatal(err)
	}
	if ops, err := k.Drift(tbl); err != nil || len(ops) != 0 {
		t.Errorf("drift once repaired: %v, %v", ops, err)
	}
}
