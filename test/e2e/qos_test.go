package e2e

import (
	"encoding/json"
	"fmt"
	"io"
	"math"
	"net"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/containernetworking/cni/libcni"
	"github.com/hostnet/hostnet/api"
	"github.com/hostnet/hostnet/internal/cni"
	"github.com/hostnet/hostnet/internal/netmodel"
	"github.com/hostnet/hostnet/internal/testutil"
	"github.com/vishvananda/netlink"
)

// Measuring a shaped rate: the sender writes as fast as TCP lets it for
// qosWarm+qosWindow; the receiver counts what arrives in the window after
// qosWarm from its first byte, so that the bucket's burst and TCP's slow
// start do not count. The figure is the payload's rate: the bucket counts
// headers too, so a TCP transfer gets about 96% of the cap.
const (
	qosWarm   = 500 * time.Millisecond
	qosWindow = 2500 * time.Millisecond
)

// measureRate starts a receiver listening on listen inside the namespace
// to, sends to dial from inside the namespace from, and returns the rate
// the receiver saw, in bytes per second.
func measureRate(t *testing.T, from, to, listen, dial string, window time.Duration) float64 {
	t.Helper()
	var l net.Listener
	In(t, to, func() error {
		var err error
		l, err = net.Listen("tcp", listen)
		return err
	})
	defer l.Close()
	type result struct {
		rate float64
		err  error
	}
	got := make(chan result, 1)
	go func() {
		c, err := l.Accept()
		if err != nil {
			got <- result{err: err}
			return
		}
		defer c.Close()
		_ = c.SetReadDeadline(time.Now().Add(qosWarm + window + 10*time.Second))
		buf := make([]byte, 256<<10)
		var first, markAt, last time.Time
		var total, mark int64
		for {
			n, err := c.Read(buf)
			now := time.Now()
			if n > 0 {
				if first.IsZero() {
					first = now
				}
				total += int64(n)
				last = now
				// The window opens after the read that crosses qosWarm:
				// what that read returned may have waited in the socket
				// while the receiver was not scheduled.
				if markAt.IsZero() && now.Sub(first) >= qosWarm {
					markAt, mark = now, total
				}
			}
			if err == io.EOF {
				break
			}
			if err != nil {
				got <- result{err: err}
				return
			}
		}
		if markAt.IsZero() || !last.After(markAt) {
			got <- result{err: fmt.Errorf("%d bytes arrived, too few to measure", total)}
			return
		}
		got <- result{rate: float64(total-mark) / last.Sub(markAt).Seconds()}
	}()
	before := tcpCounters(t, from)
	defer func() {
		after := tcpCounters(t, from)
		t.Logf("sender's TCP: %d segments retransmitted, %d timeouts", after[0]-before[0], after[1]-before[1])
	}()
	c, err := Dial(t, from, "tcp", dial, 2*time.Second)
	if err != nil {
		t.Fatalf("dial %s: %v", dial, err)
	}
	chunk := make([]byte, 64<<10)
	for end := time.Now().Add(qosWarm + window); time.Now().Before(end); {
		_ = c.SetWriteDeadline(end)
		if _, err := c.Write(chunk); err != nil && !strings.Contains(err.Error(), "timeout") {
			c.Close()
			t.Fatalf("send: %v", err)
		}
	}
	c.Close()
	r := <-got
	if r.err != nil {
		t.Fatalf("measure: %v", r.err)
	}
	return r.rate
}

// tcpCounters reads the TCP segments retransmitted and the retransmission
// timeouts of the namespace at path.
func tcpCounters(t *testing.T, path string) [2]int64 {
	var out [2]int64
	In(t, path, func() error {
		for i, f := range []struct{ file, table, field string }{
			{"/proc/thread-self/net/snmp", "Tcp:", "RetransSegs"}, {"/proc/thread-self/net/netstat", "TcpExt:", "TCPTimeouts"}} {
			b, err := os.ReadFile(f.file)
			if err != nil {
				return nil
			}
			var names []string
			for _, line := range strings.Split(string(b), "\n") {
				fields := strings.Fields(line)
				if len(fields) == 0 || fields[0] != f.table {
					continue
				}
				if names == nil {
					names = fields
					continue
				}
				for j, n := range names {
					if n == f.field && j < len(fields) {
						fmt.Sscan(fields[j], &out[i])
					}
				}
			}
		}
		return nil
	})
	return out
}

// nearCap fails the test unless rate is within 10% of the cap.
func nearCap(t *testing.T, what string, rate, cap float64) {
	t.Helper()
	load, _ := os.ReadFile("/proc/loadavg")
	t.Logf("%s: %.2f MB/s, cap %.2f MB/s (%.1f%%); load %s", what, rate/1e6, cap/1e6, 100*rate/cap, strings.Fields(string(load) + " ?")[0])
	if math.Abs(rate-cap) > 0.1*cap {
		t.Errorf("%s: %.2f MB/s, not within 10%% of the cap %.2f MB/s", what, rate/1e6, cap/1e6)
	}
}

// qosPolicy is a QOS policy document.
func qosPolicy(settings string) api.Policy {
	return api.Policy{Type: api.QOS, Settings: json.RawMessage(settings)}
}

// shaping describes the token buckets on a host link and the ifb devices
// of the host, as "DEV: tbf RATE" lines, sorted by device.
func (e *Env) shaping(t *testing.T) string {
	t.Helper()
	h := e.handle(e.HostNS)
	defer h.Close()
	links, err := h.LinkList()
	if err != nil {
		t.Fatal(err)
	}
	var lines []string
	for _, l := range links {
		name := l.Attrs().Name
		if l.Type() == "ifb" {
			lines = append(lines, name+": ifb")
		}
		qs, err := h.QdiscList(l)
		if err != nil {
			t.Fatal(err)
		}
		for _, q := range qs {
			switch q := q.(type) {
			case *netlink.Tbf:
				lines = append(lines, fmt.Sprintf("%s: tbf %d", name, q.Rate))
			case *netlink.Ingress:
				lines = append(lines, name+": ingress")
			}
		}
	}
	return strings.Join(lines, "\n")
}

// ifbOf returns the ifb device whose token bucket shapes what the
// endpoint behind port sends.
func (e *Env) ifbOf(t *testing.T, port string) netlink.Link {
	t.Helper()
	h := e.handle(e.HostNS)
	defer h.Close()
	l, err := h.LinkByName(port)
	if err != nil {
		t.Fatal(err)
	}
	filters, err := h.FilterList(l, netlink.MakeHandle(0xffff, 0))
	if err != nil || len(filters) != 1 {
		t.Fatalf("ingress filters of %s: %v, %v", port, filters, err)
	}
	u, ok := filters[0].(*netlink.U32)
	if !ok || len(u.Actions) != 1 {
		t.Fatalf("ingress filter of %s: %+v", port, filters[0])
	}
	m, ok := u.Actions[0].(*netlink.MirredAction)
	if !ok {
		t.Fatalf("ingress filter action of %s: %+v", port, u.Actions[0])
	}
	ifb, err := h.LinkByIndex(m.Ifindex)
	if err != nil {
		t.Fatal(err)
	}
	return ifb
}

// waitInSync waits for the daemon's check to find the kernel as intended.
func (e *Env) waitInSync(t *testing.T, within time.Duration) {
	t.Helper()
	var rep *api.CheckReport
	var err error
	for deadline := time.Now().Add(within); time.Now().Before(deadline); time.Sleep(100 * time.Millisecond) {
		if rep, err = e.Client().Check(ctx); err == nil && rep.InSync {
			return
		}
	}
	t.Fatalf("not in sync within %v: %+v, %v", within, rep, err)
}

// An endpoint's QOS policy caps what it sends (HNS's
// MaximumOutgoingBandwidthInBytes, bytes per second) with a token bucket
// on the host side, which the endpoint cannot reach. The cap changes live
// (an open connection lives on, the port is not touched), outlives a
// restart of the daemon, is put back when someone deletes it, goes with
// the policy and with the endpoint (its ifb device too).
func TestQoSOutgoing(t *testing.T) {
	e := NewEnv(t, "--repair-interval", "30s") // a deleted bucket is reported: the notification must repair it
	c := e.Client()
	const port = 5201
	ext := fmt.Sprintf("%s:%d", extAddr, port)
	const cap1, cap2 = 4_000_000, 2_000_000

	ns, err := c.CreateNamespace(ctx, &api.Namespace{})
	if err != nil {
		t.Fatal(err)
	}
	ep, err := c.CreateEndpoint(ctx, &api.Endpoint{Name: "shaped", HostComputeNetwork: "nat",
		Policies: []api.Policy{qosPolicy(fmt.Sprintf(`{"MaximumOutgoingBandwidthInBytes":%d}`, cap1))}})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.Attach(ctx, ns.ID, ep.ID); err != nil {
		t.Fatal(err)
	}
	if ep, err = c.GetEndpoint(ctx, ep.ID); err != nil {
		t.Fatal(err)
	}
	if got := string(ep.Policies[0].Settings); got != fmt.Sprintf(`{"MaximumOutgoingBandwidthInBytes":%d}`, cap1) {
		t.Errorf("the policy reads back as %s", got)
	}
	epNS, hostPort := ns.NetNamespacePath, ep.HostInterfaceName
	t.Logf("shaping:\n%s", e.shaping(t))

	nearCap(t, "endpoint to the outside", measureRate(t, epNS, e.ExtNS, fmt.Sprintf(":%d", port), ext, qosWindow), cap1)

	// Changed live: an open connection lives on; the port keeps its index.
	Serve(t, e.ExtNS, "tcp", ":7")
	conn, err := Dial(t, epNS, "tcp", extAddr+":7", 2*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	if _, err := Exchange(conn, "before", 2*time.Second); err != nil {
		t.Fatal(err)
	}
	h := e.handle(e.HostNS)
	defer h.Close()
	before, err := h.LinkByName(hostPort)
	if err != nil {
		t.Fatal(err)
	}
	update := func(settings string) {
		t.Helper()
		req, _ := json.Marshal(api.PolicyRequest{Policies: []api.Policy{qosPolicy(settings)}})
		if _, err := c.ModifyEndpoint(ctx, ep.ID, &api.ModifyRequest{ResourceType: api.ResourcePolicy, RequestType: api.RequestUpdate, Settings: req}); err != nil {
			t.Fatal(err)
		}
	}
	update(fmt.Sprintf(`{"MaximumOutgoingBandwidthInBytes":%d}`, cap2))
	if reply, err := Exchange(conn, "after", 2*time.Second); err != nil || !strings.HasSuffix(reply, "after") {
		t.Errorf("a connection open across the change: %q, %v", reply, err)
	}
	after, err := h.LinkByName(hostPort)
	if err != nil || after.Attrs().Index != before.Attrs().Index || after.Attrs().OperState != before.Attrs().OperState {
		t.Errorf("the port changed: %+v -> %+v, %v", before.Attrs(), after.Attrs(), err)
	}
	nearCap(t, "after the change", measureRate(t, epNS, e.ExtNS, fmt.Sprintf(":%d", port), ext, qosWindow), cap2)

	// A restart keeps the bucket as it is.
	ifb := e.ifbOf(t, hostPort)
	e.Restart(false)
	e.waitInSync(t, 5*time.Second)
	if again := e.ifbOf(t, hostPort); again.Attrs().Index != ifb.Attrs().Index {
		t.Errorf("the ifb device was made again across a restart: %d -> %d", ifb.Attrs().Index, again.Attrs().Index)
	}
	if s := e.shaping(t); !strings.Contains(s, fmt.Sprintf("%s: tbf %d", ifb.Attrs().Name, cap2)) {
		t.Errorf("after a restart:\n%s", s)
	}

	// A token bucket deleted by hand is put back.
	if err := h.QdiscDel(&netlink.Tbf{QdiscAttrs: netlink.QdiscAttrs{LinkIndex: ifb.Attrs().Index,
		Handle: netlink.MakeHandle(netmodel.QdiscHandle, 0), Parent: netlink.HANDLE_ROOT}}); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	e.waitInSync(t, 10*time.Second)
	t.Logf("repaired in %v", time.Since(start).Round(10*time.Millisecond))
	if s := e.shaping(t); !strings.Contains(s, fmt.Sprintf("%s: tbf %d", ifb.Attrs().Name, cap2)) {
		t.Errorf("after the repair:\n%s", s)
	}

	// 0 is unlimited: the bucket and the ifb device go.
	update(`{"MaximumOutgoingBandwidthInBytes":0}`)
	if s := e.shaping(t); strings.Contains(s, "tbf") || strings.Contains(s, "ifb") {
		t.Errorf("shaping left with no cap:\n%s", s)
	}
	if free := measureRate(t, epNS, e.ExtNS, fmt.Sprintf(":%d", port), ext, time.Second); free < 3*cap2 {
		t.Errorf("without a cap: %.2f MB/s, not well above the old cap %.2f MB/s", free/1e6, float64(cap2)/1e6)
	} else {
		t.Logf("without a cap: %.1f MB/s", free/1e6)
	}

	// Shaped again, then the endpoint goes: nothing of its shaping stays.
	update(fmt.Sprintf(`{"MaximumOutgoingBandwidthInBytes":%d}`, cap1))
	if s := e.shaping(t); !strings.Contains(s, fmt.Sprintf("tbf %d", cap1)) {
		t.Errorf("shaped again:\n%s", s)
	}
	conn.Close()
	if _, err := c.Detach(ctx, ns.ID, ep.ID); err != nil {
		t.Fatal(err)
	}
	if err := c.DeleteEndpoint(ctx, ep.ID); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(5 * time.Second)
	for s := e.shaping(t); s != ""; s = e.shaping(t) {
		if time.Now().After(deadline) {
			t.Fatalf("left after the endpoint was deleted:\n%s", s)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// Bad QOS settings are refused with a 400 naming the field and the
// value, and nothing is made.
func TestQoSRefused(t *testing.T) {
	e := NewEnv(t)
	c := e.Client()
	for _, bad := range []struct{ settings, want string }{
		{`{"MaximumOutgoingBandwidthInBytes":10}`, "Policies[0].Settings.MaximumOutgoingBandwidthInBytes: 10"},
		{`{"MaximumOutgoingBandwidthInBytes":1000000,"OutgoingBurstInBytes":5}`, "Policies[0].Settings.OutgoingBurstInBytes: 5"},
		{`{"MaximumOutgoingBandwidthInBytes":"fast"}`, "Policies[0] (QOS)"},
	} {
		_, err := c.CreateEndpoint(ctx, &api.Endpoint{Name: "bad", HostComputeNetwork: "nat", Policies: []api.Policy{qosPolicy(bad.settings)}})
		if api.CodeOf(err) != api.CodeInvalidPolicy || !strings.Contains(err.Error(), bad.want) {
			t.Errorf("%s: %v, want a 400 naming %q", bad.settings, err, bad.want)
		}
	}
	if eps, err := c.ListEndpoints(ctx, nil); err != nil || len(eps) != 0 {
		t.Errorf("endpoints after refusals: %v, %v", eps, err)
	}
	if s := e.shaping(t); s != "" {
		t.Errorf("shaping after refusals:\n%s", s)
	}
}

// The CNI bandwidth capability (bits per second, as the reference
// bandwidth plugin takes it) shapes both ways: what the container
// receives, here from the outside through a published port, on the
// egress of its host-side port; what it sends through its ifb device.
// DEL leaves nothing of it.
func TestCNIBandwidth(t *testing.T) {
	e := NewEnv(t)
	const ingress, egress = 6_000_000, 3_000_000 // bytes per second
	b, _ := json.Marshal(map[string]any{"cniVersion": "1.1.0", "name": "shaped", "plugins": []map[string]any{{
		"type": "hostnet-cni", "socket": e.Socket, "network": "pods",
		"networkDefinition": map[string]any{"type": "NAT", "subnet": "10.99.0.0/24", "gateway": "10.99.0.1"},
		"capabilities":      map[string]bool{"portMappings": true, "bandwidth": true},
	}}})
	list, err := libcni.ConfListFromBytes(b)
	if err != nil {
		t.Fatal(err)
	}
	path, _ := testutil.NewNS(t, "c")
	rt := &libcni.RuntimeConf{ContainerID: "shaped", NetNS: path, IfName: "eth0", CapabilityArgs: map[string]any{
		"portMappings": []map[string]any{{"hostPort": 8201, "containerPort": 5201, "protocol": "tcp"}},
		"bandwidth":    map[string]any{"ingressRate": 8 * ingress, "ingressBurst": 8 * 128 << 10, "egressRate": 8 * egress, "egressBurst": 8 * 64 << 10},
	}}
	cfg := e.libcni()
	if _, err := cfg.AddNetworkList(ctx, list, rt); err != nil {
		t.Fatalf("ADD: %v", err)
	}
	ep, err := e.Client().GetEndpoint(ctx, cni.EndpointName("shaped", rt.ContainerID, "eth0"))
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("policies: %s", mustJSON(ep.Policies))
	t.Logf("shaping:\n%s", e.shaping(t))
	nearCap(t, "the outside to the container (ingress)",
		measureRate(t, e.ExtNS, path, ":5201", fmt.Sprintf("%s:8201", hostAddr), qosWindow), ingress)
	nearCap(t, "the container to the outside (egress)",
		measureRate(t, path, e.ExtNS, ":5202", extAddr+":5202", qosWindow), egress)
	if err := cfg.CheckNetworkList(ctx, list, rt); err != nil {
		t.Errorf("CHECK: %v", err)
	}
	if err := cfg.DelNetworkList(ctx, list, rt); err != nil {
		t.Fatalf("DEL: %v", err)
	}
	deadline := time.Now().Add(5 * time.Second)
	for s := e.shaping(t); s != ""; s = e.shaping(t) {
		if time.Now().After(deadline) {
			t.Fatalf("left after DEL:\n%s", s)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// QOS on the L2 types: an L2Bridge endpoint is shaped both ways on its
// veth's host side, as on NAT (measured against the segment's router);
// a Transparent endpoint, a macvlan with no device of its own in the
// host namespace, is refused the policy with a 400 that says why.
func TestQoSOnL2(t *testing.T) {
	seg := newSegment(t, 1)
	h := seg.hosts[0]
	c := h.Client()
	const out, in = 3_000_000, 5_000_000
	policy := qosPolicy(fmt.Sprintf(`{"MaximumOutgoingBandwidthInBytes":%d,"MaximumIncomingBandwidthInBytes":%d}`, out, in))
	req, _ := json.Marshal(api.PolicyRequest{Policies: []api.Policy{policy}})

	bridged := h.l2Network(t, api.L2Bridge, "l2b", segA, "192.0.2.128/26", routerA)
	a := h.AttachNew(bridged.ID, "a")
	if _, err := c.ModifyEndpoint(ctx, a.Endpoint.ID, &api.ModifyRequest{ResourceType: api.ResourcePolicy, RequestType: api.RequestAdd, Settings: req}); err != nil {
		t.Fatal(err)
	}
	nearCap(t, "L2Bridge endpoint to the router", measureRate(t, a.Namespace.NetNamespacePath, seg.router, routerA+":5201", routerA+":5201", qosWindow), out)
	nearCap(t, "the router to the L2Bridge endpoint", measureRate(t, seg.router, a.Namespace.NetNamespacePath, ":5202", a.Addr.String()+":5202", qosWindow), in)

	transparent := h.l2Network(t, api.Transparent, "l2t", segB, "198.18.0.128/26", routerB)
	_, err := c.CreateEndpoint(ctx, &api.Endpoint{Name: "t", HostComputeNetwork: transparent.ID, Policies: []api.Policy{policy}})
	if api.CodeOf(err) != api.CodeInvalidPolicy || !strings.Contains(err.Error(), "Policies[0]") || !strings.Contains(err.Error(), "QOS does not apply") {
		t.Errorf("QOS on a Transparent endpoint: %v", err)
	}
	if err := c.DeleteNetwork(ctx, transparent.ID); err != nil {
		t.Fatal(err)
	}

	// A Transparent network over a bridge: its endpoints have a port in
	// the host namespace, which takes the caps. (It takes seg0 whole: the
	// L2Bridge network goes first.)
	if err := c.DeleteEndpoint(ctx, a.Endpoint.ID); err != nil {
		t.Fatal(err)
	}
	if err := c.DeleteNetwork(ctx, bridged.ID); err != nil {
		t.Fatal(err)
	}
	h.MustCLI("network", "create", "-d", "transparent", "--subnet", segA, "--ip-range", "192.0.2.128/26", "--gateway", routerA,
		"-o", "com.docker.network.windowsshim.interface="+segUplink, "-o", uplinkBridgeOpt, "overbridge")
	b := h.AttachNew("overbridge", "b")
	if _, err := c.ModifyEndpoint(ctx, b.Endpoint.ID, &api.ModifyRequest{ResourceType: api.ResourcePolicy, RequestType: api.RequestAdd, Settings: req}); err != nil {
		t.Fatal(err)
	}
	nearCap(t, "Transparent (over a bridge) endpoint to the router", measureRate(t, b.Namespace.NetNamespacePath, seg.router, routerA+":5203", routerA+":5203", qosWindow), out)
	nearCap(t, "the router to the Transparent (over a bridge) endpoint", measureRate(t, seg.router, b.Namespace.NetNamespacePath, ":5204", b.Addr.String()+":5204", qosWindow), in)
}
