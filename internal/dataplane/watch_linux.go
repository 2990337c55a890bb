package dataplane

import (
	"fmt"
	"strings"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// WatchLinkRemovals calls removed with the name of every device of the
// host namespace whose name starts with prefix, as it is deleted (`ip
// monitor link`), until done is closed. Hostnet's own deletions are
// reported too: the caller checks whether a removal was intended. It
// returns once subscribed; a failure of the subscription later is passed
// to failed, after which no more removals are reported.
func (h *Host) WatchLinkRemovals(done <-chan struct{}, prefix string, removed func(name string), failed func(error)) error {
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
			if u.Header.Type == unix.RTM_DELLINK && u.Link != nil && strings.HasPrefix(u.Link.Attrs().Name, prefix) {
				removed(u.Link.Attrs().Name)
			}
		}
	}()
	return nil
}
