package api

import (
	"fmt"
	"net/netip"
	"sort"
	"strings"
)

// SetPolicySettings is the Settings of a network's SetPolicy (an IP set),
// as hcsshim's hcn.SetPolicySetting marshals it: every field is sent.
type SetPolicySettings struct {
	Id         string     `json:"Id"`
	Name       string     `json:"Name"`
	PolicyType FlexString `json:"PolicyType"`
	Values     string     `json:"Values"`
}

// SetKind is the PolicyType of a SetPolicy.
type SetKind string

// The kinds of set: IPSET holds addresses and prefixes, NESTEDIPSET the
// Ids of other sets of the same network.
const (
	SetIP       SetKind = "IPSET"
	SetNestedIP SetKind = "NESTEDIPSET"
)

var setKinds = enumTable{"PolicyType", []string{string(SetIP), string(SetNestedIP)}}

// Limits of IP sets.
const (
	MaxSetMembers = 65536 // addresses and prefixes of a set, nested sets flattened
	// MaxNetworkSetMembers bounds the members of all of a network's sets
	// together, flattened (what the kernel holds for it): a network takes
	// its sets (at most MaxPolicies) one request at a time, and each may
	// be full; the kernel applied 262,144 interval elements in one
	// transaction in 1.5 s.
	MaxNetworkSetMembers = 4 * MaxSetMembers
	MaxSetIDLen          = 64 // bytes of a set's Id
	// MaxSetPolicySettingsBytes bounds a SetPolicy's Settings, beyond
	// MaxPolicySettingsBytes: a set of ten thousand pods' addresses is
	// some 150 KB. (A request body is at most 1 MiB anyway.)
	MaxSetPolicySettingsBytes = 1 << 20
	MaxSetNameLen             = 256 // bytes of a set's Name
	// MaxSetRefs bounds the sets one rule's RemoteAddresses names: each
	// compiles to one nftables rule per family, and a rule's comment
	// counts them.
	MaxSetRefs = 16
)

// IPSetSpec is a validated SetPolicy. An IPSET has Members; a NESTEDIPSET
// has Nested, the Ids of its member sets, and its Members are filled in by
// ParseSetPolicies (the union of its members', flattened).
type IPSetSpec struct {
	ID      string
	Name    string
	Kind    SetKind
	Members []netip.Prefix // masked, sorted, none inside another
	Nested  []string       // NESTEDIPSET: member set Ids, as sent
}

// IPSets are the validated SetPolicy policies of one network, in the
// order sent, nested sets flattened.
type IPSets struct {
	List []IPSetSpec
	byID map[string]int
}

// Get returns the set with Id id.
func (s *IPSets) Get(id string) (IPSetSpec, bool) {
	if s == nil {
		return IPSetSpec{}, false
	}
	i, ok := s.byID[id]
	if !ok {
		return IPSetSpec{}, false
	}
	return s.List[i], true
}

// setField is the error of one field of a policy's Settings, naming it as
// Policies[i].Settings.<Field> and the policy type.
func setField(owner string, index int, typ PolicyType, field, format string, args ...any) *Error {
	return Invalid(CodeInvalidPolicy, "%s: field Policies[%d].Settings.%s (%s): %s", owner, index, field, typ, fmt.Sprintf(format, args...))
}

// IsSetID reports whether s can be a set's Id: 1 to MaxSetIDLen bytes of
// letters, digits, '-', '_' and '.', starting with a letter or '_'. An
// ACL's RemoteAddresses names a set by its Id, bare, among addresses and
// prefixes (as Azure's network policy manager for Windows does); starting
// with a letter keeps an Id from ever reading as an address or a prefix,
// and keeps a mistyped address ("10.0.0.300") an error rather than a
// reference to a set.
func IsSetID(s string) bool {
	if s == "" || len(s) > MaxSetIDLen {
		return false
	}
	for i, r := range s {
		switch {
		case r >= 'a' && r <= 'z', r >= 'A' && r <= 'Z', r == '_':
		case i > 0 && (r >= '0' && r <= '9' || r == '-' || r == '.'):
		default:
			return false
		}
	}
	return !strings.EqualFold(s, "any")
}

// ParseSetPolicy validates the Settings of one SetPolicy; owner and
// index name it in errors. Nested sets are not resolved here (see
// ParseSetPolicies).
func ParseSetPolicy(owner string, index int, p Policy) (IPSetSpec, error) {
	var s SetPolicySettings
	if err := DecodeSettings(p.Settings, &s); err != nil {
		return IPSetSpec{}, invalidPolicy(owner, index, SetPolicy, "%v", err)
	}
	if !IsSetID(s.Id) {
		return IPSetSpec{}, setField(owner, index, SetPolicy, "Id",
			"%.80q is not a set Id (1 to %d letters, digits, '-', '_' or '.', starting with a letter or '_', not \"any\")", s.Id, MaxSetIDLen)
	}
	if len(s.Name) > MaxSetNameLen {
		return IPSetSpec{}, setField(owner, index, SetPolicy, "Name", "%.40q... is %d bytes long (at most %d)", s.Name, len(s.Name), MaxSetNameLen)
	}
	spec := IPSetSpec{ID: s.Id, Name: s.Name, Kind: SetKind(strings.ToUpper(setKinds.resolveText(string(s.PolicyType))))}
	if !setKinds.known(string(spec.Kind)) {
		return IPSetSpec{}, setField(owner, index, SetPolicy, "PolicyType", "%q is not IPSET or NESTEDIPSET", s.PolicyType)
	}
	values := splitList(s.Values)
	if len(values) > MaxSetMembers {
		return IPSetSpec{}, setField(owner, index, SetPolicy, "Values", "%d entries (at most %d)", len(values), MaxSetMembers)
	}
	if spec.Kind == SetNestedIP {
		seen := map[string]bool{}
		for _, v := range values {
			if !IsSetID(v) {
				return IPSetSpec{}, setField(owner, index, SetPolicy, "Values", "%.80q is not the Id of a set (a NESTEDIPSET holds the Ids of other sets)", v)
			}
			if v == s.Id {
				return IPSetSpec{}, setField(owner, index, SetPolicy, "Values", "set %q names itself", v)
			}
			if !seen[v] {
				seen[v] = true
				spec.Nested = append(spec.Nested, v)
			}
		}
		return spec, nil
	}
	prefixes := make([]netip.Prefix, 0, len(values))
	for _, v := range values {
		var pr netip.Prefix
		if strings.Contains(v, "/") {
			q, err := ParsePrefix(v)
			if err != nil {
				return IPSetSpec{}, setField(owner, index, SetPolicy, "Values", "%v", err)
			}
			pr = q.Masked()
		} else {
			a, err := ParseAddr(v)
			if err != nil {
				return IPSetSpec{}, setField(owner, index, SetPolicy, "Values", "%v", err)
			}
			pr = netip.PrefixFrom(a, a.BitLen())
		}
		if pr.Bits() == 0 {
			return IPSetSpec{}, setField(owner, index, SetPolicy, "Values", "%q holds every address of its family (an ACL says so with an empty RemoteAddresses)", v)
		}
		prefixes = append(prefixes, pr)
	}
	spec.Members = CanonicalPrefixes(prefixes)
	return spec, nil
}

// CanonicalPrefixes returns ps masked, sorted (IPv4 first, then by
// address), duplicates and prefixes inside another dropped: the elements
// an interval set takes, which refuses overlapping ones. O(n log n).
func CanonicalPrefixes(ps []netip.Prefix) []netip.Prefix {
	masked := make([]netip.Prefix, len(ps))
	for i, p := range ps {
		masked[i] = p.Masked()
	}
	kept := mergePrefixes(len(masked), func(i int) netip.Prefix { return masked[i] })
	out := make([]netip.Prefix, len(kept))
	for i, k := range kept {
		out[i] = masked[k]
	}
	return out
}

// ParseSetPolicies validates a network's SetPolicy policies (the others
// are skipped) and resolves nested sets: a NESTEDIPSET's Members become
// the union of its member sets' (nested ones too), so that each set is
// one flat set in the kernel. A member that is not a set of the network,
// a cycle, two sets with one Id or a set over MaxSetMembers once
// flattened is an error naming the policy.
func ParseSetPolicies(owner string, ps []Policy) (*IPSets, error) {
	out := &IPSets{byID: map[string]int{}}
	index := map[string]int{} // set Id: its index among ps
	for i, p := range ps {
		if p.Type != SetPolicy {
			continue
		}
		s, err := ParseSetPolicy(owner, i, p)
		if err != nil {
			return nil, err
		}
		if j, dup := index[s.ID]; dup {
			return nil, setField(owner, i, SetPolicy, "Id", "%q is also the Id of Policies[%d]", s.ID, j)
		}
		index[s.ID] = i
		out.byID[s.ID] = len(out.List)
		out.List = append(out.List, s)
	}
	// Flatten nested sets, depth first; state 1 is "being resolved", 2
	// "resolved".
	state := map[string]int{}
	var resolve func(id string) error
	resolve = func(id string) error {
		k := out.byID[id]
		s := &out.List[k]
		switch state[id] {
		case 1:
			return setField(owner, index[id], SetPolicy, "Values", "set %q is a member of itself through its members", id)
		case 2:
			return nil
		}
		if s.Kind != SetNestedIP {
			state[id] = 2
			return nil
		}
		state[id] = 1
		var all []netip.Prefix
		for _, m := range s.Nested {
			if _, ok := out.byID[m]; !ok {
				return setField(owner, index[id], SetPolicy, "Values", "%q is not the Id of a SetPolicy of this network", m)
			}
			if err := resolve(m); err != nil {
				return err
			}
			all = append(all, out.List[out.byID[m]].Members...)
		}
		s.Members = CanonicalPrefixes(all)
		if len(s.Members) > MaxSetMembers {
			return setField(owner, index[id], SetPolicy, "Values", "set %q holds %d addresses and prefixes once its members are flattened (at most %d)", id, len(s.Members), MaxSetMembers)
		}
		state[id] = 2
		return nil
	}
	ids := make([]string, 0, len(out.List))
	for _, s := range out.List {
		ids = append(ids, s.ID)
	}
	sort.Strings(ids)
	total := 0
	for _, id := range ids {
		if err := resolve(id); err != nil {
			return nil, err
		}
		if total += len(out.List[out.byID[id]].Members); total > MaxNetworkSetMembers {
			return nil, setField(owner, index[id], SetPolicy, "Values", "set %q brings the network's sets to %d addresses and prefixes, flattened (at most %d together)", id, total, MaxNetworkSetMembers)
		}
	}
	return out, nil
}

// CheckSetReferences refuses an ACL, NetworkACL or TierAcl rule among ps
// that names a set sets does not hold (the network's); owner names the
// document in errors.
func CheckSetReferences(owner string, ps []Policy, sets *IPSets) error {
	type ref struct{ field, id string }
	for i, p := range ps {
		var refs []ref
		switch p.Type {
		case ACL, NetworkACL:
			a, err := ParseACL(owner, i, p.Type, p)
			if err != nil {
				return err
			}
			for _, id := range a.RemoteSets {
				refs = append(refs, ref{"RemoteAddresses", id})
			}
		case TierAcl:
			t, err := ParseTierAcl(owner, i, p)
			if err != nil {
				return err
			}
			for j, r := range t.Rules {
				for _, id := range r.RemoteSets {
					refs = append(refs, ref{fmt.Sprintf("TierAclRules[%d].RemoteAddresses", j), id})
				}
			}
		}
		for _, r := range refs {
			if _, ok := sets.Get(r.id); !ok {
				return setField(owner, i, p.Type, r.field, "%q is neither an address, a prefix nor the Id of a SetPolicy of the network", r.id)
			}
		}
	}
	return nil
}
