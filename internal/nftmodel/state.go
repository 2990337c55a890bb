package nftmodel

import (
	"bytes"
	"fmt"
	"sort"
	"strconv"
	"strings"
	"time"
)

// State is a table as an applier tracks it: validated and lowered from a
// Table (Compile), or read back from the kernel (NewState and the Read
// methods). Appliers diff two States (Batch.Plan) and change one in place
// with patches (PatchAll), in time proportional to the patch: each set and
// map keeps its elements indexed by canonical text.
//
// A State is not safe for concurrent use.
type State struct {
	family     Family
	name       string
	sets       map[string]*setState
	maps       map[string]*setState
	chains     map[string]*chainState
	chainOrder []string // chains in the order of the Table (a desired table only; nil once patched)
	// refs counts, per chain, the rules and verdict map elements that jump
	// or go to it (a patch may not delete a chain still referenced); nil
	// until first needed.
	refs map[string]int
}

// NewState returns the state of an empty table; an applier that reads a
// table back from the kernel records its sets, maps and chains in it with
// ReadSet, ReadMap and ReadChain.
func NewState(family Family, name string) *State {
	return &State{family: family, name: name, sets: map[string]*setState{}, maps: map[string]*setState{}, chains: map[string]*chainState{}}
}

// Key returns the key of the state's table.
func (s *State) Key() TableKey { return TableKey{s.family, s.name} }

// setState is a set or a map as appliers see it (desired, or read back).
type setState struct {
	keys     []KeyType // nil for a kernel set of a type hostnet does not model
	vals     []KeyType // the values of a data map; nil for a set or a verdict map
	isMap    bool
	verdict  bool // a verdict map
	interval bool
	comment  string
	// dynamic: the kernel's rules fill the set; its elements are never
	// tracked (elems stays empty, read or desired).
	dynamic bool
	timeout time.Duration   // default timeout (flags timeout), 0 for none
	size    uint32          // maximum number of elements, 0 for the kernel's default
	elems   map[string]elem // canonical key text -> element
	sorted  *sortedElems    // keys in order, built by the first check that needs it
}

// elem is one element of a set or map: its key and, in a map, its value.
type elem struct {
	key     element
	val     element     // the value of a data map element
	verdict VerdictStmt // the value of a verdict map element
	text    string      // canonical value text: "10.0.0.2 . 80", "jump acl_a1"; "" in a set
}

// kind names the object in messages: "set" or "map".
func (s *setState) kind() string {
	if s.isMap {
		return "map"
	}
	return "set"
}

// sameShape reports whether an existing set or map a can be kept for the
// desired one d (only its elements differ).
//
// A desired size of 0 takes whatever the kernel chose (it sets one when a
// rule first updates a dynamic set).
func (a *setState) sameShape(d *setState) bool {
	return a.keys != nil && keyString(a.keys) == keyString(d.keys) && a.verdict == d.verdict &&
		keyString(a.vals) == keyString(d.vals) && a.interval == d.interval &&
		a.dynamic == d.dynamic && a.timeout == d.timeout && (d.size == 0 || a.size == d.size)
}

// parseKey parses an element of a set (a key of a map) and returns it with
// its canonical text.
func (s *setState) parseKey(text string) (element, string, error) {
	e, err := parseElement(s.keys, text, modeFor(s.interval))
	if err != nil {
		return nil, "", err
	}
	return e, e.canonical(s.keys), nil
}

// parseValue parses the value v of the map element with key text k: a
// verdict, whose chain c looks up, or data.
func (s *setState) parseValue(e *elem, k, v string, c *ruleCtx) error {
	var err error
	if s.verdict {
		if e.verdict, err = parseVerdict(v, c); err != nil {
			return fmt.Errorf("element %q: %w", k, err)
		}
		e.text = e.verdict.String()
		return nil
	}
	if e.val, err = parseElement(s.vals, v, modeSingle); err != nil {
		return fmt.Errorf("element %q: value: %w", k, err)
	}
	e.text = e.val.canonical(s.vals)
	return nil
}

// def describes the set or map for its creation.
func (s *setState) def(name string) *SetDef {
	d := &SetDef{Name: name, ID: nextSetID(), Key: DatatypeOf(s.keys), Concat: len(s.keys) > 1, Interval: s.interval,
		IsMap: s.isMap, KeyHostOrder: hostOrderKey(s.keys), Comment: s.comment, Dynamic: s.dynamic, Timeout: s.timeout, Size: s.size}
	switch {
	case s.verdict:
		d.Data = VerdictDatatype
	case s.isMap:
		d.Data = DatatypeOf(s.vals)
	}
	return d
}

// hostOrderKey tells whether nft records a key's byte order as host order
// (an interface name, or a number of the kernel's own).
func hostOrderKey(keys []KeyType) bool {
	return len(keys) == 1 && (keys[0] == KeyIfname || keyInfos[keys[0]].hostOrder)
}

// lower encodes an element for the kernel: its key as for a set, with the
// value on the (start) element.
func (s *setState) lower(e elem) []SetElem {
	kel := e.key.lower(s.keys, s.interval)
	switch {
	case s.verdict:
		v := e.verdict.ir()
		kel[0].Verdict = &v
	case s.isMap:
		kel[0].Val = e.val.wireKey(s.vals, false)
	}
	return kel
}

func (s *setState) insert(canon string, e elem) {
	s.elems[canon] = e
	if s.sorted != nil {
		s.sorted.insert(e.key)
	}
}

func (s *setState) remove(canon string) {
	e, ok := s.elems[canon]
	if !ok {
		return
	}
	delete(s.elems, canon)
	if s.sorted != nil {
		s.sorted.remove(e.key)
	}
}

// index returns the keys in order, building the index the first time
// (once per Apply; patches then keep it up to date).
func (s *setState) index() *sortedElems {
	if s.sorted == nil {
		s.sorted = newSortedElems(s.keyList())
	}
	return s.sorted
}

// keyList returns the keys of the elements, in no order.
func (s *setState) keyList() []element {
	out := make([]element, 0, len(s.elems))
	for _, e := range s.elems {
		out = append(out, e.key)
	}
	return out
}

// chainState is a chain as appliers see it.
type chainState struct {
	typ    ChainType
	hook   Hook // empty for a regular chain
	prio   int
	policy Verdict // base chains only
	device string  // netdev base chains only
	rules  []ruleState
}

// sameShape reports whether chain a can be kept for desired chain d (its
// policy and rules may still differ).
func (a *chainState) sameShape(d *chainState) bool {
	return a.typ == d.typ && a.hook == d.hook && a.prio == d.prio && a.device == d.device
}

// def describes the chain for its creation.
func (a *chainState) def(name string) *ChainDef {
	return &ChainDef{Name: name, Type: a.typ, Hook: a.hook, Priority: a.prio, Policy: a.policy, Device: a.device}
}

// ruleState is one rule: its identity and what it references. ir.Exprs
// and ir.Anon are set for desired rules only.
type ruleState struct {
	ir        RuleIR
	refSets   []string // named sets and maps
	refChains []string // chains jumped or gone to
}

// irs returns the lowered rules, for a step.
func irs(rules []ruleState) []*RuleIR {
	out := make([]*RuleIR, len(rules))
	for i := range rules {
		out[i] = &rules[i].ir
	}
	return out
}

// ReadSet records a set the kernel holds: keys nil for a key type the
// model does not know, elems its elements as the kernel lists them. A set
// of unknown type, or whose elements do not decode, is kept without keys,
// so that Plan recreates it.
func (s *State) ReadSet(name string, keys []KeyType, interval bool, elems []SetElem) {
	s.sets[name] = readSet(&setState{keys: keys, interval: interval}, elems)
}

// ReadDynamicSet records a dynamic set the kernel holds (flags dynamic):
// keys nil for a key type the model does not know, its default timeout (0
// for none) and size. Its elements, the kernel's rules', are not read.
func (s *State) ReadDynamicSet(name string, keys []KeyType, timeout time.Duration, size uint32) {
	s.sets[name] = &setState{keys: keys, dynamic: true, timeout: timeout, size: size, elems: map[string]elem{}}
}

// ReadMap records a map the kernel holds: keys (and, for a data map,
// vals) nil for types the model does not know; verdict for a verdict map,
// whose elements carry a Verdict. As for ReadSet, a map that does not
// decode is kept without keys.
func (s *State) ReadMap(name string, keys, vals []KeyType, verdict, interval bool, elems []SetElem) {
	if !verdict && vals == nil {
		keys = nil
	}
	s.maps[name] = readSet(&setState{keys: keys, vals: vals, isMap: true, verdict: verdict, interval: interval}, elems)
	s.refs = nil // its elements' references are counted again
}

// readSet decodes elems into st (st.keys nil if they do not decode).
func readSet(st *setState, elems []SetElem) *setState {
	st.elems = map[string]elem{}
	if st.keys == nil {
		return st
	}
	ds, err := decodeElements(st.keys, st.interval, elems)
	if err == nil {
		for _, d := range ds {
			var e elem
			if e, err = st.decodeValue(d); err != nil {
				break
			}
			st.elems[e.key.canonical(st.keys)] = e
		}
	}
	if err != nil {
		st.keys, st.vals, st.elems = nil, nil, map[string]elem{}
	}
	return st
}

// decodeValue returns the element that d starts, with its value in a map.
func (s *setState) decodeValue(d decoded) (elem, error) {
	e := elem{key: d.e}
	switch {
	case s.verdict:
		v, ok := verdictOf(d.src.Verdict)
		if !ok {
			return elem{}, fmt.Errorf("element %s: verdict %+v", d.e.canonical(s.keys), d.src.Verdict)
		}
		e.verdict, e.text = v, v.String()
	case s.isMap:
		parts, err := splitKey(s.vals, d.src.Val)
		if err != nil {
			return elem{}, fmt.Errorf("element %s: value: %w", d.e.canonical(s.keys), err)
		}
		e.val = make(element, len(s.vals))
		for j := range s.vals {
			e.val[j] = value{lo: parts[j], hi: parts[j]}
		}
		e.text = e.val.canonical(s.vals)
	}
	return e, nil
}

// verdictOf returns the verdict statement a kernel verdict encodes; false
// for none or one hostnet does not write (continue, break, queue).
func verdictOf(v *IRVerdict) (VerdictStmt, bool) {
	if v == nil {
		return VerdictStmt{}, false
	}
	for verdict, code := range verdictCodes {
		if code == v.Code {
			return VerdictStmt{Verdict: verdict, Chain: v.Chain}, true
		}
	}
	return VerdictStmt{}, false
}

// ReadRule is a rule an applier read back: its identity (the comment of
// its userdata) and the sets, maps and chains its expressions name.
type ReadRule struct {
	ID     string
	Sets   []string
	Chains []string
}

// ReadChain records a chain the kernel holds. A base chain on a hook the
// model does not know should carry a Hook that names none of the model's
// (e.g. "hook7"), so that Plan recreates it.
func (s *State) ReadChain(def ChainDef, rules []ReadRule) {
	cs := &chainState{typ: def.Type, hook: def.Hook, prio: def.Priority, policy: def.Policy, device: def.Device}
	for _, r := range rules {
		cs.rules = append(cs.rules, ruleState{ir: RuleIR{ID: r.ID}, refSets: r.Sets, refChains: r.Chains})
	}
	s.chains[def.Name] = cs
	s.refs = nil
}

// String describes what appliers compare of the table, deterministically:
// sets and maps with their types, flags and elements, chains with their
// hooks, priorities, policies and rule identities.
func (s *State) String() string {
	var b strings.Builder
	for _, pair := range []struct {
		what string
		sets map[string]*setState
	}{{"set", s.sets}, {"map", s.maps}} {
		for _, name := range sortedKeys(pair.sets) {
			st := pair.sets[name]
			b.WriteString(pair.what + " " + name + " " + keyString(st.keys))
			switch {
			case st.verdict:
				b.WriteString(" : verdict")
			case st.isMap:
				b.WriteString(" : " + keyString(st.vals))
			}
			if st.interval {
				b.WriteString(" interval")
			}
			if st.dynamic {
				b.WriteString(" dynamic")
			}
			if st.timeout != 0 {
				b.WriteString(" timeout " + durationText(st.timeout))
			}
			if st.size != 0 {
				b.WriteString(" size " + strconv.FormatUint(uint64(st.size), 10))
			}
			var els []string
			for canon, e := range st.elems {
				if st.isMap {
					canon += " : " + e.text
				}
				els = append(els, canon)
			}
			sort.Strings(els)
			b.WriteString(" {" + strings.Join(els, ", ") + "}\n")
		}
	}
	for _, name := range sortedKeys(s.chains) {
		ch := s.chains[name]
		b.WriteString("chain " + name)
		if ch.hook != "" {
			b.WriteString(" " + string(ch.typ) + " " + string(ch.hook) + " " + strconv.Itoa(ch.prio) + " " + string(ch.policy))
			if ch.device != "" {
				b.WriteString(" device " + strconv.Quote(ch.device))
			}
		}
		b.WriteString(":")
		for _, r := range ch.rules {
			b.WriteString(" [" + r.ir.ID + "]")
		}
		b.WriteString("\n")
	}
	return b.String()
}

// Table returns the table the state describes, with chains as its chains
// (the state holds chains lowered, not their definitions): sets and maps
// sorted by name, elements and values in canonical form.
func (s *State) Table(chains []*Chain) *Table {
	t := &Table{Family: s.family, Name: s.name, Chains: chains}
	for _, name := range sortedKeys(s.sets) {
		st := s.sets[name]
		t.Sets = append(t.Sets, &Set{Name: name, Key: append([]KeyType(nil), st.keys...), Interval: st.interval,
			Comment: st.comment, Elements: sortedKeys(st.elems), Dynamic: st.dynamic, Timeout: st.timeout, Size: st.size})
	}
	for _, name := range sortedKeys(s.maps) {
		st := s.maps[name]
		m := &Map{Name: name, Key: append([]KeyType(nil), st.keys...), Verdict: st.verdict, Interval: st.interval,
			Comment: st.comment, Elements: make(map[string]string, len(st.elems))}
		if !st.verdict {
			m.Value = append([]KeyType(nil), st.vals...)
		}
		for canon, e := range st.elems {
			m.Elements[canon] = e.text
		}
		t.Maps = append(t.Maps, m)
	}
	return t
}

// countRefs fills s.refs from the chains' rules and the verdict maps'
// elements.
func (s *State) countRefs() {
	s.refs = map[string]int{}
	for _, cs := range s.chains {
		for _, r := range cs.rules {
			for _, name := range r.refChains {
				s.refs[name]++
			}
		}
	}
	for _, ms := range s.maps {
		for _, e := range ms.elems {
			if e.verdict.Chain != "" {
				s.refs[e.verdict.Chain]++
			}
		}
	}
}

// ensureRefs counts the references when s has no counts (read from the
// kernel): before a patch changes s.
func (s *State) ensureRefs() {
	if s.refs == nil {
		s.countRefs()
	}
}

// refCount returns how many rules and verdict map elements reference
// chain name.
func (s *State) refCount(name string) int {
	s.ensureRefs()
	return s.refs[name]
}

// addRef adds d to the reference count of chain name.
func (s *State) addRef(name string, d int) {
	if n := s.refCount(name) + d; n != 0 {
		s.refs[name] = n
	} else {
		delete(s.refs, name)
	}
}

func sortedKeys[V any](m map[string]V) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

// sortedElems keeps the keys of an interval set (or map) in key order, to
// find clashes by binary search.
type sortedElems struct {
	list []element
	// width bounds hi-lo of the first field over the elements (it does not
	// shrink on removal): an element holding a point starts at most width
	// before it.
	width []byte
}

func newSortedElems(list []element) *sortedElems {
	sort.Slice(list, func(i, j int) bool { return list[i].compare(list[j]) < 0 })
	s := &sortedElems{list: list}
	for _, e := range list {
		s.widen(e)
	}
	return s
}

func (s *sortedElems) widen(e element) {
	if w := sub(e[0].hi, e[0].lo); s.width == nil || bytes.Compare(w, s.width) > 0 {
		s.width = w
	}
}

// search returns the position of the first element not before e.
func (s *sortedElems) search(e element) int {
	return sort.Search(len(s.list), func(i int) bool { return s.list[i].compare(e) >= 0 })
}

// clash returns an element that keeps the kernel from adding e, if any.
// The rbtree of a single-field interval set refuses any overlap; the
// pipapo set of a concatenation refuses an element whose first or last
// point lies in an element it holds (it accepts one that covers another,
// or crosses it: the order of additions matters).
func (s *sortedElems) clash(e element) (element, bool) {
	if len(e) == 1 {
		i := s.search(e)
		if i > 0 && bytes.Compare(s.list[i-1][0].hi, e[0].lo) >= 0 {
			return s.list[i-1], true
		}
		if i < len(s.list) && bytes.Compare(s.list[i][0].lo, e[0].hi) <= 0 {
			return s.list[i], true
		}
		return nil, false
	}
	for _, hi := range []bool{false, true} {
		if x, ok := s.holding(e, hi); ok {
			return x, true
		}
	}
	return nil, false
}

// holding returns an element that holds the first (or, with hi, the last)
// point of e.
func (s *sortedElems) holding(e element, hi bool) (element, bool) {
	p := make([][]byte, len(e))
	for i, v := range e {
		p[i] = v.lo
		if hi {
			p[i] = v.hi
		}
	}
	from := sub(p[0], s.width)
	i := sort.Search(len(s.list), func(i int) bool { return bytes.Compare(s.list[i][0].lo, from) >= 0 })
	for ; i < len(s.list) && bytes.Compare(s.list[i][0].lo, p[0]) <= 0; i++ {
		x, in := s.list[i], true
		for f := range x {
			in = in && bytes.Compare(x[f].lo, p[f]) <= 0 && bytes.Compare(p[f], x[f].hi) <= 0
		}
		if in {
			return x, true
		}
	}
	return nil, false
}

func (s *sortedElems) insert(e element) {
	i := s.search(e)
	s.list = append(s.list, nil)
	copy(s.list[i+1:], s.list[i:])
	s.list[i] = e
	s.widen(e)
}

func (s *sortedElems) remove(e element) {
	i := s.search(e)
	if i < len(s.list) && s.list[i].compare(e) == 0 {
		s.list = append(s.list[:i], s.list[i+1:]...)
	}
}

// sub returns a-b of two big-endian numbers of one length, 0 when b > a.
func sub(a, b []byte) []byte {
	out := make([]byte, len(a))
	if len(b) != len(a) || bytes.Compare(a, b) <= 0 {
		return out
	}
	borrow := 0
	for i := len(a) - 1; i >= 0; i-- {
		d := int(a[i]) - int(b[i]) - borrow
		borrow = 0
		if d < 0 {
			d += 256
			borrow = 1
		}
		out[i] = byte(d)
	}
	return out
}

// clashIn adds elems (in key order, as a batch sends them) to an index of
// the elements a set keeps and returns an error naming the first element
// the kernel would refuse.
func clashIn(st *setState, name string, kept []element, elems []element) error {
	idx := newSortedElems(kept)
	for _, e := range elems {
		if other, clash := idx.clash(e); clash {
			return fmt.Errorf("%s %s: element %q overlaps %q", st.kind(), name, e.canonical(st.keys), other.canonical(st.keys))
		}
		idx.insert(e)
	}
	return nil
}
