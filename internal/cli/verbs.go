package cli

import (
	"context"
	"fmt"
	"sort"
	"time"

	"github.com/hostnet/hostnet/client"
	"github.com/spf13/cobra"
)

// The verbs every kind of object has, built once for all three kinds.

// tableFunc writes documents of a kind as the rows of its ls table.
type tableFunc func(ctx context.Context, c *client.Client, docs []any, wide bool) error

// docsAs is the documents getObject returned (each a *T) as values, for
// a tableFunc.
func docsAs[T any](docs []any) []T {
	out := make([]T, len(docs))
	for i, d := range docs {
		out[i] = *d.(*T)
	}
	return out
}

// newLsCommand is `KIND ls`: list fetches the objects (the caller adds
// the flags it reads), printed sorted by name (what ref returns first):
// with -q their IDs alone, one a line; else as -o says, table writing the
// table's rows (--no-trunc: IDs in full).
func newLsCommand[T any](a *app, kind string, list func(ctx context.Context, c *client.Client) ([]T, error),
	ref func(*T) (name, id string), table func(ctx context.Context, c *client.Client, objs []T, noTrunc, wide bool) error) *cobra.Command {
	var quiet, noTrunc bool
	cmd := &cobra.Command{
		Use:     "ls [OPTIONS]",
		Aliases: []string{"list"},
		Short:   "List " + kind + "s",
		Args:    exactArgs(0),
		RunE: func(cmd *cobra.Command, args []string) error {
			ctx, c := cmd.Context(), a.client()
			objs, err := list(ctx, c)
			if err != nil {
				return err
			}
			name := func(i int) string { n, _ := ref(&objs[i]); return n }
			sort.SliceStable(objs, func(i, j int) bool { return name(i) < name(j) })
			if quiet {
				for i := range objs {
					_, id := ref(&objs[i])
					fmt.Fprintln(a.io.Out, id)
				}
				return nil
			}
			if objs == nil {
				objs = []T{} // a JSON array, not null
			}
			return a.render(objs, func(wide bool) error { return table(ctx, c, objs, noTrunc, wide) })
		},
	}
	a.addOutputFlag(cmd)
	cmd.Flags().BoolVarP(&quiet, "quiet", "q", false, "only print "+kind+" IDs")
	cmd.Flags().BoolVar(&noTrunc, "no-trunc", false, "do not shorten IDs")
	return cmd
}

// newInspectCommand is `KIND inspect REF...`: the documents, as JSON
// unless -o says otherwise.
// kindCommand fills group with the commands of one kind of object:
// create, ls, inspect (table renders its table forms), rm (rmShort says
// what it does), and extra.
func (a *app) kindCommand(group *cobra.Command, kind, metavar, rmShort string, create, ls *cobra.Command, table tableFunc, extra ...*cobra.Command) *cobra.Command {
	group.AddCommand(create, ls, newInspectCommand(a, kind, metavar, table), newRmCommand(a, kind, metavar, rmShort))
	group.AddCommand(extra...)
	return group
}

func newInspectCommand(a *app, kind, metavar string, table tableFunc) *cobra.Command {
	return a.addOutputFlag(&cobra.Command{
		Use:   "inspect [OPTIONS] " + metavar + " [" + metavar + "...]",
		Short: "Show the documents of one or more " + kind + "s",
		Long: "Show the HCN documents of one or more " + kind + "s, as a JSON array; -o yaml writes YAML,\n" +
			"-o table and -o wide the rows 'hostnet " + kind + " ls' would show.",
		Args:              minArgs(1),
		ValidArgsFunction: a.completeRefs(kind),
		RunE: func(cmd *cobra.Command, args []string) error {
			c := a.client()
			return a.inspect(args, func(ref string) (any, error) {
				var doc any
				err := withRef(cmd.Context(), c, kind, ref, func(ref string) (err error) {
					doc, err = getObject(cmd.Context(), c, kind, ref)
					return err
				})
				return doc, err
			}, func(docs []any, wide bool) error { return table(cmd.Context(), c, docs, wide) })
		},
	})
}

// newRmCommand is `KIND rm REF...`: it goes on after a failure and fails
// at the end if any did.
func newRmCommand(a *app, kind, metavar, short string) *cobra.Command {
	return &cobra.Command{
		Use:               "rm " + metavar + " [" + metavar + "...]",
		Aliases:           []string{"remove"},
		Short:             short,
		Long:              short + ", printing each as it goes. A reference that matches nothing fails the\ncommand (exit 1) after the others are removed.",
		Args:              minArgs(1),
		ValidArgsFunction: a.completeRefs(kind),
		RunE: func(cmd *cobra.Command, args []string) error {
			c := a.client()
			return a.remove(args, func(ref string) error {
				return withRef(cmd.Context(), c, kind, ref, func(ref string) error {
					return deleteObject(cmd.Context(), c, kind, ref)
				})
			})
		},
	}
}

// completeRefs completes the names of the objects of kind, asking the
// daemon briefly.
func (a *app) completeRefs(kind string) cobra.CompletionFunc {
	return func(cmd *cobra.Command, args []string, toComplete string) ([]string, cobra.ShellCompDirective) {
		ctx, cancel := context.WithTimeout(context.Background(), 500*time.Millisecond)
		defer cancel()
		names, err := listNames(ctx, a.client(), kind)
		if err != nil {
			return nil, cobra.ShellCompDirectiveNoFileComp
		}
		return names, cobra.ShellCompDirectiveNoFileComp
	}
}
