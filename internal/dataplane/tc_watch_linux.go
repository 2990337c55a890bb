package dataplane

import (
	"fmt"
	"sync"
	"time"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netlink/nl"
	vnetns "github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

// ownChanges remembers, for a while, the devices hostnet itself is
// changing (their qdiscs deleted, freed from a bridge): the kernel's
// notices of those changes are its own doing, not drift.
type ownChanges struct{ at sync.Map } // ifindex -> time.Time

// ownChangeMemory is how long a change of hostnet's keeps the notices of
// that device from counting as drift.
const ownChangeMemory = 2 * time.Second

// note records that hostnet is changing the device with index.
func (o *ownChanges) note(index int) { o.at.Store(index, time.Now()) }

// recent reports whether hostnet changed the device with index lately.
func (o *ownChanges) recent(index int) bool {
	at, ok := o.at.Load(index)
	if !ok {
		return false
	}
	if time.Since(at.(time.Time)) < ownChangeMemory {
		return true
	}
	o.at.Delete(index)
	return false
}

// watchShapers calls changed when someone else deletes a shaper's part
// from one of hostnet's devices (`tc qdisc del dev hnv… root`, `tc
// filter del dev hnv… ingress`): its token bucket (hostnet's handle),
// its ingress qdisc or its redirect, until done is closed. A device that
// is gone is the link watch's business. A failure of the subscription
// later is passed to failed.
func (h *Linux) watchShapers(done <-chan struct{}, changed func(Change), failed func(error)) error {
	s, err := nl.SubscribeAt(h.ns, vnetns.None(), unix.NETLINK_ROUTE, unix.RTNLGRP_TC)
	if err != nil {
		return fmt.Errorf("subscribe to tc changes: %w", err)
	}
	go func() {
		<-done
		s.Close()
	}()
	go func() {
		for {
			msgs, from, err := s.Receive()
			if err != nil {
				select {
				case <-done:
				default:
					failed(fmt.Errorf("tc changes: %w", err))
				}
				return
			}
			if from.Pid != nl.PidKernel {
				continue
			}
			for _, m := range msgs {
				if (m.Header.Type != unix.RTM_DELQDISC && m.Header.Type != unix.RTM_DELTFILTER) || len(m.Data) < nl.SizeofTcMsg {
					continue
				}
				tm := nl.DeserializeTcMsg(m.Data)
				ours := tm.Parent == netlink.HANDLE_INGRESS || (tm.Handle == shaperHandle && tm.Parent == netlink.HANDLE_ROOT) ||
					(m.Header.Type == unix.RTM_DELTFILTER && tm.Parent == ingressHandle)
				if !ours || h.ownTC.recent(int(tm.Ifindex)) {
					continue
				}
				link, err := h.nl.LinkByIndex(int(tm.Ifindex))
				if err != nil || !h.cfg.tagged(link.Attrs().Name) {
					continue
				}
				changed(Change{Reason: "a shaper of device " + link.Attrs().Name + " was deleted"})
			}
		}
	}()
	return nil
}
