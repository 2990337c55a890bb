package cli

import (
	"fmt"

	"github.com/hostnet/hostnet/api"

	"github.com/spf13/cobra"
)

func newDoctorCommand(a *app) *cobra.Command {
	return a.addOutputFlag(&cobra.Command{
		Use:     "doctor",
		Aliases: []string{"check"},
		Short:   "Report how the kernel differs from hostnet's intent, changing nothing",
		Long: "Compare what hostnetd has stored with what the kernel holds: bridges and ports that are\n" +
			"missing or altered, namespaces that are gone, devices and namespaces of hostnet that nothing\n" +
			"claims, differences in the nftables tables. Nothing is changed (the daemon repairs drift on\n" +
			"its own, see 'hostnet events'). Exits 1 when there is drift.",
		Args: exactArgs(0),
		RunE: func(cmd *cobra.Command, args []string) error {
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
	})
}

// eventTimeLayout is how events show their time: local, with the zone's
// offset, so that times read across machines and logs compare.
const eventTimeLayout = "2006-01-02 15:04:05 -07:00"

func newEventsCommand(a *app) *cobra.Command {
	return a.addOutputFlag(&cobra.Command{
		Use:   "events",
		Short: "List what hostnetd did on its own lately: repairs, collected endpoints, dropped networks",
		Long: "List what hostnetd did on its own lately: repairs, collected endpoints, dropped networks.\n" +
			"Times are local, with the zone's offset from UTC (-o json: RFC 3339).",
		Args: exactArgs(0),
		RunE: func(cmd *cobra.Command, args []string) error {
			evs, err := a.client().Events(cmd.Context())
			if err != nil {
				return err
			}
			if evs == nil {
				evs = []api.Event{}
			}
			return a.render(evs, func(bool) error {
				rows := make([][]string, 0, len(evs))
				for _, ev := range evs {
					rows = append(rows, []string{ev.Time.Local().Format(eventTimeLayout), ev.Kind, orDash(ev.Object), ev.Message})
				}
				return writeTable(a.io.Out, []string{"TIME", "KIND", "OBJECT", "MESSAGE"}, rows)
			})
		},
	})
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}
