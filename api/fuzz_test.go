package api

// Fuzz targets for every decoder and parser of the package. Their seed
// corpora are in testdata/fuzz/<FuzzName>/ (among them the documents
// hcsshim's hcn package sends); `go test` runs the seeds as unit tests and
// `make fuzz` fuzzes each target in turn.
//
// Invariants checked:
//   - nothing panics;
//   - every rejection by a validator is an *Error with a 4xx status that
//     the server answers as such (400, 404, 409, 413), an error code and a
//     message: never an error that api.AsError would turn into a 500;
//   - what is accepted survives a round trip: encoding the decoded value
//     and decoding it again gives an equivalent value, which validates the
//     same way. The service relies on this: it stores documents as JSON and
//     validates them again when it reads them back (parseStored);
//   - what is accepted is storable (issue 22, F1): the document, wrapped
//     in a record as the store keeps it, decodes again;
//   - validation leaves the document in canonical form (policy types as
//     names, OutBoundNAT exceptions merged): validating that form again
//     changes nothing and gives the same result.
//
// The parsers of addresses, lists and MACs return plain errors, which the
// validators wrap into *Error values naming the field; for them the
// invariant is a non-empty message.

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/netip"
	"reflect"
	"strings"
	"testing"
)

// checkRejection fails unless err is answered as a client error.
func checkRejection(t *testing.T, what string, err error) {
	t.Helper()
	var e *Error
	if !errors.As(err, &e) {
		t.Fatalf("%s: rejection %q is a %T, not an *api.Error: it would be answered as a 500", what, err, err)
	}
	switch e.Status {
	case http.StatusBadRequest, http.StatusNotFound, http.StatusConflict, http.StatusRequestEntityTooLarge:
	default:
		t.Fatalf("%s: rejection %q has status %d, want 400, 404, 409 or 413", what, e, e.Status)
	}
	if strings.TrimSpace(e.Message) == "" {
		t.Fatalf("%s: rejection %#v has no message", what, e)
	}
	if e.Code == 0 {
		t.Fatalf("%s: rejection %q has no error code", what, e)
	}
}

// checkParserError fails unless a parser's rejection says something.
func checkParserError(t *testing.T, what string, err error) {
	t.Helper()
	if strings.TrimSpace(err.Error()) == "" {
		t.Fatalf("%s: rejection without a message", what)
	}
}

// sameOutcome fails unless two validations of equivalent input agree: both
// accept with equivalent results, or both refuse with the same message.
func sameOutcome(t *testing.T, what string, v1 any, err1 error, v2 any, err2 error) {
	t.Helper()
	switch {
	case (err1 == nil) != (err2 == nil):
		t.Fatalf("%s: validation differs after a round trip: %v, then %v", what, err1, err2)
	case err1 != nil:
		if err1.Error() != err2.Error() {
			t.Fatalf("%s: rejection differs after a round trip: %q, then %q", what, err1, err2)
		}
	case !equivalent(v1, v2):
		t.Fatalf("%s: validated form differs after a round trip:\n%#v\n%#v", what, v1, v2)
	}
}

// roundTrip encodes v and decodes the result into a new value of v's type,
// failing when either step fails (the server answers with the encoding of
// what it decoded and stored: it must encode and decode again).
func roundTrip[T any](t *testing.T, what string, v *T) (*T, []byte) {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatalf("%s: decoded value does not encode: %v", what, err)
	}
	v2 := new(T)
	if err := json.Unmarshal(b, v2); err != nil {
		t.Fatalf("%s: encoding %s does not decode: %v", what, b, err)
	}
	return v2, b
}

// checkRoundTrip fails unless v survives encoding and decoding, and the
// encoding is then stable.
func checkRoundTrip[T any](t *testing.T, what string, v *T) *T {
	t.Helper()
	v2, b1 := roundTrip(t, what, v)
	if !equivalent(v, v2) {
		t.Fatalf("%s: value changes in a round trip through %s:\n%#v\n%#v", what, b1, v, v2)
	}
	b2, err := json.Marshal(v2)
	if err != nil || !bytes.Equal(b1, b2) {
		t.Fatalf("%s: encoding not stable: %s, then %s (%v)", what, b1, b2, err)
	}
	return v2
}

var rawMessageType = reflect.TypeFor[json.RawMessage]()

// equivalent is reflect.DeepEqual up to representation: a nil slice or map
// equals an empty one (an empty list is omitted when encoded), and JSON
// kept raw (json.RawMessage) is compared by meaning, since encoding
// compacts it and escapes HTML characters (absent raw JSON is null).
func equivalent(a, b any) bool {
	return equivalentValue(reflect.ValueOf(a), reflect.ValueOf(b))
}

func equivalentValue(a, b reflect.Value) bool {
	if !a.IsValid() || !b.IsValid() {
		return a.IsValid() == b.IsValid()
	}
	if a.Type() != b.Type() {
		return false
	}
	if a.Type() == rawMessageType {
		return sameJSON(a.Bytes(), b.Bytes())
	}
	switch a.Kind() {
	case reflect.Slice, reflect.Array:
		if a.Len() != b.Len() {
			return false
		}
		for i := 0; i < a.Len(); i++ {
			if !equivalentValue(a.Index(i), b.Index(i)) {
				return false
			}
		}
		return true
	case reflect.Map:
		if a.Len() != b.Len() {
			return false
		}
		for _, k := range a.MapKeys() {
			bv := b.MapIndex(k)
			if !bv.IsValid() || !equivalentValue(a.MapIndex(k), bv) {
				return false
			}
		}
		return true
	case reflect.Pointer, reflect.Interface:
		if a.IsNil() || b.IsNil() {
			return a.IsNil() == b.IsNil()
		}
		return equivalentValue(a.Elem(), b.Elem())
	case reflect.Struct:
		if a.Type().Comparable() {
			return a.Equal(b) // netip.Addr, netip.Prefix, ...
		}
		for i := 0; i < a.NumField(); i++ {
			if !equivalentValue(a.Field(i), b.Field(i)) {
				return false
			}
		}
		return true
	default:
		return a.Equal(b)
	}
}

// sameJSON compares two JSON texts by meaning (numbers by their text).
func sameJSON(a, b []byte) bool {
	decode := func(data []byte) (any, bool) {
		if len(bytes.TrimSpace(data)) == 0 {
			return nil, true
		}
		dec := json.NewDecoder(bytes.NewReader(data))
		dec.UseNumber()
		var v any
		return v, dec.Decode(&v) == nil
	}
	va, okA := decode(a)
	vb, okB := decode(b)
	if !okA || !okB {
		return bytes.Equal(a, b)
	}
	return reflect.DeepEqual(va, vb)
}

// FuzzNetwork decodes and validates a network document as POST /networks
// does, and checks that what decodes survives the store's round trip.
func FuzzNetwork(f *testing.F) {
	f.Fuzz(func(t *testing.T, data []byte) {
		if spec, ok := fuzzDocument(t, data, "network", "ParseNetwork", ParseNetwork); ok {
			checkPolicies(t, "invalid network", spec.Policies)
		}
	})
}

// fuzzDocument decodes data as a document of kind what and validates it
// with parse (named parser), as the server does: what decodes survives a
// round trip and validates the same after it, and what validates is
// storable and canonical (checkStored). It returns the validated form,
// and whether data was accepted.
func fuzzDocument[T, S any](t *testing.T, data []byte, what, parser string, parse func(*T) (S, error)) (S, bool) {
	t.Helper()
	var none S
	doc := new(T)
	if err := json.Unmarshal(data, doc); err != nil {
		return none, false // answered as invalid JSON by the server (see its fuzz target)
	}
	doc2 := checkRoundTrip(t, what, doc)
	spec, err := parse(doc)
	if err != nil {
		checkRejection(t, parser, err)
	}
	spec2, err2 := parse(doc2)
	sameOutcome(t, parser, spec, err, spec2, err2)
	if err != nil {
		return none, false
	}
	checkStored(t, what, doc, spec, func(v *T) (any, error) { return parse(v) })
	return spec, true
}

// checkStored checks what validation accepted and left in doc: it is
// storable, and in canonical form (parse validates it again).
func checkStored[T any](t *testing.T, what string, doc *T, spec any, parse func(*T) (any, error)) {
	t.Helper()
	b, err := json.Marshal(struct{ Doc *T }{doc})
	if err != nil {
		t.Fatalf("accepted %s does not encode: %v", what, err)
	}
	var rec struct{ Doc *T }
	if err := json.Unmarshal(b, &rec); err != nil {
		t.Fatalf("accepted %s is not storable: its record %.200s does not decode: %v", what, b, err)
	}
	again, err := parse(rec.Doc)
	if err != nil {
		t.Fatalf("accepted %s, as stored, no longer validates: %v", what, err)
	}
	if spec != nil && !equivalent(spec, again) {
		t.Fatalf("accepted %s validates differently as stored:\n%#v\n%#v", what, spec, again)
	}
	b2, _ := json.Marshal(struct{ Doc *T }{rec.Doc})
	if !sameJSON(b, b2) {
		t.Fatalf("%s is not left canonical: %s, then %s", what, b, b2)
	}
}

// FuzzEndpoint decodes and validates an endpoint document as POST
// /endpoints does.
func FuzzEndpoint(f *testing.F) {
	f.Fuzz(func(t *testing.T, data []byte) {
		if spec, ok := fuzzDocument(t, data, "endpoint", "ParseEndpoint", ParseEndpoint); ok {
			checkPolicies(t, "invalid endpoint", spec.Policies)
		}
	})
}

// checkPolicies runs each policy's settings through the parser of its
// type, if it has one (the service does so for the types it supports).
func checkPolicies(t *testing.T, owner string, ps []Policy) {
	t.Helper()
	for i, p := range ps {
		checkPolicy(t, owner, i, p)
	}
}

// checkPolicy runs a policy's settings through its parser, if it has one.
func checkPolicy(t *testing.T, owner string, i int, p Policy) {
	t.Helper()
	var err error
	switch p.Type {
	case PortMapping:
		_, err = ParsePortMapping(owner, i, p)
	case ACL, NetworkACL:
		_, err = ParseACL(owner, i, p.Type, p)
	case OutBoundNAT:
		_, err = ParseOutboundNAT(owner, i, p)
	}
	if err != nil {
		checkRejection(t, fmt.Sprintf("%s policy", p.Type), err)
	}
}

// FuzzNamespace decodes and validates a namespace document as POST
// /namespaces does.
func FuzzNamespace(f *testing.F) {
	f.Fuzz(func(t *testing.T, data []byte) {
		fuzzDocument(t, data, "namespace", "ParseNamespace", func(n *Namespace) (struct{}, error) { return struct{}{}, ParseNamespace(n) })
	})
}

// FuzzModifyRequest decodes a modify request and resolves it for each kind
// of object, then decodes its settings as the service does for each
// resource type.
func FuzzModifyRequest(f *testing.F) {
	f.Fuzz(func(t *testing.T, data []byte) {
		var req ModifyRequest
		if err := json.Unmarshal(data, &req); err != nil {
			return
		}
		checkRoundTrip(t, "modify request", &req)
		for _, kind := range []string{"network", "endpoint", "namespace"} {
			r := req
			if err := ResolveModify(kind, &r); err != nil {
				checkRejection(t, "ResolveModify "+kind, err)
				continue
			}
			// A resolved request carries names: it encodes, decodes and
			// resolves to itself.
			r2 := checkRoundTrip(t, "resolved "+kind+" modify request", &r)
			if err := ResolveModify(kind, r2); err != nil || !equivalent(&r, r2) {
				t.Fatalf("resolved %s request %+v resolves again to %+v (%v)", kind, r, r2, err)
			}
			checkModifySettings(t, kind, r)
		}
	})
}

// checkModifySettings decodes a resolved modify request's settings.
func checkModifySettings(t *testing.T, kind string, r ModifyRequest) {
	t.Helper()
	switch {
	case r.ResourceType == ResourcePolicy:
		var pr PolicyRequest
		if DecodeSettings(r.Settings, &pr) != nil {
			return // the service answers api.Invalid(CodeInvalidPolicy, ...)
		}
		checkRoundTrip(t, "policy request", &pr)
		for i, p := range pr.Policies {
			if kind == "network" {
				p.Type = ResolveNetworkPolicyType(p.Type)
			} else {
				p.Type = ResolveEndpointPolicyType(p.Type)
			}
			checkPolicy(t, "invalid "+kind+" modify request", i, p)
		}
	case kind == "network" && r.ResourceType == ResourceDNS:
		var d DNS
		if DecodeSettings(r.Settings, &d) != nil {
			return
		}
		checkRoundTrip(t, "DNS settings", &d)
		n := Network{Dns: &d}
		if _, err := ParseNetwork(&n); err != nil {
			checkRejection(t, "ParseNetwork with modified DNS", err)
		}
	case kind == "namespace" && r.ResourceType == ResourceEndpoint:
		var er NamespaceEndpointRequest
		if DecodeSettings(r.Settings, &er) == nil {
			checkRoundTrip(t, "namespace endpoint request", &er)
		}
	}
}

// settingsSurvive checks the settings of a policy type that its parser
// accepted (as spec): they decode strictly into S, survive a round trip
// unchanged, and their encoding parses (parse) to the same spec.
func settingsSurvive[S, P any](t *testing.T, typ, parser string, settings []byte, spec P, parse func(settings []byte) (P, error)) {
	t.Helper()
	var s S
	if err := DecodeSettings(settings, &s); err != nil {
		t.Fatalf("settings validated but do not decode: %v", err)
	}
	s2, b := roundTrip(t, typ+" settings", &s)
	spec2, err2 := parse(b)
	sameOutcome(t, parser, spec, nil, spec2, err2)
	if !equivalent(&s, s2) {
		t.Fatalf("settings change in a round trip: %+v, then %+v", s, *s2)
	}
}

// FuzzPortMapping validates PortMapping settings; what is accepted
// validates the same after its settings are encoded and decoded again.
func FuzzPortMapping(f *testing.F) {
	f.Fuzz(func(t *testing.T, settings []byte) {
		p := Policy{Type: PortMapping, Settings: settings}
		spec, err := ParsePortMapping("endpoint", 0, p)
		if err != nil {
			checkRejection(t, "ParsePortMapping", err)
			return
		}
		if spec.InternalPort == 0 || spec.ExternalPort == 0 || (spec.Protocol != ProtoTCP && spec.Protocol != ProtoUDP) {
			t.Fatalf("accepted mapping %+v lacks a port or a protocol", spec)
		}
		if spec.VIP.IsValid() && (spec.VIP.Is6() != spec.IPv6 || spec.VIP.Zone() != "" || spec.VIP.Is4In6()) {
			t.Fatalf("accepted mapping %+v has a VIP of the wrong family", spec)
		}
		settingsSurvive[PortMappingSettings](t, "PortMapping", "ParsePortMapping", settings, spec, func(b []byte) (PortMappingSpec, error) {
			return ParsePortMapping("endpoint", 0, Policy{Type: PortMapping, Settings: b})
		})
	})
}

// FuzzACL validates ACL settings, as an endpoint's ACL and as a network's
// NetworkACL.
func FuzzACL(f *testing.F) {
	f.Fuzz(func(t *testing.T, settings []byte) {
		p := Policy{Type: ACL, Settings: settings}
		spec, err := ParseACL("endpoint", 0, ACL, p)
		nspec, nerr := ParseACL("network", 0, NetworkACL, Policy{Type: NetworkACL, Settings: settings})
		if (err == nil) != (nerr == nil) || !equivalent(spec, nspec) {
			t.Fatalf("ACL and NetworkACL disagree: %v / %v", err, nerr)
		}
		if err != nil {
			checkRejection(t, "ParseACL", err)
			return
		}
		if spec.Action != ACLAllow && spec.Action != ACLBlock || spec.Direction != ACLIn && spec.Direction != ACLOut {
			t.Fatalf("accepted rule %+v has no action or direction", spec)
		}
		settingsSurvive[ACLSettings](t, "ACL", "ParseACL", settings, spec, func(b []byte) (ACLSpec, error) {
			return ParseACL("endpoint", 0, ACL, Policy{Type: ACL, Settings: b})
		})
		// The validated lists, written back as text, parse to themselves.
		for _, l := range []struct {
			name string
			got  []netip.Prefix
		}{{"LocalAddresses", spec.Local}, {"RemoteAddresses", spec.Remote}} {
			again, err := ParseAddressList(joinPrefixes(l.got))
			if err != nil || !equivalent(l.got, again) {
				t.Fatalf("%s %v written back parses to %v (%v)", l.name, l.got, again, err)
			}
		}
	})
}

// FuzzOutboundNAT validates OutBoundNAT settings.
func FuzzOutboundNAT(f *testing.F) {
	f.Fuzz(func(t *testing.T, settings []byte) {
		spec, err := ParseOutboundNAT("endpoint", 0, Policy{Type: OutBoundNAT, Settings: settings})
		if err != nil {
			checkRejection(t, "ParseOutboundNAT", err)
			return
		}
		// The exceptions are canonical: masked, and no two overlap (a
		// named nftables set refuses duplicates, F3); the canonical
		// settings validate to the same and are canonical themselves.
		for i, p := range spec.Exceptions {
			if p != p.Masked() || (i > 0 && spec.Exceptions[i-1].Overlaps(p)) {
				t.Fatalf("exceptions %v are not canonical", spec.Exceptions)
			}
		}
		if _, canonical, _ := parseOutboundNAT("endpoint", 0, Policy{Type: OutBoundNAT, Settings: settings}); canonical != nil {
			spec2, again, err := parseOutboundNAT("endpoint", 0, Policy{Type: OutBoundNAT, Settings: canonical})
			if err != nil || again != nil || !equivalent(spec, spec2) {
				t.Fatalf("canonical settings %s: %v, rewritten again as %s, spec %v (want %v)", canonical, err, again, spec2, spec)
			}
		}
		settingsSurvive[OutboundNATSettings](t, "OutBoundNAT", "ParseOutboundNAT", settings, spec, func(b []byte) (OutboundNATSpec, error) {
			return ParseOutboundNAT("endpoint", 0, Policy{Type: OutBoundNAT, Settings: b})
		})
	})
}

// FuzzDecodeSettings decodes, strictly, the settings that have no parser
// of their own in this package (SDNRoute, QOS, VLAN/VSID, a network's DNS,
// the requests of modify requests). A value that decodes survives a round
// trip, and its encoding decodes strictly (it has no field the type lacks).
// An SDNRoute's prefix and next hop are parsed as the service does.
func FuzzDecodeSettings(f *testing.F) {
	f.Fuzz(func(t *testing.T, kind uint8, raw []byte) {
		switch kind % 7 {
		case 0:
			s := fuzzSettings[SDNRouteSettings](t, raw)
			if s != nil {
				if _, err := ParsePrefix(s.DestinationPrefix); err != nil {
					checkParserError(t, "SDNRoute DestinationPrefix", err)
				}
				if _, err := ParseAddr(s.NextHop); err != nil {
					checkParserError(t, "SDNRoute NextHop", err)
				}
			}
		case 1:
			fuzzSettings[QOSSettings](t, raw)
		case 2:
			fuzzSettings[IsolationSettings](t, raw)
		case 3:
			fuzzSettings[DNS](t, raw)
		case 4:
			fuzzSettings[PolicyRequest](t, raw)
		case 5:
			fuzzSettings[NamespaceEndpointRequest](t, raw)
		case 6:
			fuzzSettings[NamespaceResourceID](t, raw)
		}
	})
}

func fuzzSettings[T any](t *testing.T, raw []byte) *T {
	t.Helper()
	v := new(T)
	if err := DecodeSettings(raw, v); err != nil {
		checkParserError(t, "DecodeSettings", err)
		return nil
	}
	what := fmt.Sprintf("%T", *v)
	v2, b := roundTrip(t, what, v)
	if !equivalent(v, v2) {
		t.Fatalf("%s changes in a round trip through %s: %+v, then %+v", what, b, *v, *v2)
	}
	v3 := new(T)
	if err := DecodeSettings(b, v3); err != nil || !equivalent(v, v3) {
		t.Fatalf("%s: its encoding %s does not decode strictly to it: %v", what, b, err)
	}
	return v
}

// FuzzEnum decodes a JSON value as each enum of the schema (by name or by
// number) and checks that a decoded value encodes and decodes to itself.
func FuzzEnum(f *testing.F) {
	f.Fuzz(func(t *testing.T, data []byte) {
		fuzzEnum[NetworkType](t, data)
		fuzzEnum[NamespaceType](t, data)
		fuzzEnum[RequestType](t, data)
		fuzzEnum[NamespaceResourceType](t, data)
		fuzzEnum[FlexString](t, data)
		if rt := fuzzEnum[ResourceType](t, data); rt != nil {
			for _, table := range []enumTable{networkResources, endpointResources, namespaceResources} {
				r := rt.resolve(table)
				if again := r.resolve(table); again != r {
					t.Fatalf("resource type %q resolves to %q, then %q", *rt, r, again)
				}
			}
		}
		if pt := fuzzEnum[PolicyType](t, data); pt != nil {
			for _, resolve := range []func(PolicyType) PolicyType{ResolveEndpointPolicyType, ResolveNetworkPolicyType} {
				r := resolve(*pt)
				if again := resolve(r); again != r {
					t.Fatalf("policy type %q resolves to %q, then %q", *pt, r, again)
				}
			}
		}
		for _, table := range []enumTable{aclActions, aclDirections, aclRuleTypes} {
			r := table.resolveText(string(data))
			if again := table.resolveText(r); again != r {
				t.Fatalf("%s %q resolves to %q, then %q", table.field, data, r, again)
			}
		}
	})
}

func fuzzEnum[T ~string](t *testing.T, data []byte) *T {
	t.Helper()
	v := new(T)
	if err := json.Unmarshal(data, v); err != nil {
		checkParserError(t, fmt.Sprintf("%T", *v), err)
		return nil
	}
	v2, b := roundTrip(t, fmt.Sprintf("%T", *v), v)
	if *v != *v2 {
		t.Fatalf("%T %s decodes as %q, which encodes as %s and decodes as %q", *v, data, *v, b, *v2)
	}
	return v
}

// FuzzParseAddr parses an address and a prefix: what parses, written
// back, parses to itself.
func FuzzParseAddr(f *testing.F) {
	f.Fuzz(func(t *testing.T, s string) {
		if a, err := ParseAddr(s); err != nil {
			checkParserError(t, "ParseAddr", err)
		} else {
			if !a.IsValid() || a.Zone() != "" || a.Is4In6() {
				t.Fatalf("ParseAddr(%q) = %v: zoned, mapped or invalid", s, a)
			}
			if again, err := ParseAddr(a.String()); err != nil || again != a {
				t.Fatalf("ParseAddr(%q) = %v, which parses as %v (%v)", s, a, again, err)
			}
		}
		if p, err := ParsePrefix(s); err != nil {
			checkParserError(t, "ParsePrefix", err)
		} else {
			if !p.IsValid() || p != p.Masked() || p.Addr().Zone() != "" {
				t.Fatalf("ParsePrefix(%q) = %v: zoned, unmasked or invalid", s, p)
			}
			if again, err := ParsePrefix(p.String()); err != nil || again != p {
				t.Fatalf("ParsePrefix(%q) = %v, which parses as %v (%v)", s, p, again, err)
			}
		}
		_ = ValidInterfaceName(s)
	})
}

func joinPrefixes(ps []netip.Prefix) string {
	s := make([]string, len(ps))
	for i, p := range ps {
		s[i] = p.String()
	}
	return strings.Join(s, ",")
}

// fuzzList parses s as a list with parse. A list it accepts must have no
// item that problem (given the list and an index) finds fault with, and,
// written back (format, items joined by commas), parse to itself.
func fuzzList[T any](t *testing.T, name, s string, parse func(string) ([]T, error), format func(T) string, problem func(l []T, i int) string) {
	t.Helper()
	l, err := parse(s)
	if err != nil {
		checkParserError(t, name, err)
		return
	}
	parts := make([]string, len(l))
	for i, v := range l {
		if p := problem(l, i); p != "" {
			t.Fatalf("%s(%q) = %v: %s", name, s, l, p)
		}
		parts[i] = format(v)
	}
	if again, err := parse(strings.Join(parts, ",")); err != nil || !equivalent(l, again) {
		t.Fatalf("%s(%q) = %v, which parses as %v (%v)", name, s, l, again, err)
	}
}

// FuzzParseAddressList parses a list of addresses and prefixes.
func FuzzParseAddressList(f *testing.F) {
	f.Fuzz(func(t *testing.T, s string) {
		fuzzList(t, "ParseAddressList", s, ParseAddressList, netip.Prefix.String, func(ps []netip.Prefix, i int) string {
			if p := ps[i]; !p.IsValid() || p != p.Masked() || p.Addr().Zone() != "" {
				return fmt.Sprintf("%v is zoned, unmasked or invalid", p)
			}
			return ""
		})
	})
}

// FuzzParsePortList parses a list of ports and port ranges.
func FuzzParsePortList(f *testing.F) {
	f.Fuzz(func(t *testing.T, s string) {
		fuzzList(t, "ParsePortList", s, ParsePortList, PortRange.String, func(rs []PortRange, i int) string {
			if r := rs[i]; r.From == 0 || r.To < r.From {
				return fmt.Sprintf("range %+v", r)
			}
			return ""
		})
	})
}

// FuzzParseProtocols parses a list of protocols.
func FuzzParseProtocols(f *testing.F) {
	f.Fuzz(func(t *testing.T, s string) {
		fuzzList(t, "ParseProtocols", s, ParseProtocols, func(p uint8) string { return fmt.Sprint(p) }, func(ps []uint8, i int) string {
			if i > 0 && ps[i-1] >= ps[i] {
				return "not sorted and unique"
			}
			return ""
		})
	})
}

// FuzzParseMAC parses a MAC address: what parses, written in the HNS
// form, parses to itself, and converts to a number and back.
func FuzzParseMAC(f *testing.F) {
	f.Fuzz(func(t *testing.T, s string) {
		mac, err := ParseMAC(s)
		if err != nil {
			checkParserError(t, "ParseMAC", err)
			return
		}
		if len(mac) != 6 {
			t.Fatalf("ParseMAC(%q) = %v: not 6 bytes", s, mac)
		}
		again, err := ParseMAC(FormatMAC(mac))
		if err != nil || !bytes.Equal(again, mac) {
			t.Fatalf("ParseMAC(%q) = %v, written %s, parses as %v (%v)", s, mac, FormatMAC(mac), again, err)
		}
		if n := MACFromUint64(MACToUint64(mac)); !bytes.Equal(n, mac) {
			t.Fatalf("MAC %v converts to %v", mac, n)
		}
	})
}

// eachMember must see the members decoding into a map sees, with the same
// raw values, for any JSON object.
func FuzzEachMember(f *testing.F) {
	for _, s := range []string{`{}`, `{"a":1}`, ` { "a" : [1,{"b":"}"}] , "c\u0041":"x\"y", "a":null } `,
		`{"\ud800":true,"é":{"":[]}}`, `{"Ipam\u017f":[]}`, "{\"\xff\":1}"} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		var want map[string]json.RawMessage
		if json.Unmarshal(data, &want) != nil || want == nil {
			return
		}
		got := map[string]json.RawMessage{}
		if err := eachMember(data, func(k string, raw []byte) { got[k] = raw }); err != nil {
			t.Fatalf("eachMember(%q): %v", data, err)
		}
		if len(got) != len(want) {
			t.Fatalf("eachMember(%q) = %q, want %q", data, got, want)
		}
		for k, v := range want {
			if !bytes.Equal(got[k], v) {
				t.Fatalf("eachMember(%q)[%q] = %q, want %q", data, k, got[k], v)
			}
		}
	})
}
