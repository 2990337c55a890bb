package service

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"github.com/hostnet/hostnet/api"
	"github.com/hostnet/hostnet/internal/dataplane"
	"github.com/hostnet/hostnet/internal/dataplane/netns"
	"github.com/hostnet/hostnet/internal/driver"
	"github.com/hostnet/hostnet/internal/store"
)

// ipNetnsName is the name under which `ip netns` sees a namespace hostnet
// created.
func ipNetnsName(id string) string { return "hn-" + id }

// CreateNamespace creates a Linux network namespace, bind-mounted under the
// run directory, or, when n names an existing one by NetNamespacePath,
// wraps it (hostnet then never removes it).
func (s *Service) CreateNamespace(n api.Namespace) (*api.Namespace, error) {
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
		if !netns.IsNamespace(n.NetNamespacePath) {
			return nil, api.Invalid(api.CodeInvalidNamespace, "invalid namespace: field NetNamespacePath: %q is not a network namespace", n.NetNamespacePath)
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
	err = s.cfg.Store.Update(func(tx store.Tx) error {
		var old namespaceRecord
		if err := store.GetJSON(tx, store.Namespaces, n.ID, &old); err == nil {
			existing = &old
			return nil
		} else if !errors.Is(err, store.ErrNotFound) {
			return err
		}
		if err := claimName(tx, "namespace", n.Name, n.ID); err != nil {
			return err
		}
		return store.PutJSON(tx, store.Namespaces, n.ID, rec)
	})
	if err != nil {
		return nil, internal(err, "store namespace")
	}
	if existing != nil {
		cmp := rec.Doc
		cmp.Resources = existing.Doc.Resources
		if sameJSON(&existing.Doc, &cmp) {
			return &existing.Doc, nil
		}
		return nil, api.Conflict(api.CodeObjectAlreadyExists, "a namespace with ID %s already exists with other settings", n.ID)
	}
	if rec.Doc.Managed {
		if err := s.realiseNamespace(&rec); err != nil {
			s.removeNamespaceFiles(&rec)
			_ = s.cfg.Store.Update(func(tx store.Tx) error {
				if err := dropName(tx, "namespace", n.Name); err != nil {
					return err
				}
				return tx.Delete(store.Namespaces, n.ID)
			})
			return nil, internal(err, "create namespace")
		}
	}
	s.log.Info("namespace created", "id", n.ID, "path", rec.Doc.NetNamespacePath, "managed", rec.Doc.Managed)
	return &rec.Doc, nil
}

// realiseNamespace makes a managed namespace exist, with loopback up, and
// visible to `ip netns` when configured. An existing one is kept.
func (s *Service) realiseNamespace(rec *namespaceRecord) error {
	if _, err := dataplane.EnsureNamespace(rec.Doc.NetNamespacePath); err != nil {
		return fmt.Errorf("namespace %s: %w", rec.Doc.ID, err)
	}
	return s.realiseNamespaceFiles(rec)
}

// realiseNamespaceFiles makes a namespace's files: its resolv.conf and its
// link for `ip netns`.
func (s *Service) realiseNamespaceFiles(rec *namespaceRecord) error {
	path := rec.Doc.NetNamespacePath
	if rec.ResolvConf != "" {
		// Made now, so that attaching only overwrites a file.
		if _, err := os.Stat(rec.ResolvConf); errors.Is(err, os.ErrNotExist) {
			if err := s.writeResolvConf(rec); err != nil {
				return fmt.Errorf("resolv.conf of namespace %s: %w", rec.Doc.ID, err)
			}
		}
	}
	if s.cfg.NetnsLinkDir != "" {
		if err := os.MkdirAll(s.cfg.NetnsLinkDir, 0o755); err != nil {
			return err
		}
		link := filepath.Join(s.cfg.NetnsLinkDir, ipNetnsName(rec.Doc.ID))
		if target, err := os.Readlink(link); err != nil || target != path {
			_ = os.Remove(link)
			if err := os.Symlink(path, link); err != nil {
				return fmt.Errorf("link namespace for ip netns: %w", err)
			}
		}
	}
	return nil
}

// removeNamespaceFiles removes a managed namespace's mount, ip-netns link
// and resolv.conf; what is already gone is skipped.
func (s *Service) removeNamespaceFiles(rec *namespaceRecord) {
	if !rec.Doc.Managed {
		return
	}
	if err := netns.Delete(rec.Doc.NetNamespacePath); err != nil {
		s.log.Error("removing namespace failed", "id", rec.Doc.ID, "err", err)
	}
	if s.cfg.NetnsLinkDir != "" {
		_ = os.Remove(filepath.Join(s.cfg.NetnsLinkDir, ipNetnsName(rec.Doc.ID)))
	}
	if rec.ResolvConf != "" {
		_ = os.RemoveAll(filepath.Dir(rec.ResolvConf))
	}
}

// GetNamespace returns a namespace by ID or name.
func (s *Service) GetNamespace(ref string) (*api.Namespace, error) {
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
func (s *Service) ListNamespaces(filter string) ([]api.Namespace, error) {
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
func (s *Service) DeleteNamespace(ref string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	var rec namespaceRecord
	type detached struct {
		ep endpointRecord
		pn *parsedNetwork
	}
	var gone []detached
	err := s.cfg.Store.Update(func(tx store.Tx) error {
		id, err := lookup(tx, store.Namespaces, "namespace", ref, &rec)
		if err != nil {
			return err
		}
		for _, epID := range attachedIDs(&rec.Doc) {
			var ep endpointRecord
			if err := store.GetJSON(tx, store.Endpoints, epID, &ep); err != nil {
				continue
			}
			pn, err := networkOf(tx, &ep.Doc)
			if err != nil {
				return err
			}
			gone = append(gone, detached{ep, pn})
			clearAttachment(&ep)
			if err := store.PutJSON(tx, store.Endpoints, epID, ep); err != nil {
				return err
			}
		}
		if err := dropName(tx, "namespace", rec.Doc.Name); err != nil {
			return err
		}
		return tx.Delete(store.Namespaces, id)
	})
	if err != nil {
		return internal(err, "delete namespace %q", ref)
	}
	for _, d := range gone {
		s.detachKernel(&d.ep, d.pn)
		s.forgetInFirewall(d.ep.Doc.ID)
	}
	s.removeNamespaceFiles(&rec)
	s.log.Info("namespace deleted", "id", rec.Doc.ID, "detached", len(gone))
	return nil
}

// ModifyNamespace attaches or detaches an endpoint, or records a container.
func (s *Service) ModifyNamespace(ref string, req api.ModifyRequest) (*api.Namespace, error) {
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
			return s.Attach(ref, er.EndpointId)
		case api.RequestRemove:
			return s.Detach(ref, er.EndpointId)
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
	if ep.AutoName {
		ep.Doc.InterfaceName = ""
		ep.AutoName = false
	}
}

// Attach attaches an endpoint to a namespace: its NIC is created directly
// inside the namespace with the endpoint's MAC, addresses and routes, and
// the namespace's resolv.conf gets its DNS.
func (s *Service) Attach(nsRef, epRef string) (*api.Namespace, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	var ns, nsBefore namespaceRecord
	var ep, before endpointRecord
	var pn *parsedNetwork
	times, txErr, kernelErr := s.updateOverlapped(func(tx store.Tx) (func() error, error) {
		if _, err := lookup(tx, store.Namespaces, "namespace", nsRef, &ns); err != nil {
			return nil, err
		}
		if _, err := lookup(tx, store.Endpoints, "endpoint", epRef, &ep); err != nil {
			return nil, err
		}
		before, nsBefore = ep, ns
		if ep.Doc.HostComputeNamespace != "" {
			return nil, api.Conflict(api.CodeEndpointAttached, "endpoint %q is already attached to namespace %s: detach it first",
				displayName(ep.Doc.Name, ep.Doc.ID), ep.Doc.HostComputeNamespace)
		}
		var err error
		if pn, err = networkOf(tx, &ep.Doc); err != nil {
			return nil, err
		}
		if err := linkToNamespace(tx, &ep, &ns); err != nil {
			return nil, err
		}
		if err := store.PutJSON(tx, store.Endpoints, ep.Doc.ID, ep); err != nil {
			return nil, err
		}
		return s.attachStep(tx, &ep, pn, &ns), nil
	})
	if err := s.settleAttach(txErr, kernelErr, times, &ep, pn, &nsBefore, func(tx store.Tx) error {
		if err := store.PutJSON(tx, store.Endpoints, before.Doc.ID, before); err != nil {
			return err
		}
		return store.PutJSON(tx, store.Namespaces, nsBefore.Doc.ID, nsBefore)
	}); err != nil {
		return nil, internal(err, "attach endpoint %q to namespace %q", epRef, nsRef)
	}
	return s.namespaceDoc(&ns), nil
}

// attachStep returns the kernel step of an attach decided in tx: the
// endpoint's filters (so its NIC never carries a packet unfiltered), its
// NIC, then the namespace's resolv.conf (its content computed now, from
// what tx sees, the new attachment included).
func (s *Service) attachStep(tx store.Tx, ep *endpointRecord, pn *parsedNetwork, ns *namespaceRecord) func() error {
	resolv := s.resolvContent(tx, ns)
	patches := s.firewall().SetEndpoint(firewallEndpoint(&ep.Doc))
	epc, nsc := *ep, *ns
	return func() error {
		if err := s.patchFirewall(patches); err != nil {
			return internal(err, "attach endpoint %q", displayName(epc.Doc.Name, epc.Doc.ID))
		}
		if err := s.attachKernel(&epc, pn, &nsc); err != nil {
			s.detachKernel(&epc, pn)
			return err
		}
		if err := writeResolvFile(&nsc, resolv); err != nil {
			s.log.Warn("writing resolv.conf failed", "namespace", nsc.Doc.ID, "err", err)
		}
		return nil
	}
}

// settleAttach finishes an overlapped attach: when the kernel step failed,
// the store is put back with revert; when the commit failed after the
// kernel step succeeded, the NIC is removed again and the namespace's
// resolv.conf rewritten as it was.
func (s *Service) settleAttach(txErr, kernelErr error, times overlapTimes, ep *endpointRecord, pn *parsedNetwork, nsBefore *namespaceRecord, revert func(store.Tx) error) error {
	switch {
	case txErr != nil && times.Started && kernelErr == nil:
		s.detachKernel(ep, pn)
		if err := s.writeResolvConf(nsBefore); err != nil {
			s.log.Warn("writing resolv.conf failed", "namespace", nsBefore.Doc.ID, "err", err)
		}
		s.resyncFirewall()
		return txErr
	case txErr != nil:
		if times.Started {
			s.resyncFirewall()
		}
		return txErr
	case kernelErr != nil:
		if err := s.cfg.Store.Update(revert); err != nil {
			s.log.Error("reverting a failed attach in the store failed; reconciliation will retry", "endpoint", ep.Doc.ID, "err", err)
		}
		s.resyncFirewall()
		return kernelErr
	case !times.Started:
		return nil
	}
	s.log.Info("endpoint attached", "endpoint", displayName(ep.Doc.Name, ep.Doc.ID), "namespace", ep.Doc.HostComputeNamespace,
		"interface", ep.Doc.InterfaceName, "prepare", times.Prepare, "commit", times.Commit, "kernel", times.Kernel)
	return nil
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

// attachKernel creates an attached endpoint's NIC.
func (s *Service) attachKernel(ep *endpointRecord, pn *parsedNetwork, ns *namespaceRecord) error {
	drv, ok := s.cfg.Drivers[pn.spec.Type]
	if !ok {
		return api.Unsupported("network type %s is not supported by this build", pn.spec.Type)
	}
	de, err := driverEndpoint(ep, pn)
	if err != nil {
		return err
	}
	s.awaitUnlink(de.HostName, ns.Doc.ID)
	h, err := netns.Open(ns.Doc.NetNamespacePath)
	if err != nil {
		return api.Conflict(api.CodeInvalidNamespace, "namespace %s: its network namespace %s is gone", ns.Doc.ID, ns.Doc.NetNamespacePath)
	}
	defer h.Close()
	if err := drv.Attach(de, h); err != nil {
		name := displayName(ep.Doc.Name, ep.Doc.ID)
		switch {
		case errors.Is(err, dataplane.ErrBridgeFull):
			return api.Conflict(api.CodeAddressesExhausted, "attach endpoint %q: network %q has as many endpoints attached as its bridge can take: %v",
				name, displayName(pn.doc.Name, pn.doc.ID), err)
		case errors.Is(err, dataplane.ErrNameTaken):
			return api.Conflict(api.CodeObjectAlreadyExists, "attach endpoint %q: namespace %s already has a device named %s that is not hostnet's",
				name, ns.Doc.ID, ep.Doc.InterfaceName)
		}
		return internal(err, "attach endpoint %q", name)
	}
	return nil
}

// reattach brings an attached endpoint's NIC to its current settings.
func (s *Service) reattach(ep *endpointRecord) error {
	var ns namespaceRecord
	var pn *parsedNetwork
	err := s.cfg.Store.View(func(tx store.Tx) error {
		if err := store.GetJSON(tx, store.Namespaces, ep.Doc.HostComputeNamespace, &ns); err != nil {
			return err
		}
		var err error
		pn, err = networkOf(tx, &ep.Doc)
		return err
	})
	if err != nil {
		return err
	}
	return s.attachKernel(ep, pn, &ns)
}

// detachKernel removes an endpoint's NIC; failures are logged, as the NIC
// is unclaimed once the store says so and reconciliation removes it.
func (s *Service) detachKernel(ep *endpointRecord, pn *parsedNetwork) {
	drv, ok := s.cfg.Drivers[pn.spec.Type]
	if !ok {
		return
	}
	// Detaching needs only the host-side device, which does not depend on
	// the (possibly already cleared) attachment.
	de := &driver.Endpoint{ID: ep.Doc.ID, Network: pn.driverNetwork(), HostName: ep.Doc.HostInterfaceName}
	if err := drv.Detach(de); err != nil {
		s.log.Error("removing endpoint NIC failed; reconciliation will retry", "endpoint", ep.Doc.ID, "err", err)
	}
}

// Detach detaches an endpoint from a namespace; the endpoint keeps its
// addresses and can be attached again.
func (s *Service) Detach(nsRef, epRef string) (*api.Namespace, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	var ns namespaceRecord
	var ep endpointRecord
	var pn *parsedNetwork
	err := s.cfg.Store.Update(func(tx store.Tx) error {
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
		var err error
		if pn, err = networkOf(tx, &ep.Doc); err != nil {
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
	s.unrealiseAttachment(&ep, pn, &ns)
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

// unrealiseAttachment removes a detached endpoint's NIC and rewrites its
// former namespace's resolv.conf.
//
// The firewall forgets the endpoint first, which cuts its port off (the
// bridge table drops what a port it does not know sends); the device goes
// in the background, since deleting a veth waits for several RCU grace
// periods (about 15 ms here) and nothing depends on it any more. An attach
// of the same device waits for it (awaitUnlink); a crash before it is gone
// leaves an unclaimed device that reconciliation removes.
func (s *Service) unrealiseAttachment(ep *endpointRecord, pn *parsedNetwork, ns *namespaceRecord) {
	s.forgetInFirewall(ep.Doc.ID)
	s.detachLater(ep, pn, ns.Doc.ID)
	if err := s.writeResolvConf(ns); err != nil {
		s.log.Warn("writing resolv.conf failed", "namespace", ns.Doc.ID, "err", err)
	}
}
