package cli

import (
	"fmt"
	"strings"

	"github.com/hostnet/hostnet/api"

	"github.com/spf13/cobra"
)

func newDoctorCommand(a *app) *cobra.Command {
	var o struct {
		list       bool
		show, drop string
		prune      bool
	}
	cmd := &cobra.Command{
		Use:     "doctor",
		Aliases: []string{"check"},
		Short:   "Report how the kernel differs from hostnet's intent, changing nothing",
		Long: "Compare what hostnetd has stored with what the kernel holds: bridges and ports that are\n" +
			"missing or altered, namespaces that are gone, devices and namespaces of hostnet that nothing\n" +
			"claims, differences in the nftables tables. Nothing is changed (the daemon repairs drift on\n" +
			"its own, see 'hostnet events'). Exits 1 when there is drift.\n\n" +
			"A stored record that a start of the daemon could not read (damaged, or no longer valid) is set\n" +
			"aside and named here: its kernel objects are kept and its addresses held until it is dropped.\n" +
			"After a restore of the state from its backup (hostnetd --restore-backup), what the kernel holds\n" +
			"of hostnet's that no record wants is kept, and named here, until it is pruned (--prune).",
		Example: "  hostnet doctor\n  hostnet doctor --set-aside\n  hostnet doctor --drop-set-aside endpoints/6f1c2e4a-...\n  hostnet doctor --prune",
		Args:    exactArgs(0),
		RunE: func(cmd *cobra.Command, args []string) error {
			switch {
			case o.list:
				return a.listSetAside(cmd)
			case o.show != "":
				return a.showSetAside(cmd, o.show)
			case o.drop != "":
				return a.dropSetAside(cmd, o.drop)
			case o.prune:
				return a.prune(cmd)
			}
			rep, err := a.client().Check(cmd.Context())
			if err != nil {
				return err
			}
			err = a.render(rep, func(wide bool) error {
				if rep.InSync {
					_, err := fmt.Fprintln(a.io.Out, "in sync: the kernel holds what hostnet intends")
					return err
				}
				rows := make([][]string, 0, len(rep.Problems))
				for _, p := range rep.Problems {
					id := p.ID
					if !wide {
						id = shortID(id)
					}
					rows = append(rows, []string{p.Kind, orDash(p.Name), orDash(id), p.Problem})
				}
				return writeTable(a.io.Out, []string{"KIND", "NAME", "ID", "PROBLEM"}, rows)
			})
			if err != nil {
				return err
			}
			if !rep.InSync {
				return &ExitError{Code: 1}
			}
			return nil
		},
	}
	f := cmd.Flags()
	f.BoolVar(&o.list, "set-aside", false, "list the records a start set aside because it could not read them")
	f.StringVar(&o.show, "show-set-aside", "", "print the set-aside record `ID` as it was stored")
	f.StringVar(&o.drop, "drop-set-aside", "", "forget the set-aside record `ID`: what it held is free, the kernel objects kept for it go")
	f.BoolVar(&o.prune, "prune", false, "remove the kernel objects of hostnet's that no record wants (kept after a restore from backup)")
	cmd.MarkFlagsMutuallyExclusive("set-aside", "show-set-aside", "drop-set-aside", "prune")
	_ = cmd.RegisterFlagCompletionFunc("show-set-aside", a.completeSetAside)
	_ = cmd.RegisterFlagCompletionFunc("drop-set-aside", a.completeSetAside)
	return a.addOutputFlag(cmd)
}

// setAsideTime is how set-aside records show when they were set aside.
const setAsideTime = eventTimeLayout

func (a *app) listSetAside(cmd *cobra.Command) error {
	list, err := a.client().SetAside(cmd.Context())
	if err != nil {
		return err
	}
	if list == nil {
		list = []api.SetAsideRecord{}
	}
	return a.render(list, func(wide bool) error {
		if len(list) == 0 && !a.outputChosen() {
			_, err := fmt.Fprintln(a.io.Out, "no record is set aside")
			return err
		}
		rows := make([][]string, 0, len(list))
		for _, r := range list {
			row := []string{r.ID, r.Kind, orDash(r.Name), r.Time.Local().Format(setAsideTime), r.Reason}
			if wide {
				row = append(row, orDash(strings.Join(r.Devices, ",")), fmt.Sprint(r.Size))
			}
			rows = append(rows, row)
		}
		header := []string{"ID", "KIND", "NAME", "SET ASIDE", "REASON"}
		if wide {
			header = append(header, "KEPT", "BYTES")
		}
		return writeTable(a.io.Out, header, rows)
	})
}

func (a *app) showSetAside(cmd *cobra.Command, id string) error {
	r, err := a.client().GetSetAside(cmd.Context(), id)
	if err != nil {
		return err
	}
	return a.render(r, func(bool) error {
		out := r.Record
		if len(out) == 0 || out[len(out)-1] != '\n' {
			out = append(out, '\n')
		}
		_, err := a.io.Out.Write(out)
		return err
	})
}

func (a *app) dropSetAside(cmd *cobra.Command, id string) error {
	r, err := a.client().DropSetAside(cmd.Context(), id)
	if err != nil {
		return err
	}
	return a.render(r, func(bool) error {
		_, err := fmt.Fprintf(a.io.Out, "dropped set-aside %s %s (%s)\n", strings.ToLower(r.Kind), orDash(r.Name), r.ID)
		return err
	})
}

func (a *app) prune(cmd *cobra.Command) error {
	rep, err := a.client().Prune(cmd.Context())
	if err != nil {
		return err
	}
	return a.render(rep, func(bool) error {
		if len(rep.Removed) == 0 {
			_, err := fmt.Fprintln(a.io.Out, "nothing to remove: the kernel holds nothing of hostnet's that no record wants")
			return err
		}
		rows := make([][]string, 0, len(rep.Removed))
		for _, p := range rep.Removed {
			rows = append(rows, []string{p.Kind, orDash(p.Name), p.Problem})
		}
		return writeTable(a.io.Out, []string{"KIND", "NAME", "REMOVED"}, rows)
	})
}

// completeSetAside completes the IDs of set-aside records.
func (a *app) completeSetAside(cmd *cobra.Command, args []string, toComplete string) ([]string, cobra.ShellCompDirective) {
	list, err := a.client().SetAside(cmd.Context())
	if err != nil {
		return nil, cobra.ShellCompDirectiveNoFileComp
	}
	var out []string
	for _, r := range list {
		if strings.HasPrefix(r.ID, toComplete) {
			out = append(out, r.ID+"\t"+r.Kind+" "+r.Name)
		}
	}
	return out, cobra.ShellCompDirectiveNoFileComp
}

// eventTimeLayout is how events show their time: local, with the zone's
// offset, so that times read across machines and logs compare.
const eventTimeLayout = "2006-01-02 15:04:05 -07:00"

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}
