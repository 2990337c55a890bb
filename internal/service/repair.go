package service

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/hostnet/hostnet/internal/dataplane"
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
	// A subscription ends on an error: its socket overflowed (a burst of
	// notifications, as when thousands of ports go at once), or it closed
	// at shutdown. Unless shutting down, what it missed is checked for at
	// once, and it is made again.
	var watchDevices, watchFirewall func()
	failed := func(what string, again *func()) func(error) {
		return func(err error) {
			if ctx.Err() != nil {
				return
			}
			s.log.Info("self-repair: notifications interrupted; checking now and subscribing again", "source", what, "err", err)
			poke(what + " notifications were interrupted")
			go func() {
				select {
				case <-ctx.Done():
				case <-time.After(time.Second):
					(*again)()
				}
			}()
		}
	}
	watchDevices = func() {
		if err := s.cfg.Host.WatchLinkRemovals(ctx.Done(), func(name string) bool { return strings.HasPrefix(name, driver.LinkPrefix) }, func(name string) {
			poke("device " + name + " was removed")
		}, failed("device", &watchDevices)); err != nil {
			s.log.Warn("self-repair: no device notifications; the periodic check goes on", "err", err)
		}
	}
	watchFirewall = func() {
		w, ok := s.cfg.Firewall.(othersWatcher)
		if !ok {
			return
		}
		if err := w.WatchOthers(ctx.Done(), func(pid uint32, comm string) {
			poke(fmt.Sprintf("process %q (pid %d) changed nftables", comm, pid))
		}, failed("nftables", &watchFirewall)); err != nil {
			s.log.Warn("self-repair: no nftables notifications; the periodic check goes on", "err", err)
		}
	}
	watchDevices()
	watchFirewall()
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
		n, err := s.Repair(reason)
		switch {
		case dataplane.IsDumpInterrupted(err):
			// Devices are coming and going in numbers: look again soon.
			s.log.Info("self-repair: devices kept changing during the check; checking again", "reason", reason)
			poke(reason)
		case err != nil:
			s.log.Error("self-repair: check failed", "err", err)
		case n > 0:
			s.log.Info("self-repair: repaired", "problems", n, "reason", reason)
		}
	}
}
