package service

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/netip"
	"reflect"

	"github.com/hostnet/hostnet/api"
	"github.com/hostnet/hostnet/internal/dataplane"
	"github.com/hostnet/hostnet/internal/driver"
	"github.com/hostnet/hostnet/internal/ipam"
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
}

func listNetworks(tx store.Tx) ([]networkRecord, error) {
	return store.ListJSON[networkRecord](tx, store.Networks, "")
}

func listEndpoints(tx store.Tx) ([]endpointRecord, error) {
	return store.ListJSON[endpointRecord](tx, store.Endpoints, "")
}

func listNamespaces(tx store.Tx) ([]namespaceRecord, error) {
	return store.ListJSON[namespaceRecord](tx, store.Namespaces, "")
}

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
}

func parseStored(n *api.Network) (*parsedNetwork, error) {
	spec, err := api.ParseNetwork(n)
	if err != nil {
		return nil, fmt.Errorf("stored network %s no longer parses: %w", n.ID, err)
	}
	return &parsedNetwork{doc: n, spec: spec}, nil
}

func (p *parsedNetwork) driverNetwork() *driver.Network {
	return &driver.Network{ID: p.doc.ID, Name: p.doc.Name, Spec: p.spec, Bridge: p.doc.BridgeName}
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

// defaultRouteMetric gives each NIC of a namespace its own metric, so two
// endpoints in one namespace can both have a default route: ethN gets
// 100+N (N for EnableLowInterfaceMetric), other names 200 + a hash.
func defaultRouteMetric(e *api.Endpoint, ifName string) int {
	base := 100
	if e.Flags&api.EndpointEnableLowInterfaceMetric != 0 {
		base = 0
	}
	var n int
	if _, err := fmt.Sscanf(ifName, "eth%d", &n); err == nil && fmt.Sprintf("eth%d", n) == ifName && n < 100 {
		return base + n
	}
	h := 0
	for _, c := range ifName {
		h = (h*31 + int(c)) % 9973
	}
	return base + 200 + h%700
}

// driverEndpoint builds what a driver needs to attach e.
func driverEndpoint(rec *endpointRecord, net *parsedNetwork) (*driver.Endpoint, error) {
	e := &rec.Doc
	mac, err := api.ParseMAC(e.MacAddress)
	if err != nil {
		return nil, fmt.Errorf("endpoint %s: %w", e.ID, err)
	}
	spec, err := api.ParseEndpoint(&api.Endpoint{Routes: e.Routes})
	if err != nil {
		return nil, fmt.Errorf("stored endpoint %s no longer parses: %w", e.ID, err)
	}
	de := &driver.Endpoint{
		ID:       e.ID,
		Network:  net.driverNetwork(),
		HostName: e.HostInterfaceName,
		Name:     e.InterfaceName,
		MAC:      mac,
		Addrs:    endpointAddrs(e),
	}
	metric := defaultRouteMetric(e, e.InterfaceName)
	for _, s := range net.spec.Subnets {
		hasAddr := false
		for _, a := range de.Addrs {
			hasAddr = hasAddr || s.Prefix.Contains(a.Addr())
		}
		if !hasAddr {
			continue
		}
		hasDefault := false
		for _, r := range s.Routes {
			if r.Dst.Bits() == 0 {
				hasDefault = true
				de.Routes = append(de.Routes, dataplane.Route{Dst: r.Dst, Gateway: r.NextHop, Metric: metric})
			} else {
				de.Routes = append(de.Routes, dataplane.Route{Dst: r.Dst, Gateway: r.NextHop, Metric: int(r.Metric)})
			}
		}
		if !hasDefault {
			de.Routes = append(de.Routes, dataplane.Route{Dst: netip.PrefixFrom(zeroAddr(s.Prefix.Addr()), 0), Gateway: s.Gateway, Metric: metric})
		}
	}
	for _, r := range spec.Routes {
		de.Routes = append(de.Routes, dataplane.Route{Dst: r.Dst, Gateway: r.NextHop, Metric: int(r.Metric)})
	}
	ps := endpointPoliciesOf(e)
	de.Routes = append(de.Routes, ps.routes...)
	de.Hairpin = len(ps.mappings) > 0
	return de, nil
}

func zeroAddr(a netip.Addr) netip.Addr {
	if a.Is4() {
		return netip.IPv4Unspecified()
	}
	return netip.IPv6Unspecified()
}

func parseSDNRoute(raw json.RawMessage) (dataplane.Route, error) {
	var s api.SDNRouteSettings
	if err := api.DecodeSettings(raw, &s); err != nil {
		return dataplane.Route{}, api.Invalid(api.CodeInvalidPolicy, "invalid SDNRoute policy: %v", err)
	}
	if s.NeedEncap {
		return dataplane.Route{}, api.Unsupported("SDNRoute policy: field NeedEncap: encapsulated routes need an Overlay network, which this build does not support")
	}
	dst, err := api.ParsePrefix(s.DestinationPrefix)
	if err != nil {
		return dataplane.Route{}, api.Invalid(api.CodeInvalidPolicy, "invalid SDNRoute policy: field DestinationPrefix: %v", err)
	}
	r := dataplane.Route{Dst: dst}
	if s.NextHop != "" {
		nh, err := api.ParseAddr(s.NextHop)
		if err != nil {
			return dataplane.Route{}, api.Invalid(api.CodeInvalidPolicy, "invalid SDNRoute policy: field NextHop: %v", err)
		}
		if nh.Is4() != dst.Addr().Is4() {
			return dataplane.Route{}, api.Invalid(api.CodeInvalidPolicy, "invalid SDNRoute policy: field NextHop: %s is not of the family of %s", nh, dst)
		}
		r.Gateway = nh
	}
	return r, nil
}

// samePolicy reports whether two policies have the same type and the same
// settings, whatever the key order or spacing of their JSON.
func samePolicy(a, b api.Policy) bool {
	if a.Type != b.Type {
		return false
	}
	var va, vb any
	if err := json.Unmarshal(orEmpty(a.Settings), &va); err != nil {
		return bytes.Equal(a.Settings, b.Settings)
	}
	if err := json.Unmarshal(orEmpty(b.Settings), &vb); err != nil {
		return false
	}
	return reflect.DeepEqual(va, vb)
}

func orEmpty(b json.RawMessage) json.RawMessage {
	if len(bytes.TrimSpace(b)) == 0 {
		return json.RawMessage("{}")
	}
	return b
}

// modifyPolicies applies a policy modify request to a policy list: Add
// appends what is not there yet, Remove drops what matches (absent ones are
// no error, so a retried request is harmless), Update replaces all policies
// of the types it carries, Refresh changes nothing.
func modifyPolicies(cur []api.Policy, req api.RequestType, in []api.Policy) []api.Policy {
	out := append([]api.Policy(nil), cur...)
	switch req {
	case api.RequestAdd:
		for _, p := range in {
			dup := false
			for _, q := range out {
				dup = dup || samePolicy(p, q)
			}
			if !dup {
				out = append(out, p)
			}
		}
	case api.RequestRemove:
		kept := out[:0]
		for _, q := range out {
			drop := false
			for _, p := range in {
				drop = drop || samePolicy(p, q)
			}
			if !drop {
				kept = append(kept, q)
			}
		}
		out = kept
	case api.RequestUpdate:
		types := map[api.PolicyType]bool{}
		for _, p := range in {
			types[p.Type] = true
		}
		kept := out[:0]
		for _, q := range out {
			if !types[q.Type] {
				kept = append(kept, q)
			}
		}
		out = append(kept, in...)
	}
	return out
}

// sameJSON reports whether two documents encode alike.
func sameJSON(a, b any) bool {
	ja, err1 := json.Marshal(a)
	jb, err2 := json.Marshal(b)
	return err1 == nil && err2 == nil && bytes.Equal(ja, jb)
}
