package e2e

import (
	"bufio"
	"context"
	"encoding/json"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/hostnet/hostnet/api"
	"github.com/hostnet/hostnet/internal/testutil"
)

// follower is a `hostnet events -f -o json` running against the daemon.
type follower struct {
	cmd    *exec.Cmd
	events chan api.Event
	done   chan error
	stderr testutil.SyncBuffer
}

func (e *Env) follow(t *testing.T, args ...string) *follower {
	t.Helper()
	f := &follower{events: make(chan api.Event, 64), done: make(chan error, 1)}
	f.cmd = exec.Command(hostnetBin, append([]string{"--socket", e.Socket, "events", "-f", "-o", "json"}, args...)...)
	f.cmd.Env = cleanEnv()
	f.cmd.Stderr = &f.stderr
	out, err := f.cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := f.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = f.cmd.Process.Kill(); <-f.done })
	go func() {
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			var ev api.Event
			if err := json.Unmarshal(sc.Bytes(), &ev); err != nil {
				t.Errorf("a line of hostnet events -f is not JSON: %q: %v", sc.Text(), err)
				continue
			}
			f.events <- ev
		}
		close(f.events)
		// Wait closes the pipe: only once the output is read in full.
		f.done <- f.cmd.Wait()
	}()
	return f
}

// next returns the next event, failing the test after timeout.
func (f *follower) next(t *testing.T, timeout time.Duration) api.Event {
	t.Helper()
	select {
	case ev, ok := <-f.events:
		if !ok {
			t.Fatalf("the follower ended: %s", f.stderr.String())
		}
		return ev
	case <-time.After(timeout):
		t.Fatal("no event within", timeout)
	}
	return api.Event{}
}

// `hostnet events -f` streams the lifecycle of objects as JSON lines as
// they change, filtered; it ends cleanly on SIGINT, and when the daemon
// shuts down.
func TestEventsFollow(t *testing.T) {
	e := NewEnv(t, "-metrics-listen="+metricsAddr)
	ctx := context.Background()
	c := e.Client()
	all := e.follow(t)
	endpoints := e.follow(t, "--filter", "type=endpoint")
	// A follower gets the recorded events first, then the new ones, with
	// none lost between: it need not be subscribed before the changes.
	// The default network's creation at start is the first.
	if ev := all.next(t, 10*time.Second); ev.Type != api.EventTypeNetwork || ev.Action != api.EventCreate || ev.Name != "nat" {
		t.Fatalf("first event %+v, want the default network's creation", ev)
	}
	ns, err := c.CreateNamespace(ctx, &api.Namespace{Name: "evns"})
	if err != nil {
		t.Fatal(err)
	}
	ep, err := c.CreateEndpoint(ctx, &api.Endpoint{Name: "evep", HostComputeNetwork: "nat"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.Attach(ctx, ns.ID, ep.ID); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Detach(ctx, ns.ID, ep.ID); err != nil {
		t.Fatal(err)
	}
	e.MustCLI("endpoint", "rm", "evep")
	e.MustCLI("namespace", "rm", "evns")

	want := []string{"namespace create evns", "endpoint create evep", "endpoint attach evep", "endpoint detach evep", "endpoint delete evep", "namespace delete evns"}
	var got []string
	for range want {
		ev := all.next(t, 10*time.Second)
		got = append(got, ev.Type+" "+ev.Action+" "+ev.Name)
		if ev.Time.IsZero() || ev.Seq == 0 || ev.ID == "" {
			t.Errorf("event without time, sequence or ID: %+v", ev)
		}
	}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("events:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	got = got[:0]
	for range 4 {
		ev := endpoints.next(t, 10*time.Second)
		got = append(got, ev.Type+" "+ev.Action)
	}
	if strings.Join(got, ",") != "endpoint create,endpoint attach,endpoint detach,endpoint delete" {
		t.Errorf("type=endpoint events: %q", got)
	}

	// The recorded events, filtered, as JSON.
	var deletes []api.Event
	if err := json.Unmarshal([]byte(e.MustCLI("events", "--filter", "action=delete", "-o", "json")), &deletes); err != nil || len(deletes) != 2 {
		t.Errorf("deletes: %+v, %v", deletes, err)
	}

	// ^C ends a follower with status 0.
	if err := all.cmd.Process.Signal(syscall.SIGINT); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-all.done:
		if err != nil {
			t.Errorf("hostnet events -f after SIGINT: %v: %s", err, all.stderr.String())
		}
		all.done <- err // for the cleanup
	case <-time.After(10 * time.Second):
		t.Error("hostnet events -f did not end within 10 s of SIGINT")
	}

	// The daemon follows the client that went no more.
	var followers float64
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(100 * time.Millisecond) {
		if followers, _ = metricValue(e.scrapeMetrics(t), "hostnet_event_followers", nil); followers == 1 {
			break
		}
	}
	if followers != 1 {
		t.Errorf("%v followers after one of two went, want 1", followers)
	}

	// The daemon's shutdown ends the other at once, with an error that
	// says so; the shutdown does not wait for it.
	start := time.Now()
	e.Stop()
	if took := time.Since(start); took > 10*time.Second {
		t.Errorf("the daemon took %v to stop with a follower", took)
	}
	select {
	case err := <-endpoints.done:
		if err == nil || !strings.Contains(endpoints.stderr.String(), "ended the event stream") {
			t.Errorf("the follower after the daemon stopped: %v: %s", err, endpoints.stderr.String())
		}
		endpoints.done <- err
	case <-time.After(10 * time.Second):
		t.Error("the follower did not end within 10 s of the daemon's shutdown")
	}
}
