package api

import (
	"fmt"
	"unicode"
	"unicode/utf8"
)

// TierAclRuleSettings is one rule of a TierAcl policy, as hcsshim's
// hcn.TierAclRule marshals it.
type TierAclRuleSettings struct {
	Id                string     `json:"Id,omitempty"`
	Protocols         FlexString `json:"Protocols,omitempty"`
	TierAclRuleAction FlexString `json:"TierAclRuleAction"`
	LocalAddresses    string     `json:"LocalAddresses,omitempty"`
	RemoteAddresses   string     `json:"RemoteAddresses,omitempty"`
	LocalPorts        FlexString `json:"LocalPorts,omitempty"`
	RemotePorts       FlexString `json:"RemotePorts,omitempty"`
	Priority          uint16     `json:"Priority,omitempty"`
}

// TierAclSettings is the Settings of an endpoint's TierAcl policy (one
// tier), as hcsshim's hcn.TierAclPolicySetting marshals it.
type TierAclSettings struct {
	Name         string                `json:"Name"`
	Direction    FlexString            `json:"Direction"`
	Order        uint16                `json:"Order"`
	TierAclRules []TierAclRuleSettings `json:"TierAclRules,omitempty"`
}

// ACLPass is the action of a TierAcl rule that ends its tier's evaluation
// and lets the next tier judge the packet.
const ACLPass ACLAction = "Pass"

// tierActions are the actions of a TierAcl rule, by name or number.
var tierActions = enumTable{"TierAclRuleAction", []string{"Allow", "Block", "Pass"}}

// Limits of TierAcl policies.
const (
	MaxTiersPerEndpoint = 64   // TierAcl policies of one endpoint
	MaxTierRules        = 1024 // rules of one tier
	MaxTierNameLen      = 48   // bytes of a tier's Name (it shows in nftables comments)
)

// TierSpec is a validated TierAcl policy: one tier of an endpoint's
// firewall. Its Rules have the tier's Direction and an Action among
// ACLAllow, ACLBlock and ACLPass; they are in the order sent (the compiler
// orders them by Priority).
type TierSpec struct {
	Name      string
	Direction ACLDirection
	Order     uint16
	Rules     []ACLSpec
}

// ParseTierAcl validates the Settings of a TierAcl policy; owner and index
// name it in errors, as Policies[i].Settings.<Field> (of a rule,
// Policies[i].Settings.TierAclRules[j].<Field>).
func ParseTierAcl(owner string, index int, p Policy) (TierSpec, error) {
	var s TierAclSettings
	if err := DecodeSettings(p.Settings, &s); err != nil {
		return TierSpec{}, invalidPolicy(owner, index, TierAcl, "%v", err)
	}
	if err := checkTierName(s.Name); err != nil {
		return TierSpec{}, setField(owner, index, TierAcl, "Name", "%v", err)
	}
	t := TierSpec{Name: s.Name, Order: s.Order, Direction: ACLDirection(aclDirections.resolveText(string(s.Direction)))}
	if !aclDirections.known(string(t.Direction)) {
		return TierSpec{}, setField(owner, index, TierAcl, "Direction", "%q is not In or Out", s.Direction)
	}
	if len(s.TierAclRules) > MaxTierRules {
		return TierSpec{}, setField(owner, index, TierAcl, "TierAclRules", "%d rules (at most %d)", len(s.TierAclRules), MaxTierRules)
	}
	for j, r := range s.TierAclRules {
		spec, field, err := parseRule(ACLSettings{
			Id: r.Id, Protocols: r.Protocols, Action: r.TierAclRuleAction, Direction: FlexString(t.Direction),
			LocalAddresses: r.LocalAddresses, RemoteAddresses: r.RemoteAddresses, LocalPorts: r.LocalPorts, RemotePorts: r.RemotePorts,
			Priority: r.Priority,
		}, tierActions)
		if err != nil {
			return TierSpec{}, setField(owner, index, TierAcl, fmt.Sprintf("TierAclRules[%d].%s", j, field), "%v", err)
		}
		t.Rules = append(t.Rules, spec)
	}
	return t, nil
}

// checkTierName bounds a tier's Name, which the compiled chains show in
// their comments: at most MaxTierNameLen bytes of printable UTF-8 without
// a double quote.
func checkTierName(name string) error {
	if len(name) > MaxTierNameLen {
		return fmt.Errorf("%.20q... is %d bytes long (at most %d)", name, len(name), MaxTierNameLen)
	}
	if !utf8.ValidString(name) {
		return fmt.Errorf("%q is not valid UTF-8", name)
	}
	for _, r := range name {
		if r == '"' || !unicode.IsPrint(r) {
			return fmt.Errorf("%q has a double quote or a character that is not printable (%U)", name, r)
		}
	}
	return nil
}

// CheckTiers refuses what an endpoint's tiers cannot be together: more
// than MaxTiersPerEndpoint, or two tiers of one direction with the same
// Order (their evaluation order would be the client's list order, which
// HNS does not promise). indexes are the tiers' indexes among the
// endpoint's policies; owner names the document.
func CheckTiers(owner string, tiers []TierSpec, indexes []int) error {
	if len(tiers) > MaxTiersPerEndpoint {
		return invalidPolicy(owner, indexes[MaxTiersPerEndpoint], TierAcl, "an endpoint has at most %d TierAcl policies", MaxTiersPerEndpoint)
	}
	for a := range tiers {
		for b := 0; b < a; b++ {
			if tiers[a].Direction == tiers[b].Direction && tiers[a].Order == tiers[b].Order {
				return setField(owner, indexes[a], TierAcl, "Order", "%d is also the Order of Policies[%d], a tier of the same direction (%s)",
					tiers[a].Order, indexes[b], tiers[a].Direction)
			}
		}
	}
	return nil
}
