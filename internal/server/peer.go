package server

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/user"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"unsafe"

	"github.com/hostnet/hostnet/api"
	"golang.org/x/sys/unix"
)

// CodeAccessDenied is the HNS code of a caller the daemon does not admit
// (E_ACCESSDENIED), answered with HTTP 403.
const CodeAccessDenied = api.CodeAccessDenied

// Peer admission. The socket's mode (0600, or 0660 with a group) keeps
// others from connecting at all; the daemon checks the caller's
// credentials as well, as the kernel recorded them when it connected
// (SO_PEERCRED, SO_PEERGROUPS), so that a socket made world-writable by
// mistake, or reached through a bind mount, admits nobody more. Admitted
// are uid 0, the daemon's own uid, and the members of the admitted groups
// (--socket-group) by primary or supplementary gid. Anyone else gets 403
// with E_ACCESSDENIED, and the connection is closed.

// admit reports whether a caller with effective uid and gid may use the API
// of a daemon running as selfUID that admits the groups in admitted.
// supplementary returns the caller's supplementary groups; it is called
// only when they decide, and a nil one counts as no groups.
func admit(uid, gid, selfUID int, admitted []int, supplementary func() []int) bool {
	if uid == 0 || uid == selfUID {
		return true
	}
	if len(admitted) == 0 {
		return false
	}
	if slices.Contains(admitted, gid) {
		return true
	}
	if supplementary == nil {
		return false
	}
	for _, g := range supplementary() {
		if slices.Contains(admitted, g) {
			return true
		}
	}
	return false
}

// ResolveGroup returns the gid of a group given by name or number. A number
// is taken as is, whether or not the group database knows it.
func ResolveGroup(group string) (int, error) {
	if group == "" {
		return 0, errors.New("empty group")
	}
	if n, err := strconv.Atoi(group); err == nil {
		if n < 0 || n > 1<<32-2 {
			return 0, fmt.Errorf("gid %d out of range", n)
		}
		return n, nil
	}
	g, err := user.LookupGroup(group)
	if err != nil {
		return 0, err
	}
	return strconv.Atoi(g.Gid)
}

// peer is the process at the other end of a connection, as the kernel saw
// it when it connected.
type peer struct {
	known         bool // SO_PEERCRED answered
	pid, uid, gid int
}

// connInfo is what the server knows about one connection; it lives in the
// connection's context.
type connInfo struct {
	peer     peer
	admitted bool
	conn     *limitConn // nil when the listener is not a limitListener

	commOnce sync.Once
	comm     string
}

// command returns the caller's command name (/proc/PID/comm), read once per
// connection, or "" when it is gone.
func (ci *connInfo) command() string {
	ci.commOnce.Do(func() {
		if ci.peer.pid <= 0 {
			return
		}
		b, err := os.ReadFile(fmt.Sprintf("/proc/%d/comm", ci.peer.pid))
		if err == nil {
			ci.comm = strings.TrimSpace(string(b))
		}
	})
	return ci.comm
}

type connInfoKey struct{}

func infoOf(r *http.Request) *connInfo {
	ci, _ := r.Context().Value(connInfoKey{}).(*connInfo)
	return ci
}

// connContext reads the caller's credentials once per connection and
// decides whether it is admitted.
func (s *Server) connContext(ctx context.Context, c net.Conn) context.Context {
	ci := &connInfo{}
	ci.conn, _ = c.(*limitConn)
	if sc, ok := c.(syscall.Conn); ok {
		if raw, err := sc.SyscallConn(); err == nil {
			_ = raw.Control(func(fd uintptr) {
				cred, err := unix.GetsockoptUcred(int(fd), unix.SOL_SOCKET, unix.SO_PEERCRED)
				if err != nil {
					return
				}
				ci.peer = peer{known: true, pid: int(cred.Pid), uid: int(cred.Uid), gid: int(cred.Gid)}
				ci.admitted = admit(ci.peer.uid, ci.peer.gid, s.selfUID, s.opts.Groups, func() []int {
					gs, err := peerGroups(int(fd))
					if err != nil {
						// Kernels before 4.13 lack SO_PEERGROUPS: the
						// process's groups now, which may have changed.
						gs, _ = procGroups(ci.peer.pid)
					}
					return gs
				})
			})
		}
	}
	if !ci.admitted && ci.conn != nil {
		ci.conn.deny()
	}
	return context.WithValue(ctx, connInfoKey{}, ci)
}

// peerGroups returns the supplementary groups the peer of a unix socket
// had when it connected (SO_PEERGROUPS, Linux 4.13).
func peerGroups(fd int) ([]int, error) {
	n := 64
	for range 3 {
		buf := make([]uint32, n)
		size := uint32(4 * n)
		_, _, errno := unix.Syscall6(unix.SYS_GETSOCKOPT, uintptr(fd), unix.SOL_SOCKET, unix.SO_PEERGROUPS,
			uintptr(unsafe.Pointer(&buf[0])), uintptr(unsafe.Pointer(&size)), 0)
		if errno == unix.ERANGE && int(size/4) > n {
			n = int(size / 4)
			continue
		}
		if errno != 0 {
			return nil, errno
		}
		out := make([]int, 0, size/4)
		for _, g := range buf[:size/4] {
			out = append(out, int(g))
		}
		return out, nil
	}
	return nil, unix.ERANGE
}

// procGroups returns the supplementary groups of a process from the
// "Groups:" line of /proc/PID/status.
func procGroups(pid int) ([]int, error) {
	if pid <= 0 {
		return nil, errors.New("no pid")
	}
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return nil, err
	}
	return parseStatusGroups(string(b))
}

// parseStatusGroups parses the "Groups:" line of a /proc/PID/status file.
func parseStatusGroups(status string) ([]int, error) {
	for line := range strings.Lines(status) {
		rest, ok := strings.CutPrefix(line, "Groups:")
		if !ok {
			continue
		}
		var out []int
		for _, f := range strings.Fields(rest) {
			g, err := strconv.Atoi(f)
			if err != nil {
				return nil, fmt.Errorf("groups line %q: %w", strings.TrimSpace(line), err)
			}
			out = append(out, g)
		}
		return out, nil
	}
	return nil, errors.New("no Groups line")
}
