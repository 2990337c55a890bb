// Package runtimes runs real container runtimes against hostnet-cni, for
// the end-to-end tests and the benchmarks: a sandbox of the caller's own
// (a private mount namespace with tmpfs over /run, /var/lib and /dev/shm,
// so the paths the runtimes fix, /run/netns, /var/lib/cni and their locks,
// are the caller's and vanish with it), a podman whose storage and
// configuration are all under a directory of the caller's, the network
// they join, and a busybox image to run.
//
// It is test support: only tests and benchmarks import it.
package runtimes

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// The network the runtimes' containers join.
const (
	Network = "hostnet"
	Subnet  = "10.89.0.0/24"
	Gateway = "10.89.0.1"
)

// Conflist is the network's CNI configuration, the README's "Use with
// podman / nerdctl / Kubernetes", for the hostnetd at socket.
func Conflist(socket string) string {
	return fmt.Sprintf(`{
  "cniVersion": "1.0.0",
  "name": %q,
  "plugins": [
    {
      "type": "hostnet-cni",
      "network": %q,
      "socket": %q,
      "networkDefinition": {"type": "NAT", "subnet": %q, "gateway": %q},
      "capabilities": {"portMappings": true, "ips": true, "mac": true, "dns": true}
    }
  ]
}
`, Network, Network, socket, Subnet, Gateway)
}

// Sandbox is a private mount namespace for a runtime (and the hostnetd
// it drives), held by a process of its own. It sees the mounts made
// before it only: a network namespace it is to use must exist first.
type Sandbox struct {
	Holder  *exec.Cmd
	MountNS string   // /proc/PID/ns/mnt of the holder
	Root    string   // /proc/PID/root: the sandbox's files, seen from outside
	NetNS   string   // the network namespace its commands run in
	Env     []string // added to its commands' environment
}

// NewSandbox makes a sandbox whose commands run in the network namespace
// at netNS. The caller closes it.
func NewSandbox(netNS string) (*Sandbox, error) {
	script := `mount -t tmpfs tmpfs /run && mount -t tmpfs tmpfs /var/lib && mount -t tmpfs tmpfs /dev/shm &&
mkdir -p /run/netns /var/lib/cni && echo ready && exec sleep 1000000`
	holder := exec.Command("unshare", "--mount", "--propagation", "private", "--", "sh", "-c", script)
	out, err := holder.StdoutPipe()
	if err != nil {
		return nil, err
	}
	holder.Stderr = os.Stderr
	if err := holder.Start(); err != nil {
		return nil, err
	}
	line, err := bufio.NewReader(out).ReadString('\n')
	if err != nil || strings.TrimSpace(line) != "ready" {
		_ = holder.Process.Kill()
		_ = holder.Wait()
		return nil, fmt.Errorf("sandbox mount namespace: %q, %v", line, err)
	}
	pid := strconv.Itoa(holder.Process.Pid)
	return &Sandbox{Holder: holder, MountNS: "/proc/" + pid + "/ns/mnt", Root: "/proc/" + pid + "/root", NetNS: netNS}, nil
}

// Command is name with args inside the sandbox and its network
// namespace, with the sandbox's Env.
func (s *Sandbox) Command(ctx context.Context, name string, args ...string) *exec.Cmd {
	cmd := exec.CommandContext(ctx, "nsenter", append([]string{"--mount=" + s.MountNS, "--net=" + s.NetNS, "--", name}, args...)...)
	cmd.Env = append(os.Environ(), s.Env...)
	return cmd
}

// Run runs a command in the sandbox for at most two minutes and returns
// its output (stdout and stderr).
func (s *Sandbox) Run(name string, args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	out, err := s.Command(ctx, name, args...).CombinedOutput()
	return string(out), err
}

// Processes lists the processes in the sandbox's mount namespace but its
// holder and the caller.
func (s *Sandbox) Processes() []int {
	want, err := os.Readlink(s.MountNS)
	if err != nil {
		return nil
	}
	var out []int
	dirs, _ := os.ReadDir("/proc")
	for _, d := range dirs {
		pid, err := strconv.Atoi(d.Name())
		if err != nil || pid == s.Holder.Process.Pid || pid == os.Getpid() {
			continue
		}
		if ns, err := os.Readlink(filepath.Join("/proc", d.Name(), "ns", "mnt")); err == nil && ns == want {
			out = append(out, pid)
		}
	}
	return out
}

// Close kills what the runtimes left running in the sandbox (containers,
// conmon, shims, containerd: all started by the caller), but the process
// keep (a daemon its owner stops; -1 for none), trying for up to 10 s as
// they fork, then the holder.
func (s *Sandbox) Close(keep int) {
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(100 * time.Millisecond) {
		left := 0
		for _, pid := range s.Processes() {
			if pid != keep {
				_ = syscall.Kill(pid, syscall.SIGKILL)
				left++
			}
		}
		if left == 0 || time.Now().After(deadline) {
			break
		}
	}
	_ = s.Holder.Process.Kill()
	_ = s.Holder.Wait()
}
