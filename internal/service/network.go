package service

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"strings"

	"github.com/hostnet/hostnet/api"
	"github.com/hostnet/hostnet/internal/driver"
	"github.com/hostnet/hostnet/internal/ipam"
	"github.com/hostnet/hostnet/internal/netmodel"
	"github.com/hostnet/hostnet/internal/store"
)

// CreateNetwork validates n, stores it and realises it. A NAT network sent
// without a subnet gets a free /20 of 172.16.0.0/12, as on Windows. When n
// carries the ID of an existing network with the same content, the
// existing network is returned (a retried create is harmless).
func (s *Service) CreateNetwork(ctx context.Context, n api.Network) (*api.Network, error) {
	spec, drv, err := s.checkNetwork(&n)
	if err != nil {
		return nil, err
	}
	if n.ID, err = normalizeID("network", n.ID); err != nil {
		return nil, err
	}
	n.Type = spec.Type
	if n.SchemaVersion == (api.SchemaVersion{}) {
		n.SchemaVersion = api.SchemaVersion{Major: 2, Minor: 0}
	}
	n.BridgeName = drv.NetworkDevice(n.ID)

	var hostAddrs []netip.Addr
	onUplink, hasUplink := drv.(driver.OnUplink)
	if (len(spec.Subnets) > 0 && spec.Type == api.NAT) || hasUplink {
		host, err := s.rec.HostAddressing(ctx)
		if err != nil {
			return nil, internal(err, "read the host's addresses")
		}
		if hasUplink {
			// Named first: the uplink a bridge holds is its port, and its
			// addresses are the bridge's. A create retried (its ID stored)
			// is answered below: its own bridge may hold the uplink now.
			retried := false
			err = s.cfg.Store.View(func(tx store.Tx) error {
				if _, err := tx.Get(store.Networks, n.ID); err == nil {
					retried = true
					return nil
				}
				return s.checkUplinkShared(tx, n.ID, spec, onUplink.NeedsUplink())
			})
			if err == nil && !retried {
				hostAddrs, err = checkUplink(spec, onUplink.NeedsUplink(), host)
			}
		} else {
			hostAddrs, err = checkHostClashes(&n, spec, host)
		}
		if err != nil {
			return nil, err
		}
	}

	s.mu.Lock()
	defer s.mu.Unlock()

	if len(spec.Subnets) == 0 && spec.Type == api.NAT {
		p, err := s.pickSubnet(ctx)
		if err != nil {
			return nil, err
		}
		n.Ipams = []api.Ipam{{Type: "Static", Subnets: []api.Subnet{{IpAddressPrefix: p.String()}}}}
		if spec, err = api.ParseNetwork(&n); err != nil {
			return nil, err
		}
	}

	var existing *api.Network
	owner := netmodel.NetworkOwner(n.ID)
	err = s.mutate(ctx, &mutation{}, func(tx store.Tx, m *mutation) error {
		var old networkRecord
		err := store.GetJSON(tx, store.Networks, n.ID, &old)
		if err == nil {
			existing = &old.Doc
			return nil
		}
		if !errors.Is(err, store.ErrNotFound) {
			return err
		}
		if err := m.touch(owner); err != nil {
			return err
		}
		m.networksChanged = true
		if err := claimName(tx, "network", n.Name, n.ID); err != nil {
			return err
		}
		if err := checkOverlaps(tx, n.ID, spec); err != nil {
			return err
		}
		if hasUplink {
			if err := s.checkUplinkShared(tx, n.ID, spec, onUplink.NeedsUplink()); err != nil {
				return err
			}
		}
		if err := reserveHostAddrs(tx, &parsedNetwork{doc: &n, spec: spec}, hostAddrs); err != nil {
			return err
		}
		m.undo = func(tx store.Tx) error {
			if err := dropName(tx, "network", n.Name); err != nil {
				return err
			}
			return tx.Delete(store.Networks, n.ID)
		}
		return store.PutJSON(tx, store.Networks, n.ID, networkRecord{Doc: n})
	})
	if err != nil {
		return nil, internal(err, "create network %q", n.Name)
	}
	if existing != nil {
		return s.sameNetwork(existing, &n)
	}
	s.log.Info("network created", "network", n.Name, "id", n.ID, "type", n.Type, "bridge", n.BridgeName)
	return &n, nil
}

// sameNetwork answers a create whose ID exists: the same document is an
// idempotent success, another one a conflict.
func (s *Service) sameNetwork(existing, n *api.Network) (*api.Network, error) {
	cmp := *n
	if len(cmp.Ipams) == 0 {
		cmp.Ipams = existing.Ipams
	}
	if sameJSON(existing, &cmp) {
		return existing, nil
	}
	return nil, api.Conflict(api.CodeObjectAlreadyExists, "a network with ID %s already exists (named %q) with other settings", existing.ID, existing.Name)
}

// checkNetwork validates a network document and finds its driver.
func (s *Service) checkNetwork(n *api.Network) (*api.NetworkSpec, driver.Driver, error) {
	spec, err := api.ParseNetwork(n)
	if err != nil {
		return nil, nil, err
	}
	drv, ok := s.cfg.Drivers[spec.Type]
	if !ok {
		return nil, nil, api.Unsupported("invalid network: field Type: network type %s is not supported by this build (supported: %v)",
			spec.Type, s.Version().Supported.NetworkTypes)
	}
	drv = driver.For(drv, spec)
	if err := s.checkAutomaticDNS(spec); err != nil {
		return nil, nil, err
	}
	if err := checkSetPolicies(spec); err != nil {
		return nil, nil, err
	}
	if err := drv.Validate(spec); err != nil {
		return nil, nil, err
	}
	return spec, drv, nil
}

// checkOverlaps refuses a subnet that overlaps a subnet of another network.
func checkOverlaps(tx store.Tx, id string, spec *api.NetworkSpec) error {
	others, specs, err := otherNetworks(tx, id)
	if err != nil {
		return err
	}
	for k, other := range others {
		ospec := specs[k]
		for i, a := range spec.Subnets {
			for _, b := range ospec.Subnets {
				if a.Prefix.Overlaps(b.Prefix) {
					return api.Invalid(api.CodeInvalidNetwork,
						"invalid network: subnet %d (%s) overlaps subnet %s of network %q (%s)", i, a.Prefix, b.Prefix, other.Doc.Name, other.Doc.ID)
				}
			}
		}
	}
	return nil
}

// checkHostClashes refuses a NAT network whose subnets overlap an address
// or a route of the host (its bridge would take the host's address, an
// endpoint the host's gateway), unless the document allows it. When it
// does, it returns the host's addresses inside the subnets, for the pools
// to hold; a gateway that is one of them is refused all the same.
func checkHostClashes(n *api.Network, spec *api.NetworkSpec, host netmodel.HostAddressing) ([]netip.Addr, error) {
	var inside []netip.Addr
	for i, sub := range spec.Subnets {
		clashes := host.Clashes(sub.Prefix)
		if len(clashes) == 0 {
			continue
		}
		if !n.AllowHostOverlap {
			var what []string
			for j, c := range clashes {
				if j == 3 {
					what = append(what, fmt.Sprintf("%d more", len(clashes)-j))
					break
				}
				what = append(what, c.String())
			}
			return nil, api.Invalid(api.CodeInvalidNetwork,
				"invalid network: field IpAddressPrefix of subnet %d: %s overlaps %s; choose another subnet, or set AllowHostOverlap (hostnet network create --allow-host-overlap) for an isolated subnet that shadows the host's",
				i, sub.Prefix, strings.Join(what, ", "))
		}
		for _, c := range clashes {
			if c.Route || !sub.Prefix.Contains(c.Prefix.Addr()) {
				continue
			}
			if a := c.Prefix.Addr(); a == sub.Gateway {
				return nil, api.Invalid(api.CodeInvalidNetwork,
					"invalid network: subnet %d (%s): its gateway %s is an address of the host; name another gateway in the subnet's default route", i, sub.Prefix, a)
			}
			inside = append(inside, c.Prefix.Addr())
		}
	}
	return inside, nil
}

// reserveHostAddrs holds the host's addresses inside the network's pools,
// so that no endpoint is handed one.
func reserveHostAddrs(tx store.Tx, p *parsedNetwork, addrs []netip.Addr) error {
	for _, a := range addrs {
		for _, pool := range p.pools() {
			if !pool.Subnet.Contains(a) {
				continue
			}
			var inUse *ipam.InUseError
			if err := pool.Reserve(tx, a, hostHolder); err != nil && !errors.As(err, &inUse) {
				return err
			}
		}
	}
	return nil
}

// hostHolder is the holder of the host's addresses in a pool.
const hostHolder = "the host"

// GetNetwork returns a network by ID or name.
func (s *Service) GetNetwork(ctx context.Context, ref string) (*api.Network, error) {
	var rec networkRecord
	err := s.cfg.Store.View(func(tx store.Tx) error {
		_, err := lookup(tx, store.Networks, "network", ref, &rec)
		return err
	})
	if err != nil {
		return nil, internal(err, "read network %q", ref)
	}
	return &rec.Doc, nil
}

// ListNetworks returns the networks that match the HNS filter document.
func (s *Service) ListNetworks(ctx context.Context, filter string) ([]api.Network, error) {
	f, err := parseFilter("network", filter)
	if err != nil {
		return nil, err
	}
	out := []api.Network{}
	err = s.cfg.Store.View(func(tx store.Tx) error {
		nets, err := listNetworks(tx)
		for _, n := range nets {
			if f.matchNetwork(&n.Doc) {
				out = append(out, n.Doc)
			}
		}
		return err
	})
	if err != nil {
		return nil, internal(err, "list networks")
	}
	return out, nil
}

// DeleteNetwork removes a network that has no endpoints left.
func (s *Service) DeleteNetwork(ctx context.Context, ref string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	var doc api.Network
	err := s.mutate(ctx, &mutation{}, func(tx store.Tx, m *mutation) error {
		m.bestEffort = true
		var rec networkRecord
		id, err := lookup(tx, store.Networks, "network", ref, &rec)
		if err != nil {
			return err
		}
		doc = rec.Doc
		eps, err := listEndpoints(tx)
		if err != nil {
			return err
		}
		var names []string
		for _, e := range eps {
			if e.Doc.HostComputeNetwork == id {
				names = append(names, displayName(e.Doc.Name, e.Doc.ID))
			}
		}
		if len(names) > 0 {
			return api.Conflict(api.CodeNetworkHasEndpoints, "network %q still has %d endpoint(s) (%s): delete them first",
				displayName(rec.Doc.Name, id), len(names), summarize(names))
		}
		if err := m.touch(netmodel.NetworkOwner(id)); err != nil {
			return err
		}
		m.networksChanged = true
		return dropNetwork(tx, &rec.Doc)
	})
	if err != nil {
		return internal(err, "delete network %q", ref)
	}
	s.log.Info("network deleted", "network", doc.Name, "id", doc.ID)
	return nil
}

// dropNetwork forgets a network and its pools in the store (a network
// whose document no longer parses goes with the pools it can name).
func dropNetwork(tx store.Tx, n *api.Network) error {
	if pn, err := parseStored(n); err == nil {
		for _, p := range pn.pools() {
			if err := p.Drop(tx); err != nil {
				return err
			}
		}
		if err := pn.macPool().Drop(tx); err != nil {
			return err
		}
	}
	if err := dropName(tx, "network", n.Name); err != nil {
		return err
	}
	return tx.Delete(store.Networks, n.ID)
}

// attachedTo lists, inside tx, the owners a network's change touches: its
// attached endpoints and their namespaces (whose resolv.conf may follow
// the network's DNS).
func attachedTo(tx store.Tx, networkID string) ([]netmodel.Owner, error) {
	eps, err := listEndpoints(tx)
	if err != nil {
		return nil, err
	}
	var owners []netmodel.Owner
	seen := map[string]bool{}
	for _, e := range eps {
		if e.Doc.HostComputeNetwork != networkID || e.Doc.HostComputeNamespace == "" {
			continue
		}
		owners = append(owners, netmodel.EndpointOwner(e.Doc.ID))
		if !seen[e.Doc.HostComputeNamespace] {
			seen[e.Doc.HostComputeNamespace] = true
			owners = append(owners, netmodel.NamespaceOwner(e.Doc.HostComputeNamespace))
		}
	}
	return owners, nil
}

// ModifyNetwork changes a network's policies or DNS settings; its
// endpoints' filters and resolv.conf files follow, and their flows that
// new ACLs deny end.
func (s *Service) ModifyNetwork(ctx context.Context, ref string, req api.ModifyRequest) (*api.Network, error) {
	if err := api.ResolveModify("network", &req); err != nil {
		return nil, err
	}
	var change func(n *api.Network) error
	var pr api.PolicyRequest
	var from []int // where each merged policy comes from, see mergePolicies
	switch req.ResourceType {
	case api.ResourcePolicy:
		if err := api.DecodeSettings(req.Settings, &pr); err != nil {
			return nil, api.Invalid(api.CodeInvalidPolicy, "invalid network modify request: field Settings: %v", err)
		}
		for i := range pr.Policies {
			pr.Policies[i].Type = api.ResolveNetworkPolicyType(pr.Policies[i].Type)
		}
		change = func(n *api.Network) error {
			n.Policies, from = mergePolicies(n.Policies, req.RequestType, pr.Policies)
			return nil
		}
	case api.ResourceDNS:
		if req.RequestType != api.RequestUpdate && req.RequestType != api.RequestAdd {
			return nil, api.Unsupported("network modify request: RequestType %s of DNS is not supported (use Update)", req.RequestType)
		}
		var d api.DNS
		if err := api.DecodeSettings(req.Settings, &d); err != nil {
			return nil, api.Invalid(api.CodeInvalidNetwork, "invalid network modify request: field Settings: %v", err)
		}
		change = func(n *api.Network) error {
			n.Dns = &d
			return nil
		}
	default:
		return nil, api.Unsupported("network modify request: ResourceType %s is not supported on Linux", req.ResourceType)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	var n api.Network
	err := s.mutate(ctx, &mutation{}, func(tx store.Tx, m *mutation) error {
		var rec networkRecord
		if _, err := lookup(tx, store.Networks, "network", ref, &rec); err != nil {
			return err
		}
		old := rec.Doc
		n = rec.Doc
		if err := change(&n); err != nil {
			return err
		}
		if _, _, err := s.checkNetwork(&n); err != nil {
			if req.ResourceType == api.ResourcePolicy {
				// Named as the request has them, not by the merged list.
				return inRequestTerms(err, "network", from, pr.Policies, old.Policies)
			}
			return err
		}
		owners, err := attachedTo(tx, n.ID)
		if err != nil {
			return err
		}
		if err := m.touch(append([]netmodel.Owner{netmodel.NetworkOwner(n.ID)}, owners...)...); err != nil {
			return err
		}
		m.networksChanged = true
		m.undo = func(tx store.Tx) error { return store.PutJSON(tx, store.Networks, old.ID, networkRecord{Doc: old}) }
		return store.PutJSON(tx, store.Networks, n.ID, networkRecord{Doc: n})
	})
	if err != nil {
		return nil, internal(err, "modify network %q", ref)
	}
	return &n, nil
}

func summarize(names []string) string {
	if len(names) > 5 {
		return fmt.Sprintf("%v and %d more", names[:5], len(names)-5)
	}
	return fmt.Sprint(names)
}

// pickSubnet chooses a /20 inside 172.16.0.0/12 that overlaps no address or
// route of the host and no subnet of another network.
func (s *Service) pickSubnet(ctx context.Context) (netip.Prefix, error) {
	host, err := s.rec.HostAddressing(ctx)
	if err != nil {
		return netip.Prefix{}, internal(err, "read the host's addresses")
	}
	taken := host.Prefixes()
	err = s.cfg.Store.View(func(tx store.Tx) error {
		nets, err := listNetworks(tx)
		for _, n := range nets {
			if spec, err := api.ParseStoredNetwork(&n.Doc); err == nil {
				for _, sub := range spec.Subnets {
					taken = append(taken, sub.Prefix)
				}
			}
		}
		return err
	})
	if err != nil {
		return netip.Prefix{}, internal(err, "list networks")
	}
	return FreeSubnet(netip.MustParsePrefix("172.16.0.0/12"), 20, taken)
}

// FreeSubnet returns the first prefix of the given length inside space that
// overlaps none of taken (a taken default route, /0, is ignored).
func FreeSubnet(space netip.Prefix, bits int, taken []netip.Prefix) (netip.Prefix, error) {
	p := netip.PrefixFrom(space.Addr(), bits)
	for space.Contains(p.Addr()) {
		free := true
		for _, t := range taken {
			if t.Bits() > 0 && t.Overlaps(p) {
				free = false
				break
			}
		}
		if free {
			return p, nil
		}
		next := api.LastAddr(p).Next()
		if !next.IsValid() {
			break
		}
		p = netip.PrefixFrom(next, bits)
	}
	return netip.Prefix{}, api.Conflict(api.CodeAddressesExhausted, "no free /%d left in %s: every one overlaps an address or route of the host or another network", bits, space)
}
