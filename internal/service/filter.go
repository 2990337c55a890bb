package service

import (
	"bytes"
	"encoding/json"
	"fmt"
	"strings"

	"github.com/hostnet/hostnet/api"
	"github.com/hostnet/hostnet/internal/store"
)

// filter is a parsed HNS filter document: field -> wanted value. The
// document may also come wrapped in an HNS query ({"Filter":"{...}"}).
type filter map[string]string

// filterKeys are the keys each kind of object can be filtered on.
var filterKeys = map[string][]string{
	"network":   {"ID", "Name", "Type"},
	"endpoint":  {"ID", "Name", "VirtualNetwork", "HostComputeNetwork", "VirtualNetworkName", "HostComputeNamespace", "IPAddress", "MacAddress"},
	"namespace": {"ID", "Name", "Type", "NamespaceId"},
	"route":     {"ID", "HostComputeEndpoints"},
}

func parseFilter(kind, raw string) (filter, error) {
	raw = strings.TrimSpace(raw)
	if raw == "" || raw == "{}" || raw == "null" {
		return filter{}, nil
	}
	var doc map[string]json.RawMessage
	if err := json.Unmarshal([]byte(raw), &doc); err != nil {
		return nil, api.Invalid(api.CodeInvalidJSON, "invalid %s filter: not a JSON object: %v", kind, err)
	}
	// An HNS query wraps the filter document in a string.
	if inner, ok := doc["Filter"]; ok {
		var s string
		if err := json.Unmarshal(inner, &s); err == nil {
			return parseFilter(kind, s)
		}
	}
	f := filter{}
	for k, v := range doc {
		if k == "SchemaVersion" || k == "Flags" {
			continue
		}
		key := ""
		for _, known := range filterKeys[kind] {
			if strings.EqualFold(k, known) {
				key = known
			}
		}
		if key == "" {
			return nil, api.Invalid(api.CodeInvalidJSON, "invalid %s filter: unknown key %q (known: %s)", kind, k, strings.Join(filterKeys[kind], ", "))
		}
		var s string
		if err := json.Unmarshal(v, &s); err != nil {
			s = string(bytes.TrimSpace(v)) // a number or a boolean, compared as text
		}
		f[key] = s
	}
	return f, nil
}

// matchID compares GUIDs case-insensitively.
func matchID(want, id string) bool {
	if w, ok := refID(want); ok {
		return w == id
	}
	return strings.EqualFold(want, id)
}

// matches reports whether every key of f holds for an object of the
// given ID and name; other reports whether a key of the object's own
// holds (keys it does not know match).
func (f filter) matches(id, name string, other func(k, v string) bool) bool {
	for k, v := range f {
		var ok bool
		switch k {
		case "ID":
			ok = matchID(v, id)
		case "Name":
			ok = v == name
		default:
			ok = other(k, v)
		}
		if !ok {
			return false
		}
	}
	return true
}

func (f filter) matchNetwork(n *api.Network) bool {
	return f.matches(n.ID, n.Name, func(k, v string) bool {
		if k != "Type" {
			return true
		}
		var t api.NetworkType
		_ = json.Unmarshal([]byte(quoteIfNeeded(v)), &t)
		return t == n.Type
	})
}

func quoteIfNeeded(v string) string {
	if _, err := fmt.Sscanf(v, "%d", new(int)); err == nil {
		return v
	}
	b, _ := json.Marshal(v)
	return string(b)
}

// resolveNetworkName turns a VirtualNetworkName filter into a network ID.
func (f filter) resolveNetworkName(tx store.Tx) error {
	name, ok := f["VirtualNetworkName"]
	if !ok {
		return nil
	}
	id, err := tx.Get(store.Names, nameKey("network", name))
	if err != nil {
		f["VirtualNetwork"] = "\x00no such network"
	} else {
		f["VirtualNetwork"] = string(id)
	}
	delete(f, "VirtualNetworkName")
	return nil
}

func (f filter) matchEndpoint(e *api.Endpoint) bool {
	return f.matches(e.ID, e.Name, func(k, v string) bool {
		switch k {
		case "VirtualNetwork", "HostComputeNetwork":
			return matchID(v, e.HostComputeNetwork)
		case "HostComputeNamespace":
			return matchID(v, e.HostComputeNamespace)
		case "IPAddress":
			for _, c := range e.IpConfigurations {
				if c.IpAddress == v {
					return true
				}
			}
			return false
		case "MacAddress":
			want, err := api.ParseMAC(v)
			return err == nil && api.FormatMAC(want) == e.MacAddress
		}
		return true
	})
}

func (f filter) matchNamespace(n *api.Namespace) bool {
	return f.matches(n.ID, n.Name, func(k, v string) bool {
		switch k {
		case "Type":
			return strings.EqualFold(v, string(n.Type))
		case "NamespaceId":
			return v == fmt.Sprint(n.NamespaceId)
		}
		return true
	})
}
