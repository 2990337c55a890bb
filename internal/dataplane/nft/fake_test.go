package nft

import (
	"errors"
	"reflect"
	"strings"
	"testing"

	"github.com/hostnet/hostnet/internal/nftmodel"
	"github.com/hostnet/hostnet/internal/nftmodel/nfttest"
)

func TestFake(t *testing.T) {
	f := NewFake()
	tbl := nfttest.Sample()
	if err := f.Apply(tbl); err != nil {
		t.Fatal(err)
	}
	first := f.Dump()
	if first != tbl.String() {
		t.Error("Dump differs from the applied table's String")
	}
	// Same content again, even reordered: no change.
	again := nfttest.Sample()
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
	bad := nfttest.Sample()
	bad.Sets[1].Elements = append(bad.Sets[1].Elements, "hnbr-3")
	bad.Chains[0].Rules[0].Exprs = []nftmodel.Expr{nftmodel.IPSaddr().InSet("missing"), nftmodel.Accept()}
	if err := f.Apply(bad); err == nil || !strings.Contains(err.Error(), `unknown set "missing"`) {
		t.Errorf("Apply(bad) = %v", err)
	}
	if f.Dump() != first || f.Changes() != 1 {
		t.Error("failed Apply changed the Fake")
	}
	// Injected failure.
	boom := errors.New("boom")
	f.FailNext(boom)
	changed := nfttest.Sample()
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
	withMap := nfttest.Sample()
	withMap.Maps = []*nftmodel.Map{{Name: "m", Key: []nftmodel.KeyType{nftmodel.KeyIPv4}, Verdict: true, Elements: map[string]string{"10.0.0.1": "jump isolate"}}}
	if err := f.Apply(withMap); err != nil {
		t.Errorf("Apply(with map) = %v", err)
	}
	if err := f.Apply(changed); err != nil {
		t.Fatal(err)
	}
	// Determinism: two Fakes with tables applied in different orders dump alike.
	other := &nftmodel.Table{Name: "aaa", Chains: []*nftmodel.Chain{{Name: "c"}}}
	f1, f2 := NewFake(), NewFake()
	f1.Apply(nfttest.Sample())
	f1.Apply(other)
	f2.Apply(other)
	f2.Apply(nfttest.Sample())
	if f1.Dump() != f2.Dump() || !strings.HasPrefix(f1.Dump(), "table inet aaa") {
		t.Error("Dump is not deterministic")
	}
	if err := f1.Delete("aaa"); err != nil {
		t.Fatal(err)
	}
	if err := f1.Delete("aaa"); err != nil {
		t.Errorf("second Delete: %v", err)
	}
	if f1.Table("aaa") != nil || f1.Dump() != nfttest.Sample().String() {
		t.Error("Delete left the table")
	}
}

func TestFakeMapsAndFamilies(t *testing.T) {
	f := NewFake()
	inet, bridge := nfttest.NAT(), nfttest.Bridge()
	if err := f.Apply(inet); err != nil {
		t.Fatal(err)
	}
	if err := f.Apply(bridge); err != nil {
		t.Fatal(err)
	}
	if f.Changes() != 2 || f.FamilyTable(nftmodel.FamilyBridge, "hostnet").String() != bridge.String() || f.Table("hostnet").String() != inet.String() {
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
	if err := f.Apply(nfttest.NAT()); err != nil {
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
	bridge.Chains = append(bridge.Chains, &nftmodel.Chain{Name: "acl_c", Rules: []nftmodel.Rule{{Exprs: []nftmodel.Expr{nftmodel.Accept()}}}})
	bridge.Maps[0].Elements["hnv2"] = "jump acl_c"
	bridge.Chains = nfttest.WithoutChain(bridge.Chains, "acl_b")
	if err := f.Apply(bridge); err != nil {
		t.Fatal(err)
	}
	ops("flush chain acl_b", "delete 1 elements from map acl_in", "delete chain acl_b", "add chain acl_c",
		"add 1 elements to map acl_in", "add 1 rules to chain acl_c")
	// A map whose value type changes is recreated, and the chains whose
	// rules use it refilled.
	inet.Maps[4].Value = []nftmodel.KeyType{nftmodel.KeyIPv4, nftmodel.KeyInetService}
	inet.Maps[4].Elements = map[string]string{"10.0.0.2": "192.168.1.10 . 1024"}
	if err := f.Apply(inet); err != nil {
		t.Fatal(err)
	}
	ops("flush chain postrouting", "delete map obnat4", "add map obnat4", "add 1 elements to map obnat4", "add 3 rules to chain postrouting")
	// Removing a verdict map and the chain it jumps to.
	inet.Maps = nfttest.WithoutMap(inet.Maps, "fwd")
	inet.Chains = nfttest.WithoutChain(inet.Chains, "fwd_1")
	nfttest.ChainOf(inet, "forward").Rules = nfttest.ChainOf(inet, "forward").Rules[:1]
	if err := f.Apply(inet); err != nil {
		t.Fatal(err)
	}
	ops("flush chain forward", "flush chain fwd_1", "delete map fwd", "delete chain fwd_1", "add 1 rules to chain forward")
	// An anonymous set's elements are part of its rule.
	acl := nfttest.ChainOf(bridge, "acl_a")
	acl.Rules[1].Exprs[2] = nftmodel.THDport().InAnon("8000-8080", "81")
	if err := f.Apply(bridge); err != nil {
		t.Fatal(err)
	}
	ops("flush chain acl_a", "add 5 rules to chain acl_a")
	// Deleting one family leaves the other.
	if err := f.DeleteTable(nftmodel.FamilyBridge, "hostnet"); err != nil {
		t.Fatal(err)
	}
	ops("delete table")
	if f.FamilyTable(nftmodel.FamilyBridge, "hostnet") != nil || f.Table("hostnet") == nil {
		t.Error("DeleteTable(bridge) did not delete just the bridge table")
	}
	if err := f.DeleteTable(nftmodel.FamilyBridge, "hostnet"); err != nil {
		t.Error(err)
	}
	ops()
}

func TestFakePatch(t *testing.T) {
	f, full := NewFake(), NewFake()
	inet, bridge := nfttest.PatchBase(), nfttest.Bridge()
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
	}
	for i, step := range nfttest.PatchSteps() {
		t.Run(step.Name, func(t *testing.T) {
			changes := f.Changes()
			if err := f.Patch(step.Patches...); err != nil {
				t.Fatal(err)
			}
			if got := f.LastOps(); !reflect.DeepEqual(got, step.Ops) && !(len(got) == 0 && len(step.Ops) == 0) {
				t.Errorf("ops:\n  %s\nwant:\n  %s", strings.Join(got, "\n  "), strings.Join(step.Ops, "\n  "))
			}
			if want := changes + min(1, len(step.Ops)); f.Changes() != want {
				t.Errorf("Changes() = %d, want %d", f.Changes(), want)
			}
			step.Full(inet, bridge)
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
			t.Run("nfttest.Refusals", func(t *testing.T) {
				for _, r := range nfttest.Refusals() {
					before := f.Dump()
					err := f.Patch(r.Patches...)
					if err == nil || !strings.Contains(err.Error(), r.Err) {
						t.Errorf("%s: Patch = %v, want an error containing %q", r.Name, err, r.Err)
					}
					if f.Dump() != before {
						t.Errorf("%s: the refused patch changed the Fake", r.Name)
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
	if err := f.Patch(nftmodel.TablePatch{Table: "hostnet", AddElements: map[string][]string{"ports": {"hnv8"}}}); !errors.Is(err, boom) {
		t.Errorf("Patch after FailNext = %v", err)
	}
	if err := f.Patch(); err != nil {
		t.Errorf("Patch() = %v", err)
	}
	if err := f.DeleteTable(nftmodel.FamilyBridge, "hostnet"); err != nil {
		t.Fatal(err)
	}
	if err := f.Patch(nftmodel.TablePatch{Family: nftmodel.FamilyBridge, Table: "hostnet", AddElements: map[string][]string{"ports": {"x"}}}); err == nil {
		t.Error("Patch of a deleted table succeeded")
	}
}

// TestFakeChainOrder checks where patched chains are rendered: merged by
// name into the regular chains that end the table.
func TestFakeChainOrder(t *testing.T) {
	f := NewFake()
	base := &nftmodel.Table{Name: "t", Chains: []*nftmodel.Chain{
		{Name: "m"}, {Name: "in", Type: nftmodel.ChainTypeFilter, Hook: nftmodel.HookInput}, {Name: "b"}, {Name: "k"}, {Name: "x"},
	}}
	if err := f.Apply(base); err != nil {
		t.Fatal(err)
	}
	if err := f.Patch(nftmodel.TablePatch{Table: "t", AddChains: []*nftmodel.Chain{{Name: "z"}, {Name: "a"}, {Name: "l"}}, DeleteChains: []string{"k"}}); err != nil {
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
	if err := f.Patch(nftmodel.TablePatch{Table: "t", DeleteChains: []string{"m"}}); err != nil {
		t.Fatal(err)
	}
	if err := f.Patch(nftmodel.TablePatch{Table: "t", AddChains: []*nftmodel.Chain{{Name: "m"}}}); err != nil {
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
	if err := f.Patch(nftmodel.TablePatch{Table: "t", AddChains: []*nftmodel.Chain{{Name: "n"}}, DeleteChains: []string{"n"}}); err != nil {
		t.Fatal(err)
	}
	if f.Table("t").Chains[5].Name != "n" || !reflect.DeepEqual(f.LastOps(), []string{"add chain n"}) {
		t.Errorf("chains %v, ops %q", f.Table("t").Chains, f.LastOps())
	}
}

func TestFakeApplyAll(t *testing.T) {
	f := NewFake()
	bad := nfttest.Bridge()
	bad.Chains[0].Rules[0].Exprs = []nftmodel.Expr{nftmodel.IPSaddr().InSet("nope"), nftmodel.Accept()}
	if err := f.ApplyAll(nfttest.PatchBase(), bad); err == nil || !strings.Contains(err.Error(), "apply table bridge hostnet") {
		t.Errorf("ApplyAll = %v", err)
	}
	if f.Dump() != "" {
		t.Error("a refused ApplyAll applied a table")
	}
	if err := f.ApplyAll(nfttest.PatchBase(), nfttest.PatchBase()); err == nil || !strings.Contains(err.Error(), "given twice") {
		t.Errorf("ApplyAll of one table twice = %v", err)
	}
	if err := f.ApplyAll(nfttest.PatchBase(), nfttest.Bridge()); err != nil {
		t.Fatal(err)
	}
	if f.Changes() != 1 || f.Applies() != 3 {
		t.Errorf("changes %d applies %d, want 1 and 3", f.Changes(), f.Applies())
	}
	if ops := f.LastOps(); len(ops) == 0 || !strings.HasPrefix(ops[0], "inet hostnet: add table") || !strings.HasPrefix(ops[len(ops)-1], "bridge hostnet: ") {
		t.Errorf("ops %q", ops)
	}
	if err := f.ApplyAll(nfttest.PatchBase(), nfttest.Bridge()); err != nil || len(f.LastOps()) != 0 || f.Changes() != 1 {
		t.Errorf("ApplyAll again: %v, ops %q, changes %d", err, f.LastOps(), f.Changes())
	}
}
