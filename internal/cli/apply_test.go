package cli

import (
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"testing"

	"github.com/hostnet/hostnet/api"
)

func keysOf(t *testing.T, doc string) map[string]json.RawMessage {
	t.Helper()
	var m map[string]json.RawMessage
	if err := json.Unmarshal([]byte(doc), &m); err != nil {
		t.Fatal(err)
	}
	return m
}

func TestDetectKind(t *testing.T) {
	for doc, want := range map[string]string{
		`{"Name":"e","HostComputeNetwork":"nat"}`:                      kindEndpoint,
		`{"Name":"n","Ipams":[]}`:                                      kindNetwork,
		`{"Name":"n","MacPool":{}}`:                                    kindNetwork,
		`{"Name":"n","Type":"nat"}`:                                    kindNetwork,
		`{"Name":"n","Type":"L2Bridge","Policies":[]}`:                 kindNetwork,
		`{"Type":"HostDefault"}`:                                       kindNamespace,
		`{"NetNamespacePath":"/proc/1/ns/net"}`:                        kindNamespace,
		`{"NamespaceId":3}`:                                            kindNamespace,
		`{"Resources":[]}`:                                             kindNamespace,
		`{"ipams":[]}`:                                                 kindNetwork,
		`{"Name":"x"}`:                                                 "",
		`{"Type":0}`:                                                   "",
		`{"Type":"Bogus","Name":"x"}`:                                  "",
		`{"Dns":{},"Policies":[],"SchemaVersion":{"Major":2}}`:         "",
		`{"HostComputeNetwork":"n","Type":"Host","Ipams":[],"Name":1}`: kindEndpoint,
		`{"HostComputeEndpoints":["e"],"Setting":[]}`:                  kindRoute,
		`{"setting":[{"DestinationPrefix":"10.0.0.0/8"}]}`:             kindRoute,
	} {
		if got := detectKind(keysOf(t, doc)); got != want {
			t.Errorf("%s: kind %q, want %q", doc, got, want)
		}
	}
}

func TestParseApplyDocuments(t *testing.T) {
	kinds := func(docs []applyDoc) string {
		var s []string
		for _, d := range docs {
			s = append(s, fmt.Sprintf("%d:%s", d.index, d.kind))
		}
		return strings.Join(s, " ")
	}
	for in, want := range map[string]string{
		`{"Name":"n","Type":"NAT"}`: "0:network",
		`[{"Name":"n","Ipams":[{"Subnets":[{"IpAddressPrefix":"10.0.0.0/24"}]}]}, {"HostComputeNetwork":"n"}, {"Type":"Host"}]`: "0:network 1:endpoint 2:namespace",
		"{\"Type\":\"Guest\"}\n{\"HostComputeNetwork\":\"n\"}\n[{\"MacPool\":{}}]\n":                                            "0:namespace 1:endpoint 2:network",
	} {
		docs, err := parseApplyDocuments([]byte(in))
		if err != nil {
			t.Errorf("%s: %v", in, err)
			continue
		}
		if got := kinds(docs); got != want {
			t.Errorf("%s: %s, want %s", in, got, want)
		}
	}
	for in, want := range map[string]string{
		``:                                  "no documents found",
		`[{"Type":"NAT"}, {"Name":"what"}]`: "document 1: cannot tell whether it is a network, an endpoint, a namespace or a route",
		`{"Type":"NAT"} 42`:                 "document 1: not a JSON object",
		`{"Type":"NAT"`:                     "invalid JSON",
		`{"Type":"NAT","Flags":"eight"}`:    "document 0 (network): json: cannot unmarshal",
		`{"Type":"Host"} {"HostComputeNetwork":}`: "invalid JSON",
	} {
		_, err := parseApplyDocuments([]byte(in))
		if err == nil || !strings.HasPrefix(err.Error(), want) {
			t.Errorf("%q: error %v, want %q", in, err, want)
		}
	}
}

func TestContainsJSON(t *testing.T) {
	v := func(s string) any {
		var x any
		if err := json.Unmarshal([]byte(s), &x); err != nil {
			t.Fatal(err)
		}
		return x
	}
	for _, tc := range []struct {
		have, want string
		ok         bool
	}{
		{`{"Name":"a","Type":"NAT","ID":"X"}`, `{"Name":"a"}`, true},
		{`{"Name":"a"}`, `{"Name":"b"}`, false},
		{`{"Ipams":[{"Subnets":[{"IpAddressPrefix":"10.0.0.0/24","Routes":[{"NextHop":"10.0.0.1"}]}]}]}`, `{"Ipams":[{"Subnets":[{"IpAddressPrefix":"10.0.0.0/24"}]}]}`, true},
		{`{"Ipams":[{"Subnets":[{"IpAddressPrefix":"10.0.0.0/24"}]}]}`, `{"Ipams":[{"Subnets":[{"IpAddressPrefix":"10.0.0.0/24"},{"IpAddressPrefix":"fd00::/64"}]}]}`, false},
		{`{"ID":"5f0c2a8e-9b1d-4c3e-8f7a-0123456789ab"}`, `{"ID":"5F0C2A8E-9B1D-4C3E-8F7A-0123456789AB"}`, true},
		{`{"MacAddress":"00-15-5D-00-00-01"}`, `{"MacAddress":"00:15:5d:00:00:01"}`, true},
		{`{"Name":"a"}`, `{"Dns":{}}`, true},
		{`{"Name":"a"}`, `{"Dns":{"ServerList":["1.1.1.1"]}}`, false},
		{`{"Flags":8}`, `{"Flags":8}`, true},
		{`{"Flags":8}`, `{"Flags":0}`, false},
		{`{}`, `{"Flags":0,"Policies":[]}`, true},
		{`{"Name":"A"}`, `{"Name":"a"}`, false},
	} {
		if got := containsJSON(v(tc.have), v(tc.want)); got != tc.ok {
			t.Errorf("containsJSON(%s, %s) = %v", tc.have, tc.want, got)
		}
	}
}

// memoryDaemon is a fake daemon that keeps what it is sent, refusing a
// second object of the same name with a conflict as hostnetd does.
type memoryDaemon struct {
	mu   sync.Mutex
	next int
	objs map[string][]map[string]any // by route: networks, endpoints, namespaces
}

func (m *memoryDaemon) mux() *http.ServeMux {
	mux := http.NewServeMux()
	for _, route := range []string{"networks", "endpoints", "namespaces"} {
		kind := strings.TrimSuffix(route, "s")
		mux.HandleFunc("POST /"+route, func(w http.ResponseWriter, r *http.Request) {
			m.mu.Lock()
			defer m.mu.Unlock()
			var doc map[string]any
			json.NewDecoder(r.Body).Decode(&doc)
			for _, o := range m.objs[route] {
				if id, _ := doc["ID"].(string); id != "" && strings.EqualFold(id, o["ID"].(string)) {
					answerError(w, 409, api.CodeObjectAlreadyExists, fmt.Sprintf("a %s with ID %s already exists with other settings", kind, o["ID"]))
					return
				}
				if doc["Name"] != nil && doc["Name"] == o["Name"] {
					answerError(w, 409, api.CodeObjectAlreadyExists, fmt.Sprintf("a %s named %q already exists (ID %s)", kind, o["Name"], o["ID"]))
					return
				}
			}
			if doc["ID"] == nil {
				m.next++
				doc["ID"] = fmt.Sprintf("%08d-0000-4000-8000-000000000000", m.next)
			}
			doc["ID"] = strings.ToLower(doc["ID"].(string))
			switch kind {
			case "network":
				if doc["Type"] == nil {
					doc["Type"] = "NAT"
				}
			case "endpoint":
				for _, n := range m.objs["networks"] {
					if n["Name"] == doc["HostComputeNetwork"] {
						doc["HostComputeNetwork"] = n["ID"]
					}
				}
			}
			doc["SchemaVersion"] = map[string]any{"Major": 2, "Minor": 0}
			m.objs[route] = append(m.objs[route], doc)
			answer(w, 201, doc)
		})
		mux.HandleFunc("GET /"+route+"/{ref}", func(w http.ResponseWriter, r *http.Request) {
			m.mu.Lock()
			defer m.mu.Unlock()
			for _, o := range m.objs[route] {
				if strings.EqualFold(o["ID"].(string), r.PathValue("ref")) || o["Name"] == r.PathValue("ref") {
					answer(w, 200, o)
					return
				}
			}
			answerError(w, 404, api.CodeElementNotFound, fmt.Sprintf("%s %q not found", kind, r.PathValue("ref")))
		})
	}
	return mux
}

func TestApplyEndToEnd(t *testing.T) {
	m := &memoryDaemon{objs: map[string][]map[string]any{}}
	d := newFakeDaemon(t, m.mux())
	file := `[
	  {"Name":"web-net","Type":"L2Bridge","Ipams":[{"Type":"Static","Subnets":[{"IpAddressPrefix":"10.7.0.0/24"}]}],"SchemaVersion":{"Major":2,"Minor":0}},
	  {"Name":"web","HostComputeNetwork":"web-net","MacAddress":"00:15:5d:00:00:07"}
	]
	{"ID":"AAAAAAAA-0000-4000-8000-000000000000","Type":"HostDefault"}`
	out, errOut, code := runCLI(t, d.socket, file, "apply", "-f", "-")
	want := "network web-net created (00000001-0000-4000-8000-000000000000)\n" +
		"endpoint web created (00000002-0000-4000-8000-000000000000)\n" +
		"namespace AAAAAAAA-0000-4000-8000-000000000000 created (aaaaaaaa-0000-4000-8000-000000000000)\n"
	if code != 0 || out != want {
		t.Fatalf("first apply: code %d, stderr %q, stdout\n%s\nwant\n%s", code, errOut, out, want)
	}

	// Again: everything exists with the same settings.
	out, errOut, code = runCLI(t, d.socket, file, "apply", "-f", "-")
	want = "network web-net unchanged\nendpoint web unchanged\nnamespace AAAAAAAA-0000-4000-8000-000000000000 unchanged\n"
	if code != 0 || out != want {
		t.Fatalf("second apply: code %d, stderr %q, stdout\n%s\nwant\n%s", code, errOut, out, want)
	}

	// A different network under the same name is the daemon's conflict;
	// apply stops there.
	changed := `{"Name":"web-net","Type":"L2Bridge","Ipams":[{"Type":"Static","Subnets":[{"IpAddressPrefix":"10.8.0.0/24"}]}]}
	{"Name":"other","Type":"NAT"}`
	out, errOut, code = runCLI(t, d.socket, changed, "apply", "-f", "-")
	if code != 1 || out != "" {
		t.Errorf("changed apply: code %d, stdout %q", code, out)
	}
	if want := "Error: network web-net: a network named \"web-net\" already exists (ID 00000001-0000-4000-8000-000000000000)\n"; errOut != want {
		t.Errorf("changed apply: stderr %q, want %q", errOut, want)
	}
	if _, ok := d.find("GET", "/networks/other"); ok || len(m.objs["networks"]) != 1 {
		t.Error("apply went on after an error")
	}

	// An undetectable document stops the file before anything is sent.
	before := len(d.requests())
	_, errOut, code = runCLI(t, d.socket, `[{"Name":"n2","Type":"NAT"},{"Name":"mystery"}]`, "apply", "-f", "-")
	if code != 1 || !strings.HasPrefix(errOut, "Error: stdin: document 1: cannot tell whether it is a network") {
		t.Errorf("undetectable: code %d, %q", code, errOut)
	}
	if len(d.requests()) != before {
		t.Error("requests sent for a file with an undetectable document")
	}
}
