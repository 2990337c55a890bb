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
	"syscall"

	"github.com/hostnet/hostnet/internal/daemon"
)

// version is set at build time with -ldflags "-X main.version=...".
var version = "dev"

func main() {
	fs := flag.NewFlagSet("hostnetd", flag.ExitOnError)
	config := daemon.Flags(fs)
	showVersion := fs.Bool("version", false, "print the version and exit")
	cleanup := fs.Bool("cleanup", false, "remove hostnet from this host and exit: every kernel object, file and table it made, its state and socket "+
		"(the daemon must be stopped; refused while endpoints exist, unless -force)")
	force := fs.Bool("force", false, "with -cleanup: remove hostnet even while endpoints exist (their containers lose their network)")
	_ = fs.Parse(os.Args[1:])
	if *showVersion {
		fmt.Println("hostnetd", version)
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
	cfg.Build = version
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
