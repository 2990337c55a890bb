// Package api holds hostnet's wire types: the HNS v2 (HCN) JSON documents
// the daemon accepts and answers with, their validation, and the error codes.
// It has no kernel code and imports nothing else of hostnet.
package api

import (
	"encoding/json"
	"time"
)

// APIVersion is the version of hostnet's HTTP API.
var APIVersion = SchemaVersion{Major: 2, Minor: 0}

// SchemaVersion is the HCN schema version of a document; hostnet speaks 2.x.
type SchemaVersion struct {
	Major int `json:"Major"`
	Minor int `json:"Minor"`
}

// Policy is a network, subnet or endpoint policy. Settings are kept as the
// client sent them; they are decoded and checked by type when validated.
type Policy struct {
	Type     PolicyType      `json:"Type"`
	Settings json.RawMessage `json:"Settings,omitempty"`
}

// Route is a route of a subnet or an endpoint.
type Route struct {
	NextHop           string `json:"NextHop,omitempty"`
	DestinationPrefix string `json:"DestinationPrefix,omitempty"`
	Metric            uint16 `json:"Metric,omitempty"`
}

// SubnetFlags are the flags of a subnet.
type SubnetFlags uint32

// SubnetDoNotReserveGatewayAddress lets the gateway address be handed to an endpoint.
const SubnetDoNotReserveGatewayAddress SubnetFlags = 1

// Subnet is one address prefix of a network with its routes and policies.
type Subnet struct {
	IpAddressPrefix string      `json:"IpAddressPrefix,omitempty"`
	Policies        []Policy    `json:"Policies,omitempty"`
	Routes          []Route     `json:"Routes,omitempty"`
	Flags           SubnetFlags `json:"Flags,omitempty"`
	// IpRange (a hostnet extension, Docker's --ip-range) restricts automatic
	// allocation to a sub-prefix of IpAddressPrefix. Static addresses may
	// still be anywhere in the subnet.
	IpRange string `json:"IpRange,omitempty"`
}

// Ipam is an address space of a network.
type Ipam struct {
	Type    string   `json:"Type,omitempty"` // Static or DHCP
	Subnets []Subnet `json:"Subnets,omitempty"`
}

// MacRange is an inclusive range of MAC addresses.
type MacRange struct {
	StartMacAddress string `json:"StartMacAddress,omitempty"`
	EndMacAddress   string `json:"EndMacAddress,omitempty"`
}

// MacPool is where a network's endpoints take their MAC addresses from.
type MacPool struct {
	Ranges []MacRange `json:"Ranges,omitempty"`
}

// DNS is the resolver configuration of a network or endpoint. Older HNS
// clients call the domain Suffix; both spellings are kept.
type DNS struct {
	Domain     string   `json:"Domain,omitempty"`
	Suffix     string   `json:"Suffix,omitempty"`
	Search     []string `json:"Search,omitempty"`
	ServerList []string `json:"ServerList,omitempty"`
	Options    []string `json:"Options,omitempty"`
}

// NetworkFlags are the flags of a network.
type NetworkFlags uint32

// Network flags of the HNS schema.
const (
	NetworkEnableNonPersistent NetworkFlags = 8
	NetworkDisableHostPort     NetworkFlags = 1024
)

// Network is an HCN HostComputeNetwork: a virtual switch with its address
// pools and network policies.
type Network struct {
	ID            string          `json:"ID,omitempty"`
	Name          string          `json:"Name,omitempty"`
	Type          NetworkType     `json:"Type,omitempty"`
	Policies      []Policy        `json:"Policies,omitempty"`
	MacPool       *MacPool        `json:"MacPool,omitempty"`
	Dns           *DNS            `json:"Dns,omitempty"`
	Ipams         []Ipam          `json:"Ipams,omitempty"`
	Flags         NetworkFlags    `json:"Flags"`
	Health        json.RawMessage `json:"Health,omitempty"`
	SchemaVersion SchemaVersion   `json:"SchemaVersion"`

	// BridgeName (read-only, a hostnet extension) is the Linux device that
	// realises the network's switch.
	BridgeName string `json:"BridgeName,omitempty"`
	// AllowHostOverlap (a hostnet extension) lets a NAT network's subnet
	// overlap an address or a route of the host: an isolated subnet that
	// shadows part of the host's. Without it such a subnet is refused.
	// Even with it, the gateway may not be a host address, and the
	// host's addresses inside the subnet are never handed to endpoints.
	AllowHostOverlap bool `json:"AllowHostOverlap,omitempty"`
	// UplinkMode (a hostnet extension, Transparent networks only) says how
	// endpoints sit on the uplink: "Macvlan" (the default, also when
	// empty): each a macvlan of the uplink; "Bridge": the uplink becomes
	// the port of a bridge of the network's, the host's addresses and
	// routes move to that bridge, and endpoints are veth ports of it (a
	// Hyper-V external switch shared with the host). A bridge takes its
	// uplink whole: no other network may use it.
	UplinkMode string `json:"UplinkMode,omitempty"`

	Extra Extra `json:"-"`
}

// Uplink modes of a Transparent network (Network.UplinkMode).
const (
	UplinkMacvlan = "Macvlan"
	UplinkBridge  = "Bridge"
)

type plainNetwork Network

// UnmarshalJSON decodes a network, keeping fields it does not model.
func (n *Network) UnmarshalJSON(b []byte) error {
	return decodeWithExtra(b, (*plainNetwork)(n), &n.Extra)
}

// MarshalJSON encodes a network with the fields it did not model.
func (n Network) MarshalJSON() ([]byte, error) { return encodeWithExtra(plainNetwork(n), n.Extra) }

// IPConfig is an address of an endpoint.
type IPConfig struct {
	IpAddress    string `json:"IpAddress,omitempty"`
	PrefixLength uint8  `json:"PrefixLength,omitempty"`
}

// EndpointFlags are the flags of an endpoint.
type EndpointFlags uint32

// Endpoint flags of the HNS schema.
const (
	EndpointRemote                   EndpointFlags = 1
	EndpointDisableICC               EndpointFlags = 2
	EndpointEnableLowInterfaceMetric EndpointFlags = 8
	EndpointEnableDHCP               EndpointFlags = 32
)

// Endpoint is an HCN HostComputeEndpoint: a virtual NIC with its addresses,
// DNS, routes and policies.
type Endpoint struct {
	ID                 string `json:"ID,omitempty"`
	Name               string `json:"Name,omitempty"`
	HostComputeNetwork string `json:"HostComputeNetwork,omitempty"`
	// HostComputeNamespace, when set at creation, attaches the new endpoint
	// to that namespace in the same request (as HNS does). Afterwards it is
	// read-only: endpoints are attached and detached through a modify
	// request sent to the namespace.
	HostComputeNamespace string          `json:"HostComputeNamespace,omitempty"`
	Policies             []Policy        `json:"Policies,omitempty"`
	IpConfigurations     []IPConfig      `json:"IpConfigurations,omitempty"`
	Dns                  *DNS            `json:"Dns,omitempty"`
	Routes               []Route         `json:"Routes,omitempty"`
	MacAddress           string          `json:"MacAddress,omitempty"`
	Flags                EndpointFlags   `json:"Flags"`
	Health               json.RawMessage `json:"Health,omitempty"`
	SchemaVersion        SchemaVersion   `json:"SchemaVersion"`

	// InterfaceName (a hostnet extension) is the endpoint's device name
	// inside its namespace; when empty, hostnet picks eth0, eth1, ... at
	// attach time and reports it here.
	InterfaceName string `json:"InterfaceName,omitempty"`
	// HostInterfaceName (read-only, a hostnet extension) is the host side
	// of the endpoint: its port on the network's switch.
	HostInterfaceName string `json:"HostInterfaceName,omitempty"`
	// NetNamespacePath (a hostnet extension, at creation only, with
	// HostComputeNamespace) is the Linux network namespace the endpoint's
	// namespace wraps. When no namespace of that name exists, the request
	// creates it, wrapping the path, and it goes with its last endpoint
	// (Namespace.Implicit): a runtime attaches a container in one call.
	// Read back while the endpoint is attached.
	NetNamespacePath string `json:"NetNamespacePath,omitempty"`
	// DnsAliases (a hostnet extension, Docker's --network-alias) are more
	// names the endpoint answers to in its network's embedded DNS, besides
	// its Name (see the AutomaticDNS network policy). Several endpoints
	// may share an alias: it resolves to all of their addresses.
	DnsAliases []string `json:"DnsAliases,omitempty"`
	// DhcpLease (read-only, a hostnet extension) is the lease of an
	// attached endpoint of a network whose addresses come from DHCP (Ipams
	// Type DHCP): its address is the endpoint's IpConfigurations, its
	// gateway the endpoint's default route. Empty while the endpoint holds
	// no lease.
	DhcpLease *DhcpLease `json:"DhcpLease,omitempty"`

	Extra Extra `json:"-"`
}

// DhcpLease is a DHCPv4 lease as hostnet shows and stores it: the address
// granted, with what came with it, and its times (absolute, UTC).
type DhcpLease struct {
	IpAddress    string   `json:"IpAddress"`
	PrefixLength uint8    `json:"PrefixLength"`
	Server       string   `json:"Server"` // the server that granted it (its identifier)
	Gateway      string   `json:"Gateway,omitempty"`
	DnsServers   []string `json:"DnsServers,omitempty"`
	Domain       string   `json:"Domain,omitempty"`
	// Obtained is when the request that got (or last extended) the lease
	// was sent; the client renews from RenewAt (T1), rebinds from RebindAt
	// (T2), and the lease ends at Expires unless extended.
	Obtained time.Time `json:"Obtained"`
	RenewAt  time.Time `json:"RenewAt"`
	RebindAt time.Time `json:"RebindAt"`
	Expires  time.Time `json:"Expires"`
}

type plainEndpoint Endpoint

// UnmarshalJSON decodes an endpoint, keeping fields it does not model.
func (e *Endpoint) UnmarshalJSON(b []byte) error {
	return decodeWithExtra(b, (*plainEndpoint)(e), &e.Extra)
}

// MarshalJSON encodes an endpoint with the fields it did not model.
func (e Endpoint) MarshalJSON() ([]byte, error) { return encodeWithExtra(plainEndpoint(e), e.Extra) }

// Namespace resource types.
const (
	NamespaceResourceContainer NamespaceResourceType = "Container"
	NamespaceResourceEndpoint  NamespaceResourceType = "Endpoint"
)

// NamespaceResource is an endpoint or container attached to a namespace.
type NamespaceResource struct {
	Type NamespaceResourceType `json:"Type"`
	Data json.RawMessage       `json:"Data"`
}

// NamespaceResourceID is the Data of a namespace resource.
type NamespaceResourceID struct {
	ID string `json:"ID"`
}

// EndpointIDs lists the endpoints attached to n, in attach order (a
// resource whose Data does not decode is left out).
func (n *Namespace) EndpointIDs() []string {
	var out []string
	for _, r := range n.Resources {
		if r.Type == NamespaceResourceEndpoint {
			var id NamespaceResourceID
			if err := json.Unmarshal(r.Data, &id); err == nil {
				out = append(out, id.ID)
			}
		}
	}
	return out
}

// Namespace is an HCN HostComputeNamespace: on Linux, a network namespace.
type Namespace struct {
	ID            string              `json:"ID,omitempty"`
	NamespaceId   uint32              `json:"NamespaceId,omitempty"`
	Type          NamespaceType       `json:"Type,omitempty"`
	Resources     []NamespaceResource `json:"Resources,omitempty"`
	SchemaVersion SchemaVersion       `json:"SchemaVersion"`
	ReadyOnCreate bool                `json:"ReadyOnCreate,omitempty"`

	// Name (a hostnet extension) is an optional unique name.
	Name string `json:"Name,omitempty"`
	// NetNamespacePath (a hostnet extension) is the Linux network namespace
	// this object stands for. A client sets it to wrap an existing namespace
	// (a runtime's bind mount, /proc/PID/ns/net); when it is empty, hostnet
	// creates a namespace, bind-mounts it under its run directory and
	// reports the path here.
	NetNamespacePath string `json:"NetNamespacePath,omitempty"`
	// Managed (read-only, a hostnet extension) is true when hostnet created
	// the Linux namespace and so removes it with the object.
	Managed bool `json:"Managed,omitempty"`
	// Implicit (read-only, a hostnet extension) is true when the object was
	// created by an endpoint's creation (Endpoint.NetNamespacePath); it is
	// removed when its last endpoint leaves.
	Implicit bool `json:"Implicit,omitempty"`

	Extra Extra `json:"-"`
}

type plainNamespace Namespace

// UnmarshalJSON decodes a namespace, keeping fields it does not model.
func (n *Namespace) UnmarshalJSON(b []byte) error {
	return decodeWithExtra(b, (*plainNamespace)(n), &n.Extra)
}

// MarshalJSON encodes a namespace with the fields it did not model.
func (n Namespace) MarshalJSON() ([]byte, error) { return encodeWithExtra(plainNamespace(n), n.Extra) }

// ModifyRequest changes part of a network, endpoint or namespace.
type ModifyRequest struct {
	ResourceType ResourceType    `json:"ResourceType,omitempty"`
	RequestType  RequestType     `json:"RequestType,omitempty"`
	Settings     json.RawMessage `json:"Settings,omitempty"`
}

// PolicyRequest is the Settings of a policy modify request.
type PolicyRequest struct {
	Policies []Policy `json:"Policies"`
}

// NamespaceEndpointRequest is the Settings of a namespace modify request
// that attaches or detaches an endpoint.
type NamespaceEndpointRequest struct {
	EndpointId string `json:"EndpointId"`
}

// Query is the HNS query document: Filter is itself a JSON object in a string.
type Query struct {
	SchemaVersion SchemaVersion `json:"SchemaVersion"`
	Flags         uint32        `json:"Flags,omitempty"`
	Filter        string        `json:"Filter,omitempty"`
}

// Supported lists what this build can realise.
type Supported struct {
	NetworkTypes     []NetworkType `json:"NetworkTypes"`
	NetworkPolicies  []PolicyType  `json:"NetworkPolicies"`
	SubnetPolicies   []PolicyType  `json:"SubnetPolicies"`
	EndpointPolicies []PolicyType  `json:"EndpointPolicies"`
}

// VersionInfo answers the version call.
type VersionInfo struct {
	Version       SchemaVersion `json:"Version"`
	SchemaVersion SchemaVersion `json:"SchemaVersion"`
	Build         string        `json:"Build"`
	Supported     Supported     `json:"Supported"`
}
