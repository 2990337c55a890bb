package e2e

import (
	"encoding/json"
	"fmt"
	"sort"
	"strings"
	"testing"

	"github.com/google/nftables"
	"github.com/hostnet/hostnet/api"
)

// tierRule is one rule of a TierAcl tier, from its HCN fields.
func tierRule(id, action, protocols, remote, lports, rports string, priority uint16) api.TierAclRuleSettings {
	return api.TierAclRuleSettings{Id: id, TierAclRuleAction: api.FlexString(action), Protocols: api.FlexString(protocols),
		RemoteAddresses: remote, LocalPorts: api.FlexString(lports), RemotePorts: api.FlexString(rports), Priority: priority}
}

// tier builds a TierAcl policy, as hcsshim's TierAclPolicySetting marshals.
func tier(name, dir string, order uint16, rules ...api.TierAclRuleSettings) api.Policy {
	b, _ := json.Marshal(api.TierAclSettings{Name: name, Direction: api.FlexString(dir), Order: order, TierAclRules: rules})
	return api.Policy{Type: api.TierAcl, Settings: b}
}

// ipset builds a SetPolicy, as hcsshim's SetPolicySetting marshals.
func ipset(id, kind string, values ...string) api.Policy {
	b, _ := json.Marshal(api.SetPolicySettings{Id: id, Name: "set " + id, PolicyType: api.FlexString(kind), Values: strings.Join(values, ",")})
	return api.Policy{Type: api.SetPolicy, Settings: b}
}

// Each TierAcl action across two tiers, with real packets: Pass hands a
// packet to the next tier, Allow and Block decide at once (a later tier
// never sees it), a packet no tier decides meets the ACL profile (here the
// firewall defaults, then an ACL); tiers go by Order, not by list order;
// Out tiers judge what the endpoint sends.
func TestTierAclActions(t *testing.T) {
	a := newACLEnv(t)
	c1, c2 := a.c1.Addr.String(), a.c2.Addr.String()
	first := tier("first", "In", 100,
		tierRule("pass-c1-80", "Pass", "6", c1, "80", "", 10),
		tierRule("block-c2", "Block", "", c2, "", "", 20),
		tierRule("allow-udp53", "Allow", "17", "", "53", "", 30),
		tierRule("pass-icmp", "Pass", "1", "", "", "", 40))
	second := tier("second", "In", 200,
		tierRule("allow-80", "Allow", "6", "", "80", "", 10),
		tierRule("block-81", "Block", "6", "", "81", "", 20),
		tierRule("block-udp", "Block", "17", "", "", "", 30))
	out := tier("out", "Out", 100, tierRule("block-out-81", "Block", "6", "", "", "81", 10))
	// The later tier first in the list: Order decides.
	a.setPolicies("endpoint", "target", api.TierAcl, second, first, out)
	checks := []struct {
		name, probe string
		from        *Attached
		want        bool
	}{
		{"Pass in the first tier, Allow in the second", "tcp80", a.c1, true},
		{"no match in the first tier, Block in the second", "tcp81", a.c1, false},
		{"Block in the first tier, the second would allow", "tcp80", a.c2, false},
		{"Allow in the first tier, the second would block", "udp53", a.c1, true},
		{"no match in the first, Block in the second", "udp54", a.c1, false},
		{"Pass, no match in the second: the firewall defaults admit ICMP", "icmp", a.c1, true},
		{"Out tier: no match, the defaults let it out", "out-tcp80", nil, true},
		{"Out tier: Block", "out-tcp81", nil, false},
	}
	for _, c := range checks {
		from := c.from
		if from == nil {
			from = a.target
		}
		if got := settle(c.want, func() bool { return a.probe(c.probe, from) }); got != c.want {
			t.Errorf("%s: %s from %s: got through %v, want %v", c.name, c.probe, from.Endpoint.Name, got, c.want)
		}
	}
	// What the tiers pass on meets the endpoint's ACLs: with one, default
	// deny; the ICMP that Pass handed on is now blocked, what a tier
	// allows still goes.
	a.setPolicies("endpoint", "target", api.ACL, acl("Allow", "In", "6", "", "80", "", "", 100), acl("Allow", "Out", "", "", "", "", "", 100))
	if settle(false, func() bool { return a.probe("icmp", a.c1) }) {
		t.Error("ICMP passed by the tiers got through an ACL profile that does not allow it")
	}
	if !settle(true, func() bool { return a.probe("udp53", a.c1) }) {
		t.Error("UDP 53, allowed by the first tier, does not get through once the endpoint has ACLs")
	}
	if !settle(true, func() bool { return a.probe("tcp80", a.c1) }) {
		t.Error("TCP 80 from c1 (Pass, then Allow) does not get through")
	}
}

// ruleHandles lists every rule of hostnet's inet table in the host
// namespace, as chain/handle: equal lists mean no rule was added, removed
// or replaced.
func (e *Env) ruleHandles(t *testing.T) []string {
	t.Helper()
	var out []string
	e.eachHostnetRule(t, nftables.TableFamilyINet, func(ch *nftables.Chain, rules []*nftables.Rule) {
		for _, r := range rules {
			out = append(out, fmt.Sprintf("%s/%d", ch.Name, r.Handle))
		}
	})
	sort.Strings(out)
	return out
}

// An ACL whose RemoteAddresses names an IP set admits the set's members
// only; changing the set (Update of its SetPolicy, a nested set's member)
// changes what passes, and no rule of the table.
func TestIPSetACL(t *testing.T) {
	a := newACLEnv(t)
	c1, c2 := a.c1.Addr.String(), a.c2.Addr.String()
	a.setPolicies("network", "acl", api.SetPolicy, ipset("azure-npm-1", "IPSET", c1), ipset("azure-npm-2", "IPSET"),
		ipset("azure-npm-both", "NESTEDIPSET", "azure-npm-1", "azure-npm-2"))
	a.setPolicies("endpoint", "target", api.ACL, acl("Allow", "In", "6", "", "80", "azure-npm-1", "", 100),
		acl("Allow", "In", "6", "", "81", "azure-npm-both", "", 100), acl("Allow", "Out", "", "", "", "", "", 100))
	want := func(step string, probe string, c1Want, c2Want bool) {
		t.Helper()
		for _, c := range []struct {
			from *Attached
			want bool
		}{{a.c1, c1Want}, {a.c2, c2Want}} {
			if got := settle(c.want, func() bool { return a.probe(probe, c.from) }); got != c.want {
				t.Errorf("%s: %s from %s: got through %v, want %v", step, probe, c.from.Endpoint.Name, got, c.want)
			}
		}
	}
	want("set {c1}", "tcp80", true, false)
	want("nested {c1} + {}", "tcp81", true, false)
	before := a.ruleHandles(t)
	update := func(ps ...api.Policy) {
		t.Helper()
		b, _ := json.Marshal(api.PolicyRequest{Policies: ps})
		if _, err := a.Client().ModifyNetwork(ctx, "acl", &api.ModifyRequest{ResourceType: api.ResourcePolicy, RequestType: api.RequestUpdate, Settings: b}); err != nil {
			t.Fatal(err)
		}
	}
	update(ipset("azure-npm-1", "IPSET", c2))
	want("set {c2}", "tcp80", false, true)
	update(ipset("azure-npm-2", "IPSET", c1))
	want("nested {c2} + {c1}", "tcp81", true, true)
	n, err := a.Client().GetNetwork(ctx, "acl")
	if err != nil {
		t.Fatal(err)
	}
	sets := 0
	for _, p := range n.Policies {
		if p.Type == api.SetPolicy {
			sets++
		}
	}
	if sets != 3 {
		t.Errorf("the network has %d SetPolicy policies after two Updates, want 3 (an Update replaces the set it names only)", sets)
	}
	after := a.ruleHandles(t)
	if strings.Join(before, " ") != strings.Join(after, " ") {
		t.Errorf("changing sets changed rules: %d rules before, %d after", len(before), len(after))
	}
	if len(before) == 0 {
		t.Error("no rule found in table inet hostnet")
	}
	// A restart finds the sets and the chains as it wants them: it
	// rewrites no rule, and the sets still decide.
	a.Restart(false)
	if again := a.ruleHandles(t); strings.Join(after, " ") != strings.Join(again, " ") {
		t.Errorf("a restart rewrote rules: %d rules before, %d after", len(after), len(again))
	}
	want("set {c2} after a restart", "tcp80", false, true)
}

// Every field of SetPolicy and TierAcl documents written to hcsshim's
// schema reads back exactly as sent, through the daemon's HTTP API.
func TestSetPolicyTierAclRoundTrip(t *testing.T) {
	e := NewEnv(t, "--default-network=false")
	c := e.Client()
	raw := func(typ api.PolicyType, docs ...string) []api.Policy {
		var out []api.Policy
		for _, d := range docs {
			out = append(out, api.Policy{Type: typ, Settings: json.RawMessage(d)})
		}
		return out
	}
	sets := raw(api.SetPolicy,
		`{"Id":"azure-npm-1","Name":"podlabel-app:web","PolicyType":"IPSET","Values":"10.61.0.5,10.61.1.0/24,fd00::5"}`,
		`{"Id":"azure-npm-2","Name":"","PolicyType":"IPSET","Values":""}`,
		`{"Id":"azure-npm-3","Name":"nestedlabel-app","PolicyType":"NESTEDIPSET","Values":"azure-npm-1,azure-npm-2"}`)
	n := natNetwork("rt", "10.61.0.0/24")
	n.Policies = sets
	if _, err := c.CreateNetwork(ctx, n); err != nil {
		t.Fatal(err)
	}
	tiers := raw(api.TierAcl,
		`{"Name":"TierIn1","Direction":"In","Order":1001,"TierAclRules":[`+
			`{"Id":"TierIn1Rule1","Protocols":"6","TierAclRuleAction":"Pass","LocalAddresses":"192.168.100.0/24,10.0.0.21","RemoteAddresses":"192.168.100.0/24,10.0.0.22","LocalPorts":"80","RemotePorts":"80","Priority":2001},`+
			`{"Id":"TierIn1Rule2","TierAclRuleAction":"Block","Priority":2100}]}`,
		`{"Name":"TierIn2","Direction":"In","Order":1002,"TierAclRules":[{"Id":"TierIn2Rule1","TierAclRuleAction":"Allow","RemoteAddresses":"azure-npm-3","Priority":3000}]}`,
		`{"Name":"TierOut1","Direction":"Out","Order":1001}`)
	ep, err := c.CreateEndpoint(ctx, &api.Endpoint{Name: "rt", HostComputeNetwork: "rt", Policies: tiers})
	if err != nil {
		t.Fatal(err)
	}
	same := func(what string, got, want []api.Policy) {
		t.Helper()
		if len(got) != len(want) {
			t.Fatalf("%s: %d policies read back, %d sent", what, len(got), len(want))
		}
		for i := range want {
			if got[i].Type != want[i].Type || string(got[i].Settings) != string(want[i].Settings) {
				t.Errorf("%s: Policies[%d] reads back as %s %s, sent %s %s", what, i, got[i].Type, got[i].Settings, want[i].Type, want[i].Settings)
			}
		}
	}
	gotNet, err := c.GetNetwork(ctx, "rt")
	if err != nil {
		t.Fatal(err)
	}
	same("network", gotNet.Policies, sets)
	gotEP, err := c.GetEndpoint(ctx, ep.ID)
	if err != nil {
		t.Fatal(err)
	}
	same("endpoint", gotEP.Policies, tiers)
}
