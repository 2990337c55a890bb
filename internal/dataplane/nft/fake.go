package nft

import (
	"fmt"
	"sort"
	"strings"
	"sync"

	"github.com/hostnet/hostnet/internal/nftmodel"
)

// Fake is an in-memory Applier for unit tests. It holds, under each
// (family, name), the content of the table: the last table applied, as
// changed by the patches since. Apply, ApplyAll and Patch validate and
// plan as the Kernel does (with nftmodel), and refuse what the Kernel
// refuses before sending, including interval elements the kernel would
// refuse; they change nothing on error. They also compute the batch the
// Kernel would send (LastOps), so tests can check that a change touches
// only what it should. Patch costs what it costs the Kernel in Go: time
// proportional to the patch.
type Fake struct {
	mu      sync.Mutex
	tables  map[nftmodel.TableKey]*fakeTable
	changes int
	applies int
	failErr error
	lastOps []string
}

// fakeTable is one table of the Fake.
type fakeTable struct {
	state *nftmodel.State // validated content, element indexes (as the Kernel's cache)
	// applied is a deep copy of the table last applied, while no patch
	// changed it; nil after a patch (the table is then rendered from state
	// and chains).
	applied *nftmodel.Table
	chains  map[string]*nftmodel.Chain // deep copies of the chains' definitions
	order   []string                   // chain names in the order of the last Apply
	patched map[string]bool            // chains created by patches since the last Apply
}

var _ Applier = (*Fake)(nil)

// NewFake returns an empty Fake.
func NewFake() *Fake {
	return &Fake{tables: map[nftmodel.TableKey]*fakeTable{}}
}

// Apply stores a deep copy of t. An invalid table (or one the Kernel
// applier would refuse) is an error and leaves the Fake unchanged. It is
// ApplyAll with one table.
func (f *Fake) Apply(t *nftmodel.Table) error { return f.ApplyAll(t) }

// ApplyAll stores deep copies of the tables, all or none: an invalid
// table, two with the same family and name, or a change the kernel would
// refuse is an error and leaves the Fake unchanged. LastOps then describes
// the one batch the Kernel would send for all of them (each op prefixed
// with "FAMILY NAME: " when there are several tables).
func (f *Fake) ApplyAll(tables ...*nftmodel.Table) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.applies++
	if err := f.takeFailure(); err != nil {
		return err
	}
	wants, err := nftmodel.CompileAll(tables...)
	if err != nil {
		return fmt.Errorf("apply %w", err)
	}
	b, refused := plan(wants, f.states(tableKeys(wants)), len(wants) > 1)
	if refused != nil {
		return fmt.Errorf("apply %w", refused)
	}
	changed := false
	for i, t := range tables {
		old, ok := f.tables[t.Key()]
		if !ok || old.render() != t.String() {
			changed = true
		}
		c := t.Clone()
		ft := &fakeTable{state: wants[i], applied: c, chains: make(map[string]*nftmodel.Chain, len(c.Chains)), patched: map[string]bool{}}
		for _, ch := range c.Chains {
			ft.chains[ch.Name] = ch
			ft.order = append(ft.order, ch.Name)
		}
		f.tables[t.Key()] = ft
	}
	f.lastOps = b.Ops()
	if changed {
		f.changes++
	}
	return nil
}

// states returns the states of the tables keys (nil for an absent one).
func (f *Fake) states(keys []nftmodel.TableKey) []*nftmodel.State {
	out := make([]*nftmodel.State, len(keys))
	for i, key := range keys {
		if ft, ok := f.tables[key]; ok {
			out[i] = ft.state
		}
	}
	return out
}

// Drift implements Applier against the Fake's tables.
func (f *Fake) Drift(tables ...*nftmodel.Table) ([]string, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	wants, err := nftmodel.CompileAll(tables...)
	if err != nil {
		return nil, fmt.Errorf("drift of %w", err)
	}
	b, _ := plan(wants, f.states(tableKeys(wants)), true)
	return b.Ops(), nil
}

// Patch applies incremental changes with the Kernel's semantics and
// validation (see TablePatch and Kernel.Patch): all patches or none, and
// on error the Fake is unchanged. Empty patches are ignored. LastOps then
// describes the batch the Kernel would send.
//
// Rendering (Dump, FamilyTable): elements and map values are shown in
// canonical form, as for an applied table. A chain created by a patch is
// placed among the regular chains that end the table (those after its
// last base chain), by name: the patched table renders as the Apply of a
// full table that lists the chains it had, then the chains created since,
// merged into that trailing run of regular chains in name order (as a
// compiler that emits its fixed chains first, then per-endpoint chains
// sorted by name, does). A replaced chain keeps its place.
func (f *Fake) Patch(patches ...nftmodel.TablePatch) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.takeFailure(); err != nil {
		return err
	}
	keys, err := nftmodel.PatchTables(patches)
	if err != nil || len(keys) == 0 {
		return wrapPatch(err)
	}
	run, err := nftmodel.PatchAll(patches, patchStates(keys, f.states(keys)))
	if err != nil {
		return wrapPatch(err)
	}
	for _, pr := range run.Results() {
		ft := f.tables[pr.Table]
		for _, name := range pr.Deleted {
			delete(ft.chains, name)
			delete(ft.patched, name)
		}
		for _, ch := range pr.Added {
			ft.chains[ch.Name] = ch
			if !pr.Replaced[ch.Name] {
				ft.patched[ch.Name] = true
			}
		}
	}
	for _, key := range keys {
		f.tables[key].applied = nil
	}
	f.lastOps = run.Batch().Ops()
	if len(f.lastOps) > 0 {
		f.changes++
	}
	return nil
}

// render returns the nft text of the table.
func (ft *fakeTable) render() string {
	if ft.applied != nil {
		return ft.applied.String()
	}
	return ft.materialize(false).String()
}

// table returns a deep copy of the table.
func (ft *fakeTable) table() *nftmodel.Table {
	if ft.applied != nil {
		return ft.applied.Clone()
	}
	return ft.materialize(true)
}

// materialize builds the Table that the state and chains describe (see
// Patch for the order of chains); with deep, chains are copies.
func (ft *fakeTable) materialize(deep bool) *nftmodel.Table {
	var kept []string
	for _, name := range ft.order {
		if _, ok := ft.chains[name]; ok && !ft.patched[name] {
			kept = append(kept, name)
		}
	}
	tail := len(kept)
	for tail > 0 && !ft.chains[kept[tail-1]].IsBase() {
		tail--
	}
	added := sortedNames(ft.patched)
	names := append([]string(nil), kept[:tail]...)
	i, j := tail, 0
	for i < len(kept) || j < len(added) {
		if j == len(added) || (i < len(kept) && kept[i] <= added[j]) {
			names = append(names, kept[i])
			i++
		} else {
			names = append(names, added[j])
			j++
		}
	}
	chains := make([]*nftmodel.Chain, len(names))
	for i, name := range names {
		chains[i] = ft.chains[name]
		if deep {
			chains[i] = chains[i].Clone()
		}
	}
	return ft.state.Table(chains)
}

func sortedNames(m map[string]bool) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

// Delete removes the inet table name; an absent table is not an error.
func (f *Fake) Delete(name string) error { return f.DeleteTable(nftmodel.FamilyInet, name) }

// DeleteTable removes the table (family, name); an absent table is not an
// error.
func (f *Fake) DeleteTable(family nftmodel.Family, name string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.takeFailure(); err != nil {
		return err
	}
	key := nftmodel.TableKey{Family: family, Name: name}
	f.lastOps = nil
	if _, ok := f.tables[key]; ok {
		delete(f.tables, key)
		f.changes++
		f.lastOps = []string{"delete table"}
	}
	return nil
}

// FailNext makes the next Apply, ApplyAll, Patch, Delete or DeleteTable return err without
// changing anything (to test callers' error paths).
func (f *Fake) FailNext(err error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.failErr = err
}

func (f *Fake) takeFailure() error {
	err := f.failErr
	f.failErr = nil
	return err
}

// sortedTableKeys returns the keys sorted by name, then family.
func (f *Fake) sortedTableKeys() []nftmodel.TableKey {
	keys := make([]nftmodel.TableKey, 0, len(f.tables))
	for k := range f.tables {
		keys = append(keys, k)
	}
	sort.Slice(keys, func(i, j int) bool {
		if keys[i].Name != keys[j].Name {
			return keys[i].Name < keys[j].Name
		}
		return keys[i].Family < keys[j].Family
	})
	return keys
}

// Dump renders every table the Fake holds, sorted by name (then family:
// inet, bridge, netdev), separated by a blank line; "" when it holds none.
// The text is deterministic.
func (f *Fake) Dump() string {
	f.mu.Lock()
	defer f.mu.Unlock()
	keys := f.sortedTableKeys()
	parts := make([]string, len(keys))
	for i, k := range keys {
		parts[i] = f.tables[k].render()
	}
	return strings.Join(parts, "\n")
}

// Table returns a deep copy of the inet table name, or nil when absent.
func (f *Fake) Table(name string) *nftmodel.Table { return f.FamilyTable(nftmodel.FamilyInet, name) }

// FamilyTable returns a deep copy of the table (family, name), or nil when
// absent.
func (f *Fake) FamilyTable(family nftmodel.Family, name string) *nftmodel.Table {
	f.mu.Lock()
	defer f.mu.Unlock()
	ft := f.tables[nftmodel.TableKey{Family: family, Name: name}]
	if ft == nil {
		return nil
	}
	return ft.table()
}

// LastOps returns the descriptions of the batch the Kernel applier would
// have sent for the last successful Apply, ApplyAll or Patch (given that
// the kernel held what the Fake held), e.g. "add 1 elements to map pm",
// "flush chain fwd" (prefixed with "FAMILY NAME: " when the batch spans
// several tables); empty when nothing changed. After DeleteTable it is
// ["delete table"], or empty when the table was absent.
func (f *Fake) LastOps() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]string(nil), f.lastOps...)
}

// Changes returns how many Apply, ApplyAll, Patch and Delete calls changed
// the content.
func (f *Fake) Changes() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.changes
}

// Applies returns how many times Apply or ApplyAll was called, successful
// or not.
func (f *Fake) Applies() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.applies
}
