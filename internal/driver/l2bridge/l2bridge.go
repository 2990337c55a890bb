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
package l2bridge

import (
	"net/netip"

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

// Validate implements driver.Driver: static IPv4 subnets (as on Windows,
// an L2Bridge network takes no DHCP; IPv6 needs proxy NDP for every
// neighbour of the segment, which this build does not do).
func (Driver) Validate(spec *api.NetworkSpec) error {
	if spec.DHCP {
		return api.Invalid(api.CodeInvalidNetwork, "invalid network: field Ipams: Type DHCP: an L2Bridge network's addresses are static (its endpoints share the host's MAC, so a DHCP server could not tell them apart); give its subnets")
	}
	if len(spec.Subnets) == 0 {
		return api.Invalid(api.CodeInvalidNetwork, "invalid network: field Ipams: an L2Bridge network needs a subnet: one of its uplink's (with an IpRange the segment leaves free)")
	}
	for i, s := range spec.Subnets {
		if s.Prefix.Addr().Is6() {
			return api.Unsupported("invalid network: subnet %d (%s): IPv6 subnets on L2Bridge networks are not supported by this build", i, s.Prefix)
		}
	}
	return nil
}

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
	u.Objects = append(u.Objects, hostfw.Tables()...)
	u.Objects = append(u.Objects, hostfw.Bridge(br)...)
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
	u := &netmodel.Unit{Owner: netmodel.EndpointOwner(ep.ID)}
	u.Objects = append(u.Objects, driver.VethNIC(n, ep, port, br, DefaultMTU, len(ep.Mappings) > 0)...)
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
