// Package driver turns hostnet's objects into the kernel state they need.
// Each network type is a Driver in a subpackage of its own. A driver only
// plans: given a network (and an attached endpoint of it, and facts about
// the host), it returns the desired objects (netmodel.Unit), which the
// reconciler applies. Planning is pure and deterministic: the same input
// gives the same unit, so plans are pinned by golden files, and a
// restart, a repair and a request all go the same way.
package driver

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"net"
	"net/netip"

	"github.com/hostnet/hostnet/api"
	"github.com/hostnet/hostnet/internal/netmodel"
)

// Network is a stored network as drivers see it.
type Network struct {
	ID   string
	Name string
	Spec *api.NetworkSpec
	// ACLs are the network's NetworkACL rules: every endpoint's profile
	// includes them.
	ACLs []api.ACLSpec
	// Sets are the network's IP sets (SetPolicy), nested ones flattened:
	// the ACL and TierAcl rules of its endpoints may name them.
	Sets *api.IPSets
}

// Endpoint is an attached endpoint as drivers see it.
type Endpoint struct {
	ID   string
	Name string
	// NS is the namespace it is attached to, Interface its device there.
	NS        netmodel.NS
	Interface string
	MAC       net.HardwareAddr
	Addrs     []netip.Prefix
	// Routes are its own routes: its Routes field, then its SDNRoute
	// policies. The routes of its network's subnets come on top.
	Routes []api.RouteSpec
	// LowMetric (EnableLowInterfaceMetric) gives its default routes
	// metric N for ethN instead of 100+N.
	LowMetric  bool
	DisableICC bool
	Mappings   []api.PortMappingSpec
	ACLs       []api.ACLSpec
	// Tiers are its TierAcl policies, judged before ACLs.
	Tiers       []api.TierSpec
	OutboundNAT *api.OutboundNATSpec
	// QoS caps its bandwidth (nil: no cap); see Shaping.
	QoS *api.QoSSpec
	// Quarantine says its stored policies could not be read: it is cut
	// off (its firewall admits nothing) rather than let through.
	Quarantine bool
	// DHCP says the daemon's DHCP client keeps its address: Addrs are the
	// lease's (none before the first), and the interface must take the
	// server's answers before it has an address (see DHCPEndpoints).
	DHCP bool
}

// HostFacts are what drivers may need to know of the host.
type HostFacts struct {
	// Prefixes are the host's addresses and route destinations.
	Prefixes []netip.Prefix
}

// Driver realises one network type by planning it.
type Driver interface {
	// Type is the network type the driver realises.
	Type() api.NetworkType
	// Validate checks the type's own rules for a network document that
	// parsed. It is pure: nothing is stored or made yet.
	Validate(spec *api.NetworkSpec) error
	// NetworkDevice is the name of a network's switch device on the
	// host, shown to clients ("" when the type has none).
	NetworkDevice(networkID string) string
	// EndpointDevice is the name of an endpoint's host-side device.
	EndpointDevice(endpointID string) string
	// PlanNetwork returns what a network needs in the kernel: its switch,
	// the settings and firewall it relies on.
	PlanNetwork(n *Network, facts HostFacts) *netmodel.Unit
	// PlanEndpoint returns what an endpoint attached to a namespace needs:
	// its NIC (both sides), addresses, routes, firewall, held host ports,
	// and which of its flows may live on after a change.
	PlanEndpoint(n *Network, ep *Endpoint, facts HostFacts) *netmodel.Unit
}

// OnUplink is a Driver whose networks sit on a host adapter, the uplink
// their NetAdapterName policy names.
type OnUplink interface {
	NeedsUplink() UplinkUse
}

// UplinkUse says how a driver's networks use their uplink, for the checks
// made against the host when a network is created.
type UplinkUse struct {
	// SubnetOfUplink: each subnet of the network must be the subnet of
	// an address of the uplink (its endpoints share the host's segment).
	SubnetOfUplink bool
	// Whole: the network takes the uplink whole (a bridge enslaves it),
	// so no other network may use it, nor it an uplink another uses.
	Whole bool
}

// Variants is a Driver whose networks are realised in more than one way,
// as their documents choose (a Transparent network's UplinkMode): Variant
// returns the driver of the way spec chooses.
type Variants interface {
	Variant(spec *api.NetworkSpec) Driver
}

// For returns the driver that realises a network of spec: d, or the
// variant of d that spec chooses.
func For(d Driver, spec *api.NetworkSpec) Driver {
	if v, ok := d.(Variants); ok {
		return v.Variant(spec)
	}
	return d
}

// DHCPEndpoints is a Driver whose endpoints may take their address from
// the segment's DHCP server (a network of Ipams Type DHCP, or an endpoint
// with the EnableDhcp flag). Its plan of such an endpoint (Endpoint.DHCP)
// lets the client's broadcast exchange through before the interface has
// an address.
type DHCPEndpoints interface {
	DHCPEndpoints() bool
}

// EndpointPolicies is a Driver whose endpoints take only some of the
// endpoint policy types the build supports.
type EndpointPolicies interface {
	EndpointPolicies() []api.PolicyType
}

// EncapRoutes is a Driver whose endpoints take SDNRoute policies with
// NeedEncap. Kubernetes sends them for l2bridge endpoints (its service
// range and the host's address), asking that the traffic go through the
// host rather than straight to the segment; a driver of this kind plans
// such a route through the host.
type EncapRoutes interface {
	EncapRoutes()
}

// Plan is the whole desired state of one network: its own unit, then one
// per attached endpoint.
func Plan(d Driver, n *Network, eps []*Endpoint, facts HostFacts) []*netmodel.Unit {
	out := []*netmodel.Unit{d.PlanNetwork(n, facts)}
	for _, ep := range eps {
		out = append(out, d.PlanEndpoint(n, ep, facts))
	}
	return out
}

// Device name prefixes. Every device hostnet creates in the host namespace
// starts with LinkPrefix, so a reconciler can tell its own devices from
// everyone else's and remove only those no object claims.
const (
	LinkPrefix   = "hn"
	BridgePrefix = "hnbr"
	PortPrefix   = "hnv"
)

// BridgeName is the device name of a network's bridge.
func BridgeName(networkID string) string { return BridgePrefix + ShortHash(networkID, 10) }

// PortName is the device name of an endpoint's host-side device.
func PortName(endpointID string) string { return PortPrefix + ShortHash(endpointID, 12) }

// ShimPrefix starts the name of a network's host shim (the host's own
// macvlan beside its endpoints', through which it reaches them).
const ShimPrefix = "hnsh"

// ShimName is the device name of a network's host shim.
func ShimName(networkID string) string { return ShimPrefix + ShortHash(networkID, 10) }

// ShortHash returns n hex digits of a hash of s: device names derived from
// IDs (client-chosen IDs with a common prefix must not collide).
func ShortHash(s string, n int) string {
	h := sha256.Sum256([]byte(s))
	return hex.EncodeToString(h[:])[:n]
}

// StableMAC is a locally administered MAC derived from a seed.
func StableMAC(seed string) net.HardwareAddr {
	h := sha256.Sum256([]byte(seed))
	return net.HardwareAddr{0x02, h[0], h[1], h[2], h[3], h[4]}
}

// EndpointRoutes returns the routes an endpoint gets inside its namespace:
// its own routes first (ep.Routes: its Routes field, its SDNRoute
// policies, the route objects that list it), then, for every subnet of n
// it has an address in, the subnet's routes and a default route through
// the subnet's gateway. An endpoint has one default route per family: the
// first one of that list, so an explicit default route (the endpoint's
// own, else its subnet's) wins over the gateway's, and a later one of the
// same family is left out; likewise a later route to the same destination
// with the same metric. Default routes without a metric of their own get
// metric 100+N for device ethN (N with LowMetric), so that two endpoints
// can share a namespace.
func EndpointRoutes(n *Network, ep *Endpoint) []netmodel.Route {
	metric := DefaultRouteMetric(ep.Interface, ep.LowMetric)
	var out []netmodel.Route
	taken := map[netmodel.Key]bool{}
	hasDefault := map[bool]bool{} // by family: IPv4 true
	add := func(dst netip.Prefix, gw netip.Addr, m uint32) {
		if dst.Bits() == 0 {
			if hasDefault[dst.Addr().Is4()] {
				return
			}
			hasDefault[dst.Addr().Is4()] = true
			if m == 0 {
				m = uint32(metric)
			}
		}
		r := netmodel.Route{NS: ep.NS, Link: ep.Interface, Dst: dst, Gateway: gw, Metric: int(m)}
		if taken[r.Key()] {
			return
		}
		taken[r.Key()] = true
		out = append(out, r)
	}
	for _, r := range ep.Routes {
		add(r.Dst, r.NextHop, r.Metric)
	}
	for _, s := range n.Spec.Subnets {
		hasAddr := false
		for _, a := range ep.Addrs {
			hasAddr = hasAddr || s.Prefix.Contains(a.Addr())
		}
		if !hasAddr {
			continue
		}
		for _, r := range s.Routes {
			if r.Dst.Bits() == 0 {
				add(r.Dst, r.NextHop, 0) // a subnet's default route takes the device's metric
			} else {
				add(r.Dst, r.NextHop, r.Metric)
			}
		}
		add(netip.PrefixFrom(zeroAddr(s.Prefix.Addr()), 0), s.Gateway, 0)
	}
	return out
}

// VethNIC returns an endpoint's NIC as a veth pair: the host side, port,
// a port of bridge (hairpin lets the bridge send its frames back to it),
// brought up last (sealed); the other side the endpoint's interface in its
// namespace, with its MAC, addresses and routes (EndpointRoutes), and the
// namespace's loopback up.
func VethNIC(n *Network, ep *Endpoint, port, bridge string, mtu int, hairpin bool) []netmodel.Object {
	out := []netmodel.Object{
		netmodel.Link{Name: port, Kind: netmodel.LinkVeth, MTU: mtu, Master: bridge, Up: true,
			IPv6: netmodel.IPv6Off, Hairpin: hairpin, Seal: true, Peer: &netmodel.LinkRef{NS: ep.NS, Name: ep.Interface}},
		netmodel.Link{NS: ep.NS, Name: ep.Interface, Kind: netmodel.LinkVeth, MAC: ep.MAC, MTU: mtu, Up: true, IPv6: netmodel.IPv6NoLinkLocal,
			Peer: &netmodel.LinkRef{Name: port}},
	}
	return append(out, InNamespace(n, ep)...)
}

// InNamespace returns what an endpoint's interface has in its namespace,
// whatever its kind: its addresses, its routes (EndpointRoutes) and the
// namespace's loopback up.
func InNamespace(n *Network, ep *Endpoint) []netmodel.Object {
	out := []netmodel.Object{netmodel.Link{NS: ep.NS, Name: "lo", Kind: netmodel.LinkLoopback, Up: true}}
	for _, a := range ep.Addrs {
		out = append(out, netmodel.Addr{NS: ep.NS, Link: ep.Interface, Prefix: a})
	}
	for _, r := range EndpointRoutes(n, ep) {
		out = append(out, r)
	}
	return out
}

// DefaultRouteMetric gives each NIC of a namespace its own metric: ethN
// gets 100+N (N when low), other names 300 plus a hash of the name.
func DefaultRouteMetric(ifName string, low bool) int {
	base := 100
	if low {
		base = 0
	}
	var n int
	if _, err := fmt.Sscanf(ifName, "eth%d", &n); err == nil && fmt.Sprintf("eth%d", n) == ifName && n < 100 {
		return base + n
	}
	h := 0
	for _, c := range ifName {
		h = (h*31 + int(c)) % 9973
	}
	return base + 200 + h%700
}

func zeroAddr(a netip.Addr) netip.Addr {
	if a.Is4() {
		return netip.IPv4Unspecified()
	}
	return netip.IPv6Unspecified()
}

// Namespace is a namespace object as the planner sees it.
type Namespace struct {
	ID string
	NS netmodel.NS
	// Managed namespaces are made (and removed) by hostnet; others are a
	// runtime's, wrapped.
	Managed bool
	// IPNetnsLink, when set, is the `ip netns` link to make to it.
	IPNetnsLink string
	// ResolvConf, when set, is where its resolv.conf is written, with
	// Resolv as content.
	ResolvConf string
	Resolv     []byte
}

// PlanNamespace returns what a namespace needs, whatever its endpoints'
// networks: a managed one exists with its loopback up, is linked for `ip
// netns`, and has its resolv.conf (whose directory goes with it).
func PlanNamespace(n *Namespace) *netmodel.Unit {
	u := &netmodel.Unit{Owner: netmodel.NamespaceOwner(n.ID)}
	if !n.Managed {
		return u
	}
	u.Objects = append(u.Objects, netmodel.Namespace{NS: n.NS}, netmodel.Link{NS: n.NS, Name: "lo", Kind: netmodel.LinkLoopback, Up: true})
	if n.IPNetnsLink != "" {
		u.Objects = append(u.Objects, netmodel.Symlink{Path: n.IPNetnsLink, Target: n.NS.Path})
	}
	if n.ResolvConf != "" {
		u.Objects = append(u.Objects, netmodel.File{Path: n.ResolvConf, Content: n.Resolv, Dir: dirOf(n.ResolvConf)})
	}
	return u
}

func dirOf(path string) string {
	for i := len(path) - 1; i > 0; i-- {
		if path[i] == '/' {
			return path[:i]
		}
	}
	return ""
}
