package testutil

import (
	"flag"
	"os"
	"path/filepath"
	"testing"

	"github.com/hostnet/hostnet/api"
)

// Update is the -update flag of the tests that compare with golden files:
// set, they rewrite the files instead.
var Update = flag.Bool("update", false, "rewrite the golden files")

// Golden compares got with the file testdata/name of the test's package,
// or writes it there with -update.
func Golden(t testing.TB, name, got string) {
	t.Helper()
	path := filepath.Join("testdata", name)
	if *Update {
		if err := os.MkdirAll("testdata", 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, []byte(got), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run with -update to create it)", err)
	}
	if got != string(want) {
		t.Errorf("%s differs (run with -update to accept):\n--- got\n%s\n--- want\n%s", name, got, want)
	}
}

// ACL is an ACL rule from the text forms of its fields, as a client writes
// them ("6", "80,8000-8080", "10.0.0.0/8").
func ACL(t testing.TB, action, dir, protocols, local, lports, remote, rports string, priority uint16) api.ACLSpec {
	t.Helper()
	a := api.ACLSpec{Action: api.ACLAction(action), Direction: api.ACLDirection(dir), Priority: priority}
	var err error
	if a.Protocols, err = api.ParseProtocols(protocols); err != nil {
		t.Fatal(err)
	}
	if a.Local, err = api.ParseAddressList(local); err != nil {
		t.Fatal(err)
	}
	if a.Remote, err = api.ParseAddressList(remote); err != nil {
		t.Fatal(err)
	}
	if a.LocalPorts, err = api.ParsePortList(lports); err != nil {
		t.Fatal(err)
	}
	if a.RemotePorts, err = api.ParsePortList(rports); err != nil {
		t.Fatal(err)
	}
	return a
}
