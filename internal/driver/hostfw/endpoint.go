package hostfw

import (
	"net/netip"
	"strconv"

	"github.com/hostnet/hostnet/internal/driver"
	"github.com/hostnet/hostnet/internal/netmodel"
	"github.com/hostnet/hostnet/internal/policy"
)

// The hook point the endpoints are filtered at, and the anti-spoofing of
// their ports: their traffic passes the inet hooks (bridged traffic
// through br_netfilter).
var (
	Filtering = policy.AddressHooks
	AntiSpoof = policy.AntiSpoof{Table: policy.TableName, PortPrefix: driver.PortPrefix}
)

// Tables returns the fixed part of every table these drivers use: the
// layout, the ACL dispatch and the anti-spoofing table. Networks want
// them alike (they are shared objects).
func Tables() []netmodel.Object {
	out := Layout()
	out = append(out, Filtering.Layout()...)
	return append(out, AntiSpoof.Layout()...)
}

// Bridge returns the elements of a network's bridge: a hostnet bridge,
// whose traffic within itself passes and to other networks' bridges does
// not.
func Bridge(br string) []netmodel.Object {
	return []netmodel.Object{El(SetBridges, br), El(SetIntraBridge, br+" . "+br)}
}

// Network returns what the firewall holds of a network beyond its
// bridge: its IP sets (SetPolicy), which its endpoints' rules name. A
// change of a set's members changes these elements only.
func Network(n *driver.Network) []netmodel.Object {
	return Filtering.IPSets(n.ID, n.Sets)
}

// Masquerade returns the element that makes traffic from p leave behind
// the host's address.
func Masquerade(p netip.Prefix) netmodel.Object {
	return El(pick(p.Addr(), SetNATv4, SetNATv6), p.Masked().String())
}

// Endpoint returns what the firewall holds of an endpoint whose host-side
// device is port: its published ports, its ACL profile, DisableICC
// towards its network's subnets, its OutBoundNAT exceptions and
// VirtualIP, and the anti-spoofing of its port; and which of its flows
// may live on after a change.
func Endpoint(n *driver.Network, ep *driver.Endpoint, port string) ([]netmodel.Object, *netmodel.FlowGuard) {
	var addrs []netip.Addr
	for _, a := range ep.Addrs {
		addrs = append(addrs, a.Addr())
	}
	out := publish(ep, addrs)
	profile := policy.Quarantine()
	if !ep.Quarantine {
		profile = policy.NewTieredProfile(n.ACLs, ep.ACLs, ep.Tiers, policy.ScopeOf(n.ID, n.Sets))
	}
	out = append(out, Filtering.FilterProfile(addrs, profile)...)
	for _, a := range addrs {
		if ep.DisableICC {
			for _, sub := range n.Spec.Subnets {
				if sub.Prefix.Addr().Is4() == a.Is4() {
					out = append(out, El(pick(a, SetNoICC4, SetNoICC6), a.String()+" . "+sub.Prefix.Masked().String()))
				}
			}
		}
		if o := ep.OutboundNAT; o != nil {
			for _, x := range policy.Prefixes(o.Exceptions) {
				if a.Is4() == x.Addr().Is4() {
					out = append(out, El(pick(a, SetNATExcept4, SetNATExcept6), a.String()+" . "+policy.PrefixElement(x)))
				}
			}
			if o.VirtualIP.IsValid() && o.VirtualIP.Is4() == a.Is4() {
				out = append(out, Put(pick(a, MapSNAT4, MapSNAT6), a.String(), o.VirtualIP.String()))
			}
		}
	}
	out = append(out, AntiSpoof.Port(port, ep.MAC, addrs)...)
	guard := &netmodel.FlowGuard{Addrs: addrs, Admit: policy.AdmissionOf(profile)}
	for _, m := range ep.Mappings {
		guard.Published = append(guard.Published, netmodel.PublishedPort{Proto: m.Protocol, ExternalPort: m.ExternalPort, InternalPort: m.InternalPort})
	}
	return out, guard
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
			out = append(out, Put(vips, m.VIP.String()+" . "+key, value))
		} else {
			out = append(out, Put(ports, key, value))
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
