package service

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/netip"
	"strings"
	"testing"

	"github.com/hostnet/hostnet/api"
)

// Documents written to hcsshim's schema (hcn.SetPolicySetting,
// hcn.TierAclPolicySetting and hcn.TierAclRule, as encoding/json marshals
// them): every field of each.
var (
	setDocs = []string{
		`{"Id":"azure-npm-1","Name":"podlabel-app:web","PolicyType":"IPSET","Values":"10.7.0.5,10.7.1.0/24,fd00::5"}`,
		`{"Id":"azure-npm-2","Name":"","PolicyType":"IPSET","Values":""}`,
		`{"Id":"azure-npm-3","Name":"nestedlabel-app","PolicyType":"NESTEDIPSET","Values":"azure-npm-1,azure-npm-2"}`,
	}
	tierDocs = []string{
		`{"Name":"TierIn1","Direction":"In","Order":1001,"TierAclRules":[` +
			`{"Id":"TierIn1Rule1","Protocols":"6","TierAclRuleAction":"Pass","LocalAddresses":"192.168.100.0/24,10.0.0.21","RemoteAddresses":"192.168.100.0/24,10.0.0.22","LocalPorts":"80","RemotePorts":"80","Priority":2001},` +
			`{"Id":"TierIn1Rule2","TierAclRuleAction":"Block","Priority":2100}]}`,
		`{"Name":"TierIn2","Direction":"In","Order":1002,"TierAclRules":[` +
			`{"Id":"TierIn2Rule1","TierAclRuleAction":"Allow","RemoteAddresses":"azure-npm-3","Priority":3000}]}`,
		`{"Name":"TierOut1","Direction":"Out","Order":1001}`,
	}
	setACLDoc = `{"Id":"azure-acl-ns-web","Protocols":"6","Action":"Allow","Direction":"In","RemoteAddresses":"azure-npm-1,10.9.0.0/16","LocalPorts":"80","RuleType":"Switch","Priority":222}`
)

func policiesOf(typ api.PolicyType, docs ...string) []api.Policy {
	var out []api.Policy
	for _, d := range docs {
		out = append(out, api.Policy{Type: typ, Settings: json.RawMessage(d)})
	}
	return out
}

// sameSettings fails unless got holds want's policies, each Settings byte
// for byte as sent.
func sameSettings(t *testing.T, what string, got, want []api.Policy) {
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

// Every field of SetPolicy and TierAcl (and of an ACL naming a set) reads
// back exactly as sent: on create, and after a network's sets are updated.
func TestSetPolicyAndTierAclRoundTrip(t *testing.T) {
	l := newLab(t)
	ctx := context.Background()
	sets := policiesOf(api.SetPolicy, setDocs...)
	l.network("blue", "10.7.0.0/24", sets...)
	eps := append(policiesOf(api.TierAcl, tierDocs...), policiesOf(api.ACL, setACLDoc)...)
	l.attached(fixedID("blue"), "web", eps...)
	n, err := l.svc.GetNetwork(ctx, "blue")
	l.must(err)
	sameSettings(t, "network", n.Policies, sets)
	ep, err := l.svc.GetEndpoint(ctx, "web")
	l.must(err)
	sameSettings(t, "endpoint", ep.Policies, eps)

	// Update replaces the set it names, in place; the others stay.
	changed := policiesOf(api.SetPolicy, `{"Id":"azure-npm-2","Name":"podlabel-app:db","PolicyType":"IPSET","Values":"10.7.0.9"}`)
	b, _ := json.Marshal(api.PolicyRequest{Policies: changed})
	n, err = l.svc.ModifyNetwork(ctx, "blue", api.ModifyRequest{ResourceType: api.ResourcePolicy, RequestType: api.RequestUpdate, Settings: b})
	l.must(err)
	sameSettings(t, "network after Update", n.Policies, []api.Policy{sets[0], changed[0], sets[2]})
	// Add of a known Id replaces it too.
	readded := policiesOf(api.SetPolicy, `{"Id":"azure-npm-1","Name":"podlabel-app:web","PolicyType":"IPSET","Values":"10.7.0.6"}`)
	b, _ = json.Marshal(api.PolicyRequest{Policies: readded})
	n, err = l.svc.ModifyNetwork(ctx, "blue", api.ModifyRequest{ResourceType: api.ResourcePolicy, RequestType: api.RequestAdd, Settings: b})
	l.must(err)
	sameSettings(t, "network after Add of a known Id", n.Policies, []api.Policy{readded[0], changed[0], sets[2]})
	// Remove names the set by its Id.
	b, _ = json.Marshal(api.PolicyRequest{Policies: policiesOf(api.SetPolicy, `{"Id":"azure-npm-3"}`)})
	n, err = l.svc.ModifyNetwork(ctx, "blue", api.ModifyRequest{ResourceType: api.ResourcePolicy, RequestType: api.RequestRemove, Settings: b})
	l.must(err)
	sameSettings(t, "network after Remove", n.Policies, []api.Policy{readded[0], changed[0]})
	l.check()
}

// Bad SetPolicy and TierAcl documents are refused with a 400 naming the
// policy, the field and the value, and nothing is stored.
func TestSetPolicyAndTierAclRefusals(t *testing.T) {
	l := newLab(t)
	ctx := context.Background()
	l.network("blue", "10.7.0.0/24", policiesOf(api.SetPolicy, setDocs[0])...)
	many := strings.Repeat("10.8.0.1,", api.MaxSetMembers) + "10.8.0.2"
	full := make([]string, api.MaxSetMembers)
	for i, a := 0, netip.MustParseAddr("10.64.0.0"); i < len(full); i, a = i+1, a.Next() {
		full[i] = a.String()
	}
	nestedFull := func(id string) string {
		return `{"Id":"` + id + `","Name":"","PolicyType":"NESTEDIPSET","Values":"a"}`
	}
	networkCases := []struct {
		name string
		docs []string
		want string
	}{
		{"bad member", []string{`{"Id":"s","Name":"","PolicyType":"IPSET","Values":"10.0.0.300"}`}, `Policies[0].Settings.Values (SetPolicy): "10.0.0.300"`},
		{"bad kind", []string{`{"Id":"s","Name":"","PolicyType":"MACSET","Values":""}`}, `Policies[0].Settings.PolicyType (SetPolicy): "MACSET"`},
		{"bad Id", []string{`{"Id":"10.0.0.1","Name":"","PolicyType":"IPSET","Values":""}`}, `Policies[0].Settings.Id (SetPolicy): "10.0.0.1"`},
		{"unknown field", []string{`{"Id":"s","Name":"","PolicyType":"IPSET","Values":"","Extra":1}`}, `Policies[0] (SetPolicy)`},
		{"duplicate Id", []string{`{"Id":"s","Name":"","PolicyType":"IPSET","Values":""}`, `{"Id":"s","Name":"","PolicyType":"IPSET","Values":""}`},
			`Policies[1].Settings.Id (SetPolicy): "s" is also the Id of Policies[0]`},
		{"unknown nested member", []string{`{"Id":"n","Name":"","PolicyType":"NESTEDIPSET","Values":"ghost"}`}, `Policies[0].Settings.Values (SetPolicy): "ghost"`},
		{"nested cycle", []string{`{"Id":"a","Name":"","PolicyType":"NESTEDIPSET","Values":"b"}`, `{"Id":"b","Name":"","PolicyType":"NESTEDIPSET","Values":"a"}`},
			`is a member of itself`},
		{"too many members", []string{`{"Id":"s","Name":"","PolicyType":"IPSET","Values":"` + many + `"}`}, `Policies[0].Settings.Values (SetPolicy): 65537 entries (at most 65536)`},
		{"too many members over the network", []string{`{"Id":"a","Name":"","PolicyType":"IPSET","Values":"` + strings.Join(full, ",") + `"}`,
			nestedFull("n1"), nestedFull("n2"), nestedFull("n3"), nestedFull("n4")},
			`Policies[4].Settings.Values (SetPolicy): set "n4" brings the network's sets to 327680 addresses and prefixes`},
	}
	for _, c := range networkCases {
		_, err := l.svc.CreateNetwork(ctx, api.Network{Name: "red", Type: api.NAT, Policies: policiesOf(api.SetPolicy, c.docs...),
			Ipams: []api.Ipam{{Type: "Static", Subnets: []api.Subnet{{IpAddressPrefix: "10.8.0.0/24"}}}}})
		want400(t, c.name, err, c.want)
	}
	_, err := l.svc.CreateNetwork(ctx, api.Network{Name: "red", Type: api.NAT,
		Policies: append(policiesOf(api.SetPolicy, setDocs[0]), policiesOf(api.NetworkACL, `{"Action":"Block","Direction":"Out","RemoteAddresses":"azure-npm-7"}`)...),
		Ipams:    []api.Ipam{{Type: "Static", Subnets: []api.Subnet{{IpAddressPrefix: "10.8.0.0/24"}}}}})
	want400(t, "NetworkACL naming an unknown set", err, `Policies[1].Settings.RemoteAddresses (NetworkACL): "azure-npm-7"`)
	tierCases := []struct {
		name string
		ps   []api.Policy
		want string
	}{
		{"bad action", policiesOf(api.TierAcl, `{"Name":"t","Direction":"In","Order":1,"TierAclRules":[{"Id":"a","TierAclRuleAction":"Allow"},{"Id":"b","TierAclRuleAction":"Reject"}]}`),
			`Policies[0].Settings.TierAclRules[1].TierAclRuleAction (TierAcl): "Reject"`},
		{"bad direction", policiesOf(api.TierAcl, `{"Name":"t","Direction":"Sideways","Order":1}`), `Policies[0].Settings.Direction (TierAcl): "Sideways"`},
		{"bad port", policiesOf(api.TierAcl, `{"Name":"t","Direction":"In","Order":1,"TierAclRules":[{"TierAclRuleAction":"Allow","Protocols":"6","LocalPorts":"99999"}]}`),
			`Policies[0].Settings.TierAclRules[0].LocalPorts (TierAcl): "99999"`},
		{"two tiers of one Order", policiesOf(api.TierAcl, `{"Name":"a","Direction":"In","Order":7}`, `{"Name":"b","Direction":"In","Order":7}`),
			`Policies[1].Settings.Order (TierAcl): 7 is also the Order of Policies[0]`},
		{"unknown set in a tier", policiesOf(api.TierAcl, `{"Name":"t","Direction":"In","Order":1,"TierAclRules":[{"TierAclRuleAction":"Allow","RemoteAddresses":"ghost"}]}`),
			`Policies[0].Settings.TierAclRules[0].RemoteAddresses (TierAcl): "ghost"`},
		{"unknown set in an ACL", policiesOf(api.ACL, `{"Action":"Allow","Direction":"In","RemoteAddresses":"azure-npm-9"}`),
			`Policies[0].Settings.RemoteAddresses (ACL): "azure-npm-9"`},
	}
	for _, c := range tierCases {
		_, err := l.svc.CreateEndpoint(ctx, api.Endpoint{Name: "x", HostComputeNetwork: fixedID("blue"), Policies: c.ps})
		want400(t, c.name, err, c.want)
	}
	if eps, err := l.svc.ListEndpoints(ctx, ""); err != nil || len(eps) != 0 {
		t.Errorf("refused endpoints were stored: %v %v", eps, err)
	}
	if nets, err := l.svc.ListNetworks(ctx, ""); err != nil || len(nets) != 1 {
		t.Errorf("refused networks were stored: %d %v", len(nets), err)
	}
}

func want400(t *testing.T, name string, err error, want string) {
	t.Helper()
	var e *api.Error
	if !errors.As(err, &e) || e.Status != http.StatusBadRequest {
		t.Errorf("%s: got %v, want a 400", name, err)
		return
	}
	if !strings.Contains(e.Message, want) {
		t.Errorf("%s: %q does not say %q", name, e.Message, want)
	}
}

// BenchmarkIPSetChange is the daemon's part of one member change of a
// 10,000-member set (the fake host stands for the kernel): what
// `hostnet-bench all -only ipset` measures end to end.
func BenchmarkIPSetChange(b *testing.B) {
	l := newLab(b)
	members := make([]string, 10000)
	a := netip.MustParseAddr("10.100.0.0")
	for i := range members {
		members[i] = a.String()
		a = a.Next()
	}
	set := func(v []string) api.Policy {
		s, _ := json.Marshal(api.SetPolicySettings{Id: "s", Name: "", PolicyType: "IPSET", Values: strings.Join(v, ",")})
		return api.Policy{Type: api.SetPolicy, Settings: s}
	}
	l.network("blue", "10.7.0.0/24", set(members))
	l.attached(fixedID("blue"), "web", api.Policy{Type: api.ACL, Settings: json.RawMessage(`{"Action":"Allow","Direction":"In","RemoteAddresses":"s"}`)})
	ctx := context.Background()
	b.ResetTimer()
	for k := 0; k < b.N; k++ {
		m := append([]string(nil), members...)
		m[k%len(m)] = fmt.Sprintf("10.101.0.%d", k%250)
		s, _ := json.Marshal(api.PolicyRequest{Policies: []api.Policy{set(m)}})
		if _, err := l.svc.ModifyNetwork(ctx, "blue", api.ModifyRequest{ResourceType: api.ResourcePolicy, RequestType: api.RequestUpdate, Settings: s}); err != nil {
			b.Fatal(err)
		}
		l.rec.Wait()
	}
}

// A set removed while a rule names it leaves the rule matching nothing from
// it, the host in sync; the rule can still be removed, and a new rule
// naming the gone set is refused.
func TestRemovedSetStillNamed(t *testing.T) {
	l := newLab(t)
	ctx := context.Background()
	l.network("blue", "10.7.0.0/24", policiesOf(api.SetPolicy, setDocs[0])...)
	rule := policiesOf(api.ACL, setACLDoc)
	l.attached(fixedID("blue"), "web", rule...)
	modify := func(kind string, rt api.RequestType, ps []api.Policy) error {
		b, _ := json.Marshal(api.PolicyRequest{Policies: ps})
		req := api.ModifyRequest{ResourceType: api.ResourcePolicy, RequestType: rt, Settings: b}
		var err error
		if kind == "network" {
			_, err = l.svc.ModifyNetwork(ctx, "blue", req)
		} else {
			_, err = l.svc.ModifyEndpoint(ctx, "web", req)
		}
		return err
	}
	l.must(modify("network", api.RequestRemove, policiesOf(api.SetPolicy, `{"Id":"azure-npm-1"}`)))
	l.check()
	want400(t, "a new rule naming the removed set", modify("endpoint", api.RequestAdd,
		policiesOf(api.ACL, `{"Action":"Block","Direction":"In","RemoteAddresses":"azure-npm-1"}`)), `"azure-npm-1"`)
	l.must(modify("endpoint", api.RequestRemove, rule))
	l.check()
}
