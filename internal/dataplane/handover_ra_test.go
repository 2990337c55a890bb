package dataplane

import (
	"context"
	"encoding/binary"
	"net"
	"os"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hostnet/hostnet/internal/dataplane/netns"
	"github.com/hostnet/hostnet/internal/netmodel"
	"github.com/hostnet/hostnet/internal/testutil"
	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// raRouter answers every router solicitation on its device with a router
// advertisement (a default router for 1800 s, prefix 2001:db8:7::/64 for
// SLAAC with the valid lifetime of the moment), as a segment's router
// does; solicited counts the solicitations.
type raRouter struct {
	valid     atomic.Uint32
	solicited atomic.Int32
}

func startRARouter(t *testing.T, ns netns.Handle, dev string) *raRouter {
	t.Helper()
	r := &raRouter{}
	r.valid.Store(3600)
	var fd, index int
	if err := netns.Do(ns, func() error {
		ifi, err := net.InterfaceByName(dev)
		if err != nil {
			return err
		}
		index = ifi.Index
		if fd, err = unix.Socket(unix.AF_INET6, unix.SOCK_RAW|unix.SOCK_CLOEXEC, unix.IPPROTO_ICMPV6); err != nil {
			return err
		}
		if err := unix.BindToDevice(fd, dev); err != nil {
			return err
		}
		tv := unix.NsecToTimeval(int64(100 * time.Millisecond))
		if err := unix.SetsockoptTimeval(fd, unix.SOL_SOCKET, unix.SO_RCVTIMEO, &tv); err != nil {
			return err
		}
		return unix.SetsockoptInt(fd, unix.IPPROTO_IPV6, unix.IPV6_MULTICAST_HOPS, 255)
	}); err != nil {
		t.Fatal(err)
	}
	advertise := func() error {
		ra := []byte{134, 0, 0, 0, 64, 0, 0x07, 0x08, 0, 0, 0, 0, 0, 0, 0, 0} // router lifetime 1800
		pi := make([]byte, 32)
		pi[0], pi[1], pi[2], pi[3] = 3, 4, 64, 0xc0 // prefix information: on-link, autonomous
		binary.BigEndian.PutUint32(pi[4:], r.valid.Load())
		binary.BigEndian.PutUint32(pi[8:], 1800)
		copy(pi[16:], net.ParseIP("2001:db8:7::"))
		allNodes := &unix.SockaddrInet6{Addr: [16]byte{0xff, 0x02, 15: 1}, ZoneId: uint32(index)}
		return unix.Sendto(fd, append(ra, pi...), 0, allNodes)
	}
	done, stopped := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(stopped)
		buf := make([]byte, 1500)
		for {
			select {
			case <-done:
				return
			default:
			}
			n, _, err := unix.Recvfrom(fd, buf, 0)
			if err != nil || n < 1 || buf[0] != 133 {
				continue
			}
			r.solicited.Add(1)
			// The router's link-local address may still be tentative:
			// try again for a while.
			for deadline := time.Now().Add(5 * time.Second); advertise() != nil && time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
			}
		}
	}()
	t.Cleanup(func() { close(done); <-stopped; unix.Close(fd) })
	return r
}

// slaac returns link's address of 2001:db8:7::/64 and the default route
// through it learnt from an advertisement, if any.
func slaac(nh *netlink.Handle, name string) (addr *netlink.Addr, learnt bool) {
	l, err := nh.LinkByName(name)
	if err != nil {
		return nil, false
	}
	addrs, _ := nh.AddrList(l, netlink.FAMILY_V6)
	for _, a := range addrs {
		if a.IP.Mask(net.CIDRMask(64, 128)).Equal(net.ParseIP("2001:db8:7::")) {
			addr = &a
		}
	}
	routes, _ := nh.RouteListFiltered(netlink.FAMILY_V6, &netlink.Route{LinkIndex: l.Attrs().Index, Table: unix.RT_TABLE_MAIN},
		netlink.RT_FILTER_OIF|netlink.RT_FILTER_TABLE)
	for _, r := range routes {
		learnt = learnt || (r.Dst == nil || r.Dst.IP.IsUnspecified()) && r.Protocol == unix.RTPROT_RA
	}
	return addr, learnt
}

// A host that takes its IPv6 default route and SLAAC address from router
// advertisements keeps doing so on the bridge, and on the uplink again
// after the handback: the learnt default route is not moved (a moved copy
// kept the kernel from adding its own, and every advertisement after
// failed before its prefixes: the address's lifetime was never renewed),
// and a router solicitation brings an advertisement at once.
func TestHandoverKeepsRouterAdvertisements(t *testing.T) {
	ctx := context.Background()
	h, nh, _ := kernelHost(t)
	_, routerNS := testutil.NewNS(t, "router")
	if err := nh.LinkAdd(&netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: "uplink0"}, PeerName: "r0", PeerNamespace: netlink.NsFd(int(routerNS))}); err != nil {
		t.Fatal(err)
	}
	rh, err := netlink.NewHandleAt(routerNS)
	if err != nil {
		t.Fatal(err)
	}
	defer rh.Close()
	// A router: it joins all-routers (ff02::2), where solicitations go.
	if err := netns.Do(routerNS, func() error {
		return os.WriteFile("/proc/sys/net/ipv6/conf/all/forwarding", []byte("1"), 0o644)
	}); err != nil {
		t.Fatal(err)
	}
	r0, _ := rh.LinkByName("r0")
	if err := rh.LinkSetUp(r0); err != nil {
		t.Fatal(err)
	}
	router := startRARouter(t, routerNS, "r0")
	up, _ := nh.LinkByName("uplink0")
	if err := nh.LinkSetUp(up); err != nil {
		t.Fatal(err)
	}
	// The uplink comes up and solicits: it learns its default route and
	// address.
	wait := func(what, dev string, ok func(a *netlink.Addr, learnt bool) bool) {
		t.Helper()
		for deadline := time.Now().Add(15 * time.Second); ; time.Sleep(50 * time.Millisecond) {
			a, learnt := slaac(nh, dev)
			if ok(a, learnt) {
				return
			}
			if time.Now().After(deadline) {
				t.Fatalf("%s: on %s address %+v, learnt default route %v; %d solicitations seen", what, dev, a, learnt, router.solicited.Load())
			}
		}
	}
	wait("before", "uplink0", func(a *netlink.Addr, learnt bool) bool { return a != nil && learnt })

	// Handed over: the bridge learns the default route, and an
	// advertisement's new valid lifetime reaches the address.
	router.valid.Store(7200)
	objs := []netmodel.Object{
		netmodel.Link{Name: "hnbr0", Kind: netmodel.LinkBridge, Up: true},
		netmodel.UplinkHandover{Uplink: "uplink0", Bridge: "hnbr0"},
	}
	if err := h.Apply(ctx, objs, nil); err != nil {
		t.Fatal(err)
	}
	if _, learnt := slaac(nh, "uplink0"); learnt {
		t.Error("the uplink, a port now, keeps its learnt default route")
	}
	wait("handed over", "hnbr0", func(a *netlink.Addr, learnt bool) bool { return a != nil && learnt && a.ValidLft > 3600 })
	if err := h.Apply(ctx, objs, nil); err != nil {
		t.Fatal(err)
	}

	// Handed back: the same on the uplink.
	router.valid.Store(10800)
	if err := h.Apply(ctx, nil, objs); err != nil {
		t.Fatal(err)
	}
	wait("handed back", "uplink0", func(a *netlink.Addr, learnt bool) bool { return a != nil && learnt && a.ValidLft > 7200 })
}
