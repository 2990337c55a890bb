package api

import (
	"bytes"
	"encoding/json"
	"fmt"
	"strconv"
	"strings"
)

// enumTable lists the names of an HNS enum in the order of their numeric
// values: HNS documents carry enums either as names ("NAT") or as numbers (0).
type enumTable struct {
	field string
	names []string
}

// decode turns a JSON string or number into the enum's canonical name. A
// name or number the table does not know is kept verbatim (numbers as their
// decimal text) so that validation can name it in a clear error instead of
// the decoder failing with a generic one.
func (t enumTable) decode(data []byte) (string, error) {
	data = bytes.TrimSpace(data)
	if len(data) == 0 || string(data) == "null" {
		return "", nil
	}
	if data[0] == '"' {
		var s string
		if err := json.Unmarshal(data, &s); err != nil {
			return "", fmt.Errorf("field %s: %w", t.field, err)
		}
		return t.canonical(s), nil
	}
	n, err := strconv.ParseInt(string(data), 10, 64)
	if err != nil {
		return "", fmt.Errorf("field %s: want a name or a number, got %s", t.field, data)
	}
	if n >= 0 && n < int64(len(t.names)) && t.names[n] != "" {
		return t.names[n], nil
	}
	return strconv.FormatInt(n, 10), nil
}

// decodeEnum decodes data into *v as table says (decode): the
// UnmarshalJSON of every enum type.
func decodeEnum[T ~string](v *T, table enumTable, data []byte) error {
	s, err := table.decode(data)
	*v = T(s)
	return err
}

// canonical returns the table's spelling of s when s names one of its values
// (case-insensitively), else s unchanged.
func (t enumTable) canonical(s string) string {
	for _, name := range t.names {
		if name != "" && strings.EqualFold(name, s) {
			return name
		}
	}
	return s
}

// resolveText maps an enum given as text, a name or a number's decimal
// text, onto the table's name; unknown values come back unchanged.
func (t enumTable) resolveText(s string) string {
	if n, err := strconv.Atoi(s); err == nil && n >= 0 && n < len(t.names) && t.names[n] != "" {
		return t.names[n]
	}
	return t.canonical(s)
}

func (t enumTable) known(s string) bool {
	for _, name := range t.names {
		if name != "" && name == s {
			return true
		}
	}
	return false
}

var networkTypes = enumTable{"Type", []string{"NAT", "ICS", "Transparent", "L2Bridge", "L2Tunnel", "Overlay", "Private", "Internal"}}

// NetworkType is the kind of a network, and so the driver that realises it.
type NetworkType string

// The network types of the HNS schema.
const (
	NAT         NetworkType = "NAT"
	ICS         NetworkType = "ICS"
	Transparent NetworkType = "Transparent"
	L2Bridge    NetworkType = "L2Bridge"
	L2Tunnel    NetworkType = "L2Tunnel"
	Overlay     NetworkType = "Overlay"
	Private     NetworkType = "Private"
	Internal    NetworkType = "Internal"
)

// UnmarshalJSON accepts the type by name or by number.
func (t *NetworkType) UnmarshalJSON(b []byte) error {
	return decodeEnum(t, networkTypes, b)
}

// Known reports whether t is one of the schema's network types.
func (t NetworkType) Known() bool { return networkTypes.known(string(t)) }

var namespaceTypes = enumTable{"Type", []string{"Host", "HostDefault", "Guest", "GuestDefault"}}

// NamespaceType says whose network stack a namespace is. On Linux every kind
// is a network namespace; the value is kept for round trips.
type NamespaceType string

// The namespace types of the HNS schema.
const (
	NamespaceHost         NamespaceType = "Host"
	NamespaceHostDefault  NamespaceType = "HostDefault"
	NamespaceGuest        NamespaceType = "Guest"
	NamespaceGuestDefault NamespaceType = "GuestDefault"
)

// UnmarshalJSON accepts the type by name or by number.
func (t *NamespaceType) UnmarshalJSON(b []byte) error {
	return decodeEnum(t, namespaceTypes, b)
}

// Known reports whether t is one of the schema's namespace types.
func (t NamespaceType) Known() bool { return namespaceTypes.known(string(t)) }

var requestTypes = enumTable{"RequestType", []string{"Add", "Remove", "Update", "Refresh"}}

// RequestType is the verb of a modify request.
type RequestType string

// The request types of modify requests.
const (
	RequestAdd     RequestType = "Add"
	RequestRemove  RequestType = "Remove"
	RequestUpdate  RequestType = "Update"
	RequestRefresh RequestType = "Refresh"
)

// UnmarshalJSON accepts the verb by name or by number.
func (t *RequestType) UnmarshalJSON(b []byte) error {
	return decodeEnum(t, requestTypes, b)
}

// ResourceType is the object of a modify request. Its numeric values depend
// on the object the request is sent to, so decoding keeps the raw value and
// the request's target resolves it (see ResolveResourceType).
type ResourceType string

// The resource types of modify requests.
const (
	ResourcePolicy    ResourceType = "Policy"
	ResourceDNS       ResourceType = "DNS"
	ResourceExtension ResourceType = "Extension"
	ResourcePort      ResourceType = "Port"
	ResourceContainer ResourceType = "Container"
	ResourceEndpoint  ResourceType = "Endpoint"
)

// UnmarshalJSON keeps a name as it is and a number as its decimal text.
func (t *ResourceType) UnmarshalJSON(b []byte) error {
	return decodeEnum(t, enumTable{field: "ResourceType"}, b)
}

// The resource types each object accepts, in the order of their numbers.
var (
	networkResources   = enumTable{"ResourceType", []string{"Policy", "DNS", "Extension"}}
	endpointResources  = enumTable{"ResourceType", []string{"Policy", "Port"}}
	namespaceResources = enumTable{"ResourceType", []string{"Container", "Endpoint"}}
)

// resolve maps a raw resource type onto the table of the target object.
func (t ResourceType) resolve(table enumTable) ResourceType {
	return ResourceType(table.resolveText(string(t)))
}

var namespaceResourceTypes = enumTable{"Type", []string{"Container", "Endpoint"}}

// NamespaceResourceType is the kind of a namespace resource.
type NamespaceResourceType string

// UnmarshalJSON accepts the kind by name or by number.
func (t *NamespaceResourceType) UnmarshalJSON(b []byte) error {
	return decodeEnum(t, namespaceResourceTypes, b)
}

// PolicyType names a network, subnet or endpoint policy.
type PolicyType string

// Endpoint policy types of the HNS schema.
const (
	PortMapping         PolicyType = "PortMapping"
	ACL                 PolicyType = "ACL"
	QOS                 PolicyType = "QOS"
	L2Driver            PolicyType = "L2Driver"
	OutBoundNAT         PolicyType = "OutBoundNAT"
	SDNRoute            PolicyType = "SDNRoute"
	L4Proxy             PolicyType = "L4Proxy"
	L4WFPProxy          PolicyType = "L4WFPPROXY"
	PortName            PolicyType = "PortName"
	EncapOverhead       PolicyType = "EncapOverhead"
	ProviderAddress     PolicyType = "ProviderAddress"
	InterfaceConstraint PolicyType = "InterfaceConstraint"
	Iov                 PolicyType = "Iov"
	TierAcl             PolicyType = "TierAcl"
)

// Network policy types of the HNS schema (ProviderAddress and
// InterfaceConstraint apply to both networks and endpoints).
const (
	SourceMacAddress  PolicyType = "SourceMacAddress"
	NetAdapterName    PolicyType = "NetAdapterName"
	VSwitchExtension  PolicyType = "VSwitchExtension"
	DrMacAddress      PolicyType = "DrMacAddress"
	AutomaticDNS      PolicyType = "AutomaticDNS"
	RemoteSubnetRoute PolicyType = "RemoteSubnetRoute"
	VxlanPort         PolicyType = "VxlanPort"
	HostRoute         PolicyType = "HostRoute"
	SetPolicy         PolicyType = "SetPolicy"
	NetworkACL        PolicyType = "NetworkACL"
	LayerConstraint   PolicyType = "LayerConstraint"
)

// Subnet policy types of the HNS schema.
const (
	VLAN PolicyType = "VLAN"
	VSID PolicyType = "VSID"
)

var (
	endpointPolicyTypes = enumTable{"Type", []string{
		"PortMapping", "ACL", "QOS", "L2Driver", "OutBoundNAT", "SDNRoute", "L4Proxy", "L4WFPPROXY",
		"PortName", "EncapOverhead", "ProviderAddress", "InterfaceConstraint", "Iov", "TierAcl"}}
	networkPolicyTypes = enumTable{"Type", []string{
		"SourceMacAddress", "NetAdapterName", "VSwitchExtension", "DrMacAddress", "AutomaticDNS",
		"InterfaceConstraint", "ProviderAddress", "RemoteSubnetRoute", "VxlanPort", "HostRoute",
		"SetPolicy", "NetworkACL", "LayerConstraint", "L4Proxy"}}
	subnetPolicyTypes = enumTable{"Type", []string{"VLAN", "VSID"}}
)

// UnmarshalJSON keeps a name as it is and a number as its decimal text; the
// policy's owner (network, subnet or endpoint) resolves numbers, because
// each owner numbers its policy types differently.
func (t *PolicyType) UnmarshalJSON(b []byte) error {
	return decodeEnum(t, enumTable{field: "Type"}, b)
}

func (t PolicyType) resolve(table enumTable) PolicyType {
	return PolicyType(table.resolveText(string(t)))
}
