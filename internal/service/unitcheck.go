package service

import (
	"net/netip"
	"strings"

	"github.com/hostnet/hostnet/api"
	"github.com/hostnet/hostnet/internal/netmodel"
	"github.com/hostnet/hostnet/internal/store"
)

// checkUnit refuses a planned endpoint that the kernel would refuse, or
// that would take an object from another endpoint of its namespace, before
// anything is recorded: a route whose next hop none of its devices reach
// (the kernel answers "Nexthop has invalid gateway"), or a route, address
// or device another endpoint of the same namespace has (the first to go
// would take it from the other).
func (m *mutation) checkUnit(o netmodel.Owner, u *netmodel.Unit) error {
	kind, id := o.Split()
	if kind != "endpoint" || u == nil {
		return nil
	}
	if err := checkNextHops(u); err != nil {
		return err
	}
	return m.checkSiblings(id, u)
}

// checkNextHops refuses a route inside a namespace whose gateway is on
// none of the prefixes of the addresses its device has there.
func checkNextHops(u *netmodel.Unit) error {
	onLink := map[string][]netip.Prefix{} // by device, in its namespace
	for _, obj := range u.Objects {
		if a, ok := obj.(netmodel.Addr); ok && !a.NS.IsHost() {
			onLink[a.NS.Path+" "+a.Link] = append(onLink[a.NS.Path+" "+a.Link], a.Prefix)
		}
	}
	for _, obj := range u.Objects {
		r, ok := obj.(netmodel.Route)
		if !ok || r.NS.IsHost() || !r.Gateway.IsValid() || r.Gateway.IsLinkLocalUnicast() {
			continue
		}
		prefixes := onLink[r.NS.Path+" "+r.Link]
		reached := false
		for _, p := range prefixes {
			reached = reached || p.Masked().Contains(r.Gateway)
		}
		if !reached {
			return api.Invalid(api.CodeInvalidEndpoint,
				"invalid endpoint: route to %s via %s: the next hop is on none of the endpoint's subnets (%s); a next hop must be on one of them",
				r.Dst, r.Gateway, prefixList(prefixes))
		}
	}
	return nil
}

func prefixList(ps []netip.Prefix) string {
	if len(ps) == 0 {
		return "it has no address"
	}
	s := make([]string, len(ps))
	for i, p := range ps {
		s[i] = p.Masked().String()
	}
	return strings.Join(s, ", ")
}

// checkSiblings refuses endpoint id's unit when another endpoint attached
// to the same namespace wants one of its objects there (the same route and
// metric, say): each would remove it when it goes.
func (m *mutation) checkSiblings(id string, u *netmodel.Unit) error {
	var ep endpointRecord
	if store.GetJSON(m.tx, store.Endpoints, id, &ep) != nil || ep.Doc.HostComputeNamespace == "" {
		return nil
	}
	var ns namespaceRecord
	if store.GetJSON(m.tx, store.Namespaces, ep.Doc.HostComputeNamespace, &ns) != nil {
		return nil
	}
	siblings := attachedIDs(&ns.Doc)
	if len(siblings) < 2 {
		return nil
	}
	mine := map[netmodel.Key]bool{}
	for _, obj := range u.Objects {
		if k := obj.Key(); !k.NS.IsHost() && k.Kind < netmodel.KindNftSet && !netmodel.Shared(obj) && !netmodel.Lasting(obj) {
			mine[k] = true
		}
	}
	for _, other := range siblings {
		if other == id {
			continue
		}
		theirs, err := m.s.unitOf(m.tx, netmodel.EndpointOwner(other), m.nets)
		if err != nil || theirs == nil {
			continue
		}
		for _, obj := range theirs.Objects {
			if mine[obj.Key()] {
				var oe endpointRecord
				_ = store.GetJSON(m.tx, store.Endpoints, other, &oe)
				return api.Conflict(api.CodeObjectAlreadyExists,
					"endpoint %s: namespace %s has %s for endpoint %s already; two endpoints of one namespace cannot share it (give the route another metric, or the device another name)",
					displayName(ep.Doc.Name, id), displayName(ns.Doc.Name, ns.Doc.ID), obj, displayName(oe.Doc.Name, other))
			}
		}
	}
	return nil
}
