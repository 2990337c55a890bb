package service

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"time"

	"github.com/hostnet/hostnet/api"
	"github.com/hostnet/hostnet/internal/driver"
	"github.com/hostnet/hostnet/internal/netmodel"
	"github.com/hostnet/hostnet/internal/store"
)

// Endpoints whose address comes from DHCP: those of a network of Ipams
// Type DHCP, on a driver that takes them (driver.DHCPEndpoints); the
// EnableDhcp flag is accepted there (and refused elsewhere). The service decides and records; the
// daemon's DHCP clients (Config.DHCP) run beside it and talk to the
// servers:
//
//   - attach: the NIC is made without an address; then the attach waits
//     (Config.DHCPTimeout) for the client's first lease, which RecordLease
//     records in the endpoint (DhcpLease, and its IpConfigurations); the
//     plan takes the address and the default route from the record and
//     the reconciler applies them. No lease in time: the attach is undone
//     (the endpoint detached, or deleted when the request created it) and
//     answered 504.
//   - renewals and a lost lease are recorded by RecordLease as they come.
//   - detach and delete stop the client after it released the lease,
//     while the interface still has the address.
//   - a restart keeps the records, so the address stays on the interface;
//     KeepLeases then starts a client per endpoint from its stored lease,
//     which renews it at T1 rather than asking for an address again.

// DHCPTarget is an attached endpoint whose address a DHCP client keeps.
type DHCPTarget struct {
	EndpointID string
	NSPath     string // its network namespace
	Interface  string // its device there
	Hostname   string // sent to the server (the endpoint's name)
	// Lease is the lease stored, nil when it holds none.
	Lease *api.DhcpLease
}

// DHCP runs the endpoints' DHCP clients: the daemon's runtime component
// (internal/leases), which reports the leases it obtains through
// RecordLease.
type DHCP interface {
	// Acquire starts t's client and waits until it holds a lease or ctx
	// ends; the client then runs on (renewing) until Stop. On failure no
	// client is left.
	Acquire(ctx context.Context, t DHCPTarget) (*api.DhcpLease, error)
	// Keep makes the running clients those of ts: the others stop
	// without releasing, the missing ones start from their stored lease.
	Keep(ts []DHCPTarget)
	// Stop stops an endpoint's client, releasing its lease first when
	// release is set.
	Stop(ctx context.Context, endpointID string, release bool)
}

// DefaultDHCPTimeout is how long an attach waits for a DHCP lease when
// Config.DHCPTimeout is zero: a server answers in milliseconds, and the
// client retransmits after 4 s, then 8 s.
const DefaultDHCPTimeout = 15 * time.Second

// errNotLeasing says a lease was reported for an endpoint that is no
// longer attached where its client runs.
var errNotLeasing = errors.New("the endpoint is no longer attached where its dhcp client runs")

// usesDHCP reports whether an endpoint's address comes from DHCP.
func usesDHCP(e *api.Endpoint, pn *parsedNetwork) bool {
	return pn.spec.DHCP || e.Flags&api.EndpointEnableDHCP != 0
}

// checkDHCP checks a new endpoint of pn that asks for DHCP (itself or by
// its network): its driver must take it, and it asks for no address.
func (s *Service) checkDHCP(drv driver.Driver, pn *parsedNetwork, e *api.Endpoint, spec *api.EndpointSpec) error {
	e.DhcpLease = nil // read-only: only a server grants one
	if !usesDHCP(e, pn) {
		return nil
	}
	if d, ok := drv.(driver.DHCPEndpoints); !ok || !d.DHCPEndpoints() {
		return api.Invalid(api.CodeInvalidEndpoint, "invalid endpoint: field Flags: EnableDhcp (32): the endpoints of %s networks take static addresses (DHCP is for Transparent networks)", pn.spec.Type)
	}
	if !pn.spec.DHCP {
		// Its address would come from a server that hands out the same
		// subnet as the network's pools: the two would clash.
		return api.Invalid(api.CodeInvalidEndpoint, "invalid endpoint: field Flags: EnableDhcp (32): network %q has static subnets; DHCP endpoints go on a network of Ipams Type DHCP",
			displayName(pn.doc.Name, pn.doc.ID))
	}
	if s.cfg.DHCP == nil {
		return api.Unsupported("invalid endpoint: field Flags: EnableDhcp (32): this daemon runs no DHCP clients")
	}
	if len(spec.Addrs) > 0 {
		return api.Invalid(api.CodeInvalidIP, "invalid endpoint: field IpConfigurations: the endpoint's address comes from DHCP; give none")
	}
	return nil
}

// dhcpTarget is an attached endpoint as its client sees it.
func dhcpTarget(e *api.Endpoint) DHCPTarget {
	return DHCPTarget{EndpointID: e.ID, NSPath: e.NetNamespacePath, Interface: e.InterfaceName, Hostname: e.Name, Lease: e.DhcpLease}
}

// leaseRoutes are the routes a lease gives an endpoint: a default route
// through its gateway, with the metric of a subnet's, unless the endpoint
// has one of its own.
func leaseRoutes(e *api.Endpoint, own []api.RouteSpec) []api.RouteSpec {
	if e.DhcpLease == nil || e.DhcpLease.Gateway == "" {
		return nil
	}
	gw, err := netip.ParseAddr(e.DhcpLease.Gateway)
	if err != nil || !gw.Is4() {
		return nil
	}
	for _, r := range own {
		if r.Dst.Bits() == 0 && r.Dst.Addr().Is4() {
			return nil
		}
	}
	metric := driver.DefaultRouteMetric(e.InterfaceName, e.Flags&api.EndpointEnableLowInterfaceMetric != 0)
	return []api.RouteSpec{{Dst: netip.PrefixFrom(netip.IPv4Unspecified(), 0), NextHop: gw, Metric: uint32(metric)}}
}

// leaseDNS is d with the DNS servers (and, when d has none, the domain) of
// a lease; d when there is no lease.
func leaseDNS(l *api.DhcpLease, d api.DNSSpec) api.DNSSpec {
	if l == nil {
		return d
	}
	for _, s := range l.DnsServers {
		if a, err := netip.ParseAddr(s); err == nil {
			d.Servers = append(d.Servers, a)
		}
	}
	// (A lease recorded by an older build may hold a domain no document
	// could: it stays out of resolv.conf.)
	if d.Domain == "" && len(d.Search) == 0 && len(d.Servers) > 0 && api.CheckDNSName(l.Domain) == nil {
		d.Domain = l.Domain
	}
	return d
}

// leaseConfig is the address a lease gives an endpoint.
func leaseConfig(l *api.DhcpLease) []api.IPConfig {
	if l == nil {
		return nil
	}
	return []api.IPConfig{{IpAddress: l.IpAddress, PrefixLength: l.PrefixLength}}
}

// RecordLease records the lease of an attached endpoint's DHCP client (nil:
// it holds none any more); the endpoint's address and default route
// follow it, through its plan. A lease for an endpoint no longer attached
// where the client runs is refused.
func (s *Service) RecordLease(ctx context.Context, t DHCPTarget, l *api.DhcpLease) (*api.Endpoint, error) {
	if l != nil {
		a, err := api.ParseAddr(l.IpAddress)
		if err != nil || !a.Is4() || l.PrefixLength > 32 {
			return nil, fmt.Errorf("dhcp lease of endpoint %s: address %s/%d is not IPv4", t.EndpointID, l.IpAddress, l.PrefixLength)
		}
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	var rec endpointRecord
	err := s.mutate(ctx, &mutation{}, func(tx store.Tx, m *mutation) error {
		if err := store.GetJSON(tx, store.Endpoints, t.EndpointID, &rec); errors.Is(err, store.ErrNotFound) {
			return errNotLeasing
		} else if err != nil {
			return err
		}
		e := &rec.Doc
		if e.HostComputeNamespace == "" || e.NetNamespacePath != t.NSPath || e.InterfaceName != t.Interface {
			return errNotLeasing
		}
		if sameJSON(e.DhcpLease, l) {
			return nil
		}
		// The namespace too: its resolv.conf may take the lease's DNS.
		if err := m.touch(netmodel.EndpointOwner(e.ID), netmodel.NamespaceOwner(e.HostComputeNamespace)); err != nil {
			return err
		}
		old := rec
		e.DhcpLease, e.IpConfigurations = l, leaseConfig(l)
		m.undo = func(tx store.Tx) error { return store.PutJSON(tx, store.Endpoints, old.Doc.ID, old) }
		return store.PutJSON(tx, store.Endpoints, e.ID, rec)
	})
	if err != nil {
		return nil, internal(err, "record the dhcp lease of endpoint %s", t.EndpointID)
	}
	return &rec.Doc, nil
}

// leaseOnAttach gets the first lease of an endpoint just attached, if its
// address comes from DHCP, and records it. Without a lease in time, undo
// takes the attach back and the error says why. It returns the endpoint
// as recorded (nil when it takes no DHCP). The caller holds no lock: the
// wait takes seconds, and the client reports through RecordLease.
func (s *Service) leaseOnAttach(ctx context.Context, epID string, undo func(context.Context) error) (*api.Endpoint, error) {
	var t DHCPTarget
	var network string
	dhcp := false
	err := s.cfg.Store.View(func(tx store.Tx) error {
		var rec endpointRecord
		if err := store.GetJSON(tx, store.Endpoints, epID, &rec); err != nil {
			return err
		}
		pn, err := networkOf(tx, &rec.Doc)
		if err != nil {
			return err
		}
		dhcp, t, network = usesDHCP(&rec.Doc, pn) && rec.Doc.HostComputeNamespace != "", dhcpTarget(&rec.Doc), displayName(pn.doc.Name, pn.doc.ID)
		return nil
	})
	if err != nil || !dhcp {
		return nil, nil // gone meanwhile, or not DHCP's
	}
	fail := func(err error) (*api.Endpoint, error) {
		if uerr := undo(context.WithoutCancel(ctx)); uerr != nil {
			s.log.Error("taking back the attach of an endpoint without a dhcp lease failed", "endpoint", epID, "err", uerr)
		}
		return nil, err
	}
	if s.cfg.DHCP == nil {
		return fail(api.Unsupported("endpoint %s: its address comes from DHCP, and this daemon runs no DHCP clients", epID))
	}
	wait := s.cfg.DHCPTimeout
	if wait <= 0 {
		wait = DefaultDHCPTimeout
	}
	actx, cancel := context.WithTimeout(ctx, wait)
	defer cancel()
	start := time.Now()
	t.Lease = nil
	l, err := s.cfg.DHCP.Acquire(actx, t)
	if err != nil {
		return fail(api.NoLease("endpoint %q attached as %s: no DHCP lease within %s (no DHCP server of network %q answered on its segment); the attach is taken back: %v",
			displayName(t.Hostname, epID), t.Interface, wait, network, err))
	}
	ep, err := s.RecordLease(ctx, t, l)
	if err != nil {
		s.cfg.DHCP.Stop(context.WithoutCancel(ctx), epID, true)
		return fail(err)
	}
	s.log.Info("dhcp lease obtained", "endpoint", displayName(ep.Name, ep.ID), "address", l.IpAddress, "server", l.Server,
		"gateway", l.Gateway, "expires", l.Expires, "took", time.Since(start))
	return ep, nil
}

// stopLeasing stops the DHCP clients of the endpoints, releasing their
// leases while their interfaces still have the addresses: before a detach
// or a deletion. The caller holds no lock (a client may be recording).
func (s *Service) stopLeasing(ctx context.Context, epIDs ...string) {
	if s.cfg.DHCP == nil {
		return
	}
	for _, id := range epIDs {
		s.cfg.DHCP.Stop(ctx, id, true)
	}
}

// KeepLeases makes the daemon's DHCP clients those of the attached
// endpoints whose address comes from DHCP, each from its stored lease:
// after a start (the restarted daemon's clients renew what the records
// hold) and after a repair (the clients of endpoints it forgot stop). Call
// it without the service's lock.
func (s *Service) KeepLeases() error {
	if s.cfg.DHCP == nil {
		return nil
	}
	var ts []DHCPTarget
	err := s.cfg.Store.View(func(tx store.Tx) error {
		// The networks first: without a DHCP network (the common case)
		// the endpoints are not read, every repair pass.
		netRecs, err := listNetworks(tx)
		if err != nil {
			return err
		}
		nets := map[string]*parsedNetwork{}
		for i := range netRecs {
			if pn, err := parseStored(&netRecs[i].Doc); err == nil && pn.spec.DHCP {
				nets[pn.doc.ID] = pn
			}
		}
		if len(nets) == 0 {
			return nil
		}
		eps, err := listEndpoints(tx)
		if err != nil {
			return err
		}
		for i := range eps {
			e := &eps[i].Doc
			if pn := nets[e.HostComputeNetwork]; pn != nil && e.HostComputeNamespace != "" && usesDHCP(e, pn) {
				ts = append(ts, dhcpTarget(e))
			}
		}
		return nil
	})
	if err != nil {
		return internal(err, "read the store")
	}
	s.cfg.DHCP.Keep(ts)
	return nil
}

// attachedTo lists the endpoints ref names as attached: the endpoint
// itself (an endpoint reference), or a namespace's.
func (s *Service) attachedTo(bucket, kind, ref string) []string {
	var ids []string
	_ = s.cfg.Store.View(func(tx store.Tx) error {
		switch bucket {
		case store.Endpoints:
			var rec endpointRecord
			if id, err := lookup(tx, bucket, kind, ref, &rec); err == nil && rec.Doc.HostComputeNamespace != "" {
				ids = append(ids, id)
			}
		case store.Namespaces:
			var rec namespaceRecord
			if _, err := lookup(tx, bucket, kind, ref, &rec); err == nil {
				ids = attachedIDs(&rec.Doc)
			}
		}
		return nil
	})
	return ids
}
