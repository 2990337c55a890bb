// Package driver defines how a network type is realised in the kernel. Each
// network type is a Driver in its own subpackage; the service picks the
// driver of a network by its type and never touches the kernel otherwise.
package driver

import (
	"crypto/sha256"
	"encoding/hex"
	"net"
	"net/netip"

	"github.com/hostnet/hostnet/api"
	"github.com/hostnet/hostnet/internal/dataplane"
	"github.com/hostnet/hostnet/internal/dataplane/netns"
)

// Device name prefixes. Every device hostnet creates in the host namespace
// starts with LinkPrefix, so reconciliation can tell its own devices from
// everyone else's and remove only those no object claims.
const (
	LinkPrefix   = "hn"
	BridgePrefix = "hnbr"
	PortPrefix   = "hnv"
)

// BridgeName is the device name of a network's switch, derived from a
// hash of its ID (so client-chosen IDs with a common prefix do not collide).
func BridgeName(networkID string) string { return BridgePrefix + shortHash(networkID, 10) }

// PortName is the device name of an endpoint's host-side port.
func PortName(endpointID string) string { return PortPrefix + shortHash(endpointID, 12) }

func shortHash(s string, n int) string {
	h := sha256.Sum256([]byte(s))
	return hex.EncodeToString(h[:])[:n]
}

// BridgeMAC is the stable MAC of a network's bridge.
func BridgeMAC(networkID string) net.HardwareAddr {
	h := sha256.Sum256([]byte("bridge/" + networkID))
	return net.HardwareAddr{0x02, h[0], h[1], h[2], h[3], h[4]}
}

// Network is a network as a driver sees it.
type Network struct {
	ID     string
	Name   string
	Spec   *api.NetworkSpec
	Bridge string // device name of the switch
	MTU    int
}

// Endpoint is an endpoint as a driver sees it, attached to a namespace.
type Endpoint struct {
	ID       string
	Network  *Network
	HostName string // host-side device
	Name     string // device inside the namespace
	MAC      net.HardwareAddr
	Addrs    []netip.Prefix
	Routes   []dataplane.Route
	// Hairpin: the endpoint publishes ports, so it may reach itself
	// through them.
	Hairpin bool
}

// Driver realises one network type. All methods are idempotent: called
// again with the same arguments they succeed and change nothing, and they
// adopt kernel objects that are already right instead of recreating them
// (so a daemon restart does not disturb traffic).
type Driver interface {
	// Type is the network type the driver realises.
	Type() api.NetworkType
	// Validate checks the type's own rules for a network document that
	// parsed. It is pure: nothing is stored or created yet.
	Validate(spec *api.NetworkSpec) error
	// EnsureNetwork makes n's kernel objects exist and be right.
	EnsureNetwork(n *Network) error
	// DeleteNetwork removes n's kernel objects; objects already gone are
	// not an error.
	DeleteNetwork(n *Network) error
	// Attach makes ep's virtual NIC exist inside the namespace ns, with its
	// MAC, addresses and routes, and its switch port on the host.
	Attach(ep *Endpoint, ns netns.Handle) error
	// NetworkDrift lists how n's kernel objects differ from what
	// EnsureNetwork makes, given the host's devices (Host.Links of
	// LinkPrefix); nothing is changed. Empty when they agree.
	NetworkDrift(n *Network, links map[string]dataplane.LinkState) []string
	// PortDrift lists how the host side of ep's NIC differs from what
	// Attach makes; nothing is changed.
	PortDrift(ep *Endpoint, links map[string]dataplane.LinkState) []string
	// Detach removes the virtual NICs of eps from the host and their
	// namespaces, in one kernel batch when there are several (removing
	// devices one by one costs each the same wait). A NIC already gone is
	// not an error.
	Detach(eps ...*Endpoint) error
}
