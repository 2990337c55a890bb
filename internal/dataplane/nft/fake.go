package nft

import (
	"fmt"
	"sort"
	"strings"
	"sync"
)

// Fake is an in-memory Applier for unit tests. It holds, under each
// (family, name), the content of the table: the last table applied, as
// changed by the patches since. Apply, ApplyAll and Patch validate as the
// Kernel does and change nothing on error. They also compute the batch
// the Kernel would send (LastOps), so tests can check that a change
// touches only what it should. Patch costs what it costs the Kernel in Go:
// time proportional to the patch.
type Fake struct {
	mu      sync.Mutex
	tables  map[tableKey]*fakeTable
	changes int
	applies int
	failErr error
	lastOps []string
}

// fakeTable is one table of the Fake.
type fakeTable struct {
	state *compiled // validated content, element indexes (as the Kernel's cache)
	// applied is a deep copy of the table last applied, while no patch
	// changed it; nil after a patch (the table is then rendered from state
	// and chains).
	applied *Table
	chains  map[string]*Chain // deep copies of the chains' definitions
	order   []string          // chain names in the order of the last Apply
	patched map[string]bool   // chains created by patches since the last Apply
}

var _ Applier = (*Fake)(nil)

// NewFake returns an empty Fake.
func NewFake() *Fake {
	return &Fake{tables: map[tableKey]*fakeTable{}}
}

// Apply stores a deep copy of t. An invalid table (or one the Kernel
// applier would refuse) is an error and leaves the Fake unchanged. It is
// ApplyAll with one table.
func (f *Fake) Apply(t *Table) error { return f.ApplyAll(t) }

// ApplyAll stores deep copies of the tables, all or none: an invalid
// table, or two with the same family and name, is an error and leaves the
// Fake unchanged. LastOps then describes the one batch the Kernel would
// send for all of them (each op prefixed with "FAMILY NAME: " when there
// are several tables).
func (f *Fake) ApplyAll(tables ...*Table) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.applies++
	if err := f.takeFailure(); err != nil {
		return err
	}
	wants, _, err := checkTables("apply", tables)
	if err != nil {
		return err
	}
	b := &batch{}
	changed := false
	for i, t := range tables {
		key := tableKey{t.Family, t.Name}
		var have *compiled
		old, ok := f.tables[key]
		if ok {
			have = old.state
		}
		b.section(key, len(tables) > 1)
		plan(b, wants[i], have)
		if !ok || old.render() != t.String() {
			changed = true
		}
		c := t.Clone()
		ft := &fakeTable{state: wants[i], applied: c, chains: make(map[string]*Chain, len(c.Chains)), patched: map[string]bool{}}
		for _, ch := range c.Chains {
			ft.chains[ch.Name] = ch
			ft.order = append(ft.order, ch.Name)
		}
		f.tables[key] = ft
	}
	f.lastOps = b.ops
	if changed {
		f.changes++
	}
	return nil
}

// Drift implements Applier against the Fake's tables.
func (f *Fake) Drift(tables ...*Table) ([]string, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	wants, keys, err := checkTables("drift of", tables)
	if err != nil {
		return nil, err
	}
	b := &batch{}
	for i, want := range wants {
		key := keys[i]
		var have *compiled
		if old, ok := f.tables[key]; ok {
			have = old.state
		}
		b.section(key, true)
		plan(b, want, have)
	}
	return b.ops, nil
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
func (f *Fake) Patch(patches ...TablePatch) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.takeFailure(); err != nil {
		return err
	}
	keys, err := checkPatches(patches)
	if err != nil || len(keys) == 0 {
		return err
	}
	for _, key := range keys {
		if f.tables[key] == nil {
			return fmt.Errorf("patch: table %s does not exist (apply it first)", key)
		}
	}
	run := &patchRun{b: &batch{}, multiple: len(keys) > 1}
	for i, p := range patches {
		if p.Empty() {
			continue
		}
		if err := run.apply(i, p, f.tables[p.key()].state); err != nil {
			run.rollback()
			return fmt.Errorf("patch: %w", err)
		}
	}
	for _, pc := range run.added {
		ft := f.tables[pc.key]
		for _, name := range pc.deleted {
			delete(ft.chains, name)
			delete(ft.patched, name)
		}
		for _, ch := range pc.added {
			ft.chains[ch.Name] = ch
			if !pc.replaced[ch.Name] {
				ft.patched[ch.Name] = true
			}
		}
	}
	for _, key := range keys {
		f.tables[key].applied = nil
	}
	f.lastOps = run.b.ops
	if len(run.b.ops) > 0 {
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
func (ft *fakeTable) table() *Table {
	if ft.applied != nil {
		return ft.applied.Clone()
	}
	return ft.materialize(true)
}

// materialize builds the Table that the state and chains describe (see
// Patch for the order of chains); with deep, chains are copies.
func (ft *fakeTable) materialize(deep bool) *Table {
	st := ft.state
	t := &Table{Family: st.family, Name: st.name}
	for _, name := range sortedKeys(st.sets) {
		ss := st.sets[name]
		t.Sets = append(t.Sets, &Set{Name: name, Key: append([]KeyType(nil), ss.keys...), Interval: ss.interval,
			Comment: ss.comment, Elements: sortedKeys(ss.elems)})
	}
	for _, name := range sortedKeys(st.maps) {
		ms := st.maps[name]
		m := &Map{Name: name, Key: append([]KeyType(nil), ms.keys...), Verdict: ms.verdict, Interval: ms.interval,
			Comment: ms.comment, Elements: make(map[string]string, len(ms.elems))}
		if !ms.verdict {
			m.Value = append([]KeyType(nil), ms.vals...)
		}
		for canon, me := range ms.elems {
			m.Elements[canon] = me.text
		}
		t.Maps = append(t.Maps, m)
	}
	var kept []string
	for _, name := range ft.order {
		if _, ok := ft.chains[name]; ok && !ft.patched[name] {
			kept = append(kept, name)
		}
	}
	tail := len(kept)
	for tail > 0 && !ft.chains[kept[tail-1]].base() {
		tail--
	}
	added := sortedKeys(ft.patched)
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
	for _, name := range names {
		ch := ft.chains[name]
		if deep {
			ch = cloneChain(ch)
		}
		t.Chains = append(t.Chains, ch)
	}
	return t
}

// Delete removes the inet table name; an absent table is not an error.
func (f *Fake) Delete(name string) error { return f.DeleteTable(FamilyInet, name) }

// DeleteTable removes the table (family, name); an absent table is not an
// error.
func (f *Fake) DeleteTable(family Family, name string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.takeFailure(); err != nil {
		return err
	}
	key := tableKey{family, name}
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
func (f *Fake) sortedTableKeys() []tableKey {
	keys := make([]tableKey, 0, len(f.tables))
	for k := range f.tables {
		keys = append(keys, k)
	}
	sort.Slice(keys, func(i, j int) bool {
		if keys[i].name != keys[j].name {
			return keys[i].name < keys[j].name
		}
		return keys[i].family < keys[j].family
	})
	return keys
}

// Dump renders every table the Fake holds, sorted by name (then family:
// inet before bridge), separated by a blank line; "" when it holds none.
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
func (f *Fake) Table(name string) *Table { return f.FamilyTable(FamilyInet, name) }

// FamilyTable returns a deep copy of the table (family, name), or nil when
// absent.
func (f *Fake) FamilyTable(family Family, name string) *Table {
	f.mu.Lock()
	defer f.mu.Unlock()
	ft := f.tables[tableKey{family, name}]
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

func tableName(t *Table) string {
	if t == nil {
		return "<nil>"
	}
	return tableKey{t.Family, t.Name}.String()
}
