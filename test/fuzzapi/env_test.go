package fuzzapi

// The simulated host the fuzzer drives, as test/e2e builds it (see its
// env_test.go, from which this is adapted): a throwaway "host" network
// namespace where hostnetd runs with its own state directory and socket,
// joined by a veth uplink to an "external" namespace that plays the
// outside world. Nothing is created in the root namespace. Unlike e2e's,
// these helpers return errors instead of failing the test: a poisoned
// host is thrown away and the run goes on with a new one.

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/hostnet/hostnet/api"
	"github.com/hostnet/hostnet/client"
	"github.com/hostnet/hostnet/internal/dataplane/netns"
	"github.com/hostnet/hostnet/internal/testutil"
	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

const (
	extAddr     = "198.51.100.1" // the outside, behind the host's uplink
	hostAddr    = "198.51.100.2" // the host's uplink address
	uplinkName  = "uplink0"
	extLinkName = "ext0"
	extPort     = 7777 // the external TCP server fresh endpoints must reach
)

// Env is one simulated host with its daemon.
type Env struct {
	Dir    string
	HostNS string
	ExtNS  string
	Socket string

	cmd    *exec.Cmd
	waited chan struct{}
	log    *os.File
	server net.Listener // in ExtNS
	http   *http.Client

	supported map[api.PolicyType]bool // the policy types the daemon supports
}

// newEnv builds the topology, starts the external server and the daemon.
func newEnv(base string) (*Env, error) {
	dir, err := os.MkdirTemp(base, "h")
	if err != nil {
		return nil, err
	}
	e := &Env{Dir: dir, HostNS: filepath.Join(dir, "host.ns"), ExtNS: filepath.Join(dir, "ext.ns"), Socket: filepath.Join(dir, "s.sock")}
	e.http = &http.Client{Timeout: 70 * time.Second, Transport: &http.Transport{
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			return (&net.Dialer{}).DialContext(ctx, "unix", e.Socket)
		},
		MaxIdleConns: 2,
	}}
	fail := func(err error) (*Env, error) { e.Close(); return nil, err }
	for _, p := range []string{e.HostNS, e.ExtNS} {
		if err := netns.Create(p); err != nil {
			return fail(err)
		}
	}
	if err := e.buildUplink(); err != nil {
		return fail(fmt.Errorf("uplink: %w", err))
	}
	if err := os.WriteFile(filepath.Join(dir, "resolv.conf"), []byte("nameserver 198.51.100.53\nsearch example.test\n"), 0o644); err != nil {
		return fail(err)
	}
	if err := e.serve(); err != nil {
		return fail(fmt.Errorf("external server: %w", err))
	}
	if err := e.Start(); err != nil {
		return fail(err)
	}
	return e, nil
}

func (e *Env) buildUplink() error {
	host, err := handle(e.HostNS)
	if err != nil {
		return err
	}
	defer host.Close()
	ext, err := netns.Open(e.ExtNS)
	if err != nil {
		return err
	}
	defer ext.Close()
	attrs := netlink.NewLinkAttrs()
	attrs.Name = uplinkName
	if err := host.LinkAdd(&netlink.Veth{LinkAttrs: attrs, PeerName: extLinkName, PeerNamespace: netlink.NsFd(ext)}); err != nil {
		return err
	}
	configure := func(h *netlink.Handle, name, addr string) error {
		l, err := h.LinkByName(name)
		if err != nil {
			return err
		}
		a, _ := netlink.ParseAddr(addr)
		if err := h.AddrAdd(l, a); err != nil {
			return err
		}
		for _, link := range []netlink.Link{l, &netlink.Device{LinkAttrs: netlink.LinkAttrs{Index: 1}}} {
			if err := h.LinkSetUp(link); err != nil {
				return err
			}
		}
		return nil
	}
	if err := configure(host, uplinkName, hostAddr+"/24"); err != nil {
		return err
	}
	eh, err := handle(e.ExtNS)
	if err != nil {
		return err
	}
	defer eh.Close()
	if err := configure(eh, extLinkName, extAddr+"/24"); err != nil {
		return err
	}
	return host.RouteAdd(&netlink.Route{Gw: net.ParseIP(extAddr)})
}

func handle(path string) (*netlink.Handle, error) {
	ns, err := netns.Open(path)
	if err != nil {
		return nil, err
	}
	defer ns.Close()
	return netlink.NewHandleAt(ns, unix.NETLINK_ROUTE)
}

// in runs fn on a thread inside the namespace at path; sockets made in fn
// stay in that namespace.
func in(path string, fn func() error) error {
	ns, err := netns.Open(path)
	if err != nil {
		return err
	}
	defer ns.Close()
	return netns.Do(ns, fn)
}

// serve starts the external TCP server: each line it reads is answered
// with "ok" and the line.
func (e *Env) serve() error {
	return in(e.ExtNS, func() error {
		l, err := net.Listen("tcp", fmt.Sprintf("%s:%d", extAddr, extPort))
		if err != nil {
			return err
		}
		e.server = l
		go func() {
			for {
				c, err := l.Accept()
				if err != nil {
					return
				}
				go func() {
					defer c.Close()
					_ = c.SetDeadline(time.Now().Add(5 * time.Second))
					line, err := bufio.NewReader(c).ReadString('\n')
					if err == nil {
						_, _ = io.WriteString(c, "ok "+line)
					}
				}()
			}
		}()
		return nil
	})
}

// reach dials the external server from the namespace at path and
// exchanges one line.
func reach(path string) error {
	var c net.Conn
	err := in(path, func() error {
		var err error
		c, err = net.DialTimeout("tcp", fmt.Sprintf("%s:%d", extAddr, extPort), 3*time.Second)
		return err
	})
	if err != nil {
		return err
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(3 * time.Second))
	if _, err := io.WriteString(c, "hello\n"); err != nil {
		return err
	}
	line, err := bufio.NewReader(c).ReadString('\n')
	if err != nil {
		return err
	}
	if line != "ok hello\n" {
		return fmt.Errorf("unexpected answer %q", line)
	}
	return nil
}

// Start starts hostnetd in the host namespace and waits until it answers.
func (e *Env) Start() error {
	if e.log == nil {
		var err error
		if e.log, err = os.OpenFile(filepath.Join(e.Dir, "daemon.log"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644); err != nil {
			return err
		}
	}
	args := []string{"--net=" + e.HostNS, "--", hostnetdBin,
		"--socket", e.Socket,
		"--state-dir", filepath.Join(e.Dir, "state"),
		"--run-dir", filepath.Join(e.Dir, "run"),
		"--host-netns", e.HostNS,
		"--netns-link-dir", "",
		"--netns-etc-dir", filepath.Join(e.Dir, "etc-netns"),
		"--host-resolv-conf", filepath.Join(e.Dir, "resolv.conf"),
		"--default-network=false",
		"--log-level", "info",
	}
	e.cmd = exec.Command("nsenter", args...)
	e.cmd.Stdout, e.cmd.Stderr = e.log, e.log
	if err := e.cmd.Start(); err != nil {
		return err
	}
	e.waited = make(chan struct{})
	go func(c *exec.Cmd, done chan struct{}) { _ = c.Wait(); close(done) }(e.cmd, e.waited)
	c := e.Client()
	deadline := time.Now().Add(30 * time.Second)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		_, err := c.Version(ctx)
		cancel()
		if err == nil {
			return nil
		}
		select {
		case <-e.waited:
			e.cmd = nil
			return fmt.Errorf("hostnetd exited at start:\n%s", e.LogTail(20))
		default:
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("hostnetd did not answer within 30s: %v\n%s", err, e.LogTail(20))
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// Stop stops the daemon with SIGTERM (SIGKILL after 30 s).
func (e *Env) Stop() {
	if e.cmd == nil {
		return
	}
	_ = e.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-e.waited:
	case <-time.After(30 * time.Second):
		_ = e.cmd.Process.Kill()
		<-e.waited
	}
	e.cmd = nil
}

// Kill9 kills the daemon as a crash would.
func (e *Env) Kill9() {
	if e.cmd == nil {
		return
	}
	_ = e.cmd.Process.Kill()
	<-e.waited
	e.cmd = nil
}

// LogSize is the length of the daemon's log, to read what a later run
// adds (LogSince).
func (e *Env) LogSize() int64 {
	fi, err := os.Stat(filepath.Join(e.Dir, "daemon.log"))
	if err != nil {
		return 0
	}
	return fi.Size()
}

// LogSince returns the daemon's log from offset on.
func (e *Env) LogSince(offset int64) string {
	b, _ := os.ReadFile(filepath.Join(e.Dir, "daemon.log"))
	if offset > int64(len(b)) {
		return ""
	}
	return string(b[offset:])
}

// LogTail returns the last n lines of the daemon's log.
func (e *Env) LogTail(n int) string {
	b, _ := os.ReadFile(filepath.Join(e.Dir, "daemon.log"))
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// Close stops the daemon and throws the host away: every namespace of
// the env is a mount under Dir, and detaching them destroys what is in
// them.
func (e *Env) Close() {
	e.Stop()
	if e.server != nil {
		e.server.Close()
	}
	if e.log != nil {
		e.log.Close()
	}
	if e.http != nil {
		e.http.CloseIdleConnections()
	}
	testutil.UnmountUnder(e.Dir, func(p string) error { return unix.Unmount(p, unix.MNT_DETACH) })
	if err := os.RemoveAll(e.Dir); err != nil && !errors.Is(err, os.ErrNotExist) {
		fmt.Fprintf(os.Stderr, "fuzz-api: cleanup of %s: %v\n", e.Dir, err)
	}
}

// Client is an API client of the daemon.
func (e *Env) Client() *client.Client { return client.New(e.Socket) }
