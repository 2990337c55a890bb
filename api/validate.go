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
}

// MacRangeSpec is a validated inclusive MAC range, as 48-bit numbers.
type MacRangeSpec struct{ Start, End uint64 }

// NetworkSpec is the validated form of a Network.
type NetworkSpec struct {
	Type          NetworkType
	Subnets       []SubnetSpec
	MacRanges     []MacRangeSpec
	DNS           DNSSpec
	Policies      []Policy
	NonPersistent bool
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

// CheckSchemaVersion refuses documents of another major schema version.
func CheckSchemaVersion(v SchemaVersion) error {
	if v.Major != 0 && v.Major != 2 {
		return Invalid(CodeRequestUnsupported, "field SchemaVersion: version %d.%d is not supported (want 2.x)", v.Major, v.Minor)
	}
	return nil
}

// ParseNetwork validates n and returns its parsed form. It checks the
// document on its own; what depends on other objects or on the build
// (overlaps, supported types) is checked by the service.
func ParseNetwork(n *Network) (*NetworkSpec, error) {
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
	if n.Name != "" && strings.ContainsAny(n.Name, "/\x00") {
		return nil, invalidNetwork("Name", "%q must not contain '/'", n.Name)
	}
	for i, ipam := range n.Ipams {
		field := fmt.Sprintf("Ipams[%d]", i)
		if ipam.Type != "" && !strings.EqualFold(ipam.Type, "Static") && !strings.EqualFold(ipam.Type, "DHCP") {
			return nil, invalidNetwork(field+".Type", "unknown IPAM type %q (want Static or DHCP)", ipam.Type)
		}
		for j, s := range ipam.Subnets {
			sub, err := parseSubnet(fmt.Sprintf("%s.Subnets[%d]", field, j), s)
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
		for i, r := range n.MacPool.Ranges {
			field := fmt.Sprintf("MacPool.Ranges[%d]", i)
			start, err := ParseMAC(r.StartMacAddress)
			if err != nil {
				return nil, invalidNetwork(field+".StartMacAddress", "%v", err)
			}
			end, err := ParseMAC(r.EndMacAddress)
			if err != nil {
				return nil, invalidNetwork(field+".EndMacAddress", "%v", err)
			}
			if start[0]&1 != 0 || end[0]&1 != 0 {
				return nil, invalidNetwork(field, "%s-%s is a multicast range", FormatMAC(start), FormatMAC(end))
			}
			rs := MacRangeSpec{Start: MACToUint64(start), End: MACToUint64(end)}
			if rs.Start > rs.End {
				return nil, invalidNetwork(field, "start %s is after end %s", FormatMAC(start), FormatMAC(end))
			}
			spec.MacRanges = append(spec.MacRanges, rs)
		}
	}
	dns, err := parseDNS("Dns", n.Dns, invalidNetwork)
	if err != nil {
		return nil, err
	}
	spec.DNS = dns
	for i, p := range n.Policies {
		p.Type = p.Type.resolve(networkPolicyTypes)
		if !networkPolicyTypes.known(string(p.Type)) {
			return nil, Invalid(CodeInvalidPolicyType, "invalid network: field Policies[%d].Type: unknown network policy type %q", i, string(p.Type))
		}
		spec.Policies = append(spec.Policies, p)
	}
	return spec, nil
}

func parseSubnet(field string, s Subnet) (SubnetSpec, error) {
	p, err := ParsePrefix(s.IpAddressPrefix)
	if err != nil {
		return SubnetSpec{}, invalidNetwork(field+".IpAddressPrefix", "%v", err)
	}
	// The gateway and at least one endpoint must fit, with the network and
	// broadcast addresses of IPv4 set aside.
	if (p.Addr().Is4() && p.Bits() > 30) || (p.Addr().Is6() && p.Bits() > 126) {
		return SubnetSpec{}, invalidNetwork(field+".IpAddressPrefix", "subnet %s is too small (at most /30 for IPv4, /126 for IPv6)", p)
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
	for i, pol := range s.Policies {
		pol.Type = pol.Type.resolve(subnetPolicyTypes)
		if !subnetPolicyTypes.known(string(pol.Type)) {
			return SubnetSpec{}, Invalid(CodeInvalidPolicyType, "invalid network: field %s.Policies[%d].Type: unknown subnet policy type %q", field, i, string(pol.Type))
		}
		sub.Policies = append(sub.Policies, pol)
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
	for i, s := range append(append([]string{spec.Domain}, d.Search...), d.Options...) {
		if strings.ContainsAny(s, "\n\r\x00") {
			return DNSSpec{}, fail(field, "entry %d (%q) has a line break", i, s)
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
	// Policies have their Type resolved to a name.
	Policies []Policy
}

// ParseEndpoint validates e and returns its parsed form.
func ParseEndpoint(e *Endpoint) (*EndpointSpec, error) {
	if err := CheckSchemaVersion(e.SchemaVersion); err != nil {
		return nil, err
	}
	if e.Name != "" && strings.ContainsAny(e.Name, "/\x00") {
		return nil, invalidEndpoint("Name", "%q must not contain '/'", e.Name)
	}
	if e.HostInterfaceName != "" {
		return nil, invalidEndpoint("HostInterfaceName", "is read-only (got %q)", e.HostInterfaceName)
	}
	if e.NetNamespacePath != "" {
		if e.HostComputeNamespace == "" {
			return nil, invalidEndpoint("NetNamespacePath", "needs HostComputeNamespace, the namespace to attach to (found, or created wrapping %q)", e.NetNamespacePath)
		}
		if !filepath.IsAbs(e.NetNamespacePath) {
			return nil, invalidEndpoint("NetNamespacePath", "%q is not an absolute path", e.NetNamespacePath)
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
	spec := &EndpointSpec{}
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
		for _, prev := range spec.Addrs {
			if prev.Addr() == a {
				return nil, Invalid(CodeInvalidIP, "invalid endpoint: field %s.IpAddress: %s is listed twice", field, a)
			}
		}
		spec.Addrs = append(spec.Addrs, netip.PrefixFrom(a, int(c.PrefixLength)))
	}
	if e.MacAddress != "" {
		mac, err := ParseMAC(e.MacAddress)
		if err != nil {
			return nil, invalidEndpoint("MacAddress", "%v", err)
		}
		if mac[0]&1 != 0 {
			return nil, invalidEndpoint("MacAddress", "%s is a multicast address", e.MacAddress)
		}
		spec.MAC = mac
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
	for i, p := range e.Policies {
		p.Type = p.Type.resolve(endpointPolicyTypes)
		if !endpointPolicyTypes.known(string(p.Type)) {
			return nil, Invalid(CodeInvalidPolicyType, "invalid endpoint: field Policies[%d].Type: unknown endpoint policy type %q", i, string(p.Type))
		}
		spec.Policies = append(spec.Policies, p)
	}
	return spec, nil
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
		if strings.ContainsAny(n.Name, "/\x00") || n.Name == "." || n.Name == ".." {
			return fail("Name", "%q must not contain '/'", n.Name)
		}
	}
	if n.NetNamespacePath != "" && !filepath.IsAbs(n.NetNamespacePath) {
		return fail("NetNamespacePath", "%q is not an absolute path", n.NetNamespacePath)
	}
	if n.Managed {
		return fail("Managed", "is read-only")
	}
	if n.Implicit {
		return fail("Implicit", "is read-only")
	}
	for i, r := range n.Resources {
		if r.Type == NamespaceResourceEndpoint {
			return fail(fmt.Sprintf("Resources[%d]", i), "endpoints are attached with a modify request after the namespace exists")
		}
		if r.Type != NamespaceResourceContainer {
			return fail(fmt.Sprintf("Resources[%d].Type", i), "unknown resource type %q (want Container)", string(r.Type))
		}
	}
	return nil
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
