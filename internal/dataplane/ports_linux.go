package dataplane

import (
	"bufio"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/hostnet/hostnet/internal/netmodel"
	"golang.org/x/sys/unix"
)

// PortInUseError says a host port is bound by something else.
type PortInUseError = netmodel.PortInUseError

// PortReservation keeps a host port bound, so that no process of the host
// can bind it while a mapping publishes it. It carries no traffic: the
// mapping's packets are redirected before they reach any socket.
type PortReservation struct {
	fd int
}

// Release unbinds the port. Releasing twice is harmless.
func (r *PortReservation) Release() {
	if r != nil && r.fd >= 0 {
		unix.Close(r.fd)
		r.fd = -1
	}
}

// ReservePort binds proto ("tcp" or "udp") port on addr (the zero Addr:
// every address of the family v6 says) in the host namespace, without
// SO_REUSEADDR, so that any later bind of the port by a host process fails.
// A port someone holds already gives a *PortInUseError naming the process.
func (h *Linux) ReservePort(proto string, v6 bool, addr netip.Addr, port uint16) (*PortReservation, error) {
	var fd int
	err := h.thread.do(func() error {
		var err error
		fd, err = bindPort(proto, v6, addr, port)
		return err
	})
	if errors.Is(err, unix.EADDRINUSE) {
		return nil, &PortInUseError{Port: fmt.Sprintf("%d/%s", port, proto), Holder: h.portHolder(proto, v6, port)}
	}
	if errors.Is(err, unix.EADDRNOTAVAIL) {
		return nil, fmt.Errorf("port %d/%s on %s: %s is %w", port, proto, addr, addr, netmodel.ErrNotHostAddress)
	}
	if err != nil {
		return nil, fmt.Errorf("reserve port %d/%s: %w", port, proto, err)
	}
	return &PortReservation{fd: fd}, nil
}

func bindPort(proto string, v6 bool, addr netip.Addr, port uint16) (int, error) {
	family, typ := unix.AF_INET, unix.SOCK_STREAM
	if v6 {
		family = unix.AF_INET6
	}
	if proto == "udp" {
		typ = unix.SOCK_DGRAM
	}
	fd, err := unix.Socket(family, typ|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return -1, err
	}
	if v6 {
		// The IPv4 port is reserved separately, by an IPv4 mapping.
		if err := unix.SetsockoptInt(fd, unix.IPPROTO_IPV6, unix.IPV6_V6ONLY, 1); err != nil {
			unix.Close(fd)
			return -1, err
		}
	}
	if proto == "udp" {
		// Nothing should ever queue on this socket: a filter that
		// accepts no packet.
		prog := unix.SockFprog{Len: 1, Filter: &[]unix.SockFilter{{Code: unix.BPF_RET | unix.BPF_K, K: 0}}[0]}
		if err := unix.SetsockoptSockFprog(fd, unix.SOL_SOCKET, unix.SO_ATTACH_FILTER, &prog); err != nil {
			unix.Close(fd)
			return -1, err
		}
	}
	var sa unix.Sockaddr
	if v6 {
		s := &unix.SockaddrInet6{Port: int(port)}
		if addr.IsValid() {
			s.Addr = addr.As16()
		}
		sa = s
	} else {
		s := &unix.SockaddrInet4{Port: int(port)}
		if addr.IsValid() {
			s.Addr = addr.As4()
		}
		sa = s
	}
	if err := unix.Bind(fd, sa); err != nil {
		unix.Close(fd)
		return -1, err
	}
	return fd, nil
}

// portHolder names the process that has port bound in the host namespace,
// as `ss -p` would: the socket's inode from /proc/net, then the process
// with a descriptor on it. "" when it cannot be told.
func (h *Linux) portHolder(proto string, v6 bool, port uint16) string {
	var inodes []string
	_ = h.thread.do(func() error {
		files := []string{"/proc/net/" + proto, "/proc/net/" + proto + "6"}
		for _, f := range files {
			inodes = append(inodes, socketInodes(f, port)...)
		}
		return nil
	})
	if len(inodes) == 0 {
		return ""
	}
	want := map[string]bool{}
	for _, ino := range inodes {
		want["socket:["+ino+"]"] = true
	}
	procs, _ := filepath.Glob("/proc/[0-9]*/fd/*")
	for _, fd := range procs {
		target, err := os.Readlink(fd)
		if err != nil || !want[target] {
			continue
		}
		pid := strings.Split(fd, "/")[2]
		comm, _ := os.ReadFile("/proc/" + pid + "/comm")
		if pid == strconv.Itoa(os.Getpid()) {
			return "hostnetd itself (another mapping)"
		}
		return fmt.Sprintf("process %q (pid %s)", strings.TrimSpace(string(comm)), pid)
	}
	return "a socket of no process of this host's PID namespace"
}

// socketInodes returns the inodes of the sockets bound to port in one of
// /proc/net/{tcp,udp}[6].
func socketInodes(file string, port uint16) []string {
	f, err := os.Open(file)
	if err != nil {
		return nil
	}
	defer f.Close()
	var out []string
	sc := bufio.NewScanner(f)
	sc.Scan() // header
	hexPort := fmt.Sprintf(":%04X", port)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) < 10 || !strings.HasSuffix(fields[1], hexPort) {
			continue
		}
		out = append(out, fields[9])
	}
	return out
}
