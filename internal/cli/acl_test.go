package cli

import (
	"encoding/json"
	"net/http"
	"strings"
	"sync"
	"testing"

	"github.com/hostnet/hostnet/api"
)

func TestParseACLSpec(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"allow in", `{"Action":"Allow","Direction":"In","RuleType":"Switch"}`},
		{"Block OUT", `{"Action":"Block","Direction":"Out","RuleType":"Switch"}`},
		{"allow in proto tcp lport 80,443 priority 100",
			`{"Protocols":"6","Action":"Allow","Direction":"In","LocalPorts":"80,443","RuleType":"Switch","Priority":100}`},
		{"block out remote 10.0.0.0/8 priority 50",
			`{"Action":"Block","Direction":"Out","RemoteAddresses":"10.0.0.0/8","RuleType":"Switch","Priority":50}`},
		{"allow in proto udp,tcp,17", `{"Protocols":"6,17","Action":"Allow","Direction":"In","RuleType":"Switch"}`},
		{"allow in proto icmp,icmpv6,igmp,47", `{"Protocols":"1,2,47,58","Action":"Allow","Direction":"In","RuleType":"Switch"}`},
		{"  allow   in\tpriority 7  proto any  local any lport any remote * rport 0 ",
			`{"Action":"Allow","Direction":"In","RuleType":"Switch","Priority":7}`},
		{"allow out local 172.16.0.2,fd00::2/64 remote 10.1.2.3/8,::ffff:1.2.3.4 rport 8000-8080,53",
			`{"Action":"Allow","Direction":"Out","LocalAddresses":"172.16.0.2,fd00::/64","RemoteAddresses":"10.0.0.0/8,1.2.3.4",` +
				`"RemotePorts":"8000-8080,53","RuleType":"Switch"}`},
		{"block in PRIORITY 0 Proto TCP", `{"Protocols":"6","Action":"Block","Direction":"In","RuleType":"Switch"}`},
		{"allow in priority 65535", `{"Action":"Allow","Direction":"In","RuleType":"Switch","Priority":65535}`},
		// Ports without a protocol: TCP and UDP, as the daemon reads them.
		{"allow in lport 22", `{"Action":"Allow","Direction":"In","LocalPorts":"22","RuleType":"Switch"}`},
	} {
		set, err := parseACLSpec(tc.in)
		if err != nil {
			t.Errorf("%q: %v", tc.in, err)
			continue
		}
		if got := mustJSON(t, set); got != tc.want {
			t.Errorf("%q:\n%s\nwant\n%s", tc.in, got, tc.want)
		}
		// The daemon's parser accepts what --acl makes.
		if _, err := api.ParseACL("endpoint", 0, api.ACL, api.Policy{Type: api.ACL, Settings: json.RawMessage(mustJSON(t, set))}); err != nil {
			t.Errorf("%q: the rule made is refused: %v", tc.in, err)
		}
	}
}

func TestParseACLSpecErrors(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"", "want ACTION DIRECTION first"},
		{"allow", "want ACTION DIRECTION first"},
		{"permit in", `action "permit" is not allow or block`},
		{"allow both", `direction "both" is not in or out`},
		{"allow in proto", "proto needs a value"},
		{"allow in priority", "priority needs a value"},
		{"allow in port 80", `unknown keyword "port" (known: proto, local, lport, remote, rport, priority)`},
		{"allow in proto tcp proto udp", "proto is given twice"},
		{"allow in proto sctp", `proto: "sctp" is not a protocol number`},
		{"allow in local 10.0.0.0/33", `local: "10.0.0.0/33" is not a CIDR prefix`},
		{"allow in remote example.com", `remote: "example.com" is not an IP address`},
		{"allow in lport 0-5", `lport: "0-5" is not a port`},
		{"allow in rport 90-80", `rport: "90-80" is not a port`},
		{"allow in priority -1", `priority: "-1" is not a number from 0 to 65535`},
		{"allow in priority 65536", `priority: "65536" is not a number from 0 to 65535`},
		{"allow in priority high", `priority: "high" is not a number`},
		{"allow in proto icmp lport 80", "ports apply to tcp and udp only, not to protocol icmp"},
		{"allow in proto tcp,47 rport 80", "ports apply to tcp and udp only, not to protocol 47"},
	} {
		if set, err := parseACLSpec(tc.in); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%q: %+v, %v; want an error with %q", tc.in, set, err, tc.want)
		}
	}
}

func TestACLPolicies(t *testing.T) {
	pols, err := aclPolicies([]string{"allow in proto tcp lport 80", "block out"}, api.NetworkACL)
	if err != nil {
		t.Fatal(err)
	}
	want := `[{"Type":"NetworkACL","Settings":{"Protocols":"6","Action":"Allow","Direction":"In","LocalPorts":"80","RuleType":"Switch"}},` +
		`{"Type":"NetworkACL","Settings":{"Action":"Block","Direction":"Out","RuleType":"Switch"}}]`
	if got := mustJSON(t, pols); got != want {
		t.Errorf("policies\n%s\nwant\n%s", got, want)
	}
	if _, err := aclPolicies([]string{"allow in", "allow sideways"}, api.ACL); err == nil ||
		err.Error() != `invalid --acl "allow sideways": direction "sideways" is not in or out` {
		t.Errorf("error %v", err)
	}
}

// policyMux answers the policy commands of an endpoint and a network. The
// endpoint keeps its policies as the daemon does: Add appends those not
// there yet, Remove drops those that match.
func policyMux() *http.ServeMux {
	mux := networksMux()
	var mu sync.Mutex
	ep := api.Endpoint{ID: "0a0b0c0d-1111-4222-8333-444444444444", Name: "web", HostComputeNetwork: testNetworks[0].ID}
	mux.HandleFunc("GET /endpoints/{ref}", func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		defer mu.Unlock()
		answer(w, 200, ep)
	})
	mux.HandleFunc("PATCH /endpoints/{ref}", func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		defer mu.Unlock()
		var req api.ModifyRequest
		var pr api.PolicyRequest
		if json.NewDecoder(r.Body).Decode(&req) != nil || json.Unmarshal(req.Settings, &pr) != nil {
			answerError(w, 400, api.CodeInvalidJSON, "bad request")
			return
		}
		switch req.RequestType {
		case api.RequestAdd:
			ep.Policies = append(ep.Policies, policyDiff(pr.Policies, ep.Policies)...)
		case api.RequestRemove:
			ep.Policies = policyDiff(ep.Policies, pr.Policies)
		}
		answer(w, 200, ep)
	})
	mux.HandleFunc("PATCH /networks/{ref}", func(w http.ResponseWriter, r *http.Request) { answer(w, 200, testNetworks[0]) })
	return mux
}

func TestPolicyAddFlags(t *testing.T) {
	d := newFakeDaemon(t, policyMux())
	_, errOut, code := runCLI(t, d.socket, "", "endpoint", "policy", "add", "web",
		"--policy", `{"Type":"OutBoundNAT"}`, "--acl", "allow in proto tcp lport 80,443 priority 100", "--acl", "block out remote 10.0.0.0/8 priority 50",
		"-p", "8080:80", "--publish", "[::1]:53:53/udp")
	if code != 0 {
		t.Fatalf("code %d, stderr %q", code, errOut)
	}
	r, _ := d.find("PATCH", "/endpoints/web")
	want := `{"ResourceType":"Policy","RequestType":"Add","Settings":{"Policies":[{"Type":"OutBoundNAT"},` +
		`{"Type":"ACL","Settings":{"Protocols":"6","Action":"Allow","Direction":"In","LocalPorts":"80,443","RuleType":"Switch","Priority":100}},` +
		`{"Type":"ACL","Settings":{"Action":"Block","Direction":"Out","RemoteAddresses":"10.0.0.0/8","RuleType":"Switch","Priority":50}},` +
		`{"Type":"PortMapping","Settings":{"Protocol":6,"InternalPort":80,"ExternalPort":8080}},` +
		`{"Type":"PortMapping","Settings":{"Protocol":17,"InternalPort":53,"ExternalPort":53,"VIP":"::1","Flags":2}}]}}`
	if string(r.Body) != want {
		t.Errorf("sent\n%s\nwant\n%s", r.Body, want)
	}

	// rm sends the same documents, so that they match what add stored.
	out, errOut, code := runCLI(t, d.socket, "", "endpoint", "policy", "rm", "web", "-p", "8080:80")
	if code != 0 || out != "endpoint web: removed PortMapping 0.0.0.0:8080->80/tcp\n" {
		t.Fatalf("rm: code %d, stdout %q, stderr %q", code, out, errOut)
	}
	var rm request
	for _, q := range d.requests() {
		if q.Method == "PATCH" {
			rm = q
		}
	}
	if want := `{"ResourceType":"Policy","RequestType":"Remove","Settings":{"Policies":[{"Type":"PortMapping","Settings":{"Protocol":6,"InternalPort":80,"ExternalPort":8080}}]}}`; string(rm.Body) != want {
		t.Errorf("rm sent %s", rm.Body)
	}

	_, errOut, code = runCLI(t, d.socket, "", "network", "policy", "add", "nat", "--acl", "block in remote 192.0.2.0/24 priority 10")
	r, _ = d.find("PATCH", "/networks/nat")
	if want := `{"ResourceType":"Policy","RequestType":"Add","Settings":{"Policies":[{"Type":"NetworkACL","Settings":{"Action":"Block","Direction":"In","RemoteAddresses":"192.0.2.0/24","RuleType":"Switch","Priority":10}}]}}`; code != 0 || string(r.Body) != want {
		t.Errorf("network policy add: code %d, stderr %q, sent %s", code, errOut, r.Body)
	}

	n := len(d.requests())
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"endpoint", "policy", "add", "web"}, "Error: no policy given: use --policy JSON, -f FILE, --acl SPEC or --publish PORTS\nSee 'hostnet endpoint policy add --help'.\n"},
		{[]string{"network", "policy", "rm", "nat"}, "Error: no policy given: use --policy JSON, -f FILE or --acl SPEC\nSee 'hostnet network policy rm --help'.\n"},
		{[]string{"network", "policy", "add", "nat", "-p", "80"}, "Error: unknown shorthand flag: 'p' in -p\nSee 'hostnet network policy add --help'.\n"},
		{[]string{"endpoint", "policy", "add", "web", "--acl", "allow in port 80"}, "Error: invalid --acl \"allow in port 80\": unknown keyword \"port\" (known: proto, local, lport, remote, rport, priority)\n"},
		{[]string{"endpoint", "policy", "rm", "web", "-p", "80", "-p", "x"}, "Error: invalid --publish \"x\": container port \"x\" is not a port (1-65535) or a range of ports (low-high)\n"},
		{[]string{"endpoint", "policy", "add", "web", "--policy", "{}", "-f", "-"}, "Error: give either --policy or --file, not both\nSee 'hostnet endpoint policy add --help'.\n"},
	} {
		if _, errOut, code := runCLI(t, d.socket, "", tc.args...); code != 1 || errOut != tc.want {
			t.Errorf("%v: code %d, stderr %q, want %q", tc.args, code, errOut, tc.want)
		}
	}
	if len(d.requests()) != n {
		t.Error("requests sent despite bad flags")
	}
}
