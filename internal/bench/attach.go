package bench

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/hostnet/hostnet/api"
	"github.com/hostnet/hostnet/client"
	"github.com/hostnet/hostnet/internal/dataplane/netns"
	"github.com/hostnet/hostnet/internal/testutil"
	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// AttachConfig sets up the attach benchmark.
type AttachConfig struct {
	N     int       // endpoints per path
	Block int       // endpoints per path before switching to the next path
	Out   io.Writer // report
	// DaemonCmd starts hostnetd; the benchmark appends its flags.
	DaemonCmd []string
}

// AttachResult holds the timings of each path, in the order taken.
type AttachResult struct {
	FloorPlain, FloorTuned, Hostnet Series
}

// RunAttach measures creating and attaching one endpoint whose namespace
// already exists, N times on one network, along three paths interleaved
// in blocks so they share the machine's noise:
//
//   - the kernel's floor with bare netlink calls: veth with its peer in the
//     namespace, bridge port, up, address, default route; on a bridge made
//     the plain way (`ip link add br type bridge`)
//   - the same floor on a bridge whose MAC and MTU were set explicitly
//   - hostnet: create an endpoint and attach it, through the API
func RunAttach(cfg AttachConfig) (*AttachResult, error) {
	if cfg.Block <= 0 {
		cfg.Block = 50
	}
	dir, err := os.MkdirTemp("", "hnt-bench-")
	if err != nil {
		return nil, err
	}
	defer func() {
		testutil.UnmountUnder(dir, func(p string) error { return unix.Unmount(p, unix.MNT_DETACH) })
		os.RemoveAll(dir)
	}()

	plain, err := newFloor(dir, "plain", false, cfg.N)
	if err != nil {
		return nil, fmt.Errorf("floor with a plain bridge: %w", err)
	}
	defer plain.close()
	tuned, err := newFloor(dir, "tuned", true, cfg.N)
	if err != nil {
		return nil, fmt.Errorf("floor with a tuned bridge: %w", err)
	}
	defer tuned.close()
	hn, err := newHostnetPath(dir, cfg)
	if err != nil {
		return nil, fmt.Errorf("hostnet: %w", err)
	}
	defer hn.close()

	res := &AttachResult{}
	for start := 0; start < cfg.N; start += cfg.Block {
		end := min(start+cfg.Block, cfg.N)
		for i := start; i < end; i++ {
			d, err := plain.attach(i)
			if err != nil {
				return nil, fmt.Errorf("floor (plain bridge) endpoint %d: %w", i, err)
			}
			res.FloorPlain = append(res.FloorPlain, d)
		}
		for i := start; i < end; i++ {
			d, err := tuned.attach(i)
			if err != nil {
				return nil, fmt.Errorf("floor (tuned bridge) endpoint %d: %w", i, err)
			}
			res.FloorTuned = append(res.FloorTuned, d)
		}
		for i := start; i < end; i++ {
			d, err := hn.attach(i)
			if err != nil {
				return nil, fmt.Errorf("hostnet endpoint %d: %w", i, err)
			}
			res.Hostnet = append(res.Hostnet, d)
		}
	}
	res.Report(cfg.Out)
	return res, nil
}

// Report prints the result as a Markdown table with the ratios.
func (r *AttachResult) Report(w io.Writer) {
	n := len(r.Hostnet)
	win := max(1, min(100, n/10))
	fmt.Fprintf(w, "\nattach: create + attach one endpoint whose namespace exists, %d endpoints on one network\n\n", n)
	fmt.Fprintf(w, "| path | median | p99 | first %d (median) | last %d (median) | last/first |\n|---|---|---|---|---|---|\n", win, win)
	row := func(name string, s Series) {
		first, last := s.Window(0, win).Median(), s.Window(len(s)-win, len(s)).Median()
		fmt.Fprintf(w, "| %s | %s | %s | %s | %s | %s |\n", name, ms(s.Median()), ms(s.Quantile(0.99)), ms(first), ms(last), ratio(last, first))
	}
	row("floor: bare netlink, plain bridge", r.FloorPlain)
	row("floor: bare netlink, bridge MAC+MTU set", r.FloorTuned)
	row("hostnet: API create + attach", r.Hostnet)
	floor := min(r.FloorPlain.Median(), r.FloorTuned.Median())
	fmt.Fprintf(w, "\nhostnet median / best floor median: %s (goal: at most 1.50x)\n", ratio(r.Hostnet.Median(), floor))
	lastFirst := float64(r.Hostnet.Window(n-win, n).Median()) / float64(r.Hostnet.Window(0, win).Median())
	fmt.Fprintf(w, "hostnet last %d / first %d: %.2fx (goal: flat)\n", win, win, lastFirst)
}

// floor does the attach with bare netlink calls in its own host namespace.
type floor struct {
	dir   string
	host  *netlink.Handle
	br    netlink.Link
	nss   []netns.Handle
	paths []string
}

func newFloor(dir, name string, tuned bool, n int) (*floor, error) {
	f := &floor{dir: filepath.Join(dir, name)}
	hostPath := filepath.Join(f.dir, "host")
	if err := netns.Create(hostPath); err != nil {
		return nil, err
	}
	h, err := netns.Open(hostPath)
	if err != nil {
		return nil, err
	}
	defer h.Close()
	if f.host, err = netlink.NewHandleAt(h, unix.NETLINK_ROUTE); err != nil {
		return nil, err
	}
	attrs := netlink.NewLinkAttrs()
	attrs.Name = "br0"
	if tuned {
		attrs.MTU = 1500
		attrs.HardwareAddr = net.HardwareAddr{0x02, 0, 0, 0, 0, 1}
	}
	if err := f.host.LinkAdd(&netlink.Bridge{LinkAttrs: attrs}); err != nil {
		return nil, err
	}
	if f.br, err = f.host.LinkByName("br0"); err != nil {
		return nil, err
	}
	gw, _ := netlink.ParseAddr("10.200.0.1/16")
	if err := f.host.AddrAdd(f.br, gw); err != nil {
		return nil, err
	}
	if err := f.host.LinkSetUp(f.br); err != nil {
		return nil, err
	}
	for i := 0; i < n; i++ {
		p := filepath.Join(f.dir, fmt.Sprint("ep", i))
		if err := netns.Create(p); err != nil {
			return nil, err
		}
		ns, err := netns.Open(p)
		if err != nil {
			return nil, err
		}
		f.nss = append(f.nss, ns)
		f.paths = append(f.paths, p)
	}
	return f, nil
}

func (f *floor) attach(i int) (time.Duration, error) {
	ip := netip.AddrFrom4([4]byte{10, 200, byte((i + 2) >> 8), byte(i + 2)})
	start := time.Now()
	attrs := netlink.NewLinkAttrs()
	attrs.Name = fmt.Sprintf("v%d", i)
	veth := &netlink.Veth{LinkAttrs: attrs, PeerName: "eth0", PeerNamespace: netlink.NsFd(f.nss[i])}
	if err := f.host.LinkAdd(veth); err != nil {
		return 0, err
	}
	if err := f.host.LinkSetMaster(veth, f.br); err != nil {
		return 0, err
	}
	if err := f.host.LinkSetUp(veth); err != nil {
		return 0, err
	}
	eh, err := netlink.NewHandleAt(f.nss[i], unix.NETLINK_ROUTE)
	if err != nil {
		return 0, err
	}
	defer eh.Close()
	peer, err := eh.LinkByName("eth0")
	if err != nil {
		return 0, err
	}
	if err := eh.LinkSetUp(peer); err != nil {
		return 0, err
	}
	addr, _ := netlink.ParseAddr(ip.String() + "/16")
	if err := eh.AddrAdd(peer, addr); err != nil {
		return 0, err
	}
	if err := eh.RouteAdd(&netlink.Route{LinkIndex: peer.Attrs().Index, Gw: net.IP{10, 200, 0, 1}}); err != nil {
		return 0, err
	}
	return time.Since(start), nil
}

func (f *floor) close() {
	for _, ns := range f.nss {
		ns.Close()
	}
	if f.host != nil {
		f.host.Close()
	}
}

// hostnetPath runs hostnetd in its own host namespace.
type hostnetPath struct {
	cmd *exec.Cmd
	c   *client.Client
	nss []string
}

func newHostnetPath(dir string, cfg AttachConfig) (*hostnetPath, error) {
	d := filepath.Join(dir, "hostnet")
	hostPath := filepath.Join(d, "host")
	if err := netns.Create(hostPath); err != nil {
		return nil, err
	}
	sock := filepath.Join(d, "s.sock")
	args := append(append([]string(nil), cfg.DaemonCmd...),
		"--socket", sock, "--state-dir", filepath.Join(d, "state"), "--run-dir", filepath.Join(d, "run"),
		"--host-netns", hostPath, "--netns-link-dir", "", "--netns-etc-dir", filepath.Join(d, "etc"),
		"--host-resolv-conf", "/dev/null", "--default-network=false", "--log-level", "warn")
	h := &hostnetPath{cmd: exec.Command("nsenter", append([]string{"--net=" + hostPath, "--"}, args...)...), c: client.New(sock)}
	logf, err := os.Create(filepath.Join(dir, "hostnetd.log"))
	if err != nil {
		return nil, err
	}
	h.cmd.Stdout, h.cmd.Stderr = logf, logf
	if err := h.cmd.Start(); err != nil {
		return nil, err
	}
	ctx := context.Background()
	deadline := time.Now().Add(30 * time.Second)
	for {
		if _, err := h.c.Version(ctx); err == nil {
			break
		}
		if time.Now().After(deadline) {
			h.close()
			b, _ := os.ReadFile(logf.Name())
			return nil, fmt.Errorf("hostnetd did not start: %s", strings.TrimSpace(string(b)))
		}
		time.Sleep(20 * time.Millisecond)
	}
	_, err = h.c.CreateNetwork(ctx, &api.Network{Name: "bench", Type: api.NAT,
		Ipams: []api.Ipam{{Subnets: []api.Subnet{{IpAddressPrefix: "10.200.0.0/16"}}}}})
	if err != nil {
		h.close()
		return nil, err
	}
	for i := 0; i < cfg.N; i++ {
		ns, err := h.c.CreateNamespace(ctx, &api.Namespace{})
		if err != nil {
			h.close()
			return nil, err
		}
		h.nss = append(h.nss, ns.ID)
	}
	return h, nil
}

func (h *hostnetPath) attach(i int) (time.Duration, error) {
	ctx := context.Background()
	start := time.Now()
	ep, err := h.c.CreateEndpoint(ctx, &api.Endpoint{HostComputeNetwork: "bench"})
	if err != nil {
		return 0, err
	}
	if _, err := h.c.Attach(ctx, h.nss[i], ep.ID); err != nil {
		return 0, err
	}
	return time.Since(start), nil
}

func (h *hostnetPath) close() {
	if h.cmd.Process != nil {
		_ = h.cmd.Process.Signal(syscall.SIGTERM)
		_ = h.cmd.Wait()
	}
}
