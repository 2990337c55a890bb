package e2e

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hostnet/hostnet/api"
	"github.com/hostnet/hostnet/client"
	"github.com/hostnet/hostnet/internal/driver"
)

// The chaos test: clients run random operations while the daemon is
// killed with SIGKILL at random moments and restarted; after every restart
// the invariants of crash safety are checked. HOSTNET_CHAOS_KILLS sets the
// number of kills (make chaos runs a long one).
const (
	chaosWorkers   = 4
	chaosEndpoints = 6 // per worker
	chaosSpaces    = 3 // namespaces per worker
	// chaosRebootEvery: every so many rounds the host reboots instead:
	// the kill, then all its kernel state gone (see Env.reboot).
	chaosRebootEvery = 10
)

// epState is what an endpoint of the test is: absent, or present,
// attached to a namespace ("" when detached), with published ports.
type epState struct {
	Exists bool
	NS     string
	Ports  []uint16
}

func (s epState) String() string {
	if !s.Exists {
		return "absent"
	}
	return fmt.Sprintf("present in %q publishing %v", s.NS, s.Ports)
}

func (s epState) equal(o epState) bool {
	return s.Exists == o.Exists && s.NS == o.NS && slices.Equal(s.Ports, o.Ports)
}

// tracked is an endpoint's state as the clients know it: what the last
// acknowledged operation left, or, when an operation's answer was lost in
// a crash, the two states it may have left.
type tracked struct {
	state   epState
	pending *epState // the state the unanswered operation would have made
}

type chaosStats struct {
	ops, acked, refused, unreachable, lost, kills, reboots, checks, violations atomic.Int64
}

func TestChaos(t *testing.T) {
	kills := 20
	if v := os.Getenv("HOSTNET_CHAOS_KILLS"); v != "" {
		kills, _ = strconv.Atoi(v)
	}
	e := NewEnv(t)
	c := e.Client()
	ctx := context.Background()
	if _, err := c.CreateNetwork(ctx, &api.Network{Name: "chaos", Type: api.NAT, Ipams: []api.Ipam{{Subnets: []api.Subnet{{IpAddressPrefix: "10.70.0.0/22"}}}}}); err != nil {
		t.Fatal(err)
	}
	// The namespaces stay for the whole test, each with a server on port
	// 80 that the packet checks reach.
	spaces := map[string]string{} // name -> path
	for w := 0; w < chaosWorkers; w++ {
		for j := 0; j < chaosSpaces; j++ {
			name := fmt.Sprintf("ns-%d-%d", w, j)
			ns, err := c.CreateNamespace(ctx, &api.Namespace{Name: name})
			if err != nil {
				t.Fatal(err)
			}
			spaces[name] = ns.NetNamespacePath
			Serve(t, ns.NetNamespacePath, "tcp", ":80")
		}
	}
	models := make([]map[string]*tracked, chaosWorkers)
	for w := range models {
		models[w] = map[string]*tracked{}
		for i := 0; i < chaosEndpoints; i++ {
			models[w][fmt.Sprintf("ep-%d-%d", w, i)] = &tracked{}
		}
	}
	var st chaosStats
	rng := rand.New(rand.NewPCG(uint64(time.Now().UnixNano()), 7))
	for k := 0; k < kills; k++ {
		runCtx, stop := context.WithCancel(ctx)
		var wg sync.WaitGroup
		for w := 0; w < chaosWorkers; w++ {
			wg.Add(1)
			go func(w int, seed uint64) {
				defer wg.Done()
				chaosWorker(runCtx, e, w, models[w], rand.New(rand.NewPCG(seed, uint64(w))), &st)
			}(w, rng.Uint64())
		}
		time.Sleep(time.Duration(50+rng.IntN(400)) * time.Millisecond)
		st.kills.Add(1)
		if k%chaosRebootEvery == chaosRebootEvery-1 {
			// The clients stop first: the reboot takes seconds, and what
			// they would send meanwhile meets the daemon before the kill.
			stop()
			e.reboot()
			wg.Wait()
			st.reboots.Add(1)
			// The namespaces hostnet made are new ones: new servers.
			for _, path := range spaces {
				Serve(t, path, "tcp", ":80")
			}
		} else {
			e.Kill9()
			stop()
			wg.Wait()
			e.Start()
		}
		st.checks.Add(1)
		if n := chaosCheck(t, e, models, spaces, k); n > 0 {
			st.violations.Add(int64(n))
		}
		if t.Failed() && st.violations.Load() > 5 {
			break
		}
	}
	t.Logf("chaos: %d operations (%d acknowledged, %d refused, %d answers lost in a crash, %d not sent: daemon down), %d kills (%d of them reboots), %d checks, %d violations",
		st.ops.Load(), st.acked.Load(), st.refused.Load(), st.lost.Load(), st.unreachable.Load(), st.kills.Load(), st.reboots.Load(), st.checks.Load(), st.violations.Load())
	fmt.Printf("chaos: operations %d acknowledged %d refused %d lost %d unsent %d kills %d reboots %d violations %d\n",
		st.ops.Load(), st.acked.Load(), st.refused.Load(), st.lost.Load(), st.unreachable.Load(), st.kills.Load(), st.reboots.Load(), st.violations.Load())
}

// chaosWorker runs random operations on its own endpoints until ctx ends
// (the daemon was killed). Every operation's effect is recorded only when
// the daemon acknowledged it; an operation whose answer was lost leaves
// both outcomes possible.
func chaosWorker(ctx context.Context, e *Env, w int, model map[string]*tracked, rng *rand.Rand, st *chaosStats) {
	c := e.Client()
	names := make([]string, 0, len(model))
	for name := range model {
		names = append(names, name)
	}
	slices.Sort(names)
	for ctx.Err() == nil {
		name := names[rng.IntN(len(names))]
		tr := model[name]
		if tr.pending != nil {
			continue // its state is unknown until the next check
		}
		cur := tr.state
		next := cur
		var op func() error
		ns := fmt.Sprintf("ns-%d-%d", w, rng.IntN(chaosSpaces))
		switch {
		case !cur.Exists:
			next = epState{Exists: true}
			if rng.IntN(2) == 0 {
				next.NS = ns
			}
			op = func() error {
				_, err := c.CreateEndpoint(ctx, &api.Endpoint{Name: name, HostComputeNetwork: "chaos", HostComputeNamespace: next.NS})
				return err
			}
		case cur.NS == "":
			switch rng.IntN(3) {
			case 0:
				next = epState{}
				op = func() error { return c.DeleteEndpoint(ctx, name) }
			default:
				next.NS = ns
				op = func() error {
					_, err := c.Attach(ctx, ns, name)
					return err
				}
			}
		default:
			switch rng.IntN(4) {
			case 0:
				next = epState{}
				op = func() error { return c.DeleteEndpoint(ctx, name) }
			case 1:
				next.NS = ""
				op = func() error {
					_, err := c.Detach(ctx, cur.NS, name)
					return err
				}
			default:
				// Publish a port of this endpoint, or stop publishing one.
				port := uint16(30000 + w*100 + rng.IntN(40))
				rt := api.RequestAdd
				if slices.Contains(cur.Ports, port) {
					rt = api.RequestRemove
					next.Ports = slices.DeleteFunc(slices.Clone(cur.Ports), func(p uint16) bool { return p == port })
				} else {
					next.Ports = append(slices.Clone(cur.Ports), port)
					slices.Sort(next.Ports)
				}
				op = func() error {
					settings, _ := json.Marshal(api.PolicyRequest{Policies: []api.Policy{mapping(6, port, 80, "")}})
					_, err := c.ModifyEndpoint(ctx, name, &api.ModifyRequest{ResourceType: api.ResourcePolicy, RequestType: rt, Settings: settings})
					return err
				}
			}
		}
		st.ops.Add(1)
		err := op()
		var apiErr *api.Error
		switch {
		case err == nil:
			tr.state = next
			st.acked.Add(1)
		case errors.As(err, &apiErr) && apiErr.Status < 500:
			st.refused.Add(1) // refused: nothing changed
		case client.IsUnreachable(err):
			st.unreachable.Add(1) // never sent: the daemon is down
			time.Sleep(10 * time.Millisecond)
		default:
			tr.pending = &next // the answer was lost: either state may hold
			st.lost.Add(1)
		}
	}
}

// chaosCheck checks the invariants after a restart; it returns how many
// were violated (each reported with t.Errorf).
func chaosCheck(t *testing.T, e *Env, models []map[string]*tracked, spaces map[string]string, round int) int {
	t.Helper()
	ctx := context.Background()
	c := e.Client()
	violations := 0
	fail := func(format string, args ...any) {
		violations++
		t.Errorf("after kill %d: "+format, append([]any{round + 1}, args...)...)
	}
	eps, err := c.ListEndpoints(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	byName := map[string]*api.Endpoint{}
	for i := range eps {
		byName[eps[i].Name] = &eps[i]
	}
	nsName := map[string]string{} // ID -> name
	nss, err := c.ListNamespaces(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	for _, ns := range nss {
		nsName[ns.ID] = ns.Name
	}
	// Every acknowledged operation is in effect; a lost one either is or
	// is not, nothing in between.
	var attached []*api.Endpoint
	for _, model := range models {
		for name, tr := range model {
			got := epState{}
			if ep := byName[name]; ep != nil {
				got = epState{Exists: true, NS: nsName[ep.HostComputeNamespace], Ports: publishedPorts(ep)}
				if got.NS != "" {
					attached = append(attached, ep)
				}
			}
			switch {
			case got.equal(tr.state):
			case tr.pending != nil && got.equal(*tr.pending):
			default:
				want := tr.state.String()
				if tr.pending != nil {
					want += " or " + tr.pending.String()
				}
				fail("endpoint %s is %s, want %s", name, got, want)
			}
			tr.state, tr.pending = got, nil
		}
	}
	// No address or MAC is held twice.
	seen := map[string]string{}
	for _, ep := range eps {
		keys := []string{"MAC " + ep.MacAddress}
		for _, ip := range ep.IpConfigurations {
			keys = append(keys, "address "+ip.IpAddress)
		}
		for _, k := range keys {
			if other, dup := seen[k]; dup {
				fail("%s is held by %s and %s", k, other, ep.Name)
			}
			seen[k] = ep.Name
		}
	}
	// The kernel matches the store: no device of hostnet's unclaimed, none
	// missing, the firewall as compiled (the daemon's own check), within a
	// few seconds of the restart for what goes in the background.
	claimed := map[string]bool{}
	nets, err := c.ListNetworks(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	for _, n := range nets {
		claimed[n.BridgeName] = true
	}
	for _, ep := range attached {
		claimed[ep.HostInterfaceName] = true
	}
	var problems []string
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		problems = problems[:0]
		h := e.handle(e.HostNS)
		links, _ := h.LinkList()
		h.Close()
		present := map[string]bool{}
		for _, l := range links {
			name := l.Attrs().Name
			present[name] = true
			if strings.HasPrefix(name, driver.LinkPrefix) && !claimed[name] {
				problems = append(problems, "device "+name+" is claimed by nothing")
			}
		}
		for name := range claimed {
			if !present[name] {
				problems = append(problems, "device "+name+" is missing")
			}
		}
		if rep, err := c.Check(ctx); err != nil {
			problems = append(problems, "check: "+err.Error())
		} else {
			for _, p := range rep.Problems {
				problems = append(problems, p.Kind+" "+p.Name+p.ID+": "+p.Problem)
			}
		}
		if len(problems) == 0 || time.Now().After(deadline) {
			break
		}
	}
	for _, p := range problems {
		fail("%s", p)
	}
	if len(problems) > 0 {
		t.Logf("daemon log, errors and the objects at fault:\n%s", e.logLines(func(l string) bool {
			if strings.Contains(l, "level=ERROR") || strings.Contains(l, "level=WARN") {
				return true
			}
			for _, p := range problems {
				for _, word := range strings.Fields(p) {
					if strings.HasPrefix(word, driver.PortPrefix) && strings.Contains(l, word) {
						return true
					}
				}
			}
			return false
		}))
	}
	// A sample checked with real packets: an attached endpoint reaches
	// another one, and one that publishes a port is reached through it.
	// Only endpoints alone in their namespace: with two NICs on one subnet
	// a namespace may answer through the other one, whose port then drops
	// the reply for its source address (anti-spoofing, as it should).
	perNS := map[string]int{}
	for _, ep := range attached {
		perNS[ep.HostComputeNamespace]++
	}
	var alone []*api.Endpoint
	for _, ep := range attached {
		if perNS[ep.HostComputeNamespace] == 1 {
			alone = append(alone, ep)
		}
	}
	if len(alone) >= 2 {
		from, to := alone[round%len(alone)], alone[(round+1)%len(alone)]
		if !reachTCP(t, spaces[nsName[from.HostComputeNamespace]], to.IpConfigurations[0].IpAddress+":80") {
			fail("endpoint %s does not reach endpoint %s", from.Name, to.Name)
		}
	}
	for _, ep := range alone {
		if ports := publishedPorts(ep); len(ports) > 0 {
			if !reachTCP(t, e.ExtNS, fmt.Sprintf("%s:%d", hostAddr, ports[0])) {
				fail("port %d published by %s is not reachable from outside", ports[0], ep.Name)
			}
			break
		}
	}
	return violations
}

func publishedPorts(ep *api.Endpoint) []uint16 {
	var out []uint16
	for _, p := range ep.Policies {
		if p.Type != api.PortMapping {
			continue
		}
		var s api.PortMappingSettings
		if json.Unmarshal(p.Settings, &s) == nil {
			out = append(out, s.ExternalPort)
		}
	}
	slices.Sort(out)
	return out
}

// logLines returns the lines of the daemon's log (all its runs) that keep
// selects.
func (e *Env) logLines(keep func(string) bool) string {
	b, _ := os.ReadFile(e.Dir + "/daemon.log")
	var out []string
	for _, l := range strings.Split(string(b), "\n") {
		if keep(l) {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}
