package lab

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/hostnet/hostnet/client"
)

// DaemonConfig says how to run a hostnetd on a lab host. Its files (the
// socket by default, the state, run and per-namespace /etc directories,
// and its log by default) are under Dir, so that it shares nothing with
// another hostnetd, the host's own included.
type DaemonConfig struct {
	// Command runs hostnetd: its path, or a command that execs it with
	// the arguments that follow (env VAR=VALUE hostnetd).
	Command []string
	Dir     string
	HostNS  string // --host-netns: the namespace it programs
	// Socket is the path of its API socket; Dir/s.sock when empty.
	Socket string
	// NetNS is the network namespace its process runs in; HostNS when
	// empty. --host-netns alone decides what it programs.
	NetNS string
	// MountNS, when set, is the mount namespace it runs in (a container
	// runtime's sandbox).
	MountNS string
	// ResolvConf is the host's resolv.conf it reads (--host-resolv-conf);
	// /dev/null, no resolver at all, when empty.
	ResolvConf string
	LogLevel   string   // --log-level; hostnetd's default when empty
	Flags      []string // more flags, after the lab's (a later flag wins)
	// Env is its environment; the caller's when nil.
	Env []string
	// Log is the file its standard output and error are appended to;
	// Dir/daemon.log when empty.
	Log string
}

// SocketPath is the path of the daemon's API socket.
func (c DaemonConfig) SocketPath() string {
	if c.Socket != "" {
		return c.Socket
	}
	return filepath.Join(c.Dir, "s.sock")
}

// LogPath is the path of the daemon's log.
func (c DaemonConfig) LogPath() string {
	if c.Log != "" {
		return c.Log
	}
	return filepath.Join(c.Dir, "daemon.log")
}

// HostFlags are the flags that keep the daemon's files where the config
// says and its kernel objects in HostNS: what the daemon and `hostnetd
// --cleanup` must both be told about a lab host.
func (c DaemonConfig) HostFlags() []string {
	return []string{
		"--socket", c.SocketPath(),
		"--state-dir", filepath.Join(c.Dir, "state"),
		"--run-dir", filepath.Join(c.Dir, "run"),
		"--host-netns", c.HostNS,
		"--netns-link-dir", "",
		"--netns-etc-dir", filepath.Join(c.Dir, "etc-netns"),
	}
}

// Args is the whole command line: nsenter into the daemon's namespaces,
// then Command with the lab's flags and Flags.
func (c DaemonConfig) Args() []string {
	where := c.HostNS
	if c.NetNS != "" {
		where = c.NetNS
	}
	args := []string{"nsenter", "--net=" + where, "--"}
	if c.MountNS != "" {
		args = []string{"nsenter", "--mount=" + c.MountNS, "--net=" + where, "--"}
	}
	args = append(append(args, c.Command...), c.HostFlags()...)
	resolv := c.ResolvConf
	if resolv == "" {
		resolv = os.DevNull
	}
	args = append(args, "--host-resolv-conf", resolv)
	if c.LogLevel != "" {
		args = append(args, "--log-level", c.LogLevel)
	}
	return append(args, c.Flags...)
}

// Daemon is a hostnetd process of a lab host.
type Daemon struct {
	Config DaemonConfig
	Cmd    *exec.Cmd // started; nsenter execs hostnetd, so its pid is the daemon's
	exited chan struct{}
}

// SpawnDaemon starts hostnetd as cfg says and returns without waiting for
// it to answer (WaitReady does).
func SpawnDaemon(cfg DaemonConfig) (*Daemon, error) {
	log, err := os.OpenFile(cfg.LogPath(), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return nil, err
	}
	// The child has its own copy of the descriptor once started.
	defer log.Close()
	args := cfg.Args()
	d := &Daemon{Config: cfg, Cmd: exec.Command(args[0], args[1:]...), exited: make(chan struct{})}
	d.Cmd.Env = cfg.Env
	d.Cmd.Stdout, d.Cmd.Stderr = log, log
	if err := d.Cmd.Start(); err != nil {
		return nil, fmt.Errorf("start hostnetd: %w", err)
	}
	go func() { _ = d.Cmd.Wait(); close(d.exited) }()
	return d, nil
}

// StartDaemon starts hostnetd as cfg says and waits up to 30 s for it to
// answer. When it does not, it is stopped, and the error tells why with
// the end of its log.
func StartDaemon(cfg DaemonConfig) (*Daemon, error) {
	d, err := SpawnDaemon(cfg)
	if err != nil {
		return nil, err
	}
	if err := d.WaitReady(30*time.Second, 20*time.Millisecond); err != nil {
		d.Stop(30 * time.Second)
		return nil, err
	}
	return d, nil
}

// WaitReady asks the daemon its version every poll until it answers, and
// fails if it exits first or does not answer within timeout; the error
// carries the end of its log. poll is how finely a benchmark times a
// start.
func (d *Daemon) WaitReady(timeout, poll time.Duration) error {
	c := d.Client()
	deadline := time.Now().Add(timeout)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		_, err := c.Version(ctx)
		cancel()
		if err == nil {
			return nil
		}
		select {
		case <-d.exited:
			return fmt.Errorf("hostnetd exited at start:\n%s", d.LogTail(40))
		default:
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("hostnetd did not answer within %s: %w\n%s", timeout, err, d.LogTail(40))
		}
		time.Sleep(poll)
	}
}

// Client is an API client of the daemon.
func (d *Daemon) Client() *client.Client { return client.New(d.Config.SocketPath()) }

// Exited is closed once the process has exited.
func (d *Daemon) Exited() <-chan struct{} { return d.exited }

// Stop sends SIGTERM and waits for the process to exit; after grace it
// kills it. It reports whether the daemon exited within grace.
func (d *Daemon) Stop(grace time.Duration) bool {
	_ = d.Cmd.Process.Signal(syscall.SIGTERM) // an exited one answers "already finished"
	select {
	case <-d.exited:
		return true
	case <-time.After(grace):
		d.Kill()
		return false
	}
}

// Kill kills the process with SIGKILL, as a crash would, and waits for it.
func (d *Daemon) Kill() {
	_ = d.Cmd.Process.Kill()
	<-d.exited
}

// LogTail returns the last n lines of the daemon's log.
func (d *Daemon) LogTail(n int) string {
	b, _ := os.ReadFile(d.Config.LogPath())
	return Tail(string(b), n)
}

// Tail returns the last n lines of s.
func Tail(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}
