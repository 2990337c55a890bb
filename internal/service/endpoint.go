package service

import (
	"errors"
	"fmt"
	"net/netip"

	"github.com/google/uuid"
	"github.com/hostnet/hostnet/api"
	"github.com/hostnet/hostnet/internal/dataplane/netns"
	"github.com/hostnet/hostnet/internal/driver"
	"github.com/hostnet/hostnet/internal/ipam"
	"github.com/hostnet/hostnet/internal/store"
)

// checkEndpoint validates an endpoint document on its own and returns its
// parsed form and policies.
func checkEndpoint(e *api.Endpoint) (*api.EndpointSpec, *endpointPolicies, error) {
	spec, err := api.ParseEndpoint(e)
	if err != nil {
		return nil, nil, err
	}
	ps, err := parseEndpointPolicies("invalid endpoint", spec.Policies)
	if err != nil {
		return nil, nil, err
	}
	e.Policies = spec.Policies // with their types resolved to names
	if e.Flags&api.EndpointRemote != 0 {
		return nil, nil, api.Unsupported("invalid endpoint: field Flags: RemoteEndpoint (1) describes an endpoint of another host, which only Overlay and L2Bridge networks have; this build supports NAT networks")
	}
	if e.Flags&api.EndpointEnableDHCP != 0 {
		return nil, nil, api.Unsupported("invalid endpoint: field Flags: EnableDhcp (32) is not supported by this build: hostnet assigns addresses itself")
	}
	return spec, ps, nil
}

// CreateEndpoint validates e, takes its addresses and MAC from its
// network's pools (or reserves the static ones it asks for) and stores it.
// The endpoint's NIC is made when it is attached to a namespace: at once
// when e names one in HostComputeNamespace (one request, one transaction),
// else by a later modify request to a namespace.
func (s *Service) CreateEndpoint(e api.Endpoint) (*api.Endpoint, error) {
	spec, policies, err := checkEndpoint(&e)
	if err != nil {
		return nil, err
	}
	if e.HostComputeNetwork == "" {
		return nil, api.Invalid(api.CodeInvalidEndpoint, "invalid endpoint: field HostComputeNetwork: required (the ID or name of a network)")
	}
	if e.ID, err = normalizeID("endpoint", e.ID); err != nil {
		return nil, err
	}
	if e.SchemaVersion == (api.SchemaVersion{}) {
		e.SchemaVersion = api.SchemaVersion{Major: 2, Minor: 0}
	}
	e.HostInterfaceName = driver.PortName(e.ID)
	nsRef, nsPath := e.HostComputeNamespace, e.NetNamespacePath
	e.HostComputeNamespace, e.NetNamespacePath = "", ""
	if nsPath != "" && !netns.IsNamespace(nsPath) {
		return nil, api.Invalid(api.CodeInvalidNamespace, "invalid endpoint: field NetNamespacePath: %q is not a network namespace", nsPath)
	}
	var nsBefore namespaceRecord

	s.mu.Lock()
	defer s.mu.Unlock()
	var existing *api.Endpoint
	var pn *parsedNetwork
	rec := endpointRecord{}
	unreserve := func() {}
	times, txErr, kernelErr := s.updateOverlapped(func(tx store.Tx) (func() error, error) {
		var nrec networkRecord
		netID, err := lookup(tx, store.Networks, "network", e.HostComputeNetwork, &nrec)
		if api.IsNotFound(err) {
			return nil, api.Invalid(api.CodeInvalidEndpoint, "invalid endpoint: field HostComputeNetwork: network %q not found", e.HostComputeNetwork)
		}
		if err != nil {
			return nil, err
		}
		// A retried create (same ID, same name and network) is answered
		// with what the first one made.
		var old endpointRecord
		if err := store.GetJSON(tx, store.Endpoints, e.ID, &old); err == nil {
			if old.Doc.Name != e.Name || old.Doc.HostComputeNetwork != netID {
				return nil, api.Conflict(api.CodeObjectAlreadyExists, "an endpoint with ID %s already exists (named %q, on network %s)",
					e.ID, old.Doc.Name, old.Doc.HostComputeNetwork)
			}
			existing = &old.Doc
			return nil, nil
		} else if !errors.Is(err, store.ErrNotFound) {
			return nil, err
		}
		e.HostComputeNetwork = netID
		if pn, err = parseStored(&nrec.Doc); err != nil {
			return nil, err
		}
		if err := claimName(tx, "endpoint", e.Name, e.ID); err != nil {
			return nil, err
		}
		if err := allocate(tx, &e, spec, pn); err != nil {
			return nil, err
		}
		if err := claimPorts(tx, e.ID, policies.mappings); err != nil {
			return nil, err
		}
		if unreserve, err = s.reservePorts(policies.mappings); err != nil {
			return nil, err
		}
		rec.Doc = e
		var step func() error
		if nsRef != "" {
			ns, err := namespaceToAttach(tx, nsRef, nsPath)
			if err != nil {
				return nil, err
			}
			nsBefore = *ns
			if err := linkToNamespace(tx, &rec, ns); err != nil {
				return nil, err
			}
			step = s.attachStep(tx, &rec, pn, ns)
		}
		return step, store.PutJSON(tx, store.Endpoints, e.ID, rec)
	})
	if err := s.settleAttach(txErr, kernelErr, times, &rec, pn, &nsBefore, func(tx store.Tx) error {
		return forgetEndpoint(tx, &rec, pn)
	}); err != nil {
		if txErr != nil || kernelErr != nil {
			unreserve()
		}
		return nil, internal(err, "create endpoint %q", e.Name)
	}
	if existing != nil {
		return existing, nil
	}
	s.log.Info("endpoint created", "endpoint", e.Name, "id", e.ID, "network", e.HostComputeNetwork, "addresses", e.IpConfigurations, "mac", e.MacAddress)
	return &rec.Doc, nil
}

// namespaceToAttach returns, inside tx, the namespace a new endpoint is
// attached to: ref, which must wrap path when path is given; or, when no
// namespace is named ref and path is given, a new one named ref wrapping
// path, which goes with its last endpoint.
func namespaceToAttach(tx store.Tx, ref, path string) (*namespaceRecord, error) {
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
		SchemaVersion: api.SchemaVersion{Major: 2, Minor: 0}}}
	if err := api.ParseNamespace(&api.Namespace{Name: ref, NetNamespacePath: path}); err != nil {
		return nil, err
	}
	if err := claimName(tx, "namespace", ref, ns.Doc.ID); err != nil {
		return nil, err
	}
	return &ns, store.PutJSON(tx, store.Namespaces, ns.Doc.ID, ns)
}

// forgetEndpoint removes an endpoint from the store inside tx: its record,
// name, addresses, MAC and place in its namespace.
func forgetEndpoint(tx store.Tx, rec *endpointRecord, pn *parsedNetwork) error {
	if err := dropPorts(tx, endpointPoliciesOf(&rec.Doc).mappings); err != nil {
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
	covered := make([]bool, len(pools))
	var configs []api.IPConfig
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
	}
	e.IpConfigurations = configs

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
func (s *Service) GetEndpoint(ref string) (*api.Endpoint, error) {
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
func (s *Service) ListEndpoints(filter string) ([]api.Endpoint, error) {
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
func (s *Service) DeleteEndpoint(ref string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	var rec endpointRecord
	var pn *parsedNetwork
	var ns *namespaceRecord
	err := s.cfg.Store.Update(func(tx store.Tx) error {
		id, err := lookup(tx, store.Endpoints, "endpoint", ref, &rec)
		if err != nil {
			return err
		}
		var nrec networkRecord
		if err := store.GetJSON(tx, store.Networks, rec.Doc.HostComputeNetwork, &nrec); err != nil {
			return fmt.Errorf("network %s of endpoint %s: %w", rec.Doc.HostComputeNetwork, id, err)
		}
		if pn, err = parseStored(&nrec.Doc); err != nil {
			return err
		}
		if rec.Doc.HostComputeNamespace != "" {
			ns = &namespaceRecord{}
			if err := store.GetJSON(tx, store.Namespaces, rec.Doc.HostComputeNamespace, ns); err != nil {
				return err
			}
			ns.Doc.Resources = withoutEndpoint(ns.Doc.Resources, id)
		}
		return forgetEndpoint(tx, &rec, pn)
	})
	if err != nil {
		return internal(err, "delete endpoint %q", ref)
	}
	if ns != nil {
		s.unrealiseAttachment(&rec, pn, ns)
	}
	s.releasePorts(endpointPoliciesOf(&rec.Doc).mappings)
	s.log.Info("endpoint deleted", "endpoint", rec.Doc.Name, "id", rec.Doc.ID)
	return nil
}

// ModifyEndpoint changes an endpoint's policies. An attached endpoint's
// filters, published ports and routes follow at once, and its tracked
// flows that the new policies deny end.
func (s *Service) ModifyEndpoint(ref string, req api.ModifyRequest) (*api.Endpoint, error) {
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
	s.mu.Lock()
	defer s.mu.Unlock()
	var rec endpointRecord
	if err := s.cfg.Store.View(func(tx store.Tx) error {
		_, err := lookup(tx, store.Endpoints, "endpoint", ref, &rec)
		return err
	}); err != nil {
		return nil, internal(err, "read endpoint %q", ref)
	}
	old := rec
	probe := rec.Doc
	probe.Policies = modifyPolicies(rec.Doc.Policies, req.RequestType, pr.Policies)
	probe.HostComputeNamespace, probe.HostInterfaceName, probe.NetNamespacePath = "", "", ""
	_, newPolicies, err := checkEndpoint(&probe)
	if err != nil {
		return nil, err
	}
	rec.Doc.Policies = probe.Policies
	oldMappings := endpointPoliciesOf(&old.Doc).mappings
	added, removed := diffMappings(oldMappings, newPolicies.mappings)
	unreserve := func() {}
	err = s.cfg.Store.Update(func(tx store.Tx) error {
		if err := dropPorts(tx, oldMappings); err != nil {
			return err
		}
		if err := claimPorts(tx, rec.Doc.ID, newPolicies.mappings); err != nil {
			return err
		}
		var err error
		if unreserve, err = s.reservePorts(added); err != nil {
			return err
		}
		return store.PutJSON(tx, store.Endpoints, rec.Doc.ID, rec)
	})
	if err != nil {
		unreserve()
		return nil, internal(err, "modify endpoint %q", ref)
	}
	s.releasePorts(removed)
	if rec.Doc.HostComputeNamespace != "" {
		if err := s.realisePolicies(&old, &rec); err != nil {
			// Put the old policies back, in the store and in the kernel.
			_ = s.cfg.Store.Update(func(tx store.Tx) error {
				if err := dropPorts(tx, newPolicies.mappings); err != nil {
					return err
				}
				if err := claimPorts(tx, old.Doc.ID, oldMappings); err != nil {
					return err
				}
				return store.PutJSON(tx, store.Endpoints, old.Doc.ID, old)
			})
			_, _ = s.reservePorts(removed)
			s.releasePorts(added)
			_ = s.realisePolicies(&rec, &old)
			return nil, internal(err, "apply policies of endpoint %q", ref)
		}
	}
	return &rec.Doc, nil
}

// realisePolicies brings an attached endpoint's filters, published ports and
// routes from before's policies to after's, and ends the flows after's deny.
func (s *Service) realisePolicies(before, after *endpointRecord) error {
	f := s.firewall()
	prev, _ := f.Endpoint(after.Doc.ID)
	next := firewallEndpoint(&after.Doc)
	if err := s.patchFirewall(f.SetEndpoint(next)); err != nil {
		s.resyncFirewall()
		return err
	}
	if nicChanged(before, after) {
		if err := s.reattach(after); err != nil {
			return err
		}
	}
	n, _ := f.Network(after.Doc.HostComputeNetwork)
	change := flowChange{before: prev, after: next, network: n}
	if droppedMapping(prev, next) {
		// Nothing but the connection tracker stands between a removed
		// mapping and the flows it translates: they end before the reply.
		s.endFlows([]flowChange{change})
	} else {
		s.endFlowsLater(change)
	}
	return nil
}

// diffMappings returns the mappings whose host ports b has and a has not
// (added), and those a has and b has not (removed).
func diffMappings(a, b []api.PortMappingSpec) (added, removed []api.PortMappingSpec) {
	keys := func(ms []api.PortMappingSpec) map[string]bool {
		out := map[string]bool{}
		for _, m := range ms {
			out[portKey(m)] = true
		}
		return out
	}
	ka, kb := keys(a), keys(b)
	for _, m := range b {
		if !ka[portKey(m)] {
			added = append(added, m)
		}
	}
	for _, m := range a {
		if !kb[portKey(m)] {
			removed = append(removed, m)
		}
	}
	return added, removed
}
