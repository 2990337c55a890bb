package store

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"sync"
)

// LocalVersioned is Versioned on a host's own Store (bbolt, or Memory in
// tests): the records of one bucket, each with its revisions, the store's
// revision under a key of Meta, and watches served in the process from
// the writes this LocalVersioned made (it must be the bucket's only
// writer) and a window of recent ones.
type LocalVersioned struct {
	st     Store
	bucket string

	mu       sync.Mutex
	recent   []WatchEvent // the last writes, oldest first
	watchers map[*watcher]struct{}
}

// recentWrites is how many past writes a watch can start from.
const recentWrites = 1024

type watcher struct {
	prefix string
	ch     chan WatchEvent
	failed bool
}

var _ Versioned = (*LocalVersioned)(nil)

// NewLocalVersioned returns the Versioned held in bucket of st.
func NewLocalVersioned(st Store, bucket string) *LocalVersioned {
	return &LocalVersioned{st: st, bucket: bucket, watchers: map[*watcher]struct{}{}}
}

type storedKV struct {
	Value     []byte `json:"v"`
	CreateRev int64  `json:"c"`
	ModRev    int64  `json:"m"`
}

func (v *LocalVersioned) revKey() string { return "versioned-rev/" + v.bucket }

func (v *LocalVersioned) rev(tx Tx) (int64, error) {
	b, err := tx.Get(Meta, v.revKey())
	if errors.Is(err, ErrNotFound) {
		return 0, nil
	}
	if err != nil {
		return 0, err
	}
	var r int64
	_, err = fmt.Sscanf(string(b), "%d", &r)
	return r, err
}

func (v *LocalVersioned) get(tx Tx, key string) (KV, error) {
	b, err := tx.Get(v.bucket, key)
	if err != nil {
		return KV{}, err
	}
	var s storedKV
	if err := json.Unmarshal(b, &s); err != nil {
		return KV{}, fmt.Errorf("decode %s/%s: %w", v.bucket, key, err)
	}
	return KV{Key: key, Value: s.Value, CreateRev: s.CreateRev, ModRev: s.ModRev}, nil
}

// Get implements Versioned.
func (v *LocalVersioned) Get(ctx context.Context, key string) (KV, error) {
	var kv KV
	err := v.st.View(func(tx Tx) (err error) { kv, err = v.get(tx, key); return err })
	return kv, err
}

// List implements Versioned.
func (v *LocalVersioned) List(ctx context.Context, prefix string) ([]KV, int64, error) {
	var out []KV
	var rev int64
	err := v.st.View(func(tx Tx) error {
		var err error
		if rev, err = v.rev(tx); err != nil {
			return err
		}
		return tx.ForEach(v.bucket, prefix, func(k string, b []byte) error {
			var s storedKV
			if err := json.Unmarshal(b, &s); err != nil {
				return fmt.Errorf("decode %s/%s: %w", v.bucket, k, err)
			}
			out = append(out, KV{Key: k, Value: s.Value, CreateRev: s.CreateRev, ModRev: s.ModRev})
			return nil
		})
	})
	return out, rev, err
}

// Txn implements Versioned.
func (v *LocalVersioned) Txn(ctx context.Context, conds []Cond, ops []Op) (int64, bool, error) {
	if err := ctx.Err(); err != nil {
		return 0, false, err
	}
	v.mu.Lock()
	defer v.mu.Unlock()
	var rev int64
	var ok bool
	var events []WatchEvent
	err := v.st.Update(func(tx Tx) error {
		ok, events = false, nil
		cur, err := v.rev(tx)
		if err != nil {
			return err
		}
		rev = cur
		for _, c := range conds {
			kv, err := v.get(tx, c.Key)
			if errors.Is(err, ErrNotFound) {
				kv = KV{}
			} else if err != nil {
				return err
			}
			if kv.ModRev != c.ModRev {
				return nil // a condition fails: nothing is written
			}
		}
		ok = true
		if len(ops) == 0 {
			return nil
		}
		rev = cur + 1
		for _, op := range ops {
			old, err := v.get(tx, op.Key)
			exists := err == nil
			if err != nil && !errors.Is(err, ErrNotFound) {
				return err
			}
			if op.Delete {
				if !exists {
					continue
				}
				if err := tx.Delete(v.bucket, op.Key); err != nil {
					return err
				}
				events = append(events, WatchEvent{KV: KV{Key: op.Key, CreateRev: old.CreateRev, ModRev: rev}, Delete: true})
				continue
			}
			s := storedKV{Value: op.Value, CreateRev: rev, ModRev: rev}
			if exists {
				s.CreateRev = old.CreateRev
			}
			if err := PutJSON(tx, v.bucket, op.Key, s); err != nil {
				return err
			}
			events = append(events, WatchEvent{KV: KV{Key: op.Key, Value: op.Value, CreateRev: s.CreateRev, ModRev: rev}})
		}
		return tx.Put(Meta, v.revKey(), []byte(fmt.Sprint(rev)))
	})
	if err != nil || !ok {
		return rev, false, err
	}
	v.publish(events)
	return rev, true, nil
}

// publish hands the events of a committed transaction to the watchers
// and keeps them for later ones. The caller holds v.mu.
func (v *LocalVersioned) publish(events []WatchEvent) {
	v.recent = append(v.recent, events...)
	if len(v.recent) > recentWrites {
		v.recent = append([]WatchEvent(nil), v.recent[len(v.recent)-recentWrites:]...)
	}
	for w := range v.watchers {
		for _, ev := range events {
			if strings.HasPrefix(ev.KV.Key, w.prefix) {
				v.send(w, ev)
			}
		}
	}
}

// send gives w an event without waiting: a watcher that does not keep up
// is told so and dropped.
func (v *LocalVersioned) send(w *watcher, ev WatchEvent) {
	if w.failed {
		return
	}
	select {
	case w.ch <- ev:
	default:
		w.failed = true
		delete(v.watchers, w)
		select {
		case w.ch <- WatchEvent{Err: ErrCompacted}:
		default:
		}
		close(w.ch)
	}
}

// Watch implements Versioned.
func (v *LocalVersioned) Watch(ctx context.Context, prefix string, from int64) (<-chan WatchEvent, error) {
	v.mu.Lock()
	defer v.mu.Unlock()
	w := &watcher{prefix: prefix, ch: make(chan WatchEvent, 256)}
	if from > 0 {
		var cur int64
		if err := v.st.View(func(tx Tx) (err error) { cur, err = v.rev(tx); return err }); err != nil {
			return nil, err
		}
		if from < cur && (len(v.recent) == 0 || v.recent[0].KV.ModRev > from+1) {
			ch := make(chan WatchEvent, 1)
			ch <- WatchEvent{Err: ErrCompacted}
			close(ch)
			return ch, nil
		}
		for _, ev := range v.recent {
			if ev.KV.ModRev > from && strings.HasPrefix(ev.KV.Key, prefix) {
				v.send(w, ev)
			}
		}
		if w.failed {
			return w.ch, nil
		}
	}
	v.watchers[w] = struct{}{}
	go func() {
		<-ctx.Done()
		v.mu.Lock()
		defer v.mu.Unlock()
		if _, ok := v.watchers[w]; ok {
			delete(v.watchers, w)
			close(w.ch)
		}
	}()
	return w.ch, nil
}
