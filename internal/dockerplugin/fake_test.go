package dockerplugin

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/netip"
	"sync"
	"testing"
	"time"

	"github.com/hostnet/hostnet/api"
)

// fakeDaemon is hostnetd's API in memory, as far as the plugin uses it:
// names are unique, addresses and MACs come from the subnet in order,
// attach and detach follow the namespace's resources.
type fakeDaemon struct {
	mu    sync.Mutex
	nets  map[string]*api.Network
	eps   map[string]*api.Endpoint
	nss   map[string]*api.Namespace
	next  int
	calls []string
	// fail, when set, is the error of the call it names ("CreateEndpoint").
	fail map[string]error
}

func newFake() *fakeDaemon {
	return &fakeDaemon{nets: map[string]*api.Network{}, eps: map[string]*api.Endpoint{}, nss: map[string]*api.Namespace{}, fail: map[string]error{}}
}

func (f *fakeDaemon) call(name string) error {
	f.calls = append(f.calls, name)
	return f.fail[name]
}

func (f *fakeDaemon) id() string {
	f.next++
	return fmt.Sprintf("00000000-0000-0000-0000-%012d", f.next)
}

func clone[T any](v *T) *T {
	b, _ := json.Marshal(v)
	var out T
	_ = json.Unmarshal(b, &out)
	return &out
}

func find[T any](m map[string]*T, ref string, name func(*T) string) *T {
	if v, ok := m[ref]; ok {
		return v
	}
	for _, v := range m {
		if name(v) == ref {
			return v
		}
	}
	return nil
}

func (f *fakeDaemon) Version(context.Context) (*api.VersionInfo, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.call("Version"); err != nil {
		return nil, err
	}
	return &api.VersionInfo{Supported: api.Supported{NetworkTypes: []api.NetworkType{api.NAT, api.Transparent}}}, nil
}

func (f *fakeDaemon) ListNetworks(context.Context, map[string]string) ([]api.Network, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.call("ListNetworks"); err != nil {
		return nil, err
	}
	var out []api.Network
	for _, n := range f.nets {
		out = append(out, *clone(n))
	}
	return out, nil
}

func (f *fakeDaemon) CreateNetwork(_ context.Context, n *api.Network) (*api.Network, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.call("CreateNetwork"); err != nil {
		return nil, err
	}
	if _, err := api.ParseNetwork(n); err != nil {
		return nil, err
	}
	if find(f.nets, n.Name, func(n *api.Network) string { return n.Name }) != nil {
		return nil, api.Conflict(api.CodeObjectAlreadyExists, "network %q exists", n.Name)
	}
	made := clone(n)
	made.ID = f.id()
	f.nets[made.ID] = made
	return clone(made), nil
}

func (f *fakeDaemon) DeleteNetwork(_ context.Context, ref string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.call("DeleteNetwork"); err != nil {
		return err
	}
	n := find(f.nets, ref, func(n *api.Network) string { return n.Name })
	if n == nil {
		return api.NotFound("network", ref)
	}
	for _, ep := range f.eps {
		if ep.HostComputeNetwork == n.ID {
			return api.Conflict(api.CodeNetworkHasEndpoints, "network %s has endpoints", n.Name)
		}
	}
	delete(f.nets, n.ID)
	return nil
}

func (f *fakeDaemon) endpoint(ref string) *api.Endpoint {
	return find(f.eps, ref, func(e *api.Endpoint) string { return e.Name })
}

func (f *fakeDaemon) GetEndpoint(_ context.Context, ref string) (*api.Endpoint, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.call("GetEndpoint"); err != nil {
		return nil, err
	}
	ep := f.endpoint(ref)
	if ep == nil {
		return nil, api.NotFound("endpoint", ref)
	}
	return clone(ep), nil
}

func (f *fakeDaemon) ListEndpoints(_ context.Context, filter map[string]string) ([]api.Endpoint, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.call("ListEndpoints"); err != nil {
		return nil, err
	}
	var out []api.Endpoint
	for _, ep := range f.eps {
		if net := filter["VirtualNetwork"]; net == "" || net == ep.HostComputeNetwork {
			out = append(out, *clone(ep))
		}
	}
	return out, nil
}

func (f *fakeDaemon) CreateEndpoint(_ context.Context, e *api.Endpoint) (*api.Endpoint, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.call("CreateEndpoint"); err != nil {
		return nil, err
	}
	if f.endpoint(e.Name) != nil {
		return nil, api.Conflict(api.CodeObjectAlreadyExists, "endpoint %q exists", e.Name)
	}
	n := find(f.nets, e.HostComputeNetwork, func(n *api.Network) string { return n.Name })
	if n == nil {
		return nil, api.NotFound("network", e.HostComputeNetwork)
	}
	spec, err := api.ParseNetwork(n)
	if err != nil {
		return nil, err
	}
	made := clone(e)
	made.ID = f.id()
	if len(made.IpConfigurations) == 0 && len(spec.Subnets) > 0 {
		s := spec.Subnets[0]
		a := s.Gateway.Next()
		for used := true; used; a = a.Next() {
			used = false
			for _, o := range f.eps {
				used = used || o.IpConfigurations[0].IpAddress == a.String()
			}
			if !used {
				break
			}
		}
		made.IpConfigurations = []api.IPConfig{{IpAddress: a.String(), PrefixLength: uint8(s.Prefix.Bits())}}
	}
	if made.MacAddress == "" {
		made.MacAddress = fmt.Sprintf("02-00-00-00-00-%02X", f.next)
	}
	f.eps[made.ID] = made
	return clone(made), nil
}

func (f *fakeDaemon) ModifyEndpoint(_ context.Context, ref string, req *api.ModifyRequest) (*api.Endpoint, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.call("ModifyEndpoint"); err != nil {
		return nil, err
	}
	ep := f.endpoint(ref)
	if ep == nil {
		return nil, api.NotFound("endpoint", ref)
	}
	var s struct{ Policies []api.Policy }
	if err := json.Unmarshal(req.Settings, &s); err != nil {
		return nil, api.Invalid(api.CodeInvalidJSON, "%v", err)
	}
	same := func(a, b api.Policy) bool {
		x, _ := json.Marshal(a)
		y, _ := json.Marshal(b)
		return string(x) == string(y)
	}
	for _, p := range s.Policies {
		i := -1
		for j, q := range ep.Policies {
			if same(p, q) {
				i = j
			}
		}
		switch {
		case req.RequestType == api.RequestAdd && i < 0:
			ep.Policies = append(ep.Policies, p)
		case req.RequestType == api.RequestRemove && i >= 0:
			ep.Policies = append(ep.Policies[:i], ep.Policies[i+1:]...)
		}
	}
	return clone(ep), nil
}

func (f *fakeDaemon) DeleteEndpoint(_ context.Context, ref string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.call("DeleteEndpoint"); err != nil {
		return err
	}
	ep := f.endpoint(ref)
	if ep == nil {
		return api.NotFound("endpoint", ref)
	}
	if ns := f.nss[ep.HostComputeNamespace]; ns != nil {
		f.detach(ns, ep)
	}
	delete(f.eps, ep.ID)
	return nil
}

func (f *fakeDaemon) namespace(ref string) *api.Namespace {
	return find(f.nss, ref, func(n *api.Namespace) string { return n.Name })
}

func (f *fakeDaemon) GetNamespace(_ context.Context, ref string) (*api.Namespace, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.call("GetNamespace"); err != nil {
		return nil, err
	}
	ns := f.namespace(ref)
	if ns == nil {
		return nil, api.NotFound("namespace", ref)
	}
	return clone(ns), nil
}

func (f *fakeDaemon) CreateNamespace(_ context.Context, n *api.Namespace) (*api.Namespace, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.call("CreateNamespace"); err != nil {
		return nil, err
	}
	if f.namespace(n.Name) != nil {
		return nil, api.Conflict(api.CodeObjectAlreadyExists, "namespace %q exists", n.Name)
	}
	made := clone(n)
	made.ID = f.id()
	f.nss[made.ID] = made
	return clone(made), nil
}

func (f *fakeDaemon) DeleteNamespace(_ context.Context, ref string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.call("DeleteNamespace"); err != nil {
		return err
	}
	ns := f.namespace(ref)
	if ns == nil {
		return api.NotFound("namespace", ref)
	}
	for _, ep := range f.eps {
		if ep.HostComputeNamespace == ns.ID {
			f.detach(ns, ep)
		}
	}
	delete(f.nss, ns.ID)
	return nil
}

func (f *fakeDaemon) Attach(_ context.Context, nsRef, epRef string) (*api.Namespace, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.call("Attach"); err != nil {
		return nil, err
	}
	ns, ep := f.namespace(nsRef), f.endpoint(epRef)
	if ns == nil || ep == nil {
		return nil, api.NotFound("namespace or endpoint", nsRef+" "+epRef)
	}
	if ep.HostComputeNamespace != "" {
		return nil, api.Conflict(api.CodeEndpointAttached, "endpoint %s is attached", ep.Name)
	}
	ep.HostComputeNamespace, ep.NetNamespacePath, ep.InterfaceName = ns.ID, ns.NetNamespacePath, "eth0"
	data, _ := json.Marshal(api.NamespaceResourceID{ID: ep.ID})
	ns.Resources = append(ns.Resources, api.NamespaceResource{Type: api.NamespaceResourceEndpoint, Data: data})
	return clone(ns), nil
}

func (f *fakeDaemon) Detach(_ context.Context, nsRef, epRef string) (*api.Namespace, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.call("Detach"); err != nil {
		return nil, err
	}
	ns, ep := f.namespace(nsRef), f.endpoint(epRef)
	if ns == nil || ep == nil {
		return nil, api.NotFound("namespace or endpoint", nsRef+" "+epRef)
	}
	f.detach(ns, ep)
	return clone(ns), nil
}

func (f *fakeDaemon) detach(ns *api.Namespace, ep *api.Endpoint) {
	ep.HostComputeNamespace, ep.NetNamespacePath = "", ""
	var keep []api.NamespaceResource
	for _, r := range ns.Resources {
		var id api.NamespaceResourceID
		if json.Unmarshal(r.Data, &id) == nil && id.ID == ep.ID {
			continue
		}
		keep = append(keep, r)
	}
	ns.Resources = keep
}

// addrs lists the addresses of the endpoints, for the IPAM tests.
func (f *fakeDaemon) addrs() []netip.Addr {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []netip.Addr
	for _, ep := range f.eps {
		for _, c := range ep.IpConfigurations {
			out = append(out, netip.MustParseAddr(c.IpAddress))
		}
	}
	return out
}

func contextWithCancel(t *testing.T) (context.Context, context.CancelFunc) {
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	t.Cleanup(cancel)
	return ctx, cancel
}

func unixDialer(path string) func(ctx context.Context, _, _ string) (net.Conn, error) {
	return func(ctx context.Context, _, _ string) (net.Conn, error) {
		var d net.Dialer
		return d.DialContext(ctx, "unix", path)
	}
}
