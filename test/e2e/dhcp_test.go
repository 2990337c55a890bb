package e2e

import (
	"context"
	"encoding/json"
	"errors"
	"net"
	"net/http"
	"net/netip"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/hostnet/hostnet/api"
	"github.com/hostnet/hostnet/internal/dhcp"
	"github.com/hostnet/hostnet/internal/testutil/dhcpd"
)

// The DHCP lab: the L2 lab's segment with one hostnet host and a DHCP
// server in the router's namespace (on its port of the switch), handing
// out 192.0.2.100-119 with the router as gateway. Its leases are short,
// so that the test sees renewals: T1 at 4 s, T2 at 15 s, 20 s in all.
const (
	dhcpPoolFirst = "192.0.2.100"
	dhcpPoolSize  = 20
	dhcpDNS       = "192.0.2.53"
)

func startDHCPServer(t *testing.T, seg *segment) *dhcpd.Server {
	t.Helper()
	srv, err := dhcpd.Start(dhcpd.Config{
		NS: mustNS(t, seg.router), Interface: "eth0", ServerID: netip.MustParseAddr(routerA),
		Subnet: netip.MustParsePrefix(segA), First: netip.MustParseAddr(dhcpPoolFirst), Size: dhcpPoolSize,
		Router: netip.MustParseAddr(routerA), DNS: []netip.Addr{netip.MustParseAddr(dhcpDNS)}, Domain: "lab.test",
		LeaseTime: 20 * time.Second, T1: 4 * time.Second, T2: 15 * time.Second,
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { srv.Close() })
	return srv
}

// dhcpNetwork creates, with the CLI, a Transparent network on host h's
// uplink whose addresses come from the segment's DHCP server.
func dhcpNetwork(t *testing.T, h *segHost, name string) *api.Network {
	t.Helper()
	h.MustCLI("network", "create", "-d", "transparent", "--ipam-driver", "dhcp", "-o", "com.docker.network.windowsshim.interface="+segUplink, name)
	n, err := h.Client().GetNetwork(context.Background(), name)
	if err != nil {
		t.Fatal(err)
	}
	if len(n.Ipams) != 1 || n.Ipams[0].Type != "DHCP" {
		t.Fatalf("network %s has Ipams %s, want Type DHCP", name, mustJSON(n.Ipams))
	}
	return n
}

// isRenewal is a client's renewal or rebinding of addr (it names its
// address in ciaddr), granted.
func isRenewal(addr netip.Addr) func(dhcpd.Record) bool {
	return func(r dhcpd.Record) bool {
		return r.Type == dhcp.Request && r.CIAddr == addr && r.Reply == dhcp.Ack
	}
}

// asksAgain reports the records by which a client asked for an address
// rather than renewing one: discoveries and requests without ciaddr
// (selecting, init-reboot).
func asksAgain(rs []dhcpd.Record) []string {
	var out []string
	for _, r := range rs {
		if r.Type == dhcp.Discover || (r.Type == dhcp.Request && (!r.CIAddr.IsValid() || r.CIAddr.IsUnspecified())) {
			out = append(out, r.Type.String())
		}
	}
	return out
}

// TestTransparentDHCP: an endpoint of a Transparent network of Ipams Type
// DHCP gets its address from the segment's DHCP server and talks from it;
// inspect shows the lease; the lease is renewed; restarts of the daemon
// (gentle and killed) keep the address and a TCP connection, and the
// restarted daemon renews the lease without asking for an address again;
// deleting the endpoint releases the lease; without an answering server
// an attach fails cleanly, leaving nothing. (DHCP on L2Bridge is refused:
// TestL2BadUplinksAreRefused.)
func TestTransparentDHCP(t *testing.T) {
	seg := newSegment(t, 1, "--dhcp-timeout=5s")
	h := seg.hosts[0]
	srv := startDHCPServer(t, seg)
	n := dhcpNetwork(t, h, "dhcp")
	ctx := context.Background()
	c := h.Client()

	ep := h.AttachNew(n.ID, "d1")
	mac, err := net.ParseMAC(ep.Endpoint.MacAddress)
	if err != nil {
		t.Fatal(err)
	}
	bound, ok := srv.Bound(mac)
	if !ok || bound != ep.Addr {
		t.Fatalf("endpoint has %s, the server holds %s (%t) for %s", ep.Addr, bound, ok, mac)
	}
	first, _ := srv.WaitFor(time.Second, mac, func(r dhcpd.Record) bool { return r.Reply == dhcp.Ack })
	if first.Hostname != "d1" {
		t.Errorf("the client sent hostname %q, want the endpoint's name d1", first.Hostname)
	}

	// Inspect: the API's document and the CLI's.
	l := ep.Endpoint.DhcpLease
	if l == nil || l.IpAddress != ep.Addr.String() || l.PrefixLength != 24 || l.Server != routerA || l.Gateway != routerA ||
		strings.Join(l.DnsServers, ",") != dhcpDNS || l.Domain != "lab.test" || !l.Expires.After(time.Now()) {
		t.Errorf("inspect shows the lease %s", mustJSON(l))
	}
	if cfg := ep.Endpoint.IpConfigurations; len(cfg) != 1 || cfg[0].PrefixLength != 24 {
		t.Errorf("IpConfigurations %s, want the lease's address", mustJSON(cfg))
	}
	out := h.MustCLI("endpoint", "inspect", "d1")
	for _, want := range []string{`"DhcpLease"`, `"IpAddress": "` + ep.Addr.String() + `"`, `"Server": "` + routerA + `"`, `"Gateway": "` + routerA + `"`, `"Expires"`} {
		if !strings.Contains(out, want) {
			t.Errorf("hostnet endpoint inspect d1 does not show %s:\n%s", want, out)
		}
	}

	// The namespace's resolver: the lease's server and domain (neither the
	// endpoint nor the network names DNS servers).
	var path string
	nsDoc, err := c.GetNamespace(ctx, ep.Namespace.ID)
	if err != nil {
		t.Fatal(err)
	}
	if raw, ok := nsDoc.Extra["ResolvConfPath"]; !ok || json.Unmarshal(raw, &path) != nil || path == "" {
		t.Error("the endpoint's namespace has no resolv.conf of hostnet's")
	} else if b, err := os.ReadFile(path); err != nil || !strings.Contains(string(b), "nameserver "+dhcpDNS) || !strings.Contains(string(b), "search lab.test") {
		t.Errorf("resolv.conf %s (%v):\n%s\nwant the lease's nameserver %s and search lab.test", path, err, b, dhcpDNS)
	}

	// Traffic from the leased address, both ways, and with the host.
	serveHost(t, seg.router)
	Serve(t, ep.Namespace.NetNamespacePath, "tcp", ":7000")
	router := netip.AddrPortFrom(netip.MustParseAddr(routerA), 7000).String()
	if !reachTCP(t, ep.Namespace.NetNamespacePath, router) {
		t.Fatal("the endpoint does not reach the router")
	}
	if src, err := Talk(t, ep.Namespace.NetNamespacePath, "tcp", router); err != nil || src != ep.Addr {
		t.Errorf("the router saw the endpoint as %s (%v), want %s", src, err, ep.Addr)
	}
	toEP := netip.AddrPortFrom(ep.Addr, 7000).String()
	if !reachTCP(t, seg.router, toEP) {
		t.Error("the router does not reach the endpoint")
	}
	if !reachTCP(t, h.HostNS, toEP) {
		t.Error("the host does not reach its endpoint (through its shim)")
	}

	// A renewal, recorded.
	if _, ok := srv.WaitFor(15*time.Second, mac, isRenewal(ep.Addr)); !ok {
		t.Fatal("no renewal within 15 s of a lease with T1 4 s")
	}
	var renewed *api.Endpoint
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(200 * time.Millisecond) {
		if renewed, err = c.GetEndpoint(ctx, "d1"); err == nil && renewed.DhcpLease != nil && renewed.DhcpLease.Obtained.After(l.Obtained) {
			break
		}
	}
	if renewed == nil || renewed.DhcpLease == nil || !renewed.DhcpLease.Obtained.After(l.Obtained) || renewed.DhcpLease.IpAddress != ep.Addr.String() {
		t.Errorf("the renewal was not recorded: before %s, now %s", mustJSON(l), mustJSON(renewed))
	}

	// Restarts: the address and a connection stay, and the restarted
	// daemon renews the stored lease rather than asking again.
	conn, err := Dial(t, seg.router, "tcp", toEP, 5*time.Second)
	if err != nil {
		t.Fatalf("dial the endpoint from the router: %v", err)
	}
	defer conn.Close()
	for _, kill := range []bool{false, true} {
		seen := len(srv.Seen(mac))
		h.Restart(kill)
		if _, err := Exchange(conn, "still there", 5*time.Second); err != nil {
			t.Errorf("the router's connection to the endpoint broke across a restart (killed: %t): %v", kill, err)
		}
		after := time.Now()
		if _, ok := srv.WaitFor(15*time.Second, mac, func(r dhcpd.Record) bool { return r.Time.After(after) && isRenewal(ep.Addr)(r) }); !ok {
			t.Errorf("no renewal within 15 s of a restart (killed: %t)", kill)
		}
		if again := asksAgain(srv.Seen(mac)[seen:]); len(again) > 0 {
			t.Errorf("after a restart (killed: %t) the client asked for an address again (%v) instead of renewing", kill, again)
		}
		got, err := c.GetEndpoint(ctx, "d1")
		if err != nil || got.DhcpLease == nil || got.DhcpLease.IpAddress != ep.Addr.String() {
			t.Errorf("after a restart (killed: %t) the endpoint's lease is %v (%v)", kill, got, err)
		}
	}
	if _, err := Exchange(conn, "after the renewals", 5*time.Second); err != nil {
		t.Errorf("the connection broke after the restarts: %v", err)
	}
	conn.Close() // while the endpoint's server can still hear it end

	// Delete: the lease is released and its address back in the pool.
	if err := c.DeleteEndpoint(ctx, "d1"); err != nil {
		t.Fatal(err)
	}
	if _, ok := srv.WaitFor(5*time.Second, mac, func(r dhcpd.Record) bool { return r.Type == dhcp.Release && r.CIAddr == ep.Addr }); !ok {
		t.Error("deleting the endpoint sent no DHCPRELEASE of its address")
	}
	if a, held := srv.Bound(mac); held {
		t.Errorf("the server still holds %s for the deleted endpoint", a)
	}
	if links := nsLinks(t, ep.Namespace.NetNamespacePath); len(links) != 1 {
		t.Errorf("the namespace keeps %v after the endpoint went", links)
	}

	// No server answers: the attach fails with a clear error and leaves
	// neither an attachment nor a lease.
	srv.SetIgnore(func(dhcpd.Record) bool { return true })
	ns, err := c.CreateNamespace(ctx, &api.Namespace{})
	if err != nil {
		t.Fatal(err)
	}
	quiet, err := c.CreateEndpoint(ctx, &api.Endpoint{Name: "quiet", HostComputeNetwork: n.ID})
	if err != nil {
		t.Fatal(err)
	}
	_, err = c.Attach(ctx, ns.ID, quiet.ID)
	var apiErr *api.Error
	if !errors.As(err, &apiErr) || apiErr.Status != http.StatusGatewayTimeout || !strings.Contains(apiErr.Message, "no DHCP lease") {
		t.Fatalf("attach without a DHCP server: %v, want a 504 saying no DHCP lease", err)
	}
	t.Logf("attach without a DHCP server: %v", err)
	got, err := c.GetEndpoint(ctx, quiet.ID)
	if err != nil || got.HostComputeNamespace != "" || got.DhcpLease != nil || len(got.IpConfigurations) != 0 {
		t.Errorf("the failed attach left %s (%v)", mustJSON(got), err)
	}
	if links := nsLinks(t, ns.NetNamespacePath); len(links) != 1 {
		t.Errorf("the failed attach left devices %v in the namespace", links)
	}
	// In one request: the endpoint created and attached goes again.
	_, err = c.CreateEndpoint(ctx, &api.Endpoint{Name: "quiet2", HostComputeNetwork: n.ID, HostComputeNamespace: ns.ID})
	if !errors.As(err, &apiErr) || apiErr.Status != http.StatusGatewayTimeout {
		t.Fatalf("create and attach without a DHCP server: %v, want a 504", err)
	}
	if _, err := c.GetEndpoint(ctx, "quiet2"); !api.IsNotFound(err) {
		t.Errorf("the failed create left the endpoint (%v)", err)
	}
	if links := nsLinks(t, ns.NetNamespacePath); len(links) != 1 {
		t.Errorf("the failed create left devices %v in the namespace", links)
	}

	// The server back, the same endpoint attaches, and gets the address
	// the deleted endpoint gave back (the pool's first); detached, it
	// releases it.
	srv.SetIgnore(nil)
	if _, err := c.Attach(ctx, ns.ID, quiet.ID); err != nil {
		t.Fatalf("attach with the server back: %v", err)
	}
	got, err = c.GetEndpoint(ctx, quiet.ID)
	if err != nil || got.DhcpLease == nil || got.DhcpLease.IpAddress != ep.Addr.String() {
		t.Errorf("the endpoint attached after the release has %s (%v), want the released %s", mustJSON(got), err, ep.Addr)
	}
	quietMAC, _ := net.ParseMAC(got.MacAddress)
	if _, err := c.Detach(ctx, ns.ID, quiet.ID); err != nil {
		t.Fatal(err)
	}
	if _, ok := srv.WaitFor(5*time.Second, quietMAC, func(r dhcpd.Record) bool { return r.Type == dhcp.Release && r.CIAddr == ep.Addr }); !ok {
		t.Error("detaching the endpoint sent no DHCPRELEASE")
	}
	if a, held := srv.Bound(quietMAC); held {
		t.Errorf("the server still holds %s for the detached endpoint", a)
	}
	got, err = c.GetEndpoint(ctx, quiet.ID)
	if err != nil || got.DhcpLease != nil || len(got.IpConfigurations) != 0 {
		t.Errorf("the detached endpoint keeps %s (%v)", mustJSON(got), err)
	}
	// The daemons' log (appended across the restarts): under -race, the
	// clients, the service and the repair loop shared nothing unguarded.
	if log := h.LogTail(1 << 20); strings.Contains(log, "DATA RACE") {
		t.Errorf("the daemon reported a data race:\n%s", log)
	}
}

// nsLinks lists the devices of the namespace at path.
func nsLinks(t *testing.T, path string) []string {
	t.Helper()
	var names []string
	In(t, path, func() error {
		ifs, err := net.Interfaces()
		for _, i := range ifs {
			names = append(names, i.Name)
		}
		return err
	})
	return names
}
