package cli

import (
	"context"
	"fmt"
	"strings"

	"github.com/hostnet/hostnet/api"
	"github.com/hostnet/hostnet/client"
)

// The kinds of objects a command can reference.
const (
	kindNetwork   = "network"
	kindEndpoint  = "endpoint"
	kindNamespace = "namespace"
)

// listObjects returns, for every object of kind, what pick makes of its
// name (empty where it has none) and ID.
func listObjects(ctx context.Context, c *client.Client, kind string, pick func(name, id string) string) ([]string, error) {
	switch kind {
	case kindNetwork:
		l, err := c.ListNetworks(ctx, nil)
		return pickEach(l, err, func(n *api.Network) string { return pick(n.Name, n.ID) })
	case kindEndpoint:
		l, err := c.ListEndpoints(ctx, nil)
		return pickEach(l, err, func(e *api.Endpoint) string { return pick(e.Name, e.ID) })
	case kindNamespace:
		l, err := c.ListNamespaces(ctx, nil)
		return pickEach(l, err, func(n *api.Namespace) string { return pick(n.Name, n.ID) })
	}
	return nil, fmt.Errorf("unknown object kind %q", kind)
}

// pickEach is f of each of a list's objects, or the list's error.
func pickEach[T any](l []T, err error, f func(*T) string) ([]string, error) {
	if err != nil {
		return nil, err
	}
	out := make([]string, len(l))
	for i := range l {
		out[i] = f(&l[i])
	}
	return out, nil
}

// listIDs returns the IDs of every object of kind.
func listIDs(ctx context.Context, c *client.Client, kind string) ([]string, error) {
	return listObjects(ctx, c, kind, func(_, id string) string { return id })
}

// listNames returns the names of the objects of kind (their IDs where they
// have none).
func listNames(ctx context.Context, c *client.Client, kind string) ([]string, error) {
	return listObjects(ctx, c, kind, func(name, id string) string {
		if name == "" {
			return id
		}
		return name
	})
}

// looksLikeIDPrefix reports whether ref could be the start of an ID, as
// tables show them (the daemon itself resolves only whole IDs and names).
func looksLikeIDPrefix(ref string) bool {
	if ref == "" || len(ref) >= 36 {
		return false
	}
	for _, r := range ref {
		if !(r >= '0' && r <= '9' || r >= 'a' && r <= 'f' || r >= 'A' && r <= 'F' || r == '-') {
			return false
		}
	}
	return true
}

// matchPrefix returns the IDs that start with prefix, compared without case
// and with or without the dashes of a GUID.
func matchPrefix(ids []string, prefix string) []string {
	p := strings.ToLower(prefix)
	bare := strings.ReplaceAll(p, "-", "")
	var out []string
	for _, id := range ids {
		l := strings.ToLower(id)
		if strings.HasPrefix(l, p) || (bare != "" && strings.HasPrefix(strings.ReplaceAll(l, "-", ""), bare)) {
			out = append(out, id)
		}
	}
	return out
}

// expandPrefix returns the one ID of kind that starts with ref; ok is false
// when none does.
func expandPrefix(ctx context.Context, c *client.Client, kind, ref string) (id string, ok bool, err error) {
	ids, err := listIDs(ctx, c, kind)
	if err != nil {
		return "", false, err
	}
	switch m := matchPrefix(ids, ref); len(m) {
	case 0:
		return "", false, nil
	case 1:
		return m[0], true, nil
	default:
		return "", false, fmt.Errorf("%s ID prefix %q is ambiguous: it matches %d %ss", kind, ref, len(m), kind)
	}
}

// withRef calls fn with ref. When the daemon knows no object by that name or
// ID and ref looks like the start of an ID, fn is retried with the one ID
// that starts with ref; failing that, the daemon's answer stands.
func withRef(ctx context.Context, c *client.Client, kind, ref string, fn func(ref string) error) error {
	err := fn(ref)
	if err == nil || !api.IsNotFound(err) || !looksLikeIDPrefix(ref) {
		return err
	}
	id, ok, xerr := expandPrefix(ctx, c, kind, ref)
	if xerr != nil {
		return xerr
	}
	if !ok {
		return err
	}
	return fn(id)
}

// resolveRef returns ref, or the whole ID when ref is only the start of one
// and names no object. Other failures are left for the call that uses ref.
func resolveRef(ctx context.Context, c *client.Client, kind, ref string) (string, error) {
	if !looksLikeIDPrefix(ref) {
		return ref, nil
	}
	var err error
	switch kind {
	case kindNetwork:
		_, err = c.GetNetwork(ctx, ref)
	case kindEndpoint:
		_, err = c.GetEndpoint(ctx, ref)
	case kindNamespace:
		_, err = c.GetNamespace(ctx, ref)
	}
	if err == nil || !api.IsNotFound(err) {
		return ref, nil
	}
	id, ok, xerr := expandPrefix(ctx, c, kind, ref)
	if xerr != nil {
		return "", xerr
	}
	if !ok {
		return ref, nil
	}
	return id, nil
}
