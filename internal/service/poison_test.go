package service

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
	"net/netip"
	"strings"
	"testing"

	"github.com/hostnet/hostnet/api"
	"github.com/hostnet/hostnet/internal/driver"
	"github.com/hostnet/hostnet/internal/driver/nat"
	"github.com/hostnet/hostnet/internal/netmodel"
	"github.com/hostnet/hostnet/internal/reconcile"
	"github.com/hostnet/hostnet/internal/testutil"
)

// restart replaces the lab's service and reconciler with new ones over the
// same store and host, as a restart of the daemon does, and returns what
// the new ones logged while starting.
func (l *lab) restart() string {
	l.t.Helper()
	l.svc.Close()
	l.rec.Close()
	l.host.Exit()
	var logged testutil.SyncBuffer
	log := slog.New(slog.NewTextHandler(&logged, &slog.HandlerOptions{Level: slog.LevelInfo}))
	l.rec = reconcile.New(reconcile.Config{Host: l.host, Logger: log,
		Resync: func(ctx context.Context, reason string) error { _, err := l.svc.Repair(ctx, reason); return err }})
	l.svc = New(Config{Store: l.st, Reconciler: l.rec, Drivers: map[api.NetworkType]driver.Driver{api.NAT: nat.New()},
		NetnsDir: labNetnsDir, NetnsLinkDir: labLinkDir, NetnsEtcDir: labEtcDir, HostResolvConf: l.svc.cfg.HostResolvConf,
		Logger: log})
	if _, err := l.svc.Start(context.Background()); err != nil {
		l.t.Fatal(err)
	}
	// The start's look inside namespaces logs from the background: the
	// log is read once it is done.
	l.svc.background.Wait()
	return logged.String()
}

// F11: a published port's VirtualIP that stops being a host address
// logged level=ERROR at every start, worded as a port taken. It is the
// host's condition: a warning that names the address, the endpoint marked
// failed for doctor, and a 400 when a request asks for it.
func TestF11VirtualIPNoLongerOnTheHost(t *testing.T) {
	l := newLab(t)
	ctx := context.Background()
	l.host.SetHostAddressing(netmodel.HostAddressing{Addrs: []netip.Prefix{netip.MustParsePrefix("192.0.2.9/24")}})
	l.network("blue", "10.7.0.0/24")
	vip := func(addr string, port int) api.Policy {
		return api.Policy{Type: api.PortMapping, Settings: json.RawMessage(`{"Protocol":6,"ExternalPort":` + fmt.Sprint(port) + `,"InternalPort":80,"VIP":"` + addr + `"}`)}
	}
	ep, _ := l.attached("blue", "web", vip("192.0.2.9", 8080))
	l.check()

	_, err := l.svc.CreateEndpoint(ctx, api.Endpoint{Name: "other", HostComputeNetwork: "blue", HostComputeNamespace: fixedID("web-ns"), Policies: []api.Policy{vip("192.0.2.10", 8081)}})
	refused(t, "publishing on an address the host lacks", err, http.StatusBadRequest, "192.0.2.10 is not an address of the host")

	l.host.SetHostAddressing(netmodel.HostAddressing{})
	logged := l.restart()
	if strings.Contains(logged, "level=ERROR") || strings.Contains(logged, "in use") {
		t.Errorf("the start logged an error or a port in use:\n%s", logged)
	}
	if !strings.Contains(logged, "level=WARN") || !strings.Contains(logged, "192.0.2.9 is not an address of the host") {
		t.Errorf("the start did not warn about the address:\n%s", logged)
	}
	rep, err := l.svc.Check(ctx)
	l.must(err)
	found := false
	for _, p := range rep.Problems {
		found = found || (p.ID == ep.ID && strings.Contains(p.Problem, "192.0.2.9 is not an address of the host"))
	}
	if !found {
		t.Errorf("doctor does not name the endpoint: %+v", rep.Problems)
	}

	// The address comes back: the next pass holds the port.
	l.host.SetHostAddressing(netmodel.HostAddressing{Addrs: []netip.Prefix{netip.MustParsePrefix("192.0.2.9/24")}})
	if _, err := l.svc.Repair(ctx, "test"); err != nil {
		t.Fatal(err)
	}
	l.check()
}

// Endpoints the kernel would refuse, or that would be stored and never
// work, are a 400 naming the field, and nothing is stored or made:
//   - F13: an OutBoundNAT VirtualIP of a family the endpoint has no
//     address of, also when the addresses come from the pool;
//   - found by the API fuzzer: a route (Routes, or an SDNRoute policy
//     added later) whose next hop is on none of the endpoint's subnets
//     answered 500 ("Nexthop has invalid gateway").
func TestEndpointsRefusedBeforeTheKernel(t *testing.T) {
	l, ctx := blueLab(t)
	_, ns := l.attached("blue", "web")
	sdnRoute := func(nextHop string) api.ModifyRequest {
		return api.ModifyRequest{ResourceType: api.ResourcePolicy, RequestType: api.RequestAdd,
			Settings: json.RawMessage(`{"Policies":[{"Type":"SDNRoute","Settings":{"DestinationPrefix":"192.0.2.0/24","NextHop":"` + nextHop + `"}}]}`)}
	}
	before := l.state()
	for _, c := range []struct {
		what  string
		do    func() error
		parts []string
	}{
		{"an IPv6 VirtualIP on an endpoint of an IPv4 network", func() error {
			_, err := l.svc.CreateEndpoint(ctx, api.Endpoint{Name: "e", HostComputeNetwork: "blue",
				Policies: []api.Policy{{Type: api.OutBoundNAT, Settings: json.RawMessage(`{"VirtualIP":"2001:db8::1"}`)}}})
			return err
		}, []string{"VirtualIP", "2001:db8::1"}},
		{"a next hop off the subnets", func() error {
			_, err := l.svc.CreateEndpoint(ctx, api.Endpoint{Name: "e", HostComputeNetwork: "blue", HostComputeNamespace: ns.ID,
				Routes: []api.Route{{DestinationPrefix: "10.0.0.0/31", NextHop: "198.51.100.1"}}})
			return err
		}, []string{"Routes[0].NextHop: 198.51.100.1 is on none of the endpoint's subnets (10.7.0.0/24)"}},
		{"an SDNRoute with a next hop off the subnets", func() error {
			_, err := l.svc.ModifyEndpoint(ctx, "web", sdnRoute("10.8.0.1"))
			return err
		}, []string{"Policies[0].Settings.NextHop", "10.8.0.1"}},
	} {
		refused(t, c.what, c.do(), http.StatusBadRequest, c.parts...)
		l.unchanged(c.what, before)
	}
	// On the subnet, it is made.
	_, err := l.svc.ModifyEndpoint(ctx, "web", sdnRoute("10.7.0.254"))
	l.must(err)
	l.check()
}

// Found by the API fuzzer: two endpoints of one namespace that want the
// same route (and metric) were both accepted; a restart then failed one,
// and the first to go would have taken the route from the other. The
// second is refused, naming the first.
func TestEndpointsOfANamespaceShareNoRoute(t *testing.T) {
	l, ctx := blueLab(t)
	l.network("green", "10.8.0.0/24")
	route := []api.Route{{DestinationPrefix: "192.0.2.0/24"}}
	ns, err := l.svc.CreateNamespace(ctx, api.Namespace{ID: fixedID("two-ns"), Name: "two"})
	l.must(err)
	_, err = l.svc.CreateEndpoint(ctx, api.Endpoint{Name: "a", HostComputeNetwork: "blue", HostComputeNamespace: ns.ID, Routes: route})
	l.must(err)
	before := l.state()
	_, err = l.svc.CreateEndpoint(ctx, api.Endpoint{Name: "b", HostComputeNetwork: "green", HostComputeNamespace: ns.ID, Routes: route})
	refused(t, "a second endpoint with the same route in the namespace", err, http.StatusConflict, "192.0.2.0/24", "for endpoint a")
	l.unchanged("the refused endpoint", before)
	// Another endpoint of the namespace without that route is fine.
	_, err = l.svc.CreateEndpoint(ctx, api.Endpoint{Name: "c", HostComputeNetwork: "green", HostComputeNamespace: ns.ID})
	l.must(err)
	l.check()
	l.restart()
	l.check()
}

// labState is the lab's host and records at one moment.
type labState struct{ host, records string }

func (l *lab) state() labState { return labState{l.dump(), records(l.t, l.st)} }

// unchanged fails the test when the host or the records differ from was.
func (l *lab) unchanged(what string, was labState) {
	l.t.Helper()
	now := l.state()
	if now.host != was.host {
		l.t.Errorf("%s changed the host:\n%s\nwas\n%s", what, now.host, was.host)
	}
	if now.records != was.records {
		l.t.Errorf("%s changed the records:\n%s\nwere\n%s", what, now.records, was.records)
	}
}

// refused fails the test unless err is an API error of status whose
// message holds every part.
func refused(t *testing.T, what string, err error, status int, parts ...string) {
	t.Helper()
	e := api.AsError(err)
	ok := e != nil && e.Status == status
	for _, p := range parts {
		ok = ok && strings.Contains(e.Message, p)
	}
	if !ok {
		t.Errorf("%s: %v, want a %d naming %q", what, err, status, parts)
	}
}
