package cli

import (
	"bytes"
	"encoding/json"
	"net/http"
	"reflect"
	"strings"
	"testing"

	"github.com/hostnet/hostnet/api"
)

func pol(typ api.PolicyType, settings string) api.Policy {
	return api.Policy{Type: typ, Settings: json.RawMessage(settings)}
}

func TestPortMappingRows(t *testing.T) {
	pols := []api.Policy{
		pol(api.PortMapping, `{"Protocol":6,"InternalPort":80,"ExternalPort":8080}`),
		pol(api.PortMapping, `{"Protocol":17,"InternalPort":90,"ExternalPort":9000,"VIP":"127.0.0.1"}`),
		pol(api.PortMapping, `{"Protocol":6,"InternalPort":443,"ExternalPort":8443,"Flags":2}`),
		pol(api.PortMapping, `{"Protocol":6,"InternalPort":443,"ExternalPort":8443,"VIP":"::","Flags":2}`),
		pol(api.PortMapping, `{"InternalPort":22,"VIP":"2001:db8::1","Flags":2}`),
		pol(api.PortMapping, `{"InternalPort":53,"VIP":"0.0.0.0","Protocol":17}`),
		pol(api.PortMapping, `{ "Protocol": 1, "InternalPort": 80 }`),
	}
	want := [][]string{
		{"0.0.0.0:8080->80/tcp"},
		{"127.0.0.1:9000->90/udp"},
		{"[::]:8443->443/tcp"},
		{"[::]:8443->443/tcp"},
		{"[2001:db8::1]:22->22/tcp"},
		{"0.0.0.0:53->53/udp"},
		{`(invalid) {"Protocol":1,"InternalPort":80}`},
	}
	if got := portMappingRows(pols); !reflect.DeepEqual(got, want) {
		t.Errorf("rows\n%q\nwant\n%q", got, want)
	}
}

func TestACLRulesOrderAndRows(t *testing.T) {
	endpoint := []api.Policy{
		pol(api.ACL, `{"Action":"Allow","Direction":"In","Priority":200,"Protocols":"6","LocalPorts":"80,443"}`),                // e0
		pol(api.ACL, `{"Action":"Allow","Direction":"Out","Priority":100}`),                                                     // e1
		pol(api.PortMapping, `{"InternalPort":80}`),                                                                             // not a rule
		pol(api.ACL, `{"Action":"Maybe","Direction":"In"}`),                                                                     // invalid
		pol(api.ACL, `{"Action":"Block","Direction":"In","Priority":100,"RemoteAddresses":"10.0.0.0/8,192.0.2.1"}`),             // e3
		pol("1", `{"Action":1,"Direction":1,"Priority":100,"Protocols":"1,58,2,17,47","RuleType":"Host"}`),                      // e4: numeric type and enums
		pol(api.ACL, `{"Action":"Allow","Direction":"In","Priority":100,"LocalAddresses":"fd00::2","RemotePorts":"1000-2000"}`), // e5
	}
	network := []api.Policy{
		pol(api.NetAdapterName, `{"NetworkAdapterName":"eth0"}`),
		pol(api.NetworkACL, `{"Action":"Allow","Direction":"Out","Priority":100,"RuleType":"Switch"}`), // n1
		pol(api.NetworkACL, `{"Action":"Block","Direction":"In","Priority":300}`),                      // n2
		pol("11", `{"Action":"Allow","Direction":"In"}`),                                               // n3: NetworkACL by number, priority 0
		pol(api.NetworkACL, `not json`),
	}
	rules := append(aclRules(aclSourceNetwork, network, api.ResolveNetworkPolicyType), aclRules(aclSourceEndpoint, endpoint, api.ResolveEndpointPolicyType)...)
	sortACLRules(rules)
	want := [][]string{
		{"network", "0", "Allow", "In", "any", "any", "any", "any", "any", "-"},
		// Priority 100: the Blocks first, then the Allows, each in the given order (the network's first).
		{"endpoint", "100", "Block", "In", "any", "any", "any", "10.0.0.0/8,192.0.2.1", "any", "-"},
		{"endpoint", "100", "Block", "Out", "icmp,igmp,udp,47,icmpv6", "any", "any", "any", "any", "Host"},
		{"network", "100", "Allow", "Out", "any", "any", "any", "any", "any", "Switch"},
		{"endpoint", "100", "Allow", "Out", "any", "any", "any", "any", "any", "-"},
		{"endpoint", "100", "Allow", "In", "any", "fd00::2", "any", "any", "1000-2000", "-"},
		{"endpoint", "200", "Allow", "In", "tcp", "any", "80,443", "any", "any", "-"},
		{"network", "300", "Block", "In", "any", "any", "any", "any", "any", "-"},
		// Rules that do not parse come last, as they are.
		{"network", "-", "-", "-", "-", "-", "-", "-", "-", "(invalid) not json"},
		{"endpoint", "-", "-", "-", "-", "-", "-", "-", "-", `(invalid) {"Action":"Maybe","Direction":"In"}`},
	}
	if got := aclRows(rules, true); !reflect.DeepEqual(got, want) {
		t.Errorf("rows\n%q\nwant\n%q", got, want)
	}
	if got := aclRows(rules[:1], false); !reflect.DeepEqual(got, [][]string{want[0][1:]}) {
		t.Errorf("rows without source %q", got)
	}
}

func TestWritePolicyListing(t *testing.T) {
	endpoint := []api.Policy{
		pol(api.OutBoundNAT, `{ "Exceptions": ["10.0.0.0/8"] }`),
		pol("2", `{"MaximumOutgoingBandwidthInBytes":1000}`),
		pol(api.ACL, `{"Action":"Allow","Direction":"In","Priority":200,"Protocols":"6","LocalPorts":"80"}`),
		pol(api.PortMapping, `{"Protocol":6,"InternalPort":80,"ExternalPort":8080}`),
		pol(api.ACL, `{"Action":"Block","Direction":"In","Priority":200,"RemoteAddresses":"192.0.2.0/24"}`),
		pol(api.PortMapping, `{"Protocol":17,"InternalPort":53,"ExternalPort":53,"VIP":"127.0.0.1"}`),
	}
	network := []api.Policy{
		pol(api.NetAdapterName, `{"NetworkAdapterName":"eth0"}`),
		pol(api.NetworkACL, `{"Action":"Allow","Direction":"Out","Priority":100}`),
	}
	var b bytes.Buffer
	if err := writePolicyListing(&b, kindEndpoint, endpoint, network); err != nil {
		t.Fatal(err)
	}
	want := "" +
		"TYPE          SETTINGS\n" +
		"OutBoundNAT   {\"Exceptions\":[\"10.0.0.0/8\"]}\n" +
		"QOS           {\"MaximumOutgoingBandwidthInBytes\":1000}\n" +
		"\n" +
		"PUBLISHED\n" +
		"0.0.0.0:8080->80/tcp\n" +
		"127.0.0.1:53->53/udp\n" +
		"\n" +
		"SOURCE     PRIORITY   ACTION   DIRECTION   PROTOCOLS   LOCAL   LOCAL PORTS   REMOTE         REMOTE PORTS   RULE TYPE\n" +
		"network    100        Allow    Out         any         any     any           any            any            -\n" +
		"endpoint   200        Block    In          any         any     any           192.0.2.0/24   any            -\n" +
		"endpoint   200        Allow    In          tcp         any     80            any            any            -\n"
	if b.String() != want {
		t.Errorf("listing\n%s\nwant\n%s", b.String(), want)
	}

	// A network: its NetworkACL rules, without a SOURCE column.
	b.Reset()
	if err := writePolicyListing(&b, kindNetwork, network, nil); err != nil {
		t.Fatal(err)
	}
	want = "" +
		"TYPE             SETTINGS\n" +
		"NetAdapterName   {\"NetworkAdapterName\":\"eth0\"}\n" +
		"\n" +
		"PRIORITY   ACTION   DIRECTION   PROTOCOLS   LOCAL   LOCAL PORTS   REMOTE   REMOTE PORTS   RULE TYPE\n" +
		"100        Allow    Out         any         any     any           any      any            -\n"
	if b.String() != want {
		t.Errorf("network listing\n%s\nwant\n%s", b.String(), want)
	}

	// Only the network's rules: the endpoint's listing is that table alone.
	b.Reset()
	if err := writePolicyListing(&b, kindEndpoint, nil, network); err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(b.String(), "SOURCE ") || strings.Count(b.String(), "\n") != 2 {
		t.Errorf("listing of network rules only\n%s", b.String())
	}

	// Nothing: the header of the policy table alone, as before.
	b.Reset()
	if err := writePolicyListing(&b, kindEndpoint, nil, []api.Policy{network[0]}); err != nil || b.String() != "TYPE   SETTINGS\n" {
		t.Errorf("empty listing %q, %v", b.String(), err)
	}
}

func TestPolicyLsCommand(t *testing.T) {
	epPolicies := []api.Policy{
		pol(api.PortMapping, `{"Protocol":6,"InternalPort":80,"ExternalPort":8080}`),
		pol(api.ACL, `{"Action":"Allow","Direction":"In","Priority":200}`),
	}
	netPolicies := []api.Policy{pol(api.NetworkACL, `{"Action":"Block","Direction":"In","Priority":100}`)}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /endpoints/{ref}", func(w http.ResponseWriter, r *http.Request) {
		network := "5f0c2a8e-9b1d-4c3e-8f7a-0123456789ab"
		if r.PathValue("ref") == "orphan" {
			network = "deadbeef-0000-4000-8000-000000000000"
		}
		answer(w, 200, api.Endpoint{ID: "0a0b0c0d-1111-4222-8333-444444444444", HostComputeNetwork: network, Policies: epPolicies})
	})
	mux.HandleFunc("GET /networks/{ref}", func(w http.ResponseWriter, r *http.Request) {
		if r.PathValue("ref") != "5f0c2a8e-9b1d-4c3e-8f7a-0123456789ab" && r.PathValue("ref") != "nat" {
			answerError(w, 404, api.CodeElementNotFound, `network "`+r.PathValue("ref")+`" not found`)
			return
		}
		answer(w, 200, api.Network{ID: "5f0c2a8e-9b1d-4c3e-8f7a-0123456789ab", Name: "nat", Policies: netPolicies})
	})
	d := newFakeDaemon(t, mux)

	out, errOut, code := runCLI(t, d.socket, "", "endpoint", "policy", "ls", "web")
	want := "" +
		"PUBLISHED\n" +
		"0.0.0.0:8080->80/tcp\n" +
		"\n" +
		"SOURCE     PRIORITY   ACTION   DIRECTION   PROTOCOLS   LOCAL   LOCAL PORTS   REMOTE   REMOTE PORTS   RULE TYPE\n" +
		"network    100        Block    In          any         any     any           any      any            -\n" +
		"endpoint   200        Allow    In          any         any     any           any      any            -\n"
	if code != 0 || errOut != "" || out != want {
		t.Errorf("endpoint policy ls: code %d, stderr %q, stdout\n%s\nwant\n%s", code, errOut, out, want)
	}

	// The network gone: the endpoint's own rules, and a note.
	out, errOut, code = runCLI(t, d.socket, "", "endpoint", "policy", "ls", "orphan")
	if code != 0 || !strings.Contains(out, "endpoint   200") || strings.Contains(out, "network ") ||
		errOut != "note: the NetworkACL rules of network deadbeef-0000-4000-8000-000000000000 are not shown: network \"deadbeef-0000-4000-8000-000000000000\" not found\n" {
		t.Errorf("orphan: code %d, stderr %q, stdout\n%s", code, errOut, out)
	}

	// JSON: the endpoint's own policies, raw.
	out, _, code = runCLI(t, d.socket, "", "--format", "json", "endpoint", "policy", "ls", "web")
	var got []api.Policy
	if err := json.Unmarshal([]byte(out), &got); code != 0 || err != nil || len(got) != 2 || got[1].Type != api.ACL {
		t.Errorf("json: code %d, %v, %s", code, err, out)
	}

	out, _, code = runCLI(t, d.socket, "", "network", "policy", "ls", "nat")
	want = "" +
		"PRIORITY   ACTION   DIRECTION   PROTOCOLS   LOCAL   LOCAL PORTS   REMOTE   REMOTE PORTS   RULE TYPE\n" +
		"100        Block    In          any         any     any           any      any            -\n"
	if code != 0 || out != want {
		t.Errorf("network policy ls: code %d, stdout\n%s\nwant\n%s", code, out, want)
	}
}
