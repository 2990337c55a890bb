package dataplane

import (
	"fmt"

	"github.com/hostnet/hostnet/internal/netmodel"
)

// ensureShapers applies the shapers of p: each needs its link (and an
// ingress shaper its ifb device) to be there, as the kernel does.
func (f *Fake) ensureShapers(p *plan, fail failures) {
	for _, s := range objectsOf[netmodel.Shaper](p, netmodel.KindTC) {
		if _, failed := fail[s.Key()]; failed {
			continue
		}
		sp, err := f.space(s.NS)
		if err == nil && sp.links[s.Link] == nil {
			err = fmt.Errorf("shaper on %s: link not found", s.Link)
		}
		if err == nil && s.Direction == netmodel.TCIngress && (sp.links[s.IFB] == nil || sp.links[s.IFB].Kind != netmodel.LinkIFB) {
			err = fmt.Errorf("shaper on %s: ifb device %s not found", s.Link, s.IFB)
		}
		if err == nil {
			sp.others[s.Key()] = s
		}
		fail.add(s.Key(), err)
	}
}

func (f *Fake) removeShapers(p *plan) {
	for _, s := range objectsOf[netmodel.Shaper](p, netmodel.KindTC) {
		if sp := f.spaces[s.NS.Path]; sp != nil {
			delete(sp.others, s.Key())
		}
	}
}

// observeShapers reports the shapers on the links of s that keep selects;
// an ingress shaper whose ifb device is gone shapes nothing and is left
// out.
func (f *Fake) observeShapers(s *fakeNS, keep func(string) bool, o *netmodel.Observation) {
	for _, obj := range s.others {
		sh, ok := obj.(netmodel.Shaper)
		if !ok || (keep != nil && !keep(sh.Link)) {
			continue
		}
		if sh.Direction == netmodel.TCIngress && s.links[sh.IFB] == nil {
			continue
		}
		o.Shapers[sh.Key()] = sh
	}
}

// DeleteShaper removes the shaper of a link's direction behind hostnet's
// back (`tc qdisc del dev LINK root`).
func (f *Fake) DeleteShaper(ns netmodel.NS, link string, dir netmodel.TCDirection) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if sp := f.spaces[ns.Path]; sp != nil {
		delete(sp.others, netmodel.Shaper{NS: ns, Link: link, Direction: dir}.Key())
	}
}

// Shapers returns the shapers of a namespace, for tests.
func (f *Fake) Shapers(ns netmodel.NS) []netmodel.Shaper {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []netmodel.Shaper
	if sp := f.spaces[ns.Path]; sp != nil {
		for _, o := range sp.others {
			if s, ok := o.(netmodel.Shaper); ok {
				out = append(out, s)
			}
		}
	}
	return out
}
