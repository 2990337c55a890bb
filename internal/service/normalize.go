package service

import (
	"bytes"
	"encoding/json"
	"fmt"
	"slices"
	"strings"

	"github.com/hostnet/hostnet/api"
)

// Records stored by earlier builds are read at start with this build's
// validation, the api.Parse* functions the API uses. Where parsing puts a
// document in its canonical form (policy types by name, OutBoundNAT
// exceptions masked and merged), the canonical document is written back,
// so that what is stored is what is enforced. A few fields earlier builds
// accepted and ignored, which this one refuses (issue 22, F13), are
// dropped, since they never had an effect: network flags other than
// EnableNonPersistent (DisableHostPort, 1024, among them), unknown
// endpoint flags, and a ResolvConfPath a client set on a namespace. What
// still fails to parse cannot be normalised without changing what the
// object is (a name that reads as an ID, a multicast MAC): its record is
// set aside (see setaside.go).

// normaliseNetwork validates a stored network and puts it in canonical
// form in place. It returns what changed ("" for nothing), or why the
// record cannot be kept.
func normaliseNetwork(n *api.Network) (string, error) {
	var what []string
	if ignored := n.Flags &^ api.NetworkEnableNonPersistent; ignored != 0 {
		n.Flags &^= ignored
		what = append(what, fmt.Sprintf("flags %#x, which earlier builds ignored, dropped", uint32(ignored)))
	}
	before := slices.Clone(n.Policies)
	if _, err := api.ParseStoredNetwork(n); err != nil {
		return "", err
	}
	if !samePolicies(before, n.Policies) {
		what = append(what, "policies in canonical form")
	}
	return strings.Join(what, "; "), nil
}

// normaliseEndpoint validates a stored endpoint and puts it in canonical
// form in place (see normaliseNetwork). The fields hostnet fills in
// itself, which a client may not send, are left out of the validation.
func normaliseEndpoint(e *api.Endpoint) (string, error) {
	var what []string
	if ignored := e.Flags &^ api.EndpointFlagsKnown; ignored != 0 {
		e.Flags &^= ignored
		what = append(what, fmt.Sprintf("flags %#x, which earlier builds ignored, dropped", uint32(ignored)))
	}
	before := slices.Clone(e.Policies)
	probe := *e
	probe.HostComputeNamespace, probe.NetNamespacePath, probe.HostInterfaceName = "", "", ""
	probe.Policies = slices.Clone(e.Policies)
	if _, err := api.ParseStoredEndpoint(&probe); err != nil {
		return "", err
	}
	e.Policies = probe.Policies
	if !samePolicies(before, e.Policies) {
		what = append(what, "policies in canonical form")
	}
	return strings.Join(what, "; "), nil
}

// normaliseNamespace validates a stored namespace (see normaliseNetwork).
// Its read-only fields (Managed, Implicit) are left out of the
// validation, and so are its resources, which hostnet itself adds after
// the creation (attached endpoints, containers a modify request records)
// and which the creation's bounds do not hold: a resource must be of a
// known type, and an attached endpoint's must name it.
func normaliseNamespace(n *api.Namespace) (string, error) {
	var what []string
	for k := range n.Extra {
		if strings.EqualFold(k, "ResolvConfPath") {
			delete(n.Extra, k)
			what = append(what, k+", which earlier builds ignored, dropped")
		}
	}
	for i, r := range n.Resources {
		switch r.Type {
		case api.NamespaceResourceContainer:
		case api.NamespaceResourceEndpoint:
			var id api.NamespaceResourceID
			if err := json.Unmarshal(r.Data, &id); err != nil || id.ID == "" {
				return "", api.Invalid(api.CodeInvalidNamespace, "invalid namespace: field Resources[%d].Data: an attached endpoint's resource names no endpoint (%s)", i, truncateBytes(r.Data, 80))
			}
		default:
			return "", api.Invalid(api.CodeInvalidNamespace, "invalid namespace: field Resources[%d].Type: unknown resource type %q", i, string(r.Type))
		}
	}
	probe := *n
	probe.Managed, probe.Implicit, probe.Resources = false, false, nil
	if err := api.ParseNamespace(&probe); err != nil {
		return "", err
	}
	return strings.Join(what, "; "), nil
}

// samePolicies reports whether two policy lists are alike, type and
// settings byte for byte.
func samePolicies(a, b []api.Policy) bool {
	return slices.EqualFunc(a, b, func(p, q api.Policy) bool { return p.Type == q.Type && bytes.Equal(p.Settings, q.Settings) })
}

func truncateBytes(b []byte, n int) string {
	if len(b) > n {
		return string(b[:n]) + "..."
	}
	return string(b)
}
