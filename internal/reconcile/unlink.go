package reconcile

import (
	"context"
	"time"

	"github.com/hostnet/hostnet/internal/netmodel"
)

// An unlink is the host side of a veth waiting to be removed.
type unlink struct {
	link netmodel.Link
	done chan struct{} // closed once it is gone (or its removal failed)
}

// unlinkLater removes the host sides of veths in the background, in
// batches. Removing a veth waits for several RCU grace periods (about
// 15 ms here, holding the RTNL lock), and nothing waits for it: the
// firewall forgot the port first, which cut it off (hostnet's bridge table
// drops what a port it does not know sends or receives). Links queued
// while a batch runs go together in the next one: the kernel removes a
// batch for about the price of one link. An ensure that could meet a
// link being removed (the same name, or its old namespace) waits for it
// (awaitUnlinks); a crash before it is gone leaves an untagged-by-owner
// link that the next full pass removes.
func (r *Reconciler) unlinkLater(links []netmodel.Link) {
	r.unlinkMu.Lock()
	defer r.unlinkMu.Unlock()
	for _, l := range links {
		u := &unlink{link: l, done: make(chan struct{})}
		r.unlinking[l.Name] = u.done
		r.unlinkQueue = append(r.unlinkQueue, u)
	}
	if r.unlinkRunning {
		return
	}
	r.unlinkRunning = true
	r.background.Add(1)
	go r.unlinkAll()
}

func (r *Reconciler) unlinkAll() {
	defer r.background.Done()
	for {
		r.unlinkMu.Lock()
		batch := r.unlinkQueue
		r.unlinkQueue, r.unlinkBatch = nil, batch
		if len(batch) == 0 {
			r.unlinkRunning = false
			r.unlinkMu.Unlock()
			return
		}
		r.unlinkMu.Unlock()
		objs := make([]netmodel.Object, len(batch))
		for i, u := range batch {
			objs[i] = u.link
		}
		if err := r.host.Apply(context.Background(), nil, objs); err != nil {
			r.log.Error("removing endpoint NICs failed; the next full pass will retry", "count", len(objs), "err", err)
		}
		r.unlinkMu.Lock()
		now := time.Now()
		for _, u := range batch {
			if r.unlinking[u.link.Name] == u.done {
				delete(r.unlinking, u.link.Name)
			}
			r.unlinked[u.link.Name] = now
			close(u.done)
		}
		for name, at := range r.unlinked {
			if now.Sub(at) > unlinkedMemory {
				delete(r.unlinked, name)
			}
		}
		r.unlinkBatch = nil
		r.unlinkMu.Unlock()
	}
}

// unlinkedMemory is how long the reconciler remembers the links it
// removed, to tell the host's reports of its own removals from drift.
const unlinkedMemory = 10 * time.Second

// removedByUs tells whether the host link name is being removed, or was
// removed lately, by the reconciler itself.
func (r *Reconciler) removedByUs(name string) bool {
	r.unlinkMu.Lock()
	defer r.unlinkMu.Unlock()
	if _, ok := r.unlinking[name]; ok {
		return true
	}
	at, ok := r.unlinked[name]
	return ok && time.Since(at) < unlinkedMemory
}

// noteRemoved remembers the host links among objs as removed by the
// reconciler (see removedByUs).
func (r *Reconciler) noteRemoved(objs []netmodel.Object) {
	r.unlinkMu.Lock()
	defer r.unlinkMu.Unlock()
	now := time.Now()
	for _, o := range objs {
		if l, ok := o.(netmodel.Link); ok && l.NS.IsHost() {
			r.unlinked[l.Name] = now
		}
	}
}

// unlinkPending tells whether the host link name is being removed in the
// background: it is going, not garbage.
func (r *Reconciler) unlinkPending(name string) bool {
	r.unlinkMu.Lock()
	defer r.unlinkMu.Unlock()
	_, ok := r.unlinking[name]
	return ok
}

// awaitUnlinks waits until no link being removed could meet the objects
// about to be ensured: a host link of the same name (which the ensure
// would adopt just before it goes), or a veth leaving a namespace where
// objects are ensured (whose name there they may take again).
func (r *Reconciler) awaitUnlinks(ensure []netmodel.Object) {
	r.unlinkMu.Lock()
	if len(r.unlinking) == 0 {
		r.unlinkMu.Unlock()
		return
	}
	var waits []chan struct{}
	spaces := map[string]bool{}
	for _, o := range ensure {
		k := o.Key()
		if k.Kind == netmodel.KindLink && k.NS.IsHost() {
			if done := r.unlinking[k.ID]; done != nil {
				waits = append(waits, done)
			}
		}
		if !k.NS.IsHost() {
			spaces[k.NS.Path] = true
		}
	}
	for _, list := range [][]*unlink{r.unlinkQueue, r.unlinkBatch} {
		for _, u := range list {
			if u.link.Peer != nil && spaces[u.link.Peer.NS.Path] {
				waits = append(waits, u.done)
			}
		}
	}
	r.unlinkMu.Unlock()
	for _, done := range waits {
		<-done
	}
}
