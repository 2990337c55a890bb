package dataplane

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hostnet/hostnet/internal/netmodel"
	"github.com/hostnet/hostnet/internal/testutil"
	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netlink/nl"
	vnetns "github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

// watchHandoverOrder records, on one netlink socket (so in the order the
// kernel made them), the host's global addresses added to hnbr0 and
// uplink0 becoming a port, until the returned function is called, which
// returns them.
func watchHandoverOrder(t *testing.T, path string) func() []string {
	t.Helper()
	ns, err := vnetns.GetFromPath(path)
	if err != nil {
		t.Fatal(err)
	}
	s, err := nl.SubscribeAt(ns, vnetns.None(), unix.NETLINK_ROUTE, unix.RTNLGRP_LINK, unix.RTNLGRP_IPV4_IFADDR, unix.RTNLGRP_IPV6_IFADDR)
	ns.Close()
	if err != nil {
		t.Fatal(err)
	}
	if err := s.SetReceiveTimeout(&unix.Timeval{Usec: 50000}); err != nil {
		t.Fatal(err)
	}
	var (
		mu     sync.Mutex
		events []string
		names  = map[int32]string{}
	)
	done, finished := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(finished)
		defer s.Close()
		for {
			msgs, _, err := s.Receive()
			if err != nil {
				// The timeout: the socket is drained, so once told to
				// stop every event up to then has been read (stopping
				// before a read lost a queued one: CI failed so).
				select {
				case <-done:
					return
				default:
					continue
				}
			}
			mu.Lock()
			for _, m := range msgs {
				switch m.Header.Type {
				case unix.RTM_NEWLINK:
					hdr := unix.NlMsghdr{Len: m.Header.Len, Type: m.Header.Type, Flags: m.Header.Flags, Seq: m.Header.Seq, Pid: m.Header.Pid}
					l, err := netlink.LinkDeserialize(&hdr, m.Data)
					if err != nil {
						continue
					}
					names[int32(l.Attrs().Index)] = l.Attrs().Name
					if l.Attrs().Name == "uplink0" && l.Attrs().MasterIndex != 0 && !slices.Contains(events, "uplink0 a port") {
						events = append(events, "uplink0 a port")
					}
				case unix.RTM_NEWADDR:
					ifa := nl.DeserializeIfAddrmsg(m.Data)
					attrs, err := nl.ParseRouteAttr(m.Data[unix.SizeofIfAddrmsg:])
					if err != nil || names[int32(ifa.Index)] != "hnbr0" {
						continue
					}
					for _, a := range attrs {
						if a.Attr.Type == unix.IFA_ADDRESS {
							if ip := net.IP(a.Value); !ip.IsLinkLocalUnicast() {
								events = append(events, "address on bridge "+ip.String())
							}
						}
					}
				}
			}
			mu.Unlock()
		}
	}()
	return func() []string {
		close(done)
		<-finished
		mu.Lock()
		defer mu.Unlock()
		return events
	}
}

// The kernel's handover: the host's addresses (IPv4 and IPv6) and routes
// move from the uplink to the bridge, which takes the uplink's MAC; a
// second apply changes nothing; an address put back on the uplink (a pass
// cut short) is seen and moved again; the removal, and the deletion of the
// bridge alone, hand everything back.
func TestUplinkHandoverKernel(t *testing.T) {
	ctx := context.Background()
	h, nh, hostPath := kernelHost(t)
	if err := nh.LinkAdd(&netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: "uplink0"}, PeerName: "uplink0p"}); err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"uplink0", "uplink0p"} {
		l, _ := nh.LinkByName(name)
		if err := nh.LinkSetUp(l); err != nil {
			t.Fatal(err)
		}
	}
	up, _ := nh.LinkByName("uplink0")
	// A jumbo-frame uplink: the bridge keeps its MTU whatever its ports'.
	if err := nh.LinkSetMTU(up, 9000); err != nil {
		t.Fatal(err)
	}
	// The uplink's own way with router advertisements and its reverse
	// path filter follow its addresses.
	settings := map[string]string{"net/ipv6/conf/%s/accept_ra": "2", "net/ipv6/conf/%s/autoconf": "0", "net/ipv4/conf/%s/rp_filter": "2"}
	for f, v := range settings {
		if err := h.SetSysctl(fmt.Sprintf(f, "uplink0"), v); err != nil {
			t.Fatal(err)
		}
	}
	prefixes := []string{"192.0.2.10/24", "198.18.0.10/24", "2001:db8::10/64"}
	for _, p := range prefixes {
		a, _ := netlink.ParseAddr(p)
		a.Flags = unix.IFA_F_NODAD
		if err := nh.AddrAdd(up, a); err != nil {
			t.Fatal(err)
		}
	}
	_, static, _ := net.ParseCIDR("203.0.113.0/24")
	for _, r := range []*netlink.Route{
		{LinkIndex: up.Attrs().Index, Gw: net.ParseIP("192.0.2.1"), Priority: 50, Protocol: unix.RTPROT_STATIC},
		{LinkIndex: up.Attrs().Index, Dst: static, Gw: net.ParseIP("198.18.0.1")},
		{LinkIndex: up.Attrs().Index, Gw: net.ParseIP("2001:db8::1"), Priority: 50},
	} {
		if err := nh.RouteAdd(r); err != nil {
			t.Fatalf("route %v: %v", r, err)
		}
	}
	// state renders where the host's addressing is.
	state := func() string {
		links, _ := nh.LinkList()
		var lines []string
		names := map[int]string{}
		for _, l := range links {
			names[l.Attrs().Index] = l.Attrs().Name
		}
		for _, l := range links {
			a := l.Attrs()
			if a.Name != "uplink0" && a.Name != "hnbr0" {
				continue
			}
			lines = append(lines, "link "+a.Name+" mac "+a.HardwareAddr.String()+" master "+names[a.MasterIndex])
			addrs, _ := nh.AddrList(l, netlink.FAMILY_ALL)
			for _, ad := range addrs {
				if hostAddr(ad) {
					lines = append(lines, "addr "+ad.IPNet.String()+" dev "+a.Name)
				}
			}
			routes, _ := h.movedRoutes(l)
			for _, r := range routes {
				lines = append(lines, "route "+routeText(r)+" dev "+a.Name)
			}
		}
		slices.Sort(lines)
		return strings.Join(lines, "\n")
	}
	before := state()
	mac := up.Attrs().HardwareAddr.String()
	bridge := netmodel.Link{Name: "hnbr0", Kind: netmodel.LinkBridge, Up: true}
	hand := netmodel.UplinkHandover{Uplink: "uplink0", Bridge: "hnbr0"}
	apply := func(step string, ensure, remove []netmodel.Object) {
		t.Helper()
		if err := h.Apply(ctx, ensure, remove); err != nil {
			t.Fatalf("%s: %v", step, err)
		}
	}
	handedOver := func(step string) {
		t.Helper()
		got := state()
		want := strings.NewReplacer("dev uplink0", "dev hnbr0").Replace(before)
		want = strings.Replace(want, "link hnbr0", "", 1)
		if !strings.Contains(got, "link uplink0 mac "+mac+" master hnbr0") || !strings.Contains(got, "link hnbr0 mac "+mac+" master ") {
			t.Errorf("%s: uplink0 is not a port of hnbr0 with its MAC:\n%s", step, got)
		}
		for _, line := range strings.Split(want, "\n") {
			if strings.HasPrefix(line, "addr") || strings.HasPrefix(line, "route") {
				if !strings.Contains(got, line) {
					t.Errorf("%s: %q missing:\n%s", step, line, got)
				}
			}
		}
		if strings.Contains(got, "dev uplink0") {
			t.Errorf("%s: the uplink keeps some of the host's addressing:\n%s", step, got)
		}
		o, err := h.Observe(ctx, netmodel.Query{})
		if err != nil {
			t.Fatal(err)
		}
		if oh, ok := o.Handovers[hand.Key()]; !ok || oh.Bridge != "hnbr0" || len(oh.Left) > 0 {
			t.Errorf("%s: observed %+v", step, oh)
		}
	}
	handedBack := func(step string) {
		t.Helper()
		if got := state(); got != before {
			t.Errorf("%s: the host's addressing is\n%s\nwant\n%s", step, got, before)
		}
	}

	events := watchHandoverOrder(t, hostPath)
	apply("hand over", []netmodel.Object{bridge, hand}, nil)
	order := events()
	handedOver("hand over")
	for f, v := range settings {
		if got, err := h.readSysctl(netmodel.NS{}, fmt.Sprintf(f, "hnbr0")); err != nil || got != v {
			t.Errorf("bridge: %s = %q (%v), want the uplink's %s", fmt.Sprintf(f, "hnbr0"), got, err, v)
		}
	}
	// The host's addresses were on the bridge before the uplink was its
	// port: a pass killed in between leaves them where the segment's
	// frames arrive. (Only IPv4's are told in order: the kernel may tell
	// of an IPv6 address added to a device without carrier, the bridge
	// before its first port, only once the device has one; the test
	// failed so about one run in three.)
	var v4 []string
	for _, p := range prefixes {
		if !strings.Contains(p, ":") {
			v4 = append(v4, p)
		}
	}
	if i := slices.Index(order, "uplink0 a port"); i < 0 {
		t.Errorf("the uplink becoming a port was not seen: %v", order)
	} else if onBridge := slices.DeleteFunc(slices.Clone(order[:i]), func(e string) bool {
		return !strings.HasPrefix(e, "address on bridge") || strings.Contains(e, ":")
	}); len(onBridge) != len(v4) {
		t.Errorf("before the uplink became a port, the bridge got %v, want the host's %d IPv4 addresses (events %v)", onBridge, len(v4), order)
	}
	// An endpoint's port of the default MTU joins: the host's MTU stays.
	port := &netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: "hnvport0", MTU: 1500}, PeerName: "hnvport0p"}
	if err := nh.LinkAdd(port); err != nil {
		t.Fatal(err)
	}
	br, _ := nh.LinkByName("hnbr0")
	if err := nh.LinkSetMaster(port, br); err != nil {
		t.Fatal(err)
	}
	if br, _ := nh.LinkByName("hnbr0"); br.Attrs().MTU != 9000 {
		t.Errorf("the bridge's MTU is %d once a 1500-byte port joined, want the uplink's 9000", br.Attrs().MTU)
	}
	if err := nh.LinkDel(port); err != nil {
		t.Fatal(err)
	}
	apply("again", []netmodel.Object{bridge, hand}, nil)
	handedOver("again")

	// Cut short: an address back on the uplink, the default route too.
	a, _ := netlink.ParseAddr("192.0.2.10/24")
	if err := nh.AddrAdd(up, a); err != nil {
		t.Fatal(err)
	}
	o, err := h.Observe(ctx, netmodel.Query{})
	if err != nil {
		t.Fatal(err)
	}
	if oh := o.Handovers[hand.Key()]; len(oh.Left) == 0 {
		t.Error("an address left on the uplink is not observed")
	}
	apply("finish", []netmodel.Object{bridge, hand}, nil)
	handedOver("finish")

	apply("remove", nil, []netmodel.Object{hand, bridge})
	handedBack("remove")

	apply("hand over again", []netmodel.Object{bridge, hand}, nil)
	handedOver("hand over again")
	apply("the bridge alone goes", nil, []netmodel.Object{bridge})
	handedBack("the bridge alone goes")
}

// A device a user put on a hostnet bridge by hand (a VM's tap on a NAT
// network's bridge) is no uplink: it is not observed as a handover, and
// deleting the bridge leaves it as it was, without the bridge's address
// (hostnet's gateway).
func TestForeignPortIsNoUplink(t *testing.T) {
	ctx := context.Background()
	h, nh, _ := kernelHost(t)
	gateway := netip.MustParsePrefix("172.16.0.1/20")
	bridge := netmodel.Link{Name: "hnbr0", Kind: netmodel.LinkBridge, MAC: net.HardwareAddr{2, 0, 0, 0, 0xbb, 1}, Up: true}
	if err := h.Apply(ctx, []netmodel.Object{bridge, netmodel.Addr{Link: "hnbr0", Prefix: gateway}}, nil); err != nil {
		t.Fatal(err)
	}
	br, err := nh.LinkByName("hnbr0")
	if err != nil {
		t.Fatal(err)
	}
	if err := nh.LinkAdd(&netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: "vmtap0", MasterIndex: br.Attrs().Index}, PeerName: "vmtap0p"}); err != nil {
		t.Fatal(err)
	}
	tap, _ := nh.LinkByName("vmtap0")
	if err := nh.LinkSetUp(tap); err != nil {
		t.Fatal(err)
	}
	o, err := h.Observe(ctx, netmodel.Query{})
	if err != nil {
		t.Fatal(err)
	}
	if len(o.Handovers) != 0 {
		t.Errorf("a foreign port of a NAT bridge is observed as a handover: %+v", o.Handovers)
	}
	if err := h.Apply(ctx, nil, []netmodel.Object{bridge}); err != nil {
		t.Fatalf("delete the bridge: %v", err)
	}
	if _, err := nh.LinkByName("hnbr0"); err == nil {
		t.Error("the bridge is still there")
	}
	addrs, err := nh.AddrList(tap, netlink.FAMILY_V4)
	if err != nil {
		t.Fatal(err)
	}
	if len(addrs) != 0 {
		t.Errorf("the foreign port took the bridge's addresses: %v", addrs)
	}
}

// kernelHost opens hostnet's dataplane on a throwaway namespace the test
// made ("host"), and a netlink handle in it for the test's own looks and
// changes; both close with the test.
func kernelHost(t *testing.T) (h *Linux, nh *netlink.Handle, hostPath string) {
	t.Helper()
	hostPath, hostNS := testutil.NewNS(t, "host")
	h, err := OpenLinux(hostPath, HostConfig{LinkPrefixes: []string{"hn"}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { h.Close() })
	nh, err = netlink.NewHandleAt(hostNS, unix.NETLINK_ROUTE)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nh.Close)
	return h, nh, hostPath
}

// An endpoint's port planned without an MTU takes its bridge's, on both
// sides: on a bridge holding a jumbo-frame uplink, endpoints get the
// uplink's MTU.
func TestPortTakesBridgeMTU(t *testing.T) {
	ctx := context.Background()
	h, nh, _ := kernelHost(t)
	epPath, epNS := testutil.NewNS(t, "ep")
	ep := netmodel.NS{Path: epPath}
	objs := []netmodel.Object{
		netmodel.Link{Name: "hnbr0", Kind: netmodel.LinkBridge, MTU: 9000, Up: true},
		netmodel.Link{Name: "hnvp1", Kind: netmodel.LinkVeth, Master: "hnbr0", Up: true, Seal: true, Peer: &netmodel.LinkRef{NS: ep, Name: "eth0"}},
		netmodel.Link{NS: ep, Name: "eth0", Kind: netmodel.LinkVeth, Up: true, Peer: &netmodel.LinkRef{Name: "hnvp1"}},
	}
	if err := h.Apply(ctx, objs, nil); err != nil {
		t.Fatal(err)
	}
	port, err := nh.LinkByName("hnvp1")
	if err != nil {
		t.Fatal(err)
	}
	eh, err := netlink.NewHandleAt(epNS, unix.NETLINK_ROUTE)
	if err != nil {
		t.Fatal(err)
	}
	defer eh.Close()
	nic, err := eh.LinkByName("eth0")
	if err != nil {
		t.Fatal(err)
	}
	if port.Attrs().MTU != 9000 || nic.Attrs().MTU != 9000 {
		t.Errorf("port MTU %d, endpoint's NIC %d; want the bridge's 9000", port.Attrs().MTU, nic.Attrs().MTU)
	}
	if br, _ := nh.LinkByName("hnbr0"); br.Attrs().MTU != 9000 {
		t.Errorf("the bridge's MTU went to %d", br.Attrs().MTU)
	}
}

// An uplink freed from its bridge by someone else is told at once (the
// host's addresses, on the bridge, are off the segment until it is taken
// again), as are an address put on it and a device of hostnet's deleted;
// hostnet's own handback is not told.
func TestFreedUplinkIsReported(t *testing.T) {
	ctx := context.Background()
	h, nh, _ := kernelHost(t)
	if err := nh.LinkAdd(&netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: "uplink0"}, PeerName: "uplink0p"}); err != nil {
		t.Fatal(err)
	}
	up, _ := nh.LinkByName("uplink0")
	if err := nh.LinkSetUp(up); err != nil {
		t.Fatal(err)
	}
	a, _ := netlink.ParseAddr("192.0.2.10/24")
	if err := nh.AddrAdd(up, a); err != nil {
		t.Fatal(err)
	}
	objs := []netmodel.Object{
		netmodel.Link{Name: "hnbr0", Kind: netmodel.LinkBridge, Up: true},
		netmodel.UplinkHandover{Uplink: "uplink0", Bridge: "hnbr0"},
	}
	if err := h.Apply(ctx, objs, nil); err != nil {
		t.Fatal(err)
	}
	changes := make(chan Change, 64)
	wctx, stop := context.WithCancel(ctx)
	defer stop()
	if err := h.Watch(wctx, func(c Change) { changes <- c }, func(err error) { t.Logf("watch: %v", err) }); err != nil {
		t.Fatal(err)
	}
	expect := func(what, reason string) {
		t.Helper()
		for deadline := time.After(5 * time.Second); ; {
			select {
			case c := <-changes:
				if strings.Contains(c.Reason, reason) {
					return
				}
			case <-deadline:
				t.Errorf("%s was not reported", what)
				return
			}
		}
	}
	if err := nh.LinkSetNoMaster(up); err != nil {
		t.Fatal(err)
	}
	expect("the uplink freed by hand", "device uplink0 left bridge hnbr0")
	if err := h.Apply(ctx, objs, nil); err != nil {
		t.Fatal(err)
	}
	if up, _ := nh.LinkByName("uplink0"); up.Attrs().MasterIndex == 0 {
		t.Fatal("the uplink was not taken again")
	}
	// An address put on the uplink (a DHCP client's renewal): told.
	b, _ := netlink.ParseAddr("198.18.0.10/24")
	if err := nh.AddrAdd(up, b); err != nil {
		t.Fatal(err)
	}
	expect("an address put on the uplink", "address 198.18.0.10/24 was put on uplink0")
	// A port of hostnet's deleted by hand: told, naming it.
	if err := nh.LinkAdd(&netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: "hnvgone"}, PeerName: "hnvgonep"}); err != nil {
		t.Fatal(err)
	}
	gone, _ := nh.LinkByName("hnvgone")
	if err := nh.LinkDel(gone); err != nil {
		t.Fatal(err)
	}
	expect("a device of hostnet's deleted", "device hnvgone was removed")
	// Hostnet's own handback: no report of the uplink.
	if err := h.Apply(ctx, nil, objs); err != nil {
		t.Fatal(err)
	}
	deadline := time.After(500 * time.Millisecond)
	for {
		select {
		case c := <-changes:
			if strings.Contains(c.Reason, "uplink0") {
				t.Errorf("hostnet's own handback reported: %+v", c)
			}
			continue
		case <-deadline:
		}
		break
	}
}
