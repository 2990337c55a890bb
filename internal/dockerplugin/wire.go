package dockerplugin

// The JSON Docker's libnetwork sends to a remote network driver and a
// remote IPAM driver, and what it reads back (moby's
// libnetwork/drivers/remote/api and libnetwork/ipams/remote/api, the
// protocol of docs/remote.md and docs/ipam.md). Field names are Docker's.

// Options Docker puts in the requests.
const (
	// optGeneric holds the -o options of `docker network create`.
	optGeneric = "com.docker.network.generic"
	// optInternal is --internal of `docker network create`.
	optInternal = "com.docker.network.internal"
	// optPortMap holds a container's published ports (-p), in
	// CreateEndpoint's and ProgramExternalConnectivity's Options.
	optPortMap = "com.docker.network.portmap"
	// optType is hostnet's own -o option: the network's HNS type.
	optType = "hostnet.type"

	// ipamRequestType in RequestAddress's Options says what the address is
	// for; ipamGateway: the network's gateway.
	ipamRequestType = "RequestAddressType"
	ipamGateway     = "com.docker.network.gateway"
)

// driverResponse is the error of a network driver's answer.
type driverResponse struct {
	Err string `json:",omitempty"`
}

// activateResponse answers /Plugin.Activate.
type activateResponse struct {
	Implements []string
}

// capabilitiesResponse answers NetworkDriver.GetCapabilities.
type capabilitiesResponse struct {
	Scope             string
	ConnectivityScope string
}

// ipamData is a network's pool as the IPAM driver gave it, with CIDRs.
type ipamData struct {
	AddressSpace string
	Pool         string
	Gateway      string            `json:",omitempty"`
	AuxAddresses map[string]string `json:",omitempty"`
}

// createNetworkRequest is NetworkDriver.CreateNetwork.
type createNetworkRequest struct {
	NetworkID string
	Options   map[string]any
	IPv4Data  []ipamData
	IPv6Data  []ipamData
}

// allocateNetworkRequest is NetworkDriver.AllocateNetwork (swarm managers
// only: a local-scope driver is not asked).
type allocateNetworkRequest struct {
	NetworkID string
	Options   map[string]string
	IPv4Data  []ipamData
	IPv6Data  []ipamData
}

// allocateNetworkResponse answers it.
type allocateNetworkResponse struct {
	Options map[string]string
}

// networkRequest is NetworkDriver.DeleteNetwork and FreeNetwork.
type networkRequest struct {
	NetworkID string
}

// endpointInterface is an endpoint's addresses (CIDRs) and MAC.
type endpointInterface struct {
	Address     string `json:",omitempty"`
	AddressIPv6 string `json:",omitempty"`
	MacAddress  string `json:",omitempty"`
}

// createEndpointRequest is NetworkDriver.CreateEndpoint.
type createEndpointRequest struct {
	NetworkID  string
	EndpointID string
	Interface  *endpointInterface
	Options    map[string]any
}

// createEndpointResponse answers it: only what Docker did not give (it
// refuses a driver that changes an address or MAC it set).
type createEndpointResponse struct {
	Interface *endpointInterface `json:",omitempty"`
}

// endpointRequest is NetworkDriver.DeleteEndpoint, EndpointOperInfo, Leave
// and RevokeExternalConnectivity.
type endpointRequest struct {
	NetworkID  string
	EndpointID string
}

// operInfoResponse answers EndpointOperInfo.
type operInfoResponse struct {
	Value map[string]any
}

// joinRequest is NetworkDriver.Join.
type joinRequest struct {
	NetworkID  string
	EndpointID string
	SandboxKey string
	Options    map[string]any
}

// interfaceName names the host device Docker moves into the sandbox
// (SrcName) and the prefix of its name there.
type interfaceName struct {
	SrcName   string
	DstPrefix string
}

// staticRoute is a route Docker adds in the sandbox.
type staticRoute struct {
	Destination string
	RouteType   int
	NextHop     string `json:",omitempty"`
}

// joinResponse answers Join.
type joinResponse struct {
	InterfaceName         *interfaceName `json:",omitempty"`
	Gateway               string         `json:",omitempty"`
	GatewayIPv6           string         `json:",omitempty"`
	StaticRoutes          []staticRoute  `json:",omitempty"`
	DisableGatewayService bool
}

// externalRequest is NetworkDriver.ProgramExternalConnectivity.
type externalRequest struct {
	NetworkID  string
	EndpointID string
	Options    map[string]any
}

// portBinding is one published port (libnetwork's types.PortBinding):
// Proto is the IANA number, HostPort..HostPortEnd the host's range.
type portBinding struct {
	Proto       uint8
	IP          string
	Port        uint16
	HostIP      string
	HostPort    uint16
	HostPortEnd uint16
}

// discoveryNotification is NetworkDriver.DiscoverNew and DiscoverDelete.
type discoveryNotification struct {
	DiscoveryType int
	DiscoveryData any
}

// ipamResponse is the error of an IPAM driver's answer.
type ipamResponse struct {
	Error string `json:",omitempty"`
}

// ipamCapabilitiesResponse answers IpamDriver.GetCapabilities.
type ipamCapabilitiesResponse struct {
	RequiresMACAddress    bool
	RequiresRequestReplay bool
}

// addressSpacesResponse answers IpamDriver.GetDefaultAddressSpaces.
type addressSpacesResponse struct {
	LocalDefaultAddressSpace  string
	GlobalDefaultAddressSpace string
}

// requestPoolRequest is IpamDriver.RequestPool.
type requestPoolRequest struct {
	AddressSpace string
	Pool         string
	SubPool      string
	Options      map[string]string
	V6           bool
}

// requestPoolResponse answers it.
type requestPoolResponse struct {
	PoolID string
	Pool   string
	Data   map[string]string `json:",omitempty"`
}

// releasePoolRequest is IpamDriver.ReleasePool.
type releasePoolRequest struct {
	PoolID string
}

// requestAddressRequest is IpamDriver.RequestAddress.
type requestAddressRequest struct {
	PoolID  string
	Address string
	Options map[string]string
}

// requestAddressResponse answers it.
type requestAddressResponse struct {
	Address string
	Data    map[string]string `json:",omitempty"`
}

// releaseAddressRequest is IpamDriver.ReleaseAddress.
type releaseAddressRequest struct {
	PoolID  string
	Address string
}
