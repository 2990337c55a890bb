package e2e

import (
	"archive/tar"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/hostnet/hostnet/internal/cni"
	"github.com/hostnet/hostnet/internal/testutil/lab"
	"github.com/hostnet/hostnet/internal/testutil/runtimes"
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

// The network the runtimes' containers join (runtimes.Conflist, with the
// Env's socket), a static address in it, and the image they run.
const (
	rtNetwork = runtimes.Network
	rtGateway = runtimes.Gateway
	rtStatic  = "10.89.0.60"
	rtImage   = "localhost/busybox:test"
)

// sandbox is a runtime's sandbox (runtimes.Sandbox) in the Env's host
// network namespace, where the Env's daemon runs too.
type sandbox struct {
	*runtimes.Sandbox
	t *testing.T
	e *Env
}

// newSandbox makes the sandbox and points the Env's daemon at it (start
// the daemon after). Cleanup removes every process left in it, the
// daemon's aside (the Env stops it), and with them the namespace.
func newSandbox(t *testing.T, e *Env) *sandbox {
	t.Helper()
	sb, err := runtimes.NewSandbox(e.HostNS)
	if err != nil {
		t.Fatal(err)
	}
	s := &sandbox{Sandbox: sb, t: t, e: e}
	e.DaemonMountNS = s.MountNS
	t.Cleanup(func() { s.Close(e.daemonPID()) })
	return s
}

// must runs a command and fails the test unless it succeeds.
func (s *sandbox) must(name string, args ...string) string {
	s.t.Helper()
	out, err := s.Run(name, args...)
	if err != nil {
		s.t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out)
	}
	return out
}

// skipRuntime skips a test whose runtime cannot run here, saying why; with
// HOSTNET_REQUIRE_RUNTIMES set (.ci/run sets it, having installed them)
// it fails instead, so that a runtime test never passes by not running.
func skipRuntime(t *testing.T, format string, args ...any) {
	t.Helper()
	if os.Getenv("HOSTNET_REQUIRE_RUNTIMES") != "" {
		t.Fatalf("HOSTNET_REQUIRE_RUNTIMES is set, but "+format, args...)
	}
	t.Skipf(format, args...)
}

// busyboxRootfs writes a root file system of Debian's static busybox as a
// tarball (runtimes.BusyboxRootfs) and returns its path and its content.
// Without a static busybox the test skips.
func busyboxRootfs(t *testing.T, dir string) (string, []byte) {
	t.Helper()
	path, content, err := runtimes.BusyboxRootfs(dir)
	if errors.Is(err, runtimes.ErrNoBusybox) {
		skipRuntime(t, "%v", err)
	}
	if err != nil {
		t.Fatal(err)
	}
	return path, content
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
	skipRuntime(t, "%s is not installed: %s (.ci/run does it)", name, install)
	return ""
}

func isExecutable(p string) bool {
	fi, err := os.Stat(p)
	return err == nil && fi.Mode().IsRegular() && fi.Mode()&0o111 != 0
}

// rtCommand is a runtime's command line in the sandbox: the program and
// its global flags.
type rtCommand struct {
	sb   *sandbox
	args []string
}

// run runs the runtime with args (sandbox.Run).
func (r *rtCommand) run(args ...string) (string, error) {
	return r.sb.Run(r.args[0], append(r.args[1:], args...)...)
}

// must runs the runtime with args and fails the test unless it succeeds.
func (r *rtCommand) must(args ...string) string {
	r.sb.t.Helper()
	return r.sb.must(r.args[0], append(r.args[1:], args...)...)
}

// runContainers checks what `run --rm` shows of a container's network
// (an address of the network, the default route through its gateway),
// then starts the containers checkServed asks: web, an httpd publishing
// port 18080 as 80, and db, an httpd at the static address rtStatic.
func (r *rtCommand) runContainers(t *testing.T) {
	t.Helper()
	out := r.must("run", "--rm", "--network", rtNetwork, rtImage, "sh", "-c", "ip -o -4 addr show eth0; ip route")
	if !strings.Contains(out, "inet 10.89.0.") || !strings.Contains(out, "default via "+rtGateway+" dev eth0") {
		t.Errorf("%s run: the container's address and routes:\n%s", filepath.Base(r.args[0]), out)
	}
	r.must("run", "-d", "--name", "web", "--network", rtNetwork, "-p", "18080:80", rtImage, "httpd", "-f", "-p", "80", "-h", "/www")
	r.must("run", "-d", "--name", "db", "--network", rtNetwork, "--ip", rtStatic, rtImage, "httpd", "-f", "-p", "80", "-h", "/www")
}

// checkServed checks the containers of runContainers on e's host: web's
// published port answers from outside and on 127.0.0.1, web reaches db,
// and db has its static address.
func (r *rtCommand) checkServed(t *testing.T, e *Env, when string) {
	t.Helper()
	if !serves(t, e.ExtNS, hostAddr+":18080") {
		t.Errorf("%s: the published port does not answer from outside", when)
	}
	if !serves(t, e.HostNS, "127.0.0.1:18080") {
		t.Errorf("%s: the published port does not answer on 127.0.0.1", when)
	}
	if out, err := r.run("exec", "web", "timeout", "10", "wget", "-q", "-O", "-", "http://"+rtStatic+"/"); err != nil || !strings.Contains(out, "hello") {
		t.Errorf("%s: container to container: %v\n%s", when, err, out)
	}
	if out := r.must("exec", "db", "ip", "-o", "-4", "addr", "show", "eth0"); !strings.Contains(out, "inet "+rtStatic+"/24") {
		t.Errorf("%s: the static address: %s", when, out)
	}
}

// podman is a podman of the test's own (runtimes.Podman): its storage,
// run root, temporary files, CNI configuration and events under dir.
type podman struct{ rtCommand }

func newPodman(t *testing.T, sb *sandbox, dir string) *podman {
	t.Helper()
	bin := lookRuntime(t, "podman", "apt-get install podman runc")
	lookRuntime(t, "runc", "apt-get install runc")
	rp, err := runtimes.NewPodman(sb.Sandbox, bin, dir, cniBinDir, sb.e.Socket)
	if err != nil {
		t.Fatal(err)
	}
	p := &podman{rtCommand{sb: sb, args: rp.Args}}
	if out, err := p.run("info"); err != nil {
		skipRuntime(t, "podman cannot run on this machine: %v\n%s", err, out)
	}
	t.Cleanup(func() { _, _ = p.run("rm", "--all", "--force", "--time", "0") })
	return p
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

	p.runContainers(t)
	p.checkServed(t, e, "after run")
	// conmon holds the host port, not hostnet: no one else may bind it.
	if l, err := listenIn(t, e.HostNS, "tcp", ":18080"); err == nil {
		l.Close()
		t.Errorf("the published port is free on the host: conmon does not hold it")
	}

	// `podman network reload` is DEL then ADD, with the address twice.
	p.must("network", "reload", "--all")
	p.checkServed(t, e, "after network reload")
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
	out, err := p.run("run", "-d", "--name", "taken", "--network", rtNetwork, "-p", "18081:80", rtImage, "sleep", "600")
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
	if err := json.Unmarshal([]byte(runtimes.Conflist(p.sb.e.Socket)), &list); err != nil {
		return err
	}
	conf := list.Plugins[0]
	conf["cniVersion"], conf["name"], conf["prevResult"] = "1.0.0", rtNetwork, entry.Result
	stdin, _ := json.Marshal(conf)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cmd := p.sb.Command(ctx, filepath.Join(cniBinDir, "hostnet-cni"))
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
type nerdctl struct{ rtCommand }

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
	for name, content := range map[string]string{"containerd.toml": conf, "net.d/hostnet.conflist": runtimes.Conflist(sb.e.Socket)} {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	log, err := os.Create(filepath.Join(dir, "containerd.log"))
	if err != nil {
		t.Fatal(err)
	}
	ctd := sb.Command(context.Background(), cbin, "--config", filepath.Join(dir, "containerd.toml"))
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
	n := &nerdctl{rtCommand{sb: sb, args: []string{nbin, "--address", sock, "--data-root", filepath.Join(dir, "nerdctl"), "--namespace", "hostnet-test",
		"--cni-path", rtCNIDir(t, dir), "--cni-netconfpath", netDir}}}
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(100 * time.Millisecond) {
		out, err := n.run("version")
		if err == nil {
			break
		}
		select {
		case <-waited:
			b, _ := os.ReadFile(filepath.Join(dir, "containerd.log"))
			skipRuntime(t, "containerd cannot run on this machine: %s", lab.Tail(string(b), 20))
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("containerd did not answer within 30 s: %v\n%s", err, out)
		}
	}
	t.Cleanup(func() { _, _ = n.run("rm", "--force", "web", "db") })
	return n
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

	n.runContainers(t)
	n.checkServed(t, e, "after run")
	// No one holds the host port (nerdctl binds none, hostnet holds none
	// for a runtime's mapping): a process may bind it.
	if l, err := listenIn(t, e.HostNS, "tcp", ":18080"); err != nil {
		t.Errorf("the host port of a runtime's mapping is held: %v", err)
	} else {
		l.Close()
	}
	n.must("stop", "--time", "0", "web", "db")
	n.must("rm", "web", "db")
	e.checkNoCNILeft(t)
	if body, err := httpGet(t, e.ExtNS, hostAddr+":18080"); err == nil {
		t.Errorf("the mapping outlived its container: %q", body)
	}
}
