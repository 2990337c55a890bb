package dataplane

import (
	"fmt"
	"time"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netlink/nl"
	vnetns "github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

// ownTCMemory is how long a deletion of a device's qdiscs by hostnet
// itself keeps the notifications of that device's qdisc deletions from
// counting as drift.
const ownTCMemory = 2 * time.Second

// noteOwnTC records that hostnet is deleting qdiscs or filters of the
// device with index: their notifications are its own doing.
func (h *Linux) noteOwnTC(index int) { h.ownTC.Store(index, time.Now()) }

func (h *Linux) ownTCChange(index int) bool {
	at, ok := h.ownTC.Load(index)
	if !ok {
		return false
	}
	if time.Since(at.(time.Time)) < ownTCMemory {
		return true
	}
	h.ownTC.Delete(index)
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
				if !ours || h.ownTCChange(int(tm.Ifindex)) {
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
