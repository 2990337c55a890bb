package cli

import (
	"context"
	"fmt"
	"io"
	"net/netip"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/hostnet/hostnet/api"
	"github.com/hostnet/hostnet/client"
	"github.com/hostnet/hostnet/internal/winshim"
)

// The -o options of `network create` (package winshim): Docker's Windows
// driver's, nonpersistent and hostnet.uplink_mode.
const optNetworkName = winshim.NetworkName

// knownNetworkOptions lists the -o keys network create accepts.
func knownNetworkOptions() []string { return winshim.Known() }

// networkTypes are the HNS network types in the order of their numbers.
var networkTypes = []api.NetworkType{api.NAT, api.ICS, api.Transparent, api.L2Bridge, api.L2Tunnel,
	api.Overlay, api.Private, api.Internal}

// driverType maps a --driver value (any case) onto its HNS network type.
func driverType(driver string) (api.NetworkType, error) {
	for _, t := range networkTypes {
		if strings.EqualFold(string(t), driver) {
			return t, nil
		}
	}
	return "", fmt.Errorf("unknown driver %q (the HNS network types are %s)", driver, strings.Join(lowerTypes(networkTypes), ", "))
}

// lowerTypes writes network types as drivers are named, in lower case.
func lowerTypes(ts []api.NetworkType) []string {
	out := make([]string, len(ts))
	for i, t := range ts {
		out[i] = strings.ToLower(string(t))
	}
	return out
}

// notBuilt lists, as drivers, the HNS network types a daemon that supports
// supported does not have yet.
func notBuilt(supported []api.NetworkType) []string {
	var out []api.NetworkType
	for _, t := range networkTypes {
		found := false
		for _, s := range supported {
			found = found || strings.EqualFold(string(s), string(t))
		}
		if !found {
			out = append(out, t)
		}
	}
	return lowerTypes(out)
}

// checkDriver refuses a network type the daemon does not support: known to
// HNS, but not built yet.
func checkDriver(typ api.NetworkType, v *api.VersionInfo) error {
	for _, t := range v.Supported.NetworkTypes {
		if strings.EqualFold(string(t), string(typ)) {
			return nil
		}
	}
	return fmt.Errorf("driver %q is not built yet: this hostnetd supports %s (not built yet: %s)",
		strings.ToLower(string(typ)), strings.Join(lowerTypes(v.Supported.NetworkTypes), ", "), strings.Join(notBuilt(v.Supported.NetworkTypes), ", "))
}

// driverUsage is the help of --driver; with the daemon's answer, it names
// what it supports and what is not built yet.
func driverUsage(v *api.VersionInfo) string {
	if v == nil {
		return "network type: nat, or another the daemon supports ('hostnet version' lists them)"
	}
	return fmt.Sprintf("network type: %s (not built yet: %s)", strings.Join(lowerTypes(v.Supported.NetworkTypes), ", "), strings.Join(notBuilt(v.Supported.NetworkTypes), ", "))
}

// daemonVersion asks the daemon what it supports, briefly: for help texts
// and completion, which must not hang on a daemon that does not answer.
func (a *app) daemonVersion(ctx context.Context) *api.VersionInfo {
	if ctx == nil {
		ctx = context.Background()
	}
	ctx, cancel := context.WithTimeout(ctx, 500*time.Millisecond)
	defer cancel()
	v, err := a.client().Version(ctx)
	if err != nil {
		return nil
	}
	return v
}

// networkCreateOptions are the flags of `network create`.
type networkCreateOptions struct {
	driver    string
	subnets   []string
	gateways  []string
	ipRanges  []string
	dns       []string
	dnsSearch []string
	opts      []string
	// ipamDriver is "default" (static subnets) or "dhcp" (the segment's
	// DHCP server gives the endpoints their addresses).
	ipamDriver string
	// allowHostOverlap lets a subnet overlap the host's addresses and routes.
	allowHostOverlap bool
}

// subnetDraft is a subnet being assembled from --subnet, --gateway and --ip-range.
type subnetDraft struct {
	prefix  netip.Prefix
	gateway netip.Addr
	ipRange netip.Prefix
}

func family(is4 bool) string {
	if is4 {
		return "IPv4"
	}
	return "IPv6"
}

// parseKeyValue splits key=value.
func parseKeyValue(what, s string) (string, string, error) {
	k, v, ok := strings.Cut(s, "=")
	k = strings.TrimSpace(k)
	if !ok || k == "" {
		return "", "", fmt.Errorf("invalid %s %q: want key=value", what, s)
	}
	return k, v, nil
}

// buildNetwork turns the flags of `network create` and its NAME argument
// (possibly empty) into the HCN document to send. Notes about ignored
// options are written to notes.
func buildNetwork(o *networkCreateOptions, name string, notes io.Writer) (*api.Network, error) {
	typ, err := driverType(o.driver)
	if err != nil {
		return nil, err
	}
	n := &api.Network{Name: name, Type: typ, SchemaVersion: api.SchemaVersion{Major: 2, Minor: 0}}

	opts := map[string]string{}
	for _, kv := range o.opts {
		k, v, err := parseKeyValue("option", kv)
		if err != nil {
			return nil, err
		}
		if !winshim.IsKnown(k) {
			return nil, fmt.Errorf("unknown option %q (known: %s)", k, strings.Join(knownNetworkOptions(), ", "))
		}
		if _, dup := opts[k]; dup {
			return nil, fmt.Errorf("option %q is given more than once", k)
		}
		opts[k] = v
	}
	shimName, renamed := opts[optNetworkName]
	delete(opts, optNetworkName)
	if renamed && n.Name == "" {
		n.Name = shimName
	}
	if n.Name == "" {
		return nil, fmt.Errorf("a network name is required (NAME or -o %s=NAME)", optNetworkName)
	}

	subnets, err := buildSubnets(o)
	if err != nil {
		return nil, err
	}
	switch strings.ToLower(o.ipamDriver) {
	case "", "default":
		if len(subnets) > 0 {
			n.Ipams = []api.Ipam{{Type: "Static", Subnets: subnets}}
		}
	case "dhcp":
		n.Ipams = []api.Ipam{{Type: "DHCP", Subnets: subnets}}
	default:
		return nil, fmt.Errorf("invalid --ipam-driver %q: want default or dhcp", o.ipamDriver)
	}
	n.AllowHostOverlap = o.allowHostOverlap

	dns := &api.DNS{}
	for _, s := range o.dns {
		a, err := api.ParseAddr(s)
		if err != nil {
			return nil, fmt.Errorf("invalid DNS server: %w", err)
		}
		dns.ServerList = append(dns.ServerList, a.String())
	}
	dns.Search = append(dns.Search, o.dnsSearch...)
	if len(dns.Search) > 0 || len(dns.ServerList) > 0 {
		n.Dns = dns
	}
	if err := winshim.Apply(n, opts, func(s string) { fmt.Fprintf(notes, "note: %s\n", s) }); err != nil {
		return nil, err
	}
	if renamed && shimName != n.Name {
		fmt.Fprintf(notes, "note: option %s=%s is ignored: the network is named %s\n", optNetworkName, shimName, n.Name)
	}
	return n, nil
}

// buildSubnets matches --gateway and --ip-range to the --subnet of their
// address family.
func buildSubnets(o *networkCreateOptions) ([]api.Subnet, error) {
	var drafts []*subnetDraft
	byFamily := map[bool]*subnetDraft{}
	for _, s := range o.subnets {
		p, err := api.ParsePrefix(s)
		if err != nil {
			return nil, fmt.Errorf("invalid --subnet: %w", err)
		}
		is4 := p.Addr().Is4()
		if prev, dup := byFamily[is4]; dup {
			return nil, fmt.Errorf("more than one %s --subnet (%s and %s): a network takes one IPv4 and one IPv6 subnet at most", family(is4), prev.prefix, p)
		}
		d := &subnetDraft{prefix: p}
		byFamily[is4] = d
		drafts = append(drafts, d)
	}
	for _, g := range o.gateways {
		a, err := api.ParseAddr(g)
		if err != nil {
			return nil, fmt.Errorf("invalid --gateway: %w", err)
		}
		d, ok := byFamily[a.Is4()]
		if !ok {
			return nil, fmt.Errorf("gateway %s has no %s --subnet to belong to", a, family(a.Is4()))
		}
		if d.gateway.IsValid() {
			return nil, fmt.Errorf("more than one gateway for subnet %s (%s and %s)", d.prefix, d.gateway, a)
		}
		if !d.prefix.Contains(a) {
			return nil, fmt.Errorf("gateway %s is not in subnet %s", a, d.prefix)
		}
		d.gateway = a
	}
	for _, r := range o.ipRanges {
		p, err := api.ParsePrefix(r)
		if err != nil {
			return nil, fmt.Errorf("invalid --ip-range: %w", err)
		}
		d, ok := byFamily[p.Addr().Is4()]
		if !ok {
			return nil, fmt.Errorf("ip range %s has no %s --subnet to belong to", p, family(p.Addr().Is4()))
		}
		if d.ipRange.IsValid() {
			return nil, fmt.Errorf("more than one ip range for subnet %s (%s and %s)", d.prefix, d.ipRange, p)
		}
		if p.Bits() < d.prefix.Bits() || !d.prefix.Contains(p.Addr()) {
			return nil, fmt.Errorf("ip range %s is not inside subnet %s", p, d.prefix)
		}
		d.ipRange = p
	}
	var out []api.Subnet
	for _, d := range drafts {
		s := api.Subnet{IpAddressPrefix: d.prefix.String()}
		if d.gateway.IsValid() {
			dst := "0.0.0.0/0"
			if d.gateway.Is6() {
				dst = "::/0"
			}
			s.Routes = []api.Route{{DestinationPrefix: dst, NextHop: d.gateway.String()}}
		}
		if d.ipRange.IsValid() {
			s.IpRange = d.ipRange.String()
		}
		out = append(out, s)
	}
	return out, nil
}

// parseMacPool parses Docker's macpool option (winshim.ParseMacPool).
func parseMacPool(v string) (*api.MacPool, error) { return winshim.ParseMacPool(v) }

// networkFilterField maps a `network ls --filter` key onto its HNS filter field.
func networkFilterField(key string) (string, bool) {
	switch strings.ToLower(key) {
	case "id":
		return "ID", true
	case "name":
		return "Name", true
	case "type", "driver":
		return "Type", true
	}
	return "", false
}

// buildNetworkFilter turns --filter key=value flags into an HNS filter document.
func buildNetworkFilter(filters []string) (map[string]string, error) {
	if len(filters) == 0 {
		return nil, nil
	}
	out := map[string]string{}
	for _, f := range filters {
		k, v, err := parseKeyValue("filter", f)
		if err != nil {
			return nil, err
		}
		field, ok := networkFilterField(k)
		if !ok {
			return nil, fmt.Errorf("invalid filter %q (known keys: driver, id, name, type)", k)
		}
		if field == "Type" {
			if t, err := driverType(v); err == nil {
				v = string(t)
			}
		}
		if prev, dup := out[field]; dup && prev != v {
			return nil, fmt.Errorf("filter %s is given twice (%q and %q)", k, prev, v)
		}
		out[field] = v
	}
	return out, nil
}

// networkSubnets lists the subnets of n.
func networkSubnets(n *api.Network) []string {
	var out []string
	for _, ipam := range n.Ipams {
		for _, s := range ipam.Subnets {
			out = append(out, s.IpAddressPrefix)
		}
	}
	return out
}

// networkGateways lists the next hops of the default routes of n's subnets.
func networkGateways(n *api.Network) []string {
	var out []string
	for _, ipam := range n.Ipams {
		for _, s := range ipam.Subnets {
			for _, r := range s.Routes {
				if r.NextHop != "" && (r.DestinationPrefix == "0.0.0.0/0" || r.DestinationPrefix == "::/0") {
					out = append(out, r.NextHop)
				}
			}
		}
	}
	return out
}

// policyTypes lists the types of pols, each once, in order.
func policyTypes(pols []api.Policy) string {
	var out []string
	seen := map[api.PolicyType]bool{}
	for _, p := range pols {
		if !seen[p.Type] {
			seen[p.Type] = true
			out = append(out, string(p.Type))
		}
	}
	return orDash(strings.Join(out, ","))
}

// networkRows renders networks as rows of the `network ls` table; wide
// adds the gateways, DNS servers and policy types, and shows whole IDs.
func networkRows(nets []api.Network, noTrunc, wide bool) [][]string {
	rows := make([][]string, 0, len(nets))
	for i := range nets {
		n := &nets[i]
		id := n.ID
		if !noTrunc && !wide {
			id = shortID(id)
		}
		typ := string(n.Type)
		if typ == "" {
			typ = string(api.NAT)
		}
		row := []string{id, n.Name, typ, strings.Join(networkSubnets(n), ","), n.BridgeName}
		if wide {
			var dns []string
			if n.Dns != nil {
				dns = n.Dns.ServerList
			}
			row = append(row, orDash(strings.Join(networkGateways(n), ",")), orDash(strings.Join(dns, ",")), policyTypes(n.Policies))
		}
		rows = append(rows, row)
	}
	return rows
}

var networkColumns = newColumns([]string{"NETWORK ID", "NAME", "DRIVER", "SUBNET", "BRIDGE"}, "GATEWAY", "DNS", "POLICIES")

// writeNetworks writes the `network ls` table.
func writeNetworks(w io.Writer, nets []api.Network, noTrunc, wide bool) error {
	return networkColumns.write(w, wide, networkRows(nets, noTrunc, wide))
}

func newNetworkCommand(a *app) *cobra.Command {
	return a.kindCommand(newGroupCommand("network", "Manage networks"), kindNetwork, "NETWORK",
		"Remove one or more networks", newNetworkCreateCommand(a), newNetworkLsCommand(a),
		func(ctx context.Context, c *client.Client, docs []any, wide bool) error {
			return writeNetworks(a.io.Out, docsAs[api.Network](docs), false, wide)
		}, newPolicyCommand(a, kindNetwork))
}

func newNetworkCreateCommand(a *app) *cobra.Command {
	o := &networkCreateOptions{}
	cmd := &cobra.Command{
		Use:   "create [OPTIONS] NAME",
		Short: "Create a network",
		Long: "Create a network and print its ID.\n\n" +
			"Options (-o) accepted: " + strings.Join(knownNetworkOptions(), ", ") + ".",
		Args: maxArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			name := ""
			if len(args) == 1 {
				name = args[0]
			}
			doc, err := buildNetwork(o, name, a.io.Err)
			if err != nil {
				return err
			}
			c := a.client()
			v, err := c.Version(cmd.Context())
			if err != nil {
				return err
			}
			if err := checkDriver(doc.Type, v); err != nil {
				return err
			}
			n, err := c.CreateNetwork(cmd.Context(), doc)
			if err != nil {
				return err
			}
			return a.render(n, func(bool) error {
				_, err := fmt.Fprintln(a.io.Out, n.ID)
				return err
			})
		},
	}
	f := cmd.Flags()
	f.StringVarP(&o.driver, "driver", "d", "nat", driverUsage(nil))
	// The drivers the daemon supports, in help and completion.
	defaultHelp := cmd.HelpFunc()
	cmd.SetHelpFunc(func(c *cobra.Command, args []string) {
		if v := a.daemonVersion(c.Context()); v != nil {
			c.Flags().Lookup("driver").Usage = driverUsage(v)
		}
		defaultHelp(c, args)
	})
	_ = cmd.RegisterFlagCompletionFunc("driver", func(c *cobra.Command, args []string, toComplete string) ([]string, cobra.ShellCompDirective) {
		types := []string{"nat"}
		if v := a.daemonVersion(c.Context()); v != nil {
			types = lowerTypes(v.Supported.NetworkTypes)
		}
		return types, cobra.ShellCompDirectiveNoFileComp
	})
	f.StringArrayVar(&o.subnets, "subnet", nil, "subnet in CIDR form (one IPv4 and one IPv6 at most)")
	f.StringArrayVar(&o.gateways, "gateway", nil, "gateway of the subnet of its address family")
	f.StringArrayVar(&o.ipRanges, "ip-range", nil, "allocate addresses from this sub-range of the subnet of its family")
	f.StringArrayVar(&o.dns, "dns", nil, "DNS server of the network's endpoints")
	f.StringArrayVar(&o.dnsSearch, "dns-search", nil, "DNS search domain")
	f.StringArrayVarP(&o.opts, "opt", "o", nil, "driver option key=value")
	f.StringVar(&o.ipamDriver, "ipam-driver", "default", "where endpoints' addresses come from: default (the --subnet pools) or dhcp (the segment's DHCP server; transparent networks)")
	f.BoolVar(&o.allowHostOverlap, "allow-host-overlap", false, "let the subnet overlap an address or route of the host (an isolated subnet that shadows the host's)")
	return cmd
}

func newNetworkLsCommand(a *app) *cobra.Command {
	var filters []string
	cmd := newLsCommand(a, kindNetwork, func(ctx context.Context, c *client.Client) ([]api.Network, error) {
		filter, err := buildNetworkFilter(filters)
		if err != nil {
			return nil, err
		}
		return c.ListNetworks(ctx, filter)
	}, networkRef, func(_ context.Context, _ *client.Client, nets []api.Network, noTrunc, wide bool) error {
		return writeNetworks(a.io.Out, nets, noTrunc, wide)
	})
	cmd.Flags().StringArrayVarP(&filters, "filter", "f", nil, "filter key=value (keys: id, name, type or driver)")
	return cmd
}

// inspect prints the documents get finds, as a JSON array unless another
// output is chosen (table and wide: the rows of the ls table); references
// it cannot find are reported and make the command fail, after the others
// are printed (as docker inspect does).
func (a *app) inspect(refs []string, get func(ref string) (any, error), table func(docs []any, wide bool) error) error {
	docs := []any{}
	var failed bool
	for _, ref := range refs {
		d, err := get(ref)
		if err != nil {
			if isUnreachable(err) {
				return err
			}
			a.report(err)
			failed = true
			continue
		}
		docs = append(docs, d)
	}
	var err error
	if a.outputChosen() {
		err = a.render(docs, func(wide bool) error { return table(docs, wide) })
	} else {
		err = writeJSON(a.io.Out, docs)
	}
	if err != nil {
		return err
	}
	if failed {
		return &ExitError{Code: 1}
	}
	return nil
}

// remove removes each reference, printing it when done; it goes on after a
// failure and fails at the end if any did.
func (a *app) remove(refs []string, del func(ref string) error) error {
	var failed bool
	for _, ref := range refs {
		if err := del(ref); err != nil {
			if isUnreachable(err) {
				return err
			}
			a.report(err)
			failed = true
			continue
		}
		fmt.Fprintln(a.io.Out, ref)
	}
	if failed {
		return &ExitError{Code: 1}
	}
	return nil
}

func isUnreachable(err error) bool { return client.IsUnreachable(err) }
