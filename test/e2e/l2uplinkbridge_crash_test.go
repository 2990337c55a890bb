package e2e

import (
	"context"
	"encoding/json"
	"errors"
	"net"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hostnet/hostnet/api"
	"github.com/vishvananda/netlink"
	vnetns "github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

// A Transparent network over a bridge killed half way: the daemon is
// killed (SIGKILL) at spread delays after a create or a delete is sent,
// restarted, and must finish what the store says (the uplink handed over
// if the network is there, handed back if not), the host reachable from
// the router all along but for a moment.

// bridgeDoc is the bridge-mode network document the CLI's create in
// bridgeLab.create sends, with an IPv6 subnet of the segment's too if v6.
func bridgeDoc(name string, v6 bool) *api.Network {
	settings, _ := json.Marshal(api.NetAdapterNameSettings{NetworkAdapterName: segUplink})
	subnets := []api.Subnet{{IpAddressPrefix: segA, IpRange: "192.0.2.128/26",
		Routes: []api.Route{{NextHop: routerA, DestinationPrefix: "0.0.0.0/0"}}}}
	if v6 {
		subnets = append(subnets, api.Subnet{IpAddressPrefix: segV6, IpRange: segV6Pool,
			Routes: []api.Route{{NextHop: routerV6, DestinationPrefix: "::/0"}}})
	}
	return &api.Network{Name: name, Type: api.Transparent, UplinkMode: api.UplinkBridge,
		Ipams:    []api.Ipam{{Type: "Static", Subnets: subnets}},
		Policies: []api.Policy{{Type: api.NetAdapterName, Settings: settings}}}
}

// hostV6 is host 1's IPv6 address on the segment in the IPv6 labs.
var hostV6 = netip.MustParsePrefix("2001:db8:5e9::11/64")

// hostStack is what of the host's addressing the checks expect: its IPv4
// addresses and default route, and with v6 its IPv6 address and default
// route too.
type hostStack struct{ v6 bool }

// withV6 gives the lab the segment's IPv6: the router 2001:db8:5e9::1,
// the host hostV6 on seg0 with a default route through the router (metric
// segMetric, as the IPv4 one).
func (l *bridgeLab) withV6(t *testing.T) hostStack {
	t.Helper()
	l.seg.addV6(l.seg.router, "eth0", routerV6+"/64")
	l.seg.addV6(l.h.HostNS, segUplink, hostV6.String())
	hh := l.seg.handle(l.h.HostNS)
	up, err := hh.LinkByName(segUplink)
	if err != nil {
		t.Fatal(err)
	}
	if err := hh.RouteAdd(&netlink.Route{LinkIndex: up.Attrs().Index, Gw: net.ParseIP(routerV6), Priority: segMetric}); err != nil {
		t.Fatalf("the host's IPv6 default route: %v", err)
	}
	return hostStack{v6: true}
}

func (hs hostStack) expect(st uplinkState) uplinkState {
	if hs.v6 {
		st.want = append(slices.Clone(hostPrefixes), hostV6)
	}
	return st
}

// over is uplinkState.handedOver for the stack.
func (hs hostStack) over(st uplinkState, br string) string {
	if why := hs.expect(st).handedOver(br); why != "" {
		return why
	}
	if hs.v6 && st.defaultVia6 != br {
		return "the IPv6 default route goes through " + st.defaultVia6
	}
	return ""
}

// back is uplinkState.handedBack for the stack.
func (hs hostStack) back(st uplinkState, br string) string {
	if why := hs.expect(st).handedBack(br); why != "" {
		return why
	}
	if hs.v6 && st.defaultVia6 != segUplink {
		return "the IPv6 default route goes through " + st.defaultVia6
	}
	return ""
}

// hostnetLinks lists the devices of hostnet's (named hn...) in the host
// namespace but those in except (the default network's bridge).
func hostnetLinks(t *testing.T, s *segment, path string, except map[string]bool) []string {
	t.Helper()
	links, err := s.handle(path).LinkList()
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, l := range links {
		if strings.HasPrefix(l.Attrs().Name, "hn") && !except[l.Attrs().Name] {
			out = append(out, l.Type()+" "+l.Attrs().Name)
		}
	}
	return out
}

// handedBackAll is handedBack with no device of hostnet's left but those
// of before (a create killed before its answer leaves no name to look
// for).
func handedBackAll(t *testing.T, s *segment, path string, before map[string]bool, hs hostStack) func(uplinkState, string) string {
	return func(st uplinkState, br string) string {
		if why := hs.back(st, br); why != "" {
			return why
		}
		if left := hostnetLinks(t, s, path, before); len(left) > 0 {
			return "hostnet's devices are left: " + strings.Join(left, ", ")
		}
		return ""
	}
}

// gapWatch exchanges a line with the host every 20 ms from the router, as
// keepTalking does, and records the longest time between two exchanges
// that succeeded (an outage of the host, plus TCP's retransmission
// backoff) and the exchanges that failed (no answer within 5 s); after a
// failure it dials again.
type gapWatch struct {
	mu      sync.Mutex
	rounds  int
	longest time.Duration
	at      time.Time // when the longest gap ended
	failed  []string
	answers []time.Time // when each exchange that succeeded ended
	stop    chan struct{}
	done    chan struct{}
}

func (l *bridgeLab) watchGaps(t *testing.T, host netip.Addr) *gapWatch {
	t.Helper()
	addr := netip.AddrPortFrom(host, 7000).String()
	c, err := Dial(t, l.seg.router, "tcp", addr, 5*time.Second)
	if err != nil {
		t.Fatalf("dial the host from the router: %v", err)
	}
	w := &gapWatch{stop: make(chan struct{}), done: make(chan struct{})}
	go func() {
		defer close(w.done)
		defer func() {
			if c != nil {
				c.Close()
			}
		}()
		last := time.Now()
		for {
			select {
			case <-w.stop:
				return
			case <-time.After(20 * time.Millisecond):
			}
			var err error
			if c == nil {
				c, err = Dial(t, l.seg.router, "tcp", addr, 5*time.Second)
			}
			if err == nil {
				_, err = Exchange(c, "ping", 5*time.Second)
			}
			now := time.Now()
			w.mu.Lock()
			w.rounds++
			if err != nil {
				w.failed = append(w.failed, now.Format("15:04:05.000")+": "+err.Error())
				if c != nil {
					c.Close()
					c = nil
				}
			} else {
				if gap := now.Sub(last); gap > w.longest {
					w.longest, w.at = gap, now
				}
				last = now
				w.answers = append(w.answers, now)
			}
			w.mu.Unlock()
		}
	}()
	t.Cleanup(w.finish)
	return w
}

// longestFrom is the longest gap between two answers (or the last answer
// and now) that ended after from.
func (w *gapWatch) longestFrom(from time.Time) time.Duration {
	w.mu.Lock()
	defer w.mu.Unlock()
	var longest time.Duration
	prev := from
	for i, a := range w.answers {
		if a.Before(from) {
			continue
		}
		if i > 0 && w.answers[i-1].Before(from) {
			prev = w.answers[i-1]
		}
		longest = max(longest, a.Sub(prev))
		prev = a
	}
	return max(longest, time.Since(prev))
}

// waitAnswer waits (seconds) for an answer after at.
func (w *gapWatch) waitAnswer(at time.Time) {
	for deadline := time.Now().Add(6 * time.Second); time.Now().Before(deadline); time.Sleep(10 * time.Millisecond) {
		w.mu.Lock()
		n := len(w.answers)
		ok := n > 0 && w.answers[n-1].After(at)
		w.mu.Unlock()
		if ok {
			return
		}
	}
}

func (w *gapWatch) finish() {
	select {
	case <-w.stop:
	default:
		close(w.stop)
	}
	<-w.done
}

// TestTransparentBridgeKilledMidHandover: a bridge-mode create or delete
// (each in turn, on the state the last left) is sent through the API and
// the daemon killed at spread delays after (where each works on the
// kernel) and at each step of the handover and handback as the kernel
// reports it (see killPlans); a create's kill never leaves seg0 a port of
// a bridge without the host's addresses; restarted, it hands the uplink over if the store has the
// network and back if not, within seconds. What the kill left is logged
// (mid-way states are the point). The router reaches the host throughout
// (the longest gap between two answers is logged); at the end, the network
// deleted, the uplink is exactly as it was and nothing of hostnet's is
// left but its default network.
func TestTransparentBridgeKilledMidHandover(t *testing.T) {
	l := newBridgeLab(t)
	killedMidHandover(t, l, hostStack{}, l.h.addr)
}

// TestTransparentBridgeKilledMidHandoverIPv6 is
// TestTransparentBridgeKilledMidHandover with the host's IPv6 address and
// default route on seg0 too (and an IPv6 subnet on the network), the router
// talking to the host over IPv6.
func TestTransparentBridgeKilledMidHandoverIPv6(t *testing.T) {
	l := newBridgeLab(t)
	hs := l.withV6(t)
	killedMidHandover(t, l, hs, hostV6.Addr())
}

// killedMidHandover runs the kills of TestTransparentBridgeKilledMidHandover
// on the lab, the stack hs expected, the router talking to host.
func killedMidHandover(t *testing.T, l *bridgeLab, hs hostStack, host netip.Addr) {
	h, seg := l.h, l.seg
	ctx := context.Background()
	before := readUplink(t, seg, h.HostNS, "none")
	if why := hs.back(before, ""); why != "" {
		t.Fatalf("the lab: %s", why)
	}
	baseline := map[string]bool{} // the default network's devices
	for _, l := range hostnetLinks(t, seg, h.HostNS, nil) {
		baseline[strings.Fields(l)[1]] = true
	}
	watch := l.watchGaps(t, host)

	const name = "lan"
	seg0 := seg.handle(h.HostNS)
	up, err := seg0.LinkByName(segUplink)
	if err != nil {
		t.Fatal(err)
	}
	plans := killPlans(up.Attrs().Index)
	next := map[string]int{}
	exists := false
	var bridge string // of the network in the store
	iterations, kept, midway, fired := 0, 0, 0, 0
	for i := 0; next["create"] < len(plans["create"]) || next["delete"] < len(plans["delete"]); i++ {
		if i == 60 {
			t.Fatalf("%d iterations and the plans were not all tried: %v", i, next)
		}
		op := "create"
		if exists {
			op = "delete"
		}
		plan := killPlan{what: "after the answer"} // an op to get on with the others'
		if next[op] < len(plans[op]) {
			plan = plans[op][next[op]]
			next[op]++
		}
		iterations++
		triggered := make(chan struct{})
		stopWatch := func() {}
		if plan.trigger != nil {
			stopWatch = killOnEvent(t, h.HostNS, h.daemonPID(), plan.trigger, triggered)
		}
		answered := make(chan error, 1)
		sent := time.Now()
		go func() {
			var err error
			if op == "create" {
				_, err = h.Client().CreateNetwork(ctx, bridgeDoc(name, hs.v6))
			} else {
				err = h.Client().DeleteNetwork(ctx, name)
			}
			answered <- err
		}()
		var err error
		switch {
		case plan.trigger != nil:
			select {
			case <-triggered:
				fired++
			case err = <-answered:
				select {
				case <-triggered: // the answer is the kill's EOF
					fired++
				default:
					plan.what += " (not seen: killed after the answer)"
				}
				answered <- err // taken again below
			case <-time.After(5 * time.Second):
				plan.what += " (not seen: killed after 5 s)"
			}
		case plan.what == "after the answer":
			err = <-answered
		default:
			time.Sleep(plan.delay)
		}
		killAt := time.Since(sent)
		h.Kill9()
		stopWatch()
		if plan.what != "after the answer" {
			err = <-answered
		}
		left := readUplink(t, seg, h.HostNS, bridge)
		if left.master != "" && left.master != bridge {
			left = readUplink(t, seg, h.HostNS, left.master) // a create's, not yet answered
		}
		if op == "create" && left.master != "" && !slices.Equal(left.bridgeAddrs, hs.expect(left).want) {
			// The bridge takes the addresses before the uplink is its port.
			t.Errorf("iteration %d: the create's kill left seg0 a port of %s, which has %v of the host's addresses", i, left.master, left.bridgeAddrs)
		}
		leftDesc := describeUplink(hs, left, hostnetLinks(t, seg, h.HostNS, baseline))
		if !strings.HasPrefix(leftDesc, "as before") && !strings.HasPrefix(leftDesc, "handed over") {
			midway++
		}
		h.Start()
		restarted := time.Since(sent)

		n, gerr := h.Client().GetNetwork(ctx, name)
		var apiErr *api.Error
		switch {
		case gerr == nil:
			exists, bridge = true, n.BridgeName
		case errors.As(gerr, &apiErr) && apiErr.Status == 404:
			exists, bridge = false, ""
		default:
			t.Fatalf("iteration %d: get the network: %v", i, gerr)
		}
		if (op == "create") == exists {
			kept++
		}
		if err == nil && (op == "create") != exists {
			t.Errorf("iteration %d: the %s was answered, but the network exists: %t", i, op, exists)
		}
		check, want := handedBackAll(t, seg, h.HostNS, baseline, hs), "handed back"
		if exists {
			check, want = hs.over, "handed over"
		}
		why := waitUplink(t, seg, h.HostNS, bridge, check)
		converged := time.Since(sent)
		watch.waitAnswer(time.Now())
		t.Logf("iteration %d: %s killed %v after it was sent (%s; answer: %s); the kill left: %s; restarted at %v; network in the store: %t; %s at %v; the longest gap between the router's answers: %v",
			i, op, killAt.Round(100*time.Microsecond), plan.what, errText(err), leftDesc, restarted.Round(time.Millisecond), exists, want, converged.Round(time.Millisecond),
			watch.longestFrom(sent).Round(time.Millisecond))
		if why != "" {
			t.Errorf("iteration %d: the uplink is not %s after the restart: %s: %+v", i, want, why, readUplink(t, seg, h.HostNS, bridge))
		}
	}

	// The end: the network deleted, the uplink exactly as it was.
	lastDelete := time.Now()
	if exists {
		if err := h.Client().DeleteNetwork(ctx, name); err != nil {
			t.Fatal(err)
		}
	}
	if why := waitUplink(t, seg, h.HostNS, "none", handedBackAll(t, seg, h.HostNS, baseline, hs)); why != "" {
		t.Errorf("after the last delete: %s", why)
	}
	watch.waitAnswer(time.Now())
	t.Logf("the last delete (not killed; the network in the store: %t): the longest gap between the router's answers: %v", exists, watch.longestFrom(lastDelete).Round(time.Millisecond))
	watch.finish()
	after := readUplink(t, seg, h.HostNS, "none")
	if after.uplinkMAC != before.uplinkMAC || after.master != "" || after.defaultVia != segUplink || after.defaultVia6 != before.defaultVia6 ||
		!slices.Equal(after.uplinkAddrs, before.uplinkAddrs) || after.bridgeExists {
		t.Errorf("the uplink at the end: %+v, want it as before: %+v", after, before)
	}
	checkNoHostnetRoutes(t, seg, h.HostNS, baseline)
	checkOnlyDefaultNetwork(t, h.Env)
	l.hostReachable(t, "at the end")
	watch.mu.Lock()
	defer watch.mu.Unlock()
	t.Logf("%d kills (%d at a kernel event seen, %d left the kernel mid-way), %d kept the operation; the router's exchanges with the host: %d, %d failed; the longest gap between two answers: %v (ending %s)",
		iterations, fired, midway, kept, watch.rounds, len(watch.failed), watch.longest.Round(time.Millisecond), watch.at.Format("15:04:05.000"))
	if len(watch.failed) > 0 {
		t.Errorf("the router's exchanges with the host failed (no answer within 5 s): %v", watch.failed)
	}
}

// killPlan is when an iteration kills the daemon: delay after the request
// is sent, or as soon as the host namespace reports an event trigger
// matches (the daemon is then some netlink requests further at most).
type killPlan struct {
	what    string
	delay   time.Duration
	trigger func(kernelEvent) bool
}

// kernelEvent is one notification of the host namespace: a link's, an
// address's or a route's.
type kernelEvent struct {
	link  *netlink.LinkUpdate
	addr  *netlink.AddrUpdate
	route *netlink.RouteUpdate
}

func isHostAddr(u *netlink.AddrUpdate) bool {
	p := prefixOfNet(&u.LinkAddress)
	return slices.Contains(hostPrefixes, p) || p == hostV6
}

func isSegDefault(u *netlink.RouteUpdate) bool {
	return u.Type == unix.RTM_NEWROUTE && u.Gw.Equal(net.ParseIP(routerA)) && u.Priority == segMetric
}

// killPlans are the kills of the creates and of the deletes: at spread
// delays (the service's create and delete both work on the kernel before
// they answer, within some 3-7 ms on this box), and at each step of the
// handover and of the handback as the kernel reports it. uplink is seg0's
// index.
func killPlans(uplink int) map[string][]killPlan {
	plans := map[string][]killPlan{}
	for _, d := range spread(0, 7*time.Millisecond, 8) {
		plans["create"] = append(plans["create"], killPlan{what: "delay " + d.String(), delay: d})
	}
	for _, d := range spread(0, 5*time.Millisecond, 6) {
		plans["delete"] = append(plans["delete"], killPlan{what: "delay " + d.String(), delay: d})
	}
	on := func(op, what string, trigger func(kernelEvent) bool) {
		plans[op] = append(plans[op], killPlan{what: "at " + what, trigger: trigger})
	}
	on("create", "seg0 made a port of the bridge", func(e kernelEvent) bool {
		return e.link != nil && e.link.Attrs().Index == uplink && e.link.Attrs().MasterIndex != 0
	})
	on("create", "the first address added to the bridge", func(e kernelEvent) bool {
		return e.addr != nil && e.addr.NewAddr && e.addr.LinkIndex != uplink && isHostAddr(e.addr)
	})
	on("create", "the default route moved to the bridge", func(e kernelEvent) bool {
		return e.route != nil && isSegDefault(e.route) && e.route.LinkIndex != uplink
	})
	on("create", "the first address removed from seg0", func(e kernelEvent) bool {
		return e.addr != nil && !e.addr.NewAddr && e.addr.LinkIndex == uplink && isHostAddr(e.addr)
	})
	on("delete", "the first address added back to seg0", func(e kernelEvent) bool {
		return e.addr != nil && e.addr.NewAddr && e.addr.LinkIndex == uplink && isHostAddr(e.addr)
	})
	on("delete", "the default route moved back to seg0", func(e kernelEvent) bool {
		return e.route != nil && isSegDefault(e.route) && e.route.LinkIndex == uplink
	})
	on("delete", "the first address removed from the bridge", func(e kernelEvent) bool {
		return e.addr != nil && !e.addr.NewAddr && e.addr.LinkIndex != uplink && isHostAddr(e.addr)
	})
	on("delete", "seg0 freed from the bridge", func(e kernelEvent) bool {
		return e.link != nil && e.link.Attrs().Index == uplink && e.link.Attrs().MasterIndex == 0
	})
	return plans
}

// killOnEvent watches the namespace at path and sends SIGKILL to pid at
// the first event trigger matches, then closes fired. The returned stop
// ends the watch.
func killOnEvent(t *testing.T, path string, pid int, trigger func(kernelEvent) bool, fired chan<- struct{}) (stop func()) {
	t.Helper()
	ns, err := vnetns.GetFromPath(path)
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	links, addrs, routes := make(chan netlink.LinkUpdate, 64), make(chan netlink.AddrUpdate, 64), make(chan netlink.RouteUpdate, 64)
	if err := netlink.LinkSubscribeWithOptions(links, done, netlink.LinkSubscribeOptions{Namespace: &ns}); err != nil {
		t.Fatal(err)
	}
	if err := netlink.AddrSubscribeWithOptions(addrs, done, netlink.AddrSubscribeOptions{Namespace: &ns}); err != nil {
		t.Fatal(err)
	}
	if err := netlink.RouteSubscribeWithOptions(routes, done, netlink.RouteSubscribeOptions{Namespace: &ns}); err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			var e kernelEvent
			select {
			case <-done:
				return
			case u, ok := <-links:
				if !ok {
					return
				}
				e.link = &u
			case u, ok := <-addrs:
				if !ok {
					return
				}
				e.addr = &u
			case u, ok := <-routes:
				if !ok {
					return
				}
				e.route = &u
			}
			if trigger(e) {
				_ = unix.Kill(pid, unix.SIGKILL)
				close(fired)
				return
			}
		}
	}()
	return func() {
		close(done)
		wg.Wait()
		// The subscriptions end when done closes; drain what they sent.
		for _, drain := range []func() bool{
			func() bool { _, ok := <-links; return ok },
			func() bool { _, ok := <-addrs; return ok },
			func() bool { _, ok := <-routes; return ok },
		} {
			go func() {
				for drain() {
				}
			}()
		}
		ns.Close()
	}
}

// spread returns n delays from first to last, evenly apart.
func spread(first, last time.Duration, n int) []time.Duration {
	out := make([]time.Duration, n)
	for i := range out {
		out[i] = first + (last-first)*time.Duration(i)/time.Duration(n-1)
	}
	return out
}

// describeUplink says in a few words what state the uplink is in: as
// before, handed over, or where the addressing is in between.
func describeUplink(hs hostStack, st uplinkState, hostnets []string) string {
	if hs.back(st, "") == "" && len(hostnets) == 0 {
		return "as before"
	}
	if st.master != "" && hs.over(st, st.master) == "" {
		return "handed over"
	}
	var b strings.Builder
	b.WriteString("mid-way: ")
	if len(hostnets) > 0 {
		b.WriteString(strings.Join(hostnets, ", ") + "; ")
	}
	if st.master != "" {
		b.WriteString("seg0 a port of " + st.master + "; ")
	} else {
		b.WriteString("seg0 free; ")
	}
	b.WriteString("seg0 has " + prefixesText(st.uplinkAddrs) + ", the bridge " + prefixesText(st.bridgeAddrs) + "; default route via " + st.defaultVia)
	if hs.v6 {
		b.WriteString(", IPv6 one via " + st.defaultVia6)
	}
	return b.String()
}

func prefixesText(ps []netip.Prefix) string {
	if len(ps) == 0 {
		return "none"
	}
	var s []string
	for _, p := range ps {
		s = append(s, p.String())
	}
	return strings.Join(s, " ")
}

// checkOnlyDefaultNetwork fails the test for any network but the default
// one (nat), and any endpoint or namespace object, the daemon has.
func checkOnlyDefaultNetwork(t *testing.T, e *Env) {
	t.Helper()
	ctx := context.Background()
	c := e.Client()
	nets, err := c.ListNetworks(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	for _, n := range nets {
		if n.Name != "nat" {
			t.Errorf("network %s left", n.Name)
		}
	}
	eps, err := c.ListEndpoints(ctx, nil)
	reportLeft(t, "endpoint", eps, err, func(e *api.Endpoint) string { return e.Name })
	nss, err := c.ListNamespaces(ctx, nil)
	reportLeft(t, "namespace object", nss, err, func(n *api.Namespace) string { return n.Name })
}

func errText(err error) string {
	if err == nil {
		return "ok"
	}
	return err.Error()
}

// checkNoHostnetRoutes fails the test for a route of hostnet's (its
// devices but those in except) left in the host namespace, and for a default route through
// the segment's router on any device but the uplink.
func checkNoHostnetRoutes(t *testing.T, s *segment, path string, except map[string]bool) {
	t.Helper()
	h := s.handle(path)
	routes, err := h.RouteListFiltered(netlink.FAMILY_ALL, &netlink.Route{Table: 0}, netlink.RT_FILTER_TABLE)
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range routes {
		l, _ := h.LinkByIndex(r.LinkIndex)
		dev := ""
		if l != nil {
			dev = l.Attrs().Name
		}
		if strings.HasPrefix(dev, "hn") && !except[dev] {
			t.Errorf("route %s through hostnet's %s left", r, dev)
		}
		if r.Gw.Equal(net.ParseIP(routerA)) && dev != segUplink {
			t.Errorf("route %s through %s, not %s", r, dev, segUplink)
		}
	}
}
