package api

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net"
	"net/netip"
	"path/filepath"
	"strings"
)

// SubnetSpec is the validated form of a Subnet.
type SubnetSpec struct {
	Prefix netip.Prefix
	// Gateway is the next hop of the subnet's default route, or the first
	// address of the prefix when the subnet names none.
	Gateway        netip.Addr
	ReserveGateway bool
	// Range is where automatic allocation takes addresses from.
	Range    netip.Prefix
	Routes   []RouteSpec
	Policies []Policy
}

// RouteSpec is the validated form of a Route.
type RouteSpec struct {
	Dst     netip.Prefix
	NextHop netip.Addr // zero for an on-link route
	Metric  uint32
	// NeedEncap (SDNRoute) asks for the route through the host's virtual
	// switch: only the network types that have one take it (see
	// driver.EncapRoutes).
	NeedEncap bool
}

// MacRangeSpec is a validated inclusive MAC range, as 48-bit numbers.
type MacRangeSpec struct{ Start, End uint64 }

// NetworkSpec is the validated form of a Network.
type NetworkSpec struct {
	Type      NetworkType
	Subnets   []SubnetSpec
	MacRanges []MacRangeSpec
	DNS       DNSSpec
	Policies  []Policy
	// ACLs are its NetworkACL policies, parsed; Sets its SetPolicy ones
	// (IP sets the ACLs of its endpoints may name).
	ACLs          []ACLSpec
	Sets          *IPSets
	NonPersistent bool
	// Uplink is the host adapter a Transparent, L2Bridge or L2Tunnel
	// network's endpoints reach the physical segment by: its
	// NetAdapterName policy ("" when it has none).
	Uplink string
	// DHCP says addresses come from the segment's DHCP server (an Ipams
	// entry of Type DHCP), not from hostnet's pools.
	DHCP bool
	// AutomaticDNS says the network's endpoints resolve each other's
	// names (an AutomaticDNS policy with Enable).
	AutomaticDNS bool
	// UplinkBridge says a Transparent network takes its uplink whole, as
	// the port of a bridge of its own (UplinkMode Bridge).
	UplinkBridge bool
}

// DNSSpec is the validated form of DNS.
type DNSSpec struct {
	Domain  string
	Search  []string
	Servers []netip.Addr
	Options []string
}

func invalidNetwork(field, format string, args ...any) *Error {
	return Invalid(CodeInvalidNetwork, "invalid network: field %s: %s", field, fmt.Sprintf(format, args...))
}

func invalidEndpoint(field, format string, args ...any) *Error {
	return Invalid(CodeInvalidEndpoint, "invalid endpoint: field %s: %s", field, fmt.Sprintf(format, args...))
}

// checkVerbatim bounds what a network or endpoint document keeps
// verbatim, its Health and its unknown fields, naming the field at fault.
func checkVerbatim(health json.RawMessage, extra Extra) (field string, err error) {
	var budget verbatimBudget
	if err := budget.check(health); err != nil {
		return "Health", err
	}
	return budget.checkExtra(extra)
}

// resolvePolicy resolves the type of policy i of a network or an endpoint
// (owner) by the owner's table, and checks that the type is one of it
// and that the settings are within bounds.
func resolvePolicy(owner string, i int, p *Policy, table enumTable) error {
	p.Type = p.Type.resolve(table)
	if !table.known(string(p.Type)) {
		return Invalid(CodeInvalidPolicyType, "invalid %s: field Policies[%d].Type: unknown %s policy type %q", owner, i, owner, string(p.Type))
	}
	limit := MaxPolicySettingsBytes
	if p.Type == SetPolicy {
		limit = MaxSetPolicySettingsBytes
	}
	if err := checkSettingsWithin(p.Settings, limit); err != nil {
		return invalidPolicy(owner, i, p.Type, "%v", err)
	}
	return nil
}

// CheckSchemaVersion refuses documents of another major schema version.
func CheckSchemaVersion(v SchemaVersion) error {
	if v.Major != 0 && v.Major != 2 {
		return Invalid(CodeRequestUnsupported, "field SchemaVersion: version %d.%d is not supported (want 2.x)", v.Major, v.Minor)
	}
	return nil
}

// ParseNetwork validates n and returns its parsed form. It checks the
// document on its own, and that this build enforces its policies; what
// depends on other objects or on the host (overlaps, drivers, uplinks) is
// checked by the service.
//
// ParseNetwork also puts n in its canonical form, in place, so that what
// the service stores is what it enforces: policy types given as numbers
// or in another case become their names (a NetworkACL sent as "Type":11
// is stored as "NetworkACL", and so enforced, removed and updated as one).
func ParseNetwork(n *Network) (*NetworkSpec, error) {
	spec, err := ParseStoredNetwork(n)
	if err != nil {
		return nil, err
	}
	for i, p := range spec.Policies {
		if !IsSupported(SupportedNetworkPolicies, p.Type) {
			return nil, UnsupportedPolicy("invalid network", i, p.Type, SupportedNetworkPolicies)
		}
	}
	for i, sub := range spec.Subnets {
		for j, p := range sub.Policies {
			if !IsSupported(SupportedSubnetPolicies, p.Type) {
				return nil, Unsupported("invalid network: subnet %d (%s): field Policies[%d]: policy type %s is not supported by this build (supported: %s)",
					i, sub.Prefix, j, p.Type, JoinTypes(SupportedSubnetPolicies))
			}
		}
	}
	if spec.ACLs, err = ParseNetworkACLs("network", spec.Policies); err != nil {
		return nil, err
	}
	if spec.Sets, err = ParseSetPolicies("network", spec.Policies); err != nil {
		return nil, err
	}
	if err := CheckSetReferences("network", spec.Policies, spec.Sets); err != nil {
		return nil, err
	}
	return spec, nil
}

// ParseStoredNetwork is ParseNetwork for a stored record: it does not
// check that this build enforces the network's policies, and NetworkACLs
// that no longer parse leave spec.ACLs empty instead of failing it, so
// that the service cuts the network's endpoints off rather than forgets
// the network.
func ParseStoredNetwork(n *Network) (*NetworkSpec, error) {
	if err := CheckSchemaVersion(n.SchemaVersion); err != nil {
		return nil, err
	}
	spec := &NetworkSpec{Type: n.Type, NonPersistent: n.Flags&NetworkEnableNonPersistent != 0}
	if spec.Type == "" {
		spec.Type = NAT
	}
	if !spec.Type.Known() {
		return nil, Invalid(CodeInvalidNetworkType, "invalid network: field Type: unknown network type %q (want one of %s)",
			string(n.Type), strings.Join(networkTypes.names, ", "))
	}
	if n.Name != "" {
		if err := checkName(n.Name); err != nil {
			return nil, invalidNetwork("Name", "%v", err)
		}
	}
	if n.UplinkMode != "" {
		switch {
		case strings.EqualFold(n.UplinkMode, UplinkBridge):
			n.UplinkMode = UplinkBridge
		case strings.EqualFold(n.UplinkMode, UplinkMacvlan):
			n.UplinkMode = UplinkMacvlan
		default:
			return nil, invalidNetwork("UplinkMode", "unknown uplink mode %q (want %s or %s)", truncate([]byte(n.UplinkMode), 64), UplinkMacvlan, UplinkBridge)
		}
		if spec.Type != Transparent {
			return nil, invalidNetwork("UplinkMode", "%s: only a Transparent network chooses how its endpoints sit on its uplink (this one is %s)", n.UplinkMode, spec.Type)
		}
		spec.UplinkBridge = n.UplinkMode == UplinkBridge
	}
	if n.Flags&NetworkDisableHostPort != 0 {
		return nil, Unsupported("invalid network: field Flags: DisableHostPort (1024) is not supported by this build")
	}
	if unknown := n.Flags &^ (NetworkEnableNonPersistent | NetworkDisableHostPort); unknown != 0 {
		return nil, invalidNetwork("Flags", "unknown flags %#x (known: EnableNonPersistent 8)", uint32(unknown))
	}
	if k, err := checkVerbatim(n.Health, n.Extra); err != nil {
		return nil, invalidNetwork(k, "%v", err)
	}
	if len(n.Policies) > MaxPolicies {
		return nil, invalidNetwork("Policies", "%d policies (at most %d)", len(n.Policies), MaxPolicies)
	}
	subnets, routes := 0, 0
	for _, ipam := range n.Ipams {
		subnets += len(ipam.Subnets)
		for _, s := range ipam.Subnets {
			routes += len(s.Routes)
		}
	}
	if len(n.Ipams) > MaxSubnets || subnets > MaxSubnets {
		return nil, invalidNetwork("Ipams", "%d subnets in %d Ipams (at most %d)", subnets, len(n.Ipams), MaxSubnets)
	}
	if routes > MaxNetworkRoutes {
		return nil, invalidNetwork("Ipams", "%d subnet routes (at most %d over all subnets: every endpoint receives them, in one netlink batch)", routes, MaxNetworkRoutes)
	}
	for i, ipam := range n.Ipams {
		field := fmt.Sprintf("Ipams[%d]", i)
		if ipam.Type != "" && !strings.EqualFold(ipam.Type, "Static") && !strings.EqualFold(ipam.Type, "DHCP") {
			return nil, invalidNetwork(field+".Type", "unknown IPAM type %q (want Static or DHCP)", ipam.Type)
		}
		if strings.EqualFold(ipam.Type, "DHCP") {
			spec.DHCP = true
		}
		for j := range ipam.Subnets {
			sub, err := parseSubnet(fmt.Sprintf("%s.Subnets[%d]", field, j), &ipam.Subnets[j], spec.Type)
			if err != nil {
				return nil, err
			}
			for k, other := range spec.Subnets {
				if sub.Prefix.Overlaps(other.Prefix) {
					return nil, invalidNetwork(field, "subnet %s overlaps subnet %s of the same network (subnet %d)", sub.Prefix, other.Prefix, k)
				}
			}
			spec.Subnets = append(spec.Subnets, sub)
		}
	}
	if n.MacPool != nil {
		if len(n.MacPool.Ranges) > MaxMacRanges {
			return nil, invalidNetwork("MacPool.Ranges", "%d ranges (at most %d)", len(n.MacPool.Ranges), MaxMacRanges)
		}
		for i, r := range n.MacPool.Ranges {
			field := fmt.Sprintf("MacPool.Ranges[%d]", i)
			rs, err := parseMacRange(field, r)
			if err != nil {
				return nil, err
			}
			spec.MacRanges = append(spec.MacRanges, rs)
		}
	}
	dns, err := parseDNS("Dns", n.Dns, invalidNetwork)
	if err != nil {
		return nil, err
	}
	spec.DNS = dns
	for i := range n.Policies {
		p := &n.Policies[i]
		if err := resolvePolicy("network", i, p, networkPolicyTypes); err != nil {
			return nil, err
		}
		spec.Policies = append(spec.Policies, *p)
		if p.Type == NetAdapterName {
			uplink, err := parseNetAdapterName(i, p)
			if err != nil {
				return nil, err
			}
			if spec.Uplink != "" && uplink != spec.Uplink {
				return nil, invalidNetwork(fmt.Sprintf("Policies[%d].Settings.NetworkAdapterName", i), "%q: the network already names adapter %q (one uplink per network)", uplink, spec.Uplink)
			}
			spec.Uplink = uplink
		}
		if p.Type == AutomaticDNS {
			on, err := parseAutomaticDNS(i, p)
			if err != nil {
				return nil, err
			}
			spec.AutomaticDNS = spec.AutomaticDNS || on
		}
	}
	return spec, nil
}

// parseNetAdapterName reads policy i, a NetAdapterName policy: the name of
// a host link.
func parseNetAdapterName(i int, p *Policy) (string, error) {
	field := fmt.Sprintf("Policies[%d].Settings.NetworkAdapterName", i)
	var s NetAdapterNameSettings
	if err := DecodeSettings(p.Settings, &s); err != nil {
		return "", invalidNetwork(fmt.Sprintf("Policies[%d].Settings", i), "NetAdapterName: %v", err)
	}
	if s.NetworkAdapterName == "" {
		return "", invalidNetwork(field, "empty: name the host adapter the network's endpoints go out by")
	}
	if err := ValidInterfaceName(s.NetworkAdapterName); err != nil {
		return "", invalidNetwork(field, "%v", err)
	}
	return s.NetworkAdapterName, nil
}

// parseMacRange validates a MacPool range: both ends unicast and not zero,
// in order, and every address between them unicast too. The multicast bit
// is the low bit of the first octet, so a range of unicast ends stays
// unicast exactly when both ends share their first octet.
func parseMacRange(field string, r MacRange) (MacRangeSpec, error) {
	start, err := ParseMAC(r.StartMacAddress)
	if err != nil {
		return MacRangeSpec{}, invalidNetwork(field+".StartMacAddress", "%v", err)
	}
	end, err := ParseMAC(r.EndMacAddress)
	if err != nil {
		return MacRangeSpec{}, invalidNetwork(field+".EndMacAddress", "%v", err)
	}
	if start[0]&1 != 0 || end[0]&1 != 0 {
		return MacRangeSpec{}, invalidNetwork(field, "%s-%s is a multicast range", FormatMAC(start), FormatMAC(end))
	}
	rs := MacRangeSpec{Start: MACToUint64(start), End: MACToUint64(end)}
	if rs.Start > rs.End {
		return MacRangeSpec{}, invalidNetwork(field, "start %s is after end %s", FormatMAC(start), FormatMAC(end))
	}
	if rs.Start == 0 {
		return MacRangeSpec{}, invalidNetwork(field+".StartMacAddress", "%s is the all-zero address, which no endpoint may have", FormatMAC(start))
	}
	if start[0] != end[0] {
		return MacRangeSpec{}, invalidNetwork(field, "%s-%s crosses multicast addresses (%02X-00-00-00-00-00 and up): both ends must share their first octet", FormatMAC(start), FormatMAC(end), start[0]|1)
	}
	return rs, nil
}

// SubnetFlagsKnown are the subnet flags of the HNS schema.
const SubnetFlagsKnown = SubnetDoNotReserveGatewayAddress

func parseSubnet(field string, s *Subnet, typ NetworkType) (SubnetSpec, error) {
	p, err := ParsePrefix(s.IpAddressPrefix)
	if err != nil {
		return SubnetSpec{}, invalidNetwork(field+".IpAddressPrefix", "%v", err)
	}
	if err := checkUsableSubnet(p); err != nil {
		return SubnetSpec{}, invalidNetwork(field+".IpAddressPrefix", "%v", err)
	}
	// The gateway and at least one endpoint must fit, with the network and
	// broadcast addresses of IPv4 set aside.
	if (p.Addr().Is4() && p.Bits() > 30) || (p.Addr().Is6() && p.Bits() > 126) {
		return SubnetSpec{}, invalidNetwork(field+".IpAddressPrefix", "subnet %s is too small (at most /30 for IPv4, /126 for IPv6)", p)
	}
	if unknown := s.Flags &^ SubnetFlagsKnown; unknown != 0 {
		return SubnetSpec{}, invalidNetwork(field+".Flags", "unknown flags %#x (known: DoNotReserveGatewayAddress 1)", uint32(unknown))
	}
	sub := SubnetSpec{Prefix: p, Range: p, ReserveGateway: s.Flags&SubnetDoNotReserveGatewayAddress == 0}
	if s.IpRange != "" {
		r, err := ParsePrefix(s.IpRange)
		if err != nil {
			return SubnetSpec{}, invalidNetwork(field+".IpRange", "%v", err)
		}
		if r.Addr().Is4() != p.Addr().Is4() || r.Bits() < p.Bits() || !p.Contains(r.Addr()) {
			return SubnetSpec{}, invalidNetwork(field+".IpRange", "range %s is not inside subnet %s", r, p)
		}
		sub.Range = r
	}
	for i, r := range s.Routes {
		rf := fmt.Sprintf("%s.Routes[%d]", field, i)
		rs, err := parseRoute(rf, r, invalidNetwork)
		if err != nil {
			return SubnetSpec{}, err
		}
		if rs.Dst.Addr().Is4() != p.Addr().Is4() {
			return SubnetSpec{}, invalidNetwork(rf+".DestinationPrefix", "%s is not of the subnet's address family (%s)", rs.Dst, p)
		}
		if rs.Dst.Bits() == 0 && rs.NextHop.IsValid() {
			if !p.Contains(rs.NextHop) {
				return SubnetSpec{}, invalidNetwork(rf+".NextHop", "gateway %s is outside subnet %s", rs.NextHop, p)
			}
			if isNetworkOrBroadcast(p, rs.NextHop) {
				return SubnetSpec{}, invalidNetwork(rf+".NextHop", "gateway %s is the network or broadcast address of %s", rs.NextHop, p)
			}
			sub.Gateway = rs.NextHop
		}
		sub.Routes = append(sub.Routes, rs)
	}
	if !sub.Gateway.IsValid() {
		sub.Gateway = p.Addr().Next()
	}
	if !sub.ReserveGateway && typ == NAT {
		return SubnetSpec{}, invalidNetwork(field+".Flags", "DoNotReserveGatewayAddress (1) would hand the gateway %s to an endpoint, but on a NAT network it is the address of the network's own bridge", sub.Gateway)
	}
	if len(s.Policies) > MaxSubnetPolicies {
		return SubnetSpec{}, invalidNetwork(field+".Policies", "%d policies (at most %d)", len(s.Policies), MaxSubnetPolicies)
	}
	for i := range s.Policies {
		pol := &s.Policies[i]
		pol.Type = pol.Type.resolve(subnetPolicyTypes)
		if !subnetPolicyTypes.known(string(pol.Type)) {
			return SubnetSpec{}, Invalid(CodeInvalidPolicyType, "invalid network: field %s.Policies[%d].Type: unknown subnet policy type %q", field, i, string(pol.Type))
		}
		if err := checkSettings(pol.Settings); err != nil {
			return SubnetSpec{}, invalidNetwork(fmt.Sprintf("%s.Policies[%d]", field, i), "%v", err)
		}
		sub.Policies = append(sub.Policies, *pol)
	}
	return sub, nil
}

// isNetworkOrBroadcast reports whether a is the first address of p, or, for
// IPv4, its last.
func isNetworkOrBroadcast(p netip.Prefix, a netip.Addr) bool {
	if a == p.Masked().Addr() {
		return true
	}
	return a.Is4() && a == LastAddr(p)
}

// LastAddr returns the last address of p.
func LastAddr(p netip.Prefix) netip.Addr {
	b := p.Masked().Addr().AsSlice()
	bits := p.Bits()
	for i := range b {
		for j := 0; j < 8; j++ {
			if i*8+j >= bits {
				b[i] |= 0x80 >> j
			}
		}
	}
	a, _ := netip.AddrFromSlice(b)
	return a
}

type errorFunc func(field, format string, args ...any) *Error

func parseRoute(field string, r Route, fail errorFunc) (RouteSpec, error) {
	dst, err := ParsePrefix(r.DestinationPrefix)
	if err != nil {
		return RouteSpec{}, fail(field+".DestinationPrefix", "%v", err)
	}
	rs := RouteSpec{Dst: dst, Metric: uint32(r.Metric)}
	if r.NextHop != "" {
		nh, err := ParseAddr(r.NextHop)
		if err != nil {
			return RouteSpec{}, fail(field+".NextHop", "%v", err)
		}
		if nh.Is4() != dst.Addr().Is4() {
			return RouteSpec{}, fail(field+".NextHop", "%s is not of the family of %s", nh, dst)
		}
		rs.NextHop = nh
	}
	return rs, nil
}

func parseDNS(field string, d *DNS, fail errorFunc) (DNSSpec, error) {
	if d == nil {
		return DNSSpec{}, nil
	}
	spec := DNSSpec{Domain: d.Domain, Search: d.Search, Options: d.Options}
	if spec.Domain == "" {
		spec.Domain = d.Suffix
	}
	servers := 0
	for _, s := range d.ServerList {
		servers += splitCount(s)
	}
	for _, l := range []struct {
		name string
		n    int
	}{{"ServerList", servers}, {"Search", len(d.Search)}, {"Options", len(d.Options)}} {
		if l.n > MaxDNSEntries {
			return DNSSpec{}, fail(field+"."+l.name, "%d entries (at most %d)", l.n, MaxDNSEntries)
		}
	}
	for i, s := range d.ServerList {
		// Windows clients sometimes send a comma-separated list in one entry.
		for _, part := range strings.Split(s, ",") {
			if strings.TrimSpace(part) == "" {
				continue
			}
			a, err := ParseAddr(part)
			if err != nil {
				return DNSSpec{}, fail(fmt.Sprintf("%s.ServerList[%d]", field, i), "%v", err)
			}
			spec.Servers = append(spec.Servers, a)
		}
	}
	for _, f := range []struct {
		name string
		v    string
	}{{"Domain", d.Domain}, {"Suffix", d.Suffix}} {
		if err := checkDNSEntry(f.v, false); err != nil {
			return DNSSpec{}, fail(field+"."+f.name, "%v", err)
		}
	}
	for i, s := range d.Search {
		if err := checkDNSEntry(s, false); err != nil {
			return DNSSpec{}, fail(fmt.Sprintf("%s.Search[%d]", field, i), "%v", err)
		}
	}
	for i, s := range d.Options {
		if err := checkDNSEntry(s, true); err != nil {
			return DNSSpec{}, fail(fmt.Sprintf("%s.Options[%d]", field, i), "%v", err)
		}
	}
	return spec, nil
}

// EndpointSpec is the validated form of an Endpoint, on its own (the
// service checks it against its network).
type EndpointSpec struct {
	Addrs  []netip.Prefix // requested static addresses; Bits() is 0 when PrefixLength was absent
	MAC    net.HardwareAddr
	Routes []RouteSpec
	DNS    DNSSpec
	// Policies have their Type resolved to a name; Parsed is what they say.
	Policies []Policy
	Parsed   *EndpointPolicies
}

// EndpointFlagsKnown are the endpoint flags of the HNS schema.
const EndpointFlagsKnown = EndpointRemote | EndpointDisableICC | EndpointEnableLowInterfaceMetric | EndpointEnableDHCP

// ParseEndpoint validates e and returns its parsed form.
//
// ParseEndpoint also puts e in its canonical form, in place, so that what
// the service stores is what it enforces: policy types become their names,
// and an OutBoundNAT policy's Settings list its exceptions as the firewall
// holds them (masked, duplicates and prefixes covered by another dropped;
// see ParseOutboundNAT), when that differs from what the client sent.
func ParseEndpoint(e *Endpoint) (*EndpointSpec, error) {
	spec, err := ParseStoredEndpoint(e)
	if err != nil {
		return nil, err
	}
	if spec.Parsed, err = ParseEndpointPolicies("invalid endpoint", spec.Policies); err != nil {
		return nil, err
	}
	return spec, nil
}

// ParseStoredEndpoint is ParseEndpoint for a stored record: policies whose
// settings no longer parse leave spec.Parsed nil instead of failing it, so
// that the service cuts the endpoint off (its firewall admits nothing)
// rather than forgets it.
func ParseStoredEndpoint(e *Endpoint) (*EndpointSpec, error) {
	if err := CheckSchemaVersion(e.SchemaVersion); err != nil {
		return nil, err
	}
	if e.Name != "" {
		if err := checkName(e.Name); err != nil {
			return nil, invalidEndpoint("Name", "%v", err)
		}
	}
	if e.HostInterfaceName != "" {
		return nil, invalidEndpoint("HostInterfaceName", "is read-only (got %q)", e.HostInterfaceName)
	}
	if e.NetNamespacePath != "" {
		if e.HostComputeNamespace == "" {
			return nil, invalidEndpoint("NetNamespacePath", "needs HostComputeNamespace, the namespace to attach to (found, or created wrapping %q)", e.NetNamespacePath)
		}
		if err := checkPath(e.NetNamespacePath); err != nil {
			return nil, invalidEndpoint("NetNamespacePath", "%v", err)
		}
	}
	for _, ref := range []struct{ field, v string }{{"HostComputeNetwork", e.HostComputeNetwork}, {"HostComputeNamespace", e.HostComputeNamespace}} {
		if len(ref.v) > MaxNameLen {
			return nil, invalidEndpoint(ref.field, "is %d bytes long: no object has such an ID or name", len(ref.v))
		}
	}
	if e.InterfaceName != "" {
		if err := ValidInterfaceName(e.InterfaceName); err != nil {
			return nil, invalidEndpoint("InterfaceName", "%v", err)
		}
		if e.InterfaceName == "lo" {
			return nil, invalidEndpoint("InterfaceName", "%q is the loopback device", e.InterfaceName)
		}
	}
	if unknown := e.Flags &^ EndpointFlagsKnown; unknown != 0 {
		return nil, invalidEndpoint("Flags", "unknown flags %#x (known: RemoteEndpoint 1, DisableICC 2, EnableLowInterfaceMetric 8, EnableDhcp 32)", uint32(unknown))
	}
	if k, err := checkVerbatim(e.Health, e.Extra); err != nil {
		return nil, invalidEndpoint(k, "%v", err)
	}
	if len(e.IpConfigurations) > MaxIPConfigurations {
		return nil, invalidEndpoint("IpConfigurations", "%d addresses (at most %d)", len(e.IpConfigurations), MaxIPConfigurations)
	}
	if len(e.Policies) > MaxPolicies {
		return nil, invalidEndpoint("Policies", "%d policies (at most %d)", len(e.Policies), MaxPolicies)
	}
	spec := &EndpointSpec{}
	seen := make(map[netip.Addr]bool, len(e.IpConfigurations))
	for i, c := range e.IpConfigurations {
		field := fmt.Sprintf("IpConfigurations[%d]", i)
		a, err := ParseAddr(c.IpAddress)
		if err != nil {
			return nil, Invalid(CodeInvalidIP, "invalid endpoint: field %s.IpAddress: %v", field, err)
		}
		max := 32
		if a.Is6() {
			max = 128
		}
		if int(c.PrefixLength) > max {
			return nil, invalidEndpoint(field+".PrefixLength", "%d is longer than %d", c.PrefixLength, max)
		}
		if seen[a] {
			return nil, Invalid(CodeInvalidIP, "invalid endpoint: field %s.IpAddress: %s is listed twice", field, a)
		}
		seen[a] = true
		spec.Addrs = append(spec.Addrs, netip.PrefixFrom(a, int(c.PrefixLength)))
	}
	if e.MacAddress != "" {
		mac, err := ParseMAC(e.MacAddress)
		if err != nil {
			return nil, invalidEndpoint("MacAddress", "%v", err)
		}
		if err := checkUnicastMAC(mac); err != nil {
			return nil, invalidEndpoint("MacAddress", "%v", err)
		}
		spec.MAC = mac
	}
	sdnRoutes := 0
	for i := range e.Policies {
		t := e.Policies[i].Type.resolve(endpointPolicyTypes)
		if t == SDNRoute {
			sdnRoutes++
		}
	}
	if n := len(e.Routes) + sdnRoutes; n > MaxEndpointRoutes {
		return nil, invalidEndpoint("Routes", "%d routes and %d SDNRoute policies make %d routes (at most %d together: an attach programs them in one netlink batch)",
			len(e.Routes), sdnRoutes, n, MaxEndpointRoutes)
	}
	for i, r := range e.Routes {
		rs, err := parseRoute(fmt.Sprintf("Routes[%d]", i), r, invalidEndpoint)
		if err != nil {
			return nil, err
		}
		spec.Routes = append(spec.Routes, rs)
	}
	dns, err := parseDNS("Dns", e.Dns, invalidEndpoint)
	if err != nil {
		return nil, err
	}
	spec.DNS = dns
	if err := checkDNSAliases(e.DnsAliases); err != nil {
		return nil, err
	}
	for i := range e.Policies {
		p := &e.Policies[i]
		if err := resolvePolicy("endpoint", i, p, endpointPolicyTypes); err != nil {
			return nil, err
		}
		if p.Type == OutBoundNAT {
			o, canonical, err := parseOutboundNAT("endpoint", i, *p)
			if err != nil {
				return nil, err
			}
			if err := checkVIPFamily(i, o.VirtualIP, spec.Addrs); err != nil {
				return nil, err
			}
			if canonical != nil {
				p.Settings = canonical
			}
		}
		spec.Policies = append(spec.Policies, *p)
	}
	return spec, nil
}

// checkVIPFamily refuses an OutBoundNAT VirtualIP of a family none of the
// endpoint's addresses has: nothing of the endpoint would ever be
// translated to it. Only the addresses the document lists are known here
// (static ones at creation, all of them once allocated).
func checkVIPFamily(index int, vip netip.Addr, addrs []netip.Prefix) error {
	if !vip.IsValid() || len(addrs) == 0 {
		return nil
	}
	for _, a := range addrs {
		if a.Addr().Is4() == vip.Is4() {
			return nil
		}
	}
	fam := "IPv6"
	if vip.Is4() {
		fam = "IPv4"
	}
	return invalidPolicy("endpoint", index, OutBoundNAT, "field VirtualIP: %s is an %s address, but the endpoint has no %s address (IpConfigurations)", vip, fam, fam)
}

// CheckVIPFamilies refuses an OutBoundNAT VirtualIP of a family none of
// addrs, the endpoint's addresses once allocated, has (ParseEndpoint knows
// only the static ones). The policies are the endpoint's, parsed.
func CheckVIPFamilies(policies []Policy, addrs []netip.Prefix) error {
	for i, p := range policies {
		if p.Type != OutBoundNAT {
			continue
		}
		o, _, err := parseOutboundNAT("endpoint", i, p)
		if err != nil {
			return err
		}
		if err := checkVIPFamily(i, o.VirtualIP, addrs); err != nil {
			return err
		}
	}
	return nil
}

// checkPath validates a path to a Linux namespace.
func checkPath(p string) error {
	if len(p) > MaxPathLen {
		return fmt.Errorf("is %d bytes long (at most %d)", len(p), MaxPathLen)
	}
	if strings.IndexByte(p, 0) >= 0 {
		return fmt.Errorf("%q has a NUL byte", p)
	}
	if !filepath.IsAbs(p) {
		return fmt.Errorf("%q is not an absolute path", p)
	}
	return nil
}

// ParseNamespace validates a namespace document sent for creation.
func ParseNamespace(n *Namespace) error {
	if err := CheckSchemaVersion(n.SchemaVersion); err != nil {
		return err
	}
	fail := func(field, format string, args ...any) error {
		return Invalid(CodeInvalidNamespace, "invalid namespace: field %s: %s", field, fmt.Sprintf(format, args...))
	}
	if n.Type != "" && !n.Type.Known() {
		return fail("Type", "unknown namespace type %q (want Host, HostDefault, Guest or GuestDefault)", string(n.Type))
	}
	if n.Name != "" {
		if err := checkName(n.Name); err != nil {
			return fail("Name", "%v", err)
		}
	}
	if n.NetNamespacePath != "" {
		if err := checkPath(n.NetNamespacePath); err != nil {
			return fail("NetNamespacePath", "%v", err)
		}
	}
	if n.Managed {
		return fail("Managed", "is read-only")
	}
	if n.Implicit {
		return fail("Implicit", "is read-only")
	}
	for _, k := range n.Extra.keys() {
		if strings.EqualFold(k, "ResolvConfPath") {
			return fail(k, "is read-only: hostnet reports where it writes the namespace's resolv.conf (got %s)", truncate(n.Extra[k], 80))
		}
	}
	var budget verbatimBudget
	if k, err := budget.checkExtra(n.Extra); err != nil {
		return fail(k, "%v", err)
	}
	if len(n.Resources) > MaxNamespaceResources {
		return fail("Resources", "%d resources (at most %d)", len(n.Resources), MaxNamespaceResources)
	}
	for i, r := range n.Resources {
		if r.Type == NamespaceResourceEndpoint {
			return fail(fmt.Sprintf("Resources[%d]", i), "endpoints are attached with a modify request after the namespace exists")
		}
		if r.Type != NamespaceResourceContainer {
			return fail(fmt.Sprintf("Resources[%d].Type", i), "unknown resource type %q (want Container)", string(r.Type))
		}
		if err := budget.check(r.Data); err != nil {
			return fail(fmt.Sprintf("Resources[%d].Data", i), "%v", err)
		}
	}
	return nil
}

// truncate quotes at most n bytes of b for a message.
func truncate(b []byte, n int) string {
	if len(b) > n {
		return string(b[:n]) + "..."
	}
	return string(b)
}

// ResolveModify checks a modify request sent to an object of the given kind
// ("network", "endpoint" or "namespace") and resolves its resource type.
func ResolveModify(kind string, req *ModifyRequest) error {
	table := map[string]enumTable{"network": networkResources, "endpoint": endpointResources, "namespace": namespaceResources}[kind]
	req.ResourceType = req.ResourceType.resolve(table)
	if !table.known(string(req.ResourceType)) {
		return Invalid(CodeInvalidModifyRequest, "invalid %s modify request: field ResourceType: %q is not one of %s",
			kind, string(req.ResourceType), strings.Join(table.names, ", "))
	}
	if !requestTypes.known(string(req.RequestType)) {
		return Invalid(CodeInvalidModifyRequest, "invalid %s modify request: field RequestType: %q is not one of %s",
			kind, string(req.RequestType), strings.Join(requestTypes.names, ", "))
	}
	if req.ResourceType == ResourcePolicy {
		// Bounded before the service merges the request with the stored
		// policies; a request that does not decode is refused there.
		var pr struct{ Policies []json.RawMessage }
		if json.Unmarshal(req.Settings, &pr) == nil && len(pr.Policies) > MaxPolicies {
			return Invalid(CodeInvalidPolicy, "invalid %s modify request: field Settings.Policies: %d policies (at most %d)",
				kind, len(pr.Policies), MaxPolicies)
		}
	}
	return nil
}

// DecodeSettings decodes the Settings of a policy or request strictly:
// unknown fields are refused, so a misspelt setting is not silently dropped.
func DecodeSettings(raw json.RawMessage, v any) error {
	if len(bytes.TrimSpace(raw)) == 0 {
		raw = json.RawMessage("{}")
	}
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.DisallowUnknownFields()
	return dec.Decode(v)
}

// ResolvePolicyType resolves a numeric endpoint policy type to its name.
func ResolveEndpointPolicyType(t PolicyType) PolicyType { return t.resolve(endpointPolicyTypes) }

// ResolveNetworkPolicyType resolves a numeric network policy type to its name.
func ResolveNetworkPolicyType(t PolicyType) PolicyType { return t.resolve(networkPolicyTypes) }
