package nft

import (
	"reflect"
	"strings"
	"testing"

	"github.com/hostnet/hostnet/internal/dataplane/netns"
	"github.com/hostnet/hostnet/internal/nftmodel"
	"github.com/hostnet/hostnet/internal/nftmodel/nfttest"
)

// checkCache checks that the Kernel's cache of a table equals what the
// kernel holds (read back, bypassing the cache).
func checkCache(t *testing.T, k *Kernel, family nftmodel.Family, name string) {
	t.Helper()
	key := nftmodel.TableKey{Family: family, Name: name}
	cached, ok := k.known[key]
	if !ok || cached == nil {
		t.Fatalf("table %s is not cached", key)
	}
	got, err := k.read(key)
	if err != nil || got == nil {
		t.Fatalf("read %s: %v, %v", key, got, err)
	}
	if g, w := got.String(), cached.String(); g != w {
		t.Errorf("table %s: the kernel holds\n%s\nthe cache\n%s", key, g, w)
	}
}

// patchKernel applies the patch scenario's tables in a new namespace.
func patchKernel(t *testing.T) (ns netns.Handle, k *Kernel, inet, bridge *nftmodel.Table) {
	t.Helper()
	ns = newNS(t)
	k = newKernel(t, ns)
	inet, bridge = nfttest.PatchBase(), nfttest.Bridge()
	if err := k.ApplyAll(inet, bridge); err != nil {
		t.Fatal(err)
	}
	return ns, k, inet, bridge
}

// TestKernelPatch runs the patch scenario against a kernel: each step
// sends the expected batch, leaves the kernel equal to the full tables and
// to the cache; refused patches send nothing; a fresh Kernel adopting the
// result has nothing to do.
func TestKernelPatch(t *testing.T) {
	ns, k, inet, bridge := patchKernel(t)
	check := func(t *testing.T) {
		t.Helper()
		checkKernel(t, k, inet)
		checkKernel(t, k, bridge)
		checkCache(t, k, nftmodel.FamilyInet, "hostnet")
		checkCache(t, k, nftmodel.FamilyBridge, "hostnet")
	}
	for i, step := range nfttest.PatchSteps() {
		t.Run(step.Name, func(t *testing.T) {
			if err := k.Patch(step.Patches...); err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(k.lastBatch, step.Ops) && !(len(k.lastBatch) == 0 && len(step.Ops) == 0) {
				t.Errorf("batch sent:\n  %s\nwant:\n  %s", strings.Join(k.lastBatch, "\n  "), strings.Join(step.Ops, "\n  "))
			}
			step.Full(inet, bridge)
			check(t)
		})
		if i == 0 {
			t.Run("nfttest.Refusals", func(t *testing.T) {
				for _, r := range nfttest.Refusals() {
					k.lastBatch = []string{"sentinel"}
					err := k.Patch(r.Patches...)
					if err == nil || !strings.Contains(err.Error(), r.Err) {
						t.Errorf("%s: Patch = %v, want an error containing %q", r.Name, err, r.Err)
					}
					if !reflect.DeepEqual(k.lastBatch, []string{"sentinel"}) {
						t.Errorf("%s: a batch was built: %q", r.Name, k.lastBatch)
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
	if err := newKernel(t, ns).Apply(nfttest.PatchBase()); err != nil {
		t.Fatal(err)
	}
	k := newKernel(t, ns)
	step := nfttest.PatchSteps()[0]
	if err := k.Patch(step.Patches...); err != nil {
		t.Fatal(err)
	}
	want := nfttest.PatchBase()
	step.Full(want, nil)
	checkKernel(t, k, want)
	checkCache(t, k, nftmodel.FamilyInet, "hostnet")
	if err := k.Patch(nftmodel.TablePatch{Family: nftmodel.FamilyBridge, Table: "hostnet", AddElements: map[string][]string{"ports": {"x"}}}); err == nil ||
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
	tbl := nfttest.PatchBase()
	if err := k.Apply(tbl); err != nil {
		t.Fatal(err)
	}
	if err := other.Patch(nftmodel.TablePatch{Table: "hostnet", DeleteElements: map[string][]string{"ports": {"hnv0"}}}); err != nil {
		t.Fatal(err)
	}
	// k believes hnv0 is there: it sends its deletion, which the kernel
	// refuses; reread, the deletion is a no-op and the addition goes.
	if err := k.Patch(nftmodel.TablePatch{Table: "hostnet", DeleteElements: map[string][]string{"ports": {"hnv0"}},
		AddElements: map[string][]string{"ports": {"hnv1"}}}); err != nil {
		t.Fatal(err)
	}
	if want := []string{"add 1 elements to set ports"}; !reflect.DeepEqual(k.lastBatch, want) {
		t.Errorf("batch after the reread: %q, want %q", k.lastBatch, want)
	}
	nfttest.SetOf(tbl, "ports").Elements = []string{"hnv1"}
	checkKernel(t, k, tbl)
	checkCache(t, k, nftmodel.FamilyInet, "hostnet")
}

// TestKernelPatchAtomic sends patches of two tables in one batch, one of
// which the kernel refuses at commit (ct in a bridge table: these
// kernels lack nf_conntrack_bridge): neither table changes, nor the cache.
func TestKernelPatchAtomic(t *testing.T) {
	_, k, inet, bridge := patchKernel(t)
	err := k.Patch(
		nftmodel.TablePatch{Table: "hostnet", AddElements: map[string][]string{"ports": {"hnv9"}},
			AddChains:      []*nftmodel.Chain{{Name: "acl_e9", Rules: []nftmodel.Rule{{Exprs: []nftmodel.Expr{nftmodel.Accept()}}}}},
			SetMapElements: map[string]map[string]string{"acl": {"10.0.0.9": "jump acl_e9"}}},
		nftmodel.TablePatch{Family: nftmodel.FamilyBridge, Table: "hostnet", AddElements: map[string][]string{"ports": {"hnv9"}},
			AddChains:      []*nftmodel.Chain{{Name: "ct", Rules: []nftmodel.Rule{{Exprs: []nftmodel.Expr{nftmodel.CtState("established"), nftmodel.Accept()}}}}},
			SetMapElements: map[string]map[string]string{"acl_in": {"hnv9": "jump ct"}}},
	)
	refusedForBridgeConntrack(t, err)
	for _, want := range []string{"patch hostnet, bridge hostnet", "nf_conntrack_bridge", "inet hostnet: add chain acl_e9"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error does not say %q: %v", want, err)
		}
	}
	checkKernel(t, k, inet)
	checkKernel(t, k, bridge)
	checkCache(t, k, nftmodel.FamilyInet, "hostnet")
	checkCache(t, k, nftmodel.FamilyBridge, "hostnet")
	// The Kernel goes on.
	if err := k.Patch(nftmodel.TablePatch{Table: "hostnet", AddElements: map[string][]string{"ports": {"hnv9"}}}); err != nil {
		t.Fatal(err)
	}
	nfttest.AddTo(inet, "ports", "hnv9")
	checkKernel(t, k, inet)
}

// TestKernelApplyAll applies an inet and a bridge table in one batch; a
// bridge table the kernel refuses leaves the inet table's change
// unapplied too.
func TestKernelApplyAll(t *testing.T) {
	_, k, inet, bridge := patchKernel(t)
	if len(k.lastBatch) == 0 || k.lastBatch[0] != "inet hostnet: add table" || !strings.HasPrefix(k.lastBatch[len(k.lastBatch)-1], "bridge hostnet: ") {
		t.Errorf("batch %q", k.lastBatch)
	}
	checkKernel(t, k, inet)
	checkKernel(t, k, bridge)
	if err := k.ApplyAll(inet, bridge); err != nil || len(k.lastBatch) != 0 {
		t.Errorf("ApplyAll again: %v, sent %q", err, k.lastBatch)
	}

	changed := nfttest.PatchBase()
	nfttest.AddTo(changed, "ports", "hnv1")
	badBridge := nfttest.Bridge()
	nfttest.ChainOf(badBridge, "acl_b").Rules = []nftmodel.Rule{{Comment: "ct", Exprs: []nftmodel.Expr{nftmodel.CtState("established"), nftmodel.Accept()}}}
	err := k.ApplyAll(changed, badBridge)
	refusedForBridgeConntrack(t, err)
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
