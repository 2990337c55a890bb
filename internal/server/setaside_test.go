package server

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"testing"

	"github.com/hostnet/hostnet/api"
	"github.com/hostnet/hostnet/internal/driver/nat"
	"github.com/hostnet/hostnet/internal/store"
)

// The set-aside routes: a start over an unreadable record lists it, shows
// its raw bytes and drops it; the lists answer 200 over a record damaged
// while running; a prune answers what it removed.
func TestSetAsideRoutes(t *testing.T) {
	dir := t.TempDir()
	svc, st := fuzzService(t, dir+"/netns", nat.New())
	const bad = "6f7b3c1e-0000-4000-8000-000000000001"
	put := func(bucket, key, raw string) {
		t.Helper()
		if err := st.Update(func(tx store.Tx) error { return tx.Put(bucket, key, []byte(raw)) }); err != nil {
			t.Fatal(err)
		}
	}
	put(store.Networks, bad, `{"Doc":{"ID":"`+bad+`",`+strings.Repeat("[", 20000))
	if _, err := svc.Start(context.Background()); err != nil {
		t.Fatalf("start over an unreadable record: %v", err)
	}
	c := serve(t, svc, dir)
	call := func(method, path string, out any) int {
		t.Helper()
		req, _ := http.NewRequest(method, "http://hostnetd"+path, nil)
		resp, err := c.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		if out != nil && resp.StatusCode < 300 {
			if err := json.Unmarshal(b, out); err != nil {
				t.Fatalf("%s %s: %v\n%s", method, path, err, b)
			}
		}
		return resp.StatusCode
	}
	var list []api.SetAsideRecord
	if code := call("GET", "/setaside", &list); code != 200 || len(list) != 1 || list[0].ID != "networks/"+bad || list[0].Record != nil {
		t.Fatalf("GET /setaside: %d %+v", code, list)
	}
	var one api.SetAsideRecord
	if code := call("GET", "/setaside/networks/"+bad, &one); code != 200 || !strings.HasPrefix(string(one.Record), `{"Doc":{"ID":"`+bad) {
		t.Errorf("GET /setaside/{id}: %d %.60s", code, one.Record)
	}
	if code := call("GET", "/setaside/networks%2F"+bad, &one); code != 200 || one.Key != bad {
		t.Errorf("GET /setaside/{id} escaped: %d %+v", code, one)
	}

	put(store.Endpoints, bad, "{not json")
	for _, p := range []string{"/networks", "/endpoints", "/namespaces", "/check"} {
		if code := call("GET", p, nil); code != 200 {
			t.Errorf("GET %s over a record damaged while running: %d", p, code)
		}
	}
	var dropped api.SetAsideRecord
	if code := call("DELETE", "/setaside/"+bad, &dropped); code != 200 || dropped.Kind != "Network" {
		t.Errorf("DELETE /setaside/{key}: %d %+v", code, dropped)
	}
	if code := call("DELETE", "/setaside/endpoints/"+bad, &dropped); code != 200 || dropped.Kind != "Endpoint" {
		t.Errorf("DELETE of a record damaged while running: %d %+v", code, dropped)
	}
	if code := call("DELETE", "/setaside/networks/"+bad, nil); code != 404 {
		t.Errorf("DELETE again: %d, want 404", code)
	}
	var rep api.PruneReport
	if code := call("POST", "/prune", &rep); code != 200 || rep.Removed == nil {
		t.Errorf("POST /prune: %d %+v", code, rep)
	}
}
