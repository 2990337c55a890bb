package runtimes

import (
	"archive/tar"
	"bytes"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"
)

// Podman is a podman 4 of the caller's own, run in a sandbox: its storage
// (vfs), run root, temporary files, events and CNI configuration under a
// directory of its own, the CNI backend with hostnet-cni, runc, cgroupfs.
type Podman struct {
	sb   *Sandbox
	Args []string // the podman command and its global flags
}

// NewPodman writes podman's configuration under dir, with hostnet-cni
// found in cniDir and the network Network (Conflist) on the hostnetd at
// socket, and points the sandbox's Env at it. bin is podman's path. It
// does not run podman: the caller checks that it can run here.
func NewPodman(sb *Sandbox, bin, dir, cniDir, socket string) (*Podman, error) {
	netDir := filepath.Join(dir, "net.d")
	if err := os.MkdirAll(netDir, 0o755); err != nil {
		return nil, err
	}
	// The run root and the temporary directory hold sockets and locks,
	// whose paths podman wants short (it refuses a run root over 50
	// characters): they go in the sandbox's own /run, whatever dir is.
	runRoot, tmpDir := "/run/podman-runroot", "/run/podman-tmp"
	// runc cannot raise limits in the sandbox: containers get low ones.
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
`, cniDir, netDir, filepath.Join(dir, "events.log"), tmpDir)
	storage := fmt.Sprintf("[storage]\ndriver = \"vfs\"\nrunroot = %q\ngraphroot = %q\n", runRoot, filepath.Join(dir, "root"))
	for name, content := range map[string]string{"containers.conf": conf, "storage.conf": storage, "net.d/" + Network + ".conflist": Conflist(socket)} {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(content), 0o644); err != nil {
			return nil, err
		}
	}
	sb.Env = append(sb.Env, "CONTAINERS_CONF="+filepath.Join(dir, "containers.conf"), "CONTAINERS_STORAGE_CONF="+filepath.Join(dir, "storage.conf"))
	return &Podman{sb: sb, Args: []string{bin, "--root", filepath.Join(dir, "root"), "--runroot", runRoot,
		"--storage-driver", "vfs", "--network-config-dir", netDir, "--cgroup-manager", "cgroupfs", "--tmpdir", tmpDir,
		"--events-backend", "file"}}, nil
}

// Run runs podman with args in the sandbox (Sandbox.Run).
func (p *Podman) Run(args ...string) (string, error) {
	return p.sb.Run(p.Args[0], append(p.Args[1:], args...)...)
}

// ErrNoBusybox is BusyboxRootfs's error where there is no static busybox
// at /bin/busybox (apt-get install busybox-static).
var ErrNoBusybox = errors.New("no static busybox at /bin/busybox (apt-get install busybox-static)")

// BusyboxRootfs writes a root file system of the static /bin/busybox as a
// tarball under dir, for `podman import`: every applet a link to it, and
// a page for httpd in /www, "hello from hostnet". It returns the
// tarball's path and its content.
func BusyboxRootfs(dir string) (string, []byte, error) {
	bin, err := os.ReadFile("/bin/busybox")
	if err != nil {
		return "", nil, fmt.Errorf("%w: %w", ErrNoBusybox, err)
	}
	list, err := exec.Command("/bin/busybox", "--list").Output()
	if err != nil {
		return "", nil, fmt.Errorf("%w: /bin/busybox --list: %w", ErrNoBusybox, err)
	}
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	epoch := time.Unix(0, 0) // the same content, so the same layer digest, every time
	for _, d := range []string{"bin/", "etc/", "proc/", "sys/", "dev/", "tmp/", "www/"} {
		_ = tw.WriteHeader(&tar.Header{Name: d, Typeflag: tar.TypeDir, Mode: 0o755, ModTime: epoch})
	}
	_ = tw.WriteHeader(&tar.Header{Name: "bin/busybox", Typeflag: tar.TypeReg, Mode: 0o755, Size: int64(len(bin)), ModTime: epoch})
	_, _ = tw.Write(bin)
	for _, a := range strings.Fields(string(list)) {
		if a != "busybox" && !strings.Contains(a, "/") {
			_ = tw.WriteHeader(&tar.Header{Name: "bin/" + a, Typeflag: tar.TypeSymlink, Linkname: "busybox", Mode: 0o777, ModTime: epoch})
		}
	}
	page := []byte("hello from hostnet\n")
	_ = tw.WriteHeader(&tar.Header{Name: "www/index.html", Typeflag: tar.TypeReg, Mode: 0o644, Size: int64(len(page)), ModTime: epoch})
	_, _ = tw.Write(page)
	if err := tw.Close(); err != nil {
		return "", nil, err
	}
	path := filepath.Join(dir, "busybox-rootfs.tar")
	return path, buf.Bytes(), os.WriteFile(path, buf.Bytes(), 0o644)
}
