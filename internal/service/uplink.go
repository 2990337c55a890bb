package service

import (
	"net/netip"
	"slices"
	"strings"

	"github.com/hostnet/hostnet/api"
	"github.com/hostnet/hostnet/internal/driver"
	"github.com/hostnet/hostnet/internal/netmodel"
	"github.com/hostnet/hostnet/internal/store"
)

// uplinkField is where a network document names its uplink.
const uplinkField = "Policies (NetAdapterName)"

// checkUplink checks a network of a driver on an uplink against the host
// as it is now: the adapter exists, is up, is nobody's port, and (when
// the driver says so) each subnet is the subnet of one of its addresses.
// It returns the host's addresses inside the subnets, for the pools to
// hold.
func checkUplink(spec *api.NetworkSpec, use driver.UplinkUse, host netmodel.HostAddressing) ([]netip.Addr, error) {
	if spec.Uplink == "" {
		return nil, api.Invalid(api.CodeInvalidNetwork,
			"invalid network: field %s: a %s network needs the host adapter it goes out by: a NetAdapterName policy ({\"Type\":\"NetAdapterName\",\"Settings\":{\"NetworkAdapterName\":\"eth0\"}}; hostnet network create -o com.docker.network.windowsshim.interface=eth0)",
			uplinkField, spec.Type)
	}
	l, ok := host.Link(spec.Uplink)
	if !ok {
		var names []string
		for _, l := range host.Links {
			if l.Name != "lo" {
				names = append(names, l.Name)
			}
		}
		slices.Sort(names)
		if strings.HasPrefix(spec.Uplink, driver.LinkPrefix) {
			return nil, api.Invalid(api.CodeInvalidNetwork, "invalid network: field %s: %q is not an adapter of the host (devices named %s* are hostnet's own)", uplinkField, spec.Uplink, driver.LinkPrefix)
		}
		return nil, api.Invalid(api.CodeInvalidNetwork, "invalid network: field %s: the host has no adapter %q (it has %s)", uplinkField, spec.Uplink, strings.Join(names, ", "))
	}
	switch {
	case l.Name == "lo":
		return nil, api.Invalid(api.CodeInvalidNetwork, "invalid network: field %s: %q is the loopback, not an adapter on a segment", uplinkField, l.Name)
	case !l.Up:
		return nil, api.Invalid(api.CodeInvalidNetwork, "invalid network: field %s: adapter %q is down (no carrier or not set up): bring it up first", uplinkField, l.Name)
	case l.Master != "":
		return nil, api.Invalid(api.CodeInvalidNetwork, "invalid network: field %s: adapter %q is a port of %q, which takes its traffic: name %q or another adapter", uplinkField, l.Name, l.Master, l.Master)
	}
	var inside []netip.Addr
	for i, sub := range spec.Subnets {
		var same []netip.Prefix
		for _, a := range l.Addrs {
			if a.Addr().Is4() == sub.Prefix.Addr().Is4() && !a.Addr().IsLinkLocalUnicast() {
				same = append(same, a)
			}
			if sub.Prefix.Contains(a.Addr()) {
				inside = append(inside, a.Addr())
			}
		}
		if !use.SubnetOfUplink {
			continue
		}
		match := false
		for _, a := range same {
			match = match || a.Masked() == sub.Prefix.Masked()
		}
		if !match {
			have := "none of that family"
			if len(same) > 0 {
				var s []string
				for _, a := range same {
					s = append(s, a.String())
				}
				have = strings.Join(s, ", ")
			}
			return nil, api.Invalid(api.CodeInvalidNetwork,
				"invalid network: subnet %d (%s): field IpAddressPrefix: a %s network's endpoints are in the subnet of its adapter %q, whose addresses are %s",
				i, sub.Prefix, spec.Type, l.Name, have)
		}
	}
	return inside, nil
}

// checkUplinkShared refuses a network (id) on an uplink that
// another network takes whole (a bridge enslaves it), and a network that
// would take whole an uplink another network uses: a bridge's port
// carries no traffic of its own, and the host's addresses would have
// left it.
func (s *Service) checkUplinkShared(tx store.Tx, id string, spec *api.NetworkSpec, use driver.UplinkUse) error {
	if spec.Uplink == "" {
		return nil
	}
	others, specs, err := otherNetworks(tx, id)
	if err != nil {
		return err
	}
	for i, other := range others {
		ospec := specs[i]
		if ospec.Uplink != spec.Uplink {
			continue
		}
		whole := false
		if d, ok := s.cfg.Drivers[ospec.Type]; ok {
			if u, ok := driver.For(d, ospec).(driver.OnUplink); ok {
				whole = u.NeedsUplink().Whole
			}
		}
		switch {
		case whole:
			return api.Invalid(api.CodeInvalidNetwork,
				"invalid network: field %s: adapter %q is taken whole by network %q (%s), a Transparent network of UplinkMode Bridge: it is the port of that network's bridge; attach to that network, or name another adapter",
				uplinkField, spec.Uplink, other.Doc.Name, other.Doc.ID)
		case use.Whole:
			return api.Invalid(api.CodeInvalidNetwork,
				"invalid network: field %s: adapter %q is the uplink of network %q (%s); a network of UplinkMode Bridge takes its adapter whole: delete that network first, name another adapter, or leave UplinkMode Macvlan",
				uplinkField, spec.Uplink, other.Doc.Name, other.Doc.ID)
		}
	}
	return nil
}

// checkEndpointPolicies refuses the policies an endpoint's network type
// does not take (see driver.EndpointPolicies and driver.EncapRoutes).
func checkEndpointPolicies(owner string, drv driver.Driver, policies []api.Policy) error {
	if d, ok := drv.(driver.EndpointPolicies); ok {
		allowed := d.EndpointPolicies()
		for i, p := range policies {
			if !slices.Contains(allowed, p.Type) {
				return api.Invalid(api.CodeInvalidPolicy, "%s: field Policies[%d]: policy type %s does not apply to endpoints of %s networks (they take %s)",
					owner, i, p.Type, drv.Type(), api.JoinTypes(allowed))
			}
		}
	}
	if _, ok := drv.(driver.EncapRoutes); ok {
		return nil
	}
	for i, p := range policies {
		if p.Type != api.SDNRoute {
			continue
		}
		if r, err := api.ParseSDNRoute(p.Settings); err == nil && r.NeedEncap {
			return api.Unsupported("%s: field Policies[%d].Settings.NeedEncap (SDNRoute): true: encapsulated routes need an Overlay or L2Bridge network (this one is %s)",
				owner, i, drv.Type())
		}
	}
	return nil
}
