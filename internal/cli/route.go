package cli

import (
	"context"
	"fmt"
	"io"
	"strings"

	"github.com/spf13/cobra"

	"github.com/hostnet/hostnet/api"
	"github.com/hostnet/hostnet/client"
)

func routeRef(r *api.HostComputeRoute) (name, id string) { return "", r.ID }

var routeColumns = newColumns([]string{"ROUTE ID", "ENDPOINTS", "ROUTES"})

// routeSettings lists a route object's routes as "DST via NEXTHOP".
func routeSettings(r *api.HostComputeRoute) string {
	out := make([]string, 0, len(r.Setting))
	for _, s := range r.Setting {
		if s.NextHop == "" {
			out = append(out, s.DestinationPrefix)
		} else {
			out = append(out, s.DestinationPrefix+" via "+s.NextHop)
		}
	}
	return strings.Join(out, ", ")
}

// routeRows renders route objects as rows of the `route ls` table;
// endpointNames maps endpoint IDs to names.
func routeRows(routes []api.HostComputeRoute, endpointNames map[string]string, noTrunc, wide bool) [][]string {
	trunc := shortID
	if noTrunc || wide {
		trunc = func(s string) string { return s }
	}
	rows := make([][]string, 0, len(routes))
	for i := range routes {
		r := &routes[i]
		eps := make([]string, 0, len(r.HostComputeEndpoints))
		for _, id := range r.HostComputeEndpoints {
			if n := endpointNames[strings.ToLower(id)]; n != "" {
				eps = append(eps, n)
			} else {
				eps = append(eps, trunc(id))
			}
		}
		rows = append(rows, []string{trunc(r.ID), orDash(strings.Join(eps, ",")), routeSettings(r)})
	}
	return rows
}

// writeRoutes writes the `route ls` table, with the names of the routes'
// endpoints.
func writeRoutes(ctx context.Context, w io.Writer, c *client.Client, routes []api.HostComputeRoute, noTrunc, wide bool) error {
	names := map[string]string{}
	if len(routes) > 0 {
		eps, err := c.ListEndpoints(ctx, nil)
		if err != nil {
			return err
		}
		for _, e := range eps {
			names[strings.ToLower(e.ID)] = e.Name
		}
	}
	return routeColumns.write(w, wide, routeRows(routes, names, noTrunc, wide))
}

func newRouteCommand(a *app) *cobra.Command {
	return a.kindCommand(newGroupCommand("route", "Manage route objects (HCN HostComputeRoute)"), kindRoute, "ROUTE",
		"Remove one or more route objects (their routes leave the endpoints' namespaces)", newRouteCreateCommand(a),
		newLsCommand(a, kindRoute, func(ctx context.Context, c *client.Client) ([]api.HostComputeRoute, error) {
			return c.ListRoutes(ctx, nil)
		}, routeRef, func(ctx context.Context, c *client.Client, routes []api.HostComputeRoute, noTrunc, wide bool) error {
			return writeRoutes(ctx, a.io.Out, c, routes, noTrunc, wide)
		}),
		func(ctx context.Context, c *client.Client, docs []any, wide bool) error {
			return writeRoutes(ctx, a.io.Out, c, docsAs[api.HostComputeRoute](docs), false, wide)
		})
}

func newRouteCreateCommand(a *app) *cobra.Command {
	var endpoints []string
	var nextHop string
	cmd := &cobra.Command{
		Use:   "create --endpoint ENDPOINT [--endpoint ENDPOINT...] [--next-hop ADDRESS] DESTINATION [DESTINATION...]",
		Short: "Create a route object",
		Long: "Create a route object and print its ID: a route to each DESTINATION (a CIDR prefix),\n" +
			"through --next-hop (else on-link), inside the namespace of each endpoint given, for as\n" +
			"long as the object and the endpoint exist. The next hop must be on a subnet of every\n" +
			"endpoint. More routes with other next hops: 'hostnet apply -f' a HostComputeRoute document.",
		Args: minArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if len(endpoints) == 0 {
				return &usageError{cmd: cmd, err: fmt.Errorf("at least one --endpoint is required")}
			}
			c := a.client()
			doc := &api.HostComputeRoute{SchemaVersion: api.SchemaVersion{Major: 2, Minor: 0}}
			for _, dst := range args {
				doc.Setting = append(doc.Setting, api.SDNRouteSettings{DestinationPrefix: dst, NextHop: nextHop})
			}
			for _, ep := range endpoints {
				id, err := resolveRef(cmd.Context(), c, kindEndpoint, ep)
				if err != nil {
					return err
				}
				doc.HostComputeEndpoints = append(doc.HostComputeEndpoints, id)
			}
			r, err := c.CreateRoute(cmd.Context(), doc)
			if err != nil {
				return err
			}
			return a.render(r, func(bool) error {
				_, err := fmt.Fprintln(a.io.Out, r.ID)
				return err
			})
		},
	}
	f := cmd.Flags()
	f.StringArrayVar(&endpoints, "endpoint", nil, "endpoint whose namespace gets the routes (name or ID; repeatable)")
	_ = cmd.RegisterFlagCompletionFunc("endpoint", a.completeRefs(kindEndpoint))
	f.StringVar(&nextHop, "next-hop", "", "next hop of the routes (an address on the endpoints' subnet)")
	return cmd
}
