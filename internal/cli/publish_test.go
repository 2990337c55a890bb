package cli

import (
	"encoding/json"
	"net/http"
	"reflect"
	"strings"
	"testing"

	"github.com/hostnet/hostnet/api"
)

func TestParsePublish(t *testing.T) {
	type pm = api.PortMappingSettings
	for _, tc := range []struct {
		in   string
		want []pm
	}{
		{"80", []pm{{Protocol: 6, InternalPort: 80, ExternalPort: 80}}},
		{"80/tcp", []pm{{Protocol: 6, InternalPort: 80, ExternalPort: 80}}},
		{"53/udp", []pm{{Protocol: 17, InternalPort: 53, ExternalPort: 53}}},
		{"53/UDP", []pm{{Protocol: 17, InternalPort: 53, ExternalPort: 53}}},
		{"8080:80", []pm{{Protocol: 6, InternalPort: 80, ExternalPort: 8080}}},
		{" 8080:80/udp ", []pm{{Protocol: 17, InternalPort: 80, ExternalPort: 8080}}},
		{"127.0.0.1:9000:90/udp", []pm{{Protocol: 17, InternalPort: 90, ExternalPort: 9000, VIP: "127.0.0.1"}}},
		{"0.0.0.0:8080:80", []pm{{Protocol: 6, InternalPort: 80, ExternalPort: 8080, VIP: "0.0.0.0"}}},
		{":8080:80", []pm{{Protocol: 6, InternalPort: 80, ExternalPort: 8080}}},
		{"[::1]:8080:80", []pm{{Protocol: 6, InternalPort: 80, ExternalPort: 8080, VIP: "::1", Flags: 2}}},
		{"[::]:8443:443/tcp", []pm{{Protocol: 6, InternalPort: 443, ExternalPort: 8443, VIP: "::", Flags: 2}}},
		{"[2001:DB8::1]:53:53/udp", []pm{{Protocol: 17, InternalPort: 53, ExternalPort: 53, VIP: "2001:db8::1", Flags: 2}}},
		// An IPv4-mapped address is an IPv4 one.
		{"[::ffff:10.0.0.1]:80:80", []pm{{Protocol: 6, InternalPort: 80, ExternalPort: 80, VIP: "10.0.0.1"}}},
		{"[10.0.0.1]:80:80", []pm{{Protocol: 6, InternalPort: 80, ExternalPort: 80, VIP: "10.0.0.1"}}},
		{"65535", []pm{{Protocol: 6, InternalPort: 65535, ExternalPort: 65535}}},
		{"8000-8002:9000-9002", []pm{
			{Protocol: 6, InternalPort: 9000, ExternalPort: 8000},
			{Protocol: 6, InternalPort: 9001, ExternalPort: 8001},
			{Protocol: 6, InternalPort: 9002, ExternalPort: 8002}}},
		{"7000-7001/udp", []pm{{Protocol: 17, InternalPort: 7000, ExternalPort: 7000}, {Protocol: 17, InternalPort: 7001, ExternalPort: 7001}}},
		{"10.0.0.1:80-81:90-91", []pm{
			{Protocol: 6, InternalPort: 90, ExternalPort: 80, VIP: "10.0.0.1"},
			{Protocol: 6, InternalPort: 91, ExternalPort: 81, VIP: "10.0.0.1"}}},
		{"80-80:90", []pm{{Protocol: 6, InternalPort: 90, ExternalPort: 80}}},
	} {
		got, err := parsePublish(tc.in)
		if err != nil || !reflect.DeepEqual(got, tc.want) {
			t.Errorf("parsePublish(%q) = %+v, %v; want %+v", tc.in, got, err, tc.want)
		}
	}
}

func TestParsePublishErrors(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"", "the container port is empty"},
		{"x", `container port "x" is not a port`},
		{"80:x", `container port "x" is not a port`},
		{"x:80", `host port "x" is not a port`},
		{"0", `container port "0" is not a port`},
		{"65536", `container port "65536" is not a port`},
		{"-80", `container port "-80" is not a port`},
		{"80-", `container port "80-" is not a port`},
		{"90-80", `container port range "90-80" ends before it starts`},
		{"80/sctp", `protocol "sctp" is not tcp or udp`},
		{"80/", "the protocol after / is empty"},
		{"80/tcp/udp", `protocol "tcp/udp" is not tcp or udp`},
		{":80", "the host port is empty"},
		{"127.0.0.1::80", "the host port is empty"},
		{"[::1]::80", "the host port is empty"},
		{"::80", "the host port is empty"},
		{"localhost:80:80", `invalid host address: "localhost" is not an IP address`},
		{"300.0.0.1:80:80", "is not an IP address"},
		{"[fe80::1%eth0]:80:80", "is not an IP address"},
		{"::1:8080:80", "an IPv6 host address goes in brackets"},
		{"1:2:3:4", "too many colons"},
		{"[::1:8080:80", "no closing bracket"},
		{"[]:8080:80", "the host address in brackets is empty"},
		{"[::1]8080:80", "after a bracketed host address"},
		{"[::1]:80", "after a bracketed host address"},
		{"[::1]:1:2:3", "after a bracketed host address"},
		{"8000-8010:80", "host ports 8000-8010 and container ports 80 are not ranges of the same length"},
		{"80:8000-8001", "host ports 80 and container ports 8000-8001 are not ranges of the same length"},
		{"1-3:4-5", "are not ranges of the same length"},
	} {
		got, err := parsePublish(tc.in)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("parsePublish(%q) = %+v, %v; want an error with %q", tc.in, got, err, tc.want)
		}
	}
}

func TestPublishPolicies(t *testing.T) {
	pols, err := publishPolicies([]string{"8080:80", "127.0.0.1:9000:90/udp", "[::1]:8443:443", "53/udp"})
	if err != nil {
		t.Fatal(err)
	}
	want := `[{"Type":"PortMapping","Settings":{"Protocol":6,"InternalPort":80,"ExternalPort":8080}},` +
		`{"Type":"PortMapping","Settings":{"Protocol":17,"InternalPort":90,"ExternalPort":9000,"VIP":"127.0.0.1"}},` +
		`{"Type":"PortMapping","Settings":{"Protocol":6,"InternalPort":443,"ExternalPort":8443,"VIP":"::1","Flags":2}},` +
		`{"Type":"PortMapping","Settings":{"Protocol":17,"InternalPort":53,"ExternalPort":53}}]`
	if got := mustJSON(t, pols); got != want {
		t.Errorf("policies\n%s\nwant\n%s", got, want)
	}
	// What the daemon makes of them is what was asked for.
	wantShown := []string{"0.0.0.0:8080->80/tcp", "127.0.0.1:9000->90/udp", "[::1]:8443->443/tcp", "0.0.0.0:53->53/udp"}
	for i, p := range pols {
		m, err := api.ParsePortMapping("endpoint", i, p)
		if err != nil {
			t.Errorf("policy %d refused: %v", i, err)
			continue
		}
		if got := publishedString(m); got != wantShown[i] {
			t.Errorf("policy %d shown as %s, want %s", i, got, wantShown[i])
		}
	}

	if pols, err := publishPolicies(nil); err != nil || pols != nil {
		t.Errorf("no --publish: %v, %v", pols, err)
	}
	for _, tc := range []struct {
		in   []string
		want string
	}{
		{[]string{"80:x"}, `invalid --publish "80:x": container port "x" is not a port (1-65535) or a range of ports (low-high)`},
		{[]string{"80", "8080:80", "80:81"}, `invalid --publish "80:81": host port 0.0.0.0:80/tcp is already published by --publish "80"`},
		{[]string{"0.0.0.0:80:80", "80"}, `invalid --publish "80": host port 0.0.0.0:80/tcp is already published by --publish "0.0.0.0:80:80"`},
		{[]string{"[::]:80:80", "[::]:79-81:79-81"}, `host port [::]:80/tcp is already published by --publish "[::]:80:80"`},
	} {
		if _, err := publishPolicies(tc.in); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%q: %v, want %q", tc.in, err, tc.want)
		}
	}
	// The same port of each protocol, family or address is no conflict.
	if _, err := publishPolicies([]string{"80", "80/udp", "[::]:80:80", "127.0.0.1:80:80", "[::1]:80:80"}); err != nil {
		t.Errorf("distinct host ports refused: %v", err)
	}
}

func TestBuildEndpointPublish(t *testing.T) {
	e, err := buildEndpoint(&endpointOptions{network: "nat", publish: []string{"8080:80", "[::]:8443:443"}})
	if err != nil {
		t.Fatal(err)
	}
	want := `[{"Type":"PortMapping","Settings":{"Protocol":6,"InternalPort":80,"ExternalPort":8080}},` +
		`{"Type":"PortMapping","Settings":{"Protocol":6,"InternalPort":443,"ExternalPort":8443,"VIP":"::","Flags":2}}]`
	if got := mustJSON(t, e.Policies); got != want {
		t.Errorf("policies\n%s\nwant\n%s", got, want)
	}
	if _, err := buildEndpoint(&endpointOptions{network: "nat", publish: []string{"80:x"}}); err == nil || !strings.HasPrefix(err.Error(), `invalid --publish "80:x": `) {
		t.Errorf("bad --publish: %v", err)
	}
}

func TestEndpointCreatePublishFlag(t *testing.T) {
	mux := networksMux()
	mux.HandleFunc("POST /endpoints", func(w http.ResponseWriter, r *http.Request) {
		var e api.Endpoint
		json.NewDecoder(r.Body).Decode(&e)
		e.ID = "0a0b0c0d-1111-4222-8333-444444444444"
		answer(w, 201, e)
	})
	d := newFakeDaemon(t, mux)
	_, errOut, code := runCLI(t, d.socket, "", "endpoint", "create", "--network", "nat", "-p", "8080:80", "--publish", "127.0.0.1:53:53/udp", "web")
	if code != 0 {
		t.Fatalf("code %d, stderr %q", code, errOut)
	}
	r, _ := d.find("POST", "/endpoints")
	if want := `"Policies":[{"Type":"PortMapping","Settings":{"Protocol":6,"InternalPort":80,"ExternalPort":8080}},` +
		`{"Type":"PortMapping","Settings":{"Protocol":17,"InternalPort":53,"ExternalPort":53,"VIP":"127.0.0.1"}}]`; !strings.Contains(string(r.Body), want) {
		t.Errorf("sent %s", r.Body)
	}
	_, errOut, code = runCLI(t, d.socket, "", "endpoint", "create", "--network", "nat", "-p", "80:x")
	if code != 1 || errOut != "Error: invalid --publish \"80:x\": container port \"x\" is not a port (1-65535) or a range of ports (low-high)\n" {
		t.Errorf("bad -p: code %d, stderr %q", code, errOut)
	}
	// run checks --publish before it creates anything, failing with 125.
	n := len(d.requests())
	if _, errOut, code := runCLI(t, d.socket, "", "run", "-p", "1-2:3", "true"); code != exitRunFailed || !strings.Contains(errOut, `invalid --publish "1-2:3"`) {
		t.Errorf("run -p: code %d, stderr %q", code, errOut)
	}
	if len(d.requests()) != n {
		t.Error("run sent requests despite a bad --publish")
	}
}
