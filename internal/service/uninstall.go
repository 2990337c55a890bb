package service

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"strings"

	"github.com/hostnet/hostnet/api"
	"github.com/hostnet/hostnet/internal/netmodel"
	"github.com/hostnet/hostnet/internal/reconcile"
	"github.com/hostnet/hostnet/internal/store"
)

// UninstallReport says what Uninstall found and removed.
type UninstallReport struct {
	// Networks, Endpoints and Namespaces count the records there were.
	Networks, Endpoints, Namespaces int
	// Removed lists what was removed from the host, one object a line:
	// "device hnbr...", "namespace /run/hostnet/netns/...",
	// "table inet hostnet", "file /etc/netns/hn-.../resolv.conf".
	Removed []string
}

// Uninstall removes from the host every kernel object and file hostnet
// made, on the core's own path: the reconciler's full pass with an empty
// desired state removes whatever carries hostnet's tags (bridges, ports,
// routes of protocol 104, the namespaces it made and their `ip netns`
// links, held host ports, its nftables tables), and the files it wrote
// (namespaces' resolv.conf and their directories), which carry no tag, are
// known from the namespace records. Wrapped namespaces (a runtime's) stay;
// the interfaces hostnet put in them go with their veths. Sysctls are left
// as they are.
//
// It refuses, changing nothing, while endpoints exist, unless force. The
// records are left as they were: the caller removes the state file. A
// dry-run pass afterwards must find nothing left, or the error lists it.
// Call it instead of Start, on a service no request reaches.
func (s *Service) Uninstall(ctx context.Context, force bool) (*UninstallReport, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	var p *plan
	if err := s.cfg.Store.View(func(tx store.Tx) (err error) { p, err = s.planAll(tx); return err }); err != nil {
		return nil, internal(err, "read the store")
	}
	rep := &UninstallReport{Networks: len(p.nets), Endpoints: len(p.eps), Namespaces: len(p.nss)}
	if len(p.eps) > 0 && !force {
		var names []string
		for _, ep := range p.eps {
			names = append(names, displayName(ep.Doc.Name, ep.Doc.ID))
		}
		sort.Strings(names)
		if len(names) > 5 {
			names = append(names[:5], fmt.Sprintf("and %d more", len(names)-5))
		}
		return nil, api.Conflict(api.CodeResourceInUse, "%d endpoints exist (%s): delete them first (their containers lose their network), or force the uninstall",
			len(p.eps), strings.Join(names, ", "))
	}
	// The files of the namespaces' units: planned from the records.
	var files []reconcile.Change
	for _, u := range p.units {
		if u == nil {
			continue
		}
		var fs []netmodel.Object
		for _, o := range u.Objects {
			if f, ok := o.(netmodel.File); ok {
				fs = append(fs, f)
			}
		}
		if len(fs) > 0 {
			files = append(files, reconcile.Change{Owner: u.Owner, Old: &netmodel.Unit{Owner: u.Owner, Objects: fs}})
		}
	}
	r, err := s.rec.Sync(ctx, nil, reconcile.SyncOptions{})
	if err != nil {
		return nil, internal(err, "remove hostnet's kernel objects")
	}
	for _, pr := range r.Problems {
		rep.Removed = append(rep.Removed, removedObject(pr))
	}
	for _, c := range files {
		for _, o := range c.Old.Objects {
			rep.Removed = append(rep.Removed, "file "+o.(netmodel.File).Path)
		}
	}
	if err := s.rec.Apply(ctx, files...); err != nil {
		return rep, internal(err, "remove the files hostnet wrote")
	}
	s.rec.Wait()
	left, err := s.rec.Sync(ctx, nil, reconcile.SyncOptions{DryRun: true})
	if err != nil {
		return rep, internal(err, "check that nothing is left")
	}
	if len(left.Problems) > 0 {
		var what []string
		for _, pr := range left.Problems {
			what = append(what, removedObject(pr))
		}
		return rep, api.InternalError(errors.New(strings.Join(what, "; ")), "some of hostnet's objects could not be removed")
	}
	s.log.Info("uninstalled: hostnet's kernel objects and files are removed", "removed", len(rep.Removed))
	return rep, nil
}

// removedObject names what a pass with an empty desired state removed.
func removedObject(pr reconcile.Problem) string {
	if pr.Object.Kind >= netmodel.KindNftSet {
		// "firewall: to put back: delete table inet hostnet"
		if i := strings.Index(pr.What, "delete "); i >= 0 {
			return pr.What[i+len("delete "):]
		}
		return pr.What
	}
	return pr.Object.String()
}
