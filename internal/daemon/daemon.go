// Package daemon assembles hostnetd: the store, the host namespace, the
// firewall, the drivers, the service and the API server, and runs them
// until its context ends.
package daemon

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"runtime"
	"runtime/debug"
	"runtime/pprof"
	"strings"
	"sync/atomic"
	"time"

	"github.com/hostnet/hostnet/api"
	"github.com/hostnet/hostnet/internal/dataplane"
	"github.com/hostnet/hostnet/internal/dataplane/nft"
	"github.com/hostnet/hostnet/internal/driver"
	"github.com/hostnet/hostnet/internal/driver/l2bridge"
	"github.com/hostnet/hostnet/internal/driver/macvlan"
	"github.com/hostnet/hostnet/internal/driver/nat"
	"github.com/hostnet/hostnet/internal/nftmodel"
	"github.com/hostnet/hostnet/internal/policy"
	"github.com/hostnet/hostnet/internal/reconcile"
	"github.com/hostnet/hostnet/internal/server"
	"github.com/hostnet/hostnet/internal/service"
	"github.com/hostnet/hostnet/internal/store"
	"golang.org/x/sys/unix"
)

// Config is hostnetd's configuration; see cmd/hostnetd for the flags.
type Config struct {
	Socket string
	// SocketMode is the socket's permissions; 0 means 0600, or 0660 with
	// a SocketGroup.
	SocketMode os.FileMode
	// SocketGroup, a group name or gid, owns the socket, and its members
	// may use the API besides root and the daemon's own user; empty: none.
	SocketGroup string
	// MaxConnections bounds the API connections open at once; 0: the
	// server's default.
	MaxConnections int
	// Timeouts of API connections; zero fields take the server's defaults.
	Timeouts server.Timeouts
	StateDir string
	RunDir   string
	// HostNetns is the path of the network namespace to treat as the host;
	// empty means the daemon's own.
	HostNetns      string
	NetnsLinkDir   string
	NetnsEtcDir    string
	HostResolvConf string
	// EmbeddedDNS runs the embedded DNS server for the networks that
	// enable it (the AutomaticDNS policy; docs/dns.md).
	EmbeddedDNS    bool
	DefaultNetwork bool
	DefaultSubnet  string
	// RepairInterval is how often the kernel is checked against the
	// intent and repaired (besides notifications); 0 turns self-repair off.
	RepairInterval time.Duration
	// DHCPTimeout is how long an attach waits for an endpoint's first
	// DHCP lease (0: service.DefaultDHCPTimeout); DHCPRetransmit the
	// clients' first retransmission wait (0: RFC 2131's 4 s), for tests.
	DHCPTimeout, DHCPRetransmit time.Duration
	// RestoreBackup puts the state file's backup back before starting.
	RestoreBackup bool
	// ForgetKernelState lets a daemon with a new, empty state file remove
	// the hostnet objects it finds in the kernel (a lost state's).
	ForgetKernelState bool
	// MetricsListen, a host:port, is where Prometheus metrics are served
	// (at /metrics); empty: none.
	MetricsListen string
	Build         string
	Logger        *slog.Logger
	// Ready, if set, is called once the API is being served.
	Ready func()
}

// Run runs the daemon until ctx is done, then shuts the API down cleanly.
// The kernel state is left in place: the next start adopts it.
func Run(ctx context.Context, cfg Config) error {
	log := cfg.Logger
	if log == nil {
		log = slog.Default()
	}
	if path := os.Getenv("HOSTNET_CPU_PROFILE"); path != "" {
		// For profiling a benchmark's daemon: written at shutdown.
		f, err := os.Create(path)
		if err != nil {
			return fmt.Errorf("cpu profile: %w", err)
		}
		defer f.Close()
		if err := pprof.StartCPUProfile(f); err != nil {
			return fmt.Errorf("cpu profile: %w", err)
		}
		defer pprof.StopCPUProfile()
	}
	raiseFileLimit(log)
	unlock, err := lockStateDir(cfg.StateDir)
	if err != nil {
		return err
	}
	defer unlock()
	if cfg.RestoreBackup {
		aside, err := store.RestoreBackup(cfg.StateDir)
		if err != nil {
			return err
		}
		log.Warn("restored the state file from its backup", "state", cfg.StateDir, "damaged_file_kept_as", orDefault(aside, "(there was none)"))
	}
	openStart := time.Now()
	st, err := store.OpenBolt(cfg.StateDir)
	if err != nil {
		return err
	}
	opened := time.Since(openStart)
	if cfg.RestoreBackup {
		// What was made after the backup is wanted by no record: the
		// start keeps it, under running workloads, until it is pruned.
		if err := service.MarkRestored(st, time.Now()); err != nil {
			st.Close()
			return fmt.Errorf("record the restore in the state file: %w", err)
		}
		log.Warn("after the restore, the kernel objects of hostnet's that no restored record wants are kept and reported; 'hostnet doctor' names them, 'hostnet doctor --prune' removes them")
	}
	go func() {
		if err := st.BackedUp(); err != nil {
			log.Warn("no backup of the state file this time; the last one stays", "err", err)
		}
	}()
	defer st.Close()

	host, err := cfg.openHost()
	if err != nil {
		return fmt.Errorf("open host namespace: %w", err)
	}
	defer host.Close()
	obs, err := cfg.openMetrics(log, host)
	if err != nil {
		return err
	}
	defer obs.close()
	fw := host.Firewall()
	if st.Fresh && !cfg.ForgetKernelState {
		if objs := orphans(host, fw); len(objs) > 0 {
			return fmt.Errorf("the state file in %s is new, but the kernel holds hostnet's objects (%s): they belong to a state that was lost, "+
				"and starting empty would remove them with the traffic they carry. Put the state back (its backup, with --restore-backup), "+
				"or start with --forget-kernel-state to remove them", cfg.StateDir, strings.Join(objs, ", "))
		}
	}

	var svc *service.Service
	dhcpMgr := newLeases(cfg, &svc)
	var lastMutation atomic.Int64 // unix ns; the start's reconciliation counts as one
	lastMutation.Store(time.Now().UnixNano())
	rec := reconcile.New(reconcile.Config{Host: obs.host(host), Logger: log,
		Resync: obs.timed(func(ctx context.Context, reason string) error {
			_, err := svc.Repair(ctx, reason)
			if err == nil {
				// The clients of endpoints the repair forgot stop.
				err = svc.KeepLeases()
			}
			// A full pass plans every owner: its garbage goes back to
			// the system as a burst of mutations' does.
			lastMutation.Store(time.Now().UnixNano())
			return err
		})})
	defer rec.Close() // after the service, before the host
	counted := &commitCounter{Store: st}
	scfg := cfg.service(counted, rec, log)
	scfg.DHCP, scfg.DHCPTimeout = dhcpClients{dhcpMgr}, cfg.DHCPTimeout
	svc = service.New(scfg)
	defer svc.Close() // before the reconciler and host it uses close
	obs.observe(svc)
	// The DHCP clients stop before the service they record through; the
	// leases stay recorded and the addresses on their interfaces, for the
	// next start to renew.
	defer dhcpMgr.Close()
	start := time.Now()
	// The start reads every record and the whole host once and keeps
	// little of it: collecting four times less often while it runs saves
	// a quarter of its CPU at 5,000 endpoints. What it left is given back
	// once it is idle (trimWhenIdle). A GOGC of the user's is left alone.
	restoreGC := func() {}
	if os.Getenv("GOGC") == "" {
		old := debug.SetGCPercent(startGCPercent)
		restoreGC = func() { debug.SetGCPercent(old) }
	}
	_, err = svc.Start(ctx)
	restoreGC()
	if err != nil {
		return fmt.Errorf("reconcile: %w", err)
	}
	// The endpoints' DHCP clients resume their stored leases.
	if err := svc.KeepLeases(); err != nil {
		return err
	}
	if cfg.DefaultNetwork {
		n, err := svc.EnsureDefaultNetwork(ctx, cfg.DefaultSubnet)
		if err != nil {
			return fmt.Errorf("default network %q: %w", service.DefaultNetworkName, err)
		}
		log.Info("default network", "name", n.Name, "id", n.ID, "subnet", subnets(n))
	}
	if cfg.EmbeddedDNS {
		stopDNS, err := cfg.startDNS(svc, counted, log)
		if err != nil {
			return fmt.Errorf("embedded DNS: %w", err)
		}
		defer stopDNS() // after the API stops, before the service closes
	}
	gid, groups := -1, []int(nil)
	if cfg.SocketGroup != "" {
		if gid, err = server.ResolveGroup(cfg.SocketGroup); err != nil {
			return fmt.Errorf("socket group %q: %w", cfg.SocketGroup, err)
		}
		groups = []int{gid}
	}
	mode := cfg.SocketMode
	if mode == 0 {
		mode = 0o600
		if gid >= 0 {
			mode = 0o660
		}
	}
	l, err := server.Listen(cfg.Socket, mode, gid)
	if err != nil {
		return err
	}
	if cfg.RepairInterval > 0 {
		repairCtx, stopRepair := context.WithCancel(context.Background())
		repaired := make(chan struct{})
		go func() {
			defer close(repaired)
			rec.Run(repairCtx, cfg.RepairInterval)
		}()
		defer func() { stopRepair(); <-repaired }() // before the service, host and firewall close
	}
	trimCtx, stopTrim := context.WithCancel(context.Background())
	defer stopTrim()
	go trimWhenIdle(trimCtx, &lastMutation, time.Second)
	srv := server.New(svc, log, server.Options{Timeouts: cfg.Timeouts, MaxConnections: cfg.MaxConnections, Groups: groups,
		AfterMutation: func() { lastMutation.Store(time.Now().UnixNano()) }, ObserveRequest: obs.requests()})
	obs.serve()
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(l) }()
	log.Info("hostnetd ready", "socket", cfg.Socket, "socket_mode", fmt.Sprintf("%04o", mode), "socket_group", orDefault(cfg.SocketGroup, "(none)"),
		"state", cfg.StateDir, "host_netns", orDefault(cfg.HostNetns, "(own)"), "state_check", opened, "startup", time.Since(start))
	if cfg.Ready != nil {
		cfg.Ready()
	}
	select {
	case err := <-errc:
		return err
	case <-ctx.Done():
	}
	writeHeapProfile(svc)
	log.Info("shutting down; kernel state is left in place")
	sctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	err = srv.Shutdown(sctx)
	_ = os.Remove(cfg.Socket)
	return err
}

// openHost opens the host namespace hostnet programs, with its devices'
// prefixes, its namespaces' directories and its nftables tables.
func (cfg Config) openHost() (*dataplane.Linux, error) {
	return dataplane.OpenLinux(cfg.HostNetns, dataplane.HostConfig{
		LinkPrefixes: []string{driver.BridgePrefix, driver.PortPrefix, driver.ShimPrefix, driver.IFBPrefix},
		NetnsDir:     filepath.Join(cfg.RunDir, "netns"),
		NetnsLinkDir: cfg.NetnsLinkDir,
		Tables:       ownedTables,
	})
}

// ownedTables are hostnet's nftables tables in the host namespace: the
// inet one (NAT, routing, ACLs where endpoint traffic crosses the IP
// layer), the bridge one (anti-spoofing) and the netdev one (ACLs at the
// uplinks of macvlan networks). A pass removes whichever no plan wants.
var ownedTables = []dataplane.TableName{
	{Family: nftmodel.FamilyInet, Name: policy.TableName},
	{Family: nftmodel.FamilyBridge, Name: policy.TableName},
	{Family: nftmodel.FamilyNetdev, Name: policy.TableName},
}

// service is the configuration of the service over st and rec, with the
// drivers this build has.
func (cfg Config) service(st store.Store, rec *reconcile.Reconciler, log *slog.Logger) service.Config {
	return service.Config{
		Store:      st,
		Reconciler: rec,
		Drivers: map[api.NetworkType]driver.Driver{api.NAT: nat.New(), api.L2Bridge: l2bridge.New(),
			api.Transparent: macvlan.Transparent(), api.L2Tunnel: macvlan.L2Tunnel()},
		NetnsDir:       filepath.Join(cfg.RunDir, "netns"),
		NetnsLinkDir:   cfg.NetnsLinkDir,
		NetnsEtcDir:    cfg.NetnsEtcDir,
		HostResolvConf: cfg.HostResolvConf,
		EmbeddedDNS:    cfg.EmbeddedDNS,
		Logger:         log,
		Build:          cfg.Build,
	}
}

// startGCPercent is the garbage collector's GOGC while the daemon starts.
const startGCPercent = 400

// trimWhenIdle gives the memory a burst of work left free back to the
// system once no mutation has come for idle: the Go runtime keeps it
// otherwise for minutes, and a host with 5,000 endpoints created in a row
// would see the daemon hold twice what it uses. One forced collection per
// burst, none while requests keep coming.
func trimWhenIdle(ctx context.Context, last *atomic.Int64, idle time.Duration) {
	t := time.NewTicker(idle / 2)
	defer t.Stop()
	var trimmed int64 // the mutation time the last trim followed
	for {
		select {
		case <-ctx.Done():
			return
		case now := <-t.C:
			l := last.Load()
			if l != trimmed && now.Sub(time.Unix(0, l)) >= idle {
				debug.FreeOSMemory()
				trimmed = l
			}
		}
	}
}

// writeHeapProfile writes what is live, with the service, to
// $HOSTNET_HEAP_PROFILE.PID when that is set: for profiling a benchmark's
// daemons (a benchmark restarts its daemon, hence the PID).
func writeHeapProfile(svc *service.Service) {
	path := os.Getenv("HOSTNET_HEAP_PROFILE")
	if path == "" {
		return
	}
	f, err := os.Create(fmt.Sprintf("%s.%d", path, os.Getpid()))
	if err != nil {
		return
	}
	defer f.Close()
	runtime.GC()
	_ = pprof.WriteHeapProfile(f)
	runtime.KeepAlive(svc)
}

// orphans lists hostnet's objects in the kernel: its bridges, ports and ifb devices in
// the host namespace, and its nftables tables.
func orphans(host *dataplane.Linux, fw *nft.Kernel) []string {
	var out []string
	names, _ := host.LinkNames(driver.LinkPrefix)
	for _, name := range names {
		if strings.HasPrefix(name, driver.BridgePrefix) || strings.HasPrefix(name, driver.PortPrefix) || strings.HasPrefix(name, driver.ShimPrefix) || strings.HasPrefix(name, driver.IFBPrefix) {
			out = append(out, "device "+name)
		}
	}
	for _, t := range ownedTables {
		if ok, _ := fw.TableExists(t.Family, t.Name); ok {
			out = append(out, fmt.Sprintf("table %s %s", t.Family, t.Name))
		}
	}
	return out
}

func subnets(n *api.Network) []string {
	var out []string
	for _, ip := range n.Ipams {
		for _, s := range ip.Subnets {
			out = append(out, s.IpAddressPrefix)
		}
	}
	return out
}

func orDefault(s, d string) string {
	if s == "" {
		return d
	}
	return s
}

// raiseFileLimit lifts the soft limit of open files to the hard one: every
// published host port is held by a socket.
func raiseFileLimit(log *slog.Logger) {
	var l unix.Rlimit
	if err := unix.Getrlimit(unix.RLIMIT_NOFILE, &l); err != nil || l.Cur >= l.Max {
		return
	}
	l.Cur = l.Max
	if err := unix.Setrlimit(unix.RLIMIT_NOFILE, &l); err != nil {
		log.Warn("raising the open-file limit failed; publishing many ports may fail", "err", err)
	}
}
