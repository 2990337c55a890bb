package dhcp

import (
	"fmt"
	"net"
	"os"

	"github.com/hostnet/hostnet/internal/dataplane/netns"
	"golang.org/x/sys/unix"
)

// Listen opens a UDP socket inside the namespace ns, bound to 0.0.0.0:port
// and to the interface ifname (SO_BINDTODEVICE), allowed to send to the
// limited broadcast address (SO_BROADCAST), and returns it with the
// interface as ns sees it. The socket stays in ns whichever goroutine
// uses it afterwards; only its making runs on a thread inside ns.
//
// No raw socket is needed: a socket bound to a device may send to
// 255.255.255.255 from 0.0.0.0 before the interface has an address, and
// receives the broadcast replies, provided the reverse path filter is off
// for the interface (net.ipv4.conf.all and .IFNAME rp_filter 0): until the
// interface has a route to the server, a filter drops its answers. Other sockets may bind the same port on
// other interfaces of ns (SO_REUSEADDR, and bound devices do not clash),
// but two on one interface would share its packets: a caller keeps one.
func Listen(ns netns.Handle, ifname string, port int) (*net.UDPConn, *net.Interface, error) {
	var conn *net.UDPConn
	var ifc *net.Interface
	err := netns.Do(ns, func() error {
		var err error
		// The interface is looked up here because its name and index
		// mean something only inside ns.
		if ifc, err = net.InterfaceByName(ifname); err != nil {
			return fmt.Errorf("interface %s: %w", ifname, err)
		}
		fd, err := unix.Socket(unix.AF_INET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC|unix.SOCK_NONBLOCK, unix.IPPROTO_UDP)
		if err != nil {
			return fmt.Errorf("udp socket: %w", err)
		}
		f := os.NewFile(uintptr(fd), fmt.Sprintf("dhcp:%s:%d", ifname, port))
		defer f.Close() // FilePacketConn holds a duplicate
		for _, o := range []struct {
			name string
			opt  int
		}{{"SO_REUSEADDR", unix.SO_REUSEADDR}, {"SO_BROADCAST", unix.SO_BROADCAST}} {
			if err := unix.SetsockoptInt(fd, unix.SOL_SOCKET, o.opt, 1); err != nil {
				return fmt.Errorf("%s: %w", o.name, err)
			}
		}
		if err := unix.BindToDevice(fd, ifname); err != nil {
			return fmt.Errorf("bind to device %s: %w", ifname, err)
		}
		if err := unix.Bind(fd, &unix.SockaddrInet4{Port: port}); err != nil {
			return fmt.Errorf("bind 0.0.0.0:%d on %s: %w", port, ifname, err)
		}
		pc, err := net.FilePacketConn(f)
		if err != nil {
			return fmt.Errorf("udp socket on %s: %w", ifname, err)
		}
		conn = pc.(*net.UDPConn)
		return nil
	})
	if err != nil {
		return nil, nil, err
	}
	return conn, ifc, nil
}
