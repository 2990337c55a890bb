package cli

import (
	"context"
	"fmt"
	"sort"
	"strconv"

	"github.com/spf13/cobra"

	"github.com/hostnet/hostnet/api"
	"github.com/hostnet/hostnet/client"
)

var namespaceHeader = []string{"NAMESPACE ID", "NAME", "PATH", "MANAGED", "ENDPOINTS"}

// namespaceEndpoints counts the endpoints attached to n.
func namespaceEndpoints(n *api.Namespace) int {
	count := 0
	for _, r := range n.Resources {
		if r.Type == api.NamespaceResourceEndpoint {
			count++
		}
	}
	return count
}

// namespaceRows renders namespaces as rows of the `namespace ls` table.
func namespaceRows(nss []api.Namespace, noTrunc bool) [][]string {
	rows := make([][]string, 0, len(nss))
	for i := range nss {
		n := &nss[i]
		id := n.ID
		if !noTrunc {
			id = shortID(id)
		}
		rows = append(rows, []string{id, n.Name, n.NetNamespacePath, strconv.FormatBool(n.Managed), strconv.Itoa(namespaceEndpoints(n))})
	}
	return rows
}

func newNamespaceCommand(a *app) *cobra.Command {
	cmd := newGroupCommand("namespace", "Manage network namespaces", "ns")
	cmd.AddCommand(
		newNamespaceCreateCommand(a),
		newNamespaceLsCommand(a),
		newInspectCommand(a, kindNamespace, "NAMESPACE", func(ctx context.Context, c *client.Client, ref string) (any, error) {
			return c.GetNamespace(ctx, ref)
		}),
		newRmCommand(a, kindNamespace, "NAMESPACE", "Remove one or more namespaces (their endpoints are detached)", func(ctx context.Context, c *client.Client, ref string) error {
			return c.DeleteNamespace(ctx, ref)
		}),
		newNamespaceAttachCommand(a, true),
		newNamespaceAttachCommand(a, false),
	)
	return cmd
}

func newNamespaceCreateCommand(a *app) *cobra.Command {
	var name, path string
	cmd := &cobra.Command{
		Use:   "create [--name NAME] [--path PATH]",
		Short: "Create a network namespace, or wrap an existing one",
		Long: "Create a network namespace and print its ID. With --path, the namespace at PATH\n" +
			"(a bind mount, /proc/PID/ns/net) is wrapped instead and left in place on removal.",
		Args: exactArgs(0),
		RunE: func(cmd *cobra.Command, args []string) error {
			doc := &api.Namespace{Name: name, NetNamespacePath: path, SchemaVersion: api.SchemaVersion{Major: 2, Minor: 0}}
			n, err := a.client().CreateNamespace(cmd.Context(), doc)
			if err != nil {
				return err
			}
			if a.jsonOutput() {
				return writeJSON(a.io.Out, n)
			}
			_, err = fmt.Fprintln(a.io.Out, n.ID)
			return err
		},
	}
	cmd.Flags().StringVar(&name, "name", "", "namespace name")
	cmd.Flags().StringVar(&path, "path", "", "existing network namespace to wrap")
	return cmd
}

func newNamespaceLsCommand(a *app) *cobra.Command {
	var quiet, noTrunc bool
	cmd := &cobra.Command{
		Use:     "ls [OPTIONS]",
		Aliases: []string{"list"},
		Short:   "List namespaces",
		Args:    exactArgs(0),
		RunE: func(cmd *cobra.Command, args []string) error {
			nss, err := a.client().ListNamespaces(cmd.Context(), nil)
			if err != nil {
				return err
			}
			sort.SliceStable(nss, func(i, j int) bool { return nss[i].Name < nss[j].Name })
			switch {
			case quiet:
				for _, n := range nss {
					fmt.Fprintln(a.io.Out, n.ID)
				}
				return nil
			case a.jsonOutput():
				if nss == nil {
					nss = []api.Namespace{}
				}
				return writeJSON(a.io.Out, nss)
			}
			return writeTable(a.io.Out, namespaceHeader, namespaceRows(nss, noTrunc))
		},
	}
	cmd.Flags().BoolVarP(&quiet, "quiet", "q", false, "only print namespace IDs")
	cmd.Flags().BoolVar(&noTrunc, "no-trunc", false, "do not shorten IDs")
	return cmd
}

// newNamespaceAttachCommand builds `namespace attach` or `namespace detach`.
func newNamespaceAttachCommand(a *app, attach bool) *cobra.Command {
	verb, short := "attach", "Attach an endpoint to a namespace"
	if !attach {
		verb, short = "detach", "Detach an endpoint from a namespace"
	}
	return &cobra.Command{
		Use:   verb + " NAMESPACE ENDPOINT",
		Short: short,
		Args:  exactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			ctx := cmd.Context()
			c := a.client()
			ns, err := resolveRef(ctx, c, kindNamespace, args[0])
			if err != nil {
				return err
			}
			ep, err := resolveRef(ctx, c, kindEndpoint, args[1])
			if err != nil {
				return err
			}
			var n *api.Namespace
			if attach {
				n, err = c.Attach(ctx, ns, ep)
			} else {
				n, err = c.Detach(ctx, ns, ep)
			}
			if err != nil {
				return err
			}
			if a.jsonOutput() {
				return writeJSON(a.io.Out, n)
			}
			return nil
		},
	}
}
