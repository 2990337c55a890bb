package e2e

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hostnet/hostnet/api"
	"github.com/hostnet/hostnet/client"
	"github.com/hostnet/hostnet/internal/dataplane/netns"
	"github.com/hostnet/hostnet/internal/testutil/lab"
	"github.com/vishvananda/netlink"
)

// The test topology (see package lab): a "host" namespace, where
// hostnetd runs and which it programs, joined by a veth uplink to an
// "external" namespace that plays the outside world. Nothing is created
// in the root namespace.
const (
	extAddr     = lab.ExtAddr     // the outside, behind the host's uplink
	hostAddr    = lab.HostAddr    // the host's uplink address
	hostDNS     = "198.51.100.53" // the host's resolver, per its resolv.conf
	uplinkName  = lab.UplinkName
	extLinkName = lab.ExtLinkName
)

// Env is one simulated host with its daemon.
type Env struct {
	lab.Host // Dir, HostNS (the host namespace), ExtNS (the external one)
	t        *testing.T
	Socket   string
	// DaemonNS, when set before Start, is where the daemon process runs;
	// --host-netns still points it at HostNS.
	DaemonNS string
	daemon   *lab.Daemon // nil while stopped
	extra    []string

	// DaemonMountNS, when set before Start, is the mount namespace the
	// daemon runs in (a container runtime's sandbox, see runtime_test.go).
	DaemonMountNS string
}

// NewEnv builds the topology and starts hostnetd with extra flags.
func NewEnv(t *testing.T, extra ...string) *Env {
	t.Helper()
	e := NewTopology(t, extra...)
	e.Start()
	return e
}

// NewTopology builds the topology; the caller starts the daemon.
func NewTopology(t *testing.T, extra ...string) *Env {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("end-to-end tests need root")
	}
	dir, err := os.MkdirTemp(baseDir, "h")
	if err != nil {
		t.Fatal(err)
	}
	e := &Env{t: t, Host: lab.Host{Dir: dir}, extra: extra}
	t.Cleanup(e.close)
	h, err := lab.NewHost(dir, true)
	if err != nil {
		t.Fatal(err)
	}
	e.Host = *h
	e.Socket = filepath.Join(dir, "s.sock")
	if err := e.WriteResolvConf("nameserver 127.0.0.53\nnameserver " + hostDNS + "\nsearch example.test\n"); err != nil {
		t.Fatal(err)
	}
	return e
}

// newNS makes a network namespace at Dir/name, one hostnet did not
// create (a container runtime's, say), and returns its path.
func (e *Env) newNS(name string) string {
	e.t.Helper()
	path := filepath.Join(e.Dir, name)
	if err := netns.Create(path); err != nil {
		e.t.Fatal(err)
	}
	return path
}

// handle opens a netlink handle in the namespace at path.
func (e *Env) handle(path string) *netlink.Handle {
	e.t.Helper()
	h, err := lab.Handle(path)
	if err != nil {
		e.t.Fatal(err)
	}
	return h
}

// daemonConfig is how Start runs hostnetd: in DaemonNS (else the host
// namespace) and DaemonMountNS, programming the host namespace, its
// socket at Socket and its other files under Dir, with the extra flags of
// NewEnv.
func (e *Env) daemonConfig() lab.DaemonConfig {
	cfg := e.Host.DaemonConfig(hostnetdBin)
	cfg.Socket, cfg.NetNS, cfg.MountNS = e.Socket, e.DaemonNS, e.DaemonMountNS
	cfg.LogLevel, cfg.Flags, cfg.Env = "debug", e.extra, cleanEnv()
	return cfg
}

// Start starts hostnetd in the host namespace and waits until it answers.
func (e *Env) Start() {
	e.t.Helper()
	if e.daemon != nil {
		// A second daemon finds the state directory locked and exits,
		// while the first answers its readiness check and is never
		// stopped: a test would leak it.
		e.t.Fatal("hostnetd is running already: Stop it before Start")
	}
	d, err := lab.StartDaemon(e.daemonConfig())
	if err != nil {
		e.t.Fatal(err)
	}
	e.daemon = d
}

// daemonPID is the running daemon's pid (nsenter execs hostnetd without
// a fork), or -1 while it is stopped.
func (e *Env) daemonPID() int {
	if e.daemon == nil {
		return -1
	}
	return e.daemon.Cmd.Process.Pid
}

// Kill9 kills the daemon with SIGKILL, as a crash would.
func (e *Env) Kill9() {
	if e.daemon == nil {
		return
	}
	e.daemon.Kill()
	e.daemon = nil
}

// Stop stops the daemon with SIGTERM and waits for it.
func (e *Env) Stop() {
	if e.daemon == nil {
		return
	}
	if !e.daemon.Stop(30 * time.Second) {
		e.t.Errorf("hostnetd did not stop within 30s of SIGTERM")
	}
	e.daemon = nil
}

// Restart stops the daemon with SIGKILL or SIGTERM and starts it again.
func (e *Env) Restart(kill bool) {
	if kill {
		e.Kill9()
	} else {
		e.Stop()
	}
	e.Start()
}

// LogTail returns the last n lines of the daemon's log.
func (e *Env) LogTail(n int) string {
	b, _ := os.ReadFile(e.daemonConfig().LogPath())
	return lab.Tail(string(b), n)
}

func (e *Env) close() {
	if e.t.Failed() {
		e.t.Logf("daemon log (tail):\n%s", e.LogTail(60))
	}
	e.Stop()
	// Every namespace of the test, the daemon's included, is a mount
	// under Dir: detaching them all destroys every device inside.
	if err := lab.Remove(e.Dir); err != nil {
		e.t.Errorf("cleanup: %v", err)
	}
}

// cleanEnv is the test's environment without the HOSTNET_ variables of
// the user running it (HOSTNET_SOCKET, HOSTNET_DEFAULT_SUBNET, ... are the
// defaults of hostnetd's flags and of the CLI): a test's daemon and CLI are
// configured by the test alone. The suite's own HOSTNET_E2E_ variables stay.
func cleanEnv() []string {
	var out []string
	for _, kv := range os.Environ() {
		if strings.HasPrefix(kv, "HOSTNET_") && !strings.HasPrefix(kv, "HOSTNET_E2E_") {
			continue
		}
		out = append(out, kv)
	}
	return out
}

// Client is an API client of the daemon.
func (e *Env) Client() *client.Client { return client.New(e.Socket) }

// CLIResult is what a CLI invocation printed and returned.
type CLIResult struct {
	Stdout, Stderr string
	Code           int
}

// CLI runs the hostnet command against the daemon.
func (e *Env) CLI(args ...string) CLIResult {
	e.t.Helper()
	return e.CLIEnv(nil, args...)
}

// CLIEnv runs the hostnet command with extra environment variables.
func (e *Env) CLIEnv(env []string, args ...string) CLIResult {
	e.t.Helper()
	cmd := exec.Command(hostnetBin, append([]string{"--socket", e.Socket}, args...)...)
	cmd.Env = append(cleanEnv(), env...)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	code := 0
	var exit *exec.ExitError
	if errors.As(err, &exit) {
		code = exit.ExitCode()
	} else if err != nil {
		e.t.Fatalf("run hostnet %v: %v", args, err)
	}
	return CLIResult{Stdout: out.String(), Stderr: errb.String(), Code: code}
}

// MustCLI runs the CLI and fails the test unless it exits 0.
func (e *Env) MustCLI(args ...string) string {
	e.t.Helper()
	r := e.CLI(args...)
	if r.Code != 0 {
		e.t.Fatalf("hostnet %s: exit %d\nstdout: %s\nstderr: %s", strings.Join(args, " "), r.Code, r.Stdout, r.Stderr)
	}
	return r.Stdout
}

// In runs fn on a thread inside the namespace at path. Sockets made in fn
// stay in that namespace when used afterwards from any goroutine.
func In(t *testing.T, path string, fn func() error) {
	t.Helper()
	if err := lab.In(path, fn); err != nil {
		t.Fatal(err)
	}
}

// Serve starts a TCP or UDP server on addr inside the namespace at path.
// Each TCP connection and UDP datagram gets one line back: the sender's
// address as the server saw it, then the received text echoed. The server
// stops when the test ends.
func Serve(t *testing.T, path, network, addr string) {
	t.Helper()
	var wg sync.WaitGroup
	var srv io.Closer
	var loop func()
	In(t, path, func() error {
		switch network {
		case "tcp":
			l, err := net.Listen("tcp", addr)
			if err != nil {
				return err
			}
			conns := &openConns{l: l, open: map[net.Conn]bool{}}
			srv, loop = conns, func() { echoTCP(l, conns, &wg) }
		case "udp":
			pc, err := net.ListenPacket("udp", addr)
			if err != nil {
				return err
			}
			srv, loop = pc, func() { echoUDP(pc) }
		}
		return nil
	})
	if srv == nil {
		return
	}
	t.Cleanup(func() { srv.Close(); wg.Wait() })
	wg.Add(1)
	go func() { defer wg.Done(); loop() }()
}

// openConns closes a listener and the connections it accepted that are
// still open: a peer cut off from the server (a test whose network broke)
// never closes its side, and the server's end of the test would wait for
// it.
type openConns struct {
	l      net.Listener
	mu     sync.Mutex
	open   map[net.Conn]bool
	closed bool
}

func (o *openConns) add(c net.Conn) {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.closed {
		c.Close() // accepted as the server closed: its reads end at once
		return
	}
	o.open[c] = true
}

func (o *openConns) done(c net.Conn) {
	o.mu.Lock()
	defer o.mu.Unlock()
	delete(o.open, c)
	c.Close()
}

func (o *openConns) Close() error {
	err := o.l.Close()
	o.mu.Lock()
	defer o.mu.Unlock()
	o.closed = true
	for c := range o.open {
		c.Close()
	}
	return err
}

// echoTCP serves Serve's TCP connections until l is closed, each on a
// goroutine of wg.
func echoTCP(l net.Listener, conns *openConns, wg *sync.WaitGroup) {
	for {
		c, err := l.Accept()
		if err != nil {
			return
		}
		conns.add(c)
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer conns.done(c)
			r := bufio.NewReader(c)
			for {
				line, err := r.ReadString('\n')
				if err != nil {
					return
				}
				fmt.Fprintf(c, "%s %s", c.RemoteAddr(), line)
			}
		}()
	}
}

// echoUDP answers Serve's UDP datagrams until pc is closed.
func echoUDP(pc net.PacketConn) {
	buf := make([]byte, 2048)
	for {
		n, from, err := pc.ReadFrom(buf)
		if err != nil {
			return
		}
		_, _ = pc.WriteTo([]byte(fmt.Sprintf("%s %s", from, buf[:n])), from)
	}
}

// Dial connects from inside the namespace at path.
func Dial(t *testing.T, path, network, addr string, timeout time.Duration) (net.Conn, error) {
	t.Helper()
	var c net.Conn
	var derr error
	In(t, path, func() error {
		c, derr = net.DialTimeout(network, addr, timeout)
		return nil
	})
	return c, derr
}

// Exchange sends one line over c and returns the server's answer: the
// address it saw the sender as, and the echoed text.
func Exchange(c net.Conn, text string, timeout time.Duration) (string, error) {
	_ = c.SetDeadline(time.Now().Add(timeout))
	if _, err := io.WriteString(c, text+"\n"); err != nil {
		return "", err
	}
	buf := make([]byte, 2048)
	n, err := c.Read(buf)
	if err != nil {
		return "", err
	}
	return strings.TrimSpace(string(buf[:n])), nil
}

// Talk dials addr from the namespace at path, exchanges one line and
// returns the address the server saw as the source.
func Talk(t *testing.T, path, network, addr string) (netip.Addr, error) {
	t.Helper()
	c, err := Dial(t, path, network, addr, 2*time.Second)
	if err != nil {
		return netip.Addr{}, err
	}
	defer c.Close()
	reply, err := Exchange(c, "hello", 2*time.Second)
	if err != nil {
		return netip.Addr{}, err
	}
	fields := strings.Fields(reply)
	if len(fields) != 2 || fields[1] != "hello" {
		return netip.Addr{}, fmt.Errorf("unexpected reply %q", reply)
	}
	ap, err := netip.ParseAddrPort(fields[0])
	if err != nil {
		return netip.Addr{}, err
	}
	return ap.Addr().Unmap(), nil
}

// Attached is an endpoint attached to a fresh namespace.
type Attached struct {
	Endpoint  *api.Endpoint
	Namespace *api.Namespace
	Addr      netip.Addr
}

// AttachNew creates a namespace and an endpoint on network and attaches it.
func (e *Env) AttachNew(network, name string) *Attached {
	e.t.Helper()
	ctx := context.Background()
	c := e.Client()
	ns, err := c.CreateNamespace(ctx, &api.Namespace{})
	if err != nil {
		e.t.Fatal(err)
	}
	ep, err := c.CreateEndpoint(ctx, &api.Endpoint{Name: name, HostComputeNetwork: network})
	if err != nil {
		e.t.Fatal(err)
	}
	if _, err := c.Attach(ctx, ns.ID, ep.ID); err != nil {
		e.t.Fatal(err)
	}
	ep, err = c.GetEndpoint(ctx, ep.ID)
	if err != nil {
		e.t.Fatal(err)
	}
	return &Attached{Endpoint: ep, Namespace: ns, Addr: netip.MustParseAddr(ep.IpConfigurations[0].IpAddress)}
}

func mustJSON(v any) string {
	b, err := json.Marshal(v)
	if err != nil {
		panic(err)
	}
	return string(b)
}
