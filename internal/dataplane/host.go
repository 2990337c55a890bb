package dataplane

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"strings"

	"github.com/hostnet/hostnet/internal/netmodel"
	"github.com/hostnet/hostnet/internal/nftmodel"
)

// Host is the kernel of one host, as hostnet programs it: the namespace it
// treats as the host and the namespaces of its endpoints. Linux is the
// real one; Fake keeps the same state in memory for unit tests.
//
// Every call is idempotent: what is already as wanted is adopted as it
// is, never recreated, so that reconciling a live host does not disturb
// its traffic. Hostnet's objects carry its tags (HostConfig): only tagged
// objects are reported by Observe, and a reconciler removes only those.
type Host interface {
	// Apply makes every object of ensure exist as given, then removes
	// every object of remove (one already gone is fine). Objects may come
	// in any order and from several owners: the host orders them
	// (namespaces, held ports, firewall, bridges, other links, then what
	// lives on links; a veth's pair is made in one step from both of its
	// Links, with the peer's addresses and routes, the sealed side brought
	// up last). Removing a link removes its addresses and routes. A
	// removed Sysctl is left as it is; a removed loopback stays up.
	//
	// Firewall pieces (netmodel.NftElement, and regular NftChains) are
	// sent in one atomic batch; sets, maps and base chains change only
	// through SyncFirewall (Apply refuses them with ErrFirewallLayout).
	//
	// The objects that could not be applied are reported by an
	// *ApplyError; the others were applied.
	Apply(ctx context.Context, ensure, remove []netmodel.Object) error
	// Observe reads hostnet's objects in the host (see netmodel.Query for
	// what is always read and what q adds).
	Observe(ctx context.Context, q netmodel.Query) (*netmodel.Observation, error)
	// SyncFirewall makes hostnet's nftables tables exactly tables, in one
	// atomic batch, by difference (live flows are untouched): a table of
	// hostnet's that tables lacks is deleted.
	SyncFirewall(ctx context.Context, tables []*nftmodel.Table) error
	// FirewallDrift describes how hostnet's tables differ from tables
	// (what SyncFirewall would send), reading the kernel afresh.
	FirewallDrift(ctx context.Context, tables []*nftmodel.Table) ([]string, error)
	// DeleteFlows makes the connection tracker forget every flow match
	// selects (`conntrack -D`), in one walk of its table, and says how
	// many it removed.
	DeleteFlows(ctx context.Context, match func(netmodel.Flow) bool) (int, error)
	// HostAddressing returns the host namespace's addresses and route
	// destinations, apart from those on hostnet's devices.
	HostAddressing(ctx context.Context) (netmodel.HostAddressing, error)
	// Identify returns the identity of the network namespace at path, or
	// an error wrapping ErrNamespaceGone when path is not one.
	Identify(ctx context.Context, path string) (netmodel.NSID, error)
	// Self is the identity of the host namespace.
	Self() netmodel.NSID
	// Watch calls changed, until ctx ends, when someone may have changed
	// hostnet's objects: a tagged link was deleted (hostnet's own
	// deletions included: Change.Link names it), another process
	// committed nftables changes, someone else deleted a shaper's qdisc
	// or filter on a tagged link, forwarding of the namespace as a whole
	// was turned off (a sysctl NAT networks need, whose change the
	// kernel reports). A subscription that fails calls failed
	// and ends (the caller subscribes again).
	Watch(ctx context.Context, changed func(Change), failed func(error)) error
}

// Change is what Watch reports.
type Change struct {
	Reason string
	// Link is the host link that was deleted, when that is the change.
	Link string
}

// HostConfig holds the tags that tell hostnet's objects from others'.
type HostConfig struct {
	// LinkPrefixes are the name prefixes of hostnet's links in the host
	// namespace (its bridges, the host sides of its veths).
	LinkPrefixes []string
	// NetnsDir holds the bind mounts of the namespaces hostnet makes.
	NetnsDir string
	// NetnsLinkDir holds `ip netns` links; those into NetnsDir are
	// hostnet's. Empty: none.
	NetnsLinkDir string
	// Tables are hostnet's nftables tables.
	Tables []TableName
}

// TableName names an nftables table.
type TableName struct {
	Family nftmodel.Family
	Name   string
}

// tagged reports whether a host link name carries one of the prefixes.
func (c *HostConfig) tagged(name string) bool {
	for _, p := range c.LinkPrefixes {
		if strings.HasPrefix(name, p) {
			return true
		}
	}
	return false
}

// ErrFirewallLayout is returned by Apply for a firewall set, map or base
// chain: the layout of a table changes through SyncFirewall.
var ErrFirewallLayout = errors.New("firewall sets, maps and base chains change through SyncFirewall")

// ErrNamespaceGone is returned for objects of a namespace that is not
// there, or that is not the one its identity names.
var ErrNamespaceGone = netmodel.ErrNamespaceGone

// ApplyError reports the objects Apply could not apply.
type ApplyError struct {
	Failed map[netmodel.Key]error
}

func (e *ApplyError) Error() string {
	keys := make([]netmodel.Key, 0, len(e.Failed))
	for k := range e.Failed {
		keys = append(keys, k)
	}
	sort.Slice(keys, func(i, j int) bool { return keys[i].String() < keys[j].String() })
	var parts []string
	for i, k := range keys {
		if i == 3 {
			parts = append(parts, fmt.Sprintf("and %d more", len(keys)-3))
			break
		}
		parts = append(parts, fmt.Sprintf("%s: %v", k, e.Failed[k]))
	}
	return strings.Join(parts, "; ")
}

// Unwrap returns the errors, for errors.Is and errors.As.
func (e *ApplyError) Unwrap() []error {
	out := make([]error, 0, len(e.Failed))
	for _, err := range e.Failed {
		out = append(out, err)
	}
	return out
}

// failures gathers per-object errors.
type failures map[netmodel.Key]error

func (f failures) add(k netmodel.Key, err error) {
	if err != nil {
		if _, ok := f[k]; !ok {
			f[k] = err
		}
	}
}

func (f failures) err() error {
	if len(f) == 0 {
		return nil
	}
	return &ApplyError{Failed: f}
}

// FailedKeys returns the keys err reports as failed: those of an
// *ApplyError, or every key given when err is another error.
func FailedKeys(err error, all []netmodel.Key) map[netmodel.Key]error {
	var ae *ApplyError
	if errors.As(err, &ae) {
		return ae.Failed
	}
	out := make(map[netmodel.Key]error, len(all))
	if err != nil {
		for _, k := range all {
			out[k] = err
		}
	}
	return out
}

// plan is what Apply is given, sorted by kind.
type plan struct {
	byKind map[netmodel.Kind][]netmodel.Object
	links  []netmodel.Link   // bridges (masters) before their ports
	nft    []netmodel.Object // firewall elements and regular chains
}

func sortObjects(objs []netmodel.Object, fail failures) *plan {
	p := &plan{byKind: map[netmodel.Kind][]netmodel.Object{}}
	for _, o := range objs {
		k := o.Key().Kind
		switch {
		case k == netmodel.KindNftSet || (k == netmodel.KindNftChain && o.(netmodel.NftChain).Chain.Hook != ""):
			fail.add(o.Key(), ErrFirewallLayout)
		case k >= netmodel.KindNftSet:
			p.nft = append(p.nft, o)
		default:
			p.byKind[k] = append(p.byKind[k], o)
		}
	}
	p.links = objectsOf[netmodel.Link](p, netmodel.KindLink)
	sort.SliceStable(p.links, func(i, j int) bool {
		return linkRank(p.links[i]) < linkRank(p.links[j])
	})
	return p
}

// objectsOf returns the objects of kind k, as their type.
func objectsOf[T netmodel.Object](p *plan, k netmodel.Kind) []T {
	out := make([]T, 0, len(p.byKind[k]))
	for _, o := range p.byKind[k] {
		if t, ok := o.(T); ok {
			out = append(out, t)
		}
	}
	return out
}

func linkRank(l netmodel.Link) int {
	switch {
	case l.Kind == netmodel.LinkBridge:
		return 0
	case l.Kind == netmodel.LinkLoopback:
		return 1
	case l.Master == "":
		return 2
	}
	return 3
}
