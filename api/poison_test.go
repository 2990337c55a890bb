package api

// Regression tests of issue 22 ("no stored poison"), one per defect the
// black-box fuzzer found, named after it. Each builds the request a
// client sent and checks that validation refuses it with a 400 naming the
// field and the value, or, for canonical storage, that what validation
// leaves in the document is what is enforced.
//
// They use only what the package exported before the fix and literal
// bounds, so that they fail, rather than not compile, on the code they
// guard against.

import (
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"testing"
)

// refused fails unless err is a 400 *Error with code (when not zero) whose
// message mentions every string of want.
func refused(t *testing.T, what string, err error, code ErrorCode, want ...string) {
	t.Helper()
	e, ok := err.(*Error)
	if !ok || err == nil {
		t.Errorf("%s: accepted (%v), want a 400 naming %q", what, err, want)
		return
	}
	if e.Status != http.StatusBadRequest {
		t.Errorf("%s: status %d (%v), want 400", what, e.Status, e)
	}
	if code != 0 && e.Code != code {
		t.Errorf("%s: code %s (%v), want %s", what, e.Code, e, code)
	}
	for _, w := range want {
		if !strings.Contains(e.Message, w) {
			t.Errorf("%s: message %q does not mention %q", what, e.Message, w)
		}
	}
}

// decodeDoc decodes a network, endpoint or namespace document.
func decodeDoc[T any](t *testing.T, doc string) *T {
	t.Helper()
	v := new(T)
	if err := json.Unmarshal([]byte(doc), v); err != nil {
		t.Fatalf("%.200s: %v", doc, err)
	}
	return v
}

// nested returns a JSON array nested depth deep.
func nested(depth int) string {
	return strings.Repeat("[", depth) + strings.Repeat("]", depth)
}

// storable fails unless v, wrapped in a record as the store keeps it,
// decodes again.
func storable[T any](t *testing.T, what string, v *T) {
	t.Helper()
	b, err := json.Marshal(struct{ Doc *T }{v})
	if err != nil {
		t.Fatalf("%s: does not encode: %v", what, err)
	}
	var back struct{ Doc T }
	if err := json.Unmarshal(b, &back); err != nil {
		t.Errorf("%s: its record does not decode: %.100v", what, err)
	}
}

// F1: a value kept verbatim (an unknown field, Health, a namespace
// resource's Data) nested 9,999 deep was accepted, and its stored record
// (one level deeper) could never be decoded again.
func TestF1DeepVerbatimValuesRefused(t *testing.T) {
	deep := nested(9990)
	net := decodeDoc[Network](t, `{"Name":"n","Future":`+deep+`}`)
	_, err := ParseNetwork(net)
	refused(t, "network with a deep unknown field", err, CodeInvalidNetwork, "Future", "nested")

	_, err = ParseNetwork(decodeDoc[Network](t, `{"Name":"n","Health":{"Extra":`+deep+`}}`))
	refused(t, "network with a deep Health", err, CodeInvalidNetwork, "Health", "nested")

	_, err = ParseEndpoint(decodeDoc[Endpoint](t, `{"HostComputeNetwork":"n","Health":`+deep+`}`))
	refused(t, "endpoint with a deep Health", err, CodeInvalidEndpoint, "Health", "nested")

	_, err = ParseEndpoint(decodeDoc[Endpoint](t, `{"HostComputeNetwork":"n","X":{"y":`+deep+`}}`))
	refused(t, "endpoint with a deep unknown field", err, CodeInvalidEndpoint, "X", "nested")

	err = ParseNamespace(decodeDoc[Namespace](t, `{"Resources":[{"Type":"Container","Data":`+deep+`}]}`))
	refused(t, "namespace with a deep resource Data", err, CodeInvalidNamespace, "Resources[0].Data", "nested")

	err = ParseNamespace(decodeDoc[Namespace](t, `{"Future":`+deep+`}`))
	refused(t, "namespace with a deep unknown field", err, CodeInvalidNamespace, "Future", "nested")

	// Large verbatim values: refused too, naming the field.
	big := `"` + strings.Repeat("x", 100<<10) + `"`
	_, err = ParseNetwork(decodeDoc[Network](t, `{"Name":"n","Blob":`+big+`}`))
	refused(t, "network with a 100 KiB unknown field", err, CodeInvalidNetwork, "Blob", "bytes")
	_, err = ParseEndpoint(decodeDoc[Endpoint](t, `{"HostComputeNetwork":"n","Policies":[{"Type":"ACL","Settings":{"Id":`+big+`}}]}`))
	refused(t, "endpoint policy with 100 KiB Settings", err, CodeInvalidPolicy, "Settings", "bytes")

	// What is accepted is storable: a moderately nested value passes, and
	// its record decodes.
	ok := decodeDoc[Network](t, `{"Name":"n","Health":{"Extra":`+nested(30)+`},"Future":{"a":[1,{"b":2}]}}`)
	if _, err := ParseNetwork(ok); err != nil {
		t.Fatalf("moderately nested values: %v", err)
	}
	storable(t, "network", ok)
}

// F2: a NetworkACL given at creation as "Type":11 or "networkacl" was
// stored as sent ("11") and never enforced; after validation the document
// carries the policy's name, so the service stores what it enforces.
func TestF2NetworkACLTypeStoredResolved(t *testing.T) {
	acl := `"Settings":{"Action":"Block","Direction":"In","RemoteAddresses":"198.51.100.1","Priority":100}`
	n := decodeDoc[Network](t, `{"Name":"n","Policies":[{"Type":11,`+acl+`},{"Type":"networkacl",`+acl+`}],`+
		`"Ipams":[{"Subnets":[{"IpAddressPrefix":"10.0.0.0/24","Policies":[{"Type":0,"Settings":{"IsolationId":5}}]}]}]}`)
	// The subnet's VLAN policy is not enforced by this build, so the
	// document is refused; its types are resolved all the same.
	if _, err := ParseNetwork(n); err == nil || !strings.Contains(err.Error(), "policy type VLAN is not supported") {
		t.Fatalf("ParseNetwork: %v, want VLAN refused as unsupported", err)
	}
	for i, p := range n.Policies {
		if p.Type != NetworkACL {
			t.Errorf("network Policies[%d].Type is stored as %q, want %q", i, p.Type, NetworkACL)
		}
	}
	if got := n.Ipams[0].Subnets[0].Policies[0].Type; got != VLAN {
		t.Errorf("subnet policy type is stored as %q, want VLAN", got)
	}
	b, _ := json.Marshal(n)
	if !strings.Contains(string(b), `"Type":"NetworkACL"`) || strings.Contains(string(b), `"Type":"11"`) {
		t.Errorf("stored document: %s", b)
	}

	e := decodeDoc[Endpoint](t, `{"HostComputeNetwork":"n","Policies":[{"Type":1,`+acl+`},{"Type":"outboundnat"},{"Type":"portmapping","Settings":{"InternalPort":80}}]}`)
	if _, err := ParseEndpoint(e); err != nil {
		t.Fatal(err)
	}
	for i, want := range []PolicyType{ACL, OutBoundNAT, PortMapping} {
		if e.Policies[i].Type != want {
			t.Errorf("endpoint Policies[%d].Type is stored as %q, want %q", i, e.Policies[i].Type, want)
		}
	}
}

// F3: duplicate or overlapping OutBoundNAT exceptions were accepted and
// broke the firewall of every endpoint (a named set refuses duplicate
// elements). They are now merged: the spec and the stored document hold
// each prefix once, masked, and no prefix inside another.
func TestF3OutboundNATExceptionsMerged(t *testing.T) {
	for _, tc := range []struct {
		exceptions string
		want       []string // the spec's exceptions
		stored     string   // the document's Exceptions after validation
	}{
		{`["10.0.0.1","10.0.0.1"]`, []string{"10.0.0.1/32"}, `["10.0.0.1"]`},
		{`["10.0.0.1","10.0.0.1/32"]`, []string{"10.0.0.1/32"}, `["10.0.0.1"]`},
		{`["10.0.0.0/24","10.0.0.7/24"]`, []string{"10.0.0.0/24"}, `["10.0.0.0/24"]`},
		{`["10.1.0.0/16","10.0.0.0/8"]`, []string{"10.0.0.0/8"}, `["10.0.0.0/8"]`},
		{`["10.0.0.0/8, 192.0.2.0/24","10.2.3.4"]`, []string{"10.0.0.0/8", "192.0.2.0/24"}, `["10.0.0.0/8","192.0.2.0/24"]`},
		{`["fd00::/64","fd00::1","fd00:0::/48"]`, []string{"fd00::/48"}, `["fd00::/48"]`},
		{`["192.0.2.9/24"]`, []string{"192.0.2.0/24"}, `["192.0.2.0/24"]`},
	} {
		settings := `{"Exceptions":` + tc.exceptions + `}`
		spec, err := ParseOutboundNAT("endpoint", 0, Policy{Type: OutBoundNAT, Settings: json.RawMessage(settings)})
		if err != nil {
			t.Errorf("%s: %v", tc.exceptions, err)
			continue
		}
		if got := fmt.Sprint(spec.Exceptions); got != fmt.Sprint(tc.want) {
			t.Errorf("%s: exceptions %s, want %s", tc.exceptions, got, tc.want)
		}
		e := decodeDoc[Endpoint](t, `{"HostComputeNetwork":"n","Policies":[{"Type":"OutBoundNAT","Settings":`+settings+`}]}`)
		if _, err := ParseEndpoint(e); err != nil {
			t.Errorf("%s: %v", tc.exceptions, err)
			continue
		}
		var s OutboundNATSettings
		if err := json.Unmarshal(e.Policies[0].Settings, &s); err != nil {
			t.Fatal(err)
		}
		if got, _ := json.Marshal(s.Exceptions); string(got) != tc.stored {
			t.Errorf("%s: stored as %s, want %s", tc.exceptions, got, tc.stored)
		}
	}
	// Canonical settings are stored exactly as sent, so that a Remove of
	// the same policy matches.
	const sent = `{ "Exceptions": ["198.51.100.1/32", "10.0.0.0/8"] }`
	e := decodeDoc[Endpoint](t, `{"HostComputeNetwork":"n","Policies":[{"Type":"OutBoundNAT","Settings":`+sent+`}]}`)
	if _, err := ParseEndpoint(e); err != nil {
		t.Fatal(err)
	}
	var a, b any
	_ = json.Unmarshal([]byte(sent), &a)
	_ = json.Unmarshal(e.Policies[0].Settings, &b)
	if fmt.Sprint(a) != fmt.Sprint(b) {
		t.Errorf("canonical settings rewritten: %s", e.Policies[0].Settings)
	}
}

// F5: an all-zero MAC, or a MacPool range crossing into multicast
// addresses, was accepted and made attaches fail.
func TestF5UnicastMACs(t *testing.T) {
	for _, mac := range []string{"00-00-00-00-00-00", "01-00-5E-00-00-01", "FF-FF-FF-FF-FF-FF", "33:33:00:00:00:01"} {
		_, err := ParseEndpoint(decodeDoc[Endpoint](t, `{"HostComputeNetwork":"n","MacAddress":"`+mac+`"}`))
		refused(t, "endpoint MAC "+mac, err, CodeInvalidEndpoint, "MacAddress", mac[:2])
	}
	for _, r := range [][2]string{
		{"00-15-5D-FF-FF-F0", "02-00-00-00-00-10"}, // crosses 01-...
		{"00-00-00-00-00-00", "00-00-00-00-00-FF"}, // starts at zero
		{"02-00-00-00-00-00", "04-00-00-00-00-00"},
	} {
		doc := `{"Name":"n","MacPool":{"Ranges":[{"StartMacAddress":"` + r[0] + `","EndMacAddress":"` + r[1] + `"}]}}`
		_, err := ParseNetwork(decodeDoc[Network](t, doc))
		refused(t, "MacPool "+r[0]+"-"+r[1], err, CodeInvalidNetwork, "MacPool.Ranges[0]", r[0])
	}
	ok := `{"Name":"n","MacPool":{"Ranges":[{"StartMacAddress":"00-15-5D-52-C0-00","EndMacAddress":"00-15-5D-52-CF-FF"}]}}`
	if _, err := ParseNetwork(decodeDoc[Network](t, ok)); err != nil {
		t.Errorf("hcsshim's MacPool: %v", err)
	}
}

// F6: an InterfaceName with '%' was renamed by the kernel (eth%d) or
// failed the attach (a%s).
func TestF6InterfaceNamePercent(t *testing.T) {
	for _, name := range []string{"eth%d", "a%s", "%", "x%%"} {
		_, err := ParseEndpoint(decodeDoc[Endpoint](t, `{"HostComputeNetwork":"n","InterfaceName":"`+name+`"}`))
		refused(t, "InterfaceName "+name, err, CodeInvalidEndpoint, "InterfaceName", name)
	}
	for _, name := range []string{"eth0", "net-1", "veth_a.b"} {
		if _, err := ParseEndpoint(decodeDoc[Endpoint](t, `{"HostComputeNetwork":"n","InterfaceName":"`+name+`"}`)); err != nil {
			t.Errorf("InterfaceName %s: %v", name, err)
		}
	}
}

// F8: a name over 32 KiB answered 500 "key too large" from the store.
// Names are at most 256 bytes of printable characters.
func TestF8LongNamesRefused(t *testing.T) {
	for _, name := range []string{strings.Repeat("n", 40<<10), strings.Repeat("n", 257), "tab\there", "bell\x07", "nul\x00"} {
		q, _ := json.Marshal(name)
		_, err := ParseNetwork(decodeDoc[Network](t, `{"Name":`+string(q)+`}`))
		refused(t, "network name", err, CodeInvalidNetwork, "Name")
		_, err = ParseEndpoint(decodeDoc[Endpoint](t, `{"HostComputeNetwork":"n","Name":`+string(q)+`}`))
		refused(t, "endpoint name", err, CodeInvalidEndpoint, "Name")
		err = ParseNamespace(decodeDoc[Namespace](t, `{"Name":`+string(q)+`}`))
		refused(t, "namespace name", err, CodeInvalidNamespace, "Name")
	}
	for _, name := range []string{strings.Repeat("n", 256), "cni:net:0123456789abcdef:eth0", "vEthernet (nat)", "réseau"} {
		if _, err := ParseNetwork(decodeDoc[Network](t, `{"Name":"`+name+`"}`)); err != nil {
			t.Errorf("network name %.40q: %v", name, err)
		}
	}
}

// F9: unusable subnets answered 500 (::/0, ff00::/8) or were accepted and
// every attach failed (224.0.0.0/4, 0.0.0.0/8, 127.0.0.0/8, fe80::/64); a
// NAT subnet with Flags 1 handed the bridge's own address to an endpoint.
func TestF9UnusableSubnetsRefused(t *testing.T) {
	for _, p := range []string{"::/0", "0.0.0.0/0", "ff00::/8", "ff02::/64", "224.0.0.0/4", "239.1.0.0/16", "0.0.0.0/8", "127.0.0.0/8",
		"127.1.0.0/24", "fe80::/64", "169.254.0.0/16", "::/64", "::ffff:0:0/96", "128.0.0.0/1", "255.255.255.0/24"} {
		doc := `{"Name":"n","Ipams":[{"Subnets":[{"IpAddressPrefix":"` + p + `"}]}]}`
		_, err := ParseNetwork(decodeDoc[Network](t, doc))
		refused(t, "subnet "+p, err, CodeInvalidNetwork, "Ipams[0].Subnets[0].IpAddressPrefix")
	}
	for _, p := range []string{"10.0.0.0/8", "172.16.0.0/20", "192.168.1.0/30", "100.64.0.0/10", "fd00::/64", "2001:db8::/126", "240.0.0.0/24"} {
		doc := `{"Name":"n","Ipams":[{"Subnets":[{"IpAddressPrefix":"` + p + `"}]}]}`
		if _, err := ParseNetwork(decodeDoc[Network](t, doc)); err != nil {
			t.Errorf("subnet %s: %v", p, err)
		}
	}
	_, err := ParseNetwork(decodeDoc[Network](t, `{"Name":"n","Type":"NAT","Ipams":[{"Subnets":[{"IpAddressPrefix":"10.0.0.0/24","Flags":1}]}]}`))
	refused(t, "NAT subnet with DoNotReserveGatewayAddress", err, CodeInvalidNetwork, "Ipams[0].Subnets[0].Flags", "10.0.0.1")
	_, err = ParseNetwork(decodeDoc[Network](t, `{"Name":"n","Ipams":[{"Subnets":[{"IpAddressPrefix":"10.0.0.0/24","Flags":1}]}]}`))
	refused(t, "default (NAT) subnet with DoNotReserveGatewayAddress", err, CodeInvalidNetwork, "Flags")
	_, err = ParseNetwork(decodeDoc[Network](t, `{"Name":"n","Ipams":[{"Subnets":[{"IpAddressPrefix":"10.0.0.0/24","Flags":6}]}]}`))
	refused(t, "unknown subnet flags", err, CodeInvalidNetwork, "Flags", "0x6")
}

// F10: more than about 250 routes on an endpoint failed every attach with
// ENOBUFS. An endpoint has at most 64 (Routes and SDNRoute policies
// together), a network at most 64 subnet routes.
func TestF10RouteCountsBounded(t *testing.T) {
	routes := func(n int) string {
		var rs []string
		for i := 0; i < n; i++ {
			rs = append(rs, fmt.Sprintf(`{"DestinationPrefix":"10.%d.%d.0/24","NextHop":"10.0.0.1"}`, i/256, i%256))
		}
		return "[" + strings.Join(rs, ",") + "]"
	}
	sdn := func(n int) string {
		var ps []string
		for i := 0; i < n; i++ {
			ps = append(ps, fmt.Sprintf(`{"Type":"SDNRoute","Settings":{"DestinationPrefix":"10.200.%d.0/24","NextHop":"10.0.0.1"}}`, i))
		}
		return "[" + strings.Join(ps, ",") + "]"
	}
	_, err := ParseEndpoint(decodeDoc[Endpoint](t, `{"HostComputeNetwork":"n","Routes":`+routes(300)+`}`))
	refused(t, "300 routes", err, CodeInvalidEndpoint, "Routes", "300")
	_, err = ParseEndpoint(decodeDoc[Endpoint](t, `{"HostComputeNetwork":"n","Routes":`+routes(40)+`,"Policies":`+sdn(25)+`}`))
	refused(t, "40 routes and 25 SDNRoutes", err, CodeInvalidEndpoint, "Routes", "65")
	_, err = ParseEndpoint(decodeDoc[Endpoint](t, `{"HostComputeNetwork":"n","Policies":`+sdn(251)+`}`))
	refused(t, "251 SDNRoutes", err, CodeInvalidEndpoint, "SDNRoute", "251")
	if _, err := ParseEndpoint(decodeDoc[Endpoint](t, `{"HostComputeNetwork":"n","Routes":`+routes(32)+`,"Policies":`+sdn(32)+`}`)); err != nil {
		t.Errorf("64 routes: %v", err)
	}
	_, err = ParseNetwork(decodeDoc[Network](t, `{"Name":"n","Ipams":[{"Subnets":[{"IpAddressPrefix":"10.0.0.0/24","Routes":`+routes(65)+`}]}]}`))
	refused(t, "65 subnet routes", err, CodeInvalidNetwork, "routes", "65")
}

// F12: a name that parses as a GUID (braced, upper case, urn:uuid:, bare
// hex) reached the object of that ID on GET, PATCH and DELETE by name.
func TestF12NamesThatReadAsIDsRefused(t *testing.T) {
	const id = "2c5b2778-d7d0-4c2e-9d3a-1508ea4ecaa4"
	for _, name := range []string{id, strings.ToUpper(id), "{" + id + "}", "urn:uuid:" + id, "URN:UUID:" + id,
		strings.ReplaceAll(id, "-", ""), "x" + id + "y"} {
		_, err := ParseNetwork(decodeDoc[Network](t, `{"Name":"`+name+`"}`))
		refused(t, "network name "+name, err, CodeInvalidNetwork, "Name", name, "GUID")
		_, err = ParseEndpoint(decodeDoc[Endpoint](t, `{"HostComputeNetwork":"n","Name":"`+name+`"}`))
		refused(t, "endpoint name "+name, err, CodeInvalidEndpoint, "Name", name)
		err = ParseNamespace(decodeDoc[Namespace](t, `{"Name":"`+name+`"}`))
		refused(t, "namespace name "+name, err, CodeInvalidNamespace, "Name", name)
	}
	for _, name := range []string{id[:35], "cni:" + id, id + "-1"} {
		if _, err := ParseNetwork(decodeDoc[Network](t, `{"Name":"`+name+`"}`)); err != nil {
			t.Errorf("network name %s: %v", name, err)
		}
	}
}

// F13: fields accepted and then ignored are refused: a client-set
// ResolvConfPath (read-only), network flag 1024 and unknown network
// flags, unknown endpoint flags, an OutBoundNAT VirtualIP that is
// multicast or broadcast, or of a family the endpoint has no address of.
func TestF13IgnoredFieldsRefused(t *testing.T) {
	err := ParseNamespace(decodeDoc[Namespace](t, `{"ResolvConfPath":"/etc/passwd"}`))
	refused(t, "namespace ResolvConfPath", err, CodeInvalidNamespace, "ResolvConfPath", "read-only")

	_, err = ParseNetwork(decodeDoc[Network](t, `{"Name":"n","Flags":1024}`))
	refused(t, "network flag 1024", err, CodeRequestUnsupported, "Flags", "1024")
	_, err = ParseNetwork(decodeDoc[Network](t, `{"Name":"n","Flags":4}`))
	refused(t, "network flag 4", err, CodeInvalidNetwork, "Flags", "0x4")
	if _, err := ParseNetwork(decodeDoc[Network](t, `{"Name":"n","Flags":8}`)); err != nil {
		t.Errorf("EnableNonPersistent: %v", err)
	}

	for _, f := range []string{"4", "16", "64", "2147483648"} {
		_, err = ParseEndpoint(decodeDoc[Endpoint](t, `{"HostComputeNetwork":"n","Flags":`+f+`}`))
		refused(t, "endpoint flags "+f, err, CodeInvalidEndpoint, "Flags")
	}
	if _, err := ParseEndpoint(decodeDoc[Endpoint](t, `{"HostComputeNetwork":"n","Flags":10}`)); err != nil {
		t.Errorf("DisableICC and EnableLowInterfaceMetric: %v", err)
	}

	for _, vip := range []string{"224.0.0.1", "255.255.255.255", "ff02::1", "0.0.0.0", "127.0.0.1", "169.254.1.1"} {
		_, err = ParseOutboundNAT("endpoint", 0, Policy{Type: OutBoundNAT, Settings: json.RawMessage(`{"VirtualIP":"` + vip + `"}`)})
		refused(t, "VirtualIP "+vip, err, CodeInvalidPolicy, "VirtualIP", vip)
	}
	_, err = ParseEndpoint(decodeDoc[Endpoint](t, `{"HostComputeNetwork":"n","IpConfigurations":[{"IpAddress":"10.0.0.5"}],`+
		`"Policies":[{"Type":"OutBoundNAT","Settings":{"VirtualIP":"2001:db8::1"}}]}`))
	refused(t, "IPv6 VirtualIP on an IPv4 endpoint", err, CodeInvalidPolicy, "VirtualIP", "2001:db8::1", "IPv6")
	if _, err := ParseEndpoint(decodeDoc[Endpoint](t, `{"HostComputeNetwork":"n","IpConfigurations":[{"IpAddress":"10.0.0.5"}],`+
		`"Policies":[{"Type":"OutBoundNAT","Settings":{"VirtualIP":"192.0.2.7"}}]}`)); err != nil {
		t.Errorf("IPv4 VirtualIP: %v", err)
	}
}

// The core issue: an ACL Id with '"' or longer than the rule comment
// allows answered 500 when the firewall was built. The compiler names a
// rule "<dir> <n>: <action> priority <p> id <Id> (<i>/<k>)", and nftables
// keeps at most 100 bytes of it.
func TestACLIdBoundedForRuleComments(t *testing.T) {
	acl := func(id string) error {
		q, _ := json.Marshal(id)
		_, err := ParseACL("endpoint", 3, ACL, Policy{Type: ACL, Settings: json.RawMessage(`{"Id":` + string(q) + `,"Action":"Allow","Direction":"In"}`)})
		return err
	}
	for _, id := range []string{`a"b`, "tab\tid", "nl\nid", "del\x7f", strings.Repeat("i", 49), strings.Repeat("é", 25)} {
		refused(t, fmt.Sprintf("ACL Id %q", id), acl(id), CodeInvalidPolicy, "Policies[3]", "Id")
	}
	longest := strings.Repeat("i", 48)
	if err := acl(longest); err != nil {
		t.Fatalf("ACL Id of 48 bytes: %v", err)
	}
	// The worst case of the compiler's comment (internal/policy/acl.go)
	// with the longest Id fits nftables' comment (internal/dataplane/nft:
	// maxCommentLen, 100 bytes).
	worst := fmt.Sprintf("%s %d: %s priority %d", "Out", 99999, "Allow", 65535) + " id " + longest + fmt.Sprintf(" (%d/%d)", 64, 64)
	if len(worst) > 100 {
		t.Errorf("worst rule comment is %d bytes: %s", len(worst), worst)
	}
	for _, id := range []string{"", "allow-web", "2c5b2778-d7d0-4c2e-9d3a-1508ea4ecaa4", "{2C5B2778-D7D0-4C2E-9D3A-1508EA4ECAA4}"} {
		if err := acl(id); err != nil {
			t.Errorf("ACL Id %q: %v", id, err)
		}
	}
}

// Counts of everything a document lists are bounded, each a 400 naming
// the field (issue 22, must have 2).
func TestDocumentCountsBounded(t *testing.T) {
	policies := func(n int, p string) string {
		return "[" + strings.TrimSuffix(strings.Repeat(p+",", n), ",") + "]"
	}
	acl := `{"Type":"ACL","Settings":{"Action":"Allow","Direction":"In"}}`
	_, err := ParseEndpoint(decodeDoc[Endpoint](t, `{"HostComputeNetwork":"n","Policies":`+policies(257, acl)+`}`))
	refused(t, "257 endpoint policies", err, CodeInvalidEndpoint, "Policies", "257")
	_, err = ParseNetwork(decodeDoc[Network](t, `{"Name":"n","Policies":`+policies(257, `{"Type":"NetworkACL","Settings":{"Action":"Allow","Direction":"In"}}`)+`}`))
	refused(t, "257 network policies", err, CodeInvalidNetwork, "Policies", "257")
	req := ModifyRequest{ResourceType: ResourcePolicy, RequestType: RequestAdd, Settings: json.RawMessage(`{"Policies":` + policies(5000, acl) + `}`)}
	refused(t, "modify request with 5,000 policies", ResolveModify("endpoint", &req), CodeInvalidPolicy, "Settings.Policies", "5000")

	servers := strings.TrimSuffix(strings.Repeat(`"10.0.0.53",`, 33), ",")
	_, err = ParseNetwork(decodeDoc[Network](t, `{"Name":"n","Dns":{"ServerList":[`+servers+`]}}`))
	refused(t, "33 DNS servers", err, CodeInvalidNetwork, "Dns.ServerList", "33")
	_, err = ParseEndpoint(decodeDoc[Endpoint](t, `{"HostComputeNetwork":"n","Dns":{"ServerList":["`+strings.Repeat("10.0.0.53,", 40)+`"]}}`))
	refused(t, "40 DNS servers in one entry", err, CodeInvalidEndpoint, "Dns.ServerList", "40")
	_, err = ParseEndpoint(decodeDoc[Endpoint](t, `{"HostComputeNetwork":"n","Dns":{"Search":["a b"]}}`))
	refused(t, "search domain with a space", err, CodeInvalidEndpoint, "Dns.Search[0]", "a b")

	var ex []string
	for i := 0; i < 300; i++ {
		ex = append(ex, fmt.Sprintf(`"10.%d.%d.0/24"`, i/256, i%256))
	}
	_, err = ParseOutboundNAT("endpoint", 0, Policy{Type: OutBoundNAT, Settings: json.RawMessage(`{"Exceptions":[` + strings.Join(ex, ",") + `]}`)})
	refused(t, "300 exceptions", err, CodeInvalidPolicy, "Exceptions", "300")

	var subs []string
	for i := 0; i < 17; i++ {
		subs = append(subs, fmt.Sprintf(`{"IpAddressPrefix":"10.%d.0.0/24"}`, i))
	}
	_, err = ParseNetwork(decodeDoc[Network](t, `{"Name":"n","Ipams":[{"Subnets":[`+strings.Join(subs, ",")+`]}]}`))
	refused(t, "17 subnets", err, CodeInvalidNetwork, "Ipams", "17")

	_, err = ParseACL("endpoint", 0, ACL, Policy{Type: ACL, Settings: json.RawMessage(`{"Action":"Allow","Direction":"In","RemotePorts":"` + strings.Repeat("80,", 2000) + `"}`)})
	refused(t, "2,000 ports", err, CodeInvalidPolicy, "RemotePorts", "2000")

	err = ParseNamespace(decodeDoc[Namespace](t, `{"NetNamespacePath":"/`+strings.Repeat("p", 5000)+`"}`))
	refused(t, "5,000-byte path", err, CodeInvalidNamespace, "NetNamespacePath")
}
