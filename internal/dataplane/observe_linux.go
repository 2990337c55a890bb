package dataplane

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strings"

	"github.com/hostnet/hostnet/internal/dataplane/netns"
	"github.com/hostnet/hostnet/internal/netmodel"
	"github.com/vishvananda/netlink"
)

// Observe implements Host: one dump of the host's links and addresses,
// then what q asks.
func (h *Linux) Observe(ctx context.Context, q netmodel.Query) (*netmodel.Observation, error) {
	o := netmodel.NewObservation()
	ids := make(chan []int, 1)
	paths := make([]string, len(q.Namespaces))
	for i, ns := range q.Namespaces {
		paths[i] = ns.Path
	}
	// The host's IDs of the namespaces are asked while the host is read:
	// at a restart with thousands of endpoints both take time.
	go func() {
		if q.NoIDs {
			none := make([]int, len(paths))
			for i := range none {
				none[i] = -1
			}
			ids <- none
			return
		}
		ids <- h.NamespaceIDs(paths)
	}()
	var err error
	if !q.OnlyAsked {
		err = h.observeLinks(h.nl, netmodel.Host, h.cfg.tagged, o)
		if err == nil {
			// The host's routes of hostnet's (to the endpoints of a
			// routed network, through its bridge or shim).
			err = observeRoutes(h.nl, netmodel.Host, o)
		}
		if err == nil {
			err = h.observeShapers(o)
		}
	}
	nsIDs := <-ids
	if err != nil {
		return nil, err
	}
	for i, ns := range q.Namespaces {
		if !h.present(ns) {
			continue
		}
		o.NSIDs[ns] = nsIDs[i]
	}
	for _, ns := range q.LookInto {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		err := h.withHandle(ns, func(nh *netlink.Handle) error {
			if err := h.observeLinks(nh, ns, nil, o); err != nil {
				return err
			}
			return observeRoutes(nh, ns, o)
		})
		if errors.Is(err, ErrNamespaceGone) {
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("read namespace %s: %w", ns.Path, err)
		}
		o.LookedInto[ns] = true
	}
	for _, k := range q.Sysctls {
		if v, err := h.readSysctl(k.NS, k.ID); err == nil {
			o.Sysctls[k] = netmodel.Sysctl{NS: k.NS, Name: k.ID, Value: v}
		}
	}
	for _, path := range q.Files {
		if b, err := os.ReadFile(path); err == nil {
			f := netmodel.File{Path: path, Content: b}
			o.Files[f.Key()] = f
		}
	}
	if q.OnlyAsked {
		return o, nil
	}
	h.observeNamespaces(o)
	h.portsMu.Lock()
	for id, r := range h.ports {
		if r != nil {
			p := portFromID(id)
			o.Ports[p.Key()] = p
		}
	}
	h.portsMu.Unlock()
	return o, nil
}

// present reports whether ns is there, and is the namespace its identity
// names.
func (h *Linux) present(ns netmodel.NS) bool {
	if ns.IsHost() {
		return true
	}
	if !netns.IsNamespace(ns.Path) {
		return false
	}
	if ns.ID == (netmodel.NSID{}) {
		return true
	}
	dev, ino, err := netns.IdentityOf(ns.Path)
	return err == nil && (netmodel.NSID{Dev: dev, Ino: ino}) == ns.ID
}

// observeLinks reads the links of a namespace (those keep selects, when
// set) and their addresses, link-local ones left out.
func (h *Linux) observeLinks(nh *netlink.Handle, ns netmodel.NS, keep func(string) bool, o *netmodel.Observation) error {
	links, err := consistent(nh.LinkList)
	if err != nil {
		return fmt.Errorf("list devices: %w", err)
	}
	names := map[int]string{}
	for _, l := range links {
		names[l.Attrs().Index] = l.Attrs().Name
	}
	addrs, err := consistent(func() ([]netlink.Addr, error) { return nh.AddrList(nil, netlink.FAMILY_ALL) })
	if err != nil {
		return fmt.Errorf("list addresses: %w", err)
	}
	byIndex := map[int]string{}
	for _, l := range links {
		a := l.Attrs()
		if keep != nil && !keep(a.Name) {
			continue
		}
		byIndex[a.Index] = a.Name
		ol := netmodel.ObservedLink{
			Link: netmodel.Link{NS: ns, Name: a.Name, Kind: linkKind(l), MAC: a.HardwareAddr, MTU: a.MTU,
				Master: names[a.MasterIndex], Up: a.Flags&net.FlagUp != 0},
			Index: a.Index, MasterIndex: a.MasterIndex, PeerNSID: a.NetNsID,
		}
		o.Links[ol.Key()] = ol
	}
	for _, ad := range addrs {
		name, ok := byIndex[ad.LinkIndex]
		if !ok {
			continue
		}
		ip, ok := netip.AddrFromSlice(ad.IP)
		if !ok || ip.Unmap().IsLoopback() || ip.Unmap().IsLinkLocalUnicast() && ip.Unmap() != netmodel.RouterLinkLocal {
			continue
		}
		ones, _ := ad.Mask.Size()
		a := netmodel.Addr{NS: ns, Link: name, Prefix: netip.PrefixFrom(ip.Unmap(), ones)}
		o.Addrs[a.Key()] = a
	}
	if keep != nil && ns.IsHost() {
		return h.observeHandovers(links, addrs, o)
	}
	return nil
}

func linkKind(l netlink.Link) netmodel.LinkKind {
	switch t := l.Type(); {
	case t == "device" && l.Attrs().Name == "lo":
		return netmodel.LinkLoopback
	case t == "tuntap":
		return netmodel.LinkTap
	default:
		return netmodel.LinkKind(t)
	}
}

// observeRoutes reads the routes hostnet tagged in a namespace.
func observeRoutes(nh *netlink.Handle, ns netmodel.NS, o *netmodel.Observation) error {
	routes, err := nh.RouteListFiltered(netlink.FAMILY_ALL, &netlink.Route{Protocol: netmodel.RouteProtocol}, netlink.RT_FILTER_PROTOCOL)
	if err != nil {
		return fmt.Errorf("list routes: %w", err)
	}
	links, err := nh.LinkList()
	if err != nil {
		return fmt.Errorf("list devices: %w", err)
	}
	names := map[int]string{}
	for _, l := range links {
		names[l.Attrs().Index] = l.Attrs().Name
	}
	for _, r := range routes {
		var dst netip.Prefix
		if r.Dst != nil {
			dst = prefixOf(r.Dst)
		} else if r.Family == netlink.FAMILY_V6 {
			dst = netip.PrefixFrom(netip.IPv6Unspecified(), 0)
		} else {
			dst = netip.PrefixFrom(netip.IPv4Unspecified(), 0)
		}
		gw, _ := netip.AddrFromSlice(r.Gw)
		metric := r.Priority
		if r.Family == netlink.FAMILY_V6 && metric == netmodel.IPv6DefaultMetric {
			metric = 0 // the kernel's default, what a plan says with 0
		}
		rt := netmodel.Route{NS: ns, Link: names[r.LinkIndex], Dst: dst, Gateway: gw.Unmap(), Metric: metric}
		o.Routes[rt.Key()] = rt
	}
	return nil
}

// readSysctl reads a sysctl of ns.
func (h *Linux) readSysctl(ns netmodel.NS, key string) (string, error) {
	var v string
	read := func() error {
		b, err := os.ReadFile(filepath.Join("/proc/sys", key))
		v = strings.TrimSpace(string(b))
		return err
	}
	if ns.IsHost() {
		return v, h.thread.do(read)
	}
	handle, owned, err := h.nsHandle(ns)
	if err != nil {
		return "", err
	}
	if owned {
		defer handle.Close()
	}
	return v, netns.Do(handle, read)
}

// observeNamespaces reads the namespaces under hostnet's run directory and
// the `ip netns` links into it.
func (h *Linux) observeNamespaces(o *netmodel.Observation) {
	if h.cfg.NetnsDir == "" {
		return
	}
	entries, _ := os.ReadDir(h.cfg.NetnsDir)
	for _, e := range entries {
		if strings.HasSuffix(e.Name(), ".tmp") {
			continue
		}
		n := netmodel.Namespace{NS: netmodel.NS{Path: filepath.Join(h.cfg.NetnsDir, e.Name())}}
		o.Namespaces[n.Key()] = n
	}
	if h.cfg.NetnsLinkDir == "" {
		return
	}
	entries, _ = os.ReadDir(h.cfg.NetnsLinkDir)
	for _, e := range entries {
		path := filepath.Join(h.cfg.NetnsLinkDir, e.Name())
		target, err := os.Readlink(path)
		if err != nil || filepath.Dir(target) != filepath.Clean(h.cfg.NetnsDir) {
			continue
		}
		s := netmodel.Symlink{Path: path, Target: target}
		o.Symlinks[s.Key()] = s
	}
}

// portFromID parses netmodel.Port.ID.
func portFromID(id string) netmodel.Port {
	var p netmodel.Port
	parts := strings.SplitN(id, "/", 3)
	if len(parts) != 3 || len(parts[0]) < 2 {
		return p
	}
	p.Proto, p.IPv6 = parts[0][:len(parts[0])-1], strings.HasSuffix(parts[0], "6")
	var port int
	fmt.Sscanf(parts[1], "%d", &port)
	p.Port = uint16(port)
	if parts[2] != "*" {
		p.Addr, _ = netip.ParseAddr(parts[2])
	}
	return p
}
