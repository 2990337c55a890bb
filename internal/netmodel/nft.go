package netmodel

import (
	"fmt"
	"slices"
	"strings"

	"github.com/hostnet/hostnet/internal/nftmodel"
)

// The pieces of hostnet's nftables tables. A table exists while one of its
// pieces is wanted. Sets, maps and chains are shared: several owners may
// want one alike (the chains of an ACL profile, shared by the endpoints
// that have the same rules; the fixed chains of a driver, by all its
// networks); elements are each one owner's.

// NftSet is a named set or map of a table (exactly one of Set and Map is
// set), declared without elements: its elements are NftElement objects.
type NftSet struct {
	Family nftmodel.Family
	Table  string
	Set    *nftmodel.Set
	Map    *nftmodel.Map
}

// Name is the set's or map's name.
func (s NftSet) Name() string {
	if s.Map != nil {
		return s.Map.Name
	}
	return s.Set.Name
}

func (s NftSet) Key() Key {
	return Key{Kind: KindNftSet, ID: fmt.Sprintf("%s %s %s", s.Family, s.Table, s.Name())}
}

func (s NftSet) String() string {
	if s.Map != nil {
		return fmt.Sprintf("nft map %s %s %s", s.Family, s.Table, s.Map.Name)
	}
	return fmt.Sprintf("nft set %s %s %s", s.Family, s.Table, s.Set.Name)
}

// NftChain is a chain of a table, base or regular, with its rules.
type NftChain struct {
	Family nftmodel.Family
	Table  string
	Chain  *nftmodel.Chain
}

func (c NftChain) Key() Key {
	return Key{Kind: KindNftChain, ID: fmt.Sprintf("%s %s %s", c.Family, c.Table, c.Chain.Name)}
}

func (c NftChain) String() string {
	return fmt.Sprintf("nft chain %s %s %s (%d rules)", c.Family, c.Table, c.Chain.Name, len(c.Chain.Rules))
}

// NftElement is an element of a set, or a key and its value in a map, in
// the text syntax of nftmodel.Set.Elements and nftmodel.Map.Elements (canonical, so
// that one element has one key).
type NftElement struct {
	Family nftmodel.Family
	Table  string
	Set    string
	Elem   string
	Value  string // maps only
}

// Key is built by concatenation: a plan holds an element per member of
// every IP set, so this runs tens of thousands of times a change.
func (e NftElement) Key() Key {
	return Key{Kind: KindNftElement, ID: e.Family.String() + " " + e.Table + " " + e.Set + " { " + e.Elem + " }"}
}

func (e NftElement) String() string {
	if e.Value != "" {
		return fmt.Sprintf("nft element %s %s %s { %s : %s }", e.Family, e.Table, e.Set, e.Elem, e.Value)
	}
	return fmt.Sprintf("nft element %s %s %s { %s }", e.Family, e.Table, e.Set, e.Elem)
}

// FirewallPatches turns changes of firewall elements and regular chains
// into patches, one per table: what ensure adds (or, for a map key, sets)
// and what remove deletes. Other objects are ignored.
func FirewallPatches(ensure, remove []Object) []nftmodel.TablePatch {
	byTable := map[tableRef]*nftmodel.TablePatch{}
	var order []tableRef
	get := func(f nftmodel.Family, table string) *nftmodel.TablePatch {
		ref := tableRef{f, table}
		p, ok := byTable[ref]
		if !ok {
			p = &nftmodel.TablePatch{Family: f, Table: table, AddElements: map[string][]string{}, DeleteElements: map[string][]string{},
				SetMapElements: map[string]map[string]string{}, DeleteMapElements: map[string][]string{}}
			byTable[ref] = p
			order = append(order, ref)
		}
		return p
	}
	for _, side := range []struct {
		objs []Object
		add  bool
	}{{ensure, true}, {remove, false}} {
		for _, o := range side.objs {
			switch o := o.(type) {
			case NftElement:
				p := get(o.Family, o.Table)
				switch {
				case o.Value == "" && side.add:
					p.AddElements[o.Set] = append(p.AddElements[o.Set], o.Elem)
				case o.Value == "":
					p.DeleteElements[o.Set] = append(p.DeleteElements[o.Set], o.Elem)
				case side.add:
					if p.SetMapElements[o.Set] == nil {
						p.SetMapElements[o.Set] = map[string]string{}
					}
					p.SetMapElements[o.Set][o.Elem] = o.Value
				default:
					p.DeleteMapElements[o.Set] = append(p.DeleteMapElements[o.Set], o.Elem)
				}
			case NftChain:
				p := get(o.Family, o.Table)
				if side.add {
					p.AddChains = append(p.AddChains, o.Chain)
				} else {
					p.DeleteChains = append(p.DeleteChains, o.Chain.Name)
				}
			}
		}
	}
	out := make([]nftmodel.TablePatch, 0, len(order))
	for _, ref := range order {
		if p := byTable[ref]; !p.Empty() {
			out = append(out, *p)
		}
	}
	return out
}

type tableRef struct {
	family nftmodel.Family
	name   string
}

// hookOrder is the order base chains are listed in, by hook (a netdev
// table's ingress before its egress).
var hookOrder = map[nftmodel.Hook]int{nftmodel.HookPrerouting: 0, nftmodel.HookInput: 1, nftmodel.HookForward: 2, nftmodel.HookOutput: 3, nftmodel.HookPostrouting: 4,
	nftmodel.HookIngress: 0, nftmodel.HookEgress: 1}

// UnitsFirewall composes the tables a set of units wants, as the
// reconciler does: an object wanted by several owners must be wanted
// alike (an error names the first one wanted two ways), and each table
// must validate. For golden tests of drivers.
func UnitsFirewall(units []*Unit) ([]*nftmodel.Table, error) {
	var objs []Object
	seen := map[Key]string{}
	for _, u := range units {
		for _, o := range u.Objects {
			k := o.Key()
			if k.Kind < KindNftSet {
				continue
			}
			if prev, ok := seen[k]; ok {
				if prev != o.String() {
					return nil, fmt.Errorf("%v wanted two ways: %s and %s", k, prev, o)
				}
				continue
			}
			seen[k] = o.String()
			objs = append(objs, o)
		}
	}
	tables, err := ComposeTables(objs)
	if err != nil {
		return nil, err
	}
	for _, tb := range tables {
		if err := tb.Validate(); err != nil {
			return nil, fmt.Errorf("%s table: %w", tb.Family, err)
		}
	}
	return tables, nil
}

// ComposeTables builds the whole tables the firewall objects among objs
// make: sets and maps with their elements, base chains by hook and
// priority, then regular chains by name. Inet tables come before bridge
// ones, bridge before netdev. An element of a set or map that no NftSet declares is an error.
func ComposeTables(objs []Object) ([]*nftmodel.Table, error) {
	tables := map[tableRef]*nftmodel.Table{}
	sets := map[tableRef]map[string]*nftmodel.Set{}
	maps := map[tableRef]map[string]*nftmodel.Map{}
	table := func(f nftmodel.Family, name string) *nftmodel.Table {
		ref := tableRef{f, name}
		t, ok := tables[ref]
		if !ok {
			t = &nftmodel.Table{Family: f, Name: name}
			tables[ref] = t
			sets[ref], maps[ref] = map[string]*nftmodel.Set{}, map[string]*nftmodel.Map{}
		}
		return t
	}
	var elems []NftElement
	for _, o := range objs {
		switch o := o.(type) {
		case NftSet:
			t := table(o.Family, o.Table)
			ref := tableRef{o.Family, o.Table}
			if o.Map != nil {
				m := *o.Map
				m.Elements = map[string]string{}
				t.Maps = append(t.Maps, &m)
				maps[ref][m.Name] = &m
			} else {
				s := *o.Set
				s.Elements = nil
				t.Sets = append(t.Sets, &s)
				sets[ref][s.Name] = &s
			}
		case NftChain:
			t := table(o.Family, o.Table)
			t.Chains = append(t.Chains, o.Chain)
		case NftElement:
			elems = append(elems, o)
		}
	}
	var missing []string
	for _, e := range elems {
		ref := tableRef{e.Family, e.Table}
		if s, ok := sets[ref][e.Set]; ok && e.Value == "" {
			s.Elements = append(s.Elements, e.Elem)
			continue
		}
		if m, ok := maps[ref][e.Set]; ok && e.Value != "" {
			m.Elements[e.Elem] = e.Value
			continue
		}
		missing = append(missing, e.String())
	}
	refs := make([]tableRef, 0, len(tables))
	for ref, t := range tables {
		refs = append(refs, ref)
		slices.SortFunc(t.Sets, func(a, b *nftmodel.Set) int { return strings.Compare(a.Name, b.Name) })
		slices.SortFunc(t.Maps, func(a, b *nftmodel.Map) int { return strings.Compare(a.Name, b.Name) })
		for _, s := range t.Sets {
			slices.Sort(s.Elements)
		}
		slices.SortStableFunc(t.Chains, func(a, b *nftmodel.Chain) int {
			if (a.Hook == "") != (b.Hook == "") {
				if a.Hook != "" {
					return -1
				}
				return 1
			}
			if a.Hook != "" {
				if c := hookOrder[a.Hook] - hookOrder[b.Hook]; c != 0 {
					return c
				}
				if c := a.Priority - b.Priority; c != 0 {
					return c
				}
			}
			return strings.Compare(a.Name, b.Name)
		})
	}
	slices.SortFunc(refs, func(a, b tableRef) int {
		if a.family != b.family {
			return int(a.family) - int(b.family)
		}
		return strings.Compare(a.name, b.name)
	})
	out := make([]*nftmodel.Table, len(refs))
	for i, ref := range refs {
		out[i] = tables[ref]
	}
	if len(missing) > 0 {
		return out, fmt.Errorf("elements of sets or maps that no object declares: %s", strings.Join(missing, "; "))
	}
	return out, nil
}
