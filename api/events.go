package api

import (
	"fmt"
	"net/url"
	"slices"
	"strings"
	"time"
)

// The event types and actions of API object lifecycle events.
const (
	EventTypeNetwork   = "network"
	EventTypeEndpoint  = "endpoint"
	EventTypeNamespace = "namespace"
	EventTypeRoute     = "route"
	EventTypeDaemon    = "daemon"

	EventCreate = "create"
	EventModify = "modify"
	EventDelete = "delete"
	EventAttach = "attach"
	EventDetach = "detach"
)

// EventFilter selects events, as docker's --filter does: values of one
// key are alternatives, keys must all match. Zero matches everything.
type EventFilter struct {
	Types   []string  // Event.Type
	Actions []string  // Event.Action
	Objects []string  // Event.ID or Event.Name
	Since   time.Time // only events at or after Since
}

// eventFilterKeys are the keys of GET /events' query and of --filter.
var eventFilterKeys = []string{"type", "action", "object"}

// ParseEventFilter reads a filter from GET /events' query: repeated
// type=, action= and object= parameters, and since= (RFC 3339). A bad
// parameter is an error naming it.
func ParseEventFilter(q url.Values) (EventFilter, error) {
	var f EventFilter
	for key, vals := range q {
		switch key {
		case "type":
			f.Types = append(f.Types, lowerAll(vals)...)
		case "action":
			f.Actions = append(f.Actions, lowerAll(vals)...)
		case "object":
			f.Objects = append(f.Objects, vals...)
		case "since":
			t, err := time.Parse(time.RFC3339Nano, vals[len(vals)-1])
			if err != nil {
				return f, Invalid(CodeInvalidJSON, "events: parameter since: %q is not an RFC 3339 time", vals[len(vals)-1])
			}
			f.Since = t
		case "follow":
		default:
			return f, Invalid(CodeInvalidJSON, "events: unknown parameter %q (want %s, since or follow)", key, strings.Join(eventFilterKeys, ", "))
		}
	}
	return f, nil
}

// AddFilter adds "key=value" (a --filter argument) to f.
func (f *EventFilter) AddFilter(kv string) error {
	key, val, ok := strings.Cut(kv, "=")
	if !ok || val == "" {
		return fmt.Errorf("invalid filter %q: want key=value, key one of %s", kv, strings.Join(eventFilterKeys, ", "))
	}
	switch strings.ToLower(key) {
	case "type":
		f.Types = append(f.Types, strings.ToLower(val))
	case "action":
		f.Actions = append(f.Actions, strings.ToLower(val))
	case "object", "id", "name":
		f.Objects = append(f.Objects, val)
	default:
		return fmt.Errorf("invalid filter %q: unknown key %q (want %s)", kv, key, strings.Join(eventFilterKeys, ", "))
	}
	return nil
}

// Query returns f as GET /events' query parameters.
func (f EventFilter) Query() url.Values {
	q := url.Values{}
	for _, v := range f.Types {
		q.Add("type", v)
	}
	for _, v := range f.Actions {
		q.Add("action", v)
	}
	for _, v := range f.Objects {
		q.Add("object", v)
	}
	if !f.Since.IsZero() {
		q.Set("since", f.Since.UTC().Format(time.RFC3339Nano))
	}
	return q
}

// Match reports whether ev passes f.
func (f EventFilter) Match(ev Event) bool {
	if len(f.Types) > 0 && !slices.Contains(f.Types, strings.ToLower(ev.Type)) {
		return false
	}
	if len(f.Actions) > 0 && !slices.Contains(f.Actions, strings.ToLower(ev.Action)) {
		return false
	}
	if len(f.Objects) > 0 && !slices.Contains(f.Objects, ev.ID) && (ev.Name == "" || !slices.Contains(f.Objects, ev.Name)) {
		return false
	}
	return f.Since.IsZero() || !ev.Time.Before(f.Since)
}

func lowerAll(vs []string) []string {
	out := make([]string, len(vs))
	for i, v := range vs {
		out[i] = strings.ToLower(v)
	}
	return out
}
