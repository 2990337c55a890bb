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

	"github.com/google/nftables"
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
	family     Family
	name       string
	sets       map[string]*setState
	maps       map[string]*mapState
	chains     map[string]*chainState
	chainOrder []string // chains in the order of the Table (a desired table only; nil once patched)
	// refs counts, per chain, the rules and verdict map elements that jump
	// or go to it (Patch refuses to delete a chain still referenced).
	refs map[string]int
}

// countRefs fills c.refs from the chains' rules and the verdict maps'
// elements.
func (c *compiled) countRefs() {
	c.refs = map[string]int{}
	for _, cs := range c.chains {
		for _, r := range cs.rules {
			for _, name := range r.refChains {
				c.refs[name]++
			}
		}
	}
	for _, ms := range c.maps {
		if !ms.verdict {
			continue
		}
		for _, me := range ms.elems {
			if me.verdict.Chain != "" {
				c.refs[me.verdict.Chain]++
			}
		}
	}
}

// newCompiled returns an empty compiled table.
func newCompiled(family Family, name string) *compiled {
	return &compiled{family: family, name: name, sets: map[string]*setState{}, maps: map[string]*mapState{}, chains: map[string]*chainState{}}
}

// mapState is a map as hostnet's applier sees it (desired, or read back).
type mapState struct {
	keys     []KeyType // nil for a kernel map of a type hostnet does not model
	vals     []KeyType // nil for a verdict map
	verdict  bool
	interval bool
	comment  string
	elems    map[string]mapElem // canonical key text -> element
	sorted   *sortedElems       // keys in order, built by the first patch that needs it (single-field interval maps)
}

// sameShape reports whether an existing map a can be kept for the desired
// map d (only its elements differ).
func (a *mapState) sameShape(d *mapState) bool {
	return a.keys != nil && keyString(a.keys) == keyString(d.keys) && a.verdict == d.verdict &&
		keyString(a.vals) == keyString(d.vals) && a.interval == d.interval
}

// setState is a set as hostnet's applier sees it (desired, or read back).
type setState struct {
	keys     []KeyType // nil for a kernel set of a type hostnet does not model
	interval bool
	comment  string
	elems    map[string]element // canonical element text -> element
	sorted   *sortedElems       // elements in order, built by the first patch that needs it (single-field interval sets)
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

// ruleState is one rule: its identity and what it references. exprs,
// userdata and anon are set for desired rules only.
type ruleState struct {
	id        string // the userdata comment: "<comment> #<hash>"
	exprs     []expr.Any
	userdata  []byte
	refSets   []string   // named sets and maps
	refChains []string   // chains jumped or gone to
	anon      []*anonSet // anonymous sets, created in the batch just before the rule
}

// anonSet is an anonymous constant set of a rule: created in the same
// batch as the rule, bound to it, and destroyed with it.
type anonSet struct {
	set   nftables.Set // Name "__set%d" and a batch-unique ID; no Table yet
	elems []nftables.SetElement
}

// newAnonSet parses the elements of an anonymous set of key type keys.
// The set is an interval set when any element is a prefix or range. As
// nft does for anonymous sets, duplicates are collapsed and overlapping
// intervals of a single-field set merged.
func newAnonSet(keys []KeyType, texts []string) (*anonSet, error) {
	if len(texts) == 0 {
		return nil, errors.New("no elements")
	}
	if err := checkKey(keys); err != nil {
		return nil, err
	}
	interval := false
	elems := map[string]element{}
	for _, t := range texts {
		e, err := parseElement(keys, t, modeInterval)
		if err != nil {
			return nil, err
		}
		for _, v := range e {
			interval = interval || !v.single()
		}
		elems[e.canonical(keys)] = e
	}
	if interval {
		if err := checkIntervalKey(keys); err != nil {
			return nil, err
		}
	}
	sorted := sortedElements(elems)
	if interval && len(keys) == 1 {
		merged := sorted[:1]
		for _, e := range sorted[1:] {
			last := merged[len(merged)-1]
			if bytes.Compare(e[0].lo, last[0].hi) > 0 {
				merged = append(merged, e)
				continue
			}
			if bytes.Compare(e[0].hi, last[0].hi) > 0 {
				merged[len(merged)-1] = element{{lo: last[0].lo, hi: e[0].hi}}
			}
		}
		sorted = merged
	}
	st := &setState{keys: keys, interval: interval}
	ks := kernelSet(nil, "__set%d", st)
	ks.Anonymous, ks.Constant = true, true
	a := &anonSet{set: *ks}
	for _, e := range sorted {
		a.elems = append(a.elems, e.kernelElements(interval)...)
	}
	return a, nil
}

// Validate checks t without touching any kernel: the family, names,
// duplicate names, element syntax for each set's and map's key and value
// types, overlapping intervals, verdict map targets (regular chains of the
// table), rule expressions (including anonymous set elements and what the
// family allows: no nat or route chains, nat statements, fib or meta
// nfproto in a bridge table; no link-layer fields in an inet table),
// references to sets, maps and chains. The error names the table object
// and the offending value.
func (t *Table) Validate() error {
	_, err := compile(t)
	return err
}

// ruleID returns the identity of a rule: its comment and a short hash of
// its rendered text (as Table.String shows it, given the table's maps).
func ruleID(r Rule, maps map[string]*Map) string {
	h := sha256.Sum256([]byte(lowerVersion + "\x00" + exprsText(r.Exprs, maps)))
	s := "#" + hex.EncodeToString(h[:4])
	if r.Comment != "" {
		s = r.Comment + " " + s
	}
	return s
}

// contextual is implemented by Exprs whose text depends on the table (a
// NAT map statement shows the family of its map's values).
type contextual interface {
	textIn(maps map[string]*Map) string
}

// exprsText renders a rule's expressions; maps (which may be nil) are the
// table's maps by name.
func exprsText(es []Expr, maps map[string]*Map) string {
	s := make([]string, len(es))
	for i, e := range es {
		switch e := e.(type) {
		case nil:
			s[i] = "<nil>"
		case contextual:
			s[i] = e.textIn(maps)
		default:
			s[i] = e.String()
		}
	}
	return strings.Join(s, " ")
}

// mapsByName indexes maps by name (the first of a duplicated name wins).
func mapsByName(ms []*Map) map[string]*Map {
	out := make(map[string]*Map, len(ms))
	for _, m := range ms {
		if m != nil {
			if _, dup := out[m.Name]; !dup {
				out[m.Name] = m
			}
		}
	}
	return out
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
	if !t.Family.valid() {
		return nil, fmt.Errorf("table %s: invalid family %d", t.Name, int(t.Family))
	}
	if !nameRE.MatchString(t.Name) {
		return nil, fmt.Errorf("invalid table name %q", t.Name)
	}
	c := newCompiled(t.Family, t.Name)
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
		if err := checkChain(t.Family, ch); err != nil {
			return nil, fmt.Errorf("chain %s: %w", ch.Name, err)
		}
		chains[ch.Name] = ch
	}
	maps := map[string]*Map{}
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
		ms, err := compileMap(m, chains)
		if err != nil {
			return nil, fmt.Errorf("map %s: %w", m.Name, err)
		}
		maps[m.Name] = m
		c.maps[m.Name] = ms
	}
	for _, ch := range t.Chains {
		cs := &chainState{typ: ch.Type, hook: ch.Hook, prio: ch.Priority}
		if ch.base() {
			cs.policy = ch.policy()
		}
		for i, r := range ch.Rules {
			ctx := &ruleCtx{family: t.Family, sets: sets, maps: maps, chains: chains, chain: ch}
			rs, err := compileRule(r, ctx)
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
	c.countRefs()
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
		if err := checkIntervalKey(s.Key); err != nil {
			return nil, err
		}
	}
	if err := checkComment(s.Comment); err != nil {
		return nil, err
	}
	elems, err := parseElements(s.Key, s.Interval, s.Elements)
	if err != nil {
		return nil, err
	}
	return &setState{keys: append([]KeyType(nil), s.Key...), interval: s.Interval, comment: s.Comment, elems: elems}, nil
}

// checkIntervalKey refuses interval flags on key types that have no
// ranges.
func checkIntervalKey(keys []KeyType) error {
	for _, k := range keys {
		if k == KeyIfname || k == KeyNFProto {
			return fmt.Errorf("key type %s cannot be an interval", k)
		}
	}
	return nil
}

// parseElements parses element texts of a set (or map keys): no
// duplicates, and, for a single-field interval set, no overlaps.
func parseElements(keys []KeyType, interval bool, texts []string) (map[string]element, error) {
	mode := modeSingle
	if interval {
		mode = modeInterval
	}
	elems := make(map[string]element, len(texts))
	for _, text := range texts {
		e, err := parseElement(keys, text, mode)
		if err != nil {
			return nil, err
		}
		canon := e.canonical(keys)
		if _, dup := elems[canon]; dup {
			return nil, fmt.Errorf("duplicate element %q", text)
		}
		elems[canon] = e
	}
	if interval && len(keys) == 1 {
		if err := checkOverlaps(keys, interval, sortedElements(elems)); err != nil {
			return nil, err
		}
	}
	return elems, nil
}

// checkOverlaps refuses overlapping intervals of a single-field interval
// set; sorted is in key order.
func checkOverlaps(keys []KeyType, interval bool, sorted []element) error {
	if !interval || len(keys) != 1 {
		return nil
	}
	for i := 1; i < len(sorted); i++ {
		a, b := sorted[i-1], sorted[i]
		if bytes.Compare(b[0].lo, a[0].hi) <= 0 {
			return fmt.Errorf("elements %q and %q overlap", a.canonical(keys), b.canonical(keys))
		}
	}
	return nil
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

func checkChain(family Family, ch *Chain) error {
	if !ch.base() {
		if ch.Type != "" || ch.Priority != 0 || ch.Policy != "" {
			return errors.New("a regular chain (no hook) takes no type, priority or policy")
		}
		return nil
	}
	if _, ok := hookNums[ch.Hook]; !ok {
		return fmt.Errorf("unknown hook %q", ch.Hook)
	}
	if family == FamilyBridge && ch.Type != ChainTypeFilter && ch.Type != "" {
		return fmt.Errorf("a bridge table has no %s chains", ch.Type)
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

// compileMap validates a map: key and value types, element syntax, and,
// for a verdict map, that every jump or goto targets a regular chain of
// the table.
func compileMap(m *Map, chains map[string]*Chain) (*mapState, error) {
	if err := checkKey(m.Key); err != nil {
		return nil, err
	}
	if m.Interval {
		if err := checkIntervalKey(m.Key); err != nil {
			return nil, err
		}
	}
	if m.Verdict && len(m.Value) > 0 {
		return nil, fmt.Errorf("a verdict map takes no value type (has %s)", keyString(m.Value))
	}
	if !m.Verdict {
		if err := checkKey(m.Value); err != nil {
			return nil, fmt.Errorf("value: %w", err)
		}
	}
	if err := checkComment(m.Comment); err != nil {
		return nil, err
	}
	ms := &mapState{keys: append([]KeyType(nil), m.Key...), verdict: m.Verdict, interval: m.Interval, comment: m.Comment, elems: map[string]mapElem{}}
	if !m.Verdict {
		ms.vals = append([]KeyType(nil), m.Value...)
	}
	mode := modeSingle
	if m.Interval {
		mode = modeInterval
	}
	seen := map[string]string{}
	for k, v := range m.Elements {
		e, err := parseElement(m.Key, k, mode)
		if err != nil {
			return nil, err
		}
		canon := e.canonical(m.Key)
		if other, dup := seen[canon]; dup {
			return nil, fmt.Errorf("duplicate key %q (also %q)", k, other)
		}
		seen[canon] = k
		me := mapElem{key: e}
		if m.Verdict {
			if me.verdict, err = parseVerdict(v, &ruleCtx{chains: chains}); err != nil {
				return nil, fmt.Errorf("element %q: %w", k, err)
			}
			me.text = me.verdict.String()
		} else {
			if me.val, err = parseElement(m.Value, v, modeSingle); err != nil {
				return nil, fmt.Errorf("element %q: value: %w", k, err)
			}
			me.text = me.val.canonical(m.Value)
		}
		ms.elems[canon] = me
	}
	if m.Interval && len(m.Key) == 1 {
		keys := make([]element, 0, len(ms.elems))
		for _, me := range ms.elems {
			keys = append(keys, me.key)
		}
		sort.Slice(keys, func(i, j int) bool { return keys[i].compare(keys[j]) < 0 })
		if err := checkOverlaps(m.Key, m.Interval, keys); err != nil {
			return nil, err
		}
	}
	return ms, nil
}

// parseVerdict parses a verdict map value such as "jump fwd_ep1"; the
// target chain is looked up through c.
func parseVerdict(s string, c *ruleCtx) (VerdictStmt, error) {
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
	if _, err := v.lower(c); err != nil {
		return VerdictStmt{}, err
	}
	return v, nil
}

func compileRule(r Rule, ctx *ruleCtx) (ruleState, error) {
	if err := checkComment(r.Comment); err != nil {
		return ruleState{}, err
	}
	if len(r.Exprs) == 0 {
		return ruleState{}, errors.New("rule without expressions")
	}
	rs := ruleState{id: ruleID(r, ctx.maps)}
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
	rs.refSets, rs.refChains, rs.anon = ctx.refSets, ctx.refChains, ctx.anon
	rs.userdata = userdata.AppendString(nil, userdata.TypeComment, rs.id)
	return rs, nil
}
