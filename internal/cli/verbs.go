package cli

import (
	"context"
	"time"

	"github.com/hostnet/hostnet/client"
	"github.com/spf13/cobra"
)

// The verbs every kind of object has, built once for all three kinds.

// getFunc fetches one object of a kind by its full reference.
type getFunc func(ctx context.Context, c *client.Client, ref string) (any, error)

// deleteFunc deletes one object of a kind by its full reference.
type deleteFunc func(ctx context.Context, c *client.Client, ref string) error

// tableFunc writes documents of a kind as the rows of its ls table.
type tableFunc func(ctx context.Context, c *client.Client, docs []any, wide bool) error

// newInspectCommand is `KIND inspect REF...`: the documents, as JSON
// unless -o says otherwise.
func newInspectCommand(a *app, kind, metavar string, get getFunc, table tableFunc) *cobra.Command {
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
					doc, err = get(cmd.Context(), c, ref)
					return err
				})
				return doc, err
			}, func(docs []any, wide bool) error { return table(cmd.Context(), c, docs, wide) })
		},
	})
}

// newRmCommand is `KIND rm REF...`: it goes on after a failure and fails
// at the end if any did.
func newRmCommand(a *app, kind, metavar, short string, del deleteFunc) *cobra.Command {
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
					return del(cmd.Context(), c, ref)
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
