package e2e

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/nftables"

	"github.com/hostnet/hostnet/api"
	"github.com/hostnet/hostnet/internal/dataplane/netns"
	"github.com/vishvananda/netlink"
)

var ctx = context.Background()

func natNetwork(name, subnet string) *api.Network {
	return &api.Network{Name: name, Type: api.NAT, Ipams: []api.Ipam{{Type: "Static", Subnets: []api.Subnet{{IpAddressPrefix: subnet}}}}}
}

// The default network reaches the outside through the host, masqueraded
// behind the host's uplink address, for TCP and UDP.
func TestOutboundThroughTheHost(t *testing.T) {
	e := NewEnv(t)
	Serve(t, e.ExtNS, "tcp", extAddr+":7777")
	Serve(t, e.ExtNS, "udp", extAddr+":7777")
	a := e.AttachNew("nat", "web")
	if !netip.MustParsePrefix("172.16.0.0/12").Contains(a.Addr) {
		t.Errorf("endpoint address %s is not in the default network's range", a.Addr)
	}
	for _, proto := range []string{"tcp", "udp"} {
		src, err := Talk(t, a.Namespace.NetNamespacePath, proto, extAddr+":7777")
		if err != nil {
			t.Fatalf("%s to the outside: %v", proto, err)
		}
		if src.String() != hostAddr {
			t.Errorf("%s: the outside saw %s, want the host's uplink address %s", proto, src, hostAddr)
		}
	}
}

// Endpoints of one NAT network talk to each other directly (no NAT between
// them), over TCP and UDP; endpoints of two networks cannot talk at all.
func TestOneNetworkTalksTwoNetworksDoNot(t *testing.T) {
	e := NewEnv(t, "--default-network=false")
	c := e.Client()
	for name, subnet := range map[string]string{"red": "10.81.0.0/24", "blue": "10.82.0.0/24"} {
		if _, err := c.CreateNetwork(ctx, natNetwork(name, subnet)); err != nil {
			t.Fatal(err)
		}
	}
	r1, r2, b1 := e.AttachNew("red", "r1"), e.AttachNew("red", "r2"), e.AttachNew("blue", "b1")
	for _, a := range []*Attached{r2, b1} {
		Serve(t, a.Namespace.NetNamespacePath, "tcp", ":8080")
		Serve(t, a.Namespace.NetNamespacePath, "udp", ":8080")
	}
	for _, proto := range []string{"tcp", "udp"} {
		src, err := Talk(t, r1.Namespace.NetNamespacePath, proto, net.JoinHostPort(r2.Addr.String(), "8080"))
		if err != nil {
			t.Fatalf("%s r1 -> r2 on one network: %v", proto, err)
		}
		if src != r1.Addr {
			t.Errorf("%s: r2 saw %s, want r1's own address %s", proto, src, r1.Addr)
		}
		if src, err := Talk(t, r1.Namespace.NetNamespacePath, proto, net.JoinHostPort(b1.Addr.String(), "8080")); err == nil {
			t.Errorf("%s r1 (red) -> b1 (blue) got through (seen as %s): networks must be isolated", proto, src)
		}
		if src, err := Talk(t, b1.Namespace.NetNamespacePath, proto, net.JoinHostPort(r2.Addr.String(), "8080")); err == nil {
			t.Errorf("%s b1 (blue) -> r2 (red) got through (seen as %s): networks must be isolated", proto, src)
		}
	}
}

// After kill -9 and a restart, a TCP connection between two endpoints
// keeps carrying data (it even does while the daemon is down), every
// object is still listed, and the kernel objects were adopted, not
// recreated.
func TestRestartAfterKill9KeepsTrafficAndObjects(t *testing.T) {
	e := NewEnv(t)
	a, b := e.AttachNew("nat", "a"), e.AttachNew("nat", "b")
	Serve(t, b.Namespace.NetNamespacePath, "tcp", ":9000")
	conn, err := Dial(t, a.Namespace.NetNamespacePath, "tcp", net.JoinHostPort(b.Addr.String(), "9000"), 2*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	exchange := func(when string) {
		t.Helper()
		if _, err := Exchange(conn, when, 2*time.Second); err != nil {
			t.Fatalf("%s: the open connection stopped carrying data: %v", when, err)
		}
	}
	exchange("before")
	before := e.snapshot()
	bridge := e.linkIndex("hnbr")

	e.Kill9()
	exchange("while-down")
	e.Start()
	exchange("after-restart")
	if after := e.snapshot(); after != before {
		t.Errorf("objects changed across the restart:\nbefore: %s\nafter:  %s", before, after)
	}
	if got := e.linkIndex("hnbr"); got != bridge {
		t.Errorf("the bridge was recreated (index %d, was %d)", got, bridge)
	}
	e.Restart(false) // a clean SIGTERM stop leaves the kernel as it is too
	exchange("after-sigterm")
	if _, err := Talk(t, a.Namespace.NetNamespacePath, "tcp", net.JoinHostPort(b.Addr.String(), "9000")); err != nil {
		t.Errorf("a new connection after the restarts: %v", err)
	}
}

// snapshot lists every object the daemon holds, as JSON.
func (e *Env) snapshot() string {
	e.t.Helper()
	c := e.Client()
	nets, err1 := c.ListNetworks(ctx, nil)
	eps, err2 := c.ListEndpoints(ctx, nil)
	nss, err3 := c.ListNamespaces(ctx, nil)
	for _, err := range []error{err1, err2, err3} {
		if err != nil {
			e.t.Fatal(err)
		}
	}
	return mustJSON(nets) + mustJSON(eps) + mustJSON(nss)
}

// linkIndex returns the index of the first host device with the prefix.
func (e *Env) linkIndex(prefix string) int {
	h := e.handle(e.HostNS)
	defer h.Close()
	links, _ := h.LinkList()
	for _, l := range links {
		if strings.HasPrefix(l.Attrs().Name, prefix) {
			return l.Attrs().Index
		}
	}
	e.t.Fatalf("no device %s* in the host namespace", prefix)
	return 0
}

// Networks flagged EnableNonPersistent are gone after a restart, with their
// endpoints and bridge; the others stay.
func TestNonPersistentNetworkGoneAfterRestart(t *testing.T) {
	e := NewEnv(t, "--default-network=false")
	c := e.Client()
	keep := natNetwork("keep", "10.83.0.0/24")
	gone := natNetwork("gone", "10.84.0.0/24")
	gone.Flags = api.NetworkEnableNonPersistent
	for _, n := range []*api.Network{keep, gone} {
		if _, err := c.CreateNetwork(ctx, n); err != nil {
			t.Fatal(err)
		}
	}
	g := e.AttachNew("gone", "g1")
	e.AttachNew("keep", "k1")
	e.Restart(true)
	if _, err := c.GetNetwork(ctx, "gone"); !api.IsNotFound(err) {
		t.Errorf("non-persistent network after restart: %v, want not found", err)
	}
	if _, err := c.GetEndpoint(ctx, "g1"); !api.IsNotFound(err) {
		t.Errorf("endpoint of the non-persistent network after restart: %v, want not found", err)
	}
	if _, err := c.GetNetwork(ctx, "keep"); err != nil {
		t.Errorf("persistent network after restart: %v", err)
	}
	ns, err := c.GetNamespace(ctx, g.Namespace.ID)
	if err != nil || len(ns.Resources) != 0 {
		t.Errorf("namespace of the dropped endpoint: %+v, %v; want it kept, empty", ns, err)
	}
	h := e.handle(e.HostNS)
	defer h.Close()
	links, _ := h.LinkList()
	var names []string
	for _, l := range links {
		names = append(names, l.Attrs().Name)
	}
	if len(names) != 5 { // lo, uplink0, keep's bridge and port... and nothing of "gone"
		t.Logf("host devices: %v", names)
	}
	for _, n := range names {
		if n == g.Endpoint.HostInterfaceName {
			t.Errorf("the dropped endpoint's port %s is still there", n)
		}
	}
}

// Fifty endpoints created and attached in parallel get fifty distinct
// addresses, each configured in its namespace; deleting them all gives the
// pool back whole: it then hands out exactly its capacity again.
func TestParallelEndpointsGetDistinctAddresses(t *testing.T) {
	e := NewEnv(t, "--default-network=false")
	c := e.Client()
	if _, err := c.CreateNetwork(ctx, natNetwork("par", "10.85.0.0/26")); err != nil {
		t.Fatal(err)
	}
	const n = 50
	var mu sync.Mutex
	seen := map[string]string{}
	var all []*Attached
	var wg sync.WaitGroup
	for i := 0; i < n; i++ {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			ns, err := c.CreateNamespace(ctx, &api.Namespace{})
			if err != nil {
				t.Error(err)
				return
			}
			ep, err := c.CreateEndpoint(ctx, &api.Endpoint{Name: fmt.Sprint("p", i), HostComputeNetwork: "par"})
			if err != nil {
				t.Error(err)
				return
			}
			if _, err := c.Attach(ctx, ns.ID, ep.ID); err != nil {
				t.Error(err)
				return
			}
			mu.Lock()
			defer mu.Unlock()
			ip := ep.IpConfigurations[0].IpAddress
			if other, dup := seen[ip]; dup {
				t.Errorf("%s handed to both %s and %s", ip, other, ep.Name)
			}
			seen[ip] = ep.Name
			all = append(all, &Attached{Endpoint: ep, Namespace: ns, Addr: netip.MustParseAddr(ip)})
		}(i)
	}
	wg.Wait()
	if t.Failed() {
		return
	}
	for _, a := range all[:5] {
		if got := e.addrsIn(a.Namespace.NetNamespacePath, "eth0"); len(got) != 1 || got[0] != a.Addr.String()+"/26" {
			t.Errorf("%s: eth0 has %v, want %s/26", a.Endpoint.Name, got, a.Addr)
		}
	}
	for _, a := range all {
		wg.Add(1)
		go func(a *Attached) {
			defer wg.Done()
			if err := c.DeleteEndpoint(ctx, a.Endpoint.ID); err != nil {
				t.Error(err)
			}
			if err := c.DeleteNamespace(ctx, a.Namespace.ID); err != nil {
				t.Error(err)
			}
		}(a)
	}
	wg.Wait()
	// A /26 has 64 addresses: network, broadcast and gateway are never handed out.
	var ids []string
	for i := 0; i < 61; i++ {
		ep, err := c.CreateEndpoint(ctx, &api.Endpoint{HostComputeNetwork: "par"})
		if err != nil {
			t.Fatalf("endpoint %d of the pool's 61 after the deletes: %v", i+1, err)
		}
		ids = append(ids, ep.ID)
	}
	_, err := c.CreateEndpoint(ctx, &api.Endpoint{HostComputeNetwork: "par"})
	if api.CodeOf(err) != api.CodeAddressesExhausted || !strings.Contains(err.Error(), "no free address") {
		t.Errorf("62nd endpoint of a /26: %v, want an exhausted-pool error", err)
	}
	for _, id := range ids {
		if err := c.DeleteEndpoint(ctx, id); err != nil {
			t.Fatal(err)
		}
	}
}

// addrsIn lists the global addresses of a device inside a namespace.
func (e *Env) addrsIn(nsPath, dev string) []string {
	e.t.Helper()
	h := e.handle(nsPath)
	defer h.Close()
	l, err := h.LinkByName(dev)
	if err != nil {
		return nil
	}
	addrs, _ := h.AddrList(l, netlink.FAMILY_ALL)
	var out []string
	for _, a := range addrs {
		if a.IP.IsGlobalUnicast() {
			out = append(out, a.IPNet.String())
		}
	}
	return out
}

// Attaching writes the namespace's resolv.conf from the endpoint's DNS, or
// from the host's when the endpoint and its network set none (loopback
// resolvers dropped); detaching undoes the NIC and the file.
func TestAttachDNSAndDetach(t *testing.T) {
	e := NewEnv(t)
	c := e.Client()
	own, err := c.CreateEndpoint(ctx, &api.Endpoint{Name: "own", HostComputeNetwork: "nat",
		Dns: &api.DNS{ServerList: []string{"10.1.1.1", "10.1.1.2"}, Search: []string{"corp.test"}, Options: []string{"ndots:2"}}})
	if err != nil {
		t.Fatal(err)
	}
	ns, err := c.CreateNamespace(ctx, &api.Namespace{})
	if err != nil {
		t.Fatal(err)
	}
	nsDoc, err := c.Attach(ctx, ns.ID, own.ID)
	if err != nil {
		t.Fatal(err)
	}
	var resolv string
	if raw, ok := nsDoc.Extra["ResolvConfPath"]; ok {
		resolv = strings.Trim(string(raw), `"`)
	}
	b, err := os.ReadFile(resolv)
	if err != nil {
		t.Fatalf("resolv.conf of the namespace (%q): %v", resolv, err)
	}
	for _, want := range []string{"nameserver 10.1.1.1\n", "nameserver 10.1.1.2\n", "search corp.test\n", "options ndots:2\n"} {
		if !strings.Contains(string(b), want) {
			t.Errorf("resolv.conf lacks %q:\n%s", want, b)
		}
	}
	hostOnly := e.AttachNew("nat", "hostdns")
	doc, _ := c.GetNamespace(ctx, hostOnly.Namespace.ID)
	b, _ = os.ReadFile(strings.Trim(string(doc.Extra["ResolvConfPath"]), `"`))
	if !strings.Contains(string(b), "nameserver "+hostDNS+"\n") || strings.Contains(string(b), "127.0.0.53") || !strings.Contains(string(b), "search example.test") {
		t.Errorf("an endpoint without DNS should get the host's non-loopback resolvers:\n%s", b)
	}

	if _, err := c.Detach(ctx, ns.ID, own.ID); err != nil {
		t.Fatal(err)
	}
	// The answer comes once the firewall passes nothing of the endpoint;
	// its veth, the kernel's slow deletion, goes in the background.
	h := e.handle(e.HostNS)
	defer h.Close()
	if !settle(true, func() bool {
		_, err := h.LinkByName(own.HostInterfaceName)
		return err != nil && e.addrsIn(ns.NetNamespacePath, "eth0") == nil
	}) {
		t.Errorf("after detach the namespace still has eth0 with %v, or the host side %s is still there", e.addrsIn(ns.NetNamespacePath, "eth0"), own.HostInterfaceName)
	}
	if b, err := os.ReadFile(resolv); err != nil || len(b) != 0 {
		t.Errorf("after detach resolv.conf should be empty: %q, %v", b, err)
	}
	own, _ = c.GetEndpoint(ctx, own.ID)
	if own.HostComputeNamespace != "" || own.InterfaceName != "" {
		t.Errorf("detached endpoint still says namespace %q, interface %q", own.HostComputeNamespace, own.InterfaceName)
	}
	// Attach again works, to the same or another namespace.
	if _, err := c.Attach(ctx, hostOnly.Namespace.ID, own.ID); err != nil {
		t.Fatal(err)
	}
	if got := e.addrsIn(hostOnly.Namespace.NetNamespacePath, "eth1"); len(got) != 1 {
		t.Errorf("second endpoint of a namespace: eth1 has %v", got)
	}
}

// A namespace object can wrap an existing namespace given by path (as a
// container runtime's); hostnet attaches into it and never removes it.
func TestWrapExistingNamespace(t *testing.T) {
	e := NewEnv(t)
	c := e.Client()
	path := e.newNS("runtime.ns")
	ns, err := c.CreateNamespace(ctx, &api.Namespace{NetNamespacePath: path})
	if err != nil {
		t.Fatal(err)
	}
	if ns.Managed {
		t.Error("a wrapped namespace is reported as managed")
	}
	ep, err := c.CreateEndpoint(ctx, &api.Endpoint{HostComputeNetwork: "nat", InterfaceName: "net0"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.Attach(ctx, ns.ID, ep.ID); err != nil {
		t.Fatal(err)
	}
	if got := e.addrsIn(path, "net0"); len(got) != 1 {
		t.Errorf("net0 in the wrapped namespace has %v", got)
	}
	if err := c.DeleteNamespace(ctx, ns.ID); err != nil {
		t.Fatal(err)
	}
	if !netns.IsNamespace(path) {
		t.Error("deleting the object removed the runtime's namespace")
	}
	if _, err := c.CreateNamespace(ctx, &api.Namespace{NetNamespacePath: filepath.Join(e.Dir, "resolv.conf")}); api.CodeOf(err) != api.CodeInvalidNamespace {
		t.Errorf("wrapping a plain file: %v, want an invalid-namespace error", err)
	}
}

// The default network avoids the host's own routes and addresses.
func TestDefaultNetworkAvoidsHostRanges(t *testing.T) {
	e := NewTopology(t)
	h := e.handle(e.HostNS)
	up, _ := h.LinkByName(uplinkName)
	_, dst, _ := net.ParseCIDR("172.16.0.0/16")
	if err := h.RouteAdd(&netlink.Route{LinkIndex: up.Attrs().Index, Dst: dst, Gw: net.ParseIP(extAddr)}); err != nil {
		t.Fatal(err)
	}
	a, _ := netlink.ParseAddr("172.17.0.9/24")
	if err := h.AddrAdd(up, a); err != nil {
		t.Fatal(err)
	}
	h.Close()
	e.Start()
	n, err := e.Client().GetNetwork(ctx, "nat")
	if err != nil {
		t.Fatal(err)
	}
	if got := n.Ipams[0].Subnets[0].IpAddressPrefix; got != "172.17.16.0/20" {
		t.Errorf("default subnet %s, want 172.17.16.0/20 (the first /20 of 172.16.0.0/12 clear of 172.16.0.0/16 and 172.17.0.0/24)", got)
	}
}

// --host-netns alone decides what the daemon programs: run from another
// namespace, it leaves that one as it found it (devices, nftables tables,
// forwarding sysctls: compared with what the namespace held before the
// daemon started). The socket is 0600.
func TestHostNetnsFlagProgramsOnlyThatNamespace(t *testing.T) {
	t.Run("fresh namespace", func(t *testing.T) { testHostNetnsOnly(t, "") })
	// The kernel copies the root namespace's ip_forward into every new
	// namespace: on a host with forwarding on (any Docker host) the
	// daemon's namespace starts with 1, which is not the daemon's doing.
	t.Run("forwarding already on", func(t *testing.T) { testHostNetnsOnly(t, "1") })
}

// forwardingSysctls are the sysctls a host's daemon sets in the namespace it
// programs, and must not set anywhere else.
var forwardingSysctls = []string{"net/ipv4/ip_forward", "net/ipv6/conf/all/forwarding", "net/ipv4/conf/all/route_localnet"}

// netnsState describes what hostnetd could change in the namespace at path:
// its devices, nftables tables and forwarding sysctls.
func (e *Env) netnsState(t *testing.T, path string) string {
	t.Helper()
	var b strings.Builder
	h := e.handle(path)
	defer h.Close()
	links, err := h.LinkList()
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range links {
		fmt.Fprintf(&b, "device %s\n", l.Attrs().Name)
	}
	In(t, path, func() error {
		c, err := nftables.New()
		if err != nil {
			return err
		}
		tables, err := c.ListTables()
		if err != nil {
			return err
		}
		for _, tb := range tables {
			fmt.Fprintf(&b, "nftables table %s\n", tb.Name)
		}
		for _, s := range forwardingSysctls {
			v, err := os.ReadFile("/proc/sys/" + s)
			if err != nil {
				return err
			}
			fmt.Fprintf(&b, "%s=%s\n", s, strings.TrimSpace(string(v)))
		}
		return nil
	})
	return b.String()
}

// testHostNetnsOnly runs hostnetd in a namespace of its own (with
// ip_forward set to forward first, unless empty) while it programs the
// host namespace, and checks that its own namespace is as it was.
func testHostNetnsOnly(t *testing.T, forward string) {
	e := NewTopology(t)
	e.DaemonNS = e.newNS("daemon.ns")
	if forward != "" {
		In(t, e.DaemonNS, func() error {
			return os.WriteFile("/proc/sys/net/ipv4/ip_forward", []byte(forward), 0o644)
		})
	}
	before := e.netnsState(t, e.DaemonNS)
	e.Start()
	a := e.AttachNew("nat", "a")
	if got := e.addrsIn(a.Namespace.NetNamespacePath, "eth0"); len(got) != 1 {
		t.Fatalf("endpoint NIC: %v", got)
	}
	if e.linkIndex("hnbr") == 0 {
		t.Error("no bridge in the host namespace")
	}
	if after := e.netnsState(t, e.DaemonNS); after != before {
		t.Errorf("the daemon's own namespace changed:\nbefore the daemon started:\n%s\nwith the daemon running:\n%s", before, after)
	}
	if host := e.netnsState(t, e.HostNS); !strings.Contains(host, "net/ipv4/ip_forward=1") || !strings.Contains(host, "nftables table hostnet") {
		t.Errorf("the host namespace is not programmed:\n%s", host)
	}
	st, err := os.Stat(e.Socket)
	if err != nil || st.Mode().Perm() != 0o600 {
		t.Errorf("socket mode: %v, %v; want 0600", st.Mode(), err)
	}
}
