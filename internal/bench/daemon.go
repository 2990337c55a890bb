package bench

import (
	"os"
	"time"

	"github.com/hostnet/hostnet/client"
	"github.com/hostnet/hostnet/internal/testutil/lab"
)

// benchDaemon is a hostnetd running on a lab host of its own (package
// lab): a throwaway host namespace with, when asked, an external
// namespace behind its uplink.
type benchDaemon struct {
	lab.Host
	proc *lab.Daemon
	c    *client.Client
}

// The benchmark topology's addresses (inside its own namespaces only).
const (
	benchExtAddr  = lab.ExtAddr
	benchHostAddr = lab.HostAddr
)

// stopGrace is how long a benchmark's daemon may take to stop on SIGTERM
// before it is killed: far longer than any takes, only so that a stuck one
// does not hang the run.
const stopGrace = 5 * time.Minute

// startDaemon starts hostnetd (daemonCmd plus its flags) on a new lab
// host under dir, with an external namespace behind an uplink when
// withExt is set.
func startDaemon(dir string, daemonCmd []string, withExt bool) (*benchDaemon, error) {
	h, err := lab.NewHost(dir, withExt)
	if err != nil {
		return nil, err
	}
	return startDaemonOn(h, daemonCmd, "")
}

// startDaemonOn starts hostnetd on the lab host h, in the mount namespace
// at mountNS (a container runtime's sandbox) when that is set. It has no
// default network and no resolver; it logs at logLevel() to its
// directory, or to $HOSTNET_BENCH_DAEMON_LOG, kept after the run for
// reading the daemon's timings.
func startDaemonOn(h *lab.Host, daemonCmd []string, mountNS string) (*benchDaemon, error) {
	cfg := h.DaemonConfig(daemonCmd...)
	cfg.MountNS, cfg.LogLevel, cfg.Flags = mountNS, logLevel(), []string{"--default-network=false"}
	cfg.Log = os.Getenv("HOSTNET_BENCH_DAEMON_LOG")
	p, err := spawnDaemon(cfg, 30*time.Second, 20*time.Millisecond)
	if err != nil {
		return nil, err
	}
	return &benchDaemon{Host: *h, proc: p, c: p.Client()}, nil
}

// spawnDaemon starts hostnetd as cfg says, for Abort to kill, and waits
// for it to answer, asking every poll for at most timeout; one that does
// not answer is stopped.
func spawnDaemon(cfg lab.DaemonConfig, timeout, poll time.Duration) (*lab.Daemon, error) {
	p, err := lab.SpawnDaemon(cfg)
	if err != nil {
		return nil, err
	}
	track(p.Cmd)
	if err := p.WaitReady(timeout, poll); err != nil {
		p.Stop(stopGrace)
		return nil, err
	}
	return p, nil
}

// close stops the daemon, if there is one.
func (d *benchDaemon) close() {
	if d != nil && d.proc != nil {
		d.proc.Stop(stopGrace)
	}
}
