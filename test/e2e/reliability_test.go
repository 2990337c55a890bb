package e2e

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hostnet/hostnet/api"
	"github.com/hostnet/hostnet/internal/dataplane/netns"
	"github.com/hostnet/hostnet/internal/testutil"
	"github.com/hostnet/hostnet/internal/testutil/lab"
	"golang.org/x/sys/unix"
)

// reboot simulates a reboot of the test host: the daemon dies, every
// kernel object of the host goes (its namespace, the namespaces under the
// run directory, which is a tmpfs on a real host), the state directory
// stays; the host comes back empty and the daemon starts again.
func (e *Env) reboot(gone ...string) {
	t := e.t
	t.Helper()
	e.Kill9()
	run := filepath.Join(e.Dir, "run")
	testutil.UnmountUnder(run, func(p string) error { return unix.Unmount(p, unix.MNT_DETACH) })
	if err := os.RemoveAll(run); err != nil {
		t.Fatal(err)
	}
	for _, p := range append([]string{e.HostNS}, gone...) {
		if err := netns.Delete(p); err != nil {
			t.Fatalf("delete %s: %v", p, err)
		}
	}
	// The old host namespace dies when its last user lets go of it (and its
	// side of the uplink with it): until then the external side lingers.
	ext := e.handle(e.ExtNS)
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		if _, err := ext.LinkByName(extLinkName); err != nil || time.Now().After(deadline) {
			break
		}
	}
	ext.Close()
	if err := netns.Create(e.HostNS); err != nil {
		t.Fatal(err)
	}
	if err := lab.Uplink(e.HostNS, e.ExtNS); err != nil {
		t.Fatal(err)
	}
	e.Start()
}

// After a reboot, persistent networks come back with their policies;
// endpoints whose network namespace is gone are removed with their
// addresses, logged and listed as events; non-persistent networks are
// gone; recreating what was there meets no "already exists".
func TestRebootRecovery(t *testing.T) {
	e := NewEnv(t)
	c := e.Client()
	ctx := context.Background()
	keep, err := c.CreateNetwork(ctx, &api.Network{Name: "keep", Type: api.NAT, Ipams: []api.Ipam{{Subnets: []api.Subnet{{IpAddressPrefix: "10.50.0.0/24"}}}},
		Policies: []api.Policy{networkACL(t, "Block", "In", "17", "", "", "", "", 10),
			networkACL(t, "Allow", "In", "", "", "", "", "", 100), networkACL(t, "Allow", "Out", "", "", "", "", "", 100)}})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.CreateNetwork(ctx, &api.Network{Name: "temp", Type: api.NAT, Flags: api.NetworkEnableNonPersistent,
		Ipams: []api.Ipam{{Subnets: []api.Subnet{{IpAddressPrefix: "10.51.0.0/24"}}}}}); err != nil {
		t.Fatal(err)
	}
	// A runtime's container, in a namespace hostnet wraps (gone at reboot),
	// publishing a port; and one in a namespace hostnet made.
	runtimeNS, _ := testutil.NewNS(t, "container")
	pod, err := c.CreateEndpoint(ctx, &api.Endpoint{Name: "pod", HostComputeNetwork: "keep", HostComputeNamespace: "pod-ns", NetNamespacePath: runtimeNS,
		Policies: []api.Policy{mapping(6, 8080, 80, "")}})
	if err != nil {
		t.Fatal(err)
	}
	own := e.createWith("keep", "own", 0)
	tempEP := e.createWith("temp", "temp-ep", 0)

	e.reboot(runtimeNS)

	n, err := c.GetNetwork(ctx, "keep")
	if err != nil || n.ID != keep.ID || len(n.Policies) != 3 {
		t.Fatalf("the persistent network after reboot: %+v, %v", n, err)
	}
	if _, err := c.GetNetwork(ctx, "temp"); !api.IsNotFound(err) {
		t.Errorf("the non-persistent network survived: %v", err)
	}
	if _, err := c.GetEndpoint(ctx, tempEP.Endpoint.ID); !api.IsNotFound(err) {
		t.Errorf("an endpoint of the non-persistent network survived: %v", err)
	}
	if _, err := c.GetEndpoint(ctx, "pod"); !api.IsNotFound(err) {
		t.Errorf("the endpoint of a vanished namespace survived: %v", err)
	}
	if _, err := c.GetNamespace(ctx, "pod-ns"); !api.IsNotFound(err) {
		t.Errorf("the namespace object of a vanished namespace survived: %v", err)
	}
	got, err := c.GetEndpoint(ctx, "own")
	if err != nil || got.HostComputeNamespace != own.Namespace.ID {
		t.Errorf("the endpoint of a namespace hostnet made: %+v, %v", got, err)
	}
	evs, err := c.Events(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var text []string
	for _, ev := range evs {
		text = append(text, ev.Kind+" "+ev.Object+": "+ev.Message)
	}
	all := strings.Join(text, "\n")
	if !strings.Contains(all, "Collected Endpoint pod") || !strings.Contains(all, pod.IpConfigurations[0].IpAddress) || !strings.Contains(all, "Dropped Network temp") {
		t.Errorf("events after reboot:\n%s", all)
	}
	if rep, err := c.Check(ctx); err != nil || !rep.InSync {
		t.Errorf("the kernel after reboot recovery: %+v, %v", rep, err)
	}
	// The firewall came back: the network's ACL and the other endpoint's
	// filters are in the table, and traffic flows.
	peer := e.createWith("keep", "peer", 0)
	Serve(t, own.Namespace.NetNamespacePath, "tcp", ":80")
	if !reachTCP(t, peer.Namespace.NetNamespacePath, own.Addr.String()+":80") {
		t.Error("no traffic between endpoints after reboot")
	}
	Serve(t, own.Namespace.NetNamespacePath, "udp", ":53")
	if probeUDP(t, peer.Namespace.NetNamespacePath, own.Addr.String()+":53") {
		t.Error("the network's ACL (UDP in blocked) is not in force after reboot")
	}
	// What clients had, they can make again: the same names, the same
	// published port, the same address.
	again, _ := testutil.NewNS(t, "container2")
	if _, err := c.CreateEndpoint(ctx, &api.Endpoint{Name: "pod", HostComputeNetwork: "keep", HostComputeNamespace: "pod-ns", NetNamespacePath: again,
		IpConfigurations: []api.IPConfig{{IpAddress: pod.IpConfigurations[0].IpAddress}}, Policies: []api.Policy{mapping(6, 8080, 80, "")}}); err != nil {
		t.Errorf("recreating the runtime's endpoint: %v", err)
	}
	if _, err := c.CreateNetwork(ctx, &api.Network{Name: "temp", Type: api.NAT, Flags: api.NetworkEnableNonPersistent,
		Ipams: []api.Ipam{{Subnets: []api.Subnet{{IpAddressPrefix: "10.51.0.0/24"}}}}}); err != nil {
		t.Errorf("recreating the non-persistent network: %v", err)
	}
}

// networkACL builds a NetworkACL policy.
func networkACL(t *testing.T, action, dir, protocols, local, lports, remote, rports string, priority uint16) api.Policy {
	p := acl(action, dir, protocols, local, lports, remote, rports, priority)
	p.Type = api.NetworkACL
	return p
}

// 200 parallel create/delete pairs on one network end with its pool and
// the kernel exactly as before: every address can be taken again.
func TestStressCreateDelete(t *testing.T) {
	e := NewEnv(t)
	c := e.Client()
	ctx := context.Background()
	if _, err := c.CreateNetwork(ctx, &api.Network{Name: "stress", Type: api.NAT, Ipams: []api.Ipam{{Subnets: []api.Subnet{{IpAddressPrefix: "10.60.0.0/24"}}}}}); err != nil {
		t.Fatal(err)
	}
	before := e.kernelState()
	var wg sync.WaitGroup
	errs := make(chan error, 200)
	sem := make(chan struct{}, 32)
	for i := 0; i < 200; i++ {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			sem <- struct{}{}
			defer func() { <-sem }()
			ns, err := c.CreateNamespace(ctx, &api.Namespace{})
			if err != nil {
				errs <- err
				return
			}
			ep, err := c.CreateEndpoint(ctx, &api.Endpoint{Name: fmt.Sprintf("s%d", i), HostComputeNetwork: "stress", HostComputeNamespace: ns.ID,
				Policies: []api.Policy{mapping(6, uint16(20000+i), 80, "")}})
			if err != nil {
				errs <- err
				return
			}
			if err := c.DeleteEndpoint(ctx, ep.ID); err != nil {
				errs <- err
			}
			if err := c.DeleteNamespace(ctx, ns.ID); err != nil {
				errs <- err
			}
		}(i)
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	e.expectKernel(t, before, "after 200 create/delete pairs")
	// The whole pool is free: 253 addresses (the gateway is reserved),
	// then the pool is exhausted.
	var ids []string
	for i := 0; ; i++ {
		ep, err := c.CreateEndpoint(ctx, &api.Endpoint{HostComputeNetwork: "stress"})
		if api.CodeOf(err) == api.CodeAddressesExhausted {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		ids = append(ids, ep.ID)
	}
	if len(ids) != 253 {
		t.Errorf("%d addresses free after the stress, want 253", len(ids))
	}
	for _, id := range ids {
		if err := c.DeleteEndpoint(ctx, id); err != nil {
			t.Fatal(err)
		}
	}
	if rep, err := c.Check(ctx); err != nil || !rep.InSync {
		t.Errorf("check after the stress: %+v, %v", rep, err)
	}
}
