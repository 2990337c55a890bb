package dataplane

import (
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"slices"

	"github.com/hostnet/hostnet/internal/dataplane/netns"
	"github.com/hostnet/hostnet/internal/netmodel"
	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// handOver applies an UplinkHandover (see netmodel.UplinkHandover): the
// bridge takes the uplink's MAC (the segment, and its DHCP server, keep
// seeing the host at the same MAC) and its MTU (set, so that it stays:
// a bridge otherwise takes the lowest MTU of its ports, and an endpoint's
// 1500-byte port would cut a jumbo-frame uplink's host traffic down to
// it) and the host's addresses (a copy: the uplink keeps them until it is
// a port), the uplink becomes its port, and the
// host's routes move from the uplink to the bridge, its addresses leave
// the uplink. Every
// step reads the kernel first, so that a step done before (by a pass cut
// short) is skipped and the rest finished.
func (h *Linux) handOver(u netmodel.UplinkHandover) error {
	uplink, err := h.nl.LinkByName(u.Uplink)
	if err != nil {
		return fmt.Errorf("uplink %s: %w", u.Uplink, err)
	}
	bridge, err := h.nl.LinkByName(u.Bridge)
	if err != nil {
		return fmt.Errorf("bridge %s: %w", u.Bridge, err)
	}
	if bridge.Type() != "bridge" {
		return fmt.Errorf("hand %s over to %s: %s is a %s, not a bridge", u.Uplink, u.Bridge, u.Bridge, bridge.Type())
	}
	if mac := uplink.Attrs().HardwareAddr; bridge.Attrs().HardwareAddr.String() != mac.String() {
		// Set by hand, the MAC stays: the bridge no longer follows its
		// ports' (the lowest of which would change as endpoints come).
		if err := h.nl.LinkSetHardwareAddr(bridge, mac); err != nil {
			return fmt.Errorf("give bridge %s the MAC of %s (%s): %w", u.Bridge, u.Uplink, mac, err)
		}
	}
	if mtu := uplink.Attrs().MTU; bridge.Attrs().MTU != mtu {
		if err := h.nl.LinkSetMTU(bridge, mtu); err != nil {
			return fmt.Errorf("give bridge %s the MTU of %s (%d): %w", u.Bridge, u.Uplink, mtu, err)
		}
	}
	if err := h.copySettings(u.Uplink, u.Bridge); err != nil {
		return fmt.Errorf("give bridge %s the settings of %s: %w", u.Bridge, u.Uplink, err)
	}
	enslaved := false
	if uplink.Attrs().MasterIndex != bridge.Attrs().Index {
		// The host's addresses are on the bridge before the uplink
		// becomes its port: from then on the bridge receives what the
		// segment sends the host, and a pass killed right after the
		// port is made must not leave the host's addresses only on a
		// device that no longer receives (IPv6 neighbor discovery, for
		// one, answers only for the receiving device's addresses).
		if _, err := h.copyAddresses(uplink, bridge); err != nil {
			return fmt.Errorf("give bridge %s the host's addresses of %s: %w", u.Bridge, u.Uplink, err)
		}
		if err := h.nl.LinkSetMasterByIndex(uplink, bridge.Attrs().Index); err != nil {
			return fmt.Errorf("make %s a port of bridge %s: %w", u.Uplink, u.Bridge, err)
		}
		enslaved = true
	}
	dropped, err := h.moveAddressing(uplink, bridge)
	if err != nil {
		return fmt.Errorf("move the host's addresses and routes from %s to %s: %w", u.Uplink, u.Bridge, err)
	}
	if enslaved || dropped {
		if err := h.solicitRouters(bridge); err != nil {
			slog.Debug("no router solicitation yet", "device", u.Bridge, "err", err)
		}
	}
	return nil
}

// deviceSettings are the per-device sysctls of the host's IP configuration
// that follow its addresses to the bridge: how it takes router
// advertisements (its default route, its SLAAC addresses and their
// lifetimes, which the moved addresses keep), how it answers ARP, its
// reverse path filter.
var deviceSettings = []string{
	"net/ipv6/conf/%s/accept_ra", "net/ipv6/conf/%s/accept_ra_defrtr", "net/ipv6/conf/%s/accept_ra_pinfo",
	"net/ipv6/conf/%s/autoconf", "net/ipv6/conf/%s/use_tempaddr",
	"net/ipv4/conf/%s/rp_filter", "net/ipv4/conf/%s/arp_ignore", "net/ipv4/conf/%s/arp_announce",
}

// copySettings sets each of deviceSettings on device to as it is on
// device from (a setting either lacks, IPv6 off for one, is skipped).
func (h *Linux) copySettings(from, to string) error {
	for _, f := range deviceSettings {
		v, err := h.readSysctl(netmodel.NS{}, fmt.Sprintf(f, from))
		if err != nil {
			continue
		}
		key := fmt.Sprintf(f, to)
		if have, err := h.readSysctl(netmodel.NS{}, key); err != nil || have == v {
			continue
		}
		if err := h.SetSysctl(key, v); err != nil {
			return fmt.Errorf("sysctl %s=%s: %w", key, v, err)
		}
	}
	return nil
}

// handBack undoes an UplinkHandover: what the bridge holds of the host's
// addresses and routes moves to the uplink, then the uplink leaves the
// bridge. The addresses move while the uplink is still a port (the
// bridge answers for them until they are on the uplink), so the host
// stays on the segment but for a moment. A bridge or an uplink that is
// gone is no error: there is nothing left to hand back.
func (h *Linux) handBack(uplinkName, bridgeName string) error {
	bridge, err := h.nl.LinkByName(bridgeName)
	if isNotFound(err) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("bridge %s: %w", bridgeName, err)
	}
	uplink, err := h.nl.LinkByName(uplinkName)
	if isNotFound(err) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("uplink %s: %w", uplinkName, err)
	}
	// The notices of the addresses going back, and of the uplink leaving
	// the bridge, are hostnet's own doing.
	h.ownRelease.note(uplink.Attrs().Index)
	dropped, err := h.moveAddressing(bridge, uplink)
	if err != nil {
		return fmt.Errorf("move the host's addresses and routes from %s back to %s: %w", bridgeName, uplinkName, err)
	}
	freed := false
	if uplink.Attrs().MasterIndex == bridge.Attrs().Index {
		if err := h.nl.LinkSetNoMaster(uplink); err != nil && !isNotFound(err) {
			return fmt.Errorf("free %s from bridge %s: %w", uplinkName, bridgeName, err)
		}
		freed = true
	}
	if freed || dropped {
		if err := h.solicitRouters(uplink); err != nil {
			slog.Debug("no router solicitation yet", "device", uplinkName, "err", err)
		}
	}
	return nil
}

// handedOver reports whether port is an uplink handed over to bridge: a
// port of one of hostnet's bridges that is not hostnet's, whose MAC the
// bridge took (the handover's first step). A device a user put on a
// hostnet bridge by hand (a VM's tap on a NAT network's bridge) has a MAC
// of its own: it is no uplink, and the bridge's addresses (hostnet's
// gateway) never go to it.
func (h *Linux) handedOver(bridge, port netlink.Link) bool {
	b, p := bridge.Attrs(), port.Attrs()
	return p.MasterIndex == b.Index && bridge.Type() == "bridge" && h.cfg.tagged(b.Name) && !h.cfg.tagged(p.Name) &&
		len(p.HardwareAddr) > 0 && b.HardwareAddr.String() == p.HardwareAddr.String()
}

// handBackPorts hands back every uplink handed over to the bridge, before
// the bridge is deleted: the addresses it holds would go with it.
func (h *Linux) handBackPorts(bridgeName string) error {
	bridge, err := h.nl.LinkByName(bridgeName)
	if err != nil {
		return nil // gone, or not readable: its deletion will tell
	}
	if bridge.Type() != "bridge" {
		return nil
	}
	links, err := consistent(h.nl.LinkList)
	if err != nil {
		return fmt.Errorf("list devices: %w", err)
	}
	var errs []error
	for _, l := range links {
		if h.handedOver(bridge, l) {
			errs = append(errs, h.handBack(l.Attrs().Name, bridgeName))
		}
	}
	return errors.Join(errs...)
}

// hostAddr reports whether an address is the host's own on a segment:
// global unicast (IPv6 link-local addresses are each device's own).
func hostAddr(a netlink.Addr) bool {
	ip, ok := netip.AddrFromSlice(a.IP)
	if !ok {
		return false
	}
	ip = ip.Unmap()
	return !ip.IsLoopback() && !ip.IsLinkLocalUnicast() && !ip.IsMulticast() && !ip.IsUnspecified()
}

// movedRoutes returns the main-table routes through link that move with
// the host's addressing: all but the kernel's own (prefix routes, which
// follow the addresses, IPv6 link-local and multicast ones) and
// hostnet's (tagged RouteProtocol, which its plans place).
func (h *Linux) movedRoutes(link netlink.Link) ([]netlink.Route, error) {
	routes, err := h.nl.RouteListFiltered(netlink.FAMILY_ALL, &netlink.Route{LinkIndex: link.Attrs().Index, Table: unix.RT_TABLE_MAIN},
		netlink.RT_FILTER_OIF|netlink.RT_FILTER_TABLE)
	if err != nil {
		return nil, fmt.Errorf("list routes of %s: %w", link.Attrs().Name, err)
	}
	out := routes[:0]
	for _, r := range routes {
		if r.Protocol == unix.RTPROT_KERNEL || r.Protocol == unix.RTPROT_RA || r.Protocol == netmodel.RouteProtocol || len(r.MultiPath) > 0 {
			continue
		}
		if r.Type != 0 && r.Type != unix.RTN_UNICAST {
			continue
		}
		if r.Dst != nil {
			if d := prefixOf(r.Dst); d.Addr().IsLinkLocalUnicast() || d.Addr().IsMulticast() {
				continue
			}
		}
		out = append(out, r)
	}
	// Routes on the link first: a gateway may be reachable through one.
	slices.SortStableFunc(out, func(a, b netlink.Route) int {
		return boolRank(a.Gw != nil) - boolRank(b.Gw != nil)
	})
	return out, nil
}

func boolRank(b bool) int {
	if b {
		return 1
	}
	return 0
}

// moveAddressing moves the host's addresses and routes from one link to
// another: each address is added to the new link (with its lifetimes and
// flags), the routes are replaced by the same ones through the new link
// (an IPv4 route is replaced in place: it never disappears), then the
// addresses leave the old link. Routes learnt from router advertisements
// are dropped instead, to be learnt again on the new link (dropLearntRoutes;
// dropped reports whether there were any). Each step tolerates being done
// already.
func (h *Linux) moveAddressing(from, to netlink.Link) (dropped bool, err error) {
	moving, err := h.copyAddresses(from, to)
	if err != nil {
		return false, err
	}
	if dropped, err = h.dropLearntRoutes(from); err != nil {
		return dropped, err
	}
	routes, err := h.movedRoutes(from)
	if err != nil {
		return dropped, err
	}
	for _, r := range routes {
		n := r
		n.LinkIndex = to.Attrs().Index
		if err := h.nl.RouteReplace(&n); err != nil {
			return dropped, fmt.Errorf("route %s through %s: %w", routeText(r), to.Attrs().Name, err)
		}
		if err := h.nl.RouteDel(&r); err != nil && !errors.Is(err, unix.ESRCH) && !errors.Is(err, unix.ENOENT) {
			return dropped, fmt.Errorf("remove route %s from %s: %w", routeText(r), from.Attrs().Name, err)
		}
	}
	// Secondary addresses before their primaries: a primary removed
	// first would take them along or promote them.
	for i := len(moving) - 1; i >= 0; i-- {
		a := moving[i]
		if err := h.nl.AddrDel(from, &a); err != nil && !errors.Is(err, unix.EADDRNOTAVAIL) && !isNotFound(err) {
			return dropped, fmt.Errorf("remove %s from %s: %w", a.IPNet, from.Attrs().Name, err)
		}
	}
	return dropped, nil
}

// dropLearntRoutes deletes the routes the kernel learnt from router
// advertisements on link (`ip -6 route del ... proto ra`) and reports
// whether there were any. They do not move: one put on the new link by
// hand would be permanent, and the kernel, finding it there, could add its
// own no more (every advertisement after would fail at "failed to add
// default route", before its prefixes: the SLAAC addresses' lifetimes
// would no longer be renewed). The new link learns them from the next
// advertisement (solicitRouters asks for one).
func (h *Linux) dropLearntRoutes(link netlink.Link) (bool, error) {
	routes, err := h.nl.RouteListFiltered(netlink.FAMILY_V6, &netlink.Route{LinkIndex: link.Attrs().Index, Table: unix.RT_TABLE_MAIN, Protocol: unix.RTPROT_RA},
		netlink.RT_FILTER_OIF|netlink.RT_FILTER_TABLE|netlink.RT_FILTER_PROTOCOL)
	if errors.Is(err, unix.EAFNOSUPPORT) {
		return false, nil // a kernel without IPv6 (ipv6.disable=1) learns none
	}
	if err != nil {
		return false, fmt.Errorf("list routes of %s: %w", link.Attrs().Name, err)
	}
	for _, r := range routes {
		if err := h.nl.RouteDel(&r); err != nil && !errors.Is(err, unix.ESRCH) && !errors.Is(err, unix.ENOENT) {
			return false, fmt.Errorf("remove route %s (learnt from a router advertisement) from %s: %w", routeText(r), link.Attrs().Name, err)
		}
	}
	return len(routes) > 0, nil
}

// solicitRouters sends a router solicitation out of the device (ICMPv6
// type 133 to ff02::2, as the kernel does when a device comes up), so that
// the routes dropLearntRoutes took from another device are learnt again on
// this one at once, not at the router's next periodic advertisement. It is
// best effort: a device whose link-local address is still tentative cannot
// send one yet, and the kernel solicits by itself once it is not.
func (h *Linux) solicitRouters(link netlink.Link) error {
	name, index := link.Attrs().Name, link.Attrs().Index
	return netns.Do(h.ns, func() error {
		fd, err := unix.Socket(unix.AF_INET6, unix.SOCK_RAW|unix.SOCK_CLOEXEC, unix.IPPROTO_ICMPV6)
		if err != nil {
			return fmt.Errorf("icmpv6 socket: %w", err)
		}
		defer unix.Close(fd)
		if err := unix.BindToDevice(fd, name); err != nil {
			return fmt.Errorf("bind to device %s: %w", name, err)
		}
		// Neighbour discovery's messages carry a hop limit of 255.
		if err := unix.SetsockoptInt(fd, unix.IPPROTO_IPV6, unix.IPV6_MULTICAST_HOPS, 255); err != nil {
			return fmt.Errorf("IPV6_MULTICAST_HOPS: %w", err)
		}
		// Type 133, code 0, a checksum the kernel fills, 4 reserved bytes.
		rs := []byte{133, 0, 0, 0, 0, 0, 0, 0}
		allRouters := &unix.SockaddrInet6{Addr: [16]byte{0xff, 0x02, 15: 2}, ZoneId: uint32(index)}
		if err := unix.Sendto(fd, rs, 0, allRouters); err != nil {
			return fmt.Errorf("router solicitation on %s: %w", name, err)
		}
		return nil
	})
}

// copyAddresses adds the host's addresses of one link to another (with
// their lifetimes and flags; IPv6 ones without DAD: they were the host's
// already) and returns them. An address there already is no error.
func (h *Linux) copyAddresses(from, to netlink.Link) ([]netlink.Addr, error) {
	addrs, err := h.nl.AddrList(from, netlink.FAMILY_ALL)
	if err != nil {
		return nil, fmt.Errorf("list addresses of %s: %w", from.Attrs().Name, err)
	}
	var moving []netlink.Addr
	for _, a := range addrs {
		if hostAddr(a) {
			moving = append(moving, a)
		}
	}
	for _, a := range moving {
		n := a
		n.LinkIndex = to.Attrs().Index
		n.Label = "" // a label must start with its device's name
		if n.IP.To4() == nil {
			n.Flags |= unix.IFA_F_NODAD // the address was the host's already
		}
		if err := h.nl.AddrReplace(to, &n); err != nil && !errors.Is(err, unix.EEXIST) {
			return nil, fmt.Errorf("add %s to %s: %w", a.IPNet, to.Attrs().Name, err)
		}
	}
	return moving, nil
}

func routeText(r netlink.Route) string {
	dst := "default"
	if r.Dst != nil {
		dst = r.Dst.String()
	}
	if r.Gw != nil {
		dst += " via " + r.Gw.String()
	}
	return dst
}

// observeHandovers describes each port of hostnet's bridges that is not
// hostnet's (an uplink handed over), with what of the host's addressing is
// still on it. links are the host's, addrs its addresses, both dumped.
func (h *Linux) observeHandovers(links []netlink.Link, addrs []netlink.Addr, o *netmodel.Observation) error {
	byIndex := map[int]netlink.Link{}
	for _, l := range links {
		byIndex[l.Attrs().Index] = l
	}
	for _, l := range links {
		a := l.Attrs()
		if a.MasterIndex == 0 || h.cfg.tagged(a.Name) {
			continue
		}
		// A bridge that lost its uplink's MAC shows no handover: the
		// plan's is then missing, and applied again.
		br, ok := byIndex[a.MasterIndex]
		if !ok || !h.handedOver(br, l) {
			continue
		}
		oh := netmodel.ObservedHandover{UplinkHandover: netmodel.UplinkHandover{Uplink: a.Name, Bridge: br.Attrs().Name}}
		if br.Attrs().MTU != a.MTU {
			oh.Left = append(oh.Left, fmt.Sprintf("bridge %s has MTU %d, not its uplink's %d", br.Attrs().Name, br.Attrs().MTU, a.MTU))
		}
		for _, ad := range addrs {
			if ad.LinkIndex == a.Index && hostAddr(ad) {
				oh.Left = append(oh.Left, fmt.Sprintf("address %s is on %s, not on bridge %s", ad.IPNet, a.Name, br.Attrs().Name))
			}
		}
		routes, err := h.movedRoutes(l)
		if err != nil {
			return err
		}
		for _, r := range routes {
			oh.Left = append(oh.Left, fmt.Sprintf("route %s goes through %s, not bridge %s", routeText(r), a.Name, br.Attrs().Name))
		}
		o.Handovers[oh.Key()] = oh
	}
	return nil
}
