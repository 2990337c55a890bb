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

// Event is something hostnet did on its own, not at a client's request:
// a repair, the removal of endpoints whose namespace is gone, the drop of
// non-persistent networks at start. GET /events lists the recent ones.
type Event struct {
	Time    time.Time `json:"Time"`
	Kind    string    `json:"Kind"` // Repaired, Collected, Dropped, Reconciled
	Object  string    `json:"Object,omitempty"`
	Message string    `json:"Message"`
}
