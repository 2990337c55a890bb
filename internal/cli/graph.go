package cli

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os/exec"
	"sort"
	"strings"

	"github.com/spf13/cobra"

	"github.com/hostnet/hostnet/api"
)

// The output formats of hostnet graph.
const (
	graphDOT = "dot"
	graphSVG = "svg"
)

// errNoDot says -o svg cannot be made here.
var errNoDot = errors.New("-o svg needs the dot program of Graphviz, which is not installed (e.g. apt-get install graphviz); " +
	"-o dot writes the graph's source, which any Graphviz can render: hostnet graph | dot -Tsvg > hostnet.svg")

func newGraphCommand(a *app) *cobra.Command {
	var format string
	cmd := &cobra.Command{
		Use:   "graph",
		Short: "Draw the networks, endpoints, namespaces and policies as a graph (DOT or SVG)",
		Long: "Write the topology hostnetd holds as a Graphviz graph: each network (with its subnets and\n" +
			"network policies) and its endpoints (addresses, host-side devices, endpoint policies), each\n" +
			"endpoint joined to the namespace it is attached to. -o dot (the default) writes the DOT\n" +
			"source; -o svg renders it with Graphviz's dot, which must be installed.",
		Example: "  hostnet graph | dot -Tpng > hostnet.png\n  hostnet graph -o svg > hostnet.svg",
		Args:    exactArgs(0),
		RunE: func(cmd *cobra.Command, args []string) error {
			if format != graphDOT && format != graphSVG {
				return &usageError{cmd: cmd, err: fmt.Errorf("invalid --output %q (want dot or svg)", format)}
			}
			dot, err := a.graph(cmd.Context())
			if err != nil {
				return err
			}
			if format == graphDOT {
				_, err := io.WriteString(a.io.Out, dot)
				return err
			}
			return renderSVG(cmd.Context(), dot, a.io.Out)
		},
	}
	// Its own -o: the root's output modes (table, json, ...) are not
	// graphs.
	cmd.Flags().StringVarP(&format, "output", "o", graphDOT, "output format: dot (Graphviz source) or svg (rendered by Graphviz's dot)")
	_ = cmd.RegisterFlagCompletionFunc("output", cobra.FixedCompletions([]string{graphDOT, graphSVG}, cobra.ShellCompDirectiveNoFileComp))
	return cmd
}

// renderSVG renders dot as SVG with Graphviz's dot program.
func renderSVG(ctx context.Context, dot string, out io.Writer) error {
	bin, err := exec.LookPath("dot")
	if err != nil {
		return errNoDot
	}
	var stderr bytes.Buffer
	c := exec.CommandContext(ctx, bin, "-Tsvg")
	c.Stdin, c.Stdout, c.Stderr = strings.NewReader(dot), out, &stderr
	if err := c.Run(); err != nil {
		return fmt.Errorf("dot -Tsvg: %w: %s", err, strings.TrimSpace(stderr.String()))
	}
	return nil
}

// graph reads the objects and draws them.
func (a *app) graph(ctx context.Context) (string, error) {
	c := a.client()
	nets, err := c.ListNetworks(ctx, nil)
	if err != nil {
		return "", err
	}
	eps, err := c.ListEndpoints(ctx, nil)
	if err != nil {
		return "", err
	}
	spaces, err := c.ListNamespaces(ctx, nil)
	if err != nil {
		return "", err
	}
	return topologyDOT(nets, eps, spaces), nil
}

// topologyDOT draws networks as boxes holding their endpoints, namespaces
// as folders the endpoints point into, and policies as notes on the
// objects they belong to. The output depends only on its input: objects
// are sorted by name, then ID.
func topologyDOT(nets []api.Network, eps []api.Endpoint, spaces []api.Namespace) string {
	sort.Slice(nets, func(i, j int) bool { return byNameID(nets[i].Name, nets[i].ID, nets[j].Name, nets[j].ID) })
	sort.Slice(eps, func(i, j int) bool { return byNameID(eps[i].Name, eps[i].ID, eps[j].Name, eps[j].ID) })
	sort.Slice(spaces, func(i, j int) bool { return byNameID(spaces[i].Name, spaces[i].ID, spaces[j].Name, spaces[j].ID) })

	var b strings.Builder
	b.WriteString("digraph hostnet {\n")
	b.WriteString("\trankdir=LR;\n\tcompound=true;\n")
	b.WriteString("\tgraph [fontname=\"Helvetica\", fontsize=11];\n")
	b.WriteString("\tnode [fontname=\"Helvetica\", fontsize=10];\n\tedge [fontname=\"Helvetica\", fontsize=9];\n")
	known := map[string]bool{}
	for _, n := range nets {
		known[n.ID] = true
	}
	byNet := map[string][]api.Endpoint{}
	for _, e := range eps {
		byNet[e.HostComputeNetwork] = append(byNet[e.HostComputeNetwork], e)
	}
	for i, n := range nets {
		fmt.Fprintf(&b, "\tsubgraph %s {\n", quoteDOT(fmt.Sprintf("cluster_%d", i)))
		fmt.Fprintf(&b, "\t\tlabel=%s;\n\t\tstyle=rounded;\n", quoteDOT("network "+graphName(n.Name, n.ID)+" ("+string(n.Type)+")"))
		lines := []string{"network " + graphName(n.Name, n.ID), string(n.Type)}
		for _, ipam := range n.Ipams {
			for _, s := range ipam.Subnets {
				if s.IpAddressPrefix != "" {
					lines = append(lines, s.IpAddressPrefix)
				}
			}
		}
		if n.BridgeName != "" {
			lines = append(lines, n.BridgeName)
		}
		fmt.Fprintf(&b, "\t\t%s [shape=box3d, style=filled, fillcolor=\"#dae8fc\", label=%s];\n", quoteDOT("network:"+n.ID), quoteDOT(strings.Join(lines, "\n")))
		for _, e := range byNet[n.ID] {
			writeEndpointNode(&b, "\t\t", e)
		}
		b.WriteString("\t}\n")
		writePolicies(&b, "network:"+n.ID, n.Policies)
		for _, e := range byNet[n.ID] {
			fmt.Fprintf(&b, "\t%s -> %s [arrowhead=none];\n", quoteDOT("network:"+n.ID), quoteDOT("endpoint:"+e.ID))
		}
	}
	// Endpoints of networks not listed (a race with a delete) stand alone.
	var orphans []string
	for id := range byNet {
		if !known[id] {
			orphans = append(orphans, id)
		}
	}
	sort.Strings(orphans)
	for _, id := range orphans {
		for _, e := range byNet[id] {
			writeEndpointNode(&b, "\t", e)
		}
	}
	for _, e := range eps {
		writePolicies(&b, "endpoint:"+e.ID, e.Policies)
	}
	for _, ns := range spaces {
		lines := []string{"namespace " + graphName(ns.Name, ns.ID), string(ns.Type)}
		if ns.NetNamespacePath != "" {
			lines = append(lines, ns.NetNamespacePath)
		}
		fmt.Fprintf(&b, "\t%s [shape=folder, style=filled, fillcolor=\"#d5e8d4\", label=%s];\n", quoteDOT("namespace:"+ns.ID), quoteDOT(strings.Join(lines, "\n")))
	}
	for _, e := range eps {
		if e.HostComputeNamespace != "" {
			fmt.Fprintf(&b, "\t%s -> %s [label=%s];\n", quoteDOT("endpoint:"+e.ID), quoteDOT("namespace:"+e.HostComputeNamespace), quoteDOT(orDash(e.InterfaceName)))
		}
	}
	b.WriteString("}\n")
	return b.String()
}

func byNameID(n1, id1, n2, id2 string) bool {
	if n1 != n2 {
		return n1 < n2
	}
	return id1 < id2
}

func writeEndpointNode(b *strings.Builder, indent string, e api.Endpoint) {
	lines := []string{"endpoint " + graphName(e.Name, e.ID)}
	for _, ip := range e.IpConfigurations {
		if ip.IpAddress != "" {
			lines = append(lines, ip.IpAddress)
		}
	}
	if e.MacAddress != "" {
		lines = append(lines, e.MacAddress)
	}
	if e.HostInterfaceName != "" {
		lines = append(lines, "host side "+e.HostInterfaceName)
	}
	fmt.Fprintf(b, "%s%s [shape=box, style=\"rounded,filled\", fillcolor=\"#fff2cc\", label=%s];\n", indent, quoteDOT("endpoint:"+e.ID), quoteDOT(strings.Join(lines, "\n")))
}

// writePolicies draws owner's policies as one note.
func writePolicies(b *strings.Builder, owner string, ps []api.Policy) {
	if len(ps) == 0 {
		return
	}
	lines := make([]string, len(ps))
	for i, p := range ps {
		lines[i] = policySummary(p)
	}
	node := "policies:" + owner
	fmt.Fprintf(b, "\t%s [shape=note, style=filled, fillcolor=\"#f8cecc\", label=%s];\n", quoteDOT(node), quoteDOT(strings.Join(lines, "\n")))
	fmt.Fprintf(b, "\t%s -> %s [style=dashed, arrowhead=none];\n", quoteDOT(owner), quoteDOT(node))
}

// maxPolicyLine bounds a policy's line in the graph.
const maxPolicyLine = 120

// policySummary is a policy's type and its settings, key=value sorted by
// key, shortened to a line.
func policySummary(p api.Policy) string {
	var settings map[string]any
	if len(p.Settings) == 0 || json.Unmarshal(p.Settings, &settings) != nil {
		return string(p.Type)
	}
	keys := make([]string, 0, len(settings))
	for k := range settings {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	parts := make([]string, 0, len(keys))
	for _, k := range keys {
		v, err := json.Marshal(settings[k])
		if err != nil {
			continue
		}
		parts = append(parts, k+"="+strings.Trim(string(v), `"`))
	}
	s := string(p.Type) + " " + strings.Join(parts, " ")
	if len(s) > maxPolicyLine {
		s = s[:maxPolicyLine-3] + "..."
	}
	return s
}

// quoteDOT quotes s as a DOT string; a newline becomes a centred line
// break.
func quoteDOT(s string) string {
	r := strings.NewReplacer(`\`, `\\`, `"`, `\"`, "\n", `\n`)
	return `"` + r.Replace(s) + `"`
}

// graphName is an object's name, or its ID when it has none.
func graphName(name, id string) string {
	if name != "" {
		return name
	}
	return id
}
