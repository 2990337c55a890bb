package dataplane

import (
	"fmt"
	"time"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// ownReleaseMemory is how long hostnet's own freeing of a port (a
// handback) keeps that device's change of master from counting as drift.
const ownReleaseMemory = 2 * time.Second

// noteOwnRelease records that hostnet is freeing the device with index
// from its bridge: the notification is its own doing.
func (h *Linux) noteOwnRelease(index int) { h.ownRelease.Store(index, time.Now()) }

func (h *Linux) ownReleaseChange(index int) bool {
	at, ok := h.ownRelease.Load(index)
	if !ok {
		return false
	}
	if time.Since(at.(time.Time)) < ownReleaseMemory {
		return true
	}
	h.ownRelease.Delete(index)
	return false
}

// watchLinks calls changed, until done is closed, for the device changes
// of the host namespace (`ip monitor link`) that are drift:
//   - a device of hostnet's deleted (Change.Link names it; hostnet's own
//     deletions are reported too, and the caller checks whether a removal
//     was intended);
//   - a device not of hostnet's leaving one of hostnet's bridges (`ip link
//     set eth1 nomaster`): an uplink handed over to a Transparent network's
//     bridge, freed by someone else, takes the segment from the host's
//     addresses, which the bridge holds, until it is taken again; hostnet's
//     own handbacks are not reported.
//
// It returns once subscribed; a failure of the subscription later is passed
// to failed, after which no more changes are reported.
func (h *Linux) watchLinks(done <-chan struct{}, changed func(Change), failed func(error)) error {
	ch := make(chan netlink.LinkUpdate, 64)
	ns := h.ns
	err := netlink.LinkSubscribeWithOptions(ch, done, netlink.LinkSubscribeOptions{
		Namespace:         &ns,
		ErrorCallback:     failed,
		ReceiveBufferSize: 1 << 20,
	})
	if err != nil {
		return fmt.Errorf("subscribe to device changes: %w", err)
	}
	go func() {
		for u := range ch {
			if u.Link == nil || u.Header.Type != unix.RTM_DELLINK {
				continue
			}
			a := u.Link.Attrs()
			if h.cfg.tagged(a.Name) {
				// A port's leaving its bridge comes as a DELLINK of
				// family AF_BRIDGE, the device staying: one of hostnet's
				// is reported all the same, the caller's check finding
				// it is no removal of hostnet's (its deletion's is).
				changed(Change{Reason: "device " + a.Name + " was removed", Link: a.Name})
				continue
			}
			// The AF_BRIDGE DELLINK of a port leaving its bridge still
			// names the bridge.
			if u.Family != unix.AF_BRIDGE || a.MasterIndex == 0 || h.ownReleaseChange(a.Index) {
				continue
			}
			if br, err := h.nl.LinkByIndex(a.MasterIndex); err == nil && h.cfg.tagged(br.Attrs().Name) {
				changed(Change{Reason: "device " + a.Name + " left bridge " + br.Attrs().Name})
			}
		}
	}()
	return nil
}
