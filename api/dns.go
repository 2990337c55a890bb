package api

import (
	"fmt"
	"strings"
)

// AutomaticDNSSettings is the Settings of an AutomaticDNS network policy
// (the HCN schema's AutomaticDNSNetworkPolicySetting). With Enable, the
// network's endpoints resolve each other's names through hostnet's
// embedded DNS server, which forwards every other name to the upstream
// resolvers (docs/dns.md).
type AutomaticDNSSettings struct {
	Enable bool `json:"Enable,omitempty"`
}

// MaxDNSNameLen is the longest DNS name, in its text form without the
// final dot (RFC 1035: 255 bytes on the wire).
const MaxDNSNameLen = 253

// CheckDNSName reports whether name can be asked for in DNS: dot-separated
// labels of letters, digits, hyphens and underscores (Docker's container
// names have them), each 1 to 63 bytes, at most MaxDNSNameLen in all,
// without a final dot. The embedded DNS server answers an endpoint's Name
// only when it is one; an alias must be one.
func CheckDNSName(name string) error {
	if name == "" {
		return fmt.Errorf("is empty")
	}
	if len(name) > MaxDNSNameLen {
		return fmt.Errorf("%.40q... is %d bytes long (at most %d)", name, len(name), MaxDNSNameLen)
	}
	for _, label := range strings.Split(name, ".") {
		if label == "" {
			return fmt.Errorf("%q has an empty label (two dots in a row, or a dot at an end)", name)
		}
		if len(label) > 63 {
			return fmt.Errorf("%q has a label of %d bytes (at most 63)", name, len(label))
		}
		for _, c := range []byte(label) {
			ok := c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_'
			if !ok {
				return fmt.Errorf("%q has %q: want letters, digits, '-' and '_' in dot-separated labels", name, c)
			}
		}
	}
	return nil
}

// parseAutomaticDNS reads policy i of a network, an AutomaticDNS policy:
// whether the network's embedded DNS is on.
func parseAutomaticDNS(i int, p *Policy) (bool, error) {
	var s AutomaticDNSSettings
	if err := DecodeSettings(p.Settings, &s); err != nil {
		return false, invalidNetwork(fmt.Sprintf("Policies[%d].Settings", i), "AutomaticDNS: %v", err)
	}
	return s.Enable, nil
}

// checkDNSAliases validates an endpoint's DnsAliases: DNS names, at most
// MaxDNSEntries, no two alike (names compare without case, as DNS does).
func checkDNSAliases(aliases []string) error {
	if len(aliases) > MaxDNSEntries {
		return invalidEndpoint("DnsAliases", "%d entries (at most %d)", len(aliases), MaxDNSEntries)
	}
	seen := make(map[string]int, len(aliases))
	for i, a := range aliases {
		field := fmt.Sprintf("DnsAliases[%d]", i)
		if err := CheckDNSName(a); err != nil {
			return invalidEndpoint(field, "%v", err)
		}
		key := strings.ToLower(a)
		if j, dup := seen[key]; dup {
			return invalidEndpoint(field, "%q is DnsAliases[%d] again", a, j)
		}
		seen[key] = i
	}
	return nil
}
