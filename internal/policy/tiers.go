package policy

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"sort"
	"strings"

	"github.com/hostnet/hostnet/api"
	"github.com/hostnet/hostnet/internal/nftmodel"
)

// Tiers (TierAcl policies) come before an endpoint's ACL rules. For each
// direction, its tiers are judged in Order (lower first), and inside a
// tier its rules by Priority (lower first; Block, then Allow, then Pass
// on a tie, then in the order sent). The first rule of a tier that
// matches decides: Allow lets the packet on, Block drops it, Pass ends the
// tier and hands the packet to the next one; a tier where no rule matches
// hands it on too. After the last tier, the profile's ACL rules (the
// network's and the endpoint's, or the firewall defaults when there are
// none) judge it.
//
// Compiled, each tier is one regular chain, named by a hash of its
// content and of the chain it hands on to, so endpoints with equal tiers
// share them. The direction's verdict map jumps to the first tier's
// chain; Pass and the end of a tier `goto` the next tier's chain, and the
// last hands on to the profile's chain, so that a `return` (Allow) in any
// of them goes straight back to the base chain: the per-packet cost is
// that of the rules the packet meets, and never grows with endpoints.

// NewTieredProfile is NewProfile with an endpoint's tiers and the sets of
// its network that the rules may name.
func NewTieredProfile(network, endpoint []api.ACLSpec, tiers []api.TierSpec, sets SetScope) Profile {
	p := NewProfile(network, endpoint)
	p.Sets = sets
	for _, t := range tiers {
		rules := append([]api.ACLSpec(nil), t.Rules...)
		sort.SliceStable(rules, func(i, j int) bool {
			if rules[i].Priority != rules[j].Priority {
				return rules[i].Priority < rules[j].Priority
			}
			return actionRank(rules[i].Action) < actionRank(rules[j].Action)
		})
		t.Rules = rules
		if p.Tiers == nil {
			p.Tiers = map[api.ACLDirection][]api.TierSpec{}
		}
		p.Tiers[t.Direction] = append(p.Tiers[t.Direction], t)
	}
	for _, ts := range p.Tiers {
		sort.SliceStable(ts, func(i, j int) bool { return ts[i].Order < ts[j].Order })
	}
	return p
}

// actionRank orders the actions of rules of one priority.
func actionRank(a api.ACLAction) int {
	switch a {
	case api.ACLBlock:
		return 0
	case api.ACLAllow:
		return 1
	}
	return 2
}

// judgeTiers is the reference semantics of the tiers: whether they
// decide pkt, and how.
func (p Profile) judgeTiers(pkt Packet) (allow, decided bool) {
	for _, t := range p.Tiers[pkt.Dir] {
	rules:
		for _, r := range t.Rules {
			if !p.Sets.matches(r, pkt) {
				continue
			}
			switch r.Action {
			case api.ACLAllow:
				return true, true
			case api.ACLBlock:
				return false, true
			default: // Pass
				break rules
			}
		}
	}
	return false, false
}

// chains returns the chain a direction's dispatch jumps to and the chains
// it needs; entry is "" when nothing filters that direction (the firewall
// defaults let everything out).
func (p Profile) chains(dir api.ACLDirection) (entry string, chains []*nftmodel.Chain) {
	tiers := p.Tiers[dir]
	if p.Default && dir == api.ACLOut && len(tiers) == 0 {
		return "", nil
	}
	last := p.chain(dir)
	chains = []*nftmodel.Chain{last}
	next := last.Name
	for i := len(tiers) - 1; i >= 0; i-- {
		c := p.tierChain(tiers[i], next)
		chains = append(chains, c)
		next = c.Name
	}
	return next, chains
}

// tierChain compiles one tier into a chain that hands what it does not
// decide on to chain next.
func (p Profile) tierChain(t api.TierSpec, next string) *nftmodel.Chain {
	h := sha256.New()
	fmt.Fprintf(h, "%q|%d|%s|%s\n", t.Name, t.Order, t.Direction, next)
	for _, r := range t.Rules {
		fmt.Fprintf(h, "%s|%v|%v|%v|%v|%v|%d|%q|%v\n", r.Action, r.Protocols, r.Local, r.Remote, r.LocalPorts, r.RemotePorts, r.Priority, r.ID,
			p.Sets.names(r.RemoteSets))
	}
	c := &nftmodel.Chain{Name: "tier_" + strings.ToLower(string(t.Direction)) + "_" + hex.EncodeToString(h.Sum(nil))[:12]}
	c.Rules = append(c.Rules, nftmodel.Rule{Comment: "neighbour discovery is not filtered", Exprs: []nftmodel.Expr{
		nftmodel.ICMPv6Type().Eq("133-137"), nftmodel.Return()}})
	for n, r := range t.Rules {
		verdict := aclVerdict(r.Action)
		if r.Action == api.ACLPass {
			verdict = nftmodel.Goto(next)
		}
		lowered := lowerACL(r, verdict, p.Sets)
		for i, exprs := range lowered {
			// As an ACL's comment (see api.ParseACL for its bound): the
			// chain is the tier's, its last rule names it.
			comment := fmt.Sprintf("%s %d: %s priority %d", t.Direction, n+1, r.Action, r.Priority)
			if r.ID != "" {
				comment += " id " + r.ID
			}
			if len(lowered) > 1 {
				comment += fmt.Sprintf(" (%d/%d)", i+1, len(lowered))
			}
			c.Rules = append(c.Rules, nftmodel.Rule{Comment: comment, Exprs: exprs})
		}
	}
	c.Rules = append(c.Rules, nftmodel.Rule{Comment: fmt.Sprintf("end of tier %s (order %d): the next judges", t.Name, t.Order),
		Exprs: []nftmodel.Expr{nftmodel.Goto(next)}})
	return c
}
