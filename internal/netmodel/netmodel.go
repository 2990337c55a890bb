// Package netmodel describes, as plain values, the kernel objects hostnet
// wants on a host: network namespaces, links of every kind, addresses,
// routes, neighbour and FDB entries, sysctls, files, reserved host ports,
// tc attachments and the pieces of its nftables tables. Every object is
// tagged with its owner (the network, endpoint or namespace that wants
// it).
//
// Drivers plan objects (driver.Plan* return Units), the reconciler diffs
// the units against the last applied ones and against what the host
// reports, and the dataplane realises them. This package is pure: it
// never touches the kernel, so plans can be compared with golden files and
// the reconciler tested against a fake host.
package netmodel

import (
	"fmt"
	"net"
	"net/netip"
	"reflect"
	"slices"
	"strings"
)

// Owner names what wants an object: "network/<ID>", "endpoint/<ID>",
// "namespace/<ID>". Objects several owners want alike (a sysctl, a shared
// firewall chain) are kept while any of them wants them.
type Owner string

// Owners of each kind of API object.
func NetworkOwner(id string) Owner   { return Owner("network/" + id) }
func EndpointOwner(id string) Owner  { return Owner("endpoint/" + id) }
func NamespaceOwner(id string) Owner { return Owner("namespace/" + id) }

// Split returns the kind ("network", "endpoint", "namespace") and ID of an
// owner.
func (o Owner) Split() (kind, id string) {
	kind, id, _ = strings.Cut(string(o), "/")
	return kind, id
}

// NS is a network namespace: the zero NS is the host (the namespace the
// daemon programs as the host); any other is the file a namespace is
// bound to (a bind mount under hostnet's run directory, or a path a
// runtime handed over such as /proc/PID/ns/net).
type NS struct {
	Path string
	// ID, when set, is the identity the namespace at Path must have:
	// the dataplane refuses to act in another one found there (a reused
	// /proc/PID). Zero for namespaces hostnet makes itself.
	ID NSID
}

// NSID identifies a namespace file: device and inode of its nsfs entry.
type NSID struct{ Dev, Ino uint64 }

// Host is the host namespace.
var Host = NS{}

// IsHost reports whether ns is the host namespace.
func (ns NS) IsHost() bool { return ns.Path == "" }

func (ns NS) String() string {
	if ns.IsHost() {
		return "host"
	}
	return ns.Path
}

// Kind is the kind of an object.
type Kind uint8

// Kinds of objects.
const (
	KindNamespace Kind = iota + 1
	KindLink
	KindAddr
	KindRoute
	KindNeigh
	KindFDB
	KindSysctl
	KindFile
	KindSymlink
	KindPort
	KindTC
	KindHandover
	KindNftSet
	KindNftChain
	KindNftElement
)

var kindNames = map[Kind]string{
	KindNamespace: "namespace", KindLink: "link", KindAddr: "address", KindRoute: "route",
	KindNeigh: "neighbour", KindFDB: "fdb", KindSysctl: "sysctl", KindFile: "file", KindSymlink: "symlink",
	KindPort: "port", KindTC: "tc", KindHandover: "uplink handover", KindNftSet: "nft set", KindNftChain: "nft chain", KindNftElement: "nft element",
}

func (k Kind) String() string {
	if s, ok := kindNames[k]; ok {
		return s
	}
	return fmt.Sprintf("kind(%d)", k)
}

// Key identifies an object: two objects with the same key are the same
// kernel object, wanted alike or differently.
type Key struct {
	Kind Kind
	NS   NS
	ID   string
}

func (k Key) String() string {
	if k.NS.IsHost() {
		return k.Kind.String() + " " + k.ID
	}
	return k.Kind.String() + " " + k.ID + " in " + k.NS.Path
}

// Object is a kernel object hostnet wants. Implementations are the types
// of this package; they are values (copy them freely, never mutate one
// handed over).
type Object interface {
	Key() Key
	// String renders the object as one line in the manner of the `ip`
	// command, for golden files, logs and drift reports.
	String() string
}

// Shared reports whether several owners may want the object alike: it
// is made with the first and removed with the last (the sets, maps and
// chains of the firewall). Other objects have one owner, but for the
// lasting ones.
func Shared(o Object) bool {
	switch o.(type) {
	case NftSet, NftChain:
		return true
	}
	return false
}

// Lasting reports whether the object stays when no owner wants it any
// more, and may be wanted alike by several: a sysctl (hostnet does not
// know what it was before) and a loopback brought up.
func Lasting(o Object) bool {
	switch o := o.(type) {
	case Sysctl:
		return true
	case Link:
		return o.Kind == LinkLoopback
	}
	return false
}

// Unit is everything one owner wants: what a driver plans for a network
// or an endpoint, or what a namespace needs.
type Unit struct {
	Owner   Owner
	Objects []Object
	// Flows, when set, says which connections of the owner's addresses the
	// connection tracker may keep: after a change, the others are ended.
	Flows *FlowGuard
}

// Keys returns the keys of the unit's objects.
func (u *Unit) Keys() []Key {
	if u == nil {
		return nil
	}
	out := make([]Key, len(u.Objects))
	for i, o := range u.Objects {
		out[i] = o.Key()
	}
	return out
}

// String renders the unit, one object a line, sorted: a golden form.
func (u *Unit) String() string {
	if u == nil {
		return ""
	}
	lines := make([]string, 0, len(u.Objects)+1)
	for _, o := range u.Objects {
		lines = append(lines, o.String())
	}
	slices.Sort(lines)
	if u.Flows != nil {
		lines = append(lines, u.Flows.String())
	}
	return strings.Join(lines, "\n") + "\n"
}

// SameUnit reports whether two units (either may be nil) want the same
// objects, in the same order, and keep the same flows.
func SameUnit(a, b *Unit) bool {
	if a == nil || b == nil {
		return a == b
	}
	return a.Owner == b.Owner && reflect.DeepEqual(a.Objects, b.Objects) && a.Flows.Equal(b.Flows)
}

// Namespace is a network namespace hostnet creates and keeps (`ip netns
// add`), with its loopback up. Namespaces hostnet wraps (a runtime's) are
// not objects: they are the NS of the objects inside them.
type Namespace struct {
	NS NS
}

func (n Namespace) Key() Key       { return Key{Kind: KindNamespace, ID: n.NS.Path} }
func (n Namespace) String() string { return "netns add " + n.NS.Path }

// LinkKind is the kind of a link.
type LinkKind string

// Link kinds.
const (
	LinkBridge   LinkKind = "bridge"
	LinkVeth     LinkKind = "veth"
	LinkMacvlan  LinkKind = "macvlan"
	LinkVXLAN    LinkKind = "vxlan"
	LinkTap      LinkKind = "tap"
	LinkIFB      LinkKind = "ifb"
	LinkLoopback LinkKind = "loopback" // lo, which every namespace has: only brought up
)

// IPv6Mode is how a link takes part in IPv6.
type IPv6Mode uint8

// IPv6 modes.
const (
	// IPv6Auto leaves the kernel's defaults (an automatic link-local
	// address, duplicate address detection).
	IPv6Auto IPv6Mode = iota
	// IPv6NoLinkLocal gives the link no automatic link-local address
	// (`ip link set addrgenmode none`): it sends no DAD, router or MLD
	// messages, which a bridge would flood to every port. A veth side
	// with IPv6 addresses gets its EUI-64 link-local address all the same,
	// without DAD (link-local addresses are not objects of their own).
	IPv6NoLinkLocal
	// IPv6Off turns IPv6 off on the link (disable_ipv6): a bridge port
	// needs no address of its own.
	IPv6Off
)

// LinkRef names a link in a namespace.
type LinkRef struct {
	NS   NS
	Name string
}

// Link is a network device (`ip link add NAME type KIND ...`).
type Link struct {
	NS   NS
	Name string
	Kind LinkKind
	MAC  net.HardwareAddr // nil: the kernel's choice
	MTU  int              // 0: the kernel's default (for a veth with a Master, the bridge's MTU, on both sides)
	// Master is the bridge (in the same namespace) the link is a port of.
	Master string
	Up     bool
	IPv6   IPv6Mode
	// Hairpin lets the bridge send a frame back out of the port it came
	// in by (the link as a bridge port).
	Hairpin bool
	// Seal says the link comes up last, once every other object of its
	// owner is in place: a sealed link found up, with its peer and master
	// as wanted, stands for the whole owner (a restart adopts it from one
	// dump of the host without looking into namespaces).
	Seal bool
	// Peer is a veth's other side, itself a Link of the same owner: the
	// pair is made in one step from both.
	Peer *LinkRef
	// Parent is the lower device of a macvlan or vxlan link.
	Parent *LinkRef
	// MacvlanMode is a macvlan's mode: "bridge" (the default), "private",
	// "vepa", "passthru".
	MacvlanMode string
	// VXLAN holds a vxlan link's settings.
	VXLAN *VXLAN
}

// VXLAN is what a vxlan link carries.
type VXLAN struct {
	VNI      uint32
	Local    netip.Addr // the underlay source address
	Port     uint16     // UDP destination port (4789 when zero)
	Learning bool
}

func (l Link) Key() Key { return Key{Kind: KindLink, NS: l.NS, ID: l.Name} }

func (l Link) String() string {
	var b strings.Builder
	fmt.Fprintf(&b, "link %s", l.Name)
	if !l.NS.IsHost() {
		fmt.Fprintf(&b, " netns %s", l.NS.Path)
	}
	fmt.Fprintf(&b, " type %s", l.Kind)
	if l.Peer != nil {
		fmt.Fprintf(&b, " peer %s", l.Peer.Name)
		if !l.Peer.NS.IsHost() {
			fmt.Fprintf(&b, " netns %s", l.Peer.NS.Path)
		}
	}
	if l.Parent != nil {
		fmt.Fprintf(&b, " link %s", l.Parent.Name)
	}
	if l.MacvlanMode != "" {
		fmt.Fprintf(&b, " mode %s", l.MacvlanMode)
	}
	if x := l.VXLAN; x != nil {
		fmt.Fprintf(&b, " id %d local %s dstport %d learning %t", x.VNI, x.Local, x.Port, x.Learning)
	}
	if l.MAC != nil {
		fmt.Fprintf(&b, " address %s", l.MAC)
	}
	if l.MTU != 0 {
		fmt.Fprintf(&b, " mtu %d", l.MTU)
	}
	if l.Master != "" {
		fmt.Fprintf(&b, " master %s", l.Master)
	}
	switch l.IPv6 {
	case IPv6NoLinkLocal:
		b.WriteString(" addrgenmode none")
	case IPv6Off:
		b.WriteString(" ipv6 off")
	}
	if l.Hairpin {
		b.WriteString(" hairpin on")
	}
	if l.Up {
		b.WriteString(" up")
	}
	if l.Seal {
		b.WriteString(" (sealed)")
	}
	return b.String()
}

// Addr is an address of a link (`ip addr add PREFIX dev LINK`). IPv6
// addresses skip duplicate address detection: the IPAM already makes
// them unique.
type Addr struct {
	NS     NS
	Link   string
	Prefix netip.Prefix
}

func (a Addr) Key() Key { return Key{Kind: KindAddr, NS: a.NS, ID: a.Link + " " + a.Prefix.String()} }
func (a Addr) String() string {
	return "addr " + a.Prefix.String() + " dev " + a.Link + inNS(a.NS)
}

// RouterLinkLocal is the one link-local address hostnet plans: that of a
// bridge its endpoints route IPv6 through (L2Bridge). It is observed like
// any address; the kernel's own link-local addresses are not objects.
var RouterLinkLocal = netip.MustParseAddr("fe80::1")

// RouteProtocol tags the routes hostnet installs (`ip route ... proto
// 104`): only routes with the tag are ever removed.
const RouteProtocol = 104

// Route is a route through a link (`ip route replace DST [via GW] dev LINK
// metric M proto 104`).
type Route struct {
	NS      NS
	Link    string
	Dst     netip.Prefix
	Gateway netip.Addr // zero: on-link
	// Metric 0 is the kernel's default: 0 for IPv4, IPv6DefaultMetric for
	// IPv6 (observed IPv6 routes of that metric read as 0).
	Metric int
	// SrcFrom, when set, names a link of the same namespace whose address
	// is the route's preferred source (`src`): its address in a subnet
	// that holds Dst, else its first of Dst's family. It is found when
	// the route is applied, so that a route through a device without
	// addresses of its own (a host shim) leaves from the host's address
	// on the segment, whatever it is then.
	SrcFrom string
}

// IPv6DefaultMetric is the metric the kernel gives an IPv6 route added
// without one.
const IPv6DefaultMetric = 1024

func (r Route) Key() Key {
	return Key{Kind: KindRoute, NS: r.NS, ID: fmt.Sprintf("%s metric %d", r.Dst, r.Metric)}
}

func (r Route) String() string {
	s := "route " + r.Dst.String()
	if r.Gateway.IsValid() {
		s += " via " + r.Gateway.String()
	}
	s += fmt.Sprintf(" dev %s metric %d", r.Link, r.Metric)
	if r.SrcFrom != "" {
		s += " src (address of " + r.SrcFrom + ")"
	}
	return s + inNS(r.NS)
}

// Neigh is a permanent neighbour entry (`ip neigh replace IP lladdr MAC dev
// LINK nud permanent`), or with Proxy a proxy entry (`ip neigh add proxy
// IP dev LINK`): the host answers ARP (and, with proxy_ndp, neighbour
// solicitations) for IP on LINK with LINK's own MAC, and routes what it
// then receives for IP. A proxy entry has no MAC.
type Neigh struct {
	NS    NS
	Link  string
	IP    netip.Addr
	MAC   net.HardwareAddr
	Proxy bool
}

func (n Neigh) Key() Key {
	if n.Proxy {
		return Key{Kind: KindNeigh, NS: n.NS, ID: "proxy " + n.Link + " " + n.IP.String()}
	}
	return Key{Kind: KindNeigh, NS: n.NS, ID: n.Link + " " + n.IP.String()}
}

func (n Neigh) String() string {
	if n.Proxy {
		return fmt.Sprintf("neigh proxy %s dev %s", n.IP, n.Link) + inNS(n.NS)
	}
	return fmt.Sprintf("neigh %s lladdr %s dev %s", n.IP, n.MAC, n.Link) + inNS(n.NS)
}

// FDB is a forwarding database entry (`bridge fdb append MAC dev LINK dst
// DST`): for a vxlan link, where frames to MAC are sent.
type FDB struct {
	NS   NS
	Link string
	MAC  net.HardwareAddr
	Dst  netip.Addr
}

func (f FDB) Key() Key {
	return Key{Kind: KindFDB, NS: f.NS, ID: f.Link + " " + f.MAC.String() + " " + f.Dst.String()}
}
func (f FDB) String() string {
	return fmt.Sprintf("fdb %s dev %s dst %s", f.MAC, f.Link, f.Dst) + inNS(f.NS)
}

// Sysctl is a kernel setting of a namespace, named by its path under
// /proc/sys (`sysctl -w net.ipv4.ip_forward=1` is "net/ipv4/ip_forward"). When
// no owner wants it any more it is left as it is: hostnet does not know
// what it was before.
type Sysctl struct {
	NS    NS
	Name  string
	Value string
}

func (s Sysctl) Key() Key       { return Key{Kind: KindSysctl, NS: s.NS, ID: s.Name} }
func (s Sysctl) String() string { return "sysctl " + s.Name + "=" + s.Value + inNS(s.NS) }

// File is a file hostnet writes on the host (a namespace's resolv.conf).
// It is written in place, so that processes that bind-mounted it see
// changes. Dir, when set, is a directory made for the file and removed
// with it.
type File struct {
	Path    string
	Content []byte
	Dir     string
}

func (f File) Key() Key { return Key{Kind: KindFile, ID: f.Path} }
func (f File) String() string {
	return fmt.Sprintf("file %s (%d bytes)", f.Path, len(f.Content))
}

// Symlink is a symbolic link hostnet makes (`ip netns` sees a namespace
// through one in /run/netns).
type Symlink struct {
	Path, Target string
}

func (s Symlink) Key() Key       { return Key{Kind: KindSymlink, ID: s.Path} }
func (s Symlink) String() string { return "symlink " + s.Path + " -> " + s.Target }

// Port is a host port hostnet holds bound while a mapping publishes it,
// so that no process of the host can take it.
type Port struct {
	Proto string // "tcp" or "udp"
	IPv6  bool
	Addr  netip.Addr // zero: every address of the family
	Port  uint16
}

// ID is the port's identity: "tcp4/8080/*", "udp6/53/fd00::1".
func (p Port) ID() string {
	fam := "4"
	if p.IPv6 {
		fam = "6"
	}
	addr := "*"
	if p.Addr.IsValid() {
		addr = p.Addr.String()
	}
	return fmt.Sprintf("%s%s/%d/%s", p.Proto, fam, p.Port, addr)
}

func (p Port) Key() Key       { return Key{Kind: KindPort, ID: p.ID()} }
func (p Port) String() string { return "port " + p.ID() }

// TCDirection is where on a link a tc program runs.
type TCDirection string

// Directions.
const (
	TCIngress TCDirection = "ingress"
	TCEgress  TCDirection = "egress"
)

// TC is a tc attachment: one of hostnet's built-in eBPF programs, by name,
// attached to a link (`tc filter add dev LINK DIR bpf ...`).
type TC struct {
	NS        NS
	Link      string
	Direction TCDirection
	Program   string
	// Args configure the program (its map contents), as text.
	Args string
}

func (t TC) Key() Key {
	return Key{Kind: KindTC, NS: t.NS, ID: t.Link + " " + string(t.Direction) + " " + t.Program}
}
func (t TC) String() string {
	return fmt.Sprintf("tc %s %s prog %s %s", t.Link, t.Direction, t.Program, t.Args) + inNS(t.NS)
}

func inNS(ns NS) string {
	if ns.IsHost() {
		return ""
	}
	return " netns " + ns.Path
}
