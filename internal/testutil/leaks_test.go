package testutil

import (
	"path/filepath"
	"reflect"
	"testing"
)

// Only what is present now and was not in the snapshot is a leak: objects
// that were there before (a running hostnetd's, a crashed run's) are not,
// nor are those that went away.
func TestSnapshotAdded(t *testing.T) {
	before := Snapshot{"device hnbr0123456789": true, "nftables table inet hostnet": true, "mount /run/hostnet/netns/a (nsfs)": true}
	now := []string{"nftables table inet hostnet", "device hnbr0123456789", "mount /tmp/run/h1/host.ns (nsfs)", "device hnv000000000001"}
	want := []string{"device hnv000000000001", "mount /tmp/run/h1/host.ns (nsfs)"}
	if got := before.Added(now); !reflect.DeepEqual(got, want) {
		t.Errorf("added %q, want %q", got, want)
	}
	if got := (Snapshot{}).Added(nil); len(got) != 0 {
		t.Errorf("nothing before, nothing now: %q", got)
	}
}

func TestSnapshotFile(t *testing.T) {
	s := Snapshot{"device hnbr1": true, "ip netns hn-x": true}
	path := filepath.Join(t.TempDir(), "before.json")
	if err := s.Write(path); err != nil {
		t.Fatal(err)
	}
	got, err := ReadSnapshot(path)
	if err != nil || !reflect.DeepEqual(got, s) {
		t.Errorf("read back %v, %v; want %v", got, err, s)
	}
	if _, err := ReadSnapshot(filepath.Join(t.TempDir(), "missing.json")); err == nil {
		t.Error("a missing snapshot file is no error")
	}
}

// A scope counts every mount under it; namespace mounts of other runs
// elsewhere under the temporary directory do not count then.
func TestUnder(t *testing.T) {
	for _, c := range []struct {
		path, dir string
		want      bool
	}{
		{"/tmp/run", "/tmp/run", true},
		{"/tmp/run/h1/host.ns", "/tmp/run", true},
		{"/tmp/run/h1/host.ns", "/tmp/run/", true},
		{"/tmp/runner/x", "/tmp/run", false},
		{"/tmp/hnt-e2e-1/h1/host.ns", "/tmp/run", false},
	} {
		if got := under(c.path, c.dir); got != c.want {
			t.Errorf("under(%q, %q) = %v", c.path, c.dir, got)
		}
	}
}
