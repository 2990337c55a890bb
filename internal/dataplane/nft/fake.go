package nft

import (
	"fmt"
	"sort"
	"strings"
	"sync"
)

// Fake is an in-memory Applier for unit tests. It keeps a deep copy of the
// last table applied under each name. Apply validates first, as Kernel
// does, and changes nothing on error.
type Fake struct {
	mu      sync.Mutex
	tables  map[string]*Table
	changes int
	applies int
	failErr error
}

var _ Applier = (*Fake)(nil)

// NewFake returns an empty Fake.
func NewFake() *Fake { return &Fake{tables: map[string]*Table{}} }

// Apply stores a deep copy of t. An invalid table (or one the Kernel
// applier would refuse) is an error and leaves the Fake unchanged.
func (f *Fake) Apply(t *Table) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.applies++
	if err := f.takeFailure(); err != nil {
		return err
	}
	if _, err := checkApplicable(t); err != nil {
		return fmt.Errorf("apply table %s: %w", tableName(t), err)
	}
	if old, ok := f.tables[t.Name]; ok && old.String() == t.String() {
		return nil
	}
	f.tables[t.Name] = t.Clone()
	f.changes++
	return nil
}

// Delete removes the named table; an absent table is not an error.
func (f *Fake) Delete(name string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.takeFailure(); err != nil {
		return err
	}
	if _, ok := f.tables[name]; ok {
		delete(f.tables, name)
		f.changes++
	}
	return nil
}

// FailNext makes the next Apply or Delete return err without changing
// anything (to test callers' error paths).
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

// Dump renders every table the Fake holds, sorted by name, separated by a
// blank line; "" when it holds none. The text is deterministic.
func (f *Fake) Dump() string {
	f.mu.Lock()
	defer f.mu.Unlock()
	names := make([]string, 0, len(f.tables))
	for n := range f.tables {
		names = append(names, n)
	}
	sort.Strings(names)
	parts := make([]string, len(names))
	for i, n := range names {
		parts[i] = f.tables[n].String()
	}
	return strings.Join(parts, "\n")
}

// Table returns a deep copy of the named table, or nil when absent.
func (f *Fake) Table(name string) *Table {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.tables[name].Clone()
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
	return t.Name
}
