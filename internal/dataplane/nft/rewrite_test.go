package nft

import (
	"slices"
	"strings"
	"testing"

	"github.com/hostnet/hostnet/internal/nftmodel"
	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// rewriteTable is a bridge table that rewrites the source MAC of the
// frames entering port pa (MAC rewrite, as an L2Bridge network does).
func rewriteTable(mac string) *nftmodel.Table {
	return &nftmodel.Table{Family: nftmodel.FamilyBridge, Name: "hostnet", Chains: []*nftmodel.Chain{
		{Name: "prerouting", Type: nftmodel.ChainTypeFilter, Hook: nftmodel.HookPrerouting, Priority: nftmodel.PriorityBridgeFilter, Rules: []nftmodel.Rule{
			{Comment: "rewrite", Exprs: []nftmodel.Expr{nftmodel.Iifname().Eq("pa"), nftmodel.SetPayload(nftmodel.EtherSaddr(), mac), nftmodel.Counter()}},
		}},
	}}
}

// The MAC rewrite statement goes into a real table, reads back as sent,
// and changes like any rule.
func TestKernelMACRewrite(t *testing.T) {
	ns, k, _ := adopted(t, func() *nftmodel.Table { return rewriteTable("02:00:00:00:aa:01") })
	mustApply(t, k, rewriteTable("02:00:00:00:aa:02"), []string{"flush chain prerouting", "add 1 rules to chain prerouting"})
	mustApply(t, newKernel(t, ns), rewriteTable("02:00:00:00:aa:02"), []string{})
}

// TestPacketMACRewrite rewrites the source MAC of A's frames as they enter
// the bridge: the bridge learns A's port under the new MAC, never under
// A's own, and A still reaches B.
func TestPacketMACRewrite(t *testing.T) {
	x, a, b := bridged(t)
	const rewritten = "02:00:00:00:aa:01"
	k := newKernel(t, x)
	mustApply(t, k, rewriteTable(rewritten), nil)
	hx := nlHandle(t, x)
	pa, err := hx.LinkByName("pa")
	if err != nil {
		t.Fatal(err)
	}
	learnedOnPA := func() []netlink.Neigh {
		t.Helper()
		fdb, err := hx.NeighList(pa.Attrs().Index, unix.AF_BRIDGE)
		if err != nil {
			t.Fatal(err)
		}
		return slices.DeleteFunc(fdb, func(n netlink.Neigh) bool { return n.State&netlink.NUD_PERMANENT != 0 })
	}
	// What A sent before the rule was in (IPv6's first frames, on a
	// loaded machine) was learned under its own MAC: forgotten.
	for _, n := range learnedOnPA() {
		if err := hx.NeighDel(&n); err != nil {
			t.Fatal(err)
		}
	}
	at10 := listenUDP(t, b, "10.82.0.2:10")
	expectUDP(t, a, "10.82.0.1", at10, "10.82.0.2:10", "rewritten", true, nil)

	var learned []string
	for _, n := range learnedOnPA() {
		learned = append(learned, n.HardwareAddr.String())
	}
	if !strings.Contains(strings.Join(learned, " "), rewritten) || strings.Contains(strings.Join(learned, " "), macA) {
		t.Errorf("bridge learned %v on pa, want %s and not %s", learned, rewritten, macA)
	}
	if got := familyPackets(t, k, nftmodel.FamilyBridge, "hostnet", "prerouting"); got[0] == 0 {
		t.Error("the rewrite rule counted no frame")
	}
}
