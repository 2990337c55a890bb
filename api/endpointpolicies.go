package api

import (
	"encoding/json"
	"fmt"
	"strings"
)

// The policy types this build enforces. A policy of another known type is
// refused as unsupported, never dropped. Adding a policy type means: its
// settings and parser here in api, its case in ParseEndpointPolicies (or
// ParseNetwork), and the code that enforces it; the service only passes
// the typed values on.
var (
	SupportedEndpointPolicies = []PolicyType{PortMapping, ACL, OutBoundNAT, SDNRoute, TierAcl, QOS}
	SupportedNetworkPolicies  = []PolicyType{NetworkACL, NetAdapterName, SetPolicy, AutomaticDNS}
	SupportedSubnetPolicies   = []PolicyType{}
)

// EndpointPolicies are an endpoint's policies, parsed.
type EndpointPolicies struct {
	Routes      []RouteSpec
	Mappings    []PortMappingSpec
	ACLs        []ACLSpec
	Tiers       []TierSpec
	OutboundNAT *OutboundNATSpec
	QoS         *QoSSpec
}

// ParseEndpointPolicies validates an endpoint's policies (their types
// already resolved to names) and returns them typed. owner names the
// document in errors ("invalid endpoint", "stored endpoint <ID>"), and an
// error names the policy by its index in ps and by its type.
func ParseEndpointPolicies(owner string, ps []Policy) (*EndpointPolicies, error) {
	out := &EndpointPolicies{}
	seen := map[string]int{}
	var tierIndexes []int
	// The parsers of the policy types say "invalid <kind>" themselves.
	kind := strings.TrimPrefix(owner, "invalid ")
	for i, p := range ps {
		if !IsSupported(SupportedEndpointPolicies, p.Type) {
			return nil, UnsupportedPolicy(owner, i, p.Type, SupportedEndpointPolicies)
		}
		switch p.Type {
		case SDNRoute:
			r, err := ParseSDNRoute(p.Settings)
			if err != nil {
				return nil, PrefixError(fmt.Sprintf("%s: field Policies[%d]", owner, i), err)
			}
			out.Routes = append(out.Routes, r)
		case PortMapping:
			m, err := ParsePortMapping(kind, i, p)
			if err != nil {
				return nil, err
			}
			if j, dup := seen[m.Key()]; dup {
				return nil, Invalid(CodeInvalidPolicy, "%s: field Policies[%d]: host port %s is published twice (also by Policies[%d])", owner, i, m, j)
			}
			seen[m.Key()] = i
			out.Mappings = append(out.Mappings, m)
		case ACL:
			a, err := ParseACL(kind, i, ACL, p)
			if err != nil {
				return nil, err
			}
			out.ACLs = append(out.ACLs, a)
		case OutBoundNAT:
			if out.OutboundNAT != nil {
				return nil, Invalid(CodeInvalidPolicy, "%s: field Policies[%d]: an endpoint has at most one OutBoundNAT policy", owner, i)
			}
			o, err := ParseOutboundNAT(kind, i, p)
			if err != nil {
				return nil, err
			}
			out.OutboundNAT = &o
		case QOS:
			if out.QoS != nil {
				return nil, Invalid(CodeInvalidPolicy, "%s: field Policies[%d]: an endpoint has at most one QOS policy", owner, i)
			}
			q, err := ParseQoS(kind, i, p)
			if err != nil {
				return nil, err
			}
			out.QoS = &q
		case TierAcl:
			t, err := ParseTierAcl(kind, i, p)
			if err != nil {
				return nil, err
			}
			out.Tiers = append(out.Tiers, t)
			tierIndexes = append(tierIndexes, i)
		}
	}
	if err := CheckTiers(kind, out.Tiers, tierIndexes); err != nil {
		return nil, err
	}
	return out, nil
}

// ParseNetworkACLs returns a network's NetworkACL rules.
func ParseNetworkACLs(owner string, ps []Policy) ([]ACLSpec, error) {
	var out []ACLSpec
	for i, p := range ps {
		if p.Type != NetworkACL {
			continue
		}
		a, err := ParseACL(owner, i, NetworkACL, p)
		if err != nil {
			return nil, err
		}
		out = append(out, a)
	}
	return out, nil
}

// ParseSDNRoute reads the Settings of an SDNRoute policy.
func ParseSDNRoute(raw json.RawMessage) (RouteSpec, error) {
	var s SDNRouteSettings
	if err := DecodeSettings(raw, &s); err != nil {
		return RouteSpec{}, Invalid(CodeInvalidPolicy, "invalid SDNRoute policy: %v", err)
	}
	dst, err := ParsePrefix(s.DestinationPrefix)
	if err != nil {
		return RouteSpec{}, Invalid(CodeInvalidPolicy, "invalid SDNRoute policy: field DestinationPrefix: %v", err)
	}
	r := RouteSpec{Dst: dst, NeedEncap: s.NeedEncap}
	if s.NextHop != "" {
		nh, err := ParseAddr(s.NextHop)
		if err != nil {
			return RouteSpec{}, Invalid(CodeInvalidPolicy, "invalid SDNRoute policy: field NextHop: %v", err)
		}
		if nh.Is4() != dst.Addr().Is4() {
			return RouteSpec{}, Invalid(CodeInvalidPolicy, "invalid SDNRoute policy: field NextHop: %s is not of the family of %s", nh, dst)
		}
		r.NextHop = nh
	}
	return r, nil
}

// IsSupported reports whether t is in list.
func IsSupported(list []PolicyType, t PolicyType) bool {
	for _, s := range list {
		if s == t {
			return true
		}
	}
	return false
}

// UnsupportedPolicy is the error for policy i of a document, of a type
// this build does not enforce.
func UnsupportedPolicy(owner string, i int, t PolicyType, list []PolicyType) error {
	return Unsupported("%s: field Policies[%d]: policy type %s is not supported by this build (supported: %s)",
		owner, i, t, JoinTypes(list))
}

// JoinTypes lists policy types for messages.
func JoinTypes(ts []PolicyType) string {
	if len(ts) == 0 {
		return "none"
	}
	s := make([]string, len(ts))
	for i, t := range ts {
		s[i] = string(t)
	}
	return strings.Join(s, ", ")
}

// PrefixError puts where in the document an error is before its message,
// keeping its API code and status.
func PrefixError(where string, err error) error {
	if e, ok := err.(*Error); ok {
		c := *e
		c.Message = where + ": " + e.Message
		return &c
	}
	return fmt.Errorf("%s: %w", where, err)
}
