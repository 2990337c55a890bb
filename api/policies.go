package api

// Settings of the policies hostnet decodes. Field names follow the HCN
// schema; each is decoded strictly (see DecodeSettings).

// PortMappingSettings publishes an endpoint port on the host.
type PortMappingSettings struct {
	Protocol     uint32 `json:"Protocol,omitempty"` // IANA number: 6 TCP, 17 UDP
	InternalPort uint16 `json:"InternalPort,omitempty"`
	ExternalPort uint16 `json:"ExternalPort,omitempty"`
	VIP          string `json:"VIP,omitempty"`
	Flags        uint32 `json:"Flags,omitempty"`
	// CallerHoldsHostPort (a hostnet extension) says that the caller, a
	// container runtime, takes care of the host port itself: it binds it
	// (podman's conmon does, after CNI ADD) or leaves it to its cluster
	// (nerdctl, Kubernetes' hostPort). hostnet then holds no socket on the
	// port, so the caller's own bind succeeds, and it cannot tell whether
	// a host process has the port: such a process's listener is shadowed
	// by the mapping. The mapping still goes with its endpoint, and two
	// endpoints still cannot publish the same host port.
	CallerHoldsHostPort bool `json:"CallerHoldsHostPort,omitempty"`
}

// ACLSettings is a firewall rule of an endpoint (or, as NetworkACL, of every
// endpoint of a network).
type ACLSettings struct {
	Id              string     `json:"Id,omitempty"`
	Protocols       FlexString `json:"Protocols,omitempty"`
	Action          FlexString `json:"Action"`
	Direction       FlexString `json:"Direction"`
	LocalAddresses  string     `json:"LocalAddresses,omitempty"`
	RemoteAddresses string     `json:"RemoteAddresses,omitempty"`
	LocalPorts      FlexString `json:"LocalPorts,omitempty"`
	RemotePorts     FlexString `json:"RemotePorts,omitempty"`
	RuleType        FlexString `json:"RuleType,omitempty"`
	Priority        uint16     `json:"Priority,omitempty"`
}

// FlexString is a setting that clients send as a string or as a number
// (HNS enums, a single port or protocol); a number is kept as its text.
type FlexString string

// UnmarshalJSON accepts a string or a number.
func (f *FlexString) UnmarshalJSON(b []byte) error {
	return decodeEnum(f, enumTable{field: "setting"}, b)
}

// OutboundNATSettings masquerades an endpoint's outbound traffic.
type OutboundNATSettings struct {
	VirtualIP    string   `json:"VirtualIP,omitempty"`
	Exceptions   []string `json:"Exceptions,omitempty"`
	Destinations []string `json:"Destinations,omitempty"`
	Flags        uint32   `json:"Flags,omitempty"`
}

// QOSSettings caps an endpoint's bandwidth, in bytes per second (0:
// unlimited). MaximumOutgoingBandwidthInBytes is HNS's field; the others
// are hostnet's own (what the CNI bandwidth capability asks), left out
// when zero. See ParseQoS.
type QOSSettings struct {
	MaximumOutgoingBandwidthInBytes uint64 `json:"MaximumOutgoingBandwidthInBytes"`
	MaximumIncomingBandwidthInBytes uint64 `json:"MaximumIncomingBandwidthInBytes,omitempty"`
	OutgoingBurstInBytes            uint64 `json:"OutgoingBurstInBytes,omitempty"`
	IncomingBurstInBytes            uint64 `json:"IncomingBurstInBytes,omitempty"`
}

// SDNRouteSettings adds a route to an endpoint.
type SDNRouteSettings struct {
	DestinationPrefix string `json:"DestinationPrefix,omitempty"`
	NextHop           string `json:"NextHop,omitempty"`
	NeedEncap         bool   `json:"NeedEncap,omitempty"`
}

// IsolationSettings is the Settings of the VLAN and VSID subnet policies.
type IsolationSettings struct {
	IsolationId uint32 `json:"IsolationId"`
}

// NetAdapterNameSettings is the Settings of a NetAdapterName network
// policy: the host adapter (uplink) a Transparent, L2Bridge or L2Tunnel
// network puts its endpoints on.
type NetAdapterNameSettings struct {
	NetworkAdapterName string `json:"NetworkAdapterName"`
}
