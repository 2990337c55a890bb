package service

import (
	"net/http"
	"strings"
	"testing"

	"github.com/hostnet/hostnet/api"
	"github.com/hostnet/hostnet/internal/store"
)

// routeLines are the lines of the fake host's dump that show a route to dst.
func (l *lab) routeLines(dst string) []string {
	var out []string
	for _, line := range strings.Split(l.dump(), "\n") {
		if strings.Contains(line, "route "+dst) {
			out = append(out, line)
		}
	}
	return out
}

// A route object is desired state of the endpoints it lists: its routes
// are in their namespaces while they are attached, follow a detach and an
// attach, and go with the object; an endpoint's deletion drops it from the
// object.
func TestRouteObjectFollowsItsEndpoints(t *testing.T) {
	l, ctx := blueLab(t)
	web, webNS := l.attached("blue", "web")
	db, _ := l.attached("blue", "db")
	r, err := l.svc.CreateRoute(ctx, api.HostComputeRoute{HostComputeEndpoints: []string{"web", db.ID},
		Setting: []api.SDNRouteSettings{{DestinationPrefix: "169.254.169.254/32", NextHop: "10.7.0.9"}}})
	l.must(err)
	if r.HostComputeEndpoints[0] != web.ID || r.SchemaVersion.Major != 2 {
		t.Errorf("stored %+v: want endpoint IDs and schema 2.0", r)
	}
	if got := l.routeLines("169.254.169.254/32 via 10.7.0.9"); len(got) != 2 {
		t.Errorf("routes in the namespaces: %q, want one in each", got)
	}
	l.check()
	again, err := l.svc.CreateRoute(ctx, *r)
	if err != nil || again.ID != r.ID {
		t.Errorf("a retried create: %v", err)
	}
	list, err := l.svc.ListRoutes(ctx, `{"HostComputeEndpoints":"`+web.ID+`"}`)
	l.must(err)
	if len(list) != 1 || list[0].ID != r.ID {
		t.Errorf("query by endpoint: %+v", list)
	}
	if list, _ := l.svc.ListRoutes(ctx, `{"ID":"`+fixedID("nothing")+`"}`); len(list) != 0 {
		t.Errorf("query by another ID: %+v", list)
	}

	// Detached, web loses the route; attached again, it has it back.
	_, err = l.svc.ModifyNamespace(ctx, webNS.ID, nsRequest(api.RequestRemove, web.ID))
	l.must(err)
	if got := l.routeLines("169.254.169.254/32"); len(got) != 1 {
		t.Errorf("after web's detach: %q", got)
	}
	_, err = l.svc.ModifyNamespace(ctx, webNS.ID, nsRequest(api.RequestAdd, web.ID))
	l.must(err)
	if got := l.routeLines("169.254.169.254/32"); len(got) != 2 {
		t.Errorf("after web's attach: %q", got)
	}
	l.check()

	// db's deletion drops it from the route.
	l.must(l.svc.DeleteEndpoint(ctx, db.ID))
	got, err := l.svc.GetRoute(ctx, r.ID)
	l.must(err)
	if len(got.HostComputeEndpoints) != 1 || got.HostComputeEndpoints[0] != web.ID {
		t.Errorf("after db's deletion: %+v", got.HostComputeEndpoints)
	}
	l.check()

	l.must(l.svc.DeleteRoute(ctx, r.ID))
	if got := l.routeLines("169.254.169.254/32"); len(got) != 0 {
		t.Errorf("after the route's deletion: %q", got)
	}
	if _, err := l.svc.GetRoute(ctx, r.ID); !api.IsNotFound(err) {
		t.Errorf("get after delete: %v", err)
	}
	l.check()
}

// Route objects that cannot be realised are a 400 naming the field, and
// nothing is stored or made.
func TestRouteObjectRefusals(t *testing.T) {
	l, ctx := blueLab(t)
	l.attached("blue", "web")
	l.network("green", "10.8.0.0/24")
	l.attached("green", "other")
	before := l.state()
	for _, c := range []struct {
		what  string
		r     api.HostComputeRoute
		parts []string
	}{
		{"hcsshim's test next hop", api.HostComputeRoute{HostComputeEndpoints: []string{"web"},
			Setting: []api.SDNRouteSettings{{DestinationPrefix: "169.254.169.254/24", NextHop: "127.10.0.33"}}},
			[]string{"Setting[0].NextHop", "127.10.0.33", "web"}},
		{"a next hop off one endpoint's subnet", api.HostComputeRoute{HostComputeEndpoints: []string{"web", "other"},
			Setting: []api.SDNRouteSettings{{DestinationPrefix: "192.0.2.0/24", NextHop: "10.7.0.9"}}},
			[]string{"Setting[0].NextHop", "10.7.0.9", "other", "HostComputeEndpoints[1]"}},
		{"NeedEncap", api.HostComputeRoute{HostComputeEndpoints: []string{"web"},
			Setting: []api.SDNRouteSettings{{DestinationPrefix: "192.0.2.0/24", NextHop: "10.7.0.9", NeedEncap: true}}},
			[]string{"Setting[0].NeedEncap"}},
		{"an unknown endpoint", api.HostComputeRoute{HostComputeEndpoints: []string{"web", "nobody"},
			Setting: []api.SDNRouteSettings{{DestinationPrefix: "192.0.2.0/24"}}},
			[]string{"HostComputeEndpoints[1]", "nobody"}},
		{"an endpoint by name and by ID", api.HostComputeRoute{HostComputeEndpoints: []string{"web", fixedID("web")},
			Setting: []api.SDNRouteSettings{{DestinationPrefix: "192.0.2.0/24"}}},
			[]string{"HostComputeEndpoints[1]", "twice"}},
	} {
		_, err := l.svc.CreateRoute(ctx, c.r)
		refused(t, c.what, err, http.StatusBadRequest, c.parts...)
		l.unchanged(c.what, before)
	}
	var n int
	l.must(l.st.View(func(tx store.Tx) error {
		return tx.ForEach(store.Routes, "", func(string, []byte) error { n++; return nil })
	}))
	if n != 0 {
		t.Errorf("%d route records stored", n)
	}
}

func nsRequest(rt api.RequestType, epID string) api.ModifyRequest {
	return api.ModifyRequest{ResourceType: api.ResourceEndpoint, RequestType: rt, Settings: []byte(`{"EndpointId":"` + epID + `"}`)}
}

// At a start, a route record that cannot be read is set aside (an event
// and doctor say so) and the start goes on; one that lists an endpoint
// that is not there drops it; the others are realised.
func TestRouteRecordsAtStart(t *testing.T) {
	l, ctx := blueLab(t)
	web, _ := l.attached("blue", "web")
	good, err := l.svc.CreateRoute(ctx, api.HostComputeRoute{HostComputeEndpoints: []string{web.ID},
		Setting: []api.SDNRouteSettings{{DestinationPrefix: "192.0.2.0/24", NextHop: "10.7.0.9"}}})
	l.must(err)
	gone := fixedID("gone")
	dangling := fixedID("dangling")
	l.put(store.Routes, dangling, `{"Doc":{"ID":"`+dangling+`","HostComputeEndpoints":["`+web.ID+`","`+gone+`"],"Setting":[{"DestinationPrefix":"198.51.100.0/24","NextHop":"10.7.0.9"}],"SchemaVersion":{"Major":2,"Minor":0}}}`)
	l.put(store.Routes, fixedID("garbage"), `{"Doc":`)
	bad := fixedID("bad")
	l.put(store.Routes, bad, `{"Doc":{"ID":"`+bad+`","HostComputeEndpoints":["`+web.ID+`"],"Setting":[{"DestinationPrefix":"10.0.0/8"}]}}`)
	logged := l.restart()
	if !strings.Contains(logged, "set aside") {
		t.Errorf("the start does not log the records set aside:\n%s", logged)
	}
	if evs := l.eventsOf("SetAside"); len(evs) != 2 || !strings.Contains(evs[0].Object+evs[1].Object, "Route ") {
		t.Errorf("SetAside events: %+v", evs)
	}
	if p := l.problemsOf(); !strings.Contains(p, "Route") {
		t.Errorf("doctor does not name the route records set aside:\n%s", p)
	}
	r, err := l.svc.GetRoute(ctx, dangling)
	l.must(err)
	if len(r.HostComputeEndpoints) != 1 || r.HostComputeEndpoints[0] != web.ID {
		t.Errorf("the dangling endpoint is still listed: %+v", r.HostComputeEndpoints)
	}
	if got := l.routeLines("192.0.2.0/24"); len(got) != 1 {
		t.Errorf("%s's route: %q", good.ID, got)
	}
	if got := l.routeLines("198.51.100.0/24"); len(got) != 1 {
		t.Errorf("the dangling record's route: %q", got)
	}
	if list, _ := l.svc.ListRoutes(ctx, ""); len(list) != 2 {
		t.Errorf("routes after the start: %+v", list)
	}
}
