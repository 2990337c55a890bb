package dataplane

import (
	"fmt"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

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
			if u.Family != unix.AF_BRIDGE || a.MasterIndex == 0 || h.ownRelease.recent(a.Index) {
				continue
			}
			if br, err := h.nl.LinkByIndex(a.MasterIndex); err == nil && h.cfg.tagged(br.Attrs().Name) {
				changed(Change{Reason: "device " + a.Name + " left bridge " + br.Attrs().Name})
			}
		}
	}()
	return nil
}

// watchUplinkAddresses calls changed, until done is closed, when an
// address of the host's is put on an uplink handed over to one of
// hostnet's bridges (`ip addr add 192.0.2.10/24 dev eth1`: a DHCP client
// or network manager renewing the uplink's lease): the bridge holds the
// host's addresses, and the next pass moves it there. Hostnet's own
// handbacks are not reported. A failure of the subscription later is
// passed to failed.
func (h *Linux) watchUplinkAddresses(done <-chan struct{}, changed func(Change), failed func(error)) error {
	ch := make(chan netlink.AddrUpdate, 64)
	ns := h.ns
	err := netlink.AddrSubscribeWithOptions(ch, done, netlink.AddrSubscribeOptions{
		Namespace:         &ns,
		ErrorCallback:     failed,
		ReceiveBufferSize: 1 << 20,
	})
	if err != nil {
		return fmt.Errorf("subscribe to address changes: %w", err)
	}
	go func() {
		for u := range ch {
			if !u.NewAddr || !hostAddr(netlink.Addr{IPNet: &u.LinkAddress}) || h.ownRelease.recent(u.LinkIndex) {
				continue
			}
			port, err := h.nl.LinkByIndex(u.LinkIndex)
			if err != nil || port.Attrs().MasterIndex == 0 || h.cfg.tagged(port.Attrs().Name) {
				continue
			}
			if br, err := h.nl.LinkByIndex(port.Attrs().MasterIndex); err == nil && h.handedOver(br, port) {
				changed(Change{Reason: fmt.Sprintf("address %s was put on %s, the uplink bridge %s holds", u.LinkAddress.String(), port.Attrs().Name, br.Attrs().Name)})
			}
		}
	}()
	return nil
}
