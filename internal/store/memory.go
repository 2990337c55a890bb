package store

import (
	"bytes"
	"errors"
	"fmt"
	"sort"
	"strings"
	"sync"
)

// Memory is a Store held in memory, for unit tests of the logic above the
// store (IPAM, the service's bookkeeping). Transactions are atomic: a failed
// Update leaves the store as it was.
type Memory struct {
	mu      sync.RWMutex
	buckets map[string]map[string][]byte
	closed  bool
}

// NewMemory returns an empty Memory store with every bucket of Buckets.
func NewMemory() *Memory {
	m := &Memory{buckets: map[string]map[string][]byte{}}
	for _, b := range Buckets {
		m.buckets[b] = map[string][]byte{}
	}
	return m
}

var errClosed = errors.New("store is closed")

// View implements Store.
func (m *Memory) View(fn func(Tx) error) error {
	m.mu.RLock()
	defer m.mu.RUnlock()
	if m.closed {
		return errClosed
	}
	return fn(&memTx{m: m})
}

// Update implements Store.
func (m *Memory) Update(fn func(Tx) error) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.closed {
		return errClosed
	}
	tx := &memTx{m: m, writable: true}
	if err := fn(tx); err != nil {
		tx.rollback()
		return err
	}
	return nil
}

// UpdateEarly implements Store.
func (m *Memory) UpdateEarly(fn func(Tx) error, decided func()) error {
	return m.Update(func(tx Tx) error {
		if err := fn(tx); err != nil {
			return err
		}
		decided()
		return nil
	})
}

// Close implements Store.
func (m *Memory) Close() error {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.closed = true
	return nil
}

type undo struct {
	bucket, key string
	old         []byte // nil: the key was absent
}

type memTx struct {
	m        *Memory
	writable bool
	log      []undo
}

func (t *memTx) bucket(name string) (map[string][]byte, error) {
	b, ok := t.m.buckets[name]
	if !ok {
		return nil, fmt.Errorf("no bucket %q", name)
	}
	return b, nil
}

func (t *memTx) Get(bucket, key string) ([]byte, error) {
	b, err := t.bucket(bucket)
	if err != nil {
		return nil, err
	}
	v, ok := b[key]
	if !ok {
		return nil, ErrNotFound
	}
	return bytes.Clone(v), nil
}

func (t *memTx) Put(bucket, key string, value []byte) error {
	if !t.writable {
		return errors.New("put in a read-only transaction")
	}
	b, err := t.bucket(bucket)
	if err != nil {
		return err
	}
	t.log = append(t.log, undo{bucket, key, b[key]})
	b[key] = bytes.Clone(value)
	if b[key] == nil {
		b[key] = []byte{}
	}
	return nil
}

func (t *memTx) Delete(bucket, key string) error {
	if !t.writable {
		return errors.New("delete in a read-only transaction")
	}
	b, err := t.bucket(bucket)
	if err != nil {
		return err
	}
	if old, ok := b[key]; ok {
		t.log = append(t.log, undo{bucket, key, old})
		delete(b, key)
	}
	return nil
}

func (t *memTx) ForEach(bucket, prefix string, fn func(key string, value []byte) error) error {
	b, err := t.bucket(bucket)
	if err != nil {
		return err
	}
	keys := make([]string, 0, len(b))
	for k := range b {
		if strings.HasPrefix(k, prefix) {
			keys = append(keys, k)
		}
	}
	sort.Strings(keys)
	for _, k := range keys {
		if err := fn(k, b[k]); err != nil {
			return err
		}
	}
	return nil
}

func (t *memTx) rollback() {
	for i := len(t.log) - 1; i >= 0; i-- {
		u := t.log[i]
		if u.old == nil {
			delete(t.m.buckets[u.bucket], u.key)
		} else {
			t.m.buckets[u.bucket][u.key] = u.old
		}
	}
}
