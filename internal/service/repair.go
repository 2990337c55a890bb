package service

import (
	"context"
	"fmt"
	"time"

	"github.com/hostnet/hostnet/internal/driver"
)

// repairDelay is how long a notification waits before the check it
// triggers, so that a burst of changes (hostnet's own deletions among
// them) costs one check.
const repairDelay = 500 * time.Millisecond

// othersWatcher is the part of the firewall that reports changes other
// processes make (nft.Kernel).
type othersWatcher interface {
	WatchOthers(done <-chan struct{}, changed func(pid uint32, comm string), failed func(error)) error
}

// SelfRepair checks the kernel against the stored intent every interval,
// and half a second after one of hostnet's devices is deleted or another
// process changes nftables, and repairs what drifted (see Repair), until
// ctx ends. Notifications that cannot be subscribed to leave the periodic
// check alone to find drift.
func (s *Service) SelfRepair(ctx context.Context, interval time.Duration) {
	trigger := make(chan string, 1)
	poke := func(reason string) {
		select {
		case trigger <- reason:
		default:
		}
	}
	failed := func(what string) func(error) {
		return func(err error) {
			s.log.Warn("self-repair: notifications stopped; the periodic check goes on", "source", what, "err", err)
		}
	}
	if err := s.cfg.Host.WatchLinkRemovals(ctx.Done(), driver.LinkPrefix, func(name string) {
		poke("device " + name + " was removed")
	}, failed("devices")); err != nil {
		s.log.Warn("self-repair: no device notifications", "err", err)
	}
	if w, ok := s.cfg.Firewall.(othersWatcher); ok {
		if err := w.WatchOthers(ctx.Done(), func(pid uint32, comm string) {
			poke(fmt.Sprintf("process %q (pid %d) changed nftables", comm, pid))
		}, failed("nftables")); err != nil {
			s.log.Warn("self-repair: no nftables notifications", "err", err)
		}
	}
	tick := time.NewTicker(interval)
	defer tick.Stop()
	for {
		reason := "periodic check"
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		case reason = <-trigger:
			select {
			case <-ctx.Done():
				return
			case <-time.After(repairDelay):
			}
		}
		if n, err := s.Repair(reason); err != nil {
			s.log.Error("self-repair: check failed", "err", err)
		} else if n > 0 {
			s.log.Info("self-repair: repaired", "problems", n, "reason", reason)
		}
	}
}
