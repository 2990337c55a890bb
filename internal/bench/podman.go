package bench

import (
	"archive/tar"
	"bufio"
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/hostnet/hostnet/internal/dataplane/netns"
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
	if err := netns.Create(filepath.Join(dir, "host")); err != nil {
		return nil, err
	}
	sb, err := newRuntimeSandbox()
	if err != nil {
		return nil, err
	}
	defer sb.close()
	d, err := startDaemonIn(dir, cfg.DaemonCmd, false, sb.mountNS)
	if err != nil {
		return nil, err
	}
	defer d.close()
	p, err := newBenchPodman(dir, cniDir, sb, d)
	if err != nil {
		return nil, err
	}
	rootfs, err := busyboxTarball(dir)
	if err != nil {
		return nil, err
	}
	if out, err := p.run("import", rootfs, "localhost/busybox:bench"); err != nil {
		return nil, fmt.Errorf("podman import: %w: %s", err, out)
	}
	networks := []string{"hostnet", "podman"}
	times := map[string]Series{}
	runOnce := func(network string) (time.Duration, error) {
		t0 := time.Now()
		out, err := p.run("run", "--rm", "--network", network, "localhost/busybox:bench", "true")
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
		Benchmark: fmt.Sprintf("`podman run --rm IMAGE true` wall time, podman %s (CNI backend, runc), over %d", p.version, n),
		Hostnet:   "hostnet-cni: " + hn.Fmt("ms"),
		Baseline:  "podman's own bridge network (CNI bridge + host-local + portmap + firewall + tuning): " + br.Fmt("ms"),
		Ratio:     Ratio(br.Median, hn.Median) + " faster",
		Goal:      "faster than podman's bridge",
		Verdict:   judge(hn.Median < br.Median),
		Raw:       map[string]any{"hostnet": times["hostnet"], "bridge": times["podman"]},
	}}, nil
}

// runtimeSandbox is a private mount namespace, held by a process of its
// own, with tmpfs over /run, /var/lib and /dev/shm: the paths podman fixes
// (/run/netns, /var/lib/cni, its locks) are the benchmark's. It sees the
// mounts made before it only: the host namespace is made first.
type runtimeSandbox struct {
	holder  *exec.Cmd
	mountNS string
}

func newRuntimeSandbox() (*runtimeSandbox, error) {
	script := `mount -t tmpfs tmpfs /run && mount -t tmpfs tmpfs /var/lib && mount -t tmpfs tmpfs /dev/shm &&
mkdir -p /run/netns /var/lib/cni && echo ready && exec sleep 1000000`
	holder := exec.Command("unshare", "--mount", "--propagation", "private", "--", "sh", "-c", script)
	out, err := holder.StdoutPipe()
	if err != nil {
		return nil, err
	}
	if err := holder.Start(); err != nil {
		return nil, err
	}
	track(holder)
	line, err := bufio.NewReader(out).ReadString('\n')
	if err != nil || strings.TrimSpace(line) != "ready" {
		_ = holder.Process.Kill()
		_ = holder.Wait()
		return nil, fmt.Errorf("runtime sandbox: %q, %v", line, err)
	}
	return &runtimeSandbox{holder: holder, mountNS: "/proc/" + strconv.Itoa(holder.Process.Pid) + "/ns/mnt"}, nil
}

// close kills what is left in the sandbox (the benchmark started all of
// it), then its holder.
func (s *runtimeSandbox) close() {
	if want, err := os.Readlink(s.mountNS); err == nil {
		dirs, _ := os.ReadDir("/proc")
		for _, d := range dirs {
			pid, err := strconv.Atoi(d.Name())
			if err != nil || pid == s.holder.Process.Pid || pid == os.Getpid() {
				continue
			}
			if ns, err := os.Readlink(filepath.Join("/proc", d.Name(), "ns", "mnt")); err == nil && ns == want {
				_ = syscall.Kill(pid, syscall.SIGKILL)
			}
		}
	}
	_ = s.holder.Process.Kill()
	_ = s.holder.Wait()
}

// benchPodman is a podman of the benchmark's own, run in the sandbox and
// the daemon's host namespace.
type benchPodman struct {
	sb      *runtimeSandbox
	host    string
	env     []string
	args    []string
	version string
}

func newBenchPodman(dir, cniDir string, sb *runtimeSandbox, d *benchDaemon) (*benchPodman, error) {
	pdir := filepath.Join(dir, "podman")
	netDir := filepath.Join(pdir, "net.d")
	if err := os.MkdirAll(netDir, 0o755); err != nil {
		return nil, err
	}
	conf := fmt.Sprintf(`[containers]
log_driver = "k8s-file"
default_ulimits = ["nofile=1024:1024", "nproc=1024:1024"]
[network]
network_backend = "cni"
cni_plugin_dirs = [%q, "/usr/lib/cni"]
network_config_dir = %q
[engine]
cgroup_manager = "cgroupfs"
events_logger = "file"
events_logfile_path = %q
runtime = "runc"
tmp_dir = %q
`, cniDir, netDir, filepath.Join(pdir, "events.log"), filepath.Join(pdir, "tmp"))
	storage := fmt.Sprintf("[storage]\ndriver = \"vfs\"\nrunroot = %q\ngraphroot = %q\n", filepath.Join(pdir, "runroot"), filepath.Join(pdir, "root"))
	conflist := fmt.Sprintf(`{"cniVersion": "1.0.0", "name": "hostnet", "plugins": [{"type": "hostnet-cni", "network": "hostnet", "socket": %q,
 "networkDefinition": {"type": "NAT", "subnet": "10.89.0.0/24", "gateway": "10.89.0.1"},
 "capabilities": {"portMappings": true, "ips": true, "mac": true, "dns": true}}]}`, filepath.Join(dir, "s.sock"))
	for name, content := range map[string]string{"containers.conf": conf, "storage.conf": storage, "net.d/hostnet.conflist": conflist} {
		if err := os.WriteFile(filepath.Join(pdir, name), []byte(content), 0o644); err != nil {
			return nil, err
		}
	}
	p := &benchPodman{sb: sb, host: d.host,
		env: []string{"CONTAINERS_CONF=" + filepath.Join(pdir, "containers.conf"), "CONTAINERS_STORAGE_CONF=" + filepath.Join(pdir, "storage.conf")},
		args: []string{"podman", "--root", filepath.Join(pdir, "root"), "--runroot", filepath.Join(pdir, "runroot"), "--storage-driver", "vfs",
			"--network-config-dir", netDir, "--cgroup-manager", "cgroupfs", "--tmpdir", filepath.Join(pdir, "tmp"), "--events-backend", "file"}}
	out, err := p.run("version", "--format", "{{.Client.Version}}")
	if err != nil {
		return nil, fmt.Errorf("podman cannot run here: %w: %s", err, out)
	}
	p.version = strings.TrimSpace(out)
	return p, nil
}

func (p *benchPodman) run(args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "nsenter", append(append([]string{"--mount=" + p.sb.mountNS, "--net=" + p.host, "--"}, p.args...), args...)...)
	cmd.Env = append(os.Environ(), p.env...)
	out, err := cmd.CombinedOutput()
	return string(out), err
}

// busyboxTarball writes a root file system of the static /bin/busybox
// (each applet a link to it) as a tarball, for `podman import`.
func busyboxTarball(dir string) (string, error) {
	bin, err := os.ReadFile("/bin/busybox")
	if err != nil {
		return "", err
	}
	list, err := exec.Command("/bin/busybox", "--list").Output()
	if err != nil {
		return "", fmt.Errorf("/bin/busybox --list: %w", err)
	}
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, d := range []string{"bin/", "etc/", "proc/", "sys/", "dev/", "tmp/"} {
		_ = tw.WriteHeader(&tar.Header{Name: d, Typeflag: tar.TypeDir, Mode: 0o755})
	}
	_ = tw.WriteHeader(&tar.Header{Name: "bin/busybox", Typeflag: tar.TypeReg, Mode: 0o755, Size: int64(len(bin))})
	_, _ = tw.Write(bin)
	for _, a := range strings.Fields(string(list)) {
		if a != "busybox" && !strings.Contains(a, "/") {
			_ = tw.WriteHeader(&tar.Header{Name: "bin/" + a, Typeflag: tar.TypeSymlink, Linkname: "busybox", Mode: 0o777})
		}
	}
	if err := tw.Close(); err != nil {
		return "", err
	}
	path := filepath.Join(dir, "busybox-rootfs.tar")
	return path, os.WriteFile(path, buf.Bytes(), 0o644)
}
