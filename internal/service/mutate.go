package service

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"time"

	"github.com/hostnet/hostnet/api"
	"github.com/hostnet/hostnet/internal/netmodel"
	"github.com/hostnet/hostnet/internal/reconcile"
	"github.com/hostnet/hostnet/internal/store"
)

// A mutation is one change of intent: what its transaction decided, and
// what the kernel must do about it.
type mutation struct {
	s  *Service
	tx store.Tx
	// The owners the decision touches, in order, with their units before.
	touched []netmodel.Owner
	before  map[netmodel.Owner]*netmodel.Unit
	nets    map[string]*parsedNetwork // networks read while planning

	// bestEffort: the kernel's failure does not undo the decision (a
	// deletion stands; what the kernel keeps is removed by a later pass).
	bestEffort bool
	// networksChanged: the decision changed network records, so the
	// networks read while planning before are read again after.
	networksChanged bool

	changes []reconcile.Change
	// undo puts back, in a transaction, the records the decision changed:
	// when the kernel refuses the change, the intent is rolled back.
	undo func(store.Tx) error
	// removeFiles are files hostnet made that the change removes: they
	// carry no tag a full pass could find them by, so a restart removes
	// them from the outbox if the kernel work was cut short.
	removeFiles []netmodel.File
	// flows are the owners whose tracked flows are to be judged again
	// (the reconciler does it from their units; a restart does it again
	// from the outbox).
	flows []flowRecord

	// Where the time went: deciding, then the commit and the kernel work
	// side by side.
	prepare, commit, kernel time.Duration
}

// touch plans the owners' units as the transaction holds them now:
// call it before the decision writes what changes them.
func (m *mutation) touch(owners ...netmodel.Owner) error {
	for _, o := range owners {
		if _, ok := m.before[o]; ok {
			continue
		}
		u, err := m.s.unitOf(m.tx, o, m.nets)
		if err != nil {
			return err
		}
		m.before[o] = u
		m.touched = append(m.touched, o)
	}
	return nil
}

// plan plans the touched owners again, after the decision, and records
// the changes.
func (m *mutation) plan() error {
	if m.networksChanged {
		m.nets = map[string]*parsedNetwork{}
	}
	for _, o := range m.touched {
		after, err := m.s.unitOf(m.tx, o, m.nets)
		if err != nil {
			return err
		}
		before := m.before[o]
		if !netmodel.SameUnit(before, after) {
			if err := m.checkUnit(o, after); err != nil {
				return err
			}
		}
		if netmodel.SameUnit(before, after) {
			continue
		}
		m.change(o, before, after)
		for _, f := range filesOf(before) {
			if !slices.ContainsFunc(filesOf(after), func(g netmodel.File) bool { return g.Path == f.Path }) {
				m.removeFiles = append(m.removeFiles, netmodel.File{Path: f.Path, Dir: f.Dir})
			}
		}
	}
	return nil
}

func filesOf(u *netmodel.Unit) []netmodel.File {
	if u == nil {
		return nil
	}
	var out []netmodel.File
	for _, o := range u.Objects {
		if f, ok := o.(netmodel.File); ok {
			out = append(out, f)
		}
	}
	return out
}

// change records that owner's desired state goes from old to new.
func (m *mutation) change(owner netmodel.Owner, old, new *netmodel.Unit) {
	if old == nil && new == nil {
		return
	}
	m.changes = append(m.changes, reconcile.Change{Owner: owner, Old: old, New: new})
	if old != nil && old.Flows != nil && !old.Flows.Equal(flowsOf(new)) {
		m.flows = append(m.flows, flowRecord{Owner: owner, Addrs: old.Flows.Addrs})
	}
}

func flowsOf(u *netmodel.Unit) *netmodel.FlowGuard {
	if u == nil {
		return nil
	}
	return u.Flows
}

// inverse is what undoes changes.
func inverse(changes []reconcile.Change) []reconcile.Change {
	out := make([]reconcile.Change, len(changes))
	for i, c := range changes {
		out[len(changes)-1-i] = reconcile.Change{Owner: c.Owner, Old: c.New, New: c.Old}
	}
	return out
}

// mutate runs decide in a store transaction, which only reads and records
// (and plans the owners it changes into m), records the outbox entry of
// what must follow, and then applies m's changes. The kernel work starts
// as soon as the transaction has decided, from what it recorded, and runs
// while the store makes the decision durable: on these machines the
// commit's two fsyncs cost about as much as the kernel work. The caller
// answers only once both are done, so no acknowledged change is lost; if
// the daemon dies in between, what the kernel got for a decision that
// never committed carries hostnet's tags and no owner, and the next full
// pass removes it.
//
// When the kernel refuses the change, the intent is rolled back (m.undo)
// and the kernel brought back; the error is the kernel's, as an API error.
// The caller holds s.mu.
func (s *Service) mutate(ctx context.Context, m *mutation, decide func(tx store.Tx, m *mutation) error) error {
	var applied chan error
	start := time.Now()
	var decided time.Time
	seq := s.outbox.next()
	txErr := s.cfg.Store.UpdateEarly(func(tx store.Tx) error {
		*m = mutation{s: s, tx: tx, before: map[netmodel.Owner]*netmodel.Unit{}, nets: map[string]*parsedNetwork{}}
		if err := decide(tx, m); err != nil {
			return err
		}
		if err := m.plan(); err != nil {
			return err
		}
		if err := s.outbox.sweep(tx); err != nil {
			return err
		}
		return s.outbox.record(tx, seq, m)
	}, func() {
		decided = time.Now()
		m.prepare = decided.Sub(start)
		if len(m.changes) == 0 {
			return
		}
		applied = make(chan error, 1)
		go func() {
			err := s.rec.Apply(ctx, m.changes...)
			m.kernel = time.Since(decided)
			applied <- err
		}()
	})
	var kernelErr error
	if applied != nil {
		m.commit = time.Since(decided)
		kernelErr = <-applied
	}
	switch {
	case txErr != nil && applied != nil:
		// The decision did not land, but the kernel started on it.
		if err := s.rec.Apply(context.WithoutCancel(ctx), inverse(m.changes)...); err != nil {
			s.log.Error("undoing the kernel work of a change that failed to commit failed; the next full pass repairs it", "err", err)
		}
		return txErr
	case txErr != nil:
		return txErr
	case kernelErr != nil && m.bestEffort:
		s.log.Error("the kernel did not follow a change in full; the reconciler retries", "err", kernelErr)
	case kernelErr != nil:
		s.rollback(ctx, m)
		return kernelError(kernelErr)
	}
	s.outbox.markDone(seq)
	return nil
}

// rollback puts back the intent of a change the kernel refused, then the
// kernel. A rollback that fails is logged and left to the reconciler: the
// next full pass brings the kernel to whatever the store then says.
func (s *Service) rollback(ctx context.Context, m *mutation) {
	ctx = context.WithoutCancel(ctx)
	if m.undo != nil {
		if err := s.cfg.Store.Update(m.undo); err != nil {
			s.log.Error("rolling back the intent of a change the kernel refused failed; the next full pass follows the store",
				"err", err)
			return
		}
	}
	if err := s.rec.Apply(ctx, inverse(m.changes)...); err != nil {
		s.log.Error("bringing the kernel back after a refused change failed; the next full pass repairs it", "err", err)
	}
}

// kernelError words a failure of the kernel for the client: what the
// client can act on (a host port taken, a bridge full, a device name
// taken, a namespace gone) is a 409 naming it; the rest is the host's.
func kernelError(err error) error {
	var inUse *netmodel.PortInUseError
	switch {
	case errors.As(err, &inUse):
		return api.Conflict(api.CodePortAlreadyExists, "cannot publish port %s: %v", inUse.Port, inUse)
	case errors.Is(err, netmodel.ErrBridgeFull):
		return api.Conflict(api.CodeAddressesExhausted, "the network has as many endpoints attached as its bridge can take: %v", err)
	case errors.Is(err, netmodel.ErrNameTaken):
		return api.Conflict(api.CodeObjectAlreadyExists, "the namespace already has a device of that name that is not hostnet's: %v", err)
	case errors.Is(err, netmodel.ErrNotHostAddress):
		return api.Invalid(api.CodeInvalidPolicy, "cannot publish the port: %v", err)
	case errors.Is(err, netmodel.ErrNamespaceGone):
		return api.Conflict(api.CodeInvalidNamespace, "the network namespace is gone: %v", err)
	}
	return api.InternalError(err, "the host refused the change")
}

// The outbox records, with each decision, what must follow it beyond
// what a full pass of the reconciler derives from the records: files to
// remove, flows to judge again. An entry is done once the kernel has
// followed; done entries are deleted by the next transaction (no fsync of
// their own), and a start re-drives the entries it finds.
type outbox struct {
	seq  uint64
	done []string // keys of entries done, not yet deleted
}

// outboxEntry is one decision's follow-up.
type outboxEntry struct {
	RemoveFiles []netmodel.File `json:"RemoveFiles,omitempty"`
	Flows       []flowRecord    `json:"Flows,omitempty"`
}

type flowRecord struct {
	Owner netmodel.Owner `json:"Owner"`
	Addrs []netip.Addr   `json:"Addrs"`
}

func (o *outbox) next() uint64 {
	o.seq++
	return o.seq
}

func outboxKey(seq uint64) string { return fmt.Sprintf("%020d", seq) }

// record writes m's entry, when it has something to say.
func (o *outbox) record(tx store.Tx, seq uint64, m *mutation) error {
	if len(m.removeFiles) == 0 && len(m.flows) == 0 {
		return nil
	}
	return store.PutJSON(tx, store.Outbox, outboxKey(seq), outboxEntry{RemoveFiles: m.removeFiles, Flows: m.flows})
}

func (o *outbox) markDone(seq uint64) { o.done = append(o.done, outboxKey(seq)) }

// sweep deletes the entries done.
func (o *outbox) sweep(tx store.Tx) error {
	for _, k := range o.done {
		if err := tx.Delete(store.Outbox, k); err != nil {
			return err
		}
	}
	o.done = o.done[:0]
	return nil
}

// pending reads the entries a previous run left, and sets the sequence
// after them.
func (o *outbox) pending(tx store.Tx) (keys []string, entries []outboxEntry, err error) {
	err = tx.ForEach(store.Outbox, "", func(k string, v []byte) error {
		var e outboxEntry
		if err := json.Unmarshal(v, &e); err != nil {
			return nil // unreadable: dropped below
		}
		keys, entries = append(keys, k), append(entries, e)
		var n uint64
		if _, err := fmt.Sscanf(k, "%d", &n); err == nil && n > o.seq {
			o.seq = n
		}
		return nil
	})
	return keys, entries, err
}
