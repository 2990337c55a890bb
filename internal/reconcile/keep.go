package reconcile

import (
	"context"
	"errors"
	"sort"
	"strings"

	"github.com/hostnet/hostnet/internal/netmodel"
	"github.com/hostnet/hostnet/internal/nftmodel"
)

// Keep says what full passes keep, rather than remove, of what carries
// hostnet's tags and no owner wants. A start that cannot account for
// every kernel object of hostnet's uses it: after a restore of the state
// from a backup, the objects of everything created since are wanted by no
// record, yet they carry live traffic; a record set aside at start (it no
// longer reads) leaves its objects without an owner too. Kept objects are
// reported (Report.Kept) and left in place until the caller stops keeping
// them; then the next full pass removes them.
type Keep struct {
	// Object reports whether an unwanted tagged object is kept; nil keeps
	// none. Addresses and routes inside namespaces are asked about too
	// (the look inside a namespace, Verify, removes hostnet's routes
	// there that no owner wants).
	Object func(netmodel.Object) bool
	// Firewall keeps what hostnet's tables hold beyond the desired
	// content: a full pass adds what the tables lack (elements, regular
	// chains) and removes nothing, and a check reports the rest as kept.
	// The firewall cannot tell whose an element was, so it is kept whole.
	// A change of the tables' layout (a set, a map or a base chain that
	// comes or goes) still syncs them whole, and says so in a warning.
	Firewall bool
}

// KeepAll keeps every unwanted tagged object and the firewall's content.
var KeepAll = Keep{Object: func(netmodel.Object) bool { return true }, Firewall: true}

// On reports whether k keeps anything.
func (k Keep) On() bool { return k.Object != nil || k.Firewall }

func (k Keep) keeps(o netmodel.Object) bool { return k.Object != nil && k.Object(o) }

// SetKeep sets what the following passes keep (Keep{} for nothing: the
// next full pass removes what was kept).
func (r *Reconciler) SetKeep(k Keep) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.keep = k
}

// unwanted removes o, a tagged object no owner wants, or keeps it. what
// describes it; silent ones are removed without a problem reported.
func (p *pass) unwanted(k netmodel.Key, o netmodel.Object, what string, silent bool) {
	if p.r.keep.keeps(o) {
		p.rep.Kept = append(p.rep.Kept, Problem{Object: k, What: what})
		return
	}
	if !silent {
		p.problem("", k, "%s", what)
	}
	p.remove = append(p.remove, o)
}

// notKept drops from objs what the keep mode keeps.
func (r *Reconciler) notKept(objs []netmodel.Object) []netmodel.Object {
	if r.keep.Object == nil {
		return objs
	}
	out := objs[:0]
	for _, o := range objs {
		if !r.keep.keeps(o) {
			out = append(out, o)
		}
	}
	return out
}

// holdFirewall returns the differences of the firewall that are to be
// put back: all of them, or, while the firewall is kept, those that add
// or change something, the removals being reported as kept.
func (p *pass) holdFirewall(ops []string) []string {
	if !p.r.keep.Firewall {
		return ops
	}
	var rest []string
	for _, op := range ops {
		if isRemoval(op) {
			p.rep.Kept = append(p.rep.Kept, Problem{Object: netmodel.Key{Kind: netmodel.KindNftChain}, What: "firewall: " + op})
			continue
		}
		rest = append(rest, op)
	}
	return rest
}

// isRemoval tells whether a step of a firewall sync, as described by the
// host ("inet hostnet: delete 2 elements from set endpoint_ports", "delete
// table inet hostnet"), takes something away rather than adding or
// changing it.
func isRemoval(op string) bool {
	if _, rest, ok := strings.Cut(op, ": "); ok {
		op = rest
	}
	return strings.HasPrefix(op, "delete ") || strings.HasPrefix(op, "flush ")
}

// syncTables brings hostnet's tables to the desired content fw composes
// (tables): whole, or, while the firewall is kept, by adding what they
// lack without removing anything. When adding is not enough (a set, a
// map or a base chain differs), the tables are synced whole, which
// removes what was kept in them, and a warning says so. The caller holds
// r.mu.
func (r *Reconciler) syncTables(ctx context.Context, fw *firewall, tables []*nftmodel.Table) error {
	if !r.keep.Firewall {
		return r.host.SyncFirewall(ctx, tables)
	}
	var ensure, remove []netmodel.Object
	for _, o := range fw.objects() {
		switch o := o.(type) {
		case netmodel.NftElement:
			ensure = append(ensure, o)
		case netmodel.NftChain:
			if o.Chain.Hook == "" {
				// Both made and removed in one patch: replaced if
				// present, made if not, its references kept.
				ensure, remove = append(ensure, o), append(remove, o)
			}
		}
	}
	err := r.host.Apply(ctx, ensure, remove)
	if err == nil {
		var left []string
		if left, err = r.host.FirewallDrift(ctx, tables); err == nil {
			var adds []string
			for _, op := range left {
				if !isRemoval(op) {
					adds = append(adds, op)
				}
			}
			if len(adds) == 0 {
				return nil
			}
			err = errors.New("still to add: " + strings.Join(adds, "; "))
		}
	}
	r.log.Warn("reconcile: the firewall lacks more than elements and chains while hostnet keeps what no owner wants; "+
		"it is synced whole, which removes what was kept in it", "err", err)
	return r.host.SyncFirewall(ctx, tables)
}

// keptAddresses finds, while objects are kept, the addresses that kept
// devices hold inside namespaces (a kept namespace's, or a desired one
// that a kept port's other side is in), so that the caller keeps them
// from being handed out again: the records that handed them out are
// gone. It reads those namespaces in full; a light check does not.
func (p *pass) keptAddresses(ctx context.Context) error {
	if p.r.keep.Object == nil || p.opts.Shallow {
		return nil
	}
	spaces := map[netmodel.NS]bool{}
	for k, n := range p.obs.Namespaces {
		if _, ok := p.want[k]; !ok && p.r.keep.keeps(n) {
			spaces[n.NS] = true
		}
	}
	byID := map[int]netmodel.NS{}
	for ns, id := range p.obs.NSIDs {
		if id >= 0 {
			byID[id] = ns
		}
	}
	for k, l := range p.obs.Links {
		if _, ok := p.want[k]; ok || l.Kind != netmodel.LinkVeth || l.PeerNSID < 0 || !p.r.keep.keeps(l.Link) {
			continue
		}
		if ns, ok := byID[l.PeerNSID]; ok {
			spaces[ns] = true
		}
	}
	if len(spaces) == 0 {
		return nil
	}
	q := netmodel.Query{OnlyAsked: true}
	for ns := range spaces {
		q.Namespaces = append(q.Namespaces, ns)
	}
	sort.Slice(q.Namespaces, func(i, j int) bool { return q.Namespaces[i].Path < q.Namespaces[j].Path })
	q.LookInto = q.Namespaces
	obs, err := p.r.host.Observe(ctx, q)
	if err != nil {
		return err
	}
	for k, a := range obs.Addrs {
		link := netmodel.Key{Kind: netmodel.KindLink, NS: a.NS, ID: a.Link}
		if _, wanted := p.want[link]; wanted || !spaces[a.NS] || a.Link == "lo" {
			continue
		}
		if _, wanted := p.want[k]; wanted {
			continue
		}
		p.rep.KeptAddrs = append(p.rep.KeptAddrs, a)
	}
	sort.Slice(p.rep.KeptAddrs, func(i, j int) bool {
		return p.rep.KeptAddrs[i].Key().String() < p.rep.KeptAddrs[j].Key().String()
	})
	return nil
}

// keptChains returns remove as it is, or, while the firewall is kept,
// without the regular chains it removes and with those ensure adds. A
// kept element may jump to a chain the desired state no longer wants
// (the default profile, whose last wanted endpoint went): removing it
// would fail the change, so it stays, reported as kept. And a chain the
// desired state lacked may be in the kernel, kept, unknown to the
// reconciler (a profile whose last endpoint was set aside): one both
// added and removed by a change is replaced if present and made if not,
// and what jumps to it stays valid.
func (r *Reconciler) keptChains(ensure, remove []netmodel.Object) []netmodel.Object {
	if !r.keep.Firewall {
		return remove
	}
	regular := func(o netmodel.Object) (netmodel.NftChain, bool) {
		c, ok := o.(netmodel.NftChain)
		return c, ok && c.Chain.Hook == ""
	}
	out := make([]netmodel.Object, 0, len(remove))
	for _, o := range remove {
		if _, ok := regular(o); !ok {
			out = append(out, o)
		}
	}
	for _, o := range ensure {
		if c, ok := regular(o); ok {
			out = append(out, c)
		}
	}
	return out
}
