package service

import (
	"context"

	"github.com/hostnet/hostnet/api"
)

// DefaultNetworkName is the name of the NAT network the daemon creates at
// start, as Windows does.
const DefaultNetworkName = "nat"

// EnsureDefaultNetwork creates the default NAT network when no network of
// that name exists. With an empty subnet it takes the first /20 of
// 172.16.0.0/12 that overlaps no address or route of the host (fixed
// ranges collide with users' own networks, which is why Windows picks its
// range this way).
func (s *Service) EnsureDefaultNetwork(ctx context.Context, subnet string) (*api.Network, error) {
	if n, err := s.GetNetwork(ctx, DefaultNetworkName); err == nil {
		return n, nil
	} else if !api.IsNotFound(err) {
		return nil, err
	}
	n := api.Network{Name: DefaultNetworkName, Type: api.NAT}
	if subnet != "" {
		n.Ipams = []api.Ipam{{Type: "Static", Subnets: []api.Subnet{{IpAddressPrefix: subnet}}}}
	}
	created, err := s.CreateNetwork(ctx, n)
	if err == nil {
		// Made by the daemon, not through the API: its event is
		// published here.
		s.Publish(api.Event{Kind: "Created", Type: api.EventTypeNetwork, Action: api.EventCreate, ID: created.ID, Name: created.Name,
			Object: "network " + created.Name + " (" + created.ID + ")", Message: "default network created at start"})
	}
	return created, err
}
