package service

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/hostnet/hostnet/api"
	"github.com/hostnet/hostnet/internal/ipam"
	"github.com/hostnet/hostnet/internal/netmodel"
	"github.com/hostnet/hostnet/internal/reconcile"
	"github.com/hostnet/hostnet/internal/store"
)

// What the reconciler keeps of the kernel objects no record wants: those
// of set-aside records, and, after a restore from a backup, everything
// (see setaside.go); how they are reported, and pruned.

// keepFor says what the reconciler keeps of what no record wants: after a
// restore, everything; otherwise what the set-aside records owned (their
// devices, their namespaces and the links to them, what lives inside
// namespaces), and, while a network or an endpoint is set aside, the
// firewall's content, which cannot tell whose an element was.
func (s *Service) keepFor(entries []setAsideEntry, restored bool) reconcile.Keep {
	if restored {
		return reconcile.KeepAll
	}
	devices, spaces := map[string]bool{}, map[string]bool{}
	firewall := false
	for _, e := range entries {
		for _, d := range e.Devices {
			devices[d] = true
		}
		if e.Netns != "" {
			spaces[e.Netns] = true
		}
		firewall = firewall || e.Bucket == store.Networks || e.Bucket == store.Endpoints
	}
	if len(devices) == 0 && len(spaces) == 0 && !firewall {
		return reconcile.Keep{}
	}
	return reconcile.Keep{Firewall: firewall, Object: func(o netmodel.Object) bool {
		switch o := o.(type) {
		case netmodel.Link:
			return o.NS.IsHost() && devices[o.Name]
		case netmodel.Namespace:
			return spaces[o.NS.Path]
		case netmodel.Symlink:
			return spaces[o.Target]
		case netmodel.Addr:
			return !o.NS.IsHost()
		case netmodel.Route:
			return !o.NS.IsHost()
		}
		return false
	}}
}

// startKept reports what the start's pass kept, keeps the addresses kept
// devices hold from the pools (after a restore), and ends keeping after a
// restore that left nothing to keep. The caller holds s.mu.
func (s *Service) startKept(l *loaded, p *plan, r *reconcile.Report) {
	if len(r.Kept) == 0 && len(r.KeptAddrs) == 0 {
		if l.restored {
			if err := s.cfg.Store.Update(func(tx store.Tx) error { return tx.Delete(store.Meta, restoredKey) }); err != nil {
				s.log.Warn("start: could not record that nothing is kept after the restore; the next start looks again", "err", err)
				return
			}
			s.rec.SetKeep(s.keepFor(l.entries, false))
			s.log.Info("start: the state was restored from its backup, and the kernel holds nothing of hostnet's that no record wants")
		}
		return
	}
	why := "while records are set aside"
	if l.restored {
		why = "after a restore from backup"
	}
	var names []string
	for _, k := range r.Kept {
		names = append(names, keptName(k.Object, k.What))
	}
	var addrs []string
	for _, a := range r.KeptAddrs {
		addrs = append(addrs, a.Prefix.Addr().String())
	}
	s.log.Warn("start: kept kernel objects that no record wants, "+why+"; hostnet doctor names them, and --prune (or dropping the set-aside records) removes them",
		"count", len(r.Kept), "objects", summarize(names), "addresses", addrs)
	for i, k := range r.Kept {
		if i == maxKeptEvents {
			s.event("Kept", "", fmt.Sprintf("and %d more kernel objects no record wants", len(r.Kept)-i))
			break
		}
		why, remedy := s.keptWhy(l.entries, l.restored, k.Object)
		s.event("Kept", keptName(k.Object, k.What), why+": "+k.What+"; "+remedy)
	}
	if !l.restored || len(r.KeptAddrs) == 0 {
		return
	}
	err := s.cfg.Store.Update(func(tx store.Tx) error { return reserveKept(tx, p, r.KeptAddrs) })
	if err != nil {
		s.log.Error("start: the addresses of kept devices could not be held; a new endpoint may be handed one", "err", err)
	}
}

// maxKeptEvents bounds the events a start records for kept objects.
const maxKeptEvents = 50

// reserveKept holds in the pools the addresses kept devices hold, so that
// no endpoint is handed one while they may still be in use.
func reserveKept(tx store.Tx, p *plan, addrs []netmodel.Addr) error {
	for _, a := range addrs {
		ip := a.Prefix.Addr()
		for _, pn := range p.nets {
			for _, pool := range pn.pools() {
				if !pool.Subnet.Contains(ip) {
					continue
				}
				var inUse *ipam.InUseError
				if err := pool.Reserve(tx, ip, keptHolder); err != nil && !errors.As(err, &inUse) {
					var out *ipam.OutOfRangeError
					if !errors.As(err, &out) {
						return err
					}
				}
			}
		}
	}
	return nil
}

// keptName names a kept object for logs and events.
func keptName(k netmodel.Key, what string) string {
	switch k.Kind {
	case netmodel.KindNftSet, netmodel.KindNftChain, netmodel.KindNftElement:
		return "firewall"
	}
	return k.ID
}

// keptWhy says why an object is kept (it belongs to a set-aside record,
// or no record wants it after a restore) and how it goes.
func (s *Service) keptWhy(entries []setAsideEntry, restored bool, k netmodel.Key) (why, remedy string) {
	if e := ownerOf(entries, k); e != nil {
		return "kept: it belongs to set-aside " + strings.ToLower(e.object()[:1]) + e.object()[1:], "hostnet doctor --drop-set-aside " + e.id() + " removes it"
	}
	if restored {
		return "kept after a restore from backup: no record wants it", "hostnet doctor --prune removes it"
	}
	return "kept while records are set aside: no record wants it", "hostnet doctor --prune removes it"
}

// ownerOf finds the set-aside record a kernel object belongs to.
func ownerOf(entries []setAsideEntry, k netmodel.Key) *setAsideEntry {
	for i := range entries {
		e := &entries[i]
		switch k.Kind {
		case netmodel.KindLink:
			if k.NS.IsHost() && slices.Contains(e.Devices, k.ID) {
				return e
			}
		case netmodel.KindNamespace:
			if e.Netns != "" && k.ID == e.Netns {
				return e
			}
		}
	}
	return nil
}

// problemKind names the kind of a kernel object in a problem.
func problemKind(k netmodel.Key) string {
	switch k.Kind {
	case netmodel.KindLink:
		return "Device"
	case netmodel.KindNamespace:
		return "Namespace"
	case netmodel.KindAddr:
		return "Address"
	case netmodel.KindRoute:
		return "Route"
	case netmodel.KindPort:
		return "Port"
	case netmodel.KindSymlink:
		return "Device"
	}
	if k.Kind >= netmodel.KindNftSet {
		return "Firewall"
	}
	return "Device"
}

// MarkRestored records in st that its state was just put back from its
// backup: the next start keeps the kernel objects of hostnet's that no
// record wants (what was made after the backup) rather than remove them
// under running workloads, and reports them until they are pruned.
func MarkRestored(st store.Store, at time.Time) error {
	return st.Update(func(tx store.Tx) error {
		b, _ := json.Marshal(struct{ Time time.Time }{at.UTC()})
		return tx.Put(store.Meta, restoredKey, b)
	})
}

// Prune removes the kernel objects of hostnet's that no record wants,
// which the daemon kept after a restore from a backup or while records
// are set aside, and ends keeping them after the restore: the addresses
// held for kept devices go back to the pools. Set-aside records stay
// (drop them with DropSetAside); their kernel objects go too. It returns
// what it removed.
func (s *Service) Prune(ctx context.Context) (*api.PruneReport, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	var keep reconcile.Keep
	err := s.cfg.Store.Update(func(tx store.Tx) error {
		if err := tx.Delete(store.Meta, restoredKey); err != nil {
			return err
		}
		var held []string
		if err := tx.ForEach(store.IPAM, "", func(k string, v []byte) error {
			if string(v) == keptHolder {
				held = append(held, k)
			}
			return nil
		}); err != nil {
			return err
		}
		for _, k := range held {
			if err := tx.Delete(store.IPAM, k); err != nil {
				return err
			}
		}
		entries, err := listEntries(tx)
		keep = s.keepFor(entries, false)
		return err
	})
	if err != nil {
		return nil, internal(err, "prune")
	}
	s.rec.SetKeep(reconcile.Keep{})
	p, r, err := s.passNow(ctx)
	s.rec.SetKeep(keep)
	if err != nil {
		return nil, internal(err, "prune")
	}
	s.removeNamespaceFiles(ctx, r)
	rep := &api.PruneReport{Removed: []api.Problem{}}
	for _, pr := range r.Problems {
		if pr.Owner != "" {
			continue
		}
		ap := p.problem(pr.Owner, pr.Object, pr.What)
		rep.Removed = append(rep.Removed, ap)
		s.event("Pruned", problemObject(ap), ap.Problem)
	}
	s.log.Info("pruned the kernel objects no record wants", "removed", len(rep.Removed))
	return rep, nil
}

// passNow runs a full pass of the reconciler at once. The caller holds
// s.mu.
func (s *Service) passNow(ctx context.Context) (*plan, *reconcile.Report, error) {
	var p *plan
	if err := s.cfg.Store.View(func(tx store.Tx) (err error) { p, err = s.planAll(tx); return err }); err != nil {
		return nil, nil, err
	}
	r, err := s.rec.Sync(ctx, p.units, reconcile.SyncOptions{})
	if err != nil {
		return nil, nil, err
	}
	return p, r, nil
}

// removeNamespaceFiles removes the files hostnet wrote for the namespaces
// of its own that the pass r removed as no one's (their resolv.conf and
// its directory): a pass finds such namespaces by their place under the
// run directory, but their files by no tag, and no record names them any
// more. The caller holds s.mu.
func (s *Service) removeNamespaceFiles(ctx context.Context, r *reconcile.Report) {
	if s.cfg.NetnsEtcDir == "" || s.cfg.NetnsDir == "" {
		return
	}
	var files []netmodel.File
	for _, pr := range r.Problems {
		if pr.Owner != "" || pr.Object.Kind != netmodel.KindNamespace || filepath.Dir(pr.Object.ID) != filepath.Clean(s.cfg.NetnsDir) {
			continue
		}
		dir := filepath.Join(s.cfg.NetnsEtcDir, ipNetnsName(filepath.Base(pr.Object.ID)))
		files = append(files, netmodel.File{Path: filepath.Join(dir, "resolv.conf"), Dir: dir})
	}
	if len(files) > 0 {
		s.rec.RemoveFiles(ctx, files)
	}
}
