package reconcile

import (
	"bytes"
	"context"
	"fmt"
	"maps"
	"slices"
	"sort"
	"strings"

	"github.com/hostnet/hostnet/internal/dataplane"
	"github.com/hostnet/hostnet/internal/netmodel"
)

// SyncOptions tunes a full pass.
type SyncOptions struct {
	// DryRun compares and reports, changing nothing (`hostnet doctor`).
	DryRun bool
	// LookInto are namespaces read in full. Objects inside other
	// namespaces are taken as in place when their owner's sealed link is
	// (Report.Assumed), and applied otherwise.
	LookInto []netmodel.NS
	// Shallow checks that namespaces are there without asking the host's
	// IDs of them: a veth's other side is only checked to be in another
	// namespace (Check, which runs every few seconds, saves opening every
	// endpoint's namespace).
	Shallow bool
}

// Problem is one way the kernel differs from the desired state.
type Problem struct {
	Owner  netmodel.Owner // "" for a tagged object no owner wants
	Object netmodel.Key
	What   string
}

// Report says what a full pass found, and did unless it was a dry run.
type Report struct {
	Problems []Problem
	// Vanished are namespaces the desired state puts objects in that are
	// not there, and that no owner makes: their objects were left alone.
	Vanished []netmodel.NS
	// Assumed are the owners whose objects inside namespaces were not
	// looked at, their sealed link standing for them (see Verify).
	Assumed []netmodel.Owner
	// Failed are the owners whose objects could not be applied.
	Failed map[netmodel.Owner]error
	// Kept are the tagged objects no owner wants that the pass kept
	// (see Keep), with the firewall's differences it kept; they are no
	// Problems: a kept object is no drift.
	Kept []Problem
	// KeptAddrs are the addresses kept devices hold inside namespaces.
	KeptAddrs []netmodel.Addr
}

// InSync reports whether the pass found nothing to do.
func (r *Report) InSync() bool { return len(r.Problems) == 0 && len(r.Vanished) == 0 }

type wanted struct {
	obj   netmodel.Object
	owner netmodel.Owner
}

// pass is one full pass in the making.
type pass struct {
	r      *Reconciler
	opts   SyncOptions
	rep    *Report
	want   map[netmodel.Key]wanted
	units  []*netmodel.Unit
	obs    *netmodel.Observation
	fresh  map[netmodel.NS]bool // namespaces made in this pass
	gone   map[netmodel.NS]bool // namespaces that are not there
	assume map[netmodel.Owner]bool
	ensure []netmodel.Object
	remove []netmodel.Object
	owners map[netmodel.Key]netmodel.Owner
}

func (p *pass) problem(owner netmodel.Owner, k netmodel.Key, format string, args ...any) {
	p.rep.Problems = append(p.rep.Problems, Problem{Owner: owner, Object: k, What: fmt.Sprintf(format, args...)})
}

// Sync compares the whole desired state (every owner's unit) with what
// the host holds, and, unless opts.DryRun, brings the host to it: what is
// missing or different is applied, what carries hostnet's tags and no
// owner wants is removed, the firewall is diffed (never flushed). It is
// what the daemon runs at start, for self-repair, and, as a dry run, for
// `hostnet doctor`.
func (r *Reconciler) Sync(ctx context.Context, units []*netmodel.Unit, opts SyncOptions) (*Report, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.pass(ctx, units, newFirewall(), opts)
}

// Check is the light check of the self-repair loop: it compares with the
// host what the reconciler holds (each owner's objects in the host
// namespace, and the firewall), without anything planned again, and
// changes nothing. It sees what a full pass sees of the host side: a
// missing or changed link, address, sysctl, file or held port, a
// namespace gone, a tagged object no owner wants, the firewall; not what
// lives inside the endpoints' namespaces. When it reports a problem, the
// caller runs a full pass (Sync) to repair.
func (r *Reconciler) Check(ctx context.Context) (*Report, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	units := make([]*netmodel.Unit, 0, len(r.held))
	for o, objs := range r.held {
		units = append(units, &netmodel.Unit{Owner: o, Objects: objs})
	}
	return r.pass(ctx, units, r.fw, SyncOptions{DryRun: true, Shallow: true})
}

// hostSide returns the objects of u in the host namespace, firewall
// aside: what Check compares.
func hostSide(u *netmodel.Unit) []netmodel.Object {
	if u == nil {
		return nil
	}
	var out []netmodel.Object
	for _, o := range u.Objects {
		if k := o.Key(); k.NS.IsHost() && k.Kind < netmodel.KindNftSet {
			out = append(out, o)
		}
	}
	return out
}

// pass compares units with the host and, unless opts.DryRun, repairs. fw
// is the firewall's desired content: composed from the units (a full
// pass), or held (Check). The caller holds r.mu.
func (r *Reconciler) pass(ctx context.Context, units []*netmodel.Unit, fw *firewall, opts SyncOptions) (*Report, error) {
	held := fw == r.fw
	p := &pass{r: r, opts: opts, rep: &Report{Failed: map[netmodel.Owner]error{}}, want: map[netmodel.Key]wanted{}, units: units,
		fresh: map[netmodel.NS]bool{}, gone: map[netmodel.NS]bool{}, assume: map[netmodel.Owner]bool{}, owners: map[netmodel.Key]netmodel.Owner{}}
	for _, u := range units {
		if u == nil {
			continue
		}
		for _, o := range u.Objects {
			k := o.Key()
			if held && k.Kind >= netmodel.KindNftSet {
				continue
			}
			if netmodel.Shared(o) {
				if _, _, err := fw.want(u.Owner, o); err != nil {
					p.rep.Failed[u.Owner] = err
					p.problem(u.Owner, k, "%v", err)
					continue
				}
			} else if w, dup := p.want[k]; dup && w.owner != u.Owner && !netmodel.Lasting(o) {
				p.rep.Failed[u.Owner] = fmt.Errorf("%s is wanted by %s too", k, w.owner)
				p.problem(u.Owner, k, "also wanted by %s", w.owner)
				continue
			} else if e, ok := o.(netmodel.NftElement); ok {
				fw.setElement(e, true)
			}
			p.want[k] = wanted{o, u.Owner}
		}
	}
	if err := p.observe(ctx); err != nil {
		return nil, err
	}
	p.compare()
	p.prune()
	if err := p.keptAddresses(ctx); err != nil {
		return nil, err
	}
	tables, err := fw.tables()
	if err != nil {
		return nil, err
	}
	ops, err := r.host.FirewallDrift(ctx, tables)
	if err != nil {
		return nil, err
	}
	ops = p.holdFirewall(ops)
	const most = 10
	for i, op := range ops {
		if i == most {
			p.problem("", netmodel.Key{Kind: netmodel.KindNftChain}, "and %d more differences in the firewall", len(ops)-most)
			break
		}
		p.problem("", netmodel.Key{Kind: netmodel.KindNftChain}, "firewall: to put back: %s", op)
	}
	p.rep.Assumed = sortedOwners(p.assume)
	if opts.DryRun {
		return p.rep, nil
	}
	r.fw = fw
	r.held = make(map[netmodel.Owner][]netmodel.Object, len(units))
	for _, u := range units {
		if u != nil {
			r.held[u.Owner] = hostSide(u)
		}
	}
	if len(ops) > 0 {
		if err := r.syncTables(ctx, fw, tables); err != nil {
			// The firewall holds every owner's filters: none is applied.
			for _, u := range units {
				if u != nil {
					p.rep.Failed[u.Owner] = fmt.Errorf("firewall: %w", err)
				}
			}
		}
	}
	if len(p.ensure)+len(p.remove) > 0 {
		r.noteRemoved(p.remove)
		err := r.host.Apply(ctx, p.ensure, p.remove)
		for k, kerr := range dataplane.FailedKeys(err, append(keysOf(p.ensure), keysOf(p.remove)...)) {
			owner := p.owners[k]
			if owner == "" {
				r.log.Warn("reconcile: removing an object no owner wants failed", "object", k, "err", kerr)
				continue
			}
			if _, seen := p.rep.Failed[owner]; !seen {
				p.rep.Failed[owner] = fmt.Errorf("%s: %w", k, kerr)
			}
		}
	}
	r.failed = map[netmodel.Owner]error{}
	for o, err := range p.rep.Failed {
		r.failed[o] = err
	}
	if len(r.failed) > 0 {
		r.pokeRetry()
	}
	return p.rep, nil
}

// observe reads the host: what is always read, the namespaces, sysctls
// and files the desired state names, and the namespaces to look into.
func (p *pass) observe(ctx context.Context) error {
	q := netmodel.Query{LookInto: p.opts.LookInto, NoIDs: p.opts.Shallow}
	spaces := map[netmodel.NS]bool{}
	for _, w := range p.want {
		k := w.obj.Key()
		if !k.NS.IsHost() {
			spaces[k.NS] = true
		}
		switch o := w.obj.(type) {
		case netmodel.Sysctl:
			q.Sysctls = append(q.Sysctls, k)
		case netmodel.File:
			q.Files = append(q.Files, o.Path)
		case netmodel.Namespace:
			spaces[o.NS] = true
		case netmodel.Link:
			if o.Peer != nil && !o.Peer.NS.IsHost() {
				spaces[o.Peer.NS] = true
			}
		}
	}
	for ns := range spaces {
		q.Namespaces = append(q.Namespaces, ns)
	}
	sort.Slice(q.Namespaces, func(i, j int) bool { return q.Namespaces[i].Path < q.Namespaces[j].Path })
	var obs *netmodel.Observation
	if pre, ok := p.r.takePrefetch(); ok {
		q.OnlyAsked = true
		asked, err := p.r.host.Observe(ctx, q)
		if err != nil {
			return err
		}
		got := <-pre
		if got.err != nil {
			return got.err
		}
		obs = merge(got.obs, asked)
	} else {
		var err error
		if obs, err = p.r.host.Observe(ctx, q); err != nil {
			return err
		}
	}
	p.obs = obs
	made := map[netmodel.NS]bool{}
	for _, w := range p.want {
		if n, ok := w.obj.(netmodel.Namespace); ok {
			made[n.NS] = true
		}
	}
	for _, ns := range q.Namespaces {
		if _, ok := obs.NSIDs[ns]; ok {
			continue
		}
		if made[ns] {
			p.fresh[ns] = true
			continue
		}
		p.gone[ns] = true
		p.rep.Vanished = append(p.rep.Vanished, ns)
	}
	return nil
}

// merge adds what asked read to base (what is always read).
func merge(base, asked *netmodel.Observation) *netmodel.Observation {
	maps.Copy(base.Links, asked.Links)
	maps.Copy(base.Addrs, asked.Addrs)
	maps.Copy(base.Routes, asked.Routes)
	maps.Copy(base.Sysctls, asked.Sysctls)
	maps.Copy(base.Files, asked.Files)
	maps.Copy(base.NSIDs, asked.NSIDs)
	maps.Copy(base.LookedInto, asked.LookedInto)
	return base
}

// compare goes over the desired objects, owner by owner.
func (p *pass) compare() {
	looked := p.obs.LookedInto
	for _, u := range p.units {
		if u == nil || p.rep.Failed[u.Owner] != nil {
			continue
		}
		// A sealed link found whole stands for its owner's objects in the
		// namespaces not looked into; an owner without one (a namespace's
		// loopback, its files) is taken as in place while its namespace
		// is there. Both are verified later, from inside (Verify).
		sealedOK := true
		for _, o := range u.Objects {
			if l, ok := o.(netmodel.Link); ok && l.Seal && l.NS.IsHost() {
				sealedOK = sealedOK && len(p.linkDiff(l)) == 0
			}
		}
		for _, o := range u.Objects {
			k := o.Key()
			if (netmodel.Shared(o) || netmodel.Lasting(o)) && p.want[k].owner != u.Owner {
				continue // compared with its first owner
			}
			if k.Kind >= netmodel.KindNftSet {
				continue // the firewall is compared whole
			}
			ns := k.NS
			if n, ok := o.(netmodel.Namespace); ok {
				ns = n.NS
				if p.fresh[ns] {
					p.problem(u.Owner, k, "namespace %s is gone", ns.Path)
					p.add(u.Owner, o)
				}
				continue
			}
			if l, ok := o.(netmodel.Link); ok && l.Peer != nil && p.gone[l.Peer.NS] {
				continue
			}
			switch {
			case p.gone[ns]:
				continue
			case p.fresh[ns] && !ns.IsHost():
				p.add(u.Owner, o)
				continue
			case !ns.IsHost() && !looked[ns]:
				if sealedOK {
					p.assume[u.Owner] = true
				} else {
					p.add(u.Owner, o) // its sealed link is not whole: ensure (idempotent)
				}
				continue
			}
			if what := p.differs(o); what != "" {
				p.problem(u.Owner, k, "%s", what)
				p.add(u.Owner, o)
			}
		}
	}
}

func (p *pass) add(owner netmodel.Owner, o netmodel.Object) {
	p.ensure = append(p.ensure, o)
	p.owners[o.Key()] = owner
}

// differs says how the host differs from o ("" when it does not), o being
// in the host namespace or in one looked into.
func (p *pass) differs(o netmodel.Object) string {
	k := o.Key()
	switch o := o.(type) {
	case netmodel.Link:
		if d := p.linkDiff(o); len(d) > 0 {
			return strings.Join(d, "; ")
		}
	case netmodel.Addr:
		if _, ok := p.obs.Addrs[k]; !ok {
			return fmt.Sprintf("%s lacks the address %s", linkNoun(o.NS, o.Link), o.Prefix)
		}
	case netmodel.Route:
		have, ok := p.obs.Routes[k]
		if !ok {
			return fmt.Sprintf("route %s is missing", routeText(o))
		}
		if have.Gateway != o.Gateway || have.Link != o.Link {
			return fmt.Sprintf("route %s goes %s", routeText(o), routeText(have))
		}
	case netmodel.Sysctl:
		have, ok := p.obs.Sysctls[k]
		if !ok {
			return fmt.Sprintf("sysctl %s is missing", strings.ReplaceAll(o.Name, "/", "."))
		}
		if have.Value != o.Value {
			return fmt.Sprintf("sysctl %s is %s, not %s", strings.ReplaceAll(o.Name, "/", "."), have.Value, o.Value)
		}
	case netmodel.File:
		have, ok := p.obs.Files[k]
		if !ok {
			return fmt.Sprintf("file %s is missing", o.Path)
		}
		if !bytes.Equal(have.Content, o.Content) {
			return fmt.Sprintf("file %s was changed", o.Path)
		}
	case netmodel.Symlink:
		if have, ok := p.obs.Symlinks[k]; !ok || have.Target != o.Target {
			return fmt.Sprintf("link %s to %s is missing", o.Path, o.Target)
		}
	case netmodel.Namespace:
		if _, ok := p.obs.NSIDs[o.NS]; !ok {
			return fmt.Sprintf("namespace %s is gone", o.NS.Path)
		}
	case netmodel.Port:
		if _, ok := p.obs.Ports[k]; !ok {
			return fmt.Sprintf("host port %s is not held", o.ID())
		}
	case netmodel.Shaper:
		return p.shaperDiff(o)
	case netmodel.UplinkHandover:
		have, ok := p.obs.Handovers[k]
		switch {
		case !ok:
			return fmt.Sprintf("adapter %s is not a port of bridge %s", o.Uplink, o.Bridge)
		case have.Bridge != o.Bridge:
			return fmt.Sprintf("adapter %s is a port of bridge %s, not %s", o.Uplink, have.Bridge, o.Bridge)
		case len(have.Left) > 0:
			return strings.Join(have.Left, "; ")
		}
	}
	// Neighbour, FDB and tc program entries are not read back: they are
	// applied, not compared.
	return ""
}

func routeText(r netmodel.Route) string {
	s := r.Dst.String()
	if r.Gateway.IsValid() {
		s += " via " + r.Gateway.String()
	}
	return s + " dev " + r.Link
}

// linkNoun names a link as messages do: a bridge, a port (a link of the
// host that is a bridge port), or a device.
func linkNoun(ns netmodel.NS, name string) string {
	switch {
	case strings.HasPrefix(name, "hnbr"):
		return "bridge " + name
	case ns.IsHost() && strings.HasPrefix(name, "hnv"):
		return "port " + name
	case ns.IsHost():
		return "device " + name
	}
	return "device " + name + " in " + ns.Path
}

// linkDiff lists how the host's link differs from l.
func (p *pass) linkDiff(l netmodel.Link) []string {
	noun := linkNoun(l.NS, l.Name)
	if l.Kind == netmodel.LinkBridge {
		noun = "bridge " + l.Name
	}
	have, ok := p.obs.Links[l.Key()]
	if !ok {
		return []string{noun + " is missing"}
	}
	var out []string
	if have.Kind != l.Kind {
		out = append(out, fmt.Sprintf("%s is a %s, not a %s", noun, have.Kind, l.Kind))
	}
	if l.Master != have.Master {
		if l.Master == "" {
			out = append(out, fmt.Sprintf("%s is a port of bridge %s", noun, have.Master))
		} else {
			out = append(out, fmt.Sprintf("%s is not a port of bridge %s", noun, l.Master))
		}
	}
	if l.Up && !have.Up {
		out = append(out, noun+" is down")
	}
	if l.MTU != 0 && have.MTU != l.MTU {
		out = append(out, fmt.Sprintf("%s has MTU %d, not %d", noun, have.MTU, l.MTU))
	}
	if l.MAC != nil && have.MAC.String() != l.MAC.String() {
		out = append(out, fmt.Sprintf("%s has MAC %s, not %s", noun, have.MAC, l.MAC))
	}
	if l.Kind == netmodel.LinkVeth && l.Peer != nil && l.NS.IsHost() && !l.Peer.NS.IsHost() {
		id, ok := p.obs.NSIDs[l.Peer.NS]
		if p.opts.Shallow && ok {
			id = have.PeerNSID // the host's IDs were not asked: any other namespace will do
		}
		if !ok || id < 0 || have.PeerNSID != id {
			out = append(out, fmt.Sprintf("%s has no peer in %s", noun, l.Peer.NS.Path))
		}
	}
	return out
}

// prune removes what carries hostnet's tags and no owner wants.
func (p *pass) prune() {
	wantLink := func(ns netmodel.NS, name string) bool {
		_, ok := p.want[netmodel.Key{Kind: netmodel.KindLink, NS: ns, ID: name}]
		return ok
	}
	var names []netmodel.Key
	for k := range p.obs.Links {
		names = append(names, k)
	}
	slices.SortFunc(names, func(a, b netmodel.Key) int { return strings.Compare(a.String(), b.String()) })
	for _, k := range names {
		l := p.obs.Links[k]
		if !k.NS.IsHost() || wantLink(k.NS, l.Name) || p.r.unlinkPending(l.Name) {
			continue
		}
		p.unwanted(k, l.Link, fmt.Sprintf("device %s is hostnet's but no network or endpoint claims it", l.Name), false)
	}
	// A bridge that holds an uplink holds the host's addresses: they are
	// the host's, not hostnet's to remove.
	handedTo := map[string]bool{}
	for _, h := range p.obs.Handovers {
		handedTo[h.Bridge] = true
	}
	for _, w := range p.want {
		if h, ok := w.obj.(netmodel.UplinkHandover); ok {
			handedTo[h.Bridge] = true
		}
	}
	for k, a := range p.obs.Addrs {
		if _, ok := p.want[k]; ok || !wantLink(a.NS, a.Link) {
			continue // wanted, or goes with its link
		}
		if a.NS.IsHost() && handedTo[a.Link] {
			continue
		}
		if !a.NS.IsHost() && !p.obs.LookedInto[a.NS] {
			continue
		}
		p.unwanted(k, a, fmt.Sprintf("%s has the address %s, which no one wants", linkNoun(a.NS, a.Link), a.Prefix), false)
	}
	for k, rt := range p.obs.Routes {
		if _, ok := p.want[k]; ok {
			continue
		}
		p.unwanted(k, rt, fmt.Sprintf("route %s is hostnet's but no one wants it", routeText(rt)), false)
	}
	for k, h := range p.obs.Handovers {
		if _, ok := p.want[k]; ok {
			continue
		}
		// Kept with its bridge: handed back, the bridge would be cut off.
		if p.r.keep.keeps(netmodel.Link{Name: h.Bridge, Kind: netmodel.LinkBridge}) {
			p.rep.Kept = append(p.rep.Kept, Problem{Object: k, What: fmt.Sprintf("adapter %s is a port of bridge %s, which no network wants", h.Uplink, h.Bridge)})
			continue
		}
		p.unwanted(k, h.UplinkHandover, fmt.Sprintf("adapter %s is a port of bridge %s, which no network wants", h.Uplink, h.Bridge), false)
	}
	for k, n := range p.obs.Namespaces {
		if _, ok := p.want[k]; ok {
			continue
		}
		p.unwanted(k, n, fmt.Sprintf("namespace %s is hostnet's but no namespace object claims it", n.NS.Path), false)
	}
	for k, s := range p.obs.Symlinks {
		if _, ok := p.want[k]; !ok {
			p.unwanted(k, s, fmt.Sprintf("link %s to %s is hostnet's but no namespace object claims it", s.Path, s.Target), true)
		}
	}
	for k, port := range p.obs.Ports {
		if _, ok := p.want[k]; !ok {
			p.unwanted(k, port, fmt.Sprintf("host port %s is held but no mapping publishes it", port.ID()), false)
		}
	}
	p.pruneShapers()
}

// Verify reads the namespace ns in full and brings the objects units put
// in it to what they say, removing hostnet's routes and addresses there
// that no unit wants. It is the look inside a namespace that a full pass
// left for later (Report.Assumed); units are every unit with objects in
// ns.
func (r *Reconciler) Verify(ctx context.Context, ns netmodel.NS, units []*netmodel.Unit) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	// Only the namespace is read: the host side was compared by the pass.
	obs, err := r.host.Observe(ctx, netmodel.Query{Namespaces: []netmodel.NS{ns}, LookInto: []netmodel.NS{ns}, OnlyAsked: true, NoIDs: true})
	if err != nil {
		return err
	}
	if !obs.LookedInto[ns] {
		return nil // gone: the next full pass sees it
	}
	p := &pass{r: r, rep: &Report{Failed: map[netmodel.Owner]error{}}, obs: obs, want: map[netmodel.Key]wanted{},
		owners: map[netmodel.Key]netmodel.Owner{}}
	for _, u := range units {
		for _, o := range u.Objects {
			if k := o.Key(); k.NS == ns && k.Kind < netmodel.KindNftSet {
				p.want[k] = wanted{o, u.Owner}
				if what := p.differs(o); what != "" {
					p.problem(u.Owner, k, "%s", what)
					p.add(u.Owner, o)
				}
			}
		}
	}
	wantLink := func(name string) bool {
		_, ok := p.want[netmodel.Key{Kind: netmodel.KindLink, NS: ns, ID: name}]
		return ok
	}
	for k, a := range obs.Addrs {
		if _, ok := p.want[k]; !ok && a.NS == ns && wantLink(a.Link) {
			p.remove = append(p.remove, a)
		}
	}
	for k, rt := range obs.Routes {
		if _, ok := p.want[k]; !ok && rt.NS == ns {
			p.remove = append(p.remove, rt)
		}
	}
	p.remove = r.notKept(p.remove)
	if len(p.ensure)+len(p.remove) == 0 {
		return nil
	}
	r.log.Info("repairing inside a namespace", "namespace", ns.Path, "ensure", len(p.ensure), "remove", len(p.remove))
	return r.host.Apply(ctx, p.ensure, p.remove)
}
