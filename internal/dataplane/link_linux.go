package dataplane

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/hostnet/hostnet/internal/dataplane/netns"
	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netlink/nl"
	vnetns "github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

const netlinkTimeout = 10 * time.Second

// Host programs the namespace hostnet treats as the host. All its calls go
// through netlink sockets bound to that namespace, so the daemon's own
// threads never change namespace and never touch another one by mistake.
type Host struct {
	ns   netns.Handle
	nl   *netlink.Handle
	sock *nl.SocketHandle // for requests the netlink library cannot build
}

// OpenHost opens the namespace at path as the host; an empty path means
// the namespace of the calling thread.
func OpenHost(path string) (*Host, error) {
	var ns netns.Handle
	var err error
	if path == "" {
		ns, err = netns.Current()
	} else {
		ns, err = netns.Open(path)
	}
	if err != nil {
		return nil, err
	}
	h := &Host{ns: ns}
	if h.nl, h.sock, err = routeSockets(ns); err != nil {
		ns.Close()
		return nil, err
	}
	return h, nil
}

func routeSockets(ns netns.Handle) (*netlink.Handle, *nl.SocketHandle, error) {
	h, err := netlink.NewHandleAt(ns, unix.NETLINK_ROUTE)
	if err != nil {
		return nil, nil, fmt.Errorf("open netlink handle: %w", err)
	}
	if err := h.SetSocketTimeout(netlinkTimeout); err != nil {
		h.Close()
		return nil, nil, fmt.Errorf("set netlink timeout: %w", err)
	}
	s, err := nl.GetNetlinkSocketAt(ns, vnetns.None(), unix.NETLINK_ROUTE)
	if err != nil {
		h.Close()
		return nil, nil, fmt.Errorf("open netlink socket: %w", err)
	}
	tv := unix.NsecToTimeval(netlinkTimeout.Nanoseconds())
	_ = s.SetSendTimeout(&tv)
	_ = s.SetReceiveTimeout(&tv)
	_ = s.SetExtAck(true)
	return h, &nl.SocketHandle{Socket: s}, nil
}

// Close releases the host's sockets and namespace handle.
func (h *Host) Close() {
	h.nl.Close()
	h.sock.Close()
	h.ns.Close()
}

// NS returns the host namespace handle (owned by Host; do not close).
func (h *Host) NS() netns.Handle { return h.ns }

func (h *Host) execute(req *nl.NetlinkRequest) error {
	req.Sockets = map[int]*nl.SocketHandle{unix.NETLINK_ROUTE: h.sock}
	_, err := req.Execute(unix.NETLINK_ROUTE, 0)
	return err
}

func isNotFound(err error) bool {
	var lnf netlink.LinkNotFoundError
	return errors.As(err, &lnf) || errors.Is(err, unix.ENODEV) || errors.Is(err, unix.ENOENT)
}

// EnsureBridge makes the bridge exist and be up with exactly the given
// addresses (`ip link add NAME type bridge; ip addr add ...; ip link set
// NAME up`). An existing bridge is adopted as it is, never taken down; a
// device of another kind under that name is replaced. It returns the
// bridge's interface index.
func (h *Host) EnsureBridge(s BridgeSpec) (int, error) {
	link, err := h.nl.LinkByName(s.Name)
	if err != nil && !isNotFound(err) {
		return 0, fmt.Errorf("look up bridge %s: %w", s.Name, err)
	}
	if err == nil && link.Type() != "bridge" {
		if err := h.nl.LinkDel(link); err != nil {
			return 0, fmt.Errorf("replace %s device %s: %w", link.Type(), s.Name, err)
		}
		link = nil
	}
	if link == nil {
		attrs := netlink.NewLinkAttrs()
		attrs.Name = s.Name
		attrs.MTU = s.MTU
		attrs.HardwareAddr = s.MAC
		attrs.Flags = net.FlagUp
		if err := h.nl.LinkAdd(&netlink.Bridge{LinkAttrs: attrs}); err != nil && !errors.Is(err, unix.EEXIST) {
			return 0, fmt.Errorf("create bridge %s: %w", s.Name, err)
		}
		if link, err = h.nl.LinkByName(s.Name); err != nil {
			return 0, fmt.Errorf("look up bridge %s: %w", s.Name, err)
		}
	}
	a := link.Attrs()
	if s.MTU != 0 && a.MTU != s.MTU {
		if err := h.nl.LinkSetMTU(link, s.MTU); err != nil {
			return 0, fmt.Errorf("set MTU of %s: %w", s.Name, err)
		}
	}
	if s.MAC != nil && a.HardwareAddr.String() != s.MAC.String() {
		if err := h.nl.LinkSetHardwareAddr(link, s.MAC); err != nil {
			return 0, fmt.Errorf("set MAC of %s: %w", s.Name, err)
		}
	}
	if err := syncAddrs(h.nl, link, s.Addrs); err != nil {
		return 0, fmt.Errorf("bridge %s: %w", s.Name, err)
	}
	if a.Flags&net.FlagUp == 0 {
		if err := h.nl.LinkSetUp(link); err != nil {
			return 0, fmt.Errorf("bring up %s: %w", s.Name, err)
		}
	}
	return a.Index, nil
}

// syncAddrs makes link carry exactly want, link-local addresses aside.
func syncAddrs(h *netlink.Handle, link netlink.Link, want []netip.Prefix) error {
	have, err := h.AddrList(link, netlink.FAMILY_ALL)
	if err != nil {
		return fmt.Errorf("list addresses: %w", err)
	}
	present := map[netip.Prefix]bool{}
	for _, a := range have {
		p := prefixOf(a.IPNet)
		if p.Addr().IsLinkLocalUnicast() {
			continue
		}
		if !contains(want, p) {
			if err := h.AddrDel(link, &a); err != nil && !errors.Is(err, unix.EADDRNOTAVAIL) {
				return fmt.Errorf("remove address %s: %w", p, err)
			}
			continue
		}
		present[p] = true
	}
	for _, p := range want {
		if present[p] {
			continue
		}
		if err := h.AddrAdd(link, addrOf(p)); err != nil && !errors.Is(err, unix.EEXIST) {
			return fmt.Errorf("add address %s: %w", p, err)
		}
	}
	return nil
}

func contains(ps []netip.Prefix, p netip.Prefix) bool {
	for _, q := range ps {
		if q == p {
			return true
		}
	}
	return false
}

func prefixOf(n *net.IPNet) netip.Prefix {
	a, _ := netip.AddrFromSlice(n.IP)
	ones, _ := n.Mask.Size()
	return netip.PrefixFrom(a.Unmap(), ones)
}

func ipNet(p netip.Prefix) *net.IPNet {
	bits := 32
	if p.Addr().Is6() {
		bits = 128
	}
	return &net.IPNet{IP: p.Addr().AsSlice(), Mask: net.CIDRMask(p.Bits(), bits)}
}

// addrOf is the netlink form of an address. IPv6 addresses skip duplicate
// address detection: hostnet's IPAM already guarantees uniqueness, and an
// address in DAD's tentative state cannot be used for a second or more.
func addrOf(p netip.Prefix) *netlink.Addr {
	a := &netlink.Addr{IPNet: ipNet(p)}
	if p.Addr().Is6() {
		a.Flags = unix.IFA_F_NODAD
	}
	return a
}

// DeleteLink removes a device of the host (`ip link del NAME`); a device
// that is already gone is not an error. Deleting one side of a veth pair
// removes the other side too.
func (h *Host) DeleteLink(name string) error {
	req := nl.NewNetlinkRequest(unix.RTM_DELLINK, unix.NLM_F_ACK)
	req.AddData(nl.NewIfInfomsg(unix.AF_UNSPEC))
	req.AddData(nl.NewRtAttr(unix.IFLA_IFNAME, nl.ZeroTerminated(name)))
	if err := h.execute(req); err != nil && !isNotFound(err) {
		return fmt.Errorf("delete device %s: %w", name, err)
	}
	return nil
}

// LinkNames returns the names of the host's devices that start with prefix.
func (h *Host) LinkNames(prefix string) ([]string, error) {
	links, err := h.nl.LinkList()
	if err != nil {
		return nil, fmt.Errorf("list devices: %w", err)
	}
	var names []string
	for _, l := range links {
		if strings.HasPrefix(l.Attrs().Name, prefix) {
			names = append(names, l.Attrs().Name)
		}
	}
	return names, nil
}

// EnsurePort makes the endpoint's veth pair exist and be configured as s
// says. The fast path creates both sides with one netlink request, the
// peer directly inside the endpoint's namespace with its MAC and MTU, and
// the host side up and already a port of the bridge; then the peer is
// brought up and given its addresses and routes. When the pair exists already (a retry,
// a restart) it is adopted and repaired instead, without being recreated.
func (h *Host) EnsurePort(s PortSpec) error {
	err := h.createVeth(s)
	if err == nil {
		return configurePeer(s, true)
	}
	if !errors.Is(err, unix.EEXIST) {
		return fmt.Errorf("create veth %s: %w", s.HostName, err)
	}
	return h.repairPort(s)
}

// createVeth is `ip link add HOST mtu M master BR up type veth peer name
// NAME address MAC mtu M netns NS`, in one request.
func (h *Host) createVeth(s PortSpec) error {
	req := nl.NewNetlinkRequest(unix.RTM_NEWLINK, unix.NLM_F_CREATE|unix.NLM_F_EXCL|unix.NLM_F_ACK)
	msg := nl.NewIfInfomsg(unix.AF_UNSPEC)
	msg.Flags, msg.Change = unix.IFF_UP, unix.IFF_UP
	req.AddData(msg)
	req.AddData(nl.NewRtAttr(unix.IFLA_IFNAME, nl.ZeroTerminated(s.HostName)))
	if s.MTU > 0 {
		req.AddData(nl.NewRtAttr(unix.IFLA_MTU, nl.Uint32Attr(uint32(s.MTU))))
	}
	if s.BridgeIndex > 0 {
		req.AddData(nl.NewRtAttr(unix.IFLA_MASTER, nl.Uint32Attr(uint32(s.BridgeIndex))))
	}
	info := nl.NewRtAttr(unix.IFLA_LINKINFO, nil)
	info.AddRtAttr(nl.IFLA_INFO_KIND, nl.NonZeroTerminated("veth"))
	data := info.AddRtAttr(nl.IFLA_INFO_DATA, nil)
	peer := data.AddRtAttr(nl.VETH_INFO_PEER, nil)
	// The peer cannot be brought up in this request: veth refuses to open
	// one side before the other is registered (ENOTCONN).
	nl.NewIfInfomsgChild(peer, unix.AF_UNSPEC)
	peer.AddRtAttr(unix.IFLA_IFNAME, nl.ZeroTerminated(s.Name))
	if s.MAC != nil {
		peer.AddRtAttr(unix.IFLA_ADDRESS, []byte(s.MAC))
	}
	if s.MTU > 0 {
		peer.AddRtAttr(unix.IFLA_MTU, nl.Uint32Attr(uint32(s.MTU)))
	}
	peer.AddRtAttr(unix.IFLA_NET_NS_FD, nl.Uint32Attr(uint32(s.NS)))
	req.AddData(info)
	return h.execute(req)
}

// repairPort adopts an existing pair, or replaces a host device of that
// name that is not the right pair.
func (h *Host) repairPort(s PortSpec) error {
	host, err := h.nl.LinkByName(s.HostName)
	if err != nil && !isNotFound(err) {
		return fmt.Errorf("look up %s: %w", s.HostName, err)
	}
	if host == nil {
		// The host name is free, so the peer's name is taken in the namespace.
		return fmt.Errorf("device %s in the endpoint namespace: %w", s.Name, ErrNameTaken)
	}
	ok, err := peerMatches(host, s)
	if err != nil {
		return err
	}
	if !ok {
		if err := h.nl.LinkDel(host); err != nil && !isNotFound(err) {
			return fmt.Errorf("replace stale %s: %w", s.HostName, err)
		}
		if err := h.createVeth(s); err != nil {
			if errors.Is(err, unix.EEXIST) {
				return fmt.Errorf("device %s in the endpoint namespace: %w", s.Name, ErrNameTaken)
			}
			return fmt.Errorf("create veth %s: %w", s.HostName, err)
		}
		return configurePeer(s, true)
	}
	a := host.Attrs()
	if s.BridgeIndex > 0 && a.MasterIndex != s.BridgeIndex {
		if err := h.nl.LinkSetMasterByIndex(host, s.BridgeIndex); err != nil {
			return fmt.Errorf("attach %s to its bridge: %w", s.HostName, err)
		}
	}
	if s.MTU > 0 && a.MTU != s.MTU {
		if err := h.nl.LinkSetMTU(host, s.MTU); err != nil {
			return fmt.Errorf("set MTU of %s: %w", s.HostName, err)
		}
	}
	if a.Flags&net.FlagUp == 0 {
		if err := h.nl.LinkSetUp(host); err != nil {
			return fmt.Errorf("bring up %s: %w", s.HostName, err)
		}
	}
	return configurePeer(s, false)
}

// peerMatches reports whether host is a veth whose peer is s.Name in s.NS.
func peerMatches(host netlink.Link, s PortSpec) (bool, error) {
	if host.Type() != "veth" {
		return false, nil
	}
	eh, err := netlink.NewHandleAt(s.NS, unix.NETLINK_ROUTE)
	if err != nil {
		return false, fmt.Errorf("open endpoint namespace: %w", err)
	}
	defer eh.Close()
	peer, err := eh.LinkByName(s.Name)
	if isNotFound(err) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("look up %s in the endpoint namespace: %w", s.Name, err)
	}
	return peer.Type() == "veth" && peer.Attrs().ParentIndex == host.Attrs().Index &&
		host.Attrs().ParentIndex == peer.Attrs().Index, nil
}

// configurePeer brings up loopback and gives the peer its addresses and
// routes. fresh says the peer was just created, so there is nothing to
// compare against and nothing stale to remove.
func configurePeer(s PortSpec, fresh bool) error {
	eh, err := netlink.NewHandleAt(s.NS, unix.NETLINK_ROUTE)
	if err != nil {
		return fmt.Errorf("open endpoint namespace: %w", err)
	}
	defer eh.Close()
	// lo is the first device of every namespace.
	lo := &netlink.Device{LinkAttrs: netlink.LinkAttrs{Index: 1}}
	if err := eh.LinkSetUp(lo); err != nil {
		return fmt.Errorf("bring up lo: %w", err)
	}
	link, err := eh.LinkByName(s.Name)
	if err != nil {
		return fmt.Errorf("look up %s in the endpoint namespace: %w", s.Name, err)
	}
	if fresh {
		if err := eh.LinkSetUp(link); err != nil {
			return fmt.Errorf("bring up %s: %w", s.Name, err)
		}
		for _, p := range s.Addrs {
			if err := eh.AddrAdd(link, addrOf(p)); err != nil && !errors.Is(err, unix.EEXIST) {
				return fmt.Errorf("add address %s to %s: %w", p, s.Name, err)
			}
		}
		for _, r := range s.Routes {
			if err := eh.RouteAdd(routeOf(link, r)); err != nil && !errors.Is(err, unix.EEXIST) {
				return fmt.Errorf("add route %s: %w", r, err)
			}
		}
		return nil
	}
	if s.MAC != nil && link.Attrs().HardwareAddr.String() != s.MAC.String() {
		if err := eh.LinkSetHardwareAddr(link, s.MAC); err != nil {
			return fmt.Errorf("set MAC of %s: %w", s.Name, err)
		}
	}
	if link.Attrs().Flags&net.FlagUp == 0 {
		if err := eh.LinkSetUp(link); err != nil {
			return fmt.Errorf("bring up %s: %w", s.Name, err)
		}
	}
	if err := syncAddrs(eh, link, s.Addrs); err != nil {
		return fmt.Errorf("%s: %w", s.Name, err)
	}
	return syncRoutes(eh, link, s.Routes)
}

func routeOf(link netlink.Link, r Route) *netlink.Route {
	nr := &netlink.Route{
		LinkIndex: link.Attrs().Index,
		Dst:       ipNet(r.Dst),
		Priority:  r.Metric,
		Protocol:  RouteProtocol,
	}
	if r.Gateway.IsValid() {
		nr.Gw = r.Gateway.AsSlice()
	} else {
		nr.Scope = netlink.SCOPE_LINK
	}
	if r.Dst.Addr().Is6() {
		nr.Family = netlink.FAMILY_V6
	} else {
		nr.Family = netlink.FAMILY_V4
	}
	return nr
}

// syncRoutes makes hostnet's routes through link exactly want. Routes of
// other origins (the kernel's prefix routes, an administrator's) are left.
func syncRoutes(h *netlink.Handle, link netlink.Link, want []Route) error {
	filter := &netlink.Route{LinkIndex: link.Attrs().Index, Protocol: RouteProtocol}
	have, err := h.RouteListFiltered(netlink.FAMILY_ALL, filter, netlink.RT_FILTER_OIF|netlink.RT_FILTER_PROTOCOL)
	if err != nil {
		return fmt.Errorf("list routes: %w", err)
	}
	for _, hr := range have {
		if !routeWanted(hr, want) {
			if err := h.RouteDel(&hr); err != nil && !errors.Is(err, unix.ESRCH) {
				return fmt.Errorf("remove stale route: %w", err)
			}
		}
	}
	for _, r := range want {
		if err := h.RouteReplace(routeOf(link, r)); err != nil {
			return fmt.Errorf("set route %s: %w", r, err)
		}
	}
	return nil
}

func routeWanted(hr netlink.Route, want []Route) bool {
	dst := netip.Prefix{}
	if hr.Dst != nil {
		dst = prefixOf(hr.Dst)
	}
	gw, _ := netip.AddrFromSlice(hr.Gw)
	gw = gw.Unmap()
	for _, r := range want {
		d := r.Dst
		if (hr.Dst == nil && d.Bits() == 0) || dst == d {
			if gw == r.Gateway && hr.Priority == r.Metric {
				return true
			}
		}
	}
	return false
}

// SetSysctl writes a sysctl of the host namespace, e.g.
// SetSysctl("net/ipv4/ip_forward", "1") (`sysctl -w net.ipv4.ip_forward=1`).
// The write is skipped when the value is already set.
func (h *Host) SetSysctl(key, value string) error {
	return netns.Do(h.ns, func() error {
		path := filepath.Join("/proc/sys", key)
		cur, err := os.ReadFile(path)
		if err == nil && strings.TrimSpace(string(cur)) == value {
			return nil
		}
		if err := os.WriteFile(path, []byte(value), 0o644); err != nil {
			return fmt.Errorf("sysctl %s=%s: %w", key, value, err)
		}
		return nil
	})
}

// HostPrefixes returns the addresses and route destinations of the host
// namespace, for picking a subnet that collides with none of them.
func (h *Host) HostPrefixes() ([]netip.Prefix, error) {
	var out []netip.Prefix
	addrs, err := h.nl.AddrList(nil, netlink.FAMILY_ALL)
	if err != nil {
		return nil, fmt.Errorf("list addresses: %w", err)
	}
	for _, a := range addrs {
		out = append(out, prefixOf(a.IPNet).Masked())
	}
	routes, err := h.nl.RouteListFiltered(netlink.FAMILY_ALL, &netlink.Route{Table: unix.RT_TABLE_UNSPEC}, netlink.RT_FILTER_TABLE)
	if err != nil {
		return nil, fmt.Errorf("list routes: %w", err)
	}
	for _, r := range routes {
		if r.Dst != nil {
			out = append(out, prefixOf(r.Dst).Masked())
		}
	}
	return out, nil
}
