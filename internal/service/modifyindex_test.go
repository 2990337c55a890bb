package service

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"testing"

	"github.com/hostnet/hostnet/api"
)

func sdnRoute(settings string) api.Policy {
	return api.Policy{Type: api.SDNRoute, Settings: json.RawMessage(settings)}
}

func outboundNAT(settings string) api.Policy {
	return api.Policy{Type: api.OutBoundNAT, Settings: json.RawMessage(settings)}
}

func modifyRequest(t *testing.T, rt api.RequestType, ps ...api.Policy) api.ModifyRequest {
	t.Helper()
	b, err := json.Marshal(api.PolicyRequest{Policies: ps})
	if err != nil {
		t.Fatal(err)
	}
	return api.ModifyRequest{ResourceType: api.ResourcePolicy, RequestType: rt, Settings: b}
}

// A modify request's errors name the bad policy by its index in the
// request and by its type, whatever policies the endpoint already has.
func TestModifyErrorsNameTheRequestsIndex(t *testing.T) {
	l, ctx := blueLab(t)
	ep, _ := l.attached("blue", "web", mapping(6, 8080, 80), mapping(6, 8081, 81), acl("Allow", "In", "80", 100),
		outboundNAT(`{"Exceptions":["10.0.0.0/8"]}`))
	for _, c := range []struct {
		name string
		req  api.ModifyRequest
		want []string
	}{
		{"NeedEncap", modifyRequest(t, api.RequestAdd, mapping(6, 9000, 90), sdnRoute(`{"DestinationPrefix":"10.9.0.0/16","NextHop":"10.7.0.1","NeedEncap":true}`)),
			[]string{"Policies[1]", "SDNRoute", "NeedEncap"}},
		{"a host port the endpoint publishes", modifyRequest(t, api.RequestAdd, mapping(6, 9001, 91), mapping(6, 8080, 82)),
			[]string{"Policies[1] (PortMapping)", "8080"}},
		{"a second OutBoundNAT", modifyRequest(t, api.RequestAdd, outboundNAT(`{"Exceptions":["10.1.0.0/16"]}`)),
			[]string{"Policies[0] (OutBoundNAT)"}},
		{"a VirtualIP of no family of the endpoint", modifyRequest(t, api.RequestUpdate, outboundNAT(`{"VirtualIP":"fd00::1"}`)),
			[]string{"Policies[0] (OutBoundNAT)", "VirtualIP"}},
		{"an unreachable next hop", modifyRequest(t, api.RequestAdd, mapping(6, 9002, 92), sdnRoute(`{"DestinationPrefix":"169.254.169.254/32","NextHop":"127.10.0.34"}`)),
			[]string{"Policies[1].Settings.NextHop", "SDNRoute", "127.10.0.34"}},
	} {
		t.Run(c.name, func(t *testing.T) {
			_, err := l.svc.ModifyEndpoint(ctx, ep.ID, c.req)
			if err == nil || api.AsError(err).Status != 400 && !api.IsConflict(err) {
				t.Fatalf("got %v, want a 400 or 409", err)
			}
			for _, w := range c.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("%v\ndoes not say %q", err, w)
				}
			}
			for _, bad := range []string{"Policies[2]", "Policies[3]", "Policies[4]", "Policies[5]"} {
				if strings.Contains(err.Error(), bad) && !strings.Contains(err.Error(), "endpoint's "+bad) {
					t.Errorf("%v\nnames %s, which is no index of the request", err, bad)
				}
			}
		})
	}
	got, err := l.svc.GetEndpoint(ctx, ep.ID)
	l.must(err)
	if len(got.Policies) != 4 {
		t.Errorf("the refused requests changed the endpoint: %d policies", len(got.Policies))
	}
	l.check()
}

// An SDNRoute whose next hop the kernel would not take (hcsshim's own
// test sends 127.10.0.34) is a 400 naming the field and the value, on a
// detached endpoint as on an attached one, at creation as in a modify: a
// detached endpoint that stored it could never be attached.
func TestUnusableNextHopIsRefusedDetached(t *testing.T) {
	l, ctx := blueLab(t)
	bad := sdnRoute(`{"DestinationPrefix":"169.254.169.254/24","NextHop":"127.10.0.34"}`)
	_, err := l.svc.CreateEndpoint(ctx, api.Endpoint{Name: "d", HostComputeNetwork: "blue", Policies: []api.Policy{mapping(6, 8080, 80), bad}})
	if api.AsError(err).Status != 400 || !strings.Contains(err.Error(), "Policies[1].Settings.NextHop") || !strings.Contains(err.Error(), "127.10.0.34") {
		t.Errorf("create: %v", err)
	}
	_, err = l.svc.CreateEndpoint(ctx, api.Endpoint{Name: "d", HostComputeNetwork: "blue", Routes: []api.Route{{DestinationPrefix: "10.9.0.0/16", NextHop: "10.7.0.255"}}})
	if api.AsError(err).Status != 400 || !strings.Contains(err.Error(), "Routes[0].NextHop") || !strings.Contains(err.Error(), "broadcast") {
		t.Errorf("create with Routes: %v", err)
	}
	ep, err := l.svc.CreateEndpoint(ctx, api.Endpoint{Name: "d", HostComputeNetwork: "blue"})
	l.must(err)
	_, err = l.svc.ModifyEndpoint(ctx, ep.ID, modifyRequest(t, api.RequestAdd, bad))
	if api.AsError(err).Status != 400 || !strings.Contains(err.Error(), "Policies[0].Settings.NextHop") || !strings.Contains(err.Error(), "127.10.0.34") {
		t.Errorf("modify: %v", err)
	}
	ns, err := l.svc.CreateNamespace(ctx, api.Namespace{Name: "d-ns"})
	l.must(err)
	_, err = l.svc.ModifyNamespace(ctx, ns.ID, api.ModifyRequest{ResourceType: api.ResourceEndpoint, RequestType: api.RequestAdd,
		Settings: json.RawMessage(`{"EndpointId":"` + ep.ID + `"}`)})
	l.must(err)
	l.check()
}

// A network modify request's errors, too, name the bad policy by its index
// in the request and its type, not by the network's merged list.
func TestNetworkModifyErrorsNameTheRequestsIndex(t *testing.T) {
	l, ctx := newLab(t), context.Background()
	nacl := func(action string, priority int) api.Policy {
		return api.Policy{Type: api.NetworkACL, Settings: json.RawMessage(fmt.Sprintf(`{"Action":%q,"Direction":"In","Protocols":"6","LocalPorts":"80","Priority":%d}`, action, priority))}
	}
	l.network("blue", "10.7.0.0/24", nacl("Allow", 100), nacl("Block", 200))
	_, err := l.svc.ModifyNetwork(ctx, "blue", modifyRequest(t, api.RequestAdd, nacl("Allow", 300), nacl("Bogus", 400)))
	if err == nil || !strings.Contains(err.Error(), "Policies[1] (NetworkACL)") || strings.Contains(err.Error(), "Policies[3]") ||
		!strings.HasPrefix(err.Error(), "invalid network modify request") {
		t.Errorf("got %v, want a 400 naming Policies[1] (NetworkACL) of the request", err)
	}
}

// An endpoint's bad ACL, at creation and in a modify request, is named
// once as invalid, by its index and type.
func TestACLErrorWording(t *testing.T) {
	l, ctx := blueLab(t)
	bad := api.Policy{Type: api.ACL, Settings: json.RawMessage(`{"Action":"Bogus","Direction":"In","Priority":1}`)}
	_, err := l.svc.CreateEndpoint(ctx, api.Endpoint{Name: "e", HostComputeNetwork: "blue", Policies: []api.Policy{mapping(6, 8080, 80), bad}})
	if err == nil || strings.Contains(err.Error(), "invalid invalid") || !strings.Contains(err.Error(), "Policies[1] (ACL)") {
		t.Errorf("create: %v", err)
	}
	ep, _ := l.attached("blue", "web", mapping(6, 8081, 81))
	_, err = l.svc.ModifyEndpoint(ctx, ep.ID, modifyRequest(t, api.RequestAdd, bad))
	if err == nil || strings.Contains(err.Error(), "invalid invalid") || !strings.Contains(err.Error(), "Policies[0] (ACL)") {
		t.Errorf("modify: %v", err)
	}
}
