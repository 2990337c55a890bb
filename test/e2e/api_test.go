package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"reflect"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/google/nftables"
	"github.com/hostnet/hostnet/api"
	"github.com/hostnet/hostnet/internal/dataplane/netns"
	"github.com/vishvananda/netlink"
)

// raw sends a request to the daemon exactly as given and returns the
// status and the body; a daemon that does not answer within a minute
// fails the test.
func (e *Env) raw(method, path, body string) (int, []byte) {
	e.t.Helper()
	hc := &http.Client{Transport: &http.Transport{DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
		return (&net.Dialer{}).DialContext(ctx, "unix", e.Socket)
	}}, Timeout: time.Minute}
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	req, err := http.NewRequest(method, "http://hostnetd"+path, rd)
	if err != nil {
		e.t.Fatal(err)
	}
	resp, err := hc.Do(req)
	if err != nil {
		e.t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, b
}

// The documents hcsshim's hcn package sends to HNS for a NAT network and
// its endpoint (struct fields without omitempty effect: empty Dns, MacPool,
// Health objects; a dashed MAC; numeric and string enums) are accepted
// unchanged and read back with every field that was set.
func TestHCNDocumentsRoundTrip(t *testing.T) {
	e := NewEnv(t, "--default-network=false")
	networkDoc := `{"Name":"hcsnat","Type":"NAT","Policies":[],` +
		`"MacPool":{"Ranges":[{"StartMacAddress":"00-15-5D-52-C0-00","EndMacAddress":"00-15-5D-52-CF-FF"}]},` +
		`"Dns":{},"Ipams":[{"Type":"Static","Subnets":[{"IpAddressPrefix":"192.168.100.0/24",` +
		`"Routes":[{"NextHop":"192.168.100.1","DestinationPrefix":"0.0.0.0/0"}]}]}],` +
		`"Flags":0,"Health":{"Extra":{}},"SchemaVersion":{"Major":2,"Minor":0}}`
	status, body := e.raw("POST", "/networks", networkDoc)
	if status != http.StatusCreated {
		t.Fatalf("create network: %d %s", status, body)
	}
	var net1 api.Network
	if err := json.Unmarshal(body, &net1); err != nil {
		t.Fatal(err)
	}
	_, got := e.raw("GET", "/networks/"+net1.ID, "")
	assertCarries(t, networkDoc, got)

	endpointDoc := `{"Name":"hcsep","HostComputeNetwork":"` + net1.ID + `","Policies":[],` +
		`"IpConfigurations":[{"IpAddress":"192.168.100.10","PrefixLength":24}],` +
		`"Dns":{"Suffix":"corp.test","Search":["corp.test"],"ServerList":["192.168.100.1"]},` +
		`"Routes":[{"NextHop":"192.168.100.1","DestinationPrefix":"0.0.0.0/0"}],` +
		`"MacAddress":"00-15-5D-52-C0-10","Flags":0,"Health":{"Extra":{}},"SchemaVersion":{"Major":2,"Minor":0}}`
	status, body = e.raw("POST", "/endpoints", endpointDoc)
	if status != http.StatusCreated {
		t.Fatalf("create endpoint: %d %s", status, body)
	}
	var ep api.Endpoint
	_ = json.Unmarshal(body, &ep)
	_, got = e.raw("GET", "/endpoints/hcsep", "")
	assertCarries(t, endpointDoc, got)

	// Numeric enums, a field hostnet does not model, a colon MAC.
	numeric := `{"Name":"numnat","Type":0,"Ipams":[{"Subnets":[{"IpAddressPrefix":"192.168.101.0/24"}]}],"FutureField":{"x":1},"SchemaVersion":{"Major":2,"Minor":1}}`
	status, body = e.raw("POST", "/networks", numeric)
	if status != http.StatusCreated {
		t.Fatalf("create network with numeric type: %d %s", status, body)
	}
	var n2 map[string]any
	_ = json.Unmarshal(body, &n2)
	if n2["Type"] != "NAT" || n2["FutureField"] == nil {
		t.Errorf("numeric type and unknown field: %s", body)
	}
	status, body = e.raw("POST", "/endpoints", `{"HostComputeNetwork":"numnat","MacAddress":"02:00:00:00:00:AA"}`)
	if status != http.StatusCreated || !bytes.Contains(body, []byte(`"MacAddress":"02-00-00-00-00-AA"`)) {
		t.Errorf("colon MAC: %d %s", status, body)
	}

	// Namespaces as hcsshim creates them, and attach through a modify request.
	status, body = e.raw("POST", "/namespaces", `{"Type":"HostDefault","NamespaceId":5,"SchemaVersion":{"Major":2,"Minor":0},"ReadyOnCreate":true}`)
	if status != http.StatusCreated {
		t.Fatalf("create namespace: %d %s", status, body)
	}
	var ns api.Namespace
	_ = json.Unmarshal(body, &ns)
	status, body = e.raw("PATCH", "/namespaces/"+ns.ID, `{"ResourceType":1,"RequestType":0,"Settings":{"EndpointId":"`+ep.ID+`"}}`)
	if status != http.StatusOK || !strings.Contains(string(body), ep.ID) {
		t.Fatalf("attach by numeric modify request: %d %s", status, body)
	}
	_, got = e.raw("GET", "/endpoints/"+ep.ID, "")
	if !strings.Contains(string(got), `"HostComputeNamespace":"`+ns.ID+`"`) {
		t.Errorf("attached endpoint does not name its namespace: %s", got)
	}

	// Queries: the filter document, bare or wrapped in an HNS query.
	for _, f := range []string{`{"Name":"hcsnat"}`, `{"SchemaVersion":{"Major":2,"Minor":0},"Flags":0,"Filter":"{\"Name\":\"hcsnat\"}"}`} {
		_, body = e.raw("GET", "/networks?filter="+url.QueryEscape(f), "")
		var list []api.Network
		if err := json.Unmarshal(body, &list); err != nil || len(list) != 1 || list[0].ID != net1.ID {
			t.Errorf("filter %s: %s", f, body)
		}
	}
	_, body = e.raw("GET", "/endpoints?filter="+url.QueryEscape(`{"VirtualNetwork":"`+net1.ID+`"}`), "")
	var eps []api.Endpoint
	if err := json.Unmarshal(body, &eps); err != nil || len(eps) != 1 || eps[0].ID != ep.ID {
		t.Errorf("endpoints of a network: %s", body)
	}
	status, body = e.raw("GET", "/endpoints?filter="+url.QueryEscape(`{"Colour":"red"}`), "")
	if status != http.StatusBadRequest || !strings.Contains(string(body), "Colour") {
		t.Errorf("unknown filter key: %d %s", status, body)
	}

	// The version call says what this build supports.
	_, body = e.raw("GET", "/version", "")
	var v api.VersionInfo
	if err := json.Unmarshal(body, &v); err != nil || v.Version.Major != 2 || len(v.Supported.NetworkTypes) == 0 || v.Supported.NetworkTypes[0] != api.NAT {
		t.Errorf("version: %s", body)
	}
}

// assertCarries checks that every field set in sent is in got with the
// same value (empty arrays count as unset: HNS omits them too).
func assertCarries(t *testing.T, sent string, got []byte) {
	t.Helper()
	var s, g map[string]any
	if err := json.Unmarshal([]byte(sent), &s); err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(got, &g); err != nil {
		t.Fatalf("answer is not a JSON object: %s", got)
	}
	for k, v := range s {
		if a, ok := v.([]any); ok && len(a) == 0 {
			continue
		}
		if !reflect.DeepEqual(g[k], v) {
			t.Errorf("field %s: sent %s, read back %s", k, mustJSON(v), mustJSON(g[k]))
		}
	}
}

// kernelState describes the host namespace: devices with their addresses,
// and hostnet's nftables table, for checking that a refused request left
// the kernel as it was.
func (e *Env) kernelState() string {
	e.t.Helper()
	h := e.handle(e.HostNS)
	defer h.Close()
	// Devices may be going away in the background (detached ports are
	// deleted in batches): a dump they interrupt is taken again.
	links, err := h.LinkList()
	for try := 0; errors.Is(err, netlink.ErrDumpInterrupted) && try < 20; try++ {
		time.Sleep(20 * time.Millisecond)
		links, err = h.LinkList()
	}
	if err != nil {
		e.t.Fatal(err)
	}
	var lines []string
	for _, l := range links {
		addrs, _ := h.AddrList(l, 0)
		var as []string
		for _, a := range addrs {
			as = append(as, a.IPNet.String())
		}
		sort.Strings(as)
		lines = append(lines, fmt.Sprintf("%s %v", l.Attrs().Name, as))
	}
	ns, err := netns.Open(e.HostNS)
	if err != nil {
		e.t.Fatal(err)
	}
	defer ns.Close()
	c, err := nftables.New(nftables.WithNetNSFd(int(ns)))
	if err != nil {
		e.t.Fatal(err)
	}
	tables, _ := c.ListTables()
	for _, tb := range tables {
		sets, _ := c.GetSets(tb)
		for _, s := range sets {
			els, _ := c.GetSetElements(s)
			var keys []string
			for _, el := range els {
				keys = append(keys, fmt.Sprintf("%x", el.Key))
			}
			sort.Strings(keys)
			lines = append(lines, fmt.Sprintf("set %s/%s %v", tb.Name, s.Name, keys))
		}
		chains, _ := c.ListChainsOfTableFamily(tb.Family)
		for _, ch := range chains {
			if ch.Table.Name != tb.Name {
				continue
			}
			rules, _ := c.GetRules(tb, ch)
			lines = append(lines, fmt.Sprintf("chain %s/%s %d rules", tb.Name, ch.Name, len(rules)))
		}
	}
	sort.Strings(lines)
	return strings.Join(lines, "\n")
}

// Bad input is refused with the right status, HNS code and a message that
// names the field and the value, and leaves the store and the kernel as
// they were.
func TestBadInputIsRefusedAndChangesNothing(t *testing.T) {
	e := NewEnv(t, "--default-network=false")
	c := e.Client()
	if _, err := c.CreateNetwork(ctx, natNetwork("base", "10.90.0.0/24")); err != nil {
		t.Fatal(err)
	}
	taken, err := c.CreateEndpoint(ctx, &api.Endpoint{Name: "taken", HostComputeNetwork: "base",
		IpConfigurations: []api.IPConfig{{IpAddress: "10.90.0.10"}}})
	if err != nil {
		t.Fatal(err)
	}
	ns, err := c.CreateNamespace(ctx, &api.Namespace{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.Attach(ctx, ns.ID, taken.ID); err != nil {
		t.Fatal(err)
	}

	net := func(name string, subnets ...string) string {
		var subs []string
		for _, s := range subnets {
			subs = append(subs, `{"IpAddressPrefix":"`+s+`"}`)
		}
		return `{"Name":"` + name + `","Type":"NAT","Ipams":[{"Subnets":[` + strings.Join(subs, ",") + `]}]}`
	}
	cases := []struct {
		name         string
		method, path string
		body         string
		status       int
		code         api.ErrorCode
		mention      []string // the message names the field and the value
	}{
		{"overlapping subnets", "POST", "/networks", net("ov", "10.90.0.128/25"),
			400, api.CodeInvalidNetwork, []string{"10.90.0.128/25", "overlaps", "10.90.0.0/24", "base"}},
		{"malformed CIDR", "POST", "/networks", net("bad", "10.91.0/24"),
			400, api.CodeInvalidNetwork, []string{"IpAddressPrefix", `"10.91.0/24"`}},
		{"gateway outside the subnet", "POST", "/networks",
			`{"Name":"gw","Ipams":[{"Subnets":[{"IpAddressPrefix":"10.92.0.0/24","Routes":[{"NextHop":"10.93.0.1","DestinationPrefix":"0.0.0.0/0"}]}]}]}`,
			400, api.CodeInvalidNetwork, []string{"NextHop", "10.93.0.1", "outside", "10.92.0.0/24"}},
		{"two IPv4 subnets on a NAT network", "POST", "/networks", net("two", "10.94.0.0/24", "10.95.0.0/24"),
			400, api.CodeInvalidNetwork, []string{"Ipams", "one subnet per address family"}},
		{"unknown network type", "POST", "/networks", `{"Name":"foo","Type":"Foo"}`,
			400, api.CodeInvalidNetworkType, []string{"Type", `"Foo"`}},
		{"network type this build lacks", "POST", "/networks", `{"Name":"ov","Type":"Overlay"}`,
			400, api.CodeRequestUnsupported, []string{"Type", "Overlay", "not supported"}},
		{"unknown network policy type", "POST", "/networks", `{"Name":"pol","Policies":[{"Type":"Bogus","Settings":{}}]}`,
			400, api.CodeInvalidPolicyType, []string{"Policies[0].Type", `"Bogus"`}},
		{"duplicate name", "POST", "/networks", net("base", "10.96.0.0/24"),
			409, api.CodeObjectAlreadyExists, []string{`"base"`, "already exists"}},
		{"invalid JSON", "POST", "/networks", `{"Name":`,
			400, api.CodeInvalidJSON, []string{"invalid JSON"}},
		{"static IP already taken", "POST", "/endpoints",
			`{"HostComputeNetwork":"base","IpConfigurations":[{"IpAddress":"10.90.0.10"}]}`,
			409, api.CodeObjectAlreadyExists, []string{"IpConfigurations[0].IpAddress", "10.90.0.10", `"taken"`}},
		{"static IP outside the subnet", "POST", "/endpoints",
			`{"HostComputeNetwork":"base","IpConfigurations":[{"IpAddress":"10.99.0.10"}]}`,
			400, api.CodeInvalidIP, []string{"IpConfigurations[0].IpAddress", "10.99.0.10", "10.90.0.0/24"}},
		{"static IP is the gateway", "POST", "/endpoints",
			`{"HostComputeNetwork":"base","IpConfigurations":[{"IpAddress":"10.90.0.1"}]}`,
			400, api.CodeInvalidIP, []string{"10.90.0.1", "gateway"}},
		{"malformed MAC", "POST", "/endpoints", `{"HostComputeNetwork":"base","MacAddress":"00-15-5D"}`,
			400, api.CodeInvalidEndpoint, []string{"MacAddress", `"00-15-5D"`}},
		{"unknown endpoint policy type", "POST", "/endpoints",
			`{"HostComputeNetwork":"base","Policies":[{"Type":"Bogus"}]}`,
			400, api.CodeInvalidPolicyType, []string{"Policies[0].Type", `"Bogus"`}},
		{"endpoint on a missing network", "POST", "/endpoints", `{"HostComputeNetwork":"nowhere"}`,
			400, api.CodeInvalidEndpoint, []string{"HostComputeNetwork", `"nowhere"`}},
		{"deleting a network that has endpoints", "DELETE", "/networks/base", "",
			409, api.CodeNetworkHasEndpoints, []string{`"base"`, "taken"}},
		{"attaching an endpoint twice", "PATCH", "/namespaces/" + ns.ID,
			`{"ResourceType":"Endpoint","RequestType":"Add","Settings":{"EndpointId":"taken"}}`,
			409, api.CodeEndpointAttached, []string{`"taken"`, "already attached", ns.ID}},
		{"missing object", "GET", "/networks/nowhere", "",
			404, api.CodeElementNotFound, []string{`"nowhere"`, "not found"}},
	}
	store, kernel := e.snapshot(), e.kernelState()
	for _, tc := range cases {
		t.Run(strings.ReplaceAll(tc.name, " ", "_"), func(t *testing.T) {
			status, body := e.raw(tc.method, tc.path, tc.body)
			var r api.ErrorResponse
			if err := json.Unmarshal(body, &r); err != nil {
				t.Fatalf("answer %d is not an error document: %s", status, body)
			}
			if status != tc.status || r.ErrorCode != tc.code || r.Success {
				t.Errorf("got status %d code %s, want %d %s: %s", status, r.ErrorCode, tc.status, tc.code, r.Error)
			}
			for _, m := range tc.mention {
				if !strings.Contains(r.Error, m) {
					t.Errorf("message %q does not mention %s", r.Error, m)
				}
			}
			if now := e.snapshot(); now != store {
				t.Errorf("the store changed:\nbefore %s\nafter  %s", store, now)
			}
			if now := e.kernelState(); now != kernel {
				t.Errorf("the kernel changed:\nbefore:\n%s\nafter:\n%s", kernel, now)
			}
		})
	}
}
