package daemon

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"sort"

	"github.com/hostnet/hostnet/internal/reconcile"
	"github.com/hostnet/hostnet/internal/service"
	"github.com/hostnet/hostnet/internal/store"
)

// Cleanup removes hostnet from the host that cfg describes (`hostnetd
// --cleanup`): every kernel object and file it made there (see
// service.Uninstall: the reconciler's full pass with an empty desired
// state, and the files the records name), then its own files: the state
// file, its backup and damaged copies, the lock, the socket, and the
// state and run directories when nothing else is left in them. It prints
// what it removed to w, one line each.
//
// It refuses while a daemon runs on the state directory (its lock), and,
// changing nothing, while endpoints exist, unless force. With force, a
// state file that cannot be read does not stop it: the kernel objects
// are found by their tags, and only the files the records would name may
// be left (it says so).
func Cleanup(ctx context.Context, cfg Config, force bool, w io.Writer) error {
	unlock, err := lockStateDir(cfg.StateDir)
	if err != nil {
		return err
	}
	defer unlock()
	log := cfg.Logger
	if log == nil {
		log = slog.Default()
	}
	var st store.Store
	bolt, err := store.OpenBolt(cfg.StateDir)
	switch {
	case err == nil:
		// The backup taken at open must be written before the files go.
		_ = bolt.BackedUp()
		st = bolt
		defer func() {
			if bolt != nil {
				bolt.Close()
			}
		}()
	case force:
		fmt.Fprintf(w, "the state file cannot be read (%v): removing hostnet's kernel objects by their tags; files it wrote for namespaces may be left\n", err)
		st = store.NewMemory()
	default:
		return fmt.Errorf("%w (--force removes hostnet's kernel objects anyway, found by their tags)", err)
	}

	host, err := cfg.openHost()
	if err != nil {
		return fmt.Errorf("open host namespace: %w", err)
	}
	defer host.Close()
	rec := reconcile.New(reconcile.Config{Host: host, Logger: log})
	defer rec.Close()
	svc := service.New(cfg.service(st, rec, log))
	rep, err := svc.Uninstall(ctx, force)
	svc.Close()
	if rep != nil {
		for _, r := range rep.Removed {
			fmt.Fprintln(w, "removed", r)
		}
	}
	if err != nil {
		return err
	}
	if bolt != nil {
		bolt.Close()
		bolt = nil
	}
	for _, f := range ownFiles(cfg) {
		if err := os.Remove(f); err == nil {
			fmt.Fprintln(w, "removed file", f)
		} else if !errors.Is(err, os.ErrNotExist) {
			return fmt.Errorf("remove %s: %w", f, err)
		}
	}
	for _, d := range []string{filepath.Join(cfg.RunDir, "netns"), cfg.RunDir, cfg.StateDir} {
		if err := os.Remove(d); err == nil {
			fmt.Fprintln(w, "removed directory", d)
		}
	}
	fmt.Fprintf(w, "hostnet is removed from this host (there were %d networks, %d endpoints, %d namespaces)\n",
		rep.Networks, rep.Endpoints, rep.Namespaces)
	return nil
}

// ownFiles are the daemon's own files: the socket when it is one (no
// daemon is listening: the caller holds the state directory's lock), the
// state file and its copies, and the lock.
func ownFiles(cfg Config) []string {
	var out []string
	if fi, err := os.Lstat(cfg.Socket); err == nil && fi.Mode()&os.ModeSocket != 0 {
		out = append(out, cfg.Socket)
	}
	damaged, _ := filepath.Glob(filepath.Join(cfg.StateDir, store.BoltFile+".damaged-*"))
	sort.Strings(damaged)
	out = append(out, filepath.Join(cfg.StateDir, store.BoltFile), filepath.Join(cfg.StateDir, store.BackupFile))
	out = append(out, damaged...)
	return append(out, filepath.Join(cfg.StateDir, LockFile))
}
