// Command leakcheck fails when a test run left hostnet's kernel objects
// behind: devices named hn*, nftables tables named hostnet (of any family:
// inet, bridge and netdev), ip-netns entries hn-*, mounts under hostnet's
// run directories, and namespace mounts of the run.
//
// `make test` takes a snapshot before the suite and compares after it, so
// that what the host held already (a running hostnetd and its objects,
// Docker's bridge, leftovers of a crashed run) is not reported:
//
//	leakcheck -snapshot FILE              record what is there now
//	leakcheck -compare FILE [-scope DIR]  report what was added since
//
// With -scope, every mount under DIR (the run's own temporary directory)
// counts, and namespace mounts elsewhere under the temporary directory
// (other runs', going on at the same time) do not. Without -compare,
// everything present is reported.
package main

import (
	"flag"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/hostnet/hostnet/internal/testutil"
)

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

func run(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("leakcheck", flag.ContinueOnError)
	fs.SetOutput(stderr)
	snapshot := fs.String("snapshot", "", "record the hostnet objects present now in `file` and exit")
	compare := fs.String("compare", "", "report only the objects added since the snapshot in `file`")
	scope := fs.String("scope", "", "the run's temporary `directory`: every mount under it counts")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if *snapshot != "" {
		s := testutil.TakeSnapshot(*scope)
		if err := s.Write(*snapshot); err != nil {
			fmt.Fprintln(stderr, "leakcheck:", err)
			return 2
		}
		fmt.Fprintf(stdout, "leakcheck: %d hostnet objects present before the run (they will not be reported)\n", len(s))
		return 0
	}
	before := testutil.Snapshot{}
	if *compare != "" {
		var err error
		if before, err = testutil.ReadSnapshot(*compare); err != nil {
			fmt.Fprintln(stderr, "leakcheck:", err)
			return 2
		}
	}
	if leaks := before.Leaked(*scope); len(leaks) > 0 {
		fmt.Fprintf(stderr, "leakcheck: the run left kernel objects behind:\n  %s\n", strings.Join(leaks, "\n  "))
		return 1
	}
	if *compare != "" {
		fmt.Fprintf(stdout, "leakcheck: the run left no namespace, device, mount, nftables table or process of hostnet's behind (%d were there before and are not judged)\n", len(before))
	} else {
		fmt.Fprintln(stdout, "leakcheck: no namespace, device, mount, nftables table or process of hostnet's left behind")
	}
	return 0
}
