package dataplane

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"net/netip"
	"os"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hostnet/hostnet/internal/dataplane/netns"
	"github.com/hostnet/hostnet/internal/dataplane/nft"
	"github.com/hostnet/hostnet/internal/netmodel"
	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netlink/nl"
	"golang.org/x/sys/unix"
)

const netlinkTimeout = 10 * time.Second

// Linux is the Host of a real kernel: it programs the namespace hostnet
// treats as the host, and the namespaces of its endpoints. All its calls
// go through netlink sockets bound to those namespaces, so the daemon's
// own threads never change namespace and never touch another one by
// mistake.
type Linux struct {
	cfg    HostConfig
	ns     netns.Handle
	nl     *netlink.Handle
	rt     *rtnl     // for requests the netlink library cannot build or batch
	thread *nsThread // an OS thread inside the namespace, for sysctls
	fw     *nft.Kernel
	ctMu   sync.Mutex

	bridgeIndex sync.Map   // bridge name -> ifindex, learnt when ensured or looked up
	ownTC       ownChanges // devices whose qdiscs hostnet deletes itself (see watchShapers)
	ownRelease  ownChanges // uplinks hostnet hands back itself (see watchLinks)

	portsMu sync.Mutex
	ports   map[string]*PortReservation // held host ports, by netmodel.Port.ID
}

// OpenLinux opens the namespace at path as the host; an empty path means
// the namespace of the calling thread. cfg names hostnet's tags.
func OpenLinux(path string, cfg HostConfig) (*Linux, error) {
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
	h := &Linux{cfg: cfg, ns: ns, ports: map[string]*PortReservation{}}
	if err := h.open(); err != nil {
		h.Close()
		return nil, err
	}
	return h, nil
}

func (h *Linux) open() error {
	var err error
	if h.nl, err = netlink.NewHandleAt(h.ns, unix.NETLINK_ROUTE); err != nil {
		return fmt.Errorf("open netlink handle: %w", err)
	}
	if err := h.nl.SetSocketTimeout(netlinkTimeout); err != nil {
		return fmt.Errorf("set netlink timeout: %w", err)
	}
	if h.rt, err = dialRtnl(h.ns); err != nil {
		return err
	}
	if h.thread, err = startNSThread(h.ns); err != nil {
		return err
	}
	if h.fw, err = nft.NewKernel(int(h.ns)); err != nil {
		return fmt.Errorf("open nftables: %w", err)
	}
	return nil
}

// Firewall returns the host's nftables applier (owned by Linux).
func (h *Linux) Firewall() *nft.Kernel { return h.fw }

// Close releases the host's sockets, thread and namespace handle, and the
// host ports it holds.
func (h *Linux) Close() {
	if h.fw != nil {
		h.fw.Close()
	}
	h.portsMu.Lock()
	for id, r := range h.ports {
		r.Release()
		delete(h.ports, id)
	}
	h.portsMu.Unlock()
	if h.nl != nil {
		h.nl.Close()
	}
	if h.rt != nil {
		h.rt.Close()
	}
	if h.thread != nil {
		h.thread.close()
	}
	h.ns.Close()
}

// NS returns the host namespace handle (owned by Linux; do not close).
func (h *Linux) NS() netns.Handle { return h.ns }

// execute sends one request on the host's socket.
func (h *Linux) execute(req *nl.NetlinkRequest) error {
	errs, _, err := h.rt.exchange([]*nl.NetlinkRequest{req}, 0)
	if err != nil {
		return err
	}
	return errs[0]
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
func (h *Linux) EnsureBridge(s BridgeSpec) (int, error) {
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
	created := false
	if link == nil {
		attrs := netlink.NewLinkAttrs()
		attrs.Name = s.Name
		if err := h.nl.LinkAdd(&netlink.Bridge{LinkAttrs: attrs}); err != nil && !errors.Is(err, unix.EEXIST) {
			return 0, fmt.Errorf("create bridge %s: %w", s.Name, err)
		}
		if link, err = h.nl.LinkByName(s.Name); err != nil {
			return 0, fmt.Errorf("look up bridge %s: %w", s.Name, err)
		}
		created = true
		if !hasIPv6(s.Addrs) {
			// A bridge of an IPv4 network needs no IPv6 link-local
			// address: without one it sends no router solicitations or
			// MLD reports to every port when it comes up.
			if err := h.execute(setLinkReq(link.Attrs().Index, false, true)); err != nil {
				return 0, fmt.Errorf("bridge %s: addrgenmode none: %w", s.Name, err)
			}
		}
	}
	a := link.Attrs()
	// Set after creation, MTU and MAC count as chosen by the user: the
	// bridge then stops recomputing both over all its ports at each new
	// port (an MTU given at creation does not count).
	if s.MTU != 0 && (created || a.MTU != s.MTU) {
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

func hasIPv6(ps []netip.Prefix) bool {
	for _, p := range ps {
		if p.Addr().Is6() {
			return true
		}
	}
	return false
}

// syncAddrs makes link carry exactly want, link-local addresses aside.
func syncAddrs(h *netlink.Handle, link netlink.Link, want []netip.Prefix) error {
	have, err := consistent(func() ([]netlink.Addr, error) { return h.AddrList(link, netlink.FAMILY_ALL) })
	if err != nil {
		return fmt.Errorf("list addresses: %w", err)
	}
	present := map[netip.Prefix]bool{}
	for _, a := range have {
		p := prefixOf(a.IPNet)
		if p.Addr().IsLinkLocalUnicast() {
			present[p] = true // kept: the kernel's own or ours
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
func (h *Linux) DeleteLink(name string) error {
	req := nl.NewNetlinkRequest(unix.RTM_DELLINK, unix.NLM_F_ACK)
	req.AddData(nl.NewIfInfomsg(unix.AF_UNSPEC))
	req.AddData(nl.NewRtAttr(unix.IFLA_IFNAME, nl.ZeroTerminated(name)))
	if err := h.execute(req); err != nil && !isNotFound(err) {
		return fmt.Errorf("delete device %s: %w", name, err)
	}
	return nil
}

// deletionGroup returns a device group for one DeleteLinks batch: random
// in a range no other software of the host uses, so that a device left in
// the group of a batch a crash cut short (and taken into service again
// since) is never part of a later batch.
func deletionGroup() uint32 { return 0x10000000 + rand.Uint32N(0x6fffffff) }

// DeleteLinks removes the named devices (and, for veths, their peers) in
// one kernel batch: `ip link set dev NAME group G` for each, then `ip link
// delete group G`. Removing a device waits for RCU grace periods (about
// 15 ms here, holding the RTNL lock); the kernel's batch deletion shares
// them, so n devices cost about what one does. Devices already gone are
// not an error.
func (h *Linux) DeleteLinks(names []string) error {
	if len(names) == 1 {
		return h.DeleteLink(names[0])
	}
	group := deletionGroup()
	var reqs []*nl.NetlinkRequest
	for _, name := range names {
		req := nl.NewNetlinkRequest(unix.RTM_NEWLINK, unix.NLM_F_ACK)
		req.AddData(nl.NewIfInfomsg(unix.AF_UNSPEC))
		req.AddData(nl.NewRtAttr(unix.IFLA_IFNAME, nl.ZeroTerminated(name)))
		req.AddData(nl.NewRtAttr(unix.IFLA_GROUP, nl.Uint32Attr(group)))
		reqs = append(reqs, req)
	}
	errs, _, err := h.rt.exchange(reqs, 0)
	if err != nil {
		return fmt.Errorf("gather devices for deletion: %w", err)
	}
	for i, e := range errs {
		if e != nil && !isNotFound(e) {
			return fmt.Errorf("gather device %s for deletion: %w", names[i], e)
		}
	}
	del := nl.NewNetlinkRequest(unix.RTM_DELLINK, unix.NLM_F_ACK)
	del.AddData(nl.NewIfInfomsg(unix.AF_UNSPEC))
	del.AddData(nl.NewRtAttr(unix.IFLA_GROUP, nl.Uint32Attr(group)))
	if err := h.execute(del); err != nil && !isNotFound(err) {
		return fmt.Errorf("delete devices %s: %w", strings.Join(names, ", "), err)
	}
	return nil
}

// Links describes the host's devices whose names start with prefix (`ip
// -d addr show`), by name: the state a health check compares with what
// hostnet intends.
func (h *Linux) Links(prefix string) (map[string]LinkState, error) {
	links, err := consistent(h.nl.LinkList)
	if err != nil {
		return nil, fmt.Errorf("list devices: %w", err)
	}
	names := map[int]string{}
	for _, l := range links {
		names[l.Attrs().Index] = l.Attrs().Name
	}
	addrs, err := consistent(func() ([]netlink.Addr, error) { return h.nl.AddrList(nil, netlink.FAMILY_ALL) })
	if err != nil {
		return nil, fmt.Errorf("list addresses: %w", err)
	}
	out := map[string]LinkState{}
	for _, l := range links {
		a := l.Attrs()
		if !strings.HasPrefix(a.Name, prefix) {
			continue
		}
		st := LinkState{Index: a.Index, Up: a.Flags&net.FlagUp != 0, Master: names[a.MasterIndex], MasterIndex: a.MasterIndex, Kind: l.Type(), PeerNSID: a.NetNsID}
		for _, ad := range addrs {
			if ad.LinkIndex != a.Index {
				continue
			}
			if ip, ok := netip.AddrFromSlice(ad.IP); ok {
				ones, _ := ad.Mask.Size()
				st.Addrs = append(st.Addrs, netip.PrefixFrom(ip.Unmap(), ones))
			}
		}
		out[a.Name] = st
	}
	return out, nil
}

// NamespaceID returns the ID the host gives the namespace ns (`ip netns
// list-id`), or -1 when it has given none: a veth whose other side is in ns
// reports that ID (LinkState.PeerNSID). The kernel gives one when a device
// of the host gets a peer there.
func (h *Linux) NamespaceID(ns netns.Handle) (int, error) {
	id, err := h.nl.GetNetNsIdByFd(int(ns))
	if err != nil {
		return -1, fmt.Errorf("namespace ID: %w", err)
	}
	return id, nil
}

// LinkIndex returns the index of the host's device name (`ip link show
// NAME`).
func (h *Linux) LinkIndex(name string) (int, error) {
	l, err := h.nl.LinkByName(name)
	if err != nil {
		return 0, fmt.Errorf("look up %s: %w", name, err)
	}
	return l.Attrs().Index, nil
}

// NamespaceIDs is NamespaceID for the namespaces at paths, on a few
// sockets at once (a restart asks it of thousands); -1 where a namespace
// has no ID or cannot be opened.
func (h *Linux) NamespaceIDs(paths []string) []int {
	ids := make([]int, len(paths))
	next := atomic.Int64{}
	var wg sync.WaitGroup
	for range min(runtime.NumCPU(), max(1, len(paths)/64)) {
		nh, err := netlink.NewHandleAt(h.ns, unix.NETLINK_ROUTE)
		if err != nil {
			nh = nil // this worker answers -1
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			if nh != nil {
				defer nh.Close()
			}
			for {
				i := int(next.Add(1)) - 1
				if i >= len(paths) {
					return
				}
				ids[i] = -1
				if nh == nil {
					continue
				}
				ns, err := netns.Open(paths[i])
				if err != nil {
					continue
				}
				if id, err := nh.GetNetNsIdByFd(int(ns)); err == nil {
					ids[i] = id
				}
				ns.Close()
			}
		}()
	}
	wg.Wait()
	return ids
}

// LinkNames returns the names of the host's devices that start with prefix.
func (h *Linux) LinkNames(prefix string) ([]string, error) {
	links, err := consistent(h.nl.LinkList)
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

// ErrBridgeFull is returned when a bridge has no port left.
var ErrBridgeFull = netmodel.ErrBridgeFull

// EnsurePort makes the endpoint's veth pair exist and be configured as s
// says. The fast path is three round trips: one request creates both
// sides, the peer directly inside the endpoint's namespace with its MAC and
// MTU, the host side already a port of the bridge; the host side is then
// brought up without any IPv6 (it needs none, and its chatter would cost);
// and one batch configures the peer: up, loopback up, addresses, routes.
// An endpoint without an IPv6 address gets no IPv6 link-local address
// either: its DAD, router and MLD messages would be flooded to every port
// of the bridge, which made each new endpoint slower than the one before.
// When the pair exists already (a retry, a restart) it is adopted and
// repaired instead, without being recreated.
func (h *Linux) EnsurePort(s PortSpec) error {
	// The socket into the endpoint's namespace is opened while the pair is
	// made: both are on the critical path and independent.
	type dialed struct {
		r   *rtnl
		err error
	}
	dial := make(chan dialed, 1)
	go func() {
		r, err := dialRtnl(s.NS)
		dial <- dialed{r, err}
	}()
	hostIndex, peerIndex, err := h.createVeth(s)
	d := <-dial
	if d.r != nil {
		defer d.r.Close()
	}
	switch {
	case err == nil && d.err != nil:
		return fmt.Errorf("endpoint namespace: %w", d.err)
	case err == nil:
		return h.configureFresh(s, hostIndex, peerIndex, d.r)
	case errors.Is(err, unix.EEXIST):
		return h.repairPort(s)
	case errors.Is(err, unix.EXFULL):
		return fmt.Errorf("create veth %s: %w", s.HostName, ErrBridgeFull)
	}
	return fmt.Errorf("create veth %s: %w", s.HostName, err)
}

// createVeth is `ip link add HOST mtu M master BR type veth peer name NAME
// address MAC mtu M netns NS`, in one request, both sides down. It returns
// the index of the host side and of the peer (in the peer's namespace).
func (h *Linux) createVeth(s PortSpec) (int, int, error) {
	req := nl.NewNetlinkRequest(unix.RTM_NEWLINK, unix.NLM_F_CREATE|unix.NLM_F_EXCL|unix.NLM_F_ACK|unix.NLM_F_ECHO)
	req.AddData(nl.NewIfInfomsg(unix.AF_UNSPEC))
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
	errs, echoes, err := h.rt.exchange([]*nl.NetlinkRequest{req}, unix.RTM_NEWLINK)
	if err != nil {
		return 0, 0, err
	}
	if errs[0] != nil {
		return 0, 0, errs[0]
	}
	for _, m := range echoes {
		if hostIndex, peerIndex, err := linkIndexes(m); err == nil && hostIndex > 0 && peerIndex > 0 {
			return hostIndex, peerIndex, nil
		}
	}
	return 0, 0, errors.New("the kernel did not echo the new veth")
}

// configureFresh brings up a pair createVeth just made and configures its
// peer through r, a socket in the endpoint's namespace. The host side and
// the peer are configured at the same time.
func (h *Linux) configureFresh(s PortSpec, hostIndex, peerIndex int, r *rtnl) error {
	hostDone := make(chan error, 1)
	go func() {
		if err := h.disableIPv6(s.HostName); err != nil {
			hostDone <- err
			return
		}
		if !s.Hairpin {
			hostDone <- nil
			return
		}
		hostDone <- h.execute(hairpinReq(hostIndex, true))
	}()
	var reqs []*nl.NetlinkRequest
	var what []string
	add := func(req *nl.NetlinkRequest, w string) {
		reqs = append(reqs, req)
		what = append(what, w)
	}
	// No automatic link-local address: its duplicate address detection
	// would be flooded to every port (and, with hairpin on, come back and
	// fail). An endpoint with IPv6 gets its EUI-64 one, without DAD.
	add(setLinkReq(peerIndex, false, true), "no automatic IPv6 link-local address on "+s.Name)
	add(setLinkReq(peerIndex, true, false), "bring up "+s.Name)
	add(setLinkReq(1, true, false), "bring up lo") // lo is the first device of every namespace
	for _, p := range addrsWithLinkLocal(s) {
		add(addrReq(peerIndex, p), fmt.Sprintf("add address %s to %s", p, s.Name))
	}
	for _, rt := range s.Routes {
		add(routeReq(peerIndex, rt), "add route "+rt.String())
	}
	errs, _, err := r.exchange(reqs, 0)
	if err == nil {
		err = firstError(errs, what)
	}
	if err := errors.Join(err, <-hostDone); err != nil {
		return err
	}
	// The host side comes up last: an up port promises a peer fully
	// configured, which lets a restart adopt it from one dump of the host
	// (see Links) instead of looking into every namespace.
	if err := h.execute(setLinkReq(hostIndex, true, false)); err != nil {
		return fmt.Errorf("bring up %s: %w", s.HostName, err)
	}
	return nil
}

// addrsWithLinkLocal returns the peer's addresses, with its EUI-64
// link-local address first when it has an IPv6 one.
func addrsWithLinkLocal(s PortSpec) []netip.Prefix {
	for _, a := range s.Addrs {
		if a.Addr().Is6() && s.MAC != nil {
			return append([]netip.Prefix{linkLocal(s.MAC)}, s.Addrs...)
		}
	}
	return s.Addrs
}

// disableIPv6 turns IPv6 off on a host device before it comes up: a bridge
// port needs no address, and without IPv6 it joins no groups and adds no
// routes to the host's tables.
func (h *Linux) disableIPv6(name string) error {
	return h.thread.do(func() error {
		err := os.WriteFile("/proc/sys/net/ipv6/conf/"+name+"/disable_ipv6", []byte("1"), 0o644)
		if errors.Is(err, os.ErrNotExist) {
			return nil // IPv6 is off in this kernel
		}
		return err
	})
}

// repairPort adopts an existing pair, or replaces a host device of that
// name that is not the right pair.
func (h *Linux) repairPort(s PortSpec) error {
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
		hostIndex, peerIndex, err := h.createVeth(s)
		if err != nil {
			if errors.Is(err, unix.EEXIST) {
				return fmt.Errorf("device %s in the endpoint namespace: %w", s.Name, ErrNameTaken)
			}
			return fmt.Errorf("create veth %s: %w", s.HostName, err)
		}
		r, err := dialRtnl(s.NS)
		if err != nil {
			return fmt.Errorf("endpoint namespace: %w", err)
		}
		defer r.Close()
		return h.configureFresh(s, hostIndex, peerIndex, r)
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
	if err := h.execute(hairpinReq(a.Index, s.Hairpin)); err != nil {
		return fmt.Errorf("hairpin on %s: %w", s.HostName, err)
	}
	if err := repairPeer(s); err != nil {
		return err
	}
	if a.Flags&net.FlagUp == 0 { // last, as in configureFresh
		if err := h.nl.LinkSetUp(host); err != nil {
			return fmt.Errorf("bring up %s: %w", s.HostName, err)
		}
	}
	return nil
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

// repairPeer brings an adopted peer to s: up, loopback up, exactly its
// addresses and hostnet's routes.
func repairPeer(s PortSpec) error {
	eh, err := netlink.NewHandleAt(s.NS, unix.NETLINK_ROUTE)
	if err != nil {
		return fmt.Errorf("open endpoint namespace: %w", err)
	}
	defer eh.Close()
	lo := &netlink.Device{LinkAttrs: netlink.LinkAttrs{Index: 1}}
	if err := eh.LinkSetUp(lo); err != nil {
		return fmt.Errorf("bring up lo: %w", err)
	}
	link, err := eh.LinkByName(s.Name)
	if err != nil {
		return fmt.Errorf("look up %s in the endpoint namespace: %w", s.Name, err)
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
	if s.Additive {
		for _, p := range addrsWithLinkLocal(s) {
			if err := eh.AddrReplace(link, addrOf(p)); err != nil {
				return fmt.Errorf("%s: add address %s: %w", s.Name, p, err)
			}
		}
		for _, r := range s.Routes {
			if err := eh.RouteReplace(routeOf(link, r)); err != nil {
				return fmt.Errorf("%s: set route %s: %w", s.Name, r, err)
			}
		}
		return nil
	}
	if err := syncAddrs(eh, link, addrsWithLinkLocal(s)); err != nil {
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
func (h *Linux) SetSysctl(key, value string) error {
	return h.thread.do(func() error { return writeSysctl(key, value) })
}

// hostAddressing returns the addresses and route destinations of the
// host namespace (`ip addr; ip route show table all`), for subnets that
// collide with none of them. What is on hostnet's own devices is left
// out, and so is the local table, which only repeats the addresses.
func (h *Linux) hostAddressing() (netmodel.HostAddressing, error) {
	var out netmodel.HostAddressing
	links, err := consistent(h.nl.LinkList)
	if err != nil {
		return out, fmt.Errorf("list devices: %w", err)
	}
	ours := map[int]bool{}
	byIndex := map[int]int{} // link index: its place in out.Links
	names := map[int]string{}
	for _, l := range links {
		names[l.Attrs().Index] = l.Attrs().Name
	}
	for _, l := range links {
		a := l.Attrs()
		if h.cfg.tagged(a.Name) {
			ours[a.Index] = true
			continue
		}
		byIndex[a.Index] = len(out.Links)
		out.Links = append(out.Links, netmodel.HostLink{Name: a.Name, Kind: l.Type(), MAC: a.HardwareAddr, MTU: a.MTU,
			Up: a.Flags&net.FlagUp != 0 && a.OperState != netlink.OperDown && a.OperState != netlink.OperLowerLayerDown, Master: names[a.MasterIndex]})
	}
	// A bridge of hostnet's that holds an uplink (netmodel.UplinkHandover)
	// holds the host's addresses and routes: they are the host's.
	linkAt := map[int]netlink.Link{}
	for _, l := range links {
		linkAt[l.Attrs().Index] = l
	}
	for _, l := range links {
		if br, ok := linkAt[l.Attrs().MasterIndex]; ok && h.handedOver(br, l) {
			delete(ours, br.Attrs().Index)
		}
	}
	// A device made after the list (a network of hostnet's created by a
	// concurrent request) is looked up: its addresses and routes are not
	// the host's if it is hostnet's.
	isOurs := func(index int) bool {
		if _, listed := names[index]; !listed {
			l, err := h.nl.LinkByIndex(index)
			names[index] = ""
			ours[index] = err == nil && h.cfg.tagged(l.Attrs().Name)
		}
		return ours[index]
	}
	addrs, err := consistent(func() ([]netlink.Addr, error) { return h.nl.AddrList(nil, netlink.FAMILY_ALL) })
	if err != nil {
		return out, fmt.Errorf("list addresses: %w", err)
	}
	for _, a := range addrs {
		if !isOurs(a.LinkIndex) {
			out.Addrs = append(out.Addrs, prefixOf(a.IPNet))
			if i, ok := byIndex[a.LinkIndex]; ok {
				out.Links[i].Addrs = append(out.Links[i].Addrs, prefixOf(a.IPNet))
			}
		}
	}
	routes, err := consistent(func() ([]netlink.Route, error) {
		return h.nl.RouteListFiltered(netlink.FAMILY_ALL, &netlink.Route{Table: unix.RT_TABLE_UNSPEC}, netlink.RT_FILTER_TABLE)
	})
	if err != nil {
		return out, fmt.Errorf("list routes: %w", err)
	}
	for _, r := range routes {
		if r.Dst != nil && r.Table != unix.RT_TABLE_LOCAL && !isOurs(r.LinkIndex) {
			out.Routes = append(out.Routes, prefixOf(r.Dst).Masked())
		}
	}
	return out, nil
}

// EnsureNamespace makes the namespace at path exist (`ip netns add`),
// replacing a plain file a crash or a reboot left there, and brings its
// loopback up. It reports whether it had to create the namespace.
func EnsureNamespace(path string) (bool, error) {
	created := false
	if !netns.IsNamespace(path) {
		_ = os.Remove(path)
		if err := netns.Create(path); err != nil {
			return false, err
		}
		created = true
	}
	h, err := netns.Open(path)
	if err != nil {
		return created, err
	}
	defer h.Close()
	r, err := dialRtnl(h)
	if err != nil {
		return created, err
	}
	defer r.Close()
	errs, _, err := r.exchange([]*nl.NetlinkRequest{setLinkReq(1, true, false)}, 0)
	if err == nil {
		err = errs[0]
	}
	if err != nil {
		return created, fmt.Errorf("bring up lo: %w", err)
	}
	return created, nil
}

// IsDumpInterrupted reports whether err is a dump the kernel kept
// interrupting, because what it lists kept changing: worth trying again
// once things are quiet, not a failure.
func IsDumpInterrupted(err error) bool { return errors.Is(err, netlink.ErrDumpInterrupted) }

// consistent runs a netlink dump again when the kernel flags it as
// interrupted by a concurrent change (its results may then miss or repeat
// entries), a few times, then gives the last error.
func consistent[T any](dump func() ([]T, error)) ([]T, error) {
	var out []T
	var err error
	for range 5 {
		if out, err = dump(); !errors.Is(err, netlink.ErrDumpInterrupted) {
			return out, err
		}
	}
	return out, err
}
