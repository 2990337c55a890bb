package dataplane

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// LinkCounters returns the traffic counters of the host namespace's
// devices whose names start with prefix, by name: one link dump on a
// socket of its own, so that a scrape never waits behind (or holds up)
// the reconciler's requests.
func (h *Linux) LinkCounters(ctx context.Context, prefix string) (map[string]LinkCounters, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	nh, err := netlink.NewHandleAt(h.ns, unix.NETLINK_ROUTE)
	if err != nil {
		return nil, fmt.Errorf("open netlink handle: %w", err)
	}
	defer nh.Close()
	if err := nh.SetSocketTimeout(netlinkTimeout); err != nil {
		return nil, fmt.Errorf("set netlink timeout: %w", err)
	}
	links, err := nh.LinkList()
	if err != nil && !(errors.Is(err, netlink.ErrDumpInterrupted) && len(links) > 0) {
		return nil, fmt.Errorf("list links: %w", err)
	}
	out := map[string]LinkCounters{}
	for _, l := range links {
		a := l.Attrs()
		if !strings.HasPrefix(a.Name, prefix) || a.Statistics == nil {
			continue
		}
		s := a.Statistics
		out[a.Name] = LinkCounters{RxPackets: s.RxPackets, TxPackets: s.TxPackets, RxBytes: s.RxBytes, TxBytes: s.TxBytes}
	}
	return out, nil
}
