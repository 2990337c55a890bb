package api

import (
	"encoding/json"
	"strings"
	"testing"
)

func TestEnumsByNameOrNumber(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want NetworkType
	}{
		{`"NAT"`, NAT}, {`"nat"`, NAT}, {`0`, NAT}, {`2`, Transparent}, {`5`, Overlay}, {`"Foo"`, "Foo"}, {`42`, "42"},
	} {
		var n Network
		if err := json.Unmarshal([]byte(`{"Type":`+tc.in+`}`), &n); err != nil {
			t.Fatalf("%s: %v", tc.in, err)
		}
		if n.Type != tc.want {
			t.Errorf("Type %s decoded as %q, want %q", tc.in, n.Type, tc.want)
		}
	}
	var n Network
	if err := json.Unmarshal([]byte(`{"Type":true}`), &n); err == nil || !strings.Contains(err.Error(), "Type") {
		t.Errorf("a boolean type: %v, want an error naming the field", err)
	}
}

func TestUnknownFieldsRoundTrip(t *testing.T) {
	in := `{"Name":"n","Future":{"a":[1,2]},"Zeta":"z","SchemaVersion":{"Major":2,"Minor":0}}`
	var n Network
	if err := json.Unmarshal([]byte(in), &n); err != nil {
		t.Fatal(err)
	}
	out, err := json.Marshal(n)
	if err != nil {
		t.Fatal(err)
	}
	want := `{"Name":"n","Flags":0,"SchemaVersion":{"Major":2,"Minor":0},"Future":{"a":[1,2]},"Zeta":"z"}`
	if string(out) != want {
		t.Errorf("got  %s\nwant %s", out, want)
	}
}

func TestParseNetworkErrorsNameFieldAndValue(t *testing.T) {
	for _, tc := range []struct {
		doc  string
		code ErrorCode
		want []string
	}{
		{`{"Ipams":[{"Subnets":[{"IpAddressPrefix":"10.0.0/24"}]}]}`, CodeInvalidNetwork, []string{"Ipams[0].Subnets[0].IpAddressPrefix", "10.0.0/24"}},
		{`{"Ipams":[{"Subnets":[{"IpAddressPrefix":"10.0.0.0/31"}]}]}`, CodeInvalidNetwork, []string{"too small"}},
		{`{"Ipams":[{"Subnets":[{"IpAddressPrefix":"10.0.0.0/24","IpRange":"10.1.0.0/28"}]}]}`, CodeInvalidNetwork, []string{"IpRange", "10.1.0.0/28"}},
		{`{"Ipams":[{"Subnets":[{"IpAddressPrefix":"10.0.0.0/24"},{"IpAddressPrefix":"10.0.0.0/25"}]}]}`, CodeInvalidNetwork, []string{"overlaps"}},
		{`{"Ipams":[{"Subnets":[{"IpAddressPrefix":"10.0.0.0/24","Routes":[{"DestinationPrefix":"0.0.0.0/0","NextHop":"10.0.0.0"}]}]}]}`, CodeInvalidNetwork, []string{"NextHop", "network or broadcast"}},
		{`{"MacPool":{"Ranges":[{"StartMacAddress":"00-15-5D-00-00-09","EndMacAddress":"00-15-5D-00-00-01"}]}}`, CodeInvalidNetwork, []string{"MacPool.Ranges[0]", "after"}},
		{`{"Policies":[{"Type":99}]}`, CodeInvalidPolicyType, []string{"Policies[0].Type", `"99"`}},
		{`{"SchemaVersion":{"Major":1,"Minor":0}}`, CodeRequestUnsupported, []string{"SchemaVersion", "1.0"}},
		{`{"Type":"Transparent","UplinkMode":"Hub"}`, CodeInvalidNetwork, []string{"UplinkMode", `"Hub"`}},
		{`{"Type":"L2Bridge","UplinkMode":"Bridge"}`, CodeInvalidNetwork, []string{"UplinkMode", "L2Bridge"}},
		{`{"UplinkMode":"Macvlan"}`, CodeInvalidNetwork, []string{"UplinkMode", "NAT"}},
	} {
		var n Network
		if err := json.Unmarshal([]byte(tc.doc), &n); err != nil {
			t.Fatal(err)
		}
		_, err := ParseNetwork(&n)
		if CodeOf(err) != tc.code {
			t.Errorf("%s: %v (code %s), want code %s", tc.doc, err, CodeOf(err), tc.code)
			continue
		}
		for _, w := range tc.want {
			if !strings.Contains(err.Error(), w) {
				t.Errorf("%s: message %q lacks %q", tc.doc, err, w)
			}
		}
	}
}

// UplinkMode is stored in its canonical form and read into the spec.
func TestParseNetworkUplinkMode(t *testing.T) {
	for _, tc := range []struct {
		mode, stored string
		bridge       bool
	}{{"", "", false}, {"bridge", UplinkBridge, true}, {"MACVLAN", UplinkMacvlan, false}} {
		n := Network{Type: Transparent, UplinkMode: tc.mode}
		spec, err := ParseNetwork(&n)
		if err != nil {
			t.Fatalf("%q: %v", tc.mode, err)
		}
		if n.UplinkMode != tc.stored || spec.UplinkBridge != tc.bridge {
			t.Errorf("%q: stored %q, bridge %t; want %q, %t", tc.mode, n.UplinkMode, spec.UplinkBridge, tc.stored, tc.bridge)
		}
	}
}

func TestParseNetworkGateway(t *testing.T) {
	var n Network
	// DoNotReserveGatewayAddress only where the gateway is not hostnet's
	// own bridge (see TestF9SubnetFlagsKeepTheBridgeAddress).
	_ = json.Unmarshal([]byte(`{"Type":"Transparent","Ipams":[{"Subnets":[{"IpAddressPrefix":"10.0.0.0/24"},{"IpAddressPrefix":"fd00::/64","Routes":[{"DestinationPrefix":"::/0","NextHop":"fd00::fe"}],"Flags":1}]}]}`), &n)
	spec, err := ParseNetwork(&n)
	if err != nil {
		t.Fatal(err)
	}
	if spec.Type != Transparent || spec.Subnets[0].Gateway.String() != "10.0.0.1" || !spec.Subnets[0].ReserveGateway {
		t.Errorf("first subnet: %+v", spec.Subnets[0])
	}
	if spec.Subnets[1].Gateway.String() != "fd00::fe" || spec.Subnets[1].ReserveGateway {
		t.Errorf("second subnet: %+v", spec.Subnets[1])
	}
}

func TestMAC(t *testing.T) {
	for _, s := range []string{"00-15-5d-52-c0-00", "00:15:5D:52:C0:00"} {
		m, err := ParseMAC(s)
		if err != nil || FormatMAC(m) != "00-15-5D-52-C0-00" {
			t.Errorf("%s: %v %v", s, m, err)
		}
	}
	if _, err := ParseMAC("00-15-5D"); err == nil {
		t.Error("short MAC accepted")
	}
	if MACFromUint64(MACToUint64(MACFromUint64(0x00155d52c0ff))).String() != "00:15:5d:52:c0:ff" {
		t.Error("MAC number round trip")
	}
}

func TestResolveModify(t *testing.T) {
	var m ModifyRequest
	_ = json.Unmarshal([]byte(`{"ResourceType":1,"RequestType":1}`), &m)
	if err := ResolveModify("namespace", &m); err != nil || m.ResourceType != ResourceEndpoint || m.RequestType != RequestRemove {
		t.Errorf("numeric namespace request: %+v %v", m, err)
	}
	m = ModifyRequest{ResourceType: "Port", RequestType: RequestAdd}
	if err := ResolveModify("network", &m); err == nil || !strings.Contains(err.Error(), "ResourceType") {
		t.Errorf("Port on a network: %v", err)
	}
}

func TestDecodeSettingsIsStrict(t *testing.T) {
	var s SDNRouteSettings
	if err := DecodeSettings([]byte(`{"DestinationPrefx":"10.0.0.0/8"}`), &s); err == nil || !strings.Contains(err.Error(), "DestinationPrefx") {
		t.Errorf("misspelt setting: %v", err)
	}
}

// CallerHoldsHostPort, hostnet's extension of PortMapping, is a boolean:
// it marks the mapping as one whose host port the caller holds, and
// changes nothing else about it.
func TestPortMappingCallerHoldsHostPort(t *testing.T) {
	parse := func(settings string) (PortMappingSpec, error) {
		return ParsePortMapping("endpoint", 0, Policy{Type: PortMapping, Settings: json.RawMessage(settings)})
	}
	held, err := parse(`{"Protocol":6,"InternalPort":80,"ExternalPort":8080,"CallerHoldsHostPort":true}`)
	if err != nil || !held.CallerHolds {
		t.Fatalf("a caller-held mapping: %+v, %v", held, err)
	}
	own, err := parse(`{"Protocol":6,"InternalPort":80,"ExternalPort":8080}`)
	if err != nil || own.CallerHolds {
		t.Fatalf("a mapping hostnet holds: %+v, %v", own, err)
	}
	if held.Key() != own.Key() || held.String() != own.String() {
		t.Errorf("the host port differs: %s %s, %s %s", held.Key(), held, own.Key(), own)
	}
	if _, err := parse(`{"InternalPort":80,"CallerHoldsHostPort":"yes"}`); err == nil || !strings.Contains(err.Error(), "CallerHoldsHostPort") {
		t.Errorf("a CallerHoldsHostPort that is not a boolean: %v", err)
	}
}
