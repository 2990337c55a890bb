package service

import (
	"bytes"
	"errors"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/hostnet/hostnet/api"
	"github.com/hostnet/hostnet/internal/dataplane"
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
	// Where the time goes, for the log: at a restart with thousands of
	// endpoints, this is the time until the API is served.
	var phases []any
	last := time.Now()
	phase := func(name string) {
		now := time.Now()
		phases = append(phases, slog.Duration(name, now.Sub(last)))
		last = now
	}
	// One dump of the host's devices serves the garbage collection and the
	// endpoints' adoption: with thousands of ports a dump is expensive, and
	// taken now it runs while the store is read.
	var links map[string]dataplane.LinkState
	var linksErr error
	linksDone := make(chan struct{})
	go func() {
		defer close(linksDone)
		links, linksErr = s.cfg.Host.Links(driver.LinkPrefix)
	}()
	defer func() { <-linksDone }()
	if err := s.dropNonPersistent(&rep); err != nil {
		return rep, err
	}
	var nets []networkRecord
	var eps []endpointRecord
	var nss []namespaceRecord
	load := func(tx store.Tx) (err error) {
		nets, eps, nss, err = listAll(tx)
		return err
	}
	if err := s.cfg.Store.View(load); err != nil {
		return rep, internal(err, "read the store")
	}
	if vanished := vanishedNamespaces(nss); len(vanished) > 0 {
		// After a reboot the runtimes' namespaces are gone, and with them
		// the containers these endpoints served.
		s.forgetVanished(vanished, false)
		rep.CollectedNamespaces = len(vanished)
		if err := s.cfg.Store.View(load); err != nil {
			return rep, internal(err, "read the store")
		}
	}
	// The host's IDs of the endpoints' namespaces, for adopting their
	// ports (see portInPlace), asked while the rest goes on.
	nsIDs := map[string]int{} // by endpoint ID
	idsDone := make(chan struct{})
	go func() {
		defer close(idsDone)
		pathOf := make(map[string]string, len(nss))
		for i := range nss {
			pathOf[nss[i].Doc.ID] = nss[i].Doc.NetNamespacePath
		}
		var ids, paths []string
		for i := range eps {
			if p, ok := pathOf[eps[i].Doc.HostComputeNamespace]; ok {
				ids, paths = append(ids, eps[i].Doc.ID), append(paths, p)
			}
		}
		for k, id := range s.cfg.Host.NamespaceIDs(paths) {
			nsIDs[ids[k]] = id
		}
	}()
	defer func() { <-idsDone }()

	phase("load")
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
	phase("networks")
	s.buildFirewall(nets, eps)
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

	phase("firewall")
	nsByID := map[string]*namespaceRecord{}
	claimedNS := map[string]bool{}
	var laterNS []string // managed namespaces that exist: verified after serving
	for i := range nss {
		ns := &nss[i]
		nsByID[ns.Doc.ID] = ns
		if !ns.Doc.Managed {
			continue
		}
		claimedNS[filepath.Base(ns.Doc.NetNamespacePath)] = true
		realise := s.realiseNamespace
		if netns.IsNamespace(ns.Doc.NetNamespacePath) {
			// Its loopback is checked after serving, with the endpoints.
			realise = s.realiseNamespaceFiles
			laterNS = append(laterNS, ns.Doc.ID)
		} else {
			s.log.Warn("reconcile: recreating a namespace that is gone (was the host rebooted?)", "namespace", ns.Doc.ID)
		}
		if err := realise(ns); err != nil {
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
	phase("namespaces")
	<-linksDone
	if linksErr != nil {
		s.log.Error("reconcile: list devices; no garbage collection of devices, and every endpoint is checked in its namespace", "err", linksErr)
	}
	// A bridge made again since the dump has no ports: the dump's are
	// not adopted.
	for name, st := range links {
		if !claimedLinks[name] || st.Kind != "bridge" {
			continue
		}
		if idx, err := s.cfg.Host.LinkIndex(name); err != nil || idx != st.Index {
			st.Index = -1
			links[name] = st
		}
	}
	s.collectGarbage(links, claimedLinks, claimedNS, &rep)
	phase("garbage")
	<-idsDone
	var adopted []string
	for _, i := range toAttach {
		ep := &eps[i]
		ns, pn := nsByID[ep.Doc.HostComputeNamespace], parsed[ep.Doc.HostComputeNetwork]
		if id, ok := nsIDs[ep.Doc.ID]; ok && links != nil && s.portInPlace(ep, pn, links, id) {
			adopted = append(adopted, ep.Doc.ID)
			rep.Endpoints++
			continue
		}
		if err := s.attachKernel(ep, pn, ns); err != nil {
			s.log.Error("reconcile: endpoint", "endpoint", displayName(ep.Doc.Name, ep.Doc.ID), "err", err)
			rep.Failures++
			continue
		}
		rep.Endpoints++
	}
	phase("endpoints")
	s.writeAllResolvConf(nss, eps, parsed)
	phase("resolv.conf")
	if len(adopted)+len(laterNS) > 0 {
		s.background.Add(1)
		go s.verifyAdopted(laterNS, adopted)
	}
	s.log.Info("reconciled", "networks", rep.Networks, "namespaces", rep.Namespaces, "endpoints", rep.Endpoints,
		"dropped_non_persistent", rep.DroppedNonPersistent, "collected_namespaces", rep.CollectedNamespaces, "removed_links", rep.RemovedLinks,
		"removed_namespaces", rep.RemovedNamespaces, "failures", rep.Failures, slog.Group("took", phases...))
	return rep, nil
}

// portInPlace reports whether an attached endpoint's NIC is whole as the
// host sees it in links: its host side a veth, up, a port of its bridge,
// with its other side in the endpoint's namespace. The host side comes up
// only once the other side is configured (see dataplane.EnsurePort), so
// such a NIC is adopted as it is, without looking into the namespace: at
// a restart with thousands of endpoints, that look is most of the time,
// and it is done after the API is served (verifyAdopted).
func (s *Service) portInPlace(ep *endpointRecord, pn *parsedNetwork, links map[string]dataplane.LinkState, nsID int) bool {
	drv, ok := s.cfg.Drivers[pn.spec.Type]
	if !ok || nsID < 0 {
		return false
	}
	de, err := driverEndpoint(ep, pn)
	if err != nil || len(drv.PortDrift(de, links)) > 0 {
		return false
	}
	port, bridge := links[de.HostName], links[de.Network.Bridge]
	return port.Kind == "veth" && port.PeerNSID == nsID && bridge.Index > 0 && port.MasterIndex == bridge.Index
}

// verifyAdopted looks inside the namespaces of the endpoints Reconcile
// adopted from the host's side alone, and repairs what was changed there
// while the daemon was down (an address, a route, the device's state).
// It runs after the API is served, one endpoint at a time under the lock,
// so requests are not held up; Close stops it.
func (s *Service) verifyAdopted(namespaces, endpoints []string) {
	defer s.background.Done()
	start := time.Now()
	closing := func() bool {
		select {
		case <-s.flowWake:
			return true
		default:
			return false
		}
	}
	for _, id := range namespaces {
		if closing() {
			return
		}
		if err := s.verifyNamespace(id); err != nil {
			s.log.Warn("verifying a namespace after the restart", "namespace", id, "err", err)
		}
	}
	for _, id := range endpoints {
		if closing() {
			return
		}
		if err := s.verifyEndpoint(id); err != nil {
			s.log.Warn("verifying an endpoint inside its namespace after the restart", "endpoint", id, "err", err)
		}
	}
	s.log.Info("verified the adopted namespaces and endpoints from inside", "namespaces", len(namespaces), "endpoints", len(endpoints), "took", time.Since(start))
}

func (s *Service) verifyNamespace(id string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	var ns namespaceRecord
	err := s.cfg.Store.View(func(tx store.Tx) error { return store.GetJSON(tx, store.Namespaces, id, &ns) })
	if errors.Is(err, store.ErrNotFound) {
		return nil // deleted since
	}
	if err != nil {
		return err
	}
	_, err = dataplane.EnsureNamespace(ns.Doc.NetNamespacePath)
	return err
}

func (s *Service) verifyEndpoint(id string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	var ep endpointRecord
	var ns namespaceRecord
	var pn *parsedNetwork
	err := s.cfg.Store.View(func(tx store.Tx) error {
		if err := store.GetJSON(tx, store.Endpoints, id, &ep); err != nil {
			return err
		}
		if ep.Doc.HostComputeNamespace == "" {
			return store.ErrNotFound
		}
		if err := store.GetJSON(tx, store.Namespaces, ep.Doc.HostComputeNamespace, &ns); err != nil {
			return err
		}
		var err error
		pn, err = networkOf(tx, &ep.Doc)
		return err
	})
	if errors.Is(err, store.ErrNotFound) {
		return nil // deleted or detached since
	}
	if err != nil {
		return err
	}
	return s.attachKernel(&ep, pn, &ns)
}

// writeAllResolvConf writes every namespace's resolv.conf from the
// records in hand, leaving alone the files that already say it.
func (s *Service) writeAllResolvConf(nss []namespaceRecord, eps []endpointRecord, parsed map[string]*parsedNetwork) {
	byID := make(map[string]*endpointRecord, len(eps))
	for i := range eps {
		byID[eps[i].Doc.ID] = &eps[i]
	}
	var host *api.DNSSpec
	hostOnce := func() api.DNSSpec {
		if host == nil {
			d := hostDNS(s.cfg.HostResolvConf)
			host = &d
		}
		return *host
	}
	for i := range nss {
		ns := &nss[i]
		if ns.ResolvConf == "" {
			continue
		}
		var content []byte
		if len(attachedIDs(&ns.Doc)) > 0 {
			content = resolvConf(ns.Doc.ID, s.dnsOf(ns, func(id string) *endpointRecord { return byID[id] },
				func(ep *endpointRecord) *parsedNetwork { return parsed[ep.Doc.HostComputeNetwork] }, hostOnce))
		}
		if old, err := os.ReadFile(ns.ResolvConf); err == nil && bytes.Equal(old, content) {
			continue
		}
		if err := writeResolvFile(ns, content); err != nil {
			s.log.Warn("reconcile: resolv.conf", "namespace", ns.Doc.ID, "err", err)
		}
	}
}

// vanishedNamespaces lists the wrapped namespaces of nss whose Linux
// namespace is gone.
func vanishedNamespaces(nss []namespaceRecord) []string {
	var ids []string
	for _, ns := range nss {
		if !ns.Doc.Managed && !netns.IsNamespace(ns.Doc.NetNamespacePath) {
			ids = append(ids, ns.Doc.ID)
		}
	}
	return ids
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
// links is the host's devices with hostnet's prefix; those removed are
// removed from it.
func (s *Service) collectGarbage(links map[string]dataplane.LinkState, claimedLinks, claimedNS map[string]bool, rep *ReconcileReport) {
	names := make([]string, 0, len(links))
	for name := range links {
		names = append(names, name)
	}
	slices.Sort(names)
	for _, name := range names {
		ours := strings.HasPrefix(name, driver.BridgePrefix) || strings.HasPrefix(name, driver.PortPrefix)
		if !ours || claimedLinks[name] {
			continue
		}
		delete(links, name)
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
