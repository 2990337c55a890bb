package bench

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"
)

// The datapath benchmark's peers are real programs from Debian's
// packages, so that the baselines are what users run and not imitations:
// iperf3 measures throughput, and docker-proxy (Docker's userland proxy)
// is the published-port baseline. They are installed on first use.

// aptEnv is the environment of apt-get runs: no questions asked (iperf3's
// package asks whether to start a daemon).
func aptEnv() []string {
	return append(os.Environ(), "DEBIAN_FRONTEND=noninteractive")
}

// runApt runs apt-get with args in dir, waiting for another apt run's lock
// rather than failing on it, and returns its error with its output.
func runApt(dir string, args ...string) error {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "apt-get", append([]string{"-o", "DPkg::Lock::Timeout=300"}, args...)...)
	cmd.Dir, cmd.Env = dir, aptEnv()
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("apt-get %s: %w: %s", strings.Join(args, " "), err, lastLines(out.String(), 5))
	}
	return nil
}

// aptRetry runs apt-get, and once more after refreshing the package lists
// when it fails: a fresh machine may have none, or stale ones.
func aptRetry(out io.Writer, dir string, args ...string) error {
	err := runApt(dir, args...)
	if err == nil {
		return nil
	}
	fmt.Fprintf(out, "  apt-get %s failed, refreshing the package lists: %v\n", strings.Join(args, " "), err)
	if uerr := runApt("", "update"); uerr != nil {
		return errors.Join(err, uerr)
	}
	return runApt(dir, args...)
}

func lastLines(s string, n int) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	return strings.Join(lines[max(0, len(lines)-n):], "; ")
}

// ensureIperf3 returns the path of iperf3, installing Debian's package
// when it is missing.
func ensureIperf3(out io.Writer) (string, error) { return ensureCommand(out, "iperf3", "iperf3") }

// ensureCommand returns the path of command, installing Debian's package
// pkg when it is missing.
func ensureCommand(out io.Writer, command, pkg string) (string, error) {
	if p, err := exec.LookPath(command); err == nil {
		return p, nil
	}
	fmt.Fprintf(out, "  installing %s (apt-get install -y %s)...\n", command, pkg)
	if err := aptRetry(out, "", "install", "-y", "--no-install-recommends", pkg); err != nil {
		return "", fmt.Errorf("install %s: %w", pkg, err)
	}
	return exec.LookPath(command)
}

// peerCacheDir is where unpacked peers are kept between runs.
func peerCacheDir() string {
	if d := os.Getenv("XDG_CACHE_HOME"); d != "" {
		return filepath.Join(d, "hostnet-bench")
	}
	return "/var/cache/hostnet-bench"
}

// dockerProxyInDeb is docker-proxy's path inside Debian's docker.io
// package (20.10 in bookworm).
const dockerProxyInDeb = "usr/sbin/docker-proxy"

// iperf3Version is the first line of `iperf3 --version`, for the raw
// numbers; the path when it cannot be had.
func iperf3Version(path string) string {
	b, _ := exec.Command(path, "--version").Output()
	if v, _, _ := strings.Cut(string(b), "\n"); strings.TrimSpace(v) != "" {
		return strings.TrimSpace(v)
	}
	return path
}

// ensureDockerProxy returns the path of docker-proxy unpacked from
// Debian's docker.io package, downloading and unpacking it into the cache
// the first time, and the name of the package file it came from. Only the
// one binary is used: no Docker engine is installed or run.
func ensureDockerProxy(out io.Writer) (bin, source string, err error) {
	cache := peerCacheDir()
	bin = filepath.Join(cache, "docker-proxy")
	sourceFile := filepath.Join(cache, "docker-proxy.source")
	if st, err := os.Stat(bin); err == nil && st.Mode().IsRegular() && st.Mode()&0o111 != 0 {
		b, _ := os.ReadFile(sourceFile)
		return bin, strings.TrimSpace(string(b)), nil
	}
	if err := os.MkdirAll(cache, 0o755); err != nil {
		return "", "", fmt.Errorf("docker-proxy cache: %w", err)
	}
	tmp, err := os.MkdirTemp(cache, "download-")
	if err != nil {
		return "", "", fmt.Errorf("docker-proxy cache: %w", err)
	}
	defer os.RemoveAll(tmp)
	// apt-get download drops to the _apt user, which must be able to
	// write here (MkdirTemp makes the directory private).
	if err := os.Chmod(tmp, 0o777); err != nil {
		return "", "", err
	}
	fmt.Fprintln(out, "  fetching docker-proxy (apt-get download docker.io, unpacked into "+cache+")...")
	if err := aptRetry(out, tmp, "download", "docker.io"); err != nil {
		return "", "", fmt.Errorf("download docker.io: %w", err)
	}
	debs, _ := filepath.Glob(filepath.Join(tmp, "docker.io_*.deb"))
	if len(debs) != 1 {
		return "", "", fmt.Errorf("download docker.io: expected one .deb in %s, found %d", tmp, len(debs))
	}
	x := filepath.Join(tmp, "x")
	if b, err := exec.Command("dpkg-deb", "-x", debs[0], x).CombinedOutput(); err != nil {
		return "", "", fmt.Errorf("unpack %s: %w: %s", filepath.Base(debs[0]), err, strings.TrimSpace(string(b)))
	}
	src := filepath.Join(x, dockerProxyInDeb)
	if _, err := os.Stat(src); err != nil {
		return "", "", fmt.Errorf("docker-proxy not in %s: %w", filepath.Base(debs[0]), err)
	}
	// Renamed into place last, so that an interrupted run leaves no
	// half-written binary for the next one to trust.
	if err := os.Rename(src, bin); err != nil {
		return "", "", fmt.Errorf("docker-proxy cache: %w", err)
	}
	source = filepath.Base(debs[0])
	_ = os.WriteFile(sourceFile, []byte(source+"\n"), 0o644)
	return bin, source, nil
}
