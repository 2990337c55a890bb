package nft

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/hostnet/hostnet/internal/dataplane/netns"
	"github.com/hostnet/hostnet/internal/nftmodel"
	"github.com/hostnet/hostnet/internal/nftmodel/nfttest"
	"golang.org/x/sys/unix"
)

// The Fake takes a netdev table as the Kernel does: a second Apply sends
// nothing, a new device recreates the base chains, a dynamic set refuses
// patches, and the dump is the table's text.
func TestFakeNetdev(t *testing.T) {
	f := NewFake()
	tbl := nfttest.Netdev("up0")
	if err := f.Apply(tbl); err != nil {
		t.Fatal(err)
	}
	if got := f.Dump(); got != tbl.String() {
		t.Errorf("dump:\n%s\nwant:\n%s", got, tbl.String())
	}
	if err := f.Apply(nfttest.Netdev("up0")); err != nil || len(f.LastOps()) != 0 {
		t.Errorf("second apply: %v, ops %q", err, f.LastOps())
	}
	if err := f.Apply(nfttest.Netdev("up1")); err != nil {
		t.Fatal(err)
	}
	if want := []string{"flush chain egress", "flush chain ingress", "delete chain egress", "delete chain ingress",
		"add chain egress", "add chain ingress", "add 4 rules to chain egress", "add 5 rules to chain ingress"}; !reflect.DeepEqual(f.LastOps(), want) {
		t.Errorf("new device: ops %q, want %q", f.LastOps(), want)
	}
	err := f.Patch(nftmodel.TablePatch{Family: nftmodel.FamilyNetdev, Table: "hostnet", AddElements: map[string][]string{"replies4": {"10.0.0.1 . 10.0.0.2 . tcp . 80 . 4000"}}})
	if err == nil || !strings.Contains(err.Error(), "set replies4 is dynamic") {
		t.Errorf("patch of a dynamic set: %v", err)
	}
	if got := f.FamilyTable(nftmodel.FamilyNetdev, "hostnet"); got == nil || got.String() != nfttest.Netdev("up1").String() {
		t.Errorf("FamilyTable: %v", got)
	}
}

// A netdev table reads back as applied: chains with their devices,
// dynamic sets with their timeouts and sizes (a size left to the kernel
// takes the kernel's); applying it again, or adopting it with a new
// Kernel, sends nothing, even once the kernel filled its sets.
func TestKernelNetdev(t *testing.T) {
	if nftmodel.MetaProtocol != unix.NFT_META_PROTOCOL || nftmodel.MetaL4Proto != unix.NFT_META_L4PROTO {
		t.Fatalf("meta keys: protocol %d, l4proto %d", nftmodel.MetaProtocol, nftmodel.MetaL4Proto)
	}
	// up0 does not exist in that namespace: the kernel (6.16 and later)
	// takes a netdev chain for a device it does not have, and lists it.
	ns, k, _ := adopted(t, func() *nftmodel.Table { return nfttest.Netdev("up0") })
	// Moved to another device: the base chains are recreated.
	veth(t, ns, newNS(t), "up2", "up3")
	mustApply(t, k, nfttest.Netdev("up2"), []string{"flush chain egress", "flush chain ingress", "delete chain egress", "delete chain ingress",
		"add chain egress", "add chain ingress", "add 4 rules to chain egress", "add 5 rules to chain ingress"})
	// A size left to the kernel: the kernel picks one when a rule binds
	// the set; the table still reads back equal.
	unsized := func() *nftmodel.Table {
		tbl := nfttest.Netdev("up2")
		for _, s := range tbl.Sets {
			s.Size = 0
		}
		return tbl
	}
	ns2 := newNS(t)
	veth(t, ns2, newNS(t), "up2", "up3")
	if err := newKernel(t, ns2).Apply(unsized()); err != nil {
		t.Fatal(err)
	}
	k2 := newKernel(t, ns2)
	if err := k2.Apply(unsized()); err != nil || len(k2.lastBatch) != 0 {
		t.Errorf("unsized, adopted: %v, sent %q", err, k2.lastBatch)
	}
	if drift, err := k2.Drift(unsized()); err != nil || len(drift) != 0 {
		t.Errorf("unsized: drift %q, %v", drift, err)
	}
	// A new timeout recreates the sets and refills the chains that use
	// them.
	tbl := nfttest.Netdev("up2")
	tbl.Sets[0].Timeout = time.Minute
	mustApply(t, k, tbl, []string{"flush chain egress", "flush chain ingress", "delete set replies4", "add set replies4",
		"add 4 rules to chain egress", "add 5 rules to chain ingress"})
	if err := k.DeleteTable(nftmodel.FamilyNetdev, "hostnet"); err != nil {
		t.Fatal(err)
	}
	if ok, err := k.TableExists(nftmodel.FamilyNetdev, "hostnet"); err != nil || ok {
		t.Errorf("after DeleteTable: exists %v, %v", ok, err)
	}
}

// echoUDP answers every datagram on c with the same payload, until c
// closes.
func echoUDP(c *net.UDPConn) {
	buf := make([]byte, 1500)
	for {
		n, from, err := c.ReadFromUDPAddrPort(buf)
		if err != nil {
			return
		}
		_, _ = c.WriteToUDPAddrPort(buf[:n], from)
	}
}

// udpExchange sends payload from src (port 0) to dst inside ns and
// returns the answer, "" when none comes within timeout.
func udpExchange(t *testing.T, ns netns.Handle, src, dst, payload string, timeout time.Duration) string {
	t.Helper()
	var got string
	err := netns.Do(ns, func() error {
		c, err := net.DialUDP("udp", &net.UDPAddr{IP: net.ParseIP(src)}, net.UDPAddrFromAddrPort(netip.MustParseAddrPort(dst)))
		if err != nil {
			return err
		}
		defer c.Close()
		if _, err := c.Write([]byte(payload)); err != nil {
			return err
		}
		buf := make([]byte, 1500)
		c.SetReadDeadline(time.Now().Add(timeout))
		n, err := c.Read(buf)
		if errors.Is(err, os.ErrDeadlineExceeded) {
			return nil
		}
		got = string(buf[:n])
		return err
	})
	if err != nil {
		t.Fatalf("udp %s -> %s: %v", src, dst, err)
	}
	return got
}

// ping sends one ICMP echo request (identifier id) from inside ns to dst
// on a raw socket and reports whether its reply comes within timeout.
func ping(t *testing.T, ns netns.Handle, dst string, id uint16, timeout time.Duration) bool {
	t.Helper()
	var replied bool
	err := netns.Do(ns, func() error {
		fd, err := unix.Socket(unix.AF_INET, unix.SOCK_RAW|unix.SOCK_CLOEXEC, unix.IPPROTO_ICMP)
		if err != nil {
			return err
		}
		defer unix.Close(fd)
		to := &unix.SockaddrInet4{Addr: netip.MustParseAddr(dst).As4()}
		msg := []byte{8, 0, 0, 0, byte(id >> 8), byte(id), 0, 1, 'h', 'n'}
		binary.BigEndian.PutUint16(msg[2:], icmpChecksum(msg))
		if err := unix.Sendto(fd, msg, 0, to); err != nil {
			return fmt.Errorf("send: %w", err)
		}
		deadline := time.Now().Add(timeout)
		buf := make([]byte, 1500)
		for time.Now().Before(deadline) {
			tv := unix.NsecToTimeval(time.Until(deadline).Nanoseconds())
			if err := unix.SetsockoptTimeval(fd, unix.SOL_SOCKET, unix.SO_RCVTIMEO, &tv); err != nil {
				return err
			}
			n, _, err := unix.Recvfrom(fd, buf, 0)
			if errors.Is(err, unix.EAGAIN) || errors.Is(err, unix.EINTR) {
				continue
			}
			if err != nil {
				return fmt.Errorf("receive: %w", err)
			}
			// A raw socket gets the IP header; the reply is type 0 with
			// our identifier.
			if n < 20 {
				continue
			}
			hl := int(buf[0]&0x0f) * 4
			if n >= hl+8 && buf[hl] == 0 && binary.BigEndian.Uint16(buf[hl+4:]) == id {
				replied = true
				return nil
			}
		}
		return nil
	})
	if err != nil {
		t.Fatalf("ping %s: %v", dst, err)
	}
	return replied
}

func icmpChecksum(b []byte) uint16 {
	var sum uint32
	for i := 0; i+1 < len(b); i += 2 {
		sum += uint32(b[i])<<8 | uint32(b[i+1])
	}
	if len(b)%2 == 1 {
		sum += uint32(b[len(b)-1]) << 8
	}
	for sum>>16 != 0 {
		sum = sum&0xffff + sum>>16
	}
	return ^uint16(sum)
}

// counted returns, for each rule of the chain, how many packets its counter
// counted since before (nil: since the start).
func counted(t *testing.T, k *Kernel, chain string, before []uint64) []uint64 {
	t.Helper()
	now := familyPackets(t, k, nftmodel.FamilyNetdev, "hostnet", chain)
	out := make([]uint64, len(now))
	for i := range now {
		out[i] = now[i]
		if before != nil {
			out[i] -= before[i]
		}
	}
	return out
}

// TestPacketNetdevFlows puts the flow table of nfttest.Netdev on the
// "uplink" up0 of namespace in (its peer up1 is in namespace out): flows
// that in starts (UDP, TCP, ICMP echo) get their replies, admitted at
// up0's ingress because up0's egress recorded them; the same flows
// started from out are dropped at up0's ingress. The counters of the
// ingress rules show which rule judged.
func TestPacketNetdevFlows(t *testing.T) {
	in, out := newNS(t), newNS(t)
	veth(t, in, out, "up0", "up1")
	addrs(t, in, "up0", "10.88.0.1/24")
	addrs(t, out, "up1", "10.88.0.2/24")
	k := newKernel(t, in)
	mustApply(t, k, nfttest.Netdev("up0"), nil)

	go echoUDP(listenUDP(t, out, "10.88.0.2:7"))
	go echoUDP(listenUDP(t, in, "10.88.0.1:7"))
	serveTCP(t, out, "tcp4", "10.88.0.2:80")
	serveTCP(t, in, "tcp4", "10.88.0.1:80")

	const (
		portReplies = iota // ingress rules, as nfttest.Netdev numbers them
		echoReplies
		dropped
	)
	before := counted(t, k, "ingress", nil)
	if got := udpExchange(t, in, "10.88.0.1", "10.88.0.2:7", "udp from in", 3*time.Second); got != "udp from in" {
		t.Errorf("UDP from in: reply %q", got)
	}
	if c := counted(t, k, "ingress", before); c[portReplies] != 1 || c[dropped] != 0 {
		t.Errorf("UDP reply: counted %v, want one reply and no drop", c)
	}
	before = counted(t, k, "ingress", nil)
	expectTCP(t, in, "10.88.0.2:80", "10.88.0.2:80 from 10.88.0.1:")
	if c := counted(t, k, "ingress", before); c[portReplies] < 2 || c[dropped] != 0 {
		t.Errorf("TCP replies: counted %v, want the server's segments as replies and no drop", c)
	}
	before = counted(t, k, "ingress", nil)
	if !ping(t, in, "10.88.0.2", 0x4e01, 3*time.Second) {
		t.Error("ping from in: no reply")
	}
	if c := counted(t, k, "ingress", before); c[echoReplies] != 1 || c[dropped] != 0 {
		t.Errorf("echo reply: counted %v, want one echo reply and no drop", c)
	}

	// The same, started from out: dropped at up0's ingress.
	before = counted(t, k, "ingress", nil)
	if got := udpExchange(t, out, "10.88.0.2", "10.88.0.1:7", "udp from out", 500*time.Millisecond); got != "" {
		t.Errorf("UDP from out: reply %q, want the request dropped", got)
	}
	if c := counted(t, k, "ingress", before); c[dropped] != 1 || c[portReplies] != 0 {
		t.Errorf("UDP from out: counted %v, want one drop", c)
	}
	before = counted(t, k, "ingress", nil)
	if got, err := dialTCP(out, "10.88.0.1:80", time.Second); err == nil {
		t.Errorf("TCP from out reached %q, want the SYN dropped", got)
	}
	if c := counted(t, k, "ingress", before); c[dropped] < 1 || c[portReplies] != 0 {
		t.Errorf("TCP from out: counted %v, want the SYN dropped", c)
	}
	before = counted(t, k, "ingress", nil)
	if ping(t, out, "10.88.0.1", 0x4e02, time.Second) {
		t.Error("ping from out: replied, want the request dropped")
	}
	if c := counted(t, k, "ingress", before); c[dropped] != 1 || c[echoReplies] != 0 {
		t.Errorf("ping from out: counted %v, want one drop", c)
	}
	// The flows recorded leave the table as applied.
	mustApply(t, k, nfttest.Netdev("up0"), []string{})
}
