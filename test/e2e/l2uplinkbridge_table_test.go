package e2e

import (
	"context"
	"encoding/json"
	"net"
	"net/netip"
	"strings"
	"testing"

	"github.com/hostnet/hostnet/api"
)

// TestTransparentBridgeSeedTable: the seed's connectivity table for a
// Transparent network over a bridge. The network takes host 1's uplink
// whole, so its two subnets (A and B, both the uplink's) are one network's;
// the other host has a Transparent network of macvlans on subnet A. Every
// row connects, and each endpoint of host 1 puts its own MAC on the wire.
func TestTransparentBridgeSeedTable(t *testing.T) {
	seg := newSegment(t, 2)
	l := &l2Lab{seg: seg, h1: seg.hosts[0], h2: seg.hosts[1]}
	settings, _ := json.Marshal(api.NetAdapterNameSettings{NetworkAdapterName: segUplink})
	subnet := func(prefix, pool, gw string) api.Subnet {
		return api.Subnet{IpAddressPrefix: prefix, IpRange: pool, Routes: []api.Route{{DestinationPrefix: "0.0.0.0/0", NextHop: gw}}}
	}
	n, err := l.h1.Client().CreateNetwork(context.Background(), &api.Network{Name: "lan", Type: api.Transparent, UplinkMode: api.UplinkBridge,
		Ipams:    []api.Ipam{{Type: "Static", Subnets: []api.Subnet{subnet(segA, "192.0.2.128/26", routerA), subnet(segB, "198.18.0.128/26", routerB)}}},
		Policies: []api.Policy{{Type: api.NetAdapterName, Settings: settings}}})
	if err != nil {
		t.Fatalf("create the network over a bridge: %v", err)
	}
	// (This lab's host has no default route through the segment.)
	if why := waitUplink(t, seg, l.h1.HostNS, n.BridgeName, uplinkState.handedOver); why != "" && !strings.Contains(why, "default route") {
		t.Fatalf("after the create: %s", why)
	}
	other := l.h2.l2Network(t, api.Transparent, "seg-a", segA, "192.0.2.192/26", routerA)
	l.wire = seg.capture(l.h1.port)
	l.a1 = attachL2(t, l.h1, n.ID, "a1")
	l.a2 = attachL2(t, l.h1, n.ID, "a2")
	l.b1 = attachL2At(t, l.h1, n.ID, "b1", "198.18.0.140")
	l.c1 = attachL2(t, l.h2, other.ID, "c1")
	serveHost(t, seg.router)
	serveHost(t, l.h1.HostNS)
	runMatrix(t, "Transparent over a bridge", l.rows())
	seen := l.wire.sources()
	for _, e := range []l2Endpoint{l.a1, l.b1} {
		if macs := seen[e.Addr]; !macs[e.mac.String()] || macs[l.h1.mac.String()] {
			t.Errorf("frames of %s (%s) left with source MACs %v, want its own %s and never the host's %s", e.Endpoint.Name, e.Addr, sortedMACs(macs), e.mac, l.h1.mac)
		}
	}
}

// attachL2At is attachL2 for an endpoint asking for address addr (in the
// network's subnet that holds it).
func attachL2At(t *testing.T, h *segHost, network, name, addr string) l2Endpoint {
	t.Helper()
	c := h.Client()
	ctx := context.Background()
	ns, err := c.CreateNamespace(ctx, &api.Namespace{})
	if err != nil {
		t.Fatal(err)
	}
	ep, err := c.CreateEndpoint(ctx, &api.Endpoint{Name: name, HostComputeNetwork: network, HostComputeNamespace: ns.ID,
		IpConfigurations: []api.IPConfig{{IpAddress: addr}}})
	if err != nil {
		t.Fatalf("endpoint %s at %s: %v", name, addr, err)
	}
	if ep, err = c.GetEndpoint(ctx, ep.ID); err != nil {
		t.Fatal(err)
	}
	if ns, err = c.GetNamespace(ctx, ns.ID); err != nil {
		t.Fatal(err)
	}
	mac, err := net.ParseMAC(ep.MacAddress)
	if err != nil {
		t.Fatalf("endpoint %s: MAC %q: %v", name, ep.MacAddress, err)
	}
	a := &Attached{Endpoint: ep, Namespace: ns, Addr: netip.MustParseAddr(ep.IpConfigurations[0].IpAddress)}
	Serve(t, ns.NetNamespacePath, "tcp", ":7000")
	return l2Endpoint{Attached: a, mac: mac}
}
