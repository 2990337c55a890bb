// Package cni is hostnet's CNI plugin: it turns the CNI operations of a
// container runtime (ADD, DEL, CHECK, GC, STATUS of spec 1.1.0, and the
// versions before it back to 0.3.0) into calls to hostnetd, which does the
// work. The plugin keeps no state of its own: what it made is named after
// the container (see EndpointName), so every operation can be answered from
// the daemon alone, after crashes and reboots too.
package cni

import (
	"encoding/json"
	"fmt"
	"net"
	"net/netip"
	"sort"
	"strings"

	"github.com/containernetworking/cni/pkg/types"
	"github.com/hostnet/hostnet/api"
)

// DefaultSocket is where hostnetd listens unless the configuration says.
const DefaultSocket = "/run/hostnet/hostnet.sock"

// Config is hostnet-cni's network configuration: the CNI fields, hostnet's
// own, and the fields of the Windows CNI plugins that mean something here.
//
//	{"cniVersion": "1.1.0", "name": "pods", "type": "hostnet-cni",
//	 "network": "nat", "socket": "/run/hostnet/hostnet.sock",
//	 "networkDefinition": {"type": "NAT", "subnet": "10.88.0.0/16", "gateway": "10.88.0.1"},
//	 "capabilities": {"portMappings": true, "ips": true, "mac": true, "dns": true}}
type Config struct {
	types.PluginConf

	// Socket is hostnetd's unix socket; DefaultSocket when empty.
	Socket string `json:"socket,omitempty"`
	// Network is the hostnet network to join, by name or ID; the CNI
	// network's name when empty.
	Network string `json:"network,omitempty"`
	// NetworkDefinition, when set, lets the first ADD create the network
	// if it does not exist yet.
	NetworkDefinition *NetworkDefinition `json:"networkDefinition,omitempty"`
	// Policies are HCN endpoint policies given to every endpoint.
	Policies []api.Policy `json:"policies,omitempty"`

	// RuntimeConfig carries the capability arguments of the runtime.
	RuntimeConfig RuntimeConfig `json:"runtimeConfig,omitempty"`

	// The Windows CNI plugins' fields. AdditionalArgs entries named
	// EndpointPolicy are endpoint policies (HCN v2 objects, or the v1
	// forms of OutBoundNAT, ROUTE and ACL); OptionalFlags are accepted
	// when they mean something on Linux; IPAM's subnet and routes' GW
	// define the network like NetworkDefinition; Master is ignored.
	AdditionalArgs []AdditionalArg  `json:"AdditionalArgs,omitempty"`
	OptionalFlags  map[string]bool  `json:"optionalFlags,omitempty"`
	WindowsIPAM    *WindowsIPAM     `json:"ipam,omitempty"`
	Master         string           `json:"master,omitempty"`
	Args           *ConventionalArg `json:"args,omitempty"`
}

// NetworkDefinition is a network for the first ADD to create.
type NetworkDefinition struct {
	Type    api.NetworkType `json:"type,omitempty"` // NAT when empty
	Subnet  string          `json:"subnet,omitempty"`
	Gateway string          `json:"gateway,omitempty"`
	// Subnets gives more than one (one per family for NAT networks).
	Subnets []SubnetDefinition `json:"subnets,omitempty"`
}

// SubnetDefinition is one subnet of a NetworkDefinition.
type SubnetDefinition struct {
	Subnet  string `json:"subnet"`
	Gateway string `json:"gateway,omitempty"`
}

// RuntimeConfig holds the capability arguments hostnet-cni understands.
type RuntimeConfig struct {
	PortMappings []PortMapping   `json:"portMappings,omitempty"`
	IPs          []string        `json:"ips,omitempty"`
	MAC          string          `json:"mac,omitempty"`
	DNS          *RuntimeDNS     `json:"dns,omitempty"`
	Bandwidth    json.RawMessage `json:"bandwidth,omitempty"`
}

// PortMapping is the portMappings capability's element.
type PortMapping struct {
	HostPort      int    `json:"hostPort"`
	ContainerPort int    `json:"containerPort"`
	Protocol      string `json:"protocol,omitempty"`
	HostIP        string `json:"hostIP,omitempty"`
}

// RuntimeDNS is the dns capability's value.
type RuntimeDNS struct {
	Servers  []string `json:"servers,omitempty"`
	Searches []string `json:"searches,omitempty"`
	Options  []string `json:"options,omitempty"`
	Domain   string   `json:"domain,omitempty"`
}

// AdditionalArg is an entry of the Windows plugins' AdditionalArgs.
type AdditionalArg struct {
	Name  string          `json:"Name"`
	Value json.RawMessage `json:"Value"`
}

// WindowsIPAM is the ipam section as the Windows plugins write it: hostnet
// assigns addresses itself, so only a subnet and its gateway are read.
type WindowsIPAM struct {
	Type   string `json:"type,omitempty"`
	Subnet string `json:"subnet,omitempty"`
	Routes []struct {
		GW string `json:"GW"`
	} `json:"routes,omitempty"`
	Environment string `json:"environment,omitempty"`
}

// ConventionalArg is the "args" section of the CNI conventions:
// args.cni.ips and args.cni.mac.
type ConventionalArg struct {
	CNI struct {
		IPs []string `json:"ips,omitempty"`
		MAC string   `json:"mac,omitempty"`
	} `json:"cni"`
}

// Windows optional flags, and why each is accepted.
var optionalFlags = map[string]string{
	"localRoutedPortMapping":      "published ports are always reachable from the host itself",
	"allowAclPortMapping":         "ACLs always apply to traffic through published ports",
	"enableDualStack":             "a network with an IPv6 subnet gives endpoints both families",
	"gatewayFromAdditionalRoutes": "the ipam routes' GW is the gateway of a network the first ADD creates",
}

// ConfigError is a configuration hostnet-cni refuses; it names the field.
type ConfigError struct {
	Field string
	Msg   string
}

func (e *ConfigError) Error() string { return fmt.Sprintf("hostnet-cni: field %s: %s", e.Field, e.Msg) }

func configErr(field, format string, args ...any) error {
	return &ConfigError{Field: field, Msg: fmt.Sprintf(format, args...)}
}

// ParseConfig decodes and checks a network configuration. It refuses what
// hostnet-cni cannot honour rather than ignoring it.
func ParseConfig(stdin []byte) (*Config, error) {
	c := &Config{}
	if err := json.Unmarshal(stdin, c); err != nil {
		return nil, fmt.Errorf("hostnet-cni: decode the network configuration: %w", err)
	}
	if c.Socket == "" {
		c.Socket = DefaultSocket
	}
	if c.Network == "" {
		c.Network = c.Name
	}
	if c.Network == "" {
		return nil, configErr("network", "empty, and so is name")
	}
	if ipam := c.WindowsIPAM; ipam != nil {
		if ipam.Type != "" {
			return nil, configErr("ipam.type", "%q: hostnet assigns addresses itself; give no ipam section, or only ipam.subnet", ipam.Type)
		}
		if ipam.Subnet != "" && c.NetworkDefinition == nil {
			def := &NetworkDefinition{Type: api.NAT, Subnet: ipam.Subnet}
			if len(ipam.Routes) > 0 {
				def.Gateway = ipam.Routes[0].GW
			}
			c.NetworkDefinition = def
		}
	}
	var names []string
	for name := range c.OptionalFlags {
		names = append(names, name)
	}
	sort.Strings(names)
	for _, name := range names {
		if _, ok := optionalFlags[name]; !ok && c.OptionalFlags[name] {
			return nil, configErr("optionalFlags."+name, "has no meaning on Linux (accepted: %s)", strings.Join(knownFlags(), ", "))
		}
	}
	if _, err := bandwidthPolicy(c.RuntimeConfig.Bandwidth); err != nil {
		return nil, err
	}
	for i, p := range c.RuntimeConfig.PortMappings {
		if err := checkPortMapping(p); err != nil {
			return nil, configErr(fmt.Sprintf("runtimeConfig.portMappings[%d]", i), "%v", err)
		}
	}
	for i, a := range c.AdditionalArgs {
		if _, err := additionalPolicy(a); err != nil {
			return nil, configErr(fmt.Sprintf("AdditionalArgs[%d]", i), "%v", err)
		}
	}
	return c, nil
}

func knownFlags() []string {
	var out []string
	for name := range optionalFlags {
		out = append(out, name)
	}
	sort.Strings(out)
	return out
}

func checkPortMapping(p PortMapping) error {
	if p.HostPort < 1 || p.HostPort > 65535 {
		return fmt.Errorf("hostPort %d is not a port", p.HostPort)
	}
	if p.ContainerPort < 1 || p.ContainerPort > 65535 {
		return fmt.Errorf("containerPort %d is not a port", p.ContainerPort)
	}
	if _, err := protocolNumber(p.Protocol); err != nil {
		return err
	}
	if p.HostIP != "" {
		if _, err := netip.ParseAddr(p.HostIP); err != nil {
			return fmt.Errorf("hostIP %q is not an IP address", p.HostIP)
		}
	}
	return nil
}

func protocolNumber(p string) (uint32, error) {
	switch strings.ToLower(p) {
	case "", "tcp":
		return api.ProtoTCP, nil
	case "udp":
		return api.ProtoUDP, nil
	}
	return 0, fmt.Errorf("protocol %q is not tcp or udp", p)
}

// EndpointName is the name of the endpoint hostnet-cni makes for a
// container's interface on a CNI network: "cni:NETWORK:CONTAINERID:IFNAME".
// Neither CNI network names nor container IDs nor interface names contain
// ':', so the name says whose it is and can be taken apart again.
func EndpointName(network, containerID, ifname string) string {
	return "cni:" + network + ":" + containerID + ":" + ifname
}

// endpointPrefix starts the names of the endpoints of a CNI network.
func endpointPrefix(network string) string { return "cni:" + network + ":" }

// attachmentOf takes an endpoint name of network apart; ok is false when
// it is not one of hostnet-cni's for that network.
func attachmentOf(network, name string) (a types.GCAttachment, ok bool) {
	rest, found := strings.CutPrefix(name, endpointPrefix(network))
	if !found {
		return a, false
	}
	i := strings.LastIndexByte(rest, ':')
	if i <= 0 || i == len(rest)-1 {
		return a, false
	}
	return types.GCAttachment{ContainerID: rest[:i], IfName: rest[i+1:]}, true
}

// NamespaceName is the name of the namespace object that wraps a
// container's network namespace; every interface of the container shares
// it.
func NamespaceName(containerID string) string { return "cni:" + containerID }

// request is what an ADD asks hostnet for, from the configuration, the
// capability arguments and CNI_ARGS.
type request struct {
	ips      []string
	mac      string
	dns      *api.DNS
	policies []api.Policy
}

// endpointRequest gathers what the endpoint of an ADD gets. dualStack
// tells whether the network has an IPv6 subnet, so that a mapping without
// a host IP is published on both families, as the portmap plugin does.
func (c *Config) endpointRequest(cniArgs string, dualStack bool) (*request, error) {
	r := &request{mac: c.RuntimeConfig.MAC}
	r.ips = append(r.ips, c.RuntimeConfig.IPs...)
	if c.Args != nil {
		r.ips = append(r.ips, c.Args.CNI.IPs...)
		if r.mac == "" {
			r.mac = c.Args.CNI.MAC
		}
	}
	args, err := parseCNIArgs(cniArgs)
	if err != nil {
		return nil, err
	}
	if v := args["IP"]; v != "" && len(r.ips) == 0 {
		r.ips = strings.Split(v, ",")
	}
	if r.ips, err = uniqueIPs(r.ips); err != nil {
		return nil, err
	}
	if v := args["MAC"]; v != "" && r.mac == "" {
		r.mac = v
	}
	if r.mac != "" {
		if _, err := net.ParseMAC(r.mac); err != nil {
			return nil, configErr("mac", "%q is not a MAC address", r.mac)
		}
	}
	r.dns = c.dns()
	for _, p := range c.RuntimeConfig.PortMappings {
		r.policies = append(r.policies, portMappingPolicies(p, dualStack)...)
	}
	r.policies = append(r.policies, c.Policies...)
	if p, _ := bandwidthPolicy(c.RuntimeConfig.Bandwidth); p != nil { // checked by ParseConfig
		r.policies = append(r.policies, *p)
	}
	for _, a := range c.AdditionalArgs {
		p, _ := additionalPolicy(a) // checked by ParseConfig
		if p != nil {
			r.policies = append(r.policies, *p)
		}
	}
	return r, nil
}

// uniqueIPs drops the repeats of an address from the requested ones, with
// or without a prefix length ("10.88.0.5" and "10.88.0.5/16" are one):
// `podman network reload` sends the container's address twice, as its
// static address and as the one it had. The same address with two prefix
// lengths is refused.
func uniqueIPs(ips []string) ([]string, error) {
	var out []string
	seen := map[netip.Addr]int{} // the address's index in out
	for _, s := range ips {
		addr, bits, err := splitIP(s)
		if err != nil {
			return nil, err
		}
		a, err := netip.ParseAddr(addr)
		if err != nil {
			return nil, configErr("ips", "%q is not IP or IP/PREFIXLEN", s)
		}
		a = a.Unmap()
		i, dup := seen[a]
		if !dup {
			seen[a] = len(out)
			out = append(out, s)
			continue
		}
		_, had, _ := splitIP(out[i])
		switch {
		case bits == had || bits == 0:
		case had == 0:
			out[i] = s // keep the one that says its prefix length
		default:
			return nil, configErr("ips", "%s is asked for with prefix lengths %d and %d", a, had, bits)
		}
	}
	return out, nil
}

// dns is the endpoint's DNS: the runtime's (the dns capability), else the
// configuration's, else none (the network's applies).
func (c *Config) dns() *api.DNS {
	if d := c.RuntimeConfig.DNS; d != nil && (len(d.Servers) > 0 || len(d.Searches) > 0 || d.Domain != "") {
		return &api.DNS{ServerList: d.Servers, Search: d.Searches, Options: d.Options, Domain: d.Domain}
	}
	if d := c.DNS; !d.IsEmpty() {
		return &api.DNS{ServerList: d.Nameservers, Search: d.Search, Options: d.Options, Domain: d.Domain}
	}
	return nil
}

// parseCNIArgs parses CNI_ARGS ("K1=V1;K2=V2"); keys other than IP and MAC
// (K8S_POD_NAME and the like) are the runtime's business, not ours.
func parseCNIArgs(s string) (map[string]string, error) {
	out := map[string]string{}
	if s == "" {
		return out, nil
	}
	for _, kv := range strings.Split(s, ";") {
		k, v, ok := strings.Cut(kv, "=")
		if !ok {
			return nil, &ConfigError{Field: "CNI_ARGS", Msg: fmt.Sprintf("%q is not KEY=VALUE", kv)}
		}
		out[k] = v
	}
	return out, nil
}

// portMappingPolicies are the PortMapping policies of a portMappings
// element. The runtime holds their host ports (podman's conmon binds each
// after ADD; containerd and Kubernetes leave them to the host), so hostnet
// keeps no socket on them: one would make podman's bind fail.
func portMappingPolicies(p PortMapping, dualStack bool) []api.Policy {
	proto, _ := protocolNumber(p.Protocol)
	s := api.PortMappingSettings{Protocol: proto, InternalPort: uint16(p.ContainerPort), ExternalPort: uint16(p.HostPort), CallerHoldsHostPort: true}
	if p.HostIP != "" {
		a, _ := netip.ParseAddr(p.HostIP)
		if a.IsUnspecified() {
			// 0.0.0.0 or :: means every address of that family.
			if a.Is6() {
				s.Flags |= api.PortMappingIPv6
			}
			return []api.Policy{policy(api.PortMapping, s)}
		}
		s.VIP = a.String()
		if a.Is6() {
			s.Flags |= api.PortMappingIPv6
		}
		return []api.Policy{policy(api.PortMapping, s)}
	}
	out := []api.Policy{policy(api.PortMapping, s)}
	if dualStack {
		s.Flags |= api.PortMappingIPv6
		out = append(out, policy(api.PortMapping, s))
	}
	return out
}

func policy(t api.PolicyType, settings any) api.Policy {
	b, _ := json.Marshal(settings)
	return api.Policy{Type: t, Settings: b}
}

// additionalPolicy turns an AdditionalArgs entry into an endpoint policy.
// HCN v2 objects ({"Type", "Settings"}) pass as they are; the v1 forms the
// Windows plugins' examples use are translated: OutBoundNAT's ExceptionList,
// ROUTE (an SDNRoute), and ACL (whose v1 fields are the v2 settings).
func additionalPolicy(a AdditionalArg) (*api.Policy, error) {
	if a.Name != "EndpointPolicy" {
		return nil, fmt.Errorf("the Name %q is not supported (only EndpointPolicy)", a.Name)
	}
	var v map[string]json.RawMessage
	if err := json.Unmarshal(a.Value, &v); err != nil {
		return nil, fmt.Errorf("the Value is not a policy object: %v", err)
	}
	var typ string
	if err := json.Unmarshal(v["Type"], &typ); err != nil || typ == "" {
		return nil, fmt.Errorf("the Value has no Type")
	}
	if settings, ok := v["Settings"]; ok {
		return &api.Policy{Type: api.PolicyType(typ), Settings: settings}, nil
	}
	delete(v, "Type")
	switch strings.ToUpper(typ) {
	case "OUTBOUNDNAT":
		var s api.OutboundNATSettings
		if raw, ok := v["ExceptionList"]; ok {
			if err := json.Unmarshal(raw, &s.Exceptions); err != nil {
				return nil, fmt.Errorf("the Value's ExceptionList: %v", err)
			}
		}
		if raw, ok := v["VIP"]; ok {
			_ = json.Unmarshal(raw, &s.VirtualIP)
		}
		p := policy(api.OutBoundNAT, s)
		return &p, nil
	case "ROUTE":
		var s api.SDNRouteSettings
		_ = json.Unmarshal(v["DestinationPrefix"], &s.DestinationPrefix)
		_ = json.Unmarshal(v["NeedEncap"], &s.NeedEncap)
		p := policy(api.SDNRoute, s)
		return &p, nil
	case "ACL":
		b, _ := json.Marshal(v)
		return &api.Policy{Type: api.ACL, Settings: b}, nil
	}
	return nil, fmt.Errorf("the Value, a v1 %s policy, has no Linux meaning; give it in the HCN v2 form {\"Type\", \"Settings\"}", typ)
}

// network returns the network document the definition asks for.
func (d *NetworkDefinition) network(name string) (*api.Network, error) {
	n := &api.Network{Name: name, Type: d.Type}
	if n.Type == "" {
		n.Type = api.NAT
	}
	subnets := d.Subnets
	if d.Subnet != "" {
		subnets = append([]SubnetDefinition{{Subnet: d.Subnet, Gateway: d.Gateway}}, subnets...)
	}
	ipam := api.Ipam{}
	for i, s := range subnets {
		p, err := netip.ParsePrefix(s.Subnet)
		if err != nil {
			return nil, configErr(fmt.Sprintf("networkDefinition.subnets[%d].subnet", i), "%q is not a CIDR prefix", s.Subnet)
		}
		sub := api.Subnet{IpAddressPrefix: p.String()}
		if s.Gateway != "" {
			dst := "0.0.0.0/0"
			if p.Addr().Is6() {
				dst = "::/0"
			}
			sub.Routes = []api.Route{{NextHop: s.Gateway, DestinationPrefix: dst}}
		}
		ipam.Subnets = append(ipam.Subnets, sub)
	}
	if len(ipam.Subnets) > 0 {
		n.Ipams = []api.Ipam{ipam}
	}
	return n, nil
}
