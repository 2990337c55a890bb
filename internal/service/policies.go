package service

import (
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/hostnet/hostnet/api"
	"github.com/hostnet/hostnet/internal/dataplane"
	"github.com/hostnet/hostnet/internal/nftmodel"
	"github.com/hostnet/hostnet/internal/policy"
	"github.com/hostnet/hostnet/internal/store"
)

// endpointPolicies is the parsed form of an endpoint's policies.
type endpointPolicies struct {
	routes   []dataplane.Route
	mappings []api.PortMappingSpec
	acls     []api.ACLSpec
	obnat    *api.OutboundNATSpec
}

// parseEndpointPolicies validates an endpoint's policies (their types
// already resolved and known) and returns them parsed; owner names the
// document in errors.
func parseEndpointPolicies(owner string, ps []api.Policy) (*endpointPolicies, error) {
	out := &endpointPolicies{}
	seen := map[string]int{}
	for i, p := range ps {
		if !supported(supportedEndpointPolicies, p.Type) {
			return nil, unsupportedPolicy(owner, i, p.Type, supportedEndpointPolicies)
		}
		switch p.Type {
		case api.SDNRoute:
			r, err := parseSDNRoute(p.Settings)
			if err != nil {
				return nil, fmt.Errorf("%s: field Policies[%d]: %w", owner, i, err)
			}
			out.routes = append(out.routes, r)
		case api.PortMapping:
			m, err := api.ParsePortMapping(owner, i, p)
			if err != nil {
				return nil, err
			}
			if j, dup := seen[m.Key()]; dup {
				return nil, api.Invalid(api.CodeInvalidPolicy, "%s: field Policies[%d]: host port %s is published twice (also by Policies[%d])", owner, i, m, j)
			}
			seen[m.Key()] = i
			out.mappings = append(out.mappings, m)
		case api.ACL:
			a, err := api.ParseACL(owner, i, api.ACL, p)
			if err != nil {
				return nil, err
			}
			out.acls = append(out.acls, a)
		case api.OutBoundNAT:
			if out.obnat != nil {
				return nil, api.Invalid(api.CodeInvalidPolicy, "%s: field Policies[%d]: an endpoint has at most one OutBoundNAT policy", owner, i)
			}
			o, err := api.ParseOutboundNAT(owner, i, p)
			if err != nil {
				return nil, err
			}
			out.obnat = &o
		}
	}
	return out, nil
}

// parseNetworkACLs returns a network's NetworkACL rules.
func parseNetworkACLs(owner string, ps []api.Policy) ([]api.ACLSpec, error) {
	var out []api.ACLSpec
	for i, p := range ps {
		if p.Type != api.NetworkACL {
			continue
		}
		a, err := api.ParseACL(owner, i, api.NetworkACL, p)
		if err != nil {
			return nil, err
		}
		out = append(out, a)
	}
	return out, nil
}

// portKey is the store key of a published host port: "tcp4/8080/*" for
// every address, "tcp4/8080/10.0.0.1" for one.
func portKey(m api.PortMappingSpec) string {
	fam := "4"
	if m.IPv6 {
		fam = "6"
	}
	addr := "*"
	if m.VIP.IsValid() {
		addr = m.VIP.String()
	}
	return fmt.Sprintf("%s%s/%d/%s", m.ProtocolName(), fam, m.ExternalPort, addr)
}

// claimPorts records the host ports of an endpoint's mappings in tx,
// refusing one another endpoint publishes: the same port on every address
// collides with the port on any one address, and the other way round.
func claimPorts(tx store.Tx, epID string, ms []api.PortMappingSpec) error {
	for _, m := range ms {
		key := portKey(m)
		prefix := key[:strings.LastIndex(key, "/")+1]
		err := tx.ForEach(store.Ports, prefix, func(k string, v []byte) error {
			if string(v) == epID {
				return nil
			}
			if k == key || strings.HasSuffix(k, "/*") || strings.HasSuffix(key, "/*") {
				holder := string(v)
				var other endpointRecord
				if store.GetJSON(tx, store.Endpoints, holder, &other) == nil {
					holder = fmt.Sprintf("endpoint %q (%s)", displayName(other.Doc.Name, holder), holder)
				}
				return api.Conflict(api.CodePortAlreadyExists, "host port %s is already published by %s", m, holder)
			}
			return nil
		})
		if err != nil {
			return err
		}
		if err := tx.Put(store.Ports, key, []byte(epID)); err != nil {
			return err
		}
	}
	return nil
}

// dropPorts forgets the host ports of mappings in tx.
func dropPorts(tx store.Tx, ms []api.PortMappingSpec) error {
	for _, m := range ms {
		if err := tx.Delete(store.Ports, portKey(m)); err != nil {
			return err
		}
	}
	return nil
}

// reservePorts binds the host ports of mappings that are not bound yet, so
// host processes cannot take them. On failure it releases what it bound
// and answers a 409 naming the holder. The returned function releases
// what this call bound (for undoing).
func (s *Service) reservePorts(ms []api.PortMappingSpec) (undo func(), err error) {
	var made []string
	undo = func() {
		for _, k := range made {
			s.reserved[k].Release()
			delete(s.reserved, k)
		}
	}
	for _, m := range ms {
		key := portKey(m)
		if _, ok := s.reserved[key]; ok {
			continue
		}
		r, err := s.cfg.Host.ReservePort(m.ProtocolName(), m.IPv6, m.VIP, m.ExternalPort)
		if err != nil {
			undo()
			var inUse *dataplane.PortInUseError
			if errors.As(err, &inUse) {
				return func() {}, api.Conflict(api.CodePortAlreadyExists, "cannot publish %s: %v", m, err)
			}
			return func() {}, api.Invalid(api.CodeInvalidPolicy, "cannot publish %s: %v", m, err)
		}
		s.reserved[key] = r
		made = append(made, key)
	}
	return undo, nil
}

// releasePorts unbinds the host ports of mappings.
func (s *Service) releasePorts(ms []api.PortMappingSpec) {
	for _, m := range ms {
		key := portKey(m)
		s.reserved[key].Release()
		delete(s.reserved, key)
	}
}

// endpointPoliciesOf parses a stored endpoint's policies.
func endpointPoliciesOf(e *api.Endpoint) *endpointPolicies {
	ps, err := parseEndpointPolicies("stored endpoint "+e.ID, e.Policies)
	if err != nil {
		return &endpointPolicies{}
	}
	return ps
}

// firewallNetwork is the compiler's view of a stored network.
func firewallNetwork(pn *parsedNetwork) policy.Network {
	n := policy.Network{ID: pn.doc.ID, Type: pn.spec.Type, Bridge: pn.doc.BridgeName}
	for _, sub := range pn.spec.Subnets {
		n.Subnets = append(n.Subnets, sub.Prefix)
	}
	n.ACLs, _ = parseNetworkACLs("stored network "+pn.doc.ID, pn.doc.Policies)
	return n
}

// firewallEndpoint is the compiler's view of an attached endpoint.
func firewallEndpoint(e *api.Endpoint) policy.Endpoint {
	ps := endpointPoliciesOf(e)
	fe := policy.Endpoint{
		ID: e.ID, Network: e.HostComputeNetwork, Port: e.HostInterfaceName,
		DisableICC: e.Flags&api.EndpointDisableICC != 0,
		Mappings:   ps.mappings, ACLs: ps.acls, OutboundNAT: ps.obnat,
	}
	fe.MAC, _ = api.ParseMAC(e.MacAddress)
	for _, p := range endpointAddrs(e) {
		fe.Addrs = append(fe.Addrs, p.Addr())
	}
	return fe
}

// loadFirewall rebuilds the compiler's state from the store.
func (s *Service) loadFirewall(tx store.Tx) error {
	nets, err := listNetworks(tx)
	if err != nil {
		return err
	}
	eps, err := listEndpoints(tx)
	if err != nil {
		return err
	}
	s.buildFirewall(nets, eps)
	return nil
}

// buildFirewall sets the compiler's state from the networks and endpoints
// given (all of the store's).
func (s *Service) buildFirewall(nets []networkRecord, eps []endpointRecord) {
	st := policy.NewState()
	for i := range nets {
		pn, err := parseStored(&nets[i].Doc)
		if err != nil {
			continue
		}
		st.SetNetwork(firewallNetwork(pn))
	}
	for i := range eps {
		if eps[i].Doc.HostComputeNamespace != "" {
			st.SetEndpoint(firewallEndpoint(&eps[i].Doc))
		}
	}
	s.fw = st
}

// firewall returns the compiler's state, loading it from the store the
// first time.
func (s *Service) firewall() *policy.State {
	if s.fw == nil {
		if err := s.cfg.Store.View(s.loadFirewall); err != nil {
			s.log.Error("loading the firewall's state failed", "err", err)
			s.fw = policy.NewState()
		}
	}
	return s.fw
}

// applyFirewall applies the whole tables (at start: diffed against what
// the kernel holds, so nothing is flushed).
func (s *Service) applyFirewall() error {
	if s.cfg.Firewall == nil {
		return nil
	}
	if err := s.cfg.Firewall.ApplyAll(s.firewall().Tables()...); err != nil {
		return fmt.Errorf("apply nftables tables: %w", err)
	}
	return nil
}

// patchFirewall applies the patches of one change, in one atomic batch.
func (s *Service) patchFirewall(patches []nftmodel.TablePatch) error {
	if s.cfg.Firewall == nil || len(patches) == 0 {
		return nil
	}
	if err := s.cfg.Firewall.Patch(patches...); err != nil {
		return fmt.Errorf("update nftables tables: %w", err)
	}
	return nil
}

// resyncFirewall rebuilds the state from the store and applies it whole;
// used after a failure left the state in doubt.
func (s *Service) resyncFirewall() {
	if err := s.cfg.Store.View(s.loadFirewall); err != nil {
		s.log.Error("reloading the firewall's state failed", "err", err)
		return
	}
	if err := s.applyFirewall(); err != nil {
		s.log.Error("applying the firewall failed; reconciliation will retry", "err", err)
	}
}

// nicChanged tells whether a change of policies from before to after
// changes the endpoint's NIC: its routes (SDNRoute) or its port's hairpin
// mode (on while it publishes ports). ACLs and the rest live in the
// firewall only.
func nicChanged(before, after *endpointRecord) bool {
	b, a := endpointPoliciesOf(&before.Doc), endpointPoliciesOf(&after.Doc)
	return !slices.Equal(b.routes, a.routes) || (len(b.mappings) > 0) != (len(a.mappings) > 0)
}

// droppedMapping tells whether after lacks a port mapping before had.
func droppedMapping(before, after policy.Endpoint) bool {
	kept := map[api.PortMappingSpec]bool{}
	for _, m := range after.Mappings {
		kept[m] = true
	}
	for _, m := range before.Mappings {
		if !kept[m] {
			return true
		}
	}
	return false
}

// forgetInFirewall removes a detached endpoint from the firewall: its port
// filters and published ports go, and the flows it had with them.
func (s *Service) forgetInFirewall(id string) {
	e, ok := s.firewall().Endpoint(id)
	if !ok {
		return
	}
	if err := s.patchFirewall(s.firewall().RemoveEndpoint(id)); err != nil {
		s.log.Error("updating the firewall failed", "err", err)
		s.resyncFirewall()
	}
	// Its published ports and ACLs are gone from the firewall; what is left
	// of its flows is bookkeeping, which the address cursor of the IPAM
	// keeps from meeting a new endpoint before it is done.
	s.endFlowsLater(gone(e))
}

// endNetworkFlows ends, for every attached endpoint of a network, the flows
// its network's new ACLs deny.
func (s *Service) endNetworkFlows(networkID string, n policy.Network) {
	var eps []api.Endpoint
	_ = s.cfg.Store.View(func(tx store.Tx) error {
		recs, err := listEndpoints(tx)
		for _, r := range recs {
			if r.Doc.HostComputeNetwork == networkID && r.Doc.HostComputeNamespace != "" {
				eps = append(eps, r.Doc)
			}
		}
		return err
	})
	var changes []flowChange
	for i := range eps {
		if e, ok := s.firewall().Endpoint(eps[i].ID); ok {
			changes = append(changes, flowChange{before: e, after: e, network: n})
		}
	}
	s.endFlowsLater(changes...)
}
