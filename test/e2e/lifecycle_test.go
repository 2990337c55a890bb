package e2e

import (
	"encoding/json"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/hostnet/hostnet/api"
	"github.com/hostnet/hostnet/internal/dataplane/netns"
	"github.com/hostnet/hostnet/internal/testutil"
	"github.com/vishvananda/netlink"
)

// routesIn lists the routes of a namespace as "dst via gw" strings.
func (e *Env) routesIn(nsPath string) []string {
	e.t.Helper()
	h := e.handle(nsPath)
	defer h.Close()
	routes, err := h.RouteList(nil, netlink.FAMILY_ALL)
	if err != nil {
		e.t.Fatal(err)
	}
	var out []string
	for _, r := range routes {
		dst := "default"
		if r.Dst != nil {
			dst = r.Dst.String()
		}
		if r.Gw != nil {
			dst += " via " + r.Gw.String()
		}
		out = append(out, dst)
	}
	return out
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

// Policies are added to and removed from a live endpoint, and its NIC
// follows at once: an SDNRoute becomes a route in its namespace.
func TestModifyEndpointPoliciesLive(t *testing.T) {
	e := NewEnv(t)
	c := e.Client()
	a := e.AttachNew("nat", "routed")
	n, _ := c.GetNetwork(ctx, "nat")
	gw := netip.MustParsePrefix(n.Ipams[0].Subnets[0].IpAddressPrefix).Addr().Next().String() // the gateway
	route := api.Policy{Type: api.SDNRoute, Settings: json.RawMessage(`{"DestinationPrefix":"10.123.0.0/16","NextHop":"` + gw + `"}`)}
	settings, _ := json.Marshal(api.PolicyRequest{Policies: []api.Policy{route}})
	modify := func(rt api.RequestType) (*api.Endpoint, error) {
		return c.ModifyEndpoint(ctx, "routed", &api.ModifyRequest{ResourceType: api.ResourcePolicy, RequestType: rt, Settings: settings})
	}
	ep, err := modify(api.RequestAdd)
	if err != nil {
		t.Fatal(err)
	}
	if len(ep.Policies) != 1 || ep.Policies[0].Type != api.SDNRoute {
		t.Errorf("policies after add: %+v", ep.Policies)
	}
	if routes := e.routesIn(a.Namespace.NetNamespacePath); !contains(routes, "10.123.0.0/16 via "+gw) {
		t.Errorf("after adding the SDNRoute policy the namespace has routes %v", routes)
	}
	if _, err := modify(api.RequestAdd); err != nil { // adding the same policy again changes nothing
		t.Fatal(err)
	}
	if ep, err = modify(api.RequestRemove); err != nil || len(ep.Policies) != 0 {
		t.Fatalf("remove: %+v, %v", ep, err)
	}
	if routes := e.routesIn(a.Namespace.NetNamespacePath); contains(routes, "10.123.0.0/16 via "+gw) {
		t.Errorf("after removing the policy the route is still there: %v", routes)
	}
	// A policy this build does not realise is refused, not dropped.
	bad, _ := json.Marshal(api.PolicyRequest{Policies: []api.Policy{{Type: api.L4WFPProxy, Settings: json.RawMessage(`{}`)}}})
	_, err = c.ModifyEndpoint(ctx, "routed", &api.ModifyRequest{ResourceType: api.ResourcePolicy, RequestType: api.RequestAdd, Settings: bad})
	if api.CodeOf(err) != api.CodeRequestUnsupported || !strings.Contains(err.Error(), "L4WFPPROXY") {
		t.Errorf("an unsupported policy: %v", err)
	}
	if ep, _ := c.GetEndpoint(ctx, "routed"); len(ep.Policies) != 0 {
		t.Errorf("the refused policy was stored: %+v", ep.Policies)
	}
}

// A network's DNS is changed live; the namespaces of its endpoints get the
// new resolv.conf.
func TestModifyNetworkDNS(t *testing.T) {
	e := NewEnv(t)
	a := e.AttachNew("nat", "dns")
	settings := json.RawMessage(`{"ServerList":["10.53.0.1"],"Search":["svc.test"]}`)
	if _, err := e.Client().ModifyNetwork(ctx, "nat", &api.ModifyRequest{ResourceType: api.ResourceDNS, RequestType: api.RequestUpdate, Settings: settings}); err != nil {
		t.Fatal(err)
	}
	ns, _ := e.Client().GetNamespace(ctx, a.Namespace.ID)
	b, _ := os.ReadFile(strings.Trim(string(ns.Extra["ResolvConfPath"]), `"`))
	if !strings.Contains(string(b), "nameserver 10.53.0.1\n") || !strings.Contains(string(b), "search svc.test\n") {
		t.Errorf("resolv.conf after the network's DNS changed:\n%s", b)
	}
}

// A dual-stack NAT network: endpoints get an IPv4 and an IPv6 address, talk
// to each other over both, and reach the outside over IPv6 behind the host.
func TestDualStackNATNetwork(t *testing.T) {
	e := NewTopology(t, "--default-network=false")
	h := e.handle(e.HostNS)
	up, _ := h.LinkByName(uplinkName)
	a6, _ := netlink.ParseAddr("2001:db8:1::2/64")
	a6.Flags = 0x02 // nodad
	_ = h.AddrAdd(up, a6)
	_ = h.RouteAdd(&netlink.Route{Dst: &net.IPNet{IP: net.IPv6zero, Mask: net.CIDRMask(0, 128)}, Gw: net.ParseIP("2001:db8:1::1"), LinkIndex: up.Attrs().Index})
	h.Close()
	eh := e.handle(e.ExtNS)
	ext, _ := eh.LinkByName(extLinkName)
	x6, _ := netlink.ParseAddr("2001:db8:1::1/64")
	x6.Flags = 0x02
	_ = eh.AddrAdd(ext, x6)
	eh.Close()
	e.Start()

	c := e.Client()
	n := &api.Network{Name: "dual", Type: api.NAT, Ipams: []api.Ipam{{Subnets: []api.Subnet{
		{IpAddressPrefix: "10.86.0.0/24"}, {IpAddressPrefix: "fd00:86::/64"}}}}}
	if _, err := c.CreateNetwork(ctx, n); err != nil {
		t.Fatal(err)
	}
	a, b := e.AttachNew("dual", "a"), e.AttachNew("dual", "b")
	if len(b.Endpoint.IpConfigurations) != 2 {
		t.Fatalf("dual-stack endpoint got %+v", b.Endpoint.IpConfigurations)
	}
	b6 := netip.MustParseAddr(b.Endpoint.IpConfigurations[1].IpAddress)
	a6addr := netip.MustParseAddr(a.Endpoint.IpConfigurations[1].IpAddress)
	if !netip.MustParsePrefix("fd00:86::/64").Contains(b6) {
		t.Fatalf("second address %s is not in the IPv6 subnet", b6)
	}
	Serve(t, b.Namespace.NetNamespacePath, "tcp", ":8080")
	Serve(t, e.ExtNS, "tcp", "[2001:db8:1::1]:7777")
	// The kernel's neighbour discovery needs a moment for fresh addresses.
	var src netip.Addr
	var err error
	for i := 0; i < 20; i++ {
		if src, err = Talk(t, a.Namespace.NetNamespacePath, "tcp", net.JoinHostPort(b6.String(), "8080")); err == nil {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	if err != nil || src != a6addr {
		t.Errorf("a -> b over IPv6: seen as %s, %v (want %s)", src, err, a6addr)
	}
	if src, err = Talk(t, a.Namespace.NetNamespacePath, "tcp", "[2001:db8:1::1]:7777"); err != nil || src.String() != "2001:db8:1::2" {
		t.Errorf("to the outside over IPv6: seen as %s, %v (want the host's 2001:db8:1::2)", src, err)
	}
	if src, err = Talk(t, a.Namespace.NetNamespacePath, "tcp", net.JoinHostPort(b.Addr.String(), "8080")); err != nil || src != a.Addr {
		t.Errorf("a -> b over IPv4: %s, %v", src, err)
	}
}

// What hostnet made and someone removed by hand comes back at the next
// start; what carries hostnet's tag but belongs to no object is removed.
func TestRestartRepairsAndCollectsGarbage(t *testing.T) {
	e := NewEnv(t)
	a, b := e.AttachNew("nat", "a"), e.AttachNew("nat", "b")
	Serve(t, b.Namespace.NetNamespacePath, "tcp", ":9000")
	e.Kill9()

	h := e.handle(e.HostNS)
	defer h.Close()
	// Damage: a's port gone, b's address gone, the bridge down, and junk
	// with hostnet's names: a port, a bridge and a namespace no object
	// claims.
	port, _ := h.LinkByName(a.Endpoint.HostInterfaceName)
	if err := h.LinkDel(port); err != nil {
		t.Fatal(err)
	}
	bh := e.handle(b.Namespace.NetNamespacePath)
	eth0, _ := bh.LinkByName("eth0")
	addrs, _ := bh.AddrList(eth0, netlink.FAMILY_V4)
	for _, ad := range addrs {
		_ = bh.AddrDel(eth0, &ad)
	}
	bh.Close()
	for _, l := range []netlink.Link{
		&netlink.Bridge{LinkAttrs: netlink.LinkAttrs{Name: "hnbrjunk"}},
		&netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: "hnvjunk"}, PeerName: "hnvjunkpeer"},
	} {
		if err := h.LinkAdd(l); err != nil {
			t.Fatal(err)
		}
	}
	junkNS := e.newNS(filepath.Join("run", "netns", "0c0c0c0c-0000-4000-8000-000000000000"))

	e.Start()
	if _, err := Talk(t, a.Namespace.NetNamespacePath, "tcp", net.JoinHostPort(b.Addr.String(), "9000")); err != nil {
		t.Errorf("after the repairs a cannot reach b: %v", err)
	}
	for _, name := range []string{"hnbrjunk", "hnvjunk", "hnvjunkpeer"} {
		if _, err := h.LinkByName(name); err == nil {
			t.Errorf("unclaimed device %s survived the restart", name)
		}
	}
	if _, err := os.Stat(junkNS); !os.IsNotExist(err) {
		t.Errorf("unclaimed namespace survived the restart: %v", err)
	}
}

// A failure in the kernel after the intent was stored is rolled back: the
// endpoint is not left half-attached.
func TestAttachFailureRollsBack(t *testing.T) {
	e := NewEnv(t)
	c := e.Client()
	path := e.newNS("vanishing.ns")
	ns, err := c.CreateNamespace(ctx, &api.Namespace{NetNamespacePath: path})
	if err != nil {
		t.Fatal(err)
	}
	// The runtime's namespace goes away behind hostnet's back.
	if err := netns.Delete(path); err != nil {
		t.Fatal(err)
	}
	ep, err := c.CreateEndpoint(ctx, &api.Endpoint{Name: "lost", HostComputeNetwork: "nat"})
	if err != nil {
		t.Fatal(err)
	}
	before, kernel := e.snapshot(), e.kernelState()
	if _, err := c.Attach(ctx, ns.ID, ep.ID); err == nil {
		t.Fatal("attaching to a namespace that is gone succeeded")
	}
	if now := e.snapshot(); now != before {
		t.Errorf("a failed attach changed the store:\nbefore %s\nafter  %s", before, now)
	}
	if now := e.kernelState(); now != kernel {
		t.Errorf("a failed attach changed the kernel:\nbefore %s\nafter  %s", kernel, now)
	}
	// Creating with the namespace in one request rolls back the creation.
	_, err = c.CreateEndpoint(ctx, &api.Endpoint{Name: "lost2", HostComputeNetwork: "nat", HostComputeNamespace: ns.ID})
	if err == nil {
		t.Fatal("creating an endpoint into a namespace that is gone succeeded")
	}
	if _, err := c.GetEndpoint(ctx, "lost2"); !api.IsNotFound(err) {
		t.Errorf("the failed creation left the endpoint: %v", err)
	}
}

// An endpoint created with its namespace is attached in one request; one
// without a MAC takes one from the network's MAC pool.
func TestCreateWithNamespaceAndMacPool(t *testing.T) {
	e := NewEnv(t, "--default-network=false")
	c := e.Client()
	n := natNetwork("pool", "10.87.0.0/24")
	n.MacPool = &api.MacPool{Ranges: []api.MacRange{{StartMacAddress: "00-15-5D-87-00-00", EndMacAddress: "00-15-5D-87-00-FF"}}}
	if _, err := c.CreateNetwork(ctx, n); err != nil {
		t.Fatal(err)
	}
	ns, _ := c.CreateNamespace(ctx, &api.Namespace{})
	ep, err := c.CreateEndpoint(ctx, &api.Endpoint{HostComputeNetwork: "pool", HostComputeNamespace: ns.ID})
	if err != nil {
		t.Fatal(err)
	}
	if ep.HostComputeNamespace != ns.ID || ep.InterfaceName != "eth0" {
		t.Errorf("created with a namespace: namespace %q interface %q", ep.HostComputeNamespace, ep.InterfaceName)
	}
	if ep.MacAddress != "00-15-5D-87-00-00" {
		t.Errorf("MAC %s, want the first of the pool", ep.MacAddress)
	}
	h := e.handle(ns.NetNamespacePath)
	defer h.Close()
	l, err := h.LinkByName("eth0")
	if err != nil || l.Attrs().HardwareAddr.String() != "00:15:5d:87:00:00" {
		t.Errorf("eth0 in the namespace: %v %v", l, err)
	}
}

// With a link directory, `ip netns` sees the namespaces hostnet creates;
// the default subnet can be set.
func TestIPNetnsLinkAndDefaultSubnet(t *testing.T) {
	links := filepath.Join(os.TempDir(), filepath.Base(t.TempDir()))
	e := NewEnv(t, "--netns-link-dir", links, "--default-subnet", "10.88.0.0/22")
	defer os.RemoveAll(links)
	n, _ := e.Client().GetNetwork(ctx, "nat")
	if n.Ipams[0].Subnets[0].IpAddressPrefix != "10.88.0.0/22" {
		t.Errorf("default subnet %s", n.Ipams[0].Subnets[0].IpAddressPrefix)
	}
	ns, _ := e.Client().CreateNamespace(ctx, &api.Namespace{})
	target, err := os.Readlink(filepath.Join(links, "hn-"+ns.ID))
	if err != nil || target != ns.NetNamespacePath {
		t.Errorf("ip netns link: %q, %v", target, err)
	}
	if err := e.Client().DeleteNamespace(ctx, ns.ID); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Lstat(filepath.Join(links, "hn-"+ns.ID)); !os.IsNotExist(err) {
		t.Errorf("the link survived the namespace: %v", err)
	}
}

// A device name already held in a runtime's namespace by a device that is
// not hostnet's is refused clearly, and nothing changes.
func TestAttachRefusesATakenDeviceName(t *testing.T) {
	e := NewEnv(t)
	c := e.Client()
	path := e.newNS("busy.ns")
	h := e.handle(path)
	if err := h.LinkAdd(&netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: "eth0"}, PeerName: "other"}); err != nil {
		t.Fatal(err)
	}
	h.Close()
	ns, _ := c.CreateNamespace(ctx, &api.Namespace{NetNamespacePath: path})
	ep, _ := c.CreateEndpoint(ctx, &api.Endpoint{Name: "clash", HostComputeNetwork: "nat"})
	before, kernel := e.snapshot(), e.kernelState()
	_, err := c.Attach(ctx, ns.ID, ep.ID)
	if !api.IsConflict(err) || !strings.Contains(err.Error(), "eth0") {
		t.Errorf("attach over a foreign eth0: %v", err)
	}
	if now := e.snapshot(); now != before {
		t.Errorf("the store changed:\nbefore %s\nafter  %s", before, now)
	}
	if now := e.kernelState(); now != kernel {
		t.Errorf("the kernel changed:\nbefore %s\nafter  %s", kernel, now)
	}
	// With a name of its own the endpoint fits beside it.
	ep2, err := c.CreateEndpoint(ctx, &api.Endpoint{HostComputeNetwork: "nat", InterfaceName: "eth1", HostComputeNamespace: ns.ID})
	if err != nil || ep2.InterfaceName != "eth1" {
		t.Errorf("eth1 beside a foreign eth0: %+v, %v", ep2, err)
	}
}

// An endpoint created with HostComputeNamespace and NetNamespacePath joins
// the namespace of that name, or makes it, wrapping the path, in the same
// request; such an implicit namespace goes with its last endpoint, and the
// Linux namespace it wraps stays.
func TestCreateEndpointWithImplicitNamespace(t *testing.T) {
	e := NewEnv(t)
	c := e.Client()
	path, _ := testutil.NewNS(t, "runtime")
	first, err := c.CreateEndpoint(ctx, &api.Endpoint{Name: "a", HostComputeNetwork: "nat", HostComputeNamespace: "pod1", NetNamespacePath: path})
	if err != nil {
		t.Fatal(err)
	}
	ns, err := c.GetNamespace(ctx, "pod1")
	if err != nil || !ns.Implicit || ns.Managed || ns.NetNamespacePath != path || first.NetNamespacePath != path || first.HostComputeNamespace != ns.ID {
		t.Fatalf("the implicit namespace: %+v, %v; endpoint %+v", ns, err, first)
	}
	second, err := c.CreateEndpoint(ctx, &api.Endpoint{Name: "b", HostComputeNetwork: "nat", HostComputeNamespace: "pod1", NetNamespacePath: path})
	if err != nil || second.HostComputeNamespace != ns.ID || second.InterfaceName != "eth1" {
		t.Fatalf("a second endpoint in the same namespace: %+v, %v", second, err)
	}
	other, _ := testutil.NewNS(t, "other")
	_, err = c.CreateEndpoint(ctx, &api.Endpoint{Name: "c", HostComputeNetwork: "nat", HostComputeNamespace: "pod1", NetNamespacePath: other})
	if !api.IsConflict(err) || !strings.Contains(err.Error(), "NetNamespacePath") {
		t.Errorf("joining pod1 with another path: %v", err)
	}
	_, err = c.CreateEndpoint(ctx, &api.Endpoint{Name: "d", HostComputeNetwork: "nat", NetNamespacePath: path})
	if api.CodeOf(err) != api.CodeInvalidEndpoint || !strings.Contains(err.Error(), "NetNamespacePath") {
		t.Errorf("NetNamespacePath alone: %v", err)
	}
	if _, err := c.CreateNamespace(ctx, &api.Namespace{Implicit: true}); api.CodeOf(err) != api.CodeInvalidNamespace {
		t.Errorf("a client setting Implicit: %v", err)
	}
	if err := c.DeleteEndpoint(ctx, "a"); err != nil {
		t.Fatal(err)
	}
	if _, err := c.GetNamespace(ctx, "pod1"); err != nil {
		t.Errorf("the namespace went while an endpoint is attached: %v", err)
	}
	if err := c.DeleteEndpoint(ctx, "b"); err != nil {
		t.Fatal(err)
	}
	if _, err := c.GetNamespace(ctx, "pod1"); !api.IsNotFound(err) {
		t.Errorf("the implicit namespace outlived its last endpoint: %v", err)
	}
	if !netns.IsNamespace(path) {
		t.Error("the runtime's network namespace was removed")
	}
}
