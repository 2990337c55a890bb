package dataplane

import (
	"net"
	"net/netip"
	"sort"
	"strings"
	"testing"

	"github.com/hostnet/hostnet/internal/testutil"
	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

func TestBridgeAndPort(t *testing.T) {
	hostPath, _ := testutil.NewNS(t, "host")
	_, epNS := testutil.NewNS(t, "ep")
	host, err := OpenLinux(hostPath, HostConfig{})
	if err != nil {
		t.Fatal(err)
	}
	defer host.Close()

	mac, _ := net.ParseMAC("02:00:00:00:00:01")
	br := BridgeSpec{Name: "hnbrtest", MAC: mac, MTU: 1500, Addrs: []netip.Prefix{netip.MustParsePrefix("10.9.0.1/24")}}
	idx, err := host.EnsureBridge(br)
	if err != nil {
		t.Fatal(err)
	}
	idx2, err := host.EnsureBridge(br)
	if err != nil || idx2 != idx {
		t.Fatalf("second EnsureBridge: %d, %v (first %d)", idx2, err, idx)
	}
	pmac, _ := net.ParseMAC("02:00:00:00:00:02")
	port := PortSpec{
		HostName: "hnvtest", BridgeIndex: idx, MTU: 1500, NS: epNS, Name: "eth0", MAC: pmac,
		Addrs:  []netip.Prefix{netip.MustParsePrefix("10.9.0.2/24")},
		Routes: []Route{{Dst: netip.MustParsePrefix("0.0.0.0/0"), Gateway: netip.MustParseAddr("10.9.0.1"), Metric: 100}},
	}
	if err := host.EnsurePort(port); err != nil {
		t.Fatal(err)
	}
	// Adopt: a second call changes nothing and succeeds.
	if err := host.EnsurePort(port); err != nil {
		t.Fatalf("second EnsurePort: %v", err)
	}
	eh, err := netlink.NewHandleAt(epNS, unix.NETLINK_ROUTE)
	if err != nil {
		t.Fatal(err)
	}
	defer eh.Close()
	link, err := eh.LinkByName("eth0")
	if err != nil {
		t.Fatal(err)
	}
	if link.Attrs().HardwareAddr.String() != pmac.String() || link.Attrs().Flags&net.FlagUp == 0 {
		t.Errorf("eth0: mac %s flags %v", link.Attrs().HardwareAddr, link.Attrs().Flags)
	}
	// Repair: an address removed by hand comes back.
	addrs, _ := eh.AddrList(link, netlink.FAMILY_V4)
	for _, a := range addrs {
		eh.AddrDel(link, &a)
	}
	if err := host.EnsurePort(port); err != nil {
		t.Fatal(err)
	}
	addrs, _ = eh.AddrList(link, netlink.FAMILY_V4)
	if len(addrs) != 1 || addrs[0].IPNet.String() != "10.9.0.2/24" {
		t.Errorf("after repair: %v", addrs)
	}
	routes, _ := eh.RouteList(link, netlink.FAMILY_V4)
	var gw bool
	for _, r := range routes {
		gw = gw || (r.Gw != nil && r.Gw.String() == "10.9.0.1" && r.Protocol == RouteProtocol)
	}
	if !gw {
		t.Errorf("no default route via the gateway: %v", routes)
	}
	if err := host.DeleteLink("hnvtest"); err != nil {
		t.Fatal(err)
	}
	if err := host.DeleteLink("hnvtest"); err != nil {
		t.Errorf("second DeleteLink: %v", err)
	}
	if _, err := eh.LinkByName("eth0"); err == nil {
		t.Error("peer survived deleting the host side")
	}
}

// DeleteLinks removes several veths (and their peers) in one batch; names
// already gone are no error, and other devices stay.
func TestDeleteLinks(t *testing.T) {
	hostPath, _ := testutil.NewNS(t, "host")
	host, err := OpenLinux(hostPath, HostConfig{})
	if err != nil {
		t.Fatal(err)
	}
	defer host.Close()
	for _, name := range []string{"hnvdel1", "hnvdel2", "hnvdel3", "hnvkeep"} {
		if err := host.nl.LinkAdd(&netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: name}, PeerName: name + "p"}); err != nil {
			t.Fatal(err)
		}
	}
	if err := host.DeleteLinks([]string{"hnvdel1", "hnvdel2", "hnvdel3", "hnvgone"}); err != nil {
		t.Fatal(err)
	}
	names, err := host.LinkNames("hnv")
	if err != nil {
		t.Fatal(err)
	}
	sort.Strings(names)
	if strings.Join(names, " ") != "hnvkeep hnvkeepp" {
		t.Errorf("left: %v, want hnvkeep and its peer", names)
	}
	if err := host.DeleteLinks([]string{"hnvgone1", "hnvgone2"}); err != nil {
		t.Errorf("deleting devices that are gone: %v", err)
	}
	// A device left in a deletion group by a batch a crash cut short, and
	// in service again, is not taken by the next batch.
	keep, err := host.nl.LinkByName("hnvkeep")
	if err != nil {
		t.Fatal(err)
	}
	if err := host.nl.LinkSetGroup(keep, int(deletionGroup())); err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"hnvdel4", "hnvdel5"} {
		if err := host.nl.LinkAdd(&netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: name}, PeerName: name + "p"}); err != nil {
			t.Fatal(err)
		}
	}
	if err := host.DeleteLinks([]string{"hnvdel4", "hnvdel5"}); err != nil {
		t.Fatal(err)
	}
	if names, _ := host.LinkNames("hnv"); len(names) != 2 {
		t.Errorf("left: %v, want hnvkeep and its peer", names)
	}
}
