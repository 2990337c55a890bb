package nft

import (
	"reflect"
	"strings"
	"testing"
)

// checkCache checks that the Kernel's cache of a table equals what the
// kernel holds (read back, bypassing the cache), and that its chain
// reference counts are right.
func checkCache(t *testing.T, k *Kernel, family Family, name string) {
	t.Helper()
	key := tableKey{family, name}
	cached, ok := k.known[key]
	if !ok || cached == nil {
		t.Fatalf("table %s is not cached", key)
	}
	got, err := k.read(key)
	if err != nil || got == nil {
		t.Fatalf("read %s: %v, %v", key, got, err)
	}
	if g, w := stateText(got), stateText(cached); g != w {
		t.Errorf("table %s: the kernel holds\n%s\nthe cache\n%s", key, g, w)
	}
	checkRefs(t, cached)
}

// stateText renders what the appliers compare of a table: sets and maps
// with their types and elements, chains with their hooks and rule
// identities.
func stateText(c *compiled) string {
	var b strings.Builder
	for _, name := range sortedKeys(c.sets) {
		s := c.sets[name]
		b.WriteString("set " + name + " " + keyString(s.keys) + " " + strings.Join(sortedKeys(s.elems), ", ") + "\n")
	}
	for _, name := range sortedKeys(c.maps) {
		m := c.maps[name]
		b.WriteString("map " + name + " " + keyString(m.keys) + " : " + keyString(m.vals) + " " + strings.Join(mapText(m), ", ") + "\n")
	}
	for _, name := range sortedKeys(c.chains) {
		ch := c.chains[name]
		b.WriteString("chain " + name + " " + string(ch.hook) + " " + string(ch.policy) + ":")
		for _, r := range ch.rules {
			b.WriteString(" [" + r.id + "]")
		}
		b.WriteString("\n")
	}
	return b.String()
}

// TestKernelPatch runs the patch scenario against a kernel: each step
// sends the expected batch, leaves the kernel equal to the full tables and
// to the cache; refused patches send nothing; a fresh Kernel adopting the
// result has nothing to do.
func TestKernelPatch(t *testing.T) {
	ns := newNS(t)
	k := newKernel(t, ns)
	inet, bridge := patchBase(), bridgeSample()
	if err := k.ApplyAll(inet, bridge); err != nil {
		t.Fatal(err)
	}
	check := func(t *testing.T) {
		t.Helper()
		checkKernel(t, k, inet)
		checkKernel(t, k, bridge)
		checkCache(t, k, FamilyInet, "hostnet")
		checkCache(t, k, FamilyBridge, "hostnet")
	}
	for i, step := range patchSteps() {
		t.Run(step.name, func(t *testing.T) {
			if err := k.Patch(step.patches...); err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(k.lastBatch, step.ops) && !(len(k.lastBatch) == 0 && len(step.ops) == 0) {
				t.Errorf("batch sent:\n  %s\nwant:\n  %s", strings.Join(k.lastBatch, "\n  "), strings.Join(step.ops, "\n  "))
			}
			step.full(inet, bridge)
			check(t)
		})
		if i == 0 {
			t.Run("refusals", func(t *testing.T) {
				for _, r := range refusals() {
					k.lastBatch = []string{"sentinel"}
					err := k.Patch(r.patches...)
					if err == nil || !strings.Contains(err.Error(), r.err) {
						t.Errorf("%s: Patch = %v, want an error containing %q", r.name, err, r.err)
					}
					if !reflect.DeepEqual(k.lastBatch, []string{"sentinel"}) {
						t.Errorf("%s: a batch was built: %q", r.name, k.lastBatch)
					}
				}
				check(t)
			})
		}
	}
	// A new Kernel (a daemon restart) adopts the patched tables: the full
	// tables need nothing.
	k2 := newKernel(t, ns)
	if err := k2.ApplyAll(inet, bridge); err != nil {
		t.Fatal(err)
	}
	if len(k2.lastBatch) != 0 {
		t.Errorf("a fresh Kernel sent %q for the equivalent full tables", k2.lastBatch)
	}
	// So does the patching one.
	if err := k.ApplyAll(inet, bridge); err != nil || len(k.lastBatch) != 0 {
		t.Errorf("ApplyAll after the patches: %v, sent %q", err, k.lastBatch)
	}
}

// TestKernelPatchUncached patches tables that the Kernel has not applied:
// it reads them first.
func TestKernelPatchUncached(t *testing.T) {
	ns := newNS(t)
	if err := newKernel(t, ns).Apply(patchBase()); err != nil {
		t.Fatal(err)
	}
	k := newKernel(t, ns)
	step := patchSteps()[0]
	if err := k.Patch(step.patches...); err != nil {
		t.Fatal(err)
	}
	want := patchBase()
	step.full(want, nil)
	checkKernel(t, k, want)
	checkCache(t, k, FamilyInet, "hostnet")
	if err := k.Patch(TablePatch{Family: FamilyBridge, Table: "hostnet", AddElements: map[string][]string{"ports": {"x"}}}); err == nil ||
		!strings.Contains(err.Error(), "table bridge hostnet does not exist") {
		t.Errorf("Patch of an absent table = %v", err)
	}
}

// TestKernelPatchStaleCache changes the table behind a Kernel's back: its
// next patch, built from a stale cache, is refused by the kernel, and the
// Kernel rereads the table and succeeds.
func TestKernelPatchStaleCache(t *testing.T) {
	ns := newNS(t)
	k, other := newKernel(t, ns), newKernel(t, ns)
	tbl := patchBase()
	if err := k.Apply(tbl); err != nil {
		t.Fatal(err)
	}
	if err := other.Patch(TablePatch{Table: "hostnet", DeleteElements: map[string][]string{"ports": {"hnv0"}}}); err != nil {
		t.Fatal(err)
	}
	// k believes hnv0 is there: it sends its deletion, which the kernel
	// refuses; reread, the deletion is a no-op and the addition goes.
	if err := k.Patch(TablePatch{Table: "hostnet", DeleteElements: map[string][]string{"ports": {"hnv0"}},
		AddElements: map[string][]string{"ports": {"hnv1"}}}); err != nil {
		t.Fatal(err)
	}
	if want := []string{"add 1 elements to set ports"}; !reflect.DeepEqual(k.lastBatch, want) {
		t.Errorf("batch after the reread: %q, want %q", k.lastBatch, want)
	}
	setOf(tbl, "ports").Elements = []string{"hnv1"}
	checkKernel(t, k, tbl)
	checkCache(t, k, FamilyInet, "hostnet")
}

// TestKernelPatchAtomic sends patches of two tables in one batch, one of
// which the kernel refuses at commit (ct in a bridge table: these
// kernels lack nf_conntrack_bridge): neither table changes, nor the cache.
func TestKernelPatchAtomic(t *testing.T) {
	k := newKernel(t, newNS(t))
	inet, bridge := patchBase(), bridgeSample()
	if err := k.ApplyAll(inet, bridge); err != nil {
		t.Fatal(err)
	}
	err := k.Patch(
		TablePatch{Table: "hostnet", AddElements: map[string][]string{"ports": {"hnv9"}},
			AddChains:      []*Chain{{Name: "acl_e9", Rules: []Rule{{Exprs: []Expr{Accept()}}}}},
			SetMapElements: map[string]map[string]string{"acl": {"10.0.0.9": "jump acl_e9"}}},
		TablePatch{Family: FamilyBridge, Table: "hostnet", AddElements: map[string][]string{"ports": {"hnv9"}},
			AddChains:      []*Chain{{Name: "ct", Rules: []Rule{{Exprs: []Expr{CtState("established"), Accept()}}}}},
			SetMapElements: map[string]map[string]string{"acl_in": {"hnv9": "jump ct"}}},
	)
	if err == nil {
		t.Skip("this kernel has conntrack for the bridge family")
	}
	t.Logf("expected error: %v", err)
	for _, want := range []string{"patch hostnet, bridge hostnet", "nf_conntrack_bridge", "inet hostnet: add chain acl_e9"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error does not say %q: %v", want, err)
		}
	}
	checkKernel(t, k, inet)
	checkKernel(t, k, bridge)
	checkCache(t, k, FamilyInet, "hostnet")
	checkCache(t, k, FamilyBridge, "hostnet")
	// The Kernel goes on.
	if err := k.Patch(TablePatch{Table: "hostnet", AddElements: map[string][]string{"ports": {"hnv9"}}}); err != nil {
		t.Fatal(err)
	}
	addTo(inet, "ports", "hnv9")
	checkKernel(t, k, inet)
}

// TestKernelApplyAll applies an inet and a bridge table in one batch; a
// bridge table the kernel refuses leaves the inet table's change
// unapplied too.
func TestKernelApplyAll(t *testing.T) {
	ns := newNS(t)
	k := newKernel(t, ns)
	inet, bridge := patchBase(), bridgeSample()
	if err := k.ApplyAll(inet, bridge); err != nil {
		t.Fatal(err)
	}
	if len(k.lastBatch) == 0 || k.lastBatch[0] != "inet hostnet: add table" || !strings.HasPrefix(k.lastBatch[len(k.lastBatch)-1], "bridge hostnet: ") {
		t.Errorf("batch %q", k.lastBatch)
	}
	checkKernel(t, k, inet)
	checkKernel(t, k, bridge)
	if err := k.ApplyAll(inet, bridge); err != nil || len(k.lastBatch) != 0 {
		t.Errorf("ApplyAll again: %v, sent %q", err, k.lastBatch)
	}

	changed := patchBase()
	addTo(changed, "ports", "hnv1")
	badBridge := bridgeSample()
	chainOf(badBridge, "acl_b").Rules = []Rule{{Comment: "ct", Exprs: []Expr{CtState("established"), Accept()}}}
	err := k.ApplyAll(changed, badBridge)
	if err == nil {
		t.Skip("this kernel has conntrack for the bridge family")
	}
	t.Logf("expected error: %v", err)
	if !strings.Contains(err.Error(), "apply tables hostnet, bridge hostnet") || !strings.Contains(err.Error(), "nf_conntrack_bridge") {
		t.Errorf("error does not name the tables and the cause: %v", err)
	}
	checkKernel(t, k, inet)
	checkKernel(t, k, bridge)
	// Then the inet change alone goes through.
	if err := k.ApplyAll(changed); err != nil {
		t.Fatal(err)
	}
	if want := []string{"add 1 elements to set ports"}; !reflect.DeepEqual(k.lastBatch, want) {
		t.Errorf("batch %q, want %q", k.lastBatch, want)
	}
	checkKernel(t, k, changed)
	if err := k.ApplyAll(changed, changed); err == nil || !strings.Contains(err.Error(), "given twice") {
		t.Errorf("ApplyAll of one table twice = %v", err)
	}
}
