package bench

import (
	"context"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/hostnet/hostnet/client"
	"github.com/hostnet/hostnet/internal/dataplane/netns"
	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// benchDaemon is a hostnetd running on a throwaway host namespace, with,
// when asked, an "external" namespace behind the host's uplink.
type benchDaemon struct {
	dir, host, ext string
	cmd            *exec.Cmd
	c              *client.Client
}

// The benchmark topology's addresses (inside its own namespaces only).
const (
	benchExtAddr  = "198.51.100.1"
	benchHostAddr = "198.51.100.2"
)

// startDaemon starts hostnetd (daemonCmd plus its flags) in a new host
// namespace under dir, with an external namespace behind an uplink when
// withExt is set.
func startDaemon(dir string, daemonCmd []string, withExt bool) (*benchDaemon, error) {
	return startDaemonIn(dir, daemonCmd, withExt, "")
}

// startDaemonIn is startDaemon with the daemon in the mount namespace at
// mountNS (a container runtime's sandbox) when that is set; a host
// namespace made already (before the sandbox, to be seen in it) is used.
func startDaemonIn(dir string, daemonCmd []string, withExt bool, mountNS string) (*benchDaemon, error) {
	d := &benchDaemon{dir: dir, host: filepath.Join(dir, "host")}
	if !netns.IsNamespace(d.host) {
		if err := netns.Create(d.host); err != nil {
			return nil, err
		}
	}
	if withExt {
		d.ext = filepath.Join(dir, "ext")
		if err := netns.Create(d.ext); err != nil {
			return nil, err
		}
		if err := uplink(d.host, d.ext); err != nil {
			return nil, fmt.Errorf("uplink: %w", err)
		}
	}
	sock := filepath.Join(dir, "s.sock")
	args := append(append([]string(nil), daemonCmd...),
		"--socket", sock, "--state-dir", filepath.Join(dir, "state"), "--run-dir", filepath.Join(dir, "run"),
		"--host-netns", d.host, "--netns-link-dir", "", "--netns-etc-dir", filepath.Join(dir, "etc"),
		"--host-resolv-conf", "/dev/null", "--default-network=false", "--log-level", logLevel())
	enter := []string{"--net=" + d.host, "--"}
	if mountNS != "" {
		enter = append([]string{"--mount=" + mountNS}, enter...)
	}
	d.cmd = exec.Command("nsenter", append(enter, args...)...)
	d.c = client.New(sock)
	logPath := filepath.Join(dir, "hostnetd.log")
	if p := os.Getenv("HOSTNET_BENCH_DAEMON_LOG"); p != "" {
		logPath = p // kept after the run, for reading the daemon's timings
	}
	logf, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return nil, err
	}
	d.cmd.Stdout, d.cmd.Stderr = logf, logf
	if err := d.cmd.Start(); err != nil {
		return nil, err
	}
	track(d.cmd)
	deadline := time.Now().Add(30 * time.Second)
	for {
		if _, err := d.c.Version(context.Background()); err == nil {
			return d, nil
		}
		if time.Now().After(deadline) {
			d.close()
			b, _ := os.ReadFile(logf.Name())
			return nil, fmt.Errorf("hostnetd did not start: %s", strings.TrimSpace(string(b)))
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// uplink joins host and ext with a veth: benchHostAddr on the host side,
// benchExtAddr outside, the host's default route through ext.
func uplink(host, ext string) error {
	hns, err := netns.Open(host)
	if err != nil {
		return err
	}
	defer hns.Close()
	ens, err := netns.Open(ext)
	if err != nil {
		return err
	}
	defer ens.Close()
	h, err := netlink.NewHandleAt(hns, unix.NETLINK_ROUTE)
	if err != nil {
		return err
	}
	defer h.Close()
	e, err := netlink.NewHandleAt(ens, unix.NETLINK_ROUTE)
	if err != nil {
		return err
	}
	defer e.Close()
	attrs := netlink.NewLinkAttrs()
	attrs.Name = "uplink0"
	if err := h.LinkAdd(&netlink.Veth{LinkAttrs: attrs, PeerName: "ext0", PeerNamespace: netlink.NsFd(ens)}); err != nil {
		return err
	}
	for _, side := range []struct {
		h    *netlink.Handle
		name string
		addr string
	}{{h, "uplink0", benchHostAddr + "/24"}, {e, "ext0", benchExtAddr + "/24"}} {
		l, err := side.h.LinkByName(side.name)
		if err != nil {
			return err
		}
		a, _ := netlink.ParseAddr(side.addr)
		if err := side.h.AddrAdd(l, a); err != nil {
			return err
		}
		for _, up := range []netlink.Link{l, &netlink.Device{LinkAttrs: netlink.LinkAttrs{Index: 1}}} {
			if err := side.h.LinkSetUp(up); err != nil {
				return err
			}
		}
	}
	return h.RouteAdd(&netlink.Route{Gw: net.ParseIP(benchExtAddr)})
}

func (d *benchDaemon) close() {
	if d.cmd != nil && d.cmd.Process != nil {
		_ = d.cmd.Process.Signal(syscall.SIGTERM)
		_ = d.cmd.Wait()
	}
}

// cloneCmd is a new, unstarted command with the same arguments and output.
func cloneCmd(args []string, out io.Writer) *exec.Cmd {
	c := exec.Command(args[0], args[1:]...)
	c.Stdout, c.Stderr = out, out
	return c
}
