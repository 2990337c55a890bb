// Command hostnet-bench measures hostnet beside its baselines, in
// throwaway network namespaces (it needs root). Every figure is printed
// next to a baseline taken in the same run, as a ratio.
//
//	hostnet-bench all [-quick] [-json FILE] [-only NAME] [-l2-drivers L2Bridge,Transparent,L2Tunnel]
//	                                        the whole suite: one Markdown table, raw numbers in FILE
//	                                        (-only l2: the L2 drivers' datapath and attach rows)
//	hostnet-bench attach [-n 1000]          create + attach latency vs bare netlink
//	hostnet-bench program [-n 1000]         programming 1,000 endpoints' policies, then single changes
//	hostnet-bench datapath [-mappings N]    request/response and throughput through a published port
//	hostnet-bench cni [-n 200] [-concurrent 20] [-only hostnet|ref]
//	                                        CNI ADD/DEL latency: hostnet-cni vs bridge+portmap+firewall
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/hostnet/hostnet/internal/bench"
	"github.com/hostnet/hostnet/internal/daemon"
)

func main() {
	if len(os.Args) < 2 {
		fmt.Fprintln(os.Stderr, "usage: hostnet-bench attach|program|datapath|cni [flags]")
		os.Exit(2)
	}
	switch os.Args[1] {
	case "all":
		fs := flag.NewFlagSet("all", flag.ExitOnError)
		quick := fs.Bool("quick", false, "small counts and short measurements (a couple of minutes), not the goals' scale")
		jsonPath := fs.String("json", "bench.json", "where the raw numbers go")
		only := fs.String("only", "", "run only the benchmarks whose name contains this")
		l2 := fs.String("l2-drivers", "", "the L2 network types the l2 benchmarks measure, comma-separated (default all)")
		_ = fs.Parse(os.Args[2:])
		// An interrupted run takes down what its benchmarks made.
		sigs := make(chan os.Signal, 1)
		signal.Notify(sigs, os.Interrupt, syscall.SIGTERM)
		aborting := make(chan struct{})
		go func() {
			<-sigs
			close(aborting)
			fmt.Fprintln(os.Stderr, "hostnet-bench: interrupted; removing the benchmarks' daemons and namespaces")
			bench.Abort()
			os.Exit(130)
		}()
		rep := bench.RunSuite(bench.SuiteConfig{Quick: *quick, Only: *only, L2Drivers: *l2, Out: os.Stdout,
			DaemonCmd: selfDaemon(), DriverCmd: selfCNIDriver()}, bench.Suite())
		select {
		case <-aborting:
			select {} // the benchmark failed because it was killed: Abort exits
		default:
		}
		rep.Markdown(os.Stdout)
		if err := rep.WriteJSON(*jsonPath); err != nil {
			fail(err)
		}
		fmt.Printf("\nraw numbers: %s\n", *jsonPath)
		if len(rep.Failures) > 0 {
			os.Exit(1)
		}
	case "attach":
		fs := flag.NewFlagSet("attach", flag.ExitOnError)
		n := fs.Int("n", 1000, "endpoints per path")
		_ = fs.Parse(os.Args[2:])
		if _, err := bench.RunAttach(bench.AttachConfig{N: *n, Out: os.Stdout, DaemonCmd: selfDaemon()}); err != nil {
			fail(err)
		}
	case "program":
		fs := flag.NewFlagSet("program", flag.ExitOnError)
		n := fs.Int("n", 1000, "endpoints")
		mappings := fs.Int("mappings", 5, "published ports per endpoint")
		acls := fs.Int("acls", 10, "ACL rules per endpoint")
		changes := fs.Int("changes", 40, "single changes measured")
		_ = fs.Parse(os.Args[2:])
		if err := bench.RunProgram(bench.ProgramConfig{N: *n, Mappings: *mappings, ACLs: *acls, Changes: *changes,
			Out: os.Stdout, DaemonCmd: selfDaemon()}); err != nil {
			fail(err)
		}
	case "datapath":
		fs := flag.NewFlagSet("datapath", flag.ExitOnError)
		mappings := fs.Int("mappings", 10000, "mappings on the host in the many-mappings case")
		rounds := fs.Int("rounds", 3, "rounds, alternating the cases")
		duration := fs.Duration("duration", 3*time.Second, "length of each measurement")
		_ = fs.Parse(os.Args[2:])
		if err := bench.RunDatapath(bench.DatapathConfig{Duration: *duration, Rounds: *rounds, Mappings: *mappings,
			Out: os.Stdout, DaemonCmd: selfDaemon()}); err != nil {
			fail(err)
		}
	case "cni":
		fs := flag.NewFlagSet("cni", flag.ExitOnError)
		n := fs.Int("n", 200, "containers per chain added, then deleted, one at a time")
		concurrent := fs.Int("concurrent", 20, "containers per chain added, then deleted, at once")
		only := fs.String("only", "", `measure one chain only: "hostnet" (hostnet-cni) or "ref" (the reference chain)`)
		_ = fs.Parse(os.Args[2:])
		if err := bench.RunCNI(bench.CNIConfig{N: *n, Concurrent: *concurrent, Only: *only, Out: os.Stdout,
			DaemonCmd: selfDaemon(), DriverCmd: selfCNIDriver()}); err != nil {
			fail(err)
		}
	case "__cni-driver":
		// The cni benchmark's libcni driver, run inside a chain's host
		// namespace; it prints its timings as JSON.
		if err := bench.RunCNIDriver(os.Args[2:], os.Stdout); err != nil {
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

// selfDaemon is the command that runs this binary as hostnetd.
func selfDaemon() []string {
	self, err := os.Executable()
	if err != nil {
		fail(err)
	}
	return []string{self, "__daemon"}
}

// selfCNIDriver is the command that runs this binary as the cni
// benchmark's driver.
func selfCNIDriver() []string {
	self, err := os.Executable()
	if err != nil {
		fail(err)
	}
	return []string{self, "__cni-driver"}
}

func fail(err error) {
	fmt.Fprintln(os.Stderr, "hostnet-bench:", err)
	os.Exit(1)
}
