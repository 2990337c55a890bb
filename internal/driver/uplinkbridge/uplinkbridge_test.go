package uplinkbridge

import (
	"fmt"
	"net"
	"net/netip"
	"strings"
	"testing"

	"github.com/hostnet/hostnet/api"
	"github.com/hostnet/hostnet/internal/driver"
	"github.com/hostnet/hostnet/internal/netmodel"
	"github.com/hostnet/hostnet/internal/testutil"
)

func sample(t testing.TB) (*driver.Network, []*driver.Endpoint) {
	ns := func(name string) netmodel.NS { return netmodel.NS{Path: "/run/hostnet/netns/" + name} }
	p := netip.MustParsePrefix("192.168.10.0/24")
	n := &driver.Network{ID: "lan", Name: "lan", Spec: &api.NetworkSpec{Type: api.Transparent, Uplink: "eth1", UplinkBridge: true,
		Subnets: []api.SubnetSpec{{Prefix: p, Gateway: netip.MustParseAddr("192.168.10.1"), Range: p}}}}
	web := &driver.Endpoint{ID: "web", NS: ns("web"), Interface: "eth0", MAC: net.HardwareAddr{2, 0, 0, 0, 0, 2},
		Addrs: []netip.Prefix{netip.MustParsePrefix("192.168.10.20/24")},
		ACLs: []api.ACLSpec{
			testutil.ACL(t, "Block", "In", "6", "", "", "192.168.10.1", "", 100),
			testutil.ACL(t, "Allow", "In", "", "", "", "", "", 1000),
			testutil.ACL(t, "Allow", "Out", "", "", "", "", "", 1000),
		}}
	dhcp := &driver.Endpoint{ID: "dhcp", NS: ns("dhcp"), Interface: "eth0", MAC: net.HardwareAddr{2, 0, 0, 0, 0, 3}, DHCP: true}
	return n, []*driver.Endpoint{web, dhcp}
}

// The plan is pinned: the bridge, the handover of the uplink, bridged
// traffic through the inet hooks; endpoints as veth ports with their own
// MACs, their firewall as on a NAT network, no shim.
func TestPlanGolden(t *testing.T) {
	n, eps := sample(t)
	var b strings.Builder
	for _, u := range driver.Plan(New(), n, eps, driver.HostFacts{}) {
		fmt.Fprintf(&b, "== %s\n", u.Owner)
		for _, line := range strings.Split(strings.TrimSuffix(u.String(), "\n"), "\n") {
			// The shared firewall layout is the NAT driver's, pinned there.
			if strings.HasPrefix(line, "nft set") || strings.HasPrefix(line, "nft chain") && !strings.Contains(line, "acl_") {
				continue
			}
			b.WriteString(line + "\n")
		}
	}
	testutil.Golden(t, "units.golden", b.String())
}

// The Transparent driver of macvlans plans a network of UplinkMode
// Bridge with this driver (driver.For).
func TestChosenByUplinkMode(t *testing.T) {
	n, _ := sample(t)
	d := New()
	if got := d.NetworkDevice(n.ID); got != driver.BridgeName(n.ID) {
		t.Errorf("network device %s, want the bridge %s", got, driver.BridgeName(n.ID))
	}
	if !d.NeedsUplink().Whole {
		t.Error("the uplink is not taken whole")
	}
	for _, o := range d.PlanNetwork(n, driver.HostFacts{}).Objects {
		if l, ok := o.(netmodel.Link); ok && strings.HasPrefix(l.Name, driver.ShimPrefix) {
			t.Errorf("a shim is planned: %s", l)
		}
	}
}
