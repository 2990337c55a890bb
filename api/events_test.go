package api

import (
	"net/url"
	"testing"
	"time"
)

func TestEventFilter(t *testing.T) {
	at := time.Date(2026, 12, 5, 10, 0, 0, 0, time.UTC)
	ev := Event{Time: at, Type: EventTypeEndpoint, Action: EventDelete, ID: "e1", Name: "web"}
	for _, c := range []struct {
		query string
		match bool
	}{
		{"", true},
		{"type=endpoint", true},
		{"type=network&type=ENDPOINT", true},
		{"type=network", false},
		{"type=endpoint&action=create", false},
		{"action=create&action=delete", true},
		{"object=web", true},
		{"object=e1", true},
		{"object=db", false},
		{"since=2026-12-05T09:59:59Z", true},
		{"since=2026-12-05T10:00:01Z", false},
		{"follow=1&type=endpoint", true},
	} {
		q, _ := url.ParseQuery(c.query)
		f, err := ParseEventFilter(q)
		if err != nil {
			t.Errorf("%q: %v", c.query, err)
			continue
		}
		if f.Match(ev) != c.match {
			t.Errorf("%q matches %v, want %v", c.query, !c.match, c.match)
		}
		// What the client sends is what the server reads.
		back, err := ParseEventFilter(f.Query())
		if err != nil || back.Match(ev) != c.match {
			t.Errorf("%q through Query: %v", c.query, err)
		}
	}
	for _, bad := range []string{"colour=red", "since=yesterday"} {
		q, _ := url.ParseQuery(bad)
		if _, err := ParseEventFilter(q); err == nil || AsError(err).Status != 400 {
			t.Errorf("%q: %v, want a 400", bad, err)
		}
	}
	var f EventFilter
	for _, kv := range []string{"type=Network", "action=delete", "name=web", "id=e1"} {
		if err := f.AddFilter(kv); err != nil {
			t.Errorf("%s: %v", kv, err)
		}
	}
	if len(f.Types) != 1 || f.Types[0] != "network" || len(f.Objects) != 2 {
		t.Errorf("filter %+v", f)
	}
	for _, bad := range []string{"type", "type=", "colour=red"} {
		if err := f.AddFilter(bad); err == nil {
			t.Errorf("%q accepted", bad)
		}
	}
}
