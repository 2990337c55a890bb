package netns

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/vishvananda/netlink"
)

func TestCreateDoDelete(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root")
	}
	path := filepath.Join(t.TempDir(), "ns1")
	if err := Create(path); err != nil {
		t.Fatal(err)
	}
	defer Delete(path)
	if !IsNamespace(path) {
		t.Fatal("created path is not a namespace")
	}
	if err := Create(path); err == nil {
		t.Error("Create over an existing namespace succeeded")
	}
	ns, err := Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer ns.Close()
	root, _ := Current()
	defer root.Close()
	if root.Equal(ns) {
		t.Fatal("new namespace equals the current one")
	}
	var links []netlink.Link
	if err := Do(ns, func() error {
		var err error
		links, err = netlink.LinkList()
		return err
	}); err != nil {
		t.Fatal(err)
	}
	if len(links) != 1 || links[0].Attrs().Name != "lo" {
		t.Errorf("links in a new namespace: %d, want only lo", len(links))
	}
	after, _ := Current()
	defer after.Close()
	if !after.Equal(root) {
		t.Error("Do left the calling thread in another namespace")
	}
	if err := Delete(path); err != nil {
		t.Fatal(err)
	}
	if err := Delete(path); err != nil {
		t.Errorf("second Delete: %v", err)
	}
	if _, err := os.Stat(path); !os.IsNotExist(err) {
		t.Errorf("path still there: %v", err)
	}
}
