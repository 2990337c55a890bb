package cli

import (
	"context"

	"github.com/hostnet/hostnet/client"
	"github.com/spf13/cobra"
)

// The verbs every kind of object has, built once for all three kinds.

// getFunc fetches one object of a kind by its full reference.
type getFunc func(ctx context.Context, c *client.Client, ref string) (any, error)

// deleteFunc deletes one object of a kind by its full reference.
type deleteFunc func(ctx context.Context, c *client.Client, ref string) error

// newInspectCommand is `KIND inspect REF...`: the documents, as JSON.
func newInspectCommand(a *app, kind, metavar string, get getFunc) *cobra.Command {
	return &cobra.Command{
		Use:   "inspect " + metavar + " [" + metavar + "...]",
		Short: "Show the documents of one or more " + kind + "s",
		Args:  minArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c := a.client()
			return a.inspect(args, func(ref string) (any, error) {
				var doc any
				err := withRef(cmd.Context(), c, kind, ref, func(ref string) (err error) {
					doc, err = get(cmd.Context(), c, ref)
					return err
				})
				return doc, err
			})
		},
	}
}

// newRmCommand is `KIND rm REF...`: it goes on after a failure and fails
// at the end if any did.
func newRmCommand(a *app, kind, metavar, short string, del deleteFunc) *cobra.Command {
	return &cobra.Command{
		Use:     "rm " + metavar + " [" + metavar + "...]",
		Aliases: []string{"remove"},
		Short:   short,
		Args:    minArgs(1),
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
