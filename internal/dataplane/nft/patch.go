package nft

import (
	"bytes"
	"errors"
	"fmt"
	"sort"
	"strings"
)

// TablePatch is an incremental change to one table that the Applier
// already holds (applied before with Apply or ApplyAll, or, for the
// Kernel, present in the kernel). It names only what changes, so that
// Patch costs time in proportion to the patch, not to the table.
//
// Element texts use the syntax of Set.Elements (map keys) and Map.Elements
// (map values); they are compared in canonical form, so "10.0.0.0/24" and
// "10.0.0.0-10.0.0.255" name the same element.
//
// The changes of one patch take effect in this order, each seeing the
// result of the previous ones:
//
//  1. AddChains: the chains are created (a chain may jump to another
//     chain of AddChains, in any order).
//  2. DeleteElements and DeleteMapElements: removals.
//  3. AddElements and SetMapElements: additions and value updates (an
//     element both removed and added by one patch ends up present). A
//     verdict map value may jump to a chain of AddChains.
//  4. DeleteChains: the chains are deleted; each must then be referenced
//     by no rule and no verdict map element (one the same patch stopped
//     referencing is fine).
//
// A chain named in both AddChains and DeleteChains is replaced: it stays
// (or is created, if absent), with the rules of the AddChains definition
// (flushed and refilled only if they differ), and references to it remain
// valid. (A compiler that releases a shared chain for one object and takes
// it again for another within one change produces such a patch.)
//
// Adding an element that is present (with the same value, for a map) or
// removing one that is absent changes nothing and is not an error.
type TablePatch struct {
	Family Family
	Table  string
	// AddChains are regular (non-base) chains, created with their rules;
	// none may exist (unless also in DeleteChains, see above). The applier
	// keeps copies, not the pointers.
	AddChains []*Chain
	// DeleteChains are regular chains; each must exist. They are deleted
	// after the element changes of the same patch.
	DeleteChains []string
	// AddElements maps a set name to elements to add.
	AddElements map[string][]string
	// DeleteElements maps a set name to elements to remove (by exact
	// element: removing 10.0.0.0/25 from a set holding 10.0.0.0/24 is a
	// no-op).
	DeleteElements map[string][]string
	// SetMapElements maps a map name to keys and their values: a new key
	// is added; a present key whose value differs is updated (the kernel
	// element is deleted and re-added in the same batch).
	SetMapElements map[string]map[string]string
	// DeleteMapElements maps a map name to keys to remove.
	DeleteMapElements map[string][]string
}

// Empty reports whether p changes nothing: no chains and no elements
// (empty lists and maps count as nothing).
func (p TablePatch) Empty() bool {
	if len(p.AddChains) > 0 || len(p.DeleteChains) > 0 {
		return false
	}
	for _, l := range p.AddElements {
		if len(l) > 0 {
			return false
		}
	}
	for _, l := range p.DeleteElements {
		if len(l) > 0 {
			return false
		}
	}
	for _, m := range p.SetMapElements {
		if len(m) > 0 {
			return false
		}
	}
	for _, l := range p.DeleteMapElements {
		if len(l) > 0 {
			return false
		}
	}
	return true
}

func (p TablePatch) key() tableKey { return tableKey{p.Family, p.Table} }

// patchRun validates patches against the applier's state and applies them
// to it as it goes, queuing the kernel messages on b and recording how to
// undo each change: on a refused patch, or a batch the kernel refuses,
// rollback restores the state. Every step costs time in proportion to the
// patch (map and index operations), never to the table.
type patchRun struct {
	b    *batch
	undo []func()
	// Per patch, what the Fake must mirror in its chain definitions.
	added    []patchedChains
	multiple bool // the batch spans several tables: ops name their table
}

// patchedChains is what one patch did to a table's chains.
type patchedChains struct {
	key      tableKey
	added    []*Chain // copies; includes replaced chains
	replaced map[string]bool
	deleted  []string
}

func (r *patchRun) do(undo func()) { r.undo = append(r.undo, undo) }

// rollback undoes every change, newest first.
func (r *patchRun) rollback() {
	for i := len(r.undo) - 1; i >= 0; i-- {
		r.undo[i]()
	}
	r.undo = nil
	r.added = nil
}

// apply validates patch i against st, applies it to st, and queues its
// messages. On error the caller rolls back.
func (r *patchRun) apply(i int, p TablePatch, st *compiled) error {
	key := p.key()
	wrap := func(err error) error { return fmt.Errorf("patch %d (table %s): %w", i, key, err) }
	r.b.section(key, r.multiple)
	res := patchedChains{key: key, replaced: map[string]bool{}}
	find := func(name string) (*Chain, bool) {
		cs, ok := st.chains[name]
		if !ok {
			return nil, false
		}
		return &Chain{Name: name, Hook: cs.hook}, true
	}

	// 1. Chains.
	deleting := make(map[string]bool, len(p.DeleteChains))
	for _, name := range p.DeleteChains {
		if deleting[name] {
			return wrap(fmt.Errorf("chain %s listed twice in DeleteChains", name))
		}
		deleting[name] = true
	}
	type newChain struct {
		def     *Chain
		old     *chainState // the replaced chain, or nil
		state   *chainState
		refresh bool // rules to (re)send
	}
	var news []*newChain
	seen := map[string]bool{}
	for _, ch := range p.AddChains {
		if ch == nil {
			return wrap(errors.New("nil chain in AddChains"))
		}
		if !nameRE.MatchString(ch.Name) {
			return wrap(fmt.Errorf("invalid chain name %q", ch.Name))
		}
		if seen[ch.Name] {
			return wrap(fmt.Errorf("chain %s listed twice in AddChains", ch.Name))
		}
		seen[ch.Name] = true
		if ch.base() {
			return wrap(fmt.Errorf("chain %s: a patch adds regular chains only (it has hook %s)", ch.Name, ch.Hook))
		}
		if err := checkChain(st.family, ch); err != nil {
			return wrap(fmt.Errorf("chain %s: %w", ch.Name, err))
		}
		nc := &newChain{def: cloneChain(ch), state: &chainState{}}
		if old, exists := st.chains[ch.Name]; exists {
			if !deleting[ch.Name] {
				return wrap(fmt.Errorf("chain %s already exists", ch.Name))
			}
			if old.hook != "" {
				return wrap(fmt.Errorf("chain %s is a base chain", ch.Name))
			}
			nc.old = old
		}
		news = append(news, nc)
	}
	for _, nc := range news {
		r.setChain(st, nc.def.Name, nc.state)
	}
	if len(news) > 0 {
		ctxSets, ctxMaps := st.views()
		for _, nc := range news {
			for j, rule := range nc.def.Rules {
				ctx := &ruleCtx{family: st.family, sets: ctxSets, maps: ctxMaps, findChain: find, chain: nc.def}
				rs, err := compileRule(rule, ctx)
				if err != nil {
					name := fmt.Sprintf("%d", j)
					if rule.Comment != "" {
						name = fmt.Sprintf("%d (%q)", j, rule.Comment)
					}
					return wrap(fmt.Errorf("chain %s: rule %s: %w", nc.def.Name, name, err))
				}
				nc.state.rules = append(nc.state.rules, rs)
				for _, target := range rs.refChains {
					r.ref(st, target, 1)
				}
			}
			nc.refresh = nc.old == nil || !sameRules(nc.old.rules, nc.state.rules)
			if nc.old != nil {
				for _, rs := range nc.old.rules {
					for _, target := range rs.refChains {
						r.ref(st, target, -1)
					}
				}
			}
			res.added = append(res.added, nc.def)
			if nc.old != nil {
				res.replaced[nc.def.Name] = true
			}
		}
	}

	// 2. Removals.
	setDel := map[string][]element{}
	for _, name := range sortedKeys(p.DeleteElements) {
		ss, err := st.patchSet(name)
		if err != nil {
			return wrap(err)
		}
		for _, text := range p.DeleteElements[name] {
			e, canon, err := ss.parse(text)
			if err != nil {
				return wrap(fmt.Errorf("set %s: %w", name, err))
			}
			if _, ok := ss.elems[canon]; !ok {
				continue
			}
			r.setRemove(ss, canon)
			setDel[name] = append(setDel[name], e)
		}
	}
	mapDel := map[string][]mapElem{}
	for _, name := range sortedKeys(p.DeleteMapElements) {
		ms, err := st.patchMap(name)
		if err != nil {
			return wrap(err)
		}
		for _, text := range p.DeleteMapElements[name] {
			_, canon, err := ms.parseKey(text)
			if err != nil {
				return wrap(fmt.Errorf("map %s: %w", name, err))
			}
			old, ok := ms.elems[canon]
			if !ok {
				continue
			}
			r.mapRemove(st, ms, canon)
			mapDel[name] = append(mapDel[name], old)
		}
	}

	// 3. Additions.
	setAdd := map[string][]element{}
	for _, name := range sortedKeys(p.AddElements) {
		ss, err := st.patchSet(name)
		if err != nil {
			return wrap(err)
		}
		for _, text := range p.AddElements[name] {
			e, canon, err := ss.parse(text)
			if err != nil {
				return wrap(fmt.Errorf("set %s: %w", name, err))
			}
			if _, ok := ss.elems[canon]; ok {
				continue
			}
			if ss.interval && len(ss.keys) == 1 {
				if other, clash := ss.index().overlap(e); clash {
					return wrap(fmt.Errorf("set %s: element %q overlaps %q", name, text, other.canonical(ss.keys)))
				}
			}
			r.setInsert(ss, canon, e)
			setAdd[name] = append(setAdd[name], e)
		}
	}
	mapAdd := map[string][]mapElem{}
	for _, name := range sortedKeys(p.SetMapElements) {
		ms, err := st.patchMap(name)
		if err != nil {
			return wrap(err)
		}
		kv := p.SetMapElements[name]
		given := make(map[string]string, len(kv))
		for _, k := range sortedKeys(kv) {
			e, canon, err := ms.parseKey(k)
			if err != nil {
				return wrap(fmt.Errorf("map %s: %w", name, err))
			}
			if other, dup := given[canon]; dup {
				return wrap(fmt.Errorf("map %s: duplicate key %q (also %q)", name, k, other))
			}
			given[canon] = k
			me := mapElem{key: e}
			if ms.verdict {
				if me.verdict, err = parseVerdict(kv[k], &ruleCtx{family: st.family, findChain: find}); err != nil {
					return wrap(fmt.Errorf("map %s: element %q: %w", name, k, err))
				}
				me.text = me.verdict.String()
			} else {
				if me.val, err = parseElement(ms.vals, kv[k], modeSingle); err != nil {
					return wrap(fmt.Errorf("map %s: element %q: value: %w", name, k, err))
				}
				me.text = me.val.canonical(ms.vals)
			}
			old, had := ms.elems[canon]
			if had && old.text == me.text {
				continue
			}
			if had {
				r.mapRemove(st, ms, canon)
				mapDel[name] = append(mapDel[name], old)
			} else if ms.interval && len(ms.keys) == 1 {
				if other, clash := ms.index().overlap(e); clash {
					return wrap(fmt.Errorf("map %s: key %q overlaps %q", name, k, other.canonical(ms.keys)))
				}
			}
			r.mapInsert(st, ms, canon, me)
			mapAdd[name] = append(mapAdd[name], me)
		}
	}

	// 4. Chain deletions: first drop the references of the deleted chains'
	// rules (they may jump to each other), then check nothing else refers
	// to them.
	var dels []string
	flush := map[string]bool{} // deleted chains that have rules
	for _, name := range p.DeleteChains {
		if seen[name] {
			continue // replaced, handled above
		}
		cs, ok := st.chains[name]
		if !ok {
			return wrap(fmt.Errorf("cannot delete chain %s: no such chain", name))
		}
		if cs.hook != "" {
			return wrap(fmt.Errorf("cannot delete chain %s: a patch deletes regular chains only (it has hook %s)", name, cs.hook))
		}
		for _, rs := range cs.rules {
			for _, target := range rs.refChains {
				r.ref(st, target, -1)
			}
		}
		dels = append(dels, name)
		flush[name] = len(cs.rules) > 0
	}
	for _, name := range dels {
		if n := st.refs[name]; n > 0 {
			return wrap(fmt.Errorf("cannot delete chain %s: still referenced after the patch (%s)", name, st.referrers(name, deleting)))
		}
	}
	for _, name := range dels {
		r.setChain(st, name, nil)
	}
	res.deleted = dels

	// The messages, in an order the kernel accepts: nothing is referenced
	// before it exists or deleted while referenced.
	b := r.b
	for _, name := range dels {
		if flush[name] {
			b.op("flush chain %s", name)
			b.flushChain(name)
		}
	}
	for _, nc := range news {
		if nc.old != nil && nc.refresh && len(nc.old.rules) > 0 {
			b.op("flush chain %s", nc.def.Name)
			b.flushChain(nc.def.Name)
		}
	}
	for _, name := range sortedKeys(mapDel) {
		b.mapElements(false, name, st.maps[name], mapDel[name])
	}
	for _, name := range sortedKeys(setDel) {
		b.elements(false, name, st.sets[name], setDel[name])
	}
	for _, nc := range news {
		if nc.old == nil {
			b.op("add chain %s", nc.def.Name)
			b.addChain(kernelChain(b.table, nc.def.Name, nc.state))
		}
	}
	for _, name := range sortedKeys(setAdd) {
		b.elements(true, name, st.sets[name], setAdd[name])
	}
	for _, name := range sortedKeys(mapAdd) {
		b.mapElements(true, name, st.maps[name], mapAdd[name])
	}
	for _, nc := range news {
		if !nc.refresh || len(nc.state.rules) == 0 {
			continue
		}
		b.op("add %d rules to chain %s", len(nc.state.rules), nc.def.Name)
		for _, rs := range nc.state.rules {
			b.addRule(nc.def.Name, rs)
		}
	}
	for _, name := range dels {
		b.op("delete chain %s", name)
		b.delChain(name)
	}
	r.added = append(r.added, res)
	return nil
}

// The state changes, each with its undo.

// setChain sets (or, with cs nil, deletes) a chain of st.
func (r *patchRun) setChain(st *compiled, name string, cs *chainState) {
	old, had := st.chains[name]
	oldOrder := st.chainOrder
	if cs == nil {
		delete(st.chains, name)
	} else {
		st.chains[name] = cs
	}
	st.chainOrder = nil
	r.do(func() {
		if had {
			st.chains[name] = old
		} else {
			delete(st.chains, name)
		}
		st.chainOrder = oldOrder
	})
}

// ref adds d to the reference count of chain name.
func (r *patchRun) ref(st *compiled, name string, d int) {
	st.addRef(name, d)
	r.do(func() { st.addRef(name, -d) })
}

func (r *patchRun) setInsert(ss *setState, canon string, e element) {
	ss.insert(canon, e)
	r.do(func() { ss.remove(canon) })
}

func (r *patchRun) setRemove(ss *setState, canon string) {
	e := ss.elems[canon]
	ss.remove(canon)
	r.do(func() { ss.insert(canon, e) })
}

func (r *patchRun) mapInsert(st *compiled, ms *mapState, canon string, me mapElem) {
	ms.insert(canon, me)
	if me.verdict.Chain != "" {
		st.addRef(me.verdict.Chain, 1)
	}
	r.do(func() {
		ms.remove(canon)
		if me.verdict.Chain != "" {
			st.addRef(me.verdict.Chain, -1)
		}
	})
}

func (r *patchRun) mapRemove(st *compiled, ms *mapState, canon string) {
	me := ms.elems[canon]
	ms.remove(canon)
	if me.verdict.Chain != "" {
		st.addRef(me.verdict.Chain, -1)
	}
	r.do(func() {
		ms.insert(canon, me)
		if me.verdict.Chain != "" {
			st.addRef(me.verdict.Chain, 1)
		}
	})
}

// addRef adds d to the reference count of chain name.
func (c *compiled) addRef(name string, d int) {
	if c.refs == nil {
		c.countRefs()
	}
	if n := c.refs[name] + d; n != 0 {
		c.refs[name] = n
	} else {
		delete(c.refs, name)
	}
}

// referrers describes what references chain name (for an error message;
// it scans the table, which only a refused patch pays for). Chains being
// deleted do not count.
func (c *compiled) referrers(name string, deleting map[string]bool) string {
	var found []string
	for _, cn := range sortedKeys(c.chains) {
		if deleting[cn] {
			continue
		}
		for i, rs := range c.chains[cn].rules {
			for _, t := range rs.refChains {
				if t == name {
					found = append(found, fmt.Sprintf("rule %d of chain %s", i, cn))
				}
			}
		}
	}
	for _, mn := range sortedKeys(c.maps) {
		ms := c.maps[mn]
		if !ms.verdict {
			continue
		}
		for _, canon := range sortedKeys(ms.elems) {
			if ms.elems[canon].verdict.Chain == name {
				found = append(found, fmt.Sprintf("element %s of map %s", canon, mn))
			}
		}
	}
	if len(found) == 0 {
		return "by an unknown reference"
	}
	if len(found) > 3 {
		found = append(found[:3], fmt.Sprintf("and %d more", len(found)-3))
	}
	return "by " + strings.Join(found, ", ")
}

// views returns the table's sets and maps as the model types rule
// lowering uses (headers only, no elements).
func (c *compiled) views() (map[string]*Set, map[string]*Map) {
	sets := make(map[string]*Set, len(c.sets))
	for name, ss := range c.sets {
		sets[name] = &Set{Name: name, Key: ss.keys, Interval: ss.interval}
	}
	maps := make(map[string]*Map, len(c.maps))
	for name, ms := range c.maps {
		maps[name] = &Map{Name: name, Key: ms.keys, Value: ms.vals, Verdict: ms.verdict, Interval: ms.interval}
	}
	return sets, maps
}

// patchSet returns the set name of c for a patch.
func (c *compiled) patchSet(name string) (*setState, error) {
	ss, ok := c.sets[name]
	if !ok {
		if _, isMap := c.maps[name]; isMap {
			return nil, fmt.Errorf("%q is a map, not a set", name)
		}
		return nil, fmt.Errorf("unknown set %q", name)
	}
	if ss.keys == nil {
		return nil, fmt.Errorf("set %s has a type hostnet does not model (Apply the table first)", name)
	}
	return ss, nil
}

// patchMap returns the map name of c for a patch.
func (c *compiled) patchMap(name string) (*mapState, error) {
	ms, ok := c.maps[name]
	if !ok {
		if _, isSet := c.sets[name]; isSet {
			return nil, fmt.Errorf("%q is a set, not a map", name)
		}
		return nil, fmt.Errorf("unknown map %q", name)
	}
	if ms.keys == nil {
		return nil, fmt.Errorf("map %s has a type hostnet does not model (Apply the table first)", name)
	}
	return ms, nil
}

// parse parses an element of the set and returns it with its canonical
// text.
func (s *setState) parse(text string) (element, string, error) {
	mode := modeSingle
	if s.interval {
		mode = modeInterval
	}
	e, err := parseElement(s.keys, text, mode)
	if err != nil {
		return nil, "", err
	}
	return e, e.canonical(s.keys), nil
}

// parseKey parses a key of the map and returns it with its canonical text.
func (m *mapState) parseKey(text string) (element, string, error) {
	mode := modeSingle
	if m.interval {
		mode = modeInterval
	}
	e, err := parseElement(m.keys, text, mode)
	if err != nil {
		return nil, "", err
	}
	return e, e.canonical(m.keys), nil
}

func (s *setState) insert(canon string, e element) {
	s.elems[canon] = e
	if s.sorted != nil {
		s.sorted.insert(e)
	}
}

func (s *setState) remove(canon string) {
	e, ok := s.elems[canon]
	if !ok {
		return
	}
	delete(s.elems, canon)
	if s.sorted != nil {
		s.sorted.remove(e)
	}
}

// index returns the set's elements in key order, building the index the
// first time (once per Apply; patches then keep it up to date).
func (s *setState) index() *sortedElems {
	if s.sorted == nil {
		s.sorted = &sortedElems{list: sortedElements(s.elems)}
	}
	return s.sorted
}

func (m *mapState) insert(canon string, me mapElem) {
	m.elems[canon] = me
	if m.sorted != nil {
		m.sorted.insert(me.key)
	}
}

func (m *mapState) remove(canon string) {
	me, ok := m.elems[canon]
	if !ok {
		return
	}
	delete(m.elems, canon)
	if m.sorted != nil {
		m.sorted.remove(me.key)
	}
}

// index returns the map's keys in key order (see setState.index).
func (m *mapState) index() *sortedElems {
	if m.sorted == nil {
		keys := make([]element, 0, len(m.elems))
		for _, me := range m.elems {
			keys = append(keys, me.key)
		}
		sort.Slice(keys, func(i, j int) bool { return keys[i].compare(keys[j]) < 0 })
		m.sorted = &sortedElems{list: keys}
	}
	return m.sorted
}

// sortedElems keeps the elements of a single-field interval set (or the
// keys of such a map) in key order, to find overlaps by binary search.
type sortedElems struct {
	list []element
}

// search returns the position of the first element not before e.
func (s *sortedElems) search(e element) int {
	return sort.Search(len(s.list), func(i int) bool { return s.list[i].compare(e) >= 0 })
}

// overlap returns an element that overlaps e (single-field intervals),
// if any.
func (s *sortedElems) overlap(e element) (element, bool) {
	i := s.search(e)
	if i > 0 && bytes.Compare(s.list[i-1][0].hi, e[0].lo) >= 0 {
		return s.list[i-1], true
	}
	if i < len(s.list) && bytes.Compare(s.list[i][0].lo, e[0].hi) <= 0 {
		return s.list[i], true
	}
	return nil, false
}

func (s *sortedElems) insert(e element) {
	i := s.search(e)
	s.list = append(s.list, nil)
	copy(s.list[i+1:], s.list[i:])
	s.list[i] = e
}

func (s *sortedElems) remove(e element) {
	i := s.search(e)
	if i < len(s.list) && s.list[i].compare(e) == 0 {
		s.list = append(s.list[:i], s.list[i+1:]...)
	}
}
