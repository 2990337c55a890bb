package e2e

import (
	"strings"
	"testing"
)

// A subnet over the host's uplink is refused, naming the clash, with no
// bridge made; --allow-host-overlap makes it, and the host's address is
// never an endpoint's (issue 20).
func TestSubnetOverTheUplinkIsRefused(t *testing.T) {
	e := NewEnv(t)
	h := e.handle(e.HostNS)
	defer h.Close()
	links := func() int {
		ls, err := h.LinkList()
		if err != nil {
			t.Fatal(err)
		}
		return len(ls)
	}
	before := links()
	r := e.CLI("network", "create", "--subnet", "198.51.100.0/24", "shadow")
	if r.Code != 1 || !strings.Contains(r.Stderr, "overlaps the host's address "+hostAddr+"/24") || !strings.Contains(r.Stderr, "--allow-host-overlap") {
		t.Errorf("a subnet over the uplink: exit %d, stderr %q", r.Code, r.Stderr)
	}
	if n := links(); n != before {
		t.Errorf("a refused network left %d devices behind", n-before)
	}
	if ls := e.MustCLI("network", "ls"); strings.Contains(ls, "shadow") {
		t.Errorf("a refused network is listed:\n%s", ls)
	}

	e.MustCLI("network", "create", "--allow-host-overlap", "--subnet", "198.51.100.0/29", "shadow")
	var got []string
	for _, name := range []string{"a", "b"} {
		ep, err := e.Client().GetEndpoint(ctx, strings.TrimSpace(e.MustCLI("endpoint", "create", "--network", "shadow", name)))
		if err != nil {
			t.Fatal(err)
		}
		got = append(got, ep.IpConfigurations[0].IpAddress)
	}
	if strings.Join(got, " ") != "198.51.100.3 198.51.100.4" {
		t.Errorf("endpoints of the shadowing subnet got %v; %s is the host's", got, hostAddr)
	}
}
