package reconcile

import (
	"context"
	"net/netip"
	"time"

	"github.com/hostnet/hostnet/internal/netmodel"
)

// EndFlows makes the connection tracker forget the flows jobs no longer
// keep, now.
func (r *Reconciler) EndFlows(ctx context.Context, jobs []FlowJob) { r.endFlows(ctx, jobs) }

// RemoveFiles removes files hostnet made (and the directories made for
// them); what is gone already is fine.
func (r *Reconciler) RemoveFiles(ctx context.Context, files []netmodel.File) {
	objs := make([]netmodel.Object, len(files))
	for i, f := range files {
		objs[i] = f
	}
	if err := r.host.Apply(ctx, nil, objs); err != nil {
		r.log.Warn("removing files hostnet made failed", "err", err)
	}
}

// endFlows makes the connection tracker forget the flows the jobs' guards
// no longer keep, in one walk of its table whatever the number of jobs. A
// walk costs milliseconds even when the table is empty (it visits every
// bucket of the host's table), so what need not wait goes through
// endFlowsLater.
func (r *Reconciler) endFlows(ctx context.Context, jobs []FlowJob) {
	guards := map[netip.Addr]*netmodel.FlowGuard{}
	for _, j := range jobs {
		for _, a := range j.Addrs {
			guards[a] = j.Guard // a later job of the same address wins
		}
	}
	r.endFlowsOf(ctx, guards)
}

func (r *Reconciler) endFlowsOf(ctx context.Context, guards map[netip.Addr]*netmodel.FlowGuard) {
	if len(guards) == 0 {
		return
	}
	n, err := r.host.DeleteFlows(ctx, func(f netmodel.Flow) bool {
		if g, ok := guards[f.ReplySrc.Addr()]; ok && g.EndsIncoming(f) {
			return true
		}
		if g, ok := guards[f.OrigSrc.Addr()]; ok && g.EndsOutgoing(f) {
			return true
		}
		return false
	})
	if err != nil {
		r.log.Warn("ending the flows a policy change denies failed", "addresses", len(guards), "ended", n, "err", err)
		return
	}
	if n > 0 {
		r.log.Info("ended flows the firewall no longer admits", "flows", n, "addresses", len(guards))
	}
}

// Forgetting flows waits for the firewall to be quiet for flowQuiet, or at
// most flowMaxDelay after the first change that queued it: a walk of the
// connection tracker disables bottom halves on its CPU for milliseconds,
// which stalls a concurrent nftables commit (it waits for an RCU grace
// period), so walks are kept out of bursts of changes and shared by them.
const (
	flowQuiet    = 50 * time.Millisecond
	flowMaxDelay = 500 * time.Millisecond
)

// endFlowsLater is endFlows in the background, for changes whose flows the
// firewall already stops: the ACL chains judge every packet of a flow, not
// only its first, so what is left is to free the tracker's entries. Jobs
// queued before a walk share it. Close cuts the wait short.
func (r *Reconciler) endFlowsLater(jobs ...FlowJob) {
	if len(jobs) == 0 {
		return
	}
	r.flowMu.Lock()
	defer r.flowMu.Unlock()
	now := time.Now()
	if len(r.flowQueue) == 0 {
		r.flowFirst = now
	}
	r.flowLast = now
	for _, j := range jobs {
		for _, a := range j.Addrs {
			r.flowQueue[a] = j.Guard
		}
	}
	if r.flowWalking {
		return
	}
	r.flowWalking = true
	r.background.Add(1)
	go func() {
		defer r.background.Done()
		for {
			r.flowMu.Lock()
			if len(r.flowQueue) == 0 {
				r.flowWalking = false
				r.flowMu.Unlock()
				return
			}
			due := r.flowLast.Add(flowQuiet)
			if limit := r.flowFirst.Add(flowMaxDelay); limit.Before(due) {
				due = limit
			}
			if wait := time.Until(due); wait > 0 && !r.closed {
				r.flowMu.Unlock()
				select {
				case <-time.After(wait):
				case <-r.closing:
				}
				continue
			}
			batch := r.flowQueue
			r.flowQueue = map[netip.Addr]*netmodel.FlowGuard{}
			r.flowMu.Unlock()
			r.endFlowsOf(context.Background(), batch)
		}
	}()
}
