package cli

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"

	"github.com/spf13/cobra"

	"github.com/hostnet/hostnet/api"
	"github.com/hostnet/hostnet/client"
)

// applyDoc is one document of an apply file.
type applyDoc struct {
	index int // position in the file, from 0
	kind  string
	raw   json.RawMessage
	keys  map[string]json.RawMessage // its top-level fields
}

// splitDocuments reads a single JSON document, an array of documents, or a
// stream of documents (and arrays), in file order.
func splitDocuments(data []byte) ([]json.RawMessage, error) {
	dec := json.NewDecoder(bytes.NewReader(data))
	var docs []json.RawMessage
	for {
		var raw json.RawMessage
		err := dec.Decode(&raw)
		if err == io.EOF {
			break
		}
		if err != nil {
			return nil, fmt.Errorf("invalid JSON: %w", err)
		}
		raw = bytes.TrimSpace(raw)
		if len(raw) > 0 && raw[0] == '[' {
			var arr []json.RawMessage
			if err := json.Unmarshal(raw, &arr); err != nil {
				return nil, fmt.Errorf("invalid JSON: %w", err)
			}
			docs = append(docs, arr...)
			continue
		}
		docs = append(docs, raw)
	}
	if len(docs) == 0 {
		return nil, errors.New("no documents found")
	}
	return docs, nil
}

// field returns the top-level field key of doc, matched without case as
// the daemon's decoder matches them.
func field(doc map[string]json.RawMessage, key string) (json.RawMessage, bool) {
	if v, ok := doc[key]; ok {
		return v, true
	}
	for k, v := range doc {
		if strings.EqualFold(k, key) {
			return v, true
		}
	}
	return nil, false
}

// detectKind tells what an HCN document describes: "network", "endpoint",
// "namespace", "route", or "" when it cannot be told.
func detectKind(doc map[string]json.RawMessage) string {
	if _, ok := field(doc, "HostComputeNetwork"); ok {
		return kindEndpoint
	}
	for _, k := range []string{"HostComputeEndpoints", "Setting"} {
		if _, ok := field(doc, k); ok {
			return kindRoute
		}
	}
	for _, k := range []string{"Ipams", "MacPool"} {
		if _, ok := field(doc, k); ok {
			return kindNetwork
		}
	}
	if raw, ok := field(doc, "Type"); ok {
		var t string
		if json.Unmarshal(raw, &t) == nil {
			for _, nt := range networkTypes {
				if strings.EqualFold(t, string(nt)) {
					return kindNetwork
				}
			}
			for _, nt := range []api.NamespaceType{api.NamespaceHost, api.NamespaceHostDefault, api.NamespaceGuest, api.NamespaceGuestDefault} {
				if strings.EqualFold(t, string(nt)) {
					return kindNamespace
				}
			}
		}
	}
	for _, k := range []string{"NetNamespacePath", "NamespaceId", "Resources"} {
		if _, ok := field(doc, k); ok {
			return kindNamespace
		}
	}
	return ""
}

// parseApplyDocuments splits an apply file into documents and tells their
// kinds; it refuses the file if any document is not a valid object of a
// kind it can tell.
func parseApplyDocuments(data []byte) ([]applyDoc, error) {
	raws, err := splitDocuments(data)
	if err != nil {
		return nil, err
	}
	docs := make([]applyDoc, 0, len(raws))
	for i, raw := range raws {
		var keys map[string]json.RawMessage
		if err := json.Unmarshal(raw, &keys); err != nil || keys == nil {
			return nil, fmt.Errorf("document %d: not a JSON object", i)
		}
		kind := detectKind(keys)
		if kind == "" {
			return nil, fmt.Errorf("document %d: cannot tell whether it is a network, an endpoint, a namespace or a route "+
				"(a network has Ipams, MacPool or a network Type; an endpoint has HostComputeNetwork; "+
				"a namespace has NetNamespacePath, NamespaceId, Resources or a namespace Type; "+
				"a route has HostComputeEndpoints or Setting)", i)
		}
		var target any
		switch kind {
		case kindNetwork:
			target = &api.Network{}
		case kindEndpoint:
			target = &api.Endpoint{}
		case kindRoute:
			target = &api.HostComputeRoute{}
		default:
			target = &api.Namespace{}
		}
		if err := json.Unmarshal(raw, target); err != nil {
			return nil, fmt.Errorf("document %d (%s): %w", i, kind, err)
		}
		docs = append(docs, applyDoc{index: i, kind: kind, raw: raw, keys: keys})
	}
	return docs, nil
}

// applyResult is what became of one document.
type applyResult struct {
	doc     any
	id      string
	created bool
}

func newApplyCommand(a *app) *cobra.Command {
	var file string
	cmd := &cobra.Command{
		Use:   "apply -f FILE",
		Short: "Create the networks, endpoints, namespaces and routes of HCN JSON documents",
		Long: "Create, in file order, the objects described by HCN v2 JSON documents: a single\n" +
			"document, an array of documents, or a stream of them. FILE may be - for stdin.\n" +
			"An object that already exists with the same settings is left unchanged.",
		Args: exactArgs(0),
		RunE: func(cmd *cobra.Command, args []string) error {
			if file == "" {
				return &usageError{cmd: cmd, err: errors.New("no file given: use -f FILE (- for stdin)")}
			}
			data, err := a.readInput(file)
			if err != nil {
				return err
			}
			docs, err := parseApplyDocuments(data)
			if err != nil {
				return fmt.Errorf("%s: %w", displayFile(file), err)
			}
			ctx := cmd.Context()
			c := a.client()
			results := []any{}
			for _, d := range docs {
				res, name, err := applyDocument(ctx, c, d)
				if err != nil {
					if isUnreachable(err) {
						return err
					}
					return fmt.Errorf("%s %s: %w", d.kind, name, err)
				}
				results = append(results, res.doc)
				if a.structured() {
					continue
				}
				if res.created {
					fmt.Fprintf(a.io.Out, "%s %s created (%s)\n", d.kind, name, res.id)
				} else {
					fmt.Fprintf(a.io.Out, "%s %s unchanged\n", d.kind, name)
				}
			}
			if a.structured() {
				return a.render(results, nil)
			}
			return nil
		},
	}
	cmd.Flags().StringVarP(&file, "file", "f", "", "file of HCN JSON documents (- for stdin)")
	return cmd
}

func displayFile(name string) string {
	if name == "-" {
		return "stdin"
	}
	return name
}

// label is how apply names an object: its name, else its ID, else its
// position in the file.
func label(d applyDoc, res *applyResult, name, id string) string {
	switch {
	case name != "":
		return name
	case id != "":
		return id
	case res != nil && res.id != "":
		return res.id
	}
	return fmt.Sprintf("(document %d)", d.index)
}

// applyDocument creates the object of d, or finds it already there. It
// returns the label of the object for messages.
func applyDocument(ctx context.Context, c *client.Client, d applyDoc) (*applyResult, string, error) {
	switch d.kind {
	case kindNetwork:
		var n api.Network
		if err := json.Unmarshal(d.raw, &n); err != nil {
			return nil, label(d, nil, "", ""), err
		}
		res, err := applyObject(d, n.ID, n.Name, nil,
			func() (*api.Network, error) { return c.CreateNetwork(ctx, &n) },
			func(ref string) (*api.Network, error) { return c.GetNetwork(ctx, ref) },
			func(n *api.Network) string { return n.ID })
		return res, label(d, res, n.Name, n.ID), err
	case kindEndpoint:
		var e api.Endpoint
		if err := json.Unmarshal(d.raw, &e); err != nil {
			return nil, label(d, nil, "", ""), err
		}
		// The document may name its network; the daemon stores its ID.
		resolveNetwork := func(sent map[string]any) {
			if ref, _ := sent["HostComputeNetwork"].(string); ref != "" {
				if n, err := c.GetNetwork(ctx, ref); err == nil {
					sent["HostComputeNetwork"] = n.ID
				}
			}
		}
		res, err := applyObject(d, e.ID, e.Name, resolveNetwork,
			func() (*api.Endpoint, error) { return c.CreateEndpoint(ctx, &e) },
			func(ref string) (*api.Endpoint, error) { return c.GetEndpoint(ctx, ref) },
			func(e *api.Endpoint) string { return e.ID })
		return res, label(d, res, e.Name, e.ID), err
	case kindRoute:
		var r api.HostComputeRoute
		if err := json.Unmarshal(d.raw, &r); err != nil {
			return nil, label(d, nil, "", ""), err
		}
		// The document may name its endpoints; the daemon stores IDs.
		resolveEndpoints := func(sent map[string]any) {
			refs, _ := sent["HostComputeEndpoints"].([]any)
			for i, ref := range refs {
				if s, _ := ref.(string); s != "" {
					if e, err := c.GetEndpoint(ctx, s); err == nil {
						refs[i] = e.ID
					}
				}
			}
		}
		res, err := applyObject(d, r.ID, "", resolveEndpoints,
			func() (*api.HostComputeRoute, error) { return c.CreateRoute(ctx, &r) },
			func(ref string) (*api.HostComputeRoute, error) { return c.GetRoute(ctx, ref) },
			func(r *api.HostComputeRoute) string { return r.ID })
		return res, label(d, res, "", r.ID), err
	default:
		var n api.Namespace
		if err := json.Unmarshal(d.raw, &n); err != nil {
			return nil, label(d, nil, "", ""), err
		}
		res, err := applyObject(d, n.ID, n.Name, nil,
			func() (*api.Namespace, error) { return c.CreateNamespace(ctx, &n) },
			func(ref string) (*api.Namespace, error) { return c.GetNamespace(ctx, ref) },
			func(n *api.Namespace) string { return n.ID })
		return res, label(d, res, n.Name, n.ID), err
	}
}

// applyObject creates an object; when the daemon answers that it exists
// (or the document's ID is already taken), the existing object counts as
// unchanged if it matches the document on every field the document sets.
func applyObject[T any](d applyDoc, id, name string, normalize func(map[string]any),
	create func() (*T, error), get func(ref string) (*T, error), idOf func(*T) string) (*applyResult, error) {
	same := func(existing *T) bool {
		sent, err := sentFields(d, new(T))
		if err != nil {
			return false
		}
		if normalize != nil {
			normalize(sent)
		}
		return containsJSON(toJSONValue(existing), sent)
	}
	existed := false
	if id != "" {
		ex, err := get(id)
		switch {
		case err == nil:
			if same(ex) {
				return &applyResult{doc: ex, id: idOf(ex)}, nil
			}
			existed = true
		case !api.IsNotFound(err):
			return nil, err
		}
	}
	out, err := create()
	if err == nil {
		return &applyResult{doc: out, id: idOf(out), created: !existed}, nil
	}
	if !api.IsConflict(err) {
		return nil, err
	}
	ref := id
	if ref == "" {
		ref = name
	}
	if ref == "" {
		return nil, err
	}
	ex, gerr := get(ref)
	if gerr != nil || !same(ex) {
		return nil, err
	}
	return &applyResult{doc: ex, id: idOf(ex)}, nil
}

// sentFields returns the top-level fields the document sets, as the daemon
// reads them (decoded into target and encoded again, so enums given as
// numbers compare by name).
func sentFields(d applyDoc, target any) (map[string]any, error) {
	if err := json.Unmarshal(d.raw, target); err != nil {
		return nil, err
	}
	all, ok := toJSONValue(target).(map[string]any)
	if !ok {
		return nil, errors.New("document is not an object")
	}
	out := map[string]any{}
	for k, v := range all {
		if _, sent := field(d.keys, k); sent {
			out[k] = v
		}
	}
	return out, nil
}

// toJSONValue encodes v and decodes it into maps, slices and scalars.
func toJSONValue(v any) any {
	b, err := json.Marshal(v)
	if err != nil {
		return nil
	}
	var out any
	if err := json.Unmarshal(b, &out); err != nil {
		return nil
	}
	return out
}

// containsJSON reports whether have holds everything want sets: objects
// may have more fields, arrays match element by element, IDs and MAC
// addresses compare without regard to case or spelling.
func containsJSON(have, want any) bool {
	switch w := want.(type) {
	case map[string]any:
		h, ok := have.(map[string]any)
		if !ok {
			return have == nil && isZeroJSON(w)
		}
		for k, wv := range w {
			if !containsJSON(h[k], wv) {
				return false
			}
		}
		return true
	case []any:
		h, ok := have.([]any)
		if !ok {
			return have == nil && len(w) == 0
		}
		if len(h) != len(w) {
			return false
		}
		for i := range w {
			if !containsJSON(h[i], w[i]) {
				return false
			}
		}
		return true
	case string:
		h, ok := have.(string)
		if !ok {
			return have == nil && w == ""
		}
		return sameString(h, w)
	case nil:
		return have == nil || isZeroJSON(have)
	default:
		if have == nil {
			return isZeroJSON(w)
		}
		return have == w
	}
}

// isZeroJSON reports whether v is what an omitted field decodes to.
func isZeroJSON(v any) bool {
	switch x := v.(type) {
	case nil:
		return true
	case string:
		return x == ""
	case float64:
		return x == 0
	case bool:
		return !x
	case []any:
		return len(x) == 0
	case map[string]any:
		for _, e := range x {
			if !isZeroJSON(e) {
				return false
			}
		}
		return true
	}
	return false
}

// sameString compares two field values, GUIDs without case and MAC
// addresses in either spelling.
func sameString(a, b string) bool {
	if a == b {
		return true
	}
	if isGUID(a) && isGUID(b) {
		return strings.EqualFold(a, b)
	}
	if ma, err := api.ParseMAC(a); err == nil {
		if mb, err := api.ParseMAC(b); err == nil {
			return api.FormatMAC(ma) == api.FormatMAC(mb)
		}
	}
	return false
}

func isGUID(s string) bool {
	s = strings.TrimSuffix(strings.TrimPrefix(s, "{"), "}")
	if len(s) != 36 {
		return false
	}
	for i, r := range s {
		switch i {
		case 8, 13, 18, 23:
			if r != '-' {
				return false
			}
		default:
			if !(r >= '0' && r <= '9' || r >= 'a' && r <= 'f' || r >= 'A' && r <= 'F') {
				return false
			}
		}
	}
	return true
}
