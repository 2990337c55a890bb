package service

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/hostnet/hostnet/api"
	"github.com/hostnet/hostnet/internal/dataplane/netns"
	"github.com/hostnet/hostnet/internal/driver"
	"github.com/hostnet/hostnet/internal/store"
)

// drift is how the kernel differs from the stored intent, with what
// repairing it takes.
type drift struct {
	problems []api.Problem

	networks   map[string]bool // IDs of networks whose objects need EnsureNetwork (and their ports Attach)
	endpoints  map[string]bool // IDs of endpoints whose NIC needs Attach
	namespaces map[string]bool // IDs of managed namespaces to make again (and their endpoints attach)
	vanished   []string        // IDs of wrapped namespaces whose Linux namespace is gone
	garbage    bool            // unclaimed devices or namespaces
	firewall   bool            // the nftables tables differ

	claimedLinks, claimedNS map[string]bool
}

func (d *drift) add(kind, id, name, format string, args ...any) {
	d.problems = append(d.problems, api.Problem{Kind: kind, ID: id, Name: name, Problem: fmt.Sprintf(format, args...)})
}

func (d *drift) empty() bool { return len(d.problems) == 0 }

// Check compares the kernel with the stored intent and reports every
// difference, changing nothing (`hostnet doctor`): missing or altered
// bridges and ports, namespaces that are gone, hostnet's devices and
// namespaces that nothing claims, and differences in the nftables tables.
func (s *Service) Check() (*api.CheckReport, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	d, err := s.drift()
	if err != nil {
		return nil, internal(err, "check")
	}
	return &api.CheckReport{InSync: d.empty(), Problems: d.problems}, nil
}

// drift computes the differences. The caller holds s.mu, so that no
// request is half done while it looks.
func (s *Service) drift() (*drift, error) {
	d := &drift{networks: map[string]bool{}, endpoints: map[string]bool{}, namespaces: map[string]bool{},
		claimedLinks: map[string]bool{}, claimedNS: map[string]bool{}}
	var nets []networkRecord
	var eps []endpointRecord
	var nss []namespaceRecord
	err := s.cfg.Store.View(func(tx store.Tx) (err error) {
		nets, eps, nss, err = listAll(tx)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("read the store: %w", err)
	}
	links, err := s.cfg.Host.Links(driver.LinkPrefix)
	if err != nil {
		return nil, err
	}

	parsed := map[string]*parsedNetwork{}
	for i := range nets {
		n := &nets[i].Doc
		pn, err := parseStored(n)
		if err != nil {
			d.add("Network", n.ID, n.Name, "%v", err)
			continue
		}
		parsed[n.ID] = pn
		d.claimedLinks[n.BridgeName] = true
		drv, ok := s.cfg.Drivers[pn.spec.Type]
		if !ok {
			continue
		}
		for _, p := range drv.NetworkDrift(pn.driverNetwork(), links) {
			d.add("Network", n.ID, n.Name, "%s", p)
			d.networks[n.ID] = true
		}
	}

	nsByID := map[string]*namespaceRecord{}
	for i := range nss {
		ns := &nss[i]
		nsByID[ns.Doc.ID] = ns
		present := netns.IsNamespace(ns.Doc.NetNamespacePath)
		switch {
		case ns.Doc.Managed:
			d.claimedNS[filepath.Base(ns.Doc.NetNamespacePath)] = true
			if !present {
				d.add("Namespace", ns.Doc.ID, ns.Doc.Name, "its network namespace %s is gone", ns.Doc.NetNamespacePath)
				d.namespaces[ns.Doc.ID] = true
			}
		case !present:
			d.add("Namespace", ns.Doc.ID, ns.Doc.Name, "the network namespace it wraps, %s, is gone: its %d endpoints are to be removed",
				ns.Doc.NetNamespacePath, len(attachedIDs(&ns.Doc)))
			d.vanished = append(d.vanished, ns.Doc.ID)
		}
	}

	for i := range eps {
		ep := &eps[i]
		ns, pn := nsByID[ep.Doc.HostComputeNamespace], parsed[ep.Doc.HostComputeNetwork]
		if ep.Doc.HostComputeNamespace == "" || ns == nil || pn == nil {
			continue
		}
		if !ns.Doc.Managed && !netns.IsNamespace(ns.Doc.NetNamespacePath) {
			continue // its namespace vanished; counted there
		}
		d.claimedLinks[ep.Doc.HostInterfaceName] = true
		drv, ok := s.cfg.Drivers[pn.spec.Type]
		if !ok || d.networks[pn.doc.ID] || d.namespaces[ns.Doc.ID] {
			continue // its network or namespace is made again, and it with them
		}
		de, err := driverEndpoint(ep, pn)
		if err != nil {
			d.add("Endpoint", ep.Doc.ID, ep.Doc.Name, "%v", err)
			continue
		}
		for _, p := range drv.PortDrift(de, links) {
			d.add("Endpoint", ep.Doc.ID, ep.Doc.Name, "%s", p)
			d.endpoints[ep.Doc.ID] = true
		}
	}

	names := make([]string, 0, len(links))
	for name := range links {
		names = append(names, name)
	}
	sort.Strings(names)
	for _, name := range names {
		ours := strings.HasPrefix(name, driver.BridgePrefix) || strings.HasPrefix(name, driver.PortPrefix)
		if ours && !d.claimedLinks[name] && !s.unlinkPending(name) {
			d.add("Device", "", name, "device %s is hostnet's but no network or endpoint claims it", name)
			d.garbage = true
		}
	}
	entries, _ := os.ReadDir(s.cfg.NetnsDir)
	for _, e := range entries {
		if !d.claimedNS[e.Name()] && !strings.HasSuffix(e.Name(), ".tmp") {
			d.add("Device", "", e.Name(), "namespace %s is hostnet's but no namespace object claims it", filepath.Join(s.cfg.NetnsDir, e.Name()))
			d.garbage = true
		}
	}

	if s.cfg.Firewall != nil {
		ops, err := s.cfg.Firewall.Drift(s.firewall().Tables()...)
		if err != nil {
			return nil, err
		}
		if len(ops) > 0 {
			d.firewall = true
			const most = 10
			for i, op := range ops {
				if i == most {
					d.add("Firewall", "", "", "and %d more differences", len(ops)-most)
					break
				}
				d.add("Firewall", "", "", "to put back: %s", op)
			}
		}
	}
	return d, nil
}

// unlinkPending tells whether the device is being removed in the
// background (see detachLater): it is going, not garbage.
func (s *Service) unlinkPending(name string) bool {
	s.unlinkMu.Lock()
	defer s.unlinkMu.Unlock()
	_, ok := s.unlinking[name]
	return ok
}

// Repair brings the kernel back to the stored intent when it has drifted
// (someone deleted a bridge, a port, an nftables element or table by hand,
// or a runtime deleted a network namespace without telling hostnet). It
// logs and records as an event each repair, and returns how many problems
// it found. Nothing is done, and no lock held for long, when there is no
// drift.
func (s *Service) Repair(reason string) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	d, err := s.drift()
	if err != nil {
		return 0, err
	}
	if d.empty() {
		return 0, nil
	}
	for _, p := range d.problems {
		s.event("Repaired", problemObject(p), p.Problem)
	}
	s.log.Warn("the kernel drifted from hostnet's intent; repairing", "reason", reason, "problems", len(d.problems))
	s.repair(d)
	return len(d.problems), nil
}

func problemObject(p api.Problem) string {
	switch {
	case p.Name != "" && p.ID != "":
		return p.Kind + " " + p.Name + " (" + p.ID + ")"
	case p.Name != "":
		return p.Kind + " " + p.Name
	case p.ID != "":
		return p.Kind + " " + p.ID
	}
	return p.Kind
}

// repair acts on a drift; the caller holds s.mu.
func (s *Service) repair(d *drift) {
	if len(d.vanished) > 0 {
		s.forgetVanished(d.vanished, true)
	}
	var nets []networkRecord
	var eps []endpointRecord
	var nss []namespaceRecord
	if err := s.cfg.Store.View(func(tx store.Tx) (err error) {
		nets, eps, nss, err = listAll(tx)
		return err
	}); err != nil {
		s.log.Error("repair: read the store", "err", err)
		return
	}
	parsed := map[string]*parsedNetwork{}
	for i := range nets {
		pn, err := parseStored(&nets[i].Doc)
		if err != nil {
			continue
		}
		parsed[pn.doc.ID] = pn
		if !d.networks[pn.doc.ID] {
			continue
		}
		if drv, ok := s.cfg.Drivers[pn.spec.Type]; ok {
			if err := drv.EnsureNetwork(pn.driverNetwork()); err != nil {
				s.log.Error("repair: network", "network", displayName(pn.doc.Name, pn.doc.ID), "err", err)
			}
		}
	}
	nsByID := map[string]*namespaceRecord{}
	for i := range nss {
		ns := &nss[i]
		nsByID[ns.Doc.ID] = ns
		if d.namespaces[ns.Doc.ID] {
			if err := s.realiseNamespace(ns); err != nil {
				s.log.Error("repair: namespace", "namespace", ns.Doc.ID, "err", err)
			}
		}
	}
	if d.firewall {
		if err := s.applyFirewall(); err != nil {
			s.log.Error("repair: firewall", "err", err)
		}
	}
	for i := range eps {
		ep := &eps[i]
		ns, pn := nsByID[ep.Doc.HostComputeNamespace], parsed[ep.Doc.HostComputeNetwork]
		if ns == nil || pn == nil {
			continue
		}
		if !d.endpoints[ep.Doc.ID] && !d.networks[pn.doc.ID] && !d.namespaces[ns.Doc.ID] {
			continue
		}
		if err := s.attachKernel(ep, pn, ns); err != nil {
			s.log.Error("repair: endpoint", "endpoint", displayName(ep.Doc.Name, ep.Doc.ID), "err", err)
		}
	}
	if d.garbage {
		var rep ReconcileReport
		links, err := s.cfg.Host.Links(driver.LinkPrefix)
		if err != nil {
			s.log.Error("repair: list devices", "err", err)
		}
		s.collectGarbage(links, d.claimedLinks, d.claimedNS, &rep)
	}
}

// forgetVanished removes the wrapped namespaces whose Linux namespace is
// gone (a reboot, or a runtime that deleted it without detaching), with
// their endpoints: their addresses, MACs and published ports go back to
// the pools. Their NICs went with the namespace.
//
// At start (inFirewall false) the firewall is applied whole afterwards, so
// it is not patched here.
func (s *Service) forgetVanished(ids []string, inFirewall bool) {
	type gone struct {
		rec endpointRecord
		pn  *parsedNetwork
	}
	var eps []gone
	var nsNames []string
	err := s.cfg.Store.Update(func(tx store.Tx) error {
		eps, nsNames = nil, nil
		for _, id := range ids {
			var ns namespaceRecord
			if err := store.GetJSON(tx, store.Namespaces, id, &ns); errors.Is(err, store.ErrNotFound) {
				continue
			} else if err != nil {
				return err
			}
			for _, epID := range attachedIDs(&ns.Doc) {
				var rec endpointRecord
				if err := store.GetJSON(tx, store.Endpoints, epID, &rec); errors.Is(err, store.ErrNotFound) {
					continue
				} else if err != nil {
					return err
				}
				pn, err := networkOf(tx, &rec.Doc)
				if err != nil {
					return err
				}
				before := rec
				if err := forgetEndpoint(tx, &rec, pn); err != nil {
					return err
				}
				eps = append(eps, gone{before, pn})
			}
			// An implicit namespace went with its last endpoint.
			if err := store.GetJSON(tx, store.Namespaces, id, &ns); err == nil {
				if err := dropName(tx, "namespace", ns.Doc.Name); err != nil {
					return err
				}
				if err := tx.Delete(store.Namespaces, id); err != nil {
					return err
				}
			}
			nsNames = append(nsNames, displayName(ns.Doc.Name, ns.Doc.ID)+" ("+ns.Doc.NetNamespacePath+")")
		}
		return nil
	})
	if err != nil {
		s.log.Error("removing the endpoints of vanished namespaces failed", "err", err)
		return
	}
	for _, g := range eps {
		if inFirewall {
			s.forgetInFirewall(g.rec.Doc.ID)
			s.releasePorts(endpointPoliciesOf(&g.rec.Doc).mappings)
		}
		s.event("Collected", "Endpoint "+displayName(g.rec.Doc.Name, g.rec.Doc.ID),
			fmt.Sprintf("removed with its addresses %s: its network namespace is gone", addressList(&g.rec.Doc)))
	}
	for _, name := range nsNames {
		s.event("Collected", "Namespace "+name, "removed: the network namespace it wrapped is gone")
	}
}

func addressList(e *api.Endpoint) string {
	var out []string
	for _, c := range e.IpConfigurations {
		out = append(out, c.IpAddress)
	}
	return strings.Join(out, ", ")
}

// events keeps the last things hostnet did on its own (GET /events).
type events struct {
	mu   sync.Mutex
	list []api.Event
}

const maxEvents = 1000

// event records an event and logs it.
func (s *Service) event(kind, object, message string) {
	s.log.Info("event", "kind", kind, "object", object, "message", message)
	s.events.mu.Lock()
	defer s.events.mu.Unlock()
	s.events.list = append(s.events.list, api.Event{Time: time.Now().UTC(), Kind: kind, Object: object, Message: message})
	if len(s.events.list) > maxEvents {
		s.events.list = append([]api.Event(nil), s.events.list[len(s.events.list)-maxEvents:]...)
	}
}

// Events returns the recorded events, oldest first.
func (s *Service) Events() []api.Event {
	s.events.mu.Lock()
	defer s.events.mu.Unlock()
	return append([]api.Event{}, s.events.list...)
}
