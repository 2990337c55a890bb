package bench

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/hostnet/hostnet/api"
	"github.com/hostnet/hostnet/internal/testutil/lab"
)

// The flow endpoint's published ports (the same inside and outside).
const (
	scaleUDPPort = 9000
	scaleTCPPort = 9001
)

// scaleEnv is the scale benchmark's one daemon, with its networks and
// endpoints: the setup the memory and restart rows share.
type scaleEnv struct {
	out     io.Writer
	dir     string
	d       *benchDaemon
	per     int      // endpoints per network: a bridge takes at most 1023 ports
	nets    []string // network names, in order
	eps     int      // endpoints created
	flowNS  string   // the namespace of endpoint 0, which publishes the flow's ports
	flow    *scaleFlow
	outMu   sync.Mutex
	started time.Time
}

// newScaleEnv starts the daemon, with an external namespace, in a new
// temporary directory. The daemon runs with GODEBUG=gctrace=1, so that its
// log tells the live heap beside the RSS; that only prints, it changes
// nothing the daemon does.
func newScaleEnv(cfg SuiteConfig, per int) (*scaleEnv, error) {
	dir, err := newBenchDir("hnt-bench-scale-")
	if err != nil {
		return nil, err
	}
	e := &scaleEnv{out: cfg.Out, dir: dir, per: per, started: time.Now()}
	cmd := append([]string{"env", "GODEBUG=gctrace=1"}, cfg.DaemonCmd...)
	if e.d, err = startDaemon(filepath.Join(dir, "scale"), cmd, true); err != nil {
		e.close()
		return nil, fmt.Errorf("start hostnetd: %w", err)
	}
	return e, nil
}

// close stops the flow and the daemon and removes everything: the
// namespaces (the host's, the external one and the endpoints', all bind
// mounts under dir) go with their mounts, and with them every link and
// nftables table the benchmark made.
func (e *scaleEnv) close() {
	if e.flow != nil {
		e.flow.close()
	}
	if e.d != nil {
		e.d.close()
	}
	_ = lab.Remove(e.dir)
}

func (e *scaleEnv) printf(format string, args ...any) {
	e.outMu.Lock()
	defer e.outMu.Unlock()
	fmt.Fprintf(e.out, format, args...)
}

// logPath is the daemon's log file.
func (e *scaleEnv) logPath() string { return e.d.proc.Config.LogPath() }

// addNetwork creates the next network: a /21 of 10.100.0.0/16 each, room
// for 2,000 endpoints, of which it gets per.
func (e *scaleEnv) addNetwork() error {
	k := len(e.nets)
	if k >= 32 {
		return errors.New("out of /21s in 10.100.0.0/16")
	}
	name := fmt.Sprintf("scale%d", k)
	_, err := e.d.c.CreateNetwork(context.Background(), &api.Network{Name: name, Type: api.NAT,
		Ipams: []api.Ipam{{Subnets: []api.Subnet{{IpAddressPrefix: fmt.Sprintf("10.100.%d.0/21", 8*k)}}}}})
	if err != nil {
		return fmt.Errorf("network %s: %w", name, err)
	}
	e.nets = append(e.nets, name)
	return nil
}

// grow creates endpoints, each in a namespace of its own made through the
// API, until there are n. Endpoint 0 publishes the flow's ports. A few
// requests are in flight at once, only to make the setup shorter.
func (e *scaleEnv) grow(n int) error {
	for len(e.nets)*e.per < n {
		if err := e.addNetwork(); err != nil {
			return err
		}
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	create := func(i int) error {
		ns, err := e.d.c.CreateNamespace(ctx, &api.Namespace{})
		if err != nil {
			return fmt.Errorf("namespace %d: %w", i, err)
		}
		ep := &api.Endpoint{HostComputeNetwork: e.nets[i/e.per], HostComputeNamespace: ns.ID}
		if i == 0 {
			ep.Name = "flow"
			ep.Policies = []api.Policy{scalePortMapping(17, scaleUDPPort), scalePortMapping(6, scaleTCPPort)}
			e.flowNS = ns.NetNamespacePath
		}
		if _, err := e.d.c.CreateEndpoint(ctx, ep); err != nil {
			return fmt.Errorf("endpoint %d: %w", i, err)
		}
		return nil
	}
	if e.eps == 0 && n > 0 {
		if err := create(0); err != nil {
			return err
		}
		e.eps = 1
	}
	const workers = 4
	jobs := make(chan int)
	errc := make(chan error, workers)
	var wg sync.WaitGroup
	step := max(100, n/10)
	for range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range jobs {
				if err := create(i); err != nil {
					errc <- err
					cancel()
					return
				}
				if (i+1)%step == 0 {
					e.printf("  scale: %d endpoints (%s since start)\n", i+1, time.Since(e.started).Round(time.Second))
				}
			}
		}()
	}
feed:
	for i := e.eps; i < n; i++ {
		select {
		case jobs <- i:
		case <-ctx.Done():
			break feed
		}
	}
	close(jobs)
	wg.Wait()
	close(errc)
	// The first error cancelled the others' requests: report that one.
	var first error
	for err := range errc {
		if first == nil || errors.Is(first, context.Canceled) {
			first = err
		}
	}
	if first != nil {
		return first
	}
	e.eps = n
	return nil
}

func scalePortMapping(proto uint32, port uint16) api.Policy {
	b, _ := json.Marshal(api.PortMappingSettings{Protocol: proto, ExternalPort: port, InternalPort: port})
	return api.Policy{Type: api.PortMapping, Settings: b}
}

// memory reads the daemon's memory after letting it settle.
func (e *scaleEnv) memory(settle time.Duration) (scaleMem, bool, error) {
	time.Sleep(settle)
	pid, err := scaleDaemonPID(e.d.proc.Cmd.Process.Pid)
	if err != nil {
		return scaleMem{}, false, err
	}
	m, err := readScaleMem(pid, e.eps, e.logPath())
	return m, pid == e.d.proc.Cmd.Process.Pid, err
}

// scaleRestart is one restart's timings.
type scaleRestart struct {
	Total    time.Duration `json:"totalNs"`      // SIGTERM to the new daemon answering
	Shutdown time.Duration `json:"shutdownNs"`   // SIGTERM to the old daemon's exit
	StartSeq uint64        `json:"flowStartSeq"` // the flow's next sequence number at SIGTERM
	// Warnings and errors logged by the old daemon while it stopped, and
	// by the new one until it answered.
	ShutdownLog []string `json:"shutdownLog,omitempty"`
	// CPU the new daemon used until it answered, user and system: beside
	// Total, it tells computing from waiting.
	UserCPU  time.Duration `json:"userCpuNs"`
	SysCPU   time.Duration `json:"sysCpuNs"`
	StartLog []string      `json:"startLog,omitempty"`
}

// restart stops the daemon with SIGTERM and starts it again on the same
// state. hostnetd reconciles the kernel before it listens (daemon.Run:
// Reconcile, then Listen and Serve), and the old daemon's socket is gone
// once it has exited, so the first answer comes from a daemon whose kernel
// is reconciled.
func (e *scaleEnv) restart(env ...string) (scaleRestart, error) {
	var r scaleRestart
	if e.flow != nil {
		r.StartSeq = e.flow.seq()
	}
	logPath := e.logPath()
	logFrom := scaleLogSize(logPath)
	old := e.d
	t0 := time.Now()
	if err := old.proc.Cmd.Process.Signal(syscall.SIGTERM); err != nil {
		return r, fmt.Errorf("signal hostnetd: %w", err)
	}
	<-old.proc.Exited()
	r.Shutdown = time.Since(t0)
	logMid := scaleLogSize(logPath)
	e.d = nil // the old one is gone; close must not wait for it again
	cfg := old.proc.Config
	cfg.Env = nil // newScaleEnv's daemon's environment, plus this restart's env
	if len(env) > 0 {
		cfg.Env = append(os.Environ(), env...)
	}
	nd, err := spawnDaemon(cfg, time.Until(t0.Add(2*time.Minute)), 2*time.Millisecond)
	if err != nil {
		return r, fmt.Errorf("hostnetd did not answer within 2 minutes of its restart: %w", err)
	}
	e.d = &benchDaemon{Host: old.Host, proc: nd, c: old.c}
	r.Total = time.Since(t0)
	if pid, err := scaleDaemonPID(nd.Cmd.Process.Pid); err == nil {
		r.UserCPU, r.SysCPU, _ = scaleProcCPU(pid)
	}
	r.ShutdownLog = scaleLogErrors(logPath, logFrom, logMid)
	r.StartLog = scaleLogErrors(logPath, logMid, scaleLogSize(logPath))
	return r, nil
}

func scaleLogSize(path string) int64 {
	if st, err := os.Stat(path); err == nil {
		return st.Size()
	}
	return 0
}

// scaleLogErrors returns the lines of path between offsets from and to
// logged at warn or error level (the gctrace lines are not), shortened to
// their message and error.
func scaleLogErrors(path string, from, to int64) []string {
	f, err := os.Open(path)
	if err != nil {
		return nil
	}
	defer f.Close()
	b, err := io.ReadAll(io.NewSectionReader(f, from, to-from))
	if err != nil {
		return nil
	}
	var out []string
	for _, line := range strings.Split(string(b), "\n") {
		if !strings.Contains(line, "level=WARN") && !strings.Contains(line, "level=ERROR") {
			continue
		}
		if i := strings.Index(line, "msg="); i >= 0 {
			line = line[i:]
		}
		out = append(out, line)
	}
	return out
}
