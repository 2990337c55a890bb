package service

import (
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"net/http"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hostnet/hostnet/api"
	"github.com/hostnet/hostnet/internal/driver"
	"github.com/hostnet/hostnet/internal/driver/l2bridge"
	"github.com/hostnet/hostnet/internal/driver/macvlan"
	"github.com/hostnet/hostnet/internal/driver/nat"
	"github.com/hostnet/hostnet/internal/netmodel"
	"github.com/hostnet/hostnet/internal/reconcile"
)

// fakeDHCP is the daemon's DHCP clients as the service sees them: it
// grants lease (or fails with err) and records what it was asked.
type fakeDHCP struct {
	mu       sync.Mutex
	lease    *api.DhcpLease
	err      error
	acquired []DHCPTarget
	released []string
	kept     [][]DHCPTarget
}

func (f *fakeDHCP) Acquire(ctx context.Context, t DHCPTarget) (*api.DhcpLease, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.acquired = append(f.acquired, t)
	if f.err != nil {
		return nil, f.err
	}
	l := *f.lease
	return &l, nil
}

func (f *fakeDHCP) Keep(ts []DHCPTarget) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.kept = append(f.kept, ts)
}

func (f *fakeDHCP) Stop(ctx context.Context, id string, release bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if release {
		f.released = append(f.released, id)
	}
}

func testLease(addr string, obtained time.Time) *api.DhcpLease {
	return &api.DhcpLease{IpAddress: addr, PrefixLength: 24, Server: "192.0.2.1", Gateway: "192.0.2.1",
		DnsServers: []string{"192.0.2.53"}, Domain: "lab.test", Obtained: obtained.UTC(), RenewAt: obtained.Add(30 * time.Minute).UTC(),
		RebindAt: obtained.Add(52 * time.Minute).UTC(), Expires: obtained.Add(time.Hour).UTC()}
}

// dhcpLab is a lab whose host has the uplink seg0 (192.0.2.11/24), with
// the L2 drivers and a fake DHCP, and a Transparent network "tn" of Ipams
// Type DHCP on seg0.
func dhcpLab(t *testing.T) (*lab, *fakeDHCP) {
	l := newLab(t)
	l.svc.Close()
	l.rec.Close()
	f := &fakeDHCP{lease: testLease("192.0.2.100", time.Now())}
	l.rec = reconcile.New(reconcile.Config{Host: l.host, Logger: slog.New(slog.DiscardHandler)})
	l.svc = New(Config{Store: l.st, Reconciler: l.rec, Drivers: map[api.NetworkType]driver.Driver{
		api.NAT: nat.New(), api.Transparent: macvlan.Transparent(), api.L2Bridge: l2bridge.New()},
		NetnsDir: labNetnsDir, NetnsEtcDir: labEtcDir, Logger: slog.New(slog.DiscardHandler), DHCP: f})
	t.Cleanup(func() { l.svc.Close(); l.rec.Close() })
	l.must(func() error { _, err := l.svc.Start(context.Background()); return err }())
	l.host.SetHostAddressing(netmodel.HostAddressing{Addrs: []netip.Prefix{netip.MustParsePrefix("192.0.2.11/24")},
		Links: []netmodel.HostLink{{Name: "seg0", Up: true, Addrs: []netip.Prefix{netip.MustParsePrefix("192.0.2.11/24")}}}})
	_, err := l.svc.CreateNetwork(context.Background(), dhcpNetworkDoc("tn", api.Transparent))
	l.must(err)
	return l, f
}

func dhcpNetworkDoc(name string, typ api.NetworkType) api.Network {
	return api.Network{ID: fixedID(name), Name: name, Type: typ, Ipams: []api.Ipam{{Type: "DHCP"}},
		Policies: []api.Policy{{Type: api.NetAdapterName, Settings: json.RawMessage(`{"NetworkAdapterName":"seg0"}`)}}}
}

// TestDHCPLeaseIsRecordedAndPlanned: the first lease of an attach is
// recorded in the endpoint and its address and default route are planned
// from the record (with the reverse path filter off for the client); a
// renewal changes the record, not the kernel; a lost lease takes the
// address away; a lease for an endpoint not attached there is refused;
// KeepLeases hands the stored leases to the clients; a detach releases
// the lease and forgets it.
func TestDHCPLeaseIsRecordedAndPlanned(t *testing.T) {
	l, f := dhcpLab(t)
	ctx := context.Background()
	ep, ns := l.attached("tn", "d1")
	if ep.DhcpLease == nil || ep.DhcpLease.IpAddress != "192.0.2.100" || len(ep.IpConfigurations) != 1 || ep.IpConfigurations[0].IpAddress != "192.0.2.100" {
		t.Fatalf("attached endpoint: lease %s, addresses %s", mustJSONString(ep.DhcpLease), mustJSONString(ep.IpConfigurations))
	}
	if len(f.acquired) != 1 || f.acquired[0].Interface != "eth0" || f.acquired[0].Hostname != "d1" || f.acquired[0].Lease != nil || f.acquired[0].NSPath != ns.NetNamespacePath {
		t.Errorf("acquired %+v", f.acquired)
	}
	dump := l.dump()
	for _, want := range []string{"addr 192.0.2.100/24 dev eth0", "route 0.0.0.0/0 via 192.0.2.1 dev eth0 metric 100", "sysctl net/ipv4/conf/eth0/rp_filter=0", "sysctl net/ipv4/conf/all/rp_filter=0", "route 192.0.2.100/32 dev hnsh"} {
		if !strings.Contains(dump, want) {
			t.Errorf("the host lacks %q:\n%s", want, dump)
		}
	}
	target := dhcpTarget(ep)

	// A renewal: new times, same address and routes.
	applies := l.host.Applies()
	renewed := testLease("192.0.2.100", time.Now().Add(time.Minute))
	got, err := l.svc.RecordLease(ctx, target, renewed)
	l.must(err)
	if !got.DhcpLease.Obtained.Equal(renewed.Obtained) {
		t.Errorf("renewal recorded as %s", mustJSONString(got.DhcpLease))
	}
	if l.rec.Wait(); l.host.Applies() != applies {
		t.Errorf("a renewal changed the kernel (%d applies, was %d)", l.host.Applies(), applies)
	}

	// KeepLeases: the clients get the stored lease.
	l.must(l.svc.KeepLeases())
	if k := f.kept[len(f.kept)-1]; len(k) != 1 || k[0].EndpointID != ep.ID || k[0].Lease == nil || !k[0].Lease.Obtained.Equal(renewed.Obtained) {
		t.Errorf("kept %s", mustJSONString(k))
	}

	// Lost: the address goes.
	got, err = l.svc.RecordLease(ctx, target, nil)
	l.must(err)
	if got.DhcpLease != nil || len(got.IpConfigurations) != 0 || strings.Contains(l.dump(), "192.0.2.100/24") {
		t.Errorf("a lost lease left %s, %s", mustJSONString(got), l.dump())
	}
	_, err = l.svc.RecordLease(ctx, target, testLease("192.0.2.101", time.Now()))
	l.must(err)
	if !strings.Contains(l.dump(), "addr 192.0.2.101/24 dev eth0") {
		t.Errorf("a new lease was not applied:\n%s", l.dump())
	}

	// Not attached where the client runs: refused, nothing changed.
	wrong := target
	wrong.Interface = "eth1"
	if _, err := l.svc.RecordLease(ctx, wrong, testLease("192.0.2.102", time.Now())); !errors.Is(err, errNotLeasing) {
		t.Errorf("a lease for another interface: %v", err)
	}

	// Detach: released, forgotten.
	_, err = l.svc.Detach(ctx, ns.ID, ep.ID)
	l.must(err)
	if len(f.released) != 1 || f.released[0] != ep.ID {
		t.Errorf("released %v", f.released)
	}
	back, err := l.svc.GetEndpoint(ctx, ep.ID)
	l.must(err)
	if back.DhcpLease != nil || len(back.IpConfigurations) != 0 {
		t.Errorf("a detached endpoint keeps %s", mustJSONString(back))
	}
	if _, err := l.svc.RecordLease(ctx, target, testLease("192.0.2.100", time.Now())); !errors.Is(err, errNotLeasing) {
		t.Errorf("a lease for a detached endpoint: %v", err)
	}
	l.must(l.svc.KeepLeases())
	if k := f.kept[len(f.kept)-1]; len(k) != 0 {
		t.Errorf("kept after the detach %s", mustJSONString(k))
	}
}

// TestDHCPWithoutLeaseLeavesNothing: an attach that gets no lease is taken
// back (504); a create that attached is undone whole.
func TestDHCPWithoutLeaseLeavesNothing(t *testing.T) {
	l, f := dhcpLab(t)
	ctx := context.Background()
	f.err = errors.New("no lease: context deadline exceeded")
	ns, err := l.svc.CreateNamespace(ctx, api.Namespace{ID: fixedID("q-ns"), Name: "q-ns"})
	l.must(err)
	withNS := l.dump()
	_, err = l.svc.CreateEndpoint(ctx, api.Endpoint{ID: fixedID("q"), Name: "q", HostComputeNetwork: "tn", HostComputeNamespace: ns.ID})
	refused(t, "create and attach without a lease", err, http.StatusGatewayTimeout, "no DHCP lease")
	if _, err := l.svc.GetEndpoint(ctx, "q"); !api.IsNotFound(err) {
		t.Errorf("the endpoint of a failed create is there: %v", err)
	}
	if got := withoutAllRPFilter(l.dump()); got != withNS {
		t.Errorf("the failed create left kernel state:\n%s\nwant\n%s", got, withNS)
	}
	ep, err := l.svc.CreateEndpoint(ctx, api.Endpoint{ID: fixedID("q"), Name: "q", HostComputeNetwork: "tn"})
	l.must(err)
	_, err = l.svc.Attach(ctx, ns.ID, ep.ID)
	refused(t, "attach without a lease", err, http.StatusGatewayTimeout, "no DHCP lease")
	back, err := l.svc.GetEndpoint(ctx, ep.ID)
	l.must(err)
	if back.HostComputeNamespace != "" || back.DhcpLease != nil {
		t.Errorf("the failed attach left %s", mustJSONString(back))
	}
	if got := withoutAllRPFilter(l.dump()); got != withNS {
		t.Errorf("the failed attach left kernel state:\n%s\nwant\n%s", got, withNS)
	}
}

// withoutAllRPFilter is a dump without the namespace-wide reverse path
// filter setting, which a DHCP endpoint's attach turns off and which stays
// off (a sysctl no owner wants any more is left as it is: hostnet cannot
// know what it was before).
func withoutAllRPFilter(dump string) string {
	var out []string
	for _, line := range strings.Split(dump, "\n") {
		if strings.TrimSpace(line) != "sysctl net/ipv4/conf/all/rp_filter=0" {
			out = append(out, line)
		}
	}
	return strings.Join(out, "\n")
}

// TestDHCPRefusals: DHCP where it cannot be is a 400 naming the field.
func TestDHCPRefusals(t *testing.T) {
	l, _ := dhcpLab(t)
	ctx := context.Background()
	_, err := l.svc.CreateNetwork(ctx, dhcpNetworkDoc("l2", api.L2Bridge))
	refused(t, "an L2Bridge network of Type DHCP", err, http.StatusBadRequest, "field Ipams")
	doc := dhcpNetworkDoc("sub", api.Transparent)
	doc.Ipams[0].Subnets = []api.Subnet{{IpAddressPrefix: "192.0.2.0/24"}}
	_, err = l.svc.CreateNetwork(ctx, doc)
	refused(t, "a DHCP network with subnets", err, http.StatusBadRequest, "field Ipams")
	_, err = l.svc.CreateEndpoint(ctx, api.Endpoint{Name: "s", HostComputeNetwork: "tn", IpConfigurations: []api.IPConfig{{IpAddress: "192.0.2.7"}}})
	refused(t, "a static address on a DHCP network", err, http.StatusBadRequest, "field IpConfigurations")
	l.network("blue", "10.7.0.0/24")
	_, err = l.svc.CreateEndpoint(ctx, api.Endpoint{Name: "n", HostComputeNetwork: "blue", Flags: api.EndpointEnableDHCP})
	refused(t, "EnableDhcp on a NAT endpoint", err, http.StatusBadRequest, "field Flags", "EnableDhcp")
	static := dhcpNetworkDoc("static", api.Transparent)
	static.Ipams = []api.Ipam{{Type: "Static", Subnets: []api.Subnet{{IpAddressPrefix: "192.0.2.0/24", IpRange: "192.0.2.128/26"}}}}
	_, err = l.svc.CreateNetwork(ctx, static)
	l.must(err)
	_, err = l.svc.CreateEndpoint(ctx, api.Endpoint{Name: "st", HostComputeNetwork: "static", Flags: api.EndpointEnableDHCP})
	refused(t, "EnableDhcp on a static Transparent network", err, http.StatusBadRequest, "field Flags", "static subnets")
	ep, err := l.svc.CreateEndpoint(ctx, api.Endpoint{Name: "fl", HostComputeNetwork: "tn", Flags: api.EndpointEnableDHCP})
	l.must(err)
	if len(ep.IpConfigurations) != 0 || ep.DhcpLease != nil {
		t.Errorf("an unattached DHCP endpoint has %s", mustJSONString(ep))
	}
}

func mustJSONString(v any) string {
	b, _ := json.Marshal(v)
	return string(b)
}

// TestDHCPLeaseDNSGoesToResolvConf: an endpoint with no DNS of its own or
// of its network gets its lease's servers and domain in its namespace's
// resolv.conf, which follows the lease.
func TestDHCPLeaseDNSGoesToResolvConf(t *testing.T) {
	l, _ := dhcpLab(t)
	ep, ns := l.attached("tn", "d1")
	resolv := func() string {
		l.rec.Wait()
		dump := l.host.Dump()
		i := strings.Index(dump, "resolv.conf:")
		if i < 0 {
			return ""
		}
		// The file's lines, up to the next object of the dump.
		lines := strings.Split(dump[i:], "\n")
		return strings.Join(lines[:min(len(lines), 5)], "\n")
	}
	if got := resolv(); !strings.Contains(got, "nameserver 192.0.2.53") || !strings.Contains(got, "search lab.test") {
		t.Errorf("resolv.conf of %s: %q", ns.ID, got)
	}
	lease := testLease("192.0.2.100", time.Now())
	lease.DnsServers = []string{"192.0.2.54"}
	_, err := l.svc.RecordLease(context.Background(), dhcpTarget(ep), lease)
	l.must(err)
	if got := resolv(); !strings.Contains(got, "nameserver 192.0.2.54") || strings.Contains(got, "192.0.2.53") {
		t.Errorf("resolv.conf after a lease with another server: %q", got)
	}
}
