package e2e

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/hostnet/hostnet/api"
	"github.com/hostnet/hostnet/internal/dataplane/netns"
	"github.com/hostnet/hostnet/internal/dataplane/nft"
	"github.com/hostnet/hostnet/internal/nftmodel"
)

// damage is one kind of hand-made harm to hostnet's kernel state.
type damage struct {
	name string
	do   func(t *testing.T, e *Env, a, b *Attached)
}

var damages = []damage{
	{"the bridge deleted", func(t *testing.T, e *Env, a, b *Attached) {
		n, err := e.Client().GetNetwork(context.Background(), "nat")
		if err != nil {
			t.Fatal(err)
		}
		e.deleteLink(t, n.BridgeName)
	}},
	{"a host-side veth deleted", func(t *testing.T, e *Env, a, b *Attached) {
		e.deleteLink(t, b.Endpoint.HostInterfaceName)
	}},
	{"an nftables element deleted", func(t *testing.T, e *Env, a, b *Attached) {
		k := e.nftKernel(t)
		defer k.Close()
		// The element that lets b's address be its source on its port.
		if err := k.Patch(nftmodel.TablePatch{Family: nftmodel.FamilyBridge, Table: "hostnet",
			DeleteElements: map[string][]string{"endpoint_v4": {b.Endpoint.HostInterfaceName + " . " + b.Addr.String()}}}); err != nil {
			t.Fatal(err)
		}
	}},
	{"the whole table deleted", func(t *testing.T, e *Env, a, b *Attached) {
		k := e.nftKernel(t)
		defer k.Close()
		if err := k.Delete("hostnet"); err != nil {
			t.Fatal(err)
		}
	}},
}

// When someone deletes hostnet's bridge, a port, an nftables element or
// the whole table by hand, the daemon notices and puts things back within
// seconds, saying what it repaired; traffic flows again.
func TestSelfRepair(t *testing.T) {
	for _, d := range damages {
		t.Run(d.name, func(t *testing.T) {
			e := NewEnv(t, "--repair-interval", "30s") // the notifications must do it
			a, b := e.AttachNew("nat", "a"), e.AttachNew("nat", "b")
			Serve(t, b.Namespace.NetNamespacePath, "tcp", ":80")
			if !reachTCP(t, a.Namespace.NetNamespacePath, b.Addr.String()+":80") {
				t.Fatal("no traffic before the damage")
			}
			start := time.Now()
			d.do(t, e, a, b)
			c := e.Client()
			var rep *api.CheckReport
			var err error
			for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(100 * time.Millisecond) {
				if rep, err = c.Check(context.Background()); err == nil && rep.InSync {
					break
				}
			}
			if err != nil || !rep.InSync {
				t.Fatalf("not repaired within 10 s: %+v, %v", rep, err)
			}
			t.Logf("repaired in %v", time.Since(start).Round(10*time.Millisecond))
			evs, _ := c.Events(context.Background())
			repaired := false
			for _, ev := range evs {
				repaired = repaired || ev.Kind == "Repaired"
			}
			if !repaired {
				t.Errorf("no Repaired event: %+v", evs)
			}
			if !strings.Contains(e.LogTail(200), "repair") {
				t.Error("the repair is not in the log")
			}
			if !reachTCP(t, a.Namespace.NetNamespacePath, b.Addr.String()+":80") {
				t.Error("no traffic after the repair")
			}
		})
	}
}

// With self-repair off, `hostnet doctor` reports each damage and changes
// nothing; it exits 1.
func TestDoctorReportsDrift(t *testing.T) {
	e := NewEnv(t, "--repair-interval", "0")
	if out := e.MustCLI("doctor"); !strings.Contains(out, "in sync") {
		t.Errorf("doctor on a sound host: %s", out)
	}
	a, b := e.AttachNew("nat", "a"), e.AttachNew("nat", "b")
	for _, d := range damages[1:] {
		d.do(t, e, a, b)
	}
	r := e.CLI("doctor")
	if r.Code != 1 || !strings.Contains(r.Stdout, "port "+b.Endpoint.HostInterfaceName+" is missing") || !strings.Contains(r.Stdout, "Firewall") {
		t.Errorf("doctor after damage: exit %d\n%s%s", r.Code, r.Stdout, r.Stderr)
	}
	if again := e.CLI("doctor"); again.Stdout != r.Stdout {
		t.Errorf("doctor changed something:\n%s\nthen\n%s", r.Stdout, again.Stdout)
	}
}

// deleteLink deletes a device of the host by hand.
func (e *Env) deleteLink(t *testing.T, name string) {
	h := e.handle(e.HostNS)
	defer h.Close()
	l, err := h.LinkByName(name)
	if err != nil {
		t.Fatal(err)
	}
	if err := h.LinkDel(l); err != nil {
		t.Fatal(err)
	}
}

// nftKernel opens an nftables applier of its own in the host namespace,
// as another program would be.
func (e *Env) nftKernel(t *testing.T) *nft.Kernel {
	ns, err := netns.Open(e.HostNS)
	if err != nil {
		t.Fatal(err)
	}
	defer ns.Close()
	k, err := nft.NewKernel(int(ns))
	if err != nil {
		t.Fatal(err)
	}
	return k
}
