package nftmodel

import (
	"errors"
	"fmt"
	"sort"
	"strings"
)

// TablePatch is an incremental change to one table that the applier
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
//     element both removed and added by one patch ends up present), in
//     key order. A verdict map value may jump to a chain of AddChains. An
//     element of an interval set that the kernel would refuse is an error
//     (any overlap in a single-field set; in a concatenation, a first or
//     last point that lies in an element of the set).
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
	for _, lists := range []map[string][]string{p.AddElements, p.DeleteElements, p.DeleteMapElements} {
		for _, l := range lists {
			if len(l) > 0 {
				return false
			}
		}
	}
	for _, m := range p.SetMapElements {
		if len(m) > 0 {
			return false
		}
	}
	return true
}

// Key returns the key of the patch's table.
func (p TablePatch) Key() TableKey { return TableKey{p.Family, p.Table} }

// PatchTables returns the distinct tables of the patches that change
// something, in order; a patch naming an invalid family or table name is
// an error.
func PatchTables(patches []TablePatch) ([]TableKey, error) {
	var keys []TableKey
	seen := map[TableKey]bool{}
	for i, p := range patches {
		if p.Empty() {
			continue
		}
		if !p.Family.Valid() {
			return nil, fmt.Errorf("patch %d (table %s): invalid family %d", i, p.Table, int(p.Family))
		}
		if !ValidName(p.Table) {
			return nil, fmt.Errorf("patch %d: invalid table name %q", i, p.Table)
		}
		if !seen[p.Key()] {
			seen[p.Key()] = true
			keys = append(keys, p.Key())
		}
	}
	return keys, nil
}

// PatchRun is the result of PatchAll: the states it changed, the batch
// that makes the same changes in the kernel, and how to undo them.
type PatchRun struct {
	batch   *Batch
	named   bool // the batch spans several tables: steps name their table
	undo    []func()
	results []PatchResult
}

// PatchResult is what one patch did to the chains of its table (for an
// applier that keeps chain definitions, as the Fake does).
type PatchResult struct {
	Table    TableKey
	Added    []*Chain // copies of the chains added, replaced ones included
	Replaced map[string]bool
	Deleted  []string
}

// PatchAll validates the patches (see TablePatch) against the states of
// their tables, states[p.Key()] (a table without one is an error),
// applies them to those states in order, and queues on a new batch the
// steps that make the same changes in the kernel, in an order it accepts.
// Empty patches are ignored. Every step costs time in proportion to the
// patch (map and index operations), never to the table.
//
// An invalid patch is an error naming the patch and the object, and the
// states are unchanged. Rollback undoes a run whose batch the kernel
// refused.
func PatchAll(patches []TablePatch, states map[TableKey]*State) (*PatchRun, error) {
	keys, err := PatchTables(patches)
	if err != nil {
		return nil, err
	}
	for _, key := range keys {
		if states[key] == nil {
			return nil, fmt.Errorf("table %s does not exist (apply it first)", key)
		}
	}
	r := &PatchRun{batch: &Batch{}, named: len(keys) > 1}
	for i, p := range patches {
		if p.Empty() {
			continue
		}
		if err := r.apply(i, p, states[p.Key()]); err != nil {
			r.Rollback()
			return nil, err
		}
	}
	return r, nil
}

// Batch returns the steps of the run.
func (r *PatchRun) Batch() *Batch { return r.batch }

// Results returns what each patch did to its table's chains.
func (r *PatchRun) Results() []PatchResult { return r.results }

// Rollback undoes every change of the run to the states, newest first.
func (r *PatchRun) Rollback() {
	for i := len(r.undo) - 1; i >= 0; i-- {
		r.undo[i]()
	}
	r.undo, r.results = nil, nil
}

func (r *PatchRun) do(undo func()) { r.undo = append(r.undo, undo) }

// newChain is a chain a patch adds (or replaces).
type newChain struct {
	def     *Chain
	old     *chainState // the replaced chain, or nil
	state   *chainState
	refresh bool // rules to (re)send
}

// pending is an element a patch adds, with the text it was given.
type pending struct {
	e     elem
	canon string
	text  string
}

// apply validates patch i against st, applies it to st, and queues its
// steps. On error the caller rolls back.
func (r *PatchRun) apply(i int, p TablePatch, st *State) error {
	key := p.Key()
	wrap := func(err error) error { return fmt.Errorf("patch %d (table %s): %w", i, key, err) }
	// The counts are taken before anything changes: taken lazily in the
	// middle, they would count an element just added, or miss one just
	// removed, and then apply the change to them again.
	st.ensureRefs()
	r.batch.Section(key, r.named)
	res := PatchResult{Table: key, Replaced: map[string]bool{}}
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
	news, err := r.addChains(p.AddChains, deleting, st, find)
	if err != nil {
		return wrap(err)
	}
	for _, nc := range news {
		res.Added = append(res.Added, nc.def)
		if nc.old != nil {
			res.Replaced[nc.def.Name] = true
		}
	}

	// 2. Removals.
	setDel, err := r.removeElements(st, false, p.DeleteElements)
	if err != nil {
		return wrap(err)
	}
	mapDel, err := r.removeElements(st, true, p.DeleteMapElements)
	if err != nil {
		return wrap(err)
	}

	// 3. Additions.
	setAdd, err := r.additions(st, false, sortedKeys(p.AddElements), func(ss *setState, name string) ([]pending, error) {
		var adds []pending
		for _, text := range p.AddElements[name] {
			e, canon, err := ss.parseKey(text)
			if err != nil {
				return nil, fmt.Errorf("set %s: %w", name, err)
			}
			adds = append(adds, pending{elem{key: e}, canon, text})
		}
		return adds, nil
	})
	if err != nil {
		return wrap(err)
	}
	mapAdd, err := r.additions(st, true, sortedKeys(p.SetMapElements), func(ms *setState, name string) ([]pending, error) {
		kv := p.SetMapElements[name]
		given := make(map[string]string, len(kv))
		var adds []pending
		for _, k := range sortedKeys(kv) {
			key, canon, err := ms.parseKey(k)
			if err != nil {
				return nil, fmt.Errorf("map %s: %w", name, err)
			}
			if other, dup := given[canon]; dup {
				return nil, fmt.Errorf("map %s: duplicate key %q (also %q)", name, k, other)
			}
			given[canon] = k
			e := elem{key: key}
			if err := ms.parseValue(&e, k, kv[k], &ruleCtx{family: st.family, findChain: find}); err != nil {
				return nil, fmt.Errorf("map %s: %w", name, err)
			}
			old, had := ms.elems[canon]
			if had && old.text == e.text {
				continue
			}
			if had { // a new value: the element is deleted and added again
				r.remove(st, ms, canon)
				mapDel[name] = append(mapDel[name], old)
			}
			adds = append(adds, pending{e, canon, k})
		}
		return adds, nil
	})
	if err != nil {
		return wrap(err)
	}

	// 4. Chain deletions: first drop the references of the deleted chains'
	// rules (they may jump to each other), then check nothing else refers
	// to them.
	var dels []string
	flush := map[string]bool{} // deleted chains that have rules
	for _, name := range p.DeleteChains {
		if containsChain(news, name) {
			continue // replaced, handled above
		}
		cs, ok := st.chains[name]
		if !ok {
			return wrap(fmt.Errorf("cannot delete chain %s: no such chain", name))
		}
		if cs.hook != "" {
			return wrap(fmt.Errorf("cannot delete chain %s: a patch deletes regular chains only (it has hook %s)", name, cs.hook))
		}
		r.refs(st, cs.rules, -1)
		dels = append(dels, name)
		flush[name] = len(cs.rules) > 0
	}
	for _, name := range dels {
		if st.refCount(name) > 0 {
			return wrap(fmt.Errorf("cannot delete chain %s: still referenced after the patch (%s)", name, st.referrers(name, deleting)))
		}
	}
	for _, name := range dels {
		r.setChain(st, name, nil)
	}
	res.Deleted = dels

	// The steps, in an order the kernel accepts: nothing is referenced
	// before it exists or deleted while referenced.
	b := r.batch
	for _, name := range dels {
		if flush[name] {
			b.chainStep(StepFlushChain, name)
		}
	}
	for _, nc := range news {
		if nc.old != nil && nc.refresh && len(nc.old.rules) > 0 {
			b.chainStep(StepFlushChain, nc.def.Name)
		}
	}
	b.elementsOf(StepDeleteElements, st.maps, mapDel)
	b.elementsOf(StepDeleteElements, st.sets, setDel)
	for _, nc := range news {
		if nc.old == nil {
			b.add(Step{Kind: StepAddChain, Name: nc.def.Name, Chain: nc.state.def(nc.def.Name)}, "add chain %s", nc.def.Name)
		}
	}
	b.elementsOf(StepAddElements, st.sets, setAdd)
	b.elementsOf(StepAddElements, st.maps, mapAdd)
	for _, nc := range news {
		if nc.refresh {
			b.rules(nc.def.Name, nc.state.rules)
		}
	}
	for _, name := range dels {
		b.chainStep(StepDeleteChain, name)
	}
	r.results = append(r.results, res)
	return nil
}

func containsChain(news []*newChain, name string) bool {
	for _, nc := range news {
		if nc.def.Name == name {
			return true
		}
	}
	return false
}

// addChains checks the chains a patch adds, adds them to st and compiles
// their rules against it (they may jump to each other).
func (r *PatchRun) addChains(chains []*Chain, deleting map[string]bool, st *State, find func(string) (*Chain, bool)) ([]*newChain, error) {
	var news []*newChain
	seen := map[string]bool{}
	for _, ch := range chains {
		if ch == nil {
			return nil, errors.New("nil chain in AddChains")
		}
		if !ValidName(ch.Name) {
			return nil, fmt.Errorf("invalid chain name %q", ch.Name)
		}
		if seen[ch.Name] {
			return nil, fmt.Errorf("chain %s listed twice in AddChains", ch.Name)
		}
		seen[ch.Name] = true
		if ch.IsBase() {
			return nil, fmt.Errorf("chain %s: a patch adds regular chains only (it has hook %s)", ch.Name, ch.Hook)
		}
		if err := checkChain(st.family, ch); err != nil {
			return nil, fmt.Errorf("chain %s: %w", ch.Name, err)
		}
		nc := &newChain{def: ch.Clone(), state: &chainState{}}
		if old, exists := st.chains[ch.Name]; exists {
			if !deleting[ch.Name] {
				return nil, fmt.Errorf("chain %s already exists", ch.Name)
			}
			if old.hook != "" {
				return nil, fmt.Errorf("chain %s is a base chain", ch.Name)
			}
			nc.old = old
		}
		news = append(news, nc)
	}
	for _, nc := range news {
		r.setChain(st, nc.def.Name, nc.state)
	}
	if len(news) == 0 {
		return nil, nil
	}
	sets, maps := st.views()
	for _, nc := range news {
		for j, rule := range nc.def.Rules {
			rs, err := compileRule(rule, &ruleCtx{family: st.family, sets: sets, maps: maps, findChain: find, chain: nc.def})
			if err != nil {
				return nil, fmt.Errorf("chain %s: %w", nc.def.Name, ruleError(j, rule, err))
			}
			nc.state.rules = append(nc.state.rules, rs)
		}
		r.refs(st, nc.state.rules, 1)
		nc.refresh = nc.old == nil || !sameRules(nc.old.rules, nc.state.rules)
		if nc.old != nil {
			r.refs(st, nc.old.rules, -1)
		}
	}
	return news, nil
}

// removeElements removes the elements (keys) that a patch lists per set
// (map) from st and returns, per set, those that were there.
func (r *PatchRun) removeElements(st *State, isMap bool, lists map[string][]string) (map[string][]elem, error) {
	gone := map[string][]elem{}
	for _, name := range sortedKeys(lists) {
		ss, err := st.patchSet(name, isMap)
		if err != nil {
			return nil, err
		}
		for _, text := range lists[name] {
			_, canon, err := ss.parseKey(text)
			if err != nil {
				return nil, fmt.Errorf("%s %s: %w", ss.kind(), name, err)
			}
			if old, ok := ss.elems[canon]; ok {
				r.remove(st, ss, canon)
				gone[name] = append(gone[name], old)
			}
		}
	}
	return gone, nil
}

// additions adds to each set (map) of names, in name order, the elements
// that parse returns for it, and returns, per set, those that were not
// there.
func (r *PatchRun) additions(st *State, isMap bool, names []string, parse func(ss *setState, name string) ([]pending, error)) (map[string][]elem, error) {
	added := map[string][]elem{}
	for _, name := range names {
		ss, err := st.patchSet(name, isMap)
		if err != nil {
			return nil, err
		}
		adds, err := parse(ss, name)
		if err != nil {
			return nil, err
		}
		if added[name], err = r.addElements(st, ss, name, adds); err != nil {
			return nil, err
		}
	}
	return added, nil
}

// addElements adds elements to the set (map) ss of st in key order, as
// the batch sends them, refusing one the kernel would refuse, and returns
// those that were not there.
func (r *PatchRun) addElements(st *State, ss *setState, name string, adds []pending) ([]elem, error) {
	sort.SliceStable(adds, func(i, j int) bool { return adds[i].e.key.compare(adds[j].e.key) < 0 })
	var added []elem
	for _, a := range adds {
		if _, ok := ss.elems[a.canon]; ok {
			continue
		}
		if ss.interval {
			if other, clash := ss.index().clash(a.e.key); clash {
				what := "element"
				if ss.isMap {
					what = "key"
				}
				return nil, fmt.Errorf("%s %s: %s %q overlaps %q", ss.kind(), name, what, a.text, other.canonical(ss.keys))
			}
		}
		r.insert(st, ss, a.canon, a.e)
		added = append(added, a.e)
	}
	return added, nil
}

// The state changes, each with its undo.

// setChain sets (or, with cs nil, deletes) a chain of st.
func (r *PatchRun) setChain(st *State, name string, cs *chainState) {
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

// refs adds d to the reference counts of the chains that rules jump or go
// to.
func (r *PatchRun) refs(st *State, rules []ruleState, d int) {
	for _, rs := range rules {
		for _, target := range rs.refChains {
			st.addRef(target, d)
			r.do(func() { st.addRef(target, -d) })
		}
	}
}

// insert adds an element to a set or map of st (and the reference of a
// verdict to its chain).
func (r *PatchRun) insert(st *State, ss *setState, canon string, e elem) {
	ss.insert(canon, e)
	if e.verdict.Chain != "" {
		st.addRef(e.verdict.Chain, 1)
	}
	r.do(func() {
		ss.remove(canon)
		if e.verdict.Chain != "" {
			st.addRef(e.verdict.Chain, -1)
		}
	})
}

// remove removes an element of a set or map of st.
func (r *PatchRun) remove(st *State, ss *setState, canon string) {
	e := ss.elems[canon]
	ss.remove(canon)
	if e.verdict.Chain != "" {
		st.addRef(e.verdict.Chain, -1)
	}
	r.do(func() {
		ss.insert(canon, e)
		if e.verdict.Chain != "" {
			st.addRef(e.verdict.Chain, 1)
		}
	})
}

// referrers describes what references chain name (for an error message;
// it scans the table, which only a refused patch pays for). Chains being
// deleted do not count.
func (s *State) referrers(name string, deleting map[string]bool) string {
	var found []string
	for _, cn := range sortedKeys(s.chains) {
		if deleting[cn] {
			continue
		}
		for i, rs := range s.chains[cn].rules {
			for _, t := range rs.refChains {
				if t == name {
					found = append(found, fmt.Sprintf("rule %d of chain %s", i, cn))
				}
			}
		}
	}
	for _, mn := range sortedKeys(s.maps) {
		ms := s.maps[mn]
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
func (s *State) views() (map[string]*Set, map[string]*Map) {
	sets := make(map[string]*Set, len(s.sets))
	for name, ss := range s.sets {
		sets[name] = &Set{Name: name, Key: ss.keys, Interval: ss.interval, Dynamic: ss.dynamic, Timeout: ss.timeout}
	}
	maps := make(map[string]*Map, len(s.maps))
	for name, ms := range s.maps {
		maps[name] = &Map{Name: name, Key: ms.keys, Value: ms.vals, Verdict: ms.verdict, Interval: ms.interval}
	}
	return sets, maps
}

// patchSet returns the set (or, with isMap, the map) name of s for a
// patch.
func (s *State) patchSet(name string, isMap bool) (*setState, error) {
	mine, other, kind, otherKind := s.sets, s.maps, "set", "map"
	if isMap {
		mine, other, kind, otherKind = s.maps, s.sets, "map", "set"
	}
	ss, ok := mine[name]
	if !ok {
		if _, isOther := other[name]; isOther {
			return nil, fmt.Errorf("%q is a %s, not a %s", name, otherKind, kind)
		}
		return nil, fmt.Errorf("unknown %s %q", kind, name)
	}
	if ss.keys == nil {
		return nil, fmt.Errorf("%s %s has a type hostnet does not model (Apply the table first)", kind, name)
	}
	if ss.dynamic {
		return nil, fmt.Errorf("set %s is dynamic: its elements are its rules' (a patch may not change them)", name)
	}
	return ss, nil
}
