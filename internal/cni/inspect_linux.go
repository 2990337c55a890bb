package cni

import (
	"fmt"
	"net/netip"

	"github.com/hostnet/hostnet/internal/dataplane/netns"
	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// InspectInterface reads an interface inside the network namespace at
// path (`ip -n NS addr show IFNAME; ip -n NS route show dev IFNAME`),
// through a netlink socket bound to that namespace.
func InspectInterface(path, ifname string) (*Interface, error) {
	ns, err := netns.Open(path)
	if err != nil {
		return nil, fmt.Errorf("open namespace: %w", err)
	}
	defer ns.Close()
	h, err := netlink.NewHandleAt(ns, unix.NETLINK_ROUTE)
	if err != nil {
		return nil, fmt.Errorf("netlink in namespace: %w", err)
	}
	defer h.Close()
	link, err := h.LinkByName(ifname)
	if err != nil {
		return nil, fmt.Errorf("no such interface: %w", err)
	}
	attrs := link.Attrs()
	out := &Interface{MAC: attrs.HardwareAddr, Up: attrs.Flags&unix.IFF_UP != 0}
	addrs, err := h.AddrList(link, netlink.FAMILY_ALL)
	if err != nil {
		return nil, fmt.Errorf("list addresses: %w", err)
	}
	for _, a := range addrs {
		ip, ok := netip.AddrFromSlice(a.IP)
		if !ok {
			continue
		}
		ones, _ := a.Mask.Size()
		out.Addrs = append(out.Addrs, netip.PrefixFrom(ip.Unmap(), ones))
	}
	routes, err := h.RouteList(link, netlink.FAMILY_ALL)
	if err != nil {
		return nil, fmt.Errorf("list routes: %w", err)
	}
	for _, r := range routes {
		var dst netip.Prefix
		if r.Dst != nil {
			a, _ := netip.AddrFromSlice(r.Dst.IP)
			ones, _ := r.Dst.Mask.Size()
			dst = netip.PrefixFrom(a.Unmap(), ones)
		} else if r.Family == unix.AF_INET6 {
			dst = netip.PrefixFrom(netip.IPv6Unspecified(), 0)
		} else {
			dst = netip.PrefixFrom(netip.IPv4Unspecified(), 0)
		}
		gw, _ := netip.AddrFromSlice(r.Gw)
		out.Routes = append(out.Routes, Route{Dst: dst, Gateway: gw.Unmap()})
	}
	return out, nil
}
