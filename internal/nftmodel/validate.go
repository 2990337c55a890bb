package nftmodel

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"regexp"
	"sort"
	"strings"
)

// maxCommentLen bounds Rule.Comment so that the comment, its hash suffix
// and the NUL fit nft's 128-byte comment limit.
const maxCommentLen = 100

// lowerVersion salts rule hashes: bump it when the lowering of an existing
// Expr changes, so rules already in kernels are replaced.
const lowerVersion = "1"

var nameRE = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_.-]{0,63}$`)

// ValidName reports whether s is a valid table, set, map or chain name.
func ValidName(s string) bool { return nameRE.MatchString(s) }

// Validate checks t without touching any kernel: the family, names,
// duplicate names, element syntax for each set's and map's key and value
// types, overlapping intervals of single-field interval sets, verdict map
// targets (regular chains of the table), rule expressions (including
// anonymous set elements and what the family allows: no nat or route
// chains, nat statements, fib or meta nfproto in a bridge table; in a
// netdev table, neither those nor ct expressions, and base chains bound
// to a valid device; no link-layer fields in an inet table), dynamic sets
// (no elements, no interval; only they may time out) and the statements
// that fill them, references to sets, maps and chains. The error names
// the table object and the offending value.
//
// Whether the elements of a concatenated interval set clash depends on
// what the set holds already (the kernel refuses an element whose first or
// last point lies in one it holds, and accepts one that covers another):
// appliers check it when they plan the change (Batch.Plan, PatchAll).
func (t *Table) Validate() error {
	_, err := Compile(t)
	return err
}

// Compile validates t and lowers it.
func Compile(t *Table) (*State, error) {
	if t == nil {
		return nil, errors.New("nil table")
	}
	if !t.Family.Valid() {
		return nil, fmt.Errorf("table %s: invalid family %d", t.Name, int(t.Family))
	}
	if !ValidName(t.Name) {
		return nil, fmt.Errorf("invalid table name %q", t.Name)
	}
	c := NewState(t.Family, t.Name)
	sets := map[string]*Set{}
	names := map[string]bool{} // set and map names share one namespace
	for _, s := range t.Sets {
		if err := takeName(names, "set", s == nil, s, "duplicate set name %q"); err != nil {
			return nil, err
		}
		st, err := compileSet(s)
		if err != nil {
			return nil, fmt.Errorf("set %s: %w", s.Name, err)
		}
		sets[s.Name] = s
		c.sets[s.Name] = st
	}
	chains := map[string]*Chain{}
	chainNames := map[string]bool{}
	for _, ch := range t.Chains {
		if err := takeName(chainNames, "chain", ch == nil, ch, "duplicate chain name %q"); err != nil {
			return nil, err
		}
		if err := checkChain(t.Family, ch); err != nil {
			return nil, fmt.Errorf("chain %s: %w", ch.Name, err)
		}
		chains[ch.Name] = ch
	}
	maps := map[string]*Map{}
	for _, m := range t.Maps {
		if err := takeName(names, "map", m == nil, m, "duplicate set or map name %q"); err != nil {
			return nil, err
		}
		ms, err := compileMap(m, chains)
		if err != nil {
			return nil, fmt.Errorf("map %s: %w", m.Name, err)
		}
		maps[m.Name] = m
		c.maps[m.Name] = ms
	}
	for _, ch := range t.Chains {
		cs := &chainState{typ: ch.Type, hook: ch.Hook, prio: ch.Priority, device: ch.Device}
		if ch.IsBase() {
			cs.policy = ch.policy()
		}
		for i, r := range ch.Rules {
			rs, err := compileRule(r, &ruleCtx{family: t.Family, sets: sets, maps: maps, chains: chains, chain: ch})
			if err != nil {
				return nil, fmt.Errorf("chain %s: %w", ch.Name, ruleError(i, r, err))
			}
			cs.rules = append(cs.rules, rs)
		}
		c.chains[ch.Name] = cs
		c.chainOrder = append(c.chainOrder, ch.Name)
	}
	c.countRefs()
	return c, nil
}

// named is a table object with a name.
type named interface{ name() string }

func (s *Set) name() string   { return s.Name }
func (m *Map) name() string   { return m.Name }
func (c *Chain) name() string { return c.Name }

// takeName checks an object of kind ("set", "map", "chain"): it is not
// nil, its name is valid and not taken in names (dup reports it taken);
// then the name is taken.
func takeName(names map[string]bool, kind string, isNil bool, o named, dup string) error {
	if isNil {
		return fmt.Errorf("nil %s", kind)
	}
	if !ValidName(o.name()) {
		return fmt.Errorf("invalid %s name %q", kind, o.name())
	}
	if names[o.name()] {
		return fmt.Errorf(dup, o.name())
	}
	names[o.name()] = true
	return nil
}

// CompileAll compiles tables that are to change together (in one batch):
// each must be valid, and no two may have the same family and name. The
// states are in the order of the tables.
func CompileAll(tables ...*Table) ([]*State, error) {
	out := make([]*State, len(tables))
	seen := map[TableKey]bool{}
	for i, t := range tables {
		st, err := Compile(t)
		if err != nil {
			return nil, fmt.Errorf("table %s: %w", tableName(t), err)
		}
		if seen[st.Key()] {
			return nil, fmt.Errorf("table %s: given twice", st.Key())
		}
		seen[st.Key()] = true
		out[i] = st
	}
	return out, nil
}

func tableName(t *Table) string {
	if t == nil {
		return "<nil>"
	}
	return t.Key().String()
}

// ruleError names rule i (and its comment) in err.
func ruleError(i int, r Rule, err error) error {
	if r.Comment != "" {
		return fmt.Errorf("rule %d (%q): %w", i, r.Comment, err)
	}
	return fmt.Errorf("rule %d: %w", i, err)
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

func checkKey(keys []KeyType) error {
	if len(keys) == 0 {
		return errors.New("no key type")
	}
	for _, k := range keys {
		if !k.Valid() {
			return fmt.Errorf("invalid key type %d", int(k))
		}
	}
	if len(keys) > 1 && keyLen(keys) > maxKeyLen {
		return fmt.Errorf("key %s of %d bytes exceeds %d", keyString(keys), keyLen(keys), maxKeyLen)
	}
	return nil
}

// checkIntervalKey refuses interval flags on key types that have no
// ranges.
func checkIntervalKey(keys []KeyType) error {
	for _, k := range keys {
		if k == KeyIfname || k == KeyNFProto || keyInfos[k].hostOrder {
			return fmt.Errorf("key type %s cannot be an interval", k)
		}
	}
	return nil
}

// newSetState checks the definition of a set (values nil) or map and
// returns its state, without elements.
func newSetState(keys, vals []KeyType, isMap, verdict, interval bool, comment string) (*setState, error) {
	if err := checkKey(keys); err != nil {
		return nil, err
	}
	if interval {
		if err := checkIntervalKey(keys); err != nil {
			return nil, err
		}
	}
	if isMap && verdict && len(vals) > 0 {
		return nil, fmt.Errorf("a verdict map takes no value type (has %s)", keyString(vals))
	}
	if isMap && !verdict {
		if err := checkKey(vals); err != nil {
			return nil, fmt.Errorf("value: %w", err)
		}
	}
	if err := checkComment(comment); err != nil {
		return nil, err
	}
	st := &setState{keys: append([]KeyType(nil), keys...), isMap: isMap, verdict: verdict, interval: interval,
		comment: comment, elems: map[string]elem{}}
	if isMap && !verdict {
		st.vals = append([]KeyType(nil), vals...)
	}
	return st, nil
}

func compileSet(s *Set) (*setState, error) {
	st, err := newSetState(s.Key, nil, false, false, s.Interval, s.Comment)
	if err != nil {
		return nil, err
	}
	if err := checkTimeout(s.Timeout); err != nil {
		return nil, err
	}
	switch {
	case s.Dynamic && s.Interval:
		return nil, errors.New("a dynamic set cannot be an interval set")
	case s.Dynamic && len(s.Elements) > 0:
		return nil, errors.New("a dynamic set takes no elements (its rules fill it)")
	case s.Timeout != 0 && !s.Dynamic:
		return nil, errors.New("only a dynamic set may have a timeout (an applier's elements would expire)")
	}
	st.dynamic, st.timeout, st.size = s.Dynamic, s.Timeout, s.Size
	for _, text := range s.Elements {
		e, canon, err := st.parseKey(text)
		if err != nil {
			return nil, err
		}
		if _, dup := st.elems[canon]; dup {
			return nil, fmt.Errorf("duplicate element %q", text)
		}
		st.elems[canon] = elem{key: e}
	}
	return st, checkOverlaps(st)
}

// compileMap validates a map: key and value types, element syntax, and,
// for a verdict map, that every jump or goto targets a regular chain of
// the table.
func compileMap(m *Map, chains map[string]*Chain) (*setState, error) {
	st, err := newSetState(m.Key, m.Value, true, m.Verdict, m.Interval, m.Comment)
	if err != nil {
		return nil, err
	}
	seen := map[string]string{}
	for k, v := range m.Elements {
		key, canon, err := st.parseKey(k)
		if err != nil {
			return nil, err
		}
		if other, dup := seen[canon]; dup {
			return nil, fmt.Errorf("duplicate key %q (also %q)", k, other)
		}
		seen[canon] = k
		e := elem{key: key}
		if err := st.parseValue(&e, k, v, &ruleCtx{chains: chains}); err != nil {
			return nil, err
		}
		st.elems[canon] = e
	}
	return st, checkOverlaps(st)
}

// checkOverlaps refuses overlapping intervals of a single-field interval
// set or map, which the kernel refuses whatever their order.
func checkOverlaps(st *setState) error {
	if !st.interval || len(st.keys) != 1 {
		return nil
	}
	sorted := newSortedElems(st.keyList()).list
	for i := 1; i < len(sorted); i++ {
		a, b := sorted[i-1], sorted[i]
		if bytes.Compare(b[0].lo, a[0].hi) <= 0 {
			return fmt.Errorf("elements %q and %q overlap", a.canonical(st.keys), b.canonical(st.keys))
		}
	}
	return nil
}

func checkChain(family Family, ch *Chain) error {
	if !ch.IsBase() {
		if ch.Type != "" || ch.Priority != 0 || ch.Policy != "" || ch.Device != "" {
			return errors.New("a regular chain (no hook) takes no type, priority, policy or device")
		}
		return nil
	}
	if _, ok := ch.Hook.NumberIn(family); !ok {
		return fmt.Errorf("unknown hook %q in a %s table", ch.Hook, family)
	}
	if family != FamilyInet && ch.Type != ChainTypeFilter && ch.Type != "" {
		return fmt.Errorf("a %s table has no %s chains", family, ch.Type)
	}
	if family == FamilyNetdev {
		if err := checkDevice(ch.Device); err != nil {
			return err
		}
	} else if ch.Device != "" {
		return fmt.Errorf("device %q: only base chains of a netdev table are bound to a device", ch.Device)
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

// checkDevice checks the device of a netdev base chain: a valid interface
// name.
func checkDevice(dev string) error {
	switch {
	case dev == "":
		return errors.New("a base chain of a netdev table needs a device")
	case len(dev) > maxIfnameLen:
		return fmt.Errorf("device %q: longer than %d bytes", dev, maxIfnameLen)
	case dev == "." || dev == ".." || strings.ContainsAny(dev, "/: \t\n\x00"):
		return fmt.Errorf("device %q: not a valid interface name", dev)
	}
	return nil
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
	rs := ruleState{ir: RuleIR{ID: ruleID(r, ctx.maps)}}
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
		rs.ir.Exprs = append(rs.ir.Exprs, ex...)
	}
	rs.refSets, rs.refChains, rs.ir.Anon = ctx.refSets, ctx.refChains, ctx.anon
	return rs, nil
}

// newAnonSet parses the elements of an anonymous set of key type keys.
// The set is an interval set when any element is a prefix or range. As
// nft does for anonymous sets, duplicates are collapsed and overlapping
// intervals of a single-field set merged; concatenated intervals the
// kernel would refuse (see sortedElems.clash) are an error.
func newAnonSet(keys []KeyType, texts []string) (AnonSet, error) {
	if len(texts) == 0 {
		return AnonSet{}, errors.New("no elements")
	}
	if err := checkKey(keys); err != nil {
		return AnonSet{}, err
	}
	interval := false
	elems := map[string]elem{}
	for _, t := range texts {
		e, err := parseElement(keys, t, modeInterval)
		if err != nil {
			return AnonSet{}, err
		}
		for _, v := range e {
			interval = interval || !v.single()
		}
		elems[e.canonical(keys)] = elem{key: e}
	}
	if interval {
		if err := checkIntervalKey(keys); err != nil {
			return AnonSet{}, err
		}
	}
	st := &setState{keys: keys, interval: interval, elems: elems}
	sorted := newSortedElems(st.keyList()).list
	switch {
	case interval && len(keys) == 1:
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
	case interval:
		if err := clashIn(st, "anonymous", nil, sorted); err != nil {
			return AnonSet{}, err
		}
	}
	def := st.def("__set%d")
	def.Anonymous, def.Constant = true, true
	a := AnonSet{Def: *def}
	for _, e := range sorted {
		a.Elems = append(a.Elems, e.lower(keys, interval)...)
	}
	return a, nil
}

// sortedElements returns the elements in key order.
func sortedElements(elems []elem) []elem {
	sort.Slice(elems, func(i, j int) bool { return elems[i].key.compare(elems[j].key) < 0 })
	return elems
}
