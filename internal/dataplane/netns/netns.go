// Package netns creates, opens and removes Linux network namespaces that
// outlive their processes (bind-mounted on a file, as `ip netns add` does),
// and runs code inside one without disturbing the rest of the process.
package netns

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime"

	vnetns "github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

// Handle is an open network namespace (a file descriptor).
type Handle = vnetns.NsHandle

// Create makes a new network namespace and bind-mounts it on path, which
// must not exist (`ip netns add`). Loopback stays down; callers bring it up.
// On failure nothing is left behind.
func Create(path string) (err error) {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return fmt.Errorf("create netns directory: %w", err)
	}
	f, err := os.OpenFile(path, os.O_RDONLY|os.O_CREATE|os.O_EXCL, 0o444)
	if err != nil {
		return fmt.Errorf("create netns file: %w", err)
	}
	f.Close()
	defer func() {
		if err != nil {
			os.Remove(path)
		}
	}()
	// The new namespace is made by the thread that unshares; the bind
	// mount then pins it.
	return onThread(func() error {
		if err := unix.Unshare(unix.CLONE_NEWNET); err != nil {
			return fmt.Errorf("unshare netns: %w", err)
		}
		return nil
	}, func() error {
		self := fmt.Sprintf("/proc/self/task/%d/ns/net", unix.Gettid())
		if err := unix.Mount(self, path, "none", unix.MS_BIND, ""); err != nil {
			return fmt.Errorf("bind-mount netns on %s: %w", path, err)
		}
		return nil
	})
}

// onThread runs fn on an OS thread that enter has moved to another
// namespace, then brings the thread back. A dedicated goroutine, locked
// to its thread, does it: if the thread cannot return to its namespace,
// it is left locked and so dies with the goroutine instead of serving
// others.
func onThread(enter, fn func() error) error {
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		orig, err := vnetns.Get()
		if err != nil {
			runtime.UnlockOSThread()
			errc <- fmt.Errorf("open current netns: %w", err)
			return
		}
		defer orig.Close()
		if err := enter(); err != nil {
			runtime.UnlockOSThread()
			errc <- err
			return
		}
		ferr := fn()
		if err := vnetns.Set(orig); err != nil {
			errc <- errors.Join(ferr, fmt.Errorf("return to original netns: %w", err))
			return // the thread stays locked and exits with the goroutine
		}
		runtime.UnlockOSThread()
		errc <- ferr
	}()
	return <-errc
}

// Delete unmounts and removes a namespace made by Create (`ip netns del`).
// A path that is already gone is not an error. The namespace itself lives
// on while processes or other mounts still hold it.
func Delete(path string) error {
	err := unix.Unmount(path, unix.MNT_DETACH)
	if err != nil && !errors.Is(err, unix.EINVAL) && !errors.Is(err, unix.ENOENT) {
		return fmt.Errorf("unmount %s: %w", path, err)
	}
	if err := os.Remove(path); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("remove %s: %w", path, err)
	}
	return nil
}

// Open opens the namespace at path; the caller closes the handle.
func Open(path string) (Handle, error) {
	h, err := vnetns.GetFromPath(path)
	if err != nil {
		return vnetns.None(), fmt.Errorf("open netns %s: %w", path, err)
	}
	return h, nil
}

// IsNamespace reports whether path is a network namespace: a bind mount of
// one or a /proc/PID/ns/net link. A plain file left by a crash is not.
func IsNamespace(path string) bool {
	var st unix.Statfs_t
	if err := unix.Statfs(path, &st); err != nil {
		return false
	}
	return st.Type == unix.NSFS_MAGIC
}

// Do runs fn on an OS thread that is inside ns, and returns fn's error.
// The rest of the process stays where it is. Use it only for what has no
// namespace-bound handle (sysctls under /proc/sys/net, sockets).
func Do(ns Handle, fn func() error) error {
	return onThread(func() error {
		if err := vnetns.Set(ns); err != nil {
			return fmt.Errorf("enter netns: %w", err)
		}
		return nil
	}, fn)
}

// Identity returns the device and inode of the namespace h: what tells one
// namespace from another, whatever path it was opened by.
func Identity(h Handle) (dev, ino uint64, err error) {
	var st unix.Stat_t
	if err := unix.Fstat(int(h), &st); err != nil {
		return 0, 0, fmt.Errorf("stat namespace: %w", err)
	}
	return st.Dev, st.Ino, nil
}

// IdentityOf is Identity of the namespace at path.
func IdentityOf(path string) (dev, ino uint64, err error) {
	var st unix.Stat_t
	if err := unix.Stat(path, &st); err != nil {
		return 0, 0, fmt.Errorf("stat namespace %s: %w", path, err)
	}
	return st.Dev, st.Ino, nil
}

// Current returns a handle to the calling thread's namespace.
func Current() (Handle, error) { return vnetns.Get() }
