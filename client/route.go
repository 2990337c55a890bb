package client

import (
	"context"

	"github.com/hostnet/hostnet/api"
)

func (c *Client) routes() resource[api.HostComputeRoute] {
	return resource[api.HostComputeRoute]{c, "/routes"}
}

// CreateRoute creates a route object: its settings become routes inside
// the namespace of each endpoint it lists (IDs or names).
func (c *Client) CreateRoute(ctx context.Context, r *api.HostComputeRoute) (*api.HostComputeRoute, error) {
	return c.routes().create(ctx, r)
}

// GetRoute returns a route object by ID.
func (c *Client) GetRoute(ctx context.Context, id string) (*api.HostComputeRoute, error) {
	return c.routes().get(ctx, id)
}

// ListRoutes returns the route objects matching an HNS filter (nil: all),
// e.g. {"HostComputeEndpoints": endpointID}.
func (c *Client) ListRoutes(ctx context.Context, filter map[string]string) ([]api.HostComputeRoute, error) {
	return c.routes().list(ctx, filter)
}

// DeleteRoute deletes a route object; its routes leave its endpoints'
// namespaces.
func (c *Client) DeleteRoute(ctx context.Context, id string) error {
	return c.routes().delete(ctx, id)
}
