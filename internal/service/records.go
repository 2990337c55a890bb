package service

import (
	"bytes"
	"encoding/json"
	"fmt"
	"hash/maphash"
	"net/netip"
	"sync"

	"github.com/hostnet/hostnet/api"
	"github.com/hostnet/hostnet/internal/ipam"
	"github.com/hostnet/hostnet/internal/netmodel"
	"github.com/hostnet/hostnet/internal/store"
)

// Stored records: the API document as the client reads it back, plus what
// hostnet keeps for itself.

type networkRecord struct {
	Doc api.Network `json:"Doc"`
}

type endpointRecord struct {
	Doc api.Endpoint `json:"Doc"`
	// AutoName says hostnet chose Doc.InterfaceName at attach time, so
	// detach clears it (a client-chosen name is kept).
	AutoName bool `json:"AutoName,omitempty"`
}

type namespaceRecord struct {
	Doc api.Namespace `json:"Doc"`
	// ResolvConf is where hostnet writes the namespace's resolv.conf ("" if
	// it writes none).
	ResolvConf string `json:"ResolvConf,omitempty"`
	// Identity is the identity of a wrapped namespace when it was wrapped:
	// another namespace found at its path later (a reused /proc/PID) is
	// not acted in. Zero for managed ones, and in older records.
	Identity netmodel.NSID `json:"Identity,omitzero"`
}

// ns is the namespace a record stands for.
func (n *namespaceRecord) ns() netmodel.NS {
	return netmodel.NS{Path: n.Doc.NetNamespacePath, ID: n.Identity}
}

func listNetworks(tx store.Tx) ([]networkRecord, error) {
	return listRecords[networkRecord](tx, store.Networks)
}

// otherNetworks lists, inside tx, the networks other than id whose
// stored documents parse, with their specs (one that does not parse is
// quarantined, and constrains no other).
func otherNetworks(tx store.Tx, id string) ([]networkRecord, []*api.NetworkSpec, error) {
	nets, err := listNetworks(tx)
	if err != nil {
		return nil, nil, err
	}
	var recs []networkRecord
	var specs []*api.NetworkSpec
	for _, other := range nets {
		if other.Doc.ID == id {
			continue
		}
		if spec, err := api.ParseStoredNetwork(&other.Doc); err == nil {
			recs, specs = append(recs, other), append(specs, spec)
		}
	}
	return recs, specs, nil
}

func listEndpoints(tx store.Tx) ([]endpointRecord, error) {
	return listRecords[endpointRecord](tx, store.Endpoints)
}

func listNamespaces(tx store.Tx) ([]namespaceRecord, error) {
	return listRecords[namespaceRecord](tx, store.Namespaces)
}

// listRecords decodes every record of bucket, leaving out those that do
// not decode: one damaged record (written by hand, or by a version that
// wrote what this one cannot read) must not fail every list, plan, check
// and repair. A start sets such a record aside; until then `hostnet
// doctor` names it (see setAsideProblems).
func listRecords[T any](tx store.Tx, bucket string) ([]T, error) {
	var cache *decodedCache
	if c, ok := tx.(planTx); ok {
		cache = c.decoded
	}
	var out []T
	err := tx.ForEach(bucket, "", func(key string, value []byte) error {
		if v, ok := cache.get(bucket, key, value).(T); ok {
			out = append(out, v)
			return nil
		}
		var v T
		if json.Unmarshal(value, &v) == nil {
			out = append(out, v)
		}
		return nil
	})
	return out, err
}

// decodedCache keeps records a start decoded while loading them, each
// with a hash of the bytes it was decoded from: decoding every record is
// most of the time of reading the store, and a start would otherwise do
// it twice. A record whose bytes changed since (a start drops
// non-persistent networks and collects vanished namespaces in between) is
// decoded again.
type decodedCache struct {
	seed maphash.Seed
	recs map[string]map[string]cachedRecord // bucket -> key -> record
}

type cachedRecord struct {
	hash uint64
	size int
	rec  any // a networkRecord, endpointRecord or namespaceRecord value
}

func (c *decodedCache) add(bucket, key string, raw []byte, rec any) {
	c.put(bucket, key, c.entry(raw, rec))
}

// entry is what the cache keeps of a record decoded from raw.
func (c *decodedCache) entry(raw []byte, rec any) cachedRecord {
	return cachedRecord{hash: maphash.Bytes(c.seed, raw), size: len(raw), rec: rec}
}

func (c *decodedCache) put(bucket, key string, r cachedRecord) {
	m := c.recs[bucket]
	if m == nil {
		m = map[string]cachedRecord{}
		c.recs[bucket] = m
	}
	m[key] = r
}

// get returns the record decoded from raw, or nil.
func (c *decodedCache) get(bucket, key string, raw []byte) any {
	if c == nil {
		return nil
	}
	r, ok := c.recs[bucket][key]
	if !ok || r.size != len(raw) || r.hash != maphash.Bytes(c.seed, raw) {
		return nil
	}
	return r.rec
}

// planTx is a transaction whose lists take what a start's load decoded.
type planTx struct {
	store.Tx
	decoded *decodedCache
}

// planTx returns tx for the start's planning: its lists take the records
// load decoded, where their bytes are unchanged.
func (l *loaded) planTx(tx store.Tx) store.Tx { return planTx{Tx: tx, decoded: &l.decoded} }

// listAll reads every network, endpoint and namespace record in tx.
func listAll(tx store.Tx) (nets []networkRecord, eps []endpointRecord, nss []namespaceRecord, err error) {
	if nets, err = listNetworks(tx); err != nil {
		return nil, nil, nil, err
	}
	if eps, err = listEndpoints(tx); err != nil {
		return nil, nil, nil, err
	}
	nss, err = listNamespaces(tx)
	return nets, eps, nss, err
}

// parsedNetwork is a stored network with its parsed spec.
type parsedNetwork struct {
	doc  *api.Network
	spec *api.NetworkSpec
	// sets caches the network's parsed IP sets (see ipSets): a network
	// and each of its endpoints plan from them, and a set may hold tens of
	// thousands of members.
	setsOnce sync.Once
	sets     *api.IPSets
	setsErr  error
}

// ipSets returns the network's IP sets (SetPolicy), parsed once.
func (p *parsedNetwork) ipSets() (*api.IPSets, error) {
	p.setsOnce.Do(func() { p.sets, p.setsErr = api.ParseSetPolicies("stored network "+p.doc.ID, p.doc.Policies) })
	return p.sets, p.setsErr
}

func parseStored(n *api.Network) (*parsedNetwork, error) {
	spec, err := api.ParseStoredNetwork(n)
	if err != nil {
		return nil, fmt.Errorf("stored network %s no longer parses: %w", n.ID, err)
	}
	return &parsedNetwork{doc: n, spec: spec}, nil
}

func (p *parsedNetwork) pools() []ipam.Pool {
	out := make([]ipam.Pool, len(p.spec.Subnets))
	for i, s := range p.spec.Subnets {
		out[i] = ipam.NewPool(p.doc.ID, s)
	}
	return out
}

func (p *parsedNetwork) macPool() ipam.MACPool {
	return ipam.MACPool{NetworkID: p.doc.ID, Ranges: p.spec.MacRanges}
}

// endpointAddrs returns the endpoint's addresses as prefixes.
func endpointAddrs(e *api.Endpoint) []netip.Prefix {
	var out []netip.Prefix
	for _, c := range e.IpConfigurations {
		a, err := api.ParseAddr(c.IpAddress)
		if err != nil {
			continue
		}
		out = append(out, netip.PrefixFrom(a, int(c.PrefixLength)))
	}
	return out
}

// policyKey is a policy's identity for Add and Remove: its type and its
// settings in canonical JSON (key order and spacing do not matter).
// Settings that are not JSON keep their bytes.
func policyKey(p api.Policy) string {
	if p.Type == api.SetPolicy {
		// A set is its Id: Add of a known Id and Update replace its
		// members, Remove needs only the Id.
		var s struct{ Id string }
		if json.Unmarshal(orEmpty(p.Settings), &s) == nil && s.Id != "" {
			return string(p.Type) + "\x00id:" + s.Id
		}
	}
	var v any
	if err := json.Unmarshal(orEmpty(p.Settings), &v); err != nil {
		return string(p.Type) + "\x00raw:" + string(p.Settings)
	}
	b, _ := json.Marshal(v)
	return string(p.Type) + "\x00" + string(b)
}

func orEmpty(b json.RawMessage) json.RawMessage {
	if len(bytes.TrimSpace(b)) == 0 {
		return json.RawMessage("{}")
	}
	return b
}

// mergePolicies applies a policy modify request to a policy list: Add
// appends what is not there yet, Remove drops what matches (absent ones are
// no error, so a retried request is harmless), Update replaces all policies
// of the types it carries, Refresh changes nothing. Each policy is decoded
// once: the cost is linear in the number of policies.
//
// A SetPolicy is keyed by its Id (see policyKey): Add and Update of a set
// the list has replace it in place (its members change, its index does
// not), and Update leaves the network's other sets alone.
//
// It also says where each policy of the result comes from: from[k] >= 0 is in[from[k]], the request's; -1-j is
// cur[j], the object's own (so that an error found on the merged list can
// name the policy in the request's terms, see inRequestTerms).
func mergePolicies(cur []api.Policy, req api.RequestType, in []api.Policy) (out []api.Policy, from []int) {
	out = append([]api.Policy(nil), cur...)
	for j := range cur {
		from = append(from, -1-j)
	}
	inIdx := make([]int, len(in))
	for i := range in {
		inIdx[i] = i
	}
	if req == api.RequestAdd || req == api.RequestUpdate {
		at := map[string]int{}
		for i, q := range out {
			if q.Type == api.SetPolicy {
				at[policyKey(q)] = i
			}
		}
		var rest []api.Policy
		var restIdx []int
		for i, p := range in {
			if p.Type != api.SetPolicy {
				rest, restIdx = append(rest, p), append(restIdx, i)
				continue
			}
			k := policyKey(p)
			if j, ok := at[k]; ok {
				out[j], from[j] = p, i
				continue
			}
			at[k] = len(out)
			out, from = append(out, p), append(from, i)
		}
		in, inIdx = rest, restIdx
	}
	// keep filters out and from alike.
	keep := func(ok func(q api.Policy) bool) {
		n := 0
		for k, q := range out {
			if ok(q) {
				out[n], from[n] = q, from[k]
				n++
			}
		}
		out, from = out[:n], from[:n]
	}
	switch req {
	case api.RequestAdd:
		have := make(map[string]bool, len(out)+len(in))
		for _, q := range out {
			have[policyKey(q)] = true
		}
		for k, p := range in {
			if key := policyKey(p); !have[key] {
				have[key] = true
				out, from = append(out, p), append(from, inIdx[k])
			}
		}
	case api.RequestRemove:
		drop := make(map[string]bool, len(in))
		for _, p := range in {
			drop[policyKey(p)] = true
		}
		keep(func(q api.Policy) bool { return !drop[policyKey(q)] })
	case api.RequestUpdate:
		types := map[api.PolicyType]bool{}
		for _, p := range in {
			types[p.Type] = true
		}
		keep(func(q api.Policy) bool { return !types[q.Type] })
		out = append(out, in...)
		from = append(from, inIdx...)
	}
	return out, from
}

// sameJSON reports whether two documents encode alike.
func sameJSON(a, b any) bool {
	ja, err1 := json.Marshal(a)
	jb, err2 := json.Marshal(b)
	return err1 == nil && err2 == nil && bytes.Equal(ja, jb)
}
