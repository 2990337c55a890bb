// Package uplinkbridge plans Transparent networks of UplinkMode Bridge:
// the network takes its uplink whole, as a Hyper-V external switch that
// shares its adapter with the host does. A bridge of the network's own
// takes the uplink's MAC (the segment, and its DHCP server, keep seeing
// the host where they did), the uplink becomes its port, and the host's
// addresses and routes move from the uplink to the bridge
// (netmodel.UplinkHandover, which the dataplane applies from the kernel's
// state and undoes before the bridge goes). Endpoints are veth ports of
// the bridge, each with its own MAC on the segment; the host reaches them
// through the bridge, where its addresses now are, with no shim.
//
// Every path an endpoint's traffic takes crosses the bridge: with the
// wire, with another endpoint, with the host. Bridged traffic passes the
// host's inet hooks (br_netfilter), so the firewall is the one NAT and
// L2Bridge share (package hostfw): ACLs and firewall defaults by address,
// anti-spoofing by port in the bridge table. The bridge is not one of the
// firewall's "bridges" (set hostfw.SetBridges): for the host's routing it
// is the uplink, the way other networks' traffic leaves (masqueraded,
// not isolated from it).
package uplinkbridge

import (
	"net/netip"

	"github.com/hostnet/hostnet/api"
	"github.com/hostnet/hostnet/internal/driver"
	"github.com/hostnet/hostnet/internal/driver/hostfw"
	"github.com/hostnet/hostnet/internal/netmodel"
	"github.com/hostnet/hostnet/internal/nftmodel"
	"github.com/hostnet/hostnet/internal/policy"
)

// Driver is the Transparent driver over a bridge. It holds nothing: it
// plans.
type Driver struct{}

var _ driver.Driver = Driver{}

// New returns the driver.
func New() Driver { return Driver{} }

// Type implements driver.Driver.
func (Driver) Type() api.NetworkType { return api.Transparent }

// Validate implements driver.Driver: static subnets of the segment, or
// DHCP, as for a Transparent network of macvlans.
func (Driver) Validate(spec *api.NetworkSpec) error {
	if spec.DHCP {
		if len(spec.Subnets) > 0 {
			return api.Invalid(api.CodeInvalidNetwork, "invalid network: field Ipams: Type DHCP: the DHCP server hands out the addresses; give no subnets (or a Static network with its subnets)")
		}
		return nil
	}
	if len(spec.Subnets) == 0 {
		return api.Invalid(api.CodeInvalidNetwork, "invalid network: field Ipams: a Transparent network needs a subnet of its segment (with an IpRange the segment leaves free)")
	}
	return nil
}

// DHCPEndpoints implements driver.DHCPEndpoints: an endpoint is on the
// segment with its own MAC, where its DHCP server is.
func (Driver) DHCPEndpoints() bool { return true }

// NeedsUplink implements driver.OnUplink: the subnets are the uplink's,
// and the uplink is taken whole.
func (Driver) NeedsUplink() driver.UplinkUse {
	return driver.UplinkUse{SubnetOfUplink: true, Whole: true}
}

// EndpointPolicies implements driver.EndpointPolicies: endpoints on the
// segment have no host port to publish nor host address to leave behind;
// their port in the host namespace takes a QOS policy's caps.
func (Driver) EndpointPolicies() []api.PolicyType {
	return []api.PolicyType{api.ACL, api.SDNRoute, api.QOS}
}

// NetworkDevice implements driver.Driver.
func (Driver) NetworkDevice(id string) string { return driver.BridgeName(id) }

// EndpointDevice implements driver.Driver.
func (Driver) EndpointDevice(id string) string { return driver.PortName(id) }

// PlanNetwork implements driver.Driver: the bridge, up, its MAC the
// uplink's (set by the handover, which reads it); the uplink handed over;
// bridged traffic through the inet hooks, where the ACLs are; the shared
// firewall and the network's IP sets.
func (Driver) PlanNetwork(n *driver.Network, _ driver.HostFacts) *netmodel.Unit {
	br := driver.BridgeName(n.ID)
	u := &netmodel.Unit{Owner: netmodel.NetworkOwner(n.ID)}
	u.Objects = append(u.Objects,
		netmodel.Link{Name: br, Kind: netmodel.LinkBridge, Up: true},
		netmodel.UplinkHandover{Uplink: n.Spec.Uplink, Bridge: br})
	sysctl := func(k, v string) netmodel.Object { return netmodel.Sysctl{Name: k, Value: v} }
	u.Objects = append(u.Objects,
		sysctl("net/bridge/bridge-nf-call-iptables", "1"),
		sysctl("net/bridge/bridge-nf-call-ip6tables", "1"))
	u.Objects = append(u.Objects, hostfw.Tables()...)
	u.Objects = append(u.Objects, hostfw.Network(n)...)
	return u
}

// portMTU is the MTU of an endpoint's ifb device (its port, planned
// without one, takes the bridge's, which is the uplink's: a jumbo-frame
// uplink gives its endpoints jumbo frames; what is redirected to an ifb
// is not held to its MTU).
const portMTU = 1500

// PlanEndpoint implements driver.Driver: a veth port of the network's
// bridge, its other side the endpoint's NIC with its MAC, addresses and
// routes; its firewall as on a NAT network (ACLs, DisableICC,
// anti-spoofing of its port). A DHCP endpoint may send from 0.0.0.0 (its
// discovery, its address probes), and takes the server's answers before
// it has an address (no reverse path filter in its namespace).
func (Driver) PlanEndpoint(n *driver.Network, ep *driver.Endpoint, _ driver.HostFacts) *netmodel.Unit {
	port, br := driver.PortName(ep.ID), driver.BridgeName(n.ID)
	u := &netmodel.Unit{Owner: netmodel.EndpointOwner(ep.ID)}
	u.Objects = append(u.Objects, driver.VethNIC(n, ep, port, br, 0, false)...)
	u.Objects = append(u.Objects, driver.Shaping(ep, port, portMTU)...)
	fw, guard := hostfw.Endpoint(n, ep, port)
	u.Objects = append(u.Objects, fw...)
	if ep.DHCP {
		for _, dev := range []string{"all", ep.Interface} {
			u.Objects = append(u.Objects, netmodel.Sysctl{NS: ep.NS, Name: "net/ipv4/conf/" + dev + "/rp_filter", Value: "0"})
		}
		u.Objects = append(u.Objects, unspecifiedSource(port))
	}
	u.Flows = guard
	return u
}

// unspecifiedSource lets a port send from 0.0.0.0: what a DHCP client
// does before it has a lease.
func unspecifiedSource(port string) netmodel.Object {
	return netmodel.NftElement{Family: nftmodel.FamilyBridge, Table: hostfw.AntiSpoof.Table, Set: policy.SetPortV4,
		Elem: port + " . " + netip.IPv4Unspecified().String()}
}
