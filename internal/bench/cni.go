package bench

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/containernetworking/cni/libcni"
	types100 "github.com/containernetworking/cni/pkg/types/100"
	"github.com/hostnet/hostnet/api"
	"github.com/hostnet/hostnet/internal/dataplane/netns"
	"github.com/hostnet/hostnet/internal/testutil"
	"golang.org/x/sys/unix"
)

// CNIConfig sets up the CNI benchmark.
type CNIConfig struct {
	N          int    // sequential containers per chain: each ADD, then later its DEL
	Concurrent int    // containers added at once, then deleted at once
	Only       string // "" (both chains), "hostnet" or "ref"
	Out        io.Writer
	// DaemonCmd starts hostnetd; DriverCmd runs this benchmark's driver
	// (RunCNIDriver). The benchmark appends their flags.
	DaemonCmd, DriverCmd []string
}

// The goals the report judges hostnet-cni by.
const (
	cniGoalSpeedup    = 10.0
	cniGoalConcurrent = 20
	cniGoalWall       = 200 * time.Millisecond
)

const (
	// cniPortBase is container i's host port (cniPortBase+i): every
	// container publishes one port, as a pod with one hostPort does.
	cniPortBase = 20000
	// cniNetwork is hostnet's network, and the conflist's name.
	cniNetwork = "cnibench"
	// cniSubnet is that network's pool, inside the daemon's namespace only.
	cniSubnet = "10.210.0.0/16"
	// cniOpTimeout bounds one ADD or DEL, so a stuck plugin fails the run
	// instead of hanging it.
	cniOpTimeout = time.Minute
	// cniSettle lets the kernel finish tearing down one chain's namespaces
	// before the next chain is measured, so neither pays for the other.
	cniSettle = 5 * time.Second
)

// chainResult is what the driver measured on one chain; it is also the
// JSON the driver prints for the benchmark.
type chainResult struct {
	Add           Series        `json:"add"`
	Del           Series        `json:"del"`
	ConcurrentAdd time.Duration `json:"concurrentAdd"`
	ConcurrentDel time.Duration `json:"concurrentDel"`
}

// cniChain is one plugin chain as the benchmark drives it.
type cniChain struct {
	name     string // as reported
	dir      string // its own: container namespaces, conflist, libcni cache
	host     string // the namespace the driver, and so the plugins, run in
	binDir   string // the plugins
	conflist []byte
}

// RunCNI measures CNI ADD and DEL through libcni, as a container runtime
// calls them, for hostnet-cni (against a hostnetd it starts) and for the
// reference chain (bridge, host-local, portmap, firewall), one after the
// other, each in throwaway namespaces: N containers added one at a time,
// then deleted one at a time, then Concurrent added at once and deleted at
// once. Every container publishes one port. Everything it made, namespaces
// and their devices and rules included, is gone when it returns, also on
// error or interrupt.
func RunCNI(cfg CNIConfig) error {
	hn, ref, err := measureCNI(cfg)
	if err != nil {
		return err
	}
	reportCNI(cfg.Out, cfg.Concurrent, hn, ref)
	return nil
}

// measureCNI measures the chains cfg asks for (see RunCNI); a chain not
// measured is nil.
func measureCNI(cfg CNIConfig) (hn, ref *chainResult, err error) {
	if err := cfg.validate(); err != nil {
		return nil, nil, err
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	dir, err := newBenchDir("hnt-cnibench-")
	if err != nil {
		return nil, nil, err
	}
	defer removeBenchDir(dir)

	// Both chains' plugins are built before anything is measured, so that
	// a missing iptables or a plugin that does not build fails at once.
	if cfg.runs("ref") {
		if err := checkIptables(); err != nil {
			return nil, nil, err
		}
	}
	var hnBin, refBin string
	if cfg.runs("hostnet") {
		fmt.Fprintln(cfg.Out, "building hostnet-cni...")
		if hnBin, err = buildHostnetPlugin(ctx, filepath.Join(dir, "hostnet-bin")); err != nil {
			return nil, nil, err
		}
	}
	if cfg.runs("ref") {
		fmt.Fprintf(cfg.Out, "building the reference plugins %s...\n", refPluginsVersion)
		refBin = filepath.Join(dir, "ref-bin")
		if err := installRefPlugins(ctx, refBin); err != nil {
			return nil, nil, err
		}
	}
	if cfg.runs("hostnet") {
		if hn, err = runHostnetChain(ctx, dir, hnBin, cfg); err != nil {
			return nil, nil, fmt.Errorf("hostnet-cni: %w", err)
		}
	}
	if cfg.runs("ref") {
		if hn != nil {
			if err := settle(ctx, cfg.Out); err != nil {
				return nil, nil, err
			}
		}
		if ref, err = runRefChain(ctx, dir, refBin, cfg); err != nil {
			return nil, nil, fmt.Errorf("reference chain: %w", err)
		}
	}
	return hn, ref, nil
}

func (cfg CNIConfig) validate() error {
	switch {
	case os.Geteuid() != 0:
		return errors.New("cni: needs root (it creates network namespaces)")
	case cfg.N < 1 || cfg.Concurrent < 1:
		return errors.New("cni: -n and -concurrent must be at least 1")
	case cniPortBase+cfg.N+cfg.Concurrent > 65536:
		return fmt.Errorf("cni: -n plus -concurrent must stay under %d (one host port each from %d)", 65536-cniPortBase, cniPortBase)
	case cfg.Only != "" && cfg.Only != "hostnet" && cfg.Only != "ref":
		return fmt.Errorf(`cni: -only is "", "hostnet" or "ref", not %q`, cfg.Only)
	}
	return nil
}

// runs reports whether the chain ("hostnet" or "ref") is to be measured.
func (cfg CNIConfig) runs(chain string) bool { return cfg.Only == "" || cfg.Only == chain }

// removeBenchDir unmounts every namespace still bound under dir (from a
// run that failed half way) and removes it: a namespace goes with its
// devices and netfilter rules, so nothing of the run is left.
func removeBenchDir(dir string) {
	testutil.UnmountUnder(dir, func(p string) error { return unix.Unmount(p, unix.MNT_DETACH) })
	os.RemoveAll(dir)
}

func settle(ctx context.Context, out io.Writer) error {
	fmt.Fprintf(out, "letting the kernel tear the namespaces down (%s)...\n", cniSettle)
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-time.After(cniSettle):
		return nil
	}
}

// buildHostnetPlugin builds ./cmd/hostnet-cni of the module the benchmark
// is run from into binDir, which it returns: the benchmark measures the
// plugin as it is in the work tree.
func buildHostnetPlugin(ctx context.Context, binDir string) (string, error) {
	out, err := exec.CommandContext(ctx, "go", "env", "GOMOD").Output()
	if err != nil {
		return "", fmt.Errorf("go env GOMOD: %w", err)
	}
	gomod := strings.TrimSpace(string(out))
	if gomod == "" || gomod == os.DevNull {
		return "", errors.New("build hostnet-cni: run the benchmark from inside the hostnet module")
	}
	cmd := exec.CommandContext(ctx, "go", "build", "-o", filepath.Join(binDir, "hostnet-cni"), "./cmd/hostnet-cni")
	cmd.Dir = filepath.Dir(gomod)
	if out, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("build hostnet-cni: %w: %s", err, strings.TrimSpace(string(out)))
	}
	return binDir, nil
}

// hostnetConflist is hostnet-cni's chain: the plugin alone, which asks the
// daemon at sock for an endpoint on the network.
func hostnetConflist(sock string) ([]byte, error) {
	return json.Marshal(map[string]any{
		"cniVersion": "1.1.0",
		"name":       cniNetwork,
		"plugins": []map[string]any{{
			"type":         "hostnet-cni",
			"socket":       sock,
			"network":      cniNetwork,
			"capabilities": map[string]bool{"portMappings": true},
		}},
	})
}

// runHostnetChain starts hostnetd in its own host namespace, creates the
// plugin's network, and drives the plugin from that same namespace, where
// a runtime on that host would run it.
func runHostnetChain(ctx context.Context, dir, binDir string, cfg CNIConfig) (*chainResult, error) {
	d, err := startDaemon(filepath.Join(dir, "hostnet"), cfg.DaemonCmd, false)
	if err != nil {
		return nil, fmt.Errorf("start hostnetd: %w", err)
	}
	defer d.close()
	_, err = d.c.CreateNetwork(ctx, &api.Network{Name: cniNetwork, Type: api.NAT,
		Ipams: []api.Ipam{{Subnets: []api.Subnet{{IpAddressPrefix: cniSubnet}}}}})
	if err != nil {
		return nil, fmt.Errorf("create network %s: %w", cniNetwork, err)
	}
	conflist, err := hostnetConflist(d.proc.Config.SocketPath())
	if err != nil {
		return nil, err
	}
	return runChain(ctx, cniChain{name: "hostnet-cni", dir: d.Dir, host: d.HostNS, binDir: binDir, conflist: conflist}, cfg)
}

// runRefChain drives the reference chain from a fresh host namespace of
// its own: its plugins make the bridge, the host's veths and the iptables
// rules in the namespace they run in, and so they all go with it.
func runRefChain(ctx context.Context, dir, binDir string, cfg CNIConfig) (*chainResult, error) {
	chainDir := filepath.Join(dir, "ref")
	host := filepath.Join(chainDir, "host")
	if err := netns.Create(host); err != nil {
		return nil, err
	}
	defer netns.Delete(host)
	conflist, err := refConflist(filepath.Join(chainDir, "host-local"))
	if err != nil {
		return nil, err
	}
	return runChain(ctx, cniChain{name: "reference chain", dir: chainDir, host: host, binDir: binDir, conflist: conflist}, cfg)
}

// runChain creates the containers' namespaces, has the driver measure the
// chain inside ch.host, and deletes the namespaces again.
func runChain(ctx context.Context, ch cniChain, cfg CNIConfig) (*chainResult, error) {
	nsDir := filepath.Join(ch.dir, "containers")
	total := cfg.N + cfg.Concurrent
	fmt.Fprintf(cfg.Out, "%s: creating %d container namespaces...\n", ch.name, total)
	defer deleteContainerNamespaces(nsDir, total)
	if err := createContainerNamespaces(ctx, nsDir, total); err != nil {
		return nil, err
	}
	confPath := filepath.Join(ch.dir, "net.conflist")
	if err := os.WriteFile(confPath, ch.conflist, 0o644); err != nil {
		return nil, err
	}
	time.Sleep(time.Second) // the namespaces' creation settles
	fmt.Fprintf(cfg.Out, "%s: %d ADDs one at a time, their DELs, then %d ADDs at once and their DELs...\n",
		ch.name, cfg.N, cfg.Concurrent)
	res, err := runDriver(ctx, ch, confPath, nsDir, cfg)
	if err != nil {
		return nil, err
	}
	fmt.Fprintf(cfg.Out, "  %s: ADD median %s, DEL median %s, %d ADDs at once %s\n",
		ch.name, ms(res.Add.Median()), ms(res.Del.Median()), cfg.Concurrent, ms(res.ConcurrentAdd))
	return res, nil
}

// containerNS is the path of container i's namespace under dir.
func containerNS(dir string, i int) string { return filepath.Join(dir, "c"+strconv.Itoa(i)) }

func createContainerNamespaces(ctx context.Context, dir string, n int) error {
	for i := range n {
		if err := ctx.Err(); err != nil {
			return err
		}
		if err := netns.Create(containerNS(dir, i)); err != nil {
			return fmt.Errorf("container namespace %d: %w", i, err)
		}
	}
	return nil
}

// deleteContainerNamespaces removes the first n containers' namespaces,
// those never made included.
func deleteContainerNamespaces(dir string, n int) {
	for i := range n {
		_ = netns.Delete(containerNS(dir, i))
	}
}

// runDriver runs the driver inside ch.host (nsenter, so that the whole
// process, and the plugins it executes, are there from their first
// instruction) and reads its timings.
func runDriver(ctx context.Context, ch cniChain, confPath, nsDir string, cfg CNIConfig) (*chainResult, error) {
	args := append([]string{"--net=" + ch.host, "--"}, cfg.DriverCmd...)
	args = append(args,
		"-conflist", confPath, "-path", ch.binDir, "-cache-dir", filepath.Join(ch.dir, "cache"),
		"-netns-dir", nsDir, "-n", strconv.Itoa(cfg.N), "-concurrent", strconv.Itoa(cfg.Concurrent))
	cmd := exec.CommandContext(ctx, "nsenter", args...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Start()
	if err == nil {
		track(cmd)
		err = cmd.Wait()
	}
	if err != nil {
		return nil, fmt.Errorf("driver: %w: %s", err, tail(stderr.String(), 4000))
	}
	var res chainResult
	if err := json.Unmarshal(stdout.Bytes(), &res); err != nil {
		return nil, fmt.Errorf("driver output: %w", err)
	}
	if len(res.Add) != cfg.N || len(res.Del) != cfg.N {
		return nil, fmt.Errorf("driver output: %d ADDs and %d DELs timed, want %d each", len(res.Add), len(res.Del), cfg.N)
	}
	return &res, nil
}

// tail is the last n bytes of s, trimmed: a failing plugin's own message
// comes last.
func tail(s string, n int) string {
	s = strings.TrimSpace(s)
	if len(s) > n {
		s = "..." + s[len(s)-n:]
	}
	return s
}

// RunCNIDriver is the benchmark's driver, run by RunCNI inside a chain's
// host namespace: it drives the chain through libcni, as a container
// runtime does, and prints its timings as JSON on out. It runs in a
// process of its own because the plugins act on the namespace they are
// run in, and a process cannot be moved there as a whole once it runs.
func RunCNIDriver(args []string, out io.Writer) error {
	fs := flag.NewFlagSet("__cni-driver", flag.ContinueOnError)
	conflist := fs.String("conflist", "", "the chain's conflist file")
	path := fs.String("path", "", "directory of the chain's plugins")
	cacheDir := fs.String("cache-dir", "", "libcni's cache directory")
	nsDir := fs.String("netns-dir", "", "directory of the containers' namespaces (c0, c1, ...)")
	n := fs.Int("n", 200, "containers added, then deleted, one at a time")
	concurrent := fs.Int("concurrent", 20, "containers added, then deleted, at once")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *conflist == "" || *path == "" || *cacheDir == "" || *nsDir == "" {
		return errors.New("cni driver: -conflist, -path, -cache-dir and -netns-dir are required")
	}
	list, err := libcni.ConfListFromFile(*conflist)
	if err != nil {
		return fmt.Errorf("load conflist: %w", err)
	}
	d := &cniDriver{cni: libcni.NewCNIConfigWithCacheDir([]string{*path}, *cacheDir, nil), list: list, nsDir: *nsDir}
	res, err := d.run(context.Background(), *n, *concurrent)
	if err != nil {
		return err
	}
	return json.NewEncoder(out).Encode(res)
}

// cniDriver calls one chain for the containers under nsDir.
type cniDriver struct {
	cni   *libcni.CNIConfig
	list  *libcni.NetworkConfigList
	nsDir string
}

// run times containers 0..n-1 added one at a time, then deleted one at a
// time in the same order (each DEL with all later containers still there,
// as on a busy host), then containers n..n+concurrent-1 added at once, and
// deleted at once.
func (d *cniDriver) run(ctx context.Context, n, concurrent int) (*chainResult, error) {
	res := &chainResult{}
	for i := range n {
		t, err := d.add(ctx, i)
		if err != nil {
			return nil, err
		}
		res.Add = append(res.Add, t)
	}
	for i := range n {
		t, err := d.del(ctx, i)
		if err != nil {
			return nil, err
		}
		res.Del = append(res.Del, t)
	}
	var err error
	if res.ConcurrentAdd, err = wall(ctx, n, concurrent, d.add); err != nil {
		return nil, err
	}
	if res.ConcurrentDel, err = wall(ctx, n, concurrent, d.del); err != nil {
		return nil, err
	}
	return res, nil
}

// runtimeConf is container i as a runtime describes it: its namespace,
// eth0, and one published port.
func (d *cniDriver) runtimeConf(i int) *libcni.RuntimeConf {
	return &libcni.RuntimeConf{
		ContainerID: fmt.Sprintf("cnibench-%d", i),
		NetNS:       containerNS(d.nsDir, i),
		IfName:      "eth0",
		CapabilityArgs: map[string]any{
			"portMappings": []map[string]any{{"hostPort": cniPortBase + i, "containerPort": 80, "protocol": "tcp"}},
		},
	}
}

// add times container i's ADD. The result must carry an address: a chain
// that returns none has not done the work it is being timed on.
func (d *cniDriver) add(ctx context.Context, i int) (time.Duration, error) {
	ctx, cancel := context.WithTimeout(ctx, cniOpTimeout)
	defer cancel()
	start := time.Now()
	r, err := d.cni.AddNetworkList(ctx, d.list, d.runtimeConf(i))
	took := time.Since(start)
	if err != nil {
		return 0, fmt.Errorf("add container %d: %w", i, err)
	}
	res, err := types100.GetResult(r)
	if err != nil {
		return 0, fmt.Errorf("add container %d: result: %w", i, err)
	}
	if len(res.IPs) == 0 {
		return 0, fmt.Errorf("add container %d: the result has no IP address", i)
	}
	return took, nil
}

// del times container i's DEL.
func (d *cniDriver) del(ctx context.Context, i int) (time.Duration, error) {
	ctx, cancel := context.WithTimeout(ctx, cniOpTimeout)
	defer cancel()
	start := time.Now()
	if err := d.cni.DelNetworkList(ctx, d.list, d.runtimeConf(i)); err != nil {
		return 0, fmt.Errorf("del container %d: %w", i, err)
	}
	return time.Since(start), nil
}

// wall runs op for containers from..from+count-1 all at once and times
// the whole, from the first start to the last finish.
func wall(ctx context.Context, from, count int, op func(context.Context, int) (time.Duration, error)) (time.Duration, error) {
	errs := make([]error, count)
	var wg sync.WaitGroup
	start := time.Now()
	for j := range count {
		wg.Go(func() { _, errs[j] = op(ctx, from+j) })
	}
	wg.Wait()
	return time.Since(start), errors.Join(errs...)
}

// reportCNI prints the table and the goals; a chain not measured is nil.
func reportCNI(w io.Writer, concurrent int, hn, ref *chainResult) {
	n := 0
	for _, r := range []*chainResult{hn, ref} {
		if r != nil {
			n = len(r.Add)
		}
	}
	fmt.Fprintf(w, "\ncni: %d containers added one at a time, then deleted one at a time; then %d added at once, "+
		"then deleted at once; one port mapping each. Reference chain: bridge + host-local + portmap + firewall %s (iptables).\n\n",
		n, concurrent, refPluginsVersion)
	fmt.Fprintln(w, "| | hostnet-cni | reference chain | reference / hostnet (how many times faster hostnet-cni is) |")
	fmt.Fprintln(w, "|---|---|---|---|")
	for _, row := range cniRows(concurrent) {
		fmt.Fprintf(w, "| %s | %s | %s | %s |\n", row.name, cell(hn, row.get), cell(ref, row.get), speedup(hn, ref, row.get))
	}
	fmt.Fprintf(w, "\ngoals: ADD median at least %gx faster than the reference chain, DEL likewise, %d concurrent ADDs under %.1f s wall\n",
		cniGoalSpeedup, cniGoalConcurrent, cniGoalWall.Seconds())
	median := func(s func(*chainResult) Series) func(*chainResult) time.Duration {
		return func(r *chainResult) time.Duration { return s(r).Median() }
	}
	fmt.Fprintf(w, "  ADD median at least %gx faster: %s\n", cniGoalSpeedup,
		speedupGoal(hn, ref, median(func(r *chainResult) Series { return r.Add })))
	fmt.Fprintf(w, "  DEL median at least %gx faster: %s\n", cniGoalSpeedup,
		speedupGoal(hn, ref, median(func(r *chainResult) Series { return r.Del })))
	fmt.Fprintf(w, "  %d concurrent ADDs under %.1f s wall: %s\n", cniGoalConcurrent, cniGoalWall.Seconds(), wallGoal(hn, concurrent))
}

type cniRow struct {
	name string
	get  func(*chainResult) time.Duration
}

func cniRows(concurrent int) []cniRow {
	return []cniRow{
		{"ADD median", func(r *chainResult) time.Duration { return r.Add.Median() }},
		{"ADD p99", func(r *chainResult) time.Duration { return r.Add.Quantile(0.99) }},
		{"DEL median", func(r *chainResult) time.Duration { return r.Del.Median() }},
		{"DEL p99", func(r *chainResult) time.Duration { return r.Del.Quantile(0.99) }},
		{fmt.Sprintf("%d concurrent ADDs, wall", concurrent), func(r *chainResult) time.Duration { return r.ConcurrentAdd }},
		{fmt.Sprintf("%d concurrent DELs, wall", concurrent), func(r *chainResult) time.Duration { return r.ConcurrentDel }},
	}
}

func cell(r *chainResult, get func(*chainResult) time.Duration) string {
	if r == nil {
		return "not measured"
	}
	return ms(get(r))
}

// speedup is reference/hostnet: how many times faster hostnet-cni is.
func speedup(hn, ref *chainResult, get func(*chainResult) time.Duration) string {
	if hn == nil || ref == nil {
		return "—"
	}
	return ratio(get(ref), get(hn))
}

func speedupGoal(hn, ref *chainResult, get func(*chainResult) time.Duration) string {
	if hn == nil || ref == nil {
		return "not judged (both chains must be measured)"
	}
	s := speedup(hn, ref, get)
	if h := get(hn); h > 0 && float64(get(ref))/float64(h) >= cniGoalSpeedup {
		return s + ", met"
	}
	return s + ", NOT met"
}

func wallGoal(hn *chainResult, concurrent int) string {
	switch {
	case hn == nil:
		return "not judged (hostnet-cni not measured)"
	case concurrent != cniGoalConcurrent:
		return fmt.Sprintf("not judged (measured with %d at once)", concurrent)
	case hn.ConcurrentAdd < cniGoalWall:
		return fmt.Sprintf("%.3f s, met", hn.ConcurrentAdd.Seconds())
	}
	return fmt.Sprintf("%.3f s, NOT met", hn.ConcurrentAdd.Seconds())
}
