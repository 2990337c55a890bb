package dataplane

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"

	"github.com/hostnet/hostnet/internal/dataplane/netns"
	"github.com/hostnet/hostnet/internal/netmodel"
	"github.com/hostnet/hostnet/internal/testutil"
	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// hostStep is one configuration a test applies, and what Observe must
// then report.
type hostStep struct {
	name           string
	ensure, remove []netmodel.Object
	want           string // the normalized observation
}

// hostSteps builds a sequence of configurations over an endpoint namespace
// at epPath and a managed namespace under netnsDir: a bridge with its
// gateway, a veth pair into the namespace with addresses and routes, a
// second route, a held port, a file; then a change of the pair's routes,
// then everything removed.
func hostSteps(epPath, netnsDir, dir string) []hostStep {
	ep := netmodel.NS{Path: epPath}
	managed := netmodel.NS{Path: filepath.Join(netnsDir, "m1")}
	mac := net.HardwareAddr{2, 0, 0, 0, 0, 2}
	bridge := netmodel.Link{Name: "hnbrtest", Kind: netmodel.LinkBridge, MAC: net.HardwareAddr{2, 0, 0, 0, 0, 1}, MTU: 1500,
		Up: true, IPv6: netmodel.IPv6NoLinkLocal}
	gw := netmodel.Addr{Link: "hnbrtest", Prefix: netip.MustParsePrefix("10.9.0.1/24")}
	host := netmodel.Link{Name: "hnvtest", Kind: netmodel.LinkVeth, MTU: 1500, Master: "hnbrtest", Up: true, IPv6: netmodel.IPv6Off,
		Seal: true, Peer: &netmodel.LinkRef{NS: ep, Name: "eth0"}}
	peer := netmodel.Link{NS: ep, Name: "eth0", Kind: netmodel.LinkVeth, MAC: mac, MTU: 1500, Up: true, IPv6: netmodel.IPv6NoLinkLocal,
		Peer: &netmodel.LinkRef{Name: "hnvtest"}}
	lo := netmodel.Link{NS: ep, Name: "lo", Kind: netmodel.LinkLoopback, Up: true}
	addr := netmodel.Addr{NS: ep, Link: "eth0", Prefix: netip.MustParsePrefix("10.9.0.2/24")}
	def := netmodel.Route{NS: ep, Link: "eth0", Dst: netip.MustParsePrefix("0.0.0.0/0"), Gateway: netip.MustParseAddr("10.9.0.1"), Metric: 100}
	extra := netmodel.Route{NS: ep, Link: "eth0", Dst: netip.MustParsePrefix("192.0.2.0/24"), Gateway: netip.MustParseAddr("10.9.0.1"), Metric: 0}
	other := netmodel.Route{NS: ep, Link: "eth0", Dst: netip.MustParsePrefix("198.51.100.0/24"), Gateway: netip.MustParseAddr("10.9.0.1"), Metric: 0}
	port := netmodel.Port{Proto: "tcp", Port: 18765}
	file := netmodel.File{Path: filepath.Join(dir, "etc", "hn-x", "resolv.conf"), Content: []byte("nameserver 192.0.2.53\n"), Dir: filepath.Join(dir, "etc", "hn-x")}
	ns := netmodel.Namespace{NS: managed}
	first := []netmodel.Object{peer, addr, def, extra, host, bridge, gw, lo, port, file, ns}
	observed := func(extraRoute string) string {
		return `
link hnbrtest bridge up mtu 1500
addr hnbrtest 10.9.0.1/24
link hnvtest veth up mtu 1500 master hnbrtest peer-ns ep
link eth0 in ep veth up mtu 1500 mac 02:00:00:00:00:02
link lo in ep loopback up
addr eth0 10.9.0.2/24 in ep
route 0.0.0.0/0 metric 100 via 10.9.0.1 dev eth0 in ep
route ` + extraRoute + ` metric 0 via 10.9.0.1 dev eth0 in ep
port tcp4/18765/*
file resolv.conf
namespace m1`
	}
	return []hostStep{
		{name: "create", ensure: first, want: observed("192.0.2.0/24")},
		{name: "again", ensure: first, want: "same"},
		{name: "routes change", ensure: []netmodel.Object{other}, remove: []netmodel.Object{extra}, want: observed("198.51.100.0/24")},
		{name: "endpoint goes", remove: []netmodel.Object{host, peer, addr, def, other, lo, port, file}, want: `
link hnbrtest bridge up mtu 1500
addr hnbrtest 10.9.0.1/24
link lo in ep loopback up
namespace m1`},
		{name: "all gone", remove: []netmodel.Object{bridge, gw, ns}, want: `
link lo in ep loopback up`},
	}
}

// normalize renders the parts of an observation the steps check, with the
// paths of namespaces replaced by their base names.
func normalize(o *netmodel.Observation, epPath string, ids map[netmodel.NS]int) string {
	short := func(ns netmodel.NS) string {
		if ns.IsHost() {
			return ""
		}
		return " in " + filepath.Base(ns.Path)
	}
	var lines []string
	for _, l := range o.Links {
		s := fmt.Sprintf("link %s%s %s", l.Name, short(l.NS), l.Kind)
		if l.Up {
			s += " up"
		}
		if l.Kind != netmodel.LinkLoopback {
			s += fmt.Sprintf(" mtu %d", l.MTU)
		}
		if l.Master != "" {
			s += " master " + l.Master
		}
		if !l.NS.IsHost() && l.Kind == netmodel.LinkVeth {
			s += " mac " + l.MAC.String()
		}
		if l.NS.IsHost() && l.Kind == netmodel.LinkVeth {
			for ns, id := range ids {
				if id >= 0 && id == l.PeerNSID {
					s += " peer-ns " + filepath.Base(ns.Path)
				}
			}
		}
		lines = append(lines, s)
	}
	for _, a := range o.Addrs {
		lines = append(lines, fmt.Sprintf("addr %s %s%s", a.Link, a.Prefix, short(a.NS)))
	}
	for _, r := range o.Routes {
		lines = append(lines, fmt.Sprintf("route %s metric %d via %s dev %s%s", r.Dst, r.Metric, r.Gateway, r.Link, short(r.NS)))
	}
	for _, p := range o.Ports {
		lines = append(lines, "port "+p.ID())
	}
	for _, f := range o.Files {
		lines = append(lines, "file "+filepath.Base(f.Path))
	}
	for _, n := range o.Namespaces {
		lines = append(lines, "namespace "+filepath.Base(n.NS.Path))
	}
	sort.Strings(lines)
	return strings.Join(lines, "\n")
}

func sortedLines(s string) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	sort.Strings(lines)
	return strings.Join(lines, "\n")
}

// runHostSteps applies the steps to h and checks what it observes after
// each.
func runHostSteps(t *testing.T, h Host, epPath, netnsDir, dir string) {
	ctx := context.Background()
	ep := netmodel.NS{Path: epPath}
	prev := ""
	for _, step := range hostSteps(epPath, netnsDir, dir) {
		if err := h.Apply(ctx, step.ensure, step.remove); err != nil {
			t.Fatalf("%s: %v", step.name, err)
		}
		files := []string{filepath.Join(dir, "etc", "hn-x", "resolv.conf")}
		o, err := h.Observe(ctx, netmodel.Query{Namespaces: []netmodel.NS{ep}, LookInto: []netmodel.NS{ep}, Files: files})
		if err != nil {
			t.Fatalf("%s: observe: %v", step.name, err)
		}
		got := normalize(o, epPath, o.NSIDs)
		want := sortedLines(step.want)
		if step.want == "same" {
			want = prev
		}
		if got != want {
			t.Errorf("%s: observed\n%s\nwant\n%s", step.name, got, want)
		}
		prev = got
	}
}

// The fake host and the kernel agree on a sequence of configurations.
func TestHostStepsKernel(t *testing.T) {
	hostPath, _ := testutil.NewNS(t, "host")
	epPath, _ := testutil.NewNS(t, "ep")
	dir := t.TempDir()
	netnsDir := filepath.Join(dir, "netns")
	h, err := OpenLinux(hostPath, HostConfig{LinkPrefixes: []string{"hnbr", "hnv"}, NetnsDir: netnsDir})
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close()
	runHostSteps(t, h, epPath, netnsDir, dir)
}

func TestHostStepsFake(t *testing.T) {
	dir := t.TempDir()
	netnsDir := filepath.Join(dir, "netns")
	epPath := filepath.Join(dir, "ep")
	f := NewFake(HostConfig{LinkPrefixes: []string{"hnbr", "hnv"}, NetnsDir: netnsDir})
	f.AddNamespace(epPath, netmodel.NSID{})
	runHostSteps(t, f, epPath, netnsDir, dir)
}

// Both refuse what the kernel refuses, and report which object failed.
func TestHostRefusals(t *testing.T) {
	dir := t.TempDir()
	epPath := filepath.Join(dir, "ep")
	check := func(t *testing.T, h Host, epPath string) {
		ctx := context.Background()
		ep := netmodel.NS{Path: epPath}
		orphan := netmodel.Link{Name: "hnvorphan", Kind: netmodel.LinkVeth, Master: "hnbrnone", Up: true,
			Peer: &netmodel.LinkRef{NS: ep, Name: "eth9"}}
		orphanPeer := netmodel.Link{NS: ep, Name: "eth9", Kind: netmodel.LinkVeth, Peer: &netmodel.LinkRef{Name: "hnvorphan"}}
		err := h.Apply(ctx, []netmodel.Object{orphan, orphanPeer}, nil)
		var ae *ApplyError
		if !errors.As(err, &ae) || ae.Failed[orphan.Key()] == nil {
			t.Errorf("a port of a missing bridge: %v", err)
		}
		gone := netmodel.Addr{NS: netmodel.NS{Path: filepath.Join(dir, "nowhere")}, Link: "eth0", Prefix: netip.MustParsePrefix("10.1.0.2/24")}
		if err := h.Apply(ctx, []netmodel.Object{gone}, nil); !errors.Is(err, ErrNamespaceGone) {
			t.Errorf("an address in a namespace that is gone: %v", err)
		}
		if err := h.Apply(ctx, nil, []netmodel.Object{gone}); err != nil {
			t.Errorf("removing an address in a namespace that is gone: %v", err)
		}
	}
	t.Run("fake", func(t *testing.T) {
		f := NewFake(HostConfig{LinkPrefixes: []string{"hn"}})
		f.AddNamespace(epPath, netmodel.NSID{})
		check(t, f, epPath)
	})
	t.Run("kernel", func(t *testing.T) {
		hostPath, _ := testutil.NewNS(t, "host")
		epPath, _ := testutil.NewNS(t, "ep")
		h, err := OpenLinux(hostPath, HostConfig{LinkPrefixes: []string{"hn"}})
		if err != nil {
			t.Fatal(err)
		}
		defer h.Close()
		check(t, h, epPath)
	})
}

// A namespace named with its identity is refused once another namespace
// sits at its path.
func TestNamespaceIdentity(t *testing.T) {
	hostPath, _ := testutil.NewNS(t, "host")
	epPath, _ := testutil.NewNS(t, "ep")
	h, err := OpenLinux(hostPath, HostConfig{})
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close()
	dev, ino, err := netns.IdentityOf(epPath)
	if err != nil {
		t.Fatal(err)
	}
	ep := netmodel.NS{Path: epPath, ID: netmodel.NSID{Dev: dev, Ino: ino}}
	lo := netmodel.Link{NS: ep, Name: "lo", Kind: netmodel.LinkLoopback, Up: true}
	if err := h.Apply(context.Background(), []netmodel.Object{lo}, nil); err != nil {
		t.Fatal(err)
	}
	// Another namespace at the same path.
	if err := netns.Delete(epPath); err != nil {
		t.Fatal(err)
	}
	if err := netns.Create(epPath); err != nil {
		t.Fatal(err)
	}
	if err := h.Apply(context.Background(), []netmodel.Object{lo}, nil); !errors.Is(err, ErrNamespaceGone) {
		t.Errorf("acting in another namespace at the same path: %v", err)
	}
	if _, err := os.Stat(epPath); err != nil {
		t.Fatal(err)
	}
}

// The link kinds the drivers to come need, made, adopted and removed: a
// macvlan in an endpoint's namespace on a parent of the host, a vxlan with
// an FDB entry, a tap, an ifb, and a permanent neighbour entry.
func TestOtherLinkKinds(t *testing.T) {
	h, nh, _ := kernelHost(t)
	epPath, _ := testutil.NewNS(t, "ep")
	// The uplink the macvlan and the vxlan sit on: a veth of the test's.
	if err := nh.LinkAdd(&netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: "uplink0"}, PeerName: "uplink0p"}); err != nil {
		t.Fatal(err)
	}
	up, _ := nh.LinkByName("uplink0")
	if err := nh.LinkSetUp(up); err != nil {
		t.Fatal(err)
	}
	if err := nh.AddrAdd(up, &netlink.Addr{IPNet: &net.IPNet{IP: net.ParseIP("192.0.2.10"), Mask: net.CIDRMask(24, 32)}}); err != nil {
		t.Fatal(err)
	}
	ep := netmodel.NS{Path: epPath}
	mac := net.HardwareAddr{2, 0, 0, 0, 0, 0x33}
	objs := []netmodel.Object{
		netmodel.Link{NS: ep, Name: "eth0", Kind: netmodel.LinkMacvlan, MAC: mac, Up: true, MacvlanMode: "bridge",
			Parent: &netmodel.LinkRef{Name: "uplink0"}},
		netmodel.Addr{NS: ep, Link: "eth0", Prefix: netip.MustParsePrefix("192.0.2.20/24")},
		netmodel.Link{Name: "hnvx1", Kind: netmodel.LinkVXLAN, Up: true, Parent: &netmodel.LinkRef{Name: "uplink0"},
			VXLAN: &netmodel.VXLAN{VNI: 4096, Local: netip.MustParseAddr("192.0.2.10"), Port: 4789}},
		netmodel.FDB{Link: "hnvx1", MAC: net.HardwareAddr{2, 0, 0, 0, 0, 0x44}, Dst: netip.MustParseAddr("192.0.2.11")},
		netmodel.Neigh{Link: "uplink0", IP: netip.MustParseAddr("192.0.2.99"), MAC: net.HardwareAddr{2, 0, 0, 0, 0, 0x99}},
		netmodel.Link{Name: "hntap1", Kind: netmodel.LinkTap, Up: true},
		netmodel.Link{Name: "hnifb1", Kind: netmodel.LinkIFB, Up: true},
	}
	ctx := context.Background()
	for i := 0; i < 2; i++ { // made, then adopted as they are
		if err := h.Apply(ctx, objs, nil); err != nil {
			t.Fatalf("apply %d: %v", i, err)
		}
	}
	o, err := h.Observe(ctx, netmodel.Query{Namespaces: []netmodel.NS{ep}, LookInto: []netmodel.NS{ep}})
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []netmodel.Link{objs[0].(netmodel.Link), objs[2].(netmodel.Link), objs[5].(netmodel.Link), objs[6].(netmodel.Link)} {
		got, ok := o.Links[want.Key()]
		if !ok || got.Kind != want.Kind || !got.Up {
			t.Errorf("%s: observed %+v (present %v)", want.Key(), got.Link, ok)
		}
	}
	if got := o.Links[objs[0].Key()]; got.MAC.String() != mac.String() {
		t.Errorf("macvlan MAC %s, want %s", got.MAC, mac)
	}
	if _, ok := o.Addrs[objs[1].Key()]; !ok {
		t.Error("the macvlan's address is missing")
	}
	vx, _ := nh.LinkByName("hnvx1")
	fdb, _ := nh.NeighList(vx.Attrs().Index, unix.AF_BRIDGE)
	found := false
	for _, n := range fdb {
		found = found || (n.HardwareAddr.String() == "02:00:00:00:00:44" && n.IP.String() == "192.0.2.11")
	}
	if !found {
		t.Errorf("no FDB entry to 192.0.2.11: %v", fdb)
	}
	neighs, _ := nh.NeighList(up.Attrs().Index, unix.AF_INET)
	found = false
	for _, n := range neighs {
		found = found || (n.IP.String() == "192.0.2.99" && n.State == netlink.NUD_PERMANENT)
	}
	if !found {
		t.Errorf("no permanent neighbour 192.0.2.99: %v", neighs)
	}
	if err := h.Apply(ctx, nil, objs); err != nil {
		t.Fatal(err)
	}
	o, err = h.Observe(ctx, netmodel.Query{LookInto: []netmodel.NS{ep}})
	if err != nil {
		t.Fatal(err)
	}
	for _, k := range []netmodel.Key{objs[0].Key(), objs[2].Key(), objs[5].Key(), objs[6].Key()} {
		if _, ok := o.Links[k]; ok {
			t.Errorf("%s is still there", k)
		}
	}
}
