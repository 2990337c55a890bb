package e2e

import (
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/hostnet/hostnet/api"
	"github.com/hostnet/hostnet/internal/store"
)

// A second daemon on a state directory in use is refused at once, naming
// the first, and changes nothing.
func TestSecondDaemonOnAStateDirIsRefused(t *testing.T) {
	e := NewEnv(t)
	out, err := exec.Command("nsenter", "--net="+e.HostNS, "--", hostnetdBin,
		"--socket", filepath.Join(e.Dir, "second.sock"),
		"--state-dir", filepath.Join(e.Dir, "state"),
		"--run-dir", filepath.Join(e.Dir, "run2"),
		"--host-netns", e.HostNS, "--netns-link-dir", "", "--netns-etc-dir", "").CombinedOutput()
	if err == nil || !strings.Contains(string(out), "in use by process") {
		t.Fatalf("a second daemon on the same state directory: %v\n%s", err, out)
	}
	if _, err := e.Client().Version(context.Background()); err != nil {
		t.Errorf("the first daemon stopped answering: %v", err)
	}
}

// hostnet removes only the files it made: an entry of /etc/netns that is
// named like its own but is not its own stays, across starts and
// deletions.
func TestForeignNetnsEtcEntriesAreKept(t *testing.T) {
	e := NewEnv(t)
	foreign := filepath.Join(e.Dir, "etc-netns", "hn-not-hostnets")
	if err := os.MkdirAll(foreign, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(foreign, "resolv.conf"), []byte("nameserver 192.0.2.1\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	a := e.AttachNew("nat", "a")
	e.Restart(false)
	if err := e.Client().DeleteNamespace(context.Background(), a.Namespace.ID); err != nil {
		t.Fatal(err)
	}
	e.Restart(true)
	if _, err := os.Stat(filepath.Join(foreign, "resolv.conf")); err != nil {
		t.Errorf("a file hostnet did not make is gone: %v", err)
	}
	if _, err := os.Stat(filepath.Join(e.Dir, "etc-netns", "hn-"+a.Namespace.ID)); !os.IsNotExist(err) {
		t.Errorf("the resolv.conf directory of a deleted namespace is still there: %v", err)
	}
}

// The host's own namespace, and a namespace hostnet made, cannot be
// wrapped: 400, naming the field.
func TestWrappingTheHostNamespaceIsRefused(t *testing.T) {
	e := NewEnv(t)
	c := e.Client()
	ctx := context.Background()
	_, err := c.CreateNamespace(ctx, &api.Namespace{NetNamespacePath: e.HostNS})
	if api.CodeOf(err) != api.CodeInvalidNamespace || !strings.Contains(err.Error(), "host's own") {
		t.Errorf("wrapping the host namespace: %v", err)
	}
	_, err = c.CreateEndpoint(ctx, &api.Endpoint{HostComputeNetwork: "nat", HostComputeNamespace: "x", NetNamespacePath: e.HostNS})
	if api.CodeOf(err) != api.CodeInvalidNamespace || !strings.Contains(err.Error(), "NetNamespacePath") {
		t.Errorf("an endpoint into the host namespace: %v", err)
	}
	made := e.AttachNew("nat", "m")
	_, err = c.CreateNamespace(ctx, &api.Namespace{NetNamespacePath: made.Namespace.NetNamespacePath})
	if api.CodeOf(err) != api.CodeInvalidNamespace {
		t.Errorf("wrapping a namespace hostnet made: %v", err)
	}
}

// An endpoint whose stored policies no longer parse (a record from
// another version, damaged by hand) is cut off, not given the default
// profile, and `hostnet doctor` says why.
func TestQuarantinedEndpointIsCutOff(t *testing.T) {
	e := NewEnv(t)
	a, b := e.AttachNew("nat", "a"), e.AttachNew("nat", "b")
	Serve(t, b.Namespace.NetNamespacePath, "tcp", ":80")
	if !reachTCP(t, a.Namespace.NetNamespacePath, b.Addr.String()+":80") {
		t.Fatal("no traffic before")
	}
	e.Stop()
	st, err := store.OpenBolt(filepath.Join(e.Dir, "state"))
	if err != nil {
		t.Fatal(err)
	}
	err = st.Update(func(tx store.Tx) error {
		raw, err := tx.Get(store.Endpoints, b.Endpoint.ID)
		if err != nil {
			return err
		}
		var rec map[string]json.RawMessage
		if err := json.Unmarshal(raw, &rec); err != nil {
			return err
		}
		var doc map[string]any
		if err := json.Unmarshal(rec["Doc"], &doc); err != nil {
			return err
		}
		doc["Policies"] = []any{map[string]any{"Type": "ACL", "Settings": map[string]any{"Action": "Sometimes", "Direction": "In", "Priority": 1}}}
		rec["Doc"], _ = json.Marshal(doc)
		out, _ := json.Marshal(rec)
		return tx.Put(store.Endpoints, b.Endpoint.ID, out)
	})
	st.Close()
	if err != nil {
		t.Fatal(err)
	}
	e.Start()
	deadline := time.Now().Add(5 * time.Second)
	for probeTCP(t, a.Namespace.NetNamespacePath, b.Addr.String()+":80") {
		if time.Now().After(deadline) {
			t.Fatal("the quarantined endpoint still receives traffic")
		}
		time.Sleep(100 * time.Millisecond)
	}
	r := e.CLI("doctor")
	if r.Code == 0 || !strings.Contains(r.Stdout, "admits nothing") {
		t.Errorf("doctor does not name the quarantined endpoint: exit %d\n%s%s", r.Code, r.Stdout, r.Stderr)
	}
}

// The published ports of a non-persistent network's endpoints are free
// after the restart that drops the network (issue 22, F4).
func TestNonPersistentNetworkFreesItsPorts(t *testing.T) {
	e := NewEnv(t)
	c := e.Client()
	ctx := context.Background()
	_, err := c.CreateNetwork(ctx, &api.Network{Name: "tmp", Type: api.NAT, Flags: api.NetworkEnableNonPersistent,
		Ipams: []api.Ipam{{Type: "Static", Subnets: []api.Subnet{{IpAddressPrefix: "10.91.0.0/24"}}}}})
	if err != nil {
		t.Fatal(err)
	}
	e.createWith("tmp", "web", 0, mapping(6, 8088, 80, ""))
	e.Restart(false)
	if _, err := c.GetNetwork(ctx, "tmp"); !api.IsNotFound(err) {
		t.Fatalf("the non-persistent network survived: %v", err)
	}
	e.createWith("nat", "again", 0, mapping(6, 8088, 80, ""))
}
