package service

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/hostnet/hostnet/api"
	"github.com/hostnet/hostnet/internal/netmodel"
	"github.com/hostnet/hostnet/internal/store"
)

// Route objects (HCN's HostComputeRoute) are desired state of the
// endpoints they list: each route's settings are routes inside the
// namespace of each of them, planned with the endpoint (driverEndpoint),
// so they follow its attach, detach, a restart and a repair. An endpoint
// that is deleted leaves the routes that list it; a route left with no
// endpoint stays, routing nothing, until it is deleted.

type routeRecord struct {
	Doc api.HostComputeRoute `json:"Doc"`
}

func listRoutes(tx store.Tx) ([]routeRecord, error) {
	return listRecords[routeRecord](tx, store.Routes)
}

// routeSpecs are the routes a stored route object puts in its endpoints'
// namespaces (none when its settings no longer parse).
func routeSpecs(r *api.HostComputeRoute) []api.RouteSpec {
	var out []api.RouteSpec
	for _, s := range r.Setting {
		rs, err := api.ParseSDNRouteSetting(s)
		if err != nil {
			return nil
		}
		out = append(out, rs)
	}
	return out
}

// routeObjectsByEndpoint indexes the routes of the route objects in tx by
// endpoint ID, in the order of the objects' IDs.
func routeObjectsByEndpoint(tx store.Tx) (map[string][]api.RouteSpec, error) {
	routes, err := listRoutes(tx)
	if err != nil {
		return nil, err
	}
	out := map[string][]api.RouteSpec{}
	for i := range routes {
		specs := routeSpecs(&routes[i].Doc)
		for _, id := range routes[i].Doc.HostComputeEndpoints {
			out[id] = append(out[id], specs...)
		}
	}
	return out, nil
}

// routeObjectsOf returns the routes the route objects in tx give endpoint id.
func routeObjectsOf(tx store.Tx, id string) ([]api.RouteSpec, error) {
	var out []api.RouteSpec
	routes, err := listRoutes(tx)
	if err != nil {
		return nil, err
	}
	for i := range routes {
		if slices.Contains(routes[i].Doc.HostComputeEndpoints, id) {
			out = append(out, routeSpecs(&routes[i].Doc)...)
		}
	}
	return out, nil
}

// CreateRoute validates r, resolves its endpoints (by ID or name; stored
// as IDs) and stores it; the routes appear at once in the namespaces of
// those that are attached. A next hop the kernel would not take in the
// namespace of one of them is a 400 naming the setting, the value and the
// endpoint, and nothing is stored.
func (s *Service) CreateRoute(ctx context.Context, r api.HostComputeRoute) (*api.HostComputeRoute, error) {
	routes, err := api.ParseRoute(&r)
	if err != nil {
		return nil, err
	}
	if r.ID, err = normalizeID("route", r.ID); err != nil {
		return nil, err
	}
	if r.SchemaVersion == (api.SchemaVersion{}) {
		r.SchemaVersion = api.SchemaVersion{Major: 2, Minor: 0}
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	var existing *api.HostComputeRoute
	err = s.mutate(ctx, &mutation{}, func(tx store.Tx, m *mutation) error {
		ids := make([]string, len(r.HostComputeEndpoints))
		owners := make([]netmodel.Owner, 0, len(ids))
		for i, ref := range r.HostComputeEndpoints {
			field := fmt.Sprintf("HostComputeEndpoints[%d]", i)
			var ep endpointRecord
			id, err := lookup(tx, store.Endpoints, "endpoint", ref, &ep)
			if api.IsNotFound(err) {
				return api.Invalid(api.CodeInvalidEndpoint, "invalid route: field %s: endpoint %q not found", field, ref)
			}
			if err != nil {
				return err
			}
			if j := slices.Index(ids[:i], id); j >= 0 {
				return api.Invalid(api.CodeInvalidPolicy, "invalid route: field %s: endpoint %q is listed twice (also HostComputeEndpoints[%d])", field, ref, j)
			}
			for k, rs := range routes {
				addrs := endpointAddrs(&ep.Doc)
				if len(addrs) == 0 {
					break // addresses to come (DHCP): left to the kernel, as for its own routes
				}
				if err := api.CheckNextHop(rs.NextHop, addrs); err != nil {
					return api.Invalid(api.CodeInvalidPolicy, "invalid route: field Setting[%d].NextHop: for endpoint %q (%s): %v",
						k, displayName(ep.Doc.Name, id), field, err)
				}
			}
			ids[i] = id
			owners = append(owners, netmodel.EndpointOwner(id))
		}
		r.HostComputeEndpoints = ids
		// A retried create (the same ID and document) is answered with
		// what the first one made.
		var old routeRecord
		if err := store.GetJSON(tx, store.Routes, r.ID, &old); err == nil {
			if !sameJSON(old.Doc, r) {
				return api.Conflict(api.CodeObjectAlreadyExists, "a route with ID %s already exists, with other settings or endpoints", r.ID)
			}
			existing = &old.Doc
			return nil
		} else if !errors.Is(err, store.ErrNotFound) {
			return err
		}
		if err := m.touch(owners...); err != nil {
			return err
		}
		m.undo = func(tx store.Tx) error { return tx.Delete(store.Routes, r.ID) }
		return store.PutJSON(tx, store.Routes, r.ID, routeRecord{Doc: r})
	})
	if err != nil {
		return nil, internal(err, "create route %s", r.ID)
	}
	if existing != nil {
		return existing, nil
	}
	s.log.Info("route created", "id", r.ID, "endpoints", r.HostComputeEndpoints, "routes", len(routes))
	return &r, nil
}

// GetRoute returns a route object by ID.
func (s *Service) GetRoute(ctx context.Context, ref string) (*api.HostComputeRoute, error) {
	var rec routeRecord
	err := s.cfg.Store.View(func(tx store.Tx) error {
		_, err := lookupRoute(tx, ref, &rec)
		return err
	})
	if err != nil {
		return nil, internal(err, "read route %q", ref)
	}
	return &rec.Doc, nil
}

// lookupRoute finds a route object by ID (route objects have no name).
func lookupRoute(tx store.Tx, ref string, rec *routeRecord) (string, error) {
	id, ok := refID(ref)
	if !ok {
		return "", api.NotFound("route", ref)
	}
	err := store.GetJSON(tx, store.Routes, id, rec)
	if errors.Is(err, store.ErrNotFound) {
		return "", api.NotFound("route", ref)
	}
	return id, err
}

// ListRoutes returns the route objects that match the HNS filter document
// (ID, or HostComputeEndpoints: an endpoint ID the route lists).
func (s *Service) ListRoutes(ctx context.Context, filter string) ([]api.HostComputeRoute, error) {
	f, err := parseFilter("route", filter)
	if err != nil {
		return nil, err
	}
	out := []api.HostComputeRoute{}
	err = s.cfg.Store.View(func(tx store.Tx) error {
		routes, err := listRoutes(tx)
		for i := range routes {
			r := &routes[i].Doc
			if f.matches(r.ID, "", func(k, v string) bool {
				return k != "HostComputeEndpoints" || slices.ContainsFunc(r.HostComputeEndpoints, func(id string) bool { return matchID(v, id) })
			}) {
				out = append(out, *r)
			}
		}
		return err
	})
	if err != nil {
		return nil, internal(err, "list routes")
	}
	return out, nil
}

// DeleteRoute removes a route object; its routes leave the namespaces of
// its endpoints.
func (s *Service) DeleteRoute(ctx context.Context, ref string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	var rec routeRecord
	err := s.mutate(ctx, &mutation{}, func(tx store.Tx, m *mutation) error {
		m.bestEffort = true
		id, err := lookupRoute(tx, ref, &rec)
		if err != nil {
			return err
		}
		for _, ep := range rec.Doc.HostComputeEndpoints {
			if err := m.touch(netmodel.EndpointOwner(ep)); err != nil {
				return err
			}
		}
		return tx.Delete(store.Routes, id)
	})
	if err != nil {
		return internal(err, "delete route %q", ref)
	}
	s.log.Info("route deleted", "id", rec.Doc.ID)
	return nil
}

// dropFromRoutes removes endpoint id from the route objects that list it,
// inside tx (the endpoint is being deleted).
func dropFromRoutes(tx store.Tx, id string) error {
	routes, err := listRoutes(tx)
	if err != nil {
		return err
	}
	for i := range routes {
		r := &routes[i]
		k := slices.Index(r.Doc.HostComputeEndpoints, id)
		if k < 0 {
			continue
		}
		r.Doc.HostComputeEndpoints = slices.Delete(slices.Clone(r.Doc.HostComputeEndpoints), k, k+1)
		if err := store.PutJSON(tx, store.Routes, r.Doc.ID, r); err != nil {
			return err
		}
	}
	return nil
}

// loadRoutes, at a start (after load, in its transaction), sets aside the
// route records that cannot be read (they do not decode, their ID is not
// their key, a setting no longer parses) and drops from the others the
// endpoints that are not there (set aside, or lost): nothing dangles, and
// an endpoint that takes the ID later does not inherit the routes. Like
// load, it only reads and writes records.
func (s *Service) loadRoutes(tx store.Tx, l *loaded) error {
	now := time.Now().UTC()
	var aside []setAsideEntry
	var fixed []routeRecord
	err := tx.ForEach(store.Routes, "", func(key string, raw []byte) error {
		var rec routeRecord
		why := ""
		if err := json.Unmarshal(raw, &rec); err != nil {
			why = fmt.Sprintf("it does not decode: %v", err)
		} else if rec.Doc.ID != key {
			why = fmt.Sprintf("its ID %q is not its key", rec.Doc.ID)
		} else {
			for i, st := range rec.Doc.Setting {
				if _, err := api.ParseSDNRouteSetting(st); err != nil {
					why = fmt.Sprintf("it no longer passes validation: field Setting[%d].%s: %s", i, err.Field, err.Problem)
					break
				}
			}
		}
		if why != "" {
			aside = append(aside, setAsideEntry{Bucket: store.Routes, Key: key, Reason: why, Time: now, Raw: slices.Clone(raw)})
			return nil
		}
		var kept, dropped []string
		for _, id := range rec.Doc.HostComputeEndpoints {
			_, err := tx.Get(store.Endpoints, id)
			switch {
			case errors.Is(err, store.ErrNotFound):
				dropped = append(dropped, id)
			case err != nil:
				return err
			default:
				kept = append(kept, id)
			}
		}
		if len(dropped) > 0 {
			rec.Doc.HostComputeEndpoints = kept
			fixed = append(fixed, rec)
			l.normalised = append(l.normalised, "Route "+key+": endpoints that are not there ("+strings.Join(dropped, ", ")+") no longer listed")
		}
		return nil
	})
	if err != nil {
		return err
	}
	for i := range aside {
		if err := setAside(tx, &aside[i]); err != nil {
			return err
		}
		l.aside = append(l.aside, aside[i])
	}
	for i := range fixed {
		if err := store.PutJSON(tx, store.Routes, fixed[i].Doc.ID, fixed[i]); err != nil {
			return err
		}
	}
	return nil
}
