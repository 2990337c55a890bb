package nft

import (
	"strings"
	"testing"
	"time"

	"github.com/hostnet/hostnet/internal/nftmodel"
)

// balanceTable spreads connections to R's port 8080 over the map's
// backends: by a counter (numgen inc), or by a hash of the client's
// address (jhash); the same backends through a verdict map; and keeps a
// concatenated interval set of services.
func balanceTable() *nftmodel.Table {
	integer := []nftmodel.KeyType{nftmodel.KeyInteger}
	return &nftmodel.Table{Name: "hostnet",
		Sets: []*nftmodel.Set{{Name: "svc", Key: []nftmodel.KeyType{nftmodel.KeyIPv4, nftmodel.KeyInetService}, Interval: true,
			Elements: []string{"10.81.1.0/24 . 8000-8099", "10.81.1.100 . 9000"}}},
		Maps: []*nftmodel.Map{
			{Name: "lb", Key: integer, Value: []nftmodel.KeyType{nftmodel.KeyIPv4, nftmodel.KeyInetService},
				Elements: map[string]string{"0": "10.81.2.2 . 80", "1": "10.81.2.2 . 81"}},
			{Name: "pick", Key: integer, Verdict: true, Elements: map[string]string{"0": "accept", "1": "accept"}},
		},
		Chains: []*nftmodel.Chain{
			{Name: "publish", Type: nftmodel.ChainTypeNAT, Hook: nftmodel.HookPrerouting, Priority: nftmodel.PriorityDstNAT, Rules: []nftmodel.Rule{
				{Comment: "svc", Exprs: []nftmodel.Expr{nftmodel.Concat(nftmodel.IPDaddr(), nftmodel.THDport()).NotInSet("svc"), nftmodel.Return()}},
				{Comment: "by client", Exprs: []nftmodel.Expr{nftmodel.L4Proto().Eq("tcp"), nftmodel.THDport().Eq("8081"),
					nftmodel.DNATMap(nftmodel.JHash(nftmodel.IPSaddr(), 2, 0x1234), "lb")}},
				{Comment: "round robin", Exprs: []nftmodel.Expr{nftmodel.L4Proto().Eq("tcp"), nftmodel.DNATMap(nftmodel.NumgenInc(2), "lb")}},
			}},
			{Name: "forward", Type: nftmodel.ChainTypeFilter, Hook: nftmodel.HookForward, Priority: nftmodel.PriorityFilter, Rules: []nftmodel.Rule{
				{Comment: "spread", Exprs: []nftmodel.Expr{nftmodel.VMap(nftmodel.JHash(nftmodel.Concat(nftmodel.IPSaddr(), nftmodel.THSport()), 2, 0), "pick")}},
				{Comment: "random", Exprs: []nftmodel.Expr{nftmodel.NumgenRandom(2).Eq("1"), nftmodel.Counter()}},
			}},
		},
	}
}

// The expressions of load balancing (numgen and jhash as map keys), and
// maps keyed by their integers, go into a real table, read back as sent,
// and change element by element like the others.
func TestKernelBalance(t *testing.T) {
	_, k, inet := adopted(t, balanceTable)
	// A new backend and a service range change what they should and
	// nothing else.
	if err := k.Patch(nftmodel.TablePatch{Table: "hostnet",
		SetMapElements: map[string]map[string]string{"lb": {"2": "10.81.2.2 . 82"}},
		AddElements:    map[string][]string{"svc": {"10.81.3.0/24 . 1-1023"}},
		DeleteElements: map[string][]string{"svc": {"10.81.1.100 . 9000"}},
	}); err != nil {
		t.Fatal(err)
	}
	inet.Maps[0].Elements["2"] = "10.81.2.2 . 82"
	inet.Sets[0].Elements = []string{"10.81.1.0/24 . 8000-8099", "10.81.3.0/24 . 1-1023"}
	checkKernel(t, k, inet)
	checkCache(t, k, nftmodel.FamilyInet, "hostnet")
	if ops, err := k.Drift(inet); err != nil || len(ops) != 0 {
		t.Errorf("Drift = %q, %v", ops, err)
	}
}

// TestPacketBalance connects from C to R's port 8080 and 8081: numgen inc
// sends successive connections to S's ports 80 and 81 in turn; jhash of
// the client's address sends them all to one.
func TestPacketBalance(t *testing.T) {
	c, r, _ := routed(t)
	k := newKernel(t, r)
	tbl := balanceTable()
	tbl.Sets[0].Elements = []string{"10.81.1.1 . 8080-8081"}
	mustApply(t, k, tbl, nil)
	expectTCP(t, c, "10.81.1.1:8080", "10.81.2.2:80 from 10.81.1.2:")
	expectTCP(t, c, "10.81.1.1:8080", "10.81.2.2:81 from 10.81.1.2:")
	expectTCP(t, c, "10.81.1.1:8080", "10.81.2.2:80 from 10.81.1.2:")
	first, err := dialTCP(c, "10.81.1.1:8081", 2*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	backend, _, _ := strings.Cut(first, " ")
	for i := 0; i < 3; i++ {
		expectTCP(t, c, "10.81.1.1:8081", backend+" from 10.81.1.2:")
	}
	// Outside the service set, nothing is rewritten.
	tbl.Sets[0].Elements = []string{"10.81.1.1 . 8081"}
	mustApply(t, k, tbl, nil)
	expectTCP(t, c, "10.81.1.1:8080", "")
}
