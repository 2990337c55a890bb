// Package macvlan plans the networks whose endpoints are macvlan devices
// of a host adapter (the uplink), each with its own MAC on the physical
// segment:
//
//   - Transparent: macvlan bridge mode. Endpoints of one host reach each
//     other inside the kernel, the segment directly. The host reaches
//     them through a shim of its own, a macvlan of the uplink with a host
//     route to each endpoint address (a macvlan never talks to its
//     parent).
//   - L2Tunnel: macvlan VEPA mode. Every frame an endpoint sends leaves by
//     the uplink, even to another endpoint of the same host: the upstream
//     switch (where the policy is applied) sends it back (hairpin,
//     "reflective relay"), and replies come back through it too.
//
// Endpoint traffic never passes the host's inet hooks but between the host
// and an endpoint (through the shim): there the endpoints' ACLs are
// enforced as on a NAT network. Traffic between an endpoint and the wire
// passes the uplink, whose netdev ingress and egress hooks enforce the
// same ACLs (policy.DeviceHooks, in hostnet's netdev table; every network
// of one uplink shares its chains). Two endpoints of one host talk
// through the uplink's hooks too: L2Tunnel's VEPA sends their frames out
// by it and takes them back; Transparent's bridge mode hands them to the
// uplink's receive path (its ingress hook), where their MACs (the Bridged
// set) tell them from the wire's.
package macvlan

import (
	"net/netip"

	"github.com/hostnet/hostnet/api"
	"github.com/hostnet/hostnet/internal/driver"
	"github.com/hostnet/hostnet/internal/driver/hostfw"
	"github.com/hostnet/hostnet/internal/driver/uplinkbridge"
	"github.com/hostnet/hostnet/internal/netmodel"
	"github.com/hostnet/hostnet/internal/policy"
)

// Driver plans the networks of one type on macvlan devices.
type Driver struct {
	typ  api.NetworkType
	mode string // the macvlan mode: "bridge" or "vepa"
	shim bool   // the host reaches endpoints through a shim
}

var _ driver.Driver = Driver{}

// Transparent returns the Transparent driver.
func Transparent() Driver { return Driver{typ: api.Transparent, mode: "bridge", shim: true} }

// L2Tunnel returns the L2Tunnel driver.
func L2Tunnel() Driver { return Driver{typ: api.L2Tunnel, mode: "vepa"} }

// Type implements driver.Driver.
func (d Driver) Type() api.NetworkType { return d.typ }

// Variant implements driver.Variants: a Transparent network of
// UplinkMode Bridge is planned over a bridge that takes its uplink
// (package uplinkbridge).
func (d Driver) Variant(spec *api.NetworkSpec) driver.Driver {
	if d.typ == api.Transparent && spec != nil && spec.UplinkBridge {
		return uplinkbridge.New()
	}
	return d
}

// Validate implements driver.Driver: static subnets, or (Transparent)
// DHCP, whose subnets are the DHCP server's.
func (d Driver) Validate(spec *api.NetworkSpec) error {
	if spec.DHCP && !d.DHCPEndpoints() {
		return api.Unsupported("invalid network: field Ipams: Type DHCP on %s networks is not supported by this build; give the network's subnets", d.typ)
	}
	if spec.DHCP {
		if len(spec.Subnets) > 0 {
			return api.Invalid(api.CodeInvalidNetwork, "invalid network: field Ipams: Type DHCP: the DHCP server hands out the addresses; give no subnets (or a Static network with its subnets)")
		}
		return nil
	}
	if len(spec.Subnets) == 0 {
		return api.Invalid(api.CodeInvalidNetwork, "invalid network: field Ipams: a %s network needs a subnet of its segment (with an IpRange the segment leaves free)", d.typ)
	}
	return nil
}

// DHCPEndpoints implements driver.DHCPEndpoints: a Transparent endpoint
// is on the segment with its own MAC, where its DHCP server is.
func (d Driver) DHCPEndpoints() bool { return d.shim }

// NeedsUplink implements driver.OnUplink: a Transparent network's subnets
// are its uplink's (the host routes between them and its endpoints); an
// L2Tunnel network's are the upstream's business.
func (d Driver) NeedsUplink() driver.UplinkUse {
	return driver.UplinkUse{SubnetOfUplink: d.shim}
}

// EndpointPolicies implements driver.EndpointPolicies: endpoints on the
// segment have no host port to publish nor host address to leave behind.
func (Driver) EndpointPolicies() []api.PolicyType { return []api.PolicyType{api.ACL, api.SDNRoute} }

// NetworkDevice implements driver.Driver: the host shim, if any.
func (d Driver) NetworkDevice(id string) string {
	if d.shim {
		return driver.ShimName(id)
	}
	return ""
}

// EndpointDevice implements driver.Driver: an endpoint has no device of
// its own in the host namespace.
func (Driver) EndpointDevice(string) string { return "" }

// Uplink returns the hook point of a network's endpoints' traffic with
// the wire: the netdev hooks of its uplink, shared by every network on it.
func Uplink(n *driver.Network) policy.DeviceHooks {
	return policy.DeviceHooks{Table: policy.TableName, Device: n.Spec.Uplink}
}

// PlanNetwork implements driver.Driver: the shim, up, without address
// (it answers the endpoints' ARP for the host's addresses, which are the
// uplink's); the ACL dispatch of the host's inet hooks, where the host's
// traffic with the endpoints is filtered, and of the uplink's netdev
// hooks, where their traffic with the wire is.
func (d Driver) PlanNetwork(n *driver.Network, _ driver.HostFacts) *netmodel.Unit {
	u := &netmodel.Unit{Owner: netmodel.NetworkOwner(n.ID)}
	u.Objects = append(u.Objects, hostfw.Filtering.Layout()...)
	u.Objects = append(u.Objects, Uplink(n).Layout()...)
	if d.shim {
		mac := driver.StableMAC("shim/" + n.ID)
		u.Objects = append(u.Objects, netmodel.Link{Name: driver.ShimName(n.ID), Kind: netmodel.LinkMacvlan, MacvlanMode: d.mode,
			Parent: &netmodel.LinkRef{Name: n.Spec.Uplink}, MAC: mac, Up: true, IPv6: netmodel.IPv6NoLinkLocal})
		u.Objects = append(u.Objects, Uplink(n).Shim(mac)...)
	}
	return u
}

// PlanEndpoint implements driver.Driver: a macvlan of the uplink made in
// the endpoint's namespace, with its MAC, addresses and routes; with a
// shim, a host route to each address through it; the endpoint's ACLs
// where the host's traffic with it passes and at the uplink.
func (d Driver) PlanEndpoint(n *driver.Network, ep *driver.Endpoint, _ driver.HostFacts) *netmodel.Unit {
	u := &netmodel.Unit{Owner: netmodel.EndpointOwner(ep.ID)}
	u.Objects = append(u.Objects, netmodel.Link{NS: ep.NS, Name: ep.Interface, Kind: netmodel.LinkMacvlan, MacvlanMode: d.mode,
		Parent: &netmodel.LinkRef{Name: n.Spec.Uplink}, MAC: ep.MAC, Up: true, IPv6: netmodel.IPv6NoLinkLocal})
	u.Objects = append(u.Objects, driver.InNamespace(n, ep)...)
	if ep.DHCP {
		// The server's answers come before the interface has a route to
		// it: a reverse path filter (a namespace inherits the host's, often
		// strict) would drop them.
		for _, dev := range []string{"all", ep.Interface} {
			u.Objects = append(u.Objects, netmodel.Sysctl{NS: ep.NS, Name: "net/ipv4/conf/" + dev + "/rp_filter", Value: "0"})
		}
	}
	var addrs []netip.Addr
	for _, a := range ep.Addrs {
		addrs = append(addrs, a.Addr())
		if d.shim {
			u.Objects = append(u.Objects, netmodel.Route{Link: driver.ShimName(n.ID), Dst: netip.PrefixFrom(a.Addr(), a.Addr().BitLen()), SrcFrom: n.Spec.Uplink})
		}
	}
	u.Objects = append(u.Objects, hostfw.Filtering.Filter(addrs, n.ACLs, ep.ACLs, ep.Quarantine)...)
	u.Objects = append(u.Objects, Uplink(n).Filter(addrs, n.ACLs, ep.ACLs, ep.Quarantine)...)
	u.Objects = append(u.Objects, Uplink(n).AntiSpoof(ep.MAC, addrs)...)
	if d.mode == "bridge" {
		// Its frames to another endpoint of the host meet the uplink's
		// ingress only.
		u.Objects = append(u.Objects, Uplink(n).Bridged(ep.MAC)...)
	}
	return u
}
