package api

import (
	"encoding/json"
	"fmt"
	"net/netip"
	"sort"
	"strconv"
	"strings"
	"unicode"
	"unicode/utf8"
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
	ID        string
	Action    ACLAction
	Direction ACLDirection
	Protocols []uint8 // IANA numbers
	Local     []netip.Prefix
	Remote    []netip.Prefix
	// RemoteSets are the Ids of the network's IP sets (SetPolicy) that
	// RemoteAddresses names; the rule matches a remote address in Remote
	// or in one of these sets. The remote side is "any" only when both
	// are nil.
	RemoteSets  []string
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
	var seen [256]bool
	for _, part := range splitList(s) {
		switch strings.ToLower(part) {
		case "*", "any", "256":
			return nil, nil
		}
		if n, ok := protocolNames[strings.ToLower(part)]; ok {
			seen[n] = true
			continue
		}
		n, err := strconv.ParseUint(part, 10, 16)
		if err != nil || n > 255 {
			return nil, fmt.Errorf("%q is not a protocol number (0-255, or 256 for any)", part)
		}
		seen[n] = true
	}
	var out []uint8
	for n, ok := range seen {
		if ok {
			out = append(out, uint8(n))
		}
	}
	return out, nil
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

// ParseRemoteAddresses parses an ACL's RemoteAddresses: comma-separated
// IPs, CIDR prefixes and Ids of IP sets (SetPolicy of the endpoint's
// network, named bare as Azure's network policy manager for Windows does;
// see IsSetID). An empty list, "*" or "any" mean any address (both nil).
func ParseRemoteAddresses(s string) ([]netip.Prefix, []string, error) {
	var prefixes []netip.Prefix
	var sets []string
	var addrs []string
	for _, part := range splitList(s) {
		switch strings.ToLower(part) {
		case "*", "any":
			return nil, nil, nil
		}
		if IsSetID(part) {
			if !containsString(sets, part) {
				if len(sets) == MaxSetRefs {
					return nil, nil, fmt.Errorf("more than %d IP sets named (%q and before)", MaxSetRefs, part)
				}
				sets = append(sets, part)
			}
			continue
		}
		addrs = append(addrs, part)
	}
	if len(addrs) > 0 {
		var err error
		if prefixes, err = ParseAddressList(strings.Join(addrs, ",")); err != nil {
			return nil, nil, err
		}
	}
	return prefixes, sets, nil
}

func containsString(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
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

// checkACLID bounds an ACL's Id. The policy compiler names each nftables
// rule of an ACL after it, in a comment of the form
//
//	"<In|Out> <n>: <Allow|Block> priority <0-65535> id <Id> (<i>/<k>)"
//
// and nftables keeps at most maxCommentLen (100) bytes of it, with a hash
// appended, within its 128-byte limit. With the rule number n below 100,000
// and an expansion into at most 64 rules, everything but the Id takes at
// most 43 bytes, so an Id of MaxACLIDLen (48) bytes always fits, with
// room to spare. A double quote or a control character would end or break
// the comment as nft prints it; both are refused.
func checkACLID(id string) error {
	if len(id) > MaxACLIDLen {
		return fmt.Errorf("%.20q... is %d bytes long (at most %d: it names the rule's nftables comment)", id, len(id), MaxACLIDLen)
	}
	if !utf8.ValidString(id) {
		return fmt.Errorf("%q is not valid UTF-8", id)
	}
	for _, r := range id {
		if r == '"' || !unicode.IsPrint(r) {
			return fmt.Errorf("%q has a double quote or a character that is not printable (%U)", id, r)
		}
	}
	return nil
}

// ParseACL validates the Settings of an ACL (or NetworkACL) policy; owner
// and index name the policy in errors ("invalid endpoint", 3).
func ParseACL(owner string, index int, typ PolicyType, p Policy) (ACLSpec, error) {
	var s ACLSettings
	if err := DecodeSettings(p.Settings, &s); err != nil {
		return ACLSpec{}, invalidPolicy(owner, index, typ, "%v", err)
	}
	spec, field, err := parseRule(s, aclActions)
	if err != nil {
		return ACLSpec{}, invalidPolicy(owner, index, typ, "field %s: %v", field, err)
	}
	return spec, nil
}

// parseRule validates the fields of one rule (an ACL's, or a TierAcl
// rule's: its action, from actions, in Action, its tier's direction in
// Direction); on an error it names the field.
func parseRule(s ACLSettings, actions enumTable) (spec ACLSpec, field string, err error) {
	if err := checkACLID(s.Id); err != nil {
		return ACLSpec{}, "Id", err
	}
	for _, l := range []struct {
		name, v string
	}{{"Protocols", string(s.Protocols)}, {"LocalAddresses", s.LocalAddresses}, {"RemoteAddresses", s.RemoteAddresses},
		{"LocalPorts", string(s.LocalPorts)}, {"RemotePorts", string(s.RemotePorts)}} {
		if n := splitCount(l.v); n > MaxListEntries {
			return ACLSpec{}, l.name, fmt.Errorf("%d entries (at most %d)", n, MaxListEntries)
		}
	}
	spec = ACLSpec{ID: s.Id, Priority: s.Priority}
	spec.Action = ACLAction(actions.resolveText(string(s.Action)))
	if !actions.known(string(spec.Action)) {
		return ACLSpec{}, actions.field, fmt.Errorf("%q is not %s", s.Action, strings.Join(actions.names, " or "))
	}
	spec.Direction = ACLDirection(aclDirections.resolveText(string(s.Direction)))
	if !aclDirections.known(string(spec.Direction)) {
		return ACLSpec{}, "Direction", fmt.Errorf("%q is not In or Out", s.Direction)
	}
	spec.RuleType = aclRuleTypes.resolveText(string(s.RuleType))
	if spec.RuleType != "" && !aclRuleTypes.known(spec.RuleType) {
		return ACLSpec{}, "RuleType", fmt.Errorf("%q is not Host or Switch", s.RuleType)
	}
	if spec.Protocols, err = ParseProtocols(string(s.Protocols)); err != nil {
		return ACLSpec{}, "Protocols", err
	}
	if spec.Local, err = ParseAddressList(s.LocalAddresses); err != nil {
		return ACLSpec{}, "LocalAddresses", err
	}
	if spec.Remote, spec.RemoteSets, err = ParseRemoteAddresses(s.RemoteAddresses); err != nil {
		return ACLSpec{}, "RemoteAddresses", err
	}
	if spec.LocalPorts, err = ParsePortList(string(s.LocalPorts)); err != nil {
		return ACLSpec{}, "LocalPorts", err
	}
	if spec.RemotePorts, err = ParsePortList(string(s.RemotePorts)); err != nil {
		return ACLSpec{}, "RemotePorts", err
	}
	if spec.LocalPorts != nil || spec.RemotePorts != nil {
		for _, proto := range spec.Protocols {
			if proto != ProtoTCP && proto != ProtoUDP {
				return ACLSpec{}, "Protocols", fmt.Errorf("ports apply to TCP (6) and UDP (17) only, got protocol %d", proto)
			}
		}
	}
	return spec, "", nil
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

// ParseOutboundNAT validates the Settings of an OutBoundNAT policy. The
// VirtualIP must be a unicast address a host could own. The exceptions
// come back in canonical form, as the firewall holds them: each prefix
// masked, sorted, duplicates dropped ("10.0.0.1" and "10.0.0.1/32" are
// one), and a prefix inside another dropped (10.1.0.0/16 goes when
// 10.0.0.0/8 is there: the wider one already exempts it). ParseEndpoint
// writes that list back into the document's Settings when it differs from
// what the client sent.
func ParseOutboundNAT(owner string, index int, p Policy) (OutboundNATSpec, error) {
	spec, _, err := parseOutboundNAT(owner, index, p)
	return spec, err
}

// parseOutboundNAT validates an OutBoundNAT policy and returns, besides
// its spec, its Settings in canonical form, or nil when the client's are
// already (keeping them as sent, so a later Remove of the same policy
// matches what is stored).
func parseOutboundNAT(owner string, index int, p Policy) (OutboundNATSpec, json.RawMessage, error) {
	var s OutboundNATSettings
	if err := DecodeSettings(p.Settings, &s); err != nil {
		return OutboundNATSpec{}, nil, invalidPolicy(owner, index, OutBoundNAT, "%v", err)
	}
	var spec OutboundNATSpec
	rewrite := false
	if s.VirtualIP != "" {
		a, err := ParseAddr(s.VirtualIP)
		if err != nil {
			return spec, nil, invalidPolicy(owner, index, OutBoundNAT, "field VirtualIP: %v", err)
		}
		if err := checkUnicastAddr(a); err != nil {
			return spec, nil, invalidPolicy(owner, index, OutBoundNAT, "field VirtualIP: %v: traffic cannot be translated to it", err)
		}
		spec.VirtualIP = a
		if a.String() != s.VirtualIP {
			s.VirtualIP, rewrite = a.String(), true
		}
	}
	n := 0
	for _, e := range s.Exceptions {
		n += splitCount(e)
	}
	if n > MaxOutboundNATExcept {
		return spec, nil, invalidPolicy(owner, index, OutBoundNAT, "field Exceptions: %d prefixes (at most %d)", n, MaxOutboundNATExcept)
	}
	type exception struct {
		prefix netip.Prefix
		text   string // as the client wrote it, when that is canonical
	}
	var all []exception
	for i, e := range s.Exceptions {
		parts := splitList(e)
		if len(parts) != 1 || parts[0] != e {
			rewrite = true // a list, or spaces, in one entry
		}
		for _, part := range parts {
			ps, err := ParseAddressList(part)
			if err != nil {
				return spec, nil, invalidPolicy(owner, index, OutBoundNAT, "field Exceptions[%d]: %v", i, err)
			}
			if ps == nil {
				return spec, nil, invalidPolicy(owner, index, OutBoundNAT, "field Exceptions[%d]: %q would exempt every destination (leave out OutBoundNAT instead)", i, part)
			}
			if strings.Contains(part, "/") {
				if ps[0].String() != part {
					part, rewrite = ps[0].String(), true // host bits set, or another spelling
				}
			} else if a, err := netip.ParseAddr(part); err != nil || a.String() != part {
				part, rewrite = ps[0].Addr().String(), true
			}
			all = append(all, exception{ps[0], part})
		}
	}
	kept := mergePrefixes(len(all), func(i int) netip.Prefix { return all[i].prefix })
	if len(kept) != len(all) {
		rewrite = true
	}
	for _, i := range kept {
		spec.Exceptions = append(spec.Exceptions, all[i].prefix)
	}
	if len(s.Destinations) > 0 {
		return spec, nil, Unsupported("invalid %s: field Policies[%d] (OutBoundNAT): field Destinations is not supported by this build (use Exceptions)", owner, index)
	}
	if s.Flags != 0 {
		return spec, nil, Unsupported("invalid %s: field Policies[%d] (OutBoundNAT): field Flags %#x is not supported by this build", owner, index, s.Flags)
	}
	if !rewrite {
		return spec, nil, nil
	}
	// The kept exceptions in the client's order, each as it was written.
	keep := make([]bool, len(all))
	for _, i := range kept {
		keep[i] = true
	}
	s.Exceptions = s.Exceptions[:0:0]
	for i, e := range all {
		if keep[i] {
			s.Exceptions = append(s.Exceptions, e.text)
		}
	}
	b, err := json.Marshal(s)
	if err != nil {
		return spec, nil, InternalError(err, "encode OutBoundNAT settings")
	}
	return spec, b, nil
}

// mergePrefixes returns the indexes of the prefixes to keep out of n
// (prefix(i) gives the i-th, masked), in the order of the prefixes they
// keep (by family, then address, then length): of equal prefixes the first,
// and no prefix inside another kept one. O(n log n): sorted by address and
// then by length, a prefix is covered exactly when the last kept one
// contains it (kept prefixes are disjoint and in order).
func mergePrefixes(n int, prefix func(int) netip.Prefix) []int {
	idx := make([]int, n)
	for i := range idx {
		idx[i] = i
	}
	sort.SliceStable(idx, func(a, b int) bool {
		pa, pb := prefix(idx[a]), prefix(idx[b])
		if c := pa.Addr().Compare(pb.Addr()); c != 0 {
			return c < 0
		}
		return pa.Bits() < pb.Bits()
	})
	var kept []int
	for _, i := range idx {
		p := prefix(i)
		if len(kept) > 0 {
			last := prefix(kept[len(kept)-1])
			if last.Addr().BitLen() == p.Addr().BitLen() && last.Contains(p.Addr()) {
				continue
			}
		}
		kept = append(kept, i)
	}
	return kept
}
