package nft

import (
	"net/netip"
	"testing"
	"time"

	"github.com/google/nftables"
	"github.com/hostnet/hostnet/api"
	"github.com/hostnet/hostnet/internal/netmodel"
	"github.com/hostnet/hostnet/internal/nftmodel"
	"github.com/hostnet/hostnet/internal/policy"
	"github.com/hostnet/hostnet/internal/testutil"
	"github.com/vishvananda/netlink"
)

// flowEntries returns how many entries the dynamic set of the netdev table
// holds.
func flowEntries(t *testing.T, k *Kernel, table, set string) int {
	t.Helper()
	kt := kernelTable(nftmodel.TableKey{Family: nftmodel.FamilyNetdev, Name: table})
	els, err := k.conn.GetSetElements(&nftables.Set{Table: kt, Name: set})
	if err != nil {
		t.Fatalf("elements of %s: %v", set, err)
	}
	return len(els)
}

// TestPacketDeviceHooks applies policy.DeviceHooks for an endpoint whose
// rules allow everything out and, in, only TCP to port 80, on the uplink
// of a "host" namespace: up0, a veth whose peer is in namespace remote.
// The endpoint is a macvlan on up0 (VEPA mode, as L2Tunnel makes it) in
// namespace ep. Flows the endpoint starts get their replies (UDP, TCP,
// ping); from remote, only TCP to port 80 gets in, and the endpoint's
// replies to it go out as replies. The host's own traffic on up0 passes
// and leaves the flow sets alone. What the endpoint sends from an address
// that is not its own is dropped.
func TestPacketDeviceHooks(t *testing.T) {
	host, remote, ep := newNS(t), newNS(t), newNS(t)
	veth(t, host, remote, "up0", "wire0")
	addrs(t, remote, "wire0", "10.89.0.9/24")
	hh := nlHandle(t, host)
	up0, err := hh.LinkByName("up0")
	if err != nil {
		t.Fatal(err)
	}
	mv := &netlink.Macvlan{LinkAttrs: netlink.LinkAttrs{Name: "ep0", ParentIndex: up0.Attrs().Index, Namespace: netlink.NsFd(int(ep))}, Mode: netlink.MACVLAN_MODE_VEPA}
	if err := hh.LinkAdd(mv); err != nil {
		t.Fatalf("add macvlan: %v", err)
	}
	eh := nlHandle(t, ep)
	l, err := eh.LinkByName("ep0")
	if err != nil {
		t.Fatal(err)
	}
	if err := eh.LinkSetUp(l); err != nil {
		t.Fatal(err)
	}
	addrs(t, ep, "ep0", "10.89.0.2/24")

	rules := []struct {
		action, dir, protos, lports string
		prio                        uint16
	}{{"Allow", "Out", "", "", 100}, {"Allow", "In", "6", "80", 100}, {"Block", "In", "", "", 1000}}
	var own []api.ACLSpec
	for _, r := range rules {
		own = append(own, testutil.ACL(t, r.action, r.dir, r.protos, "", r.lports, "", "", r.prio))
	}
	d := policy.DeviceHooks{Table: policy.TableName, Device: "up0"}
	epAddrs := []netip.Addr{netip.MustParseAddr("10.89.0.2")}
	objs := append(d.Layout(), d.Filter(epAddrs, nil, own, false)...)
	objs = append(objs, d.AntiSpoof(l.Attrs().HardwareAddr, epAddrs)...)
	tables, err := netmodel.ComposeTables(objs)
	if err != nil {
		t.Fatal(err)
	}
	k := newKernel(t, host)
	if err := k.ApplyAll(tables...); err != nil {
		t.Fatal(err)
	}
	for _, tbl := range tables {
		checkKernel(t, k, tbl)
	}

	go echoUDP(listenUDP(t, remote, "10.89.0.9:7"))
	go echoUDP(listenUDP(t, ep, "10.89.0.2:7"))
	serveTCP(t, remote, "tcp4", "10.89.0.9:80")
	serveTCP(t, ep, "tcp4", "10.89.0.2:80")
	serveTCP(t, ep, "tcp4", "10.89.0.2:81")
	flowsIn, flowsOut := d.Name(policy.SetFlowsIn4), d.Name(policy.SetFlowsOut4)

	// Out is allowed: the replies come back through the flows egress
	// recorded.
	if got := udpExchange(t, ep, "10.89.0.2", "10.89.0.9:7", "udp out", 3*time.Second); got != "udp out" {
		t.Errorf("UDP from the endpoint: reply %q", got)
	}
	expectTCP(t, ep, "10.89.0.9:80", "10.89.0.9:80 from 10.89.0.2:")
	if !ping(t, ep, "10.89.0.9", 0x4e03, 3*time.Second) {
		t.Error("ping from the endpoint: no reply")
	}
	if n := flowEntries(t, k, policy.TableName, flowsIn); n != 3 {
		t.Errorf("%s holds %d flows, want 3 (UDP, TCP, ping)", flowsIn, n)
	}
	if n := flowEntries(t, k, policy.TableName, flowsOut); n != 0 {
		t.Errorf("%s holds %d flows, want none (nothing came in)", flowsOut, n)
	}

	// The host's own flows on the uplink pass and are not recorded.
	addrs(t, host, "up0", "10.89.0.1/24")
	if got := udpExchange(t, host, "10.89.0.1", "10.89.0.9:7", "host out", 3*time.Second); got != "host out" {
		t.Errorf("UDP from the host: reply %q", got)
	}
	if n := flowEntries(t, k, policy.TableName, flowsIn); n != 3 {
		t.Errorf("%s holds %d flows after the host's own, want the endpoint's 3", flowsIn, n)
	}

	// In: only TCP to port 80.
	if got := udpExchange(t, remote, "10.89.0.9", "10.89.0.2:7", "udp in", 500*time.Millisecond); got != "" {
		t.Errorf("UDP to the endpoint: reply %q, want the request dropped", got)
	}
	if got, err := dialTCP(remote, "10.89.0.2:81", time.Second); err == nil {
		t.Errorf("TCP to the endpoint's port 81 reached %q, want the SYN dropped", got)
	}
	if ping(t, remote, "10.89.0.2", 0x4e04, time.Second) {
		t.Error("ping to the endpoint: replied, want the request dropped")
	}
	if n := flowEntries(t, k, policy.TableName, flowsOut); n != 0 {
		t.Errorf("%s holds %d flows after refused ones, want none", flowsOut, n)
	}
	expectTCP(t, remote, "10.89.0.2:80", "10.89.0.2:80 from 10.89.0.9:")
	if n := flowEntries(t, k, policy.TableName, flowsOut); n != 1 {
		t.Errorf("%s holds %d flows, want the one to port 80", flowsOut, n)
	}

	// Anti-spoofing: what the endpoint sends from an address that is not
	// its own does not leave it.
	addrs(t, ep, "ep0", "10.89.0.3/24")
	if got := udpExchange(t, ep, "10.89.0.3", "10.89.0.9:7", "spoofed", time.Second); got != "" {
		t.Errorf("UDP from an address the endpoint does not have: reply %q, want the request dropped", got)
	}
	if got := udpExchange(t, ep, "10.89.0.2", "10.89.0.9:7", "own", 3*time.Second); got != "own" {
		t.Errorf("UDP from the endpoint's own address after a spoofed one: reply %q", got)
	}

	// The flows the kernel recorded leave the table as applied.
	if err := k.ApplyAll(tables...); err != nil || len(k.lastBatch) != 0 {
		t.Errorf("second apply: %v, sent %q", err, k.lastBatch)
	}
}
