package nftmodel

// Plan queues on b the steps that turn have (nil: no table) into want.
// Order inside the batch: flush chains that change or go; delete the map
// elements that go, change value, or jump to a chain that goes; delete
// maps; delete chains; delete sets; delete set elements; create sets and
// add their elements; create maps; create chains (and update policies);
// add map elements (after the chains they jump to); add rules (after the
// sets and maps they use). So a chain is never deleted while a rule or a
// map element still references it, and nothing is referenced before it
// exists.
//
// Every step is queued; the error, if any, says that the kernel would
// refuse the batch: an element added to a concatenated interval set (or
// map) whose first or last point lies in an element already there or
// added before it (see Table.Validate).
func (b *Batch) Plan(want, have *State) error {
	if have == nil {
		b.add(Step{Kind: StepAddTable}, "add table")
		have = NewState(want.family, want.name)
	}
	setGone := goneSets(have.sets, want.sets)
	mapGone := goneSets(have.maps, want.maps)
	chainGone := map[string]bool{}
	for name, hc := range have.chains {
		if wc, ok := want.chains[name]; !ok || !hc.sameShape(wc) {
			chainGone[name] = true
		}
	}
	lookupGone := map[string]bool{} // sets and maps that rules must stop using
	for name := range setGone {
		lookupGone[name] = true
	}
	for name := range mapGone {
		lookupGone[name] = true
	}
	refill := map[string]bool{}
	for name, hc := range have.chains {
		if !chainGone[name] && (!sameRules(hc.rules, want.chains[name].rules) || refsGone(hc.rules, lookupGone, chainGone)) {
			refill[name] = true
		}
	}
	setDel, setAdd := diffElems(want.sets, have.sets, setGone, nil)
	mapDel, mapAdd := diffElems(want.maps, have.maps, mapGone, chainGone)
	var clash error
	for _, d := range []struct {
		sets map[string]*setState
		add  map[string][]elem
	}{{want.sets, setAdd}, {want.maps, mapAdd}} {
		for _, name := range sortedKeys(d.add) {
			if err := checkAdditions(d.sets[name], name, d.add[name]); err != nil && clash == nil {
				clash = err
			}
		}
	}

	for _, name := range sortedKeys(have.chains) {
		if (refill[name] || chainGone[name]) && len(have.chains[name].rules) > 0 {
			b.chainStep(StepFlushChain, name)
		}
	}
	b.elementsOf(StepDeleteElements, have.maps, mapDel)
	b.deleteSets("map", have.maps, mapGone)
	for _, name := range sortedKeys(have.chains) {
		if chainGone[name] {
			b.chainStep(StepDeleteChain, name)
		}
	}
	b.deleteSets("set", have.sets, setGone)
	b.elementsOf(StepDeleteElements, want.sets, setDel)
	kept := func(name string) bool { _, ok := have.sets[name]; return ok && !setGone[name] }
	for _, name := range sortedKeys(want.sets) {
		if !kept(name) {
			b.add(Step{Kind: StepAddSet, Name: name, Set: want.sets[name].def(name)}, "add set %s", name)
			b.elements(StepAddElements, name, want.sets[name], setAdd[name])
		}
	}
	for _, name := range sortedKeys(want.sets) {
		if kept(name) {
			b.elements(StepAddElements, name, want.sets[name], setAdd[name])
		}
	}
	for _, name := range sortedKeys(want.maps) {
		if _, ok := have.maps[name]; !ok || mapGone[name] {
			b.add(Step{Kind: StepAddSet, Name: name, Set: want.maps[name].def(name)}, "add map %s", name)
		}
	}
	for _, name := range want.chainOrder {
		wc := want.chains[name]
		hc, had := have.chains[name]
		step := Step{Kind: StepAddChain, Name: name, Chain: wc.def(name)}
		switch {
		case !had || chainGone[name]:
			b.add(step, "add chain %s", name)
		case wc.hook != "" && hc.policy != wc.policy:
			b.add(step, "set policy of chain %s to %s", name, wc.policy)
		}
	}
	b.elementsOf(StepAddElements, want.maps, mapAdd)
	for _, name := range want.chainOrder {
		if _, had := have.chains[name]; had && !chainGone[name] && !refill[name] {
			continue
		}
		b.rules(name, want.chains[name].rules)
	}
	return clash
}

// goneSets returns the sets (or maps) of have that want does not keep:
// absent from want or of another shape.
func goneSets(have, want map[string]*setState) map[string]bool {
	gone := map[string]bool{}
	for name, hs := range have {
		if ws, ok := want[name]; !ok || !hs.sameShape(ws) {
			gone[name] = true
		}
	}
	return gone
}

// diffElems returns, per set (or map) of want, the elements of have to
// delete and those of want to add: all of want's for a set that is new or
// recreated; otherwise the keys that go or come, and, in a map, the keys
// whose value changed or whose verdict jumps to a chain that is recreated
// (deleted, then added again).
func diffElems(want, have map[string]*setState, gone, chainGone map[string]bool) (del, add map[string][]elem) {
	del, add = map[string][]elem{}, map[string][]elem{}
	for _, name := range sortedKeys(want) {
		ws := want[name]
		hs, ok := have[name]
		if !ok || gone[name] {
			add[name] = elemValues(ws.elems)
			continue
		}
		for canon, he := range hs.elems {
			we, keep := ws.elems[canon]
			retarget := hs.verdict && chainGone[he.verdict.Chain]
			if !keep || we.text != he.text || retarget {
				del[name] = append(del[name], he)
			}
			if keep && (we.text != he.text || retarget) {
				add[name] = append(add[name], we)
			}
		}
		for canon, we := range ws.elems {
			if _, had := hs.elems[canon]; !had {
				add[name] = append(add[name], we)
			}
		}
	}
	return del, add
}

// checkAdditions reports the first of adds (in the order a batch sends
// them) that the kernel would refuse to add to a concatenated interval set
// holding the rest of st's elements. (Single-field interval sets hold no
// overlaps: Compile refuses them.)
func checkAdditions(st *setState, name string, adds []elem) error {
	if !st.interval || len(st.keys) < 2 || len(adds) == 0 {
		return nil
	}
	added := map[string]bool{}
	keys := make([]element, len(adds))
	for i, e := range sortedElements(adds) {
		added[e.key.canonical(st.keys)] = true
		keys[i] = e.key
	}
	var kept []element
	for canon, e := range st.elems {
		if !added[canon] {
			kept = append(kept, e.key)
		}
	}
	return clashIn(st, name, kept, keys)
}

// elements queues the addition (kind StepAddElements) or deletion of elems
// to the set or map st, in key order.
func (b *Batch) elements(kind StepKind, name string, st *setState, elems []elem) {
	if len(elems) == 0 {
		return
	}
	groups := make([][]SetElem, len(elems))
	for i, e := range sortedElements(elems) {
		groups[i] = st.lower(e)
	}
	verb, prep := "delete", "from"
	if kind == StepAddElements {
		verb, prep = "add", "to"
	}
	b.add(Step{Kind: kind, Name: name, Elems: groups}, "%s %d elements %s %s %s", verb, len(groups), prep, st.kind(), name)
}

// elementsOf queues, set by set (map by map) in name order, the addition
// (kind StepAddElements) or deletion of elems[name] to sets[name].
func (b *Batch) elementsOf(kind StepKind, sets map[string]*setState, elems map[string][]elem) {
	for _, name := range sortedKeys(elems) {
		b.elements(kind, name, sets[name], elems[name])
	}
}

// deleteSets queues the deletion of the sets (or maps) that go, by name.
func (b *Batch) deleteSets(kind string, have map[string]*setState, gone map[string]bool) {
	for _, name := range sortedKeys(have) {
		if gone[name] {
			b.add(Step{Kind: StepDeleteSet, Name: name}, "delete %s %s", kind, name)
		}
	}
}

// chainStep queues the flush or deletion of a chain.
func (b *Batch) chainStep(kind StepKind, name string) {
	verb := "flush"
	if kind == StepDeleteChain {
		verb = "delete"
	}
	b.add(Step{Kind: kind, Name: name}, "%s chain %s", verb, name)
}

// rules queues the addition of a chain's rules (nothing for none).
func (b *Batch) rules(chain string, rules []ruleState) {
	if len(rules) > 0 {
		b.add(Step{Kind: StepAddRules, Name: chain, Rules: irs(rules)}, "add %d rules to chain %s", len(rules), chain)
	}
}

func sameRules(a, b []ruleState) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i].ir.ID != b[i].ir.ID {
			return false
		}
	}
	return true
}

func refsGone(rules []ruleState, sets, chains map[string]bool) bool {
	for _, r := range rules {
		for _, s := range r.refSets {
			if sets[s] {
				return true
			}
		}
		for _, c := range r.refChains {
			if chains[c] {
				return true
			}
		}
	}
	return false
}

func elemValues(m map[string]elem) []elem {
	out := make([]elem, 0, len(m))
	for _, e := range m {
		out = append(out, e)
	}
	return out
}
