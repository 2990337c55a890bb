package dhcp_test

import (
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hostnet/hostnet/internal/dataplane/netns"
	"github.com/hostnet/hostnet/internal/dhcp"
	"github.com/hostnet/hostnet/internal/testutil"
	"github.com/hostnet/hostnet/internal/testutil/dhcpd"
	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// The segment's addresses are of TEST-NET-1 (RFC 5737) and exist only in
// the tests' namespaces.
var (
	serverAddr = netip.MustParsePrefix("192.0.2.1/24")
	poolFirst  = netip.MustParseAddr("192.0.2.100")
	dnsAddr    = netip.MustParseAddr("192.0.2.53")
)

// Probes wait this long: the machine may be busy.
const probe = 10 * time.Second

// lab is a server namespace and a client namespace on one segment: a veth
// pair, srv0 in the server's, cl0 in the client's.
type lab struct {
	srvNS, cliNS netns.Handle
	cli          *netlink.Handle
	server       *dhcpd.Server
}

func handle(t *testing.T, ns netns.Handle) *netlink.Handle {
	t.Helper()
	h, err := netlink.NewHandleAt(ns, unix.NETLINK_ROUTE)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(h.Close)
	return h
}

func up(t *testing.T, h *netlink.Handle, names ...string) {
	t.Helper()
	for _, n := range append(names, "lo") {
		l, err := h.LinkByName(n)
		if err != nil {
			t.Fatal(err)
		}
		if err := h.LinkSetUp(l); err != nil {
			t.Fatal(err)
		}
	}
}

func addAddr(t *testing.T, h *netlink.Handle, name string, p netip.Prefix) {
	t.Helper()
	l, err := h.LinkByName(name)
	if err != nil {
		t.Fatal(err)
	}
	a, err := netlink.ParseAddr(p.String())
	if err != nil {
		t.Fatal(err)
	}
	if err := h.AddrAdd(l, a); err != nil {
		t.Fatalf("add %s to %s: %v", p, name, err)
	}
}

func newLab(t *testing.T, leaseTime, t1, t2 time.Duration) *lab {
	t.Helper()
	_, srvNS := testutil.NewNS(t, "srv")
	_, cliNS := testutil.NewNS(t, "cli")
	sh, ch := handle(t, srvNS), handle(t, cliNS)
	attrs := netlink.NewLinkAttrs()
	attrs.Name = "srv0"
	if err := sh.LinkAdd(&netlink.Veth{LinkAttrs: attrs, PeerName: "cl0", PeerNamespace: netlink.NsFd(cliNS)}); err != nil {
		t.Fatal(err)
	}
	addAddr(t, sh, "srv0", serverAddr)
	up(t, sh, "srv0")
	up(t, ch, "cl0")
	return &lab{srvNS: srvNS, cliNS: cliNS, cli: ch, server: startServer(t, srvNS, "srv0", leaseTime, t1, t2, false)}
}

func startServer(t *testing.T, ns netns.Handle, ifname string, leaseTime, t1, t2 time.Duration, bare bool) *dhcpd.Server {
	t.Helper()
	s, err := dhcpd.Start(dhcpd.Config{
		NS: ns, Interface: ifname, ServerID: serverAddr.Addr(),
		Subnet: serverAddr.Masked(), First: poolFirst, Size: 50,
		Router: serverAddr.Addr(), DNS: []netip.Addr{dnsAddr}, Domain: "lab.test",
		LeaseTime: leaseTime, T1: t1, T2: t2, BareRenewals: bare,
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

type testWriter struct{ t *testing.T }

func (w testWriter) Write(b []byte) (int, error) {
	w.t.Log(strings.TrimSpace(string(b)))
	return len(b), nil
}

func newClient(t *testing.T, ns netns.Handle, ifname string, stored dhcp.Lease) *dhcp.Client {
	t.Helper()
	c, err := dhcp.New(dhcp.Config{
		NS: ns, Interface: ifname, Hostname: "ep-" + ifname, Lease: stored,
		Retransmit: 200 * time.Millisecond, MaxRetransmit: time.Second,
		Logger: slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: slog.LevelDebug})),
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

func mac(t *testing.T, h *netlink.Handle, name string) net.HardwareAddr {
	t.Helper()
	l, err := h.LinkByName(name)
	if err != nil {
		t.Fatal(err)
	}
	return l.Attrs().HardwareAddr
}

func acquire(t *testing.T, c *dhcp.Client) dhcp.Lease {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), probe)
	defer cancel()
	l, err := c.Acquire(ctx)
	if err != nil {
		t.Fatal(err)
	}
	return l
}

func types(rs []dhcpd.Record) []string {
	var out []string
	for _, r := range rs {
		s := r.Type.String()
		if r.Reply != 0 {
			s += ">" + r.Reply.String()
		}
		out = append(out, s)
	}
	return out
}

// wantTypes checks the exchanges a server saw, a retransmission (the
// same exchange again: the machine may be slow, or a link just up) counted
// once.
func wantTypes(t *testing.T, got []dhcpd.Record, want ...string) {
	t.Helper()
	var once []string
	for _, s := range types(got) {
		if len(once) == 0 || once[len(once)-1] != s {
			once = append(once, s)
		}
	}
	if g := strings.Join(once, " "); g != strings.Join(want, " ") {
		t.Errorf("server saw %s, want %s", g, strings.Join(want, " "))
	}
}

func TestAcquire(t *testing.T) {
	l := newLab(t, time.Hour, 0, 0)
	c := newClient(t, l.cliNS, "cl0", dhcp.Lease{})
	lease := acquire(t, c)
	want := dhcp.Lease{
		Addr: netip.PrefixFrom(poolFirst, 24), Router: serverAddr.Addr(), DNS: []netip.Addr{dnsAddr},
		Domain: "lab.test", ServerID: serverAddr.Addr(), Obtained: lease.Obtained,
		Duration: time.Hour, T1: 30 * time.Minute, T2: 52*time.Minute + 30*time.Second,
	}
	if b1, b2 := js(t, lease), js(t, want); b1 != b2 {
		t.Errorf("lease\n got %s\nwant %s", b1, b2)
	}
	if time.Since(lease.Obtained) > probe || c.Lease().Addr != lease.Addr {
		t.Errorf("obtained %s, held %v", lease.Obtained, c.Lease())
	}
	hw := mac(t, l.cli, "cl0")
	seen := l.server.Seen(hw)
	wantTypes(t, seen, "DHCPDISCOVER>DHCPOFFER", "DHCPREQUEST>DHCPACK")
	for _, r := range seen {
		if !r.Broadcast || r.Dst != netip.MustParseAddr("255.255.255.255") || r.Hostname != "ep-cl0" ||
			string(r.ClientID) != string(append([]byte{1}, hw...)) {
			t.Errorf("%s: broadcast flag %v to %s, hostname %q, client id % x", r.Type, r.Broadcast, r.Dst, r.Hostname, r.ClientID)
		}
	}
	if r := seen[len(seen)-1]; r.ServerID != serverAddr.Addr() || r.RequestedIP != poolFirst {
		t.Errorf("selecting request: server %s requested %s", r.ServerID, r.RequestedIP)
	}

	// The caller applies the address: the segment then carries unicast.
	addAddr(t, l.cli, "cl0", lease.Addr)
	ping(t, l.cliNS, serverAddr.Addr())
}

func js(t *testing.T, v any) string {
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// ping checks that the client namespace reaches addr over UDP: the
// server namespace answers a datagram to its discard-like port with ICMP
// port unreachable, which a connected socket reports.
func ping(t *testing.T, ns netns.Handle, addr netip.Addr) {
	t.Helper()
	var conn net.Conn
	if err := netns.Do(ns, func() error {
		var err error
		conn, err = net.Dial("udp4", netip.AddrPortFrom(addr, 9).String())
		return err
	}); err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(probe))
	buf := make([]byte, 1)
	for range 3 {
		conn.Write([]byte("x"))
		if _, err := conn.Read(buf); errors.Is(err, unix.ECONNREFUSED) {
			return
		}
	}
	t.Errorf("%s not reachable from the client's namespace", addr)
}

func TestRenewAndRebind(t *testing.T) {
	// Seconds-long lease: T1 at 2 s, T2 at 3 s; the rebinding has the 5 s
	// to the lease's end (with 1 s, a CI machine under load once let the
	// lease expire before the broadcast reached the server).
	l := newLab(t, 8*time.Second, 2*time.Second, 3*time.Second)
	c := newClient(t, l.cliNS, "cl0", dhcp.Lease{})
	lease := acquire(t, c)
	addAddr(t, l.cli, "cl0", lease.Addr)
	hw := mac(t, l.cli, "cl0")

	ctx, cancel := context.WithCancel(context.Background())
	changes := make(chan dhcp.Lease, 16)
	done := make(chan error, 1)
	go func() { done <- c.Run(ctx, func(l dhcp.Lease) { changes <- l }) }()
	defer func() {
		cancel()
		if err := <-done; !errors.Is(err, context.Canceled) {
			t.Errorf("Run: %v, want context.Canceled", err)
		}
	}()

	renew, ok := l.server.WaitFor(probe, hw, func(r dhcpd.Record) bool { return r.Type == dhcp.Request && r.CIAddr == lease.Addr.Addr() })
	if !ok {
		t.Fatalf("no renewal seen; server saw %v", types(l.server.Seen(hw)))
	}
	if renew.Dst != serverAddr.Addr() || renew.Broadcast || renew.ServerID.IsValid() || renew.RequestedIP.IsValid() {
		t.Errorf("renewal: to %s, broadcast flag %v, server id %s, requested %s; want unicast to the server, neither option",
			renew.Dst, renew.Broadcast, renew.ServerID, renew.RequestedIP)
	}
	if renew.Time.Sub(lease.Obtained) < 1500*time.Millisecond {
		t.Errorf("renewed %s after the lease, before T1", renew.Time.Sub(lease.Obtained))
	}
	select {
	case n := <-changes:
		if n.Addr != lease.Addr || !n.Obtained.After(lease.Obtained) {
			t.Errorf("renewed lease %v obtained %s, first %v", n, n.Obtained, lease)
		}
	case <-time.After(probe):
		t.Fatal("renewal not reported")
	}

	// The server stops answering renewals (unicasts): at T2 the client
	// rebinds by broadcast, and the server's answer to that keeps the lease.
	l.server.SetIgnore(func(r dhcpd.Record) bool { return r.Dst == serverAddr.Addr() })
	since := time.Now()
	rebind, ok := l.server.WaitFor(probe, hw, func(r dhcpd.Record) bool {
		return r.Time.After(since) && r.Type == dhcp.Request && r.Dst == netip.MustParseAddr("255.255.255.255")
	})
	if !ok {
		t.Fatalf("no rebinding seen; server saw %v", types(l.server.Seen(hw)))
	}
	if rebind.CIAddr != lease.Addr.Addr() || rebind.ServerID.IsValid() || rebind.Broadcast || rebind.Reply != dhcp.Ack {
		t.Errorf("rebinding: ciaddr %s server id %s broadcast flag %v answered %s; server saw %v", rebind.CIAddr, rebind.ServerID, rebind.Broadcast, rebind.Reply, l.server.Seen(hw))
	}
	if n := len(l.server.Seen(hw)); n < 4 {
		t.Errorf("server saw %v: no ignored renewal before the rebinding", types(l.server.Seen(hw)))
	}
	select {
	case n := <-changes:
		if n.Addr != lease.Addr || !n.Obtained.After(since) {
			t.Errorf("rebound lease %v obtained %s", n, n.Obtained)
		}
	case <-time.After(probe):
		t.Fatal("rebinding not reported")
	}
}

// A renewal's ACK may leave out what did not change: the lease keeps it.
func TestRenewKeepsWhatTheAckLeavesOut(t *testing.T) {
	l := newLab(t, time.Hour, 0, 0)
	l.server.Close() // for one that answers renewals barely
	l.server = startServer(t, l.srvNS, "srv0", time.Hour, 0, 0, true)
	c := newClient(t, l.cliNS, "cl0", dhcp.Lease{})
	lease := acquire(t, c)
	addAddr(t, l.cli, "cl0", lease.Addr)
	ctx, cancel := context.WithTimeout(context.Background(), probe)
	defer cancel()
	renewed, err := c.Renew(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if renewed.Addr != lease.Addr || renewed.Router != lease.Router || js(t, renewed.DNS) != js(t, lease.DNS) || renewed.Domain != lease.Domain {
		t.Errorf("renewed by a bare ack: %+v, first %+v", renewed, lease)
	}
}

func TestRelease(t *testing.T) {
	l := newLab(t, time.Hour, 0, 0)
	c := newClient(t, l.cliNS, "cl0", dhcp.Lease{})
	lease := acquire(t, c)
	addAddr(t, l.cli, "cl0", lease.Addr)
	hw := mac(t, l.cli, "cl0")
	ctx, cancel := context.WithTimeout(context.Background(), probe)
	defer cancel()
	if err := c.Release(ctx); err != nil {
		t.Fatal(err)
	}
	r, ok := l.server.WaitFor(probe, hw, func(r dhcpd.Record) bool { return r.Type == dhcp.Release })
	if !ok {
		t.Fatalf("no release seen; server saw %v", types(l.server.Seen(hw)))
	}
	if r.CIAddr != lease.Addr.Addr() || r.ServerID != serverAddr.Addr() || r.Dst != serverAddr.Addr() {
		t.Errorf("release of %s to %s, server id %s; want %s unicast to the server", r.CIAddr, r.Dst, r.ServerID, lease.Addr.Addr())
	}
	if a, ok := l.server.Bound(hw); ok {
		t.Errorf("server still holds %s", a)
	}
	if !c.Lease().IsZero() {
		t.Errorf("client still holds %v", c.Lease())
	}
	if err := c.Release(ctx); err != nil {
		t.Errorf("second release: %v", err)
	}
}

// stored is what a daemon keeps of a lease across its restart.
func stored(t *testing.T, l dhcp.Lease) dhcp.Lease {
	t.Helper()
	var back dhcp.Lease
	if err := json.Unmarshal([]byte(js(t, l)), &back); err != nil {
		t.Fatal(err)
	}
	return back
}

func TestInitRebootKeepsAddress(t *testing.T) {
	l := newLab(t, time.Hour, 0, 0)
	hw := mac(t, l.cli, "cl0")
	first := acquire(t, newClient(t, l.cliNS, "cl0", dhcp.Lease{}))
	addAddr(t, l.cli, "cl0", first.Addr)

	// The host's strict reverse path filter, which a namespace inherits,
	// does not matter once the address (and its subnet's route) is there.
	setRPFilter(t, l.cliNS, "1")
	// The restarted daemon's client, with the stored lease.
	c := newClient(t, l.cliNS, "cl0", stored(t, first))
	n := len(l.server.Seen(hw))
	lease := acquire(t, c)
	if lease.Addr != first.Addr || !lease.Obtained.After(first.Obtained) {
		t.Errorf("after restart %v (obtained %s), before %v", lease, lease.Obtained, first)
	}
	seen := l.server.Seen(hw)[n:]
	wantTypes(t, seen, "DHCPREQUEST>DHCPACK")
	if r := seen[0]; r.CIAddr.IsValid() && !r.CIAddr.IsUnspecified() || r.ServerID.IsValid() || r.RequestedIP != first.Addr.Addr() || !r.Broadcast {
		t.Errorf("init-reboot request: ciaddr %s server id %s requested %s broadcast %v", r.CIAddr, r.ServerID, r.RequestedIP, r.Broadcast)
	}
}

func TestInitRebootNakDiscovers(t *testing.T) {
	l := newLab(t, time.Hour, 0, 0)
	hw := mac(t, l.cli, "cl0")
	// The server refuses init-reboot requests (as after the segment moved).
	l.server.SetNAK(func(r dhcpd.Record) bool { return !r.ServerID.IsValid() && r.CIAddr.IsUnspecified() })
	old := dhcp.Lease{
		Addr: netip.MustParsePrefix("192.0.2.140/24"), ServerID: serverAddr.Addr(),
		Obtained: time.Now().Add(-time.Minute), Duration: time.Hour, T1: 30 * time.Minute, T2: 50 * time.Minute,
	}
	c := newClient(t, l.cliNS, "cl0", stored(t, old))
	lease := acquire(t, c)
	if lease.Addr.Addr() != poolFirst {
		t.Errorf("after a refused init-reboot: %v, want a new lease of %s", lease, poolFirst)
	}
	wantTypes(t, l.server.Seen(hw), "DHCPREQUEST>DHCPNAK", "DHCPDISCOVER>DHCPOFFER", "DHCPREQUEST>DHCPACK")
	for _, r := range l.server.Seen(hw) {
		if r.Type == dhcp.Discover && r.RequestedIP.IsValid() {
			t.Errorf("discovery after a refusal asks for %s again", r.RequestedIP)
		}
	}
}

func TestInitRebootUnansweredKeepsLease(t *testing.T) {
	_, cliNS := testutil.NewNS(t, "cli")
	lonely(t, cliNS)
	old := dhcp.Lease{
		Addr: netip.MustParsePrefix("192.0.2.140/24"), ServerID: serverAddr.Addr(),
		Obtained: time.Now().Add(-time.Minute), Duration: time.Hour, T1: 30 * time.Minute, T2: 50 * time.Minute,
	}
	c := newClient(t, cliNS, "cl0", old)
	lease := acquire(t, c)
	if js(t, lease) != js(t, old) || c.Lease().Addr != old.Addr {
		t.Errorf("no server: %v, want the stored lease %v kept", lease, old)
	}
}

// lonely makes cl0 in ns, up, on a segment where nobody answers: a veth
// pair whose other end, up too, listens to nothing.
func lonely(t *testing.T, ns netns.Handle) {
	t.Helper()
	h := handle(t, ns)
	attrs := netlink.NewLinkAttrs()
	attrs.Name = "cl0"
	if err := h.LinkAdd(&netlink.Veth{LinkAttrs: attrs, PeerName: "peer0"}); err != nil {
		t.Fatal(err)
	}
	up(t, h, "cl0", "peer0")
}

func TestServerAbsent(t *testing.T) {
	_, cliNS := testutil.NewNS(t, "cli")
	lonely(t, cliNS)
	c := newClient(t, cliNS, "cl0", dhcp.Lease{})
	ctx, cancel := context.WithTimeout(context.Background(), 1500*time.Millisecond)
	defer cancel()
	start := time.Now()
	_, err := c.Acquire(ctx)
	if !errors.Is(err, context.DeadlineExceeded) || !strings.Contains(err.Error(), "cl0") {
		t.Errorf("no server: %v, want a deadline error naming cl0", err)
	}
	if d := time.Since(start); d > probe {
		t.Errorf("Acquire returned %s after its deadline", d)
	}
}

func setRPFilter(t *testing.T, ns netns.Handle, v string) {
	t.Helper()
	if err := netns.Do(ns, func() error {
		for _, dev := range []string{"all", "cl0"} {
			if err := os.WriteFile("/proc/sys/net/ipv4/conf/"+dev+"/rp_filter", []byte(v), 0); err != nil {
				return err
			}
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
}

// A reverse path filter drops the answers to an interface without an
// address (the server is on no route of it): the error says so.
func TestReversePathFilterNamed(t *testing.T) {
	l := newLab(t, time.Hour, 0, 0)
	setRPFilter(t, l.cliNS, "2")
	c := newClient(t, l.cliNS, "cl0", dhcp.Lease{})
	ctx, cancel := context.WithTimeout(context.Background(), 1500*time.Millisecond)
	defer cancel()
	_, err := c.Acquire(ctx)
	if !errors.Is(err, context.DeadlineExceeded) || !strings.Contains(err.Error(), "net.ipv4.conf.cl0.rp_filter") {
		t.Errorf("with rp_filter 2: %v, want a deadline error naming the sysctl", err)
	}
	if len(l.server.Seen(nil)) == 0 {
		t.Error("the server heard nothing: the requests did not leave")
	}
}

func TestNoInterface(t *testing.T) {
	_, cliNS := testutil.NewNS(t, "cli")
	c := newClient(t, cliNS, "nothere0", dhcp.Lease{})
	ctx, cancel := context.WithTimeout(context.Background(), probe)
	defer cancel()
	if _, err := c.Acquire(ctx); err == nil || !strings.Contains(err.Error(), "nothere0") {
		t.Errorf("missing interface: %v", err)
	}
}

func TestRunReportsLostLease(t *testing.T) {
	l := newLab(t, 3*time.Second, time.Second, 2*time.Second)
	c := newClient(t, l.cliNS, "cl0", dhcp.Lease{})
	hw := mac(t, l.cli, "cl0")
	var mu sync.Mutex
	var addr netip.Prefix
	changes := make(chan dhcp.Lease, 16)
	link, err := l.cli.LinkByName("cl0")
	if err != nil {
		t.Fatal(err)
	}
	onChange := func(n dhcp.Lease) {
		// What a daemon does: apply the address it is given.
		mu.Lock()
		defer mu.Unlock()
		if !n.IsZero() && n.Addr != addr {
			a, _ := netlink.ParseAddr(n.Addr.String())
			if err := l.cli.AddrAdd(link, a); err != nil {
				t.Errorf("apply %s: %v", n.Addr, err)
			}
			addr = n.Addr
		}
		select {
		case changes <- n:
		default: // the test has seen enough
		}
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- c.Run(ctx, onChange) }()
	defer func() {
		cancel()
		<-done
	}()
	next := func() dhcp.Lease {
		t.Helper()
		select {
		case n := <-changes:
			return n
		case <-time.After(probe):
			t.Fatalf("no change reported; server saw %v", types(l.server.Seen(hw)))
		}
		return dhcp.Lease{}
	}
	if first := next(); first.Addr.Addr() != poolFirst {
		t.Fatalf("first lease %v", first)
	}
	// Renewals are refused: the lease is lost, then a new one is found.
	l.server.SetNAK(func(r dhcpd.Record) bool { return !r.CIAddr.IsUnspecified() })
	if lost := next(); !lost.IsZero() {
		t.Fatalf("after a refused renewal: %v, want the zero lease", lost)
	}
	if again := next(); again.IsZero() {
		t.Fatalf("no new lease after the loss")
	}
}

func TestMacvlanClientsGetDistinctLeases(t *testing.T) {
	// The server and a "host" with an uplink; two macvlan devices of that
	// uplink, each in an endpoint namespace of its own.
	_, srvNS := testutil.NewNS(t, "srv")
	_, hostNS := testutil.NewNS(t, "host")
	sh, hh := handle(t, srvNS), handle(t, hostNS)
	attrs := netlink.NewLinkAttrs()
	attrs.Name = "srv0"
	if err := sh.LinkAdd(&netlink.Veth{LinkAttrs: attrs, PeerName: "uplink0", PeerNamespace: netlink.NsFd(hostNS)}); err != nil {
		t.Fatal(err)
	}
	addAddr(t, sh, "srv0", serverAddr)
	up(t, sh, "srv0")
	up(t, hh, "uplink0")
	parent, err := hh.LinkByName("uplink0")
	if err != nil {
		t.Fatal(err)
	}
	server := startServer(t, srvNS, "srv0", time.Hour, 0, 0, false)

	var clients []*dhcp.Client
	var macs []net.HardwareAddr
	for _, name := range []string{"ep1", "ep2"} {
		_, epNS := testutil.NewNS(t, name)
		mv := &netlink.Macvlan{LinkAttrs: netlink.LinkAttrs{Name: "eth0", ParentIndex: parent.Attrs().Index, Namespace: netlink.NsFd(epNS)}, Mode: netlink.MACVLAN_MODE_BRIDGE}
		if err := hh.LinkAdd(mv); err != nil {
			t.Fatal(err)
		}
		eh := handle(t, epNS)
		up(t, eh, "eth0")
		clients = append(clients, newClient(t, epNS, "eth0", dhcp.Lease{}))
		macs = append(macs, mac(t, eh, "eth0"))
	}
	leases := make([]dhcp.Lease, len(clients))
	errs := make([]error, len(clients))
	var wg sync.WaitGroup
	for i, c := range clients {
		wg.Go(func() {
			ctx, cancel := context.WithTimeout(context.Background(), probe)
			defer cancel()
			leases[i], errs[i] = c.Acquire(ctx)
		})
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Fatalf("client %d: %v", i, err)
		}
	}
	if leases[0].Addr == leases[1].Addr {
		t.Errorf("both clients leased %s", leases[0].Addr)
	}
	for i, hw := range macs {
		if a, ok := server.Bound(hw); !ok || a != leases[i].Addr.Addr() {
			t.Errorf("server holds %s for %s, client %d leased %s", a, hw, i, leases[i].Addr)
		}
	}
}

// TestBoundLeaseIsRenewedNotAskedAgain: a client made with a stored lease
// marked Bound (a restarted daemon's, the address still on the interface)
// holds it at once and Run renews it from T1, without a discovery or an
// init-reboot; a Bound lease that has expired is not held.
func TestBoundLeaseIsRenewedNotAskedAgain(t *testing.T) {
	l := newLab(t, 6*time.Second, 2*time.Second, 5*time.Second)
	hw := mac(t, l.cli, "cl0")
	first := acquire(t, newClient(t, l.cliNS, "cl0", dhcp.Lease{}))
	addAddr(t, l.cli, "cl0", first.Addr)
	n := len(l.server.Seen(hw))

	c, err := dhcp.New(dhcp.Config{NS: l.cliNS, Interface: "cl0", Lease: stored(t, first), Bound: true,
		Retransmit: 200 * time.Millisecond, MaxRetransmit: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if c.Lease().Addr != first.Addr {
		t.Errorf("a bound lease is not held: %v", c.Lease())
	}
	renewed := make(chan dhcp.Lease, 4)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- c.Run(ctx, func(l dhcp.Lease) { renewed <- l }) }()
	select {
	case got := <-renewed:
		if got.Addr != first.Addr || !got.Obtained.After(first.Obtained) {
			t.Errorf("renewed %v after %v", got, first)
		}
	case <-time.After(probe):
		t.Error("no renewal")
	}
	cancel()
	<-done
	seen := l.server.Seen(hw)[n:]
	wantTypes(t, seen, "DHCPREQUEST>DHCPACK")
	if len(seen) > 0 && seen[0].CIAddr != first.Addr.Addr() {
		t.Errorf("the first request names ciaddr %s, want a renewal of %s", seen[0].CIAddr, first.Addr.Addr())
	}

	expired := first
	expired.Obtained = time.Now().Add(-time.Hour)
	old, err := dhcp.New(dhcp.Config{NS: l.cliNS, Interface: "cl0", Lease: expired, Bound: true})
	if err != nil {
		t.Fatal(err)
	}
	defer old.Close()
	if !old.Lease().IsZero() {
		t.Errorf("an expired bound lease is held: %v", old.Lease())
	}
}
