// Package dataplane is the only code of hostnet that programs the kernel
// for the network drivers: bridges, veth ports, addresses and routes, and
// sysctls, in the namespace hostnet treats as the host and in endpoint
// namespaces. Every call is idempotent: it brings the kernel to what it is
// told, adopting what is already right instead of recreating it, so that a
// daemon restart does not disturb live traffic. nftables lives in the nft
// subpackage, namespaces in the netns subpackage.
package dataplane

import (
	"fmt"
	"net"
	"net/netip"

	"github.com/hostnet/hostnet/internal/dataplane/netns"
	"github.com/hostnet/hostnet/internal/netmodel"
)

// RouteProtocol tags the routes hostnet installs (`ip route ... proto 104`),
// so that reconciliation removes only its own routes.
const RouteProtocol = 104

// BridgeSpec is a network's switch.
type BridgeSpec struct {
	Name string
	// MAC and MTU are set explicitly: a bridge whose MAC and MTU were set
	// by hand does not recompute them over all its ports when a port is
	// added, which keeps attaching the 1000th endpoint as cheap as the 1st.
	MAC   net.HardwareAddr
	MTU   int
	Addrs []netip.Prefix // the gateway addresses, with the subnet's length
}

// Route is a route inside an endpoint's namespace.
type Route struct {
	Dst     netip.Prefix
	Gateway netip.Addr // zero: on-link
	Metric  int
	Src     netip.Addr // the preferred source address; zero: the kernel's choice
}

func (r Route) String() string {
	s := r.Dst.String()
	if r.Gateway.IsValid() {
		s += " via " + r.Gateway.String()
	}
	if r.Metric != 0 {
		s += fmt.Sprintf(" metric %d", r.Metric)
	}
	return s
}

// PortSpec is an endpoint's virtual NIC: a veth pair whose host side is a
// port of a bridge and whose other side lives in the endpoint's namespace.
type PortSpec struct {
	HostName    string // host side, a port of the bridge
	BridgeIndex int
	MTU         int
	NS          netns.Handle // the endpoint's namespace
	Name        string       // device name inside NS
	MAC         net.HardwareAddr
	Addrs       []netip.Prefix
	Routes      []Route
	// Hairpin lets the bridge send a frame back out of the port it came
	// in by: an endpoint reaching its own published port comes back to
	// itself that way (br_netfilter bridges DNATed frames).
	Hairpin bool
	// Additive: repairing an existing pair adds the missing addresses and
	// routes and removes none (others are removed one by one).
	Additive bool
}

// ErrNameTaken is returned when a device name hostnet wants inside an
// endpoint namespace is held by a device that is not hostnet's.
var ErrNameTaken = netmodel.ErrNameTaken

// LinkState is what Host.Links reports of a device.
type LinkState struct {
	Index  int
	Up     bool
	Master string // the bridge it is a port of, "" if none
	// MasterIndex is that bridge's index, 0 if none.
	MasterIndex int
	Addrs       []netip.Prefix
	Kind        string // "veth", "bridge", ...
	// PeerNSID is the host's ID for the namespace of a veth's other side
	// (see Host.NamespaceID); -1 when it has none there.
	PeerNSID int
}
