package cli

import (
	"encoding/json"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/hostnet/hostnet/api"
	"github.com/hostnet/hostnet/internal/testutil"
)

// graphMux answers the lists of a fixed set of objects: two networks, an
// endpoint attached to a namespace, one detached, policies on a network
// and an endpoint, a name that needs quoting.
func graphMux() *http.ServeMux {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /networks", func(w http.ResponseWriter, r *http.Request) {
		nets := append([]api.Network(nil), testNetworks...)
		nets[0].Policies = []api.Policy{{Type: api.NetworkACL, Settings: json.RawMessage(`{"Action":"Block","Direction":"In","Protocols":"6","LocalPorts":"22","Priority":10}`)}}
		answer(w, 200, nets)
	})
	mux.HandleFunc("GET /endpoints", func(w http.ResponseWriter, r *http.Request) {
		answer(w, 200, []api.Endpoint{
			{ID: "e0000000-0000-4000-8000-000000000002", Name: `db "primary"`, HostComputeNetwork: testNetworks[1].ID,
				IpConfigurations: []api.IPConfig{{IpAddress: "10.1.0.5"}, {IpAddress: "fd00::5"}}, MacAddress: "02-00-0a-01-00-05"},
			{ID: "e0000000-0000-4000-8000-000000000001", Name: "web", HostComputeNetwork: testNetworks[0].ID,
				HostComputeNamespace: "c0000000-0000-4000-8000-000000000001", InterfaceName: "eth0", HostInterfaceName: "hnv0123456789ab",
				IpConfigurations: []api.IPConfig{{IpAddress: "172.16.0.2"}}, MacAddress: "02-00-ac-10-00-02",
				Policies: []api.Policy{{Type: api.PortMapping, Settings: json.RawMessage(`{"InternalPort":80,"ExternalPort":8080,"Protocol":6}`)}}},
		})
	})
	mux.HandleFunc("GET /namespaces", func(w http.ResponseWriter, r *http.Request) {
		answer(w, 200, []api.Namespace{{ID: "c0000000-0000-4000-8000-000000000001", Name: "web-ns", Type: api.NamespaceHostDefault,
			NetNamespacePath: "/run/hostnet/netns/c0000000"}})
	})
	return mux
}

func TestGraphDOT(t *testing.T) {
	d := newFakeDaemon(t, graphMux())
	out, errOut, code := runCLI(t, d.socket, "", "graph")
	if code != 0 {
		t.Fatalf("graph: exit %d: %s", code, errOut)
	}
	testutil.Golden(t, "graph.dot", out)
	if again, _, _ := runCLI(t, d.socket, "", "graph", "-o", "dot"); again != out {
		t.Error("-o dot differs from the default")
	}
}

// -o svg runs Graphviz's dot when there is one, and says what to do when
// there is none.
func TestGraphSVG(t *testing.T) {
	d := newFakeDaemon(t, graphMux())
	t.Setenv("PATH", t.TempDir())
	_, errOut, code := runCLI(t, d.socket, "", "graph", "-o", "svg")
	if code == 0 || !strings.Contains(errOut, "Graphviz") || !strings.Contains(errOut, "-o dot") {
		t.Errorf("without dot: exit %d: %s", code, errOut)
	}

	// A stand-in for dot that checks its arguments and wraps its input.
	bin := t.TempDir()
	script := "#!/bin/sh\n[ \"$1\" = -Tsvg ] || exit 3\necho '<svg>'; cat; echo '</svg>'\n"
	if err := os.WriteFile(filepath.Join(bin, "dot"), []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	t.Setenv("PATH", bin+":/usr/bin:/bin")
	out, errOut, code := runCLI(t, d.socket, "", "graph", "-o", "svg")
	if code != 0 || !strings.HasPrefix(out, "<svg>\ndigraph hostnet {") {
		t.Errorf("with dot: exit %d: %s\n%s", code, errOut, out)
	}

	if _, errOut, code := runCLI(t, d.socket, "", "graph", "-o", "png"); code != 1 || !strings.Contains(errOut, "dot or svg") {
		t.Errorf("-o png: exit %d: %s", code, errOut)
	}
}
