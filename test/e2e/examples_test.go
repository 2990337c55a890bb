package e2e

import (
	"bytes"
	"encoding/json"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/hostnet/hostnet/api"
)

const examplesDir = "../../examples"

// exampleDocuments are applied with `hostnet apply -f`, in this order.
var exampleDocuments = []string{"network.json", "namespace.json", "endpoint.json", "stack.json", "stream.json", "route.json"}

// exampleModifications are sent as PATCH requests, in this order, as
// docs/schema.md shows with curl: file and target.
var exampleModifications = [][2]string{
	{"modify-network-acl.json", "/networks/example"},
	{"modify-network-dns.json", "/networks/example"},
	{"modify-endpoint-policy.json", "/endpoints/example-web"},
	{"modify-namespace-attach.json", "/namespaces/example-box"},
}

// Every sample document of examples/ is applied as the docs say (apply -f,
// or a PATCH for modify requests) against a daemon, and does what it says.
// A file of examples/ this test does not apply fails it.
func TestExamples(t *testing.T) {
	entries, err := os.ReadDir(examplesDir)
	if err != nil {
		t.Fatal(err)
	}
	known := slices.Clone(exampleDocuments)
	for _, m := range exampleModifications {
		known = append(known, m[0])
	}
	for _, en := range entries {
		if strings.HasSuffix(en.Name(), ".json") && !slices.Contains(known, en.Name()) {
			t.Errorf("examples/%s is applied by no test: add it to TestExamples", en.Name())
		}
	}

	e := NewEnv(t)
	for _, f := range exampleDocuments {
		out := e.MustCLI("apply", "-f", filepath.Join(examplesDir, f))
		if strings.Contains(out, "unchanged") || !strings.Contains(out, "created") {
			t.Errorf("apply -f examples/%s:\n%s", f, out)
		}
	}
	// Applying again changes nothing.
	for _, f := range exampleDocuments {
		if out := e.MustCLI("apply", "-f", filepath.Join(examplesDir, f)); strings.Contains(out, "created") {
			t.Errorf("apply -f examples/%s a second time:\n%s", f, out)
		}
	}
	for _, m := range exampleModifications {
		body, err := os.ReadFile(filepath.Join(examplesDir, m[0]))
		if err != nil {
			t.Fatal(err)
		}
		if code, answer := e.raw(http.MethodPatch, m[1], string(body)); code != http.StatusOK {
			t.Errorf("PATCH %s with examples/%s: %d %s", m[1], m[0], code, answer)
		}
	}

	c := e.Client()
	n, err := c.GetNetwork(ctx, "example")
	if err != nil {
		t.Fatal(err)
	}
	if len(n.Policies) != 3 || n.Dns == nil || len(n.Dns.ServerList) != 2 {
		t.Errorf("network example: policies %v, DNS %+v; want 3 NetworkACL rules and 2 servers", n.Policies, n.Dns)
	}
	ep, err := c.GetEndpoint(ctx, "example-web")
	if err != nil {
		t.Fatal(err)
	}
	ns, err := c.GetNamespace(ctx, "example-box")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.EqualFold(ep.HostComputeNamespace, ns.ID) || len(ep.Policies) != 8 {
		t.Fatalf("endpoint example-web: namespace %q (want %s), %d policies (want 8)", ep.HostComputeNamespace, ns.ID, len(ep.Policies))
	}
	if routes := e.routesIn(ns.NetNamespacePath); !slices.Contains(routes, "198.18.0.0/15 via 10.201.0.1") {
		t.Errorf("the SDNRoute is not in the endpoint's namespace: %v", routes)
	}
	if routes := e.routesIn(ns.NetNamespacePath); !slices.Contains(routes, "203.0.113.0/24 via 10.201.0.1") {
		t.Errorf("examples/route.json's route is not in the endpoint's namespace: %v", routes)
	}
	// Its published port answers from the outside, through its ACL.
	Serve(t, ns.NetNamespacePath, "tcp", ":80")
	if !reachTCP(t, e.ExtNS, hostAddr+":8081") {
		t.Error("examples/endpoint.json's published port 8081 does not answer from outside")
	}
	app, err := c.GetEndpoint(ctx, "stack-app")
	if err != nil || app.HostComputeNamespace == "" {
		t.Errorf("stack-app is not attached: %+v, %v", app, err)
	}
	for _, name := range []string{"stream-a", "stream-b"} {
		if _, err := c.GetEndpoint(ctx, name); err != nil {
			t.Errorf("%s: %v", name, err)
		}
	}
	if _, err := c.GetNamespace(ctx, "stream-box"); err != nil {
		t.Errorf("stream-box: %v", err)
	}
}

// Each modify request of examples/ is a valid one, field for field.
func TestExampleModifyRequestsDecode(t *testing.T) {
	for _, m := range exampleModifications {
		b, err := os.ReadFile(filepath.Join(examplesDir, m[0]))
		if err != nil {
			t.Fatal(err)
		}
		dec := json.NewDecoder(bytes.NewReader(b))
		dec.DisallowUnknownFields()
		var req api.ModifyRequest
		if err := dec.Decode(&req); err != nil || req.ResourceType == "" || req.RequestType == "" || len(req.Settings) == 0 {
			t.Errorf("examples/%s: %+v, %v", m[0], req, err)
		}
	}
}
