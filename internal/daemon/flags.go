package daemon

import (
	"flag"
	"fmt"
	"log/slog"
	"os"
	"strconv"
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
	fs.StringVar(&cfg.Socket, "socket", env("HOSTNET_SOCKET", DefaultSocket), "unix socket of the API (env HOSTNET_SOCKET)")
	fs.StringVar(&cfg.StateDir, "state-dir", env("HOSTNET_STATE_DIR", DefaultStateDir), "directory of the state database (env HOSTNET_STATE_DIR)")
	fs.StringVar(&cfg.RunDir, "run-dir", env("HOSTNET_RUN_DIR", DefaultRunDir), "directory of runtime state: namespace mounts (env HOSTNET_RUN_DIR)")
	level := fs.String("log-level", env("HOSTNET_LOG_LEVEL", "info"), "debug, info, warn or error (env HOSTNET_LOG_LEVEL)")
	fs.StringVar(&cfg.HostNetns, "host-netns", env("HOSTNET_HOST_NETNS", ""), "treat the network namespace at this path as the host and program nothing else; default: the daemon's own (env HOSTNET_HOST_NETNS)")
	fs.StringVar(&cfg.NetnsLinkDir, "netns-link-dir", env("HOSTNET_NETNS_LINK_DIR", "/run/netns"), "link created namespaces here as hn-ID for `ip netns`; empty: don't (env HOSTNET_NETNS_LINK_DIR)")
	fs.StringVar(&cfg.NetnsEtcDir, "netns-etc-dir", env("HOSTNET_NETNS_ETC_DIR", "/etc/netns"), "write each created namespace's resolv.conf as DIR/hn-ID/resolv.conf, for `ip netns exec` and `hostnet run`; empty: don't (env HOSTNET_NETNS_ETC_DIR)")
	fs.StringVar(&cfg.HostResolvConf, "host-resolv-conf", env("HOSTNET_HOST_RESOLV_CONF", "/etc/resolv.conf"), "DNS servers for endpoints that set none (env HOSTNET_HOST_RESOLV_CONF)")
	fs.BoolVar(&cfg.DefaultNetwork, "default-network", envBool("HOSTNET_DEFAULT_NETWORK", true), "create the default NAT network \"nat\" when it does not exist (env HOSTNET_DEFAULT_NETWORK)")
	fs.StringVar(&cfg.DefaultSubnet, "default-subnet", env("HOSTNET_DEFAULT_SUBNET", ""), "subnet of the default network; default: the first free /20 of 172.16.0.0/12 (env HOSTNET_DEFAULT_SUBNET)")
	socketMode := fs.String("socket-mode", env("HOSTNET_SOCKET_MODE", "0600"), "permissions of the socket, octal (env HOSTNET_SOCKET_MODE)")
	return func() (Config, error) {
		var lv slog.Level
		if err := lv.UnmarshalText([]byte(*level)); err != nil {
			return cfg, fmt.Errorf("-log-level %q: want debug, info, warn or error", *level)
		}
		mode, err := strconv.ParseUint(*socketMode, 8, 32)
		if err != nil {
			return cfg, fmt.Errorf("-socket-mode %q: want an octal mode such as 0600", *socketMode)
		}
		cfg.SocketMode = os.FileMode(mode)
		cfg.Logger = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: lv}))
		return cfg, nil
	}
}
