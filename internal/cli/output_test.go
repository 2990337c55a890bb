package cli

import (
	"encoding/json"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/hostnet/hostnet/api"
)

func TestOutputModes(t *testing.T) {
	d := newFakeDaemon(t, networksMux())
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"network", "ls", "-o", "yaml"}, "- ID: a1b2c3d4-0000-4000-8000-000000000001\n  Name: dual-stack-network\n  Type: L2Bridge\n"},
		{[]string{"network", "ls", "--output", "wide"}, "NETWORK ID                             NAME                 DRIVER     SUBNET                  BRIDGE        GATEWAY   DNS   POLICIES\na1b2c3d4-0000-4000-8000-000000000001   dual-stack-network "},
		{[]string{"network", "ls", "--format", "{{.Name}} {{json .Type}}"}, "dual-stack-network \"L2Bridge\"\nnat \"NAT\"\n"},
		{[]string{"network", "ls", "--format", `table {{.Name}}\t{{.Type}}`}, "NAME                 TYPE\ndual-stack-network   L2Bridge\nnat                  NAT\n"},
		{[]string{"network", "ls", "--format", "json"}, "[\n    {\n        \"ID\": \"a1b2c3d4"},
		{[]string{"network", "inspect", "nat", "-o", "table"}, "NETWORK ID     NAME   DRIVER   SUBNET          BRIDGE\n5f0c2a8e-9b1   nat    NAT      172.16.0.0/20   hn-5f0c2a8e\n"},
		{[]string{"network", "inspect", "nat", "-o", "yaml"}, "- ID: 5f0c2a8e"},
		{[]string{"network", "inspect", "nat", "--format", "{{.BridgeName}}"}, "hn-5f0c2a8e\n"},
		{[]string{"network", "inspect", "nat"}, "[\n    {\n"},
	} {
		out, errOut, code := runCLI(t, d.socket, "", tc.args...)
		if code != 0 || !strings.HasPrefix(out, tc.want) {
			t.Errorf("%v: code %d, stderr %q, stdout\n%s\nwant it to start with\n%s", tc.args, code, errOut, out, tc.want)
		}
	}
	// -o keeps meaning --opt to network create; --output is there too.
	out, errOut, code := runCLI(t, d.socket, "", "network", "create", "--output", "json", "-o", "nonpersistent=true", "n")
	if code != 0 || !strings.HasPrefix(out, "{\n    \"ID\": \"11111111-2222-4333-8444-555555555555\"") {
		t.Errorf("network create --output json: code %d, stderr %q, stdout %q", code, errOut, out)
	}
}

// Under -o json, failures are JSON documents on stderr, with the daemon's
// error code.
func TestJSONErrors(t *testing.T) {
	d := newFakeDaemon(t, networksMux())
	out, errOut, code := runCLI(t, d.socket, "", "network", "inspect", "missing", "-o", "json")
	var doc map[string]any
	if err := json.Unmarshal([]byte(errOut), &doc); err != nil || code != 1 || out != "[]\n" {
		t.Fatalf("code %d, stdout %q, stderr %q: %v", code, out, errOut, err)
	}
	if doc["Success"] != false || doc["Error"] != `network "missing" not found` || doc["ErrorCode"] != float64(api.CodeElementNotFound) {
		t.Errorf("error document %v", doc)
	}
	_, errOut, code = runCLI(t, d.socket, "", "--output", "json", "network", "rm")
	if err := json.Unmarshal([]byte(errOut), &doc); err != nil || code != 1 || doc["Error"] != `"hostnet network rm" requires at least 1 argument` {
		t.Errorf("usage error under --output json: code %d, %q", code, errOut)
	}
	_, errOut, _ = runCLI(t, d.socket, "", "network", "inspect", "missing")
	if !strings.HasPrefix(errOut, "Error: ") {
		t.Errorf("without -o json, errors stay text: %q", errOut)
	}
}

// network create offers the drivers the daemon supports; the other HNS
// types are not built yet, and said to be.
func TestNetworkCreateDrivers(t *testing.T) {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /version", func(w http.ResponseWriter, r *http.Request) {
		answer(w, 200, api.VersionInfo{Supported: api.Supported{NetworkTypes: []api.NetworkType{api.NAT}}})
	})
	mux.HandleFunc("POST /networks", func(w http.ResponseWriter, r *http.Request) { answer(w, 201, api.Network{ID: "x"}) })
	d := newFakeDaemon(t, mux)
	_, errOut, code := runCLI(t, d.socket, "", "network", "create", "-d", "transparent", "t")
	want := "Error: driver \"transparent\" is not built yet: this hostnetd supports nat (not built yet: ics, transparent, l2bridge, l2tunnel, overlay, private, internal)\n"
	if code != 1 || errOut != want {
		t.Errorf("code %d, stderr %q", code, errOut)
	}
	if _, sent := d.find("POST", "/networks"); sent {
		t.Error("a network of a driver not built was sent")
	}
	out, _, _ := runCLI(t, d.socket, "", "network", "create", "--help")
	if !strings.Contains(out, "network type: nat (not built yet: ics, transparent,") {
		t.Errorf("help of network create:\n%s", out)
	}
	out, _, _ = runCLI(t, d.socket, "", "__complete", "network", "create", "-d", "")
	if !strings.HasPrefix(out, "nat\n:4\n") {
		t.Errorf("completion of -d: %q", out)
	}
}

func TestNamespaceCreateName(t *testing.T) {
	mux := http.NewServeMux()
	mux.HandleFunc("POST /namespaces", func(w http.ResponseWriter, r *http.Request) {
		var ns api.Namespace
		_ = json.NewDecoder(r.Body).Decode(&ns)
		ns.ID = "99999999-8888-4777-8666-555555555555"
		answer(w, 201, ns)
	})
	d := newFakeDaemon(t, mux)
	for _, args := range [][]string{{"box"}, {"--name", "box"}, {"--name", "box", "box"}} {
		out, errOut, code := runCLI(t, d.socket, "", append([]string{"namespace", "create"}, args...)...)
		if code != 0 || out != "99999999-8888-4777-8666-555555555555\n" {
			t.Errorf("%v: code %d, %q, %q", args, code, out, errOut)
		}
		var sent api.Namespace
		for _, r := range d.requests() {
			_ = json.Unmarshal(r.Body, &sent)
		}
		if sent.Name != "box" {
			t.Errorf("%v: sent name %q", args, sent.Name)
		}
	}
	if _, errOut, code := runCLI(t, d.socket, "", "namespace", "create", "--name", "a", "b"); code != 1 || !strings.Contains(errOut, "two names given") {
		t.Errorf("two names: code %d, %q", code, errOut)
	}
}

// policy add and rm print what they did; a removal that matches nothing
// fails, naming the object.
func TestPolicyAddRmReport(t *testing.T) {
	d := newFakeDaemon(t, policyMux())
	rule := "allow in proto tcp lport 80 remote 192.0.2.0/24 priority 100"
	out, errOut, code := runCLI(t, d.socket, "", "endpoint", "policy", "add", "web", "--acl", rule, "-p", "8080:80")
	want := "endpoint web: added ACL " + rule + "\nendpoint web: added PortMapping 0.0.0.0:8080->80/tcp\n"
	if code != 0 || out != want {
		t.Errorf("add: code %d, stdout %q, stderr %q; want %q", code, out, errOut, want)
	}
	out, _, code = runCLI(t, d.socket, "", "endpoint", "policy", "add", "web", "--acl", rule)
	if code != 0 || out != "endpoint web: already has these policies, nothing added\n" {
		t.Errorf("add again: code %d, %q", code, out)
	}
	out, errOut, code = runCLI(t, d.socket, "", "endpoint", "policy", "rm", "web", "--acl", "block in priority 1")
	if code != 1 || out != "" || errOut != "Error: no policy of endpoint web matches: nothing was removed (see 'hostnet endpoint policy ls web')\n" {
		t.Errorf("rm of nothing: code %d, stdout %q, stderr %q", code, out, errOut)
	}
	out, errOut, code = runCLI(t, d.socket, "", "endpoint", "policy", "rm", "web", "--acl", rule, "--acl", "block in priority 1")
	if code != 1 || out != "endpoint web: removed ACL "+rule+"\n" || !strings.Contains(errOut, "1 of the 2 policies given match no policy of endpoint web") {
		t.Errorf("rm of one of two: code %d, stdout %q, stderr %q", code, out, errOut)
	}
}

func TestVersionAndCompletion(t *testing.T) {
	d := newFakeDaemon(t, networksMux())
	out, _, code := runCLI(t, d.socket, "", "--version")
	if code != 0 || !strings.HasPrefix(out, "hostnet version ") || !strings.Contains(out, "go1.") || !strings.Contains(out, "API 2.") {
		t.Errorf("--version: code %d, %q", code, out)
	}
	out, _, code = runCLI(t, d.socket, "", "version")
	if code != 0 || !strings.Contains(out, "Client:\n Version:") || !strings.Contains(out, "Not built yet:      ics, transparent, l2tunnel, overlay, private, internal\n") {
		t.Errorf("version: code %d:\n%s", code, out)
	}
	out, _, _ = runCLI(t, d.socket, "", "--help")
	if !strings.Contains(out, "  completion  ") {
		t.Errorf("completion is not listed in --help:\n%s", out)
	}
	for shell, want := range map[string]string{"bash": "# bash completion V2 for hostnet", "zsh": "#compdef hostnet", "fish": "# fish completion for hostnet"} {
		out, errOut, code := runCLI(t, d.socket, "", "completion", shell)
		if code != 0 || !strings.Contains(out, want) {
			t.Errorf("completion %s: code %d, stderr %q, stdout starts %q", shell, code, errOut, out[:min(len(out), 80)])
		}
	}
}

// Event times carry their zone.
func TestEventTimes(t *testing.T) {
	mux := http.NewServeMux()
	at := time.Date(2026, 11, 27, 13, 28, 0, 0, time.UTC)
	mux.HandleFunc("GET /events", func(w http.ResponseWriter, r *http.Request) {
		answer(w, 200, []api.Event{{Time: at, Kind: "repair", Object: "nat", Message: "bridge recreated"}})
	})
	d := newFakeDaemon(t, mux)
	out, errOut, code := runCLI(t, d.socket, "", "events")
	if code != 0 || !strings.Contains(out, at.Local().Format("2006-01-02 15:04:05 -07:00")+"   repair") {
		t.Errorf("events: code %d, stderr %q:\n%s", code, errOut, out)
	}
}
