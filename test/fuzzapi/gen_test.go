package fuzzapi

// What the fuzzer sends: valid operations built from what it knows of the
// daemon's objects (its model, refreshed from the answers), the documents
// hcsshim's hcn package marshals, and mutations of both: fields replaced
// with values that are hostile or merely unusual (the poisons of issue 22
// among them), unknown fields, deep nesting, repeated list elements,
// enums as numbers or in another case, broken JSON.

import (
	"encoding/json"
	"fmt"
	"math/rand"
	"net/url"
	"sort"
	"strings"

	"github.com/google/uuid"
	"github.com/hostnet/hostnet/api"
	"github.com/hostnet/hostnet/internal/testutil/lab"
)

// request is one HTTP request of the fuzzer.
type request struct {
	Method string `json:"method"`
	Path   string `json:"path"`
	Body   string `json:"body,omitempty"`
	Kind   string `json:"kind"` // what it was meant to do, for the report
}

func (r request) mutating() bool { return r.Method != "GET" }

// The objects the fuzzer knows of.
type netObj struct {
	ID, Name string
	Subnet   string // its IPv4 subnet
}

type epObj struct {
	ID, Name, Net, NS string
	Ports             []portKey
}

type nsObj struct{ ID, Name string }

// portKey is a published host port.
type portKey struct {
	Proto string // tcp or udp
	Port  uint16
	IPv6  bool
}

type model struct {
	probe string // the probe network's ID: never touched by the fuzzer
	nets  []netObj
	eps   []epObj
	nss   []nsObj
}

type gen struct {
	r       *rand.Rand
	m       *model
	subnets int // subnets handed out so far
}

func (g *gen) pick(n int) int { return g.r.Intn(n) }

func (g *gen) chance(p float64) bool { return g.r.Float64() < p }

func (g *gen) guid() string {
	var b [16]byte
	for i := range b {
		b[i] = byte(g.r.Intn(256))
	}
	u, _ := uuid.FromBytes(b[:])
	u[6] = u[6]&0x0f | 0x40
	u[8] = u[8]&0x3f | 0x80
	return u.String()
}

func (g *gen) name(prefix string) string { return fmt.Sprintf("%s%d", prefix, g.r.Intn(100000)) }

func mustJSON(v any) string {
	b, err := json.Marshal(v)
	if err != nil {
		panic(err)
	}
	return string(b)
}

// pathRef is ref escaped for a URL path.
func (g *gen) pathRef(id, name string) string { return url.PathEscape(g.ref(id, name)) }

// ref names an object by ID or by name.
func (g *gen) ref(id, name string) string {
	if name != "" && g.chance(0.4) {
		return name
	}
	if g.chance(0.1) {
		return strings.ToUpper(id)
	}
	return id
}

func (g *gen) schema() map[string]any { return map[string]any{"Major": 2, "Minor": g.pick(2)} }

// next returns the next request: a valid operation most of the time, a
// mutated one otherwise.
func (g *gen) next() request {
	if g.chance(0.45) {
		return g.mutate(g.template())
	}
	r := g.valid()
	if g.chance(0.03) {
		r.Path = g.weirdPath(r.Path)
		r.Kind = "weird ref: " + r.Kind
	}
	return r
}

// option is one of the requests a generator picks from by weight: make,
// where allowed.
type option struct {
	weight  int
	allowed bool
	make    func() request
}

// choose picks one of opts, each with its weight's share of the chances.
// It reports false when the one picked is not allowed, or its make
// declines (the zero request).
func (g *gen) choose(opts ...option) (request, bool) {
	total := 0
	for _, o := range opts {
		total += o.weight
	}
	k := g.pick(total)
	for _, o := range opts {
		if k -= o.weight; k < 0 {
			if !o.allowed {
				return request{}, false
			}
			r := o.make()
			return r, r.Method != ""
		}
	}
	panic("choose: no option")
}

// template returns a valid request with a document, for mutate.
func (g *gen) template() request {
	m := g.m
	if r, ok := g.choose(
		option{1, false, nil}, // a new network, as when the one picked cannot be made
		option{2, len(m.nets) > 0, g.createEndpoint},
		option{1, true, g.createNamespace},
		option{1, len(m.eps) > 0, g.modifyEndpoint},
		option{1, len(m.nets) > 0, g.modifyNetwork},
		option{1, len(m.eps) > 0 && len(m.nss) > 0, g.attachOrDetach},
		option{1, true, g.hcsshimDocument},
	); ok {
		return r
	}
	return g.createNetwork()
}

// valid returns a valid operation on the known objects, keeping their
// number small (creations give way to deletions as they grow).
func (g *gen) valid() request {
	m := g.m
	for {
		if r, ok := g.choose(
			option{2, len(m.nets) < 6, g.createNetwork},
			option{3, len(m.eps) < 30 && len(m.nets) > 0, g.createEndpoint},
			option{2, len(m.nss) < 15, g.createNamespace},
			option{2, len(m.eps) > 0 && len(m.nss) > 0, g.attachOrDetach},
			option{2, len(m.eps) > 0, g.modifyEndpoint},
			option{1, len(m.nets) > 0, g.modifyNetwork},
			option{1, len(m.nss) > 0, g.containerChange},
			option{1, len(m.eps) > 0, func() request { return g.deleteEndpoint(oneOf(g, m.eps), true) }},
			option{1, len(m.nss) > 0, func() request { return g.deleteNamespace(oneOf(g, m.nss), true) }},
			option{1, len(m.nets) > 0, g.deleteNetwork},
			option{2, true, g.query},
			option{1, len(m.eps) > 20 || len(m.nss) > 12, g.trim},
			option{1, true, g.hcsshimDocument},
		); ok {
			return r
		}
	}
}

// oneOf is one of xs, at random; xs is not empty.
func oneOf[T any](g *gen, xs []T) T { return xs[g.pick(len(xs))] }

// deleteEndpoint deletes e, by a reference (pathRef) or by its ID.
func (g *gen) deleteEndpoint(e epObj, byRef bool) request {
	ref := e.ID
	if byRef {
		ref = g.pathRef(e.ID, e.Name)
	}
	return request{"DELETE", "/endpoints/" + ref, "", "delete endpoint"}
}

// deleteNamespace deletes n, by a reference (pathRef) or by its ID.
func (g *gen) deleteNamespace(n nsObj, byRef bool) request {
	ref := n.ID
	if byRef {
		ref = g.pathRef(n.ID, n.Name)
	}
	return request{"DELETE", "/namespaces/" + ref, "", "delete namespace"}
}

// deleteNetwork deletes a network, or first one of its endpoints: a
// network goes once its endpoints have gone.
func (g *gen) deleteNetwork() request {
	n := oneOf(g, g.m.nets)
	for _, e := range g.m.eps {
		if e.Net == n.ID {
			return g.deleteEndpoint(e, true)
		}
	}
	return request{"DELETE", "/networks/" + g.pathRef(n.ID, n.Name), "", "delete network"}
}

// containerChange adds a container to a namespace or removes one.
func (g *gen) containerChange() request {
	n := oneOf(g, g.m.nss)
	rt := []string{"Add", "Remove"}[g.pick(2)]
	return request{"PATCH", "/namespaces/" + g.pathRef(n.ID, n.Name), mustJSON(map[string]any{
		"ResourceType": "Container", "RequestType": rt, "Settings": map[string]any{"ID": g.name("c")}}), "container " + rt}
}

// trim deletes an endpoint (mostly) or a namespace, by ID, when there
// are many; it declines (the zero request) when the coin says namespace
// and there is none.
func (g *gen) trim() request {
	if len(g.m.eps) > 0 && g.chance(0.7) {
		return g.deleteEndpoint(oneOf(g, g.m.eps), false)
	}
	if len(g.m.nss) > 0 {
		return g.deleteNamespace(oneOf(g, g.m.nss), false)
	}
	return request{}
}

// nextSubnet hands out 10.X.Y.0/24 subnets no network of this host has
// had (the pool starts over on a new host).
func (g *gen) nextSubnet() (v4, v6 string) {
	k := g.subnets
	g.subnets++
	return fmt.Sprintf("10.%d.%d.0/24", 1+k/256%200, k%256), fmt.Sprintf("fd00:%x::/64", k+1)
}

func (g *gen) createNetwork() request {
	v4, v6 := g.nextSubnet()
	gw := strings.TrimSuffix(v4, "0/24") + "1"
	subnets := []any{map[string]any{"IpAddressPrefix": v4,
		"Routes": []any{map[string]any{"NextHop": gw, "DestinationPrefix": "0.0.0.0/0"}}}}
	if g.chance(0.2) {
		subnets = append(subnets, map[string]any{"IpAddressPrefix": v6})
	}
	doc := map[string]any{"ID": g.guid(), "Name": g.name("net"), "Type": []any{"NAT", 0, "nat"}[g.pick(3)],
		"Ipams": []any{map[string]any{"Type": "Static", "Subnets": subnets}}, "SchemaVersion": g.schema()}
	if g.chance(0.3) {
		doc["Dns"] = map[string]any{"ServerList": []any{gw}, "Search": []any{"corp.test"}, "Domain": "corp.test"}
	}
	if g.chance(0.3) {
		doc["Policies"] = []any{g.networkACL()}
	}
	if g.chance(0.2) {
		doc["MacPool"] = map[string]any{"Ranges": []any{map[string]any{"StartMacAddress": "00-15-5D-52-C0-00", "EndMacAddress": "00-15-5D-52-CF-FF"}}}
	}
	if g.chance(0.15) {
		doc["Flags"] = 8 // EnableNonPersistent
	}
	if g.chance(0.2) {
		doc["Health"] = map[string]any{"Extra": map[string]any{}}
	}
	return request{"POST", "/networks", mustJSON(doc), "create network"}
}

func (g *gen) aclSettings() map[string]any {
	s := map[string]any{"Action": []any{"Allow", "Block", 0, 1}[g.pick(4)], "Direction": []any{"In", "Out", 0, 1}[g.pick(4)],
		"Priority": 100 + g.pick(200)}
	if g.chance(0.5) {
		s["Protocols"] = []any{"6", "17", "1", "6,17", 6}[g.pick(5)]
	}
	if g.chance(0.5) {
		s["RemoteAddresses"] = []any{lab.ExtAddr, "198.51.100.0/24", "10.0.0.0/8", "fd00::/8," + lab.ExtAddr}[g.pick(4)]
	}
	if p, ok := s["Protocols"].(string); ok && (p == "6" || p == "17") && g.chance(0.5) {
		s["LocalPorts"] = []any{"80", "8000-8080", "22,443"}[g.pick(3)]
	}
	if g.chance(0.4) {
		s["Id"] = g.name("rule-")
	}
	return s
}

func (g *gen) networkACL() map[string]any {
	return map[string]any{"Type": []any{"NetworkACL", 11}[g.pick(2)], "Settings": g.aclSettings()}
}

func (g *gen) endpointPolicy() map[string]any {
	switch g.pick(5) {
	case 0, 1:
		s := map[string]any{"InternalPort": 80 + g.pick(3), "ExternalPort": 20000 + g.pick(48)}
		if g.chance(0.5) {
			s["Protocol"] = []any{6, 17}[g.pick(2)]
		}
		return map[string]any{"Type": []any{"PortMapping", 0}[g.pick(2)], "Settings": s}
	case 2:
		return map[string]any{"Type": []any{"ACL", 1}[g.pick(2)], "Settings": g.aclSettings()}
	case 3:
		s := map[string]any{"Exceptions": []any{[]any{"10.0.0.0/8"}, []any{lab.ExtAddr + "/32", "192.0.2.0/24"}, []any{"fd00::/8"}}[g.pick(3)]}
		if g.chance(0.2) {
			s["VirtualIP"] = lab.HostAddr
		}
		return map[string]any{"Type": []any{"OutBoundNAT", 4}[g.pick(2)], "Settings": s}
	default:
		return map[string]any{"Type": "SDNRoute", "Settings": map[string]any{"DestinationPrefix": fmt.Sprintf("192.0.2.%d/32", g.pick(250)+1)}}
	}
}

func (g *gen) createEndpoint() request {
	n := oneOf(g, g.m.nets)
	doc := map[string]any{"ID": g.guid(), "HostComputeNetwork": g.ref(n.ID, n.Name), "SchemaVersion": g.schema()}
	if g.chance(0.7) {
		doc["Name"] = g.name("ep")
	}
	var ps []any
	for i := g.pick(4); i > 0; i-- {
		ps = append(ps, g.endpointPolicy())
	}
	if ps != nil {
		doc["Policies"] = ps
	}
	if g.chance(0.2) {
		doc["Flags"] = []int{2, 8, 10}[g.pick(3)]
	}
	if g.chance(0.2) {
		doc["Dns"] = map[string]any{"ServerList": []any{"192.0.2.53"}, "Search": []any{"svc.test"}}
	}
	if g.chance(0.15) && n.Subnet != "" {
		doc["IpConfigurations"] = []any{map[string]any{"IpAddress": strings.TrimSuffix(n.Subnet, "0/24") + fmt.Sprint(100+g.pick(100))}}
	}
	if g.chance(0.1) {
		doc["Routes"] = []any{map[string]any{"DestinationPrefix": "192.0.2.0/24", "NextHop": strings.TrimSuffix(n.Subnet, "0/24") + "1"}}
	}
	if g.chance(0.5) && len(g.m.nss) > 0 {
		ns := oneOf(g, g.m.nss)
		doc["HostComputeNamespace"] = ns.ID
		if g.chance(0.3) {
			doc["InterfaceName"] = []string{"eth1", "net0", "eth7"}[g.pick(3)]
		}
	}
	return request{"POST", "/endpoints", mustJSON(doc), "create endpoint"}
}

func (g *gen) createNamespace() request {
	doc := map[string]any{"ID": g.guid(), "Type": []any{"HostDefault", "Host", 0, 1}[g.pick(4)], "SchemaVersion": g.schema()}
	if g.chance(0.5) {
		doc["NamespaceId"] = g.pick(100)
		doc["ReadyOnCreate"] = true
	}
	if g.chance(0.3) {
		doc["Name"] = g.name("ns")
	}
	if g.chance(0.1) {
		doc["Resources"] = []any{map[string]any{"Type": "Container", "Data": map[string]any{"ID": g.name("c")}}}
	}
	return request{"POST", "/namespaces", mustJSON(doc), "create namespace"}
}

func (g *gen) attachOrDetach() request {
	e := oneOf(g, g.m.eps)
	ns := oneOf(g, g.m.nss)
	rt, kind := any("Add"), "attach"
	if e.NS != "" && g.chance(0.6) {
		rt, kind = "Remove", "detach"
		for _, n := range g.m.nss {
			if n.ID == e.NS {
				ns = n
			}
		}
	}
	if g.chance(0.3) {
		rt = map[string]any{"Add": 0, "Remove": 1}[rt.(string)]
	}
	body := mustJSON(map[string]any{"ResourceType": []any{"Endpoint", 1}[g.pick(2)], "RequestType": rt,
		"Settings": map[string]any{"EndpointId": g.ref(e.ID, e.Name)}})
	return request{"PATCH", "/namespaces/" + g.pathRef(ns.ID, ns.Name), body, kind}
}

func (g *gen) modifyEndpoint() request {
	e := oneOf(g, g.m.eps)
	rt := []string{"Add", "Add", "Remove", "Update", "Refresh"}[g.pick(5)]
	var ps []any
	for i := 1 + g.pick(2); i > 0; i-- {
		ps = append(ps, g.endpointPolicy())
	}
	body := mustJSON(map[string]any{"ResourceType": "Policy", "RequestType": rt, "Settings": map[string]any{"Policies": ps}})
	return request{"PATCH", "/endpoints/" + g.pathRef(e.ID, e.Name), body, "endpoint policy " + rt}
}

func (g *gen) modifyNetwork() request {
	n := oneOf(g, g.m.nets)
	if g.chance(0.3) {
		body := mustJSON(map[string]any{"ResourceType": "DNS", "RequestType": "Update",
			"Settings": map[string]any{"ServerList": []any{"192.0.2.53"}, "Search": []any{"upd.test"}}})
		return request{"PATCH", "/networks/" + g.pathRef(n.ID, n.Name), body, "network DNS update"}
	}
	rt := []string{"Add", "Remove", "Update"}[g.pick(3)]
	body := mustJSON(map[string]any{"ResourceType": []any{"Policy", 0}[g.pick(2)], "RequestType": rt,
		"Settings": map[string]any{"Policies": []any{g.networkACL()}}})
	return request{"PATCH", "/networks/" + g.pathRef(n.ID, n.Name), body, "network policy " + rt}
}

func (g *gen) query() request {
	m := g.m
	switch g.pick(6) {
	case 0:
		return request{"GET", "/networks", "", "list networks"}
	case 1:
		if len(m.nets) > 0 {
			n := oneOf(g, m.nets)
			f := mustJSON(map[string]any{"VirtualNetwork": n.ID})
			if g.chance(0.5) {
				f = mustJSON(map[string]any{"SchemaVersion": map[string]any{"Major": 2}, "Filter": mustJSON(map[string]any{"HostComputeNetwork": n.ID})})
			}
			return request{"GET", "/endpoints?filter=" + url.QueryEscape(f), "", "list endpoints of a network"}
		}
		return request{"GET", "/endpoints", "", "list endpoints"}
	case 2:
		return request{"GET", "/namespaces", "", "list namespaces"}
	case 3:
		if len(m.eps) > 0 {
			e := oneOf(g, m.eps)
			return request{"GET", "/endpoints/" + g.pathRef(e.ID, e.Name), "", "get endpoint"}
		}
	case 4:
		if len(m.nets) > 0 {
			n := oneOf(g, m.nets)
			return request{"GET", "/networks?filter=" + url.QueryEscape(mustJSON(map[string]any{"Name": n.Name})), "", "list networks by name"}
		}
	}
	return request{"GET", "/check", "", "check"}
}

// hcsshimDocument returns one of the documents hcsshim's hcn package
// marshals (struct fields without omitempty: empty Dns, MacPool, Health;
// numeric enums), with fresh IDs and subnets.
func (g *gen) hcsshimDocument() request {
	if len(g.m.nets) == 0 || g.chance(0.3) {
		v4, _ := g.nextSubnet()
		gw := strings.TrimSuffix(v4, "0/24") + "1"
		doc := `{"ID":"` + g.guid() + `","Name":"` + g.name("hcs") + `","Type":"NAT","Policies":[],` +
			`"MacPool":{"Ranges":[{"StartMacAddress":"00-15-5D-52-C0-00","EndMacAddress":"00-15-5D-52-CF-FF"}]},` +
			`"Dns":{},"Ipams":[{"Type":"Static","Subnets":[{"IpAddressPrefix":"` + v4 + `",` +
			`"Routes":[{"NextHop":"` + gw + `","DestinationPrefix":"0.0.0.0/0"}]}]}],` +
			`"Flags":0,"Health":{"Extra":{}},"SchemaVersion":{"Major":2,"Minor":0}}`
		return request{"POST", "/networks", doc, "hcsshim network"}
	}
	if len(g.m.eps) > 0 && g.chance(0.5) {
		e := oneOf(g, g.m.eps)
		// hcn's ApplyPolicy: a PolicyEndpointRequest with numeric enums.
		body := `{"ResourceType":0,"RequestType":0,"Settings":{"Policies":[{"Type":"ACL","Settings":{"Protocols":"6",` +
			`"Action":"Block","Direction":"Out","RemoteAddresses":"` + lab.ExtAddr + `","RemotePorts":"9","RuleType":"Switch","Priority":200}}]}}`
		return request{"PATCH", "/endpoints/" + e.ID, body, "hcsshim endpoint policy"}
	}
	n := oneOf(g, g.m.nets)
	doc := `{"ID":"` + g.guid() + `","Name":"` + g.name("hcsep") + `","HostComputeNetwork":"` + n.ID + `","Policies":[],` +
		`"Dns":{},"Flags":0,"Health":{"Extra":{}},"SchemaVersion":{"Major":2,"Minor":0}}`
	return request{"POST", "/endpoints", doc, "hcsshim endpoint"}
}

// Values a mutation puts in a field.
var (
	poisonStrings = []string{
		"", " ", ".", "..", "/", "lo", "eth%d", "a%s", "%", `a"b`, "tab\there", "nl\nhere", "nul\x00", "é", "ſ",
		"::/0", "0.0.0.0/0", "ff00::/8", "224.0.0.0/4", "0.0.0.0/8", "127.0.0.0/8", "fe80::/64", "169.254.0.0/16",
		"10.0.0.1/24", "10.0.0.0/31", "10.0.0.0/30", "fd00::/127", "::ffff:10.0.0.0/104", "198.51.100.0/24",
		"0.0.0.0", "255.255.255.255", "224.0.0.1", "ff02::1", "::", "::1", "127.0.0.1", "fe80::1", "10.0.0.1",
		"::ffff:10.1.2.3", lab.HostAddr, lab.ExtAddr, "fe80::1%eth0",
		"00-00-00-00-00-00", "FF-FF-FF-FF-FF-FF", "01-00-5E-00-00-01", "00-15-5D-FF-FF-FF", "02-00-00-00-00-01", "03-00-00-00-00-00",
		"NAT", "nat", "Transparent", "Overlay", "L2Bridge", "networkacl", "NetworkACL", "11", "1", "0", "ACL", "acl",
		"OutBoundNAT", "SDNRoute", "PortMapping", "QOS", "Allow", "Block", "In", "Out", "Host", "Switch",
		"Add", "Remove", "Update", "Refresh", "Policy", "DNS", "Endpoint", "Container", "Guest",
		"10.0.0.1,10.0.0.1", "80,80", "1-65535", "6,17", "256", "*", "any", "/proc/1/ns/net", "/etc/passwd", "relative",
	}
	poisonNumbers = []any{0, 1, 2, 3, 4, 6, 8, 11, 16, 17, 32, 64, 255, 256, 1024, 4096, 65535, 65536, -1,
		2147483648, 4294967296, 1e300, 0.5, true, nil}
	unknownKeys = []string{"Future", "ResolvConfPath", "Extra", "health", "ipams", "Ipam\u017f", "policies", "NAME", "HostInterfaceName",
		"Managed", "Implicit", "NetNamespacePath", "BridgeName", "IpRange", "InterfaceName"}
)

// poisonString returns a string value, sometimes built from the known
// objects (their IDs in the other GUID forms uuid.Parse reads, names).
func (g *gen) poisonString() any {
	m := g.m
	switch g.pick(10) {
	case 0:
		return strings.Repeat("x", []int{257, 5000, 40 << 10}[g.pick(3)])
	case 1:
		ids := []string{g.guid()}
		for _, n := range m.nets {
			ids = append(ids, n.ID)
		}
		for _, e := range m.eps {
			ids = append(ids, e.ID)
		}
		id := oneOf(g, ids)
		return []string{id, "{" + id + "}", strings.ToUpper(id), "urn:uuid:" + id, strings.ReplaceAll(id, "-", "")}[g.pick(5)]
	case 2:
		if len(m.nets) > 0 {
			n := oneOf(g, m.nets)
			return []string{n.Name, n.ID, n.Subnet}[g.pick(3)]
		}
	}
	return oneOf(g, poisonStrings)
}

// slot is a place in a decoded JSON document a mutation may change; key
// is the field it is (or, for a list element, the list's field).
type slot struct {
	key   string
	depth int // containers around the value, the document's included
	get   func() any
	set   func(any)
	del   func() // nil for list elements
}

func slots(v any, parent string, depth int, out *[]slot) {
	switch x := v.(type) {
	case map[string]any:
		for _, k := range sortedKeys(x) {
			k := k
			*out = append(*out, slot{key: k, depth: depth + 1, get: func() any { return x[k] }, set: func(n any) { x[k] = n }, del: func() { delete(x, k) }})
			slots(x[k], k, depth+1, out)
		}
	case []any:
		for i := range x {
			i := i
			*out = append(*out, slot{key: parent + "[]", depth: depth + 1, get: func() any { return x[i] }, set: func(n any) { x[i] = n }})
			slots(x[i], parent+"[]", depth+1, out)
		}
	}
}

// sortedKeys returns the keys of m in order: map order is random, and a
// seed must give the same run.
func sortedKeys(m map[string]any) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

// jsonMaxDepth is encoding/json's limit: a document nested deeper does
// not decode.
const jsonMaxDepth = 10000

// nest returns a value nested so that, at depth, the document reaches
// encoding/json's limit exactly (F1: it decodes, and a record one level
// deeper does not), or only a little deep.
func (g *gen) nest(depth int) (json.RawMessage, int) {
	d := 40
	if g.chance(0.7) {
		d = jsonMaxDepth + 1 - depth // the document: depth-1 containers, then d
	}
	return json.RawMessage(strings.Repeat("[", d) + strings.Repeat("]", d)), d
}

// mutate returns r with one to three mutations of its body.
func (g *gen) mutate(r request) request {
	if g.chance(0.05) {
		b := []byte(r.Body)
		if len(b) > 0 {
			b = b[:g.pick(len(b))]
		}
		return request{r.Method, r.Path, string(b), "truncated: " + r.Kind}
	}
	var doc any
	if err := json.Unmarshal([]byte(r.Body), &doc); err != nil {
		return r
	}
	var what []string
	for n := 1 + g.pick(3); n > 0; n-- {
		what = append(what, g.mutateOnce(&doc))
	}
	return request{r.Method, r.Path, mustJSON(doc), "mutated (" + strings.Join(what, "; ") + "): " + r.Kind}
}

func (g *gen) mutateOnce(doc *any) string {
	var ss []slot
	slots(*doc, "", 1, &ss)
	root, isObj := (*doc).(map[string]any)
	if len(ss) == 0 || (isObj && g.chance(0.1)) {
		if isObj {
			k := oneOf(g, unknownKeys)
			if g.chance(0.3) {
				v, d := g.nest(2)
				root[k] = v
				return fmt.Sprintf("add %s nested %d deep", k, d)
			}
			root[k] = g.fieldValue(k, nil)
			return "add " + k
		}
		return "none"
	}
	// Most mutations put a value chosen for the field where it belongs:
	// that is what reaches the checks of the kernel-constrained fields.
	if g.chance(0.6) {
		var known []slot
		for _, s := range ss {
			if _, ok := g.dictionary(s.key); ok {
				known = append(known, s)
			}
		}
		if len(known) > 0 {
			s := oneOf(g, known)
			v, _ := g.dictionary(s.key)
			if v == nestHere {
				v, d := g.nest(s.depth)
				s.set(v)
				return fmt.Sprintf("nest %s %d deep", s.key, d)
			}
			s.set(v)
			return "set " + s.key
		}
	}
	s := oneOf(g, ss)
	old := s.get()
	switch g.pick(9) {
	case 0:
		if s.del != nil {
			s.del()
			return "drop " + s.key
		}
		fallthrough
	case 1, 2, 3:
		s.set(g.value(old))
		return "replace " + s.key
	case 4:
		if a, ok := old.([]any); ok && len(a) > 0 {
			n := []int{2, 70, 300}[g.pick(3)]
			var out []any
			for i := 0; i < n; i++ {
				out = append(out, oneOf(g, a))
			}
			s.set(out)
			return fmt.Sprintf("repeat %s elements x%d", s.key, n)
		}
		s.set([]any{old, old})
		return "duplicate " + s.key + " in a list"
	case 5:
		v, d := g.nest(s.depth)
		s.set(v)
		return fmt.Sprintf("nest %s %d deep", s.key, d)
	case 6:
		if o, ok := old.(map[string]any); ok {
			k := oneOf(g, unknownKeys)
			o[k] = g.fieldValue(k, nil)
			return "add " + k + " in " + s.key
		}
		s.set(g.value(nil))
		return "replace " + s.key
	case 7:
		// Another type: a number as a string, a string as a number.
		switch x := old.(type) {
		case string:
			s.set(oneOf(g, poisonNumbers))
		case float64:
			s.set(fmt.Sprint(x))
		default:
			s.set(g.poisonString())
		}
		return "change the type of " + s.key
	default:
		if o, ok := old.(map[string]any); ok {
			// A key in another case (encoding/json folds case).
			if keys := sortedKeys(o); len(keys) > 0 {
				k := oneOf(g, keys)
				v := o[k]
				delete(o, k)
				o[strings.ToLower(k)] = v
			}
			return "lower-case a key of " + s.key
		}
		s.set(g.value(old))
		return "replace " + s.key
	}
}

// fieldValue is a value for field k: from its dictionary when it has one.
func (g *gen) fieldValue(k string, old any) any {
	if v, ok := g.dictionary(k); ok && g.chance(0.7) {
		return v
	}
	return g.value(old)
}

var (
	poisonPrefixes = []string{"::/0", "0.0.0.0/0", "ff00::/8", "224.0.0.0/4", "0.0.0.0/8", "127.0.0.0/8", "fe80::/64",
		"169.254.0.0/16", "10.0.0.1/24", "10.0.0.0/31", "10.0.0.0/30", "fd00::/127", "::ffff:10.0.0.0/104", "198.51.100.0/24",
		"198.51.100.2/32", "10.250.0.0/24", "192.0.2.0/24", "fd00:abc::/64", "10.0.0.0/33", "1.2.3.4", "2001:db8::/32"}
	poisonAddrs = []string{"0.0.0.0", "255.255.255.255", "224.0.0.1", "ff02::1", "::", "::1", "127.0.0.1", "fe80::1",
		"10.0.0.1", "::ffff:10.1.2.3", lab.HostAddr, lab.ExtAddr, "fe80::1%eth0", "192.0.2.1", "2001:db8::1", "10.250.0.1", "1.2.3"}
	poisonMACs = []string{"00-00-00-00-00-00", "FF-FF-FF-FF-FF-FF", "01-00-5E-00-00-01", "00-15-5D-FF-FF-FF", "02-00-00-00-00-01",
		"03-00-00-00-00-00", "33-33-00-00-00-01", "00-15-5D-52-C0-10", "02:00:00:00:00:aa", "00-15-5D"}
	poisonFlags = []any{0, 1, 2, 3, 4, 8, 9, 16, 32, 33, 64, 128, 1024, 1032, 4096, 8192, 65535, -1, 4294967295, "8"}
)

// nestHere asks mutateOnce to nest the field's value to the limit.
var nestHere = new(int)

// dictionary returns a value meant for field k (the last element of its
// path, "[]" for list elements), when the fuzzer has values for it.
func (g *gen) dictionary(k string) (any, bool) {
	one := func(xs []string) any { return oneOf(g, xs) }
	list := func(n int, f func(i int) any) []any {
		out := make([]any, n)
		for i := range out {
			out[i] = f(i)
		}
		return out
	}
	switch strings.TrimSuffix(k, "[]") {
	case "Name":
		return g.poisonName(), true
	case "InterfaceName":
		return one([]string{"eth%d", "a%s", "%", "eth0", "eth1", "lo", "", "x/y", "a b", "a:b", strings.Repeat("e", 16), ".", "..", "hnv0", "uplink0", "é"}), true
	case "IpAddressPrefix", "DestinationPrefix", "IpRange":
		return one(poisonPrefixes), true
	case "NextHop", "IpAddress", "VirtualIP", "VIP", "ProviderAddress":
		if k == "VIP" && len(g.m.nets) > 0 && g.chance(0.4) {
			// A gateway: a host address until its network goes.
			n := oneOf(g, g.m.nets)
			return strings.TrimSuffix(n.Subnet, "0/24") + "1", true
		}
		return one(poisonAddrs), true
	case "MacAddress", "StartMacAddress", "EndMacAddress":
		return one(poisonMACs), true
	case "Flags", "PrefixLength", "NamespaceId":
		return oneOf(g, poisonFlags), true
	case "Type", "ResourceType", "RequestType", "Action", "Direction", "RuleType":
		enums := []any{"NAT", "nat", "Transparent", "Overlay", 0, 1, 2, 4, 5, 11, 13, 99, "networkacl", "NetworkACL", "acl", "ACL",
			"outboundnat", "SDNRoute", "PortMapping", "QOS", "Container", "Endpoint", "Policy", "DNS", "Add", "Remove", "Update",
			"Refresh", "Allow", "Block", "In", "Out", "Host", "Switch", "Guest", "GuestDefault", ""}
		return oneOf(g, enums), true
	case "Id":
		return one([]string{`a"b`, strings.Repeat("i", 200), "tab\tid", "id\nx", g.guid(), "{" + g.guid() + "}", "é", ""}), true
	case "Protocols", "LocalPorts", "RemotePorts", "LocalAddresses", "RemoteAddresses":
		return one([]string{"6,6", "80,80", "1-65535", "0", "256", "*", "10.0.0.0/8,10.1.0.0/16", "10.0.0.1,10.0.0.1",
			strings.Repeat("80,", 2000), "65536", "6,17,1", "::/0,0.0.0.0/0", "", "x"}), true
	case "Exceptions":
		return list(1+g.pick(3), func(int) any {
			return one([]string{"10.0.0.1", "10.0.0.1/32", "10.0.0.0/24", "10.0.0.7/24", "10.0.0.0/8", "10.1.0.0/16",
				"fd00::/64", "fd00::1", "*", "", "10.0.0.1,10.0.0.1", "0.0.0.0/0"})
		}), true
	case "Routes":
		n := []int{2, 70, 300}[g.pick(3)]
		return list(n, func(i int) any {
			return map[string]any{"DestinationPrefix": fmt.Sprintf("172.%d.%d.0/24", 16+i/256%16, i%256)}
		}), true
	case "Policies":
		n := []int{70, 300, 5000}[g.pick(3)]
		switch g.pick(3) {
		case 0:
			return list(n, func(i int) any {
				return map[string]any{"Type": "SDNRoute", "Settings": map[string]any{"DestinationPrefix": fmt.Sprintf("172.%d.%d.0/24", 16+i/256%16, i%256)}}
			}), true
		case 1:
			return list(n, func(i int) any {
				return map[string]any{"Type": "ACL", "Settings": map[string]any{"Action": "Allow", "Direction": "In", "Priority": i % 65536,
					"RemoteAddresses": fmt.Sprintf("192.0.%d.%d", i/256%256, i%256)}}
			}), true
		default:
			return list(2, func(int) any {
				return map[string]any{"Type": "OutBoundNAT", "Settings": map[string]any{"Exceptions": []any{"10.0.0.0/8"}}}
			}), true
		}
	case "ServerList", "Search", "Options":
		return list([]int{1, 40}[g.pick(2)], func(int) any {
			return one([]string{"10.0.0.53", "a b", "x\ny", "corp.test", "10.0.0.53,10.0.0.54", "ndots:5", strings.Repeat("d", 300)})
		}), true
	case "Health", "Data", "Future", "Extra", "ResolvConfPath":
		switch g.pick(3) {
		case 0:
			return nestHere, true
		case 1:
			return strings.Repeat("h", 100<<10), true
		}
		return map[string]any{"Extra": map[string]any{}}, true
	case "InternalPort", "ExternalPort", "Port":
		return []any{0, 1, 22, 80, 20000, 65535, 65536, -1}[g.pick(8)], true
	case "Priority":
		return []any{0, 1, 65535, 65536, -1}[g.pick(5)], true
	case "HostComputeNetwork", "HostComputeNamespace", "EndpointId":
		return g.poisonName(), true
	case "NetNamespacePath":
		return one([]string{"/proc/1/ns/net", "/proc/self/ns/net", "/", "/dev/null", "relative", "/" + strings.Repeat("p", 5000), "/etc/passwd"}), true
	}
	return nil, false
}

// poisonName returns a name or reference: another object's ID in a form
// uuid.Parse reads, a known name, a long or odd string.
func (g *gen) poisonName() any {
	m := g.m
	ids := []string{g.guid()}
	names := []string{"fuzz"}
	for _, n := range m.nets {
		ids, names = append(ids, n.ID), append(names, n.Name)
	}
	for _, e := range m.eps {
		ids, names = append(ids, e.ID), append(names, e.Name)
	}
	for _, n := range m.nss {
		ids, names = append(ids, n.ID), append(names, n.Name)
	}
	id := oneOf(g, ids)
	switch g.pick(4) {
	case 0:
		return []string{"{" + id + "}", strings.ToUpper(id), "urn:uuid:" + id, strings.ReplaceAll(id, "-", ""), id}[g.pick(5)]
	case 1:
		return oneOf(g, names)
	case 2:
		return strings.Repeat("n", []int{257, 40 << 10}[g.pick(2)])
	}
	return []string{"", ".", "..", "a/b", "tab\tname", "é", "%s", "cni:x:y:eth0"}[g.pick(8)]
}

// value returns a value to put where old was.
func (g *gen) value(old any) any {
	switch old.(type) {
	case string:
		if g.chance(0.85) {
			return g.poisonString()
		}
	case float64:
		if g.chance(0.85) {
			return oneOf(g, poisonNumbers)
		}
	}
	switch g.pick(6) {
	case 0:
		return oneOf(g, poisonNumbers)
	case 1:
		return map[string]any{}
	case 2:
		return []any{g.poisonString()}
	case 3:
		return map[string]any{"Extra": map[string]any{"x": []any{1, "y"}}}
	default:
		return g.poisonString()
	}
}

// weirdPath replaces the reference at the end of a path with a hostile
// one.
func (g *gen) weirdPath(p string) string {
	i := strings.LastIndexByte(p, '/')
	if i <= 0 {
		return p
	}
	s, _ := g.poisonString().(string)
	return p[:i+1] + url.PathEscape(s)
}

// refresh rebuilds the model from the daemon's lists, keeping the order
// in which the fuzzer learnt of the objects (the lists come in ID order,
// and the daemon picks random IDs: the order decides what the generator
// picks, so a seed gives the same run).
func (m *model) refresh(nets []api.Network, eps []api.Endpoint, nss []api.Namespace) {
	rank := map[string]int{}
	for i, n := range m.nets {
		rank[n.ID] = i
	}
	for i, e := range m.eps {
		rank[e.ID] = i
	}
	for i, n := range m.nss {
		rank[n.ID] = i
	}
	order := func(id string) int {
		if r, ok := rank[id]; ok {
			return r
		}
		return len(rank) // new ones last, in list order
	}
	sort.SliceStable(nets, func(i, j int) bool { return order(nets[i].ID) < order(nets[j].ID) })
	sort.SliceStable(eps, func(i, j int) bool { return order(eps[i].ID) < order(eps[j].ID) })
	sort.SliceStable(nss, func(i, j int) bool { return order(nss[i].ID) < order(nss[j].ID) })
	m.nets, m.eps, m.nss = nil, nil, nil
	for i := range nets {
		if nets[i].ID != m.probe {
			m.addNetwork(&nets[i])
		}
	}
	for i := range eps {
		if eps[i].HostComputeNetwork != m.probe {
			m.addEndpoint(&eps[i])
		}
	}
	for i := range nss {
		m.addNamespace(&nss[i])
	}
}

func (m *model) addNetwork(n *api.Network) {
	o := netObj{ID: n.ID, Name: n.Name}
	if spec, err := api.ParseNetwork(n); err == nil {
		for _, s := range spec.Subnets {
			if s.Prefix.Addr().Is4() && s.Prefix.Bits() == 24 {
				o.Subnet = s.Prefix.String()
			}
		}
	}
	m.removeNetwork(n.ID)
	m.nets = append(m.nets, o)
}

func (m *model) removeNetwork(id string) {
	for i := range m.nets {
		if m.nets[i].ID == id {
			m.nets = append(m.nets[:i], m.nets[i+1:]...)
			return
		}
	}
}

func (m *model) addEndpoint(e *api.Endpoint) {
	o := epObj{ID: e.ID, Name: e.Name, Net: e.HostComputeNetwork, NS: e.HostComputeNamespace, Ports: endpointPorts(e)}
	m.removeEndpoint(e.ID)
	m.eps = append(m.eps, o)
}

func (m *model) endpoint(id string) *epObj {
	for i := range m.eps {
		if m.eps[i].ID == id {
			return &m.eps[i]
		}
	}
	return nil
}

func (m *model) removeEndpoint(id string) *epObj {
	for i := range m.eps {
		if m.eps[i].ID == id {
			o := m.eps[i]
			m.eps = append(m.eps[:i], m.eps[i+1:]...)
			return &o
		}
	}
	return nil
}

func (m *model) addNamespace(n *api.Namespace) {
	m.removeNamespace(n.ID)
	m.nss = append(m.nss, nsObj{ID: n.ID, Name: n.Name})
}

func (m *model) removeNamespace(id string) {
	for i := range m.nss {
		if m.nss[i].ID == id {
			m.nss = append(m.nss[:i], m.nss[i+1:]...)
			return
		}
	}
}

// endpointPorts lists the host ports an endpoint publishes.
func endpointPorts(e *api.Endpoint) []portKey {
	var out []portKey
	for i, p := range e.Policies {
		if api.ResolveEndpointPolicyType(p.Type) != api.PortMapping {
			continue
		}
		m, err := api.ParsePortMapping("endpoint", i, p)
		if err != nil {
			continue
		}
		out = append(out, portKey{m.ProtocolName(), m.ExternalPort, m.IPv6})
	}
	return out
}
