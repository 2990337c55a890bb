package cni

import (
	"net"
	"net/netip"
	"strings"

	"github.com/containernetworking/cni/pkg/types"
	types100 "github.com/containernetworking/cni/pkg/types/100"
	"github.com/hostnet/hostnet/api"
)

// newResult is the CNI result of an endpoint attached in netns: the host
// side of its veth (interface 0) and the container's interface (1, in the
// sandbox), its addresses with their gateways, the routes hostnet installs
// for it and its DNS. types.PrintResult converts it to older versions.
func newResult(ep *api.Endpoint, spec *api.NetworkSpec, n *api.Network, netns string) *types100.Result {
	r := &types100.Result{CNIVersion: types100.ImplementedSpecVersion}
	r.Interfaces = []*types100.Interface{{Name: ep.HostInterfaceName}}
	mac := ""
	if m, err := api.ParseMAC(ep.MacAddress); err == nil {
		mac = m.String()
	}
	r.Interfaces = append(r.Interfaces, &types100.Interface{Name: ep.InterfaceName, Mac: mac, Sandbox: netns})
	container := 1
	for _, c := range ep.IpConfigurations {
		a, err := netip.ParseAddr(c.IpAddress)
		if err != nil {
			continue
		}
		sub := subnetOf(spec, a)
		bits := int(c.PrefixLength)
		if bits == 0 && sub != nil {
			bits = sub.Prefix.Bits()
		}
		ip := &types100.IPConfig{Interface: &container, Address: ipNet(netip.PrefixFrom(a, bits))}
		if sub != nil {
			ip.Gateway = net.IP(sub.Gateway.AsSlice())
			r.Routes = append(r.Routes, subnetRoutes(sub)...)
		}
		r.IPs = append(r.IPs, ip)
	}
	r.DNS = resultDNS(ep.Dns, n.Dns)
	if spec.AutomaticDNS {
		// The network's embedded DNS server answers (and forwards to
		// the servers the endpoint or network names): the runtime's
		// resolv.conf names it, on the gateways.
		r.DNS.Nameservers = nil
		for _, v6 := range []bool{false, true} {
			for _, sub := range spec.Subnets {
				if sub.Gateway.IsValid() && sub.Gateway.Is6() == v6 {
					r.DNS.Nameservers = append(r.DNS.Nameservers, sub.Gateway.String())
				}
			}
		}
	}
	return r
}

// subnetRoutes are the routes an endpoint with an address in sub gets:
// the subnet's own, or a default route through its gateway.
func subnetRoutes(sub *api.SubnetSpec) []*types.Route {
	var out []*types.Route
	hasDefault := false
	for _, r := range sub.Routes {
		route := &types.Route{Dst: ipNet(r.Dst)}
		if r.NextHop.IsValid() {
			route.GW = net.IP(r.NextHop.AsSlice())
		}
		hasDefault = hasDefault || r.Dst.Bits() == 0
		out = append(out, route)
	}
	if !hasDefault {
		any := netip.PrefixFrom(netip.IPv4Unspecified(), 0)
		if sub.Prefix.Addr().Is6() {
			any = netip.PrefixFrom(netip.IPv6Unspecified(), 0)
		}
		out = append(out, &types.Route{Dst: ipNet(any), GW: net.IP(sub.Gateway.AsSlice())})
	}
	return out
}

func subnetOf(spec *api.NetworkSpec, a netip.Addr) *api.SubnetSpec {
	for i := range spec.Subnets {
		if spec.Subnets[i].Prefix.Contains(a) {
			return &spec.Subnets[i]
		}
	}
	return nil
}

func hasIPv6(spec *api.NetworkSpec) bool {
	for _, s := range spec.Subnets {
		if s.Prefix.Addr().Is6() {
			return true
		}
	}
	return false
}

func ipNet(p netip.Prefix) net.IPNet {
	return net.IPNet{IP: net.IP(p.Addr().AsSlice()), Mask: net.CIDRMask(p.Bits(), p.Addr().BitLen())}
}

// resultDNS is the endpoint's DNS, else its network's.
func resultDNS(ep, network *api.DNS) types.DNS {
	d := ep
	if d == nil || (len(d.ServerList) == 0 && len(d.Search) == 0 && d.Domain == "") {
		d = network
	}
	if d == nil {
		return types.DNS{}
	}
	search := d.Search
	if len(search) == 0 && d.Suffix != "" {
		search = strings.Split(d.Suffix, ",")
	}
	return types.DNS{Nameservers: d.ServerList, Domain: d.Domain, Search: search, Options: d.Options}
}
