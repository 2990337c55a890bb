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
	kindRoute     = "route"
)

// kindCalls are the client's calls for one kind of object, untyped, for
// the verbs and references every kind has.
type kindCalls struct {
	// get fetches an object by its full reference: a *api.Network,
	// *api.Endpoint or *api.Namespace.
	get func(c *client.Client, ctx context.Context, ref string) (any, error)
	del func(c *client.Client, ctx context.Context, ref string) error
	// list returns, for every object, what pick makes of its name (empty
	// where it has none) and ID.
	list func(c *client.Client, ctx context.Context, pick func(name, id string) string) ([]string, error)
}

// callsOf makes a kind's calls of its typed client methods; ref tells an
// object's name and ID.
func callsOf[T any](
	get func(*client.Client, context.Context, string) (*T, error),
	del func(*client.Client, context.Context, string) error,
	list func(*client.Client, context.Context, map[string]string) ([]T, error),
	ref func(*T) (name, id string),
) kindCalls {
	return kindCalls{
		get: func(c *client.Client, ctx context.Context, id string) (any, error) { return get(c, ctx, id) },
		del: del,
		list: func(c *client.Client, ctx context.Context, pick func(name, id string) string) ([]string, error) {
			l, err := list(c, ctx, nil)
			if err != nil {
				return nil, err
			}
			out := make([]string, len(l))
			for i := range l {
				out[i] = pick(ref(&l[i]))
			}
			return out, nil
		},
	}
}

var kinds = map[string]kindCalls{
	kindNetwork:   callsOf((*client.Client).GetNetwork, (*client.Client).DeleteNetwork, (*client.Client).ListNetworks, networkRef),
	kindEndpoint:  callsOf((*client.Client).GetEndpoint, (*client.Client).DeleteEndpoint, (*client.Client).ListEndpoints, endpointRef),
	kindNamespace: callsOf((*client.Client).GetNamespace, (*client.Client).DeleteNamespace, (*client.Client).ListNamespaces, namespaceRef),
	kindRoute:     callsOf((*client.Client).GetRoute, (*client.Client).DeleteRoute, (*client.Client).ListRoutes, routeRef),
}

func networkRef(n *api.Network) (name, id string)     { return n.Name, n.ID }
func endpointRef(e *api.Endpoint) (name, id string)   { return e.Name, e.ID }
func namespaceRef(n *api.Namespace) (name, id string) { return n.Name, n.ID }

// callsFor returns the calls of kind.
func callsFor(kind string) (kindCalls, error) {
	k, ok := kinds[kind]
	if !ok {
		return kindCalls{}, fmt.Errorf("unknown object kind %q", kind)
	}
	return k, nil
}

// getObject fetches the object of kind by its full reference.
func getObject(ctx context.Context, c *client.Client, kind, ref string) (any, error) {
	k, err := callsFor(kind)
	if err != nil {
		return nil, err
	}
	return k.get(c, ctx, ref)
}

// deleteObject deletes the object of kind by its full reference.
func deleteObject(ctx context.Context, c *client.Client, kind, ref string) error {
	k, err := callsFor(kind)
	if err != nil {
		return err
	}
	return k.del(c, ctx, ref)
}

// listObjects returns, for every object of kind, what pick makes of its
// name and ID.
func listObjects(ctx context.Context, c *client.Client, kind string, pick func(name, id string) string) ([]string, error) {
	k, err := callsFor(kind)
	if err != nil {
		return nil, err
	}
	return k.list(c, ctx, pick)
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
	if _, err := getObject(ctx, c, kind, ref); err == nil || !api.IsNotFound(err) {
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
