package service

import (
	"fmt"
	"log/slog"
	"testing"

	"github.com/hostnet/hostnet/api"
)

// A subscription gets the recorded events, then every later one in order,
// none lost or repeated between the two; the ring keeps the last
// maxEvents; an observer sees each.
func TestSubscribe(t *testing.T) {
	s := New(Config{Logger: slog.New(slog.DiscardHandler)})
	var observed []uint64
	s.Observe(func(ev api.Event) { observed = append(observed, ev.Seq) })
	s.Publish(api.Event{Type: api.EventTypeNetwork, Action: api.EventCreate, ID: "n1"})
	s.event("Repaired", "Network n1", "bridge recreated")
	backlog, sub := s.Subscribe()
	defer sub.Cancel()
	if len(backlog) != 2 || backlog[0].Seq != 1 || backlog[1].Seq != 2 || backlog[1].Type != api.EventTypeDaemon || backlog[1].Action != "repair" {
		t.Fatalf("backlog %+v", backlog)
	}
	if backlog[0].Time.IsZero() {
		t.Error("an event without a time")
	}
	s.Publish(api.Event{Type: api.EventTypeEndpoint, Action: api.EventDelete, ID: "e1"})
	if ev := <-sub.C(); ev.Seq != 3 || ev.ID != "e1" {
		t.Errorf("followed %+v", ev)
	}
	if fmt.Sprint(observed) != "[1 2 3]" {
		t.Errorf("observed %v", observed)
	}
	for range maxEvents {
		s.Publish(api.Event{Type: api.EventTypeNetwork, Action: api.EventModify})
	}
	if evs := s.Events(); len(evs) != maxEvents || evs[0].Seq != 4 {
		t.Errorf("the ring holds %d events from seq %d", len(evs), evs[0].Seq)
	}
	sub.Cancel()
	sub.Cancel() // twice is fine
	n := 0
	for range sub.C() {
		n++
	}
	if n != maxEvents || sub.Overflowed() {
		t.Errorf("after cancel, %d buffered events (overflowed %v), want %d", n, sub.Overflowed(), maxEvents)
	}
}

// A follower that falls more than SubscriptionBuffer events behind is let
// go: its channel closes after what it had, and the publisher never waits.
func TestSubscriptionOverflow(t *testing.T) {
	s := New(Config{Logger: slog.New(slog.DiscardHandler)})
	_, slow := s.Subscribe()
	for range SubscriptionBuffer + 10 {
		s.Publish(api.Event{Type: api.EventTypeNetwork, Action: api.EventCreate})
	}
	n := 0
	for range slow.C() {
		n++
	}
	if n != SubscriptionBuffer || !slow.Overflowed() {
		t.Errorf("the slow follower got %d events, overflowed %v", n, slow.Overflowed())
	}
	slow.Cancel()
}
