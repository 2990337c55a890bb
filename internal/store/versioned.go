package store

import (
	"context"
	"errors"
	"fmt"
)

// Scope says where a bucket's records are to live once hostnet spans
// several hosts.
type Scope int

// Scopes.
const (
	// HostLocal records describe this host only: its namespaces, the
	// attachments of endpoints to them, the host ports it holds, its
	// outbox.
	HostLocal Scope = iota
	// ClusterWide records are shared by the hosts of a cluster: networks
	// (an Overlay network spans hosts), their address and MAC pools (an
	// address is unique across the hosts of a network), endpoints (other
	// hosts program the remote ones) and the names of networks.
	ClusterWide
)

// BucketScopes gives each bucket its scope. Today every bucket lives in
// the host's bbolt file (the Store); a cluster backend will hold the
// ClusterWide ones behind Versioned. Names holds the names of every kind:
// those of networks and endpoints will move with them, namespaces' stay.
var BucketScopes = map[string]Scope{
	Networks:   ClusterWide,
	Endpoints:  ClusterWide,
	IPAM:       ClusterWide,
	Names:      ClusterWide,
	Namespaces: HostLocal,
	Ports:      HostLocal,
	Outbox:     HostLocal,
	Meta:       HostLocal,
	SetAside:   HostLocal,
}

// Versioned is a key-value store with revisions, compare-and-swap and
// watches: what a cluster-wide backend offers (etcd's KV, Txn and Watch
// have these semantics), so that state several hosts share can be kept
// there with the same code as on one host (BoltVersioned, MemoryVersioned).
//
// Every successful write gives the store a new revision, a number that
// only grows; each key records the revision of its last write (ModRev)
// and of its creation (CreateRev). A transaction compares keys with
// expected revisions and, if all match, applies its writes atomically
// with one new revision: the way to update a record several hosts may
// write (read it, decide, write it if its ModRev is still what was read,
// else read again). A watch reports every write to keys with a prefix
// after a revision, in revision order, so a host follows what others
// decide.
type Versioned interface {
	// Get returns the record of key, or ErrNotFound.
	Get(ctx context.Context, key string) (KV, error)
	// List returns the records whose keys start with prefix, in key order,
	// and the store's revision they were read at.
	List(ctx context.Context, prefix string) ([]KV, int64, error)
	// Txn applies ops if every condition holds, atomically, and returns
	// the new revision (true), or the current one and false when a
	// condition does not hold (nothing is written).
	Txn(ctx context.Context, conds []Cond, ops []Op) (rev int64, ok bool, err error)
	// Watch reports the writes to keys with prefix made after revision
	// from (0: from now on), in revision order, until ctx ends; the
	// channel is then closed. A watcher that cannot keep up, or one that
	// asks for revisions the store no longer keeps, gets an event with
	// Err set (ErrCompacted) and the channel closes: it lists again.
	Watch(ctx context.Context, prefix string, from int64) (<-chan WatchEvent, error)
}

// KV is a record of a Versioned store.
type KV struct {
	Key       string
	Value     []byte
	CreateRev int64
	ModRev    int64
}

// Cond is a condition of a transaction: the key's ModRev equals ModRev
// (0: the key does not exist).
type Cond struct {
	Key    string
	ModRev int64
}

// Op is a write of a transaction: a put of Value, or, when Delete, the
// removal of Key.
type Op struct {
	Key    string
	Value  []byte
	Delete bool
}

// WatchEvent is one write a watch reports.
type WatchEvent struct {
	KV     KV // the record after the write (its Value nil for a delete)
	Delete bool
	Err    error
}

// ErrCompacted is the error of a watch that missed writes: it must list
// again and watch from the listing's revision.
var ErrCompacted = errors.New("the store no longer holds the revisions asked for")

// CreateIfAbsent is the condition that key does not exist.
func CreateIfAbsent(key string) Cond { return Cond{Key: key} }

// Unchanged is the condition that kv was not written since it was read
// (for a key that was absent when read, use CreateIfAbsent).
func Unchanged(kv KV) Cond { return Cond{Key: kv.Key, ModRev: kv.ModRev} }

// ConflictError reports the conditions of a transaction that did not hold.
type ConflictError struct{ Keys []string }

func (e *ConflictError) Error() string {
	return fmt.Sprintf("changed since it was read: %v", e.Keys)
}
