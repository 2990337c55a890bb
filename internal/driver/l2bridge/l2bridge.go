// Package l2bridge plans L2Bridge networks: endpoints in the subnet of a
// host adapter (the uplink), reached from the segment at the host's MAC
// only. Endpoints are veth ports of a bridge of the network's own, which
// carries no address: traffic between two endpoints of one host is
// bridged; everything else is routed by the host. The bridge answers the
// endpoints' ARP for any address the host routes elsewhere (proxy_arp),
// and the uplink answers the segment's ARP for each endpoint address
// (a proxy neighbour entry); so every frame an endpoint's traffic puts on
// the wire carries the host's MAC, as Windows' MAC rewrite does, and the
// endpoints' traffic passes the host's inet hooks, where the firewall
// (ACLs, published ports, OutBoundNAT) is the NAT driver's.
//
// IPv6 has no proxy_arp: the kernel answers neighbour solicitations only
// for addresses it is told of one by one (proxy NDP). The uplink gets such
// an entry for each endpoint address, as for IPv4. Towards the endpoints
// the bridge cannot stand in for every neighbour of the segment, so an
// endpoint's IPv6 address is a /128 and everything it sends over IPv6,
// its subnet included, is routed through the bridge's link-local address
// (netmodel.RouterLinkLocal), the way routed container networks (Calico) do it.
package l2bridge

import (
	"net/netip"
	"slices"

	"github.com/hostnet/hostnet/api"
	"github.com/hostnet/hostnet/internal/driver"
	"github.com/hostnet/hostnet/internal/driver/hostfw"
	"github.com/hostnet/hostnet/internal/netmodel"
)

// DefaultMTU is the MTU of L2Bridge bridges and ports.
const DefaultMTU = 1500

// Driver is the L2Bridge driver. It holds nothing: it plans.
type Driver struct{}

var _ driver.Driver = Driver{}

// New returns the L2Bridge driver.
func New() Driver { return Driver{} }

// Type implements driver.Driver.
func (Driver) Type() api.NetworkType { return api.L2Bridge }

// RouterLinkLocal is the bridge's address, the next hop of its endpoints'
// IPv6 routes.
var RouterLinkLocal = netmodel.RouterLinkLocal

// Validate implements driver.Driver: static subnets (as on Windows, an
// L2Bridge network takes no DHCP).
func (Driver) Validate(spec *api.NetworkSpec) error {
	if spec.DHCP {
		return api.Invalid(api.CodeInvalidNetwork, "invalid network: field Ipams: Type DHCP: an L2Bridge network's addresses are static (its endpoints share the host's MAC, so a DHCP server could not tell them apart); give its subnets")
	}
	if len(spec.Subnets) == 0 {
		return api.Invalid(api.CodeInvalidNetwork, "invalid network: field Ipams: an L2Bridge network needs a subnet: one of its uplink's (with an IpRange the segment leaves free)")
	}
	return nil
}

// hasIPv6 reports whether a network has an IPv6 subnet.
func hasIPv6(n *driver.Network) bool {
	return slices.ContainsFunc(n.Spec.Subnets, func(s api.SubnetSpec) bool { return s.Prefix.Addr().Is6() })
}

// EncapRoutes implements driver.EncapRoutes: a NeedEncap route goes
// through the host, by its next hop or else its subnet's gateway (whose
// MAC, for the endpoint, is the host's).
func (Driver) EncapRoutes() {}

// NeedsUplink implements driver.OnUplink.
func (Driver) NeedsUplink() driver.UplinkUse {
	return driver.UplinkUse{SubnetOfUplink: true}
}

// NetworkDevice implements driver.Driver.
func (Driver) NetworkDevice(id string) string { return driver.BridgeName(id) }

// EndpointDevice implements driver.Driver.
func (Driver) EndpointDevice(id string) string { return driver.PortName(id) }

// PlanNetwork implements driver.Driver: the bridge, up, without address,
// answering ARP for what the host routes elsewhere at once (proxy_arp,
// proxy_delay 0); forwarding on, bridged traffic through the inet hooks;
// the uplink answering at once too; the shared firewall and the bridge's
// elements.
func (Driver) PlanNetwork(n *driver.Network, _ driver.HostFacts) *netmodel.Unit {
	br := driver.BridgeName(n.ID)
	u := &netmodel.Unit{Owner: netmodel.NetworkOwner(n.ID)}
	u.Objects = append(u.Objects,
		netmodel.Link{Name: br, Kind: netmodel.LinkBridge, MAC: driver.StableMAC("bridge/" + n.ID), MTU: DefaultMTU, Up: true, IPv6: netmodel.IPv6NoLinkLocal})
	sysctl := func(k, v string) netmodel.Object { return netmodel.Sysctl{Name: k, Value: v} }
	u.Objects = append(u.Objects,
		sysctl("net/ipv4/ip_forward", "1"),
		sysctl("net/ipv4/conf/"+br+"/proxy_arp", "1"),
		sysctl("net/ipv4/neigh/"+br+"/proxy_delay", "0"),
		sysctl("net/ipv4/neigh/"+n.Spec.Uplink+"/proxy_delay", "0"),
		sysctl("net/bridge/bridge-nf-call-iptables", "1"),
		sysctl("net/bridge/bridge-nf-call-ip6tables", "1"))
	if hasIPv6(n) {
		u.Objects = append(u.Objects,
			netmodel.Addr{Link: br, Prefix: netip.PrefixFrom(RouterLinkLocal, 64)},
			sysctl("net/ipv6/conf/all/forwarding", "1"),
			sysctl("net/ipv6/conf/"+n.Spec.Uplink+"/proxy_ndp", "1"),
			sysctl("net/ipv6/neigh/"+n.Spec.Uplink+"/proxy_delay", "0"))
	}
	u.Objects = append(u.Objects, hostfw.Tables()...)
	u.Objects = append(u.Objects, hostfw.Bridge(br)...)
	u.Objects = append(u.Objects, hostfw.Network(n)...)
	u.Objects = append(u.Objects, hostfw.El(hostfw.SetRouted, br))
	return u
}

// PlanEndpoint implements driver.Driver: a veth port of the network's
// bridge (its NIC as on a NAT network), a host route to each of its
// addresses through the bridge, a proxy entry for each on the uplink;
// its firewall as on a NAT network, its traffic masqueraded behind the
// host only when it has an OutBoundNAT policy (but for its exceptions).
func (Driver) PlanEndpoint(n *driver.Network, ep *driver.Endpoint, _ driver.HostFacts) *netmodel.Unit {
	port, br := driver.PortName(ep.ID), driver.BridgeName(n.ID)
	ep = throughHost(n, ep)
	u := &netmodel.Unit{Owner: netmodel.EndpointOwner(ep.ID)}
	for _, o := range driver.VethNIC(n, ep, port, br, DefaultMTU, len(ep.Mappings) > 0) {
		u.Objects = append(u.Objects, routedIPv6(ep.NS, o))
	}
	for _, s := range n.Spec.Subnets {
		if s.Prefix.Addr().Is6() && slices.ContainsFunc(ep.Addrs, func(a netip.Prefix) bool { return s.Prefix.Contains(a.Addr()) }) {
			u.Objects = append(u.Objects, netmodel.Route{NS: ep.NS, Link: ep.Interface, Dst: s.Prefix, Gateway: RouterLinkLocal})
		}
	}
	for _, a := range ep.Addrs {
		host := netip.PrefixFrom(a.Addr(), a.Addr().BitLen())
		u.Objects = append(u.Objects,
			netmodel.Route{Link: br, Dst: host},
			netmodel.Neigh{Link: n.Spec.Uplink, IP: a.Addr(), Proxy: true})
		if ep.OutboundNAT != nil {
			u.Objects = append(u.Objects, hostfw.Masquerade(host))
		}
	}
	u.Objects = append(u.Objects, driver.Shaping(ep, port, DefaultMTU)...)
	fw, guard := hostfw.Endpoint(n, ep, port)
	u.Objects = append(u.Objects, fw...)
	u.Flows = guard
	return u
}

// throughHost returns ep with a next hop for each of its NeedEncap routes
// that names none: the gateway of its subnet of the route's family.
func throughHost(n *driver.Network, ep *driver.Endpoint) *driver.Endpoint {
	if !slices.ContainsFunc(ep.Routes, func(r api.RouteSpec) bool { return r.NeedEncap && !r.NextHop.IsValid() }) {
		return ep
	}
	c := *ep
	c.Routes = slices.Clone(ep.Routes)
	for i, r := range c.Routes {
		if !r.NeedEncap || r.NextHop.IsValid() {
			continue
		}
		for _, s := range n.Spec.Subnets {
			if s.Prefix.Addr().Is4() == r.Dst.Addr().Is4() && slices.ContainsFunc(ep.Addrs, func(a netip.Prefix) bool { return s.Prefix.Contains(a.Addr()) }) {
				c.Routes[i].NextHop = s.Gateway
				break
			}
		}
	}
	return &c
}

// routedIPv6 turns what an endpoint's NIC has in its namespace over IPv6
// into what an L2Bridge endpoint gets: its addresses as /128, and its
// routes through the bridge (RouterLinkLocal), whatever next hop its
// subnet names: a next hop on the segment is the host's to reach.
func routedIPv6(ns netmodel.NS, o netmodel.Object) netmodel.Object {
	switch v := o.(type) {
	case netmodel.Addr:
		if v.NS == ns && v.Prefix.Addr().Is6() {
			v.Prefix = netip.PrefixFrom(v.Prefix.Addr(), 128)
			return v
		}
	case netmodel.Route:
		if v.NS == ns && v.Dst.Addr().Is6() {
			v.Gateway = RouterLinkLocal
			return v
		}
	}
	return o
}
