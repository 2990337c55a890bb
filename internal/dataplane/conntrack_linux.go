package dataplane

import (
	"fmt"
	"net"
	"net/netip"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// Flow is a connection the host's connection tracker follows: its tuple in
// the direction it was opened (Orig) and the tuple replies come back with
// (Reply), which differ when the flow is NATed.
type Flow struct {
	Proto    uint8
	OrigSrc  netip.AddrPort
	OrigDst  netip.AddrPort
	ReplySrc netip.AddrPort
	ReplyDst netip.AddrPort
}

func (f Flow) String() string {
	return fmt.Sprintf("proto %d %s -> %s (reply %s -> %s)", f.Proto, f.OrigSrc, f.OrigDst, f.ReplySrc, f.ReplyDst)
}

// DeleteFlows removes from the host's connection tracker every flow for
// which match returns true (`conntrack -D ...`), so that their next packet
// is judged again by the current rules: the way a policy change takes
// effect on established flows too. It returns how many it removed.
func (h *Host) DeleteFlows(match func(Flow) bool) (int, error) {
	h.ctMu.Lock()
	defer h.ctMu.Unlock()
	ct, err := netlink.NewHandleAt(h.ns, unix.NETLINK_NETFILTER)
	if err != nil {
		return 0, fmt.Errorf("open conntrack: %w", err)
	}
	defer ct.Close()
	filter := flowFilter(match)
	total := 0
	for _, fam := range []netlink.InetFamily{unix.AF_INET, unix.AF_INET6} {
		n, err := ct.ConntrackDeleteFilters(netlink.ConntrackTable, fam, filter)
		total += int(n)
		if err != nil {
			return total, fmt.Errorf("delete conntrack entries: %w", err)
		}
	}
	return total, nil
}

type flowFilter func(Flow) bool

func (f flowFilter) MatchConntrackFlow(c *netlink.ConntrackFlow) bool {
	return f(Flow{
		Proto:    c.Forward.Protocol,
		OrigSrc:  addrPort(c.Forward.SrcIP, c.Forward.SrcPort),
		OrigDst:  addrPort(c.Forward.DstIP, c.Forward.DstPort),
		ReplySrc: addrPort(c.Reverse.SrcIP, c.Reverse.SrcPort),
		ReplyDst: addrPort(c.Reverse.DstIP, c.Reverse.DstPort),
	})
}

func addrPort(ip net.IP, port uint16) netip.AddrPort {
	a, _ := netip.AddrFromSlice(ip)
	return netip.AddrPortFrom(a.Unmap(), port)
}
