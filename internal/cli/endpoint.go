package cli

import (
	"context"
	"fmt"
	"io"
	"net/netip"
	"strings"

	"github.com/spf13/cobra"

	"github.com/hostnet/hostnet/api"
	"github.com/hostnet/hostnet/client"
)

// endpointOptions are the flags that describe an endpoint (endpoint create, run).
type endpointOptions struct {
	network string
	ips     []string
	mac     string
	dns     []string
	ifname  string
	name    string
	publish []string // --publish values
}

// parseIPConfig parses an endpoint address: IP or IP/PREFIXLEN.
func parseIPConfig(s string) (api.IPConfig, error) {
	if strings.Contains(s, "/") {
		p, err := netip.ParsePrefix(strings.TrimSpace(s))
		if err != nil || p.Addr().Zone() != "" {
			return api.IPConfig{}, fmt.Errorf("%q is not an IP address or IP/PREFIXLEN", s)
		}
		return api.IPConfig{IpAddress: p.Addr().Unmap().String(), PrefixLength: uint8(p.Bits())}, nil
	}
	a, err := api.ParseAddr(s)
	if err != nil {
		return api.IPConfig{}, err
	}
	return api.IPConfig{IpAddress: a.String()}, nil
}

// buildEndpoint turns endpoint flags into the HCN document to send.
func buildEndpoint(o *endpointOptions) (*api.Endpoint, error) {
	if o.network == "" {
		return nil, fmt.Errorf("a network is required (--network)")
	}
	e := &api.Endpoint{
		Name:               o.name,
		HostComputeNetwork: o.network,
		InterfaceName:      o.ifname,
		SchemaVersion:      api.SchemaVersion{Major: 2, Minor: 0},
	}
	for _, s := range o.ips {
		c, err := parseIPConfig(s)
		if err != nil {
			return nil, fmt.Errorf("invalid --ip: %w", err)
		}
		e.IpConfigurations = append(e.IpConfigurations, c)
	}
	if o.mac != "" {
		mac, err := api.ParseMAC(o.mac)
		if err != nil {
			return nil, fmt.Errorf("invalid --mac: %w", err)
		}
		e.MacAddress = api.FormatMAC(mac)
	}
	for _, s := range o.dns {
		a, err := api.ParseAddr(s)
		if err != nil {
			return nil, fmt.Errorf("invalid --dns: %w", err)
		}
		if e.Dns == nil {
			e.Dns = &api.DNS{}
		}
		e.Dns.ServerList = append(e.Dns.ServerList, a.String())
	}
	if o.ifname != "" {
		if err := api.ValidInterfaceName(o.ifname); err != nil {
			return nil, fmt.Errorf("invalid --ifname: %w", err)
		}
	}
	pols, err := publishPolicies(o.publish)
	if err != nil {
		return nil, err
	}
	e.Policies = append(e.Policies, pols...)
	return e, nil
}

// endpointAddresses lists the addresses of e as IP/PREFIXLEN.
func endpointAddresses(e *api.Endpoint) string {
	out := make([]string, 0, len(e.IpConfigurations))
	for _, c := range e.IpConfigurations {
		if c.PrefixLength != 0 {
			out = append(out, fmt.Sprintf("%s/%d", c.IpAddress, c.PrefixLength))
		} else {
			out = append(out, c.IpAddress)
		}
	}
	return strings.Join(out, ",")
}

var endpointColumns = newColumns([]string{"ENDPOINT ID", "NAME", "NETWORK", "IP ADDRESSES", "MAC", "NAMESPACE"},
	"HOST INTERFACE", "INTERFACE", "POLICIES")

// endpointRows renders endpoints as rows of the `endpoint ls` table;
// networkNames maps network IDs to names. wide adds the devices and the
// policy types, and shows whole IDs.
func endpointRows(eps []api.Endpoint, networkNames map[string]string, noTrunc, wide bool) [][]string {
	trunc := shortID
	if noTrunc || wide {
		trunc = func(s string) string { return s }
	}
	rows := make([][]string, 0, len(eps))
	for i := range eps {
		e := &eps[i]
		network := networkNames[strings.ToLower(e.HostComputeNetwork)]
		if network == "" {
			network = trunc(e.HostComputeNetwork)
		}
		row := []string{trunc(e.ID), e.Name, network, endpointAddresses(e), e.MacAddress, trunc(e.HostComputeNamespace)}
		if wide {
			row = append(row, orDash(e.HostInterfaceName), orDash(e.InterfaceName), policyTypes(e.Policies))
		}
		rows = append(rows, row)
	}
	return rows
}

// writeEndpoints writes the `endpoint ls` table, with the names of the
// endpoints' networks.
func writeEndpoints(ctx context.Context, w io.Writer, c *client.Client, eps []api.Endpoint, noTrunc, wide bool) error {
	names := map[string]string{}
	if len(eps) > 0 {
		nets, err := c.ListNetworks(ctx, nil)
		if err != nil {
			return err
		}
		for _, n := range nets {
			names[strings.ToLower(n.ID)] = n.Name
		}
	}
	return endpointColumns.write(w, wide, endpointRows(eps, names, noTrunc, wide))
}

func newEndpointCommand(a *app) *cobra.Command {
	return a.kindCommand(newGroupCommand("endpoint", "Manage endpoints"), kindEndpoint, "ENDPOINT",
		"Remove one or more endpoints (detached first)", newEndpointCreateCommand(a), newEndpointLsCommand(a),
		func(ctx context.Context, c *client.Client, docs []any, wide bool) error {
			return writeEndpoints(ctx, a.io.Out, c, docsAs[api.Endpoint](docs), false, wide)
		}, newPolicyCommand(a, kindEndpoint))
}

func newEndpointCreateCommand(a *app) *cobra.Command {
	o := &endpointOptions{}
	cmd := &cobra.Command{
		Use:   "create --network NETWORK [OPTIONS] [NAME]",
		Short: "Create an endpoint on a network",
		Long:  "Create an endpoint on a network and print its ID. Attach it to a namespace with\n'hostnet namespace attach'.",
		Args:  maxArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if len(args) == 1 {
				if o.name != "" && o.name != args[0] {
					return &usageError{cmd: cmd, err: fmt.Errorf("two names given: --name %s and %s", o.name, args[0])}
				}
				o.name = args[0]
			}
			doc, err := buildEndpoint(o)
			if err != nil {
				return err
			}
			c := a.client()
			var e *api.Endpoint
			err = withRef(cmd.Context(), c, kindNetwork, doc.HostComputeNetwork, func(ref string) (err error) {
				doc.HostComputeNetwork = ref
				e, err = c.CreateEndpoint(cmd.Context(), doc)
				return err
			})
			if err != nil {
				return err
			}
			return a.render(e, func(bool) error {
				_, err := fmt.Fprintln(a.io.Out, e.ID)
				return err
			})
		},
	}
	f := cmd.Flags()
	f.StringVar(&o.network, "network", "", "network of the endpoint (name or ID)")
	_ = cmd.RegisterFlagCompletionFunc("network", a.completeRefs(kindNetwork))
	f.StringArrayVar(&o.ips, "ip", nil, "static address, IP or IP/PREFIXLEN (repeatable)")
	f.StringVar(&o.mac, "mac", "", "MAC address (00-15-5D-52-C0-00 or with colons)")
	f.StringArrayVar(&o.dns, "dns", nil, "DNS server (repeatable)")
	f.StringVar(&o.ifname, "ifname", "", "device name inside the namespace (default eth0, eth1, ...)")
	f.StringVar(&o.name, "name", "", "endpoint name")
	f.StringArrayVarP(&o.publish, "publish", "p", nil, "publish a port: "+publishSyntax+" (repeatable)")
	return cmd
}

func newEndpointLsCommand(a *app) *cobra.Command {
	var network string
	cmd := newLsCommand(a, kindEndpoint, func(ctx context.Context, c *client.Client) ([]api.Endpoint, error) {
		var filter map[string]string
		if network != "" {
			var n *api.Network
			err := withRef(ctx, c, kindNetwork, network, func(ref string) (err error) {
				n, err = c.GetNetwork(ctx, ref)
				return err
			})
			if err != nil {
				return nil, err
			}
			filter = map[string]string{"VirtualNetwork": n.ID}
		}
		return c.ListEndpoints(ctx, filter)
	}, endpointRef, func(ctx context.Context, c *client.Client, eps []api.Endpoint, noTrunc, wide bool) error {
		return writeEndpoints(ctx, a.io.Out, c, eps, noTrunc, wide)
	})
	cmd.Flags().StringVar(&network, "network", "", "only the endpoints of this network")
	return cmd
}
