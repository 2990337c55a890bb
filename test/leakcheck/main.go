// Command leakcheck fails when hostnet's kernel objects are left in the
// root namespace or namespace mounts under the temporary directory: `make
// test` runs it after the whole suite.
package main

import (
	"fmt"
	"os"
	"strings"

	"github.com/hostnet/hostnet/internal/testutil"
)

func main() {
	if leaks := testutil.Leaks(""); len(leaks) > 0 {
		fmt.Fprintf(os.Stderr, "leakcheck: the suite left kernel objects behind:\n  %s\n", strings.Join(leaks, "\n  "))
		os.Exit(1)
	}
	fmt.Println("leakcheck: no namespace, device, mount or nftables table of hostnet's left behind")
}
