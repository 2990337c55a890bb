package nft

import (
	"fmt"
	"testing"
	"time"

	"github.com/hostnet/hostnet/internal/dataplane/netns"
	"github.com/hostnet/hostnet/internal/nftmodel"
	"github.com/hostnet/hostnet/internal/testutil"
)

// benchTable is a table of the size hostnet has with 1,000 endpoints:
// 1,000 regular chains (one per endpoint), 10,000 set elements (10 per
// endpoint) and 5,500 map elements.
func benchTable(endpoints int) *nftmodel.Table {
	t := &nftmodel.Table{
		Name: "hostnet",
		Sets: []*nftmodel.Set{
			{Name: "ports", Key: []nftmodel.KeyType{nftmodel.KeyIfname}},
			{Name: "port_mac", Key: []nftmodel.KeyType{nftmodel.KeyIfname, nftmodel.KeyEther}},
			{Name: "port_v4", Key: []nftmodel.KeyType{nftmodel.KeyIfname, nftmodel.KeyIPv4}},
			{Name: "noicc4", Key: []nftmodel.KeyType{nftmodel.KeyIPv4, nftmodel.KeyIPv4}, Interval: true},
			{Name: "svc4", Key: []nftmodel.KeyType{nftmodel.KeyIPv4, nftmodel.KeyInetProto, nftmodel.KeyInetService}},
		},
		Maps: []*nftmodel.Map{
			{Name: "acl_in4", Key: []nftmodel.KeyType{nftmodel.KeyIPv4}, Verdict: true, Elements: map[string]string{}},
			{Name: "acl_out4", Key: []nftmodel.KeyType{nftmodel.KeyIPv4}, Verdict: true, Elements: map[string]string{}},
			{Name: "pm4", Key: []nftmodel.KeyType{nftmodel.KeyInetProto, nftmodel.KeyInetService}, Value: []nftmodel.KeyType{nftmodel.KeyIPv4, nftmodel.KeyInetService}, Elements: map[string]string{}},
			{Name: "snat4", Key: []nftmodel.KeyType{nftmodel.KeyIPv4}, Value: []nftmodel.KeyType{nftmodel.KeyIPv4}, Elements: map[string]string{}},
			{Name: "src4", Key: []nftmodel.KeyType{nftmodel.KeyIPv4}, Value: []nftmodel.KeyType{nftmodel.KeyIPv4}, Elements: map[string]string{}},
			{Name: "dst4", Key: []nftmodel.KeyType{nftmodel.KeyIPv4}, Value: []nftmodel.KeyType{nftmodel.KeyIPv4}, Elements: map[string]string{}},
		},
		Chains: []*nftmodel.Chain{
			{Name: "forward", Type: nftmodel.ChainTypeFilter, Hook: nftmodel.HookForward, Priority: nftmodel.PriorityFilter, Rules: []nftmodel.Rule{
				{Comment: "replies", Exprs: []nftmodel.Expr{nftmodel.CtState("established", "related"), nftmodel.Accept()}},
				{Comment: "isolation", Exprs: []nftmodel.Expr{nftmodel.Concat(nftmodel.IPSaddr(), nftmodel.IPDaddr()).InSet("noicc4"), nftmodel.Drop()}},
				{Comment: "out", Exprs: []nftmodel.Expr{nftmodel.VMap(nftmodel.IPSaddr(), "acl_out4")}},
				{Comment: "in", Exprs: []nftmodel.Expr{nftmodel.VMap(nftmodel.IPDaddr(), "acl_in4")}},
			}},
			{Name: "publish", Type: nftmodel.ChainTypeNAT, Hook: nftmodel.HookPrerouting, Priority: nftmodel.PriorityDstNAT, Rules: []nftmodel.Rule{
				{Comment: "ports", Exprs: []nftmodel.Expr{nftmodel.FibDaddrTypeLocal(), nftmodel.DNATMap(nftmodel.Concat(nftmodel.L4Proto(), nftmodel.THDport()), "pm4")}},
			}},
			{Name: "postrouting", Type: nftmodel.ChainTypeNAT, Hook: nftmodel.HookPostrouting, Priority: nftmodel.PrioritySrcNAT, Rules: []nftmodel.Rule{
				{Comment: "snat", Exprs: []nftmodel.Expr{nftmodel.Oifname().NotInSet("ports"), nftmodel.SNATMap(nftmodel.IPSaddr(), "snat4")}},
			}},
		},
	}
	for i := 0; i < endpoints; i++ {
		ep := benchEndpoint(i)
		for name, els := range ep.AddElements {
			for _, s := range t.Sets {
				if s.Name == name {
					s.Elements = append(s.Elements, els...)
				}
			}
		}
		for name, kv := range ep.SetMapElements {
			for _, m := range t.Maps {
				if m.Name == name {
					for k, v := range kv {
						m.Elements[k] = v
					}
				}
			}
		}
		t.Chains = append(t.Chains, ep.AddChains...)
		for j := 0; j < 6; j++ {
			t.Sets[4].Elements = append(t.Sets[4].Elements, fmt.Sprintf("10.%d.%d.%d . tcp . %d", 1+i/65536, i/256%256, i%256, 1000+j))
		}
	}
	return t
}

// benchEndpoint is the patch that adds endpoint i: 4 set elements, 5 map
// elements (6 when i is odd: outbound NAT) and its chain.
func benchEndpoint(i int) nftmodel.TablePatch {
	ip := fmt.Sprintf("10.%d.%d.%d", 1+i/65536, i/256%256, i%256)
	port := fmt.Sprintf("hnv%d", i)
	chain := fmt.Sprintf("acl_%05d", i)
	p := nftmodel.TablePatch{
		Table: "hostnet",
		AddChains: []*nftmodel.Chain{{Name: chain, Rules: []nftmodel.Rule{
			{Comment: "web", Exprs: []nftmodel.Expr{nftmodel.L4Proto().Eq("tcp"), nftmodel.THDport().InAnon("80", "443"), nftmodel.Accept()}},
			{Comment: "dns", Exprs: []nftmodel.Expr{nftmodel.L4Proto().Eq("udp"), nftmodel.THDport().Eq("53"), nftmodel.IPSaddr().Eq("10.0.0.0/8"), nftmodel.Accept()}},
			{Comment: "deny", Exprs: []nftmodel.Expr{nftmodel.Counter(), nftmodel.Drop()}},
		}}},
		AddElements: map[string][]string{
			"ports":    {port},
			"port_mac": {fmt.Sprintf("%s . 02:00:00:%02x:%02x:%02x", port, i>>16&0xff, i>>8&0xff, i&0xff)},
			"port_v4":  {port + " . " + ip},
			"noicc4":   {ip + " . 10.0.0.0/8"},
		},
		SetMapElements: map[string]map[string]string{
			"acl_in4":  {ip: "jump " + chain},
			"acl_out4": {ip: "jump " + chain},
			"pm4":      {fmt.Sprintf("tcp . %d", 20000+i): ip + " . 80"},
			"src4":     {ip: "192.168.0.1"},
			"dst4":     {ip: "192.168.0.2"},
		},
	}
	if i%2 == 1 {
		p.SetMapElements["snat4"] = map[string]string{ip: "192.168.0.1"}
	}
	return p
}

// removal returns the patch that undoes p (an endpoint's addition).
func removal(p nftmodel.TablePatch) nftmodel.TablePatch {
	r := nftmodel.TablePatch{Family: p.Family, Table: p.Table, DeleteElements: p.AddElements, DeleteMapElements: map[string][]string{}}
	for _, c := range p.AddChains {
		r.DeleteChains = append(r.DeleteChains, c.Name)
	}
	for name, kv := range p.SetMapElements {
		for k := range kv {
			r.DeleteMapElements[name] = append(r.DeleteMapElements[name], k)
		}
	}
	return r
}

// benchNS creates a throwaway network namespace for a benchmark.
func benchNS(b *testing.B) netns.Handle {
	_, h := testutil.NewNS(b, "ns")
	return h
}

func benchKernel(b *testing.B) *Kernel {
	b.Helper()
	k, err := NewKernel(int(benchNS(b)))
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { k.Close() })
	return k
}

// applied applies tbl with a, then starts timing (and counting
// allocations).
func applied(b *testing.B, a Applier, tbl *nftmodel.Table) {
	if err := a.Apply(tbl); err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	b.ResetTimer()
}

// BenchmarkPatch adds and removes one endpoint (a chain, 4 set elements,
// 6 map elements) to a table of 1,000 endpoints (10,000 elements, 1,000
// regular chains). One op is two patches: the addition and the removal.
func BenchmarkPatch(b *testing.B) {
	const endpoints = 1000
	tbl := benchTable(endpoints)
	add := benchEndpoint(endpoints)
	del := removal(add)
	run := func(b *testing.B, a Applier) {
		applied(b, a, tbl)
		for i := 0; i < b.N; i++ {
			if err := a.Patch(add); err != nil {
				b.Fatal(err)
			}
			if err := a.Patch(del); err != nil {
				b.Fatal(err)
			}
		}
		b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(2*b.N), "ns/patch")
	}
	b.Run("fake", func(b *testing.B) { run(b, NewFake()) })
	b.Run("kernel", func(b *testing.B) { run(b, benchKernel(b)) })
	// The kernel copies a concatenated interval (pipapo) set whole at each
	// commit that changes it: without the noicc4 element, the rest.
	add.AddElements = map[string][]string{"ports": add.AddElements["ports"], "port_mac": add.AddElements["port_mac"],
		"port_v4": add.AddElements["port_v4"]}
	del = removal(add)
	b.Run("kernel_no_pipapo", func(b *testing.B) { run(b, benchKernel(b)) })
}

// BenchmarkApplyUnchanged applies the same 10,000-element table again (as
// reconciliation does): compile, validate and diff, nothing sent.
func BenchmarkApplyUnchanged(b *testing.B) {
	tbl := benchTable(1000)
	run := func(b *testing.B, a Applier) {
		applied(b, a, tbl)
		for i := 0; i < b.N; i++ {
			if err := a.Apply(tbl); err != nil {
				b.Fatal(err)
			}
		}
	}
	b.Run("kernel", func(b *testing.B) { run(b, benchKernel(b)) })
	b.Run("compile", func(b *testing.B) {
		b.ReportAllocs()
		for i := 0; i < b.N; i++ {
			if _, err := nftmodel.Compile(tbl); err != nil {
				b.Fatal(err)
			}
		}
	})
}

// TestPatchCost checks that a patch's cost does not grow with the table:
// patching a table of 1,000 endpoints costs about what patching one of 10
// does (a loose bound: timing on shared machines is noisy).
func TestPatchCost(t *testing.T) {
	if testing.Short() {
		t.Skip("timing")
	}
	cost := func(endpoints int) time.Duration {
		f := NewFake()
		if err := f.Apply(benchTable(endpoints)); err != nil {
			t.Fatal(err)
		}
		add := benchEndpoint(endpoints)
		del := removal(add)
		best := time.Duration(1 << 62)
		for round := 0; round < 5; round++ {
			start := time.Now()
			for i := 0; i < 50; i++ {
				if err := f.Patch(add); err != nil {
					t.Fatal(err)
				}
				if err := f.Patch(del); err != nil {
					t.Fatal(err)
				}
			}
			if d := time.Since(start) / 100; d < best {
				best = d
			}
		}
		return best
	}
	small, large := cost(10), cost(1000)
	t.Logf("patch cost: %v with 10 endpoints, %v with 1,000", small, large)
	if large > 4*small+50*time.Microsecond {
		t.Errorf("a patch of a 1,000-endpoint table costs %v, of a 10-endpoint one %v: not proportional to the patch", large, small)
	}
}
