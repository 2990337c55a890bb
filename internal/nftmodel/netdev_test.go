package nftmodel_test

import (
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/hostnet/hostnet/internal/nftmodel"
	"github.com/hostnet/hostnet/internal/nftmodel/nfttest"
	"github.com/hostnet/hostnet/internal/testutil"
)

// netdevRule is a netdev table "t" with a base chain "c" on hook egress of
// device "up0" holding one rule of exprs, and the dynamic set "flows".
func netdevRule(hook nftmodel.Hook, exprs ...nftmodel.Expr) *nftmodel.Table {
	t := nfttest.OneRule(nftmodel.FamilyNetdev, nftmodel.ChainTypeFilter, hook, exprs...)
	t.Chains[0].Device = "up0"
	t.Sets = []*nftmodel.Set{{Name: "flows", Key: []nftmodel.KeyType{nftmodel.KeyIPv4, nftmodel.KeyIPv4}, Dynamic: true, Timeout: time.Minute}}
	return t
}

func TestNetdevGolden(t *testing.T) {
	tbl := nfttest.Netdev("hnup0")
	if err := tbl.Validate(); err != nil {
		t.Fatal(err)
	}
	testutil.Golden(t, "netdev.nft", tbl.String())
	if tbl.Clone().String() != tbl.String() {
		t.Error("clone renders differently")
	}
}

func TestNetdevExprStrings(t *testing.T) {
	for _, tc := range []struct {
		e    nftmodel.Expr
		want string
	}{
		{nftmodel.SetUpdate("flows4", nftmodel.Concat(nftmodel.IPDaddr(), nftmodel.IPSaddr()), 90*time.Second), "update @flows4 { ip daddr . ip saddr timeout 1m30s }"},
		{nftmodel.SetAdd("seen", nftmodel.IPSaddr(), 0), "add @seen { ip saddr }"},
		{nftmodel.SetUpdate("s", nftmodel.IPSaddr(), 1500*time.Millisecond), "update @s { ip saddr timeout 1s500ms }"},
		{nftmodel.ICMPType().Eq("8"), "icmp type echo-request"},
		{nftmodel.ICMPType().InAnon("echo-reply", "destination-unreachable"), "icmp type { echo-reply, destination-unreachable }"},
	} {
		if got := tc.e.String(); got != tc.want {
			t.Errorf("String() = %q, want %q", got, tc.want)
		}
		if got := cloneExpr(tc.e).String(); got != tc.want {
			t.Errorf("clone().String() = %q, want %q", got, tc.want)
		}
	}
}

// A netdev rule's IPv4 match depends on `meta protocol ip`; a dynamic set
// statement loads its key from register 1 on.
func TestNetdevLowering(t *testing.T) {
	tbl := netdevRule(nftmodel.HookEgress, nftmodel.SetUpdate("flows", nftmodel.Concat(nftmodel.IPDaddr(), nftmodel.IPSaddr()), 30*time.Second))
	want := []nftmodel.IRExpr{
		nftmodel.IRMeta{Key: nftmodel.MetaProtocol, Dest: nftmodel.Reg1},
		nftmodel.IRCmp{Op: nftmodel.CmpEq, Reg: nftmodel.Reg1, Data: []byte{0x08, 0x00}},
		nftmodel.IRPayload{Base: nftmodel.PayloadNetworkHeader, Offset: 16, Len: 4, Dest: nftmodel.Reg1},
		nftmodel.IRPayload{Base: nftmodel.PayloadNetworkHeader, Offset: 12, Len: 4, Dest: nftmodel.Reg32(1)},
		nftmodel.IRDynset{Op: 1, Set: "flows", Key: nftmodel.Reg1, Timeout: 30 * time.Second},
	}
	if got := ruleIR(t, tbl, "c", 0); !reflect.DeepEqual(got, want) {
		t.Errorf("IR:\n%#v\nwant:\n%#v", got, want)
	}
	icmp := netdevRule(nftmodel.HookIngress, nftmodel.ICMPType().Eq("echo-reply"), nftmodel.Accept())
	want = []nftmodel.IRExpr{
		nftmodel.IRMeta{Key: nftmodel.MetaProtocol, Dest: nftmodel.Reg1},
		nftmodel.IRCmp{Op: nftmodel.CmpEq, Reg: nftmodel.Reg1, Data: []byte{0x08, 0x00}},
		nftmodel.IRMeta{Key: nftmodel.MetaL4Proto, Dest: nftmodel.Reg1},
		nftmodel.IRCmp{Op: nftmodel.CmpEq, Reg: nftmodel.Reg1, Data: []byte{1}},
		nftmodel.IRPayload{Base: nftmodel.PayloadTransportHeader, Offset: 0, Len: 1, Dest: nftmodel.Reg1},
		nftmodel.IRCmp{Op: nftmodel.CmpEq, Reg: nftmodel.Reg1, Data: []byte{0}},
	}
	if got := ruleIR(t, icmp, "c", 0)[:6]; !reflect.DeepEqual(got, want) {
		t.Errorf("IR of icmp type:\n%#v\nwant:\n%#v", got, want)
	}
}

func TestNetdevValidateErrors(t *testing.T) {
	flows := nftmodel.Concat(nftmodel.IPDaddr(), nftmodel.IPSaddr())
	with := func(tbl *nftmodel.Table, f func(*nftmodel.Table)) func() *nftmodel.Table {
		return func() *nftmodel.Table { f(tbl); return tbl }
	}
	for _, tc := range []struct {
		name string
		tbl  func() *nftmodel.Table
		want string
	}{
		{"ct state", with(netdevRule(nftmodel.HookIngress, nftmodel.CtState("established"), nftmodel.Accept()), func(*nftmodel.Table) {}),
			"chain c: rule 0: ct state established is not valid in a netdev table (netdev hooks have no conntrack"},
		{"ct direction", with(netdevRule(nftmodel.HookIngress, nftmodel.CtDirection("reply"), nftmodel.Accept()), func(*nftmodel.Table) {}),
			"ct direction reply is not valid in a netdev table"},
		{"masquerade", with(netdevRule(nftmodel.HookEgress, nftmodel.Masquerade()), func(*nftmodel.Table) {}), "masquerade is not valid in a netdev table"},
		{"fib", with(netdevRule(nftmodel.HookIngress, nftmodel.FibDaddrTypeLocal(), nftmodel.Accept()), func(*nftmodel.Table) {}), "fib daddr type local is not valid in a netdev table"},
		{"nfproto", with(netdevRule(nftmodel.HookIngress, nftmodel.NFProto().Eq("ipv4"), nftmodel.Accept()), func(*nftmodel.Table) {}), "meta nfproto never matches in a netdev table"},
		{"reject on egress", with(netdevRule(nftmodel.HookEgress, nftmodel.Reject()), func(*nftmodel.Table) {}), "reject is only valid on hook ingress in a netdev table"},
		{"nat chain", with(netdevRule(nftmodel.HookIngress, nftmodel.Accept()), func(t *nftmodel.Table) { t.Chains[0].Type = nftmodel.ChainTypeNAT }),
			"chain c: a netdev table has no nat chains"},
		{"inet hook", with(netdevRule(nftmodel.HookIngress, nftmodel.Accept()), func(t *nftmodel.Table) { t.Chains[0].Hook = nftmodel.HookForward }),
			`chain c: unknown hook "forward" in a netdev table`},
		{"netdev hook in inet", func() *nftmodel.Table {
			return nfttest.OneRule(nftmodel.FamilyInet, nftmodel.ChainTypeFilter, nftmodel.HookEgress, nftmodel.Accept())
		}, `chain c: unknown hook "egress" in a inet table`},
		{"no device", with(netdevRule(nftmodel.HookIngress, nftmodel.Accept()), func(t *nftmodel.Table) { t.Chains[0].Device = "" }),
			"chain c: a base chain of a netdev table needs a device"},
		{"long device", with(netdevRule(nftmodel.HookIngress, nftmodel.Accept()), func(t *nftmodel.Table) { t.Chains[0].Device = "0123456789abcdef" }),
			`device "0123456789abcdef": longer than 15 bytes`},
		{"bad device", with(netdevRule(nftmodel.HookIngress, nftmodel.Accept()), func(t *nftmodel.Table) { t.Chains[0].Device = "a/b" }),
			`device "a/b": not a valid interface name`},
		{"device in inet", func() *nftmodel.Table {
			t := nfttest.OneRule(nftmodel.FamilyInet, nftmodel.ChainTypeFilter, nftmodel.HookForward, nftmodel.Accept())
			t.Chains[0].Device = "eth0"
			return t
		}, `device "eth0": only base chains of a netdev table are bound to a device`},
		{"device on a regular chain", with(netdevRule(nftmodel.HookIngress, nftmodel.Accept()), func(t *nftmodel.Table) {
			t.Chains = append(t.Chains, &nftmodel.Chain{Name: "r", Device: "up0"})
		}), "chain r: a regular chain (no hook) takes no type, priority, policy or device"},
		{"update a static set", with(netdevRule(nftmodel.HookEgress, nftmodel.SetUpdate("flows", flows, 0)), func(t *nftmodel.Table) {
			t.Sets[0].Dynamic, t.Sets[0].Timeout = false, 0
		}), `update @flows { ip daddr . ip saddr }: set "flows" is not dynamic`},
		{"update a map", with(netdevRule(nftmodel.HookEgress, nftmodel.SetUpdate("m", flows, 0)), func(t *nftmodel.Table) {
			t.Maps = []*nftmodel.Map{{Name: "m", Key: []nftmodel.KeyType{nftmodel.KeyIPv4}, Verdict: true}}
		}), `"m" is a map, not a set`},
		{"update an unknown set", with(netdevRule(nftmodel.HookEgress, nftmodel.SetUpdate("nope", flows, 0)), func(*nftmodel.Table) {}), `unknown set "nope"`},
		{"key type", with(netdevRule(nftmodel.HookEgress, nftmodel.SetUpdate("flows", nftmodel.IPDaddr(), 0)), func(*nftmodel.Table) {}),
			`set "flows" has type ipv4_addr . ipv4_addr, key has type ipv4_addr`},
		{"timeout without the set's", with(netdevRule(nftmodel.HookEgress, nftmodel.SetUpdate("flows", flows, time.Second)), func(t *nftmodel.Table) { t.Sets[0].Timeout = 0 }),
			`set "flows" has no timeout`},
		{"sub-millisecond timeout", with(netdevRule(nftmodel.HookEgress, nftmodel.SetUpdate("flows", flows, time.Microsecond)), func(*nftmodel.Table) {}),
			"timeout 1µs is not a whole, positive number of milliseconds"},
		{"dynamic set with elements", with(netdevRule(nftmodel.HookEgress, nftmodel.Accept()), func(t *nftmodel.Table) { t.Sets[0].Elements = []string{"10.0.0.1 . 10.0.0.2"} }),
			"set flows: a dynamic set takes no elements"},
		{"dynamic interval set", with(netdevRule(nftmodel.HookEgress, nftmodel.Accept()), func(t *nftmodel.Table) { t.Sets[0].Interval = true }),
			"set flows: a dynamic set cannot be an interval set"},
		{"timeout on a static set", with(netdevRule(nftmodel.HookEgress, nftmodel.Accept()), func(t *nftmodel.Table) { t.Sets[0].Dynamic = false }),
			"set flows: only a dynamic set may have a timeout"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.tbl().Validate()
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("Validate() = %v, want it to contain %q", err, tc.want)
			}
		})
	}
	// ether fields, reject on ingress and the sample are fine.
	for _, tbl := range []*nftmodel.Table{
		netdevRule(nftmodel.HookIngress, nftmodel.EtherSaddr().Eq("02:00:00:00:00:01"), nftmodel.Reject()),
		nfttest.Netdev("hnup0"),
	} {
		if err := tbl.Validate(); err != nil {
			t.Errorf("%v", err)
		}
	}
}

// What the kernel reports of an applied netdev table plans nothing: the
// dynamic sets' elements are not compared, and a size left to the kernel
// takes the kernel's. A new device or timeout recreates what it concerns.
func TestNetdevPlan(t *testing.T) {
	tbl := nfttest.Netdev("hnup0")
	want := nfttest.Compile(t, tbl)
	read := func(size uint32, timeout time.Duration, dev string) *nftmodel.State {
		st := nftmodel.NewState(nftmodel.FamilyNetdev, "hostnet")
		for _, s := range tbl.Sets {
			st.ReadDynamicSet(s.Name, s.Key, timeout, size)
		}
		for _, s := range fresh(t, tbl).Steps {
			if s.Kind == nftmodel.StepAddRules {
				var rules []nftmodel.ReadRule
				for _, r := range s.Rules {
					// The sets a rule names, as a reading of its expressions finds them.
					var sets []string
					for _, e := range r.Exprs {
						switch e := e.(type) {
						case nftmodel.IRLookup:
							if e.SetID == 0 {
								sets = append(sets, e.Set)
							}
						case nftmodel.IRDynset:
							sets = append(sets, e.Set)
						}
					}
					rules = append(rules, nftmodel.ReadRule{ID: r.ID, Sets: sets})
				}
				def := *nfttest.ChainDef(t, tbl, s.Name)
				def.Device = dev
				st.ReadChain(def, rules)
			}
		}
		return st
	}
	plan := func(want, have *nftmodel.State) []string {
		b := &nftmodel.Batch{}
		if err := b.Plan(want, have); err != nil {
			t.Fatal(err)
		}
		return b.Ops()
	}
	if ops := plan(want, read(4096, 2*time.Minute, "hnup0")); len(ops) != 0 {
		t.Errorf("read back: plan %q", ops)
	}
	if ops := plan(want, read(4096, time.Minute, "hnup0")); !reflect.DeepEqual(ops, []string{
		"flush chain egress", "flush chain ingress", "delete set replies4", "delete set replies6", "add set replies4", "add set replies6",
		"add 4 rules to chain egress", "add 5 rules to chain ingress"}) {
		t.Errorf("new timeout: plan %q", ops)
	}
	if ops := plan(want, read(4096, 2*time.Minute, "hnup1")); !reflect.DeepEqual(ops, []string{
		"flush chain egress", "flush chain ingress", "delete chain egress", "delete chain ingress",
		"add chain egress", "add chain ingress", "add 4 rules to chain egress", "add 5 rules to chain ingress"}) {
		t.Errorf("new device: plan %q", ops)
	}
	for _, s := range tbl.Sets {
		s.Size = 0
	}
	if ops := plan(nfttest.Compile(t, tbl), read(65535, 2*time.Minute, "hnup0")); len(ops) != 0 {
		t.Errorf("size left to the kernel: plan %q", ops)
	}
	// A patch may not touch a dynamic set.
	_, err := nftmodel.PatchAll([]nftmodel.TablePatch{{Family: nftmodel.FamilyNetdev, Table: "hostnet",
		AddElements: map[string][]string{"replies4": {"10.0.0.1 . 10.0.0.2 . tcp . 80 . 4000"}}}},
		map[nftmodel.TableKey]*nftmodel.State{tbl.Key(): want})
	if err == nil || !strings.Contains(err.Error(), "set replies4 is dynamic") {
		t.Errorf("patch of a dynamic set: %v", err)
	}
}
