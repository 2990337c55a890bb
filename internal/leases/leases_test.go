package leases_test

import (
	"context"
	"encoding/json"
	"log/slog"
	"net/netip"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hostnet/hostnet/api"
	"github.com/hostnet/hostnet/internal/dataplane/netns"
	"github.com/hostnet/hostnet/internal/dhcp"
	"github.com/hostnet/hostnet/internal/leases"
	"github.com/hostnet/hostnet/internal/testutil"
	"github.com/hostnet/hostnet/internal/testutil/dhcpd"
	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

func TestLeaseRoundTrip(t *testing.T) {
	obtained := time.Date(2026, 12, 5, 20, 0, 0, 0, time.UTC)
	l := dhcp.Lease{Addr: netip.MustParsePrefix("192.0.2.100/24"), Router: netip.MustParseAddr("192.0.2.1"),
		DNS: []netip.Addr{netip.MustParseAddr("192.0.2.53")}, Domain: "lab.test", ServerID: netip.MustParseAddr("192.0.2.1"),
		Obtained: obtained, Duration: time.Hour, T1: 30 * time.Minute, T2: 52 * time.Minute}
	a := leases.ToAPI(l)
	if a.IpAddress != "192.0.2.100" || a.PrefixLength != 24 || a.Gateway != "192.0.2.1" || a.Server != "192.0.2.1" ||
		!a.Expires.Equal(obtained.Add(time.Hour)) || !a.RenewAt.Equal(obtained.Add(30*time.Minute)) {
		t.Errorf("api lease %+v", a)
	}
	// Stored as JSON and read back by a restarted daemon.
	b, err := json.Marshal(a)
	if err != nil {
		t.Fatal(err)
	}
	var stored api.DhcpLease
	if err := json.Unmarshal(b, &stored); err != nil {
		t.Fatal(err)
	}
	back, err := leases.FromAPI(stored)
	if err != nil {
		t.Fatal(err)
	}
	if back.Addr != l.Addr || back.Router != l.Router || back.ServerID != l.ServerID || !back.Obtained.Equal(l.Obtained) ||
		back.Duration != l.Duration || back.T1 != l.T1 || back.T2 != l.T2 || len(back.DNS) != 1 || back.Domain != l.Domain {
		t.Errorf("round trip: %+v, want %+v", back, l)
	}
	for _, bad := range []api.DhcpLease{
		{IpAddress: "nope", Server: "192.0.2.1"},
		{IpAddress: "2001:db8::1", PrefixLength: 64, Server: "192.0.2.1"},
		{IpAddress: "192.0.2.5", PrefixLength: 24, Server: "192.0.2.1", Obtained: obtained, RenewAt: obtained.Add(time.Hour), RebindAt: obtained, Expires: obtained},
	} {
		if _, err := leases.FromAPI(bad); err == nil {
			t.Errorf("FromAPI(%+v) accepted", bad)
		}
	}
}

// segment is a DHCP server's namespace and an endpoint's, on a veth pair.
type segment struct {
	epPath string
	epNS   netns.Handle
	ep     *netlink.Handle
	server *dhcpd.Server
}

func newSegment(t *testing.T, leaseTime, t1, t2 time.Duration) *segment {
	t.Helper()
	_, srvNS := testutil.NewNS(t, "srv")
	epPath, epNS := testutil.NewNS(t, "ep")
	sh, err := netlink.NewHandleAt(srvNS, unix.NETLINK_ROUTE)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(sh.Close)
	eh, err := netlink.NewHandleAt(epNS, unix.NETLINK_ROUTE)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(eh.Close)
	attrs := netlink.NewLinkAttrs()
	attrs.Name = "srv0"
	if err := sh.LinkAdd(&netlink.Veth{LinkAttrs: attrs, PeerName: "eth0", PeerNamespace: netlink.NsFd(epNS)}); err != nil {
		t.Fatal(err)
	}
	addr, _ := netlink.ParseAddr("192.0.2.1/24")
	for _, step := range []func() error{
		func() error { l, _ := sh.LinkByName("srv0"); return sh.AddrAdd(l, addr) },
		func() error { l, _ := sh.LinkByName("srv0"); return sh.LinkSetUp(l) },
		func() error { l, _ := eh.LinkByName("eth0"); return eh.LinkSetUp(l) },
		// What the driver's plan sets for a DHCP endpoint.
		func() error {
			return netns.Do(epNS, func() error {
				for _, dev := range []string{"all", "eth0"} {
					if err := os.WriteFile("/proc/sys/net/ipv4/conf/"+dev+"/rp_filter", []byte("0"), 0o644); err != nil {
						return err
					}
				}
				return nil
			})
		},
	} {
		if err := step(); err != nil {
			t.Fatal(err)
		}
	}
	srv, err := dhcpd.Start(dhcpd.Config{NS: srvNS, Interface: "srv0", ServerID: netip.MustParseAddr("192.0.2.1"),
		Subnet: netip.MustParsePrefix("192.0.2.0/24"), First: netip.MustParseAddr("192.0.2.100"), Size: 10,
		Router: netip.MustParseAddr("192.0.2.1"), LeaseTime: leaseTime, T1: t1, T2: t2})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { srv.Close() })
	return &segment{epPath: epPath, epNS: epNS, ep: eh, server: srv}
}

// apply puts a lease's address on the endpoint's interface, as the
// reconciler does once the service recorded it.
func (s *segment) apply(t *testing.T, l *api.DhcpLease) {
	t.Helper()
	link, err := s.ep.LinkByName("eth0")
	if err != nil {
		t.Fatal(err)
	}
	a, _ := netlink.ParseAddr(l.IpAddress + "/24")
	if err := s.ep.AddrAdd(link, a); err != nil {
		t.Fatal(err)
	}
}

// reports collects what a manager reports.
type reports struct {
	mu   sync.Mutex
	got  []*api.DhcpLease
	more chan struct{}
}

func (r *reports) report(_ context.Context, _ leases.Target, l *api.DhcpLease) error {
	r.mu.Lock()
	r.got = append(r.got, l)
	r.mu.Unlock()
	select {
	case r.more <- struct{}{}:
	default:
	}
	return nil
}

func manager(t *testing.T, r *reports) *leases.Manager {
	m := leases.New(leases.Config{Report: r.report, Retransmit: 200 * time.Millisecond, MaxRetransmit: time.Second,
		Logger: slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: slog.LevelDebug}))})
	t.Cleanup(m.Close)
	return m
}

type testWriter struct{ t *testing.T }

func (w testWriter) Write(b []byte) (int, error) {
	w.t.Log(strings.TrimSpace(string(b)))
	return len(b), nil
}

const probe = 10 * time.Second

// TestManagerKeepsLeases: Acquire gets a lease and the client renews it,
// reporting each; a manager of a restarted daemon resumes the stored
// lease and renews it without asking for an address again; Stop with
// release gives it back, and Keep (from records read before the detach)
// does not start the released endpoint's client again.
func TestManagerKeepsLeases(t *testing.T) {
	seg := newSegment(t, 6*time.Second, 2*time.Second, 5*time.Second)
	r := &reports{more: make(chan struct{}, 1)}
	m := manager(t, r)
	target := leases.Target{EndpointID: "ep1", NSPath: seg.epPath, Interface: "eth0", Hostname: "ep1"}
	ctx, cancel := context.WithTimeout(context.Background(), probe)
	defer cancel()
	l, err := m.Acquire(ctx, target)
	if err != nil {
		t.Fatal(err)
	}
	if l.IpAddress != "192.0.2.100" || l.Gateway != "192.0.2.1" {
		t.Fatalf("lease %+v", l)
	}
	seg.apply(t, l)
	select {
	case <-r.more:
	case <-time.After(probe):
		t.Fatal("no renewal reported")
	}
	r.mu.Lock()
	renewed := r.got[0]
	r.mu.Unlock()
	if renewed == nil || renewed.IpAddress != l.IpAddress || !renewed.Obtained.After(l.Obtained) {
		t.Errorf("renewal reported as %+v after %+v", renewed, l)
	}

	// The daemon stops (its clients keep no lease of their own: the store
	// does) and a new one resumes.
	m.Close()
	seen := len(seg.server.Seen(nil))
	m2 := manager(t, r)
	stored := *renewed
	target.Lease = &stored
	m2.Keep([]leases.Target{target})
	after := time.Now()
	rec, ok := seg.server.WaitFor(probe, mustMAC(t, seg), func(rec dhcpd.Record) bool { return rec.Time.After(after) && rec.Type == dhcp.Request })
	if !ok || rec.CIAddr.String() != l.IpAddress || rec.Reply != dhcp.Ack {
		t.Errorf("the resumed client's first request: %+v (%t), want a renewal of %s", rec, ok, l.IpAddress)
	}
	for _, rec := range seg.server.Seen(nil)[seen:] {
		if rec.Type == dhcp.Discover || (rec.Type == dhcp.Request && rec.CIAddr.IsUnspecified()) {
			t.Errorf("the resumed client asked for an address again: %s", rec.Type)
		}
	}

	// Detach: released, and not restarted from the stale records.
	m2.Stop(context.Background(), "ep1", true)
	if _, ok := seg.server.WaitFor(probe, mustMAC(t, seg), func(rec dhcpd.Record) bool { return rec.Type == dhcp.Release }); !ok {
		t.Error("no DHCPRELEASE")
	}
	if a, held := seg.server.Bound(mustMAC(t, seg)); held {
		t.Errorf("the server still holds %s", a)
	}
	m2.Keep([]leases.Target{target})
	if running := m2.Running(); len(running) != 0 {
		t.Errorf("Keep restarted the released client: %v", running)
	}
	m2.Keep(nil)
	m2.Keep([]leases.Target{target}) // attached again (with a stored lease): runs
	if running := m2.Running(); len(running) != 1 {
		t.Errorf("running %v", running)
	}
	m2.Keep(nil)
	if running := m2.Running(); len(running) != 0 {
		t.Errorf("Keep(nil) left %v", running)
	}
}

// TestManagerAcquireFailsCleanly: no server, no lease: an error naming
// the interface once ctx ends, and no client left.
func TestManagerAcquireFailsCleanly(t *testing.T) {
	seg := newSegment(t, time.Hour, 0, 0)
	seg.server.SetIgnore(func(dhcpd.Record) bool { return true })
	m := manager(t, &reports{more: make(chan struct{}, 1)})
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	_, err := m.Acquire(ctx, leases.Target{EndpointID: "ep1", NSPath: seg.epPath, Interface: "eth0"})
	if err == nil || !strings.Contains(err.Error(), "eth0") {
		t.Errorf("acquire without a server: %v", err)
	}
	if running := m.Running(); len(running) != 0 {
		t.Errorf("a failed acquire left %v", running)
	}
}

func mustMAC(t *testing.T, s *segment) []byte {
	t.Helper()
	l, err := s.ep.LinkByName("eth0")
	if err != nil {
		t.Fatal(err)
	}
	return l.Attrs().HardwareAddr
}

// TestKeepLeavesAnAcquireAlone: a Keep from records read before an attach
// (the endpoint not in them) does not stop the attach's client while it
// waits for its first lease.
func TestKeepLeavesAnAcquireAlone(t *testing.T) {
	seg := newSegment(t, time.Hour, 0, 0)
	seg.server.SetIgnore(func(dhcpd.Record) bool { return true })
	m := manager(t, &reports{more: make(chan struct{}, 1)})
	ctx, cancel := context.WithTimeout(context.Background(), probe)
	defer cancel()
	type result struct {
		l   *api.DhcpLease
		err error
	}
	done := make(chan result, 1)
	go func() {
		l, err := m.Acquire(ctx, leases.Target{EndpointID: "ep1", NSPath: seg.epPath, Interface: "eth0"})
		done <- result{l, err}
	}()
	for deadline := time.Now().Add(probe); len(m.Running()) == 0; time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("the acquire did not start")
		}
	}
	m.Keep(nil)
	seg.server.SetIgnore(nil)
	r := <-done
	if r.err != nil || r.l == nil {
		t.Fatalf("acquire after a stale Keep: %v", r.err)
	}
	if running := m.Running(); len(running) != 1 {
		t.Errorf("running %v", running)
	}
}

// What a server says that goes to a resolv.conf is held to a document's
// bounds: a domain with a line break (lines of the server's choosing) is
// left out, and servers past api.MaxDNSEntries.
func TestToAPIBoundsWhatGoesToResolvConf(t *testing.T) {
	l := dhcp.Lease{Addr: netip.MustParsePrefix("192.0.2.50/24"), ServerID: netip.MustParseAddr("192.0.2.1"),
		Domain: "lan\nnameserver 203.0.113.66", Duration: time.Hour}
	for i := range 40 {
		l.DNS = append(l.DNS, netip.AddrFrom4([4]byte{192, 0, 2, byte(100 + i)}))
	}
	a := leases.ToAPI(l)
	if a.Domain != "" {
		t.Errorf("domain %q kept", a.Domain)
	}
	if len(a.DnsServers) != api.MaxDNSEntries {
		t.Errorf("%d DNS servers kept, want %d", len(a.DnsServers), api.MaxDNSEntries)
	}
	l.Domain, l.DNS = "corp.example", l.DNS[:2]
	if a := leases.ToAPI(l); a.Domain != "corp.example" || len(a.DnsServers) != 2 {
		t.Errorf("a plain lease: domain %q, servers %v", a.Domain, a.DnsServers)
	}
}
