package cli

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"os/exec"
	"reflect"
	"strings"
	"testing"

	"github.com/hostnet/hostnet/api"
	"github.com/hostnet/hostnet/client"
)

func TestWriteTableAligns(t *testing.T) {
	var b bytes.Buffer
	if err := writeTable(&b, []string{"A", "LONGER HEADER", "C"}, [][]string{{"xxxxxx", "", "z"}, {"y", "v", ""}}); err != nil {
		t.Fatal(err)
	}
	want := "" +
		"A        LONGER HEADER   C\n" +
		"xxxxxx                   z\n" +
		"y        v\n"
	if b.String() != want {
		t.Errorf("table\n%q\nwant\n%q", b.String(), want)
	}
}

func TestEndpointRows(t *testing.T) {
	eps := []api.Endpoint{
		{ID: "0a0b0c0d-1111-4222-8333-444444444444", Name: "web", HostComputeNetwork: "5F0C2A8E-9B1D-4C3E-8F7A-0123456789AB",
			IpConfigurations: []api.IPConfig{{IpAddress: "172.16.0.2", PrefixLength: 20}, {IpAddress: "fd00::2", PrefixLength: 64}},
			MacAddress:       "00-15-5D-00-00-02", HostComputeNamespace: "99999999-8888-4777-8666-555555555555"},
		{ID: "0e0e0e0e-1111-4222-8333-444444444444", HostComputeNetwork: "77777777-0000-4000-8000-000000000000"},
	}
	names := map[string]string{"5f0c2a8e-9b1d-4c3e-8f7a-0123456789ab": "nat"}
	want := [][]string{
		{"0a0b0c0d-111", "web", "nat", "172.16.0.2/20,fd00::2/64", "00-15-5D-00-00-02", "99999999-888"},
		{"0e0e0e0e-111", "", "77777777-000", "", "", ""},
	}
	if got := endpointRows(eps, names, false, false); !reflect.DeepEqual(got, want) {
		t.Errorf("rows %q", got)
	}
	if got := endpointRows(eps, names, true, false); got[0][0] != eps[0].ID || got[0][5] != eps[0].HostComputeNamespace {
		t.Errorf("--no-trunc rows %q", got)
	}
}

func TestRouteRows(t *testing.T) {
	routes := []api.HostComputeRoute{{ID: "6f9c2a4e-3b8d-4c1e-9a57-2d0e8b1f4c33",
		HostComputeEndpoints: []string{"0A0B0C0D-1111-4222-8333-444444444444", "0e0e0e0e-1111-4222-8333-444444444444"},
		Setting:              []api.SDNRouteSettings{{DestinationPrefix: "192.0.2.0/24", NextHop: "10.0.0.1"}, {DestinationPrefix: "198.51.100.0/24"}}},
		{ID: "7a7a7a7a-0000-4000-8000-000000000000"}}
	names := map[string]string{"0a0b0c0d-1111-4222-8333-444444444444": "web"}
	want := [][]string{
		{"6f9c2a4e-3b8", "web,0e0e0e0e-111", "192.0.2.0/24 via 10.0.0.1, 198.51.100.0/24"},
		{"7a7a7a7a-000", "-", ""},
	}
	if got := routeRows(routes, names, false, false); !reflect.DeepEqual(got, want) {
		t.Errorf("rows %q", got)
	}
	if got := routeRows(routes, names, true, false); got[0][0] != routes[0].ID || got[0][1] != "web,0e0e0e0e-1111-4222-8333-444444444444" {
		t.Errorf("--no-trunc rows %q", got)
	}
}

func TestNamespaceRows(t *testing.T) {
	ep, _ := json.Marshal(api.NamespaceResourceID{ID: "e"})
	nss := []api.Namespace{{ID: "12345678-aaaa-4bbb-8ccc-dddddddddddd", Name: "web", NetNamespacePath: "/run/hostnet/netns/x", Managed: true,
		Resources: []api.NamespaceResource{{Type: api.NamespaceResourceEndpoint, Data: ep}, {Type: api.NamespaceResourceContainer, Data: ep}, {Type: api.NamespaceResourceEndpoint, Data: ep}}}}
	want := [][]string{{"12345678-aaa", "web", "/run/hostnet/netns/x", "true", "2"}}
	if got := namespaceRows(nss, false, false); !reflect.DeepEqual(got, want) {
		t.Errorf("rows %q", got)
	}
}

func TestNetworkRowsDefaultType(t *testing.T) {
	got := networkRows([]api.Network{{ID: "abc", Name: "n"}}, false, false)
	if want := [][]string{{"abc", "n", "NAT", "", ""}}; !reflect.DeepEqual(got, want) {
		t.Errorf("rows %q", got)
	}
}

func TestPolicies(t *testing.T) {
	pols, err := parsePolicies([]byte(` {"Type":"PortMapping","Settings":{"Protocol":6, "InternalPort":80,"ExternalPort":8080}} `))
	if err != nil || len(pols) != 1 || pols[0].Type != api.PortMapping {
		t.Fatalf("%v, %v", pols, err)
	}
	pols, err = parsePolicies([]byte(`[{"Type":"OutBoundNAT"},{"Type":"ACL","Settings":{"Action":"Block","Direction":"In"}}]`))
	if err != nil || len(pols) != 2 {
		t.Fatalf("%v, %v", pols, err)
	}
	req, err := policyRequest(api.RequestRemove, pols)
	if err != nil {
		t.Fatal(err)
	}
	want := `{"ResourceType":"Policy","RequestType":"Remove","Settings":{"Policies":[{"Type":"OutBoundNAT"},{"Type":"ACL","Settings":{"Action":"Block","Direction":"In"}}]}}`
	if got := mustJSON(t, req); got != want {
		t.Errorf("request\n%s\nwant\n%s", got, want)
	}
	wantRows := [][]string{{"OutBoundNAT", "{}"}, {"ACL", `{"Action":"Block","Direction":"In"}`}}
	if got := policyRows(pols); !reflect.DeepEqual(got, wantRows) {
		t.Errorf("rows %q", got)
	}
	for _, bad := range []string{``, `[]`, `{"Settings":{}}`, `{"Type":"ACL","Setings":{}}`, `{"Type":"ACL"} {"Type":"QOS"}`, `nope`} {
		if _, err := parsePolicies([]byte(bad)); err == nil {
			t.Errorf("%q accepted", bad)
		}
	}
}

func TestExitCodeAndMessage(t *testing.T) {
	unreachable := &client.UnreachableError{Socket: "/run/x.sock", Err: errors.New("connect: no such file or directory")}
	daemon := &api.Error{Code: api.CodeElementNotFound, Status: 404, Message: `network "x" not found`}
	for _, tc := range []struct {
		err  error
		code int
		msg  string
	}{
		{nil, 0, ""},
		{errors.New("boom"), 1, "Error: boom"},
		{daemon, 1, `Error: network "x" not found`},
		{fmt.Errorf("wrapped: %w", unreachable), 1, "cannot reach hostnetd at /run/x.sock: is it running? (connect: no such file or directory)"},
		{&ExitError{Code: 3}, 3, ""},
		{&ExitError{Code: 125, Err: daemon}, 125, `Error: network "x" not found`},
		{&ExitError{Code: 125, Err: unreachable}, 125, "cannot reach hostnetd at /run/x.sock: is it running? (connect: no such file or directory)"},
	} {
		if got := ExitCode(tc.err); got != tc.code {
			t.Errorf("ExitCode(%v) = %d, want %d", tc.err, got, tc.code)
		}
		if got := ErrorMessage(tc.err); got != tc.msg {
			t.Errorf("ErrorMessage(%v) = %q, want %q", tc.err, got, tc.msg)
		}
	}
}

func TestChildExitStatus(t *testing.T) {
	for _, tc := range []struct {
		script string
		want   int
	}{
		{"exit 0", 0},
		{"exit 42", 42},
		{"kill -TERM $$", 128 + 15},
		{"kill -KILL $$", 128 + 9},
	} {
		c := exec.Command("/bin/sh", "-c", tc.script)
		_ = c.Run()
		if got := exitStatus(c.ProcessState); got != tc.want {
			t.Errorf("%q: status %d, want %d", tc.script, got, tc.want)
		}
	}
	if exitStatus(nil) != exitRunFailed {
		t.Error("no process state should be a hostnet failure")
	}
}

func TestExecFailureCode(t *testing.T) {
	if _, err := exec.LookPath("surely-no-such-command-here"); execFailureCode(err) != exitNotFound {
		t.Errorf("not found: %v -> %d", err, execFailureCode(err))
	}
	if err := exec.Command("/etc/hostname").Run(); err != nil && execFailureCode(err) != exitCannotExecute {
		t.Errorf("not executable: %v -> %d", err, execFailureCode(err))
	}
}

func TestNsexecArgsAndResolvConf(t *testing.T) {
	got := nsexecArgs("/run/netns/x", "/etc/netns/x/resolv.conf", []string{"sh", "-c", "echo --netns"})
	want := []string{"__nsexec", "--netns", "/run/netns/x", "--resolv-conf", "/etc/netns/x/resolv.conf", "--", "sh", "-c", "echo --netns"}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("args %q", got)
	}
	if got := nsexecArgs("/p", "", []string{"true"}); strings.Join(got, " ") != "__nsexec --netns /p -- true" {
		t.Errorf("args %q", got)
	}

	var ns api.Namespace
	if err := json.Unmarshal([]byte(`{"ID":"x","NetNamespacePath":"/p","ResolvConfPath":"/etc/netns/hn-x/resolv.conf"}`), &ns); err != nil {
		t.Fatal(err)
	}
	if p := resolvConfPath(&ns); p != "/etc/netns/hn-x/resolv.conf" {
		t.Errorf("resolv.conf %q", p)
	}
	if p := resolvConfPath(&api.Namespace{}); p != "" {
		t.Errorf("absent resolv.conf %q", p)
	}
}

func TestIDPrefixes(t *testing.T) {
	ids := []string{"5f0c2a8e-9b1d-4c3e-8f7a-0123456789ab", "5f0c9999-0000-4000-8000-000000000000"}
	if m := matchPrefix(ids, "5F0C2A8E-9B1"); len(m) != 1 || m[0] != ids[0] {
		t.Errorf("prefix with dash: %v", m)
	}
	if m := matchPrefix(ids, "5f0c2a8e9b1d"); len(m) != 1 {
		t.Errorf("prefix without dashes: %v", m)
	}
	if m := matchPrefix(ids, "5f0c"); len(m) != 2 {
		t.Errorf("ambiguous: %v", m)
	}
	for ref, want := range map[string]bool{"5f0c2a8e-9b1": true, "abc": true, "nat": false, "": false, ids[0]: false, "my-net": false} {
		if looksLikeIDPrefix(ref) != want {
			t.Errorf("looksLikeIDPrefix(%q) = %v", ref, !want)
		}
	}
}
