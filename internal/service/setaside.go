package service

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"hash/maphash"
	"maps"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/hostnet/hostnet/api"
	"github.com/hostnet/hostnet/internal/reconcile"
	"github.com/hostnet/hostnet/internal/store"
)

// Set-aside records and what a start keeps.
//
// A start reads every record (networks, endpoints, namespaces, the
// outbox) before it plans anything. A record that does not decode (damaged
// JSON, nested past what encoding/json reads), whose ID is not its key,
// that no longer passes this build's validation and cannot be normalised
// (normalize.go), or that depends on a record that went (an endpoint whose
// network or namespace is not there) is set aside: moved, in the start's
// first transaction, to the set-aside bucket with its raw bytes, its bucket
// and key, the reason and the time. The start then goes on with the rest.
// Each is logged at ERROR, recorded as an event, and named by `hostnet
// doctor` until the user drops it (DropSetAside).
//
// While a record is set aside, nothing it held is handed out again and
// nothing it made is torn down silently: the addresses, MACs and host
// ports it held stay claimed (its kernel objects may still use them), its
// name is free (the name index points only at records that are there),
// and the reconciler keeps its devices and namespace and the firewall's
// content (see reconcile.Keep), which go once it is dropped. Keeping is
// the safer choice: the record is unreadable, not necessarily wrong, and
// its workload keeps its traffic until someone decides.
//
// A start after a restore from a backup (MarkRestored) cannot account for
// what was made after the backup: everything the kernel holds of hostnet's
// that no record wants is kept, reported (a warning naming it, events,
// doctor), and the addresses kept devices hold are kept from the pools,
// until the user prunes (Prune). A restore start that finds nothing to
// keep ends that at once.

// restoredKey, in store.Meta, marks a state put back from its backup whose
// unclaimed kernel objects are kept until pruned.
const restoredKey = "restored-from-backup"

// keptHolder holds, in the pools, the addresses of devices kept after a
// restore (read in an error as "... is already in use by <keptHolder>").
const keptHolder = "a device kept after a restore from backup"

// setAsideEntry is a set-aside record as store.SetAside keeps it, under
// "<bucket>/<key>".
type setAsideEntry struct {
	Bucket string    `json:"Bucket"`
	Key    string    `json:"Key"`
	Name   string    `json:"Name,omitempty"`
	Reason string    `json:"Reason"`
	Time   time.Time `json:"Time"`
	// Devices are the host links the record owned, Netns the namespace of
	// hostnet's: kept while it is set aside.
	Devices []string `json:"Devices,omitempty"`
	Netns   string   `json:"Netns,omitempty"`
	Raw     []byte   `json:"Raw"`
}

func (e *setAsideEntry) id() string { return e.Bucket + "/" + e.Key }

// kindOf names the kind of a bucket's records, as problems do.
func kindOf(bucket string) string {
	switch bucket {
	case store.Networks:
		return "Network"
	case store.Endpoints:
		return "Endpoint"
	case store.Namespaces:
		return "Namespace"
	case store.Outbox:
		return "Outbox"
	case store.Routes:
		return "Route"
	}
	return bucket
}

// nameKind is the kind of a bucket's records in the name index ("" for
// none).
func nameKind(bucket string) string {
	switch bucket {
	case store.Networks:
		return "network"
	case store.Endpoints:
		return "endpoint"
	case store.Namespaces:
		return "namespace"
	}
	return ""
}

func (e *setAsideEntry) object() string {
	return kindOf(e.Bucket) + " " + displayName(e.Name, e.Key)
}

func (e *setAsideEntry) api(withRecord bool) api.SetAsideRecord {
	out := api.SetAsideRecord{ID: e.id(), Kind: kindOf(e.Bucket), Key: e.Key, Name: e.Name, Reason: e.Reason, Time: e.Time,
		Devices: slices.Clone(e.Devices), Size: len(e.Raw)}
	if e.Netns != "" {
		out.Devices = append(out.Devices, e.Netns)
	}
	if withRecord {
		out.Record = e.Raw
	}
	return out
}

// loaded is what the load phase of a start did.
type loaded struct {
	aside      []setAsideEntry
	normalised []string // "Endpoint web: policies in canonical form"
	restored   bool     // the state was restored from its backup
	entries    []setAsideEntry
	keep       reconcile.Keep
	// decoded are the records as load decoded them, for the start's
	// planning to take rather than decode them again (see planTx).
	decoded decodedCache
}

// docRef points at the ID and name of a record's document.
type docRef struct{ id, name *string }

// load reads every record in tx, sets aside those that cannot be kept,
// writes back the normalised ones, and says what the start's passes keep.
// It only reads and writes records (a store may run it twice).
func (s *Service) load(tx store.Tx) (*loaded, error) {
	l := &loaded{decoded: decodedCache{seed: maphash.MakeSeed(), recs: map[string]map[string]cachedRecord{}}}
	now := time.Now().UTC()
	aside := func(bucket, key string, raw []byte, format string, args ...any) {
		e := setAsideEntry{Bucket: bucket, Key: key, Reason: fmt.Sprintf(format, args...), Time: now, Raw: slices.Clone(raw)}
		e.Devices, e.Netns = s.ownedBy(bucket, key, raw)
		l.aside = append(l.aside, e)
	}
	// read decodes the record at key of bucket into doc (in rec), checks
	// that doc's ID is its key, that it holds (check: why not, or ""),
	// and normalises it; a record that fails is set aside, and read
	// reports it not ok. what says what normalising changed.
	read := func(bucket, key string, raw []byte, rec any, doc *docRef, check func() string, normalise func() (string, error)) (what string, ok bool) {
		if err := json.Unmarshal(raw, rec); err != nil {
			aside(bucket, key, raw, "it does not decode: %v", err)
			return "", false
		}
		why := ""
		if *doc.id != key {
			why = fmt.Sprintf("its ID %q is not its key", *doc.id)
		} else if check != nil {
			why = check()
		}
		if why == "" {
			var err error
			if what, err = normalise(); err != nil {
				why = fmt.Sprintf("it no longer passes validation: %v", err)
			}
		}
		if why != "" {
			aside(bucket, key, raw, "%s", why)
			l.aside[len(l.aside)-1].Name = *doc.name
			return "", false
		}
		return what, true
	}
	type put struct {
		bucket, key string
		rec         any
	}
	var puts []put

	err := tx.ForEach(store.Outbox, "", func(key string, raw []byte) error {
		var e outboxEntry
		if err := json.Unmarshal(raw, &e); err != nil {
			aside(store.Outbox, key, raw, "it does not decode: %v", err)
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	nets := map[string]bool{}
	err = tx.ForEach(store.Networks, "", func(key string, raw []byte) error {
		var rec networkRecord
		what, ok := read(store.Networks, key, raw, &rec, &docRef{&rec.Doc.ID, &rec.Doc.Name}, nil,
			func() (string, error) { return normaliseNetwork(&rec.Doc) })
		if !ok {
			return nil
		}
		if what != "" {
			puts = append(puts, put{store.Networks, key, rec})
			l.normalised = append(l.normalised, "Network "+displayName(rec.Doc.Name, key)+": "+what)
		} else {
			l.decoded.add(store.Networks, key, raw, rec)
		}
		nets[key] = true
		return nil
	})
	if err != nil {
		return nil, err
	}
	nss := map[string]bool{}
	type loadedNamespace struct {
		rec  namespaceRecord
		what string
		raw  cachedRecord
	}
	nsRecs := map[string]*loadedNamespace{}
	err = tx.ForEach(store.Namespaces, "", func(key string, raw []byte) error {
		var rec namespaceRecord
		what, ok := read(store.Namespaces, key, raw, &rec, &docRef{&rec.Doc.ID, &rec.Doc.Name}, nil,
			func() (string, error) { return normaliseNamespace(&rec.Doc) })
		if !ok {
			return nil
		}
		// Written back or cached once its endpoints are known (below).
		nss[key] = true
		nsRecs[key] = &loadedNamespace{rec: rec, what: what, raw: l.decoded.entry(raw, nil)}
		return nil
	})
	if err != nil {
		return nil, err
	}
	// Where a network or namespace went, say where to: set aside (now or
	// at an earlier start), or simply not there.
	gone := func(bucket, id string) string {
		if _, err := tx.Get(store.SetAside, bucket+"/"+id); err == nil {
			return "is set aside"
		}
		for _, e := range l.aside {
			if e.Bucket == bucket && e.Key == id {
				return "is set aside"
			}
		}
		return "is not in the store"
	}
	live := map[string]bool{}
	err = tx.ForEach(store.Endpoints, "", func(key string, raw []byte) error {
		var rec endpointRecord
		e := &rec.Doc
		what, ok := read(store.Endpoints, key, raw, &rec, &docRef{&e.ID, &e.Name}, func() string {
			switch {
			case !nets[e.HostComputeNetwork]:
				return fmt.Sprintf("its network %s %s", e.HostComputeNetwork, gone(store.Networks, e.HostComputeNetwork))
			case e.HostComputeNamespace != "" && !nss[e.HostComputeNamespace]:
				return fmt.Sprintf("the namespace it is attached to, %s, %s", e.HostComputeNamespace, gone(store.Namespaces, e.HostComputeNamespace))
			}
			return ""
		}, func() (string, error) { return normaliseEndpoint(e) })
		if !ok {
			return nil
		}
		if what != "" {
			puts = append(puts, put{store.Endpoints, key, rec})
			l.normalised = append(l.normalised, "Endpoint "+displayName(e.Name, key)+": "+what)
		} else {
			l.decoded.add(store.Endpoints, key, raw, rec)
		}
		live[key] = true
		return nil
	})
	if err != nil {
		return nil, err
	}
	// A namespace lists no endpoint that is not there (set aside now or
	// before, or lost): nothing dangles, and an endpoint that takes the
	// key later is not taken for attached. An implicit namespace goes
	// with its last endpoint, as when that is deleted.
	var goneNS, goneNames []string
	for _, key := range slices.Sorted(maps.Keys(nsRecs)) {
		n := nsRecs[key]
		var dropped []string
		kept := n.rec.Doc.Resources[:0:0]
		for _, r := range n.rec.Doc.Resources {
			if id := resourceID(r); r.Type == api.NamespaceResourceEndpoint && !live[id] {
				dropped = append(dropped, id)
				continue
			}
			kept = append(kept, r)
		}
		object := "Namespace " + displayName(n.rec.Doc.Name, key)
		switch {
		case len(dropped) > 0 && n.rec.Doc.Implicit && len(attachedIDs(&api.Namespace{Resources: kept})) == 0:
			goneNS = append(goneNS, key)
			if n.rec.Doc.Name != "" {
				if id, err := tx.Get(store.Names, nameKey("namespace", n.rec.Doc.Name)); err == nil && string(id) == key {
					goneNames = append(goneNames, nameKey("namespace", n.rec.Doc.Name))
				}
			}
			l.normalised = append(l.normalised, object+": removed, made for its endpoints, the last of which went ("+strings.Join(dropped, ", ")+")")
			continue
		case len(dropped) > 0:
			n.rec.Doc.Resources = kept
			n.what = strings.Join(slices.DeleteFunc([]string{n.what, "endpoints that are not there (" + strings.Join(dropped, ", ") + ") no longer listed"},
				func(s string) bool { return s == "" }), "; ")
		}
		if n.what != "" {
			puts = append(puts, put{store.Namespaces, key, n.rec})
			l.normalised = append(l.normalised, object+": "+n.what)
			continue
		}
		n.raw.rec = n.rec
		l.decoded.put(store.Namespaces, key, n.raw)
	}

	for i := range l.aside {
		if err := setAside(tx, &l.aside[i]); err != nil {
			return nil, err
		}
	}
	for _, p := range puts {
		if err := store.PutJSON(tx, p.bucket, p.key, p.rec); err != nil {
			return nil, err
		}
	}
	for _, k := range goneNS {
		if err := tx.Delete(store.Namespaces, k); err != nil {
			return nil, err
		}
	}
	for _, k := range goneNames {
		if err := tx.Delete(store.Names, k); err != nil {
			return nil, err
		}
	}
	_, err = tx.Get(store.Meta, restoredKey)
	l.restored = err == nil
	if l.entries, err = listEntries(tx); err != nil {
		return nil, err
	}
	l.keep = s.keepFor(l.entries, l.restored)
	return l, nil
}

// setAside moves a record to the set-aside bucket inside tx. The name
// index forgets it (its name is free for another object); its addresses,
// MACs and host ports stay claimed until it is dropped.
func setAside(tx store.Tx, e *setAsideEntry) error {
	if kind := nameKind(e.Bucket); kind != "" {
		var names []string
		if e.Name != "" {
			if id, err := tx.Get(store.Names, nameKey(kind, e.Name)); err == nil && string(id) == e.Key {
				names = append(names, nameKey(kind, e.Name))
			}
		} else {
			// Unreadable: its name is found by the index.
			err := tx.ForEach(store.Names, kind+"/", func(k string, v []byte) error {
				if string(v) == e.Key {
					names = append(names, k)
				}
				return nil
			})
			if err != nil {
				return err
			}
			if len(names) > 0 {
				e.Name = strings.TrimPrefix(names[0], kind+"/")
			}
		}
		for _, k := range names {
			if err := tx.Delete(store.Names, k); err != nil {
				return err
			}
		}
	}
	if err := store.PutJSON(tx, store.SetAside, e.id(), e); err != nil {
		return err
	}
	return tx.Delete(e.Bucket, e.Key)
}

// ownedBy names the kernel objects of hostnet's a record owned: the host
// devices of a network or an endpoint (as recorded, when that much of the
// record reads, and as every driver names them from the ID), and the
// namespace hostnet made for a namespace object.
func (s *Service) ownedBy(bucket, key string, raw []byte) (devices []string, netns string) {
	var partial struct {
		Doc struct {
			BridgeName        string
			HostInterfaceName string
			NetNamespacePath  string
			Managed           bool
		}
	}
	decoded := json.Unmarshal(raw, &partial) == nil
	add := func(name string) {
		if name != "" && !slices.Contains(devices, name) {
			devices = append(devices, name)
		}
	}
	types := make([]api.NetworkType, 0, len(s.cfg.Drivers))
	for t := range s.cfg.Drivers {
		types = append(types, t)
	}
	slices.Sort(types)
	switch bucket {
	case store.Networks:
		add(partial.Doc.BridgeName)
		for _, t := range types {
			add(s.cfg.Drivers[t].NetworkDevice(key))
		}
	case store.Endpoints:
		add(partial.Doc.HostInterfaceName)
		for _, t := range types {
			add(s.cfg.Drivers[t].EndpointDevice(key))
		}
	case store.Namespaces:
		switch {
		case decoded && partial.Doc.Managed:
			netns = partial.Doc.NetNamespacePath
		case !decoded && s.cfg.NetnsDir != "":
			netns = filepath.Join(s.cfg.NetnsDir, key) // if it is there, hostnet made it
		}
	}
	return devices, netns
}

// listEntries reads the set-aside records, by ID.
func listEntries(tx store.Tx) ([]setAsideEntry, error) {
	var out []setAsideEntry
	err := tx.ForEach(store.SetAside, "", func(key string, raw []byte) error {
		var e setAsideEntry
		if err := json.Unmarshal(raw, &e); err != nil || e.id() != key {
			// Not one of ours as it should be: still listed, to be
			// dropped.
			bucket, k, _ := strings.Cut(key, "/")
			e = setAsideEntry{Bucket: bucket, Key: k, Reason: "its set-aside entry does not read", Raw: slices.Clone(raw)}
		}
		out = append(out, e)
		return nil
	})
	return out, err
}

// startLoaded reports what the load phase did, once it is committed, and
// sets what the start's pass keeps.
func (s *Service) startLoaded(l *loaded) {
	for _, e := range l.aside {
		s.log.Error("start: a stored record cannot be read; it is set aside and the start goes on",
			"bucket", e.Bucket, "key", e.Key, "name", e.Name, "reason", e.Reason, "devices_kept", e.Devices)
		s.event("SetAside", e.object(), "set aside at start, its kernel objects kept and its addresses held until it is dropped (hostnet doctor --drop-set-aside "+e.id()+"): "+e.Reason)
	}
	if len(l.normalised) > 0 {
		s.log.Info("start: normalised records stored by an earlier version", "count", len(l.normalised))
		for _, n := range l.normalised {
			s.log.Debug("start: normalised", "record", n)
			obj, what, _ := strings.Cut(n, ": ")
			s.event("Normalised", obj, what)
		}
	}
	if n := len(l.entries); n > len(l.aside) {
		s.log.Warn("start: records set aside at an earlier start are still there (hostnet doctor names them)", "count", n-len(l.aside))
	}
	s.rec.SetKeep(l.keep)
}

// setAsideProblems words for doctor the set-aside records, the records
// that no longer read (found since the start, set aside at the next), and
// what the pass r kept.
func (s *Service) setAsideProblems(r *reconcile.Report) []api.Problem {
	var out []api.Problem
	var entries []setAsideEntry
	restored := false
	type unreadable struct{ bucket, key, err string }
	var bad []unreadable
	err := s.cfg.Store.View(func(tx store.Tx) error {
		var err error
		if entries, err = listEntries(tx); err != nil {
			return err
		}
		_, err = tx.Get(store.Meta, restoredKey)
		restored = err == nil
		for _, b := range []string{store.Networks, store.Endpoints, store.Namespaces} {
			err := tx.ForEach(b, "", func(key string, raw []byte) error {
				var err error
				switch b {
				case store.Networks:
					err = json.Unmarshal(raw, &networkRecord{})
				case store.Endpoints:
					err = json.Unmarshal(raw, &endpointRecord{})
				default:
					err = json.Unmarshal(raw, &namespaceRecord{})
				}
				if err != nil {
					bad = append(bad, unreadable{b, key, err.Error()})
				}
				return nil
			})
			if err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return []api.Problem{{Kind: "Store", Problem: "the set-aside records cannot be listed: " + err.Error()}}
	}
	for _, e := range entries {
		out = append(out, api.Problem{Kind: kindOf(e.Bucket), ID: e.Key, Name: e.Name,
			Problem: fmt.Sprintf("set aside at start (%s): %s; its kernel objects are kept and its addresses and ports held until it is dropped (hostnet doctor --drop-set-aside %s)",
				e.Time.Format(time.RFC3339), e.Reason, e.id())})
	}
	for _, b := range bad {
		out = append(out, api.Problem{Kind: kindOf(b.bucket), ID: b.key,
			Problem: fmt.Sprintf("its stored record does not decode (%s): lists leave it out, the next start sets it aside (hostnet doctor --drop-set-aside %s/%s forgets it now)", b.err, b.bucket, b.key)})
	}
	if r == nil {
		return out
	}
	kept := slices.Clone(r.Kept)
	sort.SliceStable(kept, func(i, j int) bool { return kept[i].Object.String() < kept[j].Object.String() })
	for _, k := range kept {
		name := k.Object.ID
		if problemKind(k.Object) == "Firewall" {
			name = ""
		}
		why, remedy := s.keptWhy(entries, restored, k.Object)
		out = append(out, api.Problem{Kind: problemKind(k.Object), Name: name, Problem: why + " (" + k.What + "); " + remedy})
	}
	for _, a := range r.KeptAddrs {
		out = append(out, api.Problem{Kind: "Address", Name: a.Prefix.Addr().String(),
			Problem: fmt.Sprintf("held by the kept device %s in %s: not handed out until the kept objects are removed", a.Link, a.NS.Path)})
	}
	return out
}

// ListSetAside returns the set-aside records, without their raw bytes.
func (s *Service) ListSetAside(ctx context.Context) ([]api.SetAsideRecord, error) {
	var entries []setAsideEntry
	if err := s.cfg.Store.View(func(tx store.Tx) (err error) { entries, err = listEntries(tx); return err }); err != nil {
		return nil, internal(err, "list the set-aside records")
	}
	out := make([]api.SetAsideRecord, 0, len(entries))
	for i := range entries {
		out = append(out, entries[i].api(false))
	}
	return out, nil
}

// GetSetAside returns a set-aside record with its raw bytes; ref is its
// ID ("<bucket>/<key>") or its key when that is unique.
func (s *Service) GetSetAside(ctx context.Context, ref string) (*api.SetAsideRecord, error) {
	var e *setAsideEntry
	if err := s.cfg.Store.View(func(tx store.Tx) (err error) { e, err = findEntry(tx, ref); return err }); err != nil {
		return nil, internal(err, "read set-aside record %q", ref)
	}
	out := e.api(true)
	return &out, nil
}

// findEntry finds a set-aside record by ID, or by key when that is unique.
func findEntry(tx store.Tx, ref string) (*setAsideEntry, error) {
	entries, err := listEntries(tx)
	if err != nil {
		return nil, err
	}
	var found []*setAsideEntry
	for i := range entries {
		e := &entries[i]
		if e.id() == ref {
			return e, nil
		}
		if e.Key == ref || (strings.EqualFold(e.Key, ref) && refIs(ref, e.Key)) {
			found = append(found, e)
		}
	}
	switch len(found) {
	case 0:
		return nil, api.NotFound("set-aside record", ref)
	case 1:
		return found[0], nil
	}
	var ids []string
	for _, e := range found {
		ids = append(ids, e.id())
	}
	return nil, api.Invalid(api.CodeInvalidModifyRequest, "set-aside record %q is ambiguous: name one of %s", ref, strings.Join(ids, ", "))
}

// refIs reports whether ref is the GUID key in another case.
func refIs(ref, key string) bool {
	id, ok := refID(ref)
	return ok && id == key
}

// DropSetAside forgets a set-aside record: its raw bytes go, the
// addresses, MACs and host ports it held are free again, and the kernel
// objects that were kept for it are removed by a full pass at once
// (unless a restore keeps everything). A record that no longer decodes
// but was not set aside yet (damaged since the start) may be named by its
// "<bucket>/<key>": it is set aside and dropped in one step. ref is as
// for GetSetAside.
func (s *Service) DropSetAside(ctx context.Context, ref string) (*api.SetAsideRecord, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	var dropped *setAsideEntry
	var keep reconcile.Keep
	err := s.cfg.Store.Update(func(tx store.Tx) error {
		e, err := findEntry(tx, ref)
		if api.IsNotFound(err) {
			e, err = s.asideNow(tx, ref)
		}
		if err != nil {
			return err
		}
		if err := releaseSetAside(tx, e); err != nil {
			return err
		}
		if err := tx.Delete(store.SetAside, e.id()); err != nil {
			return err
		}
		dropped = e
		entries, err := listEntries(tx)
		if err != nil {
			return err
		}
		_, err = tx.Get(store.Meta, restoredKey)
		keep = s.keepFor(entries, err == nil)
		return nil
	})
	if err != nil {
		return nil, internal(err, "drop set-aside record %q", ref)
	}
	s.rec.SetKeep(keep)
	s.event("Dropped", dropped.object(), "a set-aside record was dropped: its addresses and host ports are free, and the kernel objects kept for it go")
	s.log.Info("set-aside record dropped", "bucket", dropped.Bucket, "key", dropped.Key, "name", dropped.Name)
	if _, r, err := s.passNow(ctx); err != nil {
		s.log.Warn("the full pass after dropping a set-aside record failed; self-repair removes what it kept", "err", err)
	} else {
		s.removeNamespaceFiles(ctx, r)
	}
	out := dropped.api(false)
	return &out, nil
}

// asideNow sets aside, inside tx, a record named "<bucket>/<key>" that is
// in its bucket but does not decode.
func (s *Service) asideNow(tx store.Tx, ref string) (*setAsideEntry, error) {
	bucket, key, ok := strings.Cut(ref, "/")
	if !ok || nameKind(bucket) == "" {
		return nil, api.NotFound("set-aside record", ref)
	}
	raw, err := tx.Get(bucket, key)
	if errors.Is(err, store.ErrNotFound) {
		return nil, api.NotFound("set-aside record", ref)
	}
	if err != nil {
		return nil, err
	}
	var v any
	switch bucket {
	case store.Networks:
		v = &networkRecord{}
	case store.Endpoints:
		v = &endpointRecord{}
	default:
		v = &namespaceRecord{}
	}
	decodeErr := json.Unmarshal(raw, v)
	if decodeErr == nil {
		return nil, api.Invalid(api.CodeInvalidModifyRequest, "%s %s reads and is not set aside: delete it as usual (DELETE /%s/%s)", strings.ToLower(kindOf(bucket)), key, bucket, key)
	}
	e := &setAsideEntry{Bucket: bucket, Key: key, Reason: "it does not decode: " + decodeErr.Error(), Time: time.Now().UTC(), Raw: slices.Clone(raw)}
	e.Devices, e.Netns = s.ownedBy(bucket, key, raw)
	return e, setAside(tx, e)
}

// releaseSetAside frees, inside tx, what a set-aside record held: the addresses
// and MACs handed to it, the pools of a network, its host ports and any
// name still pointing at it.
func releaseSetAside(tx store.Tx, e *setAsideEntry) error {
	if _, err := tx.Get(e.Bucket, e.Key); err == nil {
		// A new object took the key (a client chose the ID): what is held
		// under it is the new object's now.
		return nil
	}
	var ipamKeys, metaKeys, portKeys, nameKeys []string
	holder := func(keys *[]string, bucket string, match func(k string, v []byte) bool) error {
		return tx.ForEach(bucket, "", func(k string, v []byte) error {
			if match(k, v) {
				*keys = append(*keys, k)
			}
			return nil
		})
	}
	switch e.Bucket {
	case store.Networks:
		if err := holder(&ipamKeys, store.IPAM, func(k string, _ []byte) bool {
			return strings.HasPrefix(k, e.Key+"/") || strings.HasPrefix(k, "mac/"+e.Key+"/")
		}); err != nil {
			return err
		}
		if err := holder(&metaKeys, store.Meta, func(k string, _ []byte) bool {
			return strings.HasPrefix(k, "ipam-cursor/"+e.Key+"/") || k == "mac-cursor/"+e.Key
		}); err != nil {
			return err
		}
	case store.Endpoints:
		if err := holder(&ipamKeys, store.IPAM, func(_ string, v []byte) bool { return string(v) == e.Key }); err != nil {
			return err
		}
		if err := holder(&portKeys, store.Ports, func(_ string, v []byte) bool { return string(v) == e.Key }); err != nil {
			return err
		}
	}
	if kind := nameKind(e.Bucket); kind != "" {
		if err := holder(&nameKeys, store.Names, func(k string, v []byte) bool { return strings.HasPrefix(k, kind+"/") && string(v) == e.Key }); err != nil {
			return err
		}
	}
	for _, del := range []struct {
		bucket string
		keys   []string
	}{{store.IPAM, ipamKeys}, {store.Meta, metaKeys}, {store.Ports, portKeys}, {store.Names, nameKeys}} {
		for _, k := range del.keys {
			if err := tx.Delete(del.bucket, k); err != nil {
				return err
			}
		}
	}
	return nil
}
