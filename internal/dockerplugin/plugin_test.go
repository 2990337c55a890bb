package dockerplugin

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hostnet/hostnet/api"
)

// The requests below are what dockerd 20.10 sends (captured from
// TestDocker's dockerd, IDs shortened where they do not matter).
const (
	dockerNetID = "5b6c3bd7e5b4cf3c8e0e2a3ba2bd0b1ecdd0c3a0e6f1d3ab2f5f0d8a91b2c3d4"
	dockerEPID  = "f580eb334ba6063010e296d8eb4d91f70eb26c8f4e5b8faa1701404ef04090b4"
)

var createNetworkJSON = `{"NetworkID":"` + dockerNetID + `","Options":{"com.docker.network.enable_ipv6":false,` +
	`"com.docker.network.generic":{"com.docker.network.windowsshim.networkname":"dnet","com.docker.network.windowsshim.dnsservers":"10.0.0.53"}},` +
	`"IPv4Data":[{"AddressSpace":"hostnet-local","Gateway":"10.89.0.1/24","Pool":"10.89.0.0/24"}],"IPv6Data":[]}`

var createEndpointJSON = `{"NetworkID":"` + dockerNetID + `","EndpointID":"` + dockerEPID + `",` +
	`"Interface":{"Address":"10.89.0.2/24","AddressIPv6":"","MacAddress":""},` +
	`"Options":{"com.docker.network.endpoint.exposedports":[{"Proto":6,"Port":80}],` +
	`"com.docker.network.portmap":[{"Proto":6,"IP":"","Port":80,"HostIP":"","HostPort":18080,"HostPortEnd":18080},` +
	`{"Proto":17,"IP":"","Port":53,"HostIP":"127.0.0.1","HostPort":5353,"HostPortEnd":5353}]}}`

type rig struct {
	t   *testing.T
	f   *fakeDaemon
	p   *Plugin
	srv *httptest.Server
	// netns says which paths are network namespaces for the test.
	netns atomic.Value // map[string]bool
}

func newRig(t *testing.T) *rig {
	r := &rig{t: t, f: newFake()}
	r.netns.Store(map[string]bool{})
	r.p = &Plugin{D: r.f, Poll: time.Millisecond, IsNetNS: func(path string) bool { return r.netns.Load().(map[string]bool)[path] }}
	r.srv = httptest.NewServer(r.p.Handler())
	t.Cleanup(func() { r.srv.Close(); r.p.Close() })
	return r
}

func (r *rig) mount(path string) { r.netns.Store(map[string]bool{path: true}) }

// call posts body to the method and decodes the answer into out (when not
// nil); it returns the HTTP status and the raw answer.
func (r *rig) call(method, body string, out any) (int, string) {
	r.t.Helper()
	resp, err := http.Post(r.srv.URL+"/"+method, contentType, strings.NewReader(body))
	if err != nil {
		r.t.Fatal(err)
	}
	defer resp.Body.Close()
	var raw json.RawMessage
	if err := json.NewDecoder(resp.Body).Decode(&raw); err != nil {
		r.t.Fatalf("%s: the answer is not JSON: %v", method, err)
	}
	if out != nil {
		if err := json.Unmarshal(raw, out); err != nil {
			r.t.Fatal(err)
		}
	}
	return resp.StatusCode, string(raw)
}

// ok calls a method that must succeed.
func (r *rig) ok(method, body string, out any) string {
	r.t.Helper()
	status, raw := r.call(method, body, out)
	if status != 200 || strings.Contains(raw, `"Err"`) {
		r.t.Fatalf("%s: %d %s", method, status, raw)
	}
	return raw
}

// fails calls a method that must fail with an error containing want, as
// Docker's plugin client reads it (Err of a non-200 answer).
func (r *rig) fails(method, body, want string) {
	r.t.Helper()
	var e struct{ Err string }
	status, raw := r.call(method, body, &e)
	if status == 200 || status == 404 || !strings.Contains(e.Err, want) {
		r.t.Errorf("%s: %d %s, want an error with %q", method, status, raw, want)
	}
}

func TestActivateAndCapabilities(t *testing.T) {
	r := newRig(t)
	if raw := r.ok("Plugin.Activate", "", nil); raw != `{"Implements":["NetworkDriver","IpamDriver"]}` {
		t.Errorf("Activate: %s", raw)
	}
	if raw := r.ok("NetworkDriver.GetCapabilities", "null", nil); raw != `{"Scope":"local","ConnectivityScope":"local"}` {
		t.Errorf("GetCapabilities: %s", raw)
	}
	r.ok("NetworkDriver.DiscoverNew", `{"DiscoveryType":1,"DiscoveryData":{"Address":"10.0.0.1","self":true}}`, nil)
	r.ok("NetworkDriver.DiscoverDelete", `{"DiscoveryType":1,"DiscoveryData":{"Address":"10.0.0.1","self":true}}`, nil)
	if raw := r.ok("NetworkDriver.AllocateNetwork", `{"NetworkID":"x","Options":{},"IPv4Data":[],"IPv6Data":[]}`, nil); raw != `{"Options":{}}` {
		t.Errorf("AllocateNetwork: %s", raw)
	}
	r.ok("NetworkDriver.FreeNetwork", `{"NetworkID":"x"}`, nil)
	r.fails("NetworkDriver.CreateNetwork", `{"NetworkID":`, "not JSON of the plugin protocol")
}

func TestCreateAndDeleteNetwork(t *testing.T) {
	r := newRig(t)
	r.ok("NetworkDriver.CreateNetwork", createNetworkJSON, nil)
	r.ok("NetworkDriver.CreateNetwork", createNetworkJSON, nil) // repeated: the same network
	nets, _ := r.f.ListNetworks(t.Context(), nil)
	if len(nets) != 1 {
		t.Fatalf("networks: %+v", nets)
	}
	n := nets[0]
	spec, err := api.ParseNetwork(&n)
	if err != nil || n.Name != "dnet" || spec.Type != api.NAT || len(spec.Subnets) != 1 || spec.Subnets[0].Prefix.String() != "10.89.0.0/24" ||
		spec.Subnets[0].Gateway.String() != "10.89.0.1" || len(spec.DNS.Servers) != 1 || spec.DNS.Servers[0].String() != "10.0.0.53" ||
		string(n.Extra[DockerNetworkID]) != `"`+dockerNetID+`"` {
		t.Errorf("the hostnet network: %+v %+v %v", n, spec, err)
	}
	r.ok("NetworkDriver.DeleteNetwork", `{"NetworkID":"`+dockerNetID+`"}`, nil)
	r.ok("NetworkDriver.DeleteNetwork", `{"NetworkID":"`+dockerNetID+`"}`, nil) // gone already: no error
	if nets, _ := r.f.ListNetworks(t.Context(), nil); len(nets) != 0 {
		t.Errorf("networks after delete: %+v", nets)
	}
}

func TestCreateNetworkOptions(t *testing.T) {
	r := newRig(t)
	// No name option: docker-<ID>; -o hostnet.type picks the type.
	r.ok("NetworkDriver.CreateNetwork", `{"NetworkID":"`+dockerNetID+`","Options":{"com.docker.network.generic":{"hostnet.type":"transparent"}},`+
		`"IPv4Data":[{"AddressSpace":"LocalDefault","Pool":"10.90.0.0/24","Gateway":"10.90.0.1/24"}]}`, nil)
	nets, _ := r.f.ListNetworks(t.Context(), nil)
	if len(nets) != 1 || nets[0].Name != "docker-"+dockerNetID[:12] || nets[0].Type != api.Transparent {
		t.Errorf("networks: %+v", nets)
	}
	for _, tc := range []struct{ generic, want string }{
		{`{"hostnet.type":"overlay"}`, `option hostnet.type: "overlay" is not a network type this hostnetd supports (it supports nat, transparent)`},
		{`{"com.docker.network.bridge.name":"br0"}`, `unknown option "com.docker.network.bridge.name"`},
		{`{"com.docker.network.windowsshim.vlanid":"x"}`, `option com.docker.network.windowsshim.vlanid: "x" is not a number`},
		{`{"com.docker.network.windowsshim.networkname":""}`, `option com.docker.network.windowsshim.networkname is empty`},
		{`{"com.docker.network.driver.mtu":"1400"}`, `option com.docker.network.driver.mtu is not supported yet`},
	} {
		r.fails("NetworkDriver.CreateNetwork", `{"NetworkID":"n2","Options":{"com.docker.network.generic":`+tc.generic+`},`+
			`"IPv4Data":[{"AddressSpace":"x","Pool":"10.91.0.0/24","Gateway":"10.91.0.1/24"}]}`, tc.want)
	}
	r.fails("NetworkDriver.CreateNetwork", `{"NetworkID":"n3","Options":{"com.docker.network.internal":true},"IPv4Data":[]}`, "--internal is not supported")
	r.fails("NetworkDriver.CreateNetwork", `{"NetworkID":"n4","Options":{},"IPv4Data":[{"AddressSpace":"x","Pool":"10.92.0/24"}]}`,
		`field IPv4Data[0].Pool: "10.92.0/24" is not a CIDR prefix`)
	r.fails("NetworkDriver.CreateNetwork", `{"NetworkID":"","Options":{}}`, "field NetworkID is empty")
	// The daemon's refusal reaches Docker with its message.
	r.f.fail["CreateNetwork"] = api.Invalid(api.CodeInvalidNetwork, "invalid network: subnet 10.93.0.0/24 overlaps the host's address 10.93.0.5/24")
	r.fails("NetworkDriver.CreateNetwork", `{"NetworkID":"n5","Options":{},"IPv4Data":[{"AddressSpace":"x","Pool":"10.93.0.0/24"}]}`,
		"hostnet: create network docker-n5: invalid network: subnet 10.93.0.0/24 overlaps the host's address 10.93.0.5/24")
}

func TestEndpointLifecycle(t *testing.T) {
	r := newRig(t)
	r.ok("NetworkDriver.CreateNetwork", createNetworkJSON, nil)
	var created createEndpointResponse
	r.ok("NetworkDriver.CreateEndpoint", createEndpointJSON, &created)
	// Docker gave the address: only the MAC is answered.
	if created.Interface == nil || created.Interface.Address != "" || created.Interface.MacAddress == "" {
		t.Errorf("CreateEndpoint answered %+v", created.Interface)
	}
	ep, err := r.f.GetEndpoint(t.Context(), EndpointName(dockerEPID))
	if err != nil {
		t.Fatal(err)
	}
	if len(ep.IpConfigurations) != 1 || ep.IpConfigurations[0].IpAddress != "10.89.0.2" || ep.IpConfigurations[0].PrefixLength != 24 {
		t.Errorf("endpoint addresses: %+v", ep.IpConfigurations)
	}
	if len(ep.Policies) != 2 || string(ep.Policies[0].Settings) != `{"Protocol":6,"InternalPort":80,"ExternalPort":18080}` ||
		string(ep.Policies[1].Settings) != `{"Protocol":17,"InternalPort":53,"ExternalPort":5353,"VIP":"127.0.0.1"}` {
		t.Errorf("endpoint policies: %+v", ep.Policies)
	}
	// A repeated create answers with what exists.
	r.ok("NetworkDriver.CreateEndpoint", createEndpointJSON, nil)

	var info operInfoResponse
	r.ok("NetworkDriver.EndpointOperInfo", `{"NetworkID":"`+dockerNetID+`","EndpointID":"`+dockerEPID+`"}`, &info)
	if info.Value["hostnet.endpoint"] != ep.ID || len(info.Value["hostnet.published"].([]any)) != 2 {
		t.Errorf("EndpointOperInfo: %+v", info.Value)
	}

	// Join before the sandbox's namespace is mounted: attached once it is.
	key := "/var/run/docker/netns/dbe5e1add025"
	raw := r.ok("NetworkDriver.Join", `{"NetworkID":"`+dockerNetID+`","EndpointID":"`+dockerEPID+`","SandboxKey":"`+key+`","Options":{}}`, nil)
	if raw != `{"DisableGatewayService":true}` {
		t.Errorf("Join answered %s", raw)
	}
	if ep, _ := r.f.GetEndpoint(t.Context(), ep.ID); ep.HostComputeNamespace != "" {
		t.Fatalf("attached before the namespace was there: %+v", ep)
	}
	r.mount(key)
	var attached *api.Endpoint
	for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(5 * time.Millisecond) {
		if attached, _ = r.f.GetEndpoint(t.Context(), ep.ID); attached.HostComputeNamespace != "" {
			break
		}
	}
	ns, err := r.f.GetNamespace(t.Context(), NamespaceName(key))
	if attached.HostComputeNamespace == "" || err != nil || ns.ID != attached.HostComputeNamespace || ns.NetNamespacePath != key {
		t.Fatalf("after the mount: endpoint %+v, namespace %+v, %v", attached, ns, err)
	}

	r.ok("NetworkDriver.Leave", `{"NetworkID":"`+dockerNetID+`","EndpointID":"`+dockerEPID+`"}`, nil)
	if ep, _ := r.f.GetEndpoint(t.Context(), ep.ID); ep.HostComputeNamespace != "" {
		t.Errorf("attached after Leave: %+v", ep)
	}
	if _, err := r.f.GetNamespace(t.Context(), NamespaceName(key)); !api.IsNotFound(err) {
		t.Errorf("the sandbox's namespace object after Leave: %v", err)
	}
	r.ok("NetworkDriver.DeleteEndpoint", `{"NetworkID":"`+dockerNetID+`","EndpointID":"`+dockerEPID+`"}`, nil)
	r.ok("NetworkDriver.DeleteEndpoint", `{"NetworkID":"`+dockerNetID+`","EndpointID":"`+dockerEPID+`"}`, nil)
	r.ok("NetworkDriver.Leave", `{"NetworkID":"`+dockerNetID+`","EndpointID":"`+dockerEPID+`"}`, nil)
	if eps, _ := r.f.ListEndpoints(t.Context(), nil); len(eps) != 0 {
		t.Errorf("endpoints left: %+v", eps)
	}
	r.ok("NetworkDriver.DeleteNetwork", `{"NetworkID":"`+dockerNetID+`"}`, nil)
}

// A Join to a running container (docker network connect) finds the
// namespace mounted: attached before the answer. Two networks' endpoints
// share the sandbox's namespace object, which goes with the last.
func TestJoinMountedSandbox(t *testing.T) {
	r := newRig(t)
	key := "/var/run/docker/netns/0123456789ab"
	r.mount(key)
	r.ok("NetworkDriver.CreateNetwork", createNetworkJSON, nil)
	other := strings.Replace(createNetworkJSON, dockerNetID, "othernet", 1)
	other = strings.Replace(other, `"dnet"`, `"dnet2"`, 1)
	other = strings.ReplaceAll(other, "10.89.0.", "10.88.0.")
	r.ok("NetworkDriver.CreateNetwork", other, nil)
	for _, tc := range [][2]string{{dockerNetID, "ep1"}, {"othernet", "ep2"}} {
		r.ok("NetworkDriver.CreateEndpoint", `{"NetworkID":"`+tc[0]+`","EndpointID":"`+tc[1]+`","Interface":{},"Options":{}}`, nil)
		r.ok("NetworkDriver.Join", `{"NetworkID":"`+tc[0]+`","EndpointID":"`+tc[1]+`","SandboxKey":"`+key+`","Options":{}}`, nil)
		if ep, _ := r.f.GetEndpoint(t.Context(), EndpointName(tc[1])); ep.NetNamespacePath != key {
			t.Errorf("%s not attached at the answer: %+v", tc[1], ep)
		}
	}
	r.ok("NetworkDriver.Leave", `{"NetworkID":"`+dockerNetID+`","EndpointID":"ep1"}`, nil)
	if _, err := r.f.GetNamespace(t.Context(), NamespaceName(key)); err != nil {
		t.Errorf("the namespace object went with ep2 still in it: %v", err)
	}
	r.ok("NetworkDriver.DeleteEndpoint", `{"NetworkID":"othernet","EndpointID":"ep2"}`, nil)
	if _, err := r.f.GetNamespace(t.Context(), NamespaceName(key)); !api.IsNotFound(err) {
		t.Errorf("the namespace object after its last endpoint: %v", err)
	}
	r.fails("NetworkDriver.Join", `{"NetworkID":"x","EndpointID":"ep9","SandboxKey":"relative","Options":{}}`, `field SandboxKey: "relative" is not the path`)
	r.fails("NetworkDriver.Join", `{"NetworkID":"x","EndpointID":"ep9","SandboxKey":"`+key+`","Options":{}}`, `find endpoint docker-ep9`)
}

// DeleteEndpoint while a Join waits for its sandbox stops the wait.
func TestDeleteWhileWaiting(t *testing.T) {
	r := newRig(t)
	r.ok("NetworkDriver.CreateNetwork", createNetworkJSON, nil)
	r.ok("NetworkDriver.CreateEndpoint", `{"NetworkID":"`+dockerNetID+`","EndpointID":"e1","Interface":{},"Options":{}}`, nil)
	r.ok("NetworkDriver.Join", `{"NetworkID":"`+dockerNetID+`","EndpointID":"e1","SandboxKey":"/run/never","Options":{}}`, nil)
	r.ok("NetworkDriver.DeleteEndpoint", `{"NetworkID":"`+dockerNetID+`","EndpointID":"e1"}`, nil)
	r.p.mu.Lock()
	waiting := len(r.p.joins)
	r.p.mu.Unlock()
	if waiting != 0 {
		t.Errorf("%d waits left", waiting)
	}
}

func TestCreateEndpointAddressesAndErrors(t *testing.T) {
	r := newRig(t)
	r.ok("NetworkDriver.CreateNetwork", createNetworkJSON, nil)
	// No address from Docker (no IPv4 IPAM): hostnet's, answered with
	// the MAC; a MAC Docker gave (--mac-address) is kept and not answered.
	var out createEndpointResponse
	r.ok("NetworkDriver.CreateEndpoint", `{"NetworkID":"`+dockerNetID+`","EndpointID":"e1","Interface":{"MacAddress":"02:42:0a:59:00:09"},"Options":{}}`, &out)
	if out.Interface == nil || out.Interface.Address != "10.89.0.2/24" || out.Interface.MacAddress != "" {
		t.Errorf("CreateEndpoint answered %+v", out.Interface)
	}
	if ep, _ := r.f.GetEndpoint(t.Context(), EndpointName("e1")); ep.MacAddress != "02-42-0A-59-00-09" {
		t.Errorf("MAC: %q", ep.MacAddress)
	}
	for _, tc := range []struct{ body, want string }{
		{`{"NetworkID":"nosuch","EndpointID":"e2","Interface":{},"Options":{}}`, "Docker network nosuch has no hostnet network"},
		{`{"NetworkID":"` + dockerNetID + `","EndpointID":"e2","Interface":{"Address":"10.89.0.300/24"},"Options":{}}`, `field Interface.Address: "10.89.0.300/24"`},
		{`{"NetworkID":"` + dockerNetID + `","EndpointID":"e2","Interface":{"MacAddress":"zz"},"Options":{}}`, `field Interface.MacAddress`},
		{`{"NetworkID":"` + dockerNetID + `","EndpointID":"e2","Interface":{},"Options":{"com.docker.network.portmap":[{"Proto":6,"Port":80,"HostPort":0}]}}`,
			"com.docker.network.portmap[0]: container port 80/tcp has no host port"},
		{`{"NetworkID":"` + dockerNetID + `","EndpointID":"e2","Interface":{},"Options":{"com.docker.network.portmap":[{"Proto":132,"Port":80,"HostPort":80}]}}`,
			"protocol 132: hostnet publishes tcp (6) and udp (17) ports only"},
		{`{"NetworkID":"` + dockerNetID + `","EndpointID":"e2","Interface":{},"Options":{"com.docker.network.portmap":[{"Proto":6,"Port":80,"HostPort":80,"HostIP":"x"}]}}`,
			`field HostIP: "x" is not an address`},
		{`{"NetworkID":"` + dockerNetID + `","EndpointID":"e2","Interface":{},"Options":{"com.docker.network.portmap":"no"}}`, "is not a list of port bindings"},
		{`{"NetworkID":"` + dockerNetID + `","EndpointID":"","Interface":{},"Options":{}}`, "field EndpointID is empty"},
	} {
		r.fails("NetworkDriver.CreateEndpoint", tc.body, tc.want)
	}
	r.f.fail["CreateEndpoint"] = api.Conflict(api.CodePortAlreadyExists, "host port 18080/tcp is held by process 42 (nginx)")
	r.fails("NetworkDriver.CreateEndpoint", createEndpointJSON, "host port 18080/tcp is held by process 42 (nginx)")
	r.fails("NetworkDriver.EndpointOperInfo", `{"NetworkID":"x","EndpointID":"nosuch"}`, "find endpoint docker-nosuch")
}

func TestExternalConnectivity(t *testing.T) {
	r := newRig(t)
	r.ok("NetworkDriver.CreateNetwork", createNetworkJSON, nil)
	r.ok("NetworkDriver.CreateEndpoint", `{"NetworkID":"`+dockerNetID+`","EndpointID":"e1","Interface":{},"Options":{}}`, nil)
	program := `{"NetworkID":"` + dockerNetID + `","EndpointID":"e1","Options":{"com.docker.network.endpoint.exposedports":[{"Proto":6,"Port":80}],` +
		`"com.docker.network.portmap":[{"Proto":6,"IP":"","Port":80,"HostIP":"::","HostPort":8080,"HostPortEnd":8080}]}}`
	r.ok("NetworkDriver.ProgramExternalConnectivity", program, nil)
	r.ok("NetworkDriver.ProgramExternalConnectivity", program, nil) // present already: added once
	ep, _ := r.f.GetEndpoint(t.Context(), EndpointName("e1"))
	if len(ep.Policies) != 1 || string(ep.Policies[0].Settings) != `{"Protocol":6,"InternalPort":80,"ExternalPort":8080,"Flags":2}` {
		t.Errorf("policies after program: %+v", ep.Policies)
	}
	r.ok("NetworkDriver.RevokeExternalConnectivity", `{"NetworkID":"`+dockerNetID+`","EndpointID":"e1"}`, nil)
	if ep, _ := r.f.GetEndpoint(t.Context(), EndpointName("e1")); len(ep.Policies) != 0 {
		t.Errorf("policies after revoke: %+v", ep.Policies)
	}
	r.ok("NetworkDriver.RevokeExternalConnectivity", `{"NetworkID":"`+dockerNetID+`","EndpointID":"gone"}`, nil)
	r.ok("NetworkDriver.ProgramExternalConnectivity", `{"NetworkID":"`+dockerNetID+`","EndpointID":"e1","Options":{}}`, nil)
	r.f.fail["ModifyEndpoint"] = api.Conflict(api.CodePortAlreadyExists, "host port 8080/tcp is published by endpoint web")
	r.fails("NetworkDriver.ProgramExternalConnectivity", program, "add the published ports of endpoint docker-e1: host port 8080/tcp is published by endpoint web")
}

func TestIpam(t *testing.T) {
	r := newRig(t)
	if raw := r.ok("IpamDriver.GetCapabilities", "", nil); raw != `{"RequiresMACAddress":false,"RequiresRequestReplay":false}` {
		t.Errorf("GetCapabilities: %s", raw)
	}
	if raw := r.ok("IpamDriver.GetDefaultAddressSpaces", "", nil); raw != `{"LocalDefaultAddressSpace":"hostnet-local","GlobalDefaultAddressSpace":"hostnet-global"}` {
		t.Errorf("GetDefaultAddressSpaces: %s", raw)
	}
	var pool requestPoolResponse
	r.ok("IpamDriver.RequestPool", `{"AddressSpace":"hostnet-local","Pool":"10.89.0.0/24","SubPool":"10.89.0.128/25","Options":{},"V6":false}`, &pool)
	if pool.PoolID != "hostnet/hostnet-local/10.89.0.0/24/10.89.0.128/25" || pool.Pool != "10.89.0.0/24" {
		t.Errorf("RequestPool: %+v", pool)
	}
	var gw, a1, a2 requestAddressResponse
	r.ok("IpamDriver.RequestAddress", `{"PoolID":"`+pool.PoolID+`","Address":"","Options":{"RequestAddressType":"com.docker.network.gateway"}}`, &gw)
	r.ok("IpamDriver.RequestAddress", `{"PoolID":"`+pool.PoolID+`","Address":"","Options":{}}`, &a1)
	r.ok("IpamDriver.RequestAddress", `{"PoolID":"`+pool.PoolID+`","Address":"","Options":{}}`, &a2)
	if gw.Address != "10.89.0.1/24" || a1.Address != "10.89.0.128/24" || a2.Address != "10.89.0.129/24" {
		t.Errorf("addresses: gateway %s, %s, %s", gw.Address, a1.Address, a2.Address)
	}
	r.fails("IpamDriver.RequestAddress", `{"PoolID":"`+pool.PoolID+`","Address":"10.89.0.128","Options":{}}`, "10.89.0.128 is in use in pool 10.89.0.0/24")
	r.ok("IpamDriver.ReleaseAddress", `{"PoolID":"`+pool.PoolID+`","Address":"10.89.0.128"}`, nil)
	r.ok("IpamDriver.RequestAddress", `{"PoolID":"`+pool.PoolID+`","Address":"10.89.0.128","Options":{}}`, &a1)

	// Once the network exists, its endpoints' addresses count as used.
	r.ok("NetworkDriver.CreateNetwork", createNetworkJSON, nil)
	r.ok("NetworkDriver.CreateEndpoint", `{"NetworkID":"`+dockerNetID+`","EndpointID":"e1","Interface":{"Address":"10.89.0.130/24"},"Options":{}}`, nil)
	var a3 requestAddressResponse
	r.ok("IpamDriver.RequestAddress", `{"PoolID":"`+pool.PoolID+`","Address":"","Options":{}}`, &a3)
	if a3.Address != "10.89.0.131/24" {
		t.Errorf("after a hostnet endpoint took .130: %s (endpoints hold %v)", a3.Address, r.f.addrs())
	}
	// A pool a hostnet network has is refused; with none asked, a free
	// /24 of 10.200.0.0/16.
	r.fails("IpamDriver.RequestPool", `{"AddressSpace":"hostnet-local","Pool":"10.89.0.0/16","Options":{},"V6":false}`,
		"field Pool: 10.89.0.0/16 overlaps hostnet network subnet 10.89.0.0/24")
	var free1, free2 requestPoolResponse
	r.ok("IpamDriver.RequestPool", `{"AddressSpace":"hostnet-local","Pool":"","Options":{},"V6":false}`, &free1)
	r.ok("IpamDriver.RequestPool", `{"AddressSpace":"hostnet-local","Pool":"","Options":{},"V6":false}`, &free2)
	if free1.Pool != "10.200.0.0/24" || free2.Pool != "10.200.1.0/24" {
		t.Errorf("pools picked: %s, %s", free1.Pool, free2.Pool)
	}
	r.ok("IpamDriver.ReleasePool", `{"PoolID":"`+free1.PoolID+`"}`, nil)
	r.ok("IpamDriver.RequestPool", `{"AddressSpace":"hostnet-local","Pool":"","Options":{},"V6":false}`, &free1)
	if free1.Pool != "10.200.0.0/24" {
		t.Errorf("a released pool is not free again: %s", free1.Pool)
	}
	for _, tc := range []struct{ method, body, want string }{
		{"RequestPool", `{"AddressSpace":"x","Pool":"","Options":{},"V6":true}`, "picks IPv4 pools only"},
		{"RequestPool", `{"AddressSpace":"x","Pool":"10.1.0.0/24","SubPool":"10.2.0.0/25","V6":false}`, "field SubPool: 10.2.0.0/25 is not inside pool 10.1.0.0/24"},
		{"RequestPool", `{"AddressSpace":"x","Pool":"fd00::/64","V6":false}`, "field Pool: fd00::/64 is not of the family asked for"},
		{"RequestPool", `{"AddressSpace":"x","Pool":"10.200.0.0/16","V6":false}`, "field Pool: 10.200.0.0/16 overlaps a pool in use"},
		{"RequestAddress", `{"PoolID":"other/1","Address":""}`, `field PoolID: "other/1" is not a pool of hostnet's IPAM driver`},
		{"RequestAddress", `{"PoolID":"` + pool.PoolID + `","Address":"10.1.1.1"}`, `field Address: "10.1.1.1" is not an address of pool 10.89.0.0/24`},
		{"ReleaseAddress", `{"PoolID":"` + pool.PoolID + `","Address":"x"}`, `field Address: "x" is not an address`},
	} {
		r.fails("IpamDriver."+tc.method, tc.body, tc.want)
	}
	// A full pool says so.
	var small requestPoolResponse
	r.ok("IpamDriver.RequestPool", `{"AddressSpace":"x","Pool":"10.201.0.0/30","V6":false}`, &small)
	r.ok("IpamDriver.RequestAddress", `{"PoolID":"`+small.PoolID+`","Options":{"RequestAddressType":"com.docker.network.gateway"}}`, nil)
	r.ok("IpamDriver.RequestAddress", `{"PoolID":"`+small.PoolID+`"}`, nil)
	r.fails("IpamDriver.RequestAddress", `{"PoolID":"`+small.PoolID+`"}`, "no address of 10.201.0.0/30 is free")
}

// The IPAM driver's errors carry Err (what Docker's plugin client reads
// from an answer that is not 200) and Error (the IPAM protocol's field).
func TestIpamErrorShape(t *testing.T) {
	r := newRig(t)
	status, raw := r.call("IpamDriver.ReleasePool", `{"PoolID":"x"}`, nil)
	if status != 500 || !strings.Contains(raw, `"Err":"hostnet: field PoolID`) || !strings.Contains(raw, `"Error":"hostnet: field PoolID`) {
		t.Errorf("%d %s", status, raw)
	}
}

func TestListenAndServe(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "plugins", "hostnet.sock")
	// A stale socket file (a plugin that died) is replaced.
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	l, err := Listen(path)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := Listen(path); err == nil || !strings.Contains(err.Error(), "another plugin answers there") {
		t.Errorf("a second plugin on the socket: %v", err)
	}
	p := &Plugin{D: newFake()}
	ctx, cancel := contextWithCancel(t)
	done := make(chan error, 1)
	go func() { done <- p.Serve(ctx, l) }()
	c := &http.Client{Transport: &http.Transport{DialContext: unixDialer(path)}}
	resp, err := c.Post("http://plugin/Plugin.Activate", contentType, nil)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 || resp.Header.Get("Content-Type") != contentType {
		t.Errorf("Activate over the socket: %d %s", resp.StatusCode, resp.Header.Get("Content-Type"))
	}
	cancel()
	if err := <-done; err != nil {
		t.Errorf("Serve: %v", err)
	}
	if _, err := os.Stat(path); !os.IsNotExist(err) {
		t.Errorf("the socket is left after Serve: %v", err)
	}
}
