package service

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"path/filepath"
	"slices"
	"strings"

	"github.com/hostnet/hostnet/api"
	"github.com/hostnet/hostnet/internal/netmodel"
	"github.com/hostnet/hostnet/internal/store"
)

// ipNetnsName is the name under which `ip netns` sees a namespace hostnet
// created.
func ipNetnsName(id string) string { return "hn-" + id }

// CreateNamespace creates a Linux network namespace, bind-mounted under the
// run directory, or, when n names an existing one by NetNamespacePath,
// wraps it (hostnet then never removes it).
func (s *Service) CreateNamespace(ctx context.Context, n api.Namespace) (*api.Namespace, error) {
	if err := api.ParseNamespace(&n); err != nil {
		return nil, err
	}
	var err error
	if n.ID, err = normalizeID("namespace", n.ID); err != nil {
		return nil, err
	}
	if n.SchemaVersion == (api.SchemaVersion{}) {
		n.SchemaVersion = api.SchemaVersion{Major: 2, Minor: 0}
	}
	rec := namespaceRecord{Doc: n}
	if n.NetNamespacePath != "" {
		if rec.Identity, err = s.wrappable(ctx, "invalid namespace", n.NetNamespacePath); err != nil {
			return nil, err
		}
	} else {
		rec.Doc.Managed = true
		rec.Doc.NetNamespacePath = filepath.Join(s.cfg.NetnsDir, n.ID)
		if s.cfg.NetnsEtcDir != "" {
			rec.ResolvConf = filepath.Join(s.cfg.NetnsEtcDir, ipNetnsName(n.ID), "resolv.conf")
		}
	}

	s.mu.Lock()
	defer s.mu.Unlock()
	var existing *namespaceRecord
	err = s.mutate(ctx, &mutation{}, func(tx store.Tx, m *mutation) error {
		var old namespaceRecord
		if err := store.GetJSON(tx, store.Namespaces, n.ID, &old); err == nil {
			existing = &old
			return nil
		} else if !errors.Is(err, store.ErrNotFound) {
			return err
		}
		if err := m.touch(netmodel.NamespaceOwner(n.ID)); err != nil {
			return err
		}
		if err := claimName(tx, "namespace", n.Name, n.ID); err != nil {
			return err
		}
		m.undo = func(tx store.Tx) error {
			if err := dropName(tx, "namespace", n.Name); err != nil {
				return err
			}
			return tx.Delete(store.Namespaces, n.ID)
		}
		return store.PutJSON(tx, store.Namespaces, n.ID, rec)
	})
	if err != nil {
		return nil, internal(err, "create namespace")
	}
	if existing != nil {
		cmp := rec.Doc
		cmp.Resources = existing.Doc.Resources
		if sameJSON(&existing.Doc, &cmp) {
			return &existing.Doc, nil
		}
		return nil, api.Conflict(api.CodeObjectAlreadyExists, "a namespace with ID %s already exists with other settings", n.ID)
	}
	s.log.Info("namespace created", "id", n.ID, "path", rec.Doc.NetNamespacePath, "managed", rec.Doc.Managed)
	return &rec.Doc, nil
}

// wrappable checks that path may be wrapped as a namespace for the caller
// and returns its identity: it must be a network namespace, not the host's
// own, not one of hostnet's, and one the caller may act on (see
// callerMayUse). owner names the document in errors.
func (s *Service) wrappable(ctx context.Context, owner, path string) (netmodel.NSID, error) {
	id, err := s.rec.Identify(ctx, path)
	if err != nil {
		return id, api.Invalid(api.CodeInvalidNamespace, "%s: field NetNamespacePath: %q is not a network namespace", owner, path)
	}
	if id == s.rec.HostID() {
		return id, api.Invalid(api.CodeInvalidNamespace, "%s: field NetNamespacePath: %q is the host's own network namespace", owner, path)
	}
	if rel, err := filepath.Rel(s.cfg.NetnsDir, path); err == nil && !strings.HasPrefix(rel, "..") {
		return id, api.Invalid(api.CodeInvalidNamespace, "%s: field NetNamespacePath: %q is a namespace hostnet made: attach to its namespace object instead", owner, path)
	}
	if err := callerMayUse(ctx, path); err != nil {
		return id, api.Forbidden("%s: field NetNamespacePath: %v", owner, err)
	}
	return id, nil
}

// GetNamespace returns a namespace by ID or name.
func (s *Service) GetNamespace(ctx context.Context, ref string) (*api.Namespace, error) {
	var rec namespaceRecord
	err := s.cfg.Store.View(func(tx store.Tx) error {
		_, err := lookup(tx, store.Namespaces, "namespace", ref, &rec)
		return err
	})
	if err != nil {
		return nil, internal(err, "read namespace %q", ref)
	}
	return s.namespaceDoc(&rec), nil
}

// namespaceDoc is the document a client reads: the stored one, with where
// its resolv.conf is.
func (s *Service) namespaceDoc(rec *namespaceRecord) *api.Namespace {
	d := rec.Doc
	if rec.ResolvConf != "" {
		if d.Extra == nil {
			d.Extra = api.Extra{}
		} else {
			d.Extra = cloneExtra(d.Extra)
		}
		b, _ := json.Marshal(rec.ResolvConf)
		d.Extra["ResolvConfPath"] = b
	}
	return &d
}

func cloneExtra(e api.Extra) api.Extra {
	out := api.Extra{}
	for k, v := range e {
		out[k] = v
	}
	return out
}

// ListNamespaces returns the namespaces that match the HNS filter document.
func (s *Service) ListNamespaces(ctx context.Context, filter string) ([]api.Namespace, error) {
	f, err := parseFilter("namespace", filter)
	if err != nil {
		return nil, err
	}
	out := []api.Namespace{}
	err = s.cfg.Store.View(func(tx store.Tx) error {
		nss, err := listNamespaces(tx)
		for i := range nss {
			if f.matchNamespace(&nss[i].Doc) {
				out = append(out, *s.namespaceDoc(&nss[i]))
			}
		}
		return err
	})
	if err != nil {
		return nil, internal(err, "list namespaces")
	}
	return out, nil
}

// DeleteNamespace detaches the namespace's endpoints (they remain, free to
// attach elsewhere) and removes it; a namespace hostnet created is removed
// from the kernel too.
func (s *Service) DeleteNamespace(ctx context.Context, ref string) error {
	s.stopLeasing(ctx, s.attachedTo(store.Namespaces, "namespace", ref)...)
	s.mu.Lock()
	defer s.mu.Unlock()
	var rec namespaceRecord
	var detached int
	err := s.mutate(ctx, &mutation{}, func(tx store.Tx, m *mutation) error {
		m.bestEffort = true
		id, err := lookup(tx, store.Namespaces, "namespace", ref, &rec)
		if err != nil {
			return err
		}
		owners := []netmodel.Owner{netmodel.NamespaceOwner(id)}
		for _, epID := range attachedIDs(&rec.Doc) {
			owners = append(owners, netmodel.EndpointOwner(epID))
		}
		if err := m.touch(owners...); err != nil {
			return err
		}
		detached = 0
		for _, epID := range attachedIDs(&rec.Doc) {
			var ep endpointRecord
			if err := store.GetJSON(tx, store.Endpoints, epID, &ep); err != nil {
				continue
			}
			clearAttachment(&ep)
			if err := store.PutJSON(tx, store.Endpoints, epID, ep); err != nil {
				return err
			}
			detached++
		}
		if err := dropName(tx, "namespace", rec.Doc.Name); err != nil {
			return err
		}
		return tx.Delete(store.Namespaces, id)
	})
	if err != nil {
		return internal(err, "delete namespace %q", ref)
	}
	s.log.Info("namespace deleted", "id", rec.Doc.ID, "detached", detached)
	return nil
}

// ModifyNamespace attaches or detaches an endpoint, or records a container.
func (s *Service) ModifyNamespace(ctx context.Context, ref string, req api.ModifyRequest) (*api.Namespace, error) {
	if err := api.ResolveModify("namespace", &req); err != nil {
		return nil, err
	}
	switch req.ResourceType {
	case api.ResourceEndpoint:
		var er api.NamespaceEndpointRequest
		if err := api.DecodeSettings(req.Settings, &er); err != nil {
			return nil, api.Invalid(api.CodeInvalidModifyRequest, "invalid namespace modify request: field Settings: %v", err)
		}
		if er.EndpointId == "" {
			return nil, api.Invalid(api.CodeInvalidModifyRequest, "invalid namespace modify request: field Settings.EndpointId: required")
		}
		switch req.RequestType {
		case api.RequestAdd:
			return s.Attach(ctx, ref, er.EndpointId)
		case api.RequestRemove:
			return s.Detach(ctx, ref, er.EndpointId)
		}
		return nil, api.Unsupported("namespace modify request: RequestType %s of an endpoint is not supported (use Add or Remove)", req.RequestType)
	case api.ResourceContainer:
		return s.modifyContainers(ref, req)
	}
	return nil, api.Unsupported("namespace modify request: ResourceType %s is not supported", req.ResourceType)
}

// modifyContainers records or forgets a container resource.
func (s *Service) modifyContainers(ref string, req api.ModifyRequest) (*api.Namespace, error) {
	var c api.NamespaceResourceID
	if err := json.Unmarshal(orEmpty(req.Settings), &c); err != nil || c.ID == "" {
		var alt struct{ ContainerId string }
		if json.Unmarshal(orEmpty(req.Settings), &alt) != nil || alt.ContainerId == "" {
			return nil, api.Invalid(api.CodeInvalidModifyRequest, "invalid namespace modify request: field Settings: want {\"ID\":\"<container ID>\"}")
		}
		c.ID = alt.ContainerId
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	var rec namespaceRecord
	err := s.cfg.Store.Update(func(tx store.Tx) error {
		if _, err := lookup(tx, store.Namespaces, "namespace", ref, &rec); err != nil {
			return err
		}
		var kept []api.NamespaceResource
		for _, r := range rec.Doc.Resources {
			if r.Type == api.NamespaceResourceContainer && resourceID(r) == c.ID {
				continue
			}
			kept = append(kept, r)
		}
		if req.RequestType == api.RequestAdd {
			data, _ := json.Marshal(c)
			kept = append(kept, api.NamespaceResource{Type: api.NamespaceResourceContainer, Data: data})
		}
		rec.Doc.Resources = kept
		return store.PutJSON(tx, store.Namespaces, rec.Doc.ID, rec)
	})
	if err != nil {
		return nil, internal(err, "modify namespace %q", ref)
	}
	return s.namespaceDoc(&rec), nil
}

func resourceID(r api.NamespaceResource) string {
	var d api.NamespaceResourceID
	_ = json.Unmarshal(r.Data, &d)
	return d.ID
}

// attachedIDs lists the endpoints attached to a namespace, in attach order.
func attachedIDs(n *api.Namespace) []string {
	var ids []string
	for _, r := range n.Resources {
		if r.Type == api.NamespaceResourceEndpoint {
			ids = append(ids, resourceID(r))
		}
	}
	return ids
}

func networkOf(tx store.Tx, e *api.Endpoint) (*parsedNetwork, error) {
	var nrec networkRecord
	if err := store.GetJSON(tx, store.Networks, e.HostComputeNetwork, &nrec); err != nil {
		return nil, fmt.Errorf("network %s of endpoint %s: %w", e.HostComputeNetwork, e.ID, err)
	}
	return parseStored(&nrec.Doc)
}

func clearAttachment(ep *endpointRecord) {
	ep.Doc.HostComputeNamespace, ep.Doc.NetNamespacePath = "", ""
	if ep.Doc.DhcpLease != nil {
		// The lease went with the interface (released before it).
		ep.Doc.DhcpLease, ep.Doc.IpConfigurations = nil, nil
	}
	if ep.AutoName {
		ep.Doc.InterfaceName = ""
		ep.AutoName = false
	}
}

// Attach attaches an endpoint to a namespace: its NIC is created directly
// inside the namespace with the endpoint's MAC, addresses and routes, and
// the namespace's resolv.conf gets its DNS.
func (s *Service) Attach(ctx context.Context, nsRef, epRef string) (*api.Namespace, error) {
	ns, epID, err := s.attach(ctx, nsRef, epRef)
	if err != nil {
		return nil, err
	}
	// An endpoint whose address comes from DHCP: the attach answers once
	// it has its lease, or is taken back.
	if _, err := s.leaseOnAttach(ctx, epID, func(ctx context.Context) error {
		_, err := s.Detach(ctx, ns.ID, epID)
		return err
	}); err != nil {
		return nil, err
	}
	return ns, nil
}

// attach is Attach but for the DHCP lease; it returns the endpoint's ID.
func (s *Service) attach(ctx context.Context, nsRef, epRef string) (*api.Namespace, string, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	var ns namespaceRecord
	var ep endpointRecord
	m := &mutation{}
	err := s.mutate(ctx, m, func(tx store.Tx, m *mutation) error {
		if _, err := lookup(tx, store.Namespaces, "namespace", nsRef, &ns); err != nil {
			return err
		}
		if _, err := lookup(tx, store.Endpoints, "endpoint", epRef, &ep); err != nil {
			return err
		}
		before, nsBefore := ep, ns
		if ep.Doc.HostComputeNamespace != "" {
			return api.Conflict(api.CodeEndpointAttached, "endpoint %q is already attached to namespace %s: detach it first",
				displayName(ep.Doc.Name, ep.Doc.ID), ep.Doc.HostComputeNamespace)
		}
		if err := m.touch(netmodel.EndpointOwner(ep.Doc.ID), netmodel.NamespaceOwner(ns.Doc.ID)); err != nil {
			return err
		}
		if err := linkToNamespace(tx, &ep, &ns); err != nil {
			return err
		}
		m.undo = func(tx store.Tx) error {
			if err := store.PutJSON(tx, store.Endpoints, before.Doc.ID, before); err != nil {
				return err
			}
			return store.PutJSON(tx, store.Namespaces, nsBefore.Doc.ID, nsBefore)
		}
		return store.PutJSON(tx, store.Endpoints, ep.Doc.ID, ep)
	})
	if err != nil {
		return nil, "", internal(err, "attach endpoint %q to namespace %q", epRef, nsRef)
	}
	s.logAttach(&ep, m)
	return s.namespaceDoc(&ns), ep.Doc.ID, nil
}

// linkToNamespace records ep as attached to ns inside tx: it picks the
// device name (the endpoint's own, or the first free ethN) and adds the
// endpoint to the namespace's resources. The caller stores ep.
func linkToNamespace(tx store.Tx, ep *endpointRecord, ns *namespaceRecord) error {
	taken := map[string]bool{}
	for _, id := range attachedIDs(&ns.Doc) {
		var other endpointRecord
		if store.GetJSON(tx, store.Endpoints, id, &other) == nil {
			taken[other.Doc.InterfaceName] = true
		}
	}
	if ep.Doc.InterfaceName == "" {
		for i := 0; ; i++ {
			if name := fmt.Sprintf("eth%d", i); !taken[name] {
				ep.Doc.InterfaceName, ep.AutoName = name, true
				break
			}
		}
	} else if taken[ep.Doc.InterfaceName] {
		return api.Conflict(api.CodeObjectAlreadyExists, "namespace %s already has a device named %s from another endpoint",
			ns.Doc.ID, ep.Doc.InterfaceName)
	}
	ep.Doc.HostComputeNamespace, ep.Doc.NetNamespacePath = ns.Doc.ID, ns.Doc.NetNamespacePath
	data, _ := json.Marshal(api.NamespaceResourceID{ID: ep.Doc.ID})
	ns.Doc.Resources = append(ns.Doc.Resources, api.NamespaceResource{Type: api.NamespaceResourceEndpoint, Data: data})
	return store.PutJSON(tx, store.Namespaces, ns.Doc.ID, *ns)
}

// Detach detaches an endpoint from a namespace; the endpoint keeps its
// addresses and can be attached again.
func (s *Service) Detach(ctx context.Context, nsRef, epRef string) (*api.Namespace, error) {
	if ids := s.attachedTo(store.Endpoints, "endpoint", epRef); len(ids) == 1 && slices.Contains(s.attachedTo(store.Namespaces, "namespace", nsRef), ids[0]) {
		s.stopLeasing(ctx, ids[0])
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	var ns namespaceRecord
	var ep endpointRecord
	err := s.mutate(ctx, &mutation{}, func(tx store.Tx, m *mutation) error {
		m.bestEffort = true
		if _, err := lookup(tx, store.Namespaces, "namespace", nsRef, &ns); err != nil {
			return err
		}
		if _, err := lookup(tx, store.Endpoints, "endpoint", epRef, &ep); err != nil {
			return err
		}
		if ep.Doc.HostComputeNamespace != ns.Doc.ID {
			return api.Conflict(api.CodeInvalidModifyRequest, "endpoint %q is not attached to namespace %s",
				displayName(ep.Doc.Name, ep.Doc.ID), ns.Doc.ID)
		}
		if err := m.touch(netmodel.EndpointOwner(ep.Doc.ID), netmodel.NamespaceOwner(ns.Doc.ID)); err != nil {
			return err
		}
		nsp, err := unlinkFromNamespace(tx, &ep)
		if err != nil {
			return err
		}
		ns = *nsp
		return store.PutJSON(tx, store.Endpoints, ep.Doc.ID, ep)
	})
	if err != nil {
		return nil, internal(err, "detach endpoint %q from namespace %q", epRef, nsRef)
	}
	s.log.Info("endpoint detached", "endpoint", displayName(ep.Doc.Name, ep.Doc.ID), "namespace", ns.Doc.ID)
	return s.namespaceDoc(&ns), nil
}

// withoutEndpoint returns resources without the endpoint's.
func withoutEndpoint(rs []api.NamespaceResource, id string) []api.NamespaceResource {
	var kept []api.NamespaceResource
	for _, r := range rs {
		if r.Type != api.NamespaceResourceEndpoint || resourceID(r) != id {
			kept = append(kept, r)
		}
	}
	return kept
}

// unlinkFromNamespace removes an attached endpoint from its namespace's
// resources inside tx and clears its attachment (the caller stores ep).
func unlinkFromNamespace(tx store.Tx, ep *endpointRecord) (*namespaceRecord, error) {
	var ns namespaceRecord
	if err := store.GetJSON(tx, store.Namespaces, ep.Doc.HostComputeNamespace, &ns); err != nil {
		return nil, fmt.Errorf("namespace %s of endpoint %s: %w", ep.Doc.HostComputeNamespace, ep.Doc.ID, err)
	}
	ns.Doc.Resources = withoutEndpoint(ns.Doc.Resources, ep.Doc.ID)
	if ns.Doc.Implicit && len(attachedIDs(&ns.Doc)) == 0 {
		// Made for its endpoints, it goes with the last (the Linux
		// namespace it wraps is not hostnet's and stays).
		if err := dropName(tx, "namespace", ns.Doc.Name); err != nil {
			return nil, err
		}
		if err := tx.Delete(store.Namespaces, ns.Doc.ID); err != nil {
			return nil, err
		}
	} else if err := store.PutJSON(tx, store.Namespaces, ns.Doc.ID, ns); err != nil {
		return nil, err
	}
	// The kernel NIC is named by what the endpoint was attached as.
	clearAttachment(ep)
	return &ns, nil
}
