package nft

import (
	"strings"
	"testing"

	"github.com/hostnet/hostnet/internal/nftmodel"
	"github.com/hostnet/hostnet/internal/nftmodel/nfttest"
)

func TestKernelBridgeTable(t *testing.T) {
	_, k, bridge := adopted(t, nfttest.Bridge)

	// An inet table of the same name lives beside it.
	inet := nfttest.NAT()
	mustApply(t, k, inet, nil)
	checkKernel(t, k, bridge)

	// Element changes in a bridge table touch only elements.
	nfttest.SetOf(bridge, "macs").Elements = []string{"hnv1 . 02:00:00:00:00:02"}
	bridge.Maps[0].Elements["hnv3"] = "accept"
	mustApply(t, k, bridge, []string{
		"delete 1 elements from map acl_in",
		"delete 2 elements from set macs",
		"add 1 elements to set macs",
		"add 1 elements to map acl_in",
	})
	// Priorities are any number.
	nfttest.ChainOf(bridge, "forward").Priority = 150
	mustApply(t, k, bridge, []string{"flush chain forward", "delete chain forward", "add chain forward", "add 2 rules to chain forward"})

	// Deleting the bridge table leaves the inet one.
	if err := k.DeleteTable(nftmodel.FamilyBridge, "hostnet"); err != nil {
		t.Fatal(err)
	}
	if got, err := k.read(nftmodel.TableKey{Family: nftmodel.FamilyBridge, Name: "hostnet"}); err != nil || got != nil {
		t.Errorf("bridge table after DeleteTable: %v, %v", got, err)
	}
	checkKernel(t, k, inet)
	if err := k.DeleteTable(nftmodel.FamilyBridge, "hostnet"); err != nil {
		t.Errorf("second DeleteTable: %v", err)
	}
	if err := k.Delete("hostnet"); err != nil {
		t.Fatal(err)
	}
	if got, err := k.read(nftmodel.TableKey{Name: "hostnet"}); err != nil || got != nil {
		t.Errorf("inet table after Delete: %v, %v", got, err)
	}
}

// TestKernelBridgeConntrack documents that a ct expression in a bridge
// table needs nf_conntrack_bridge, which these machines' kernels lack: the
// kernel refuses the batch, and the error says why.
func TestKernelBridgeConntrack(t *testing.T) {
	k := newKernel(t, newNS(t))
	tbl := nfttest.OneRule(nftmodel.FamilyBridge, nftmodel.ChainTypeFilter, nftmodel.HookForward, nftmodel.CtState("established"), nftmodel.Accept())
	err := k.Apply(tbl)
	refusedForBridgeConntrack(t, err)
	if !strings.Contains(err.Error(), "nf_conntrack_bridge") {
		t.Errorf("error does not explain the cause: %v", err)
	}
}

func TestKernelMaps(t *testing.T) {
	_, k, tbl := adopted(t, nfttest.NAT)

	mapOf := func(name string) *nftmodel.Map { return nfttest.MapOf(tbl, name) }
	t.Run("values", func(t *testing.T) {
		mapOf("pm4").Elements["tcp . 8080"] = "10.0.0.9 . 8080" // changed
		mapOf("pm4").Elements["tcp . 22"] = "10.0.0.9 . 22"     // new
		delete(mapOf("pm4").Elements, "udp . 53")               // gone
		mapOf("pm6_vip").Elements["2001:db8::10 . tcp . 443"] = "fd00::3 . 443"
		mapOf("obnat4").Elements["10.0.0.2"] = "192.168.1.99"
		mapOf("ranges").Elements["10.1.0.0/16"] = "192.168.1.98"
		mapOf("ranges").Elements["10.3.0.0/24"] = "192.168.1.97"
		mustApplyElements(t, k, tbl, []string{
			"delete 1 elements from map obnat4",
			"delete 2 elements from map pm4",
			"delete 1 elements from map pm6_vip",
			"delete 1 elements from map ranges",
			"add 1 elements to map obnat4",
			"add 2 elements to map pm4",
			"add 1 elements to map pm6_vip",
			"add 2 elements to map ranges",
		})
	})

	t.Run("re-point a verdict map and remove its old chain", func(t *testing.T) {
		// One batch: the element moves from fwd_1 to fwd_2, fwd_1 goes.
		tbl.Chains = append(nfttest.WithoutChain(tbl.Chains, "fwd_1"), &nftmodel.Chain{Name: "fwd_2", Rules: []nftmodel.Rule{{Comment: "ok", Exprs: []nftmodel.Expr{nftmodel.Counter(), nftmodel.Accept()}}}})
		mapOf("fwd").Elements["hnbr-1"] = "jump fwd_2"
		mapOf("fwd").Elements["hnbr-2"] = "goto fwd_2"
		mustApply(t, k, tbl, []string{
			"flush chain fwd_1",
			"delete 1 elements from map fwd",
			"delete chain fwd_1",
			"add chain fwd_2",
			"add 2 elements to map fwd",
			"add 1 rules to chain fwd_2",
		})
		// Removing a chain that a kept element jumps to, without touching
		// the element, is refused by Validate.
		bad := nfttest.NAT()
		bad.Chains = nfttest.WithoutChain(bad.Chains, "fwd_1")
		if err := k.Apply(bad); err == nil || !strings.Contains(err.Error(), `map fwd: element "hnbr-1": jump fwd_1: unknown chain "fwd_1"`) {
			t.Errorf("Apply = %v", err)
		}
	})

	t.Run("remove a verdict map with the chain it jumps to", func(t *testing.T) {
		tbl.Maps = nfttest.WithoutMap(tbl.Maps, "fwd")
		tbl.Chains = nfttest.WithoutChain(tbl.Chains, "fwd_2")
		nfttest.ChainOf(tbl, "forward").Rules = nfttest.ChainOf(tbl, "forward").Rules[:1]
		mustApply(t, k, tbl, []string{
			"flush chain forward", "flush chain fwd_2", "delete map fwd", "delete chain fwd_2", "add 1 rules to chain forward",
		})
	})

	t.Run("map shape change", func(t *testing.T) {
		m := mapOf("obnat4")
		m.Value = []nftmodel.KeyType{nftmodel.KeyIPv4, nftmodel.KeyInetService}
		m.Elements = map[string]string{"10.0.0.2": "192.168.1.10 . 1024"}
		mustApply(t, k, tbl, []string{
			"flush chain postrouting", "delete map obnat4", "add map obnat4", "add 1 elements to map obnat4", "add 3 rules to chain postrouting",
		})
	})

	t.Run("anonymous set elements", func(t *testing.T) {
		fwd := nfttest.ChainOf(tbl, "forward")
		fwd.Rules = append(fwd.Rules,
			nftmodel.Rule{Comment: "ports", Exprs: []nftmodel.Expr{nftmodel.L4Proto().InAnon("tcp", "udp"), nftmodel.THDport().InAnon("80", "8000-8080"), nftmodel.IPSaddr().NotInAnon("10.0.0.0/8", "10.1.2.3"), nftmodel.Accept()}},
			nftmodel.Rule{Comment: "pairs", Exprs: []nftmodel.Expr{nftmodel.Concat(nftmodel.IPDaddr(), nftmodel.THDport()).InAnon("10.0.0.0/24 . 80-90", "10.9.9.9 . 53"), nftmodel.Accept()}})
		mustApply(t, k, tbl, []string{"flush chain forward", "add 3 rules to chain forward"})
		mustApply(t, k, tbl, []string{})
		fwd.Rules[1].Exprs[1] = nftmodel.THDport().InAnon("80", "8000-8081")
		mustApply(t, k, tbl, []string{"flush chain forward", "add 3 rules to chain forward"})
		// The anonymous sets go with their rules.
		fwd.Rules = fwd.Rules[:1]
		mustApply(t, k, tbl, []string{"flush chain forward", "add 1 rules to chain forward"})
		sets, err := k.listSets(kernelTable(tbl.Key()))
		if err != nil {
			t.Fatal(err)
		}
		if len(sets) != len(tbl.Maps) {
			t.Errorf("kernel holds %d sets and maps, want %d (anonymous sets left behind?)", len(sets), len(tbl.Maps))
		}
	})
}
