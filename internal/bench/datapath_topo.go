package bench

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/google/nftables"
	"github.com/google/nftables/binaryutil"
	"github.com/google/nftables/expr"
	"github.com/hostnet/hostnet/internal/dataplane/netns"
	"github.com/hostnet/hostnet/internal/testutil/lab"
	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// handSubnet is the hand-built hosts' bridge subnet: the same as the
// hostnet network's, so that both sides route the same prefixes.
const (
	handGateway = "10.200.0.1"
	handPrefix  = 16
)

// handHost is a host namespace built by hand with plain netlink calls, the
// way a simple tool would: a bridge with the gateway address, endpoints
// on veths, and, when asked, an uplink to an external namespace: the
// hostnet daemon's lab host has the same (package lab: the same addresses
// and default route).
type handHost struct {
	host, ext string   // namespace paths; ext is empty without an uplink
	eps       []string // endpoint namespace paths
	ips       []string // their addresses, in the same order
}

// buildHandHost builds a hand-made host under dir with n endpoints. With
// uplink it adds the external namespace, which routes the bridge's subnet
// to the host (so that it can reach an endpoint straight, without DNAT).
// With masquerade it adds one nftables rule that masquerades the subnet's
// traffic leaving through any device but the bridge; without it, the
// namespace has no nftables table at all.
func buildHandHost(dir string, n int, withUplink, masquerade bool) (*handHost, error) {
	lh, err := lab.NewHost(dir, withUplink)
	if err != nil {
		return nil, err
	}
	hh := &handHost{host: lh.HostNS, ext: lh.ExtNS}
	if withUplink {
		if err := addRoute(hh.ext, fmt.Sprintf("10.200.0.0/%d", handPrefix), benchHostAddr); err != nil {
			return nil, fmt.Errorf("external route to the bridge subnet: %w", err)
		}
	}
	hns, err := netns.Open(hh.host)
	if err != nil {
		return nil, err
	}
	defer hns.Close()
	h, err := netlink.NewHandleAt(hns, unix.NETLINK_ROUTE)
	if err != nil {
		return nil, err
	}
	defer h.Close()
	if err := h.LinkSetUp(&netlink.Device{LinkAttrs: netlink.LinkAttrs{Index: 1}}); err != nil {
		return nil, err
	}
	// The bridge as hostnet's NAT driver makes it: MTU 1500, gateway
	// address, up; forwarding on in the host namespace.
	attrs := netlink.NewLinkAttrs()
	attrs.Name, attrs.MTU = "br0", 1500
	if err := h.LinkAdd(&netlink.Bridge{LinkAttrs: attrs}); err != nil {
		return nil, fmt.Errorf("bridge: %w", err)
	}
	br, err := h.LinkByName("br0")
	if err != nil {
		return nil, err
	}
	gw, _ := netlink.ParseAddr(fmt.Sprintf("%s/%d", handGateway, handPrefix))
	if err := h.AddrAdd(br, gw); err != nil {
		return nil, err
	}
	if err := h.LinkSetUp(br); err != nil {
		return nil, err
	}
	if err := netns.Do(hns, func() error {
		return os.WriteFile("/proc/sys/net/ipv4/ip_forward", []byte("1"), 0o644)
	}); err != nil {
		return nil, fmt.Errorf("ip_forward: %w", err)
	}
	for i := 0; i < n; i++ {
		p := filepath.Join(dir, fmt.Sprint("ep", i))
		ip := fmt.Sprintf("10.200.0.%d", i+2)
		if err := handEndpoint(h, br, p, fmt.Sprint("v", i), ip); err != nil {
			return nil, fmt.Errorf("endpoint %d: %w", i, err)
		}
		hh.eps, hh.ips = append(hh.eps, p), append(hh.ips, ip)
	}
	if masquerade {
		if err := addMasquerade(hns); err != nil {
			return nil, fmt.Errorf("masquerade rule: %w", err)
		}
	}
	return hh, nil
}

// handEndpoint makes the namespace at path and joins it to br with a veth
// (hostName on the bridge, eth0 inside) carrying ip and a default route
// through the gateway.
func handEndpoint(h *netlink.Handle, br netlink.Link, path, hostName, ip string) error {
	if err := netns.Create(path); err != nil {
		return err
	}
	ns, err := netns.Open(path)
	if err != nil {
		return err
	}
	defer ns.Close()
	attrs := netlink.NewLinkAttrs()
	attrs.Name, attrs.MTU, attrs.MasterIndex = hostName, 1500, br.Attrs().Index
	veth := &netlink.Veth{LinkAttrs: attrs, PeerName: "eth0", PeerNamespace: netlink.NsFd(ns)}
	if err := h.LinkAdd(veth); err != nil {
		return fmt.Errorf("veth: %w", err)
	}
	if err := h.LinkSetUp(veth); err != nil {
		return err
	}
	eh, err := netlink.NewHandleAt(ns, unix.NETLINK_ROUTE)
	if err != nil {
		return err
	}
	defer eh.Close()
	peer, err := eh.LinkByName("eth0")
	if err != nil {
		return err
	}
	for _, l := range []netlink.Link{&netlink.Device{LinkAttrs: netlink.LinkAttrs{Index: 1}}, peer} {
		if err := eh.LinkSetUp(l); err != nil {
			return err
		}
	}
	a, _ := netlink.ParseAddr(fmt.Sprintf("%s/%d", ip, handPrefix))
	if err := eh.AddrAdd(peer, a); err != nil {
		return err
	}
	return eh.RouteAdd(&netlink.Route{LinkIndex: peer.Attrs().Index, Gw: net.ParseIP(handGateway)})
}

// addRoute adds a route to dst through gw in the namespace at path.
func addRoute(path, dst, gw string) error {
	h, err := lab.Handle(path)
	if err != nil {
		return err
	}
	defer h.Close()
	_, n, err := net.ParseCIDR(dst)
	if err != nil {
		return err
	}
	return h.RouteAdd(&netlink.Route{Dst: n, Gw: net.ParseIP(gw)})
}

// addMasquerade installs, in the namespace ns, the one rule a hand-made
// NAT host needs, the equivalent of hostnet's own masquerade:
//
//	table ip benchnat { chain post { type nat hook postrouting priority srcnat;
//	    ip saddr 10.200.0.0/16 oifname != "br0" masquerade } }
func addMasquerade(ns netns.Handle) error {
	c, err := nftables.New(nftables.WithNetNSFd(int(ns)))
	if err != nil {
		return err
	}
	t := c.AddTable(&nftables.Table{Family: nftables.TableFamilyIPv4, Name: "benchnat"})
	ch := c.AddChain(&nftables.Chain{Name: "post", Table: t, Type: nftables.ChainTypeNAT,
		Hooknum: nftables.ChainHookPostrouting, Priority: nftables.ChainPriorityNATSource})
	ifname := make([]byte, unix.IFNAMSIZ)
	copy(ifname, "br0")
	c.AddRule(&nftables.Rule{Table: t, Chain: ch, Exprs: []expr.Any{
		&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseNetworkHeader, Offset: 12, Len: 4},
		&expr.Bitwise{SourceRegister: 1, DestRegister: 1, Len: 4, Mask: []byte{255, 255, 0, 0}, Xor: []byte{0, 0, 0, 0}},
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: []byte{10, 200, 0, 0}},
		&expr.Meta{Key: expr.MetaKeyOIFNAME, Register: 1},
		&expr.Cmp{Op: expr.CmpOpNeq, Register: 1, Data: ifname},
		&expr.Masq{},
	}})
	return c.Flush()
}

// peerProcs are the peer processes a benchmark started; stop ends them all.
type peerProcs struct {
	cmds []*exec.Cmd
}

// start runs args inside the namespace at path (nsenter execs the program
// itself, so the pid is the program's). The process is killed if the
// benchmark dies without stopping it.
func (p *peerProcs) start(path string, extra []*os.File, args ...string) (*exec.Cmd, error) {
	cmd := exec.Command("nsenter", append([]string{"--net=" + path, "--"}, args...)...)
	cmd.ExtraFiles = extra
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start %s: %w", filepath.Base(args[0]), err)
	}
	p.cmds = append(p.cmds, cmd)
	return cmd, nil
}

// stop ends every process: SIGTERM, then SIGKILL for those still there
// after a second.
func (p *peerProcs) stop() {
	for _, c := range p.cmds {
		_ = c.Process.Signal(syscall.SIGTERM)
	}
	for _, c := range p.cmds {
		done := make(chan struct{})
		go func() { _ = c.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(time.Second):
			_ = c.Process.Kill()
			<-done
		}
	}
	p.cmds = nil
}

// startIperf3Server runs `iperf3 -s -p port` in the namespace at path and
// waits until it listens.
func (p *peerProcs) startIperf3Server(iperf3, path string, port int) error {
	cmd, err := p.start(path, nil, iperf3, "-s", "-p", strconv.Itoa(port))
	if err != nil {
		return err
	}
	deadline := time.Now().Add(5 * time.Second)
	for !listening(cmd.Process.Pid, port) {
		if time.Now().After(deadline) {
			return fmt.Errorf("iperf3 server in %s does not listen on %d", path, port)
		}
		time.Sleep(10 * time.Millisecond)
	}
	return nil
}

// listening reports whether the network namespace of process pid has a
// TCP socket listening on port. It reads /proc/PID/net rather than trying
// to connect: a probe connection would start a test in iperf3's server.
func listening(pid, port int) bool {
	want := fmt.Sprintf(":%04X", port)
	for _, f := range []string{"tcp", "tcp6"} {
		fh, err := os.Open(fmt.Sprintf("/proc/%d/net/%s", pid, f))
		if err != nil {
			continue
		}
		sc := bufio.NewScanner(fh)
		for sc.Scan() {
			// sl local_address rem_address st ...; 0A is LISTEN.
			fields := strings.Fields(sc.Text())
			if len(fields) > 3 && strings.HasSuffix(fields[1], want) && fields[3] == "0A" {
				fh.Close()
				return true
			}
		}
		fh.Close()
	}
	return false
}

// startDockerProxy runs Docker's userland proxy in the namespace at path,
// forwarding hostIP:hostPort to containerIP:containerPort, the way dockerd
// starts it, and waits for its readiness report: it writes "0\n" to fd 3
// once it listens, or "1\n" and the error.
func (p *peerProcs) startDockerProxy(bin, path, hostIP string, hostPort int, containerIP string, containerPort int) error {
	r, w, err := os.Pipe()
	if err != nil {
		return err
	}
	defer r.Close()
	_, err = p.start(path, []*os.File{w}, bin, "-proto", "tcp", "-host-ip", hostIP, "-host-port", strconv.Itoa(hostPort),
		"-container-ip", containerIP, "-container-port", strconv.Itoa(containerPort))
	w.Close()
	if err != nil {
		return err
	}
	_ = r.SetReadDeadline(time.Now().Add(10 * time.Second))
	var msg []byte
	buf := make([]byte, 512)
	for {
		n, err := r.Read(buf)
		msg = append(msg, buf[:n]...)
		if err != nil {
			break
		}
	}
	if !strings.HasPrefix(string(msg), "0\n") {
		return fmt.Errorf("docker-proxy %s:%d -> %s:%d did not start: %q", hostIP, hostPort, containerIP, containerPort, msg)
	}
	return nil
}

// iperf3Client runs `iperf3 -c host -p port -t secs -J` in the namespace
// at from and returns the receiver's rate in bits per second. A server
// still closing its previous test answers "busy": that is retried.
func iperf3Client(iperf3, from, host string, port, secs int) (float64, error) {
	var last error
	for attempt := 0; attempt < 5; attempt++ {
		if attempt > 0 {
			time.Sleep(200 * time.Millisecond)
		}
		ctx, cancel := context.WithTimeout(context.Background(), time.Duration(secs+20)*time.Second)
		b, err := exec.CommandContext(ctx, "nsenter", "--net="+from, "--", iperf3, "-c", host, "-p", strconv.Itoa(port),
			"-t", strconv.Itoa(secs), "-J").Output()
		cancel()
		var res struct {
			Error string `json:"error"`
			End   struct {
				SumReceived struct {
					BitsPerSecond float64 `json:"bits_per_second"`
				} `json:"sum_received"`
			} `json:"end"`
		}
		if jerr := json.Unmarshal(b, &res); jerr != nil {
			last = errors.Join(err, fmt.Errorf("iperf3 output: %w", jerr))
			continue
		}
		if res.Error != "" {
			last = fmt.Errorf("iperf3 to %s:%d: %s", host, port, res.Error)
			if strings.Contains(res.Error, "busy") {
				continue
			}
			return 0, last
		}
		if err != nil {
			return 0, fmt.Errorf("iperf3 to %s:%d: %w", host, port, err)
		}
		if res.End.SumReceived.BitsPerSecond <= 0 {
			return 0, fmt.Errorf("iperf3 to %s:%d: no bytes received", host, port)
		}
		return res.End.SumReceived.BitsPerSecond, nil
	}
	return 0, last
}

// addConntrack turns the connection tracker on in the namespace for
// forwarded packets, as any host running Docker or kube-proxy has it:
//
//	table ip benchct { chain fwd { type filter hook forward priority filter;
//	    ct state established,related accept } }
func addConntrack(ns netns.Handle) error {
	c, err := nftables.New(nftables.WithNetNSFd(int(ns)))
	if err != nil {
		return err
	}
	t := c.AddTable(&nftables.Table{Family: nftables.TableFamilyIPv4, Name: "benchct"})
	ch := c.AddChain(&nftables.Chain{Name: "fwd", Table: t, Type: nftables.ChainTypeFilter,
		Hooknum: nftables.ChainHookForward, Priority: nftables.ChainPriorityFilter})
	established := binaryutil.NativeEndian.PutUint32(expr.CtStateBitESTABLISHED | expr.CtStateBitRELATED)
	c.AddRule(&nftables.Rule{Table: t, Chain: ch, Exprs: []expr.Any{
		&expr.Ct{Register: 1, Key: expr.CtKeySTATE},
		&expr.Bitwise{SourceRegister: 1, DestRegister: 1, Len: 4, Mask: established, Xor: []byte{0, 0, 0, 0}},
		&expr.Cmp{Op: expr.CmpOpNeq, Register: 1, Data: []byte{0, 0, 0, 0}},
		&expr.Verdict{Kind: expr.VerdictAccept},
	}})
	return c.Flush()
}
