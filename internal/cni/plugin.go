package cni

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/containernetworking/cni/pkg/skel"
	"github.com/containernetworking/cni/pkg/types"
	"github.com/hostnet/hostnet/api"
)

// Daemon is the part of hostnetd's API the plugin uses (client.Client
// implements it). Its errors are *api.Error for what the daemon refused.
type Daemon interface {
	Version(ctx context.Context) (*api.VersionInfo, error)
	GetNetwork(ctx context.Context, ref string) (*api.Network, error)
	CreateNetwork(ctx context.Context, n *api.Network) (*api.Network, error)
	GetNamespace(ctx context.Context, ref string) (*api.Namespace, error)
	DeleteNamespace(ctx context.Context, ref string) error
	ListNamespaces(ctx context.Context, filter map[string]string) ([]api.Namespace, error)
	GetEndpoint(ctx context.Context, ref string) (*api.Endpoint, error)
	CreateEndpoint(ctx context.Context, e *api.Endpoint) (*api.Endpoint, error)
	DeleteEndpoint(ctx context.Context, ref string) error
	ListEndpoints(ctx context.Context, filter map[string]string) ([]api.Endpoint, error)
}

// Plugin carries out CNI operations against a daemon. Dial returns the
// daemon of a configuration's socket.
type Plugin struct {
	Dial func(socket string) Daemon
	// Inspect reads an interface inside a network namespace (CHECK);
	// InspectInterface when nil.
	Inspect func(netns, ifname string) (*Interface, error)
	// Timeout bounds one operation; 60 s when zero.
	Timeout time.Duration
}

// session is what every operation starts from: its configuration, the
// daemon it names, and a deadline (Close releases it).
type session struct {
	conf  *Config
	d     Daemon
	ctx   context.Context
	Close context.CancelFunc
}

func (p *Plugin) start(args *skel.CmdArgs) (*session, error) {
	conf, err := ParseConfig(args.StdinData)
	if err != nil {
		return nil, asCNIError(err)
	}
	timeout := p.Timeout
	if timeout == 0 {
		timeout = 60 * time.Second
	}
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	return &session{conf: conf, d: p.Dial(conf.Socket), ctx: ctx, Close: cancel}, nil
}

// Add creates the container's endpoint on the configured network, attached
// to its network namespace, and prints the result in the configuration's
// version. An ADD repeated for the same container and interface answers
// with what exists when it is in the same namespace. A failed ADD leaves
// nothing of its own behind.
func (p *Plugin) Add(args *skel.CmdArgs) error {
	ss, err := p.start(args)
	if err != nil {
		return err
	}
	defer ss.Close()
	conf, d, ctx := ss.conf, ss.d, ss.ctx
	if conf.RawPrevResult != nil {
		return types.NewError(types.ErrInvalidNetworkConfig, "hostnet-cni must be the first plugin of a chain",
			"it creates the container's interface; a plugin before it already returned a result")
	}
	if args.Netns == "" {
		return types.NewError(types.ErrInvalidEnvironmentVariables, "hostnet-cni: CNI_NETNS is empty", "")
	}
	n, spec, err := ensureNetwork(ctx, d, conf)
	if err != nil {
		return asCNIError(err)
	}
	name := EndpointName(conf.Name, args.ContainerID, args.IfName)
	req, err := conf.endpointRequest(args.Args, hasIPv6(spec))
	if err != nil {
		return asCNIError(err)
	}
	ep, err := createAttached(ctx, d, n, args, name, req)
	if api.IsConflict(err) {
		// The interface may exist already (a repeated ADD), or a leftover
		// namespace object of an earlier sandbox may hold the name.
		if existing, getErr := d.GetEndpoint(ctx, name); getErr == nil {
			return p.addAgain(ctx, d, conf, args, existing, n, spec)
		}
		if dropped, dropErr := dropStaleNamespace(ctx, d, args.ContainerID, args.Netns); dropErr != nil {
			return asCNIError(dropErr)
		} else if dropped {
			ep, err = createAttached(ctx, d, n, args, name, req)
		}
	}
	if err != nil {
		return asCNIError(err)
	}
	return types.PrintResult(newResult(ep, spec, n, ep.NetNamespacePath), conf.CNIVersion)
}

// addAgain answers an ADD for an interface that exists already.
func (p *Plugin) addAgain(ctx context.Context, d Daemon, conf *Config, args *skel.CmdArgs, ep *api.Endpoint, n *api.Network, spec *api.NetworkSpec) error {
	if ep.HostComputeNamespace != "" {
		ns, err := d.GetNamespace(ctx, ep.HostComputeNamespace)
		if err != nil {
			return asCNIError(err)
		}
		if ns.NetNamespacePath == args.Netns {
			return types.PrintResult(newResult(ep, spec, n, ns.NetNamespacePath), conf.CNIVersion)
		}
		return types.NewError(types.ErrInternal, fmt.Sprintf("hostnet-cni: container %s already has interface %s on network %s, in namespace %s",
			args.ContainerID, args.IfName, conf.Name, ns.NetNamespacePath), "DEL it first")
	}
	// Not attached: a leftover (detached by hand); start again.
	if err := d.DeleteEndpoint(ctx, ep.ID); err != nil && !api.IsNotFound(err) {
		return asCNIError(err)
	}
	req, err := conf.endpointRequest(args.Args, hasIPv6(spec))
	if err != nil {
		return asCNIError(err)
	}
	made, err := createAttached(ctx, d, n, args, ep.Name, req)
	if err != nil {
		return asCNIError(err)
	}
	return types.PrintResult(newResult(made, spec, n, made.NetNamespacePath), conf.CNIVersion)
}

// createAttached creates the endpoint attached to the container's network
// namespace in one request: the daemon finds the namespace object named
// after the container, or creates it wrapping the runtime's namespace (and
// removes it with the container's last interface).
func createAttached(ctx context.Context, d Daemon, n *api.Network, args *skel.CmdArgs, name string, req *request) (*api.Endpoint, error) {
	ep := &api.Endpoint{Name: name, HostComputeNetwork: n.ID, InterfaceName: args.IfName, MacAddress: req.mac, Dns: req.dns, Policies: req.policies,
		HostComputeNamespace: NamespaceName(args.ContainerID), NetNamespacePath: args.Netns}
	for _, ip := range req.ips {
		addr, bits, err := splitIP(ip)
		if err != nil {
			return nil, err
		}
		ep.IpConfigurations = append(ep.IpConfigurations, api.IPConfig{IpAddress: addr, PrefixLength: bits})
	}
	return d.CreateEndpoint(ctx, ep)
}

// dropStaleNamespace removes the container's namespace object when it
// wraps another network namespace and has no endpoint left (a sandbox of
// the same ID before); dropped says whether it did.
func dropStaleNamespace(ctx context.Context, d Daemon, containerID, netns string) (dropped bool, err error) {
	ns, err := d.GetNamespace(ctx, NamespaceName(containerID))
	if api.IsNotFound(err) {
		return false, nil
	}
	if err != nil {
		return false, err
	}
	if ns.NetNamespacePath == netns {
		return false, nil
	}
	if len(ns.EndpointIDs()) > 0 {
		return false, fmt.Errorf("hostnet-cni: container %s has interfaces in namespace %s already, not in %s", containerID, ns.NetNamespacePath, netns)
	}
	if err := d.DeleteNamespace(ctx, ns.ID); err != nil && !api.IsNotFound(err) {
		return false, err
	}
	return true, nil
}

func splitIP(s string) (string, uint8, error) {
	addr, bits, found := strings.Cut(s, "/")
	if !found {
		return addr, 0, nil
	}
	var n uint8
	if _, err := fmt.Sscanf(bits, "%d", &n); err != nil {
		return "", 0, configErr("ips", "%q is not IP or IP/PREFIXLEN", s)
	}
	return addr, n, nil
}

// ensureNetwork returns the configured network, creating it from the
// configuration's definition when it does not exist.
func ensureNetwork(ctx context.Context, d Daemon, conf *Config) (*api.Network, *api.NetworkSpec, error) {
	n, err := d.GetNetwork(ctx, conf.Network)
	if api.IsNotFound(err) && conf.NetworkDefinition != nil {
		var want *api.Network
		if want, err = conf.NetworkDefinition.network(conf.Network); err != nil {
			return nil, nil, err
		}
		n, err = d.CreateNetwork(ctx, want)
		if api.IsConflict(err) {
			n, err = d.GetNetwork(ctx, conf.Network) // another ADD made it first
		}
	}
	if api.IsNotFound(err) {
		return nil, nil, &NoNetworkError{Network: conf.Network}
	}
	if err != nil {
		return nil, nil, err
	}
	spec, err := api.ParseNetwork(n)
	if err != nil {
		return nil, nil, fmt.Errorf("hostnet-cni: network %q as the daemon returns it: %w", conf.Network, err)
	}
	return n, spec, nil
}

// NoNetworkError is a configured network that does not exist and that the
// configuration does not define.
type NoNetworkError struct{ Network string }

func (e *NoNetworkError) Error() string {
	return fmt.Sprintf("hostnet-cni: network %q does not exist (create it with `hostnet network create`, or give networkDefinition)", e.Network)
}

// Del removes the container's endpoint (its addresses, published ports and
// rules go with it, and the namespace object with the container's last
// interface). What is already gone is no error: the namespace may have
// been deleted, the ADD may never have happened or a DEL may have run.
func (p *Plugin) Del(args *skel.CmdArgs) error {
	ss, err := p.start(args)
	if err != nil {
		return err
	}
	defer ss.Close()
	conf, d, ctx := ss.conf, ss.d, ss.ctx
	if err := d.DeleteEndpoint(ctx, EndpointName(conf.Name, args.ContainerID, args.IfName)); err != nil && !api.IsNotFound(err) {
		return asCNIError(err)
	}
	return nil
}

// dropEmptyNamespace removes a namespace object that holds no endpoint.
func dropEmptyNamespace(ctx context.Context, d Daemon, ref string) error {
	ns, err := d.GetNamespace(ctx, ref)
	if api.IsNotFound(err) {
		return nil
	}
	if err != nil {
		return err
	}
	if len(ns.EndpointIDs()) > 0 {
		return nil
	}
	if err := d.DeleteNamespace(ctx, ns.ID); err != nil && !api.IsNotFound(err) && !api.IsConflict(err) {
		return err
	}
	return nil
}

// GC removes every endpoint of this CNI network whose container and
// interface are not among the valid attachments, then the namespace
// objects left without endpoints.
func (p *Plugin) GC(args *skel.CmdArgs) error {
	ss, err := p.start(args)
	if err != nil {
		return err
	}
	defer ss.Close()
	conf, d, ctx := ss.conf, ss.d, ss.ctx
	valid := map[types.GCAttachment]bool{}
	for _, a := range conf.ValidAttachments {
		valid[a] = true
	}
	eps, err := d.ListEndpoints(ctx, nil)
	if err != nil {
		return asCNIError(err)
	}
	var errs []error
	for _, ep := range eps {
		a, ours := attachmentOf(conf.Name, ep.Name)
		if !ours || valid[a] {
			continue
		}
		if err := d.DeleteEndpoint(ctx, ep.ID); err != nil && !api.IsNotFound(err) {
			errs = append(errs, fmt.Errorf("endpoint %s: %w", ep.Name, err))
		}
	}
	nss, err := d.ListNamespaces(ctx, nil)
	if err != nil {
		return asCNIError(err)
	}
	for _, ns := range nss {
		if strings.HasPrefix(ns.Name, "cni:") && len(ns.EndpointIDs()) == 0 {
			if err := dropEmptyNamespace(ctx, d, ns.ID); err != nil {
				errs = append(errs, fmt.Errorf("namespace %s: %w", ns.Name, err))
			}
		}
	}
	return asCNIError(errors.Join(errs...))
}

// Status answers whether an ADD can work now: the daemon answers, and the
// network exists or the configuration defines it. Otherwise it fails with
// code 50 (the plugin is not available).
func (p *Plugin) Status(args *skel.CmdArgs) error {
	conf, err := ParseConfig(args.StdinData)
	if err != nil {
		return asCNIError(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	d := p.Dial(conf.Socket)
	if _, err := d.Version(ctx); err != nil {
		return types.NewError(types.ErrPluginNotAvailable, "hostnetd is not reachable at "+conf.Socket, err.Error())
	}
	if _, err := d.GetNetwork(ctx, conf.Network); api.IsNotFound(err) && conf.NetworkDefinition == nil {
		return types.NewError(types.ErrPluginNotAvailable, (&NoNetworkError{Network: conf.Network}).Error(), "")
	} else if err != nil && !api.IsNotFound(err) {
		return types.NewError(types.ErrPluginNotAvailable, "hostnetd failed to answer", err.Error())
	}
	return nil
}

// asCNIError gives err the CNI error code that fits it; the daemon's HNS
// code and message go in the details.
func asCNIError(err error) error {
	if err == nil {
		return nil
	}
	var cniErr *types.Error
	if errors.As(err, &cniErr) {
		return cniErr
	}
	var confErr *ConfigError
	if errors.As(err, &confErr) {
		return types.NewError(types.ErrInvalidNetworkConfig, err.Error(), "")
	}
	var noNet *NoNetworkError
	if errors.As(err, &noNet) {
		return types.NewError(types.ErrInvalidNetworkConfig, err.Error(), "")
	}
	var apiErr *api.Error
	if errors.As(err, &apiErr) {
		code := types.ErrInternal
		switch {
		case api.IsConflict(err) && apiErr.Code == api.CodeAddressesExhausted:
			code = types.ErrTryAgainLater
		case apiErr.Status == 400:
			code = types.ErrInvalidNetworkConfig
		}
		return types.NewError(code, "hostnetd: "+apiErr.Message, fmt.Sprintf("HNS error code %#x", uint32(apiErr.Code)))
	}
	return types.NewError(types.ErrInternal, err.Error(), "")
}
