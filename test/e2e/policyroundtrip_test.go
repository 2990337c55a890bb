package e2e

import (
	"encoding/json"
	"net/http"
	"testing"
)

// policyDocs are, per supported policy kind, a policy as hcsshim's hcn
// package marshals it (hcn/hcnpolicy.go: its Type as a name, its Settings
// with every field this build takes set). Each must read back exactly as
// sent (issue 23, item 5). owner says what carries it. SetPolicy and
// TierAcl documents have a round trip of their own
// (TestSetPolicyTierAclRoundTrip), route objects too (TestRouteObjectCarriesTraffic).
var policyDocs = []struct {
	kind, owner string
	policy      string
}{
	{"PortMapping", "endpoint", `{"Type":"PortMapping","Settings":{"Protocol":6,"InternalPort":80,"ExternalPort":18081,"VIP":"127.0.0.1","Flags":1}}`},
	{"PortMapping IPv6", "endpoint", `{"Type":"PortMapping","Settings":{"Protocol":17,"InternalPort":53,"ExternalPort":15353,"Flags":2}}`},
	{"ACL", "endpoint", `{"Type":"ACL","Settings":{"Id":"allow-web","Protocols":"6","Action":"Allow","Direction":"In",` +
		`"LocalAddresses":"192.168.120.0/24","RemoteAddresses":"10.0.0.0/8","LocalPorts":"80,443","RemotePorts":"1024-65535","RuleType":"Switch","Priority":200}}`},
	{"ACL out", "endpoint", `{"Type":"ACL","Settings":{"Action":"Block","Direction":"Out","RemoteAddresses":"198.51.100.7","Priority":100}}`},
	{"OutBoundNAT", "endpoint", `{"Type":"OutBoundNAT","Settings":{"VirtualIP":"192.168.120.1","Exceptions":["10.0.0.0/8","172.16.0.0/12"]}}`},
	{"SDNRoute", "endpoint", `{"Type":"SDNRoute","Settings":{"DestinationPrefix":"203.0.113.0/24","NextHop":"192.168.120.254"}}`},
	{"SDNRoute on-link", "endpoint", `{"Type":"SDNRoute","Settings":{"DestinationPrefix":"198.18.5.0/24"}}`},
	{"QOS", "endpoint", `{"Type":"QOS","Settings":{"MaximumOutgoingBandwidthInBytes":1000000}}`},
	{"AutomaticDNS", "network", `{"Type":"AutomaticDNS","Settings":{"Enable":true}}`},
	{"NetworkACL", "network", `{"Type":"NetworkACL","Settings":{"Id":"net-block","Protocols":"17","Action":"Block","Direction":"In",` +
		`"RemoteAddresses":"198.51.100.0/24","RemotePorts":"53","Priority":300}}`},
}

// TestPolicyDocumentsRoundTrip: every supported policy kind, sent as
// hcsshim sends it, is read back with every field as sent, on create and
// after a restart.
func TestPolicyDocumentsRoundTrip(t *testing.T) {
	e := NewEnv(t, "--default-network=false")
	status, body := e.raw("POST", "/networks", `{"Name":"rt","Type":"NAT","Ipams":[{"Subnets":[{"IpAddressPrefix":"192.168.120.0/24"}]}]}`)
	if status != http.StatusCreated {
		t.Fatalf("create network: %d %s", status, body)
	}
	var network struct{ ID string }
	if err := json.Unmarshal(body, &network); err != nil {
		t.Fatal(err)
	}
	type created struct{ kind, path, doc string }
	var all []created
	for i, d := range policyDocs {
		var path, doc string
		switch d.owner {
		case "endpoint":
			doc = `{"Name":"rt` + string(rune('a'+i)) + `","HostComputeNetwork":"` + network.ID + `","Policies":[` + d.policy + `]}`
			status, body = e.raw("POST", "/endpoints", doc)
			path = "/endpoints/"
		case "network":
			doc = `{"Name":"rtnet` + string(rune('a'+i)) + `","Type":"NAT","Ipams":[{"Subnets":[{"IpAddressPrefix":"192.168.` +
				string(rune('0'+i)) + `0.0/24"}]}],"Policies":[` + d.policy + `]}`
			status, body = e.raw("POST", "/networks", doc)
			path = "/networks/"
		}
		if status != http.StatusCreated {
			t.Errorf("%s: create: %d %s", d.kind, status, body)
			continue
		}
		var obj struct{ ID string }
		if err := json.Unmarshal(body, &obj); err != nil {
			t.Fatal(err)
		}
		all = append(all, created{d.kind, path + obj.ID, doc})
	}
	check := func(when string) {
		for _, c := range all {
			_, got := e.raw("GET", c.path, "")
			t.Run(c.kind+" "+when, func(t *testing.T) { assertCarries(t, c.doc, got) })
		}
	}
	check("on create")
	e.Restart(false)
	check("after a restart")
}
