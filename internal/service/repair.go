package service

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sort"
	"strings"
	"time"

	"github.com/hostnet/hostnet/api"
	"github.com/hostnet/hostnet/internal/netmodel"
	"github.com/hostnet/hostnet/internal/reconcile"
	"github.com/hostnet/hostnet/internal/store"
)

// StartReport counts what a start did.
type StartReport struct {
	Owners               int // networks, endpoints and namespaces planned
	DroppedNonPersistent int // networks dropped because they do not survive a restart
	CollectedNamespaces  int // wrapped namespaces gone from the kernel, removed with their endpoints
	Repaired             int // differences the start's pass found (and repaired)
	Failures             int // owners that could not be applied
}

// Start brings the kernel to the stored intent, as every start of the
// daemon must: networks flagged EnableNonPersistent are dropped, wrapped
// namespaces that are gone are forgotten with their endpoints, the
// outbox's entries are carried out, and one full pass of the reconciler
// adopts what is right (traffic keeps flowing), makes what is missing and
// removes what carries hostnet's tags and no owner wants. What lives
// inside namespaces is verified after the API is served (see
// Report.Assumed): at a restart with thousands of endpoints, looking into
// every namespace is most of the time.
func (s *Service) Start(ctx context.Context) (StartReport, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	var rep StartReport
	var phases []any
	last := time.Now()
	phase := func(name string) {
		now := time.Now()
		phases = append(phases, slog.Duration(name, now.Sub(last)))
		last = now
	}
	var outboxKeys []string
	var pending []outboxEntry
	var ld *loaded
	err := s.cfg.Store.Update(func(tx store.Tx) error {
		var err error
		// Records that cannot be kept are set aside, the rest normalised,
		// before anything else reads them (setaside.go).
		if ld, err = s.load(tx); err != nil {
			return err
		}
		if err := s.loadRoutes(tx, ld); err != nil {
			return err
		}
		if outboxKeys, pending, err = s.outbox.pending(tx); err != nil {
			return err
		}
		rep.DroppedNonPersistent, err = s.dropNonPersistent(tx)
		return err
	})
	if err != nil {
		return rep, internal(err, "read the store")
	}
	s.startLoaded(ld)
	n, err := s.forgetVanished(ctx, false)
	if err != nil {
		return rep, err
	}
	rep.CollectedNamespaces = n
	phase("load")
	// The host is read while the store is: both take time at a restart
	// with thousands of endpoints.
	s.rec.Prefetch(ctx)
	var p *plan
	if err := s.cfg.Store.View(func(tx store.Tx) (err error) { p, err = s.planAll(ld.planTx(tx)); return err }); err != nil {
		return rep, internal(err, "read the store")
	}
	rep.Owners = len(p.units)
	phase("plan")
	// Shallow: the host's IDs of thousands of namespaces are not asked
	// before serving; a veth's other side is checked from inside its
	// namespace by the verification that follows. Not while objects are
	// kept: which namespaces hold kept addresses is found by those IDs.
	r, err := s.rec.Sync(ctx, p.units, reconcile.SyncOptions{Shallow: !ld.keep.On()})
	if err != nil {
		return rep, internal(err, "reconcile the kernel")
	}
	s.startKept(ld, p, r)
	rep.Repaired = len(r.Problems)
	rep.Failures = len(r.Failed) + len(p.failed)
	for o, err := range p.failed {
		s.log.Error("start: an object cannot be planned", "object", o, "err", err)
	}
	for o, err := range r.Failed {
		if netmodel.IsHostCondition(err) {
			// The host's doing (an address removed, a port taken): each
			// start says so, but it is no fault of hostnet's.
			s.log.Warn("start: an object waits for the host; it is retried", "object", o, "err", err)
			continue
		}
		s.log.Error("start: an object could not be applied; it is retried", "object", o, "err", err)
	}
	for _, pr := range r.Problems {
		s.log.Debug("start: put back", "object", pr.Object, "problem", pr.What)
	}
	phase("kernel")
	s.redrive(ctx, p, pending)
	if len(outboxKeys) > 0 {
		if err := s.cfg.Store.Update(func(tx store.Tx) error {
			for _, k := range outboxKeys {
				if err := tx.Delete(store.Outbox, k); err != nil {
					return err
				}
			}
			return nil
		}); err != nil {
			s.log.Warn("clearing the outbox failed; the next start carries it out again", "err", err)
		}
	}
	phase("outbox")
	if spaces := assumedSpaces(p, r.Assumed); len(spaces) > 0 {
		s.verifyInBackground(spaces, "after the restart")
	}
	s.log.Info("reconciled", "owners", rep.Owners, "dropped_non_persistent", rep.DroppedNonPersistent,
		"collected_namespaces", rep.CollectedNamespaces, "repaired", rep.Repaired, "failures", rep.Failures, slog.Group("took", phases...))
	return rep, nil
}

// redrive carries out what the outbox says a previous run may not have
// done: files it made that go, and flows to judge again by what the
// owners want now.
func (s *Service) redrive(ctx context.Context, p *plan, entries []outboxEntry) {
	var files []netmodel.File
	guards := map[netmodel.Owner]*netmodel.FlowGuard{}
	for _, u := range p.units {
		if u.Flows != nil {
			guards[u.Owner] = u.Flows
		}
	}
	var flows []reconcile.FlowJob
	for _, e := range entries {
		files = append(files, e.RemoveFiles...)
		for _, f := range e.Flows {
			flows = append(flows, reconcile.FlowJob{Addrs: f.Addrs, Guard: guards[f.Owner]})
		}
	}
	if len(files) > 0 {
		s.rec.RemoveFiles(ctx, files)
	}
	if len(flows) > 0 {
		s.rec.EndFlows(ctx, flows)
	}
}

// spaceOwners is a namespace and the owners with objects in it.
type spaceOwners struct {
	ns     netmodel.NS
	owners []netmodel.Owner
}

// assumedSpaces returns the namespaces where the owners a pass assumed in
// place have objects, each with every owner that has objects there.
func assumedSpaces(p *plan, assumed []netmodel.Owner) []spaceOwners {
	want := map[netmodel.Owner]bool{}
	for _, o := range assumed {
		want[o] = true
	}
	byNS := map[netmodel.NS][]netmodel.Owner{}
	verify := map[netmodel.NS]bool{}
	for _, u := range p.units {
		seen := map[netmodel.NS]bool{}
		for _, o := range u.Objects {
			if ns := o.Key().NS; !ns.IsHost() && !seen[ns] {
				seen[ns] = true
				byNS[ns] = append(byNS[ns], u.Owner)
				verify[ns] = verify[ns] || want[u.Owner]
			}
		}
	}
	var out []spaceOwners
	for ns, owners := range byNS {
		if verify[ns] {
			out = append(out, spaceOwners{ns, owners})
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].ns.Path < out[j].ns.Path })
	return out
}

// verifyInBackground looks inside the namespaces a pass took as in place
// (a start, or a full pass of self-repair), and repairs what was changed
// there (an address, a route, the device's state) while the daemon was
// down or since the last look. It runs after the API is served, one
// namespace at a time under the lock, so requests interleave with it;
// Close stops it.
//
// The caller holds mu. While a verification runs, another is not
// started: spaces are dropped, and a later full pass takes them up.
func (s *Service) verifyInBackground(spaces []spaceOwners, why string) {
	if s.verifying {
		return
	}
	s.verifying = true
	s.background.Add(1)
	go s.verifyLater(spaces, why)
}

func (s *Service) verifyLater(spaces []spaceOwners, why string) {
	defer s.background.Done()
	defer func() {
		s.mu.Lock()
		s.verifying = false
		s.mu.Unlock()
	}()
	start := time.Now()
	for _, sp := range spaces {
		select {
		case <-s.closing:
			return
		default:
		}
		if err := s.verify(sp.ns, sp.owners); err != nil {
			s.log.Warn("verifying a namespace "+why, "namespace", sp.ns.Path, "err", err)
		}
	}
	s.log.Info("verified namespaces from inside "+why, "namespaces", len(spaces), "took", time.Since(start))
}

// verifyBatch is how many namespaces a full pass of self-repair looks
// into, in turn: every namespace is looked into once in
// len(namespaces)/verifyBatch full passes.
const verifyBatch = 200

// nextBatch returns the verifyBatch namespaces after s.verifiedUpTo in
// path order, going round, and moves the cursor; spaces are sorted.
func (s *Service) nextBatch(spaces []spaceOwners) []spaceOwners {
	if len(spaces) <= verifyBatch {
		return spaces
	}
	i := sort.Search(len(spaces), func(i int) bool { return spaces[i].ns.Path > s.verifiedUpTo })
	out := make([]spaceOwners, 0, verifyBatch)
	for n := 0; n < verifyBatch; n++ {
		out = append(out, spaces[(i+n)%len(spaces)])
	}
	s.verifiedUpTo = out[len(out)-1].ns.Path
	return out
}

// verify plans now the owners that had objects in ns at start, and has
// the reconciler look inside it (an owner that left since has no unit,
// one that came since was applied whole).
func (s *Service) verify(ns netmodel.NS, owners []netmodel.Owner) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	var units []*netmodel.Unit
	err := s.cfg.Store.View(func(tx store.Tx) error {
		// The endpoints attached to the namespace since the start are
		// owners there too.
		now := append([]netmodel.Owner(nil), owners...)
		seen := map[netmodel.Owner]bool{}
		for _, o := range owners {
			seen[o] = true
		}
		for _, o := range owners {
			kind, id := o.Split()
			var ns namespaceRecord
			if kind != "namespace" || store.GetJSON(tx, store.Namespaces, id, &ns) != nil {
				continue
			}
			for _, epID := range attachedIDs(&ns.Doc) {
				if eo := netmodel.EndpointOwner(epID); !seen[eo] {
					seen[eo] = true
					now = append(now, eo)
				}
			}
		}
		nets := map[string]*parsedNetwork{}
		for _, o := range now {
			u, err := s.unitOf(tx, o, nets)
			if err != nil {
				return err
			}
			if u != nil {
				units = append(units, u)
			}
		}
		return nil
	})
	if err != nil {
		return err
	}
	return s.rec.Verify(context.Background(), ns, units)
}

// dropNonPersistent forgets, inside tx, the networks that do not survive
// a restart, with their endpoints (their addresses, names and published
// ports); their kernel objects are then wanted by no one, and the pass
// that follows removes them.
func (s *Service) dropNonPersistent(tx store.Tx) (int, error) {
	nets, err := listNetworks(tx)
	if err != nil {
		return 0, err
	}
	dropped := 0
	for i := range nets {
		n := &nets[i].Doc
		if n.Flags&api.NetworkEnableNonPersistent == 0 {
			continue
		}
		pn, err := parseStored(n)
		if err != nil {
			return dropped, err
		}
		eps, err := listEndpoints(tx)
		if err != nil {
			return dropped, err
		}
		for j := range eps {
			if eps[j].Doc.HostComputeNetwork != n.ID {
				continue
			}
			if err := forgetEndpoint(tx, &eps[j], pn); err != nil && !errors.Is(err, store.ErrNotFound) {
				return dropped, err
			}
		}
		if err := dropNetwork(tx, n); err != nil {
			return dropped, err
		}
		dropped++
		s.event("Dropped", "Network "+displayName(n.Name, n.ID), "a non-persistent network does not survive a restart")
	}
	return dropped, nil
}

// forgetVanished removes the wrapped namespaces whose Linux namespace is
// gone (a reboot, or a runtime that deleted it without detaching), with
// their endpoints: their addresses, MACs and published ports go back to
// the pools. Their NICs went with the namespace; the firewall follows
// (apply: as a mutation; otherwise the caller's full pass does it). It
// returns how many it removed. The caller holds s.mu.
func (s *Service) forgetVanished(ctx context.Context, apply bool) (int, error) {
	var wrapped []netmodel.NS
	if err := s.cfg.Store.View(func(tx store.Tx) error {
		nss, err := listNamespaces(tx)
		for i := range nss {
			if !nss[i].Doc.Managed {
				wrapped = append(wrapped, nss[i].ns())
			}
		}
		return err
	}); err != nil {
		return 0, internal(err, "read the store")
	}
	if len(wrapped) == 0 {
		return 0, nil
	}
	present, err := s.rec.Present(ctx, wrapped)
	if err != nil {
		return 0, internal(err, "look for the namespaces of endpoints")
	}
	gone := map[netmodel.NS]bool{}
	for _, ns := range wrapped {
		if !present[ns] {
			gone[ns] = true
		}
	}
	if len(gone) == 0 {
		return 0, nil
	}
	type forgotten struct{ name, what string }
	var list []forgotten
	m := &mutation{}
	decide := func(tx store.Tx, m *mutation) error {
		m.bestEffort = true
		list = nil
		nss, err := listNamespaces(tx)
		if err != nil {
			return err
		}
		for i := range nss {
			ns := &nss[i]
			if ns.Doc.Managed || !gone[ns.ns()] {
				continue
			}
			ids := attachedIDs(&ns.Doc)
			owners := []netmodel.Owner{netmodel.NamespaceOwner(ns.Doc.ID)}
			for _, id := range ids {
				owners = append(owners, netmodel.EndpointOwner(id))
			}
			if err := m.touch(owners...); err != nil {
				return err
			}
			for _, id := range ids {
				var rec endpointRecord
				if err := store.GetJSON(tx, store.Endpoints, id, &rec); errors.Is(err, store.ErrNotFound) {
					continue
				} else if err != nil {
					return err
				}
				pn, err := networkOf(tx, &rec.Doc)
				if err != nil {
					return err
				}
				if err := forgetEndpoint(tx, &rec, pn); err != nil {
					return err
				}
				list = append(list, forgotten{"Endpoint " + displayName(rec.Doc.Name, rec.Doc.ID),
					fmt.Sprintf("removed with its addresses %s: its network namespace is gone", addressList(&rec.Doc))})
			}
			// An implicit namespace went with its last endpoint.
			if err := store.GetJSON(tx, store.Namespaces, ns.Doc.ID, &namespaceRecord{}); err == nil {
				if err := dropName(tx, "namespace", ns.Doc.Name); err != nil {
					return err
				}
				if err := tx.Delete(store.Namespaces, ns.Doc.ID); err != nil {
					return err
				}
			}
			list = append(list, forgotten{"Namespace " + displayName(ns.Doc.Name, ns.Doc.ID) + " (" + ns.Doc.NetNamespacePath + ")",
				"removed: the network namespace it wrapped is gone"})
		}
		return nil
	}
	if apply {
		err = s.mutate(ctx, m, decide)
	} else {
		err = s.cfg.Store.Update(func(tx store.Tx) error {
			*m = mutation{s: s, tx: tx, before: map[netmodel.Owner]*netmodel.Unit{}, nets: map[string]*parsedNetwork{}}
			return decide(tx, m)
		})
	}
	if err != nil {
		return 0, internal(err, "remove the endpoints of vanished namespaces")
	}
	for _, f := range list {
		s.event("Collected", f.name, f.what)
	}
	return len(gone), nil
}

func addressList(e *api.Endpoint) string {
	var out []string
	for _, c := range e.IpConfigurations {
		out = append(out, c.IpAddress)
	}
	return strings.Join(out, ", ")
}

// Check compares the kernel with the stored intent and reports every
// difference, changing nothing (`hostnet doctor`): what a repair would put
// back or remove, namespaces that are gone, objects whose last change
// failed, and endpoints cut off because their stored policies cannot be
// read.
func (s *Service) Check(ctx context.Context) (*api.CheckReport, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	var p *plan
	if err := s.cfg.Store.View(func(tx store.Tx) (err error) { p, err = s.planAll(tx); return err }); err != nil {
		return nil, internal(err, "check")
	}
	r, err := s.rec.Sync(ctx, p.units, reconcile.SyncOptions{DryRun: true})
	if err != nil {
		return nil, internal(err, "check")
	}
	problems := s.problems(p, r)
	return &api.CheckReport{InSync: len(problems) == 0, Problems: problems}, nil
}

// problems words a pass's report for the API, naming each object.
func (s *Service) problems(p *plan, r *reconcile.Report) []api.Problem {
	var out []api.Problem
	for _, pr := range r.Problems {
		out = append(out, p.problem(pr.Owner, pr.Object, pr.What))
	}
	for _, ns := range r.Vanished {
		out = append(out, api.Problem{Kind: "Namespace", Name: ns.Path, Problem: fmt.Sprintf("the network namespace it wraps, %s, is gone: its endpoints are to be removed", ns.Path)})
	}
	failed := s.rec.Failed()
	for o, err := range p.failed {
		failed[o] = err
	}
	owners := make([]string, 0, len(failed))
	for o := range failed {
		owners = append(owners, string(o))
	}
	sort.Strings(owners)
	for _, o := range owners {
		out = append(out, p.problem(netmodel.Owner(o), netmodel.Key{}, "failed: "+failed[netmodel.Owner(o)].Error()))
	}
	for _, ep := range p.eps {
		if why := quarantined(&ep.Doc); why != "" {
			out = append(out, api.Problem{Kind: "Endpoint", ID: ep.Doc.ID, Name: ep.Doc.Name,
				Problem: "its stored policies cannot be read, so its firewall admits nothing: " + why})
		}
	}
	out = append(out, s.setAsideProblems(r)...)
	return out
}

// problem names the object of a problem: its owner's API object, or, for
// what no owner wants, the kernel object.
func (p *plan) problem(owner netmodel.Owner, k netmodel.Key, what string) api.Problem {
	kind, id := owner.Split()
	switch kind {
	case "network":
		name := ""
		if pn := p.nets[id]; pn != nil {
			name = pn.doc.Name
		}
		return api.Problem{Kind: "Network", ID: id, Name: name, Problem: what}
	case "endpoint":
		name := ""
		if ep := p.eps[id]; ep != nil {
			name = ep.Doc.Name
		}
		return api.Problem{Kind: "Endpoint", ID: id, Name: name, Problem: what}
	case "namespace":
		name := ""
		if ns := p.nss[id]; ns != nil {
			name = ns.Doc.Name
		}
		return api.Problem{Kind: "Namespace", ID: id, Name: name, Problem: what}
	}
	if k.Kind >= netmodel.KindNftSet {
		return api.Problem{Kind: "Firewall", Problem: what}
	}
	return api.Problem{Kind: "Device", Name: k.ID, Problem: what}
}

// Repair brings the kernel back to the stored intent when it has drifted
// (someone deleted a bridge, a port, an nftables element or table by hand,
// or a runtime deleted a network namespace without telling hostnet): the
// reconciler's full pass. It records each repair as an event and returns
// how many problems it found. It is what the reconciler's self-repair
// loop runs.
func (s *Service) Repair(ctx context.Context, reason string) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	// The light check first: nothing is planned when nothing drifted.
	// It does not look inside containers' namespaces, so one check in
	// fullPassEvery is a full pass.
	if s.lightChecks < fullPassEvery-1 {
		if quick, err := s.rec.Check(ctx); err == nil && quick.InSync() && len(s.rec.Failed()) == 0 {
			s.lightChecks++
			return 0, nil
		}
	}
	s.lightChecks = 0
	collected, err := s.forgetVanished(ctx, true)
	if err != nil {
		return 0, err
	}
	var p *plan
	if err := s.cfg.Store.View(func(tx store.Tx) (err error) { p, err = s.planAll(tx); return err }); err != nil {
		return 0, internal(err, "read the store")
	}
	r, err := s.rec.Sync(ctx, p.units, reconcile.SyncOptions{})
	if err != nil {
		return 0, err
	}
	for _, pr := range r.Problems {
		ap := p.problem(pr.Owner, pr.Object, pr.What)
		s.event("Repaired", problemObject(ap), ap.Problem)
	}
	for o, err := range r.Failed {
		ap := p.problem(o, netmodel.Key{}, err.Error())
		s.event("Failed", problemObject(ap), ap.Problem)
	}
	if spaces := assumedSpaces(p, r.Assumed); len(spaces) > 0 {
		s.verifyInBackground(s.nextBatch(spaces), "in self-repair")
	}
	if n := len(r.Problems); n > 0 {
		s.log.Warn("the kernel drifted from hostnet's intent; repaired", "reason", reason, "problems", n)
	}
	return len(r.Problems) + collected, nil
}

// fullPassEvery is how often a check is a full pass rather than a light
// one: with the daemon's 10 s interval, a route deleted by hand inside a
// container's namespace comes back within a minute.
const fullPassEvery = 6

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
