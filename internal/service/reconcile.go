package service

import (
	"errors"
	"os"
	"path/filepath"
	"strings"

	"github.com/hostnet/hostnet/api"
	"github.com/hostnet/hostnet/internal/dataplane/netns"
	"github.com/hostnet/hostnet/internal/driver"
	"github.com/hostnet/hostnet/internal/store"
)

// ReconcileReport counts what a reconciliation did.
type ReconcileReport struct {
	Networks, Namespaces, Endpoints int // realised
	DroppedNonPersistent            int // networks dropped because they do not survive a restart
	CollectedNamespaces             int // wrapped namespaces gone from the kernel, removed with their endpoints
	RemovedLinks, RemovedNamespaces int // unclaimed kernel objects removed
	Failures                        int
}

// Reconcile brings the kernel to the stored intent, as on every start: what
// is already right is adopted as it is (live traffic keeps flowing), what
// is missing is created, and hostnet's tagged objects that no intent claims
// are removed. Networks flagged EnableNonPersistent are dropped. A failure
// on one object is logged and counted, and the others go on.
func (s *Service) Reconcile() (ReconcileReport, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	var rep ReconcileReport
	if err := s.dropNonPersistent(&rep); err != nil {
		return rep, err
	}
	if vanished, err := s.vanishedNamespaces(); err != nil {
		return rep, internal(err, "read the store")
	} else if len(vanished) > 0 {
		// After a reboot the runtimes' namespaces are gone, and with them
		// the containers these endpoints served.
		s.forgetVanished(vanished, false)
		rep.CollectedNamespaces = len(vanished)
	}
	var nets []networkRecord
	var eps []endpointRecord
	var nss []namespaceRecord
	err := s.cfg.Store.View(func(tx store.Tx) error {
		var err error
		if nets, err = listNetworks(tx); err != nil {
			return err
		}
		if eps, err = listEndpoints(tx); err != nil {
			return err
		}
		nss, err = listNamespaces(tx)
		return err
	})
	if err != nil {
		return rep, internal(err, "read the store")
	}

	claimedLinks := map[string]bool{}
	parsed := map[string]*parsedNetwork{}
	for i := range nets {
		n := &nets[i].Doc
		pn, err := parseStored(n)
		if err != nil {
			s.log.Error("reconcile: skipping network", "id", n.ID, "err", err)
			rep.Failures++
			continue
		}
		parsed[n.ID] = pn
		claimedLinks[n.BridgeName] = true
		drv, ok := s.cfg.Drivers[pn.spec.Type]
		if !ok {
			s.log.Error("reconcile: no driver for network", "id", n.ID, "type", pn.spec.Type)
			rep.Failures++
			continue
		}
		if err := drv.EnsureNetwork(pn.driverNetwork()); err != nil {
			s.log.Error("reconcile: network", "network", n.Name, "id", n.ID, "err", err)
			rep.Failures++
			continue
		}
		rep.Networks++
	}
	if err := s.cfg.Store.View(s.loadFirewall); err != nil {
		return rep, internal(err, "read the store")
	}
	if err := s.applyFirewall(); err != nil {
		s.log.Error("reconcile: firewall", "err", err)
		rep.Failures++
	}
	for i := range eps {
		if _, err := s.reservePorts(endpointPoliciesOf(&eps[i].Doc).mappings); err != nil {
			s.log.Error("reconcile: a published port is taken on the host; its traffic still goes to the endpoint, but the port is not reserved",
				"endpoint", displayName(eps[i].Doc.Name, eps[i].Doc.ID), "err", err)
			rep.Failures++
		}
	}

	nsByID := map[string]*namespaceRecord{}
	claimedNS := map[string]bool{}
	for i := range nss {
		ns := &nss[i]
		nsByID[ns.Doc.ID] = ns
		if !ns.Doc.Managed {
			continue
		}
		claimedNS[filepath.Base(ns.Doc.NetNamespacePath)] = true
		if !netns.IsNamespace(ns.Doc.NetNamespacePath) {
			s.log.Warn("reconcile: recreating a namespace that is gone (was the host rebooted?)", "namespace", ns.Doc.ID)
		}
		if err := s.realiseNamespace(ns); err != nil {
			s.log.Error("reconcile: namespace", "namespace", ns.Doc.ID, "err", err)
			rep.Failures++
			continue
		}
		rep.Namespaces++
	}

	// The garbage goes first: a NIC a crash left behind may hold, inside a
	// namespace, the name an attached endpoint's NIC is to take.
	var toAttach []int
	for i := range eps {
		ep := &eps[i]
		if ep.Doc.HostComputeNamespace == "" {
			continue
		}
		ns, pn := nsByID[ep.Doc.HostComputeNamespace], parsed[ep.Doc.HostComputeNetwork]
		if ns == nil || pn == nil || !netns.IsNamespace(ns.Doc.NetNamespacePath) {
			continue
		}
		claimedLinks[ep.Doc.HostInterfaceName] = true
		toAttach = append(toAttach, i)
	}
	s.collectGarbage(claimedLinks, claimedNS, &rep)
	for _, i := range toAttach {
		ep := &eps[i]
		ns, pn := nsByID[ep.Doc.HostComputeNamespace], parsed[ep.Doc.HostComputeNetwork]
		if err := s.attachKernel(ep, pn, ns); err != nil {
			s.log.Error("reconcile: endpoint", "endpoint", displayName(ep.Doc.Name, ep.Doc.ID), "err", err)
			rep.Failures++
			continue
		}
		rep.Endpoints++
	}
	for i := range nss {
		if err := s.writeResolvConf(&nss[i]); err != nil {
			s.log.Warn("reconcile: resolv.conf", "namespace", nss[i].Doc.ID, "err", err)
		}
	}
	s.log.Info("reconciled", "networks", rep.Networks, "namespaces", rep.Namespaces, "endpoints", rep.Endpoints,
		"dropped_non_persistent", rep.DroppedNonPersistent, "collected_namespaces", rep.CollectedNamespaces, "removed_links", rep.RemovedLinks,
		"removed_namespaces", rep.RemovedNamespaces, "failures", rep.Failures)
	return rep, nil
}

// vanishedNamespaces lists the wrapped namespaces whose Linux namespace
// is gone.
func (s *Service) vanishedNamespaces() ([]string, error) {
	var ids []string
	err := s.cfg.Store.View(func(tx store.Tx) error {
		nss, err := listNamespaces(tx)
		for _, ns := range nss {
			if !ns.Doc.Managed && !netns.IsNamespace(ns.Doc.NetNamespacePath) {
				ids = append(ids, ns.Doc.ID)
			}
		}
		return err
	})
	return ids, err
}

// dropNonPersistent forgets the networks that do not survive a restart,
// with their endpoints; their kernel objects become unclaimed and are
// removed with the garbage.
func (s *Service) dropNonPersistent(rep *ReconcileReport) error {
	return s.cfg.Store.Update(func(tx store.Tx) error {
		nets, err := listNetworks(tx)
		if err != nil {
			return err
		}
		for i := range nets {
			n := &nets[i].Doc
			if n.Flags&api.NetworkEnableNonPersistent == 0 {
				continue
			}
			pn, err := parseStored(n)
			if err != nil {
				return err
			}
			eps, err := listEndpoints(tx)
			if err != nil {
				return err
			}
			for j := range eps {
				ep := &eps[j]
				if ep.Doc.HostComputeNetwork != n.ID {
					continue
				}
				if ep.Doc.HostComputeNamespace != "" {
					if _, err := unlinkFromNamespace(tx, ep); err != nil && !errors.Is(err, store.ErrNotFound) {
						return err
					}
				}
				if err := dropName(tx, "endpoint", ep.Doc.Name); err != nil {
					return err
				}
				if err := tx.Delete(store.Endpoints, ep.Doc.ID); err != nil {
					return err
				}
			}
			if err := dropNetwork(tx, pn); err != nil {
				return err
			}
			rep.DroppedNonPersistent++
			s.event("Dropped", "Network "+displayName(n.Name, n.ID), "a non-persistent network does not survive a restart")
		}
		return nil
	})
}

// collectGarbage removes hostnet's kernel objects that no intent claims:
// devices with hostnet's prefixes in the host namespace, and namespaces
// (with their ip-netns links and resolv.conf directories) it created.
func (s *Service) collectGarbage(claimedLinks, claimedNS map[string]bool, rep *ReconcileReport) {
	names, err := s.cfg.Host.LinkNames(driver.LinkPrefix)
	if err != nil {
		s.log.Error("garbage collection: list devices", "err", err)
	}
	for _, name := range names {
		ours := strings.HasPrefix(name, driver.BridgePrefix) || strings.HasPrefix(name, driver.PortPrefix)
		if !ours || claimedLinks[name] {
			continue
		}
		if err := s.cfg.Host.DeleteLink(name); err != nil {
			s.log.Error("garbage collection: device", "device", name, "err", err)
			continue
		}
		s.log.Info("removed an unclaimed device", "device", name)
		rep.RemovedLinks++
	}
	entries, _ := os.ReadDir(s.cfg.NetnsDir)
	for _, e := range entries {
		if claimedNS[e.Name()] || strings.HasSuffix(e.Name(), ".tmp") {
			continue
		}
		if err := netns.Delete(filepath.Join(s.cfg.NetnsDir, e.Name())); err != nil {
			s.log.Error("garbage collection: namespace", "path", e.Name(), "err", err)
			continue
		}
		s.log.Info("removed an unclaimed namespace", "id", e.Name())
		rep.RemovedNamespaces++
	}
	for _, dir := range []string{s.cfg.NetnsLinkDir, s.cfg.NetnsEtcDir} {
		if dir == "" {
			continue
		}
		entries, _ := os.ReadDir(dir)
		for _, e := range entries {
			id, ok := strings.CutPrefix(e.Name(), "hn-")
			if !ok || claimedNS[id] {
				continue
			}
			if dir == s.cfg.NetnsLinkDir {
				// Only links into hostnet's own namespace directory are ours.
				target, err := os.Readlink(filepath.Join(dir, e.Name()))
				if err != nil || filepath.Dir(target) != filepath.Clean(s.cfg.NetnsDir) {
					continue
				}
			}
			_ = os.RemoveAll(filepath.Join(dir, e.Name()))
		}
	}
}
