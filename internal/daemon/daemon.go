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
	"runtime/pprof"
	"time"

	"github.com/hostnet/hostnet/api"
	"github.com/hostnet/hostnet/internal/dataplane"
	"github.com/hostnet/hostnet/internal/dataplane/nft"
	"github.com/hostnet/hostnet/internal/driver"
	"github.com/hostnet/hostnet/internal/driver/nat"
	"github.com/hostnet/hostnet/internal/server"
	"github.com/hostnet/hostnet/internal/service"
	"github.com/hostnet/hostnet/internal/store"
	"golang.org/x/sys/unix"
)

// Config is hostnetd's configuration; see cmd/hostnetd for the flags.
type Config struct {
	Socket     string
	SocketMode os.FileMode
	StateDir   string
	RunDir     string
	// HostNetns is the path of the network namespace to treat as the host;
	// empty means the daemon's own.
	HostNetns      string
	NetnsLinkDir   string
	NetnsEtcDir    string
	HostResolvConf string
	DefaultNetwork bool
	DefaultSubnet  string
	Build          string
	Logger         *slog.Logger
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
	st, err := store.OpenBolt(cfg.StateDir)
	if err != nil {
		return err
	}
	defer st.Close()

	host, err := dataplane.OpenHost(cfg.HostNetns)
	if err != nil {
		return fmt.Errorf("open host namespace: %w", err)
	}
	defer host.Close()
	fw, err := nft.NewKernel(int(host.NS()))
	if err != nil {
		return fmt.Errorf("open nftables: %w", err)
	}
	defer fw.Close()

	svc := service.New(service.Config{
		Store:          st,
		Host:           host,
		Firewall:       fw,
		Drivers:        map[api.NetworkType]driver.Driver{api.NAT: nat.New(host)},
		NetnsDir:       filepath.Join(cfg.RunDir, "netns"),
		NetnsLinkDir:   cfg.NetnsLinkDir,
		NetnsEtcDir:    cfg.NetnsEtcDir,
		HostResolvConf: cfg.HostResolvConf,
		Logger:         log,
		Build:          cfg.Build,
	})
	defer svc.Close() // before the firewall and host it uses close
	start := time.Now()
	if _, err := svc.Reconcile(); err != nil {
		return fmt.Errorf("reconcile: %w", err)
	}
	if cfg.DefaultNetwork {
		n, err := svc.EnsureDefaultNetwork(cfg.DefaultSubnet)
		if err != nil {
			return fmt.Errorf("default network %q: %w", service.DefaultNetworkName, err)
		}
		log.Info("default network", "name", n.Name, "id", n.ID, "subnet", subnets(n))
	}
	l, err := server.Listen(cfg.Socket, cfg.SocketMode)
	if err != nil {
		return err
	}
	srv := server.New(svc, log)
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(l) }()
	log.Info("hostnetd ready", "socket", cfg.Socket, "state", cfg.StateDir, "host_netns", orDefault(cfg.HostNetns, "(own)"), "startup", time.Since(start))
	if cfg.Ready != nil {
		cfg.Ready()
	}
	select {
	case err := <-errc:
		return err
	case <-ctx.Done():
	}
	log.Info("shutting down; kernel state is left in place")
	sctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	err = srv.Shutdown(sctx)
	_ = os.Remove(cfg.Socket)
	return err
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
