// Package store persists hostnet's intent: every object the API accepted,
// the addresses and MACs handed out, and the indexes over them.
//
// A Store is a set of named buckets of ordered keys. Every mutation runs in
// one Update transaction, which is atomic (all of it or none of it lands)
// and durable once Update returns. The service writes intent here before it
// touches the kernel, so after a crash the store says what the kernel must
// be brought to.
package store

import (
	"encoding/json"
	"errors"
	"fmt"
)

// The buckets hostnet uses.
const (
	Networks   = "networks"   // network ID -> api.Network
	Endpoints  = "endpoints"  // endpoint ID -> api.Endpoint
	Namespaces = "namespaces" // namespace ID -> api.Namespace
	Names      = "names"      // "<kind>/<name>" -> object ID
	IPAM       = "ipam"       // "<pool>/<address key>" -> owner
	Meta       = "meta"       // store metadata, allocation cursors
	Ports      = "ports"      // published host port "<proto><family>/<port>/<address or *>" -> endpoint ID
	Outbox     = "outbox"     // sequence -> what must follow a decision beyond its records
	Routes     = "routes"     // route object ID -> api.HostComputeRoute
	// SetAside holds the records a start could not read or no longer
	// accepts, moved out of their buckets: "<bucket>/<key>" -> the raw
	// record with why and when (see the service's set-aside records).
	SetAside = "setaside"
)

// Buckets lists every bucket, for implementations that create them up front.
var Buckets = []string{Networks, Endpoints, Namespaces, Names, IPAM, Meta, Ports, Outbox, SetAside, Routes}

// ErrNotFound is returned by Get for a key that is not in the bucket.
var ErrNotFound = errors.New("not found")

// Store is hostnet's persistent state.
type Store interface {
	// View runs fn in a read-only transaction that sees one consistent
	// snapshot. fn's error is returned.
	View(fn func(Tx) error) error
	// Update runs fn in a read-write transaction. When fn returns nil the
	// transaction is committed durably before Update returns; when fn
	// returns an error nothing it wrote is kept. Updates are serialised.
	//
	// fn only decides and records: it reads and writes records and
	// nothing else (no kernel step, no socket, no change of state outside
	// the transaction), for a store may run it more than once (one that
	// retries on a conflict, as etcd's STM does).
	Update(fn func(Tx) error) error
	// UpdateEarly is Update that calls decided once fn's decision is
	// final, possibly before it is durable: the caller may start work
	// derived from what fn recorded while the commit is made durable, and
	// waits for UpdateEarly's result before taking it as done (undoing
	// that work if the commit fails). A store that retries fn calls
	// decided after its commit. decided is not called when fn fails.
	UpdateEarly(fn func(Tx) error, decided func()) error
	// Close releases the store; further calls fail.
	Close() error
}

// Tx is a transaction. Values passed to and returned from it may be
// retained by the caller: implementations copy them.
type Tx interface {
	// Get returns the value of key, or ErrNotFound.
	Get(bucket, key string) ([]byte, error)
	// Put sets key to value. It fails in a read-only transaction.
	Put(bucket, key string, value []byte) error
	// Delete removes key; removing an absent key is not an error.
	Delete(bucket, key string) error
	// ForEach calls fn for every key that starts with prefix, in byte
	// order of the keys, and stops at fn's first error, which it returns.
	// fn must not write to the transaction; value is valid only during fn.
	ForEach(bucket, prefix string, fn func(key string, value []byte) error) error
}

// GetJSON decodes the value of key into v.
func GetJSON(tx Tx, bucket, key string, v any) error {
	b, err := tx.Get(bucket, key)
	if err != nil {
		return err
	}
	if err := json.Unmarshal(b, v); err != nil {
		return fmt.Errorf("decode %s/%s: %w", bucket, key, err)
	}
	return nil
}

// PutJSON stores v, encoded as JSON, under key.
func PutJSON(tx Tx, bucket, key string, v any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return fmt.Errorf("encode %s/%s: %w", bucket, key, err)
	}
	return tx.Put(bucket, key, b)
}

// ListJSON decodes every value of bucket whose key starts with prefix.
func ListJSON[T any](tx Tx, bucket, prefix string) ([]T, error) {
	var out []T
	err := tx.ForEach(bucket, prefix, func(key string, value []byte) error {
		var v T
		if err := json.Unmarshal(value, &v); err != nil {
			return fmt.Errorf("decode %s/%s: %w", bucket, key, err)
		}
		out = append(out, v)
		return nil
	})
	return out, err
}
