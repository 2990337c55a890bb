package nft

import (
	"fmt"
	"os"
	"reflect"
	"strings"
	"testing"

	"github.com/google/nftables"
	"github.com/google/nftables/expr"
	"github.com/hostnet/hostnet/internal/dataplane/netns"
	"github.com/hostnet/hostnet/internal/nftmodel"
	"github.com/hostnet/hostnet/internal/nftmodel/nfttest"
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
func mustApply(t *testing.T, k *Kernel, tbl *nftmodel.Table, want []string) {
	t.Helper()
	if err := k.Apply(tbl); err != nil {
		t.Fatalf("Apply: %v", err)
	}
	if want != nil && !reflect.DeepEqual(k.lastBatch, want) && !(len(want) == 0 && len(k.lastBatch) == 0) {
		t.Errorf("batch sent:\n  %s\nwant:\n  %s", strings.Join(k.lastBatch, "\n  "), strings.Join(want, "\n  "))
	}
	checkKernel(t, k, tbl)
}

// mustApplyElements applies tbl, whose elements only changed: the batch
// is want, no rule is touched, and applying tbl again sends nothing.
func mustApplyElements(t *testing.T, k *Kernel, tbl *nftmodel.Table, want []string) {
	t.Helper()
	before := handles(t, k, tbl.Name)
	mustApply(t, k, tbl, want)
	if after := handles(t, k, tbl.Name); !reflect.DeepEqual(before, after) {
		t.Errorf("element changes touched rules: %v -> %v", before, after)
	}
	mustApply(t, k, tbl, []string{})
}

// adopted applies a fresh table in a new namespace and checks that
// applying it again, and adopting it with a new Kernel (a daemon restart),
// sends nothing. It returns the namespace, the Kernel and the table.
func adopted(t *testing.T, fresh func() *nftmodel.Table) (netns.Handle, *Kernel, *nftmodel.Table) {
	t.Helper()
	ns := newNS(t)
	k := newKernel(t, ns)
	tbl := fresh()
	mustApply(t, k, tbl, nil)
	mustApply(t, k, fresh(), []string{})
	mustApply(t, newKernel(t, ns), fresh(), []string{})
	return ns, k, tbl
}

// created returns the steps of the batch that creates tbl.
func created(t *testing.T, tbl *nftmodel.Table) []nftmodel.Step {
	t.Helper()
	b := &nftmodel.Batch{}
	if err := b.Plan(nfttest.Compile(t, tbl), nil); err != nil {
		t.Fatal(err)
	}
	return b.Steps
}

// refusedForBridgeConntrack skips the test on a kernel that has conntrack
// for the bridge family (err is nil: it took the batch), and logs the
// refusal otherwise.
func refusedForBridgeConntrack(t *testing.T, err error) {
	t.Helper()
	if err == nil {
		t.Skip("this kernel has conntrack for the bridge family")
	}
	t.Logf("expected error: %v", err)
}

// checkKernel reads the table back from the kernel, bypassing the cache,
// and checks it holds exactly tbl: same sets with the same key types,
// flags and elements, same chains with the same hooks, priorities,
// policies and rule identities, and each rule's expressions as lowered.
func checkKernel(t *testing.T, k *Kernel, tbl *nftmodel.Table) {
	t.Helper()
	want := nfttest.Compile(t, tbl)
	got, err := k.read(tbl.Key())
	if err != nil {
		t.Fatalf("read back: %v", err)
	}
	if got == nil {
		t.Fatal("table absent after Apply")
	}
	if g, w := got.String(), want.String(); g != w {
		t.Errorf("the kernel holds\n%s\nwant\n%s", g, w)
	}
	// Each rule's expressions are what creating the table sends.
	kt := kernelTable(tbl.Key())
	for _, s := range created(t, tbl) {
		if s.Kind != nftmodel.StepAddRules {
			continue
		}
		rules, err := k.conn.GetRules(kt, &nftables.Chain{Name: s.Name, Table: kt})
		if err != nil {
			t.Fatal(err)
		}
		for i, r := range rules {
			w, err := kernelRule(kt, s.Name, s.Rules[i])
			if err != nil {
				t.Fatal(err)
			}
			if g, w := exprDump(r.Exprs), exprDump(w.Exprs); g != w {
				t.Errorf("chain %s rule %d: kernel expressions\n  %s\nwant\n  %s", s.Name, i, g, w)
			}
		}
	}
	// A fresh reading yields an empty plan.
	b := &nftmodel.Batch{}
	if err := b.Plan(want, got); err != nil || len(b.Steps) != 0 {
		t.Errorf("plan against a fresh reading is not empty: %q, %v", b.Ops(), err)
	}
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
	ns, k, _ := adopted(t, nfttest.Sample)
	// A new applier (a daemon restart) adopts the table as it is.
	k2 := newKernel(t, ns)
	mustApply(t, k2, nfttest.Sample(), []string{})
	if err := k.Delete("hostnet"); err != nil {
		t.Fatal(err)
	}
	if err := k.Delete("hostnet"); err != nil {
		t.Errorf("second Delete: %v", err)
	}
	if got, err := k.read(nftmodel.TableKey{Name: "hostnet"}); err != nil || got != nil {
		t.Errorf("after Delete: %v, %v", got, err)
	}
	// k2 trusts its cache (it believes the table is there) until Resync.
	k2.Resync()
	mustApply(t, k2, nfttest.Sample(), nil)
}

// baseTable is a small table for incremental tests.
func baseTable() *nftmodel.Table {
	return &nftmodel.Table{
		Name: "hostnet",
		Sets: []*nftmodel.Set{
			{Name: "bridges", Key: []nftmodel.KeyType{nftmodel.KeyIfname}, Elements: []string{"hnbr-1", "hnbr-2"}},
			{Name: "intra", Key: []nftmodel.KeyType{nftmodel.KeyIfname, nftmodel.KeyIfname}, Elements: []string{"hnbr-1 . hnbr-1"}},
			{Name: "nat_v4", Key: []nftmodel.KeyType{nftmodel.KeyIPv4}, Interval: true, Elements: []string{"10.0.0.0/24", "10.0.1.0/24"}},
			{Name: "nat_v6", Key: []nftmodel.KeyType{nftmodel.KeyIPv6}, Interval: true, Elements: []string{"fd00::/64"}},
			{Name: "ports", Key: []nftmodel.KeyType{nftmodel.KeyInetService}, Interval: true, Elements: []string{"80", "8000-8080"}},
			{Name: "svc", Key: []nftmodel.KeyType{nftmodel.KeyIPv4, nftmodel.KeyInetService}, Interval: true, Elements: []string{"10.0.0.0/24 . 80-90"}},
		},
		Chains: []*nftmodel.Chain{
			{Name: "forward", Type: nftmodel.ChainTypeFilter, Hook: nftmodel.HookForward, Priority: nftmodel.PriorityFilter, Rules: []nftmodel.Rule{
				{Comment: "established", Exprs: []nftmodel.Expr{nftmodel.CtState("established", "related"), nftmodel.Accept()}},
				{Comment: "intra", Exprs: []nftmodel.Expr{nftmodel.Concat(nftmodel.Iifname(), nftmodel.Oifname()).InSet("intra"), nftmodel.Accept()}},
				{Comment: "inter", Exprs: []nftmodel.Expr{nftmodel.Iifname().InSet("bridges"), nftmodel.Oifname().InSet("bridges"), nftmodel.Jump("isolate")}},
			}},
			{Name: "isolate", Rules: []nftmodel.Rule{{Comment: "drop", Exprs: []nftmodel.Expr{nftmodel.Counter(), nftmodel.Drop()}}}},
			{Name: "input", Type: nftmodel.ChainTypeFilter, Hook: nftmodel.HookInput, Priority: nftmodel.PriorityFilter, Rules: []nftmodel.Rule{
				{Comment: "ports", Exprs: []nftmodel.Expr{nftmodel.L4Proto().Eq("tcp"), nftmodel.THDport().InSet("ports"), nftmodel.Accept()}},
				{Comment: "svc", Exprs: []nftmodel.Expr{nftmodel.Concat(nftmodel.IPDaddr(), nftmodel.THDport()).InSet("svc"), nftmodel.Accept()}},
			}},
			{Name: "postrouting", Type: nftmodel.ChainTypeNAT, Hook: nftmodel.HookPostrouting, Priority: nftmodel.PrioritySrcNAT, Rules: []nftmodel.Rule{
				{Comment: "masq4", Exprs: []nftmodel.Expr{nftmodel.IPSaddr().InSet("nat_v4"), nftmodel.Oifname().NotInSet("bridges"), nftmodel.Masquerade()}},
				{Comment: "masq6", Exprs: []nftmodel.Expr{nftmodel.IP6Saddr().InSet("nat_v6"), nftmodel.Oifname().NotInSet("bridges"), nftmodel.Masquerade()}},
			}},
		},
	}
}

// packets returns the packet count of the first counter of each rule of
// the chain of inet table.
func packets(t *testing.T, k *Kernel, table, chain string) []uint64 {
	t.Helper()
	return familyPackets(t, k, nftmodel.FamilyInet, table, chain)
}

// familyPackets is packets for a table of any family.
func familyPackets(t *testing.T, k *Kernel, family nftmodel.Family, table, chain string) []uint64 {
	t.Helper()
	kt := kernelTable(nftmodel.TableKey{Family: family, Name: table})
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
		nfttest.SetOf(tbl, "bridges").Elements = []string{"hnbr-2", "hnbr-3"}
		nfttest.SetOf(tbl, "intra").Elements = []string{"hnbr-2 . hnbr-2", "hnbr-3 . hnbr-3"}
		nfttest.SetOf(tbl, "nat_v4").Elements = []string{"10.0.1.0/24", "10.0.2.0-10.0.2.9", "10.0.3.0/25", "10.0.3.128/25"}
		nfttest.SetOf(tbl, "nat_v6").Elements = []string{"fd00::/64", "fd00:1::/48", "fd00:2::7"}
		nfttest.SetOf(tbl, "ports").Elements = []string{"80-88", "65535"}
		nfttest.SetOf(tbl, "svc").Elements = []string{"10.0.0.0/24 . 80-90", "10.0.9.1 . 53"}
		mustApplyElements(t, k, tbl, []string{
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
	})

	t.Run("change one rule", func(t *testing.T) {
		before := handles(t, k, "hostnet")
		nfttest.ChainOf(tbl, "isolate").Rules[0].Exprs = []nftmodel.Expr{nftmodel.Counter(), nftmodel.Reject()}
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
		r := nfttest.ChainOf(tbl, "postrouting").Rules
		r[0], r[1] = r[1], r[0]
		mustApply(t, k, tbl, []string{"flush chain postrouting", "add 2 rules to chain postrouting"})
	})

	t.Run("policy", func(t *testing.T) {
		nfttest.ChainOf(tbl, "input").Policy = nftmodel.VerdictDrop
		mustApply(t, k, tbl, []string{"set policy of chain input to drop"})
	})

	t.Run("recreate base chain", func(t *testing.T) {
		nfttest.ChainOf(tbl, "input").Priority = 10
		mustApply(t, k, tbl, []string{"flush chain input", "delete chain input", "add chain input", "add 2 rules to chain input"})
	})

	t.Run("recreate set with new flags", func(t *testing.T) {
		// ports becomes a plain set: it is recreated, and the chain whose
		// (unchanged) rule looks it up is refilled around it.
		p := nfttest.SetOf(tbl, "ports")
		p.Interval, p.Elements = false, []string{"80", "443"}
		mustApply(t, k, tbl, []string{
			"flush chain input", "delete set ports", "add set ports", "add 2 elements to set ports",
			"add 2 rules to chain input",
		})
	})

	t.Run("remove set and chain", func(t *testing.T) {
		tbl.Sets = tbl.Sets[1:] // bridges
		fwd := nfttest.ChainOf(tbl, "forward")
		fwd.Rules = fwd.Rules[:2]
		tbl.Chains = []*nftmodel.Chain{fwd, nfttest.ChainOf(tbl, "input")}
		mustApply(t, k, tbl, []string{
			"flush chain forward", "flush chain isolate", "flush chain postrouting",
			"delete chain isolate", "delete chain postrouting", "delete set bridges",
			"add 2 rules to chain forward",
		})
	})

	t.Run("empty table", func(t *testing.T) {
		empty := &nftmodel.Table{Name: "hostnet"}
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
	nfttest.SetOf(bad, "bridges").Elements = []string{"hnbr-9"}
	nfttest.ChainOf(bad, "isolate").Rules = []nftmodel.Rule{{Comment: "bad", Exprs: []nftmodel.Expr{nftmodel.Masquerade()}}}
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
	nfttest.SetOf(tbl, "bridges").Elements = []string{"hnbr-9"}
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
	tbl := &nftmodel.Table{Name: "big", Sets: []*nftmodel.Set{
		{Name: "v4", Key: []nftmodel.KeyType{nftmodel.KeyIPv4}, Interval: true, Elements: v4},
		{Name: "v6", Key: []nftmodel.KeyType{nftmodel.KeyIPv6}, Interval: true, Elements: v6},
		{Name: "names", Key: []nftmodel.KeyType{nftmodel.KeyIfname, nftmodel.KeyIfname}, Elements: func() []string {
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
	got, err := k.read(nftmodel.TableKey{Name: "big"})
	if err != nil {
		t.Fatal(err)
	}
	if els := got.Table(nil).Sets[1].Elements; len(els) != n-1 {
		t.Errorf("v4 has %d elements, want %d", len(els), n-1)
	}
}

// Drift sees what someone else changed in the kernel (an element removed,
// the whole table deleted) as the operations that would nfttest.Put it back, and
// nothing once it is back.
func TestKernelDrift(t *testing.T) {
	ns := newNS(t)
	k := newKernel(t, ns)
	other := newKernel(t, ns) // someone else, with a cache of its own
	tbl := nfttest.Sample()
	if err := k.Apply(tbl); err != nil {
		t.Fatal(err)
	}
	if ops, err := k.Drift(tbl); err != nil || len(ops) != 0 {
		t.Fatalf("drift right after Apply: %v, %v", ops, err)
	}
	var set *nftmodel.Set
	for _, s := range tbl.Sets {
		if len(s.Elements) > 0 {
			set = s
			break
		}
	}
	if set == nil {
		t.Fatal("the sample table has no set with elements")
	}
	if err := other.Patch(nftmodel.TablePatch{Table: tbl.Name, DeleteElements: map[string][]string{set.Name: {set.Elements[0]}}}); err != nil {
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
