package server

import (
	"bufio"
	"context"
	"encoding/json"
	"log/slog"
	"net"
	"net/http"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hostnet/hostnet/api"
	"github.com/hostnet/hostnet/internal/driver/nat"
)

type observed struct {
	method, route string
	status        int
}

// A followed event stream sees the lifecycle of objects as clients change
// them, filtered, and ends when the server shuts down; the request
// observer sees every request by route and status, the stream aside.
func TestFollowEvents(t *testing.T) {
	dir := t.TempDir()
	svc, _ := fuzzService(t, filepath.Join(dir, "netns"), nat.New())
	defer svc.Close()
	var mu sync.Mutex
	var seen []observed
	srv := New(svc, slog.New(slog.DiscardHandler), Options{ObserveRequest: func(method, route string, status int, _ time.Duration) {
		mu.Lock()
		seen = append(seen, observed{method, route, status})
		mu.Unlock()
	}})
	path := filepath.Join(dir, "hostnet.sock")
	l, err := net.Listen("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- srv.Serve(l) }()
	hc := &http.Client{Transport: &http.Transport{DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
		return (&net.Dialer{}).DialContext(ctx, "unix", path)
	}}}
	call := func(method, url, body string) int {
		t.Helper()
		req, _ := http.NewRequest(method, "http://hostnetd"+url, strings.NewReader(body))
		resp, err := hc.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}

	resp, err := hc.Get("http://hostnetd/events?follow=1&type=network&type=endpoint")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if ct := resp.Header.Get("Content-Type"); resp.StatusCode != 200 || ct != "application/x-ndjson" {
		t.Fatalf("follow: %d %s", resp.StatusCode, ct)
	}
	lines := make(chan api.Event, 16)
	go func() {
		defer close(lines)
		sc := bufio.NewScanner(resp.Body)
		for sc.Scan() {
			var ev api.Event
			if err := json.Unmarshal(sc.Bytes(), &ev); err != nil {
				t.Errorf("line %q: %v", sc.Text(), err)
				return
			}
			lines <- ev
		}
	}()

	if code := call("POST", "/networks", `{"Name":"evnet","Type":"NAT","Ipams":[{"Subnets":[{"IpAddressPrefix":"10.78.0.0/24"}]}]}`); code != 201 {
		t.Fatalf("create network: %d", code)
	}
	if code := call("POST", "/namespaces", `{"Name":"evns"}`); code != 201 {
		t.Fatalf("create namespace: %d", code)
	}
	if code := call("POST", "/endpoints", `{"Name":"evep","HostComputeNetwork":"evnet"}`); code != 201 {
		t.Fatalf("create endpoint: %d", code)
	}
	if code := call("DELETE", "/endpoints/evep", ""); code != 200 {
		t.Fatalf("delete endpoint: %d", code)
	}
	if code := call("DELETE", "/networks/evnet", ""); code != 200 {
		t.Fatalf("delete network: %d", code)
	}
	if code := call("DELETE", "/networks/evnet", ""); code != 404 {
		t.Fatalf("delete network again: %d", code)
	}
	want := []string{"network create evnet", "endpoint create evep", "endpoint delete evep", "network delete evnet"}
	var got []string
	var last uint64
	for len(got) < len(want) {
		select {
		case ev, ok := <-lines:
			if !ok {
				t.Fatalf("the stream ended after %q", got)
			}
			if ev.Seq <= last || ev.ID == "" || ev.Time.IsZero() {
				t.Errorf("event %+v after seq %d", ev, last)
			}
			last = ev.Seq
			got = append(got, ev.Type+" "+ev.Action+" "+ev.Name)
		case <-time.After(10 * time.Second):
			t.Fatalf("events so far %q, want %q", got, want)
		}
	}
	if strings.Join(got, ",") != strings.Join(want, ",") {
		t.Errorf("events %q, want %q", got, want)
	}

	// The recorded events, filtered by action.
	r2, err := hc.Get("http://hostnetd/events?action=delete")
	if err != nil {
		t.Fatal(err)
	}
	var deletes []api.Event
	if err := json.NewDecoder(r2.Body).Decode(&deletes); err != nil || len(deletes) != 2 {
		t.Errorf("deletes: %+v, %v", deletes, err)
	}
	r2.Body.Close()
	if code := call("GET", "/events?colour=red", ""); code != 400 {
		t.Errorf("unknown filter: %d, want 400", code)
	}

	// A client that goes ends its stream: the daemon follows it no more.
	if svc.Followers() != 1 {
		t.Errorf("%d followers, want 1", svc.Followers())
	}
	r3, err := hc.Get("http://hostnetd/events?follow=1")
	if err != nil {
		t.Fatal(err)
	}
	waitFollowers := func(n int) {
		t.Helper()
		for deadline := time.Now().Add(5 * time.Second); svc.Followers() != n; time.Sleep(10 * time.Millisecond) {
			if time.Now().After(deadline) {
				t.Fatalf("%d followers, want %d", svc.Followers(), n)
			}
		}
	}
	waitFollowers(2)
	r3.Body.Close()
	waitFollowers(1)

	// Shutdown ends the stream at once rather than waiting for it.
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	start := time.Now()
	if err := srv.Shutdown(ctx); err != nil {
		t.Errorf("shutdown: %v", err)
	}
	if err := <-done; err != nil {
		t.Errorf("serve: %v", err)
	}
	for range lines {
	}
	waitFollowers(0)
	if took := time.Since(start); took > 3*time.Second {
		t.Errorf("shutdown took %v with a follower", took)
	}

	mu.Lock()
	defer mu.Unlock()
	found := map[observed]bool{}
	for _, o := range seen {
		found[o] = true
	}
	for _, o := range []observed{{"POST", "/networks", 201}, {"DELETE", "/networks/{ref}", 200}, {"DELETE", "/networks/{ref}", 404}, {"GET", "/events", 400}} {
		if !found[o] {
			t.Errorf("request %+v not observed: %+v", o, seen)
		}
	}
}
