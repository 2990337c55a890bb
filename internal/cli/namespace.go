package cli

import (
	"context"
	"fmt"
	"io"
	"strconv"

	"github.com/spf13/cobra"

	"github.com/hostnet/hostnet/api"
	"github.com/hostnet/hostnet/client"
)

var namespaceColumns = newColumns([]string{"NAMESPACE ID", "NAME", "PATH", "MANAGED", "ENDPOINTS"}, "TYPE", "RESOLV.CONF")

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

// namespaceRows renders namespaces as rows of the `namespace ls` table;
// wide adds the type and the resolv.conf, and shows whole IDs.
func namespaceRows(nss []api.Namespace, noTrunc, wide bool) [][]string {
	rows := make([][]string, 0, len(nss))
	for i := range nss {
		n := &nss[i]
		id := n.ID
		if !noTrunc && !wide {
			id = shortID(id)
		}
		row := []string{id, n.Name, n.NetNamespacePath, strconv.FormatBool(n.Managed), strconv.Itoa(namespaceEndpoints(n))}
		if wide {
			row = append(row, orDash(string(n.Type)), orDash(resolvConfPath(n)))
		}
		rows = append(rows, row)
	}
	return rows
}

// writeNamespaces writes the `namespace ls` table.
func writeNamespaces(w io.Writer, nss []api.Namespace, noTrunc, wide bool) error {
	return namespaceColumns.write(w, wide, namespaceRows(nss, noTrunc, wide))
}

func newNamespaceCommand(a *app) *cobra.Command {
	return a.kindCommand(newGroupCommand("namespace", "Manage network namespaces", "ns"), kindNamespace, "NAMESPACE",
		"Remove one or more namespaces (their endpoints are detached)", newNamespaceCreateCommand(a), newNamespaceLsCommand(a),
		func(ctx context.Context, c *client.Client, docs []any, wide bool) error {
			return writeNamespaces(a.io.Out, docsAs[api.Namespace](docs), false, wide)
		}, newNamespaceAttachCommand(a, true), newNamespaceAttachCommand(a, false))
}

func newNamespaceCreateCommand(a *app) *cobra.Command {
	var name, path string
	cmd := &cobra.Command{
		Use:   "create [OPTIONS] [NAME]",
		Short: "Create a network namespace, or wrap an existing one",
		Long: "Create a network namespace, named NAME if given, and print its ID. With --path, the\n" +
			"namespace at PATH (a bind mount, /proc/PID/ns/net) is wrapped instead and left in place\n" +
			"on removal.",
		Args: maxArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if len(args) == 1 {
				if name != "" && name != args[0] {
					return &usageError{cmd: cmd, err: fmt.Errorf("two names given: --name %s and %s", name, args[0])}
				}
				name = args[0]
			}
			doc := &api.Namespace{Name: name, NetNamespacePath: path, SchemaVersion: api.SchemaVersion{Major: 2, Minor: 0}}
			n, err := a.client().CreateNamespace(cmd.Context(), doc)
			if err != nil {
				return err
			}
			return a.render(n, func(bool) error {
				_, err := fmt.Fprintln(a.io.Out, n.ID)
				return err
			})
		},
	}
	cmd.Flags().StringVar(&name, "name", "", "namespace name (the same as NAME)")
	cmd.Flags().StringVar(&path, "path", "", "existing network namespace to wrap")
	return cmd
}

func newNamespaceLsCommand(a *app) *cobra.Command {
	return newLsCommand(a, kindNamespace, func(ctx context.Context, c *client.Client) ([]api.Namespace, error) {
		return c.ListNamespaces(ctx, nil)
	}, namespaceRef, func(_ context.Context, _ *client.Client, nss []api.Namespace, noTrunc, wide bool) error {
		return writeNamespaces(a.io.Out, nss, noTrunc, wide)
	})
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
		ValidArgsFunction: func(cmd *cobra.Command, args []string, toComplete string) ([]string, cobra.ShellCompDirective) {
			if len(args) == 0 {
				return a.completeRefs(kindNamespace)(cmd, args, toComplete)
			}
			return a.completeRefs(kindEndpoint)(cmd, args, toComplete)
		},
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
			return a.render(n, func(bool) error {
				if attach {
					_, err = fmt.Fprintf(a.io.Out, "endpoint %s attached to namespace %s\n", args[1], args[0])
				} else {
					_, err = fmt.Fprintf(a.io.Out, "endpoint %s detached from namespace %s\n", args[1], args[0])
				}
				return err
			})
		},
	}
}
