package api

import (
	"fmt"
	"net/netip"
	"sort"
	"strconv"
	"strings"
)

// ACL actions, directions and rule types, by name or number as HNS sends
// them.
var (
	aclActions    = enumTable{"Action", []string{"Allow", "Block"}}
	aclDirections = enumTable{"Direction", []string{"In", "Out"}}
	aclRuleTypes  = enumTable{"RuleType", []string{"Host", "Switch"}}
)

// ACLAction is what an ACL rule does with the packets it matches.
type ACLAction string

// The ACL actions.
const (
	ACLAllow ACLAction = "Allow"
	ACLBlock ACLAction = "Block"
)

// ACLDirection says which packets of an endpoint an ACL rule looks at: In
// (towards the endpoint) or Out (from it).
type ACLDirection string

// The ACL directions.
const (
	ACLIn  ACLDirection = "In"
	ACLOut ACLDirection = "Out"
)

// PortRange is an inclusive range of transport ports.
type PortRange struct{ From, To uint16 }

func (r PortRange) String() string {
	if r.From == r.To {
		return strconv.Itoa(int(r.From))
	}
	return fmt.Sprintf("%d-%d", r.From, r.To)
}

// ACLSpec is a validated ACL rule. A nil list means "any".
type ACLSpec struct {
	ID          string
	Action      ACLAction
	Direction   ACLDirection
	Protocols   []uint8 // IANA numbers
	Local       []netip.Prefix
	Remote      []netip.Prefix
	LocalPorts  []PortRange
	RemotePorts []PortRange
	Priority    uint16
	RuleType    string
}

// Protocol numbers hostnet names.
const (
	ProtoICMP   = 1
	ProtoIGMP   = 2
	ProtoTCP    = 6
	ProtoUDP    = 17
	ProtoICMPv6 = 58
)

var protocolNames = map[string]uint8{"icmp": ProtoICMP, "igmp": ProtoIGMP, "tcp": ProtoTCP, "udp": ProtoUDP, "icmpv6": ProtoICMPv6}

// ParseProtocols parses a comma-separated list of IANA protocol numbers
// ("6", "1,58"; names tcp, udp, icmp, icmpv6, igmp are accepted too). An
// empty list, "*", "any" or 256 mean any protocol (nil).
func ParseProtocols(s string) ([]uint8, error) {
	var out []uint8
	for _, part := range splitList(s) {
		switch strings.ToLower(part) {
		case "*", "any", "256":
			return nil, nil
		}
		if n, ok := protocolNames[strings.ToLower(part)]; ok {
			out = appendUnique(out, n)
			continue
		}
		n, err := strconv.ParseUint(part, 10, 16)
		if err != nil || n > 255 {
			return nil, fmt.Errorf("%q is not a protocol number (0-255, or 256 for any)", part)
		}
		out = appendUnique(out, uint8(n))
	}
	sort.Slice(out, func(i, j int) bool { return out[i] < out[j] })
	return out, nil
}

func appendUnique(s []uint8, v uint8) []uint8 {
	for _, x := range s {
		if x == v {
			return s
		}
	}
	return append(s, v)
}

func splitList(s string) []string {
	var out []string
	for _, part := range strings.Split(s, ",") {
		if p := strings.TrimSpace(part); p != "" {
			out = append(out, p)
		}
	}
	return out
}

// ParseAddressList parses comma-separated IPs and CIDR prefixes, of either
// family. An empty list, "*" or "any" mean any address (nil).
func ParseAddressList(s string) ([]netip.Prefix, error) {
	var out []netip.Prefix
	for _, part := range splitList(s) {
		switch strings.ToLower(part) {
		case "*", "any":
			return nil, nil
		}
		if strings.Contains(part, "/") {
			p, err := ParsePrefix(part)
			if err != nil {
				return nil, err
			}
			out = append(out, p)
			continue
		}
		a, err := ParseAddr(part)
		if err != nil {
			return nil, err
		}
		out = append(out, netip.PrefixFrom(a, a.BitLen()))
	}
	return out, nil
}

// ParsePortList parses comma-separated ports and ranges ("80,8000-8080").
// An empty list, "*", "any" or "0" mean any port (nil).
func ParsePortList(s string) ([]PortRange, error) {
	var out []PortRange
	for _, part := range splitList(s) {
		switch strings.ToLower(part) {
		case "*", "any", "0":
			return nil, nil
		}
		from, to, isRange := strings.Cut(part, "-")
		lo, err1 := strconv.ParseUint(strings.TrimSpace(from), 10, 16)
		hi := lo
		var err2 error
		if isRange {
			hi, err2 = strconv.ParseUint(strings.TrimSpace(to), 10, 16)
		}
		if err1 != nil || err2 != nil || lo == 0 || hi < lo {
			return nil, fmt.Errorf("%q is not a port or a port range (1-65535, low-high)", part)
		}
		out = append(out, PortRange{uint16(lo), uint16(hi)})
	}
	return out, nil
}

func invalidPolicy(owner string, index int, typ PolicyType, format string, args ...any) *Error {
	return Invalid(CodeInvalidPolicy, "invalid %s: field Policies[%d] (%s): %s", owner, index, typ, fmt.Sprintf(format, args...))
}

// ParseACL validates the Settings of an ACL (or NetworkACL) policy; owner
// and index name the policy in errors ("invalid endpoint", 3).
func ParseACL(owner string, index int, typ PolicyType, p Policy) (ACLSpec, error) {
	var s ACLSettings
	if err := DecodeSettings(p.Settings, &s); err != nil {
		return ACLSpec{}, invalidPolicy(owner, index, typ, "%v", err)
	}
	spec := ACLSpec{ID: s.Id, Priority: s.Priority}
	spec.Action = ACLAction(aclActions.resolveText(string(s.Action)))
	if !aclActions.known(string(spec.Action)) {
		return ACLSpec{}, invalidPolicy(owner, index, typ, "field Action: %q is not Allow or Block", s.Action)
	}
	spec.Direction = ACLDirection(aclDirections.resolveText(string(s.Direction)))
	if !aclDirections.known(string(spec.Direction)) {
		return ACLSpec{}, invalidPolicy(owner, index, typ, "field Direction: %q is not In or Out", s.Direction)
	}
	spec.RuleType = aclRuleTypes.resolveText(string(s.RuleType))
	if spec.RuleType != "" && !aclRuleTypes.known(spec.RuleType) {
		return ACLSpec{}, invalidPolicy(owner, index, typ, "field RuleType: %q is not Host or Switch", s.RuleType)
	}
	var err error
	if spec.Protocols, err = ParseProtocols(string(s.Protocols)); err != nil {
		return ACLSpec{}, invalidPolicy(owner, index, typ, "field Protocols: %v", err)
	}
	if spec.Local, err = ParseAddressList(s.LocalAddresses); err != nil {
		return ACLSpec{}, invalidPolicy(owner, index, typ, "field LocalAddresses: %v", err)
	}
	if spec.Remote, err = ParseAddressList(s.RemoteAddresses); err != nil {
		return ACLSpec{}, invalidPolicy(owner, index, typ, "field RemoteAddresses: %v", err)
	}
	if spec.LocalPorts, err = ParsePortList(string(s.LocalPorts)); err != nil {
		return ACLSpec{}, invalidPolicy(owner, index, typ, "field LocalPorts: %v", err)
	}
	if spec.RemotePorts, err = ParsePortList(string(s.RemotePorts)); err != nil {
		return ACLSpec{}, invalidPolicy(owner, index, typ, "field RemotePorts: %v", err)
	}
	if spec.LocalPorts != nil || spec.RemotePorts != nil {
		for _, proto := range spec.Protocols {
			if proto != ProtoTCP && proto != ProtoUDP {
				return ACLSpec{}, invalidPolicy(owner, index, typ, "field Protocols: ports apply to TCP (6) and UDP (17) only, got protocol %d", proto)
			}
		}
	}
	return spec, nil
}

// PortMappingFlags of the HCN schema.
const (
	PortMappingLocalRoutedVIP uint32 = 1
	PortMappingIPv6           uint32 = 2
)

// PortMappingSpec is a validated PortMapping policy.
type PortMappingSpec struct {
	Protocol     uint8 // ProtoTCP or ProtoUDP
	InternalPort uint16
	ExternalPort uint16
	VIP          netip.Addr // zero: every address of the host
	IPv6         bool
	// CallerHolds: the caller binds the host port or leaves it unbound;
	// hostnet holds no socket on it (PortMappingSettings.CallerHoldsHostPort).
	CallerHolds bool
}

// ProtocolName is "tcp" or "udp".
func (m PortMappingSpec) ProtocolName() string {
	if m.Protocol == ProtoUDP {
		return "udp"
	}
	return "tcp"
}

// ParsePortMapping validates the Settings of a PortMapping policy. An
// absent ExternalPort publishes the internal port on the same number; an
// absent Protocol is TCP.
func ParsePortMapping(owner string, index int, p Policy) (PortMappingSpec, error) {
	var s PortMappingSettings
	if err := DecodeSettings(p.Settings, &s); err != nil {
		return PortMappingSpec{}, invalidPolicy(owner, index, PortMapping, "%v", err)
	}
	spec := PortMappingSpec{Protocol: ProtoTCP, InternalPort: s.InternalPort, ExternalPort: s.ExternalPort, IPv6: s.Flags&PortMappingIPv6 != 0,
		CallerHolds: s.CallerHoldsHostPort}
	switch s.Protocol {
	case 0, ProtoTCP:
	case ProtoUDP:
		spec.Protocol = ProtoUDP
	default:
		return PortMappingSpec{}, invalidPolicy(owner, index, PortMapping, "field Protocol: %d is not TCP (6) or UDP (17)", s.Protocol)
	}
	if s.InternalPort == 0 {
		return PortMappingSpec{}, invalidPolicy(owner, index, PortMapping, "field InternalPort: required")
	}
	if spec.ExternalPort == 0 {
		spec.ExternalPort = spec.InternalPort
	}
	if s.Flags&^(PortMappingLocalRoutedVIP|PortMappingIPv6) != 0 {
		return PortMappingSpec{}, invalidPolicy(owner, index, PortMapping, "field Flags: unknown flags %#x (known: LocalRoutedVip 1, IPv6 2)", s.Flags)
	}
	if s.VIP != "" {
		a, err := ParseAddr(s.VIP)
		if err != nil {
			return PortMappingSpec{}, invalidPolicy(owner, index, PortMapping, "field VIP: %v", err)
		}
		if a.Is6() != spec.IPv6 {
			if a.Is6() {
				return PortMappingSpec{}, invalidPolicy(owner, index, PortMapping, "field VIP: %s is an IPv6 address but Flags lacks IPv6 (2)", a)
			}
			return PortMappingSpec{}, invalidPolicy(owner, index, PortMapping, "field VIP: %s is an IPv4 address but Flags has IPv6 (2)", a)
		}
		if !a.IsUnspecified() {
			spec.VIP = a
		}
	}
	return spec, nil
}

// Key identifies the host port a mapping takes: protocol, port and, for a
// VIP-bound mapping, the address ("tcp/8080", "udp/53/10.0.0.1").
func (m PortMappingSpec) Key() string {
	fam := "4"
	if m.IPv6 {
		fam = "6"
	}
	k := fmt.Sprintf("%s%s/%d", m.ProtocolName(), fam, m.ExternalPort)
	if m.VIP.IsValid() {
		k += "/" + m.VIP.String()
	}
	return k
}

// String is the Docker form, e.g. "127.0.0.1:8080:80/tcp".
func (m PortMappingSpec) String() string {
	host := ""
	if m.VIP.IsValid() {
		host = m.VIP.String() + ":"
		if m.VIP.Is6() {
			host = "[" + m.VIP.String() + "]:"
		}
	}
	return fmt.Sprintf("%s%d:%d/%s", host, m.ExternalPort, m.InternalPort, m.ProtocolName())
}

// OutboundNATSpec is a validated OutBoundNAT policy.
type OutboundNATSpec struct {
	VirtualIP  netip.Addr // zero: masquerade behind the outgoing interface's address
	Exceptions []netip.Prefix
}

// ParseOutboundNAT validates the Settings of an OutBoundNAT policy.
func ParseOutboundNAT(owner string, index int, p Policy) (OutboundNATSpec, error) {
	var s OutboundNATSettings
	if err := DecodeSettings(p.Settings, &s); err != nil {
		return OutboundNATSpec{}, invalidPolicy(owner, index, OutBoundNAT, "%v", err)
	}
	var spec OutboundNATSpec
	if s.VirtualIP != "" {
		a, err := ParseAddr(s.VirtualIP)
		if err != nil {
			return spec, invalidPolicy(owner, index, OutBoundNAT, "field VirtualIP: %v", err)
		}
		spec.VirtualIP = a
	}
	for i, e := range s.Exceptions {
		ps, err := ParseAddressList(e)
		if err != nil {
			return spec, invalidPolicy(owner, index, OutBoundNAT, "field Exceptions[%d]: %v", i, err)
		}
		spec.Exceptions = append(spec.Exceptions, ps...)
	}
	if len(s.Destinations) > 0 {
		return spec, Unsupported("invalid %s: field Policies[%d] (OutBoundNAT): field Destinations is not supported by this build (use Exceptions)", owner, index)
	}
	if s.Flags != 0 {
		return spec, Unsupported("invalid %s: field Policies[%d] (OutBoundNAT): field Flags %#x is not supported by this build", owner, index, s.Flags)
	}
	return spec, nil
}
