package cli

import (
	"encoding/json"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/hostnet/hostnet/api"
)

// events passes its filters and --since to the daemon, and -o wide shows
// the type, action and ID of each event.
func TestEventsFilters(t *testing.T) {
	at := time.Date(2026, 11, 27, 13, 28, 0, 0, time.UTC)
	var query string
	mux := http.NewServeMux()
	mux.HandleFunc("GET /events", func(w http.ResponseWriter, r *http.Request) {
		query = r.URL.RawQuery
		answer(w, 200, []api.Event{{Seq: 7, Time: at, Kind: "Deleted", Type: "endpoint", Action: "delete", ID: "e1", Name: "web",
			Object: "endpoint web (e1)", Message: "endpoint deleted"}})
	})
	d := newFakeDaemon(t, mux)
	out, errOut, code := runCLI(t, d.socket, "", "events", "--filter", "type=endpoint", "--filter", "action=delete", "--since", "2026-11-27T13:00:00Z", "-o", "wide")
	if code != 0 {
		t.Fatalf("events: exit %d: %s", code, errOut)
	}
	if query != "action=delete&since=2026-11-27T13%3A00%3A00Z&type=endpoint" {
		t.Errorf("query %q", query)
	}
	for _, want := range []string{"SEQ", "TYPE", "ACTION", "endpoint", "delete", "e1", "web"} {
		if !strings.Contains(out, want) {
			t.Errorf("-o wide lacks %q:\n%s", want, out)
		}
	}
	out, _, code = runCLI(t, d.socket, "", "events", "-o", "json")
	var evs []api.Event
	if code != 0 || json.Unmarshal([]byte(out), &evs) != nil || len(evs) != 1 || evs[0].Action != "delete" {
		t.Errorf("-o json: exit %d: %s", code, out)
	}
	for _, bad := range [][]string{{"--filter", "colour=red"}, {"--filter", "type"}, {"--since", "yesterday"}} {
		if _, errOut, code := runCLI(t, d.socket, "", append([]string{"events"}, bad...)...); code == 0 || !strings.Contains(errOut, "invalid") {
			t.Errorf("events %v: exit %d: %s", bad, code, errOut)
		}
	}
}

// events -f prints each event of the stream as it comes, and returns when
// the daemon ends it.
func TestEventsFollow(t *testing.T) {
	at := time.Date(2026, 11, 27, 13, 28, 0, 0, time.UTC)
	mux := http.NewServeMux()
	mux.HandleFunc("GET /events", func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Query().Get("follow") != "1" || r.URL.Query().Get("type") != "network" {
			answerError(w, 400, api.CodeInvalidJSON, "want follow=1&type=network, got "+r.URL.RawQuery)
			return
		}
		w.Header().Set("Content-Type", "application/x-ndjson")
		enc := json.NewEncoder(w)
		for i, action := range []string{"create", "delete"} {
			_ = enc.Encode(api.Event{Seq: uint64(i + 1), Time: at, Kind: eventKindOf(action), Type: "network", Action: action, ID: "n1", Name: "blue", Object: "network blue (n1)", Message: "network " + action + "d"})
			w.(http.Flusher).Flush()
		}
	})
	d := newFakeDaemon(t, mux)
	out, errOut, code := runCLI(t, d.socket, "", "events", "-f", "--filter", "type=network", "-o", "json")
	if code == 0 || !strings.Contains(errOut, "ended the event stream") {
		t.Errorf("a stream the daemon ends: exit %d: %s", code, errOut)
	}
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if len(lines) != 2 {
		t.Fatalf("want 2 lines of JSON, got:\n%s", out)
	}
	for i, line := range lines {
		var ev api.Event
		if err := json.Unmarshal([]byte(line), &ev); err != nil || ev.Seq != uint64(i+1) {
			t.Errorf("line %d %q: %+v %v", i, line, ev, err)
		}
	}
	out, _, _ = runCLI(t, d.socket, "", "events", "-f", "--filter", "type=network", "--format", "{{.Seq}} {{.Action}} {{.Name}}")
	if out != "1 create blue\n2 delete blue\n" {
		t.Errorf("followed with a template:\n%s", out)
	}
	out, _, _ = runCLI(t, d.socket, "", "events", "-f", "--filter", "type=network")
	if !strings.HasPrefix(out, "TIME") || !strings.Contains(out, "Created") || !strings.Contains(out, "network blue") {
		t.Errorf("followed table:\n%s", out)
	}
}

func eventKindOf(action string) string {
	return map[string]string{"create": "Created", "delete": "Deleted"}[action]
}
