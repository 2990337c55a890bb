package bench

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/hostnet/hostnet/internal/testutil/lab"
	"github.com/hostnet/hostnet/internal/testutil/runtimes"
)

// BenchPodman measures what a podman user waits for: the wall time of
// `podman run --rm IMAGE true` (podman 4, CNI backend, runc, a static
// busybox image) on a hostnet network through hostnet-cni, beside the same
// on podman's own default network (the CNI bridge, host-local, portmap,
// firewall and tuning plugins), rounds alternating the two, in one
// throwaway host namespace and a private mount namespace of the
// benchmark's own (tmpfs over /run, /var/lib and /dev/shm; podman's
// storage and configuration under its directory).
func BenchPodman(cfg SuiteConfig) ([]Row, error) {
	n := 30
	if cfg.Quick {
		n = 10
	}
	for _, c := range [][2]string{{"podman", "podman"}, {"runc", "runc"}, {"iptables", "iptables"}} {
		if _, err := ensureCommand(cfg.Out, c[0], c[1]); err != nil {
			return nil, err
		}
	}
	if _, err := os.Stat("/bin/busybox"); err != nil {
		if err := aptRetry(cfg.Out, "", "install", "-y", "--no-install-recommends", "busybox-static"); err != nil {
			return nil, fmt.Errorf("install busybox-static: %w", err)
		}
	}
	ctx := context.Background()
	dir, err := newBenchDir("hnt-bench-podman-")
	if err != nil {
		return nil, err
	}
	defer removeBenchDir(dir)
	fmt.Fprintln(cfg.Out, "building hostnet-cni...")
	cniDir, err := buildHostnetPlugin(ctx, filepath.Join(dir, "cni-bin"))
	if err != nil {
		return nil, err
	}
	// The sandbox sees the mounts made before it: the host namespace first.
	h, err := lab.NewHost(dir, false)
	if err != nil {
		return nil, err
	}
	sb, err := runtimes.NewSandbox(h.HostNS)
	if err != nil {
		return nil, err
	}
	track(sb.Holder)
	defer sb.Close(-1) // after the daemon's close: nothing of the benchmark's is left in it
	d, err := startDaemonOn(h, cfg.DaemonCmd, sb.MountNS)
	if err != nil {
		return nil, err
	}
	defer d.close()
	p, err := runtimes.NewPodman(sb, "podman", filepath.Join(dir, "podman"), cniDir, d.proc.Config.SocketPath())
	if err != nil {
		return nil, err
	}
	out, err := p.Run("version", "--format", "{{.Client.Version}}")
	if err != nil {
		return nil, fmt.Errorf("podman cannot run here: %w: %s", err, out)
	}
	version := strings.TrimSpace(out)
	rootfs, _, err := runtimes.BusyboxRootfs(dir)
	if err != nil {
		return nil, err
	}
	if out, err := p.Run("import", rootfs, "localhost/busybox:bench"); err != nil {
		return nil, fmt.Errorf("podman import: %w: %s", err, out)
	}
	networks := []string{"hostnet", "podman"}
	times := map[string]Series{}
	runOnce := func(network string) (time.Duration, error) {
		t0 := time.Now()
		out, err := p.Run("run", "--rm", "--network", network, "localhost/busybox:bench", "true")
		if err != nil {
			return 0, fmt.Errorf("podman run --network %s: %w: %s", network, err, out)
		}
		return time.Since(t0), nil
	}
	fmt.Fprintf(cfg.Out, "podman run --rm ... true: 3 warm-up runs, then %d, alternating the networks...\n", n)
	for i := 0; i < 3; i++ {
		for _, nw := range networks {
			if _, err := runOnce(nw); err != nil {
				return nil, err
			}
		}
	}
	for i := 0; i < n; i++ {
		order := networks
		if i%2 == 1 {
			order = []string{networks[1], networks[0]}
		}
		for _, nw := range order {
			took, err := runOnce(nw)
			if err != nil {
				return nil, err
			}
			times[nw] = append(times[nw], took)
		}
	}
	hn, br := Summarize(times["hostnet"].Millis()), Summarize(times["podman"].Millis())
	return []Row{{
		Benchmark: fmt.Sprintf("`podman run --rm IMAGE true` wall time, podman %s (CNI backend, runc), over %d", version, n),
		Hostnet:   "hostnet-cni: " + hn.Fmt("ms"),
		Baseline:  "podman's own bridge network (CNI bridge + host-local + portmap + firewall + tuning): " + br.Fmt("ms"),
		Ratio:     Ratio(br.Median, hn.Median) + " faster",
		Goal:      "faster than podman's bridge",
		Verdict:   judge(hn.Median < br.Median),
		Raw:       map[string]any{"hostnet": times["hostnet"], "bridge": times["podman"]},
	}}, nil
}
