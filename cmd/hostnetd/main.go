// Command hostnetd is hostnet's daemon: it serves the HNS v2 API on a unix
// socket and programs the host's network namespace. Run `hostnetd -h` for
// its flags; each has an environment variable as its default.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"runtime"
	"runtime/debug"
	"syscall"

	"github.com/hostnet/hostnet/internal/daemon"
)

// version is set at build time with -ldflags "-X main.version=..." (make
// build does); otherwise the module's version from the build information.
var version string

// buildVersion is the version the daemon reports.
func buildVersion() string {
	if version != "" {
		return version
	}
	if bi, ok := debug.ReadBuildInfo(); ok && bi.Main.Version != "" && bi.Main.Version != "(devel)" {
		return bi.Main.Version
	}
	return "dev"
}

const usageHeader = `Usage: hostnetd [OPTIONS]

hostnetd serves hostnet's HNS v2 (HCN) API on a unix socket and programs the
host's network namespace (network namespaces, veth, bridges, nftables). It runs
in the foreground and logs to stderr; run by its systemd unit (hostnetd.service)
that is the journal: journalctl -u hostnetd. Each option may be given as the
environment variable its description names; the command line wins.
See hostnetd(8).

Options:
`

func main() {
	fs := flag.NewFlagSet("hostnetd", flag.ExitOnError)
	fs.Usage = func() {
		fmt.Fprint(fs.Output(), usageHeader)
		fs.PrintDefaults()
	}
	config := daemon.Flags(fs)
	showVersion := fs.Bool("version", false, "print the version and exit")
	cleanup := fs.Bool("cleanup", false, "remove hostnet from this host and exit: every kernel object, file and table it made, its state and socket "+
		"(the daemon must be stopped; refused while endpoints exist, unless -force)")
	force := fs.Bool("force", false, "with -cleanup: remove hostnet even while endpoints exist (their containers lose their network)")
	_ = fs.Parse(os.Args[1:])
	if *showVersion {
		fmt.Printf("hostnetd version %s (%s %s/%s)\n", buildVersion(), runtime.Version(), runtime.GOOS, runtime.GOARCH)
		return
	}
	cfg, err := config()
	if err == nil && *force && !*cleanup {
		err = fmt.Errorf("-force is for -cleanup only")
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "hostnetd:", err)
		os.Exit(2)
	}
	cfg.Build = buildVersion()
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	if *cleanup {
		if err := daemon.Cleanup(ctx, cfg, *force, os.Stdout); err != nil {
			fmt.Fprintln(os.Stderr, "hostnetd: cleanup:", err)
			os.Exit(1)
		}
		return
	}
	if err := daemon.Run(ctx, cfg); err != nil {
		cfg.Logger.Error("hostnetd failed", "err", err)
		os.Exit(1)
	}
}
