package policy

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"net/netip"
	"sort"
	"strconv"
	"strings"

	"github.com/hostnet/hostnet/api"
	"github.com/hostnet/hostnet/internal/nftmodel"
)

// Profile is the firewall of one endpoint: its own ACL rules merged with
// its network's, in evaluation order. An endpoint with no rule at all has
// the firewall defaults: everything out; in, unsolicited TCP, UDP, ICMP
// and IGMP, and no other protocol. As soon as it has one rule it denies
// by default, both ways; replies to admitted flows always pass.
type Profile struct {
	Default bool
	Rules   []api.ACLSpec // sorted: lower priority first, Block before Allow on a tie, then in the given order
	// Tiers are the endpoint's TierAcl tiers of each direction, judged
	// before Rules (see tiers.go).
	Tiers map[api.ACLDirection][]api.TierSpec
	// Sets are the IP sets the rules may name (RemoteSets).
	Sets SetScope
}

// NewProfile merges network-wide and endpoint rules into a profile.
func NewProfile(network, endpoint []api.ACLSpec) Profile {
	rules := append(append([]api.ACLSpec(nil), network...), endpoint...)
	if len(rules) == 0 {
		return Profile{Default: true}
	}
	sort.SliceStable(rules, func(i, j int) bool {
		if rules[i].Priority != rules[j].Priority {
			return rules[i].Priority < rules[j].Priority
		}
		return rules[i].Action == api.ACLBlock && rules[j].Action != api.ACLBlock
	})
	return Profile{Rules: rules}
}

// Quarantine is the profile of an endpoint whose policies cannot be
// read: it admits nothing, either way (replies to flows admitted before
// pass, as they do for every profile). The firewall fails closed.
func Quarantine() Profile { return Profile{Rules: []api.ACLSpec{}} }

// Packet is the first packet of a flow, seen from the endpoint: Local is
// the endpoint's address, Remote the other side's.
type Packet struct {
	Dir                   api.ACLDirection
	Proto                 uint8
	Local, Remote         netip.Addr
	LocalPort, RemotePort uint16
}

func (p Packet) String() string {
	return fmt.Sprintf("%s proto %d local %s:%d remote %s:%d", p.Dir, p.Proto, p.Local, p.LocalPort, p.Remote, p.RemotePort)
}

// defaultInProtocols are what the firewall defaults admit unsolicited.
var defaultInProtocols = []uint8{api.ProtoICMP, api.ProtoIGMP, api.ProtoTCP, api.ProtoUDP, api.ProtoICMPv6}

// Admits reports whether the profile lets the first packet of a flow
// through. It is the reference semantics of the chains the profile
// compiles to: the tests check one against the other, and the service uses
// it to end the flows a policy change denies.
func (p Profile) Admits(pkt Packet) bool {
	if v, decided := p.judgeTiers(pkt); decided {
		return v
	}
	if p.Default {
		return defaultAdmits(pkt)
	}
	for _, r := range p.Rules {
		if r.Direction == pkt.Dir && p.Sets.matches(r, pkt) {
			return r.Action == api.ACLAllow
		}
	}
	return false
}

// defaultAdmits is the verdict of the firewall defaults.
func defaultAdmits(pkt Packet) bool {
	if pkt.Dir == api.ACLOut {
		return true
	}
	for _, proto := range defaultInProtocols {
		if pkt.Proto == proto {
			return true
		}
	}
	return false
}

// matches reports whether rule r matches pkt, its set references read
// from s.
func (s SetScope) matches(r api.ACLSpec, pkt Packet) bool {
	if !ruleMatches(r, pkt) {
		return false
	}
	if r.RemoteSets == nil {
		return true
	}
	if r.Remote != nil && inPrefixes(r.Remote, pkt.Remote) {
		return true
	}
	for _, id := range r.RemoteSets {
		if m := s.Members[id]; len(m) > 0 && inPrefixes(m, pkt.Remote) {
			return true
		}
	}
	return false
}

// ruleMatches reports whether r matches pkt, its set references aside
// (see SetScope.matches).
func ruleMatches(r api.ACLSpec, pkt Packet) bool {
	remote := r.Remote
	if r.RemoteSets != nil {
		remote = nil // judged by SetScope.matches
	}
	if r.Protocols != nil && !containsProto(r.Protocols, pkt.Proto) {
		return false
	}
	if (r.LocalPorts != nil || r.RemotePorts != nil) && pkt.Proto != api.ProtoTCP && pkt.Proto != api.ProtoUDP {
		return false
	}
	return inPrefixes(r.Local, pkt.Local) && inPrefixes(remote, pkt.Remote) &&
		inPorts(r.LocalPorts, pkt.LocalPort) && inPorts(r.RemotePorts, pkt.RemotePort)
}

func containsProto(list []uint8, p uint8) bool {
	for _, x := range list {
		if x == p {
			return true
		}
	}
	return false
}

func inPrefixes(list []netip.Prefix, a netip.Addr) bool {
	if list == nil {
		return true
	}
	for _, p := range list {
		if p.Contains(a) {
			return true
		}
	}
	return false
}

func inPorts(list []api.PortRange, port uint16) bool {
	if list == nil {
		return true
	}
	for _, r := range list {
		if port >= r.From && port <= r.To {
			return true
		}
	}
	return false
}

// chainName names the chain of a profile's rules for one direction after
// their content, so endpoints with the same rules share one chain.
func (p Profile) chainName(dir api.ACLDirection) string {
	if p.Default {
		return "acl_default_" + strings.ToLower(string(dir))
	}
	if len(p.Rules) == 0 {
		return "acl_deny_" + strings.ToLower(string(dir))
	}
	h := sha256.New()
	for _, r := range p.Rules {
		if r.Direction == dir {
			// Everything the chain shows of a rule, its Id too (in the
			// comments): one name, one content.
			fmt.Fprintf(h, "%s|%v|%v|%v|%v|%v|%d|%q", r.Action, r.Protocols, r.Local, r.Remote, r.LocalPorts, r.RemotePorts, r.Priority, r.ID)
			if r.RemoteSets != nil {
				// Only then: rules without sets keep the names they had
				// before sets existed (no chain churn on an upgrade).
				fmt.Fprintf(h, "|%v", p.Sets.names(r.RemoteSets))
			}
			fmt.Fprintln(h)
		}
	}
	return "acl_" + strings.ToLower(string(dir)) + "_" + hex.EncodeToString(h.Sum(nil))[:12]
}

// chain compiles the profile's rules of one direction into a regular
// chain, jumped to from a verdict map keyed by the endpoint's address: it
// returns to let a packet on and drops what the profile denies.
func (p Profile) chain(dir api.ACLDirection) *nftmodel.Chain {
	c := &nftmodel.Chain{Name: p.chainName(dir)}
	// What an ACL does not govern: IPv6 neighbour discovery. (Replies to
	// admitted flows are accepted before the dispatch to this chain.)
	c.Rules = append(c.Rules,
		nftmodel.Rule{Comment: "neighbour discovery is not filtered", Exprs: []nftmodel.Expr{
			nftmodel.ICMPv6Type().Eq("133-137"), nftmodel.Return()}},
	)
	if p.Default {
		if dir == api.ACLIn {
			var protos []string
			for _, proto := range defaultInProtocols {
				protos = append(protos, strconv.Itoa(int(proto)))
			}
			c.Rules = append(c.Rules,
				nftmodel.Rule{Comment: "firewall defaults: unsolicited TCP, UDP, ICMP and IGMP in", Exprs: []nftmodel.Expr{nftmodel.L4Proto().InAnon(protos...), nftmodel.Return()}},
				nftmodel.Rule{Comment: "firewall defaults: no other protocol in", Exprs: []nftmodel.Expr{nftmodel.Drop()}})
		}
		return c
	}
	n := 0
	for _, r := range p.Rules {
		if r.Direction != dir {
			continue
		}
		n++
		lowered := lowerACL(r, aclVerdict(r.Action), p.Sets)
		for i, exprs := range lowered {
			comment := fmt.Sprintf("%s %d: %s priority %d", dir, n, r.Action, r.Priority)
			if r.ID != "" {
				comment += " id " + r.ID
			}
			if len(lowered) > 1 {
				comment += fmt.Sprintf(" (%d/%d)", i+1, len(lowered))
			}
			c.Rules = append(c.Rules, nftmodel.Rule{Comment: comment, Exprs: exprs})
		}
	}
	c.Rules = append(c.Rules, nftmodel.Rule{Comment: "default deny once an endpoint has a rule", Exprs: []nftmodel.Expr{nftmodel.Drop()}})
	return c
}

// maxExpansion bounds how many nft rules one ACL rule may expand into
// before its lists go into anonymous sets instead.
const maxExpansion = 32

// lowerACL turns one rule into nft rules ending in verdict: one, or one
// per address family when its addresses name both; none when it can never
// match (its local addresses are of one family and its remote ones of the
// other). Lists (protocols, addresses, ports) expand into one rule per
// combination of single values, compared directly; only large lists use
// anonymous sets. Anonymous sets cost the kernel dearly at scale: it names
// each one by scanning the table's sets, so a table with thousands of them
// makes every commit slow. Each IP set the rule names (RemoteSets) adds
// one rule per family that looks the remote address up in the set, named
// after sets: a change of the set's members changes its elements, never
// these rules.
func lowerACL(r api.ACLSpec, verdict nftmodel.Expr, sets SetScope) [][]nftmodel.Expr {
	local4, local6 := splitFamilies(r.Local)
	remote4, remote6 := splitFamilies(r.Remote)
	families := []struct {
		v6            bool
		local, remote []netip.Prefix
	}{{false, local4, remote4}, {true, local6, remote6}}
	anyAddr := r.Local == nil && r.Remote == nil && r.RemoteSets == nil
	var out [][]nftmodel.Expr
	for _, f := range families {
		if !anyAddr && r.Local != nil && f.local == nil {
			continue
		}
		// Each dimension is the list of values a field may take.
		type dimension struct {
			field  nftmodel.Field
			values []string
		}
		var dims []dimension
		protos := r.Protocols
		if protos == nil && (r.LocalPorts != nil || r.RemotePorts != nil) {
			protos = []uint8{api.ProtoTCP, api.ProtoUDP}
		}
		if protos != nil {
			dims = append(dims, dimension{nftmodel.L4Proto(), protoText(protos)})
		}
		localAddr, remoteAddr := addrFields(r.Direction, f.v6)
		if f.local != nil {
			dims = append(dims, dimension{localAddr, prefixText(f.local)})
		}
		var ports []dimension // after the remote address, if any
		localPort, remotePort := nftmodel.THDport(), nftmodel.THSport()
		if r.Direction == api.ACLOut {
			localPort, remotePort = remotePort, localPort
		}
		if r.LocalPorts != nil {
			ports = append(ports, dimension{localPort, portText(r.LocalPorts)})
		}
		if r.RemotePorts != nil {
			ports = append(ports, dimension{remotePort, portText(r.RemotePorts)})
		}
		// The ways the remote address may match: any, its prefixes, each
		// set it names.
		var remotes [][]nftmodel.Expr
		switch {
		case r.Remote == nil && r.RemoteSets == nil:
			remotes = [][]nftmodel.Expr{nil}
		case f.remote != nil:
			remotes = append(remotes, nil)
		}
		for _, id := range r.RemoteSets {
			remotes = append(remotes, []nftmodel.Expr{remoteAddr.InSet(sets.name(id, f.v6))})
		}
		for _, remote := range remotes {
			all := append([]dimension(nil), dims...)
			if remote == nil && f.remote != nil {
				all = append(all, dimension{remoteAddr, prefixText(f.remote)})
			}
			all = append(all, ports...)
			for _, exprs := range expand(all, func(d dimension) (nftmodel.Field, []string) { return d.field, d.values }) {
				// The set lookup goes before the verdict, after the
				// cheaper comparisons.
				exprs = append(exprs, remote...)
				out = append(out, append(exprs, verdict))
			}
		}
		if anyAddr {
			break // no address: one rule covers both families
		}
	}
	return out
}

// expand returns the matches of dims: one list per combination of single
// values when there are at most maxExpansion, else one list that looks
// lists up in anonymous sets.
func expand[D any](dims []D, of func(D) (nftmodel.Field, []string)) [][]nftmodel.Expr {
	total := 1
	for _, d := range dims {
		_, values := of(d)
		total *= len(values)
	}
	if total > maxExpansion {
		var exprs []nftmodel.Expr
		for _, d := range dims {
			field, values := of(d)
			if len(values) == 1 {
				exprs = append(exprs, field.Eq(values[0]))
			} else {
				exprs = append(exprs, field.InAnon(values...))
			}
		}
		return [][]nftmodel.Expr{exprs}
	}
	combos := [][]nftmodel.Expr{nil}
	for _, d := range dims {
		field, values := of(d)
		var next [][]nftmodel.Expr
		for _, c := range combos {
			for _, v := range values {
				next = append(next, append(append([]nftmodel.Expr(nil), c...), field.Eq(v)))
			}
		}
		combos = next
	}
	return combos
}

// aclVerdict is what an ACL rule's action does in a profile chain: Allow
// returns (lets the packet on), Block drops.
func aclVerdict(a api.ACLAction) nftmodel.Expr {
	if a == api.ACLAllow {
		return nftmodel.Return()
	}
	return nftmodel.Drop()
}

// addrFields returns the fields of the endpoint's own address and of the
// other side's for a direction: In packets go to the endpoint.
func addrFields(dir api.ACLDirection, v6 bool) (local, remote nftmodel.Field) {
	src, dst := nftmodel.IPSaddr(), nftmodel.IPDaddr()
	if v6 {
		src, dst = nftmodel.IP6Saddr(), nftmodel.IP6Daddr()
	}
	if dir == api.ACLIn {
		return dst, src
	}
	return src, dst
}

func splitFamilies(ps []netip.Prefix) (v4, v6 []netip.Prefix) {
	for _, p := range ps {
		if p.Addr().Is4() {
			v4 = append(v4, p)
		} else {
			v6 = append(v6, p)
		}
	}
	return v4, v6
}

func protoText(ps []uint8) []string {
	out := make([]string, len(ps))
	for i, p := range ps {
		out[i] = strconv.Itoa(int(p))
	}
	return out
}

// Prefixes returns ps masked, sorted from the widest, without those
// another one contains (duplicates included): an interval set refuses
// overlapping elements, and a prefix inside another adds nothing.
func Prefixes(ps []netip.Prefix) []netip.Prefix {
	sorted := make([]netip.Prefix, len(ps))
	for i, p := range ps {
		sorted[i] = p.Masked()
	}
	sort.SliceStable(sorted, func(i, j int) bool { return sorted[i].Bits() < sorted[j].Bits() })
	var kept []netip.Prefix
	for _, p := range sorted {
		covered := false
		for _, k := range kept {
			covered = covered || k.Contains(p.Addr())
		}
		if !covered {
			kept = append(kept, p)
		}
	}
	return kept
}

// PrefixElement renders a prefix as a set element: a single address
// bare.
func PrefixElement(p netip.Prefix) string {
	if p.IsSingleIP() {
		return p.Addr().String()
	}
	return p.String()
}

// prefixText renders prefixes as set elements, dropping those another one
// contains: an interval set refuses overlapping elements.
func prefixText(ps []netip.Prefix) []string {
	sorted := append([]netip.Prefix(nil), ps...)
	sort.Slice(sorted, func(i, j int) bool { return sorted[i].Bits() < sorted[j].Bits() })
	var kept []netip.Prefix
	var out []string
	for _, p := range sorted {
		covered := false
		for _, k := range kept {
			covered = covered || k.Contains(p.Addr())
		}
		if covered {
			continue
		}
		kept = append(kept, p)
		if p.IsSingleIP() {
			out = append(out, p.Addr().String())
		} else {
			out = append(out, p.String())
		}
	}
	return out
}

// portText renders port ranges as set elements, merging those that overlap
// or touch.
func portText(rs []api.PortRange) []string {
	sorted := append([]api.PortRange(nil), rs...)
	sort.Slice(sorted, func(i, j int) bool { return sorted[i].From < sorted[j].From })
	var merged []api.PortRange
	for _, r := range sorted {
		if n := len(merged); n > 0 && int(r.From) <= int(merged[n-1].To)+1 {
			if r.To > merged[n-1].To {
				merged[n-1].To = r.To
			}
			continue
		}
		merged = append(merged, r)
	}
	out := make([]string, len(merged))
	for i, r := range merged {
		out[i] = r.String()
	}
	return out
}
