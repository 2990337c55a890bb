package dataplane

import (
	"context"
	"encoding/binary"
	"net"
	"net/netip"
	"slices"
	"testing"

	"github.com/hostnet/hostnet/internal/dataplane/netns"
	"github.com/hostnet/hostnet/internal/dataplane/nft"
	"github.com/hostnet/hostnet/internal/nftmodel"
	"github.com/hostnet/hostnet/internal/testutil"
	"github.com/mdlayher/netlink"
	vnl "github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// ctHost opens a throwaway namespace as a Host, with loopback up; both go
// when the test ends.
func ctHost(tb testing.TB) (*Linux, netns.Handle) {
	tb.Helper()
	path, _ := testutil.NewNS(tb, "ct")
	host, err := OpenLinux(path, HostConfig{})
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(host.Close)
	lo, err := host.nl.LinkByName("lo")
	if err != nil {
		tb.Fatal(err)
	}
	if err := host.nl.LinkSetUp(lo); err != nil {
		tb.Fatal(err)
	}
	return host, host.NS()
}

// trackLoopback makes the namespace track its own traffic: conntrack
// follows packets only in a namespace where something uses it, here a `ct
// state` rule (`nft add rule inet cttest out ct state established accept`).
func trackLoopback(t *testing.T, ns netns.Handle) {
	t.Helper()
	k, err := nft.NewKernel(int(ns))
	if err != nil {
		t.Fatal(err)
	}
	defer k.Close()
	err = k.Apply(&nftmodel.Table{Name: "cttest", Chains: []*nftmodel.Chain{{
		Name: "out", Type: nftmodel.ChainTypeFilter, Hook: nftmodel.HookOutput, Priority: nftmodel.PriorityFilter,
		Rules: []nftmodel.Rule{{Comment: "track", Exprs: []nftmodel.Expr{nftmodel.CtState("established"), nftmodel.Accept()}}},
	}}})
	if err != nil {
		t.Fatal(err)
	}
}

// sendUDP sends one datagram from src to dst, where a socket listens, from
// inside ns.
func sendUDP(t *testing.T, ns netns.Handle, src, dst netip.AddrPort) {
	t.Helper()
	err := netns.Do(ns, func() error {
		l, err := net.ListenUDP("udp", net.UDPAddrFromAddrPort(dst))
		if err != nil {
			return err
		}
		defer l.Close()
		c, err := net.DialUDP("udp", net.UDPAddrFromAddrPort(src), net.UDPAddrFromAddrPort(dst))
		if err != nil {
			return err
		}
		defer c.Close()
		_, err = c.Write([]byte("hello"))
		return err
	})
	if err != nil {
		t.Fatalf("udp %s -> %s: %v", src, dst, err)
	}
}

// ping sends an echo request to addr from inside ns; the kernel answers.
func ping(t *testing.T, ns netns.Handle, addr netip.Addr) {
	t.Helper()
	network, msg := "ip4:icmp", []byte{8, 0, 0, 0, 0x12, 0x34, 0, 1}
	if addr.Is6() {
		network, msg[0] = "ip6:ipv6-icmp", 128 // the kernel sums ICMPv6
	} else {
		binary.BigEndian.PutUint16(msg[2:], inetChecksum(msg))
	}
	err := netns.Do(ns, func() error {
		c, err := net.ListenPacket(network, addr.String())
		if err != nil {
			return err
		}
		defer c.Close()
		_, err = c.WriteTo(msg, &net.IPAddr{IP: addr.AsSlice()})
		return err
	})
	if err != nil {
		t.Fatalf("ping %s: %v", addr, err)
	}
}

func inetChecksum(b []byte) uint16 {
	var sum uint32
	for i := 0; i+1 < len(b); i += 2 {
		sum += uint32(binary.BigEndian.Uint16(b[i:]))
	}
	for sum > 0xffff {
		sum = sum>>16 + sum&0xffff
	}
	return ^uint16(sum)
}

// listFlows is `conntrack -L`: a DeleteFlows that deletes nothing.
func listFlows(t *testing.T, h *Linux) []Flow {
	t.Helper()
	var flows []Flow
	n, err := h.DeleteFlows(context.Background(), func(f Flow) bool {
		flows = append(flows, f)
		return false
	})
	if err != nil || n != 0 {
		t.Fatalf("listing flows: %d deleted, %v", n, err)
	}
	return flows
}

func hasFlow(flows []Flow, proto uint8, src, dst netip.AddrPort) bool {
	return slices.ContainsFunc(flows, func(f Flow) bool {
		return f.Proto == proto && f.OrigSrc == src && f.OrigDst == dst && f.ReplySrc == dst && f.ReplyDst == src
	})
}

func TestDeleteFlows(t *testing.T) {
	host, ns := ctHost(t)
	trackLoopback(t, ns)
	src4, dst4 := netip.MustParseAddrPort("127.0.0.1:40001"), netip.MustParseAddrPort("127.0.0.1:40002")
	src6, dst6 := netip.MustParseAddrPort("[::1]:40001"), netip.MustParseAddrPort("[::1]:40002")
	sendUDP(t, ns, src4, dst4)
	sendUDP(t, ns, src6, dst6)
	ping(t, ns, src4.Addr())
	ping(t, ns, src6.Addr())

	// One call sees the flows of both families, ICMP ones without ports.
	flows := listFlows(t, host)
	icmp4 := netip.AddrPortFrom(src4.Addr(), 0)
	icmp6 := netip.AddrPortFrom(src6.Addr(), 0)
	for _, want := range []struct {
		proto    uint8
		src, dst netip.AddrPort
	}{{unix.IPPROTO_UDP, src4, dst4}, {unix.IPPROTO_UDP, src6, dst6}, {unix.IPPROTO_ICMP, icmp4, icmp4}, {unix.IPPROTO_ICMPV6, icmp6, icmp6}} {
		if !hasFlow(flows, want.proto, want.src, want.dst) {
			t.Errorf("no flow proto %d %s -> %s in %v", want.proto, want.src, want.dst, flows)
		}
	}

	// Only the IPv4 UDP flow goes.
	n, err := host.DeleteFlows(context.Background(), func(f Flow) bool { return f.Proto == unix.IPPROTO_UDP && f.OrigSrc.Addr().Is4() })
	if err != nil || n != 1 {
		t.Fatalf("deleting the IPv4 UDP flow: %d deleted, %v", n, err)
	}
	flows = listFlows(t, host)
	if hasFlow(flows, unix.IPPROTO_UDP, src4, dst4) || !hasFlow(flows, unix.IPPROTO_UDP, src6, dst6) {
		t.Errorf("after deleting the IPv4 UDP flow: %v", flows)
	}

	// The rest goes, ICMP flows included (their tuples carry type, code
	// and id, which Flow does not keep).
	n, err = host.DeleteFlows(context.Background(), func(Flow) bool { return true })
	if err != nil || n != len(flows) {
		t.Fatalf("deleting all %d flows: %d deleted, %v", len(flows), n, err)
	}
	if flows := listFlows(t, host); len(flows) != 0 {
		t.Errorf("flows left: %v", flows)
	}
}

const ctMsgNew = unix.NFNL_SUBSYS_CTNETLINK << 8 // IPCTNL_MSG_CT_NEW (0)

// insertFlow adds a UDP flow to the tracker of ns in zone (0: none), as
// `conntrack -I -p udp -s SRC -d DST --sport P --dport P -t 60 -w ZONE`.
func insertFlow(t *testing.T, ns netns.Handle, zone uint16, src, dst netip.AddrPort) {
	t.Helper()
	c, err := dialConntrack(ns)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	ae := netlink.NewAttributeEncoder()
	ae.ByteOrder = binary.BigEndian
	ae.Nested(ctaTupleOrig, tupleEncoder(src, dst))
	ae.Nested(ctaTupleReply, tupleEncoder(dst, src))
	ae.Uint32(7, 60) // CTA_TIMEOUT
	if zone != 0 {
		ae.Uint16(ctaZone, zone)
	}
	b, err := ae.Encode()
	if err != nil {
		t.Fatal(err)
	}
	family := uint8(unix.AF_INET)
	if src.Addr().Is6() {
		family = unix.AF_INET6
	}
	if _, err := ctExchange(c, ctRequest(ctMsgNew, netlink.Create|netlink.Excl|netlink.Acknowledge, family, b)); err != nil {
		t.Fatalf("insert flow %s -> %s in zone %d: %v", src, dst, zone, err)
	}
}

func tupleEncoder(src, dst netip.AddrPort) func(*netlink.AttributeEncoder) error {
	return func(ae *netlink.AttributeEncoder) error {
		ae.ByteOrder = binary.BigEndian
		ipSrc, ipDst := uint16(ctaIPv4Src), uint16(ctaIPv4Dst)
		if src.Addr().Is6() {
			ipSrc, ipDst = ctaIPv6Src, ctaIPv6Dst
		}
		ae.Nested(ctaTupleIP, func(ae *netlink.AttributeEncoder) error {
			ae.Bytes(ipSrc, src.Addr().AsSlice())
			ae.Bytes(ipDst, dst.Addr().AsSlice())
			return nil
		})
		ae.Nested(ctaTupleProto, func(ae *netlink.AttributeEncoder) error {
			ae.ByteOrder = binary.BigEndian
			ae.Uint8(ctaProtoNum, unix.IPPROTO_UDP)
			ae.Uint16(ctaProtoSrcPort, src.Port())
			ae.Uint16(ctaProtoDstPort, dst.Port())
			return nil
		})
		return nil
	}
}

// TestDeleteFlowsZones deletes two flows with the same tuple in zones 0
// and 7: each delete must name its zone, or the first would remove the
// zone 0 flow and the second find nothing, leaving the zone 7 one.
func TestDeleteFlowsZones(t *testing.T) {
	host, ns := ctHost(t)
	src, dst := netip.MustParseAddrPort("10.1.0.1:1000"), netip.MustParseAddrPort("10.1.0.2:2000")
	insertFlow(t, ns, 7, src, dst)
	insertFlow(t, ns, 0, src, dst)
	if flows := listFlows(t, host); len(flows) != 2 {
		t.Fatalf("flows after inserting two: %v", flows)
	}
	n, err := host.DeleteFlows(context.Background(), func(Flow) bool { return true })
	if err != nil || n != 2 {
		t.Fatalf("deleting both flows: %d deleted, %v", n, err)
	}
	if flows := listFlows(t, host); len(flows) != 0 {
		t.Errorf("flows left: %v", flows)
	}
}

// deleteFlowsTwoWalks is DeleteFlows as it was before it walked once: a
// walk per family with vishvananda/netlink (`conntrack -D -f ipv4 ...;
// conntrack -D -f ipv6 ...`), here selecting nothing.
func deleteFlowsTwoWalks(ns netns.Handle) (int, error) {
	ct, err := vnl.NewHandleAt(ns, unix.NETLINK_NETFILTER)
	if err != nil {
		return 0, err
	}
	defer ct.Close()
	total := 0
	for _, fam := range []vnl.InetFamily{unix.AF_INET, unix.AF_INET6} {
		n, err := ct.ConntrackDeleteFilters(vnl.ConntrackTable, fam, noFlows{})
		total += int(n)
		if err != nil {
			return total, err
		}
	}
	return total, nil
}

type noFlows struct{}

func (noFlows) MatchConntrackFlow(*vnl.ConntrackFlow) bool { return false }

// BenchmarkDeleteFlows compares one walk of an empty tracker (its cost is
// the host-wide hash table's size) with the two walks DeleteFlows made
// before, including opening the socket as each does.
func BenchmarkDeleteFlows(b *testing.B) {
	host, ns := ctHost(b)
	var one, two float64
	b.Run("one_walk", func(b *testing.B) {
		for range b.N {
			if _, err := host.DeleteFlows(context.Background(), func(Flow) bool { return false }); err != nil {
				b.Fatal(err)
			}
		}
		one = float64(b.Elapsed().Nanoseconds()) / float64(b.N)
	})
	b.Run("two_walks", func(b *testing.B) {
		for range b.N {
			if _, err := deleteFlowsTwoWalks(ns); err != nil {
				b.Fatal(err)
			}
		}
		two = float64(b.Elapsed().Nanoseconds()) / float64(b.N)
		if one > 0 {
			b.ReportMetric(two/one, "x_one_walk")
		}
	})
	if one > 0 && two > 0 {
		b.Logf("one walk %.0f ns/op, two walks %.0f ns/op: %.2fx", one, two, two/one)
	}
}
