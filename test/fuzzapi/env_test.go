package fuzzapi

// The simulated host the fuzzer drives, as test/e2e builds it (package
// lab): a throwaway "host" network namespace where hostnetd runs with its
// own state directory and socket, joined by a veth uplink to an
// "external" namespace that plays the outside world. Nothing is created
// in the root namespace. Unlike e2e's, these helpers return errors
// instead of failing the test: a poisoned host is thrown away and the run
// goes on with a new one.

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"time"

	"github.com/hostnet/hostnet/api"
	"github.com/hostnet/hostnet/client"
	"github.com/hostnet/hostnet/internal/testutil/lab"
)

// extPort is the port of the external TCP server, at lab.ExtAddr, that
// fresh endpoints must reach.
const extPort = 7777

// Env is one simulated host with its daemon.
type Env struct {
	lab.Host // Dir, HostNS, ExtNS
	Socket   string

	daemon *lab.Daemon  // nil while stopped
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
	e := &Env{Host: lab.Host{Dir: dir}}
	e.Socket = e.daemonConfig().SocketPath()
	e.http = &http.Client{Timeout: 70 * time.Second, Transport: &http.Transport{
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			return (&net.Dialer{}).DialContext(ctx, "unix", e.Socket)
		},
		MaxIdleConns: 2,
	}}
	fail := func(err error) (*Env, error) { e.Close(); return nil, err }
	h, err := lab.NewHost(dir, true)
	if err != nil {
		return fail(err)
	}
	e.Host = *h
	if err := e.WriteResolvConf("nameserver 198.51.100.53\nsearch example.test\n"); err != nil {
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

// serve starts the external TCP server: each line it reads is answered
// with "ok" and the line.
func (e *Env) serve() error {
	return lab.In(e.ExtNS, func() error {
		l, err := net.Listen("tcp", fmt.Sprintf("%s:%d", lab.ExtAddr, extPort))
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
	err := lab.In(path, func() error {
		var err error
		c, err = net.DialTimeout("tcp", fmt.Sprintf("%s:%d", lab.ExtAddr, extPort), 3*time.Second)
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

// daemonConfig is how Start runs hostnetd: in the host namespace, its
// files under Dir, with no default network (the fuzzer makes its own).
func (e *Env) daemonConfig() lab.DaemonConfig {
	cfg := e.Host.DaemonConfig(hostnetdBin)
	cfg.LogLevel, cfg.Flags = "info", []string{"--default-network=false"}
	return cfg
}

// Start starts hostnetd in the host namespace and waits until it answers.
func (e *Env) Start() error {
	d, err := lab.StartDaemon(e.daemonConfig())
	if err != nil {
		return err
	}
	e.daemon = d
	return nil
}

// Stop stops the daemon with SIGTERM (SIGKILL after 30 s).
func (e *Env) Stop() {
	if e.daemon != nil {
		e.daemon.Stop(30 * time.Second)
		e.daemon = nil
	}
}

// LogSize is the length of the daemon's log, to read what a later run
// adds (LogSince).
func (e *Env) LogSize() int64 {
	fi, err := os.Stat(e.daemonConfig().LogPath())
	if err != nil {
		return 0
	}
	return fi.Size()
}

// LogSince returns the daemon's log from offset on.
func (e *Env) LogSince(offset int64) string {
	b, _ := os.ReadFile(e.daemonConfig().LogPath())
	if offset > int64(len(b)) {
		return ""
	}
	return string(b[offset:])
}

// Close stops the daemon and throws the host away: every namespace of
// the env is a mount under Dir, and detaching them destroys what is in
// them.
func (e *Env) Close() {
	e.Stop()
	if e.server != nil {
		e.server.Close()
	}
	if e.http != nil {
		e.http.CloseIdleConnections()
	}
	if err := lab.Remove(e.Dir); err != nil {
		fmt.Fprintf(os.Stderr, "fuzz-api: cleanup of %s: %v\n", e.Dir, err)
	}
}

// Client is an API client of the daemon.
func (e *Env) Client() *client.Client { return client.New(e.Socket) }
