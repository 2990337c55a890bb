package reconcile

import (
	"fmt"
	"reflect"

	"github.com/hostnet/hostnet/internal/netmodel"
	"github.com/hostnet/hostnet/internal/nftmodel"
)

// firewall is the desired content of hostnet's nftables tables: the
// layout (sets, maps, chains, each wanted by one or more owners) and the
// elements (each one owner's). It is what the kernel is synced to whole
// when the layout changes or after a failure, and what a check compares
// the kernel with: kept here so that neither needs every owner planned
// again.
type firewall struct {
	shared map[netmodel.Key]*claim
	elems  map[setRef]map[string]string // set or map -> element -> value ("" in sets)
}

type setRef struct {
	family nftmodel.Family
	table  string
	set    string
}

// claim is a shared object and the owners that want it.
type claim struct {
	obj    netmodel.Object
	owners map[netmodel.Owner]bool
}

func newFirewall() *firewall {
	return &firewall{shared: map[netmodel.Key]*claim{}, elems: map[setRef]map[string]string{}}
}

// setElement records an element (ensure true) or its removal, and
// returns what undoes that.
func (f *firewall) setElement(e netmodel.NftElement, ensure bool) (undo func()) {
	ref := setRef{e.Family, e.Table, e.Set}
	prev, had := f.elems[ref][e.Elem]
	undo = func() {
		if had {
			f.put(ref, e.Elem, prev)
		} else {
			delete(f.elems[ref], e.Elem)
		}
	}
	if !ensure {
		delete(f.elems[ref], e.Elem)
		return undo
	}
	f.put(ref, e.Elem, e.Value)
	return undo
}

func (f *firewall) put(ref setRef, elem, value string) {
	m := f.elems[ref]
	if m == nil {
		m = map[string]string{}
		f.elems[ref] = m
	}
	m[elem] = value
}

// objects returns every firewall object: the shared ones, then the
// elements.
func (f *firewall) objects() []netmodel.Object {
	out := make([]netmodel.Object, 0, len(f.shared))
	for _, c := range f.shared {
		switch c.obj.(type) {
		case netmodel.NftSet, netmodel.NftChain:
			out = append(out, c.obj)
		}
	}
	for ref, m := range f.elems {
		for el, v := range m {
			out = append(out, netmodel.NftElement{Family: ref.family, Table: ref.table, Set: ref.set, Elem: el, Value: v})
		}
	}
	return out
}

// tables composes the whole tables.
func (f *firewall) tables() ([]*nftmodel.Table, error) {
	return netmodel.ComposeTables(f.objects())
}

// The shared objects (the firewall's sets, maps and chains) are kept with
// the owners that want each: one is made when its first owner comes and
// removed when its last goes.

// want records that owner wants the shared object o. It reports whether
// the kernel must change (first owner, or a new content from the only
// owner), and returns what undoes the record; a different content from
// another owner is a conflict.
func (f *firewall) want(owner netmodel.Owner, o netmodel.Object) (changed bool, undo func(), err error) {
	k := o.Key()
	c := f.shared[k]
	if c == nil {
		f.shared[k] = &claim{obj: o, owners: map[netmodel.Owner]bool{owner: true}}
		return true, func() { f.drop(owner, k) }, nil
	}
	had, prev := c.owners[owner], c.obj
	undo = func() {
		if c := f.shared[k]; c != nil {
			c.obj = prev
			if !had {
				f.drop(owner, k)
			}
		}
	}
	if !reflect.DeepEqual(c.obj, o) {
		if len(c.owners) > 1 || !c.owners[owner] {
			for other := range c.owners {
				if other != owner {
					return false, nil, fmt.Errorf("%s is wanted otherwise by %s", k, other)
				}
			}
		}
		c.obj = o
		c.owners[owner] = true
		return true, undo, nil
	}
	c.owners[owner] = true
	return false, undo, nil
}

// release records that owner no longer wants the shared object with key
// k, and reports whether it is to be removed (no owner left); undo puts
// the owner's claim back.
func (f *firewall) release(owner netmodel.Owner, k netmodel.Key) (gone netmodel.Object, last bool, undo func()) {
	c := f.shared[k]
	if c == nil || !c.owners[owner] {
		return nil, false, func() {}
	}
	undo = func() {
		if cur := f.shared[k]; cur != nil {
			cur.owners[owner] = true
		} else {
			f.shared[k] = &claim{obj: c.obj, owners: map[netmodel.Owner]bool{owner: true}}
		}
	}
	f.drop(owner, k)
	if f.shared[k] != nil {
		return nil, false, undo
	}
	return c.obj, true, undo
}

// drop removes owner from the claim of k, and the claim when no owner is
// left.
func (f *firewall) drop(owner netmodel.Owner, k netmodel.Key) {
	if c := f.shared[k]; c != nil {
		delete(c.owners, owner)
		if len(c.owners) == 0 {
			delete(f.shared, k)
		}
	}
}

// layout reports whether o is part of a table's layout: a set, a map or
// a base chain (which change through a whole sync).
func layout(o netmodel.Object) bool {
	switch o := o.(type) {
	case netmodel.NftSet:
		return true
	case netmodel.NftChain:
		return o.Chain.Hook != ""
	}
	return false
}
