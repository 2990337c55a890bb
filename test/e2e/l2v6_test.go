package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"net/netip"
	"os"
	"strings"
	"testing"

	"github.com/hostnet/hostnet/api"
	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// The lab's IPv6 subnet (documentation range), on the same wire as segA.
const (
	segV6     = "2001:db8:5e9::/64"
	routerV6  = "2001:db8:5e9::1"
	segV6Pool = "2001:db8:5e9::1:0/112"
)

// addV6 gives the device name in the namespace at path an IPv6 address
// (without duplicate address detection, so it is usable at once).
func (s *segment) addV6(path, name, addr string) {
	s.t.Helper()
	h := s.handle(path)
	l, err := h.LinkByName(name)
	if err != nil {
		s.t.Fatal(err)
	}
	a, err := netlink.ParseAddr(addr)
	if err != nil {
		s.t.Fatal(err)
	}
	a.Flags = unix.IFA_F_NODAD
	if err := h.AddrAdd(l, a); err != nil {
		s.t.Fatal(err)
	}
}

// dualStackL2Bridge creates an L2Bridge network on h's uplink with a
// subnet of each family, endpoints from pool4 and segV6Pool.
func (h *segHost) dualStackL2Bridge(t *testing.T, name, pool4, pool6 string) *api.Network {
	t.Helper()
	settings, _ := json.Marshal(api.NetAdapterNameSettings{NetworkAdapterName: segUplink})
	n := &api.Network{Name: name, Type: api.L2Bridge,
		Ipams: []api.Ipam{{Type: "Static", Subnets: []api.Subnet{
			{IpAddressPrefix: segA, IpRange: pool4, Routes: []api.Route{{DestinationPrefix: "0.0.0.0/0", NextHop: routerA}}},
			{IpAddressPrefix: segV6, IpRange: pool6, Routes: []api.Route{{DestinationPrefix: "::/0", NextHop: routerV6}}},
		}}},
		Policies: []api.Policy{{Type: api.NetAdapterName, Settings: settings}}}
	got, err := h.Client().CreateNetwork(context.Background(), n)
	if err != nil {
		t.Fatalf("create dual-stack L2Bridge network %s: %v", name, err)
	}
	return got
}

// v6Of returns an attached endpoint's IPv6 address.
func v6Of(t *testing.T, e l2Endpoint) netip.Addr {
	t.Helper()
	for _, c := range e.Endpoint.IpConfigurations {
		if a := netip.MustParseAddr(c.IpAddress); a.Is6() {
			return a
		}
	}
	t.Fatalf("endpoint %s has no IPv6 address: %+v", e.Endpoint.Name, e.Endpoint.IpConfigurations)
	return netip.Addr{}
}

// TestL2BridgeIPv6OnASegment: a dual-stack L2Bridge network. Over IPv6
// the seed's table connects (same host, other host, the router both
// ways, the host both ways), the segment learns each endpoint's address
// at the host's MAC (proxy NDP on the uplink) and no endpoint MAC reaches
// the wire; the endpoint has one route of each family by default.
func TestL2BridgeIPv6OnASegment(t *testing.T) {
	seg := newSegment(t, 2)
	h1, h2 := seg.hosts[0], seg.hosts[1]
	seg.addV6(seg.router, "eth0", routerV6+"/64")
	for i, h := range seg.hosts {
		seg.addV6(h.HostNS, segUplink, fmt.Sprintf("2001:db8:5e9::%d/64", 11+i))
	}
	In(t, seg.router, func() error {
		return os.WriteFile("/proc/sys/net/ipv6/conf/all/forwarding", []byte("1"), 0o644)
	})
	n1 := h1.dualStackL2Bridge(t, "v6-a", "192.0.2.128/26", "2001:db8:5e9::1:0/113")
	n2 := h2.dualStackL2Bridge(t, "v6-a", "192.0.2.192/26", "2001:db8:5e9::1:8000/113")
	wire := seg.capture(h1.port)
	a1, a2 := attachL2(t, h1, n1.ID, "a1"), attachL2(t, h1, n1.ID, "a2")
	c1 := attachL2(t, h2, n2.ID, "c1")
	serveHost(t, seg.router)
	serveHost(t, h1.HostNS)
	ep := func(e l2Endpoint) string { return e.Namespace.NetNamespacePath }
	host1 := netip.MustParseAddr("2001:db8:5e9::11")
	runMatrix(t, "L2Bridge over IPv6", []matrixRow{
		{"a1 (host 1)", "a2 (same host, same subnet)", ep(a1), v6Of(t, a2), true},
		{"a1 (host 1)", "c1 (other host)", ep(a1), v6Of(t, c1), true},
		{"c1 (other host)", "a1 (host 1)", ep(c1), v6Of(t, a1), true},
		{"a1 (host 1)", "external (the router)", ep(a1), netip.MustParseAddr(routerV6), true},
		{"external (the router)", "a1 (host 1)", seg.router, v6Of(t, a1), true},
		{"host 1", "a1 (its endpoint)", h1.HostNS, v6Of(t, a1), true},
		{"a1 (host 1)", "host 1", ep(a1), host1, true},
		{"a1 (host 1) over IPv4", "external (the router)", ep(a1), netip.MustParseAddr(routerA), true},
	})
	seen := wire.sources()
	macs := seen[v6Of(t, a1)]
	if len(macs) == 0 {
		t.Errorf("no frame of a1 (%s) seen on the wire", v6Of(t, a1))
	}
	if len(macs) != 1 || !macs[h1.mac.String()] {
		t.Errorf("frames of a1 (%s) left host 1 with source MACs %v, want only the host's %s", v6Of(t, a1), sortedMACs(macs), h1.mac)
	}
	for _, e := range []l2Endpoint{a1, a2} {
		for ip, m := range seen {
			if m[e.mac.String()] {
				t.Errorf("endpoint %s's own MAC %s reached the wire (frames from %s)", e.Endpoint.Name, e.mac, ip)
			}
		}
	}
	// One default route per family in the endpoint's namespace.
	h := seg.handle(ep(a1))
	for _, fam := range []int{netlink.FAMILY_V4, netlink.FAMILY_V6} {
		routes, err := h.RouteListFiltered(fam, &netlink.Route{}, 0)
		if err != nil {
			t.Fatal(err)
		}
		var defaults []string
		for _, r := range routes {
			if r.Dst == nil || r.Dst.IP.IsUnspecified() {
				defaults = append(defaults, r.String())
			}
		}
		if len(defaults) != 1 {
			t.Errorf("family %d: %d default routes in a1's namespace, want 1:\n%s", fam, len(defaults), strings.Join(defaults, "\n"))
		}
	}
	// A killed daemon's restart keeps the IPv6 path.
	h1.Restart(true)
	if !reachTCP(t, ep(a1), netip.AddrPortFrom(netip.MustParseAddr(routerV6), 7000).String()) {
		t.Error("a1 no longer reaches the router over IPv6 after a restart")
	}
	if r := h1.CLI("doctor"); r.Code != 0 {
		t.Errorf("doctor after the restart: exit %d\n%s%s", r.Code, r.Stdout, r.Stderr)
	}
}
