package service

import (
	"strings"
	"sync"
	"time"

	"github.com/hostnet/hostnet/api"
)

// events keeps the last events (GET /events), feeds the subscribers that
// follow them, and tells the observers (metrics) of each.
type events struct {
	mu        sync.Mutex
	list      []api.Event
	seq       uint64
	subs      map[*Subscription]struct{}
	observers []func(api.Event)
}

const maxEvents = 1000

// daemonActions are the Action of the daemon's own events, by Kind.
var daemonActions = map[string]string{
	"Repaired": "repair", "Failed": "fail", "Collected": "collect", "Dropped": "drop", "Kept": "keep",
	"Pruned": "prune", "SetAside": "set-aside", "Normalised": "normalise",
}

// event records something the daemon did on its own, and logs it.
func (s *Service) event(kind, object, message string) {
	s.log.Info("event", "kind", kind, "object", object, "message", message)
	action, ok := daemonActions[kind]
	if !ok {
		action = strings.ToLower(kind)
	}
	s.Publish(api.Event{Kind: kind, Object: object, Message: message, Type: api.EventTypeDaemon, Action: action})
}

// Publish records ev (its Time, when zero, and Seq are set here), hands it
// to the subscribers and observers, and logs a lifecycle event at debug.
func (s *Service) Publish(ev api.Event) {
	if ev.Time.IsZero() {
		ev.Time = time.Now().UTC()
	}
	if ev.Type != api.EventTypeDaemon {
		s.log.Debug("event", "type", ev.Type, "action", ev.Action, "id", ev.ID, "name", ev.Name)
	}
	e := &s.events
	e.mu.Lock()
	e.seq++
	ev.Seq = e.seq
	e.list = append(e.list, ev)
	if len(e.list) > maxEvents {
		e.list = append([]api.Event(nil), e.list[len(e.list)-maxEvents:]...)
	}
	for sub := range e.subs {
		select {
		case sub.c <- ev:
		default:
			// A follower that does not keep up is let go rather than
			// holding up the daemon: its stream ends (see Subscription).
			delete(e.subs, sub)
			sub.overflowed = true
			close(sub.c)
		}
	}
	observers := e.observers
	e.mu.Unlock()
	for _, o := range observers {
		o(ev)
	}
}

// Events returns the recorded events, oldest first.
func (s *Service) Events() []api.Event {
	s.events.mu.Lock()
	defer s.events.mu.Unlock()
	return append([]api.Event{}, s.events.list...)
}

// Observe calls fn with every event from now on, synchronously on the
// publisher's goroutine: fn must be quick and must not publish.
func (s *Service) Observe(fn func(api.Event)) {
	s.events.mu.Lock()
	defer s.events.mu.Unlock()
	s.events.observers = append(s.events.observers, fn)
}

// Subscription is a follower of the events: C delivers every event
// published after Subscribe. C is closed by Cancel, or when the follower
// fell more than its buffer behind (Overflowed then says so).
type Subscription struct {
	c          chan api.Event
	overflowed bool // guarded by events.mu
	svc        *Service
}

// SubscriptionBuffer is how many events a follower may fall behind before
// it is let go.
const SubscriptionBuffer = 1024

// Subscribe returns the recorded events and a subscription to those that
// follow, with no event lost or repeated between the two.
func (s *Service) Subscribe() ([]api.Event, *Subscription) {
	e := &s.events
	e.mu.Lock()
	defer e.mu.Unlock()
	sub := &Subscription{c: make(chan api.Event, SubscriptionBuffer), svc: s}
	if e.subs == nil {
		e.subs = map[*Subscription]struct{}{}
	}
	e.subs[sub] = struct{}{}
	return append([]api.Event{}, e.list...), sub
}

// Followers returns the number of subscriptions open.
func (s *Service) Followers() int {
	s.events.mu.Lock()
	defer s.events.mu.Unlock()
	return len(s.events.subs)
}

// C delivers the events.
func (sub *Subscription) C() <-chan api.Event { return sub.c }

// Overflowed reports whether the subscription ended because its follower
// fell behind.
func (sub *Subscription) Overflowed() bool {
	sub.svc.events.mu.Lock()
	defer sub.svc.events.mu.Unlock()
	return sub.overflowed
}

// Cancel ends the subscription; C is closed. It may be called more than
// once.
func (sub *Subscription) Cancel() {
	e := &sub.svc.events
	e.mu.Lock()
	defer e.mu.Unlock()
	if _, ok := e.subs[sub]; ok {
		delete(e.subs, sub)
		close(sub.c)
	}
}
