package nft

import (
	"fmt"
	"sort"
	"strings"
	"sync"
)

// Fake is an in-memory Applier for unit tests. It keeps a deep copy of the
// last table applied under each (family, name). Apply validates first, as
// Kernel does, and changes nothing on error. It also computes the batch
// the Kernel would send to go from the previous table to the new one
// (LastOps), so tests can check that a change touches only what it should.
type Fake struct {
	mu       sync.Mutex
	tables   map[tableKey]*Table
	compiled map[tableKey]*compiled
	changes  int
	applies  int
	failErr  error
	lastOps  []string
}

var _ Applier = (*Fake)(nil)

// NewFake returns an empty Fake.
func NewFake() *Fake {
	return &Fake{tables: map[tableKey]*Table{}, compiled: map[tableKey]*compiled{}}
}

// Apply stores a deep copy of t. An invalid table (or one the Kernel
// applier would refuse) is an error and leaves the Fake unchanged.
func (f *Fake) Apply(t *Table) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.applies++
	if err := f.takeFailure(); err != nil {
		return err
	}
	want, err := checkApplicable(t)
	if err != nil {
		return fmt.Errorf("apply table %s: %w", tableName(t), err)
	}
	key := tableKey{t.Family, t.Name}
	b := &batch{}
	plan(b, want, f.compiled[key])
	f.lastOps = b.ops
	f.compiled[key] = want
	if old, ok := f.tables[key]; ok && old.String() == t.String() {
		return nil
	}
	f.tables[key] = t.Clone()
	f.changes++
	return nil
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
		delete(f.compiled, key)
		f.changes++
		f.lastOps = []string{"delete table"}
	}
	return nil
}

// FailNext makes the next Apply, Delete or DeleteTable return err without
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
		parts[i] = f.tables[k].String()
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
	return f.tables[tableKey{family, name}].Clone()
}

// LastOps returns the descriptions of the batch the Kernel applier would
// have sent for the last successful Apply (given that the kernel held
// what the Fake held), e.g. "add 1 elements to map pm", "flush chain
// fwd"; empty when nothing changed. After DeleteTable it is ["delete
// table"], or empty when the table was absent.
func (f *Fake) LastOps() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]string(nil), f.lastOps...)
}

// Changes returns how many Apply and Delete calls changed the content.
func (f *Fake) Changes() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.changes
}

// Applies returns how many times Apply was called, successful or not.
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
