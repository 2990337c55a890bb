package cli

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/netip"
	"strconv"
	"strings"

	"github.com/hostnet/hostnet/api"
)

// aclSyntax is how --acl is written, for help texts and errors.
const aclSyntax = "ACTION DIRECTION [proto P[,P]] [local A[,A]] [lport R[,R]] [remote A[,A]] [rport R[,R]] [priority N]"

// aclRuleTypeSwitch is the RuleType of the rules --acl makes.
const aclRuleTypeSwitch = "Switch"

// aclKeywords are the optional parts of an --acl value.
var aclKeywords = []string{"proto", "local", "lport", "remote", "rport", "priority"}

// protocolsText writes protocol numbers as HCN's Protocols, "6,17".
func protocolsText(ps []uint8) string {
	out := make([]string, len(ps))
	for i, p := range ps {
		out[i] = strconv.Itoa(int(p))
	}
	return strings.Join(out, ",")
}

// addressText writes a prefix as an address when it holds one address.
func addressText(p netip.Prefix) string {
	if p.IsSingleIP() {
		return p.Addr().String()
	}
	return p.String()
}

// addressesText writes prefixes as HCN's comma-separated addresses.
func addressesText(ps []netip.Prefix) string {
	out := make([]string, len(ps))
	for i, p := range ps {
		out[i] = addressText(p)
	}
	return strings.Join(out, ",")
}

// portsText writes port ranges as HCN's comma-separated ports, "80,8000-8080".
func portsText(rs []api.PortRange) string {
	out := make([]string, len(rs))
	for i, r := range rs {
		out[i] = r.String()
	}
	return strings.Join(out, ",")
}

// parseACLSpec parses an --acl value,
//
//	ACTION DIRECTION [proto P[,P]] [local A[,A]] [lport R[,R]] [remote A[,A]] [rport R[,R]] [priority N]
//
// (ACTION allow or block, DIRECTION in or out, keywords in any order, "any"
// for any value), into the settings of an ACL rule with HCN's field names
// and values: Action Allow or Block, Direction In or Out, Protocols as
// numbers ("6,17"), RuleType Switch.
func parseACLSpec(s string) (api.ACLSettings, error) {
	words := strings.Fields(s)
	if len(words) < 2 {
		return api.ACLSettings{}, errors.New("want ACTION DIRECTION first, e.g. \"allow in\"")
	}
	set := api.ACLSettings{RuleType: aclRuleTypeSwitch}
	var ok bool
	if set.Action, ok = map[string]api.FlexString{"allow": api.FlexString(api.ACLAllow), "block": api.FlexString(api.ACLBlock)}[strings.ToLower(words[0])]; !ok {
		return api.ACLSettings{}, fmt.Errorf("action %q is not allow or block", words[0])
	}
	if set.Direction, ok = map[string]api.FlexString{"in": api.FlexString(api.ACLIn), "out": api.FlexString(api.ACLOut)}[strings.ToLower(words[1])]; !ok {
		return api.ACLSettings{}, fmt.Errorf("direction %q is not in or out", words[1])
	}
	var (
		protos   []uint8
		hasPorts bool
		seen     = map[string]bool{}
	)
	for i := 2; i < len(words); i += 2 {
		key := strings.ToLower(words[i])
		known := false
		for _, k := range aclKeywords {
			known = known || k == key
		}
		switch {
		case !known:
			return api.ACLSettings{}, fmt.Errorf("unknown keyword %q (known: %s)", words[i], strings.Join(aclKeywords, ", "))
		case i+1 == len(words):
			return api.ACLSettings{}, fmt.Errorf("%s needs a value", key)
		case seen[key]:
			return api.ACLSettings{}, fmt.Errorf("%s is given twice (give several values separated by commas)", key)
		}
		seen[key] = true
		val := words[i+1]
		var err error
		switch key {
		case "proto":
			protos, err = api.ParseProtocols(val)
			set.Protocols = api.FlexString(protocolsText(protos))
		case "local", "remote":
			var ps []netip.Prefix
			ps, err = api.ParseAddressList(val)
			if key == "local" {
				set.LocalAddresses = addressesText(ps)
			} else {
				set.RemoteAddresses = addressesText(ps)
			}
		case "lport", "rport":
			var rs []api.PortRange
			rs, err = api.ParsePortList(val)
			hasPorts = hasPorts || rs != nil
			if key == "lport" {
				set.LocalPorts = api.FlexString(portsText(rs))
			} else {
				set.RemotePorts = api.FlexString(portsText(rs))
			}
		case "priority":
			var n uint64
			n, err = strconv.ParseUint(val, 10, 16)
			if err != nil {
				err = fmt.Errorf("%q is not a number from 0 to 65535", val)
			}
			set.Priority = uint16(n)
		}
		if err != nil {
			return api.ACLSettings{}, fmt.Errorf("%s: %w", key, err)
		}
	}
	if hasPorts {
		for _, p := range protos {
			if p != api.ProtoTCP && p != api.ProtoUDP {
				return api.ACLSettings{}, fmt.Errorf("ports apply to tcp and udp only, not to protocol %s", protocolName(p))
			}
		}
	}
	return set, nil
}

// aclPolicies turns --acl values into policies of type typ (ACL for an
// endpoint, NetworkACL for a network), in order.
func aclPolicies(values []string, typ api.PolicyType) ([]api.Policy, error) {
	var pols []api.Policy
	for _, v := range values {
		set, err := parseACLSpec(v)
		if err != nil {
			return nil, fmt.Errorf("invalid --acl %q: %w", v, err)
		}
		settings, err := json.Marshal(set)
		if err != nil {
			return nil, fmt.Errorf("encode %s policy: %w", typ, err)
		}
		pols = append(pols, api.Policy{Type: typ, Settings: settings})
	}
	return pols, nil
}

// protocolName names the protocols hostnet knows by name, and numbers the others.
func protocolName(p uint8) string {
	switch p {
	case api.ProtoTCP:
		return "tcp"
	case api.ProtoUDP:
		return "udp"
	case api.ProtoICMP:
		return "icmp"
	case api.ProtoICMPv6:
		return "icmpv6"
	case api.ProtoIGMP:
		return "igmp"
	}
	return strconv.Itoa(int(p))
}
