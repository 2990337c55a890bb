package e2e

import (
	"archive/tar"
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/hostnet/hostnet/internal/cni"
)

// Real container runtimes drive hostnet-cni here: podman 4 (CNI backend)
// and nerdctl on containerd. Each runs, with hostnetd, in a sandbox of the
// test's own: the Env's host network namespace, and a private mount
// namespace with tmpfs over /run, /var/lib and /dev/shm, so the paths the
// runtimes fix (/run/netns, /var/lib/cni, /run/containerd/s, their locks)
// are the test's and vanish with it; every root, state and configuration
// directory is under the Env's directory. Where a runtime is not
// installed, its test skips and says what to install (.ci/run installs
// them all).

// The network the runtimes' containers join: the conflist of the README's
// "Use with podman / nerdctl / Kubernetes", with the Env's socket.
const (
	rtNetwork = "hostnet"
	rtSubnet  = "10.89.0.0/24"
	rtGateway = "10.89.0.1"
	rtStatic  = "10.89.0.60"
	rtImage   = "localhost/busybox:test"
)

func rtConflist(socket string) string {
	return fmt.Sprintf(`{
  "cniVersion": "1.0.0",
  "name": "hostnet",
  "plugins": [
    {
      "type": "hostnet-cni",
      "network": "hostnet",
      "socket": %q,
      "networkDefinition": {"type": "NAT", "subnet": "10.89.0.0/24", "gateway": "10.89.0.1"},
      "capabilities": {"portMappings": true, "ips": true, "mac": true, "dns": true}
    }
  ]
}
`, socket)
}

// sandbox is a private mount namespace for a runtime and hostnetd, held
// by a process of its own; commands run in it and in the Env's host
// network namespace.
type sandbox struct {
	t       *testing.T
	e       *Env
	holder  *exec.Cmd
	MountNS string // /proc/PID/ns/mnt of the holder
	Root    string // /proc/PID/root: the sandbox's files, seen from the test
	Env     []string
}

// newSandbox makes the sandbox and points the Env's daemon at it (start
// the daemon after). Cleanup removes every process left in it, the
// daemon's aside (the Env stops it), and with them the namespace.
func newSandbox(t *testing.T, e *Env) *sandbox {
	t.Helper()
	script := `mount -t tmpfs tmpfs /run && mount -t tmpfs tmpfs /var/lib && mount -t tmpfs tmpfs /dev/shm &&
mkdir -p /run/netns /var/lib/cni && echo ready && exec sleep 1000000`
	holder := exec.Command("unshare", "--mount", "--propagation", "private", "--", "sh", "-c", script)
	out, err := holder.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	holder.Stderr = os.Stderr
	if err := holder.Start(); err != nil {
		t.Fatal(err)
	}
	line, err := bufio.NewReader(out).ReadString('\n')
	if err != nil || strings.TrimSpace(line) != "ready" {
		_ = holder.Process.Kill()
		_ = holder.Wait()
		t.Fatalf("sandbox mount namespace: %q, %v", line, err)
	}
	pid := strconv.Itoa(holder.Process.Pid)
	s := &sandbox{t: t, e: e, holder: holder, MountNS: "/proc/" + pid + "/ns/mnt", Root: "/proc/" + pid + "/root"}
	e.DaemonMountNS = s.MountNS
	t.Cleanup(s.close)
	return s
}

// command is name with args inside the sandbox, in the host namespace.
func (s *sandbox) command(ctx context.Context, name string, args ...string) *exec.Cmd {
	cmd := exec.CommandContext(ctx, "nsenter", append([]string{"--mount=" + s.MountNS, "--net=" + s.e.HostNS, "--", name}, args...)...)
	cmd.Env = append(os.Environ(), s.Env...)
	return cmd
}

// run runs a command in the sandbox for at most two minutes and returns
// its output (stdout and stderr).
func (s *sandbox) run(name string, args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	out, err := s.command(ctx, name, args...).CombinedOutput()
	return string(out), err
}

// must runs a command and fails the test unless it succeeds.
func (s *sandbox) must(name string, args ...string) string {
	s.t.Helper()
	out, err := s.run(name, args...)
	if err != nil {
		s.t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out)
	}
	return out
}

// processes lists the processes in the sandbox's mount namespace but its
// holder.
func (s *sandbox) processes() []int {
	want, err := os.Readlink(s.MountNS)
	if err != nil {
		return nil
	}
	var out []int
	dirs, _ := os.ReadDir("/proc")
	for _, d := range dirs {
		pid, err := strconv.Atoi(d.Name())
		if err != nil || pid == s.holder.Process.Pid {
			continue
		}
		if ns, err := os.Readlink(filepath.Join("/proc", d.Name(), "ns", "mnt")); err == nil && ns == want {
			out = append(out, pid)
		}
	}
	return out
}

// close ends what the runtimes left running in the sandbox (containers,
// conmon, shims, containerd: all started by this test), then the holder.
func (s *sandbox) close() {
	daemon := -1
	if s.e.cmd != nil {
		daemon = s.e.cmd.Process.Pid
	}
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(100 * time.Millisecond) {
		left := 0
		for _, pid := range s.processes() {
			if pid != daemon {
				_ = syscall.Kill(pid, syscall.SIGKILL)
				left++
			}
		}
		if left == 0 || time.Now().After(deadline) {
			break
		}
	}
	_ = s.holder.Process.Kill()
	_ = s.holder.Wait()
}

// busyboxRootfs writes a root file system of Debian's static busybox as a
// tarball (every applet a link to it, and a page for httpd in /www) and
// returns its path and its content.
func busyboxRootfs(t *testing.T, dir string) (string, []byte) {
	t.Helper()
	bin, err := os.ReadFile("/bin/busybox")
	if err != nil {
		t.Skipf("no /bin/busybox (apt-get install busybox-static): %v", err)
	}
	list, err := exec.Command("/bin/busybox", "--list").Output()
	if err != nil {
		t.Skipf("/bin/busybox --list: %v (a static busybox is needed: apt-get install busybox-static)", err)
	}
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, d := range []string{"bin/", "etc/", "proc/", "sys/", "dev/", "tmp/", "www/"} {
		_ = tw.WriteHeader(&tar.Header{Name: d, Typeflag: tar.TypeDir, Mode: 0o755, ModTime: time.Unix(0, 0)})
	}
	_ = tw.WriteHeader(&tar.Header{Name: "bin/busybox", Typeflag: tar.TypeReg, Mode: 0o755, Size: int64(len(bin)), ModTime: time.Unix(0, 0)})
	_, _ = tw.Write(bin)
	for _, a := range strings.Fields(string(list)) {
		if a != "busybox" && !strings.Contains(a, "/") {
			_ = tw.WriteHeader(&tar.Header{Name: "bin/" + a, Typeflag: tar.TypeSymlink, Linkname: "busybox", Mode: 0o777, ModTime: time.Unix(0, 0)})
		}
	}
	page := []byte("hello from hostnet\n")
	_ = tw.WriteHeader(&tar.Header{Name: "www/index.html", Typeflag: tar.TypeReg, Mode: 0o644, Size: int64(len(page)), ModTime: time.Unix(0, 0)})
	_, _ = tw.Write(page)
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, "busybox-rootfs.tar")
	if err := os.WriteFile(path, buf.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
	return path, buf.Bytes()
}

// busyboxOCI writes the rootfs as an OCI image archive named rtImage (for
// `nerdctl load`) and returns its path.
func busyboxOCI(t *testing.T, dir string) string {
	t.Helper()
	_, layer := busyboxRootfs(t, dir)
	digest := func(b []byte) string { return fmt.Sprintf("sha256:%x", sha256.Sum256(b)) }
	config, _ := json.Marshal(map[string]any{
		"architecture": "amd64", "os": "linux",
		"config": map[string]any{"Cmd": []string{"sh"}, "Env": []string{"PATH=/bin"}},
		"rootfs": map[string]any{"type": "layers", "diff_ids": []string{digest(layer)}},
	})
	manifest, _ := json.Marshal(map[string]any{
		"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
		"config": map[string]any{"mediaType": "application/vnd.oci.image.config.v1+json", "digest": digest(config), "size": len(config)},
		"layers": []any{map[string]any{"mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": digest(layer), "size": len(layer)}},
	})
	index, _ := json.Marshal(map[string]any{
		"schemaVersion": 2,
		"manifests": []any{map[string]any{"mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": digest(manifest), "size": len(manifest),
			"annotations": map[string]string{"io.containerd.image.name": rtImage, "org.opencontainers.image.ref.name": "test"}}},
	})
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	add := func(name string, b []byte) {
		_ = tw.WriteHeader(&tar.Header{Name: name, Typeflag: tar.TypeReg, Mode: 0o644, Size: int64(len(b)), ModTime: time.Unix(0, 0)})
		_, _ = tw.Write(b)
	}
	add("oci-layout", []byte(`{"imageLayoutVersion":"1.0.0"}`))
	add("index.json", index)
	for _, b := range [][]byte{layer, config, manifest} {
		add("blobs/sha256/"+strings.TrimPrefix(digest(b), "sha256:"), b)
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, "busybox-oci.tar")
	if err := os.WriteFile(path, buf.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

// rtCNIDir is a CNI plugin directory with hostnet-cni and Debian's
// reference plugins (nerdctl wants "bridge" there for its default
// network, even when it is not used).
func rtCNIDir(t *testing.T, dir string) string {
	t.Helper()
	out := filepath.Join(dir, "cni-bin")
	if err := os.MkdirAll(out, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(filepath.Join(cniBinDir, "hostnet-cni"), filepath.Join(out, "hostnet-cni")); err != nil {
		t.Fatal(err)
	}
	ref, _ := filepath.Glob("/usr/lib/cni/*")
	for _, p := range ref {
		_ = os.Symlink(p, filepath.Join(out, filepath.Base(p)))
	}
	return out
}

// httpGet fetches http://addr/ from the namespace at path, one try.
func httpGet(t *testing.T, path, addr string) (string, error) {
	t.Helper()
	c, err := Dial(t, path, "tcp", addr, 2*time.Second)
	if err != nil {
		return "", err
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(3 * time.Second))
	if _, err := io.WriteString(c, "GET / HTTP/1.0\r\nHost: test\r\n\r\n"); err != nil {
		return "", err
	}
	b, err := io.ReadAll(c)
	return string(b), err
}

// serves reports whether http://addr/ from the namespace at path answers
// the rootfs's page, trying again for up to 10 s.
func serves(t *testing.T, path, addr string) bool {
	t.Helper()
	return settle(true, func() bool {
		body, err := httpGet(t, path, addr)
		return err == nil && strings.Contains(body, "hello from hostnet")
	})
}

// lookRuntime finds a runtime's binary, or skips the test saying how to
// install it.
func lookRuntime(t *testing.T, name, install string, dirs ...string) string {
	t.Helper()
	if p, err := exec.LookPath(name); err == nil {
		return p
	}
	for _, d := range dirs {
		if p := filepath.Join(d, name); isExecutable(p) {
			return p
		}
	}
	t.Skipf("%s is not installed: %s (.ci/run does it)", name, install)
	return ""
}

func isExecutable(p string) bool {
	fi, err := os.Stat(p)
	return err == nil && fi.Mode().IsRegular() && fi.Mode()&0o111 != 0
}

// podman is a podman of the test's own: its storage, run root, libpod
// directories, CNI configuration and events under dir, the CNI backend
// with hostnet-cni, cgroupfs.
type podman struct {
	sb   *sandbox
	dir  string
	args []string
}

func newPodman(t *testing.T, sb *sandbox, dir string) *podman {
	t.Helper()
	bin := lookRuntime(t, "podman", "apt-get install podman runc")
	lookRuntime(t, "runc", "apt-get install runc")
	netDir := filepath.Join(dir, "net.d")
	if err := os.MkdirAll(netDir, 0o755); err != nil {
		t.Fatal(err)
	}
	// runc cannot raise limits in this sandbox: containers get low ones.
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
`, cniBinDir, netDir, filepath.Join(dir, "events.log"), filepath.Join(dir, "tmp"))
	storage := fmt.Sprintf("[storage]\ndriver = \"vfs\"\nrunroot = %q\ngraphroot = %q\n", filepath.Join(dir, "runroot"), filepath.Join(dir, "root"))
	for name, content := range map[string]string{"containers.conf": conf, "storage.conf": storage, "net.d/hostnet.conflist": rtConflist(sb.e.Socket)} {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	sb.Env = append(sb.Env, "CONTAINERS_CONF="+filepath.Join(dir, "containers.conf"), "CONTAINERS_STORAGE_CONF="+filepath.Join(dir, "storage.conf"))
	p := &podman{sb: sb, dir: dir, args: []string{bin, "--root", filepath.Join(dir, "root"), "--runroot", filepath.Join(dir, "runroot"),
		"--storage-driver", "vfs", "--network-config-dir", netDir, "--cgroup-manager", "cgroupfs", "--tmpdir", filepath.Join(dir, "tmp"),
		"--events-backend", "file"}}
	if out, err := p.run("info"); err != nil {
		t.Skipf("podman cannot run on this machine: %v\n%s", err, out)
	}
	t.Cleanup(func() { _, _ = p.run("rm", "--all", "--force", "--time", "0") })
	return p
}

func (p *podman) run(args ...string) (string, error) {
	return p.sb.run(p.args[0], append(p.args[1:], args...)...)
}

func (p *podman) must(args ...string) string {
	p.sb.t.Helper()
	return p.sb.must(p.args[0], append(p.args[1:], args...)...)
}

// A container's address, default route and published port as podman 4
// (CNI backend, runc) gives them with hostnet-cni: reached from outside
// and from 127.0.0.1 while conmon holds the port; a static address;
// container to container; `podman network reload` keeps the address and
// the mappings, and CNI CHECK passes after it; a host process's port is
// refused by podman; stop and rm leave nothing.
func TestPodman(t *testing.T) {
	e := NewTopology(t, "--default-network=false")
	sb := newSandbox(t, e)
	p := newPodman(t, sb, filepath.Join(e.Dir, "podman"))
	e.Start()
	rootfs, _ := busyboxRootfs(t, e.Dir)
	p.must("import", rootfs, rtImage)

	out := p.must("run", "--rm", "--network", rtNetwork, rtImage, "sh", "-c", "ip -o -4 addr show eth0; ip route")
	if !strings.Contains(out, "inet 10.89.0.") || !strings.Contains(out, "default via "+rtGateway+" dev eth0") {
		t.Errorf("podman run: the container's address and routes:\n%s", out)
	}

	p.must("run", "-d", "--name", "web", "--network", rtNetwork, "-p", "18080:80", rtImage, "httpd", "-f", "-p", "80", "-h", "/www")
	p.must("run", "-d", "--name", "db", "--network", rtNetwork, "--ip", rtStatic, rtImage, "httpd", "-f", "-p", "80", "-h", "/www")
	checkServed := func(when string) {
		t.Helper()
		if !serves(t, e.ExtNS, hostAddr+":18080") {
			t.Errorf("%s: the published port does not answer from outside", when)
		}
		if !serves(t, e.HostNS, "127.0.0.1:18080") {
			t.Errorf("%s: the published port does not answer on 127.0.0.1", when)
		}
		if out, err := p.run("exec", "web", "timeout", "10", "wget", "-q", "-O", "-", "http://"+rtStatic+"/"); err != nil || !strings.Contains(out, "hello") {
			t.Errorf("%s: container to container: %v\n%s", when, err, out)
		}
		if out := p.must("exec", "db", "ip", "-o", "-4", "addr", "show", "eth0"); !strings.Contains(out, "inet "+rtStatic+"/24") {
			t.Errorf("%s: the static address: %s", when, out)
		}
	}
	checkServed("after run")
	// conmon holds the host port, not hostnet: no one else may bind it.
	if l, err := listenIn(t, e.HostNS, "tcp", ":18080"); err == nil {
		l.Close()
		t.Errorf("the published port is free on the host: conmon does not hold it")
	}

	// `podman network reload` is DEL then ADD, with the address twice.
	p.must("network", "reload", "--all")
	checkServed("after network reload")
	for _, name := range []string{"web", "db"} {
		if err := p.cniCheck(t, name); err != nil {
			t.Errorf("CNI CHECK of %s after the reload: %v", name, err)
		}
	}

	// A port a host process holds: podman's own bind fails, and the
	// container is gone with its endpoint.
	l, err := listenIn(t, e.HostNS, "tcp", ":18081")
	if err != nil {
		t.Fatal(err)
	}
	out, err = p.run("run", "-d", "--name", "taken", "--network", rtNetwork, "-p", "18081:80", rtImage, "sleep", "600")
	l.Close()
	if err == nil || !strings.Contains(out, "address already in use") {
		t.Errorf("podman run -p of a port a process holds: %v\n%s", err, out)
	}
	_, _ = p.run("rm", "--force", "taken")

	p.must("stop", "--time", "0", "web", "db")
	p.must("rm", "web", "db")
	e.checkNoCNILeft(t)
	if body, err := httpGet(t, e.ExtNS, hostAddr+":18080"); err == nil {
		t.Errorf("the mapping outlived its container: %q", body)
	}
	if n, _ := e.Client().ListEndpoints(context.Background(), nil); len(n) > 0 {
		t.Errorf("endpoints left: %+v", n)
	}
}

// cniCheck runs hostnet-cni's CHECK for a podman container as libcni
// would, with the result podman's ADD cached as prevResult.
func (p *podman) cniCheck(t *testing.T, name string) error {
	t.Helper()
	id := strings.TrimSpace(p.must("inspect", "--format", "{{.Id}}", name))
	netns := strings.TrimSpace(p.must("inspect", "--format", "{{.NetworkSettings.SandboxKey}}", name))
	cached, err := os.ReadFile(filepath.Join(p.sb.Root, "var/lib/cni/results", rtNetwork+"-"+id+"-eth0"))
	if err != nil {
		return fmt.Errorf("podman's cached ADD result: %w", err)
	}
	var entry struct {
		Result json.RawMessage `json:"result"`
	}
	if err := json.Unmarshal(cached, &entry); err != nil {
		return err
	}
	var list struct {
		Plugins []map[string]any `json:"plugins"`
	}
	if err := json.Unmarshal([]byte(rtConflist(p.sb.e.Socket)), &list); err != nil {
		return err
	}
	conf := list.Plugins[0]
	conf["cniVersion"], conf["name"], conf["prevResult"] = "1.0.0", rtNetwork, entry.Result
	stdin, _ := json.Marshal(conf)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cmd := p.sb.command(ctx, filepath.Join(cniBinDir, "hostnet-cni"))
	cmd.Env = append(cmd.Env, "CNI_COMMAND=CHECK", "CNI_CONTAINERID="+id, "CNI_NETNS="+netns, "CNI_IFNAME=eth0", "CNI_PATH="+cniBinDir)
	cmd.Stdin = bytes.NewReader(stdin)
	out, err := cmd.CombinedOutput()
	if err != nil {
		return fmt.Errorf("%v: %s", err, out)
	}
	if _, err := p.sb.e.Client().GetEndpoint(ctx, cni.EndpointName(rtNetwork, id, "eth0")); err != nil {
		return err
	}
	return nil
}

// listenIn listens on addr inside the namespace at path.
func listenIn(t *testing.T, path, network, addr string) (net.Listener, error) {
	t.Helper()
	var l net.Listener
	var lerr error
	In(t, path, func() error {
		l, lerr = net.Listen(network, addr)
		return nil
	})
	return l, lerr
}

// containerd and nerdctl of the test's own: containerd's root, state and
// sockets under dir (its CRI plugin off), nerdctl's data root, CNI
// directories and a namespace of its own.
type nerdctl struct {
	sb   *sandbox
	args []string
}

func newNerdctl(t *testing.T, sb *sandbox, dir string) *nerdctl {
	t.Helper()
	gobin := filepath.Join(os.Getenv("HOME"), "go", "bin")
	if out, err := exec.Command("go", "env", "GOPATH").Output(); err == nil {
		gobin = filepath.Join(strings.TrimSpace(string(out)), "bin")
	}
	nbin := lookRuntime(t, "nerdctl", "build it from github.com/containerd/nerdctl v1.7.7 (see .ci/run)", gobin)
	cbin := lookRuntime(t, "containerd", "apt-get install containerd runc")
	lookRuntime(t, "containerd-shim-runc-v2", "apt-get install containerd")
	lookRuntime(t, "runc", "apt-get install runc")
	netDir := filepath.Join(dir, "net.d")
	if err := os.MkdirAll(netDir, 0o755); err != nil {
		t.Fatal(err)
	}
	sock := filepath.Join(dir, "containerd.sock")
	conf := fmt.Sprintf(`version = 2
root = %q
state = %q
disabled_plugins = ["io.containerd.grpc.v1.cri"]
[grpc]
  address = %q
[ttrpc]
  address = %q
`, filepath.Join(dir, "root"), filepath.Join(dir, "state"), sock, sock+".ttrpc")
	for name, content := range map[string]string{"containerd.toml": conf, "net.d/hostnet.conflist": rtConflist(sb.e.Socket)} {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	log, err := os.Create(filepath.Join(dir, "containerd.log"))
	if err != nil {
		t.Fatal(err)
	}
	ctd := sb.command(context.Background(), cbin, "--config", filepath.Join(dir, "containerd.toml"))
	ctd.Stdout, ctd.Stderr = log, log
	if err := ctd.Start(); err != nil {
		t.Fatal(err)
	}
	waited := make(chan struct{})
	go func() { _ = ctd.Wait(); close(waited); log.Close() }()
	t.Cleanup(func() {
		_ = ctd.Process.Signal(syscall.SIGTERM)
		select {
		case <-waited:
		case <-time.After(10 * time.Second):
			_ = ctd.Process.Kill()
			<-waited
		}
	})
	n := &nerdctl{sb: sb, args: []string{nbin, "--address", sock, "--data-root", filepath.Join(dir, "nerdctl"), "--namespace", "hostnet-test",
		"--cni-path", rtCNIDir(t, dir), "--cni-netconfpath", netDir}}
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(100 * time.Millisecond) {
		out, err := n.run("version")
		if err == nil {
			break
		}
		select {
		case <-waited:
			b, _ := os.ReadFile(filepath.Join(dir, "containerd.log"))
			t.Skipf("containerd cannot run on this machine: %s", tail(string(b), 20))
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("containerd did not answer within 30 s: %v\n%s", err, out)
		}
	}
	t.Cleanup(func() { _, _ = n.run("rm", "--force", "web", "db") })
	return n
}

func (n *nerdctl) run(args ...string) (string, error) {
	return n.sb.run(n.args[0], append(n.args[1:], args...)...)
}

func (n *nerdctl) must(args ...string) string {
	n.sb.t.Helper()
	return n.sb.must(n.args[0], append(n.args[1:], args...)...)
}

// The same with nerdctl on containerd, which binds no host port itself:
// the mapping is reached from outside and from 127.0.0.1 with no socket
// of anyone's on the port; run, address, default route, a static address,
// container to container; rm leaves nothing.
func TestNerdctl(t *testing.T) {
	e := NewTopology(t, "--default-network=false")
	sb := newSandbox(t, e)
	n := newNerdctl(t, sb, filepath.Join(e.Dir, "nerdctl"))
	e.Start()
	n.must("load", "--input", busyboxOCI(t, e.Dir))

	out := n.must("run", "--rm", "--net", rtNetwork, rtImage, "sh", "-c", "ip -o -4 addr show eth0; ip route")
	if !strings.Contains(out, "inet 10.89.0.") || !strings.Contains(out, "default via "+rtGateway+" dev eth0") {
		t.Errorf("nerdctl run: the container's address and routes:\n%s", out)
	}
	n.must("run", "-d", "--name", "web", "--net", rtNetwork, "-p", "18080:80", rtImage, "httpd", "-f", "-p", "80", "-h", "/www")
	n.must("run", "-d", "--name", "db", "--net", rtNetwork, "--ip", rtStatic, rtImage, "httpd", "-f", "-p", "80", "-h", "/www")
	if !serves(t, e.ExtNS, hostAddr+":18080") {
		t.Errorf("the published port does not answer from outside")
	}
	if !serves(t, e.HostNS, "127.0.0.1:18080") {
		t.Errorf("the published port does not answer on 127.0.0.1")
	}
	// No one holds the host port (nerdctl binds none, hostnet holds none
	// for a runtime's mapping): a process may bind it.
	if l, err := listenIn(t, e.HostNS, "tcp", ":18080"); err != nil {
		t.Errorf("the host port of a runtime's mapping is held: %v", err)
	} else {
		l.Close()
	}
	if out, err := n.run("exec", "web", "timeout", "10", "wget", "-q", "-O", "-", "http://"+rtStatic+"/"); err != nil || !strings.Contains(out, "hello") {
		t.Errorf("container to container: %v\n%s", err, out)
	}
	if out := n.must("exec", "db", "ip", "-o", "-4", "addr", "show", "eth0"); !strings.Contains(out, "inet "+rtStatic+"/24") {
		t.Errorf("the static address: %s", out)
	}
	n.must("stop", "--time", "0", "web", "db")
	n.must("rm", "web", "db")
	e.checkNoCNILeft(t)
	if body, err := httpGet(t, e.ExtNS, hostAddr+":18080"); err == nil {
		t.Errorf("the mapping outlived its container: %q", body)
	}
}
