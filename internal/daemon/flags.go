package daemon

import (
	"flag"
	"fmt"
	"log/slog"
	"os"
	"strconv"
	"time"

	"github.com/hostnet/hostnet/internal/server"
)

// DefaultSocket, DefaultStateDir and DefaultRunDir are where hostnetd
// keeps its socket, database and runtime state unless told otherwise.
const (
	DefaultSocket   = "/run/hostnet/hostnet.sock"
	DefaultStateDir = "/var/lib/hostnet"
	DefaultRunDir   = "/run/hostnet"
)

func env(name, def string) string {
	if v, ok := os.LookupEnv(name); ok {
		return v
	}
	return def
}

func envBool(name string, def bool) bool {
	if v, ok := os.LookupEnv(name); ok {
		if b, err := strconv.ParseBool(v); err == nil {
			return b
		}
	}
	return def
}

// Flags registers hostnetd's flags (each with an environment variable as
// its default) on fs, and returns a function that builds the Config once
// fs is parsed. Logs go to stderr.
func Flags(fs *flag.FlagSet) func() (Config, error) {
	var cfg Config
	fs.StringVar(&cfg.Socket, "socket", env("HOSTNET_SOCKET", DefaultSocket), "`path` of the API's unix socket (env HOSTNET_SOCKET)")
	fs.StringVar(&cfg.StateDir, "state-dir", env("HOSTNET_STATE_DIR", DefaultStateDir), "`directory` of the state database (env HOSTNET_STATE_DIR)")
	fs.StringVar(&cfg.RunDir, "run-dir", env("HOSTNET_RUN_DIR", DefaultRunDir), "`directory` of runtime state: namespace mounts (env HOSTNET_RUN_DIR)")
	level := fs.String("log-level", env("HOSTNET_LOG_LEVEL", "info"), "`level` of the log on stderr: debug, info, warn or error (env HOSTNET_LOG_LEVEL)")
	fs.StringVar(&cfg.HostNetns, "host-netns", env("HOSTNET_HOST_NETNS", ""), "treat the network namespace at `path` as the host and program nothing else; default: the daemon's own (env HOSTNET_HOST_NETNS)")
	fs.StringVar(&cfg.NetnsLinkDir, "netns-link-dir", env("HOSTNET_NETNS_LINK_DIR", "/run/netns"), "`directory` where created namespaces are linked as hn-ID, for 'ip netns'; empty: none (env HOSTNET_NETNS_LINK_DIR)")
	fs.StringVar(&cfg.NetnsEtcDir, "netns-etc-dir", env("HOSTNET_NETNS_ETC_DIR", "/etc/netns"), "`directory` where each created namespace's resolv.conf is written, as DIR/hn-ID/resolv.conf, for 'ip netns exec' and 'hostnet run'; empty: none (env HOSTNET_NETNS_ETC_DIR)")
	fs.StringVar(&cfg.HostResolvConf, "host-resolv-conf", env("HOSTNET_HOST_RESOLV_CONF", "/etc/resolv.conf"), "resolv.conf `file` whose DNS servers endpoints that set none get (env HOSTNET_HOST_RESOLV_CONF)")
	fs.BoolVar(&cfg.EmbeddedDNS, "embedded-dns", envBool("HOSTNET_EMBEDDED_DNS", true), "run the embedded DNS server for the networks that enable it (AutomaticDNS policy): their endpoints resolve each other's names on the network's gateway, port 53; false refuses such networks (env HOSTNET_EMBEDDED_DNS)")
	fs.BoolVar(&cfg.DefaultNetwork, "default-network", envBool("HOSTNET_DEFAULT_NETWORK", true), "create the default NAT network \"nat\" when it does not exist (env HOSTNET_DEFAULT_NETWORK)")
	fs.StringVar(&cfg.DefaultSubnet, "default-subnet", env("HOSTNET_DEFAULT_SUBNET", ""), "`prefix` of the default network; default: the first free /20 of 172.16.0.0/12 (env HOSTNET_DEFAULT_SUBNET)")
	repair := fs.String("repair-interval", env("HOSTNET_REPAIR_INTERVAL", "10s"), "`duration` between checks of the kernel against the intent (and repairs), besides notifications of damage; 0: no self-repair (env HOSTNET_REPAIR_INTERVAL)")
	fs.StringVar(&cfg.MetricsListen, "metrics-listen", env("HOSTNET_METRICS_LISTEN", ""), "serve Prometheus metrics over HTTP at `host:port`/metrics (e.g. 127.0.0.1:9360); empty: none (env HOSTNET_METRICS_LISTEN)")
	dhcpTimeout := fs.String("dhcp-timeout", env("HOSTNET_DHCP_TIMEOUT", "15s"), "`duration` an attach waits for the endpoint's first DHCP lease (Transparent networks of Ipams Type DHCP) before it fails and is taken back (env HOSTNET_DHCP_TIMEOUT)")
	fs.BoolVar(&cfg.RestoreBackup, "restore-backup", false, "put the state file's backup (taken at the last sound start) back before starting; the damaged file is kept aside, and the kernel objects made after the backup are kept and reported until 'hostnet doctor --prune'")
	fs.BoolVar(&cfg.ForgetKernelState, "forget-kernel-state", false, "with a new, empty state file, remove the hostnet objects the kernel holds (a lost state's) instead of refusing to start")
	socketMode := fs.String("socket-mode", env("HOSTNET_SOCKET_MODE", ""), "permissions of the socket, an `octal` mode; default 0600, or 0660 with -socket-group (env HOSTNET_SOCKET_MODE)")
	fs.StringVar(&cfg.SocketGroup, "socket-group", env("HOSTNET_SOCKET_GROUP", ""), "`group` (name or gid) whose members may use the API besides root; it owns the socket (env HOSTNET_SOCKET_GROUP)")
	maxConns := fs.String("max-connections", env("HOSTNET_MAX_CONNECTIONS", strconv.Itoa(server.DefaultMaxConnections)), "`number` of API connections open at once at most; at the limit the one waiting longest for its client is closed (env HOSTNET_MAX_CONNECTIONS)")
	timeouts := []struct {
		flag, env string
		dst       *time.Duration
		def       time.Duration
		usage     string
	}{
		{"read-header-timeout", "HOSTNET_READ_HEADER_TIMEOUT", &cfg.Timeouts.ReadHeader, server.DefaultReadHeaderTimeout, "advanced: time a client has to send a request's headers"},
		{"read-timeout", "HOSTNET_READ_TIMEOUT", &cfg.Timeouts.Read, server.DefaultReadTimeout, "advanced: time a client has to send a whole request"},
		{"write-timeout", "HOSTNET_WRITE_TIMEOUT", &cfg.Timeouts.Write, server.DefaultWriteTimeout, "advanced: time to carry out a request and write its answer"},
		{"idle-timeout", "HOSTNET_IDLE_TIMEOUT", &cfg.Timeouts.Idle, server.DefaultIdleTimeout, "advanced: time a kept-alive connection may wait for its next request"},
	}
	timeoutFlags := make([]*string, len(timeouts))
	for i, t := range timeouts {
		timeoutFlags[i] = fs.String(t.flag, env(t.env, t.def.String()), fmt.Sprintf("%s, a `duration` (env %s)", t.usage, t.env))
	}
	return func() (Config, error) {
		var lv slog.Level
		if err := lv.UnmarshalText([]byte(*level)); err != nil {
			return cfg, fmt.Errorf("-log-level %q: want debug, info, warn or error", *level)
		}
		if cfg.SocketGroup != "" {
			if _, err := server.ResolveGroup(cfg.SocketGroup); err != nil {
				return cfg, fmt.Errorf("-socket-group %q: %v", cfg.SocketGroup, err)
			}
		}
		cfg.SocketMode = 0o600
		if cfg.SocketGroup != "" {
			cfg.SocketMode = 0o660
		}
		if *socketMode != "" {
			mode, err := strconv.ParseUint(*socketMode, 8, 32)
			if err != nil || mode > 0o777 {
				return cfg, fmt.Errorf("-socket-mode %q: want an octal mode such as 0600", *socketMode)
			}
			cfg.SocketMode = os.FileMode(mode)
		}
		n, err := strconv.Atoi(*maxConns)
		if err != nil || n < 1 {
			return cfg, fmt.Errorf("-max-connections %q: want a number of at least 1", *maxConns)
		}
		cfg.MaxConnections = n
		if *repair == "0" {
			cfg.RepairInterval = 0
		} else if cfg.RepairInterval, err = time.ParseDuration(*repair); err != nil || cfg.RepairInterval < 0 {
			return cfg, fmt.Errorf("-repair-interval %q: want a duration such as 10s, or 0 for none", *repair)
		}
		if cfg.DHCPTimeout, err = time.ParseDuration(*dhcpTimeout); err != nil || cfg.DHCPTimeout <= 0 {
			return cfg, fmt.Errorf("-dhcp-timeout %q: want a positive duration such as 15s", *dhcpTimeout)
		}
		for i, t := range timeouts {
			d, err := time.ParseDuration(*timeoutFlags[i])
			if err != nil || d <= 0 {
				return cfg, fmt.Errorf("-%s %q: want a positive duration such as %s", t.flag, *timeoutFlags[i], t.def)
			}
			*t.dst = d
		}
		cfg.Logger = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: lv}))
		return cfg, nil
	}
}
