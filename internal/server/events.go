package server

import (
	"context"
	"encoding/json"
	"net/http"
	"time"

	"github.com/hostnet/hostnet/api"
)

// Lifecycle events: the server publishes one for every mutation a client
// asked for that succeeded, so that every client (the CLI, the CNI and
// Docker plugins, HCN callers) is seen the same way, and the service's
// code stays as it is.

// objectOf names the object a call answered with.
func objectOf(v any) (typ, id, name string, ok bool) {
	switch o := v.(type) {
	case *api.Network:
		return api.EventTypeNetwork, o.ID, o.Name, true
	case *api.Endpoint:
		return api.EventTypeEndpoint, o.ID, o.Name, true
	case *api.Namespace:
		return api.EventTypeNamespace, o.ID, o.Name, true
	case *api.HostComputeRoute:
		return api.EventTypeRoute, o.ID, "", true
	}
	return "", "", "", false
}

// eventKinds are the Kind of each lifecycle action.
var eventKinds = map[string]string{
	api.EventCreate: "Created", api.EventModify: "Modified", api.EventDelete: "Deleted",
	api.EventAttach: "Attached", api.EventDetach: "Detached",
}

func (s *Server) publish(typ, action, id, name, message string) {
	if s.svc == nil {
		return
	}
	object := typ + " " + id
	if name != "" {
		object = typ + " " + name + " (" + id + ")"
	}
	if message == "" {
		message = typ + " " + action + "d"
		if action == api.EventAttach || action == api.EventDetach {
			message = typ + " " + action + "ed"
		}
	}
	s.svc.Publish(api.Event{Kind: eventKinds[action], Type: typ, Action: action, ID: id, Name: name, Object: object, Message: message})
}

// created publishes the creation of out, and the attachment of an
// endpoint created into a namespace.
func (s *Server) created(out any) {
	typ, id, name, ok := objectOf(out)
	if !ok {
		return
	}
	s.publish(typ, api.EventCreate, id, name, "")
	if ep, isEP := out.(*api.Endpoint); isEP && ep.HostComputeNamespace != "" {
		s.publish(api.EventTypeEndpoint, api.EventAttach, id, name, "endpoint attached to namespace "+ep.HostComputeNamespace)
	}
}

// modified publishes a modify request's outcome: an endpoint attached to
// or detached from a namespace, or else a modification of out.
func (s *Server) modified(ctx context.Context, m api.ModifyRequest, out any) {
	typ, id, name, ok := objectOf(out)
	if !ok {
		return
	}
	if typ == api.EventTypeNamespace && m.ResourceType == api.ResourceEndpoint &&
		(m.RequestType == api.RequestAdd || m.RequestType == api.RequestRemove) {
		var req api.NamespaceEndpointRequest
		if json.Unmarshal(m.Settings, &req) == nil && req.EndpointId != "" {
			action, verb := api.EventAttach, "attached to"
			if m.RequestType == api.RequestRemove {
				action, verb = api.EventDetach, "detached from"
			}
			epID, epName := req.EndpointId, ""
			if ep, err := s.svc.GetEndpoint(ctx, req.EndpointId); err == nil {
				epID, epName = ep.ID, ep.Name
			}
			s.publish(api.EventTypeEndpoint, action, epID, epName, "endpoint "+verb+" namespace "+displayName(name, id))
			return
		}
	}
	s.publish(typ, api.EventModify, id, name, "")
}

func displayName(name, id string) string {
	if name != "" {
		return name
	}
	return id
}

// resolver finds the ID and name of the object a delete names, before it
// goes.
type resolver func(ctx context.Context, ref string) (any, error)

func (s *Server) deleted(typ string, id, name string) { s.publish(typ, api.EventDelete, id, name, "") }

// events answers GET /events: the recorded events that pass the filter
// of the query, or with follow=1 those and then every new one as it
// happens, as newline-delimited JSON, until the client goes or the server
// shuts down.
func (s *Server) events(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	filter, err := api.ParseEventFilter(q)
	if err != nil {
		replyError(w, err)
		return
	}
	if !isTrue(q.Get("follow")) {
		out := []api.Event{}
		for _, ev := range s.svc.Events() {
			if filter.Match(ev) {
				out = append(out, ev)
			}
		}
		reply(w, http.StatusOK, out)
		return
	}
	backlog, sub := s.svc.Subscribe()
	defer sub.Cancel()
	// A stream lives past the read and write deadlines of an exchange.
	rc := http.NewResponseController(w)
	if err := rc.SetReadDeadline(time.Time{}); err != nil {
		replyError(w, api.InternalError(err, "follow events"))
		return
	}
	if err := rc.SetWriteDeadline(time.Time{}); err != nil {
		replyError(w, api.InternalError(err, "follow events"))
		return
	}
	w.Header().Set("Content-Type", "application/x-ndjson")
	w.WriteHeader(http.StatusOK)
	enc := json.NewEncoder(w)
	send := func(ev api.Event) bool {
		if !filter.Match(ev) {
			return true
		}
		// A client that stops reading is given up on after a while.
		_ = rc.SetWriteDeadline(time.Now().Add(s.opts.Write))
		return enc.Encode(ev) == nil
	}
	for _, ev := range backlog {
		if !send(ev) {
			return
		}
	}
	if rc.Flush() != nil {
		return
	}
	for {
		select {
		case ev, ok := <-sub.C():
			if !ok {
				if sub.Overflowed() {
					s.log.Warn("an events follower fell behind and was let go")
				}
				return
			}
			if !send(ev) || rc.Flush() != nil {
				return
			}
		case <-r.Context().Done():
			return
		case <-s.shutdown:
			return
		}
	}
}

func isTrue(v string) bool {
	switch v {
	case "1", "true", "yes":
		return true
	}
	return false
}
