package policy

import (
	"sort"

	"github.com/hostnet/hostnet/internal/nftmodel"
)

// elemRef names a set or map of one of the tables.
type elemRef struct {
	family nftmodel.Family
	name   string
}

// contribution is what one object adds to the tables: set elements, map
// elements, and the shared ACL chains it jumps to. Objects never add the
// same element (addresses, ports and names are unique), so an object's
// elements can be added and removed without looking at the others'.
type contribution struct {
	sets   map[elemRef][]string
	maps   map[elemRef]map[string]string
	chains []string
}

func newContribution() *contribution {
	return &contribution{sets: map[elemRef][]string{}, maps: map[elemRef]map[string]string{}}
}

func (c *contribution) add(f nftmodel.Family, set, element string) {
	r := elemRef{f, set}
	c.sets[r] = append(c.sets[r], element)
}

func (c *contribution) put(f nftmodel.Family, m, key, value string) {
	r := elemRef{f, m}
	if c.maps[r] == nil {
		c.maps[r] = map[string]string{}
	}
	c.maps[r][key] = value
}

// State is the compiler in incremental form. It holds the networks and
// attached endpoints and what each contributes, and turns every change into
// patches that carry only the elements and chains that change: the cost of
// a change does not grow with the number of objects. Its Tables equal
// Compile of its objects (the tests check one against the other).
// A State is not safe for concurrent use.
type State struct {
	nets   map[string]Network
	eps    map[string]Endpoint
	netC   map[string]*contribution
	epC    map[string]*contribution
	chains map[string]*nftmodel.Chain // shared ACL chains, by name
	refs   map[string]int             // how many endpoints jump to each
}

// NewState returns an empty State.
func NewState() *State {
	return &State{
		nets: map[string]Network{}, eps: map[string]Endpoint{},
		netC: map[string]*contribution{}, epC: map[string]*contribution{},
		chains: map[string]*nftmodel.Chain{}, refs: map[string]int{},
	}
}

// Network returns a network of the state.
func (s *State) Network(id string) (Network, bool) {
	n, ok := s.nets[id]
	return n, ok
}

// Endpoint returns an endpoint of the state.
func (s *State) Endpoint(id string) (Endpoint, bool) {
	e, ok := s.eps[id]
	return e, ok
}

// SetNetwork adds or changes a network and returns the patches that bring
// the tables along. Its endpoints are recompiled: their ACLs include the
// network's, and DisableICC names its subnets.
func (s *State) SetNetwork(n Network) []nftmodel.TablePatch {
	p := newPatcher()
	c := networkElements(n)
	p.diff(s.netC[n.ID], c)
	s.nets[n.ID], s.netC[n.ID] = n, c
	for _, e := range s.sortedEndpoints() {
		if e.Network == n.ID {
			s.setEndpoint(p, e)
		}
	}
	return p.patches()
}

// RemoveNetwork removes a network (its endpoints should be gone first).
func (s *State) RemoveNetwork(id string) []nftmodel.TablePatch {
	p := newPatcher()
	p.diff(s.netC[id], nil)
	delete(s.nets, id)
	delete(s.netC, id)
	return p.patches()
}

// SetEndpoint adds or changes an attached endpoint.
func (s *State) SetEndpoint(e Endpoint) []nftmodel.TablePatch {
	p := newPatcher()
	s.setEndpoint(p, e)
	return p.patches()
}

func (s *State) setEndpoint(p *patcher, e Endpoint) {
	var n *Network
	if x, ok := s.nets[e.Network]; ok {
		n = &x
	}
	c, chains := endpointElements(e, n)
	for _, ch := range chains {
		c.chains = append(c.chains, ch.Name)
		s.ref(p, ch)
	}
	old := s.epC[e.ID]
	p.diff(old, c)
	if old != nil {
		for _, name := range old.chains {
			s.unref(p, name)
		}
	}
	s.eps[e.ID], s.epC[e.ID] = e, c
}

// RemoveEndpoint removes an endpoint (detached or deleted).
func (s *State) RemoveEndpoint(id string) []nftmodel.TablePatch {
	p := newPatcher()
	old := s.epC[id]
	p.diff(old, nil)
	if old != nil {
		for _, name := range old.chains {
			s.unref(p, name)
		}
	}
	delete(s.eps, id)
	delete(s.epC, id)
	return p.patches()
}

func (s *State) ref(p *patcher, ch *nftmodel.Chain) {
	if s.refs[ch.Name] == 0 {
		s.chains[ch.Name] = ch
		p.patch(nftmodel.FamilyInet).AddChains = append(p.patch(nftmodel.FamilyInet).AddChains, ch)
	}
	s.refs[ch.Name]++
}

func (s *State) unref(p *patcher, name string) {
	s.refs[name]--
	if s.refs[name] > 0 {
		return
	}
	delete(s.refs, name)
	delete(s.chains, name)
	tp := p.patch(nftmodel.FamilyInet)
	// A chain made and released within one patch needs neither.
	for i, ch := range tp.AddChains {
		if ch.Name == name {
			tp.AddChains = append(tp.AddChains[:i], tp.AddChains[i+1:]...)
			return
		}
	}
	tp.DeleteChains = append(tp.DeleteChains, name)
}

func (s *State) sortedEndpoints() []Endpoint {
	out := make([]Endpoint, 0, len(s.eps))
	for _, e := range s.eps {
		out = append(out, e)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].ID < out[j].ID })
	return out
}

// Tables materialises the whole tables: the inet one, then the bridge one.
func (s *State) Tables() []*nftmodel.Table {
	tables := map[nftmodel.Family]*nftmodel.Table{nftmodel.FamilyInet: inetSkeleton(), nftmodel.FamilyBridge: bridgeSkeleton()}
	fill := func(c *contribution) {
		for r, els := range c.sets {
			for _, set := range tables[r.family].Sets {
				if set.Name == r.name {
					set.Elements = append(set.Elements, els...)
				}
			}
		}
		for r, kv := range c.maps {
			for _, m := range tables[r.family].Maps {
				if m.Name == r.name {
					for k, v := range kv {
						m.Elements[k] = v
					}
				}
			}
		}
	}
	for _, c := range s.netC {
		fill(c)
	}
	for _, c := range s.epC {
		fill(c)
	}
	names := make([]string, 0, len(s.chains))
	for name := range s.chains {
		names = append(names, name)
	}
	sort.Strings(names)
	inet := tables[nftmodel.FamilyInet]
	for _, name := range names {
		inet.Chains = append(inet.Chains, s.chains[name])
	}
	for _, t := range tables {
		for _, set := range t.Sets {
			sort.Strings(set.Elements)
		}
	}
	return []*nftmodel.Table{inet, tables[nftmodel.FamilyBridge]}
}

// patcher gathers the changes of one State operation, per table.
type patcher struct {
	byFamily map[nftmodel.Family]*nftmodel.TablePatch
}

func newPatcher() *patcher { return &patcher{byFamily: map[nftmodel.Family]*nftmodel.TablePatch{}} }

func (p *patcher) patch(f nftmodel.Family) *nftmodel.TablePatch {
	tp, ok := p.byFamily[f]
	if !ok {
		tp = &nftmodel.TablePatch{Family: f, Table: TableName,
			AddElements: map[string][]string{}, DeleteElements: map[string][]string{},
			SetMapElements: map[string]map[string]string{}, DeleteMapElements: map[string][]string{}}
		p.byFamily[f] = tp
	}
	return tp
}

// diff records what turning old's elements into new's takes (either may
// be nil).
func (p *patcher) diff(old, new *contribution) {
	if old == nil {
		old = newContribution()
	}
	if new == nil {
		new = newContribution()
	}
	for r, els := range new.sets {
		had := toSet(old.sets[r])
		for _, el := range els {
			if !had[el] {
				tp := p.patch(r.family)
				tp.AddElements[r.name] = append(tp.AddElements[r.name], el)
			}
		}
	}
	for r, els := range old.sets {
		keep := toSet(new.sets[r])
		for _, el := range els {
			if !keep[el] {
				tp := p.patch(r.family)
				tp.DeleteElements[r.name] = append(tp.DeleteElements[r.name], el)
			}
		}
	}
	for r, kv := range new.maps {
		for k, v := range kv {
			if old.maps[r][k] != v {
				tp := p.patch(r.family)
				if tp.SetMapElements[r.name] == nil {
					tp.SetMapElements[r.name] = map[string]string{}
				}
				tp.SetMapElements[r.name][k] = v
			}
		}
	}
	for r, kv := range old.maps {
		for k := range kv {
			if _, ok := new.maps[r][k]; !ok {
				tp := p.patch(r.family)
				tp.DeleteMapElements[r.name] = append(tp.DeleteMapElements[r.name], k)
			}
		}
	}
}

func toSet(list []string) map[string]bool {
	m := make(map[string]bool, len(list))
	for _, x := range list {
		m[x] = true
	}
	return m
}

// patches returns the gathered patches, inet first; tables nothing changed
// in are left out.
func (p *patcher) patches() []nftmodel.TablePatch {
	var out []nftmodel.TablePatch
	for _, f := range []nftmodel.Family{nftmodel.FamilyInet, nftmodel.FamilyBridge} {
		if tp, ok := p.byFamily[f]; ok && !tp.Empty() {
			out = append(out, *tp)
		}
	}
	return out
}
