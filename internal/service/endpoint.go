package service

import (
	"context"
	"errors"
	"fmt"
	"net/netip"

	"github.com/google/uuid"
	"github.com/hostnet/hostnet/api"
	"github.com/hostnet/hostnet/internal/ipam"
	"github.com/hostnet/hostnet/internal/netmodel"
	"github.com/hostnet/hostnet/internal/store"
)

// checkEndpoint validates an endpoint document on its own and returns its
// parsed form and policies.
func checkEndpoint(e *api.Endpoint) (*api.EndpointSpec, *api.EndpointPolicies, error) {
	spec, err := api.ParseEndpoint(e)
	if err != nil {
		return nil, nil, err
	}
	ps := spec.Parsed
	e.Policies = spec.Policies // with their types resolved to names
	if e.Flags&api.EndpointRemote != 0 {
		return nil, nil, api.Unsupported("invalid endpoint: field Flags: RemoteEndpoint (1) describes an endpoint of another host, which only Overlay and L2Bridge networks have; this build supports NAT networks")
	}
	return spec, ps, nil
}

// CreateEndpoint validates e, takes its addresses and MAC from its
// network's pools (or reserves the static ones it asks for) and stores it.
// The endpoint's NIC is made when it is attached to a namespace: at once
// when e names one in HostComputeNamespace (one request, one transaction),
// else by a later modify request to a namespace.
func (s *Service) CreateEndpoint(ctx context.Context, e api.Endpoint) (*api.Endpoint, error) {
	ep, created, err := s.createEndpoint(ctx, e)
	if err != nil || !created {
		return ep, err
	}
	// An endpoint attached at once whose address comes from DHCP: the
	// request answers once it has its lease, or fails leaving nothing.
	leased, err := s.leaseOnAttach(ctx, ep.ID, func(ctx context.Context) error { return s.DeleteEndpoint(ctx, ep.ID) })
	if err != nil {
		return nil, err
	}
	if leased != nil {
		return leased, nil
	}
	return ep, nil
}

// createEndpoint is CreateEndpoint but for the DHCP lease; created says
// the request made the endpoint (rather than answer a retried one).
func (s *Service) createEndpoint(ctx context.Context, e api.Endpoint) (*api.Endpoint, bool, error) {
	spec, policies, err := checkEndpoint(&e)
	if err != nil {
		return nil, false, err
	}
	if e.HostComputeNetwork == "" {
		return nil, false, api.Invalid(api.CodeInvalidEndpoint, "invalid endpoint: field HostComputeNetwork: required (the ID or name of a network)")
	}
	if e.ID, err = normalizeID("endpoint", e.ID); err != nil {
		return nil, false, err
	}
	if e.SchemaVersion == (api.SchemaVersion{}) {
		e.SchemaVersion = api.SchemaVersion{Major: 2, Minor: 0}
	}
	nsRef, nsPath := e.HostComputeNamespace, e.NetNamespacePath
	e.HostComputeNamespace, e.NetNamespacePath = "", ""
	var nsID netmodel.NSID
	if nsPath != "" {
		if nsID, err = s.wrappable(ctx, "invalid endpoint", nsPath); err != nil {
			return nil, false, err
		}
	}

	s.mu.Lock()
	defer s.mu.Unlock()
	var existing *api.Endpoint
	var rec endpointRecord
	m := &mutation{}
	err = s.mutate(ctx, m, func(tx store.Tx, m *mutation) error {
		var nrec networkRecord
		netID, err := lookup(tx, store.Networks, "network", e.HostComputeNetwork, &nrec)
		if api.IsNotFound(err) {
			return api.Invalid(api.CodeInvalidEndpoint, "invalid endpoint: field HostComputeNetwork: network %q not found", e.HostComputeNetwork)
		}
		if err != nil {
			return err
		}
		// A retried create (same ID, same name and network) is answered
		// with what the first one made.
		var old endpointRecord
		if err := store.GetJSON(tx, store.Endpoints, e.ID, &old); err == nil {
			if old.Doc.Name != e.Name || old.Doc.HostComputeNetwork != netID {
				return api.Conflict(api.CodeObjectAlreadyExists, "an endpoint with ID %s already exists (named %q, on network %s)",
					e.ID, old.Doc.Name, old.Doc.HostComputeNetwork)
			}
			existing = &old.Doc
			return nil
		} else if !errors.Is(err, store.ErrNotFound) {
			return err
		}
		ep := e
		ep.HostComputeNetwork = netID
		pn, err := parseStored(&nrec.Doc)
		if err != nil {
			return err
		}
		drv, err := s.driverFor(pn)
		if err != nil {
			return err
		}
		if err := checkEndpointPolicies("invalid endpoint", drv, ep.Policies); err != nil {
			return err
		}
		if err := checkSetReferences("invalid endpoint", pn, ep.Policies); err != nil {
			return err
		}
		if err := s.checkDHCP(drv, pn, &ep, spec); err != nil {
			return err
		}
		ep.HostInterfaceName = drv.EndpointDevice(ep.ID)
		if err := claimName(tx, "endpoint", ep.Name, ep.ID); err != nil {
			return err
		}
		if err := allocate(tx, &ep, spec, pn); err != nil {
			return err
		}
		if err := checkNextHopsOf("invalid endpoint", ep.Routes, ep.Policies, endpointAddrs(&ep)); err != nil {
			return err
		}
		if err := claimPorts(tx, ep.ID, policies.Mappings); err != nil {
			return err
		}
		rec = endpointRecord{Doc: ep}
		owners := []netmodel.Owner{netmodel.EndpointOwner(ep.ID)}
		var ns *namespaceRecord
		if nsRef != "" {
			if ns, err = namespaceToAttach(tx, nsRef, nsPath, nsID); err != nil {
				return err
			}
			owners = append(owners, netmodel.NamespaceOwner(ns.Doc.ID))
		}
		if err := m.touch(owners...); err != nil {
			return err
		}
		if ns != nil {
			if err := putNamespace(tx, ns); err != nil {
				return err
			}
			if err := linkToNamespace(tx, &rec, ns); err != nil {
				return err
			}
		}
		m.undo = func(tx store.Tx) error { return forgetEndpoint(tx, &rec, pn) }
		return store.PutJSON(tx, store.Endpoints, ep.ID, rec)
	})
	if err != nil {
		return nil, false, internal(err, "create endpoint %q", e.Name)
	}
	if existing != nil {
		return existing, false, nil
	}
	s.log.Info("endpoint created", "endpoint", rec.Doc.Name, "id", rec.Doc.ID, "network", rec.Doc.HostComputeNetwork,
		"addresses", rec.Doc.IpConfigurations, "mac", rec.Doc.MacAddress)
	s.logAttach(&rec, m)
	return &rec.Doc, true, nil
}

// logAttach logs an attach, with where its time went.
func (s *Service) logAttach(ep *endpointRecord, m *mutation) {
	if ep.Doc.HostComputeNamespace == "" {
		return
	}
	s.log.Info("endpoint attached", "endpoint", displayName(ep.Doc.Name, ep.Doc.ID), "namespace", ep.Doc.HostComputeNamespace,
		"interface", ep.Doc.InterfaceName, "prepare", m.prepare, "commit", m.commit, "kernel", m.kernel)
}

// namespaceToAttach returns, inside tx, the namespace a new endpoint is
// attached to: ref, which must wrap path when path is given; or, when no
// namespace is named ref and path is given, a new one named ref wrapping
// path, which goes with its last endpoint.
func namespaceToAttach(tx store.Tx, ref, path string, id netmodel.NSID) (*namespaceRecord, error) {
	var ns namespaceRecord
	_, err := lookup(tx, store.Namespaces, "namespace", ref, &ns)
	switch {
	case err == nil && path != "" && ns.Doc.NetNamespacePath != path:
		return nil, api.Conflict(api.CodeObjectAlreadyExists, "invalid endpoint: field NetNamespacePath: namespace %q wraps %s, not %s",
			ref, ns.Doc.NetNamespacePath, path)
	case err == nil:
		return &ns, nil
	case !api.IsNotFound(err):
		return nil, err
	case path == "":
		return nil, api.Invalid(api.CodeInvalidEndpoint, "invalid endpoint: field HostComputeNamespace: namespace %q not found", ref)
	}
	ns = namespaceRecord{Doc: api.Namespace{ID: uuid.NewString(), Name: ref, NetNamespacePath: path, Implicit: true,
		SchemaVersion: api.SchemaVersion{Major: 2, Minor: 0}}, Identity: id}
	if err := api.ParseNamespace(&api.Namespace{Name: ref, NetNamespacePath: path}); err != nil {
		return nil, err
	}
	if err := claimName(tx, "namespace", ref, ns.Doc.ID); err != nil {
		return nil, err
	}
	return &ns, nil
}

func putNamespace(tx store.Tx, ns *namespaceRecord) error {
	return store.PutJSON(tx, store.Namespaces, ns.Doc.ID, ns)
}

// forgetEndpoint removes an endpoint from the store inside tx: its record,
// name, addresses, MAC and place in its namespace.
func forgetEndpoint(tx store.Tx, rec *endpointRecord, pn *parsedNetwork) error {
	if err := dropPorts(tx, endpointPoliciesOf(&rec.Doc).Mappings); err != nil {
		return err
	}
	if err := dropFromRoutes(tx, rec.Doc.ID); err != nil {
		return err
	}
	if rec.Doc.HostComputeNamespace != "" {
		if _, err := unlinkFromNamespace(tx, rec); err != nil {
			return err
		}
	}
	if err := release(tx, &rec.Doc, pn); err != nil {
		return err
	}
	if err := dropName(tx, "endpoint", rec.Doc.Name); err != nil {
		return err
	}
	return tx.Delete(store.Endpoints, rec.Doc.ID)
}

// allocate fills e's addresses and MAC inside tx: the static ones it asked
// for are reserved, and every subnet it has no static address in gives it
// one from its pool.
func allocate(tx store.Tx, e *api.Endpoint, spec *api.EndpointSpec, pn *parsedNetwork) error {
	pools := pn.pools()
	if usesDHCP(e, pn) {
		pools = nil // its address is the DHCP server's to give
	}
	covered := make([]bool, len(pools))
	var configs []api.IPConfig
	var allocated []netip.Prefix // every address, static or from a pool
	for i, a := range spec.Addrs {
		field := fmt.Sprintf("IpConfigurations[%d]", i)
		k := -1
		for j, p := range pools {
			if p.Subnet.Contains(a.Addr()) {
				k = j
			}
		}
		if k < 0 {
			return api.Invalid(api.CodeInvalidIP, "invalid endpoint: field %s.IpAddress: %s is outside the subnets of network %q (%s)",
				field, a.Addr(), displayName(pn.doc.Name, pn.doc.ID), subnetList(pn))
		}
		if covered[k] {
			return api.Invalid(api.CodeInvalidIP, "invalid endpoint: field %s.IpAddress: a second address in subnet %s", field, pools[k].Subnet)
		}
		if a.Bits() != 0 && a.Bits() != pools[k].Subnet.Bits() {
			return api.Invalid(api.CodeInvalidIP, "invalid endpoint: field %s.PrefixLength: %d does not match subnet %s", field, a.Bits(), pools[k].Subnet)
		}
		if err := pools[k].Reserve(tx, a.Addr(), e.ID); err != nil {
			return addressError(tx, field+".IpAddress", err)
		}
		covered[k] = true
		configs = append(configs, api.IPConfig{IpAddress: a.Addr().String(), PrefixLength: uint8(pools[k].Subnet.Bits())})
		allocated = append(allocated, netip.PrefixFrom(a.Addr(), pools[k].Subnet.Bits()))
	}
	for k, p := range pools {
		if covered[k] {
			continue
		}
		a, err := p.Allocate(tx, e.ID)
		if errors.Is(err, ipam.ErrExhausted) {
			return api.Conflict(api.CodeAddressesExhausted, "network %q: no free address left in %v", displayName(pn.doc.Name, pn.doc.ID), err)
		}
		if err != nil {
			return err
		}
		configs = append(configs, api.IPConfig{IpAddress: a.String(), PrefixLength: uint8(p.Subnet.Bits())})
		allocated = append(allocated, netip.PrefixFrom(a, p.Subnet.Bits()))
	}
	e.IpConfigurations = configs
	if err := api.CheckVIPFamilies(e.Policies, allocated); err != nil {
		return err
	}

	var seed netip.Addr
	for _, c := range configs {
		if a, err := api.ParseAddr(c.IpAddress); err == nil && a.Is4() && !seed.IsValid() {
			seed = a
		}
	}
	mp := pn.macPool()
	if spec.MAC != nil {
		if err := mp.Reserve(tx, spec.MAC, e.ID); err != nil {
			return addressError(tx, "MacAddress", err)
		}
		e.MacAddress = api.FormatMAC(spec.MAC)
		return nil
	}
	mac, err := mp.Allocate(tx, e.ID, seed)
	if errors.Is(err, ipam.ErrExhausted) {
		return api.Conflict(api.CodeAddressesExhausted, "network %q: no free MAC address left: %v", displayName(pn.doc.Name, pn.doc.ID), err)
	}
	if err != nil {
		return err
	}
	e.MacAddress = api.FormatMAC(mac)
	return nil
}

func subnetList(pn *parsedNetwork) string {
	var s []string
	for _, sub := range pn.spec.Subnets {
		s = append(s, sub.Prefix.String())
	}
	return fmt.Sprint(s)
}

// addressError words an IPAM refusal for a field of the request, naming
// the endpoint that holds the address.
func addressError(tx store.Tx, field string, err error) error {
	var inUse *ipam.InUseError
	if errors.As(err, &inUse) {
		if inUse.Reason != "" {
			return api.Invalid(api.CodeInvalidIP, "invalid endpoint: field %s: %v", field, inUse)
		}
		holder := inUse.Owner
		var other endpointRecord
		if store.GetJSON(tx, store.Endpoints, holder, &other) == nil {
			holder = fmt.Sprintf("endpoint %q (%s)", displayName(other.Doc.Name, holder), holder)
		}
		return api.Conflict(api.CodeObjectAlreadyExists, "invalid endpoint: field %s: %s is already in use by %s", field, inUse.Addr, holder)
	}
	var out *ipam.OutOfRangeError
	if errors.As(err, &out) {
		return api.Invalid(api.CodeInvalidIP, "invalid endpoint: field %s: %v", field, err)
	}
	return err
}

// release returns e's addresses and MAC to their pools inside tx.
func release(tx store.Tx, e *api.Endpoint, pn *parsedNetwork) error {
	for _, a := range endpointAddrs(e) {
		for _, p := range pn.pools() {
			if p.Subnet.Contains(a.Addr()) {
				if err := p.Release(tx, a.Addr(), e.ID); err != nil {
					return err
				}
			}
		}
	}
	if mac, err := api.ParseMAC(e.MacAddress); err == nil {
		return pn.macPool().Release(tx, mac, e.ID)
	}
	return nil
}

// GetEndpoint returns an endpoint by ID or name.
func (s *Service) GetEndpoint(ctx context.Context, ref string) (*api.Endpoint, error) {
	var rec endpointRecord
	err := s.cfg.Store.View(func(tx store.Tx) error {
		_, err := lookup(tx, store.Endpoints, "endpoint", ref, &rec)
		return err
	})
	if err != nil {
		return nil, internal(err, "read endpoint %q", ref)
	}
	return &rec.Doc, nil
}

// ListEndpoints returns the endpoints that match the HNS filter document.
func (s *Service) ListEndpoints(ctx context.Context, filter string) ([]api.Endpoint, error) {
	f, err := parseFilter("endpoint", filter)
	if err != nil {
		return nil, err
	}
	out := []api.Endpoint{}
	err = s.cfg.Store.View(func(tx store.Tx) error {
		if err := f.resolveNetworkName(tx); err != nil {
			return err
		}
		eps, err := listEndpoints(tx)
		for _, e := range eps {
			if f.matchEndpoint(&e.Doc) {
				out = append(out, e.Doc)
			}
		}
		return err
	})
	if err != nil {
		return nil, internal(err, "list endpoints")
	}
	return out, nil
}

// DeleteEndpoint removes an endpoint, detaching it first if it is attached,
// and returns its addresses to the pools.
func (s *Service) DeleteEndpoint(ctx context.Context, ref string) error {
	s.stopLeasing(ctx, s.attachedTo(store.Endpoints, "endpoint", ref)...)
	s.mu.Lock()
	defer s.mu.Unlock()
	var rec endpointRecord
	err := s.mutate(ctx, &mutation{}, func(tx store.Tx, m *mutation) error {
		m.bestEffort = true
		id, err := lookup(tx, store.Endpoints, "endpoint", ref, &rec)
		if err != nil {
			return err
		}
		owners := []netmodel.Owner{netmodel.EndpointOwner(id)}
		if rec.Doc.HostComputeNamespace != "" {
			owners = append(owners, netmodel.NamespaceOwner(rec.Doc.HostComputeNamespace))
		}
		if err := m.touch(owners...); err != nil {
			return err
		}
		pn, err := networkOf(tx, &rec.Doc)
		if err != nil {
			return err
		}
		return forgetEndpoint(tx, &rec, pn)
	})
	if err != nil {
		return internal(err, "delete endpoint %q", ref)
	}
	s.log.Info("endpoint deleted", "endpoint", rec.Doc.Name, "id", rec.Doc.ID)
	return nil
}

// ModifyEndpoint changes an endpoint's policies. An attached endpoint's
// filters, published ports and routes follow at once, and its tracked
// flows that the new policies deny end (before the answer for a published
// port that goes, as nothing else stops them).
func (s *Service) ModifyEndpoint(ctx context.Context, ref string, req api.ModifyRequest) (*api.Endpoint, error) {
	if err := api.ResolveModify("endpoint", &req); err != nil {
		return nil, err
	}
	if req.ResourceType != api.ResourcePolicy {
		return nil, api.Unsupported("endpoint modify request: ResourceType %s is not supported on Linux", req.ResourceType)
	}
	var pr api.PolicyRequest
	if err := api.DecodeSettings(req.Settings, &pr); err != nil {
		return nil, api.Invalid(api.CodeInvalidPolicy, "invalid endpoint modify request: field Settings: %v", err)
	}
	for i := range pr.Policies {
		pr.Policies[i].Type = api.ResolveEndpointPolicyType(pr.Policies[i].Type)
	}
	// The request's own policies are checked first, alone, so that an
	// error names the request's index, not the merged list's.
	if _, _, err := checkEndpoint(&api.Endpoint{Policies: pr.Policies}); err != nil {
		return nil, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	var rec endpointRecord
	err := s.mutate(ctx, &mutation{}, func(tx store.Tx, m *mutation) error {
		if _, err := lookup(tx, store.Endpoints, "endpoint", ref, &rec); err != nil {
			return err
		}
		old := rec
		// What depends on the endpoint's addresses, checked on the
		// request's policies alone for the same reason.
		if err := api.CheckVIPFamilies(pr.Policies, endpointAddrs(&rec.Doc)); err != nil {
			return inRequestTerms(err, "endpoint", nil, pr.Policies, nil)
		}
		if err := checkNextHopsOf("invalid endpoint modify request", nil, pr.Policies, endpointAddrs(&rec.Doc)); err != nil {
			return err
		}
		probe := rec.Doc
		var from []int
		probe.Policies, from = mergePolicies(rec.Doc.Policies, req.RequestType, pr.Policies)
		probe.HostComputeNamespace, probe.HostInterfaceName, probe.NetNamespacePath = "", "", ""
		_, newPolicies, err := checkEndpoint(&probe)
		if err != nil {
			// What only the merged list shows (a host port the
			// endpoint publishes already, a second OutBoundNAT).
			return inRequestTerms(err, "endpoint", from, pr.Policies, rec.Doc.Policies)
		}
		// A Remove may name a set the network no longer has: the rule
		// that names it is on its way out.
		if err := s.checkPoliciesOfNetwork(tx, rec.Doc.HostComputeNetwork, pr.Policies, req.RequestType != api.RequestRemove); err != nil {
			return err
		}
		if err := m.touch(netmodel.EndpointOwner(rec.Doc.ID)); err != nil {
			return err
		}
		rec.Doc.Policies = probe.Policies
		oldMappings := endpointPoliciesOf(&old.Doc).Mappings
		if err := dropPorts(tx, oldMappings); err != nil {
			return err
		}
		if err := claimPorts(tx, rec.Doc.ID, newPolicies.Mappings); err != nil {
			return err
		}
		m.undo = func(tx store.Tx) error {
			if err := dropPorts(tx, newPolicies.Mappings); err != nil {
				return err
			}
			if err := claimPorts(tx, old.Doc.ID, oldMappings); err != nil {
				return err
			}
			return store.PutJSON(tx, store.Endpoints, old.Doc.ID, old)
		}
		return store.PutJSON(tx, store.Endpoints, rec.Doc.ID, rec)
	})
	if err != nil {
		return nil, internal(err, "modify endpoint %q", ref)
	}
	return &rec.Doc, nil
}

// checkPoliciesOfNetwork refuses policies that the type of network netID
// does not take on its endpoints and, when sets is set, rules that name an
// IP set the network does not have.
func (s *Service) checkPoliciesOfNetwork(tx store.Tx, netID string, policies []api.Policy, sets bool) error {
	var nrec networkRecord
	if err := store.GetJSON(tx, store.Networks, netID, &nrec); err != nil {
		return nil // the endpoint's network is gone: nothing to check against
	}
	pn, err := parseStored(&nrec.Doc)
	if err != nil {
		return nil
	}
	drv, err := s.driverFor(pn)
	if err != nil {
		return nil
	}
	if err := checkEndpointPolicies("invalid endpoint modify request", drv, policies); err != nil {
		return err
	}
	if !sets {
		return nil
	}
	return checkSetReferences("invalid endpoint modify request", pn, policies)
}

// endpointPoliciesOf parses a stored endpoint's policies (none when they do
// not parse: see quarantined).
func endpointPoliciesOf(e *api.Endpoint) *api.EndpointPolicies {
	ps, err := api.ParseEndpointPolicies("stored endpoint "+e.ID, e.Policies)
	if err != nil {
		return &api.EndpointPolicies{}
	}
	return ps
}
