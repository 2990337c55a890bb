package api

import "time"

// SetAsideRecord is a stored record that a start of the daemon could not
// read, or that no longer passes this build's validation and cannot be
// normalised: it was moved out of its bucket so that the rest of the state
// starts (a hostnet extension; GET /setaside). Its raw bytes are kept as
// they were. While it is there, the kernel objects it owned are kept and
// the addresses and host ports it held are not handed out; DELETE
// /setaside/{id} (`hostnet doctor --drop-set-aside ID`) forgets it and
// releases them.
type SetAsideRecord struct {
	// ID names it in the API: "<bucket>/<key>", e.g.
	// "endpoints/6f1c...". Its Key alone will do where it is unique.
	ID string `json:"ID"`
	// Kind is what the record was: Network, Endpoint, Namespace, or
	// Outbox (a follow-up of a change, see the design notes).
	Kind string `json:"Kind"`
	// Key is the record's key in its bucket: the object's ID.
	Key string `json:"Key"`
	// Name is the name the object was known by, when it could be found.
	Name   string    `json:"Name,omitempty"`
	Reason string    `json:"Reason"`
	Time   time.Time `json:"Time"`
	// Devices are the host devices and the namespace of hostnet's that
	// the record owned: kept while it is set aside.
	Devices []string `json:"Devices,omitempty"`
	// Size is the length of the raw record in bytes.
	Size int `json:"Size"`
	// Record is the raw record, as it was stored (GET /setaside/{id}
	// only): bytes, since it may be no JSON at all.
	Record []byte `json:"Record,omitempty"`
}

// PruneReport answers POST /prune: what the daemon removed of the kernel
// objects no record wants, which it had kept (after a restore from a
// backup, or while records were set aside).
type PruneReport struct {
	Removed []Problem `json:"Removed"`
}
