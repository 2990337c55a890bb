package e2e

import (
	"encoding/json"
	"fmt"
	"net"
	"net/netip"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/hostnet/hostnet/api"
	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

func mapping(proto uint32, external, internal uint16, vip string) api.Policy {
	s := api.PortMappingSettings{Protocol: proto, ExternalPort: external, InternalPort: internal, VIP: vip}
	b, _ := json.Marshal(s)
	return api.Policy{Type: api.PortMapping, Settings: b}
}

// acl builds an ACL policy from its HCN fields.
func acl(action, dir, protocols, local, lports, remote, rports string, priority uint16) api.Policy {
	s := api.ACLSettings{Action: api.FlexString(action), Direction: api.FlexString(dir), Protocols: api.FlexString(protocols),
		LocalAddresses: local, LocalPorts: api.FlexString(lports), RemoteAddresses: remote, RemotePorts: api.FlexString(rports),
		Priority: priority, RuleType: "Switch"}
	b, _ := json.Marshal(s)
	return api.Policy{Type: api.ACL, Settings: b}
}

// setPolicies replaces every policy of the types in ps (or, when ps is
// empty, of type clear) on an endpoint or a network.
func (e *Env) setPolicies(kind, ref string, clear api.PolicyType, ps ...api.Policy) {
	e.t.Helper()
	c := e.Client()
	var current []api.Policy
	if kind == "network" {
		n, err := c.GetNetwork(ctx, ref)
		if err != nil {
			e.t.Fatal(err)
		}
		current = n.Policies
	} else {
		ep, err := c.GetEndpoint(ctx, ref)
		if err != nil {
			e.t.Fatal(err)
		}
		current = ep.Policies
	}
	var old []api.Policy
	for _, p := range current {
		if p.Type == clear {
			old = append(old, p)
		}
	}
	send := func(rt api.RequestType, pol []api.Policy) {
		if len(pol) == 0 {
			return
		}
		b, _ := json.Marshal(api.PolicyRequest{Policies: pol})
		req := &api.ModifyRequest{ResourceType: api.ResourcePolicy, RequestType: rt, Settings: b}
		var err error
		if kind == "network" {
			_, err = c.ModifyNetwork(ctx, ref, req)
		} else {
			_, err = c.ModifyEndpoint(ctx, ref, req)
		}
		if err != nil {
			e.t.Fatalf("%s %s policies of %s %s: %v", rt, clear, kind, ref, err)
		}
	}
	send(api.RequestRemove, old)
	send(api.RequestAdd, ps)
}

// createWith creates and attaches an endpoint with policies and flags.
func (e *Env) createWith(network, name string, flags api.EndpointFlags, ps ...api.Policy) *Attached {
	e.t.Helper()
	c := e.Client()
	ns, err := c.CreateNamespace(ctx, &api.Namespace{})
	if err != nil {
		e.t.Fatal(err)
	}
	ep, err := c.CreateEndpoint(ctx, &api.Endpoint{Name: name, HostComputeNetwork: network, HostComputeNamespace: ns.ID, Policies: ps, Flags: flags})
	if err != nil {
		e.t.Fatal(err)
	}
	return &Attached{Endpoint: ep, Namespace: ns, Addr: netip.MustParseAddr(ep.IpConfigurations[0].IpAddress)}
}

// Published ports, TCP and UDP, from everywhere they must be reachable
// from, and not from where they must not.
func TestPublishedPortReachability(t *testing.T) {
	e := NewEnv(t)
	web := e.createWith("nat", "web", 0,
		mapping(6, 8080, 80, ""), mapping(17, 5353, 53, ""),
		mapping(6, 9000, 90, "127.0.0.1"), mapping(6, 7070, 70, hostAddr))
	peer := e.AttachNew("nat", "peer")
	for _, port := range []string{":80", ":90", ":70", ":81"} {
		Serve(t, web.Namespace.NetNamespacePath, "tcp", port)
	}
	Serve(t, web.Namespace.NetNamespacePath, "udp", ":53")
	// The outside routes the NAT subnet to the host, as a neighbour could.
	ext := e.handle(e.ExtNS)
	_, natNet, _ := net.ParseCIDR("172.16.0.0/12")
	if err := ext.RouteAdd(&netlink.Route{Dst: natNet, Gw: net.ParseIP(hostAddr)}); err != nil {
		t.Fatal(err)
	}
	ext.Close()

	type reach struct {
		name, from, proto, addr string
		want                    bool
	}
	for _, r := range []reach{
		{"outside to the host's address", e.ExtNS, "tcp", hostAddr + ":8080", true},
		{"outside to the host's address (UDP)", e.ExtNS, "udp", hostAddr + ":5353", true},
		{"host via 127.0.0.1", e.HostNS, "tcp", "127.0.0.1:8080", true},
		{"host via 127.0.0.1 (UDP)", e.HostNS, "udp", "127.0.0.1:5353", true},
		{"host via its own address", e.HostNS, "tcp", hostAddr + ":8080", true},
		{"host via its own address (UDP)", e.HostNS, "udp", hostAddr + ":5353", true},
		{"another endpoint", peer.Namespace.NetNamespacePath, "tcp", hostAddr + ":8080", true},
		{"another endpoint (UDP)", peer.Namespace.NetNamespacePath, "udp", hostAddr + ":5353", true},
		{"the endpoint itself (hairpin)", web.Namespace.NetNamespacePath, "tcp", hostAddr + ":8080", true},
		{"the endpoint itself (hairpin, UDP)", web.Namespace.NetNamespacePath, "udp", hostAddr + ":5353", true},
		{"127.0.0.1-bound mapping from the host", e.HostNS, "tcp", "127.0.0.1:9000", true},
		{"127.0.0.1-bound mapping from the outside", e.ExtNS, "tcp", hostAddr + ":9000", false},
		{"127.0.0.1-bound mapping through the host's address", e.HostNS, "tcp", hostAddr + ":9000", false},
		{"VIP-bound mapping on its address", e.ExtNS, "tcp", hostAddr + ":7070", true},
		{"VIP-bound mapping on 127.0.0.1", e.HostNS, "tcp", "127.0.0.1:7070", false},
		{"outside straight to the endpoint's address", e.ExtNS, "tcp", web.Addr.String() + ":81", false},
		{"outside straight to a published endpoint's internal port", e.ExtNS, "tcp", web.Addr.String() + ":80", false},
		{"outside to a port not published", e.ExtNS, "tcp", hostAddr + ":8081", false},
	} {
		var got bool
		if r.proto == "tcp" {
			got = settle(r.want, func() bool { return probeTCP(t, r.from, r.addr) })
		} else {
			got = settle(r.want, func() bool { return probeUDP(t, r.from, r.addr) })
		}
		if got != r.want {
			t.Errorf("%s (%s %s): reached %v, want %v", r.name, r.proto, r.addr, got, r.want)
		}
	}
	// The endpoint sees the outside's own address: no proxy, no SNAT.
	if src, err := Talk(t, e.ExtNS, "tcp", hostAddr+":8080"); err != nil || src.String() != extAddr {
		t.Errorf("the endpoint saw the outside as %s, %v; want %s", src, err, extAddr)
	}
}

// A host port held by a host process or by another mapping is refused with
// 0x803B0013 naming the holder; a published port cannot be bound by a host
// process; removing the mapping frees it and ends the flows through it at
// once.
func TestPublishedPortsAreReserved(t *testing.T) {
	e := NewEnv(t)
	c := e.Client()
	var l net.Listener
	In(t, e.HostNS, func() error {
		var err error
		l, err = net.Listen("tcp", ":6000")
		return err
	})
	defer l.Close()
	_, err := c.CreateEndpoint(ctx, &api.Endpoint{Name: "clash", HostComputeNetwork: "nat", Policies: []api.Policy{mapping(6, 6000, 80, "")}})
	if api.CodeOf(err) != api.CodePortAlreadyExists || !strings.Contains(err.Error(), "6000") || !strings.Contains(err.Error(), fmt.Sprintf("pid %d", os.Getpid())) {
		t.Errorf("a port a host process holds: %v", err)
	}
	if _, err := c.GetEndpoint(ctx, "clash"); !api.IsNotFound(err) {
		t.Errorf("the refused endpoint exists: %v", err)
	}

	web := e.createWith("nat", "web", 0, mapping(6, 8080, 80, ""))
	Serve(t, web.Namespace.NetNamespacePath, "tcp", ":80")
	_, err = c.CreateEndpoint(ctx, &api.Endpoint{Name: "second", HostComputeNetwork: "nat", Policies: []api.Policy{mapping(6, 8080, 81, hostAddr)}})
	if api.CodeOf(err) != api.CodePortAlreadyExists || !strings.Contains(err.Error(), `"web"`) {
		t.Errorf("a port another mapping holds: %v", err)
	}
	In(t, e.HostNS, func() error {
		if l, err := net.Listen("tcp", ":8080"); err == nil {
			l.Close()
			t.Error("a host process could bind a published port")
		}
		return nil
	})
	if !reachTCP(t, e.ExtNS, hostAddr+":8080") {
		t.Fatal("the published port does not work")
	}
	running, err := Dial(t, e.ExtNS, "tcp", hostAddr+":8080", time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer running.Close()
	if _, err := Exchange(running, "before", time.Second); err != nil {
		t.Fatal(err)
	}
	e.setPolicies("endpoint", "web", api.PortMapping)
	if _, err := Exchange(running, "after", time.Second); err == nil {
		t.Error("a flow through the mapping still carries data after the mapping was removed")
	}
	if probeTCP(t, e.ExtNS, hostAddr+":8080") {
		t.Error("the port still reaches the endpoint after its mapping was removed")
	}
	In(t, e.HostNS, func() error {
		l, err := net.Listen("tcp", ":8080")
		if err != nil {
			t.Errorf("the port is still held after its mapping was removed: %v", err)
			return nil
		}
		return l.Close()
	})
}

// aclEnv is a network with a target endpoint and two clients, servers on
// both sides, for probing ACLs with real packets.
type aclEnv struct {
	*Env
	target, c1, c2 *Attached
}

func newACLEnv(t *testing.T) *aclEnv {
	e := NewEnv(t, "--default-network=false")
	if _, err := e.Client().CreateNetwork(ctx, natNetwork("acl", "10.60.0.0/24")); err != nil {
		t.Fatal(err)
	}
	a := &aclEnv{Env: e, target: e.AttachNew("acl", "target"), c1: e.AttachNew("acl", "c1"), c2: e.AttachNew("acl", "c2")}
	for _, ns := range []*Attached{a.target, a.c1} {
		for _, port := range []string{":80", ":81"} {
			Serve(t, ns.Namespace.NetNamespacePath, "tcp", port)
		}
		for _, port := range []string{":53", ":54"} {
			Serve(t, ns.Namespace.NetNamespacePath, "udp", port)
		}
	}
	return a
}

// probe sends one kind of packet: "tcp80", "udp53", "icmp", "gre" go from a
// client to the target; "out-..." from the target to c1.
func (a *aclEnv) probe(kind string, from *Attached) bool {
	t := a.t
	t.Helper()
	target, client := a.target, from
	if out, ok := strings.CutPrefix(kind, "out-"); ok {
		kind, target, client = out, a.c1, a.target
	}
	switch {
	case strings.HasPrefix(kind, "tcp"):
		return probeTCP(t, client.Namespace.NetNamespacePath, target.Addr.String()+":"+kind[3:])
	case strings.HasPrefix(kind, "udp"):
		return probeUDP(t, client.Namespace.NetNamespacePath, target.Addr.String()+":"+kind[3:])
	case kind == "icmp":
		return probePing(t, client.Namespace.NetNamespacePath, target.Addr)
	case kind == "gre":
		return probeProto(t, client.Namespace.NetNamespacePath, target.Namespace.NetNamespacePath, 47, client.Addr, target.Addr)
	}
	t.Fatalf("unknown probe %q", kind)
	return false
}

// The ACL truth table: protocols, directions, addresses, ports, priorities
// and ties, the firewall defaults and default deny, network ACLs merged
// with the endpoint's; every case a real packet.
func TestACLTruthTable(t *testing.T) {
	a := newACLEnv(t)
	c1, c2 := a.c1.Addr.String(), a.c2.Addr.String()
	type check struct {
		probe string
		from  string // "c1" (default) or "c2"
		want  bool
	}
	configs := []struct {
		name    string
		acls    []api.Policy
		network []api.Policy
		checks  []check
	}{
		{"no ACL: the firewall defaults", nil, nil, []check{
			{"tcp80", "", true}, {"tcp81", "", true}, {"udp53", "", true}, {"icmp", "", true}, {"gre", "", false},
			{"out-tcp80", "", true}, {"out-udp53", "", true}}},
		{"one Allow In rule: default deny both ways", []api.Policy{acl("Allow", "In", "6", "", "80", "", "", 100)}, nil, []check{
			{"tcp80", "", true}, {"tcp81", "", false}, {"udp53", "", false}, {"icmp", "", false}, {"gre", "", false},
			{"out-tcp80", "", false}, {"out-udp53", "", false}}},
		{"lower priority wins", []api.Policy{acl("Allow", "In", "6", "", "", "", "", 100), acl("Block", "In", "6", "", "80", "", "", 50)}, nil, []check{
			{"tcp80", "", false}, {"tcp81", "", true}}},
		{"higher priority number loses", []api.Policy{acl("Allow", "In", "6", "", "80", "", "", 50), acl("Block", "In", "6", "", "", "", "", 100)}, nil, []check{
			{"tcp80", "", true}, {"tcp81", "", false}}},
		{"on a tie Block wins", []api.Policy{acl("Allow", "In", "6", "", "80,81", "", "", 100), acl("Block", "In", "6", "", "80", "", "", 100)}, nil, []check{
			{"tcp80", "", false}, {"tcp81", "", true}}},
		{"remote address", []api.Policy{acl("Allow", "In", "6,17", "", "", c1, "", 100)}, nil, []check{
			{"tcp80", "c1", true}, {"tcp80", "c2", false}, {"udp53", "c1", true}, {"udp53", "c2", false}}},
		{"remote prefix and port range", []api.Policy{acl("Allow", "In", "17", "", "53-54", "10.60.0.0/24", "", 100)}, nil, []check{
			{"udp53", "", true}, {"udp54", "", true}, {"tcp80", "", false}}},
		{"local address", []api.Policy{acl("Allow", "In", "6", a.target.Addr.String(), "", "", "", 100)}, nil, []check{
			{"tcp80", "", true}}},
		{"local address that is not the endpoint's", []api.Policy{acl("Allow", "In", "6", "10.60.0.250", "", "", "", 100)}, nil, []check{
			{"tcp80", "", false}}},
		{"Out rule by remote port; replies pass", []api.Policy{acl("Allow", "Out", "6", "", "", "", "80", 100)}, nil, []check{
			{"out-tcp80", "", true}, {"out-tcp81", "", false}, {"out-udp53", "", false}, {"tcp80", "", false}}},
		{"a raw IP protocol (GRE)", []api.Policy{acl("Allow", "In", "47", "", "", "", "", 100)}, nil, []check{
			{"gre", "", true}, {"tcp80", "", false}, {"udp53", "", false}}},
		{"ICMP", []api.Policy{acl("Allow", "In", "1", "", "", "", "", 100)}, nil, []check{
			{"icmp", "", true}, {"tcp80", "", false}}},
		{"Block by remote address before Allow any", []api.Policy{acl("Block", "In", "", "", "", c2, "", 10), acl("Allow", "In", "", "", "", "", "", 100)}, nil, []check{
			{"tcp80", "c1", true}, {"tcp80", "c2", false}, {"udp53", "c2", false}}},
		// Network ACLs apply to every endpoint of the network, the
		// clients too: they need an Out rule to send at all.
		{"network ACL merged by priority", []api.Policy{acl("Allow", "In", "", "", "", "", "", 100)},
			[]api.Policy{acl("Block", "In", "6", "", "80", "", "", 10), acl("Allow", "Out", "", "", "", "", "", 1000)}, []check{
				{"tcp80", "", false}, {"tcp81", "", true}, {"udp53", "", true}}},
		{"network ACL alone makes default deny", nil,
			[]api.Policy{acl("Allow", "In", "6", "", "81", "", "", 10), acl("Allow", "Out", "", "", "", "", "", 1000)}, []check{
				{"tcp81", "", true}, {"tcp80", "", false}, {"out-tcp80", "", false}}},
	}
	n := 0
	for _, cfg := range configs {
		var network []api.Policy
		for _, p := range cfg.network {
			p.Type = api.NetworkACL
			network = append(network, p)
		}
		a.setPolicies("network", "acl", api.NetworkACL, network...)
		a.setPolicies("endpoint", "target", api.ACL, cfg.acls...)
		for _, c := range cfg.checks {
			n++
			from := a.c1
			if c.from == "c2" {
				from = a.c2
			}
			if got := settle(c.want, func() bool { return a.probe(c.probe, from) }); got != c.want {
				t.Errorf("%s: %s from %s: got through %v, want %v", cfg.name, c.probe, from.Endpoint.Name, got, c.want)
			}
		}
	}
	if n < 30 {
		t.Errorf("only %d cases", n)
	}
}

// A live change takes effect at once, for established flows too: a running
// TCP flow stops when a Block ACL matching it is added; once the ACL is
// removed, a new flow passes.
func TestACLChangeStopsARunningFlow(t *testing.T) {
	a := newACLEnv(t)
	conn, err := Dial(t, a.c1.Namespace.NetNamespacePath, "tcp", a.target.Addr.String()+":80", time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	if _, err := Exchange(conn, "before", time.Second); err != nil {
		t.Fatal(err)
	}
	a.setPolicies("endpoint", "target", api.ACL, acl("Block", "In", "6", "", "80", "", "", 10), acl("Allow", "In", "", "", "", "", "", 100), acl("Allow", "Out", "", "", "", "", "", 100))
	if _, err := Exchange(conn, "after", time.Second); err == nil {
		t.Error("the running flow still carries data after a Block ACL matching it was added")
	}
	if !reachTCP(t, a.c1.Namespace.NetNamespacePath, a.target.Addr.String()+":81") {
		t.Error("a flow the new ACL allows does not pass")
	}
	a.setPolicies("endpoint", "target", api.ACL)
	if !reachTCP(t, a.c1.Namespace.NetNamespacePath, a.target.Addr.String()+":80") {
		t.Error("a new flow does not pass once the ACL is removed")
	}
}

// An endpoint cannot send from another IP or MAC, nor claim another's
// address in ARP: none of it reaches another endpoint or the host.
func TestAntiSpoofing(t *testing.T) {
	e := NewEnv(t)
	a, b := e.AttachNew("nat", "a"), e.AttachNew("nat", "b")
	recv := func() func() bool {
		var pc net.PacketConn
		In(t, b.Namespace.NetNamespacePath, func() error {
			var err error
			pc, err = net.ListenPacket("udp", ":7777")
			return err
		})
		return func() bool {
			defer pc.Close()
			_ = pc.SetReadDeadline(time.Now().Add(700 * time.Millisecond))
			buf := make([]byte, 100)
			_, _, err := pc.ReadFrom(buf)
			return err == nil
		}
	}
	aMAC, bMAC := macOf(t, a.Namespace.NetNamespacePath, "eth0"), macOf(t, b.Namespace.NetNamespacePath, "eth0")
	send := func(srcMAC net.HardwareAddr, src netip.Addr) {
		sendFrame(t, a.Namespace.NetNamespacePath, "eth0", frame{dstMAC: bMAC, srcMAC: srcMAC, etherType: 0x0800,
			payload: udpPacket(src, b.Addr, 4000, 7777, []byte("spoof?"))})
	}
	got := recv()
	send(aMAC, a.Addr)
	if !got() {
		t.Fatal("control: a genuine raw frame from a did not reach b")
	}
	got = recv()
	send(aMAC, netip.MustParseAddr("172.16.0.99"))
	if got() {
		t.Error("a packet with a forged source IP reached b")
	}
	got = recv()
	send(net.HardwareAddr{0x02, 0xde, 0xad, 0xbe, 0xef, 0x01}, a.Addr)
	if got() {
		t.Error("a frame with a forged source MAC reached b")
	}

	// A forged ARP reply telling the host that b's address is at a's MAC.
	n, _ := e.Client().GetNetwork(ctx, "nat")
	gw := netip.MustParsePrefix(n.Ipams[0].Subnets[0].IpAddressPrefix).Addr().Next()
	h := e.handle(e.HostNS)
	defer h.Close()
	br, _ := h.LinkByName(n.BridgeName)
	brMAC := br.Attrs().HardwareAddr
	if !reachTCP(t, e.HostNS, b.Addr.String()+":1") {
		// Nothing listens: the point is only that the host resolves b.
		_ = 0
	}
	sendFrame(t, a.Namespace.NetNamespacePath, "eth0",
		frame{dstMAC: brMAC, srcMAC: aMAC, etherType: 0x0806, payload: arpReply(aMAC, b.Addr, brMAC, gw)},
		frame{dstMAC: net.HardwareAddr{0xff, 0xff, 0xff, 0xff, 0xff, 0xff}, srcMAC: aMAC, etherType: 0x0806, payload: arpReply(aMAC, b.Addr, bMAC, b.Addr)})
	time.Sleep(200 * time.Millisecond)
	neighs, _ := h.NeighList(br.Attrs().Index, unix.AF_INET)
	for _, nb := range neighs {
		if nb.IP.String() == b.Addr.String() && nb.HardwareAddr.String() == aMAC.String() {
			t.Errorf("the host believes a forged ARP reply: %s is at %s", b.Addr, aMAC)
		}
	}
	bh := e.handle(b.Namespace.NetNamespacePath)
	defer bh.Close()
	bNeighs, _ := bh.NeighList(0, unix.AF_INET)
	for _, nb := range bNeighs {
		if nb.HardwareAddr.String() == aMAC.String() && nb.IP.String() != a.Addr.String() {
			t.Errorf("b believes a forged ARP reply: %s is at %s", nb.IP, aMAC)
		}
	}
	// Traffic between a and b still works.
	Serve(t, b.Namespace.NetNamespacePath, "tcp", ":80")
	if !reachTCP(t, a.Namespace.NetNamespacePath, b.Addr.String()+":80") {
		t.Error("after the spoofing attempts a cannot reach b")
	}
}

// OutBoundNAT exceptions: traffic to an exception arrives with the
// endpoint's own address, other traffic with the host's.
func TestOutboundNATExceptions(t *testing.T) {
	e := NewEnv(t)
	ext := e.handle(e.ExtNS)
	l, _ := ext.LinkByName(extLinkName)
	second, _ := netlink.ParseAddr("198.51.100.77/24")
	if err := ext.AddrAdd(l, second); err != nil {
		t.Fatal(err)
	}
	_, natNet, _ := net.ParseCIDR("172.16.0.0/12")
	if err := ext.RouteAdd(&netlink.Route{Dst: natNet, Gw: net.ParseIP(hostAddr)}); err != nil {
		t.Fatal(err)
	}
	ext.Close()
	Serve(t, e.ExtNS, "tcp", extAddr+":7777")
	Serve(t, e.ExtNS, "tcp", "198.51.100.77:7777")
	b, _ := json.Marshal(api.OutboundNATSettings{Exceptions: []string{extAddr + "/32"}})
	a := e.createWith("nat", "a", 0, api.Policy{Type: api.OutBoundNAT, Settings: b})
	if src, err := Talk(t, a.Namespace.NetNamespacePath, "tcp", extAddr+":7777"); err != nil || src != a.Addr {
		t.Errorf("to the exception: seen as %s, %v; want the endpoint's own %s", src, err, a.Addr)
	}
	if src, err := Talk(t, a.Namespace.NetNamespacePath, "tcp", "198.51.100.77:7777"); err != nil || src.String() != hostAddr {
		t.Errorf("elsewhere: seen as %s, %v; want the host's %s", src, err, hostAddr)
	}
}

// DisableICC cuts an endpoint off from its network's other endpoints; it
// still reaches the outside and is reached through its published ports.
func TestDisableICC(t *testing.T) {
	e := NewEnv(t)
	Serve(t, e.ExtNS, "tcp", extAddr+":7777")
	lonely := e.createWith("nat", "lonely", api.EndpointDisableICC, mapping(6, 8080, 80, ""))
	peer := e.AttachNew("nat", "peer")
	Serve(t, lonely.Namespace.NetNamespacePath, "tcp", ":80")
	Serve(t, peer.Namespace.NetNamespacePath, "tcp", ":80")
	if probeTCP(t, peer.Namespace.NetNamespacePath, lonely.Addr.String()+":80") {
		t.Error("a peer reached the DisableICC endpoint directly")
	}
	if probeTCP(t, lonely.Namespace.NetNamespacePath, peer.Addr.String()+":80") {
		t.Error("the DisableICC endpoint reached a peer")
	}
	if !reachTCP(t, lonely.Namespace.NetNamespacePath, extAddr+":7777") {
		t.Error("the DisableICC endpoint cannot reach the outside")
	}
	if !reachTCP(t, peer.Namespace.NetNamespacePath, hostAddr+":8080") {
		t.Error("a peer cannot reach the DisableICC endpoint through its published port")
	}
}
