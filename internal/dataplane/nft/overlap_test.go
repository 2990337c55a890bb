package nft

import (
	"bytes"
	"fmt"
	"sort"
	"strings"
	"testing"

	"github.com/google/nftables"
	"github.com/hostnet/hostnet/internal/nftmodel"
)

// intervalTable is a table with one interval set (or map, with values
// 10.9.9.9) "s" of key type keys holding elems.
func intervalTable(name string, keys []nftmodel.KeyType, isMap bool, elems []string) *nftmodel.Table {
	t := &nftmodel.Table{Name: name}
	if !isMap {
		t.Sets = []*nftmodel.Set{{Name: "s", Key: keys, Interval: true, Elements: elems}}
		return t
	}
	m := &nftmodel.Map{Name: "s", Key: keys, Value: []nftmodel.KeyType{nftmodel.KeyIPv4}, Interval: true, Elements: map[string]string{}}
	for _, e := range elems {
		m.Elements[e] = "10.9.9.9"
	}
	t.Maps = []*nftmodel.Map{m}
	return t
}

// rawAdd adds elems to the set s of table name in one batch, bypassing the
// appliers' checks, in the order an applier sends them (key order), and
// returns what the kernel says.
func rawAdd(t *testing.T, conn *nftables.Conn, name string, keys []nftmodel.KeyType, isMap bool, elems []string) error {
	t.Helper()
	var groups [][]nftmodel.SetElem
	for _, e := range elems {
		// One element at a time: together they may not validate.
		for _, s := range created(t, intervalTable(name, keys, isMap, []string{e})) {
			if s.Kind == nftmodel.StepAddElements {
				groups = append(groups, s.Elems...)
			}
		}
	}
	sort.SliceStable(groups, func(i, j int) bool { return bytes.Compare(groups[i][0].Key, groups[j][0].Key) < 0 })
	var kel []nftmodel.SetElem
	for _, g := range groups {
		kel = append(kel, g...)
	}
	if err := conn.SetAddElements(&nftables.Set{Name: "s", Table: kernelTable(nftmodel.TableKey{Name: name})}, kernelElems(kel)); err != nil {
		t.Fatal(err)
	}
	return conn.Flush()
}

// The Fake and the Kernel refuse the interval elements the kernel refuses,
// and only those: whether added by a patch to a set that holds others, or
// by an Apply of the whole set (from the same start, or from an empty
// set). Each case first asks the kernel itself, adding the elements in
// the order the appliers send them. Single-field sets (rbtree) refuse any
// overlap; concatenations (pipapo) an element whose first or last point
// lies in one they hold.
func TestIntervalClashesAsTheKernel(t *testing.T) {
	ns := newNS(t)
	k := newKernel(t, ns)
	raw, err := nftables.New(nftables.WithNetNSFd(int(ns)))
	if err != nil {
		t.Fatal(err)
	}
	v4, svc := []nftmodel.KeyType{nftmodel.KeyIPv4}, []nftmodel.KeyType{nftmodel.KeyIPv4, nftmodel.KeyInetService}
	cases := []struct {
		keys      []nftmodel.KeyType
		have, add []string
	}{
		{v4, []string{"10.0.0.0/24"}, []string{"10.0.0.128/25"}},
		{v4, []string{"10.0.0.0/24"}, []string{"10.0.0.0/16"}},
		{v4, []string{"10.0.0.0/24"}, []string{"10.0.0.0/25"}},
		{v4, []string{"10.0.0.0/24"}, []string{"10.0.1.0/24"}},
		{v4, []string{"10.0.0.0/24"}, []string{"9.255.255.0-10.0.0.0"}},
		{v4, []string{"10.0.0.0/24"}, []string{"9.0.0.0-9.255.255.255"}},
		{v4, []string{"255.255.255.0/24"}, []string{"255.255.255.255"}},
		{v4, []string{"10.0.0.5"}, []string{"10.0.0.0/24"}},
		{v4, nil, []string{"10.0.0.5", "10.0.0.0/24"}},
		{svc, []string{"10.0.0.0/24 . 80-90"}, []string{"10.0.0.128/25 . 85-100"}},
		{svc, []string{"10.0.0.0/24 . 80-90"}, []string{"10.0.0.0/24 . 0-85"}},
		{svc, []string{"10.0.0.0/24 . 80-90"}, []string{"10.0.0.100 . 70-100"}},
		{svc, []string{"10.0.0.5 . 80"}, []string{"10.0.0.0/24 . 0-1000"}},
		{svc, []string{"10.0.0.0/24 . 0-1000"}, []string{"10.0.0.5 . 80"}},
		{svc, []string{"10.0.0.0/24 . 80-90"}, []string{"10.0.1.0/24 . 80-90"}},
		{svc, []string{"10.0.0.0/24 . 80-90"}, []string{"10.0.0.0/24 . 91-100"}},
		{svc, []string{"10.0.0.0/24 . 80-90"}, []string{"10.0.0.0/23 . 80-90"}},
		{svc, nil, []string{"10.0.0.5 . 80", "10.0.0.0/24 . 0-1000"}},
		{svc, nil, []string{"10.0.0.0/24 . 80", "10.0.0.7 . 70-90"}},
		{[]nftmodel.KeyType{nftmodel.KeyIPv4, nftmodel.KeyIPv4}, []string{"10.0.0.5 . 10.0.0.0/8"}, []string{"10.0.0.5 . 10.1.0.0/16"}},
	}
	fake := NewFake()
	n := 0
	for _, c := range cases {
		for _, isMap := range []bool{false, true} {
			n++
			name := fmt.Sprintf("t%d", n)
			what := fmt.Sprintf("%s + %s", strings.Join(c.have, ", "), strings.Join(c.add, ", "))
			if isMap {
				what = "map " + what
			}
			if err := k.Apply(intervalTable(name+"raw", c.keys, isMap, c.have)); err != nil {
				t.Fatal(err)
			}
			refused := rawAdd(t, raw, name+"raw", c.keys, isMap, c.add) != nil
			for _, a := range []struct {
				name string
				Applier
			}{{"fake", fake}, {"kernel", k}} {
				if err := a.Apply(intervalTable(name+"p", c.keys, isMap, c.have)); err != nil {
					t.Fatal(err)
				}
				p := nftmodel.TablePatch{Table: name + "p"}
				if isMap {
					p.SetMapElements = map[string]map[string]string{"s": {}}
					for _, e := range c.add {
						p.SetMapElements["s"][e] = "10.9.9.9"
					}
				} else {
					p.AddElements = map[string][]string{"s": c.add}
				}
				checkRefusal(t, a.name+" patch", what, a.Patch(p), refused)
				if err := a.Apply(intervalTable(name+"a", c.keys, isMap, c.have)); err != nil {
					t.Fatal(err)
				}
				all := append(append([]string(nil), c.have...), c.add...)
				checkRefusal(t, a.name+" apply", what, a.Apply(intervalTable(name+"a", c.keys, isMap, all)), refused)
			}
		}
	}
}

// checkRefusal checks that an applier refused a change (with the model's
// reason, before anything reached the kernel) when the kernel does, and
// accepted it otherwise.
func checkRefusal(t *testing.T, who, what string, err error, refused bool) {
	t.Helper()
	switch {
	case refused && err == nil:
		t.Errorf("%s: %s: accepted, the kernel refuses it", who, what)
	case refused && !strings.Contains(err.Error(), "overlap"):
		t.Errorf("%s: %s: refused, but not as an overlap: %v", who, what, err)
	case !refused && err != nil:
		t.Errorf("%s: %s: %v; the kernel accepts it", who, what, err)
	}
}
