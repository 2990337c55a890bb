// Package reconcile brings the kernel to the desired state hostnet's
// drivers plan, and keeps it there. It is the one path every change takes:
// a request's change (Apply, from an owner's old unit to its new one), the
// start of the daemon and every self-repair (Sync, the whole desired state
// against what the host reports), and `hostnet doctor` (Sync without
// changing anything).
//
// Its rules: what is already right is adopted as it is (no flush, so
// traffic keeps flowing across restarts and repairs); additions before
// removals; what carries hostnet's tags but no owner wants is removed;
// what several owners want alike (a sysctl, a shared firewall chain) stays
// until the last one goes. A failure is recorded against the owner whose
// object failed, and the others go on; failed owners are retried with
// backoff by a full pass.
//
// The Reconciler remembers little: the owners of shared objects and the
// firewall's content (so that a change of a table's layout, or a check,
// needs no one else). Everything else it is told: the caller gives each
// change's old and new units, and the whole desired state for a full pass.
package reconcile

import (
	"context"
	"fmt"
	"log/slog"
	"net/netip"
	"reflect"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/hostnet/hostnet/internal/dataplane"
	"github.com/hostnet/hostnet/internal/netmodel"
)

// Config is what a Reconciler works with.
type Config struct {
	Host   dataplane.Host
	Logger *slog.Logger
	// Resync runs a full pass (Sync) of the whole desired state, under
	// whatever lock keeps the desired state from changing meanwhile: Run
	// calls it periodically, when the host reports that someone changed
	// hostnet's objects, and to retry after failures.
	Resync func(ctx context.Context, reason string) error
}

// Change is one owner's desired state going from Old to New: nil Old for
// a new owner, nil New for one that goes.
type Change struct {
	Owner    netmodel.Owner
	Old, New *netmodel.Unit
}

// Reconciler applies desired state to a Host. Its methods are safe for
// concurrent use; kernel changes are serialised.
type Reconciler struct {
	cfg  Config
	host dataplane.Host
	log  *slog.Logger

	mu sync.Mutex // serialises changes
	fw *firewall
	// held are each owner's objects in the host namespace (firewall
	// aside), as last applied: what Check compares with the host.
	held   map[netmodel.Owner][]netmodel.Object
	failed map[netmodel.Owner]error // owners whose last change failed
	keep   Keep                     // what full passes keep of what no owner wants

	background sync.WaitGroup
	closing    chan struct{}
	closed     bool

	unlinkMu      sync.Mutex
	unlinking     map[string]chan struct{} // host links being removed, closed when gone
	unlinked      map[string]time.Time     // host links removed lately, when
	unlinkQueue   []*unlink
	unlinkBatch   []*unlink
	unlinkRunning bool

	flowMu              sync.Mutex
	flowQueue           map[netip.Addr]*netmodel.FlowGuard
	flowFirst, flowLast time.Time
	flowWalking         bool

	retry chan struct{} // poked when an owner failed

	prefetchMu sync.Mutex
	prefetched chan prefetch // the host's observation the next Sync takes
}

type prefetch struct {
	obs *netmodel.Observation
	err error
}

// Prefetch starts reading what a full pass always reads of the host (its
// tagged links and their addresses, hostnet's namespaces, its ports), so
// that the next Sync takes it instead of waiting for it: a caller that
// plans the desired state first (reading its store) overlaps the two.
func (r *Reconciler) Prefetch(ctx context.Context) {
	ch := make(chan prefetch, 1)
	r.prefetchMu.Lock()
	r.prefetched = ch
	r.prefetchMu.Unlock()
	go func() {
		obs, err := r.host.Observe(ctx, netmodel.Query{})
		ch <- prefetch{obs, err}
	}()
}

// takePrefetch returns the prefetched observation, if any.
func (r *Reconciler) takePrefetch() (<-chan prefetch, bool) {
	r.prefetchMu.Lock()
	defer r.prefetchMu.Unlock()
	ch := r.prefetched
	r.prefetched = nil
	return ch, ch != nil
}

// New returns a Reconciler of cfg.Host.
func New(cfg Config) *Reconciler {
	log := cfg.Logger
	if log == nil {
		log = slog.Default()
	}
	return &Reconciler{cfg: cfg, host: cfg.Host, log: log, fw: newFirewall(), held: map[netmodel.Owner][]netmodel.Object{}, failed: map[netmodel.Owner]error{},
		closing: make(chan struct{}), unlinking: map[string]chan struct{}{}, unlinked: map[string]time.Time{}, flowQueue: map[netip.Addr]*netmodel.FlowGuard{},
		retry: make(chan struct{}, 1)}
}

// Close finishes the background work (links being removed, flows being
// forgotten, without their usual delay). The caller closes the Host after.
func (r *Reconciler) Close() {
	r.flowMu.Lock()
	if !r.closed {
		r.closed = true
		close(r.closing)
	}
	r.flowMu.Unlock()
	r.background.Wait()
}

// Wait waits for the background work under way: links being removed,
// flows being forgotten.
func (r *Reconciler) Wait() { r.background.Wait() }

// OwnerError reports the owners whose objects could not be applied; the
// other owners of the same call were applied.
type OwnerError struct {
	Failed map[netmodel.Owner]error
}

func (e *OwnerError) Error() string {
	owners := make([]string, 0, len(e.Failed))
	for o := range e.Failed {
		owners = append(owners, string(o))
	}
	sort.Strings(owners)
	parts := make([]string, 0, len(owners))
	for i, o := range owners {
		if i == 3 {
			parts = append(parts, fmt.Sprintf("and %d more owners", len(owners)-3))
			break
		}
		parts = append(parts, fmt.Sprintf("%s: %v", o, e.Failed[netmodel.Owner(o)]))
	}
	return strings.Join(parts, "; ")
}

// Unwrap returns the owners' errors.
func (e *OwnerError) Unwrap() []error {
	out := make([]error, 0, len(e.Failed))
	for _, err := range e.Failed {
		out = append(out, err)
	}
	return out
}

// Of returns the error of owner, nil when it did not fail.
func (e *OwnerError) Of(owner netmodel.Owner) error {
	if e == nil {
		return nil
	}
	return e.Failed[owner]
}

// Failed returns the owners whose last change failed, with their errors.
func (r *Reconciler) Failed() map[netmodel.Owner]error {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := make(map[netmodel.Owner]error, len(r.failed))
	for o, err := range r.failed {
		out[o] = err
	}
	return out
}

// diff is what a set of changes asks of the host.
type diff struct {
	ensure, remove []netmodel.Object
	unlink         []netmodel.Link // host sides of veths, removed in the background
	layout         bool            // a table's layout changes: sync the firewall whole
	owners         map[netmodel.Key]netmodel.Owner
	failed         map[netmodel.Owner]error
	flowsNow       []FlowJob
	flowsLater     []FlowJob
	// undo puts back what the diff recorded of each firewall object,
	// newest last: run for the objects the host did not take, so that
	// what the reconciler holds follows what the kernel holds.
	undo map[netmodel.Key][]func()
}

// FlowJob is a judgement of tracked flows: the flows of Addrs that Guard
// does not keep (all of them when Guard is nil) end.
type FlowJob struct {
	Addrs []netip.Addr
	Guard *netmodel.FlowGuard
}

func index(u *netmodel.Unit) map[netmodel.Key]netmodel.Object {
	if u == nil {
		return nil
	}
	m := make(map[netmodel.Key]netmodel.Object, len(u.Objects))
	for _, o := range u.Objects {
		m[o.Key()] = o
	}
	return m
}

// Apply brings the kernel from each change's Old unit to its New unit:
// the objects New adds or changes are ensured, those it drops removed (the
// host sides of veths in the background, in batches: see unlinkLater).
// Old must be what was applied last for the owner (or planned from the
// same records). The returned *OwnerError names the owners that failed;
// the others are applied.
func (r *Reconciler) Apply(ctx context.Context, changes ...Change) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	d := &diff{owners: map[netmodel.Key]netmodel.Owner{}, failed: map[netmodel.Owner]error{}, undo: map[netmodel.Key][]func(){}}
	for _, c := range changes {
		r.diffChange(c, d)
	}
	return r.apply(ctx, d, changes)
}

func (r *Reconciler) diffChange(c Change, d *diff) {
	if c.New == nil {
		delete(r.held, c.Owner)
	} else {
		r.held[c.Owner] = hostSide(c.New)
	}
	old, cur := index(c.Old), index(c.New)
	if c.New != nil {
		for _, o := range c.New.Objects {
			k := o.Key()
			d.owners[k] = c.Owner
			if netmodel.Shared(o) {
				changed, undo, err := r.fw.want(c.Owner, o)
				if err != nil {
					d.failed[c.Owner] = err
					continue
				}
				d.undo[k] = append(d.undo[k], undo)
				if changed {
					d.ensure = append(d.ensure, o)
					d.layout = d.layout || layout(o)
				}
				continue
			}
			if prev, ok := old[k]; ok && reflect.DeepEqual(prev, o) {
				continue
			}
			if e, ok := o.(netmodel.NftElement); ok {
				d.undo[k] = append(d.undo[k], r.fw.setElement(e, true))
			}
			d.ensure = append(d.ensure, o)
		}
	}
	if c.Old != nil {
		for _, o := range c.Old.Objects {
			k := o.Key()
			if _, ok := cur[k]; ok {
				continue
			}
			if netmodel.Lasting(o) {
				continue
			}
			if netmodel.Shared(o) {
				gone, last, undo := r.fw.release(c.Owner, k)
				d.undo[k] = append(d.undo[k], undo)
				if last {
					d.remove = append(d.remove, gone)
					d.layout = d.layout || layout(gone)
				}
				continue
			}
			if e, ok := o.(netmodel.NftElement); ok {
				d.undo[k] = append(d.undo[k], r.fw.setElement(e, false))
			}
			if l, ok := o.(netmodel.Link); ok && l.NS.IsHost() && l.Kind == netmodel.LinkVeth {
				d.unlink = append(d.unlink, l)
				continue
			}
			d.owners[k] = c.Owner
			d.remove = append(d.remove, o)
		}
	}
	d.remove = withoutUnlinked(d.remove, d.unlink)
	var og, ng *netmodel.FlowGuard
	if c.Old != nil {
		og = c.Old.Flows
	}
	if c.New != nil {
		ng = c.New.Flows
	}
	if og != nil && !og.Equal(ng) {
		job := FlowJob{Addrs: og.Addrs, Guard: ng}
		// A published port that goes while its endpoint stays: nothing
		// but the tracker's translation keeps its flows alive, so they
		// end before the answer.
		if ng != nil && og.Dropped(ng) {
			d.flowsNow = append(d.flowsNow, job)
		} else {
			d.flowsLater = append(d.flowsLater, job)
		}
	}
}

// withoutUnlinked drops from remove what goes with the veths of unlink:
// their other sides, and the addresses and routes on those. Removing them
// one by one would cost what removing the pair costs (the kernel waits for
// RCU grace periods), on the request's path.
func withoutUnlinked(remove []netmodel.Object, unlink []netmodel.Link) []netmodel.Object {
	if len(unlink) == 0 {
		return remove
	}
	goes := map[netmodel.LinkRef]bool{}
	for _, l := range unlink {
		if l.Peer != nil {
			goes[*l.Peer] = true
		}
	}
	out := remove[:0]
	for _, o := range remove {
		var ref netmodel.LinkRef
		switch o := o.(type) {
		case netmodel.Link:
			ref = netmodel.LinkRef{NS: o.NS, Name: o.Name}
		case netmodel.Addr:
			ref = netmodel.LinkRef{NS: o.NS, Name: o.Link}
		case netmodel.Route:
			ref = netmodel.LinkRef{NS: o.NS, Name: o.Link}
		case netmodel.Neigh:
			ref = netmodel.LinkRef{NS: o.NS, Name: o.Link}
		case netmodel.FDB:
			ref = netmodel.LinkRef{NS: o.NS, Name: o.Link}
		}
		if !goes[ref] {
			out = append(out, o)
		}
	}
	return out
}

// apply sends a diff to the host and records the outcome per owner.
func (r *Reconciler) apply(ctx context.Context, d *diff, changes []Change) error {
	ensure, remove := d.ensure, d.remove
	if d.layout {
		// A table's layout changes: the firewall is synced whole, from
		// what the reconciler holds, before the rest.
		err := r.syncFirewall(ctx)
		ensure, remove = withoutFirewall(ensure), withoutFirewall(remove)
		if err != nil {
			for k, o := range d.owners {
				if k.Kind >= netmodel.KindNftSet {
					d.failed[o] = err
				}
			}
			// The batch is atomic: the kernel holds the firewall as it was.
			for k := range d.undo {
				d.undoKey(k)
			}
		}
	}
	var err error
	if len(ensure)+len(remove) > 0 {
		r.awaitUnlinks(ensure)
		r.noteRemoved(remove)
		err = r.host.Apply(ctx, ensure, r.keptChains(ensure, remove))
	}
	if err != nil {
		for k, kerr := range dataplane.FailedKeys(err, append(keysOf(ensure), keysOf(remove)...)) {
			d.undoKey(k)
			if o, ok := d.owners[k]; ok {
				if _, seen := d.failed[o]; !seen {
					d.failed[o] = fmt.Errorf("%s: %w", k, kerr)
				}
			} else {
				r.log.Warn("reconcile: an object no owner claims failed", "object", k, "err", kerr)
			}
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
	}
	if len(d.unlink) > 0 {
		r.unlinkLater(d.unlink)
	}
	if len(d.flowsNow) > 0 {
		r.endFlows(ctx, d.flowsNow)
	}
	r.endFlowsLater(d.flowsLater...)
	for _, c := range changes {
		if err, bad := d.failed[c.Owner]; bad {
			r.failed[c.Owner] = err
		} else {
			delete(r.failed, c.Owner)
		}
	}
	if len(d.failed) == 0 {
		return nil
	}
	// A failure leaves the kernel in doubt: the next full pass repairs
	// what the next try of the owners' changes does not.
	r.pokeRetry()
	return &OwnerError{Failed: d.failed}
}

// undoKey puts back what the diff recorded of the object with key k.
func (d *diff) undoKey(k netmodel.Key) {
	undo := d.undo[k]
	for i := len(undo) - 1; i >= 0; i-- {
		undo[i]()
	}
	delete(d.undo, k)
}

func keysOf(objs []netmodel.Object) []netmodel.Key {
	out := make([]netmodel.Key, len(objs))
	for i, o := range objs {
		out[i] = o.Key()
	}
	return out
}

func withoutFirewall(objs []netmodel.Object) []netmodel.Object {
	out := objs[:0:0]
	for _, o := range objs {
		if o.Key().Kind < netmodel.KindNftSet {
			out = append(out, o)
		}
	}
	return out
}

// syncFirewall applies the firewall's whole content.
func (r *Reconciler) syncFirewall(ctx context.Context) error {
	tables, err := r.fw.tables()
	if err != nil {
		return err
	}
	return r.syncTables(ctx, r.fw, tables)
}

func (r *Reconciler) pokeRetry() {
	select {
	case r.retry <- struct{}{}:
	default:
	}
}

// Run repairs drift until ctx ends: it calls cfg.Resync every interval,
// half a second after the host reports that someone changed hostnet's
// objects (a burst of reports costs one pass), and, with backoff, after
// a change failed. A subscription to the host's reports that ends is made
// again; without reports, the periodic pass alone finds drift.
func (r *Reconciler) Run(ctx context.Context, interval time.Duration) {
	trigger := make(chan string, 1)
	poke := func(reason string) {
		select {
		case trigger <- reason:
		default:
		}
	}
	var watch func()
	watch = func() {
		err := r.host.Watch(ctx, func(c dataplane.Change) {
			// The reconciler's own removals are no drift.
			if c.Link == "" || !r.removedByUs(c.Link) {
				poke(c.Reason)
			}
		}, func(err error) {
			if ctx.Err() != nil {
				return
			}
			r.log.Info("self-repair: notifications interrupted; checking now and subscribing again", "err", err)
			poke("notifications were interrupted")
			go func() {
				select {
				case <-ctx.Done():
				case <-time.After(time.Second):
					watch()
				}
			}()
		})
		if err != nil {
			r.log.Warn("self-repair: no notifications of changes; the periodic check goes on", "err", err)
		}
	}
	watch()
	tick := time.NewTicker(interval)
	defer tick.Stop()
	backoff := time.Duration(0)
	for {
		reason := "periodic check"
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		case <-r.retry:
			backoff = min(max(2*backoff, time.Second), 30*time.Second)
			reason = "retrying a failed change"
			select {
			case <-ctx.Done():
				return
			case <-time.After(backoff):
			}
		case reason = <-trigger:
			select {
			case <-ctx.Done():
				return
			case <-time.After(repairDelay):
			}
		}
		err := r.cfg.Resync(ctx, reason)
		switch {
		case dataplane.IsDumpInterrupted(err):
			// Devices are coming and going in numbers: look again soon.
			r.log.Info("self-repair: devices kept changing during the check; checking again", "reason", reason)
			poke(reason)
		case err != nil && ctx.Err() == nil:
			r.log.Error("self-repair: check failed", "reason", reason, "err", err)
		}
		if len(r.Failed()) == 0 {
			backoff = 0
		}
	}
}

// repairDelay is how long a report of a change waits before the pass it
// triggers, so that a burst of changes (hostnet's own among them) costs
// one pass.
const repairDelay = 500 * time.Millisecond

func sortedOwners(m map[netmodel.Owner]bool) []netmodel.Owner {
	out := make([]netmodel.Owner, 0, len(m))
	for o := range m {
		out = append(out, o)
	}
	slices.Sort(out)
	return out
}

// HostAddressing returns the host's addresses and route destinations,
// apart from those on hostnet's devices.
func (r *Reconciler) HostAddressing(ctx context.Context) (netmodel.HostAddressing, error) {
	return r.host.HostAddressing(ctx)
}

// Identify returns the identity of the network namespace at path; the
// error wraps netmodel.ErrNamespaceGone when path is not one.
func (r *Reconciler) Identify(ctx context.Context, path string) (netmodel.NSID, error) {
	return r.host.Identify(ctx, path)
}

// HostID is the identity of the host namespace.
func (r *Reconciler) HostID() netmodel.NSID { return r.host.Self() }

// Present reports which of the namespaces are there (and are the ones
// their identities name).
func (r *Reconciler) Present(ctx context.Context, spaces []netmodel.NS) (map[netmodel.NS]bool, error) {
	obs, err := r.host.Observe(ctx, netmodel.Query{Namespaces: spaces, OnlyAsked: true})
	if err != nil {
		return nil, err
	}
	out := make(map[netmodel.NS]bool, len(spaces))
	for _, ns := range spaces {
		_, out[ns] = obs.NSIDs[ns]
	}
	return out, nil
}
