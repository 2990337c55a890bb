package e2e

import (
	"fmt"
	"net"
	"net/netip"
	"testing"
	"time"

	"github.com/hostnet/hostnet/api"
	"github.com/vishvananda/netlink"
)

// talkFrom dials addr over TCP from local inside the namespace at path
// and returns the source address the server saw.
func talkFrom(t *testing.T, path string, local netip.Addr, addr string) (netip.Addr, error) {
	t.Helper()
	var c net.Conn
	var derr error
	In(t, path, func() error {
		d := net.Dialer{Timeout: 2 * time.Second, LocalAddr: &net.TCPAddr{IP: local.AsSlice()}}
		c, derr = d.Dial("tcp", addr)
		return nil
	})
	if derr != nil {
		return netip.Addr{}, derr
	}
	defer c.Close()
	reply, err := Exchange(c, "hello", 2*time.Second)
	if err != nil {
		return netip.Addr{}, err
	}
	var from string
	if _, err := fmt.Sscan(reply, &from); err != nil {
		return netip.Addr{}, err
	}
	ap, err := netip.ParseAddrPort(from)
	return ap.Addr().Unmap(), err
}

// addAddrByMAC gives the interface with MAC mac, in the namespace at path,
// the address prefix too: what a container allowed to configure its
// interface could do.
func (s *segment) addAddrByMAC(path string, mac net.HardwareAddr, prefix string) {
	s.t.Helper()
	h := s.handle(path)
	links, err := h.LinkList()
	if err != nil {
		s.t.Fatal(err)
	}
	for _, l := range links {
		if l.Attrs().HardwareAddr.String() == mac.String() {
			a, err := netlink.ParseAddr(prefix)
			if err != nil {
				s.t.Fatal(err)
			}
			if err := h.AddrAdd(l, a); err != nil {
				s.t.Fatal(err)
			}
			return
		}
	}
	s.t.Fatalf("no interface with MAC %s in %s", mac, path)
}

// TestL2AntiSpoofing: a Transparent or L2Tunnel endpoint that gives
// itself an address that is not its own (a free one of the segment, or
// another endpoint's) sends nothing from it, to the wire or to another
// endpoint of its host; from its own address it carries on.
func TestL2AntiSpoofing(t *testing.T) {
	for _, typ := range []api.NetworkType{api.Transparent, api.L2Tunnel} {
		t.Run(string(typ), func(t *testing.T) {
			seg := newSegment(t, 1)
			h := seg.hosts[0]
			if typ == api.L2Tunnel {
				seg.hairpin(h.port)
			}
			n := h.l2Network(t, typ, "seg-a", segA, "192.0.2.128/26", routerA)
			a1, a2 := attachL2(t, h, n.ID, "a1"), attachL2(t, h, n.ID, "a2")
			serveHost(t, seg.router)
			path := a1.Namespace.NetNamespacePath
			router := netip.AddrPortFrom(netip.MustParseAddr(routerA), 7000).String()
			toA2 := netip.AddrPortFrom(a2.Addr, 7000).String()
			if got := settle(true, func() bool { a, err := talkFrom(t, path, a1.Addr, router); return err == nil && a == a1.Addr }); !got {
				t.Fatal("a1 does not reach the router from its own address")
			}
			spoofed := func(what, to string, src netip.Addr) {
				t.Helper()
				if a, err := talkFrom(t, path, src, to); err == nil {
					t.Errorf("a1 reached %s from %s (%s): seen from %s, want nothing sent", to, src, what, a)
				}
			}
			free := netip.MustParseAddr("192.0.2.250")
			seg.addAddrByMAC(path, a1.mac, free.String()+"/24")
			spoofed("a free address, to the router", router, free)
			spoofed("a free address, to a2 on the host", toA2, free)
			// (a2's address on a1 makes a2 local to a1: the router only.)
			seg.addAddrByMAC(path, a1.mac, a2.Addr.String()+"/32")
			spoofed("a2's address, to the router", router, a2.Addr)
			if a, err := talkFrom(t, path, a1.Addr, router); err != nil || a != a1.Addr {
				t.Errorf("a1 from its own address after the spoofed ones: %v %v", a, err)
			}
		})
	}
}
