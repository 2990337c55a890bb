package dockerplugin

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/netip"
	"strings"
	"time"

	"github.com/hostnet/hostnet/api"
)

// createEndpoint makes the hostnet endpoint of a Docker endpoint, not
// attached yet: the address Docker's IPAM gave (or one of hostnet's pool),
// the MAC Docker gave (--mac-address) or one of hostnet's, and the
// container's published ports as PortMapping policies, held by hostnet
// (no docker-proxy). It answers the address and MAC Docker did not give.
func (p *Plugin) createEndpoint(ctx context.Context, body []byte) (any, error) {
	req, err := decode[createEndpointRequest]("CreateEndpoint", body)
	if err != nil {
		return nil, err
	}
	if req.EndpointID == "" {
		return nil, errors.New("hostnet: CreateEndpoint: field EndpointID is empty")
	}
	n, err := p.findNetwork(ctx, req.NetworkID)
	if err != nil {
		return nil, err
	}
	if n == nil {
		return nil, fmt.Errorf("hostnet: CreateEndpoint: Docker network %s has no hostnet network (was it removed with `hostnet network rm`?)", req.NetworkID)
	}
	iface := req.Interface
	if iface == nil {
		iface = &endpointInterface{}
	}
	ep := &api.Endpoint{Name: EndpointName(req.EndpointID), HostComputeNetwork: n.ID, SchemaVersion: api.SchemaVersion{Major: 2, Minor: 0}}
	for _, a := range []struct{ field, cidr string }{{"Interface.Address", iface.Address}, {"Interface.AddressIPv6", iface.AddressIPv6}} {
		if a.cidr == "" {
			continue
		}
		pfx, err := netip.ParsePrefix(a.cidr)
		if err != nil {
			return nil, fmt.Errorf("hostnet: CreateEndpoint: field %s: %q is not an address with its prefix length", a.field, a.cidr)
		}
		ep.IpConfigurations = append(ep.IpConfigurations, api.IPConfig{IpAddress: pfx.Addr().String(), PrefixLength: uint8(pfx.Bits())})
	}
	if iface.MacAddress != "" {
		mac, err := api.ParseMAC(iface.MacAddress)
		if err != nil {
			return nil, fmt.Errorf("hostnet: CreateEndpoint: field Interface.MacAddress: %w", err)
		}
		ep.MacAddress = api.FormatMAC(mac)
	}
	bindings, err := portBindings(req.Options)
	if err != nil {
		return nil, err
	}
	if ep.Policies, err = portMappings(bindings); err != nil {
		return nil, err
	}
	made, err := p.D.CreateEndpoint(ctx, ep)
	if api.IsConflict(err) {
		// A repeated create answers with what exists when it is the same.
		if old, getErr := p.D.GetEndpoint(ctx, ep.Name); getErr == nil && old.HostComputeNetwork == n.ID {
			made, err = old, nil
		}
	}
	if err != nil {
		return nil, daemonErr(fmt.Sprintf("create endpoint %s on network %s", ep.Name, n.Name), err)
	}
	var out endpointInterface
	for _, c := range made.IpConfigurations {
		a, err := netip.ParseAddr(c.IpAddress)
		if err != nil {
			continue
		}
		cidr := netip.PrefixFrom(a, int(c.PrefixLength)).String()
		switch {
		case a.Is4() && iface.Address == "" && out.Address == "":
			out.Address = cidr
		case a.Is6() && iface.AddressIPv6 == "" && out.AddressIPv6 == "":
			out.AddressIPv6 = cidr
		}
	}
	if iface.MacAddress == "" && made.MacAddress != "" {
		if mac, err := api.ParseMAC(made.MacAddress); err == nil {
			out.MacAddress = mac.String()
		}
	}
	if out == (endpointInterface{}) {
		return createEndpointResponse{}, nil
	}
	return createEndpointResponse{Interface: &out}, nil
}

// portBindings reads the published ports of a request's Options.
func portBindings(opts map[string]any) ([]portBinding, error) {
	raw, ok := opts[optPortMap]
	if !ok || raw == nil {
		return nil, nil
	}
	b, err := json.Marshal(raw)
	if err != nil {
		return nil, fmt.Errorf("hostnet: option %s: %w", optPortMap, err)
	}
	var out []portBinding
	if err := json.Unmarshal(b, &out); err != nil {
		return nil, fmt.Errorf("hostnet: option %s: %s is not a list of port bindings: %w", optPortMap, b, err)
	}
	return out, nil
}

// portMappings turns published ports into PortMapping policies: the host
// port (the first of a range), on every host address or on HostIP.
func portMappings(bindings []portBinding) ([]api.Policy, error) {
	var out []api.Policy
	for i, b := range bindings {
		field := fmt.Sprintf("%s[%d]", optPortMap, i)
		if b.Proto != 6 && b.Proto != 17 {
			return nil, fmt.Errorf("hostnet: %s: protocol %d: hostnet publishes tcp (6) and udp (17) ports only", field, b.Proto)
		}
		if b.HostPort == 0 {
			return nil, fmt.Errorf("hostnet: %s: container port %d/%s has no host port: hostnet does not pick one (publish it as -p HOSTPORT:%d)",
				field, b.Port, protoName(b.Proto), b.Port)
		}
		s := api.PortMappingSettings{Protocol: uint32(b.Proto), InternalPort: b.Port, ExternalPort: b.HostPort}
		if h := strings.TrimSpace(b.HostIP); h != "" {
			ip, err := netip.ParseAddr(h)
			if err != nil {
				return nil, fmt.Errorf("hostnet: %s: field HostIP: %q is not an address", field, b.HostIP)
			}
			if ip.Is6() && !ip.Is4In6() {
				s.Flags |= 2 // IPv6
			}
			if !ip.IsUnspecified() {
				s.VIP = ip.Unmap().String()
			}
		}
		settings, err := json.Marshal(s)
		if err != nil {
			return nil, err
		}
		out = append(out, api.Policy{Type: api.PortMapping, Settings: settings})
	}
	return out, nil
}

func protoName(p uint8) string {
	switch p {
	case 6:
		return "tcp"
	case 17:
		return "udp"
	}
	return fmt.Sprint(p)
}

// deleteEndpoint deletes the hostnet endpoint (detaching it first), and
// with it its address and published ports; one already gone is no error.
func (p *Plugin) deleteEndpoint(ctx context.Context, body []byte) (any, error) {
	req, err := decode[endpointRequest]("DeleteEndpoint", body)
	if err != nil {
		return nil, err
	}
	p.stopWaiting(req.EndpointID)
	ep, err := p.endpointOf(ctx, req.EndpointID)
	if ep == nil || err != nil {
		return driverResponse{}, err
	}
	ns := ep.HostComputeNamespace
	if err := p.D.DeleteEndpoint(ctx, ep.ID); err != nil && !api.IsNotFound(err) {
		return nil, daemonErr("delete endpoint "+ep.Name, err)
	}
	if ns != "" {
		if err := p.dropEmptyNamespace(ctx, ns); err != nil {
			return nil, err
		}
	}
	return driverResponse{}, nil
}

// endpointOperInfo answers what hostnet knows of the endpoint.
func (p *Plugin) endpointOperInfo(ctx context.Context, body []byte) (any, error) {
	req, err := decode[endpointRequest]("EndpointOperInfo", body)
	if err != nil {
		return nil, err
	}
	ep, err := p.D.GetEndpoint(ctx, EndpointName(req.EndpointID))
	if err != nil {
		return nil, daemonErr("find endpoint "+EndpointName(req.EndpointID), err)
	}
	v := map[string]any{"hostnet.endpoint": ep.ID, "hostnet.hostInterface": ep.HostInterfaceName}
	if ep.HostComputeNamespace != "" {
		v["hostnet.namespace"] = ep.HostComputeNamespace
		v["hostnet.interface"] = ep.InterfaceName
	}
	var ports []string
	for _, pol := range ep.Policies {
		if pol.Type != api.PortMapping {
			continue
		}
		var s api.PortMappingSettings
		if json.Unmarshal(pol.Settings, &s) == nil {
			host := "0.0.0.0"
			if s.VIP != "" {
				host = s.VIP
			}
			ports = append(ports, fmt.Sprintf("%s:%d->%d/%s", host, s.ExternalPort, s.InternalPort, protoName(uint8(s.Protocol))))
		}
	}
	if len(ports) > 0 {
		v["hostnet.published"] = ports
	}
	return operInfoResponse{Value: v}, nil
}

// join attaches the endpoint to the sandbox's network namespace. Docker
// calls Join before the sandbox's namespace exists (it is the container's,
// made by runc and mounted at SandboxKey by Docker when the container
// starts), except for `docker network connect` to a running container.
// When it is there, the endpoint is attached before the answer; else the
// plugin waits for it in the background (Poll, AttachWithin) and attaches
// then. The answer names no interface for Docker to move, no gateway
// (hostnet routes the container) and disables Docker's gateway service.
//
// The consequence: a container's first instructions may run before its
// interface is there (the mount, then the attach, take milliseconds while
// runc goes on). A hand-over of a device to Docker, which hostnet's API
// does not have, would close that window; see the package's doc.
func (p *Plugin) join(ctx context.Context, body []byte) (any, error) {
	req, err := decode[joinRequest]("Join", body)
	if err != nil {
		return nil, err
	}
	if req.SandboxKey == "" || !strings.HasPrefix(req.SandboxKey, "/") {
		return nil, fmt.Errorf("hostnet: Join: field SandboxKey: %q is not the path of a network namespace", req.SandboxKey)
	}
	name := EndpointName(req.EndpointID)
	ep, err := p.D.GetEndpoint(ctx, name)
	if err != nil {
		return nil, daemonErr("find endpoint "+name, err)
	}
	if p.isNetNS(req.SandboxKey) {
		if err := p.attach(ctx, ep.ID, req.SandboxKey); err != nil {
			return nil, err
		}
	} else {
		p.waitAndAttach(req.EndpointID, ep.ID, req.SandboxKey)
	}
	return joinResponse{DisableGatewayService: true}, nil
}

func (p *Plugin) isNetNS(path string) bool {
	if p.IsNetNS != nil {
		return p.IsNetNS(path)
	}
	return IsNetNSPath(path)
}

// waitAndAttach watches the sandbox key until it is a network namespace,
// then attaches the endpoint; Leave or DeleteEndpoint stops it.
func (p *Plugin) waitAndAttach(dockerID, epID, key string) {
	within := p.AttachWithin
	if within == 0 {
		within = 2 * time.Minute
	}
	poll := p.Poll
	if poll == 0 {
		poll = 2 * time.Millisecond
	}
	ctx, cancel := context.WithTimeout(context.Background(), within)
	j := &join{cancel: cancel, done: make(chan struct{})}
	p.mu.Lock()
	if p.joins == nil {
		p.joins = map[string]*join{}
	}
	if old := p.joins[dockerID]; old != nil {
		old.cancel()
	}
	p.joins[dockerID] = j
	p.mu.Unlock()
	go func() {
		defer close(j.done)
		defer cancel()
		defer func() {
			p.mu.Lock()
			if p.joins[dockerID] == j {
				delete(p.joins, dockerID)
			}
			p.mu.Unlock()
		}()
		t := time.NewTicker(poll)
		defer t.Stop()
		start := time.Now()
		for !p.isNetNS(key) {
			select {
			case <-ctx.Done():
				if errors.Is(ctx.Err(), context.DeadlineExceeded) {
					p.log().Warn("the sandbox's namespace did not come: the endpoint stays unattached", "sandbox", key, "endpoint", epID, "waited", within)
				}
				return
			case <-t.C:
			}
		}
		waited := time.Since(start)
		actx, acancel := p.ctx(ctx)
		defer acancel()
		if err := p.attach(actx, epID, key); err != nil {
			p.log().Error("attach to the sandbox", "sandbox", key, "endpoint", epID, "error", err)
			return
		}
		p.log().Debug("attached", "sandbox", key, "endpoint", epID, "waited", waited, "attach", time.Since(start)-waited)
	}()
}

// endpointOf finds the hostnet endpoint of a Docker endpoint: nil, and no
// error, when it is gone (a retried delete, a leave after a crash).
func (p *Plugin) endpointOf(ctx context.Context, dockerID string) (*api.Endpoint, error) {
	ep, err := p.D.GetEndpoint(ctx, EndpointName(dockerID))
	if api.IsNotFound(err) {
		return nil, nil
	}
	if err != nil {
		return nil, daemonErr("find endpoint "+EndpointName(dockerID), err)
	}
	return ep, nil
}

// stopWaiting stops the wait of a Join for its sandbox, if any, and
// returns when it has stopped.
func (p *Plugin) stopWaiting(dockerID string) {
	p.mu.Lock()
	j := p.joins[dockerID]
	p.mu.Unlock()
	if j != nil {
		j.cancel()
		<-j.done
	}
}

// Close stops every wait for a sandbox.
func (p *Plugin) Close() {
	p.mu.Lock()
	var all []*join
	for _, j := range p.joins {
		all = append(all, j)
	}
	p.mu.Unlock()
	for _, j := range all {
		j.cancel()
		<-j.done
	}
}

// attach attaches an endpoint to the namespace object that wraps the
// sandbox's network namespace, making the object when it is missing.
func (p *Plugin) attach(ctx context.Context, epID, key string) error {
	nsName := NamespaceName(key)
	ns, err := p.D.GetNamespace(ctx, nsName)
	if err == nil && ns.NetNamespacePath != key {
		// A leftover of another sandbox of the same name: gone with its
		// endpoints, or in use.
		if len(ns.EndpointIDs()) > 0 {
			return fmt.Errorf("hostnet: namespace %s wraps %s, not the sandbox %s, and has endpoints", nsName, ns.NetNamespacePath, key)
		}
		if err := p.D.DeleteNamespace(ctx, ns.ID); err != nil && !api.IsNotFound(err) {
			return daemonErr("delete the stale namespace "+nsName, err)
		}
		err = api.NotFound("namespace", nsName)
	}
	if api.IsNotFound(err) {
		ns, err = p.D.CreateNamespace(ctx, &api.Namespace{Name: nsName, NetNamespacePath: key, SchemaVersion: api.SchemaVersion{Major: 2, Minor: 0}})
		if api.IsConflict(err) {
			ns, err = p.D.GetNamespace(ctx, nsName) // another network's Join made it
		}
	}
	if err != nil {
		return daemonErr("the namespace of sandbox "+key, err)
	}
	if _, err := p.D.Attach(ctx, ns.ID, epID); err != nil {
		if ep, getErr := p.D.GetEndpoint(ctx, epID); getErr == nil && ep.HostComputeNamespace == ns.ID {
			return nil // attached already
		}
		return daemonErr(fmt.Sprintf("attach endpoint %s to sandbox %s", epID, key), err)
	}
	return nil
}

// leave detaches the endpoint from the sandbox (Docker deletes it after),
// and drops the sandbox's namespace object with its last endpoint.
func (p *Plugin) leave(ctx context.Context, body []byte) (any, error) {
	req, err := decode[endpointRequest]("Leave", body)
	if err != nil {
		return nil, err
	}
	p.stopWaiting(req.EndpointID)
	ep, err := p.endpointOf(ctx, req.EndpointID)
	if ep == nil || err != nil {
		return driverResponse{}, err
	}
	if ep.HostComputeNamespace == "" {
		return driverResponse{}, nil
	}
	if _, err := p.D.Detach(ctx, ep.HostComputeNamespace, ep.ID); err != nil && !api.IsNotFound(err) {
		return nil, daemonErr("detach endpoint "+ep.Name, err)
	}
	if err := p.dropEmptyNamespace(ctx, ep.HostComputeNamespace); err != nil {
		return nil, err
	}
	return driverResponse{}, nil
}

// dropEmptyNamespace deletes a namespace object of the plugin's that has
// no endpoint left (hostnet leaves the Linux namespace, Docker's, alone).
func (p *Plugin) dropEmptyNamespace(ctx context.Context, ref string) error {
	ns, err := p.D.GetNamespace(ctx, ref)
	if api.IsNotFound(err) {
		return nil
	}
	if err != nil {
		return daemonErr("find namespace "+ref, err)
	}
	if !strings.HasPrefix(ns.Name, "docker-") || len(ns.EndpointIDs()) > 0 {
		return nil
	}
	if err := p.D.DeleteNamespace(ctx, ns.ID); err != nil && !api.IsNotFound(err) && !api.IsConflict(err) {
		return daemonErr("delete namespace "+ns.Name, err)
	}
	return nil
}

// programExternalConnectivity publishes the container's ports (Docker
// calls it for the endpoint that gives the sandbox its gateway): the
// mappings of Options not on the endpoint yet are added. As Join names no
// gateway, Docker calls it only if it changes; the ports arrive at
// CreateEndpoint.
func (p *Plugin) programExternalConnectivity(ctx context.Context, body []byte) (any, error) {
	req, err := decode[externalRequest]("ProgramExternalConnectivity", body)
	if err != nil {
		return nil, err
	}
	bindings, err := portBindings(req.Options)
	if err != nil {
		return nil, err
	}
	pols, err := portMappings(bindings)
	if err != nil || len(pols) == 0 {
		return driverResponse{}, err
	}
	if err := p.modifyPolicies(ctx, req.EndpointID, api.RequestAdd, pols); err != nil {
		return nil, err
	}
	return driverResponse{}, nil
}

// revokeExternalConnectivity withdraws the endpoint's published ports.
func (p *Plugin) revokeExternalConnectivity(ctx context.Context, body []byte) (any, error) {
	req, err := decode[endpointRequest]("RevokeExternalConnectivity", body)
	if err != nil {
		return nil, err
	}
	ep, err := p.endpointOf(ctx, req.EndpointID)
	if ep == nil || err != nil {
		return driverResponse{}, err
	}
	var pols []api.Policy
	for _, pol := range ep.Policies {
		if pol.Type == api.PortMapping {
			pols = append(pols, pol)
		}
	}
	if len(pols) == 0 {
		return driverResponse{}, nil
	}
	if err := p.modifyPolicies(ctx, req.EndpointID, api.RequestRemove, pols); err != nil {
		return nil, err
	}
	return driverResponse{}, nil
}

func (p *Plugin) modifyPolicies(ctx context.Context, dockerID string, rt api.RequestType, pols []api.Policy) error {
	settings, err := json.Marshal(map[string]any{"Policies": pols})
	if err != nil {
		return err
	}
	name := EndpointName(dockerID)
	if _, err := p.D.ModifyEndpoint(ctx, name, &api.ModifyRequest{ResourceType: api.ResourcePolicy, RequestType: rt, Settings: settings}); err != nil {
		return daemonErr(fmt.Sprintf("%s the published ports of endpoint %s", strings.ToLower(string(rt)), name), err)
	}
	return nil
}
