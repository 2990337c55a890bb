package service

import (
	"errors"
	"fmt"
	"path/filepath"
	"slices"

	"github.com/hostnet/hostnet/api"
	"github.com/hostnet/hostnet/internal/driver"
	"github.com/hostnet/hostnet/internal/netmodel"
	"github.com/hostnet/hostnet/internal/store"
)

// Planning: the records an owner's desired state is made of, turned into
// the driver's view and planned. Every function here is pure over the
// records it is given (and, for namespaces, what tx holds): the same
// records give the same units, whether for a request, a start or a
// repair.

// driverFor returns the driver of a network's type.
func (s *Service) driverFor(pn *parsedNetwork) (driver.Driver, error) {
	d, ok := s.cfg.Drivers[pn.spec.Type]
	if !ok {
		return nil, api.Unsupported("network type %s is not supported by this build", pn.spec.Type)
	}
	return driver.For(d, pn.spec), nil
}

// driverNetwork is a network as drivers see it. NetworkACLs that do not
// parse (a record from an older version) quarantine its endpoints, see
// driverEndpoint.
func driverNetwork(pn *parsedNetwork) (*driver.Network, bool) {
	acls, err := api.ParseNetworkACLs("stored network "+pn.doc.ID, pn.doc.Policies)
	sets, setsErr := pn.ipSets()
	return &driver.Network{ID: pn.doc.ID, Name: pn.doc.Name, Spec: pn.spec, ACLs: acls, Sets: sets}, err == nil && setsErr == nil
}

// networkUnit plans a network.
func (s *Service) networkUnit(pn *parsedNetwork) (*netmodel.Unit, error) {
	d, err := s.driverFor(pn)
	if err != nil {
		return nil, err
	}
	n, _ := driverNetwork(pn)
	return d.PlanNetwork(n, driver.HostFacts{}), nil
}

// endpointUnit plans an endpoint: an attached one as its driver says, and
// any one holds the host ports its mappings publish, from its creation to
// its deletion, so that no host process takes them meanwhile (except the
// ports whose caller holds them, see heldPorts).
//
// objRoutes are the routes the route objects that list it give it.
func (s *Service) endpointUnit(ep *endpointRecord, pn *parsedNetwork, ns *namespaceRecord, objRoutes []api.RouteSpec) (*netmodel.Unit, error) {
	policies, policiesErr := api.ParseEndpointPolicies("stored endpoint "+ep.Doc.ID, ep.Doc.Policies)
	var ports []netmodel.Object
	if policiesErr == nil {
		ports = heldPorts(policies.Mappings)
	}
	if ep.Doc.HostComputeNamespace == "" || ns == nil {
		if len(ports) == 0 {
			return nil, nil
		}
		return &netmodel.Unit{Owner: netmodel.EndpointOwner(ep.Doc.ID), Objects: ports}, nil
	}
	d, err := s.driverFor(pn)
	if err != nil {
		return nil, err
	}
	n, aclsOK := driverNetwork(pn)
	de, err := driverEndpoint(ep, ns, policies, policiesErr, objRoutes)
	if err != nil {
		return nil, err
	}
	if !aclsOK && !de.Quarantine {
		de.Quarantine = true
		s.log.Error("the network's stored ACLs cannot be read: its endpoint is cut off until they are fixed",
			"network", displayName(pn.doc.Name, pn.doc.ID), "endpoint", displayName(ep.Doc.Name, ep.Doc.ID))
	}
	if usesDHCP(&ep.Doc, pn) {
		if dd, ok := d.(driver.DHCPEndpoints); ok && dd.DHCPEndpoints() {
			de.DHCP = true
			de.Routes = append(de.Routes, leaseRoutes(&ep.Doc, de.Routes)...)
		}
	}
	u := d.PlanEndpoint(n, de, driver.HostFacts{})
	u.Objects = append(u.Objects, ports...)
	return u, nil
}

// heldPorts are the host ports an endpoint's mappings hold: all but those
// the caller holds itself (a container runtime's, through CNI's
// portMappings), which a socket of hostnet's would keep the caller from
// binding.
func heldPorts(mappings []api.PortMappingSpec) []netmodel.Object {
	var out []netmodel.Object
	for _, m := range mappings {
		if m.CallerHolds {
			continue
		}
		out = append(out, netmodel.Port{Proto: m.ProtocolName(), IPv6: m.IPv6, Addr: m.VIP, Port: m.ExternalPort})
	}
	return out
}

// driverEndpoint is an attached endpoint as drivers see it. Stored
// policies that do not parse quarantine it: it gets a firewall that
// admits nothing, never the default one that admits a lot.
//
// Its routes are its Routes field, its SDNRoute policies, then objRoutes
// (see EndpointRoutes for which wins); one whose next hop the kernel
// would not take (a record stored before next hops were checked) is
// left out, so that it cannot fail every attach (unless the endpoint has
// no address yet: then nothing can be judged).
func driverEndpoint(rec *endpointRecord, ns *namespaceRecord, ps *api.EndpointPolicies, policiesErr error, objRoutes []api.RouteSpec) (*driver.Endpoint, error) {
	e := &rec.Doc
	mac, err := api.ParseMAC(e.MacAddress)
	if err != nil {
		return nil, fmt.Errorf("stored endpoint %s: %w", e.ID, err)
	}
	de := &driver.Endpoint{
		ID: e.ID, Name: e.Name, NS: ns.ns(), Interface: e.InterfaceName, MAC: mac, Addrs: endpointAddrs(e),
		LowMetric:  e.Flags&api.EndpointEnableLowInterfaceMetric != 0,
		DisableICC: e.Flags&api.EndpointDisableICC != 0,
	}
	spec, err := api.ParseEndpoint(&api.Endpoint{Routes: e.Routes})
	if err != nil {
		de.Quarantine = true
	} else {
		de.Routes = spec.Routes
	}
	if policiesErr != nil {
		de.Quarantine = true
		return de, nil
	}
	de.Routes = append(de.Routes, ps.Routes...)
	de.Routes = append(de.Routes, objRoutes...)
	if len(de.Addrs) > 0 {
		de.Routes = slices.DeleteFunc(de.Routes, func(r api.RouteSpec) bool { return api.CheckNextHop(r.NextHop, de.Addrs) != nil })
	}
	de.Mappings, de.ACLs, de.OutboundNAT, de.Tiers = ps.Mappings, ps.ACLs, ps.OutboundNAT, ps.Tiers
	if ps.QoS != nil && ps.QoS.Any() {
		de.QoS = ps.QoS
	}
	return de, nil
}

// quarantined reports why an endpoint's stored policies cannot be read
// ("" when they can).
func quarantined(e *api.Endpoint) string {
	if _, err := api.ParseEndpointPolicies("stored endpoint "+e.ID, e.Policies); err != nil {
		return err.Error()
	}
	if _, err := api.ParseEndpoint(&api.Endpoint{Routes: e.Routes}); err != nil {
		return err.Error()
	}
	return ""
}

// namespaceUnit plans a namespace, its resolv.conf from the DNS of the
// endpoints tx says are attached to it.
func (s *Service) namespaceUnit(tx store.Tx, ns *namespaceRecord) *netmodel.Unit {
	if ns == nil {
		return nil
	}
	return driver.PlanNamespace(s.driverNamespace(ns, s.resolvContent(tx, ns)))
}

func (s *Service) driverNamespace(ns *namespaceRecord, resolv []byte) *driver.Namespace {
	n := &driver.Namespace{ID: ns.Doc.ID, NS: ns.ns(), Managed: ns.Doc.Managed, ResolvConf: ns.ResolvConf, Resolv: resolv}
	if ns.Doc.Managed && s.cfg.NetnsLinkDir != "" {
		n.IPNetnsLink = filepath.Join(s.cfg.NetnsLinkDir, ipNetnsName(ns.Doc.ID))
	}
	return n
}

// plan is the whole desired state, planned from every record of tx, with
// what it was planned from.
type plan struct {
	units []*netmodel.Unit
	nets  map[string]*parsedNetwork
	eps   map[string]*endpointRecord
	nss   map[string]*namespaceRecord
	// failed are the owners that could not be planned.
	failed map[netmodel.Owner]error
}

// planAll plans every network, attached endpoint and namespace.
func (s *Service) planAll(tx store.Tx) (*plan, error) {
	nets, eps, nss, err := listAll(tx)
	if err != nil {
		return nil, err
	}
	p := &plan{nets: map[string]*parsedNetwork{}, eps: map[string]*endpointRecord{}, nss: map[string]*namespaceRecord{},
		failed: map[netmodel.Owner]error{}}
	for i := range nets {
		n := &nets[i].Doc
		pn, err := parseStored(n)
		if err != nil {
			p.failed[netmodel.NetworkOwner(n.ID)] = err
			continue
		}
		p.nets[n.ID] = pn
		u, err := s.networkUnit(pn)
		if err != nil {
			p.failed[netmodel.NetworkOwner(n.ID)] = err
			continue
		}
		p.units = append(p.units, u)
	}
	for i := range nss {
		p.nss[nss[i].Doc.ID] = &nss[i]
	}
	objRoutes, err := routeObjectsByEndpoint(tx)
	if err != nil {
		return nil, err
	}
	attached := map[string][]*endpointRecord{}
	for i := range eps {
		ep := &eps[i]
		p.eps[ep.Doc.ID] = ep
		if ep.Doc.HostComputeNamespace != "" {
			attached[ep.Doc.HostComputeNamespace] = append(attached[ep.Doc.HostComputeNamespace], ep)
		}
		pn, ns := p.nets[ep.Doc.HostComputeNetwork], p.nss[ep.Doc.HostComputeNamespace]
		if pn == nil {
			continue
		}
		u, err := s.endpointUnit(ep, pn, ns, objRoutes[ep.Doc.ID])
		if err != nil {
			p.failed[netmodel.EndpointOwner(ep.Doc.ID)] = err
			continue
		}
		if u != nil {
			p.units = append(p.units, u)
		}
	}
	host := s.hostDNSOnce()
	for i := range nss {
		ns := &nss[i]
		content := s.resolvFrom(ns, func(id string) *endpointRecord { return p.eps[id] },
			func(ep *endpointRecord) *parsedNetwork { return p.nets[ep.Doc.HostComputeNetwork] }, host)
		p.units = append(p.units, driver.PlanNamespace(s.driverNamespace(ns, content)))
	}
	return p, nil
}

// unitOf plans one owner as tx holds it: nil when its records are gone
// (or, for an endpoint, when it is not attached). nets caches the networks
// read.
func (s *Service) unitOf(tx store.Tx, owner netmodel.Owner, nets map[string]*parsedNetwork) (*netmodel.Unit, error) {
	network := func(id string) (*parsedNetwork, error) {
		if pn, ok := nets[id]; ok {
			return pn, nil
		}
		var rec networkRecord
		if err := store.GetJSON(tx, store.Networks, id, &rec); err != nil {
			return nil, err
		}
		pn, err := parseStored(&rec.Doc)
		if err != nil {
			return nil, err
		}
		nets[id] = pn
		return pn, nil
	}
	kind, id := owner.Split()
	switch kind {
	case "network":
		pn, err := network(id)
		if errors.Is(err, store.ErrNotFound) {
			return nil, nil
		}
		if err != nil {
			return nil, err
		}
		return s.networkUnit(pn)
	case "endpoint":
		var ep endpointRecord
		err := store.GetJSON(tx, store.Endpoints, id, &ep)
		if errors.Is(err, store.ErrNotFound) {
			return nil, nil
		}
		if err != nil {
			return nil, err
		}
		if ep.Doc.HostComputeNamespace == "" {
			return s.endpointUnit(&ep, nil, nil, nil)
		}
		pn, err := network(ep.Doc.HostComputeNetwork)
		if err != nil {
			return nil, err
		}
		var ns namespaceRecord
		if err := store.GetJSON(tx, store.Namespaces, ep.Doc.HostComputeNamespace, &ns); err != nil {
			return nil, err
		}
		objRoutes, err := routeObjectsOf(tx, id)
		if err != nil {
			return nil, err
		}
		return s.endpointUnit(&ep, pn, &ns, objRoutes)
	case "namespace":
		var ns namespaceRecord
		err := store.GetJSON(tx, store.Namespaces, id, &ns)
		if errors.Is(err, store.ErrNotFound) {
			return nil, nil
		}
		if err != nil {
			return nil, err
		}
		return s.namespaceUnit(tx, &ns), nil
	}
	return nil, fmt.Errorf("unknown owner %q", owner)
}
