// Package dockerplugin is hostnet's Docker plugin: a libnetwork remote
// network driver and a remote IPAM driver, both named by the plugin's
// socket (hostnet.sock: `docker network create -d hostnet --ipam-driver
// hostnet`). Like hostnet-cni it keeps no state of its own that matters:
// every Docker object is a hostnet object found by name, and what it does
// is done by hostnetd through its API.
//
// How a container gets its interface. Docker's remote driver protocol
// expects the driver to leave a device in the host namespace (Join's
// InterfaceName.SrcName) that Docker moves into the container's sandbox,
// addressing it and setting its gateway itself. hostnet creates and
// configures endpoints inside namespaces itself, and its API cannot hand a
// device over. So Join names no device: the endpoint (made at
// CreateEndpoint, with its address, MAC and published ports) is attached by
// hostnetd to the sandbox's network namespace (Join's SandboxKey) as soon as
// Docker has mounted it there; hostnet gives it its address, MAC, routes
// (the default route through the network's gateway) and firewall, as for
// every other endpoint. Join answers DisableGatewayService (hostnet routes
// the container, Docker must not add its docker_gwbridge). See Plugin.Join
// for the consequence.
package dockerplugin

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/netip"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/hostnet/hostnet/api"
	"github.com/hostnet/hostnet/internal/winshim"
)

// Daemon is the part of hostnetd's API the plugin uses (client.Client
// implements it). Its errors are *api.Error for what the daemon refused.
type Daemon interface {
	Version(ctx context.Context) (*api.VersionInfo, error)
	ListNetworks(ctx context.Context, filter map[string]string) ([]api.Network, error)
	CreateNetwork(ctx context.Context, n *api.Network) (*api.Network, error)
	DeleteNetwork(ctx context.Context, ref string) error
	GetEndpoint(ctx context.Context, ref string) (*api.Endpoint, error)
	ListEndpoints(ctx context.Context, filter map[string]string) ([]api.Endpoint, error)
	CreateEndpoint(ctx context.Context, e *api.Endpoint) (*api.Endpoint, error)
	ModifyEndpoint(ctx context.Context, ref string, req *api.ModifyRequest) (*api.Endpoint, error)
	DeleteEndpoint(ctx context.Context, ref string) error
	GetNamespace(ctx context.Context, ref string) (*api.Namespace, error)
	CreateNamespace(ctx context.Context, n *api.Namespace) (*api.Namespace, error)
	DeleteNamespace(ctx context.Context, ref string) error
	Attach(ctx context.Context, namespace, endpoint string) (*api.Namespace, error)
	Detach(ctx context.Context, namespace, endpoint string) (*api.Namespace, error)
}

// DockerNetworkID is the field of a hostnet network (kept by hostnet as an
// unmodelled top-level field) that names the Docker network it realises.
const DockerNetworkID = "DockerNetworkID"

// EndpointName is the hostnet endpoint of a Docker endpoint.
func EndpointName(endpointID string) string { return "docker-" + endpointID }

// NamespaceName is the hostnet namespace object that wraps a Docker
// sandbox's network namespace (its key, a path).
func NamespaceName(sandboxKey string) string {
	return "docker-" + sandboxKey[strings.LastIndexByte(sandboxKey, '/')+1:]
}

// defaultNetworkName is a Docker network's hostnet network when no
// com.docker.network.windowsshim.networkname names it.
func defaultNetworkName(networkID string) string {
	if len(networkID) > 12 {
		networkID = networkID[:12]
	}
	return "docker-" + networkID
}

// Plugin answers Docker's calls with hostnetd's help.
type Plugin struct {
	D Daemon
	// IsNetNS reports whether path is a mounted network namespace
	// (IsNetNSPath when nil).
	IsNetNS func(path string) bool
	// Poll is how often a joined sandbox is looked at until Docker has
	// mounted its namespace (2 ms when zero); AttachWithin bounds the wait
	// (2 minutes when zero).
	Poll         time.Duration
	AttachWithin time.Duration
	// Timeout bounds one call to hostnetd (60 s when zero).
	Timeout time.Duration
	Log     *slog.Logger

	mu sync.Mutex
	// joins are the endpoints waiting for their sandbox, by Docker
	// endpoint ID: cancel stops the wait, done is closed when it ends.
	joins map[string]*join
	ipam  ipamState
}

type join struct {
	cancel context.CancelFunc
	done   chan struct{}
}

func (p *Plugin) log() *slog.Logger {
	if p.Log == nil {
		return slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	return p.Log
}

func (p *Plugin) ctx(parent context.Context) (context.Context, context.CancelFunc) {
	t := p.Timeout
	if t == 0 {
		t = 60 * time.Second
	}
	return context.WithTimeout(parent, t)
}

// Handler serves the plugin protocol: POST /Plugin.Activate,
// /NetworkDriver.* and /IpamDriver.*.
func (p *Plugin) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("/Plugin.Activate", func(w http.ResponseWriter, r *http.Request) {
		reply(w, http.StatusOK, activateResponse{Implements: []string{"NetworkDriver", "IpamDriver"}})
	})
	driver := map[string]func(context.Context, []byte) (any, error){
		"GetCapabilities":             p.getCapabilities,
		"CreateNetwork":               p.createNetwork,
		"DeleteNetwork":               p.deleteNetwork,
		"AllocateNetwork":             p.allocateNetwork,
		"FreeNetwork":                 p.freeNetwork,
		"CreateEndpoint":              p.createEndpoint,
		"DeleteEndpoint":              p.deleteEndpoint,
		"EndpointOperInfo":            p.endpointOperInfo,
		"Join":                        p.join,
		"Leave":                       p.leave,
		"DiscoverNew":                 p.discover,
		"DiscoverDelete":              p.discover,
		"ProgramExternalConnectivity": p.programExternalConnectivity,
		"RevokeExternalConnectivity":  p.revokeExternalConnectivity,
	}
	for name, fn := range driver {
		mux.Handle("/NetworkDriver."+name, p.method("NetworkDriver."+name, fn, func(err error) any { return driverResponse{Err: err.Error()} }))
	}
	ipam := map[string]func(context.Context, []byte) (any, error){
		"GetCapabilities":         p.ipamCapabilities,
		"GetDefaultAddressSpaces": p.addressSpaces,
		"RequestPool":             p.requestPool,
		"ReleasePool":             p.releasePool,
		"RequestAddress":          p.requestAddress,
		"ReleaseAddress":          p.releaseAddress,
	}
	for name, fn := range ipam {
		// Docker's plugin client reads Err from an answer that is not 200,
		// whatever the protocol calls the field in a 200.
		mux.Handle("/IpamDriver."+name, p.method("IpamDriver."+name, fn, func(err error) any {
			return struct {
				Err   string
				Error string
			}{err.Error(), err.Error()}
		}))
	}
	return mux
}

// contentType is what Docker's plugin client sends and accepts.
const contentType = "application/vnd.docker.plugins.v1.2+json"

// method serves one call: the body to fn (within the plugin's Timeout),
// its answer as JSON; an error as
// a 500 whose body carries it as Docker reads it (never a 404, which
// Docker takes for a method the plugin does not implement).
func (p *Plugin) method(name string, fn func(context.Context, []byte) (any, error), errBody func(error) any) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, err := io.ReadAll(io.LimitReader(r.Body, 1<<20))
		if err != nil {
			reply(w, http.StatusInternalServerError, errBody(fmt.Errorf("hostnet: read the request: %w", err)))
			return
		}
		start := time.Now()
		ctx, cancel := p.ctx(r.Context())
		defer cancel()
		out, err := fn(ctx, body)
		if err != nil {
			p.log().Warn("call failed", "method", name, "error", err, "took", time.Since(start))
			reply(w, http.StatusInternalServerError, errBody(err))
			return
		}
		p.log().Debug("call", "method", name, "took", time.Since(start))
		reply(w, http.StatusOK, out)
	})
}

func reply(w http.ResponseWriter, status int, v any) {
	b, err := json.Marshal(v)
	if err != nil {
		status, b = http.StatusInternalServerError, []byte(`{"Err":"hostnet: encode the answer"}`)
	}
	w.Header().Set("Content-Type", contentType)
	w.WriteHeader(status)
	_, _ = w.Write(b)
}

// decode reads a request body; an empty body (Docker sends none for the
// calls without arguments) is the zero value.
func decode[T any](method string, body []byte) (*T, error) {
	var v T
	if len(strings.TrimSpace(string(body))) == 0 {
		return &v, nil
	}
	if err := json.Unmarshal(body, &v); err != nil {
		return nil, fmt.Errorf("hostnet: %s: the request is not JSON of the plugin protocol: %w", method, err)
	}
	return &v, nil
}

// daemonErr words a failure of hostnetd for Docker, which shows it to the
// user as it is.
func daemonErr(what string, err error) error {
	var apiErr *api.Error
	if errors.As(err, &apiErr) {
		return fmt.Errorf("hostnet: %s: %s", what, apiErr.Message)
	}
	return fmt.Errorf("hostnet: %s: %w", what, err)
}

func (p *Plugin) getCapabilities(context.Context, []byte) (any, error) {
	return capabilitiesResponse{Scope: "local", ConnectivityScope: "local"}, nil
}

// discover takes a discovery notification (a node joined or left a
// cluster); a local driver has nothing to do with it.
func (p *Plugin) discover(_ context.Context, body []byte) (any, error) {
	if _, err := decode[discoveryNotification]("DiscoverNew", body); err != nil {
		return nil, err
	}
	return driverResponse{}, nil
}

// allocateNetwork and freeNetwork are swarm managers' calls, for global
// scope drivers; hostnet's is local: nothing to allocate.
func (p *Plugin) allocateNetwork(_ context.Context, body []byte) (any, error) {
	if _, err := decode[allocateNetworkRequest]("AllocateNetwork", body); err != nil {
		return nil, err
	}
	return allocateNetworkResponse{Options: map[string]string{}}, nil
}

func (p *Plugin) freeNetwork(_ context.Context, body []byte) (any, error) {
	if _, err := decode[networkRequest]("FreeNetwork", body); err != nil {
		return nil, err
	}
	return driverResponse{}, nil
}

// findNetwork returns the hostnet network of a Docker network, nil when
// there is none.
func (p *Plugin) findNetwork(ctx context.Context, dockerID string) (*api.Network, error) {
	nets, err := p.D.ListNetworks(ctx, nil)
	if err != nil {
		return nil, daemonErr("list networks", err)
	}
	want, _ := json.Marshal(dockerID)
	for i := range nets {
		if string(nets[i].Extra[DockerNetworkID]) == string(want) {
			return &nets[i], nil
		}
	}
	return nil, nil
}

// genericOptions are the -o options of `docker network create`, as
// strings.
func genericOptions(opts map[string]any) (map[string]string, error) {
	out := map[string]string{}
	raw, ok := opts[optGeneric]
	if !ok || raw == nil {
		return out, nil
	}
	m, ok := raw.(map[string]any)
	if !ok {
		return nil, fmt.Errorf("hostnet: option %s: %v is not a map of options", optGeneric, raw)
	}
	for k, v := range m {
		switch v := v.(type) {
		case string:
			out[k] = v
		case bool, float64:
			out[k] = fmt.Sprint(v)
		default:
			return nil, fmt.Errorf("hostnet: option %s: %v is not a string", k, v)
		}
	}
	return out, nil
}

// createNetwork makes the hostnet network of a Docker network: NAT unless
// -o hostnet.type names another type the daemon supports; the subnets and
// gateways Docker's IPAM (or hostnet's) gave; the windowsshim options as
// `hostnet network create -o` takes them. Its name is -o
// com.docker.network.windowsshim.networkname, else docker-<ID>.
func (p *Plugin) createNetwork(ctx context.Context, body []byte) (any, error) {
	req, err := decode[createNetworkRequest]("CreateNetwork", body)
	if err != nil {
		return nil, err
	}
	if req.NetworkID == "" {
		return nil, errors.New("hostnet: CreateNetwork: field NetworkID is empty")
	}
	opts, err := genericOptions(req.Options)
	if err != nil {
		return nil, err
	}
	v, err := p.D.Version(ctx)
	if err != nil {
		return nil, daemonErr("ask the daemon what it supports", err)
	}
	typ := api.NAT
	if t, ok := opts[optType]; ok {
		delete(opts, optType)
		if typ, err = supportedType(t, v); err != nil {
			return nil, err
		}
	}
	if internal, _ := req.Options[optInternal].(bool); internal {
		return nil, fmt.Errorf("hostnet: --internal is not supported: a hostnet %s network reaches outside through the host (give -o %s=<type> for another kind of network)", typ, optType)
	}
	n := &api.Network{Name: defaultNetworkName(req.NetworkID), Type: typ, SchemaVersion: api.SchemaVersion{Major: 2, Minor: 0},
		Extra: api.Extra{}}
	if name, ok := opts[winshim.NetworkName]; ok {
		delete(opts, winshim.NetworkName)
		if strings.TrimSpace(name) == "" {
			return nil, fmt.Errorf("hostnet: option %s is empty", winshim.NetworkName)
		}
		n.Name = name
	}
	id, _ := json.Marshal(req.NetworkID)
	n.Extra[DockerNetworkID] = id
	var subnets []api.Subnet
	for _, fam := range []struct {
		data []ipamData
		v6   bool
	}{{req.IPv4Data, false}, {req.IPv6Data, true}} {
		for i, d := range fam.data {
			s, err := subnetOf(d, fam.v6, i)
			if err != nil {
				return nil, err
			}
			subnets = append(subnets, s)
		}
	}
	if len(subnets) > 0 {
		n.Ipams = []api.Ipam{{Type: "Static", Subnets: subnets}}
	}
	if err := winshim.Apply(n, opts, func(note string) { p.log().Info("docker network "+req.NetworkID, "note", note) }); err != nil {
		return nil, fmt.Errorf("hostnet: %w (hostnet takes -o %s too)", err, optType)
	}
	if existing, err := p.findNetwork(ctx, req.NetworkID); err != nil {
		return nil, err
	} else if existing != nil {
		return driverResponse{}, nil // a repeated create
	}
	if _, err := p.D.CreateNetwork(ctx, n); err != nil {
		return nil, daemonErr(fmt.Sprintf("create network %s", n.Name), err)
	}
	return driverResponse{}, nil
}

// supportedType maps -o hostnet.type onto a network type the daemon
// supports, or says which it supports.
func supportedType(t string, v *api.VersionInfo) (api.NetworkType, error) {
	var names []string
	for _, s := range v.Supported.NetworkTypes {
		if strings.EqualFold(string(s), strings.TrimSpace(t)) {
			return s, nil
		}
		names = append(names, strings.ToLower(string(s)))
	}
	sort.Strings(names)
	return "", fmt.Errorf("hostnet: option %s: %q is not a network type this hostnetd supports (it supports %s)", optType, t, strings.Join(names, ", "))
}

// subnetOf is the hostnet subnet of a pool Docker's IPAM gave: its gateway
// is the next hop of the default route.
func subnetOf(d ipamData, v6 bool, i int) (api.Subnet, error) {
	field := fmt.Sprintf("IPv4Data[%d]", i)
	if v6 {
		field = fmt.Sprintf("IPv6Data[%d]", i)
	}
	pool, err := netip.ParsePrefix(d.Pool)
	if err != nil {
		return api.Subnet{}, fmt.Errorf("hostnet: CreateNetwork: field %s.Pool: %q is not a CIDR prefix", field, d.Pool)
	}
	s := api.Subnet{IpAddressPrefix: pool.Masked().String()}
	if d.Gateway != "" {
		gw, err := netip.ParsePrefix(d.Gateway)
		if err != nil {
			return api.Subnet{}, fmt.Errorf("hostnet: CreateNetwork: field %s.Gateway: %q is not an address with its prefix length", field, d.Gateway)
		}
		dst := "0.0.0.0/0"
		if v6 {
			dst = "::/0"
		}
		s.Routes = []api.Route{{DestinationPrefix: dst, NextHop: gw.Addr().String()}}
	}
	return s, nil
}

// deleteNetwork deletes the hostnet network of a Docker network; one
// already gone is no error.
func (p *Plugin) deleteNetwork(ctx context.Context, body []byte) (any, error) {
	req, err := decode[networkRequest]("DeleteNetwork", body)
	if err != nil {
		return nil, err
	}
	n, err := p.findNetwork(ctx, req.NetworkID)
	if err != nil {
		return nil, err
	}
	if n == nil {
		return driverResponse{}, nil
	}
	if err := p.D.DeleteNetwork(ctx, n.ID); err != nil && !api.IsNotFound(err) {
		return nil, daemonErr(fmt.Sprintf("delete network %s", n.Name), err)
	}
	return driverResponse{}, nil
}
