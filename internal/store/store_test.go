package store

import (
	"bytes"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"testing"

	bolt "go.etcd.io/bbolt"
)

// conformance runs the Store contract against one implementation.
func conformance(t *testing.T, s Store) {
	t.Helper()
	err := s.Update(func(tx Tx) error {
		for _, k := range []string{"a/2", "a/1", "b/1", "a/3"} {
			if err := tx.Put(IPAM, k, []byte("v"+k)); err != nil {
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
		if err := tx.Put(IPAM, "a/1", []byte("changed")); err != nil {
			return err
		}
		if err := tx.Put(IPAM, "c/1", []byte("new")); err != nil {
			return err
		}
		if err := tx.Delete(IPAM, "a/2"); err != nil {
			return err
		}
		return boom
	})
	if !errors.Is(err, boom) {
		t.Fatalf("Update returned %v, want the callback's error", err)
	}

	err = s.View(func(tx Tx) error {
		v, err := tx.Get(IPAM, "a/1")
		if err != nil || string(v) != "va/1" {
			t.Errorf("after rollback a/1 = %q, %v", v, err)
		}
		if _, err := tx.Get(IPAM, "c/1"); !errors.Is(err, ErrNotFound) {
			t.Errorf("after rollback c/1: %v, want ErrNotFound", err)
		}
		var keys []string
		if err := tx.ForEach(IPAM, "a/", func(k string, _ []byte) error {
			keys = append(keys, k)
			return nil
		}); err != nil {
			return err
		}
		if len(keys) != 3 || keys[0] != "a/1" || keys[1] != "a/2" || keys[2] != "a/3" {
			t.Errorf("ForEach a/ = %v, want [a/1 a/2 a/3]", keys)
		}
		if err := tx.Put(IPAM, "x", nil); err == nil {
			t.Error("Put in View succeeded")
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}

	if err := s.Update(func(tx Tx) error { return tx.Delete(IPAM, "absent") }); err != nil {
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
		_, err := tx.Get(IPAM, "a/3")
		return err
	}); err != nil {
		t.Errorf("after reopen: %v", err)
	}
}

// A damaged state file (truncated, overwritten with garbage, not hostnet's)
// is refused with a DamagedError that names it
// and says how to recover; the backup taken at the last sound start puts
// it back, the damaged file kept aside.
func TestBoltDamage(t *testing.T) {
	good := func(t *testing.T) string {
		dir := t.TempDir()
		s, err := OpenBolt(dir)
		if err != nil {
			t.Fatal(err)
		}
		if !s.Fresh {
			t.Error("a new state file is not Fresh")
		}
		if err := s.Update(func(tx Tx) error {
			for i := 0; i < 200; i++ {
				if err := tx.Put(Networks, fmt.Sprintf("net-%03d", i), []byte(`{"Name":"n"}`)); err != nil {
					return err
				}
			}
			return nil
		}); err != nil {
			t.Fatal(err)
		}
		s.Close()
		// A second start takes the backup of the written state.
		s, err = OpenBolt(dir)
		if err != nil {
			t.Fatal(err)
		}
		if s.Fresh {
			t.Error("an existing state file is Fresh")
		}
		s.Close()
		return dir
	}
	damage := map[string]func(path string) error{
		"truncated": func(path string) error { return os.Truncate(path, 3*4096) },
		"garbage": func(path string) error {
			b, _ := os.ReadFile(path)
			for i := range b {
				b[i] = byte(i*7 + 13)
			}
			return os.WriteFile(path, b, 0o600)
		},
		"garbage after the meta pages": func(path string) error {
			b, _ := os.ReadFile(path)
			for i := 2 * 4096; i < len(b); i++ {
				b[i] = byte(i*31 + 5)
			}
			return os.WriteFile(path, b, 0o600)
		},
		"empty": func(path string) error { return os.WriteFile(path, nil, 0o600) },
		"not hostnet's": func(path string) error {
			os.Remove(path)
			db, err := bolt.Open(path, 0o600, nil)
			if err != nil {
				return err
			}
			return db.Close()
		},
	}
	for name, hurt := range damage {
		t.Run(name, func(t *testing.T) {
			dir := good(t)
			path := filepath.Join(dir, BoltFile)
			if err := hurt(path); err != nil {
				t.Fatal(err)
			}
			before, _ := os.ReadFile(path)
			_, err := OpenBolt(dir)
			var damaged *DamagedError
			if !errors.As(err, &damaged) || !damaged.Backup || !strings.Contains(err.Error(), "--restore-backup") {
				t.Fatalf("open: %v", err)
			}
			if after, _ := os.ReadFile(path); !bytes.Equal(before, after) {
				t.Error("the damaged file was written to")
			}
			aside, err := RestoreBackup(dir)
			if err != nil || aside == "" {
				t.Fatalf("restore: %q, %v", aside, err)
			}
			if kept, _ := os.ReadFile(aside); !bytes.Equal(kept, before) {
				t.Error("the damaged file was not kept aside as it was")
			}
			s, err := OpenBolt(dir)
			if err != nil {
				t.Fatalf("open after restore: %v", err)
			}
			defer s.Close()
			n := 0
			_ = s.View(func(tx Tx) error {
				return tx.ForEach(Networks, "", func(string, []byte) error { n++; return nil })
			})
			if n != 200 {
				t.Errorf("after restore: %d networks, want 200", n)
			}
		})
	}
}

// A state file that is gone while its backup is there is refused: the
// state was lost, not never made.
func TestBoltMissingWithBackup(t *testing.T) {
	dir := t.TempDir()
	s, err := OpenBolt(dir)
	if err != nil {
		t.Fatal(err)
	}
	s.Close()
	os.Remove(filepath.Join(dir, BoltFile))
	if _, err := OpenBolt(dir); !errors.Is(err, ErrStateMissing) {
		t.Errorf("open without the state file: %v", err)
	}
	if _, err := RestoreBackup(dir); err != nil {
		t.Fatal(err)
	}
	s, err = OpenBolt(dir)
	if err != nil {
		t.Fatal(err)
	}
	s.Close()
}

// Random damage anywhere in the file never crashes the opening: it is
// found (DamagedError) or harmless (the file opens and reads).
func TestBoltRandomDamage(t *testing.T) {
	dir := t.TempDir()
	s, err := OpenBolt(dir)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Update(func(tx Tx) error {
		for i := 0; i < 300; i++ {
			if err := tx.Put(Endpoints, fmt.Sprintf("ep-%03d", i), []byte(fmt.Sprintf(`{"Name":"endpoint %d","Padding":"%s"}`, i, strings.Repeat("x", 200)))); err != nil {
				return err
			}
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	s.Close()
	path := filepath.Join(dir, BoltFile)
	pristine, _ := os.ReadFile(path)
	rng := rand.New(rand.NewPCG(1, 2))
	found := 0
	for i := 0; i < 300; i++ {
		b := append([]byte(nil), pristine...)
		for j := 0; j < 1+rng.IntN(8); j++ {
			b[rng.IntN(len(b))] = byte(rng.Uint32())
		}
		if err := os.WriteFile(path, b, 0o600); err != nil {
			t.Fatal(err)
		}
		s, err := OpenBolt(dir)
		var damaged *DamagedError
		switch {
		case errors.As(err, &damaged):
			found++
		case err != nil:
			t.Fatalf("damage %d: an error that is not DamagedError: %v", i, err)
		default:
			s.Close()
		}
	}
	t.Logf("%d of 300 damaged files refused", found)
}

// A state file of the format before the outbox (hostnet-store/1, without
// its bucket) opens, and is brought to the current format.
func TestBoltOpensTheFirstFormat(t *testing.T) {
	dir := t.TempDir()
	s, err := OpenBolt(dir)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.db.Update(func(tx *bolt.Tx) error {
		if err := tx.DeleteBucket([]byte(Outbox)); err != nil {
			return err
		}
		return tx.Bucket([]byte(Meta)).Put([]byte(formatKey), []byte(formatV1))
	}); err != nil {
		t.Fatal(err)
	}
	s.Close()
	s, err = OpenBolt(dir)
	if err != nil {
		t.Fatalf("a first-format file: %v", err)
	}
	defer s.Close()
	if err := s.Update(func(tx Tx) error { return tx.Put(Outbox, "1", []byte("{}")) }); err != nil {
		t.Errorf("the outbox was not added: %v", err)
	}
}

// A record that does not decode is no damage of the file: the file opens,
// and the record reads back as it is, for the service to set aside.
func TestBoltOpensOverARecordThatIsNotJSON(t *testing.T) {
	dir := t.TempDir()
	s, err := OpenBolt(dir)
	if err != nil {
		t.Fatal(err)
	}
	s.Close()
	db, err := bolt.Open(filepath.Join(dir, BoltFile), 0o600, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := db.Update(func(tx *bolt.Tx) error { return tx.Bucket([]byte(Endpoints)).Put([]byte("x"), []byte("{not json")) }); err != nil {
		t.Fatal(err)
	}
	db.Close()
	s, err = OpenBolt(dir)
	if err != nil {
		t.Fatalf("open over a record that is not JSON: %v", err)
	}
	defer s.Close()
	var got []byte
	if err := s.View(func(tx Tx) (err error) { got, err = tx.Get(Endpoints, "x"); return err }); err != nil || string(got) != "{not json" {
		t.Errorf("the record reads back as %q, %v", got, err)
	}
}

// A file of the current format made before the set-aside bucket opens,
// and gets the bucket.
func TestBoltAddsTheSetAsideBucket(t *testing.T) {
	dir := t.TempDir()
	s, err := OpenBolt(dir)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.db.Update(func(tx *bolt.Tx) error { return tx.DeleteBucket([]byte(SetAside)) }); err != nil {
		t.Fatal(err)
	}
	s.Close()
	s, err = OpenBolt(dir)
	if err != nil {
		t.Fatalf("a file without the set-aside bucket: %v", err)
	}
	defer s.Close()
	if err := s.Update(func(tx Tx) error { return tx.Put(SetAside, "networks/x", []byte("{}")) }); err != nil {
		t.Errorf("the set-aside bucket was not added: %v", err)
	}
}

// Take copies every record; Replace puts exactly those back.
func TestTakeAndReplace(t *testing.T) {
	st := NewMemory()
	put := func(b, k, v string) {
		if err := st.Update(func(tx Tx) error { return tx.Put(b, k, []byte(v)) }); err != nil {
			t.Fatal(err)
		}
	}
	put(Networks, "n1", "one")
	put(Meta, "m", "x")
	var snap Snapshot
	if err := st.View(func(tx Tx) (err error) { snap, err = Take(tx); return err }); err != nil {
		t.Fatal(err)
	}
	put(Networks, "n2", "two")
	put(Networks, "n1", "changed")
	if err := st.Update(func(tx Tx) error { return Replace(tx, snap) }); err != nil {
		t.Fatal(err)
	}
	var got Snapshot
	if err := st.View(func(tx Tx) (err error) { got, err = Take(tx); return err }); err != nil {
		t.Fatal(err)
	}
	if string(got[Networks]["n1"]) != "one" || got[Networks]["n2"] != nil || string(got[Meta]["m"]) != "x" || len(got[Networks]) != 1 {
		t.Errorf("after Replace: %v", got)
	}
}
