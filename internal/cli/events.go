package cli

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os/signal"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"github.com/hostnet/hostnet/api"
)

func newEventsCommand(a *app) *cobra.Command {
	var o struct {
		follow  bool
		filters []string
		since   string
	}
	cmd := a.addOutputFlag(&cobra.Command{
		Use:   "events",
		Short: "List recent events, or follow them: objects created, changed, deleted; repairs",
		Long: "List the recent events of hostnetd: the networks, endpoints and namespaces clients created,\n" +
			"modified, deleted, attached and detached, and what the daemon did on its own (repairs,\n" +
			"collected endpoints, dropped networks). With -f, go on printing events as they happen until\n" +
			"interrupted (-o json: one JSON document a line).\n\n" +
			"Filters (--filter key=value, repeatable; values of one key are alternatives, keys must all match):\n" +
			"  type=network|endpoint|namespace|daemon\n" +
			"  action=create|modify|delete|attach|detach|repair|collect|drop|...\n" +
			"  object=ID or name\n" +
			"Times are local, with the zone's offset from UTC (-o json: RFC 3339).",
		Example: "  hostnet events\n  hostnet events -f --filter type=endpoint\n  hostnet events --filter action=delete --since 10m -o json",
		Args:    exactArgs(0),
		RunE: func(cmd *cobra.Command, args []string) error {
			var f api.EventFilter
			for _, kv := range o.filters {
				if err := f.AddFilter(kv); err != nil {
					return &usageError{cmd: cmd, err: err}
				}
			}
			if o.since != "" {
				t, err := parseSince(o.since, time.Now())
				if err != nil {
					return &usageError{cmd: cmd, err: err}
				}
				f.Since = t
			}
			if o.follow {
				return a.followEvents(cmd.Context(), f)
			}
			evs, err := a.client().FilterEvents(cmd.Context(), f)
			if err != nil {
				return err
			}
			if evs == nil {
				evs = []api.Event{}
			}
			return a.render(evs, func(wide bool) error {
				rows := make([][]string, 0, len(evs))
				for _, ev := range evs {
					rows = append(rows, eventRow(ev, wide))
				}
				return writeTable(a.io.Out, eventHeader(wide), rows)
			})
		},
	})
	cmd.Flags().BoolVarP(&o.follow, "follow", "f", false, "go on printing events as they happen, until interrupted")
	cmd.Flags().StringArrayVar(&o.filters, "filter", nil, "show only the events that match `key=value` (type, action, object); repeatable")
	cmd.Flags().StringVar(&o.since, "since", "", "show only the events since `time`: RFC 3339, or a duration before now (10m, 1h)")
	_ = cmd.RegisterFlagCompletionFunc("filter", cobra.FixedCompletions([]string{
		"type=network", "type=endpoint", "type=namespace", "type=daemon",
		"action=create", "action=modify", "action=delete", "action=attach", "action=detach", "action=repair",
	}, cobra.ShellCompDirectiveNoFileComp|cobra.ShellCompDirectiveNoSpace))
	return cmd
}

// parseSince reads --since: an RFC 3339 time, a Unix time in seconds, or
// a duration before now.
func parseSince(s string, now time.Time) (time.Time, error) {
	if d, err := time.ParseDuration(s); err == nil {
		if d < 0 {
			d = -d
		}
		return now.Add(-d), nil
	}
	if t, err := time.Parse(time.RFC3339Nano, s); err == nil {
		return t, nil
	}
	if sec, err := strconv.ParseInt(s, 10, 64); err == nil {
		return time.Unix(sec, 0), nil
	}
	return time.Time{}, fmt.Errorf("invalid --since %q: want an RFC 3339 time (2026-01-02T15:04:05Z), Unix seconds, or a duration such as 10m", s)
}

func eventHeader(wide bool) []string {
	if wide {
		return []string{"SEQ", "TIME", "TYPE", "ACTION", "KIND", "ID", "NAME", "MESSAGE"}
	}
	return []string{"TIME", "KIND", "OBJECT", "MESSAGE"}
}

func eventRow(ev api.Event, wide bool) []string {
	at := ev.Time.Local().Format(eventTimeLayout)
	if wide {
		seq := "-"
		if ev.Seq > 0 {
			seq = strconv.FormatUint(ev.Seq, 10)
		}
		return []string{seq, at, orDash(ev.Type), orDash(ev.Action), ev.Kind, orDash(ev.ID), orDash(ev.Name), ev.Message}
	}
	return []string{at, ev.Kind, orDash(ev.Object), ev.Message}
}

// followEvents prints events as they come, each at once: a JSON document a
// line (-o json), a YAML document each (-o yaml), the template's line, or
// a table row in fixed-width columns (a stream cannot be aligned after
// the fact). It returns when interrupted, or with the daemon's end of the
// stream.
func (a *app) followEvents(ctx context.Context, f api.EventFilter) error {
	ctx, stop := signal.NotifyContext(ctx, syscall.SIGINT, syscall.SIGTERM, syscall.SIGPIPE)
	defer stop()
	out := bufio.NewWriter(a.io.Out)
	wide := a.mode == outputWide
	if !a.structured() {
		writeEventLine(out, eventHeader(wide), wide)
		if err := out.Flush(); err != nil {
			return err
		}
	}
	err := a.client().FollowEvents(ctx, f, func(ev api.Event) error {
		var err error
		switch {
		case a.tmpl != nil:
			if err = a.tmpl.Execute(out, ev); err == nil {
				err = out.WriteByte('\n')
			}
		case a.mode == outputJSON:
			err = writeJSONLine(out, ev)
		case a.mode == outputYAML:
			if _, err = io.WriteString(out, "---\n"); err == nil {
				err = writeYAML(out, ev)
			}
		default:
			writeEventLine(out, eventRow(ev, wide), wide)
		}
		if err != nil {
			return err
		}
		return out.Flush()
	})
	if errors.Is(err, syscall.EPIPE) {
		return nil // the reader went: as a user's ^C
	}
	return err
}

// eventWidths are the widths of the columns of followed events, but the
// last.
var eventWidths = map[bool][]int{false: {26, 10, 50}, true: {6, 26, 9, 9, 10, 36, 16}}

func writeEventLine(w io.Writer, cols []string, wide bool) {
	var b strings.Builder
	for i, c := range cols {
		if i < len(cols)-1 {
			fmt.Fprintf(&b, "%-*s ", eventWidths[wide][i], c)
		} else {
			b.WriteString(c)
		}
	}
	fmt.Fprintln(w, strings.TrimRight(b.String(), " "))
}

// writeJSONLine writes v as one line of JSON.
func writeJSONLine(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetEscapeHTML(false)
	return enc.Encode(v)
}
