package dnsserver

import (
	"context"
	"errors"
	"net"
	"net/netip"
)

// noSockets binds nothing: for tests of the table logic.
type noSockets struct{}

var errNoSockets = errors.New("no sockets in this test")

func (noSockets) ListenPacket(netip.AddrPort) (net.PacketConn, error) { return nil, errNoSockets }
func (noSockets) Listen(netip.AddrPort) (net.Listener, error)         { return nil, errNoSockets }
func (noSockets) Dial(context.Context, string, netip.AddrPort) (net.Conn, error) {
	return nil, errNoSockets
}
