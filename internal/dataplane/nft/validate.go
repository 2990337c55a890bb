package nft

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"regexp"
	"sort"
	"strings"

	"github.com/google/nftables/expr"
	"github.com/google/nftables/userdata"
)

// maxCommentLen bounds Rule.Comment so that the comment, its hash suffix
// and the NUL fit nft's 128-byte comment limit.
const maxCommentLen = 100

// lowerVersion salts rule hashes: bump it when the lowering of an existing
// Expr changes, so rules already in kernels are replaced.
const lowerVersion = "1"

var nameRE = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_.-]{0,63}$`)

// compiled is a validated table, lowered for the kernel.
type compiled struct {
	name       string
	sets       map[string]*setState
	chains     map[string]*chainState
	chainOrder []string // chains in the order of the Table
}

// setState is a set as hostnet's applier sees it (desired, or read back).
type setState struct {
	keys     []KeyType // nil for a kernel set of a type hostnet does not model
	interval bool
	comment  string
	elems    map[string]element // canonical element text -> element
}

// sameShape reports whether an existing set a can be kept for the desired
// set d (only its elements differ).
func (a *setState) sameShape(d *setState) bool {
	return a.keys != nil && keyString(a.keys) == keyString(d.keys) && a.interval == d.interval
}

// chainState is a chain as hostnet's applier sees it.
type chainState struct {
	typ    ChainType
	hook   Hook // empty for a regular chain
	prio   int
	policy Verdict // base chains only
	rules  []ruleState
}

// sameShape reports whether chain a can be kept for desired chain d (its
// policy and rules may still differ).
func (a *chainState) sameShape(d *chainState) bool {
	return a.typ == d.typ && a.hook == d.hook && a.prio == d.prio
}

// ruleState is one rule: its identity and what it references. exprs and
// userdata are set for desired rules only.
type ruleState struct {
	id        string // the userdata comment: "<comment> #<hash>"
	exprs     []expr.Any
	userdata  []byte
	refSets   []string
	refChains []string
}

// Validate checks t without touching any kernel: names, duplicate names,
// element syntax for each set's key type, overlapping intervals, rule
// expressions, references to sets and chains. The error names the table
// object and the offending value.
func (t *Table) Validate() error {
	_, err := compile(t)
	return err
}

// ruleID returns the identity of a rule: its comment and a short hash of
// its rendered text.
func ruleID(r Rule) string {
	h := sha256.Sum256([]byte(lowerVersion + "\x00" + exprsText(r.Exprs)))
	s := "#" + hex.EncodeToString(h[:4])
	if r.Comment != "" {
		s = r.Comment + " " + s
	}
	return s
}

func exprsText(es []Expr) string {
	s := make([]string, len(es))
	for i, e := range es {
		if e == nil {
			s[i] = "<nil>"
			continue
		}
		s[i] = e.String()
	}
	return strings.Join(s, " ")
}

func checkComment(c string) error {
	if len(c) > maxCommentLen {
		return fmt.Errorf("comment %q longer than %d bytes", c, maxCommentLen)
	}
	for _, r := range c {
		if r < 0x20 || r == 0x7f || r == '"' {
			return fmt.Errorf("comment %q contains a double quote or control character", c)
		}
	}
	return nil
}

// compile validates t and lowers it.
func compile(t *Table) (*compiled, error) {
	if t == nil {
		return nil, errors.New("nil table")
	}
	if !nameRE.MatchString(t.Name) {
		return nil, fmt.Errorf("invalid table name %q", t.Name)
	}
	c := &compiled{name: t.Name, sets: map[string]*setState{}, chains: map[string]*chainState{}}
	sets := map[string]*Set{}
	names := map[string]string{} // set and map names share one namespace
	for _, s := range t.Sets {
		if s == nil {
			return nil, errors.New("nil set")
		}
		if !nameRE.MatchString(s.Name) {
			return nil, fmt.Errorf("invalid set name %q", s.Name)
		}
		if _, dup := names[s.Name]; dup {
			return nil, fmt.Errorf("duplicate set name %q", s.Name)
		}
		names[s.Name] = "set"
		st, err := compileSet(s)
		if err != nil {
			return nil, fmt.Errorf("set %s: %w", s.Name, err)
		}
		sets[s.Name] = s
		c.sets[s.Name] = st
	}
	chains := map[string]*Chain{}
	for _, ch := range t.Chains {
		if ch == nil {
			return nil, errors.New("nil chain")
		}
		if !nameRE.MatchString(ch.Name) {
			return nil, fmt.Errorf("invalid chain name %q", ch.Name)
		}
		if _, dup := chains[ch.Name]; dup {
			return nil, fmt.Errorf("duplicate chain name %q", ch.Name)
		}
		if err := checkChain(ch); err != nil {
			return nil, fmt.Errorf("chain %s: %w", ch.Name, err)
		}
		chains[ch.Name] = ch
	}
	for _, m := range t.Maps {
		if m == nil {
			return nil, errors.New("nil map")
		}
		if !nameRE.MatchString(m.Name) {
			return nil, fmt.Errorf("invalid map name %q", m.Name)
		}
		if _, dup := names[m.Name]; dup {
			return nil, fmt.Errorf("duplicate set or map name %q", m.Name)
		}
		names[m.Name] = "map"
		if err := checkMap(m, chains); err != nil {
			return nil, fmt.Errorf("map %s: %w", m.Name, err)
		}
	}
	for _, ch := range t.Chains {
		cs := &chainState{typ: ch.Type, hook: ch.Hook, prio: ch.Priority}
		if ch.base() {
			cs.policy = ch.policy()
		}
		for i, r := range ch.Rules {
			rs, err := compileRule(r, sets, chains, ch)
			if err != nil {
				name := fmt.Sprintf("%d", i)
				if r.Comment != "" {
					name = fmt.Sprintf("%d (%q)", i, r.Comment)
				}
				return nil, fmt.Errorf("chain %s: rule %s: %w", ch.Name, name, err)
			}
			cs.rules = append(cs.rules, rs)
		}
		c.chains[ch.Name] = cs
		c.chainOrder = append(c.chainOrder, ch.Name)
	}
	return c, nil
}

func checkKey(keys []KeyType) error {
	if len(keys) == 0 {
		return errors.New("no key type")
	}
	for _, k := range keys {
		if !k.valid() {
			return fmt.Errorf("invalid key type %d", int(k))
		}
	}
	if len(keys) > 1 && keyLen(keys) > maxKeyLen {
		return fmt.Errorf("key %s of %d bytes exceeds %d", keyString(keys), keyLen(keys), maxKeyLen)
	}
	return nil
}

func compileSet(s *Set) (*setState, error) {
	if err := checkKey(s.Key); err != nil {
		return nil, err
	}
	if s.Interval {
		for _, k := range s.Key {
			if k == KeyIfname || k == KeyNFProto {
				return nil, fmt.Errorf("key type %s cannot be an interval", k)
			}
		}
	}
	if err := checkComment(s.Comment); err != nil {
		return nil, err
	}
	mode := modeSingle
	if s.Interval {
		mode = modeInterval
	}
	st := &setState{keys: append([]KeyType(nil), s.Key...), interval: s.Interval, comment: s.Comment, elems: map[string]element{}}
	for _, text := range s.Elements {
		e, err := parseElement(s.Key, text, mode)
		if err != nil {
			return nil, err
		}
		canon := e.canonical(s.Key)
		if _, dup := st.elems[canon]; dup {
			return nil, fmt.Errorf("duplicate element %q", text)
		}
		st.elems[canon] = e
	}
	if s.Interval && len(s.Key) == 1 {
		sorted := sortedElements(st.elems)
		for i := 1; i < len(sorted); i++ {
			a, b := sorted[i-1], sorted[i]
			if bytes.Compare(b[0].lo, a[0].hi) <= 0 {
				return nil, fmt.Errorf("elements %q and %q overlap", a.canonical(s.Key), b.canonical(s.Key))
			}
		}
	}
	return st, nil
}

// sortedElements returns the elements in key order.
func sortedElements(m map[string]element) []element {
	out := make([]element, 0, len(m))
	for _, e := range m {
		out = append(out, e)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].compare(out[j]) < 0 })
	return out
}

func checkChain(ch *Chain) error {
	if !ch.base() {
		if ch.Type != "" || ch.Priority != 0 || ch.Policy != "" {
			return errors.New("a regular chain (no hook) takes no type, priority or policy")
		}
		return nil
	}
	if _, ok := hookNums[ch.Hook]; !ok {
		return fmt.Errorf("unknown hook %q", ch.Hook)
	}
	switch ch.Type {
	case ChainTypeFilter:
	case ChainTypeNAT:
		if ch.Hook == HookForward {
			return errors.New("a nat chain cannot use hook forward")
		}
	case ChainTypeRoute:
		if ch.Hook != HookOutput {
			return errors.New("a route chain must use hook output")
		}
	case "":
		return errors.New("a base chain needs a type")
	default:
		return fmt.Errorf("unknown chain type %q", ch.Type)
	}
	if ch.Policy != "" && ch.Policy != VerdictAccept && ch.Policy != VerdictDrop {
		return fmt.Errorf("policy %q is not accept or drop", ch.Policy)
	}
	return nil
}

func checkMap(m *Map, chains map[string]*Chain) error {
	if err := checkKey(m.Key); err != nil {
		return err
	}
	if !m.Verdict && !m.Value.valid() {
		return fmt.Errorf("invalid value type %d", int(m.Value))
	}
	if err := checkComment(m.Comment); err != nil {
		return err
	}
	mode := modeSingle
	if m.Interval {
		mode = modeInterval
	}
	seen := map[string]string{}
	for k, v := range m.Elements {
		e, err := parseElement(m.Key, k, mode)
		if err != nil {
			return err
		}
		canon := e.canonical(m.Key)
		if other, dup := seen[canon]; dup {
			return fmt.Errorf("duplicate key %q (also %q)", k, other)
		}
		seen[canon] = k
		if m.Verdict {
			if _, err := parseVerdictText(v, chains); err != nil {
				return fmt.Errorf("element %q: %w", k, err)
			}
		} else if _, err := m.Value.parseValue(v, modeSingle); err != nil {
			return fmt.Errorf("element %q: value: %w", k, err)
		}
	}
	return nil
}

// parseVerdictText parses a verdict map value such as "jump fwd_ep1".
func parseVerdictText(s string, chains map[string]*Chain) (VerdictStmt, error) {
	f := strings.Fields(s)
	if len(f) == 0 {
		return VerdictStmt{}, errors.New("empty verdict")
	}
	v := VerdictStmt{Verdict: Verdict(f[0])}
	if len(f) > 1 {
		v.Chain = f[1]
	}
	if len(f) > 2 {
		return VerdictStmt{}, fmt.Errorf("invalid verdict %q", s)
	}
	if _, err := v.lower(&ruleCtx{chains: chains}); err != nil {
		return VerdictStmt{}, err
	}
	return v, nil
}

func compileRule(r Rule, sets map[string]*Set, chains map[string]*Chain, ch *Chain) (ruleState, error) {
	if err := checkComment(r.Comment); err != nil {
		return ruleState{}, err
	}
	if len(r.Exprs) == 0 {
		return ruleState{}, errors.New("rule without expressions")
	}
	ctx := &ruleCtx{sets: sets, chains: chains, chain: ch}
	rs := ruleState{id: ruleID(r)}
	for i, e := range r.Exprs {
		if e == nil {
			return ruleState{}, fmt.Errorf("expression %d is nil", i)
		}
		if t, ok := e.(terminal); ok && t.terminal() && i != len(r.Exprs)-1 {
			return ruleState{}, fmt.Errorf("%q must be the last expression of the rule", e.String())
		}
		ex, err := e.lower(ctx)
		if err != nil {
			return ruleState{}, err
		}
		rs.exprs = append(rs.exprs, ex...)
	}
	rs.refSets, rs.refChains = ctx.refSets, ctx.refChains
	rs.userdata = userdata.AppendString(nil, userdata.TypeComment, rs.id)
	return rs, nil
}
