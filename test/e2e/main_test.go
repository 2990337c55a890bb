// Package e2e runs hostnet end to end: real daemons, each in a throwaway
// "host" network namespace with an "external" namespace behind its uplink,
// real packets. Nothing is created in the root namespace, and the suite
// checks at the end that nothing of hostnet's was left behind that was not
// there before it started.
package e2e

import (
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/hostnet/hostnet/internal/testutil"
)

var (
	baseDir     string // every test's files, namespaces and sockets live under it
	hostnetdBin string
	hostnetBin  string
	// dockerPluginBin is hostnet-docker, the Docker plugin (TestDocker).
	dockerPluginBin string
	cniBinDir       string // hostnet-cni, and the reference plugins the CNI tests chain (CNI_PATH)
)

// helperEnv makes the test binary act as a small program run inside
// namespaces by `hostnet run` (see runHelper).
const helperEnv = "HOSTNET_E2E_HELPER"

// binDirEnv names a directory holding hostnetd, hostnet and cni-bin/
// already built: the suite then builds nothing.
const binDirEnv = "HOSTNET_E2E_BIN_DIR"

func TestMain(m *testing.M) {
	if mode := os.Getenv(helperEnv); mode != "" {
		os.Exit(runHelper(mode, os.Args[1:]))
	}
	// What the host holds before the run (a hostnetd of its own, leftovers
	// of a crashed run) is not the tests' doing: only what is added counts.
	before := testutil.TakeSnapshot("")
	os.Exit(testutil.CheckMain(run(m), baseDir, before))
}

func run(m *testing.M) int {
	var err error
	if baseDir, err = os.MkdirTemp("", "hnt-e2e-"); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer os.RemoveAll(baseDir)
	// A race-enabled program sleeps a second before it exits, to let late
	// reports in: the CNI plugin runs as one short process per operation.
	os.Setenv("GORACE", strings.TrimSpace(os.Getenv("GORACE")+" atexit_sleep_ms=0"))
	if dir := os.Getenv(binDirEnv); dir != "" && os.Geteuid() == 0 {
		// A run of the suite started by the suite (TestSuiteOnAUsedHost)
		// uses the binaries its parent built.
		hostnetdBin, hostnetBin, cniBinDir = filepath.Join(dir, "hostnetd"), filepath.Join(dir, "hostnet"), filepath.Join(dir, "cni-bin")
		dockerPluginBin = filepath.Join(dir, "hostnet-docker")
	} else if os.Geteuid() == 0 {
		hostnetdBin = filepath.Join(baseDir, "hostnetd")
		hostnetBin = filepath.Join(baseDir, "hostnet")
		dockerPluginBin = filepath.Join(baseDir, "hostnet-docker")
		args := []string{"build", "-o", baseDir}
		if raceEnabled {
			args = append(args, "-race")
		}
		cmd := exec.Command("go", append(args, "../../cmd/hostnetd", "../../cmd/hostnet", "../../cmd/hostnet-docker")...)
		cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
		if err := cmd.Run(); err != nil {
			fmt.Fprintf(os.Stderr, "build the daemon, the CLI and the Docker plugin: %v\n", err)
			return 1
		}
		cniBinDir = filepath.Join(baseDir, "cni-bin")
		args[2] = cniBinDir + "/"
		cmd = exec.Command("go", append(args, "../../cmd/hostnet-cni")...)
		cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
		if err := cmd.Run(); err != nil {
			fmt.Fprintf(os.Stderr, "build the CNI plugin: %v\n", err)
			return 1
		}
	}
	return m.Run()
}

// runHelper is what the test binary does when `hostnet run` starts it
// inside a namespace:
//
//	talk NETWORK ADDR   send "hello" and print the server's answer
//	cat FILE            print a file (the resolv.conf the command sees)
//	exit N              exit with code N
//	httpget URL         print the status line of a HEAD request (curl -sI)
//	httpserve PORT      serve files over HTTP (python3 -m http.server)
func runHelper(mode string, args []string) int {
	switch mode {
	case "talk":
		c, err := net.DialTimeout(args[0], args[1], 3*time.Second)
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 2
		}
		defer c.Close()
		reply, err := Exchange(c, "hello", 3*time.Second)
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 2
		}
		fmt.Println(reply)
		return 0
	case "cat":
		b, err := os.ReadFile(args[0])
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 2
		}
		os.Stdout.Write(b)
		return 0
	case "exit":
		n, _ := strconv.Atoi(args[0])
		return n
	case "usedhost":
		return usedHost(args)
	case "httpget": // URL: print the status line, as curl -sI does
		c := &http.Client{Timeout: 5 * time.Second}
		resp, err := c.Head(args[0])
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 7
		}
		resp.Body.Close()
		fmt.Printf("%s %s\n", resp.Proto, resp.Status)
		return 0
	case "httpserve": // PORT: serve the working directory, as python3 -m http.server does
		if err := http.ListenAndServe(":"+args[0], http.FileServer(http.Dir("."))); err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
		return 0
	}
	fmt.Fprintf(os.Stderr, "unknown helper mode %q (%s)\n", mode, strings.Join(args, " "))
	return 2
}
