package e2e

import (
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/vishvananda/netlink"

	"github.com/hostnet/hostnet/internal/testutil"
)

// rootState describes what the root namespace holds that a try-out must
// not change: its devices, routes and hostnet objects.
func rootState(t *testing.T) []string {
	t.Helper()
	var out []string
	links, err := netlink.LinkList()
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range links {
		out = append(out, "device "+l.Attrs().Name)
	}
	routes, err := netlink.RouteList(nil, netlink.FAMILY_ALL)
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range routes {
		out = append(out, "route "+r.String())
	}
	out = append(out, testutil.Leaks(t.TempDir())...)
	slices.Sort(out)
	return out
}

// scripts/try.sh (make try) runs hostnetd in a throwaway namespace with a
// fake outside; `hostnet` works there, `hostnet run` reaches the outside;
// when it ends, nothing of it is left and the root namespace is as it was.
func TestTryScript(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root")
	}
	tmp := t.TempDir()
	before := rootState(t)
	script := `set -e
hostnet network ls
hostnet namespace create box
hostnet run --name bg -- sleep 600 &
for i in $(seq 50); do hostnet endpoint inspect bg >/dev/null 2>&1 && break; sleep 0.1; done
hostnet endpoint ls
if command -v curl >/dev/null && command -v python3 >/dev/null; then
  hostnet run --rm -- curl -s -m 5 http://198.51.100.1/
fi`
	cmd := exec.Command("../../scripts/try.sh", "sh", "-c", script)
	cmd.Env = append(cleanEnv(), "HOSTNET_TRY_BIN="+filepath.Dir(hostnetBin), "TMPDIR="+tmp)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("try.sh: %v\n%s", err, out)
	}
	t.Logf("try.sh:\n%s", out)
	for _, want := range []string{"NETWORK ID", " nat ", "172.16.0.0/20", " bg ", "hostnet try-out removed"} {
		if !strings.Contains(string(out), want) {
			t.Errorf("try.sh printed no %q", want)
		}
	}
	if _, err := exec.LookPath("python3"); err == nil && !strings.Contains(string(out), "hello from the outside") {
		t.Error("hostnet run in the try-out did not reach the outside's web server")
	}
	if left, _ := os.ReadDir(tmp); len(left) > 0 {
		t.Errorf("try.sh left %v in its temporary directory", left)
	}
	if after := rootState(t); !slices.Equal(before, after) {
		t.Errorf("the root namespace changed:\nbefore %q\nafter  %q", before, after)
	}
	if out, err := exec.Command("pgrep", "-f", "sleep 600").Output(); err == nil {
		for _, pid := range strings.Fields(string(out)) {
			if ns, _ := os.Readlink("/proc/" + pid + "/ns/net"); ns != "" {
				if env, _ := os.ReadFile("/proc/" + pid + "/environ"); strings.Contains(string(env), tmp) {
					t.Errorf("a process of the try-out is still running: %s", pid)
				}
			}
		}
	}
}
