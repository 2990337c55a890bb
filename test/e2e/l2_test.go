package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/netip"
	"os"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hostnet/hostnet/api"
	"github.com/hostnet/hostnet/internal/dataplane/netns"
	"github.com/hostnet/hostnet/internal/testutil/lab"
	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// The L2 lab: a simulated physical segment. A "switch" namespace holds a
// bridge (sw0); plugged into it are two hostnet hosts (each its own
// daemon, each with an uplink seg0) and a router (the "external" host,
// x), the gateway of the segment's two subnets. Addresses are of
// TEST-NET-1 and the benchmarking range, inside the lab only.
const (
	segA       = "192.0.2.0/24"  // the segment's first subnet
	segB       = "198.18.0.0/24" // its second, on the same wire
	routerA    = "192.0.2.1"
	routerB    = "198.18.0.1"
	segUplink  = "seg0"
	switchName = "sw0"
)

// segment is the lab: the switch and router namespaces and the hosts.
type segment struct {
	t      *testing.T
	sw     string // the switch namespace
	router string // the external host and router
	hosts  []*segHost
}

// segHost is a hostnet host on the segment.
type segHost struct {
	*Env
	port string // its port on the switch
	mac  net.HardwareAddr
	addr netip.Addr // its address in segA
}

// newSegment builds the lab with n hostnet hosts, their daemons started
// with flags; host i has 192.0.2.11+i (and host 0 also 198.18.0.11) on its
// uplink.
func newSegment(t *testing.T, n int, flags ...string) *segment {
	t.Helper()
	s := &segment{t: t}
	for i := 0; i < n; i++ {
		h := &segHost{Env: NewEnv(t, append([]string{"--repair-interval=1s"}, flags...)...), port: fmt.Sprintf("swh%d", i)}
		if i == 0 {
			s.sw = h.newNS("switch.ns")
			s.router = h.newNS("router.ns")
			h0 := s.handle(s.sw)
			br := &netlink.Bridge{LinkAttrs: netlink.LinkAttrs{Name: switchName}}
			if err := h0.LinkAdd(br); err != nil {
				t.Fatal(err)
			}
			if err := h0.LinkSetUp(br); err != nil {
				t.Fatal(err)
			}
			s.plug(s.router, "eth0", "swx", routerA+"/24", routerB+"/24")
			In(t, s.router, func() error { return os.WriteFile("/proc/sys/net/ipv4/ip_forward", []byte("1"), 0o644) })
		}
		h.addr = netip.MustParseAddr(fmt.Sprintf("192.0.2.%d", 11+i))
		addrs := []string{h.addr.String() + "/24"}
		if i == 0 {
			addrs = append(addrs, "198.18.0.11/24")
		}
		s.plug(h.HostNS, segUplink, h.port, addrs...)
		h.mac = macOf(t, h.HostNS, segUplink)
		s.hosts = append(s.hosts, h)
	}
	return s
}

func (s *segment) handle(path string) *netlink.Handle {
	s.t.Helper()
	h, err := lab.Handle(path)
	if err != nil {
		s.t.Fatal(err)
	}
	s.t.Cleanup(h.Close)
	return h
}

func mustNS(t *testing.T, path string) netns.Handle {
	t.Helper()
	h, err := netns.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { h.Close() })
	return h
}

// plug joins the namespace at path to the switch: device name there, with
// addrs, and port on the switch's bridge.
func (s *segment) plug(path, name, port string, addrs ...string) {
	s.t.Helper()
	sw := s.handle(s.sw)
	target := mustNS(s.t, path)
	if err := sw.LinkAdd(&netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: port}, PeerName: name, PeerNamespace: netlink.NsFd(int(target))}); err != nil {
		s.t.Fatal(err)
	}
	br, err := sw.LinkByName(switchName)
	if err != nil {
		s.t.Fatal(err)
	}
	p, err := sw.LinkByName(port)
	if err != nil {
		s.t.Fatal(err)
	}
	if err := sw.LinkSetMaster(p, br); err != nil {
		s.t.Fatal(err)
	}
	if err := sw.LinkSetUp(p); err != nil {
		s.t.Fatal(err)
	}
	h := s.handle(path)
	l, err := h.LinkByName(name)
	if err != nil {
		s.t.Fatal(err)
	}
	for _, a := range addrs {
		addr, err := netlink.ParseAddr(a)
		if err != nil {
			s.t.Fatal(err)
		}
		if err := h.AddrAdd(l, addr); err != nil {
			s.t.Fatal(err)
		}
	}
	for _, up := range []netlink.Link{l, &netlink.Device{LinkAttrs: netlink.LinkAttrs{Index: 1}}} {
		if err := h.LinkSetUp(up); err != nil {
			s.t.Fatal(err)
		}
	}
	// A veth's carrier comes a moment after both sides are up.
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		if l, err := h.LinkByName(name); err == nil && l.Attrs().OperState == netlink.OperUp {
			return
		}
		if time.Now().After(deadline) {
			s.t.Fatalf("%s in %s has no carrier", name, path)
		}
	}
}

// hairpin lets the switch send a frame back out of the port it came in by
// (reflective relay, what an L2Tunnel host's upstream does).
func (s *segment) hairpin(port string) {
	s.t.Helper()
	sw := s.handle(s.sw)
	p, err := sw.LinkByName(port)
	if err != nil {
		s.t.Fatal(err)
	}
	if err := sw.LinkSetHairpin(p, true); err != nil {
		s.t.Fatal(err)
	}
}

// l2Network creates a network of typ on host h's uplink: subnet, with
// endpoints from pool and gateway gw.
func (h *segHost) l2Network(t *testing.T, typ api.NetworkType, name, subnet, pool, gw string, extra ...api.Policy) *api.Network {
	t.Helper()
	settings, _ := json.Marshal(api.NetAdapterNameSettings{NetworkAdapterName: segUplink})
	n := &api.Network{Name: name, Type: typ,
		Ipams: []api.Ipam{{Type: "Static", Subnets: []api.Subnet{{IpAddressPrefix: subnet, IpRange: pool,
			Routes: []api.Route{{DestinationPrefix: "0.0.0.0/0", NextHop: gw}}}}}},
		Policies: append([]api.Policy{{Type: api.NetAdapterName, Settings: settings}}, extra...)}
	got, err := h.Client().CreateNetwork(context.Background(), n)
	if err != nil {
		t.Fatalf("create %s network %s: %v", typ, name, err)
	}
	return got
}

// capture records the frames a switch port receives from its host (not
// those the switch sends it) until stop is called.
type capture struct {
	mu     sync.Mutex
	frames []captured
	stop   func()
}

type captured struct {
	src, dst  net.HardwareAddr
	etherType uint16
	srcIP     netip.Addr // IP source, or ARP sender address
}

func (s *segment) capture(port string) *capture {
	s.t.Helper()
	c := &capture{}
	var fd int
	In(s.t, s.sw, func() error {
		ifi, err := net.InterfaceByName(port)
		if err != nil {
			return err
		}
		fd, err = unix.Socket(unix.AF_PACKET, unix.SOCK_RAW|unix.SOCK_CLOEXEC, int(htons(unix.ETH_P_ALL)))
		if err != nil {
			return err
		}
		tv := unix.NsecToTimeval(int64(200 * time.Millisecond))
		_ = unix.SetsockoptTimeval(fd, unix.SOL_SOCKET, unix.SO_RCVTIMEO, &tv)
		return unix.Bind(fd, &unix.SockaddrLinklayer{Protocol: htons(unix.ETH_P_ALL), Ifindex: ifi.Index})
	})
	done := make(chan struct{})
	stopped := make(chan struct{})
	go func() {
		defer close(stopped)
		buf := make([]byte, 2048)
		for {
			select {
			case <-done:
				return
			default:
			}
			n, from, err := unix.Recvfrom(fd, buf, 0)
			if err != nil || n < 14 {
				continue
			}
			if ll, ok := from.(*unix.SockaddrLinklayer); ok && ll.Pkttype == unix.PACKET_OUTGOING {
				continue
			}
			f := captured{src: append(net.HardwareAddr(nil), buf[6:12]...), dst: append(net.HardwareAddr(nil), buf[0:6]...),
				etherType: uint16(buf[12])<<8 | uint16(buf[13])}
			switch {
			case f.etherType == 0x0800 && n >= 34:
				f.srcIP = netip.AddrFrom4([4]byte(buf[26:30]))
			case f.etherType == 0x0806 && n >= 42:
				f.srcIP = netip.AddrFrom4([4]byte(buf[28:32]))
			case f.etherType == 0x86dd && n >= 54:
				f.srcIP = netip.AddrFrom16([16]byte(buf[22:38]))
			}
			c.mu.Lock()
			c.frames = append(c.frames, f)
			c.mu.Unlock()
		}
	}()
	var once sync.Once
	c.stop = func() {
		once.Do(func() {
			close(done)
			<-stopped
			unix.Close(fd)
		})
	}
	s.t.Cleanup(c.stop)
	return c
}

// sources returns the source MACs seen for frames from each IP source
// address (IP packets and ARP), after stopping the capture.
func (c *capture) sources() map[netip.Addr]map[string]bool {
	c.stop()
	c.mu.Lock()
	defer c.mu.Unlock()
	out := map[netip.Addr]map[string]bool{}
	for _, f := range c.frames {
		if !f.srcIP.IsValid() {
			continue
		}
		if out[f.srcIP] == nil {
			out[f.srcIP] = map[string]bool{}
		}
		out[f.srcIP][f.src.String()] = true
	}
	return out
}

// between reports whether a frame from MAC a to MAC b was seen.
func (c *capture) between(a, b net.HardwareAddr) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, f := range c.frames {
		if f.src.String() == a.String() && f.dst.String() == b.String() {
			return true
		}
	}
	return false
}

func htons(v uint16) uint16 { return v<<8 | v>>8 }

// l2Endpoint is an endpoint attached to a fresh namespace, as seen by the
// matrix.
type l2Endpoint struct {
	*Attached
	mac net.HardwareAddr
}

func attachL2(t *testing.T, h *segHost, network, name string) l2Endpoint {
	t.Helper()
	a := h.AttachNew(network, name)
	mac, err := net.ParseMAC(a.Endpoint.MacAddress)
	if err != nil {
		t.Fatalf("endpoint %s: MAC %q: %v", name, a.Endpoint.MacAddress, err)
	}
	Serve(t, a.Namespace.NetNamespacePath, "tcp", ":7000")
	return l2Endpoint{Attached: a, mac: mac}
}

// matrix runs the connectivity table: each row a pair (from, to) that
// must (or must not) connect over TCP; it prints the table and fails on
// any cell that is not as wanted.
type matrixRow struct {
	from, to string // row and column labels
	path     string // the sender's namespace
	addr     netip.Addr
	want     bool
}

func runMatrix(t *testing.T, title string, rows []matrixRow) {
	t.Helper()
	var b strings.Builder
	fmt.Fprintf(&b, "%s:\n", title)
	failed := false
	for _, r := range rows {
		got := settle(r.want, func() bool { return probeTCP(t, r.path, netip.AddrPortFrom(r.addr, 7000).String()) })
		mark := "ok"
		if got != r.want {
			mark, failed = "WRONG", true
		}
		word := map[bool]string{true: "connects", false: "blocked"}[got]
		fmt.Fprintf(&b, "  %-34s -> %-34s %-9s %s\n", r.from, r.to, word, mark)
	}
	t.Log(b.String())
	if failed {
		t.Errorf("connectivity is not as wanted:\n%s", b.String())
	}
}

// sortedMACs lists a set of MACs.
func sortedMACs(m map[string]bool) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

// serveHost serves TCP port 7000 in a namespace of the lab that is not an
// endpoint's (a host, the router).
func serveHost(t *testing.T, path string) { t.Helper(); Serve(t, path, "tcp", ":7000") }

// l2Lab is a segment with two hosts, two networks of one type on the
// first (subnets A and B), one on the second (subnet A), an endpoint on
// each and a second one on the first network, servers everywhere, and a
// capture of what the first host puts on the wire.
type l2Lab struct {
	seg            *segment
	h1, h2         *segHost
	a1, a2, b1, c1 l2Endpoint
	wire           *capture
}

func newL2Lab(t *testing.T, typ api.NetworkType, beforeNetworks func(*segment)) *l2Lab {
	t.Helper()
	seg := newSegment(t, 2)
	if beforeNetworks != nil {
		beforeNetworks(seg)
	}
	l := &l2Lab{seg: seg, h1: seg.hosts[0], h2: seg.hosts[1]}
	netA := l.h1.l2Network(t, typ, "seg-a", segA, "192.0.2.128/26", routerA)
	netB := l.h1.l2Network(t, typ, "seg-b", segB, "198.18.0.128/26", routerB)
	netC := l.h2.l2Network(t, typ, "seg-a", segA, "192.0.2.192/26", routerA)
	l.wire = seg.capture(l.h1.port)
	l.a1 = attachL2(t, l.h1, netA.ID, "a1")
	l.a2 = attachL2(t, l.h1, netA.ID, "a2")
	l.b1 = attachL2(t, l.h1, netB.ID, "b1")
	l.c1 = attachL2(t, l.h2, netC.ID, "c1")
	serveHost(t, seg.router)
	serveHost(t, l.h1.HostNS)
	return l
}

// rows is the seed's connectivity table for one driver, from endpoint a1
// of the first host (and towards it).
func (l *l2Lab) rows() []matrixRow {
	ep := func(e l2Endpoint) string { return e.Namespace.NetNamespacePath }
	router := netip.MustParseAddr(routerA)
	return []matrixRow{
		{"a1 (host 1, subnet A)", "a2 (same host, same subnet)", ep(l.a1), l.a2.Addr, true},
		{"a1 (host 1, subnet A)", "b1 (same host, other subnet)", ep(l.a1), l.b1.Addr, true},
		{"a1 (host 1, subnet A)", "c1 (other host, subnet A)", ep(l.a1), l.c1.Addr, true},
		{"c1 (other host, subnet A)", "a1 (host 1, subnet A)", ep(l.c1), l.a1.Addr, true},
		{"a1 (host 1, subnet A)", "external (the router)", ep(l.a1), router, true},
		{"b1 (host 1, subnet B)", "external (the router)", ep(l.b1), netip.MustParseAddr(routerB), true},
		{"external (the router)", "a1 (host 1, subnet A)", l.seg.router, l.a1.Addr, true},
		{"host 1", "a1 (its endpoint)", l.h1.HostNS, l.a1.Addr, true},
		{"a1 (host 1, subnet A)", "host 1", ep(l.a1), l.h1.addr, true},
	}
}

// aclBlocks gives a1 an ACL that blocks TCP port 7000 from the address
// remote (the namespace at from): from is cut off, a2 still connects; the
// ACL removed, from connects again.
func (l *l2Lab) aclBlocks(t *testing.T, from string, remote netip.Addr) {
	t.Helper()
	// Once an endpoint has a rule, what no rule allows is denied (as on
	// Windows): the block comes with rules that allow the rest.
	acls := []string{"--acl", fmt.Sprintf("block in proto tcp lport 7000 remote %s priority 100", remote),
		"--acl", "allow in priority 1000", "--acl", "allow out priority 1000"}
	to := netip.AddrPortFrom(l.a1.Addr, 7000).String()
	l.h1.MustCLI(append([]string{"endpoint", "policy", "add", "a1"}, acls...)...)
	if settle(false, func() bool { return probeTCP(t, from, to) }) {
		t.Errorf("an ACL blocks %s from a1, but it connects", remote)
	}
	if !reachTCP(t, l.a2.Namespace.NetNamespacePath, to) {
		t.Error("a2 no longer reaches a1 under an ACL against another address")
	}
	l.h1.MustCLI(append([]string{"endpoint", "policy", "rm", "a1"}, acls...)...)
	if !reachTCP(t, from, to) {
		t.Errorf("the ACL removed, %s still does not reach a1", remote)
	}
}

// restartKeepsTraffic restarts host 1's daemon, gently then killed,
// while a TCP connection from the router to a1 is open: the connection
// carries on across both, and a1 still reaches the router.
func (l *l2Lab) restartKeepsTraffic(t *testing.T) {
	t.Helper()
	c, err := Dial(t, l.seg.router, "tcp", netip.AddrPortFrom(l.a1.Addr, 7000).String(), 5*time.Second)
	if err != nil {
		t.Fatalf("dial a1 from the router: %v", err)
	}
	defer c.Close()
	for _, kill := range []bool{false, true} {
		l.h1.Restart(kill)
		if _, err := Exchange(c, "still there", 5*time.Second); err != nil {
			t.Errorf("the router's connection to a1 broke across a restart (killed: %t): %v", kill, err)
		}
	}
	if !reachTCP(t, l.a1.Namespace.NetNamespacePath, netip.AddrPortFrom(netip.MustParseAddr(routerA), 7000).String()) {
		t.Error("a1 no longer reaches the router after the restarts")
	}
}

// repairsRoute deletes host 1's route to a1 and waits for the daemon to
// put it back.
func (l *l2Lab) repairsRoute(t *testing.T) {
	t.Helper()
	h := l.seg.handle(l.h1.HostNS)
	dst := &net.IPNet{IP: l.a1.Addr.AsSlice(), Mask: net.CIDRMask(32, 32)}
	routes, err := h.RouteListFiltered(netlink.FAMILY_V4, &netlink.Route{Dst: dst}, netlink.RT_FILTER_DST)
	if err != nil || len(routes) != 1 {
		t.Fatalf("host 1's route to a1: %v %v", routes, err)
	}
	if err := h.RouteDel(&routes[0]); err != nil {
		t.Fatal(err)
	}
	back := settle(true, func() bool {
		rs, _ := h.RouteListFiltered(netlink.FAMILY_V4, &netlink.Route{Dst: dst}, netlink.RT_FILTER_DST)
		return len(rs) == 1
	})
	if !back {
		t.Error("host 1's route to a1 was not repaired")
	}
}

// TestL2BridgeOnASegment: endpoints of L2Bridge networks are in the
// segment's subnets; every row of the seed's table connects; on the wire
// every frame of the host's carries the host's MAC, never an endpoint's;
// two endpoints of one network and host talk without the wire.
func TestL2BridgeOnASegment(t *testing.T) {
	l := newL2Lab(t, api.L2Bridge, nil)
	runMatrix(t, "L2Bridge", l.rows())
	seen := l.wire.sources()
	for _, e := range []l2Endpoint{l.a1, l.b1} {
		macs := seen[e.Addr]
		if len(macs) == 0 {
			t.Errorf("no frame of %s (%s) seen on the wire", e.Endpoint.Name, e.Addr)
		}
		if len(macs) != 1 || !macs[l.h1.mac.String()] {
			t.Errorf("frames of %s (%s) left host 1 with source MACs %v, want only the host's %s", e.Endpoint.Name, e.Addr, sortedMACs(macs), l.h1.mac)
		}
	}
	for _, e := range []l2Endpoint{l.a1, l.a2, l.b1} {
		for ip, macs := range seen {
			if macs[e.mac.String()] {
				t.Errorf("endpoint %s's own MAC %s reached the wire (frames from %s)", e.Endpoint.Name, e.mac, ip)
			}
		}
	}
	if l.wire.between(l.h1.mac, l.h1.mac) {
		t.Error("host 1 sent a frame to itself over the wire")
	}
	l.aclBlocks(t, l.seg.router, netip.MustParseAddr(routerA))
	l.restartKeepsTraffic(t)
	l.repairsRoute(t)
}

// TestTransparentOnASegment: endpoints of Transparent networks are on the
// segment with their own MACs; every row connects, the host reaches its
// endpoints (and they it) through its shim.
func TestTransparentOnASegment(t *testing.T) {
	l := newL2Lab(t, api.Transparent, nil)
	runMatrix(t, "Transparent", l.rows())
	seen := l.wire.sources()
	for _, e := range []l2Endpoint{l.a1, l.b1} {
		macs := seen[e.Addr]
		if !macs[e.mac.String()] || macs[l.h1.mac.String()] {
			t.Errorf("frames of %s (%s) left with source MACs %v, want its own %s and never the host's %s", e.Endpoint.Name, e.Addr, sortedMACs(macs), e.mac, l.h1.mac)
		}
	}
	l.aclBlocks(t, l.h1.HostNS, l.h1.addr)
	l.restartKeepsTraffic(t)
	l.repairsRoute(t)
}

// TestL2TunnelOnASegment: every frame of an L2Tunnel endpoint goes to the
// switch, even to an endpoint of the same host (the switch sends it
// back); every row connects through it.
func TestL2TunnelOnASegment(t *testing.T) {
	var port string
	l := newL2Lab(t, api.L2Tunnel, func(s *segment) {
		port = "swh0"
		s.hairpin(port)
	})
	runMatrix(t, "L2Tunnel", l.rows())
	l.wire.stop()
	if !l.wire.between(l.a1.mac, l.a2.mac) {
		t.Errorf("no frame from a1 (%s) to a2 (%s) passed the switch port %s: their traffic stayed inside the host", l.a1.mac, l.a2.mac, port)
	}
	l.restartKeepsTraffic(t)
}

// hostLinks lists the devices of the namespace at path.
func hostLinks(t *testing.T, path string) []string {
	t.Helper()
	h, err := lab.Handle(path)
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close()
	links, err := h.LinkList()
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, l := range links {
		out = append(out, l.Attrs().Name)
	}
	sort.Strings(out)
	return out
}

// TestL2BadUplinksAreRefused: every wrong uplink or subnet of an L2
// network is a 400 that names the field and the value, and leaves the
// host and the records as they were.
func TestL2BadUplinksAreRefused(t *testing.T) {
	seg := newSegment(t, 1)
	h := seg.hosts[0]
	// A second adapter, down; a third, a port of a bridge of the host's.
	seg.plug(h.HostNS, "seg1", "swh0b", "203.0.113.11/24")
	hh := seg.handle(h.HostNS)
	if l, err := hh.LinkByName("seg1"); err != nil || hh.LinkSetDown(l) != nil {
		t.Fatalf("set seg1 down: %v", err)
	}
	seg.plug(h.HostNS, "seg2", "swh0c")
	br := &netlink.Bridge{LinkAttrs: netlink.LinkAttrs{Name: "br-host"}}
	if err := hh.LinkAdd(br); err != nil {
		t.Fatal(err)
	}
	if l, err := hh.LinkByName("seg2"); err != nil || hh.LinkSetMaster(l, br) != nil {
		t.Fatalf("enslave seg2: %v", err)
	}
	before := hostLinks(t, h.HostNS)
	iface := "com.docker.network.windowsshim.interface="
	cases := []struct {
		name string
		args []string
		want []string // in the error
	}{
		{"no such adapter", []string{"-d", "l2bridge", "--subnet", segA, "-o", iface + "nope0"}, []string{"NetAdapterName", `"nope0"`, "seg0"}},
		{"adapter down", []string{"-d", "transparent", "--subnet", "203.0.113.0/24", "-o", iface + "seg1"}, []string{"NetAdapterName", `"seg1"`, "down"}},
		{"adapter is a bridge port", []string{"-d", "l2tunnel", "--subnet", segA, "-o", iface + "seg2"}, []string{"NetAdapterName", `"seg2"`, "br-host"}},
		{"subnet not the adapter's", []string{"-d", "l2bridge", "--subnet", "10.9.0.0/24", "-o", iface + segUplink}, []string{"IpAddressPrefix", "10.9.0.0/24", "192.0.2.11/24"}},
		{"no adapter named", []string{"-d", "transparent", "--subnet", segA}, []string{"NetAdapterName"}},
		{"NAT with an adapter", []string{"-d", "nat", "--subnet", "10.10.0.0/24", "-o", iface + segUplink}, []string{"NetAdapterName", `"seg0"`}},
		{"loopback", []string{"-d", "l2tunnel", "--subnet", segA, "-o", iface + "lo"}, []string{"NetAdapterName", `"lo"`}},
	}
	for _, c := range cases {
		r := h.CLI(append(append([]string{"network", "create"}, c.args...), "bad")...)
		if r.Code == 0 {
			t.Errorf("%s: created, want refused", c.name)
			continue
		}
		for _, w := range c.want {
			if !strings.Contains(r.Stderr, w) {
				t.Errorf("%s: error %q does not name %s", c.name, strings.TrimSpace(r.Stderr), w)
			}
		}
	}
	// DHCP on L2Bridge, through the API.
	settings, _ := json.Marshal(api.NetAdapterNameSettings{NetworkAdapterName: segUplink})
	_, err := h.Client().CreateNetwork(context.Background(), &api.Network{Name: "bad", Type: api.L2Bridge,
		Ipams:    []api.Ipam{{Type: "DHCP"}},
		Policies: []api.Policy{{Type: api.NetAdapterName, Settings: settings}}})
	if err == nil || !strings.Contains(err.Error(), "DHCP") || !strings.Contains(err.Error(), "Ipams") {
		t.Errorf("DHCP on L2Bridge: %v, want a 400 naming Ipams and DHCP", err)
	}
	// A published port on a Transparent endpoint.
	n := h.l2Network(t, api.Transparent, "tr", segA, "192.0.2.128/26", routerA)
	pm, _ := json.Marshal(api.PortMappingSettings{Protocol: 6, InternalPort: 80, ExternalPort: 8080})
	_, err = h.Client().CreateEndpoint(context.Background(), &api.Endpoint{Name: "pub", HostComputeNetwork: n.ID,
		Policies: []api.Policy{{Type: api.PortMapping, Settings: pm}}})
	if err == nil || !strings.Contains(err.Error(), "Policies[0]") || !strings.Contains(err.Error(), "PortMapping") {
		t.Errorf("a port mapping on a Transparent endpoint: %v, want a 400 naming Policies[0] and PortMapping", err)
	}
	if err := h.Client().DeleteNetwork(context.Background(), n.ID); err != nil {
		t.Fatal(err)
	}
	out := h.MustCLI("network", "ls", "-q")
	if got := len(strings.Fields(out)); got != 1 {
		t.Errorf("networks after the refusals: %q, want the default one only", out)
	}
	settle(true, func() bool { return strings.Join(hostLinks(t, h.HostNS), " ") == strings.Join(before, " ") })
	if after := hostLinks(t, h.HostNS); strings.Join(after, " ") != strings.Join(before, " ") {
		t.Errorf("host devices after the refusals: %v, want %v", after, before)
	}
}
