package cli

import (
	"bytes"
	"encoding/json"
	"io"
	"sort"
	"strconv"
	"strings"

	"github.com/hostnet/hostnet/api"
)

// Where the rules of an endpoint's ACL listing come from.
const (
	aclSourceEndpoint = "endpoint"
	aclSourceNetwork  = "network"
)

// The headers of the tables of `policy ls`.
var (
	policyHeader      = []string{"TYPE", "SETTINGS"}
	portMappingHeader = []string{"PUBLISHED"}
	aclHeader         = []string{"PRIORITY", "ACTION", "DIRECTION", "PROTOCOLS", "LOCAL", "LOCAL PORTS", "REMOTE", "REMOTE PORTS", "RULE TYPE"}
)

// invalidMarker flags a policy whose settings do not parse.
const invalidMarker = "(invalid)"

// compactSettings writes policy settings on one line ("{}" when absent),
// or as they are when they are not JSON.
func compactSettings(raw json.RawMessage) string {
	if len(bytes.TrimSpace(raw)) == 0 {
		return "{}"
	}
	var buf bytes.Buffer
	if err := json.Compact(&buf, raw); err != nil {
		return string(raw)
	}
	return buf.String()
}

// isACLType reports whether policies of type t are firewall rules.
func isACLType(t api.PolicyType) bool { return t == api.ACL || t == api.NetworkACL }

// aclRule is a firewall rule of a listing.
type aclRule struct {
	source string      // aclSourceEndpoint or aclSourceNetwork
	spec   api.ACLSpec // when valid
	raw    json.RawMessage
	valid  bool
}

// aclRules reads the ACL and NetworkACL policies of pols, which belong to
// source; resolve maps numeric policy types onto names. A rule whose
// settings do not parse is kept, marked invalid.
func aclRules(source string, pols []api.Policy, resolve func(api.PolicyType) api.PolicyType) []aclRule {
	var out []aclRule
	for i, p := range pols {
		typ := resolve(p.Type)
		if !isACLType(typ) {
			continue
		}
		spec, err := api.ParseACL(source, i, typ, p)
		out = append(out, aclRule{source: source, spec: spec, raw: p.Settings, valid: err == nil})
	}
	return out
}

// sortACLRules puts rules in the order they are evaluated: priority
// ascending, Block before Allow on a tie, then in the given order (which,
// for an endpoint, is its network's rules first, as they are merged when
// enforced). Invalid rules go last, in the given order.
func sortACLRules(rules []aclRule) {
	sort.SliceStable(rules, func(i, j int) bool {
		a, b := rules[i], rules[j]
		if a.valid != b.valid {
			return a.valid
		}
		if !a.valid {
			return false
		}
		if a.spec.Priority != b.spec.Priority {
			return a.spec.Priority < b.spec.Priority
		}
		return a.spec.Action == api.ACLBlock && b.spec.Action != api.ACLBlock
	})
}

// orAny is s, or "any" when s is empty.
func orAny(s string) string {
	if s == "" {
		return "any"
	}
	return s
}

// protocolsCell shows protocols by name where they have one.
func protocolsCell(ps []uint8) string {
	out := make([]string, len(ps))
	for i, p := range ps {
		out[i] = protocolName(p)
	}
	return orAny(strings.Join(out, ","))
}

// aclRows renders rules, in their order, as rows of the ACL table; with
// source, each row starts with where its rule comes from.
func aclRows(rules []aclRule, withSource bool) [][]string {
	rows := make([][]string, 0, len(rules))
	for _, r := range rules {
		var row []string
		if r.valid {
			ruleType := r.spec.RuleType
			if ruleType == "" {
				ruleType = "-"
			}
			row = []string{strconv.Itoa(int(r.spec.Priority)), string(r.spec.Action), string(r.spec.Direction),
				protocolsCell(r.spec.Protocols),
				orAny(addressesText(r.spec.Local)), orAny(portsText(r.spec.LocalPorts)),
				orAny(addressesText(r.spec.Remote)), orAny(portsText(r.spec.RemotePorts)),
				ruleType}
		} else {
			// The raw settings go in the last cell, which does not widen the columns.
			row = []string{"-", "-", "-", "-", "-", "-", "-", "-", invalidMarker + " " + compactSettings(r.raw)}
		}
		if withSource {
			row = append([]string{r.source}, row...)
		}
		rows = append(rows, row)
	}
	return rows
}

// portMappingRows renders PortMapping policies as rows of the PUBLISHED
// table, in their order.
func portMappingRows(pols []api.Policy) [][]string {
	rows := make([][]string, 0, len(pols))
	for i, p := range pols {
		m, err := api.ParsePortMapping(aclSourceEndpoint, i, p)
		if err != nil {
			rows = append(rows, []string{invalidMarker + " " + compactSettings(p.Settings)})
			continue
		}
		rows = append(rows, []string{publishedString(m)})
	}
	return rows
}

// policyRows renders policies as rows of TYPE and compact SETTINGS.
func policyRows(pols []api.Policy) [][]string {
	rows := make([][]string, 0, len(pols))
	for _, p := range pols {
		rows = append(rows, []string{string(p.Type), compactSettings(p.Settings)})
	}
	return rows
}

// writePolicyListing writes the table of `policy ls`: the policies of a
// network or endpoint (kind) as TYPE and SETTINGS, then its port mappings
// as PUBLISHED, then its firewall rules in evaluation order. For an
// endpoint, network holds its network's policies, whose NetworkACL rules
// join the endpoint's in a table with a SOURCE column, as they are
// enforced together. Tables are separated by a blank line; with no policy
// at all the TYPE and SETTINGS header is written alone.
func writePolicyListing(w io.Writer, kind string, own, network []api.Policy) error {
	resolve := api.ResolveNetworkPolicyType
	source := aclSourceNetwork
	if kind == kindEndpoint {
		resolve, source = api.ResolveEndpointPolicyType, aclSourceEndpoint
	}
	var others, mappings []api.Policy
	for _, p := range own {
		switch typ := resolve(p.Type); {
		case isACLType(typ):
		case typ == api.PortMapping:
			mappings = append(mappings, p)
		default:
			p.Type = typ // a numeric type by its name
			others = append(others, p)
		}
	}
	var rules []aclRule
	if kind == kindEndpoint {
		rules = aclRules(aclSourceNetwork, network, api.ResolveNetworkPolicyType)
	}
	rules = append(rules, aclRules(source, own, resolve)...)
	sortACLRules(rules)

	type table struct {
		header []string
		rows   [][]string
	}
	var tables []table
	if len(others) > 0 {
		tables = append(tables, table{policyHeader, policyRows(others)})
	}
	if len(mappings) > 0 {
		tables = append(tables, table{portMappingHeader, portMappingRows(mappings)})
	}
	if len(rules) > 0 {
		header := aclHeader
		if kind == kindEndpoint {
			header = append([]string{"SOURCE"}, aclHeader...)
		}
		tables = append(tables, table{header, aclRows(rules, kind == kindEndpoint)})
	}
	if len(tables) == 0 {
		tables = append(tables, table{policyHeader, nil})
	}
	for i, t := range tables {
		if i > 0 {
			if _, err := io.WriteString(w, "\n"); err != nil {
				return err
			}
		}
		if err := writeTable(w, t.header, t.rows); err != nil {
			return err
		}
	}
	return nil
}
