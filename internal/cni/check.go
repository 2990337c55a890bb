package cni

import (
	"fmt"
	"net"
	"net/netip"

	"github.com/containernetworking/cni/pkg/skel"
	"github.com/containernetworking/cni/pkg/types"
	types100 "github.com/containernetworking/cni/pkg/types/100"
	"github.com/containernetworking/cni/pkg/version"
	"github.com/hostnet/hostnet/api"
)

// Interface is what CHECK reads of a container's interface.
type Interface struct {
	MAC    net.HardwareAddr
	Up     bool
	Addrs  []netip.Prefix
	Routes []Route // of the main table, through this interface
}

// Route is a route of Interface: Gateway is zero for on-link routes.
type Route struct {
	Dst     netip.Prefix
	Gateway netip.Addr
}

// Check verifies that the container's interface is as ADD left it and as
// hostnet records it: the endpoint exists and is attached to this
// namespace, and inside it the interface has its MAC, is up, carries every
// address of the endpoint and of the previous result, and has its routes.
func (p *Plugin) Check(args *skel.CmdArgs) error {
	ss, err := p.start(args)
	if err != nil {
		return err
	}
	defer ss.Close()
	conf, d, ctx := ss.conf, ss.d, ss.ctx
	if conf.RawPrevResult == nil {
		return types.NewError(types.ErrInvalidNetworkConfig, "hostnet-cni: CHECK needs the result of the ADD (prevResult)", "")
	}
	if err := version.ParsePrevResult(&conf.PluginConf); err != nil {
		return types.NewError(types.ErrDecodingFailure, "hostnet-cni: prevResult: "+err.Error(), "")
	}
	prev, err := types100.NewResultFromResult(conf.PrevResult)
	if err != nil {
		return types.NewError(types.ErrDecodingFailure, "hostnet-cni: prevResult: "+err.Error(), "")
	}
	name := EndpointName(conf.Name, args.ContainerID, args.IfName)
	ep, err := d.GetEndpoint(ctx, name)
	if api.IsNotFound(err) {
		return types.NewError(types.ErrUnknownContainer, fmt.Sprintf("hostnet-cni: no endpoint %s for container %s interface %s", name, args.ContainerID, args.IfName), "")
	}
	if err != nil {
		return asCNIError(err)
	}
	if ep.HostComputeNamespace == "" {
		return checkFailed("endpoint %s is not attached", name)
	}
	ns, err := d.GetNamespace(ctx, ep.HostComputeNamespace)
	if err != nil {
		return asCNIError(err)
	}
	if ns.NetNamespacePath != args.Netns {
		return checkFailed("endpoint %s is attached to namespace %s, not %s", name, ns.NetNamespacePath, args.Netns)
	}
	_, spec, err := ensureNetwork(ctx, d, &Config{Network: ep.HostComputeNetwork})
	if err != nil {
		return asCNIError(err)
	}
	inspect := p.Inspect
	if inspect == nil {
		inspect = InspectInterface
	}
	got, err := inspect(args.Netns, args.IfName)
	if err != nil {
		return checkFailed("interface %s in %s: %v", args.IfName, args.Netns, err)
	}
	return asCNIError(compare(ep, spec, prev, got))
}

// compare checks an interface against the endpoint and the previous result.
func compare(ep *api.Endpoint, spec *api.NetworkSpec, prev *types100.Result, got *Interface) error {
	if want, err := api.ParseMAC(ep.MacAddress); err == nil && got.MAC.String() != want.String() {
		return checkFailed("MAC address is %s, want %s", got.MAC, want)
	}
	if !got.Up {
		return checkFailed("interface is down")
	}
	has := func(p netip.Prefix) bool {
		for _, a := range got.Addrs {
			if a == p {
				return true
			}
		}
		return false
	}
	hasRoute := func(dst netip.Prefix, gw netip.Addr) bool {
		for _, r := range got.Routes {
			if r.Dst == dst && r.Gateway == gw {
				return true
			}
		}
		return false
	}
	want := newResult(ep, spec, &api.Network{}, "")
	for _, ip := range append(want.IPs, prev.IPs...) {
		p, ok := prefixOf(ip.Address)
		if !ok || !has(p) {
			return checkFailed("address %s is missing", ip.Address.String())
		}
	}
	for _, r := range want.Routes {
		dst, _ := prefixOf(r.Dst)
		gw, _ := netip.AddrFromSlice(r.GW)
		if !hasRoute(dst.Masked(), gw.Unmap()) {
			return checkFailed("route %s via %s is missing", dst, r.GW)
		}
	}
	return nil
}

func prefixOf(n net.IPNet) (netip.Prefix, bool) {
	a, ok := netip.AddrFromSlice(n.IP)
	if !ok {
		return netip.Prefix{}, false
	}
	ones, _ := n.Mask.Size()
	return netip.PrefixFrom(a.Unmap(), ones), true
}

func checkFailed(format string, args ...any) error {
	return types.NewError(types.ErrInternal, "hostnet-cni: CHECK: "+fmt.Sprintf(format, args...), "")
}
