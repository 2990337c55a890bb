// Command hostnet-bench measures hostnet beside its baselines, in
// throwaway network namespaces (it needs root). Every figure is printed
// next to a baseline taken in the same run, as a ratio.
//
//	hostnet-bench attach [-n 1000]    create + attach latency vs bare netlink
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"github.com/hostnet/hostnet/internal/bench"
	"github.com/hostnet/hostnet/internal/daemon"
)

func main() {
	if len(os.Args) < 2 {
		fmt.Fprintln(os.Stderr, "usage: hostnet-bench attach [-n N]")
		os.Exit(2)
	}
	switch os.Args[1] {
	case "attach":
		fs := flag.NewFlagSet("attach", flag.ExitOnError)
		n := fs.Int("n", 1000, "endpoints per path")
		_ = fs.Parse(os.Args[2:])
		self, err := os.Executable()
		if err != nil {
			fail(err)
		}
		if _, err := bench.RunAttach(bench.AttachConfig{N: *n, Out: os.Stdout, DaemonCmd: []string{self, "__daemon"}}); err != nil {
			fail(err)
		}
	case "__daemon":
		// The benchmark's own hostnetd, so that it needs no separate build.
		runDaemon(os.Args[2:])
	default:
		fmt.Fprintf(os.Stderr, "hostnet-bench: unknown benchmark %q\n", os.Args[1])
		os.Exit(2)
	}
}

func runDaemon(args []string) {
	fs := flag.NewFlagSet("daemon", flag.ExitOnError)
	config := daemon.Flags(fs)
	_ = fs.Parse(args)
	cfg, err := config()
	if err != nil {
		fail(err)
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	if err := daemon.Run(ctx, cfg); err != nil {
		fail(err)
	}
}

func fail(err error) {
	fmt.Fprintln(os.Stderr, "hostnet-bench:", err)
	os.Exit(1)
}
