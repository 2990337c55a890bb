package store

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime/debug"
	"slices"
	"sync/atomic"
	"time"

	bolt "go.etcd.io/bbolt"
	berrors "go.etcd.io/bbolt/errors"
)

// BoltFile is the name of the database file inside the state directory.
const BoltFile = "hostnet.db"

// BackupFile is the copy of the database taken at each start that opened
// it sound: what RestoreBackup puts back.
const BackupFile = BoltFile + ".bak"

// formatKey marks a database as hostnet's, in the Meta bucket.
const (
	formatKey   = "format"
	formatValue = "hostnet-store/2"
	// formatV1 is the format before the outbox: its files lack the
	// buckets that came after it (laterBuckets), which opening adds.
	formatV1 = "hostnet-store/1"
)

// Bolt is the embedded Store: one bbolt file in the state directory. bbolt
// takes an exclusive lock on the file, so two daemons cannot share a state
// directory.
type Bolt struct {
	db *bolt.DB
	// Fresh is true when the file did not exist and was created empty.
	Fresh bool
	// backedUp gets the error of the backup taken at open, then closes.
	backedUp chan error
}

// DamagedError is a state file that cannot be trusted: it does not open,
// fails bbolt's consistency check, or is not hostnet's. Nothing is
// written to it.
type DamagedError struct {
	Path   string
	Err    error
	Backup bool // a sound backup exists (RestoreBackup)
}

func (e *DamagedError) Error() string {
	msg := fmt.Sprintf("the state file %s is damaged (%v); hostnetd will neither use it nor start empty, which would remove live networks", e.Path, e.Err)
	if e.Backup {
		return msg + fmt.Sprintf(". To recover, run hostnetd once with --restore-backup: it puts back %s (taken at the last sound start, checked before use) and keeps the damaged file aside", BackupFile)
	}
	return msg + ". There is no sound backup: move the file aside to start empty (hostnet's kernel objects then stay in place, unclaimed, until removed with --forget-kernel-state)"
}

func (e *DamagedError) Unwrap() error { return e.Err }

// ErrStateMissing is returned when the state file is gone but its backup
// is not: the state was lost, not never made.
var ErrStateMissing = errors.New("state file missing")

// OpenBolt opens (creating if needed) the database in dir, after checking
// it: a file that is damaged (truncated, overwritten, not hostnet's) is
// refused with a *DamagedError that says how to recover, never replaced.
// Once it is found sound, a backup of it is taken (BackupFile).
func OpenBolt(dir string) (*Bolt, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("create state directory: %w", err)
	}
	path := filepath.Join(dir, BoltFile)
	_, statErr := os.Stat(path)
	fresh := errors.Is(statErr, os.ErrNotExist)
	if fresh {
		if _, err := os.Stat(filepath.Join(dir, BackupFile)); err == nil {
			return nil, fmt.Errorf("%w: %s is gone but its backup %s is there; run hostnetd with --restore-backup to put it back, or remove the backup to start empty",
				ErrStateMissing, path, BackupFile)
		}
	}
	if !fresh {
		if err := checkFile(path); err != nil {
			var damaged *DamagedError
			if errors.As(err, &damaged) {
				damaged.Backup = backupSound(dir)
			}
			return nil, err
		}
	}
	db, err := openChecked(path, false)
	if err != nil {
		return nil, err
	}
	err = db.Update(func(tx *bolt.Tx) error {
		for _, b := range Buckets {
			if _, err := tx.CreateBucketIfNotExists([]byte(b)); err != nil {
				return err
			}
		}
		return tx.Bucket([]byte(Meta)).Put([]byte(formatKey), []byte(formatValue))
	})
	if err != nil {
		db.Close()
		return nil, fmt.Errorf("initialise %s: %w", path, err)
	}
	// The backup is written while the daemon starts (a consistent
	// snapshot of the checked file, from a read transaction): syncing a
	// file the size of the state is not on the way to serving.
	b := &Bolt{db: db, Fresh: fresh, backedUp: make(chan error, 1)}
	go func() {
		defer close(b.backedUp)
		if err := backup(db, filepath.Join(dir, BackupFile)); err != nil {
			b.backedUp <- fmt.Errorf("back up %s: %w", path, err)
		}
	}()
	return b, nil
}

// openChecked opens the bbolt file at path and, when it existed, checks
// it without writing: the file holds all the pages its metadata counts
// (not truncated), it carries hostnet's format mark, and every record of
// every bucket can be read (whether a document decodes is the service's
// to judge: it sets aside one that does not, and starts). bbolt panics, or
// faults on its memory map, on some damage: in this goroutine both are
// caught and make a damaged file too.
func openChecked(path string, existing bool) (db *bolt.DB, err error) {
	defer debug.SetPanicOnFault(debug.SetPanicOnFault(true))
	defer func() {
		if r := recover(); r != nil {
			if db != nil {
				db.Close()
			}
			db, err = nil, &DamagedError{Path: path, Err: fmt.Errorf("reading it failed: %v", r)}
		}
	}()
	if existing {
		// bbolt takes an empty file for a new database and writes one.
		if st, err := os.Stat(path); err == nil && st.Size() == 0 {
			return nil, &DamagedError{Path: path, Err: errors.New("the file is empty")}
		}
	}
	db, err = bolt.Open(path, 0o600, &bolt.Options{Timeout: 2 * time.Second, NoFreelistSync: true})
	if err != nil {
		if errors.Is(err, berrors.ErrTimeout) {
			return nil, fmt.Errorf("open %s: the database is locked by another process (is another hostnetd using this state directory?)", path)
		}
		if existing {
			return nil, &DamagedError{Path: path, Err: err}
		}
		return nil, fmt.Errorf("open %s: %w", path, err)
	}
	if !existing {
		return db, nil
	}
	if err := db.View(checkTx); err != nil {
		db.Close()
		return nil, &DamagedError{Path: path, Err: err}
	}
	return db, nil
}

// touched keeps the sum of what checkTx read, so that the reading is not
// optimised away.
var touched atomic.Uint32

// laterBuckets came after a version of the format: a file whose mark is
// one of the versions listed without the bucket is sound (opening makes
// it). The set-aside and route buckets came within the second version.
var laterBuckets = map[string][]string{Outbox: {formatV1}, SetAside: {formatV1, formatValue}, Routes: {formatV1, formatValue}}

func checkTx(tx *bolt.Tx) error {
	st, err := os.Stat(tx.DB().Path())
	if err != nil {
		return err
	}
	if st.Size() < tx.Size() {
		return fmt.Errorf("truncated: %d bytes, its data reaches %d", st.Size(), tx.Size())
	}
	meta := tx.Bucket([]byte(Meta))
	var mark []byte
	if meta != nil {
		mark = meta.Get([]byte(formatKey))
	}
	if !bytes.Equal(mark, []byte(formatV1)) && !bytes.Equal(mark, []byte(formatValue)) {
		return fmt.Errorf("no %q mark: not a hostnet state file", formatValue)
	}
	// bbolt's own consistency check (pages reachable once, keys in order):
	// damage it finds would otherwise panic in a goroutine of bbolt's when
	// the daemon opens the file to write.
	var first error
	for err := range tx.Check() {
		if first == nil {
			first = err
		}
	}
	if first != nil {
		return fmt.Errorf("inconsistent: %w", first)
	}
	for _, name := range Buckets {
		b := tx.Bucket([]byte(name))
		if b == nil && slices.Contains(laterBuckets[name], string(mark)) {
			continue
		}
		if b == nil {
			return fmt.Errorf("bucket %q is missing", name)
		}
		// bbolt's check skips a small bucket kept inline in its parent,
		// and a cursor over one whose page is no longer a leaf loops for
		// ever: its one page is looked at first (Stats counts a leaf's
		// header as in use, and nothing for a page of another type).
		if b.Root() == 0 {
			if st := b.Stats(); st.BranchPageN > 0 || st.InlineBucketInuse == 0 {
				return fmt.Errorf("bucket %q: its inline page is not a leaf", name)
			}
		}
		// Every value is read, so that damage to the pages that hold them
		// is found here. What a value says is not judged: a record that
		// does not decode is the service's to set aside at start, the
		// rest of the file being sound.
		var sum byte
		err := b.ForEach(func(k, v []byte) error {
			for _, c := range v {
				sum ^= c // touch every byte: a fault on the page is caught here
			}
			return nil
		})
		touched.Add(uint32(sum))
		if err != nil {
			return err
		}
	}
	return nil
}

// backup writes a consistent copy of db to path (through a temporary file,
// synced, then renamed: a crash leaves the old backup or the new one).
func backup(db *bolt.DB, path string) error {
	tmp := path + ".tmp"
	err := db.View(func(tx *bolt.Tx) error {
		f, err := os.OpenFile(tmp, os.O_CREATE|os.O_TRUNC|os.O_WRONLY, 0o600)
		if err != nil {
			return err
		}
		if _, err := tx.WriteTo(f); err != nil {
			f.Close()
			return err
		}
		if err := f.Sync(); err != nil {
			f.Close()
			return err
		}
		return f.Close()
	})
	if err != nil {
		os.Remove(tmp)
		return err
	}
	return os.Rename(tmp, path)
}

// backupSound tells whether dir's backup opens and passes the checks.
func backupSound(dir string) bool {
	return checkFile(filepath.Join(dir, BackupFile)) == nil
}

// RestoreBackup puts the backup of dir back in place of its state file,
// after checking the backup; the current file, if any, is kept as
// hostnet.db.damaged-TIME. It returns the path the damaged file was moved
// to ("" when there was none).
func RestoreBackup(dir string) (string, error) {
	path := filepath.Join(dir, BoltFile)
	bak := filepath.Join(dir, BackupFile)
	if _, err := os.Stat(bak); err != nil {
		return "", fmt.Errorf("restore %s: no backup: %w", path, err)
	}
	if !backupSound(dir) {
		return "", fmt.Errorf("restore %s: the backup %s is damaged too", path, bak)
	}
	aside := ""
	if _, err := os.Stat(path); err == nil {
		aside = path + ".damaged-" + time.Now().UTC().Format("20060102T150405Z")
		if err := os.Rename(path, aside); err != nil {
			return "", fmt.Errorf("restore %s: move the damaged file aside: %w", path, err)
		}
	}
	data, err := os.ReadFile(bak)
	if err != nil {
		return aside, err
	}
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, data, 0o600); err != nil {
		return aside, err
	}
	f, err := os.Open(tmp)
	if err == nil {
		err = f.Sync()
		f.Close()
	}
	if err != nil {
		return aside, err
	}
	return aside, os.Rename(tmp, path)
}

// View implements Store.
func (s *Bolt) View(fn func(Tx) error) error {
	return s.db.View(func(tx *bolt.Tx) error { return fn(boltTx{tx}) })
}

// Update implements Store.
func (s *Bolt) Update(fn func(Tx) error) error {
	return s.db.Update(func(tx *bolt.Tx) error { return fn(boltTx{tx}) })
}

// UpdateEarly implements Store: bbolt runs fn once, so its decision is
// final when fn returns; decided runs then, while the commit's writes and
// fsyncs go on.
func (s *Bolt) UpdateEarly(fn func(Tx) error, decided func()) error {
	return s.db.Update(func(tx *bolt.Tx) error {
		if err := fn(boltTx{tx}); err != nil {
			return err
		}
		decided()
		return nil
	})
}

// Close implements Store.
// BackedUp returns the error of the backup taken at open (nil when it was
// written), once it is done.
func (s *Bolt) BackedUp() error { return <-s.backedUp }

// Close waits for the backup taken at open, then closes the file.
func (s *Bolt) Close() error {
	for range s.backedUp {
	}
	return s.db.Close()
}

type boltTx struct{ tx *bolt.Tx }

func (t boltTx) bucket(name string) (*bolt.Bucket, error) {
	b := t.tx.Bucket([]byte(name))
	if b == nil {
		return nil, fmt.Errorf("no bucket %q", name)
	}
	return b, nil
}

func (t boltTx) Get(bucket, key string) ([]byte, error) {
	b, err := t.bucket(bucket)
	if err != nil {
		return nil, err
	}
	v := b.Get([]byte(key))
	if v == nil {
		return nil, ErrNotFound
	}
	return bytes.Clone(v), nil
}

func (t boltTx) Put(bucket, key string, value []byte) error {
	b, err := t.bucket(bucket)
	if err != nil {
		return err
	}
	return b.Put([]byte(key), bytes.Clone(value))
}

func (t boltTx) Delete(bucket, key string) error {
	b, err := t.bucket(bucket)
	if err != nil {
		return err
	}
	return b.Delete([]byte(key))
}

func (t boltTx) ForEach(bucket, prefix string, fn func(key string, value []byte) error) error {
	b, err := t.bucket(bucket)
	if err != nil {
		return err
	}
	c := b.Cursor()
	p := []byte(prefix)
	for k, v := c.Seek(p); k != nil && bytes.HasPrefix(k, p); k, v = c.Next() {
		if err := fn(string(k), v); err != nil {
			return err
		}
	}
	return nil
}
