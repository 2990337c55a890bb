package dataplane

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/hostnet/hostnet/internal/dataplane/netns"
	"github.com/hostnet/hostnet/internal/netmodel"
	"github.com/hostnet/hostnet/internal/nftmodel"
	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

var _ Host = (*Linux)(nil)

// Apply implements Host.
func (h *Linux) Apply(ctx context.Context, ensure, remove []netmodel.Object) error {
	fail := failures{}
	add := sortObjects(ensure, fail)
	del := sortObjects(remove, fail)
	for _, n := range objectsOf[netmodel.Namespace](add, netmodel.KindNamespace) {
		_, err := EnsureNamespace(n.NS.Path)
		fail.add(n.Key(), err)
	}
	for _, p := range objectsOf[netmodel.Port](add, netmodel.KindPort) {
		fail.add(p.Key(), h.holdPort(p))
	}
	if patches := netmodel.FirewallPatches(add.nft, del.nft); len(patches) > 0 {
		if err := h.fw.Patch(patches...); err != nil {
			for _, o := range append(append([]netmodel.Object(nil), add.nft...), del.nft...) {
				fail.add(o.Key(), fmt.Errorf("update nftables: %w", err))
			}
		}
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	h.ensureLinks(add, fail)
	for _, u := range objectsOf[netmodel.UplinkHandover](add, netmodel.KindHandover) {
		if _, failed := fail[netmodel.Link{Name: u.Bridge}.Key()]; failed {
			fail.add(u.Key(), fmt.Errorf("bridge %s is not in place", u.Bridge))
			continue
		}
		fail.add(u.Key(), h.handOver(u))
	}
	for _, s := range objectsOf[netmodel.Sysctl](add, netmodel.KindSysctl) {
		fail.add(s.Key(), h.setSysctl(s))
	}
	for _, f := range objectsOf[netmodel.File](add, netmodel.KindFile) {
		fail.add(f.Key(), writeFile(f))
	}
	for _, s := range objectsOf[netmodel.Symlink](add, netmodel.KindSymlink) {
		fail.add(s.Key(), ensureSymlink(s))
	}
	for _, t := range objectsOf[netmodel.TC](add, netmodel.KindTC) {
		fail.add(t.Key(), fmt.Errorf("tc attachments are not supported by this build yet"))
	}
	h.ensureShapers(add, fail)
	if err := ctx.Err(); err != nil {
		return err
	}
	h.removeShapers(del, fail)
	h.removeObjects(del, fail)
	return fail.err()
}

// nsHandle opens the namespace ns (the host's own when ns is the host),
// checking its identity; the caller closes the handle unless it is the
// host's (owned reports which).
func (h *Linux) nsHandle(ns netmodel.NS) (handle netns.Handle, owned bool, err error) {
	if ns.IsHost() {
		return h.ns, false, nil
	}
	handle, err = netns.Open(ns.Path)
	if err != nil {
		return handle, false, fmt.Errorf("%s: %w", ns.Path, ErrNamespaceGone)
	}
	if ns.ID != (netmodel.NSID{}) {
		dev, ino, err := netns.Identity(handle)
		if err != nil || (netmodel.NSID{Dev: dev, Ino: ino}) != ns.ID {
			handle.Close()
			return netns.Handle(-1), false, fmt.Errorf("%s is no longer the namespace it was: %w", ns.Path, ErrNamespaceGone)
		}
	}
	return handle, true, nil
}

// linkSet indexes the links, addresses and routes of one Apply.
type linkSet struct {
	links  map[netmodel.LinkRef]netmodel.Link
	addrs  map[netmodel.LinkRef][]netmodel.Addr
	routes map[netmodel.LinkRef][]netmodel.Route
	done   map[netmodel.Key]bool // applied as part of a veth pair
}

func ref(ns netmodel.NS, name string) netmodel.LinkRef { return netmodel.LinkRef{NS: ns, Name: name} }

// ensureLinks applies the links of p and what lives on them.
func (h *Linux) ensureLinks(p *plan, fail failures) {
	s := &linkSet{links: map[netmodel.LinkRef]netmodel.Link{}, addrs: map[netmodel.LinkRef][]netmodel.Addr{},
		routes: map[netmodel.LinkRef][]netmodel.Route{}, done: map[netmodel.Key]bool{}}
	for _, l := range p.links {
		s.links[ref(l.NS, l.Name)] = l
	}
	for _, a := range objectsOf[netmodel.Addr](p, netmodel.KindAddr) {
		s.addrs[ref(a.NS, a.Link)] = append(s.addrs[ref(a.NS, a.Link)], a)
	}
	for _, r := range objectsOf[netmodel.Route](p, netmodel.KindRoute) {
		s.routes[ref(r.NS, r.Link)] = append(s.routes[ref(r.NS, r.Link)], r)
	}
	var sealed []netmodel.Link
	for _, l := range p.links {
		if s.done[l.Key()] {
			continue
		}
		var err error
		switch {
		case l.Kind == netmodel.LinkBridge:
			err = h.ensureBridge(l)
		case l.Kind == netmodel.LinkLoopback:
			err = h.loopbackUp(l.NS)
		case l.Kind == netmodel.LinkVeth && l.Peer != nil:
			peer, ok := s.links[*l.Peer]
			if !ok {
				err = h.adoptLink(l)
				break
			}
			host, other := l, peer
			if !host.NS.IsHost() {
				host, other = peer, l
			}
			if !host.NS.IsHost() {
				err = fmt.Errorf("veth %s: one side of a pair must be in the host namespace", l.Name)
				break
			}
			err = h.ensurePair(host, other, s)
			s.done[peer.Key()] = true
			if err != nil {
				fail.add(peer.Key(), err)
			}
		default:
			err = h.ensureOtherLink(l)
		}
		fail.add(l.Key(), err)
		if err == nil && l.Seal && !s.done[l.Key()] {
			sealed = append(sealed, l)
		}
		s.done[l.Key()] = true
	}
	for _, a := range objectsOf[netmodel.Addr](p, netmodel.KindAddr) {
		if !s.done[a.Key()] {
			fail.add(a.Key(), h.inNS(a.NS, func(r *rtnl) error {
				return r.linkRequest(a.Link, func(i int) error { return r.one(addrReq(i, a.Prefix)) })
			}))
		}
	}
	srcAddrs := map[netmodel.LinkRef][]netip.Prefix{} // the addresses of the links routes take their source from, read once
	for _, rt := range objectsOf[netmodel.Route](p, netmodel.KindRoute) {
		if !s.done[rt.Key()] {
			src, err := h.sourceFor(rt, srcAddrs)
			if err != nil {
				fail.add(rt.Key(), err)
				continue
			}
			fail.add(rt.Key(), h.inNS(rt.NS, func(r *rtnl) error {
				return r.linkRequest(rt.Link, func(i int) error {
					return r.one(routeReq(i, Route{Dst: rt.Dst, Gateway: rt.Gateway, Metric: rt.Metric, Src: src}))
				})
			}))
		}
	}
	for _, n := range objectsOf[netmodel.Neigh](p, netmodel.KindNeigh) {
		fail.add(n.Key(), h.withHandle(n.NS, func(nh *netlink.Handle) error {
			l, err := nh.LinkByName(n.Link)
			if err != nil {
				return err
			}
			if n.Proxy {
				return nh.NeighSet(&netlink.Neigh{LinkIndex: l.Attrs().Index, IP: n.IP.AsSlice(), Flags: netlink.NTF_PROXY, Family: family(n.IP)})
			}
			return nh.NeighSet(&netlink.Neigh{LinkIndex: l.Attrs().Index, IP: n.IP.AsSlice(), HardwareAddr: n.MAC,
				State: netlink.NUD_PERMANENT, Family: family(n.IP)})
		}))
	}
	for _, f := range objectsOf[netmodel.FDB](p, netmodel.KindFDB) {
		fail.add(f.Key(), h.withHandle(f.NS, func(nh *netlink.Handle) error {
			l, err := nh.LinkByName(f.Link)
			if err != nil {
				return err
			}
			return nh.NeighAppend(&netlink.Neigh{LinkIndex: l.Attrs().Index, Family: unix.AF_BRIDGE, IP: f.Dst.AsSlice(),
				HardwareAddr: f.MAC, State: netlink.NUD_PERMANENT, Flags: netlink.NTF_SELF})
		}))
	}
	// Sealed links come up last.
	for _, l := range sealed {
		if _, failed := fail[l.Key()]; failed {
			continue
		}
		fail.add(l.Key(), h.inNS(l.NS, func(r *rtnl) error {
			return r.linkRequest(l.Name, func(i int) error { return r.one(setLinkReq(i, true, false)) })
		}))
	}
}

func family(a netip.Addr) int {
	if a.Is4() {
		return netlink.FAMILY_V4
	}
	return netlink.FAMILY_V6
}

// inNS runs fn with an rtnetlink socket in ns.
func (h *Linux) inNS(ns netmodel.NS, fn func(*rtnl) error) error {
	if ns.IsHost() {
		return fn(h.rt)
	}
	handle, owned, err := h.nsHandle(ns)
	if err != nil {
		return err
	}
	if owned {
		defer handle.Close()
	}
	r, err := dialRtnl(handle)
	if err != nil {
		return err
	}
	defer r.Close()
	return fn(r)
}

// withHandle runs fn with a netlink handle in ns.
func (h *Linux) withHandle(ns netmodel.NS, fn func(*netlink.Handle) error) error {
	if ns.IsHost() {
		return fn(h.nl)
	}
	handle, owned, err := h.nsHandle(ns)
	if err != nil {
		return err
	}
	if owned {
		defer handle.Close()
	}
	nh, err := netlink.NewHandleAt(handle, unix.NETLINK_ROUTE)
	if err != nil {
		return fmt.Errorf("open netlink in %s: %w", ns, err)
	}
	defer nh.Close()
	return fn(nh)
}

// ensureBridge makes a bridge exist and be up with its MAC and MTU (`ip
// link add NAME type bridge; ip link set NAME address MAC mtu MTU up`).
// An existing bridge is adopted as it is, never taken down; a device of
// another kind under that name is replaced.
func (h *Linux) ensureBridge(l netmodel.Link) error {
	if !l.NS.IsHost() {
		return fmt.Errorf("bridge %s: bridges live in the host namespace", l.Name)
	}
	link, err := h.nl.LinkByName(l.Name)
	if err != nil && !isNotFound(err) {
		return fmt.Errorf("look up bridge %s: %w", l.Name, err)
	}
	if err == nil && link.Type() != "bridge" {
		if err := h.nl.LinkDel(link); err != nil {
			return fmt.Errorf("replace %s device %s: %w", link.Type(), l.Name, err)
		}
		link = nil
	}
	created := false
	if link == nil {
		attrs := netlink.NewLinkAttrs()
		attrs.Name = l.Name
		if err := h.nl.LinkAdd(&netlink.Bridge{LinkAttrs: attrs}); err != nil && !errors.Is(err, unix.EEXIST) {
			return fmt.Errorf("create bridge %s: %w", l.Name, err)
		}
		if link, err = h.nl.LinkByName(l.Name); err != nil {
			return fmt.Errorf("look up bridge %s: %w", l.Name, err)
		}
		created = true
		if l.IPv6 == netmodel.IPv6NoLinkLocal {
			// A bridge of an IPv4 network needs no IPv6 link-local
			// address: without one it sends no router solicitations or
			// MLD reports to every port when it comes up.
			if err := h.execute(setLinkReq(link.Attrs().Index, false, true)); err != nil {
				return fmt.Errorf("bridge %s: addrgenmode none: %w", l.Name, err)
			}
		}
	}
	a := link.Attrs()
	// Set after creation, MTU and MAC count as chosen by the user: the
	// bridge then stops recomputing both over all its ports at each new
	// port (an MTU given at creation does not count).
	if l.MTU != 0 && (created || a.MTU != l.MTU) {
		if err := h.nl.LinkSetMTU(link, l.MTU); err != nil {
			return fmt.Errorf("set MTU of %s: %w", l.Name, err)
		}
	}
	if l.MAC != nil && a.HardwareAddr.String() != l.MAC.String() {
		if err := h.nl.LinkSetHardwareAddr(link, l.MAC); err != nil {
			return fmt.Errorf("set MAC of %s: %w", l.Name, err)
		}
	}
	if l.Up && a.Flags&net.FlagUp == 0 {
		if err := h.nl.LinkSetUp(link); err != nil {
			return fmt.Errorf("bring up %s: %w", l.Name, err)
		}
	}
	h.bridgeIndex.Store(l.Name, a.Index)
	return nil
}

// masterIndex returns the index of the bridge name, from the cache of
// bridges ensured or looked up before.
func (h *Linux) masterIndex(name string, fresh bool) (int, error) {
	if name == "" {
		return 0, nil
	}
	if !fresh {
		if i, ok := h.bridgeIndex.Load(name); ok {
			return i.(int), nil
		}
	}
	l, err := h.nl.LinkByName(name)
	if err != nil {
		return 0, fmt.Errorf("look up bridge %s: %w", name, err)
	}
	h.bridgeIndex.Store(name, l.Attrs().Index)
	return l.Attrs().Index, nil
}

// loopbackUp brings lo of ns up (`ip link set lo up`).
func (h *Linux) loopbackUp(ns netmodel.NS) error {
	return h.inNS(ns, func(r *rtnl) error { return r.one(setLinkReq(1, true, false)) })
}

// ensurePair makes a veth pair exist as host (in the host namespace) and
// peer say, with the peer's addresses and routes from s: see
// ensureVeth.
func (h *Linux) ensurePair(host, peer netmodel.Link, s *linkSet) error {
	pr := ref(peer.NS, peer.Name)
	spec := PortSpec{HostName: host.Name, MTU: host.MTU, Name: peer.Name, MAC: peer.MAC, Hairpin: host.Hairpin, Additive: true}
	if peer.MTU != 0 {
		spec.MTU = peer.MTU
	}
	for _, a := range s.addrs[pr] {
		spec.Addrs = append(spec.Addrs, a.Prefix)
		s.done[a.Key()] = true
	}
	for _, r := range s.routes[pr] {
		spec.Routes = append(spec.Routes, Route{Dst: r.Dst, Gateway: r.Gateway, Metric: r.Metric})
		s.done[r.Key()] = true
	}
	if lo, ok := s.links[ref(peer.NS, "lo")]; ok {
		s.done[lo.Key()] = true
	}
	handle, owned, err := h.nsHandle(peer.NS)
	if err != nil {
		return err
	}
	if owned {
		defer handle.Close()
	}
	spec.NS = handle
	for attempt := 0; ; attempt++ {
		if spec.BridgeIndex, err = h.masterIndex(host.Master, attempt > 0); err != nil {
			return err
		}
		if host.MTU == 0 && peer.MTU == 0 && spec.BridgeIndex > 0 {
			// Unsaid, a port's MTU is its bridge's (a bridge holding a
			// jumbo-frame uplink has the uplink's): both sides take it.
			br, err := h.nl.LinkByIndex(spec.BridgeIndex)
			if err != nil {
				return fmt.Errorf("bridge %s: %w", host.Master, err)
			}
			spec.MTU = br.Attrs().MTU
		}
		err = h.EnsurePort(spec)
		if !errors.Is(err, unix.ENODEV) || attempt > 0 {
			return err
		}
		// The bridge was made again under the cached index: look it up.
	}
}

// adoptLink brings an existing link to l where it differs (master, MTU,
// MAC, hairpin, IPv6, up), without recreating it: for a veth whose other
// side is not changing.
func (h *Linux) adoptLink(l netmodel.Link) error {
	return h.withHandle(l.NS, func(nh *netlink.Handle) error {
		link, err := nh.LinkByName(l.Name)
		if err != nil {
			return fmt.Errorf("look up %s: %w", l.Name, err)
		}
		a := link.Attrs()
		if l.Master != "" {
			idx, err := h.masterIndex(l.Master, false)
			if err == nil && idx != a.MasterIndex {
				if idx, err = h.masterIndex(l.Master, true); err == nil {
					err = nh.LinkSetMasterByIndex(link, idx)
				}
			}
			if err != nil {
				return fmt.Errorf("attach %s to bridge %s: %w", l.Name, l.Master, err)
			}
		}
		if l.MTU != 0 && a.MTU != l.MTU {
			if err := nh.LinkSetMTU(link, l.MTU); err != nil {
				return fmt.Errorf("set MTU of %s: %w", l.Name, err)
			}
		}
		if l.MAC != nil && a.HardwareAddr.String() != l.MAC.String() {
			if err := nh.LinkSetHardwareAddr(link, l.MAC); err != nil {
				return fmt.Errorf("set MAC of %s: %w", l.Name, err)
			}
		}
		if l.Master != "" {
			if err := h.inNS(l.NS, func(r *rtnl) error { return r.one(hairpinReq(a.Index, l.Hairpin)) }); err != nil {
				return fmt.Errorf("hairpin on %s: %w", l.Name, err)
			}
		}
		if l.IPv6 == netmodel.IPv6Off && l.NS.IsHost() {
			if err := h.disableIPv6(l.Name); err != nil {
				return err
			}
		}
		if l.Up && !l.Seal && a.Flags&net.FlagUp == 0 {
			if err := nh.LinkSetUp(link); err != nil {
				return fmt.Errorf("bring up %s: %w", l.Name, err)
			}
		}
		return nil
	})
}

// sourceFor finds the preferred source of a route whose SrcFrom names a
// link: that link's address in a subnet holding the destination, else its
// first of the destination's family. The link's addresses are read once
// per Apply (known holds those read).
func (h *Linux) sourceFor(rt netmodel.Route, known map[netmodel.LinkRef][]netip.Prefix) (netip.Addr, error) {
	if rt.SrcFrom == "" {
		return netip.Addr{}, nil
	}
	from := ref(rt.NS, rt.SrcFrom)
	addrs, ok := known[from]
	if !ok {
		err := h.withHandle(rt.NS, func(nh *netlink.Handle) error {
			l, err := nh.LinkByName(rt.SrcFrom)
			if err != nil {
				return err
			}
			list, err := nh.AddrList(l, netlink.FAMILY_ALL)
			for _, a := range list {
				addrs = append(addrs, prefixOf(a.IPNet))
			}
			return err
		})
		if err != nil {
			return netip.Addr{}, fmt.Errorf("source address of route %s: link %s: %w", rt.Dst, rt.SrcFrom, err)
		}
		known[from] = addrs
	}
	var src netip.Addr
	for _, p := range addrs {
		if !p.Addr().IsGlobalUnicast() || p.Addr().Is4() != rt.Dst.Addr().Is4() {
			continue
		}
		if p.Masked().Contains(rt.Dst.Addr()) {
			return p.Addr(), nil
		}
		if !src.IsValid() {
			src = p.Addr()
		}
	}
	if !src.IsValid() {
		return src, fmt.Errorf("source address of route %s: link %s has no address of its family", rt.Dst, rt.SrcFrom)
	}
	return src, nil
}

// ensureOtherLink makes a macvlan, vxlan, tap or ifb link exist as l
// says, adopting one of the right kind.
func (h *Linux) ensureOtherLink(l netmodel.Link) error {
	return h.withHandle(l.NS, func(nh *netlink.Handle) error {
		if have, err := nh.LinkByName(l.Name); err == nil {
			if have.Type() == string(l.Kind) || (l.Kind == netmodel.LinkTap && have.Type() == "tuntap") {
				return h.adoptLink(l)
			}
			if err := nh.LinkDel(have); err != nil {
				return fmt.Errorf("replace %s device %s: %w", have.Type(), l.Name, err)
			}
		}
		attrs := netlink.NewLinkAttrs()
		attrs.Name = l.Name
		attrs.MTU = l.MTU
		attrs.HardwareAddr = l.MAC
		var link netlink.Link
		switch l.Kind {
		case netmodel.LinkMacvlan, netmodel.LinkVXLAN:
			if l.Parent == nil {
				return fmt.Errorf("%s %s: no parent device", l.Kind, l.Name)
			}
			var parentIndex int
			if err := h.withHandle(l.Parent.NS, func(ph *netlink.Handle) error {
				p, err := ph.LinkByName(l.Parent.Name)
				if err == nil {
					parentIndex = p.Attrs().Index
				}
				return err
			}); err != nil {
				return fmt.Errorf("%s %s: parent %s: %w", l.Kind, l.Name, l.Parent.Name, err)
			}
			attrs.ParentIndex = parentIndex
			if l.Kind == netmodel.LinkMacvlan {
				mode := map[string]netlink.MacvlanMode{"": netlink.MACVLAN_MODE_BRIDGE, "bridge": netlink.MACVLAN_MODE_BRIDGE,
					"private": netlink.MACVLAN_MODE_PRIVATE, "vepa": netlink.MACVLAN_MODE_VEPA, "passthru": netlink.MACVLAN_MODE_PASSTHRU}[l.MacvlanMode]
				link = &netlink.Macvlan{LinkAttrs: attrs, Mode: mode}
			} else {
				x := l.VXLAN
				if x == nil {
					return fmt.Errorf("vxlan %s: no settings", l.Name)
				}
				port := int(x.Port)
				if port == 0 {
					port = 4789
				}
				v := &netlink.Vxlan{LinkAttrs: attrs, VxlanId: int(x.VNI), Port: port, Learning: x.Learning, VtepDevIndex: parentIndex}
				if x.Local.IsValid() {
					v.SrcAddr = x.Local.AsSlice()
				}
				link = v
			}
			if l.Parent.NS != l.NS {
				// Made beside its parent, then moved: `ip link add ... netns NS`.
				return h.addMoved(l, link)
			}
		case netmodel.LinkTap:
			// A tap is made through /dev/net/tun, in the namespace of the
			// thread that opens it, not through a netlink socket: the
			// request runs on a thread inside l.NS.
			tap := &netlink.Tuntap{LinkAttrs: attrs, Mode: netlink.TUNTAP_MODE_TAP, Flags: netlink.TUNTAP_DEFAULTS}
			if err := h.onThread(l.NS, func() error { return netlink.LinkAdd(tap) }); err != nil && !errors.Is(err, unix.EEXIST) {
				return fmt.Errorf("create tap %s: %w", l.Name, err)
			}
			return h.adoptLink(l)
		case netmodel.LinkIFB:
			link = &netlink.Ifb{LinkAttrs: attrs}
		default:
			return fmt.Errorf("link %s: kind %s is not supported", l.Name, l.Kind)
		}
		if err := nh.LinkAdd(link); err != nil && !errors.Is(err, unix.EEXIST) {
			return fmt.Errorf("create %s %s: %w", l.Kind, l.Name, err)
		}
		return h.adoptLink(l)
	})
}

// onThread runs fn on an OS thread inside ns: for what is made by the
// namespace of the calling thread rather than by a socket's.
func (h *Linux) onThread(ns netmodel.NS, fn func() error) error {
	if ns.IsHost() {
		return h.thread.do(fn)
	}
	handle, owned, err := h.nsHandle(ns)
	if err != nil {
		return err
	}
	if owned {
		defer handle.Close()
	}
	return netns.Do(handle, fn)
}

// addMoved creates link in its parent's namespace with the target
// namespace set, so that it lands in l.NS at once.
func (h *Linux) addMoved(l netmodel.Link, link netlink.Link) error {
	target, owned, err := h.nsHandle(l.NS)
	if err != nil {
		return err
	}
	if owned {
		defer target.Close()
	}
	link.Attrs().Namespace = netlink.NsFd(int(target))
	if err := h.withHandle(l.Parent.NS, func(ph *netlink.Handle) error { return ph.LinkAdd(link) }); err != nil && !errors.Is(err, unix.EEXIST) {
		return fmt.Errorf("create %s %s: %w", l.Kind, l.Name, err)
	}
	return h.adoptLink(l)
}

// setSysctl writes a sysctl, loading br_netfilter first for the bridge
// ones when their directory is missing.
func (h *Linux) setSysctl(s netmodel.Sysctl) error {
	if !s.NS.IsHost() {
		handle, owned, err := h.nsHandle(s.NS)
		if err != nil {
			return err
		}
		if owned {
			defer handle.Close()
		}
		return netns.Do(handle, func() error { return writeSysctl(s.Name, s.Value) })
	}
	if strings.HasPrefix(s.Name, "net/bridge/") {
		h.loadBridgeNetfilter()
	}
	return h.SetSysctl(s.Name, s.Value)
}

// loadBridgeNetfilter loads br_netfilter when /proc/sys/net/bridge is
// missing (a kernel that builds it as a module): bridged traffic must
// pass the inet hooks for isolation and ACLs to hold.
func (h *Linux) loadBridgeNetfilter() {
	_ = h.thread.do(func() error {
		if _, err := os.Stat("/proc/sys/net/bridge"); err == nil {
			return nil
		}
		return loadModule("br_netfilter")
	})
}

func writeSysctl(key, value string) error {
	path := filepath.Join("/proc/sys", key)
	cur, err := os.ReadFile(path)
	if err == nil && strings.TrimSpace(string(cur)) == value {
		return nil
	}
	if err := os.WriteFile(path, []byte(value), 0o644); err != nil {
		return fmt.Errorf("sysctl %s=%s: %w", key, value, err)
	}
	return nil
}

// writeFile writes f in place (processes that bind-mounted it see the
// change), making its directory when needed; a file that already says
// it is left alone.
func writeFile(f netmodel.File) error {
	if old, err := os.ReadFile(f.Path); err == nil && string(old) == string(f.Content) {
		return nil
	}
	err := os.WriteFile(f.Path, f.Content, 0o644)
	if errors.Is(err, os.ErrNotExist) {
		if err := os.MkdirAll(filepath.Dir(f.Path), 0o755); err != nil {
			return err
		}
		err = os.WriteFile(f.Path, f.Content, 0o644)
	}
	return err
}

func ensureSymlink(s netmodel.Symlink) error {
	if target, err := os.Readlink(s.Path); err == nil && target == s.Target {
		return nil
	}
	if err := os.MkdirAll(filepath.Dir(s.Path), 0o755); err != nil {
		return err
	}
	_ = os.Remove(s.Path)
	if err := os.Symlink(s.Target, s.Path); err != nil {
		return fmt.Errorf("link %s: %w", s.Path, err)
	}
	return nil
}

// holdPort binds a host port while a mapping publishes it.
func (h *Linux) holdPort(p netmodel.Port) error {
	id := p.ID()
	h.portsMu.Lock()
	defer h.portsMu.Unlock()
	if _, ok := h.ports[id]; ok {
		return nil
	}
	r, err := h.ReservePort(p.Proto, p.IPv6, p.Addr, p.Port)
	if err != nil {
		return err
	}
	h.ports[id] = r
	return nil
}

func (h *Linux) releasePort(p netmodel.Port) {
	h.portsMu.Lock()
	defer h.portsMu.Unlock()
	id := p.ID()
	h.ports[id].Release()
	delete(h.ports, id)
}

// removeObjects removes what p holds; what is gone already is fine.
func (h *Linux) removeObjects(p *plan, fail failures) {
	for _, port := range objectsOf[netmodel.Port](p, netmodel.KindPort) {
		h.releasePort(port)
	}
	// Handovers go before bridges: the host's addresses on a bridge would
	// go with it.
	for _, u := range objectsOf[netmodel.UplinkHandover](p, netmodel.KindHandover) {
		fail.add(u.Key(), h.handBack(u.Uplink, u.Bridge))
	}
	gone := map[netmodel.LinkRef]bool{}
	var hostLinks []string
	for _, l := range p.links {
		if l.Kind == netmodel.LinkLoopback {
			continue
		}
		gone[ref(l.NS, l.Name)] = true
	}
	for _, l := range p.links {
		if l.Kind == netmodel.LinkLoopback {
			continue
		}
		if l.Peer != nil && gone[*l.Peer] && !l.NS.IsHost() && l.Peer.NS.IsHost() {
			continue // goes with its host side
		}
		if l.NS.IsHost() {
			hostLinks = append(hostLinks, l.Name)
			continue
		}
		fail.add(l.Key(), h.withHandle(l.NS, func(nh *netlink.Handle) error {
			link, err := nh.LinkByName(l.Name)
			if isNotFound(err) {
				return nil
			}
			if err == nil {
				err = nh.LinkDel(link)
			}
			if err != nil && !isNotFound(err) && !errors.Is(err, ErrNamespaceGone) {
				return fmt.Errorf("delete %s: %w", l.Name, err)
			}
			return nil
		}))
	}
	for _, l := range p.links {
		if l.NS.IsHost() && l.Kind == netmodel.LinkBridge {
			if err := h.handBackPorts(l.Name); err != nil {
				// Deleted now, the bridge would take the host's
				// addresses along: it waits for the next pass.
				fail.add(l.Key(), err)
				hostLinks = slices.DeleteFunc(hostLinks, func(n string) bool { return n == l.Name })
			}
		}
	}
	if len(hostLinks) > 0 {
		if err := h.DeleteLinks(hostLinks); err != nil {
			for _, name := range hostLinks {
				fail.add(netmodel.Link{Name: name}.Key(), err)
			}
		}
		for _, name := range hostLinks {
			h.bridgeIndex.Delete(name)
		}
	}
	for _, a := range objectsOf[netmodel.Addr](p, netmodel.KindAddr) {
		if gone[ref(a.NS, a.Link)] {
			continue
		}
		fail.add(a.Key(), ignoreGone(h.withHandle(a.NS, func(nh *netlink.Handle) error {
			link, err := nh.LinkByName(a.Link)
			if err != nil {
				return err
			}
			return nh.AddrDel(link, addrOf(a.Prefix))
		})))
	}
	for _, r := range objectsOf[netmodel.Route](p, netmodel.KindRoute) {
		if gone[ref(r.NS, r.Link)] {
			continue
		}
		fail.add(r.Key(), ignoreGone(h.withHandle(r.NS, func(nh *netlink.Handle) error {
			link, err := nh.LinkByName(r.Link)
			if err != nil {
				return err
			}
			return nh.RouteDel(routeOf(link, Route{Dst: r.Dst, Gateway: r.Gateway, Metric: r.Metric}))
		})))
	}
	for _, n := range objectsOf[netmodel.Neigh](p, netmodel.KindNeigh) {
		if gone[ref(n.NS, n.Link)] {
			continue
		}
		fail.add(n.Key(), ignoreGone(h.withHandle(n.NS, func(nh *netlink.Handle) error {
			link, err := nh.LinkByName(n.Link)
			if err != nil {
				return err
			}
			nb := &netlink.Neigh{LinkIndex: link.Attrs().Index, IP: n.IP.AsSlice(), Family: family(n.IP)}
			if n.Proxy {
				nb.Flags = netlink.NTF_PROXY
			}
			return nh.NeighDel(nb)
		})))
	}
	for _, f := range objectsOf[netmodel.FDB](p, netmodel.KindFDB) {
		if gone[ref(f.NS, f.Link)] {
			continue
		}
		fail.add(f.Key(), ignoreGone(h.withHandle(f.NS, func(nh *netlink.Handle) error {
			link, err := nh.LinkByName(f.Link)
			if err != nil {
				return err
			}
			return nh.NeighDel(&netlink.Neigh{LinkIndex: link.Attrs().Index, Family: unix.AF_BRIDGE, IP: f.Dst.AsSlice(),
				HardwareAddr: f.MAC, Flags: netlink.NTF_SELF})
		})))
	}
	for _, f := range objectsOf[netmodel.File](p, netmodel.KindFile) {
		err := os.Remove(f.Path)
		if errors.Is(err, os.ErrNotExist) {
			err = nil
		}
		if f.Dir != "" {
			err = errors.Join(err, os.RemoveAll(f.Dir))
		}
		fail.add(f.Key(), err)
	}
	for _, s := range objectsOf[netmodel.Symlink](p, netmodel.KindSymlink) {
		if target, err := os.Readlink(s.Path); err == nil && target == s.Target {
			fail.add(s.Key(), os.Remove(s.Path))
		}
	}
	for _, n := range objectsOf[netmodel.Namespace](p, netmodel.KindNamespace) {
		fail.add(n.Key(), netns.Delete(n.NS.Path))
	}
}

// ignoreGone treats an object already gone (or whose link or namespace
// is) as removed.
func ignoreGone(err error) error {
	if err == nil || isNotFound(err) || errors.Is(err, ErrNamespaceGone) || errors.Is(err, unix.EADDRNOTAVAIL) ||
		errors.Is(err, unix.ESRCH) {
		return nil
	}
	return err
}

// SyncFirewall implements Host.
func (h *Linux) SyncFirewall(ctx context.Context, tables []*nftmodel.Table) error {
	if err := h.fw.ApplyAll(tables...); err != nil {
		return fmt.Errorf("apply nftables tables: %w", err)
	}
	want := map[TableName]bool{}
	for _, t := range tables {
		want[TableName{t.Family, t.Name}] = true
	}
	for _, t := range h.cfg.Tables {
		if !want[t] {
			if err := h.fw.DeleteTable(t.Family, t.Name); err != nil {
				return fmt.Errorf("delete nftables table %s %s: %w", t.Family, t.Name, err)
			}
		}
	}
	return nil
}

// FirewallDrift implements Host.
func (h *Linux) FirewallDrift(ctx context.Context, tables []*nftmodel.Table) ([]string, error) {
	ops, err := h.fw.Drift(tables...)
	if err != nil {
		return nil, err
	}
	want := map[TableName]bool{}
	for _, t := range tables {
		want[TableName{t.Family, t.Name}] = true
	}
	for _, t := range h.cfg.Tables {
		if want[t] {
			continue
		}
		if ok, err := h.fw.TableExists(t.Family, t.Name); err != nil {
			return nil, err
		} else if ok {
			ops = append(ops, fmt.Sprintf("delete table %s %s", t.Family, t.Name))
		}
	}
	return ops, nil
}

// HostAddressing implements Host.
func (h *Linux) HostAddressing(ctx context.Context) (netmodel.HostAddressing, error) {
	return h.hostAddressing()
}

// Watch implements Host.
func (h *Linux) Watch(ctx context.Context, changed func(Change), failed func(error)) error {
	if err := h.watchLinks(ctx.Done(), changed, failed); err != nil {
		return err
	}
	if err := h.watchUplinkAddresses(ctx.Done(), changed, failed); err != nil {
		return err
	}
	if err := h.watchShapers(ctx.Done(), changed, failed); err != nil {
		return err
	}
	err := h.watchForwarding(ctx.Done(), func(family string) {
		changed(Change{Reason: family + " forwarding was turned off"})
	}, failed)
	if err != nil {
		return err
	}
	return h.fw.WatchOthers(ctx.Done(), func(pid uint32, comm string) {
		changed(Change{Reason: fmt.Sprintf("process %q (pid %d) changed nftables", comm, pid)})
	}, failed)
}

// Identify implements Host.
func (h *Linux) Identify(ctx context.Context, path string) (netmodel.NSID, error) {
	if !netns.IsNamespace(path) {
		return netmodel.NSID{}, fmt.Errorf("%s is not a network namespace: %w", path, ErrNamespaceGone)
	}
	dev, ino, err := netns.IdentityOf(path)
	if err != nil {
		return netmodel.NSID{}, fmt.Errorf("%s: %w", err, ErrNamespaceGone)
	}
	return netmodel.NSID{Dev: dev, Ino: ino}, nil
}

// Self implements Host.
func (h *Linux) Self() netmodel.NSID {
	dev, ino, _ := netns.Identity(h.ns)
	return netmodel.NSID{Dev: dev, Ino: ino}
}
