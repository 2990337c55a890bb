package e2e

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// Probes that send one real packet and say whether it arrived. Each runs
// from inside a namespace (see In); a socket made there stays there.

// probe reports whether a line sent from the namespace at path to addr
// over network (tcp or udp) is answered: for TCP, the connection is
// accepted too.
func probe(t *testing.T, network, path, addr string) bool {
	t.Helper()
	c, err := Dial(t, path, network, addr, 700*time.Millisecond)
	if err != nil {
		return false
	}
	defer c.Close()
	_, err = Exchange(c, "probe", 700*time.Millisecond)
	return err == nil
}

// probeTCP is probe over TCP.
func probeTCP(t *testing.T, path, addr string) bool { t.Helper(); return probe(t, "tcp", path, addr) }

// settle runs a probe expected to give want: one expected to succeed is
// tried again for up to 10 s (a loaded machine makes the first try late,
// not wrong); one expected to fail is tried once, for a loaded machine can
// only make it fail sooner.
func settle(want bool, probe func() bool) bool {
	if !want {
		return probe()
	}
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(100 * time.Millisecond) {
		if probe() {
			return true
		}
		if time.Now().After(deadline) {
			return false
		}
	}
}

// reachTCP is probeTCP expected to succeed (see settle).
func reachTCP(t *testing.T, path, addr string) bool {
	t.Helper()
	return settle(true, func() bool { return probeTCP(t, path, addr) })
}

// probeUDP is probe over UDP: a datagram answered.
func probeUDP(t *testing.T, path, addr string) bool { t.Helper(); return probe(t, "udp", path, addr) }

// listenRaw opens a raw IPv4 socket for IP protocol proto in the namespace
// at path; received returns whether a packet from src arrived since.
func listenRaw(t *testing.T, path string, proto int) (received func(src netip.Addr) bool) {
	t.Helper()
	var fd int
	In(t, path, func() error {
		var err error
		fd, err = unix.Socket(unix.AF_INET, unix.SOCK_RAW|unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC, proto)
		return err
	})
	t.Cleanup(func() { unix.Close(fd) })
	return func(src netip.Addr) bool {
		deadline := time.Now().Add(700 * time.Millisecond)
		buf := make([]byte, 2048)
		for time.Now().Before(deadline) {
			n, from, err := unix.Recvfrom(fd, buf, 0)
			if errors.Is(err, unix.EAGAIN) {
				time.Sleep(20 * time.Millisecond)
				continue
			}
			if err != nil {
				return false
			}
			if sa, ok := from.(*unix.SockaddrInet4); ok && netip.AddrFrom4(sa.Addr) == src && n > 0 {
				return true
			}
		}
		return false
	}
}

// sendRaw sends one IPv4 packet of protocol proto from the namespace at
// path to dst, with a small payload.
func sendRaw(t *testing.T, path string, proto int, dst netip.Addr) {
	t.Helper()
	In(t, path, func() error {
		fd, err := unix.Socket(unix.AF_INET, unix.SOCK_RAW|unix.SOCK_CLOEXEC, proto)
		if err != nil {
			return err
		}
		defer unix.Close(fd)
		return unix.Sendto(fd, []byte("hostnet-probe"), 0, &unix.SockaddrInet4{Addr: dst.As4()})
	})
}

// probeProto reports whether an IPv4 packet of protocol proto from the
// namespace at from reaches the namespace at to (whose address is dst;
// src is the sender's address as the receiver should see it).
func probeProto(t *testing.T, from, to string, proto int, src, dst netip.Addr) bool {
	t.Helper()
	received := listenRaw(t, to, proto)
	sendRaw(t, from, proto, dst)
	return received(src)
}

// probePing reports whether an ICMP echo from the namespace at path to dst
// is answered.
func probePing(t *testing.T, path string, dst netip.Addr) bool {
	t.Helper()
	ok := false
	In(t, path, func() error {
		fd, err := unix.Socket(unix.AF_INET, unix.SOCK_RAW|unix.SOCK_CLOEXEC, unix.IPPROTO_ICMP)
		if err != nil {
			return err
		}
		defer unix.Close(fd)
		echo := []byte{8, 0, 0, 0, 0x12, 0x34, 0, 1, 'h', 'n'}
		binary.BigEndian.PutUint16(echo[2:], checksum(echo))
		if err := unix.Sendto(fd, echo, 0, &unix.SockaddrInet4{Addr: dst.As4()}); err != nil {
			return err
		}
		tv := unix.NsecToTimeval(int64(700 * time.Millisecond))
		_ = unix.SetsockoptTimeval(fd, unix.SOL_SOCKET, unix.SO_RCVTIMEO, &tv)
		buf := make([]byte, 1500)
		for {
			n, from, err := unix.Recvfrom(fd, buf, 0)
			if err != nil {
				return nil
			}
			sa, _ := from.(*unix.SockaddrInet4)
			ihl := int(buf[0]&0x0f) * 4
			if sa != nil && netip.AddrFrom4(sa.Addr) == dst && n > ihl && buf[ihl] == 0 && buf[ihl+4] == 0x12 {
				ok = true
				return nil
			}
		}
	})
	return ok
}

func checksum(b []byte) uint16 {
	var sum uint32
	for i := 0; i+1 < len(b); i += 2 {
		sum += uint32(b[i])<<8 | uint32(b[i+1])
	}
	if len(b)%2 == 1 {
		sum += uint32(b[len(b)-1]) << 8
	}
	for sum > 0xffff {
		sum = sum>>16 + sum&0xffff
	}
	return ^uint16(sum)
}

// frame is an Ethernet frame to send as is from an endpoint, bypassing its
// own stack (AF_PACKET): the way to forge what the kernel would not send.
type frame struct {
	dstMAC, srcMAC net.HardwareAddr
	etherType      uint16
	payload        []byte
}

func (f frame) bytes() []byte {
	b := make([]byte, 14, 14+len(f.payload))
	copy(b[0:6], f.dstMAC)
	copy(b[6:12], f.srcMAC)
	binary.BigEndian.PutUint16(b[12:], f.etherType)
	return append(b, f.payload...)
}

// udpPacket builds an IPv4 UDP packet.
func udpPacket(src, dst netip.Addr, sport, dport uint16, data []byte) []byte {
	udp := make([]byte, 8+len(data))
	binary.BigEndian.PutUint16(udp[0:], sport)
	binary.BigEndian.PutUint16(udp[2:], dport)
	binary.BigEndian.PutUint16(udp[4:], uint16(len(udp)))
	copy(udp[8:], data)
	ip := make([]byte, 20)
	ip[0] = 0x45
	binary.BigEndian.PutUint16(ip[2:], uint16(20+len(udp)))
	ip[8] = 64
	ip[9] = unix.IPPROTO_UDP
	s4, d4 := src.As4(), dst.As4()
	copy(ip[12:16], s4[:])
	copy(ip[16:20], d4[:])
	binary.BigEndian.PutUint16(ip[10:], checksum(ip))
	// The UDP checksum is optional over IPv4: left 0.
	return append(ip, udp...)
}

// arpReply builds an ARP reply saying that ip is at mac, sent to target.
func arpReply(mac net.HardwareAddr, ip netip.Addr, targetMAC net.HardwareAddr, targetIP netip.Addr) []byte {
	b := make([]byte, 28)
	binary.BigEndian.PutUint16(b[0:], 1)      // Ethernet
	binary.BigEndian.PutUint16(b[2:], 0x0800) // IPv4
	b[4], b[5] = 6, 4
	binary.BigEndian.PutUint16(b[6:], 2) // reply
	copy(b[8:14], mac)
	a := ip.As4()
	copy(b[14:18], a[:])
	copy(b[18:24], targetMAC)
	ta := targetIP.As4()
	copy(b[24:28], ta[:])
	return b
}

// sendFrame sends raw frames out of device dev of the namespace at path.
func sendFrame(t *testing.T, path, dev string, frames ...frame) {
	t.Helper()
	In(t, path, func() error {
		ifi, err := net.InterfaceByName(dev)
		if err != nil {
			return err
		}
		fd, err := unix.Socket(unix.AF_PACKET, unix.SOCK_RAW|unix.SOCK_CLOEXEC, 0)
		if err != nil {
			return err
		}
		defer unix.Close(fd)
		for _, f := range frames {
			sa := &unix.SockaddrLinklayer{Ifindex: ifi.Index, Halen: 6}
			copy(sa.Addr[:], f.dstMAC)
			if err := unix.Sendto(fd, f.bytes(), 0, sa); err != nil {
				return fmt.Errorf("send frame: %w", err)
			}
		}
		return nil
	})
}

// macOf returns the MAC of a device in the namespace at path.
func macOf(t *testing.T, path, dev string) net.HardwareAddr {
	t.Helper()
	var mac net.HardwareAddr
	In(t, path, func() error {
		ifi, err := net.InterfaceByName(dev)
		if err != nil {
			return err
		}
		mac = ifi.HardwareAddr
		return nil
	})
	return mac
}
