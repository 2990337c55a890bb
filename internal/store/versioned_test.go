package store

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"
)

// versionedStores are the Versioned implementations the contract tests
// run against: bbolt and memory.
func versionedStores(t *testing.T) map[string]Versioned {
	b, err := OpenBolt(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { b.Close() })
	return map[string]Versioned{
		"bolt":   NewLocalVersioned(b, Networks),
		"memory": NewLocalVersioned(NewMemory(), Networks),
	}
}

func TestVersionedCompareAndSwap(t *testing.T) {
	ctx := context.Background()
	for name, v := range versionedStores(t) {
		t.Run(name, func(t *testing.T) {
			rev, ok, err := v.Txn(ctx, []Cond{CreateIfAbsent("n/a")}, []Op{{Key: "n/a", Value: []byte("1")}})
			if err != nil || !ok || rev != 1 {
				t.Fatalf("create: rev %d ok %v err %v", rev, ok, err)
			}
			if _, ok, _ := v.Txn(ctx, []Cond{CreateIfAbsent("n/a")}, []Op{{Key: "n/a", Value: []byte("2")}}); ok {
				t.Fatal("a second create of the same key succeeded")
			}
			kv, err := v.Get(ctx, "n/a")
			if err != nil || string(kv.Value) != "1" || kv.CreateRev != 1 || kv.ModRev != 1 {
				t.Fatalf("get: %+v %v", kv, err)
			}
			// Two writers read the same revision; one wins.
			rev, ok, _ = v.Txn(ctx, []Cond{Unchanged(kv)}, []Op{{Key: "n/a", Value: []byte("x")}, {Key: "n/b", Value: []byte("y")}})
			if !ok || rev != 2 {
				t.Fatalf("first writer: rev %d ok %v", rev, ok)
			}
			if _, ok, _ := v.Txn(ctx, []Cond{Unchanged(kv)}, []Op{{Key: "n/a", Value: []byte("z")}}); ok {
				t.Fatal("the second writer overwrote the first")
			}
			kvs, rev, err := v.List(ctx, "n/")
			if err != nil || rev != 2 || len(kvs) != 2 || string(kvs[0].Value) != "x" || kvs[0].CreateRev != 1 || kvs[0].ModRev != 2 {
				t.Fatalf("list: %+v rev %d %v", kvs, rev, err)
			}
			if _, ok, _ := v.Txn(ctx, []Cond{Unchanged(kvs[1])}, []Op{{Key: "n/b", Delete: true}}); !ok {
				t.Fatal("delete")
			}
			if _, err := v.Get(ctx, "n/b"); !errors.Is(err, ErrNotFound) {
				t.Fatalf("deleted key: %v", err)
			}
		})
	}
}

// Concurrent read-modify-write loops on one counter lose no increment.
func TestVersionedCounterUnderContention(t *testing.T) {
	ctx := context.Background()
	for name, v := range versionedStores(t) {
		t.Run(name, func(t *testing.T) {
			var wg sync.WaitGroup
			for w := 0; w < 4; w++ {
				wg.Add(1)
				go func() {
					defer wg.Done()
					for i := 0; i < 25; i++ {
						for {
							kv, err := v.Get(ctx, "counter")
							n := 0
							if err == nil {
								fmt.Sscanf(string(kv.Value), "%d", &n)
							}
							if _, ok, err := v.Txn(ctx, []Cond{{Key: "counter", ModRev: kv.ModRev}}, []Op{{Key: "counter", Value: []byte(fmt.Sprint(n + 1))}}); err != nil {
								t.Error(err)
								return
							} else if ok {
								break
							}
						}
					}
				}()
			}
			wg.Wait()
			kv, err := v.Get(ctx, "counter")
			if err != nil || string(kv.Value) != "100" {
				t.Fatalf("counter: %q %v", kv.Value, err)
			}
		})
	}
}

func TestVersionedWatch(t *testing.T) {
	for name, v := range versionedStores(t) {
		t.Run(name, func(t *testing.T) {
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			v.Txn(ctx, nil, []Op{{Key: "n/1", Value: []byte("a")}})
			ch, err := v.Watch(ctx, "n/", 0)
			if err != nil {
				t.Fatal(err)
			}
			v.Txn(ctx, nil, []Op{{Key: "n/2", Value: []byte("b")}})
			v.Txn(ctx, nil, []Op{{Key: "other/1", Value: []byte("c")}})
			v.Txn(ctx, nil, []Op{{Key: "n/1", Delete: true}})
			want := []string{"put n/2 b rev 2", "delete n/1 rev 4"}
			for _, w := range want {
				select {
				case ev := <-ch:
					got := fmt.Sprintf("put %s %s rev %d", ev.KV.Key, ev.KV.Value, ev.KV.ModRev)
					if ev.Delete {
						got = fmt.Sprintf("delete %s rev %d", ev.KV.Key, ev.KV.ModRev)
					}
					if got != w {
						t.Errorf("event %q, want %q", got, w)
					}
				case <-time.After(5 * time.Second):
					t.Fatalf("no event, want %q", w)
				}
			}
			// A watch from a past revision replays what came after it.
			again, err := v.Watch(ctx, "n/", 1)
			if err != nil {
				t.Fatal(err)
			}
			if ev := <-again; ev.KV.Key != "n/2" || ev.KV.ModRev != 2 {
				t.Errorf("replay: %+v", ev)
			}
			cancel()
			for range ch {
			}
		})
	}
}
