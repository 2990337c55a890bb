package e2e

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/hostnet/hostnet/api"
	"github.com/hostnet/hostnet/internal/dataplane/netns"
	bolt "go.etcd.io/bbolt"
)

// stateFile is the daemon's bbolt state file, and backupFile the copy it
// takes at each sound start (--restore-backup puts it back).
func (e *Env) stateFile() string  { return filepath.Join(e.Dir, "state", "hostnet.db") }
func (e *Env) backupFile() string { return filepath.Join(e.Dir, "state", "hostnet.db.bak") }

// editState changes the stopped daemon's state file with bbolt, as a
// damaged disk or a hand might.
func (e *Env) editState(fn func(tx *bolt.Tx) error) {
	e.t.Helper()
	db, err := bolt.Open(e.stateFile(), 0o600, &bolt.Options{Timeout: 2 * time.Second})
	if err != nil {
		e.t.Fatal(err)
	}
	defer db.Close()
	if err := db.Update(fn); err != nil {
		e.t.Fatal(err)
	}
}

// hasLink reports whether the host namespace has a device of that name.
func (e *Env) hasLink(name string) bool {
	h := e.handle(e.HostNS)
	defer h.Close()
	_, err := h.LinkByName(name)
	return err == nil
}

// waitGone waits up to 10 s for a host device to go.
func (e *Env) waitGone(name string) bool {
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
		if !e.hasLink(name) {
			return true
		}
	}
	return false
}

// A record that no longer decodes does not stop the daemon: the start
// sets it aside, logs it, and goes on; the good endpoint still reaches
// the outside; the set-aside endpoint's kernel objects are kept, and so
// its traffic; doctor names it; dropping it removes what was kept and
// frees its address.
func TestUnreadableRecordIsSetAsideAtStart(t *testing.T) {
	e := NewEnv(t)
	Serve(t, e.ExtNS, "tcp", extAddr+":7777")
	good, bad := e.AttachNew("nat", "good"), e.AttachNew("nat", "bad")
	for _, a := range []*Attached{good, bad} {
		if !reachTCP(t, a.Namespace.NetNamespacePath, extAddr+":7777") {
			t.Fatalf("%s does not reach the outside before", a.Endpoint.Name)
		}
	}
	e.Stop()
	e.editState(func(tx *bolt.Tx) error {
		b := tx.Bucket([]byte("endpoints"))
		raw := b.Get([]byte(bad.Endpoint.ID))
		return b.Put([]byte(bad.Endpoint.ID), append([]byte(nil), raw[:len(raw)/2]...))
	})
	e.Start()

	log := e.LogTail(400)
	if !strings.Contains(log, "level=ERROR") || !strings.Contains(log, "set aside") || !strings.Contains(log, "key="+bad.Endpoint.ID) {
		t.Errorf("the start does not log the set-aside record at ERROR:\n%s", log)
	}
	if !reachTCP(t, good.Namespace.NetNamespacePath, extAddr+":7777") {
		t.Error("the good endpoint no longer reaches the outside")
	}
	if !reachTCP(t, bad.Namespace.NetNamespacePath, extAddr+":7777") || !e.hasLink(bad.Endpoint.HostInterfaceName) {
		t.Error("the set-aside endpoint's kernel objects were not kept")
	}
	eps, err := e.Client().ListEndpoints(context.Background(), nil)
	if err != nil || len(eps) != 1 || eps[0].ID != good.Endpoint.ID {
		t.Errorf("list endpoints: %v, %+v", err, eps)
	}
	r := e.CLI("doctor", "-o", "wide")
	if r.Code != 1 || !strings.Contains(r.Stdout, bad.Endpoint.ID) || !strings.Contains(r.Stdout, "set aside at start") ||
		!strings.Contains(r.Stdout, "--drop-set-aside endpoints/"+bad.Endpoint.ID) {
		t.Errorf("doctor does not name the set-aside record: exit %d\n%s%s", r.Code, r.Stdout, r.Stderr)
	}
	if out := e.MustCLI("doctor", "--set-aside"); !strings.Contains(out, "endpoints/"+bad.Endpoint.ID) || !strings.Contains(out, "bad") {
		t.Errorf("doctor --set-aside:\n%s", out)
	}
	// Its address is held while its device may use it.
	_, err = e.Client().CreateEndpoint(context.Background(), &api.Endpoint{Name: "thief", HostComputeNetwork: "nat",
		IpConfigurations: []api.IPConfig{{IpAddress: bad.Addr.String()}}})
	if !api.IsConflict(err) {
		t.Errorf("the set-aside endpoint's address was handed out again: %v", err)
	}

	if out := e.MustCLI("doctor", "--drop-set-aside", "endpoints/"+bad.Endpoint.ID); !strings.Contains(out, "dropped set-aside endpoint bad") {
		t.Errorf("doctor --drop-set-aside: %s", out)
	}
	if !e.waitGone(bad.Endpoint.HostInterfaceName) {
		t.Errorf("the dropped record's port %s is still there", bad.Endpoint.HostInterfaceName)
	}
	if out := e.MustCLI("doctor"); !strings.Contains(out, "in sync") {
		t.Errorf("doctor after the drop: %s", out)
	}
	if out := e.MustCLI("doctor", "--set-aside"); !strings.Contains(out, "no record is set aside") {
		t.Errorf("doctor --set-aside after the drop: %s", out)
	}
	again, err := e.Client().CreateEndpoint(context.Background(), &api.Endpoint{Name: "again", HostComputeNetwork: "nat",
		IpConfigurations: []api.IPConfig{{IpAddress: bad.Addr.String()}}})
	if err != nil {
		t.Errorf("the dropped record's address is not free: %v", err)
	} else if err := e.Client().DeleteEndpoint(context.Background(), again.ID); err != nil {
		t.Error(err)
	}
	if !reachTCP(t, good.Namespace.NetNamespacePath, extAddr+":7777") {
		t.Error("the good endpoint no longer reaches the outside after the drop")
	}
}

// waitBackup waits up to 10 s for the backup the daemon takes at start
// to hold the endpoint id.
func (e *Env) waitBackup(id string) {
	e.t.Helper()
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		found := false
		if db, err := bolt.Open(e.backupFile(), 0o400, &bolt.Options{ReadOnly: true, Timeout: time.Second}); err == nil {
			_ = db.View(func(tx *bolt.Tx) error {
				if b := tx.Bucket([]byte("endpoints")); b != nil {
					found = b.Get([]byte(id)) != nil
				}
				return nil
			})
			db.Close()
		}
		if found {
			return
		}
		if time.Now().After(deadline) {
			e.t.Fatalf("the backup taken at start does not hold endpoint %s", id)
		}
	}
}

// A restore from the backup never removes, under running workloads, the
// kernel objects of what was made after the backup: B, created and
// attached after it, keeps its devices, namespace and firewall and so its
// traffic; the start warns and doctor names them; its address is not
// handed out again; A is served as before. `hostnet doctor --prune`
// removes B's objects.
func TestRestoreFromBackupKeepsNewerObjects(t *testing.T) {
	e := NewEnv(t)
	Serve(t, e.ExtNS, "tcp", extAddr+":7777")
	a := e.AttachNew("nat", "a")
	e.Restart(false)
	e.waitBackup(a.Endpoint.ID)
	b := e.AttachNew("nat", "b")
	for _, x := range []*Attached{a, b} {
		if !reachTCP(t, x.Namespace.NetNamespacePath, extAddr+":7777") {
			t.Fatalf("%s does not reach the outside before", x.Endpoint.Name)
		}
	}
	e.Stop()
	e.extra = append(e.extra, "--restore-backup")
	e.Start()
	e.extra = e.extra[:len(e.extra)-1]

	log := e.LogTail(400)
	if !strings.Contains(log, "level=WARN") || !strings.Contains(log, "kept kernel objects that no record wants, after a restore from backup") ||
		!strings.Contains(log, b.Endpoint.HostInterfaceName) {
		t.Errorf("the start does not warn of what it keeps:\n%s", log)
	}
	if _, err := e.Client().GetEndpoint(context.Background(), b.Endpoint.ID); !api.IsNotFound(err) {
		t.Fatalf("the restored state has B: %v", err)
	}
	if !e.hasLink(b.Endpoint.HostInterfaceName) || !netns.IsNamespace(b.Namespace.NetNamespacePath) {
		t.Fatal("B's port or namespace was removed by the restore's start")
	}
	for _, x := range []*Attached{a, b} {
		if !reachTCP(t, x.Namespace.NetNamespacePath, extAddr+":7777") {
			t.Errorf("%s does not reach the outside after the restore", x.Endpoint.Name)
		}
	}
	r := e.CLI("doctor", "-o", "wide")
	if r.Code != 1 || !strings.Contains(r.Stdout, "kept after a restore from backup: no record wants it") || !strings.Contains(r.Stdout, b.Endpoint.HostInterfaceName) ||
		!strings.Contains(r.Stdout, b.Addr.String()) {
		t.Errorf("doctor does not name what the restore kept: exit %d\n%s%s", r.Code, r.Stdout, r.Stderr)
	}
	if out := e.MustCLI("events"); !strings.Contains(out, "Kept") {
		t.Errorf("no Kept events:\n%s", out)
	}
	// B's address is not handed out again.
	c, err := e.Client().CreateEndpoint(context.Background(), &api.Endpoint{Name: "c", HostComputeNetwork: "nat"})
	if err != nil {
		t.Fatal(err)
	}
	if c.IpConfigurations[0].IpAddress == b.Addr.String() {
		t.Errorf("B's address %s was handed out again", b.Addr)
	}

	out := e.MustCLI("doctor", "--prune")
	if !strings.Contains(out, b.Endpoint.HostInterfaceName) {
		t.Errorf("doctor --prune does not report B's port:\n%s", out)
	}
	if !e.waitGone(b.Endpoint.HostInterfaceName) {
		t.Errorf("B's port %s is still there after the prune", b.Endpoint.HostInterfaceName)
	}
	if netns.IsNamespace(b.Namespace.NetNamespacePath) {
		t.Errorf("B's namespace is still there after the prune")
	}
	if _, err := os.Stat(filepath.Join(e.Dir, "etc-netns", "hn-"+b.Namespace.ID)); !os.IsNotExist(err) {
		t.Errorf("B's resolv.conf directory is still there after the prune: %v", err)
	}
	if out := e.MustCLI("doctor"); !strings.Contains(out, "in sync") {
		t.Errorf("doctor after the prune: %s", out)
	}
	if !reachTCP(t, a.Namespace.NetNamespacePath, extAddr+":7777") {
		t.Error("A no longer reaches the outside after the prune")
	}
	if err := e.Client().DeleteEndpoint(context.Background(), c.ID); err != nil {
		t.Error(err)
	}
	st, err := os.Stat(filepath.Join(e.Dir, "daemon.log"))
	if err != nil {
		t.Fatal(err)
	}
	e.Restart(false)
	all, _ := os.ReadFile(filepath.Join(e.Dir, "daemon.log"))
	if since := string(all[st.Size():]); strings.Contains(since, "kept kernel objects") || strings.Contains(since, "level=ERROR") {
		t.Errorf("a start after the prune keeps something again:\n%s", since)
	}
}
