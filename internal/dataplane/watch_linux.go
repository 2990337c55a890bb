package dataplane

import (
	"fmt"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// WatchLinkRemovals calls removed with the name of every device of the
// host namespace that match selects, as it is deleted (`ip monitor
// link`), until done is closed. Hostnet's own deletions are
// reported too: the caller checks whether a removal was intended. It
// returns once subscribed; a failure of the subscription later is passed
// to failed, after which no more removals are reported.
func (h *Linux) WatchLinkRemovals(done <-chan struct{}, match func(name string) bool, removed func(name string), failed func(error)) error {
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
			if u.Header.Type == unix.RTM_DELLINK && u.Link != nil && match(u.Link.Attrs().Name) {
				removed(u.Link.Attrs().Name)
			}
		}
	}()
	return nil
}
