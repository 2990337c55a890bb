// Package nat realises NAT networks: a private subnet on a Linux bridge
// whose gateway address is the host's, with outbound traffic masqueraded
// behind the host (the masquerade itself is part of hostnet's nftables
// table, compiled by the policy package).
package nat

import (
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"sync"

	"github.com/hostnet/hostnet/api"
	"github.com/hostnet/hostnet/internal/dataplane"
	"github.com/hostnet/hostnet/internal/dataplane/netns"
	"github.com/hostnet/hostnet/internal/driver"
	"golang.org/x/sys/unix"
)

// DefaultMTU is the MTU of NAT bridges and ports.
const DefaultMTU = 1500

// Driver is the NAT driver.
type Driver struct {
	Host *dataplane.Linux

	mu      sync.Mutex
	bridges map[string]int // bridge name -> ifindex, learnt by EnsureNetwork
}

var _ driver.Driver = (*Driver)(nil)

// New returns the NAT driver programming host.
func New(host *dataplane.Linux) *Driver {
	return &Driver{Host: host, bridges: map[string]int{}}
}

// Type implements driver.Driver.
func (d *Driver) Type() api.NetworkType { return api.NAT }

// Validate implements driver.Driver: a NAT network has one internal prefix
// per address family (Windows allows one; hostnet adds an optional IPv6
// one for dual stack).
func (d *Driver) Validate(spec *api.NetworkSpec) error {
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

// EnsureNetwork implements driver.Driver: the bridge, up, with the
// gateway addresses, and forwarding on in the host namespace.
func (d *Driver) EnsureNetwork(n *driver.Network) error {
	spec := dataplane.BridgeSpec{Name: n.Bridge, MAC: driver.BridgeMAC(n.ID), MTU: mtu(n)}
	v6 := false
	for _, s := range n.Spec.Subnets {
		spec.Addrs = append(spec.Addrs, netip.PrefixFrom(s.Gateway, s.Prefix.Bits()))
		v6 = v6 || s.Prefix.Addr().Is6()
	}
	idx, err := d.Host.EnsureBridge(spec)
	if err != nil {
		return err
	}
	d.mu.Lock()
	d.bridges[n.Bridge] = idx
	d.mu.Unlock()
	for _, sysctl := range []struct{ key, value string }{
		{"net/ipv4/ip_forward", "1"},
		// Published ports on 127.0.0.1: the host's loopback traffic is
		// redirected into the bridge (its source then masqueraded).
		{"net/ipv4/conf/" + n.Bridge + "/route_localnet", "1"},
		// Bridged traffic passes the inet hooks, with connection
		// tracking: isolation and endpoint ACLs rely on it.
		{"net/bridge/bridge-nf-call-iptables", "1"},
		{"net/bridge/bridge-nf-call-ip6tables", "1"},
	} {
		if err := d.Host.SetSysctl(sysctl.key, sysctl.value); err != nil {
			return err
		}
	}
	if v6 {
		if err := d.Host.SetSysctl("net/ipv6/conf/all/forwarding", "1"); err != nil {
			return err
		}
	}
	return nil
}

func mtu(n *driver.Network) int {
	if n.MTU > 0 {
		return n.MTU
	}
	return DefaultMTU
}

// DeleteNetwork implements driver.Driver.
func (d *Driver) DeleteNetwork(n *driver.Network) error {
	d.mu.Lock()
	delete(d.bridges, n.Bridge)
	d.mu.Unlock()
	return d.Host.DeleteLink(n.Bridge)
}

// Attach implements driver.Driver.
func (d *Driver) Attach(ep *driver.Endpoint, ns netns.Handle) error {
	d.mu.Lock()
	idx, ok := d.bridges[ep.Network.Bridge]
	d.mu.Unlock()
	if !ok {
		if err := d.EnsureNetwork(ep.Network); err != nil {
			return err
		}
		return d.Attach(ep, ns)
	}
	spec := dataplane.PortSpec{
		HostName:    ep.HostName,
		BridgeIndex: idx,
		MTU:         mtu(ep.Network),
		NS:          ns,
		Name:        ep.Name,
		MAC:         ep.MAC,
		Addrs:       ep.Addrs,
		Routes:      ep.Routes,
		Hairpin:     ep.Hairpin,
	}
	err := d.Host.EnsurePort(spec)
	if errors.Is(err, unix.ENODEV) {
		// The bridge was recreated under the cached index: repair and retry once.
		if err := d.EnsureNetwork(ep.Network); err != nil {
			return err
		}
		d.mu.Lock()
		spec.BridgeIndex = d.bridges[ep.Network.Bridge]
		d.mu.Unlock()
		err = d.Host.EnsurePort(spec)
	}
	return err
}

// NetworkDrift implements driver.Driver: the bridge exists, is up and
// carries the gateway addresses.
func (d *Driver) NetworkDrift(n *driver.Network, links map[string]dataplane.LinkState) []string {
	br, ok := links[n.Bridge]
	if !ok {
		return []string{fmt.Sprintf("bridge %s is missing", n.Bridge)}
	}
	var out []string
	if !br.Up {
		out = append(out, fmt.Sprintf("bridge %s is down", n.Bridge))
	}
	for _, s := range n.Spec.Subnets {
		want := netip.PrefixFrom(s.Gateway, s.Prefix.Bits())
		if !slices.Contains(br.Addrs, want) {
			out = append(out, fmt.Sprintf("bridge %s lacks the gateway address %s", n.Bridge, want))
		}
	}
	return out
}

// PortDrift implements driver.Driver: the port exists, is up and is a
// port of the network's bridge.
func (d *Driver) PortDrift(ep *driver.Endpoint, links map[string]dataplane.LinkState) []string {
	port, ok := links[ep.HostName]
	if !ok {
		return []string{fmt.Sprintf("port %s is missing", ep.HostName)}
	}
	var out []string
	if port.Master != ep.Network.Bridge {
		out = append(out, fmt.Sprintf("port %s is not a port of bridge %s", ep.HostName, ep.Network.Bridge))
	}
	if !port.Up {
		out = append(out, fmt.Sprintf("port %s is down", ep.HostName))
	}
	return out
}

// Detach implements driver.Driver.
func (d *Driver) Detach(eps ...*driver.Endpoint) error {
	names := make([]string, 0, len(eps))
	for _, ep := range eps {
		names = append(names, ep.HostName)
	}
	return d.Host.DeleteLinks(names)
}
