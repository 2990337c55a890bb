package nft

import (
	"errors"
	"fmt"
)

// Applier brings hostnet's tables in one network namespace to a desired
// content. Tables are keyed by (Table.Family, Table.Name).
type Applier interface {
	// Apply makes the kernel table (t.Family, t.Name) equal to t in one atomic netlink batch,
	// creating it if absent, touching only what differs (set elements added/removed; map
	// elements added/removed, or deleted and re-added when their value changed; a chain whose
	// rule list differs is flushed and refilled inside the same batch; unchanged chains, sets
	// and maps are not touched).
	// Idempotent: applying the same table twice sends nothing the second time (or nothing that changes state).
	// On error the kernel is unchanged (the batch is atomic).
	Apply(t *Table) error
	// ApplyAll is Apply for several tables (of any families) in one atomic netlink batch: every
	// table changes or none does. Two tables with the same family and name are an error.
	ApplyAll(tables ...*Table) error
	// Patch applies incremental changes to tables the applier holds (see TablePatch), all of them
	// in one atomic netlink batch, in time proportional to the patches rather than to the tables.
	// An invalid patch (unknown table, set, map or chain; bad element text; a chain deleted while
	// still referenced) is an error naming the patch and the object, and nothing changes.
	Patch(patches ...TablePatch) error
	// Delete removes the inet table name; a table that is absent is not an error.
	Delete(name string) error
	// DeleteTable removes the table (family, name); a table that is absent is not an error.
	DeleteTable(family Family, name string) error
	// Drift describes how the tables differ from their desired content: the operations
	// ApplyAll would send, none when they agree. It reads the actual tables afresh (never a
	// cache, so that changes made by others show) and changes nothing.
	Drift(tables ...*Table) ([]string, error)
}

// ErrMapsUnsupported was returned by Apply for a table with maps, before
// the appliers supported them.
//
// Deprecated: both appliers program maps; nothing returns this error.
var ErrMapsUnsupported = errors.New("maps are not supported by the appliers yet")

// checkApplicable validates t and returns its compiled form. Both
// appliers use it so that a table the Fake accepts is one the Kernel
// accepts too.
func checkApplicable(t *Table) (*compiled, error) {
	return compile(t)
}

// checkTables validates the tables given to ApplyAll or Drift (each one
// applicable, no two with the same family and name; op names the call in
// errors) and returns their compiled forms and keys, in order.
func checkTables(op string, tables []*Table) ([]*compiled, []tableKey, error) {
	wants := make([]*compiled, len(tables))
	keys := make([]tableKey, len(tables))
	seen := map[tableKey]bool{}
	for i, t := range tables {
		want, err := checkApplicable(t)
		if err != nil {
			return nil, nil, fmt.Errorf("%s table %s: %w", op, tableName(t), err)
		}
		key := tableKey{t.Family, t.Name}
		if seen[key] {
			return nil, nil, fmt.Errorf("%s table %s: given twice", op, key)
		}
		seen[key] = true
		wants[i], keys[i] = want, key
	}
	return wants, keys, nil
}
