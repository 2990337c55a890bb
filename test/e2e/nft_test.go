package e2e

import (
	"sort"
	"testing"

	"github.com/google/nftables"
	"github.com/vishvananda/netns"
)

// hostNft opens an nftables connection in e's host namespace, as another
// program there would.
func (e *Env) hostNft(t *testing.T) *nftables.Conn {
	t.Helper()
	ns, err := netns.GetFromPath(e.HostNS)
	if err != nil {
		t.Fatal(err)
	}
	// The connection opens its socket in the namespace lazily, at its
	// first request: the handle must outlive the call.
	t.Cleanup(func() { ns.Close() })
	c, err := nftables.New(nftables.WithNetNSFd(int(ns)))
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// eachHostnetRule calls fn with every chain of hostnet's table of family
// in e's host namespace and its rules, chains in name order.
func (e *Env) eachHostnetRule(t *testing.T, family nftables.TableFamily, fn func(ch *nftables.Chain, rules []*nftables.Rule)) {
	t.Helper()
	c := e.hostNft(t)
	chains, err := c.ListChainsOfTableFamily(family)
	if err != nil {
		t.Fatal(err)
	}
	sort.Slice(chains, func(i, j int) bool { return chains[i].Name < chains[j].Name })
	for _, ch := range chains {
		if ch.Table.Name != "hostnet" {
			continue
		}
		rules, err := c.GetRules(ch.Table, ch)
		if err != nil {
			t.Fatal(err)
		}
		fn(ch, rules)
	}
}
