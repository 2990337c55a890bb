package testutil

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/hostnet/hostnet/internal/dataplane/netns"
)

// NewNS creates a throwaway network namespace named name (bound under the
// test's temporary directory) and opens it; both go when the test ends.
// It skips the test when not run as root. Kernel tests work in such
// namespaces only, never in the one the test runs in.
func NewNS(tb testing.TB, name string) (path string, h netns.Handle) {
	tb.Helper()
	if os.Geteuid() != 0 {
		tb.Skip("needs root")
	}
	path = filepath.Join(tb.TempDir(), name)
	if err := netns.Create(path); err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() {
		if err := netns.Delete(path); err != nil {
			tb.Errorf("delete netns %s: %v", path, err)
		}
	})
	h, err := netns.Open(path)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { h.Close() })
	return path, h
}
