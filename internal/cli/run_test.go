package cli

import (
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/hostnet/hostnet/api"
)

// runDaemon fakes the calls of `run`; the namespace it hands out is the
// test's own network namespace, with a resolv.conf of its own.
func runDaemon(t *testing.T) (*fakeDaemon, string) {
	resolv := filepath.Join(t.TempDir(), "resolv.conf")
	if err := os.WriteFile(resolv, []byte("nameserver 192.0.2.53\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	ns := map[string]any{"ID": "99999999-0000-4000-8000-000000000000", "NetNamespacePath": fmt.Sprintf("/proc/%d/ns/net", os.Getpid()),
		"ResolvConfPath": resolv, "Managed": true, "SchemaVersion": map[string]int{"Major": 2}}
	mux := http.NewServeMux()
	mux.HandleFunc("POST /namespaces", func(w http.ResponseWriter, r *http.Request) { answer(w, 201, ns) })
	mux.HandleFunc("PATCH /namespaces/{ref}", func(w http.ResponseWriter, r *http.Request) { answer(w, 200, ns) })
	mux.HandleFunc("POST /endpoints", func(w http.ResponseWriter, r *http.Request) {
		answer(w, 201, api.Endpoint{ID: "88888888-0000-4000-8000-000000000000", HostComputeNetwork: "nat"})
	})
	ok := func(w http.ResponseWriter, r *http.Request) { answer(w, 200, map[string]bool{"Success": true}) }
	mux.HandleFunc("DELETE /endpoints/{ref}", ok)
	mux.HandleFunc("DELETE /namespaces/{ref}", ok)
	return newFakeDaemon(t, mux), resolv
}

func TestRunCommand(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("run needs root (a mount namespace and setns)")
	}
	d, _ := runDaemon(t)
	out, errOut, code := runCLI(t, d.socket, "", "run", "--rm", "--name", "job", "sh", "-c", "cat /etc/resolv.conf; exit 3")
	if code != 3 || out != "nameserver 192.0.2.53\n" {
		t.Errorf("code %d, stdout %q, stderr %q", code, out, errOut)
	}
	if host, _ := os.ReadFile("/etc/resolv.conf"); strings.Contains(string(host), "192.0.2.53") {
		t.Error("the bind mount leaked into the host's mount namespace")
	}
	if _, ok := d.find("DELETE", "/endpoints/88888888-0000-4000-8000-000000000000"); !ok {
		t.Error("--rm did not remove the endpoint")
	}
	if _, ok := d.find("DELETE", "/namespaces/99999999-0000-4000-8000-000000000000"); !ok {
		t.Error("--rm did not remove the namespace")
	}
	r, _ := d.find("POST", "/namespaces")
	if !strings.Contains(string(r.Body), `"Name":"job"`) {
		t.Errorf("namespace sent %s", r.Body)
	}
	r, _ = d.find("POST", "/endpoints")
	if !strings.Contains(string(r.Body), `"Name":"job"`) || !strings.Contains(string(r.Body), `"HostComputeNetwork":"nat"`) {
		t.Errorf("endpoint sent %s", r.Body)
	}
}

func TestRunExitCodes(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("run needs root (a mount namespace and setns)")
	}
	d, _ := runDaemon(t)
	for _, tc := range []struct {
		args []string
		code int
	}{
		{[]string{"run", "--", "true"}, 0},
		{[]string{"run", "sh", "-c", "kill -KILL $$"}, 137},
		{[]string{"run", "surely-no-such-command"}, exitNotFound},
		{[]string{"run", "/etc/hostname"}, exitCannotExecute},
		// SIGTERM sent to hostnet is forwarded to the command.
		{[]string{"run", "sh", "-c", `trap "exit 9" TERM; kill -TERM $PPID; sleep 5 >/dev/null 2>&1 & wait $!`}, 9},
	} {
		_, errOut, code := runCLI(t, d.socket, "", tc.args...)
		if code != tc.code {
			t.Errorf("%v: code %d, want %d (stderr %q)", tc.args, code, tc.code, errOut)
		}
	}
	if _, ok := d.find("DELETE", "/namespaces/99999999-0000-4000-8000-000000000000"); ok {
		t.Error("objects removed without --rm")
	}
}

func TestRunSetupFailureCleansUp(t *testing.T) {
	mux := http.NewServeMux()
	mux.HandleFunc("POST /namespaces", func(w http.ResponseWriter, r *http.Request) {
		answer(w, 201, api.Namespace{ID: "77777777-0000-4000-8000-000000000000", NetNamespacePath: "/nonexistent"})
	})
	mux.HandleFunc("POST /endpoints", func(w http.ResponseWriter, r *http.Request) {
		answerError(w, 404, api.CodeElementNotFound, `network "nope" not found`)
	})
	mux.HandleFunc("DELETE /namespaces/{ref}", func(w http.ResponseWriter, r *http.Request) { answer(w, 200, map[string]bool{"Success": true}) })
	d := newFakeDaemon(t, mux)
	_, errOut, code := runCLI(t, d.socket, "", "run", "--network", "nope", "true")
	if code != exitRunFailed || errOut != "Error: network \"nope\" not found\n" {
		t.Errorf("code %d, stderr %q", code, errOut)
	}
	if _, ok := d.find("DELETE", "/namespaces/77777777-0000-4000-8000-000000000000"); !ok {
		t.Error("the namespace made before the failure was not removed")
	}
}
