package api

import "time"

// CheckReport is the answer of GET /check (a hostnet extension): how the
// kernel differs from hostnet's intent, found without changing anything.
type CheckReport struct {
	InSync   bool      `json:"InSync"`
	Problems []Problem `json:"Problems,omitempty"`
}

// Problem is one difference between intent and kernel.
type Problem struct {
	// Kind is the object at fault: Network, Endpoint, Namespace, Device
	// (a kernel object no stored object claims) or Firewall.
	Kind    string `json:"Kind"`
	ID      string `json:"ID,omitempty"`
	Name    string `json:"Name,omitempty"`
	Problem string `json:"Problem"`
}

// Event is something that happened to hostnet's objects: a change a
// client asked for (Kind Created, Modified, Deleted, Attached, Detached;
// Type network, endpoint or namespace), or something the daemon did on
// its own (Type daemon: Kind Repaired, Failed, Collected, Dropped, Kept,
// Pruned, SetAside, Normalised). GET /events lists the recent ones, and
// with follow=1 streams them as they happen (see EventFilter).
type Event struct {
	Time    time.Time `json:"Time"`
	Kind    string    `json:"Kind"`
	Object  string    `json:"Object,omitempty"`
	Message string    `json:"Message"`
	// Seq numbers the daemon's events from 1, in order, since its start.
	Seq uint64 `json:"Seq,omitempty"`
	// Type is the kind of object: network, endpoint, namespace, or daemon
	// for what the daemon did on its own.
	Type string `json:"Type,omitempty"`
	// Action is Kind in the lower-case verb form filters take: create,
	// modify, delete, attach, detach, repair, fail, collect, drop, ...
	Action string `json:"Action,omitempty"`
	// ID and Name are the object's, when known.
	ID   string `json:"ID,omitempty"`
	Name string `json:"Name,omitempty"`
}
