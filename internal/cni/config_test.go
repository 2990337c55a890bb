package cni

import (
	"encoding/json"
	"errors"
	"strings"
	"testing"

	"github.com/containernetworking/cni/pkg/skel"
	"github.com/containernetworking/cni/pkg/types"
	"github.com/hostnet/hostnet/api"
)

// A configuration as the Windows CNI plugins' examples write it.
const windowsConfig = `{
  "cniVersion": "0.3.0", "name": "nat", "type": "hostnet-cni", "master": "Ethernet",
  "capabilities": {"portMappings": true, "dns": true},
  "ipam": {"environment": "azure", "subnet": "10.88.0.0/16", "routes": [{"GW": "10.88.0.2"}]},
  "dns": {"Nameservers": ["10.0.0.10"], "Search": ["svc.cluster.local"]},
  "optionalFlags": {"localRoutedPortMapping": true, "allowAclPortMapping": true, "enableDualStack": true, "gatewayFromAdditionalRoutes": true},
  "AdditionalArgs": [
    {"Name": "EndpointPolicy", "Value": {"Type": "OutBoundNAT", "ExceptionList": ["10.0.0.0/8", "192.168.0.0/16"]}},
    {"Name": "EndpointPolicy", "Value": {"Type": "ROUTE", "DestinationPrefix": "10.96.0.0/12", "NeedEncap": false}},
    {"Name": "EndpointPolicy", "Value": {"Type": "ACL", "Settings": {"Action": "Allow", "Direction": "In", "Priority": 100}}}
  ]
}`

func TestParseWindowsConfig(t *testing.T) {
	c, err := ParseConfig([]byte(windowsConfig))
	if err != nil {
		t.Fatal(err)
	}
	if c.Socket != DefaultSocket || c.Network != "nat" {
		t.Errorf("socket %q, network %q", c.Socket, c.Network)
	}
	n, err := c.NetworkDefinition.network("nat")
	if err != nil {
		t.Fatal(err)
	}
	spec, err := api.ParseNetwork(n)
	if err != nil {
		t.Fatal(err)
	}
	if len(spec.Subnets) != 1 || spec.Subnets[0].Prefix.String() != "10.88.0.0/16" || spec.Subnets[0].Gateway.String() != "10.88.0.2" {
		t.Errorf("the network the ipam section defines: %+v", spec.Subnets)
	}
	req, err := c.endpointRequest("K8S_POD_NAME=web;K8S_POD_NAMESPACE=default", false)
	if err != nil {
		t.Fatal(err)
	}
	if req.dns == nil || req.dns.ServerList[0] != "10.0.0.10" || req.dns.Search[0] != "svc.cluster.local" {
		t.Errorf("dns: %+v", req.dns)
	}
	var got []string
	for _, p := range req.policies {
		got = append(got, string(p.Type)+" "+string(p.Settings))
	}
	want := []string{
		`OutBoundNAT {"Exceptions":["10.0.0.0/8","192.168.0.0/16"]}`,
		`SDNRoute {"DestinationPrefix":"10.96.0.0/12"}`,
		`ACL {"Action": "Allow", "Direction": "In", "Priority": 100}`,
	}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("policies:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
}

func TestParseConfigRefusals(t *testing.T) {
	for _, c := range []struct{ conf, field string }{
		{`{"name":"n","ipam":{"type":"host-local","subnet":"10.0.0.0/24"}}`, "ipam.type"},
		{`{"name":"n","optionalFlags":{"enableLoopbackDSR":true}}`, "optionalFlags.enableLoopbackDSR"},
		{`{"name":"n","runtimeConfig":{"bandwidth":{"ingressRate":1000,"ingressBurst":100000}}}`, "runtimeConfig.bandwidth.ingressRate"},
		{`{"name":"n","runtimeConfig":{"bandwidth":{"egressBurst":100000}}}`, "runtimeConfig.bandwidth.egressBurst"},
		{`{"name":"n","runtimeConfig":{"bandwidth":{"egresRate":100000}}}`, "runtimeConfig.bandwidth"},
		{`{"name":"n","runtimeConfig":{"portMappings":[{"hostPort":0,"containerPort":80}]}}`, "runtimeConfig.portMappings[0]"},
		{`{"name":"n","runtimeConfig":{"portMappings":[{"hostPort":80,"containerPort":80,"protocol":"sctp"}]}}`, "runtimeConfig.portMappings[0]"},
		{`{"name":"n","AdditionalArgs":[{"Name":"Other","Value":{}}]}`, "AdditionalArgs[0]"},
		{`{"name":"n","AdditionalArgs":[{"Name":"EndpointPolicy","Value":{"Type":"PA","PA":"1.2.3.4"}}]}`, "AdditionalArgs[0]"},
		{`{}`, "network"},
	} {
		_, err := ParseConfig([]byte(c.conf))
		var ce *ConfigError
		if !errors.As(err, &ce) || ce.Field != c.field {
			t.Errorf("%s: %v, want an error on field %s", c.conf, err, c.field)
		}
	}
	// A flag set to false asks for nothing.
	if _, err := ParseConfig([]byte(`{"name":"n","optionalFlags":{"enableLoopbackDSR":false}}`)); err != nil {
		t.Error(err)
	}
}

func TestEndpointNames(t *testing.T) {
	name := EndpointName("pods", "4f9a0c2e-x_1.2", "net1")
	a, ok := attachmentOf("pods", name)
	if !ok || a != (types.GCAttachment{ContainerID: "4f9a0c2e-x_1.2", IfName: "net1"}) {
		t.Errorf("attachmentOf(%q) = %+v, %v", name, a, ok)
	}
	for _, other := range []string{EndpointName("pods2", "c", "eth0"), "web", "cni:pods:", "cni:pods:c:"} {
		if _, ok := attachmentOf("pods", other); ok {
			t.Errorf("%q taken for an attachment of pods", other)
		}
	}
}

func TestPortMappingPolicies(t *testing.T) {
	settings := func(ps []api.Policy) string {
		var s []string
		for _, p := range ps {
			s = append(s, string(p.Settings))
		}
		return strings.Join(s, " ")
	}
	for _, c := range []struct {
		pm        PortMapping
		dualStack bool
		want      string
	}{
		{PortMapping{HostPort: 8080, ContainerPort: 80}, false, `{"Protocol":6,"InternalPort":80,"ExternalPort":8080,"CallerHoldsHostPort":true}`},
		{PortMapping{HostPort: 8080, ContainerPort: 80}, true, `{"Protocol":6,"InternalPort":80,"ExternalPort":8080,"CallerHoldsHostPort":true} {"Protocol":6,"InternalPort":80,"ExternalPort":8080,"Flags":2,"CallerHoldsHostPort":true}`},
		{PortMapping{HostPort: 53, ContainerPort: 53, Protocol: "UDP", HostIP: "127.0.0.1"}, true, `{"Protocol":17,"InternalPort":53,"ExternalPort":53,"VIP":"127.0.0.1","CallerHoldsHostPort":true}`},
		{PortMapping{HostPort: 53, ContainerPort: 53, HostIP: "::1"}, true, `{"Protocol":6,"InternalPort":53,"ExternalPort":53,"VIP":"::1","Flags":2,"CallerHoldsHostPort":true}`},
		{PortMapping{HostPort: 80, ContainerPort: 80, HostIP: "::"}, true, `{"Protocol":6,"InternalPort":80,"ExternalPort":80,"Flags":2,"CallerHoldsHostPort":true}`},
	} {
		if got := settings(portMappingPolicies(c.pm, c.dualStack)); got != c.want {
			t.Errorf("%+v dual %v: %s, want %s", c.pm, c.dualStack, got, c.want)
		}
	}
}

// Repeated addresses collapse, wherever they come from (podman network
// reload sends its static address twice); one address with two prefix
// lengths is refused.
func TestRepeatedIPsCollapse(t *testing.T) {
	for _, c := range []struct {
		conf, args string
		want       string // the addresses asked for, or the error's field
	}{
		{`{"name":"n","runtimeConfig":{"ips":["10.88.0.60","10.88.0.60"]}}`, "", "10.88.0.60"},
		{`{"name":"n","runtimeConfig":{"ips":["10.88.0.60","10.88.0.60/16","fd00::5","10.88.0.61"]}}`, "", "10.88.0.60/16 fd00::5 10.88.0.61"},
		{`{"name":"n","runtimeConfig":{"ips":["10.88.0.60/16"]},"args":{"cni":{"ips":["10.88.0.60"]}}}`, "", "10.88.0.60/16"},
		{`{"name":"n"}`, "IP=10.88.0.7,10.88.0.7", "10.88.0.7"},
		{`{"name":"n","runtimeConfig":{"ips":["10.88.0.60/16","10.88.0.60/24"]}}`, "", "error ips"},
		{`{"name":"n","runtimeConfig":{"ips":["10.88.0"]}}`, "", "error ips"},
	} {
		conf, err := ParseConfig([]byte(c.conf))
		if err != nil {
			t.Fatal(err)
		}
		req, err := conf.endpointRequest(c.args, false)
		var ce *ConfigError
		switch {
		case strings.HasPrefix(c.want, "error "):
			if !errors.As(err, &ce) || ce.Field != strings.TrimPrefix(c.want, "error ") {
				t.Errorf("%s: %v, want an error on field %s", c.conf, err, strings.TrimPrefix(c.want, "error "))
			}
		case err != nil:
			t.Errorf("%s: %v", c.conf, err)
		case strings.Join(req.ips, " ") != c.want:
			t.Errorf("%s %s: asks for %v, want %s", c.conf, c.args, req.ips, c.want)
		}
	}
}

// The result converts to every supported version.
func TestResultVersions(t *testing.T) {
	n := &api.Network{Name: "pods", Type: api.NAT, Ipams: []api.Ipam{{Subnets: []api.Subnet{
		{IpAddressPrefix: "10.99.0.0/24"}, {IpAddressPrefix: "fd00:99::/64"}}}}}
	spec, err := api.ParseNetwork(n)
	if err != nil {
		t.Fatal(err)
	}
	ep := &api.Endpoint{HostInterfaceName: "hnv0123", InterfaceName: "eth0", MacAddress: "02-11-22-33-44-55",
		IpConfigurations: []api.IPConfig{{IpAddress: "10.99.0.5", PrefixLength: 24}, {IpAddress: "fd00:99::5", PrefixLength: 64}},
		Dns:              &api.DNS{ServerList: []string{"10.0.0.10"}}}
	r := newResult(ep, spec, n, "/run/netns/x")
	if len(r.IPs) != 2 || r.IPs[0].Gateway.String() != "10.99.0.1" || r.IPs[1].Gateway.String() != "fd00:99::1" {
		t.Errorf("ips: %v", r.IPs)
	}
	if len(r.Routes) != 2 || r.Routes[1].Dst.String() != "::/0" {
		t.Errorf("routes: %v", r.Routes)
	}
	if r.Interfaces[1].Mac != "02:11:22:33:44:55" || r.DNS.Nameservers[0] != "10.0.0.10" {
		t.Errorf("interfaces %v, dns %v", r.Interfaces, r.DNS)
	}
	for _, v := range []string{"0.3.0", "0.3.1", "0.4.0", "1.0.0", "1.1.0"} {
		conv, err := r.GetAsVersion(v)
		if err != nil || conv.Version() != v {
			t.Errorf("as %s: %v", v, err)
			continue
		}
		b, _ := json.Marshal(conv)
		if !strings.Contains(string(b), `"10.99.0.5/24"`) {
			t.Errorf("as %s: %s", v, b)
		}
	}
}

// On a network with embedded DNS the result names the server, on the
// gateways; the endpoint's own servers are its upstream.
func TestResultNamesTheEmbeddedDNS(t *testing.T) {
	n := &api.Network{Name: "pods", Type: api.NAT, Ipams: []api.Ipam{{Subnets: []api.Subnet{
		{IpAddressPrefix: "fd00:99::/64"}, {IpAddressPrefix: "10.99.0.0/24"}}}},
		Policies: []api.Policy{{Type: api.AutomaticDNS, Settings: json.RawMessage(`{"Enable":true}`)}}}
	spec, err := api.ParseNetwork(n)
	if err != nil {
		t.Fatal(err)
	}
	ep := &api.Endpoint{IpConfigurations: []api.IPConfig{{IpAddress: "10.99.0.5"}},
		Dns: &api.DNS{ServerList: []string{"10.0.0.10"}, Search: []string{"corp.test"}}}
	r := newResult(ep, spec, n, "/run/netns/x")
	if got := strings.Join(r.DNS.Nameservers, " "); got != "10.99.0.1 fd00:99::1" || len(r.DNS.Search) != 1 {
		t.Errorf("dns %+v; want the gateways, IPv4 first, and the endpoint's search list", r.DNS)
	}
}

// hostnet-cni creates the interface, so it must come first in a chain.
func TestAddRefusesAPreviousResult(t *testing.T) {
	p := &Plugin{Dial: func(string) Daemon { return nil }} // any call would panic
	conf := `{"cniVersion":"1.1.0","name":"n","type":"hostnet-cni","prevResult":{"cniVersion":"1.1.0","ips":[]}}`
	err := p.Add(&skel.CmdArgs{ContainerID: "c", Netns: "/run/netns/c", IfName: "eth0", StdinData: []byte(conf)})
	var cniErr *types.Error
	if !errors.As(err, &cniErr) || cniErr.Code != types.ErrInvalidNetworkConfig || !strings.Contains(cniErr.Msg, "first plugin") {
		t.Errorf("ADD with a prevResult: %v", err)
	}
}
