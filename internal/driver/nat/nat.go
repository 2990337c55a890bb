// Package nat plans NAT networks: a private subnet on a Linux bridge whose
// gateway address is the host's, outbound traffic masqueraded behind the
// host, inbound traffic only through published ports (DNAT, no proxy),
// with hairpin for an endpoint that reaches its own published port.
package nat

import (
	"net/netip"

	"github.com/hostnet/hostnet/api"
	"github.com/hostnet/hostnet/internal/driver"
	"github.com/hostnet/hostnet/internal/driver/hostfw"
	"github.com/hostnet/hostnet/internal/netmodel"
)

// DefaultMTU is the MTU of NAT bridges and ports.
const DefaultMTU = 1500

// Driver is the NAT driver. It holds nothing: it plans.
type Driver struct{}

var _ driver.Driver = Driver{}

// New returns the NAT driver.
func New() Driver { return Driver{} }

// Type implements driver.Driver.
func (Driver) Type() api.NetworkType { return api.NAT }

// Validate implements driver.Driver: a NAT network has one internal prefix
// per address family (Windows allows one; hostnet adds an optional IPv6
// one for dual stack).
func (Driver) Validate(spec *api.NetworkSpec) error {
	var v4, v6 int
	for _, s := range spec.Subnets {
		if s.Prefix.Addr().Is4() {
			v4++
		} else {
			v6++
		}
	}
	if spec.Uplink != "" {
		return api.Invalid(api.CodeInvalidNetwork,
			"invalid network: field Policies (NetAdapterName): %q: a NAT network has no adapter of its own (its endpoints leave by the host's routes); Transparent, L2Bridge and L2Tunnel networks take one", spec.Uplink)
	}
	if v4 > 1 || v6 > 1 {
		return api.Invalid(api.CodeInvalidNetwork,
			"invalid network: field Ipams: a NAT network has one subnet per address family (one internal NAT prefix), got %d IPv4 and %d IPv6 subnets", v4, v6)
	}
	return nil
}

// BridgeName is the device name of a network's bridge.
func BridgeName(networkID string) string { return driver.BridgeName(networkID) }

// PortName is the device name of an endpoint's host-side port.
func PortName(endpointID string) string { return driver.PortName(endpointID) }

// NetworkDevice implements driver.Driver.
func (Driver) NetworkDevice(id string) string { return BridgeName(id) }

// EndpointDevice implements driver.Driver.
func (Driver) EndpointDevice(id string) string { return PortName(id) }

// PlanNetwork implements driver.Driver: the bridge, up, with the gateway
// addresses; forwarding on, bridged traffic through the inet hooks
// (isolation and ACLs rely on it), route_localnet on the bridge (published
// ports on 127.0.0.1 are redirected into it); the firewall's layout, and
// the network's elements: its bridge and its subnets to masquerade.
func (Driver) PlanNetwork(n *driver.Network, _ driver.HostFacts) *netmodel.Unit {
	br := BridgeName(n.ID)
	u := &netmodel.Unit{Owner: netmodel.NetworkOwner(n.ID)}
	v6 := false
	for _, s := range n.Spec.Subnets {
		v6 = v6 || s.Prefix.Addr().Is6()
	}
	bridge := netmodel.Link{Name: br, Kind: netmodel.LinkBridge, MAC: driver.StableMAC("bridge/" + n.ID), MTU: DefaultMTU, Up: true}
	if !v6 {
		// A bridge of an IPv4 network needs no IPv6 link-local address:
		// without one it sends no router solicitations or MLD reports to
		// every port when it comes up.
		bridge.IPv6 = netmodel.IPv6NoLinkLocal
	}
	u.Objects = append(u.Objects, bridge)
	for _, s := range n.Spec.Subnets {
		u.Objects = append(u.Objects, netmodel.Addr{Link: br, Prefix: netip.PrefixFrom(s.Gateway, s.Prefix.Bits())})
	}
	sysctl := func(k, v string) netmodel.Object { return netmodel.Sysctl{Name: k, Value: v} }
	u.Objects = append(u.Objects,
		sysctl("net/ipv4/ip_forward", "1"),
		sysctl("net/ipv4/conf/"+br+"/route_localnet", "1"),
		sysctl("net/bridge/bridge-nf-call-iptables", "1"),
		sysctl("net/bridge/bridge-nf-call-ip6tables", "1"))
	if v6 {
		u.Objects = append(u.Objects, sysctl("net/ipv6/conf/all/forwarding", "1"))
	}
	u.Objects = append(u.Objects, hostfw.Tables()...)
	u.Objects = append(u.Objects, hostfw.Bridge(br)...)
	u.Objects = append(u.Objects, hostfw.Network(n)...)
	u.Objects = append(u.Objects, hostfw.El(hostfw.SetNATBridges, br))
	for _, p := range n.Spec.Subnets {
		u.Objects = append(u.Objects, hostfw.Masquerade(p.Prefix))
	}
	return u
}

// PlanEndpoint implements driver.Driver: a veth pair whose host side is a
// port of the network's bridge (in hairpin mode while the endpoint
// publishes ports) and whose other side is the endpoint's NIC in its
// namespace, with its MAC, addresses and routes; the port comes up last
// (sealed). Then its firewall: published ports, ACLs, DisableICC,
// OutBoundNAT, anti-spoofing.
func (Driver) PlanEndpoint(n *driver.Network, ep *driver.Endpoint, _ driver.HostFacts) *netmodel.Unit {
	port := PortName(ep.ID)
	u := &netmodel.Unit{Owner: netmodel.EndpointOwner(ep.ID)}
	u.Objects = append(u.Objects, driver.VethNIC(n, ep, port, BridgeName(n.ID), DefaultMTU, len(ep.Mappings) > 0)...)
	u.Objects = append(u.Objects, driver.Shaping(ep, port, DefaultMTU)...)
	fw, guard := hostfw.Endpoint(n, ep, port)
	u.Objects = append(u.Objects, fw...)
	u.Flows = guard
	return u
}
