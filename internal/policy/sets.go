package policy

import (
	"crypto/sha256"
	"encoding/hex"
	"net/netip"

	"github.com/hostnet/hostnet/api"
	"github.com/hostnet/hostnet/internal/netmodel"
	"github.com/hostnet/hostnet/internal/nftmodel"
)

// SetScope is what a profile's rules may name as IP sets: the SetPolicy
// sets of the endpoint's network, by Id, with their members (flattened:
// a NESTEDIPSET holds the union of its members'). Members serve the
// reference semantics (Profile.Admits); the chains name the sets only, so
// that a change of members changes set elements and never a rule.
type SetScope struct {
	Network string
	Members map[string][]netip.Prefix
}

// ScopeOf is the scope of network's sets.
func ScopeOf(network string, sets *api.IPSets) SetScope {
	s := SetScope{Network: network, Members: map[string][]netip.Prefix{}}
	if sets != nil {
		for _, x := range sets.List {
			s.Members[x.ID] = x.Members
		}
	}
	return s
}

// IPSetName names the nftables set that holds the members of one family
// of network's set id. One SetPolicy is two interval sets (an inet table's
// set holds one family): ipset_<hash>_v4 and _v6, the hash of the network
// and the Id, so that two networks' sets of one Id stay apart and any Id
// makes a valid name.
func IPSetName(network, id string, v6 bool) string {
	h := sha256.Sum256([]byte(network + "\x00" + id))
	if v6 {
		return "ipset_" + hex.EncodeToString(h[:8]) + "_v6"
	}
	return "ipset_" + hex.EncodeToString(h[:8]) + "_v4"
}

func (s SetScope) name(id string, v6 bool) string { return IPSetName(s.Network, id, v6) }

// names are the nftables names (IPv4 ones) of sets ids, for chain names:
// rules naming one Id in two networks are two contents.
func (s SetScope) names(ids []string) []string {
	if ids == nil {
		return nil
	}
	out := make([]string, len(ids))
	for i, id := range ids {
		out[i] = s.name(id, false)
	}
	return out
}

// ipSetDecl declares one family's set of network's set id, as both the
// network (which fills it) and the endpoints whose rules name it want it:
// a rule may name a set that its network no longer has (it was removed
// after the rule was accepted), and then matches nothing.
func (h HookPoint) ipSetDecl(network, id string, v6 bool) netmodel.Object {
	key := nftmodel.KeyIPv4
	if v6 {
		key = nftmodel.KeyIPv6
	}
	return h.set(set(IPSetName(network, id, v6), "IP set "+id, true, key))
}

// IPSets returns what a network's SetPolicy sets are at the hook point:
// for each, its two sets (IPv4, IPv6) and one element per member.
func (h HookPoint) IPSets(network string, sets *api.IPSets) []netmodel.Object {
	if sets == nil {
		return nil
	}
	var out []netmodel.Object
	for _, s := range sets.List {
		out = append(out, h.ipSetDecl(network, s.ID, false), h.ipSetDecl(network, s.ID, true))
		for _, m := range s.Members {
			out = append(out, h.element(IPSetName(network, s.ID, m.Addr().Is6()), PrefixElement(m), ""))
		}
	}
	return out
}

// referencedSets returns the declarations of the sets p's rules name.
func (h HookPoint) referencedSets(p Profile) []netmodel.Object {
	seen := map[string]bool{}
	var out []netmodel.Object
	add := func(rules []api.ACLSpec) {
		for _, r := range rules {
			for _, id := range r.RemoteSets {
				if !seen[id] {
					seen[id] = true
					out = append(out, h.ipSetDecl(p.Sets.Network, id, false), h.ipSetDecl(p.Sets.Network, id, true))
				}
			}
		}
	}
	add(p.Rules)
	for _, dir := range []api.ACLDirection{api.ACLIn, api.ACLOut} {
		for _, t := range p.Tiers[dir] {
			add(t.Rules)
		}
	}
	return out
}
