package api

import (
	"fmt"
	"net/netip"
	"strings"
)

// HostComputeRoute is an HCN route object (hcsshim's hcn.HostComputeRoute):
// routes, each a DestinationPrefix through a NextHop, put inside the
// namespace of each endpoint it lists. HCN has no modify for routes: a
// client changes one by deleting it and creating it again.
type HostComputeRoute struct {
	ID string `json:"ID,omitempty"`
	// HostComputeEndpoints are the endpoints (IDs; a name is taken at
	// creation and stored as the ID) whose namespaces get the routes.
	HostComputeEndpoints []string           `json:"HostComputeEndpoints,omitempty"`
	Setting              []SDNRouteSettings `json:"Setting,omitempty"`
	SchemaVersion        SchemaVersion      `json:"SchemaVersion"`
	Flags                uint32             `json:"Flags,omitempty"`

	Extra Extra `json:"-"`
}

type plainRoute HostComputeRoute

// UnmarshalJSON decodes a route, keeping fields it does not model.
func (r *HostComputeRoute) UnmarshalJSON(b []byte) error {
	return decodeWithExtra(b, (*plainRoute)(r), &r.Extra)
}

// MarshalJSON encodes a route with the fields it did not model.
func (r HostComputeRoute) MarshalJSON() ([]byte, error) {
	return encodeWithExtra(plainRoute(r), r.Extra)
}

// MaxRouteEndpoints bounds the endpoints one route object lists.
const MaxRouteEndpoints = 1024

func invalidRoute(field, format string, args ...any) *Error {
	return Invalid(CodeInvalidPolicy, "invalid route: field %s: %s", field, fmt.Sprintf(format, args...))
}

// ParseRoute validates a route object on its own and returns its routes,
// in the order of Setting. What depends on its endpoints (that they
// exist, that each next hop is on one of their subnets) is checked by the
// service.
func ParseRoute(r *HostComputeRoute) ([]RouteSpec, error) {
	if err := CheckSchemaVersion(r.SchemaVersion); err != nil {
		return nil, err
	}
	if r.Flags != 0 {
		return nil, invalidRoute("Flags", "unknown flags %#x (none are defined)", r.Flags)
	}
	if k, err := checkVerbatim(nil, r.Extra); err != nil {
		return nil, invalidRoute(k, "%v", err)
	}
	if len(r.HostComputeEndpoints) == 0 {
		return nil, invalidRoute("HostComputeEndpoints", "required: the endpoints whose namespaces get the routes")
	}
	if len(r.HostComputeEndpoints) > MaxRouteEndpoints {
		return nil, invalidRoute("HostComputeEndpoints", "%d endpoints (at most %d)", len(r.HostComputeEndpoints), MaxRouteEndpoints)
	}
	seen := make(map[string]int, len(r.HostComputeEndpoints))
	for i, ref := range r.HostComputeEndpoints {
		field := fmt.Sprintf("HostComputeEndpoints[%d]", i)
		if ref == "" || len(ref) > MaxNameLen {
			return nil, invalidRoute(field, "%q is no endpoint ID or name", ref)
		}
		if j, dup := seen[ref]; dup {
			return nil, invalidRoute(field, "%q is listed twice (also HostComputeEndpoints[%d])", ref, j)
		}
		seen[ref] = i
	}
	if len(r.Setting) == 0 {
		return nil, invalidRoute("Setting", "required: at least one route (DestinationPrefix, NextHop)")
	}
	if len(r.Setting) > MaxEndpointRoutes {
		return nil, invalidRoute("Setting", "%d routes (at most %d)", len(r.Setting), MaxEndpointRoutes)
	}
	out := make([]RouteSpec, 0, len(r.Setting))
	dsts := map[netip.Prefix]int{}
	for i, s := range r.Setting {
		field := fmt.Sprintf("Setting[%d]", i)
		rs, err := ParseSDNRouteSetting(s)
		if err != nil && err.Unsupported {
			return nil, Unsupported("invalid route: field %s.%s: %s", field, err.Field, err.Problem)
		}
		if err != nil {
			return nil, invalidRoute(field+"."+err.Field, "%s", err.Problem)
		}
		if j, dup := dsts[rs.Dst]; dup {
			return nil, invalidRoute(field+".DestinationPrefix", "%s is routed twice (also by Setting[%d])", rs.Dst, j)
		}
		dsts[rs.Dst] = i
		out = append(out, rs)
	}
	return out, nil
}

// SettingError is a refused field of an SDN route setting: the field
// (DestinationPrefix, NextHop, NeedEncap) and what is wrong with it.
type SettingError struct {
	Field   string
	Problem string
	// Unsupported: the setting is valid but this build cannot realise it.
	Unsupported bool
}

func (e *SettingError) Error() string { return "field " + e.Field + ": " + e.Problem }

// ParseSDNRouteSetting parses one SDN route (a route object's Setting
// entry, or an SDNRoute policy's Settings). NeedEncap is refused: an
// encapsulated route needs an Overlay network, which this build does not
// have.
func ParseSDNRouteSetting(s SDNRouteSettings) (RouteSpec, *SettingError) {
	if s.NeedEncap {
		return RouteSpec{}, &SettingError{Field: "NeedEncap", Unsupported: true,
			Problem: "encapsulated routes need an Overlay network, which this build does not support"}
	}
	dst, err := ParsePrefix(s.DestinationPrefix)
	if err != nil {
		return RouteSpec{}, &SettingError{Field: "DestinationPrefix", Problem: err.Error()}
	}
	r := RouteSpec{Dst: dst}
	if s.NextHop != "" {
		nh, err := ParseAddr(s.NextHop)
		if err != nil {
			return RouteSpec{}, &SettingError{Field: "NextHop", Problem: err.Error()}
		}
		if nh.Is4() != dst.Addr().Is4() {
			return RouteSpec{}, &SettingError{Field: "NextHop", Problem: fmt.Sprintf("%s is not of the family of %s", nh, dst)}
		}
		r.NextHop = nh
	}
	return r, nil
}

// CheckNextHop says why nh cannot be the next hop of a route inside the
// namespace of an endpoint whose addresses, with the prefix lengths of
// their subnets, are addrs (nil when it can, and for an on-link route,
// nh zero). The kernel takes a gateway only when a connected route of the
// device reaches it, that is inside one of the device's subnets (an IPv6
// link-local next hop is reached on the device itself); and a next hop
// that is the endpoint's own address, a loopback, multicast or
// unspecified address, or an IPv4 subnet's network or broadcast address,
// is no neighbour to send through.
func CheckNextHop(nh netip.Addr, addrs []netip.Prefix) error {
	switch {
	case !nh.IsValid():
		return nil
	case nh.IsUnspecified():
		return fmt.Errorf("%s is the unspecified address, no next hop", nh)
	case nh.IsLoopback():
		return fmt.Errorf("%s is a loopback address: nothing is routed through it from the endpoint", nh)
	case nh.IsMulticast():
		return fmt.Errorf("%s is a multicast address, no next hop", nh)
	case nh.Is6() && nh.IsLinkLocalUnicast():
		return nil
	}
	var subnets []string
	for _, a := range addrs {
		if a.Addr() == nh {
			return fmt.Errorf("%s is the endpoint's own address", nh)
		}
		if a.Addr().Is4() != nh.Is4() {
			continue
		}
		p := a.Masked()
		subnets = append(subnets, p.String())
		if !p.Contains(nh) {
			continue
		}
		if nh.Is4() && p.Bits() < 31 {
			if nh == p.Addr() {
				return fmt.Errorf("%s is the network address of the endpoint's subnet %s, no host on it", nh, p)
			}
			if nh == lastAddr(p) {
				return fmt.Errorf("%s is the broadcast address of the endpoint's subnet %s", nh, p)
			}
		}
		return nil
	}
	if len(subnets) == 0 {
		return fmt.Errorf("%s is on none of the endpoint's subnets (it has no address of that family): the kernel takes a next hop only on a subnet of the device", nh)
	}
	return fmt.Errorf("%s is on none of the endpoint's subnets (%s): the kernel takes a next hop only on a subnet of the device", nh, strings.Join(subnets, ", "))
}

// lastAddr is the last address of p.
func lastAddr(p netip.Prefix) netip.Addr {
	b := p.Masked().Addr().AsSlice()
	for i := p.Bits(); i < len(b)*8; i++ {
		b[i/8] |= 1 << (7 - i%8)
	}
	a, _ := netip.AddrFromSlice(b)
	return a
}
