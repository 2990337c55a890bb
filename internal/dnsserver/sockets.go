package dnsserver

import (
	"context"
	"net"
	"net/netip"
	"syscall"

	"golang.org/x/sys/unix"
)

// Sockets makes the server's sockets. They must be in the host namespace,
// where the networks' bridges carry the addresses it answers on; the
// daemon's implementation makes them there when it runs elsewhere.
type Sockets interface {
	// ListenPacket binds a UDP socket to addr.
	ListenPacket(addr netip.AddrPort) (net.PacketConn, error)
	// Listen binds a TCP socket to addr and listens.
	Listen(addr netip.AddrPort) (net.Listener, error)
	// Dial connects to an upstream resolver ("udp" or "tcp").
	Dial(ctx context.Context, network string, addr netip.AddrPort) (net.Conn, error)
}

// LocalSockets makes sockets in the network namespace of the calling
// thread. Listening sockets bind with IP_FREEBIND: a network's gateway
// address may not be on its bridge yet (the kernel work of a change runs
// while the store commits), and the socket must be bound already when the
// first endpoint asks.
type LocalSockets struct{}

func freebind(network, _ string, c syscall.RawConn) error {
	var serr error
	err := c.Control(func(fd uintptr) {
		if network == "udp6" || network == "tcp6" {
			serr = unix.SetsockoptInt(int(fd), unix.SOL_IPV6, unix.IPV6_FREEBIND, 1)
		} else {
			serr = unix.SetsockoptInt(int(fd), unix.SOL_IP, unix.IP_FREEBIND, 1)
		}
	})
	if err != nil {
		return err
	}
	return serr
}

func family(base string, a netip.Addr) string {
	if a.Is4() {
		return base + "4"
	}
	return base + "6"
}

// ListenPacket implements Sockets.
func (LocalSockets) ListenPacket(addr netip.AddrPort) (net.PacketConn, error) {
	lc := net.ListenConfig{Control: freebind}
	return lc.ListenPacket(context.Background(), family("udp", addr.Addr()), addr.String())
}

// Listen implements Sockets.
func (LocalSockets) Listen(addr netip.AddrPort) (net.Listener, error) {
	lc := net.ListenConfig{Control: freebind}
	return lc.Listen(context.Background(), family("tcp", addr.Addr()), addr.String())
}

// Dial implements Sockets.
func (LocalSockets) Dial(ctx context.Context, network string, addr netip.AddrPort) (net.Conn, error) {
	var d net.Dialer
	return d.DialContext(ctx, family(network, addr.Addr()), addr.String())
}
