package e2e

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/hostnet/hostnet/api"
	"github.com/hostnet/hostnet/client"
	"github.com/hostnet/hostnet/internal/dataplane/netns"
	"github.com/hostnet/hostnet/internal/testutil"
	"github.com/hostnet/hostnet/internal/testutil/lab"
)

// usedHostTests are the tests the suite runs on the "used" host: the one
// whose namespace expectations a used host breaks most easily, and two
// that start daemons, use the CLI and send packets.
var usedHostTests = []string{"TestHostNetnsFlagProgramsOnlyThatNamespace", "TestCLINetworkVerbs", "TestRunReachesTheOutside"}

// The suite on a host that is not fresh: ip_forward=1, Docker's bridge, a
// hostnetd of the host's own with its default network, a namespace and an
// attached endpoint (so a bridge, veths, nftables tables, namespace mounts
// under /run/hostnet and ip-netns entries), leftovers of a crashed run (a
// bridge named like hostnet's, namespace mounts under the temporary
// directory, an ip-netns entry), and the user's HOSTNET_ variables set. The
// "host" is a throwaway network namespace with a mount namespace of its
// own (and a /run of its own), so the real host sees none of it.
//
// There, as `make test` does, leakcheck takes a snapshot, a part of the
// suite runs (with its own snapshot-based check at the end), and leakcheck
// compares: both pass, the host's objects are untouched, and objects added
// on purpose afterwards are reported, those and nothing else.
func TestSuiteOnAUsedHost(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("end-to-end tests need root")
	}
	dir, err := os.MkdirTemp(baseDir, "used")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		testutil.UnmountUnder(dir, func(p string) error { return unix.Unmount(p, unix.MNT_DETACH) })
		os.RemoveAll(dir)
	})
	used := filepath.Join(dir, "used.ns")
	if err := netns.Create(used); err != nil {
		t.Fatal(err)
	}
	leakcheck := filepath.Join(dir, "leakcheck")
	if out, err := exec.Command("go", "build", "-o", leakcheck, "../../test/leakcheck").CombinedOutput(); err != nil {
		t.Fatalf("build leakcheck: %v\n%s", err, out)
	}
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 8*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "nsenter", "--net="+used, "--", self, dir, leakcheck)
	cmd.Env = append(cleanEnv(), helperEnv+"=usedhost", binDirEnv+"="+filepath.Dir(hostnetdBin))
	// A mount namespace of its own (Go makes its mounts private): what the
	// used host mounts, the real host never sees, and it goes with it.
	cmd.SysProcAttr = &syscall.SysProcAttr{Unshareflags: syscall.CLONE_NEWNS}
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("the suite on a used host: %v\n%s", err, out)
	}
	t.Logf("the suite on a used host:\n%s", out)
}

// usedHost is the helper process of TestSuiteOnAUsedHost, inside the used
// host's network and mount namespaces: args are its directory and the
// leakcheck binary.
func usedHost(args []string) int {
	if len(args) != 2 {
		fmt.Fprintln(os.Stderr, "usedhost: want DIR LEAKCHECK")
		return 2
	}
	u := &usedHostRun{dir: args[0], leakcheckBin: args[1], binDir: os.Getenv(binDirEnv)}
	err := u.run()
	u.stopDaemon()
	if err != nil {
		fmt.Printf("usedhost: FAILED: %v\n", err)
		if b, _ := os.ReadFile(filepath.Join(u.dir, "daemon.log")); len(b) > 0 {
			fmt.Printf("the used host's hostnetd logged:\n%s\n", lab.Tail(string(b), 30))
		}
		return 1
	}
	fmt.Println("usedhost: ok")
	return 0
}

type usedHostRun struct {
	dir, leakcheckBin, binDir string
	daemon                    *exec.Cmd
}

func (u *usedHostRun) step(format string, args ...any) {
	fmt.Printf("usedhost: "+format+"\n", args...)
}

func (u *usedHostRun) run() error {
	// A /run of its own: the used host's hostnetd runs with its defaults
	// (/run/hostnet, /run/netns) and meets no real daemon there.
	if err := unix.Mount("tmpfs", "/run", "tmpfs", 0, "mode=0755"); err != nil {
		return fmt.Errorf("mount /run: %w", err)
	}
	if err := u.dirty(); err != nil {
		return err
	}
	if err := u.startDaemon(); err != nil {
		return err
	}
	tmp := filepath.Join(u.dir, "tmp")
	present, err := u.hostObjects(tmp)
	if err != nil {
		return err
	}

	// As `make test` does: a directory of the run's own, a snapshot, the
	// suite, a comparison; and without a scope too.
	run := filepath.Join(tmp, "run")
	if err := os.MkdirAll(run, 0o755); err != nil {
		return err
	}
	snapScoped, snapAll := filepath.Join(u.dir, "before-scoped.json"), filepath.Join(u.dir, "before-all.json")
	if out, code := u.leakcheck(tmp, "-snapshot", snapScoped, "-scope", run); code != 0 {
		return fmt.Errorf("leakcheck -snapshot: exit %d\n%s", code, out)
	}
	if out, code := u.leakcheck(tmp, "-snapshot", snapAll); code != 0 {
		return fmt.Errorf("leakcheck -snapshot: exit %d\n%s", code, out)
	}
	if err := u.suite(run); err != nil {
		return err
	}
	if out, code := u.leakcheck(tmp, "-compare", snapScoped, "-scope", run); code != 0 {
		return fmt.Errorf("after the suite, leakcheck -compare -scope blames the suite (exit %d):\n%s", code, out)
	}
	if out, code := u.leakcheck(tmp, "-compare", snapAll); code != 0 {
		return fmt.Errorf("after the suite, leakcheck -compare blames the suite (exit %d):\n%s", code, out)
	}
	u.step("leakcheck -compare after the suite: nothing added")
	if err := u.checkUntouched(tmp, present); err != nil {
		return err
	}

	// What is added now is reported, and nothing else.
	h, err := netlink.NewHandle()
	if err != nil {
		return err
	}
	defer h.Close()
	if err := h.LinkAdd(&netlink.Bridge{LinkAttrs: netlink.LinkAttrs{Name: "hnleak0"}}); err != nil {
		return fmt.Errorf("add hnleak0: %w", err)
	}
	leakedNS := filepath.Join(run, "h9", "leaked.ns")
	if err := netns.Create(leakedNS); err != nil {
		return err
	}
	want := []string{"device hnleak0", "mount " + leakedNS + " (nsfs)"}
	for _, snap := range [][]string{{"-compare", snapScoped, "-scope", run}, {"-compare", snapAll}} {
		out, code := u.leakcheck(tmp, snap...)
		if got := reported(out); code != 1 || !slices.Equal(got, want) {
			return fmt.Errorf("leakcheck %s with two objects added: exit %d, reported %q, want exit 1 and %q:\n%s", strings.Join(snap, " "), code, got, want, out)
		}
	}
	u.step("leakcheck -compare with two objects added: reports those two, nothing else")
	return nil
}

// dirty makes the host a used one, except for its hostnetd.
func (u *usedHostRun) dirty() error {
	if err := os.WriteFile("/proc/sys/net/ipv4/ip_forward", []byte("1"), 0o644); err != nil {
		return err
	}
	h, err := netlink.NewHandle()
	if err != nil {
		return err
	}
	defer h.Close()
	lo, err := h.LinkByName("lo")
	if err != nil {
		return err
	}
	if err := h.LinkSetUp(lo); err != nil {
		return err
	}
	// Docker's bridge, and a device named like hostnet's that no hostnetd
	// claims (one named like its bridges and ports, hnbr* and hnv*, makes
	// a hostnetd with a new state file refuse to start, and a running one
	// remove it).
	if err := h.LinkAdd(&netlink.Bridge{LinkAttrs: netlink.LinkAttrs{Name: "docker0"}}); err != nil {
		return fmt.Errorf("add docker0: %w", err)
	}
	if err := h.LinkAdd(&netlink.Bridge{LinkAttrs: netlink.LinkAttrs{Name: "hn-crashed0"}}); err != nil {
		return fmt.Errorf("add hn-crashed0: %w", err)
	}
	docker, err := h.LinkByName("docker0")
	if err != nil {
		return err
	}
	addr, _ := netlink.ParseAddr("172.17.0.1/16")
	if err := h.AddrAdd(docker, addr); err != nil {
		return err
	}
	if err := h.LinkSetUp(docker); err != nil {
		return err
	}
	// A crashed run's namespaces: under the temporary directory, and an
	// ip-netns entry.
	for _, p := range []string{filepath.Join(u.dir, "tmp", "hnt-e2e-crashed", "h1", "host.ns"), "/run/netns/hn-crashed"} {
		if err := netns.Create(p); err != nil {
			return err
		}
	}
	u.step("ip_forward=1, docker0 172.17.0.1/16, leftovers: device hn-crashed0, a namespace under the temporary directory, /run/netns/hn-crashed")
	return nil
}

// startDaemon starts the used host's own hostnetd with its default socket,
// run directory and ip-netns links, and gives it an attached endpoint.
func (u *usedHostRun) startDaemon() error {
	resolv := filepath.Join(u.dir, "resolv.conf")
	if err := os.WriteFile(resolv, []byte("nameserver 192.0.2.53\n"), 0o644); err != nil {
		return err
	}
	logf, err := os.Create(filepath.Join(u.dir, "daemon.log"))
	if err != nil {
		return err
	}
	defer logf.Close()
	u.daemon = exec.Command(filepath.Join(u.binDir, "hostnetd"), "--state-dir", filepath.Join(u.dir, "state"),
		"--netns-etc-dir", filepath.Join(u.dir, "etc-netns"), "--host-resolv-conf", resolv)
	u.daemon.Env = cleanEnv()
	u.daemon.Stdout, u.daemon.Stderr = logf, logf
	if err := u.daemon.Start(); err != nil {
		return err
	}
	c := client.New(client.DefaultSocket)
	ctx := context.Background()
	for deadline := time.Now().Add(30 * time.Second); ; {
		if _, err := c.Version(ctx); err == nil {
			break
		} else if time.Now().After(deadline) {
			return fmt.Errorf("the used host's hostnetd does not answer: %w", err)
		}
		time.Sleep(20 * time.Millisecond)
	}
	ns, err := c.CreateNamespace(ctx, &api.Namespace{Name: "users-box"})
	if err != nil {
		return err
	}
	if _, err := c.CreateEndpoint(ctx, &api.Endpoint{Name: "users-web", HostComputeNetwork: "nat", HostComputeNamespace: ns.ID}); err != nil {
		return err
	}
	u.step("the host's own hostnetd runs (%s) with network nat and endpoint users-web attached", client.DefaultSocket)
	return nil
}

func (u *usedHostRun) stopDaemon() {
	if u.daemon == nil || u.daemon.Process == nil {
		return
	}
	_ = u.daemon.Process.Signal(syscall.SIGTERM)
	done := make(chan struct{})
	go func() { _ = u.daemon.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(30 * time.Second):
		_ = u.daemon.Process.Kill()
		<-done
	}
}

// hostObjects is what a leak check without a snapshot finds: it must find
// the used host's objects, or the test proves nothing.
func (u *usedHostRun) hostObjects(tmp string) ([]string, error) {
	out, code := u.leakcheck(tmp)
	got := reported(out)
	for _, want := range []string{"device hn-crashed0", "nftables table inet hostnet", "nftables table bridge hostnet", "ip netns hn-crashed",
		"mount " + filepath.Join(tmp, "hnt-e2e-crashed", "h1", "host.ns") + " (nsfs)"} {
		if !slices.Contains(got, want) {
			return nil, fmt.Errorf("leakcheck without a snapshot does not see %q on the used host (exit %d):\n%s", want, code, out)
		}
	}
	var mounts, bridge bool
	for _, o := range got {
		mounts = mounts || strings.HasPrefix(o, "mount /run/hostnet/")
		bridge = bridge || strings.HasPrefix(o, "device hnbr")
	}
	if code != 1 || !mounts || !bridge {
		return nil, fmt.Errorf("leakcheck without a snapshot: exit %d, want 1, the daemon's bridge and its namespace mounts:\n%s", code, out)
	}
	u.step("leakcheck without a snapshot would blame the suite for %d objects of the host's", len(got))
	return got, nil
}

// suite runs a part of the suite, as `make test` runs all of it, with the
// user's HOSTNET_ variables set to values that would break its daemons.
func (u *usedHostRun) suite(run string) error {
	self, err := os.Executable()
	if err != nil {
		return err
	}
	cmd := exec.Command(self, "-test.run=^("+strings.Join(usedHostTests, "|")+")$", "-test.count=1", "-test.v")
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, helperEnv+"=") && !strings.HasPrefix(kv, "TMPDIR=") {
			cmd.Env = append(cmd.Env, kv)
		}
	}
	cmd.Env = append(cmd.Env, "TMPDIR="+run,
		"HOSTNET_SOCKET="+client.DefaultSocket, "HOSTNET_DEFAULT_SUBNET=192.0.2.0/24",
		"HOSTNET_SOCKET_GROUP=no-such-group-hostnet", "HOSTNET_LOG_LEVEL=nonsense")
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	err = cmd.Run()
	if err != nil || strings.Contains(out.String(), "LEAK CHECK FAILED") {
		return fmt.Errorf("the suite on the used host: %v\n%s", err, out.String())
	}
	for _, name := range usedHostTests {
		if !strings.Contains(out.String(), "--- PASS: "+name+" ") {
			return fmt.Errorf("the suite on the used host did not pass %s:\n%s", name, out.String())
		}
	}
	var results []string
	for line := range strings.Lines(out.String()) {
		if strings.Contains(line, "--- ") {
			results = append(results, strings.TrimRight(line, "\n"))
		}
	}
	u.step("go test -run '%s' passed, its own leak check too:\n%s", strings.Join(usedHostTests, "|"), strings.Join(results, "\n"))
	return nil
}

// checkUntouched checks that the host's own objects are all still there,
// and its daemon still serves its endpoint.
func (u *usedHostRun) checkUntouched(tmp string, before []string) error {
	out, _ := u.leakcheck(tmp)
	now := reported(out)
	for _, o := range before {
		if !slices.Contains(now, o) {
			return fmt.Errorf("the suite removed the host's %s", o)
		}
	}
	if _, err := client.New(client.DefaultSocket).GetEndpoint(context.Background(), "users-web"); err != nil {
		return fmt.Errorf("the host's own endpoint after the suite: %w", err)
	}
	if _, err := net.InterfaceByName("docker0"); err != nil {
		return fmt.Errorf("docker0 after the suite: %w", err)
	}
	b, err := os.ReadFile("/proc/sys/net/ipv4/ip_forward")
	if err != nil || strings.TrimSpace(string(b)) != "1" {
		return fmt.Errorf("ip_forward after the suite: %q, %v", b, err)
	}
	u.step("the host's own objects are all still there")
	return nil
}

// leakcheck runs the leakcheck binary with TMPDIR set to tmp.
func (u *usedHostRun) leakcheck(tmp string, args ...string) (string, int) {
	cmd := exec.Command(u.leakcheckBin, args...)
	cmd.Env = append(cleanEnv(), "TMPDIR="+tmp)
	out, err := cmd.CombinedOutput()
	var exit *exec.ExitError
	switch {
	case errors.As(err, &exit):
		return string(out), exit.ExitCode()
	case err != nil:
		return err.Error(), -1
	}
	return string(out), 0
}

// reported lists the objects a leakcheck report names, one per indented line.
func reported(out string) []string {
	var got []string
	for line := range strings.Lines(out) {
		if rest, ok := strings.CutPrefix(line, "  "); ok {
			got = append(got, strings.TrimSpace(rest))
		}
	}
	return got
}
