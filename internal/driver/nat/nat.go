// Package nat plans NAT networks: a private subnet on a Linux bridge whose
// gateway address is the host's, outbound traffic masqueraded behind the
// host, inbound traffic only through published ports (DNAT, no proxy),
// with hairpin for an endpoint that reaches its own published port.
package nat

import (
	"net/netip"
	"strconv"

	"github.com/hostnet/hostnet/api"
	"github.com/hostnet/hostnet/internal/driver"
	"github.com/hostnet/hostnet/internal/netmodel"
	"github.com/hostnet/hostnet/internal/policy"
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
	if v4 > 1 || v6 > 1 {
		return api.Invalid(api.CodeInvalidNetwork,
			"invalid network: field Ipams: a NAT network has one subnet per address family (one internal NAT prefix), got %d IPv4 and %d IPv6 subnets", v4, v6)
	}
	return nil
}

// BridgeName is the device name of a network's bridge.
func BridgeName(networkID string) string {
	return driver.BridgePrefix + driver.ShortHash(networkID, 10)
}

// PortName is the device name of an endpoint's host-side port.
func PortName(endpointID string) string { return driver.PortPrefix + driver.ShortHash(endpointID, 12) }

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
	u.Objects = append(u.Objects, layout()...)
	u.Objects = append(u.Objects, filtering.Layout()...)
	u.Objects = append(u.Objects, antiSpoof.Layout()...)
	u.Objects = append(u.Objects, el(SetBridges, br), el(SetIntraBridge, br+" . "+br), el(SetNATBridges, br))
	for _, p := range n.Spec.Subnets {
		u.Objects = append(u.Objects, el(pick(p.Prefix.Addr(), SetNATv4, SetNATv6), p.Prefix.Masked().String()))
	}
	return u
}

// The hook point the endpoints are filtered at, and the anti-spoofing of
// their ports: bridged traffic passes the inet hooks (br_netfilter).
var (
	filtering = policy.AddressHooks
	antiSpoof = policy.AntiSpoof{Table: policy.TableName, PortPrefix: driver.PortPrefix}
)

// PlanEndpoint implements driver.Driver: a veth pair whose host side is a
// port of the network's bridge (in hairpin mode while the endpoint
// publishes ports) and whose other side is the endpoint's NIC in its
// namespace, with its MAC, addresses and routes; the port comes up last
// (sealed). Then its firewall: published ports, ACLs, DisableICC,
// OutBoundNAT, anti-spoofing.
func (Driver) PlanEndpoint(n *driver.Network, ep *driver.Endpoint, _ driver.HostFacts) *netmodel.Unit {
	port := PortName(ep.ID)
	u := &netmodel.Unit{Owner: netmodel.EndpointOwner(ep.ID)}
	peerIPv6 := netmodel.IPv6NoLinkLocal
	u.Objects = append(u.Objects,
		netmodel.Link{Name: port, Kind: netmodel.LinkVeth, MTU: DefaultMTU, Master: BridgeName(n.ID), Up: true,
			IPv6: netmodel.IPv6Off, Hairpin: len(ep.Mappings) > 0, Seal: true, Peer: &netmodel.LinkRef{NS: ep.NS, Name: ep.Interface}},
		netmodel.Link{NS: ep.NS, Name: ep.Interface, Kind: netmodel.LinkVeth, MAC: ep.MAC, MTU: DefaultMTU, Up: true, IPv6: peerIPv6,
			Peer: &netmodel.LinkRef{Name: port}},
		netmodel.Link{NS: ep.NS, Name: "lo", Kind: netmodel.LinkLoopback, Up: true})
	var addrs []netip.Addr
	for _, a := range ep.Addrs {
		u.Objects = append(u.Objects, netmodel.Addr{NS: ep.NS, Link: ep.Interface, Prefix: a})
		addrs = append(addrs, a.Addr())
	}
	for _, r := range driver.EndpointRoutes(n, ep) {
		u.Objects = append(u.Objects, r)
	}
	u.Objects = append(u.Objects, publish(ep, addrs)...)
	u.Objects = append(u.Objects, filtering.Filter(addrs, n.ACLs, ep.ACLs, ep.Quarantine)...)
	for _, a := range addrs {
		if ep.DisableICC {
			for _, sub := range n.Spec.Subnets {
				if sub.Prefix.Addr().Is4() == a.Is4() {
					u.Objects = append(u.Objects, el(pick(a, SetNoICC4, SetNoICC6), a.String()+" . "+sub.Prefix.Masked().String()))
				}
			}
		}
		if o := ep.OutboundNAT; o != nil {
			for _, x := range policy.Prefixes(o.Exceptions) {
				if a.Is4() == x.Addr().Is4() {
					u.Objects = append(u.Objects, el(pick(a, SetNATExcept4, SetNATExcept6), a.String()+" . "+policy.PrefixElement(x)))
				}
			}
			if o.VirtualIP.IsValid() && o.VirtualIP.Is4() == a.Is4() {
				u.Objects = append(u.Objects, put(pick(a, MapSNAT4, MapSNAT6), a.String(), o.VirtualIP.String()))
			}
		}
	}
	u.Objects = append(u.Objects, antiSpoof.Port(port, ep.MAC, addrs)...)
	guard := &netmodel.FlowGuard{Addrs: addrs, Admit: policy.Admission(n.ACLs, ep.ACLs, ep.Quarantine)}
	for _, m := range ep.Mappings {
		guard.Published = append(guard.Published, netmodel.PublishedPort{Proto: m.Protocol, ExternalPort: m.ExternalPort, InternalPort: m.InternalPort})
	}
	u.Flows = guard
	return u
}

// publish returns the elements of an endpoint's published ports: DNAT to
// its first address of the mapping's family (none when it has no address
// of that family).
func publish(ep *driver.Endpoint, addrs []netip.Addr) []netmodel.Object {
	var v4, v6 netip.Addr
	for _, a := range addrs {
		if a.Is4() && !v4.IsValid() {
			v4 = a
		}
		if a.Is6() && !v6.IsValid() {
			v6 = a
		}
	}
	var out []netmodel.Object
	for _, m := range ep.Mappings {
		dst, ports, vips := v4, MapPorts4, MapVIPPorts4
		if m.IPv6 {
			dst, ports, vips = v6, MapPorts6, MapVIPPorts6
		}
		if !dst.IsValid() {
			continue
		}
		key := m.ProtocolName() + " . " + strconv.Itoa(int(m.ExternalPort))
		value := dst.String() + " . " + strconv.Itoa(int(m.InternalPort))
		if m.VIP.IsValid() {
			out = append(out, put(vips, m.VIP.String()+" . "+key, value))
		} else {
			out = append(out, put(ports, key, value))
		}
	}
	return out
}

func pick(a netip.Addr, v4, v6 string) string {
	if a.Is4() {
		return v4
	}
	return v6
}
