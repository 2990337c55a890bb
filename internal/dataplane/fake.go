package dataplane

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"sync"

	"github.com/hostnet/hostnet/internal/dataplane/nft"
	"github.com/hostnet/hostnet/internal/netmodel"
	"github.com/hostnet/hostnet/internal/nftmodel"
	"golang.org/x/sys/unix"
)

// Fake is a Host held in memory, for unit tests of what drives the
// kernel (the reconciler, the service). It keeps what Linux would make
// and refuses what the kernel refuses: a port of a bridge that is not
// there, an address or route on a link that is not there, a route via a
// gateway no address of its link reaches, a name taken in a namespace, an
// object in a namespace that is gone, a host port someone else holds. Its
// firewall is an nft.Fake. Dump renders the whole state deterministically
// for tests that apply a sequence of configurations and compare the state
// after each.
type Fake struct {
	cfg HostConfig

	mu         sync.Mutex
	spaces     map[string]*fakeNS // by path; "" is the host
	files      map[string][]byte
	symlinks   map[string]string
	ports      map[string]bool
	taken      map[string]string // ports held by other processes: ID -> holder
	flows      []netmodel.Flow
	addressing netmodel.HostAddressing
	failNext   map[netmodel.Key]error
	applies    int
	nextIndex  int
	watchers   []*fakeWatch
	watches    int

	// FW is the fake firewall.
	FW *nft.Fake
}

type fakeNS struct {
	id     netmodel.NSID
	nsid   int // the host's ID of this namespace (-1: none yet)
	links  map[string]*fakeLink
	addrs  map[netmodel.Key]netmodel.Addr
	routes map[netmodel.Key]fakeRoute
	others map[netmodel.Key]netmodel.Object // neighbour and FDB entries
	sysctl map[string]string
}

type fakeLink struct {
	netmodel.Link
	index int
}

type fakeRoute struct {
	netmodel.Route
	ours bool // tagged with netmodel.RouteProtocol
}

var _ Host = (*Fake)(nil)

// NewFake returns a fake host: a host namespace with a loopback, nothing
// of hostnet's.
func NewFake(cfg HostConfig) *Fake {
	f := &Fake{cfg: cfg, spaces: map[string]*fakeNS{}, files: map[string][]byte{}, symlinks: map[string]string{},
		ports: map[string]bool{}, taken: map[string]string{}, failNext: map[netmodel.Key]error{}, FW: nft.NewFake(), nextIndex: 1}
	f.spaces[""] = f.newNS(netmodel.NSID{})
	return f
}

func (f *Fake) newNS(id netmodel.NSID) *fakeNS {
	ns := &fakeNS{id: id, nsid: -1, links: map[string]*fakeLink{}, addrs: map[netmodel.Key]netmodel.Addr{},
		routes: map[netmodel.Key]fakeRoute{}, others: map[netmodel.Key]netmodel.Object{}, sysctl: map[string]string{}}
	ns.links["lo"] = &fakeLink{Link: netmodel.Link{Name: "lo", Kind: netmodel.LinkLoopback}, index: 1}
	return ns
}

// AddNamespace makes a namespace that is not hostnet's (a runtime's) at
// path, with the given identity.
func (f *Fake) AddNamespace(path string, id netmodel.NSID) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.spaces[path] = f.newNS(id)
}

// RemoveNamespace makes the namespace at path vanish, with its links (a
// runtime deleted it, or the host rebooted).
func (f *Fake) RemoveNamespace(path string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.dropNS(path)
}

// TakePort makes a process hold a host port (netmodel.Port.ID).
func (f *Fake) TakePort(id, holder string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.taken[id] = holder
}

// Exit drops what the daemon's process holds, as its exit does: the
// sockets that hold published ports.
func (f *Fake) Exit() {
	f.mu.Lock()
	defer f.mu.Unlock()
	clear(f.ports)
}

// SetHostAddressing sets what HostAddressing answers.
func (f *Fake) SetHostAddressing(h netmodel.HostAddressing) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.addressing = h
}

// AddFlows adds flows to the fake connection tracker.
func (f *Fake) AddFlows(flows ...netmodel.Flow) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.flows = append(f.flows, flows...)
}

// Flows returns the flows the fake tracker holds.
func (f *Fake) Flows() []netmodel.Flow {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Clone(f.flows)
}

// FailNext makes the next Apply of the object with key k fail with err.
func (f *Fake) FailNext(k netmodel.Key, err error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.failNext[k] = err
}

// Applies counts the calls of Apply.
func (f *Fake) Applies() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.applies
}

// DeleteLink removes a link as someone else would (`ip link del`).
func (f *Fake) DeleteLink(ns netmodel.NS, name string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if s := f.spaces[ns.Path]; s != nil {
		f.deleteLink(s, name)
	}
}

// DeleteAddr removes an address as someone else would.
func (f *Fake) DeleteAddr(a netmodel.Addr) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if s := f.spaces[a.NS.Path]; s != nil {
		delete(s.addrs, a.Key())
	}
}

// SetLinkUp changes a link's state as someone else would.
func (f *Fake) SetLinkUp(ns netmodel.NS, name string, up bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if s := f.spaces[ns.Path]; s != nil && s.links[name] != nil {
		s.links[name].Up = up
	}
}

// SetSysctl changes a sysctl as someone else would.
func (f *Fake) SetSysctl(ns netmodel.NS, key, value string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if s := f.spaces[ns.Path]; s != nil {
		s.sysctl[key] = value
	}
}

// space returns the namespace ns, or ErrNamespaceGone.
func (f *Fake) space(ns netmodel.NS) (*fakeNS, error) {
	s := f.spaces[ns.Path]
	if s == nil || (ns.ID != (netmodel.NSID{}) && s.id != ns.ID) {
		return nil, fmt.Errorf("%s: %w", ns.Path, ErrNamespaceGone)
	}
	return s, nil
}

// Apply implements Host.
func (f *Fake) Apply(ctx context.Context, ensure, remove []netmodel.Object) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.applies++
	fail := failures{}
	for _, o := range append(append([]netmodel.Object(nil), ensure...), remove...) {
		if err, ok := f.failNext[o.Key()]; ok {
			delete(f.failNext, o.Key())
			fail.add(o.Key(), err)
		}
	}
	skip := func(o netmodel.Object) bool { _, failed := fail[o.Key()]; return failed }
	add := sortObjects(ensure, fail)
	del := sortObjects(remove, fail)
	for _, n := range objectsOf[netmodel.Namespace](add, netmodel.KindNamespace) {
		if !skip(n) && f.spaces[n.NS.Path] == nil {
			f.spaces[n.NS.Path] = f.newNS(n.NS.ID)
		}
	}
	for _, p := range objectsOf[netmodel.Port](add, netmodel.KindPort) {
		if skip(p) {
			continue
		}
		if p.Addr.IsValid() && !p.Addr.IsUnspecified() && !slices.ContainsFunc(f.addressing.Addrs, func(a netip.Prefix) bool { return a.Addr() == p.Addr }) {
			fail.add(p.Key(), fmt.Errorf("port %d/%s on %s: %s is %w", p.Port, p.Proto, p.Addr, p.Addr, netmodel.ErrNotHostAddress))
			continue
		}
		if holder, ok := f.taken[p.ID()]; ok {
			fail.add(p.Key(), &PortInUseError{Port: fmt.Sprintf("%d/%s", p.Port, p.Proto), Holder: holder})
			continue
		}
		f.ports[p.ID()] = true
	}
	var addNft, delNft []netmodel.Object
	for _, o := range add.nft {
		if !skip(o) {
			addNft = append(addNft, o)
		}
	}
	for _, o := range del.nft {
		if !skip(o) {
			delNft = append(delNft, o)
		}
	}
	if patches := netmodel.FirewallPatches(addNft, delNft); len(patches) > 0 {
		if err := f.FW.Patch(patches...); err != nil {
			for _, o := range append(addNft, delNft...) {
				fail.add(o.Key(), fmt.Errorf("update nftables: %w", err))
			}
		}
	}
	for _, l := range add.links {
		if !skip(l) {
			fail.add(l.Key(), f.ensureLink(l, add))
		}
	}
	for _, a := range objectsOf[netmodel.Addr](add, netmodel.KindAddr) {
		if !skip(a) {
			fail.add(a.Key(), f.ensureAddr(a))
		}
	}
	for _, r := range objectsOf[netmodel.Route](add, netmodel.KindRoute) {
		if !skip(r) {
			fail.add(r.Key(), f.ensureRoute(r))
		}
	}
	for _, u := range objectsOf[netmodel.UplinkHandover](add, netmodel.KindHandover) {
		if !skip(u) {
			fail.add(u.Key(), f.handOver(u))
		}
	}
	for _, s := range objectsOf[netmodel.Sysctl](add, netmodel.KindSysctl) {
		if skip(s) {
			continue
		}
		sp, err := f.space(s.NS)
		if err == nil {
			sp.sysctl[s.Name] = s.Value
		}
		fail.add(s.Key(), err)
	}
	for _, file := range objectsOf[netmodel.File](add, netmodel.KindFile) {
		if !skip(file) {
			f.files[file.Path] = slices.Clone(file.Content)
		}
	}
	for _, s := range objectsOf[netmodel.Symlink](add, netmodel.KindSymlink) {
		if !skip(s) {
			f.symlinks[s.Path] = s.Target
		}
	}
	for _, o := range objectsOf[netmodel.Neigh](add, netmodel.KindNeigh) {
		fail.add(o.Key(), f.ensureOnLink(o.NS, o.Link, o))
	}
	for _, o := range objectsOf[netmodel.FDB](add, netmodel.KindFDB) {
		fail.add(o.Key(), f.ensureOnLink(o.NS, o.Link, o))
	}
	for _, o := range objectsOf[netmodel.TC](add, netmodel.KindTC) {
		fail.add(o.Key(), errors.New("tc attachments are not supported by this build yet"))
	}
	f.ensureShapers(add, fail)
	f.removeShapers(del)
	f.remove(del)
	return fail.err()
}

func (f *Fake) ensureLink(l netmodel.Link, p *plan) error {
	s, err := f.space(l.NS)
	if err != nil {
		return err
	}
	if l.Kind == netmodel.LinkLoopback {
		s.links["lo"].Up = true
		return nil
	}
	if l.Master != "" {
		m := s.links[l.Master]
		if m == nil || m.Kind != netmodel.LinkBridge {
			return fmt.Errorf("attach %s to bridge %s: %w", l.Name, l.Master, unix.ENODEV)
		}
	}
	have := s.links[l.Name]
	if have != nil && have.Kind != l.Kind {
		if l.NS.IsHost() && f.cfg.tagged(l.Name) {
			f.deleteLink(s, l.Name)
			have = nil
		} else {
			return fmt.Errorf("device %s: %w", l.Name, ErrNameTaken)
		}
	}
	if have == nil && l.Kind == netmodel.LinkVeth {
		if l.Peer == nil {
			return fmt.Errorf("veth %s: no peer", l.Name)
		}
		ps, err := f.space(l.Peer.NS)
		if err != nil {
			return err
		}
		if ps.links[l.Peer.Name] != nil {
			return fmt.Errorf("device %s in the endpoint namespace: %w", l.Peer.Name, ErrNameTaken)
		}
		peer := netmodel.Link{NS: l.Peer.NS, Name: l.Peer.Name, Kind: netmodel.LinkVeth, Peer: &netmodel.LinkRef{NS: l.NS, Name: l.Name}}
		for _, o := range p.links {
			if o.NS == l.Peer.NS && o.Name == l.Peer.Name {
				peer = o
			}
		}
		ps.links[peer.Name] = &fakeLink{Link: peer, index: f.index()}
		// The host gives the other side's namespace an ID (`ip netns
		// list-id`) when a pair spans the two.
		other := ps
		if !l.NS.IsHost() {
			other = s
		}
		if other.nsid < 0 && ps != s {
			other.nsid = f.index()
		}
	}
	if have == nil {
		have = &fakeLink{index: f.index()}
		s.links[l.Name] = have
	}
	have.Link = l
	return nil
}

func (f *Fake) index() int { f.nextIndex++; return f.nextIndex }

// ensureOnLink keeps an entry of a link (a neighbour, an FDB entry).
func (f *Fake) ensureOnLink(ns netmodel.NS, link string, o netmodel.Object) error {
	s, err := f.space(ns)
	if err != nil {
		return err
	}
	if s.links[link] == nil {
		return fmt.Errorf("%s: %w", o.Key(), unix.ENODEV)
	}
	s.others[o.Key()] = o
	return nil
}

func (f *Fake) ensureAddr(a netmodel.Addr) error {
	s, err := f.space(a.NS)
	if err != nil {
		return err
	}
	if s.links[a.Link] == nil {
		return fmt.Errorf("add address %s to %s: %w", a.Prefix, a.Link, unix.ENODEV)
	}
	s.addrs[a.Key()] = a
	return nil
}

func (f *Fake) ensureRoute(r netmodel.Route) error {
	s, err := f.space(r.NS)
	if err != nil {
		return err
	}
	if s.links[r.Link] == nil {
		return fmt.Errorf("route %s: %w", r.Dst, unix.ENODEV)
	}
	if r.Gateway.IsValid() && !f.reaches(s, r.Link, r.Gateway) {
		return fmt.Errorf("route %s via %s: %w", r.Dst, r.Gateway, unix.ENETUNREACH)
	}
	s.routes[r.Key()] = fakeRoute{Route: r, ours: true}
	return nil
}

// reaches reports whether a gateway is on a subnet of an address of the
// link, or on-link through one of its routes.
func (f *Fake) reaches(s *fakeNS, link string, gw netip.Addr) bool {
	for _, a := range s.addrs {
		if a.Link == link && a.Prefix.Masked().Contains(gw) {
			return true
		}
	}
	for _, r := range s.routes {
		if r.Link == link && !r.Gateway.IsValid() && r.Dst.Contains(gw) {
			return true
		}
	}
	return false
}

func (f *Fake) deleteLink(s *fakeNS, name string) {
	l := s.links[name]
	if l == nil || l.Kind == netmodel.LinkLoopback {
		return
	}
	delete(s.links, name)
	for k := range s.sysctl {
		if strings.HasPrefix(k, "net/ipv4/conf/"+name+"/") || strings.HasPrefix(k, "net/ipv6/conf/"+name+"/") {
			delete(s.sysctl, k) // the link's settings go with it
		}
	}
	for k, a := range s.addrs {
		if a.Link == name {
			delete(s.addrs, k)
		}
	}
	for k, r := range s.routes {
		if r.Link == name {
			delete(s.routes, k)
		}
	}
	for k := range s.others {
		if strings.HasPrefix(k.ID, name+" ") {
			delete(s.others, k)
		}
	}
	for _, other := range s.links {
		if other.Master == name {
			other.Master = ""
		}
	}
	if l.Kind == netmodel.LinkVeth && l.Peer != nil {
		if ps := f.spaces[l.Peer.NS.Path]; ps != nil && ps.links[l.Peer.Name] != nil {
			f.deleteLink(ps, l.Peer.Name)
		}
	}
}

func (f *Fake) dropNS(path string) {
	s := f.spaces[path]
	if s == nil || path == "" {
		return
	}
	for name := range s.links {
		f.deleteLink(s, name)
	}
	delete(f.spaces, path)
}

func (f *Fake) remove(p *plan) {
	for _, port := range objectsOf[netmodel.Port](p, netmodel.KindPort) {
		delete(f.ports, port.ID())
	}
	for _, u := range objectsOf[netmodel.UplinkHandover](p, netmodel.KindHandover) {
		f.handBack(u.Uplink, u.Bridge)
	}
	for _, l := range p.links {
		if l.NS.IsHost() && l.Kind == netmodel.LinkBridge {
			for name, port := range f.spaces[""].links {
				if port.Master == l.Name && f.handedOver(f.spaces[""], name) {
					f.handBack(name, l.Name)
				}
			}
		}
	}
	for _, l := range p.links {
		if s := f.spaces[l.NS.Path]; s != nil {
			f.deleteLink(s, l.Name)
		}
	}
	for _, a := range objectsOf[netmodel.Addr](p, netmodel.KindAddr) {
		if s := f.spaces[a.NS.Path]; s != nil {
			delete(s.addrs, a.Key())
		}
	}
	for _, r := range objectsOf[netmodel.Route](p, netmodel.KindRoute) {
		if s := f.spaces[r.NS.Path]; s != nil {
			delete(s.routes, r.Key())
		}
	}
	for _, k := range []netmodel.Kind{netmodel.KindNeigh, netmodel.KindFDB} {
		for _, o := range p.byKind[k] {
			if s := f.spaces[o.Key().NS.Path]; s != nil {
				delete(s.others, o.Key())
			}
		}
	}
	for _, file := range objectsOf[netmodel.File](p, netmodel.KindFile) {
		delete(f.files, file.Path)
	}
	for _, s := range objectsOf[netmodel.Symlink](p, netmodel.KindSymlink) {
		if f.symlinks[s.Path] == s.Target {
			delete(f.symlinks, s.Path)
		}
	}
	for _, n := range objectsOf[netmodel.Namespace](p, netmodel.KindNamespace) {
		f.dropNS(n.NS.Path)
	}
}

// Observe implements Host.
func (f *Fake) Observe(ctx context.Context, q netmodel.Query) (*netmodel.Observation, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	o := netmodel.NewObservation()
	if !q.OnlyAsked {
		f.observe(f.spaces[""], netmodel.Host, f.cfg.tagged, o)
		f.observeHandovers(f.spaces[""], o)
		f.observeShapers(f.spaces[""], f.cfg.tagged, o)
		for _, r := range f.spaces[""].routes {
			if r.ours {
				o.Routes[r.Key()] = r.Route
			}
		}
	}
	for _, ns := range q.LookInto {
		if s, err := f.space(ns); err == nil {
			f.observe(s, ns, nil, o)
			for _, r := range s.routes {
				if r.ours {
					o.Routes[r.Key()] = r.Route
				}
			}
			o.LookedInto[ns] = true
		}
	}
	for _, ns := range q.Namespaces {
		if s, err := f.space(ns); err == nil {
			o.NSIDs[ns] = s.nsid
			if q.NoIDs {
				o.NSIDs[ns] = -1
			}
		}
	}
	for _, k := range q.Sysctls {
		if s, err := f.space(k.NS); err == nil {
			if v, ok := s.sysctl[k.ID]; ok {
				o.Sysctls[k] = netmodel.Sysctl{NS: k.NS, Name: k.ID, Value: v}
			}
		}
	}
	for _, path := range q.Files {
		if b, ok := f.files[path]; ok {
			file := netmodel.File{Path: path, Content: slices.Clone(b)}
			o.Files[file.Key()] = file
		}
	}
	if q.OnlyAsked {
		return o, nil
	}
	for path := range f.spaces {
		if path != "" && f.cfg.NetnsDir != "" && filepath.Dir(path) == filepath.Clean(f.cfg.NetnsDir) {
			n := netmodel.Namespace{NS: netmodel.NS{Path: path}}
			o.Namespaces[n.Key()] = n
		}
	}
	for path, target := range f.symlinks {
		if f.cfg.NetnsLinkDir != "" && filepath.Dir(path) == filepath.Clean(f.cfg.NetnsLinkDir) &&
			filepath.Dir(target) == filepath.Clean(f.cfg.NetnsDir) {
			s := netmodel.Symlink{Path: path, Target: target}
			o.Symlinks[s.Key()] = s
		}
	}
	for id := range f.ports {
		p := portFromID(id)
		o.Ports[p.Key()] = p
	}
	return o, nil
}

func (f *Fake) observe(s *fakeNS, ns netmodel.NS, keep func(string) bool, o *netmodel.Observation) {
	for name, l := range s.links {
		if keep != nil && !keep(name) {
			continue
		}
		ol := netmodel.ObservedLink{Link: netmodel.Link{NS: ns, Name: name, Kind: l.Kind, MAC: l.MAC, MTU: l.MTU,
			Master: l.Master, Up: l.Up}, Index: l.index, PeerNSID: -1}
		if l.Master != "" {
			ol.MasterIndex = s.links[l.Master].index
		}
		if l.Kind == netmodel.LinkVeth && l.Peer != nil {
			if ps := f.spaces[l.Peer.NS.Path]; ps != nil && ps != s {
				ol.PeerNSID = ps.nsid
			}
		}
		o.Links[ol.Key()] = ol
		for k, a := range s.addrs {
			if a.Link == name {
				o.Addrs[k] = a
			}
		}
	}
}

// SyncFirewall implements Host.
func (f *Fake) SyncFirewall(ctx context.Context, tables []*nftmodel.Table) error {
	if err := f.FW.ApplyAll(tables...); err != nil {
		return err
	}
	want := map[TableName]bool{}
	for _, t := range tables {
		want[TableName{t.Family, t.Name}] = true
	}
	for _, t := range f.cfg.Tables {
		if !want[t] {
			if err := f.FW.DeleteTable(t.Family, t.Name); err != nil {
				return err
			}
		}
	}
	return nil
}

// FirewallDrift implements Host.
func (f *Fake) FirewallDrift(ctx context.Context, tables []*nftmodel.Table) ([]string, error) {
	ops, err := f.FW.Drift(tables...)
	if err != nil {
		return nil, err
	}
	want := map[TableName]bool{}
	for _, t := range tables {
		want[TableName{t.Family, t.Name}] = true
	}
	for _, t := range f.cfg.Tables {
		if !want[t] && f.FW.FamilyTable(t.Family, t.Name) != nil {
			ops = append(ops, fmt.Sprintf("delete table %s %s", t.Family, t.Name))
		}
	}
	return ops, nil
}

// DeleteFlows implements Host.
func (f *Fake) DeleteFlows(ctx context.Context, match func(netmodel.Flow) bool) (int, error) {
	f.mu.Lock()
	flows := slices.Clone(f.flows)
	f.mu.Unlock()
	var kept []netmodel.Flow
	n := 0
	for _, fl := range flows {
		if match(fl) {
			n++
		} else {
			kept = append(kept, fl)
		}
	}
	f.mu.Lock()
	f.flows = kept
	f.mu.Unlock()
	return n, nil
}

// HostAddressing implements Host.
func (f *Fake) HostAddressing(ctx context.Context) (netmodel.HostAddressing, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return netmodel.HostAddressing{Addrs: slices.Clone(f.addressing.Addrs), Routes: slices.Clone(f.addressing.Routes), Links: slices.Clone(f.addressing.Links)}, nil
}

// Watch implements Host: the fake reports what Notify and FailWatch say.
func (f *Fake) Watch(ctx context.Context, changed func(Change), failed func(error)) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.watches++
	w := &fakeWatch{changed: changed, failed: failed}
	f.watchers = append(f.watchers, w)
	go func() {
		<-ctx.Done()
		f.dropWatch(w)
	}()
	return nil
}

type fakeWatch struct {
	changed func(Change)
	failed  func(error)
}

func (f *Fake) dropWatch(w *fakeWatch) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.watchers = slices.DeleteFunc(f.watchers, func(x *fakeWatch) bool { return x == w })
}

// Notify reports a change to the watchers, as the kernel would.
func (f *Fake) Notify(c Change) {
	f.mu.Lock()
	ws := slices.Clone(f.watchers)
	f.mu.Unlock()
	for _, w := range ws {
		w.changed(c)
	}
}

// FailWatch ends the subscriptions with err, as an overflowing socket
// would.
func (f *Fake) FailWatch(err error) {
	f.mu.Lock()
	ws := f.watchers
	f.watchers = nil
	f.mu.Unlock()
	for _, w := range ws {
		w.failed(err)
	}
}

// Watches counts the subscriptions made.
func (f *Fake) Watches() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.watches
}

// Dump renders the whole state: each namespace's links, addresses, routes
// and sysctls, the files, symlinks and held ports, then the firewall.
func (f *Fake) Dump() string {
	f.mu.Lock()
	defer f.mu.Unlock()
	var b strings.Builder
	paths := make([]string, 0, len(f.spaces))
	for p := range f.spaces {
		paths = append(paths, p)
	}
	sort.Strings(paths)
	for _, p := range paths {
		s := f.spaces[p]
		name := p
		if name == "" {
			name = "host"
		}
		fmt.Fprintf(&b, "netns %s\n", name)
		var lines []string
		for _, l := range s.links {
			if l.Kind == netmodel.LinkLoopback {
				if l.Up {
					lines = append(lines, "link lo up")
				}
				continue
			}
			lines = append(lines, strings.TrimSuffix(l.String(), " (sealed)"))
		}
		for _, a := range s.addrs {
			lines = append(lines, a.String())
		}
		for _, r := range s.routes {
			lines = append(lines, r.String())
		}
		for k, v := range s.sysctl {
			lines = append(lines, "sysctl "+k+"="+v)
		}
		for _, o := range s.others {
			lines = append(lines, o.String())
		}
		sort.Strings(lines)
		for _, l := range lines {
			fmt.Fprintf(&b, "  %s\n", l)
		}
	}
	var rest []string
	for p, c := range f.files {
		rest = append(rest, fmt.Sprintf("file %s:\n%s", p, indent(string(c))))
	}
	for p, t := range f.symlinks {
		rest = append(rest, "symlink "+p+" -> "+t)
	}
	for id := range f.ports {
		rest = append(rest, "port "+id)
	}
	sort.Strings(rest)
	for _, l := range rest {
		fmt.Fprintf(&b, "%s\n", l)
	}
	b.WriteString(f.FW.Dump())
	return b.String()
}

func indent(s string) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	for i := range lines {
		lines[i] = "  | " + lines[i]
	}
	return strings.Join(lines, "\n")
}

// Identify implements Host.
func (f *Fake) Identify(ctx context.Context, path string) (netmodel.NSID, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	s := f.spaces[path]
	if s == nil || path == "" {
		return netmodel.NSID{}, fmt.Errorf("%s is not a network namespace: %w", path, ErrNamespaceGone)
	}
	return s.id, nil
}

// Self implements Host: the fake host's identity.
func (f *Fake) Self() netmodel.NSID { return netmodel.NSID{Dev: 4, Ino: 4026531840} }
