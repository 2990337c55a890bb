// Package layers checks that hostnet's packages import one way only, as
// docs/design.md ("Layers") draws them: a package may import only the
// packages of hostnet listed for it, and the pure ones (the models, the
// policy compiler, the drivers) nothing that touches the kernel, even
// indirectly.
package layers

import (
	"encoding/json"
	"os/exec"
	"strings"
	"testing"
)

const module = "github.com/hostnet/hostnet/"

// allowed lists, for each package (a prefix, longest first wins), the
// packages of hostnet it may import directly.
var allowed = map[string][]string{
	"api":                {},
	"client":             {"api"},
	"internal/nftmodel":  {"internal/nftmodel"},
	"internal/netmodel":  {"internal/nftmodel"},
	"internal/policy":    {"api", "internal/nftmodel", "internal/netmodel"},
	"internal/driver":    {"api", "internal/policy", "internal/netmodel", "internal/nftmodel", "internal/driver"},
	"internal/store":     {},
	"internal/ipam":      {"api", "internal/store"},
	"internal/dataplane": {"internal/dataplane", "internal/netmodel", "internal/nftmodel"},
	"internal/reconcile": {"internal/dataplane", "internal/netmodel", "internal/nftmodel"},
	"internal/service":   {"api", "internal/store", "internal/ipam", "internal/driver", "internal/reconcile", "internal/netmodel", "internal/policy"},
	"internal/server":    {"api", "internal/service"},
	// The embedded DNS server, a peer of the API server: it answers from
	// the service's read-only view.
	"internal/dnsserver": {"api", "internal/service"},
	// Metrics: the instrumented host wraps the reconciler's.
	"internal/metrics": {"api", "internal/dataplane", "internal/netmodel", "internal/nftmodel"},
	"internal/cni":     {"api", "client", "internal/dataplane/netns"}, // CHECK looks into the container's namespace
	"internal/winshim": {"api"},
	// The Docker plugin, a client of the API like the CNI plugin.
	"internal/dockerplugin": {"api", "internal/winshim"},
	"internal/testutil":     {"api", "internal/dataplane/netns"},
	"internal/dhcp":         {"internal/dataplane/netns"}, // a DHCP client's socket in an endpoint's namespace
	// The daemon's DHCP clients, one per endpoint: a runtime component
	// that reports leases in api's terms and decides nothing.
	"internal/leases": {"api", "internal/dhcp", "internal/dataplane/netns"},
	"internal/bench":  {"*"},
	"internal/cli":    {"*"},
	"internal/daemon": {"*"},
	"internal/mangen": {"*"},
	"cmd":             {"*"},
	"test":            {"*"},

	// The lab host starts a hostnetd and asks it whether it answers.
	"internal/testutil/lab": {"client", "internal/dataplane/netns", "internal/testutil"},
	// The test DHCP server speaks the client's messages.
	"internal/testutil/dhcpd": {"internal/dhcp", "internal/dataplane/netns"},
}

// kernelFree are the packages that must not reach the kernel, directly or
// through what they import.
var kernelFree = []string{"api", "client", "internal/nftmodel", "internal/netmodel", "internal/policy", "internal/driver", "internal/store", "internal/ipam"}

// kernelPackages are what reaches the kernel.
var kernelPackages = []string{"github.com/vishvananda/netlink", "github.com/vishvananda/netns", "github.com/google/nftables", "github.com/mdlayher/netlink", module + "internal/dataplane"}

type pkg struct {
	ImportPath string
	Imports    []string
	Deps       []string
}

func list(t *testing.T) []pkg {
	out, err := exec.Command("go", "list", "-json", module+"...").Output()
	if err != nil {
		t.Fatalf("go list: %v", err)
	}
	var pkgs []pkg
	dec := json.NewDecoder(strings.NewReader(string(out)))
	for dec.More() {
		var p pkg
		if err := dec.Decode(&p); err != nil {
			t.Fatal(err)
		}
		pkgs = append(pkgs, p)
	}
	return pkgs
}

// rule returns the allowed list of the longest prefix matching path.
func rule(path string) ([]string, bool) {
	best := ""
	for prefix := range allowed {
		if (path == prefix || strings.HasPrefix(path, prefix+"/")) && len(prefix) > len(best) {
			best = prefix
		}
	}
	if best == "" {
		return nil, false
	}
	return allowed[best], true
}

func TestImportLayers(t *testing.T) {
	for _, p := range list(t) {
		path := strings.TrimPrefix(p.ImportPath, module)
		allow, ok := rule(path)
		if !ok {
			t.Errorf("%s: no layer rule (add one to allowed)", path)
			continue
		}
		if len(allow) == 1 && allow[0] == "*" {
			continue
		}
		for _, imp := range p.Imports {
			dep, ours := strings.CutPrefix(imp, module)
			if !ours {
				continue
			}
			permitted := false
			for _, a := range allow {
				permitted = permitted || dep == a || strings.HasPrefix(dep, a+"/")
			}
			if !permitted {
				t.Errorf("%s imports %s, which its layer may not", path, dep)
			}
		}
	}
}

func TestPurePackagesDoNotReachTheKernel(t *testing.T) {
	for _, p := range list(t) {
		path := strings.TrimPrefix(p.ImportPath, module)
		pure := false
		for _, k := range kernelFree {
			pure = pure || path == k || strings.HasPrefix(path, k+"/")
		}
		if !pure {
			continue
		}
		for _, d := range p.Deps {
			for _, k := range kernelPackages {
				if d == k || strings.HasPrefix(d, k+"/") {
					t.Errorf("%s reaches %s", path, d)
				}
			}
		}
	}
}
