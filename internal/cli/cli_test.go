package cli

import (
	"bytes"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/hostnet/hostnet/api"
	"github.com/hostnet/hostnet/client"
)

// TestMain lets the test binary stand in for hostnet when `run` re-executes
// /proc/self/exe with the hidden __nsexec subcommand.
func TestMain(m *testing.M) {
	if len(os.Args) > 1 && os.Args[1] == nsexecCommand {
		os.Exit(Run(os.Args[1:], IO{In: os.Stdin, Out: os.Stdout, Err: os.Stderr}, client.New))
	}
	os.Exit(m.Run())
}

// request is a call the fake daemon received.
type request struct {
	Method, Path, Filter string
	Body                 []byte
}

// fakeDaemon serves a handler on a unix socket in a temporary directory
// and records the requests.
type fakeDaemon struct {
	socket string
	mu     sync.Mutex
	reqs   []request
}

func newFakeDaemon(t *testing.T, mux *http.ServeMux) *fakeDaemon {
	t.Helper()
	dir, err := os.MkdirTemp("", "hostnet-cli")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	d := &fakeDaemon{socket: filepath.Join(dir, "hostnet.sock")}
	l, err := net.Listen("unix", d.socket)
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		r.Body = io.NopCloser(bytes.NewReader(body))
		d.mu.Lock()
		d.reqs = append(d.reqs, request{Method: r.Method, Path: r.URL.Path, Filter: r.URL.Query().Get("filter"), Body: body})
		d.mu.Unlock()
		mux.ServeHTTP(w, r)
	})}
	go srv.Serve(l)
	t.Cleanup(func() { srv.Close() })
	return d
}

func (d *fakeDaemon) requests() []request {
	d.mu.Lock()
	defer d.mu.Unlock()
	return append([]request(nil), d.reqs...)
}

func (d *fakeDaemon) find(method, path string) (request, bool) {
	for _, r := range d.requests() {
		if r.Method == method && r.Path == path {
			return r, true
		}
	}
	return request{}, false
}

func answer(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	json.NewEncoder(w).Encode(v)
}

func answerError(w http.ResponseWriter, status int, code api.ErrorCode, msg string) {
	answer(w, status, api.ErrorResponse{Success: false, Error: msg, ErrorCode: code})
}

// runCLI runs hostnet against socket and returns its output and status.
func runCLI(t *testing.T, socket, stdin string, args ...string) (stdout, stderr string, code int) {
	t.Helper()
	var out, errOut bytes.Buffer
	code = Run(append([]string{"--socket", socket}, args...), IO{In: strings.NewReader(stdin), Out: &out, Err: &errOut}, client.New)
	return out.String(), errOut.String(), code
}

var testNetworks = []api.Network{
	{
		ID: "5f0c2a8e-9b1d-4c3e-8f7a-0123456789ab", Name: "nat", Type: api.NAT, BridgeName: "hn-5f0c2a8e",
		Ipams: []api.Ipam{{Type: "Static", Subnets: []api.Subnet{{IpAddressPrefix: "172.16.0.0/20"}}}},
	},
	{
		ID: "a1b2c3d4-0000-4000-8000-000000000001", Name: "dual-stack-network", Type: api.L2Bridge, BridgeName: "hn-a1b2c3d4",
		Ipams: []api.Ipam{{Type: "Static", Subnets: []api.Subnet{{IpAddressPrefix: "10.1.0.0/24"}, {IpAddressPrefix: "fd00::/64"}}}},
	},
}

func networksMux() *http.ServeMux {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /version", func(w http.ResponseWriter, r *http.Request) {
		answer(w, 200, api.VersionInfo{Version: api.APIVersion, Supported: api.Supported{NetworkTypes: []api.NetworkType{api.NAT, api.L2Bridge}}})
	})
	mux.HandleFunc("GET /networks", func(w http.ResponseWriter, r *http.Request) { answer(w, 200, testNetworks) })
	mux.HandleFunc("GET /networks/{ref}", func(w http.ResponseWriter, r *http.Request) {
		for _, n := range testNetworks {
			if n.ID == r.PathValue("ref") || n.Name == r.PathValue("ref") {
				answer(w, 200, n)
				return
			}
		}
		answerError(w, 404, api.CodeElementNotFound, `network "`+r.PathValue("ref")+`" not found`)
	})
	mux.HandleFunc("DELETE /networks/{ref}", func(w http.ResponseWriter, r *http.Request) {
		if r.PathValue("ref") == "busy" {
			answerError(w, 409, api.CodeNetworkHasEndpoints, `network "busy" still has 1 endpoint(s) (x): delete them first`)
			return
		}
		answer(w, 200, map[string]bool{"Success": true})
	})
	mux.HandleFunc("POST /networks", func(w http.ResponseWriter, r *http.Request) {
		var n api.Network
		json.NewDecoder(r.Body).Decode(&n)
		if n.Name == "taken" {
			answerError(w, 409, api.CodeObjectAlreadyExists, `a network named "taken" already exists (ID 5f0c2a8e-9b1d-4c3e-8f7a-0123456789ab)`)
			return
		}
		n.ID = "11111111-2222-4333-8444-555555555555"
		answer(w, 201, n)
	})
	return mux
}

func TestNetworkLsTable(t *testing.T) {
	d := newFakeDaemon(t, networksMux())
	out, errOut, code := runCLI(t, d.socket, "", "network", "ls")
	if code != 0 || errOut != "" {
		t.Fatalf("code %d, stderr %q", code, errOut)
	}
	want := "" +
		"NETWORK ID     NAME                 DRIVER     SUBNET                  BRIDGE\n" +
		"a1b2c3d4-000   dual-stack-network   L2Bridge   10.1.0.0/24,fd00::/64   hn-a1b2c3d4\n" +
		"5f0c2a8e-9b1   nat                  NAT        172.16.0.0/20           hn-5f0c2a8e\n"
	if out != want {
		t.Errorf("table:\n%s\nwant:\n%s", out, want)
	}

	out, _, code = runCLI(t, d.socket, "", "network", "list", "-q")
	if code != 0 || out != testNetworks[1].ID+"\n"+testNetworks[0].ID+"\n" {
		t.Errorf("ls -q: code %d, %q", code, out)
	}

	out, _, code = runCLI(t, d.socket, "", "--format", "json", "network", "ls")
	var docs []api.Network
	if code != 0 || json.Unmarshal([]byte(out), &docs) != nil || len(docs) != 2 {
		t.Errorf("ls --format json: code %d, %q", code, out)
	}
}

func TestNetworkLsFilterSentToDaemon(t *testing.T) {
	d := newFakeDaemon(t, networksMux())
	if _, errOut, code := runCLI(t, d.socket, "", "network", "ls", "-f", "name=nat", "--filter", "driver=l2bridge"); code != 0 {
		t.Fatalf("code %d: %s", code, errOut)
	}
	r, ok := d.find("GET", "/networks")
	if !ok {
		t.Fatal("no list request")
	}
	var f map[string]string
	if err := json.Unmarshal([]byte(r.Filter), &f); err != nil || f["Name"] != "nat" || f["Type"] != "L2Bridge" || len(f) != 2 {
		t.Errorf("filter sent %q", r.Filter)
	}
	_, errOut, code := runCLI(t, d.socket, "", "network", "ls", "-f", "color=red")
	if code != 1 || !strings.Contains(errOut, `invalid filter "color"`) {
		t.Errorf("bad filter: code %d, %q", code, errOut)
	}
}

func TestDaemonErrorIsPrinted(t *testing.T) {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /networks", func(w http.ResponseWriter, r *http.Request) {
		answerError(w, 400, api.CodeInvalidJSON, `invalid network filter: unknown key "Colour" (known: ID, Name, Type)`)
	})
	d := newFakeDaemon(t, mux)
	out, errOut, code := runCLI(t, d.socket, "", "network", "ls")
	if code != 1 || out != "" {
		t.Errorf("code %d, stdout %q", code, out)
	}
	if want := "Error: invalid network filter: unknown key \"Colour\" (known: ID, Name, Type)\n"; errOut != want {
		t.Errorf("stderr %q, want %q", errOut, want)
	}
}

func TestUnreachableDaemon(t *testing.T) {
	socket := filepath.Join(t.TempDir(), "absent.sock")
	for _, args := range [][]string{{"network", "ls"}, {"endpoint", "rm", "x"}, {"network", "inspect", "x"}} {
		out, errOut, code := runCLI(t, socket, "", args...)
		if code != 1 || out != "" && !strings.HasPrefix(out, "[") {
			t.Errorf("%v: code %d, stdout %q", args, code, out)
		}
		if want := "cannot reach hostnetd at " + socket + ": is it running?"; !strings.HasPrefix(errOut, want) || strings.Count(errOut, "\n") != 1 {
			t.Errorf("%v: stderr %q, want it to start with %q", args, errOut, want)
		}
	}
	// run fails before the command with docker's 125.
	if _, errOut, code := runCLI(t, socket, "", "run", "true"); code != exitRunFailed || !strings.HasPrefix(errOut, "cannot reach hostnetd") {
		t.Errorf("run: code %d, %q", code, errOut)
	}
}

func TestEnvSocket(t *testing.T) {
	d := newFakeDaemon(t, networksMux())
	t.Setenv(SocketEnv, d.socket)
	var out bytes.Buffer
	if code := Run([]string{"network", "ls", "-q"}, IO{Out: &out}, client.New); code != 0 || !strings.Contains(out.String(), testNetworks[0].ID) {
		t.Errorf("code %d, %q", code, out.String())
	}
}

func TestNetworkRmGoesOnAfterFailure(t *testing.T) {
	d := newFakeDaemon(t, networksMux())
	out, errOut, code := runCLI(t, d.socket, "", "network", "rm", "a", "busy", "b")
	if code != 1 {
		t.Errorf("code %d", code)
	}
	if out != "a\nb\n" {
		t.Errorf("stdout %q", out)
	}
	if want := "Error: network \"busy\" still has 1 endpoint(s) (x): delete them first\n"; errOut != want {
		t.Errorf("stderr %q", errOut)
	}
}

func TestNetworkInspect(t *testing.T) {
	d := newFakeDaemon(t, networksMux())
	out, errOut, code := runCLI(t, d.socket, "", "network", "inspect", "nat", "missing", "5f0c2a8e")
	if code != 1 || errOut != "Error: network \"missing\" not found\n" {
		t.Errorf("code %d, stderr %q", code, errOut)
	}
	var docs []api.Network
	if err := json.Unmarshal([]byte(out), &docs); err != nil || len(docs) != 2 || docs[1].ID != testNetworks[0].ID {
		t.Fatalf("stdout %q: %v", out, err)
	}
	if !strings.Contains(out, "\n    {\n        \"ID\": ") {
		t.Errorf("not indented with 4 spaces:\n%s", out)
	}
}

func TestNetworkCreateSendsDocument(t *testing.T) {
	d := newFakeDaemon(t, networksMux())
	out, errOut, code := runCLI(t, d.socket, "", "network", "create", "-d", "L2BRIDGE",
		"--subnet", "10.5.0.0/24", "--gateway", "10.5.0.254", "--ip-range", "10.5.0.128/25",
		"-o", "com.docker.network.windowsshim.vlanid=7", "-o", "nonpersistent=true", "br0")
	if code != 0 || errOut != "" || out != "11111111-2222-4333-8444-555555555555\n" {
		t.Fatalf("code %d, stdout %q, stderr %q", code, out, errOut)
	}
	r, _ := d.find("POST", "/networks")
	want := `{"Name":"br0","Type":"L2Bridge","Ipams":[{"Type":"Static","Subnets":[{"IpAddressPrefix":"10.5.0.0/24",` +
		`"Policies":[{"Type":"VLAN","Settings":{"IsolationId":7}}],"Routes":[{"NextHop":"10.5.0.254","DestinationPrefix":"0.0.0.0/0"}],` +
		`"IpRange":"10.5.0.128/25"}]}],"Flags":8,"SchemaVersion":{"Major":2,"Minor":0}}`
	if string(r.Body) != want {
		t.Errorf("sent\n%s\nwant\n%s", r.Body, want)
	}

	_, errOut, code = runCLI(t, d.socket, "", "network", "create", "taken")
	if code != 1 || !strings.HasPrefix(errOut, `Error: a network named "taken" already exists`) {
		t.Errorf("conflict: code %d, %q", code, errOut)
	}
}

func TestUsageErrors(t *testing.T) {
	socket := filepath.Join(t.TempDir(), "unused.sock")
	for _, tc := range []struct {
		args []string
		want string
		code int
	}{
		{[]string{"network", "rm"}, "Error: \"hostnet network rm\" requires at least 1 argument\nSee 'hostnet network rm --help'.\n", 1},
		{[]string{"network", "ls", "--bogus"}, "Error: unknown flag: --bogus\nSee 'hostnet network ls --help'.\n", 1},
		{[]string{"network", "ls", "-o", "xml"}, "Error: invalid --output \"xml\" (want table, wide, json, yaml)\nSee 'hostnet network ls --help'.\n", 1},
		{[]string{"network", "ls", "--format", "{{.Name"}, "Error: invalid --format template: template: format:1: unclosed action\nSee 'hostnet network ls --help'.\n", 1},
		{[]string{"network", "ls", "-o", "table", "--format", "{{.Name}}"}, "Error: give -o/--output or --format, not both\nSee 'hostnet network ls --help'.\n", 1},
		{[]string{"run", "--bogus", "true"}, "Error: unknown flag: --bogus\nSee 'hostnet run --help'.\n", 125},
		{[]string{"network", "create", "-o", "com.docker.network.driver.mtu=1400", "n"}, "Error: option com.docker.network.driver.mtu is not supported yet\n", 1},
	} {
		_, errOut, code := runCLI(t, socket, "", tc.args...)
		if code != tc.code || errOut != tc.want {
			t.Errorf("%v: code %d, stderr %q; want %d, %q", tc.args, code, errOut, tc.code, tc.want)
		}
	}
}

func TestEndpointNamespaceAndPolicyCommands(t *testing.T) {
	mux := networksMux()
	eps := []api.Endpoint{
		{ID: "0a0b0c0d-1111-4222-8333-444444444444", Name: "web", HostComputeNetwork: testNetworks[0].ID,
			IpConfigurations: []api.IPConfig{{IpAddress: "172.16.0.2", PrefixLength: 20}}, MacAddress: "00-15-5D-00-00-02",
			HostComputeNamespace: "99999999-8888-4777-8666-555555555555",
			Policies:             []api.Policy{{Type: api.PortMapping, Settings: json.RawMessage(`{ "Protocol": 6, "InternalPort": 80 }`)}}},
	}
	mux.HandleFunc("GET /endpoints", func(w http.ResponseWriter, r *http.Request) { answer(w, 200, eps) })
	mux.HandleFunc("GET /endpoints/{ref}", func(w http.ResponseWriter, r *http.Request) { answer(w, 200, eps[0]) })
	mux.HandleFunc("PATCH /endpoints/{ref}", func(w http.ResponseWriter, r *http.Request) { answer(w, 200, eps[0]) })
	mux.HandleFunc("GET /namespaces", func(w http.ResponseWriter, r *http.Request) {
		answer(w, 200, []api.Namespace{{ID: "99999999-8888-4777-8666-555555555555", Name: "job", NetNamespacePath: "/run/hostnet/netns/9999", Managed: true,
			Resources: []api.NamespaceResource{{Type: api.NamespaceResourceEndpoint, Data: json.RawMessage(`{"ID":"0a0b0c0d-1111-4222-8333-444444444444"}`)}}}})
	})
	mux.HandleFunc("PATCH /namespaces/{ref}", func(w http.ResponseWriter, r *http.Request) { answer(w, 200, api.Namespace{ID: r.PathValue("ref")}) })
	d := newFakeDaemon(t, mux)

	out, errOut, code := runCLI(t, d.socket, "", "endpoint", "ls", "--network", "nat")
	want := "" +
		"ENDPOINT ID    NAME   NETWORK   IP ADDRESSES    MAC                 NAMESPACE\n" +
		"0a0b0c0d-111   web    nat       172.16.0.2/20   00-15-5D-00-00-02   99999999-888\n"
	if code != 0 || out != want {
		t.Errorf("endpoint ls: code %d, stderr %q, stdout\n%s\nwant\n%s", code, errOut, out, want)
	}
	if r, _ := d.find("GET", "/endpoints"); r.Filter != `{"VirtualNetwork":"`+testNetworks[0].ID+`"}` {
		t.Errorf("endpoint ls filter %q", r.Filter)
	}

	out, _, code = runCLI(t, d.socket, "", "namespace", "ls")
	want = "" +
		"NAMESPACE ID   NAME   PATH                      MANAGED   ENDPOINTS\n" +
		"99999999-888   job    /run/hostnet/netns/9999   true      1\n"
	if code != 0 || out != want {
		t.Errorf("namespace ls: code %d, stdout\n%s\nwant\n%s", code, out, want)
	}

	out, _, code = runCLI(t, d.socket, "", "endpoint", "policy", "ls", "web")
	if want := "PUBLISHED\n0.0.0.0:80->80/tcp\n"; code != 0 || out != want {
		t.Errorf("policy ls: code %d, %q", code, out)
	}
	_, errOut, code = runCLI(t, d.socket, `[{"Type":"OutBoundNAT","Settings":{"Exceptions":["10.0.0.0/8"]}}]`, "endpoint", "policy", "add", "web", "-f", "-")
	r, _ := d.find("PATCH", "/endpoints/web")
	if want := `{"ResourceType":"Policy","RequestType":"Add","Settings":{"Policies":[{"Type":"OutBoundNAT","Settings":{"Exceptions":["10.0.0.0/8"]}}]}}`; code != 0 || string(r.Body) != want {
		t.Errorf("policy add: code %d, stderr %q, sent %s", code, errOut, r.Body)
	}

	if _, errOut, code := runCLI(t, d.socket, "", "namespace", "attach", "job", "web"); code != 0 {
		t.Fatalf("attach: code %d, %q", code, errOut)
	}
	r, _ = d.find("PATCH", "/namespaces/job")
	if want := `{"ResourceType":"Endpoint","RequestType":"Add","Settings":{"EndpointId":"web"}}`; string(r.Body) != want {
		t.Errorf("attach sent %s", r.Body)
	}
}
