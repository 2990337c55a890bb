package e2e

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/hostnet/hostnet/api"
	"github.com/hostnet/hostnet/internal/testutil"
	"github.com/vishvananda/netlink"
)

// cleanup runs `hostnetd --cleanup` on this Env's host, with the flags the
// daemon runs with, and returns what it printed and its exit code.
func (e *Env) cleanup(t *testing.T, extra ...string) (string, int) {
	t.Helper()
	args := append(append([]string{"--net=" + e.HostNS, "--", hostnetdBin, "--cleanup"}, e.daemonConfig().HostFlags()...), extra...)
	out, err := exec.Command("nsenter", args...).CombinedOutput()
	var exit *exec.ExitError
	if errors.As(err, &exit) {
		return string(out), exit.ExitCode()
	}
	if err != nil {
		t.Fatalf("hostnetd --cleanup: %v", err)
	}
	return string(out), 0
}

// `hostnetd --cleanup` removes hostnet from a host: refused while an
// endpoint exists (nothing changes); forced, no device, route, table,
// namespace or file of hostnet's is left, a runtime's namespace stays
// (without the interface hostnet put there), and it says what it removed.
func TestCleanupRemovesEverything(t *testing.T) {
	e := NewEnv(t)
	ctx := context.Background()
	c := e.Client()
	ns, err := c.CreateNamespace(ctx, &api.Namespace{})
	if err != nil {
		t.Fatal(err)
	}
	mapping := api.Policy{Type: api.PortMapping, Settings: json.RawMessage(`{"Protocol":6,"InternalPort":80,"ExternalPort":8080}`)}
	if _, err := c.CreateEndpoint(ctx, &api.Endpoint{Name: "web", HostComputeNetwork: "nat", HostComputeNamespace: ns.ID, Policies: []api.Policy{mapping}}); err != nil {
		t.Fatal(err)
	}
	wrapped, _ := testutil.NewNS(t, "runtime")
	if _, err := c.CreateEndpoint(ctx, &api.Endpoint{Name: "ctr", HostComputeNetwork: "nat", HostComputeNamespace: "cni:ctr", NetNamespacePath: wrapped}); err != nil {
		t.Fatal(err)
	}
	if out, code := e.cleanup(t); code == 0 || !strings.Contains(out, "daemon") && !strings.Contains(out, "in use") {
		t.Errorf("cleanup while the daemon runs: exit %d\n%s", code, out)
	}
	e.Stop()
	before := e.kernelState()
	out, code := e.cleanup(t)
	if code == 0 || !strings.Contains(out, "2 endpoints exist") {
		t.Fatalf("cleanup with endpoints: exit %d\n%s", code, out)
	}
	if after := e.kernelState(); after != before {
		t.Errorf("a refused cleanup changed the kernel:\n%s", lineDiff(before, after))
	}
	out, code = e.cleanup(t, "--force")
	if code != 0 {
		t.Fatalf("cleanup --force: exit %d\n%s", code, out)
	}
	t.Logf("hostnetd --cleanup --force:\n%s", out)
	for _, want := range []string{"removed link hnbr", "removed link hnv", "removed namespace " + filepath.Join(e.Dir, "run", "netns"),
		"removed table inet hostnet", "removed file " + filepath.Join(e.Dir, "etc-netns", "hn-"), "removed file " + filepath.Join(e.Dir, "state", "hostnet.db"),
		"there were 1 networks, 2 endpoints, 2 namespaces"} {
		if !strings.Contains(out, want) {
			t.Errorf("the cleanup's report lacks %q", want)
		}
	}
	h := e.handle(e.HostNS)
	defer h.Close()
	links, err := h.LinkList()
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range links {
		if strings.HasPrefix(l.Attrs().Name, "hn") {
			t.Errorf("device %s left", l.Attrs().Name)
		}
	}
	routes, _ := h.RouteListFiltered(netlink.FAMILY_ALL, &netlink.Route{Protocol: 104}, netlink.RT_FILTER_PROTOCOL)
	if len(routes) > 0 {
		t.Errorf("routes of hostnet's left: %v", routes)
	}
	if tables := e.nftTables(t); len(tables) > 0 {
		t.Errorf("nftables tables left: %v", tables)
	}
	for _, dir := range []string{filepath.Join(e.Dir, "state"), filepath.Join(e.Dir, "run")} {
		if _, err := os.Stat(dir); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("%s left: %v", dir, err)
		}
	}
	if left, _ := filepath.Glob(filepath.Join(e.Dir, "etc-netns", "hn-*")); len(left) > 0 {
		t.Errorf("files left: %v", left)
	}
	if _, err := os.Stat(e.Socket); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("the socket is left: %v", err)
	}
	wh := e.handle(wrapped)
	defer wh.Close()
	if _, err := wh.LinkByName("eth0"); err == nil {
		t.Errorf("the runtime's namespace still has hostnet's interface")
	}
	// Nothing left to do: a second cleanup removes nothing.
	out, code = e.cleanup(t)
	if code != 0 || strings.Contains(out, "removed link") || strings.Contains(out, "removed table") {
		t.Errorf("a second cleanup: exit %d\n%s", code, out)
	}
}

// nftTables lists the nftables tables of the host namespace.
func (e *Env) nftTables(t *testing.T) []string {
	t.Helper()
	tables, err := e.hostNft(t).ListTables()
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, tb := range tables {
		out = append(out, fmt.Sprintf("%d %s", tb.Family, tb.Name))
	}
	return out
}
