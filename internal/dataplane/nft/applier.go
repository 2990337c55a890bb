// Package nft brings hostnet's nftables tables in a network namespace to
// the content that internal/nftmodel describes: Kernel, which diffs
// against what the kernel holds and sends the difference in one atomic
// netlink batch (or an incremental TablePatch, in time proportional to the
// patch), translating the model's lowered form 1:1 into
// github.com/google/nftables; and Fake, an in-memory stand-in for unit
// tests with the same semantics (both plan with the model, so they refuse
// and send the same things).
//
// The package never runs the nft or iptables binaries.
package nft

import (
	"errors"
	"fmt"
	"strings"

	"github.com/hostnet/hostnet/internal/nftmodel"
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
	Apply(t *nftmodel.Table) error
	// ApplyAll is Apply for several tables (of any families) in one atomic netlink batch: every
	// table changes or none does. Two tables with the same family and name are an error.
	ApplyAll(tables ...*nftmodel.Table) error
	// Patch applies incremental changes to tables the applier holds (see TablePatch), all of them
	// in one atomic netlink batch, in time proportional to the patches rather than to the tables.
	// An invalid patch (unknown table, set, map or chain; bad element text; an interval element
	// the kernel would refuse; a chain deleted while still referenced) is an error naming the
	// patch and the object, and nothing changes.
	Patch(patches ...nftmodel.TablePatch) error
	// Delete removes the inet table name; a table that is absent is not an error.
	Delete(name string) error
	// DeleteTable removes the table (family, name); a table that is absent is not an error.
	DeleteTable(family nftmodel.Family, name string) error
	// Drift describes how the tables differ from their desired content: the operations
	// ApplyAll would send, none when they agree. It reads the actual tables afresh (never a
	// cache, so that changes made by others show) and changes nothing.
	Drift(tables ...*nftmodel.Table) ([]string, error)
}

// ErrMapsUnsupported was returned by Apply for a table with maps, before
// the appliers supported them.
//
// Deprecated: both appliers program maps; nothing returns this error.
var ErrMapsUnsupported = errors.New("maps are not supported by the appliers yet")

// plan returns the batch that brings each table from haves[i] (nil:
// absent) to wants[i], for ApplyAll and Drift. Both appliers plan with it,
// so that a change the Fake accepts is one the Kernel sends. refused is
// the first reason the kernel would refuse the batch (an interval element
// that clashes with the set's), if any; the batch holds every step anyway.
func plan(wants, haves []*nftmodel.State, named bool) (b *nftmodel.Batch, refused error) {
	b = &nftmodel.Batch{}
	for i, want := range wants {
		b.Section(want.Key(), named)
		if err := b.Plan(want, haves[i]); err != nil && refused == nil {
			refused = fmt.Errorf("table %s: %w", want.Key(), err)
		}
	}
	return b, refused
}

// tableKeys returns the keys of states.
func tableKeys(states []*nftmodel.State) []nftmodel.TableKey {
	keys := make([]nftmodel.TableKey, len(states))
	for i, st := range states {
		keys[i] = st.Key()
	}
	return keys
}

// drifted returns the tables that a Drift batch changes.
func drifted(b *nftmodel.Batch) map[nftmodel.TableKey]bool {
	out := map[nftmodel.TableKey]bool{}
	for _, s := range b.Steps {
		out[s.Table] = true
	}
	return out
}

// joinKeys renders table keys for errors: "hostnet, bridge hostnet".
func joinKeys(keys []nftmodel.TableKey) string {
	s := make([]string, len(keys))
	for i, k := range keys {
		s[i] = k.String()
	}
	return strings.Join(s, ", ")
}
