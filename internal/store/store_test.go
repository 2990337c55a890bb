package store

import (
	"errors"
	"testing"
)

// conformance runs the Store contract against one implementation.
func conformance(t *testing.T, s Store) {
	t.Helper()
	err := s.Update(func(tx Tx) error {
		for _, k := range []string{"a/2", "a/1", "b/1", "a/3"} {
			if err := tx.Put(Networks, k, []byte("v"+k)); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}

	// A failed update keeps nothing it wrote.
	boom := errors.New("boom")
	err = s.Update(func(tx Tx) error {
		if err := tx.Put(Networks, "a/1", []byte("changed")); err != nil {
			return err
		}
		if err := tx.Put(Networks, "c/1", []byte("new")); err != nil {
			return err
		}
		if err := tx.Delete(Networks, "a/2"); err != nil {
			return err
		}
		return boom
	})
	if !errors.Is(err, boom) {
		t.Fatalf("Update returned %v, want the callback's error", err)
	}

	err = s.View(func(tx Tx) error {
		v, err := tx.Get(Networks, "a/1")
		if err != nil || string(v) != "va/1" {
			t.Errorf("after rollback a/1 = %q, %v", v, err)
		}
		if _, err := tx.Get(Networks, "c/1"); !errors.Is(err, ErrNotFound) {
			t.Errorf("after rollback c/1: %v, want ErrNotFound", err)
		}
		var keys []string
		if err := tx.ForEach(Networks, "a/", func(k string, _ []byte) error {
			keys = append(keys, k)
			return nil
		}); err != nil {
			return err
		}
		if len(keys) != 3 || keys[0] != "a/1" || keys[1] != "a/2" || keys[2] != "a/3" {
			t.Errorf("ForEach a/ = %v, want [a/1 a/2 a/3]", keys)
		}
		if err := tx.Put(Networks, "x", nil); err == nil {
			t.Error("Put in View succeeded")
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}

	if err := s.Update(func(tx Tx) error { return tx.Delete(Networks, "absent") }); err != nil {
		t.Errorf("deleting an absent key: %v", err)
	}
	type doc struct{ A int }
	if err := s.Update(func(tx Tx) error { return PutJSON(tx, Meta, "doc", doc{A: 7}) }); err != nil {
		t.Fatal(err)
	}
	var d doc
	if err := s.View(func(tx Tx) error { return GetJSON(tx, Meta, "doc", &d) }); err != nil || d.A != 7 {
		t.Errorf("GetJSON = %+v, %v", d, err)
	}
}

func TestMemory(t *testing.T) { conformance(t, NewMemory()) }

func TestBolt(t *testing.T) {
	dir := t.TempDir()
	s, err := OpenBolt(dir)
	if err != nil {
		t.Fatal(err)
	}
	conformance(t, s)
	if _, err := OpenBolt(dir); err == nil {
		t.Error("a second OpenBolt of the same directory succeeded")
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s, err = OpenBolt(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if err := s.View(func(tx Tx) error {
		_, err := tx.Get(Networks, "a/3")
		return err
	}); err != nil {
		t.Errorf("after reopen: %v", err)
	}
}
