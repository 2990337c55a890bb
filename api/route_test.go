package api

import (
	"encoding/json"
	"net/netip"
	"strings"
	"testing"
)

func TestCheckNextHop(t *testing.T) {
	addrs := []netip.Prefix{netip.MustParsePrefix("10.7.0.5/24"), netip.MustParsePrefix("fd00:7::5/64")}
	for _, c := range []struct {
		nh   string
		want string // "" when usable
	}{
		{"10.7.0.1", ""},
		{"10.7.0.254", ""},
		{"fd00:7::1", ""},
		{"fe80::1", ""},
		{"127.10.0.34", "loopback"},
		{"::1", "loopback"},
		{"0.0.0.0", "unspecified"},
		{"224.0.0.1", "multicast"},
		{"10.7.0.5", "own address"},
		{"10.7.0.0", "network address"},
		{"10.7.0.255", "broadcast"},
		{"10.8.0.1", "none of the endpoint's subnets (10.7.0.0/24)"},
		{"fd00:8::1", "none of the endpoint's subnets (fd00:7::/64)"},
	} {
		err := CheckNextHop(netip.MustParseAddr(c.nh), addrs)
		switch {
		case c.want == "" && err != nil:
			t.Errorf("%s: %v, want usable", c.nh, err)
		case c.want != "" && (err == nil || !strings.Contains(err.Error(), c.want) || !strings.Contains(err.Error(), c.nh)):
			t.Errorf("%s: %v, want an error naming it and saying %q", c.nh, err, c.want)
		}
	}
	if err := CheckNextHop(netip.MustParseAddr("10.0.0.1"), nil); err == nil || !strings.Contains(err.Error(), "no address of that family") {
		t.Errorf("an endpoint without addresses: %v", err)
	}
	// A /31 has no network or broadcast address.
	if err := CheckNextHop(netip.MustParseAddr("10.9.0.0"), []netip.Prefix{netip.MustParsePrefix("10.9.0.1/31")}); err != nil {
		t.Errorf("the other address of a /31: %v", err)
	}
}

// A route object as hcsshim's hcn package marshals it reads back as sent;
// bad ones are refused naming the field.
func TestParseRoute(t *testing.T) {
	doc := `{"ID":"0b0e3f3e-7b5e-4f43-9b73-3c1f8a4f2f11","HostComputeEndpoints":["ep1","ep2"],` +
		`"Setting":[{"DestinationPrefix":"169.254.169.254/24","NextHop":"10.7.0.1"}],"SchemaVersion":{"Major":2,"Minor":0}}`
	var r HostComputeRoute
	if err := json.Unmarshal([]byte(doc), &r); err != nil {
		t.Fatal(err)
	}
	routes, err := ParseRoute(&r)
	if err != nil {
		t.Fatal(err)
	}
	if len(routes) != 1 || routes[0].Dst != netip.MustParsePrefix("169.254.169.0/24") || routes[0].NextHop != netip.MustParseAddr("10.7.0.1") {
		t.Errorf("parsed %+v", routes)
	}
	back, err := json.Marshal(r)
	if err != nil {
		t.Fatal(err)
	}
	if string(back) != doc {
		t.Errorf("round trip:\n%s\nwant\n%s", back, doc)
	}
	for _, c := range []struct {
		doc, want string
	}{
		{`{"HostComputeEndpoints":["a"],"Setting":[{"DestinationPrefix":"10.0.0.0/8","NextHop":"10.7.0.1","NeedEncap":true}]}`, "field Setting[0].NeedEncap"},
		{`{"HostComputeEndpoints":["a"],"Setting":[{"DestinationPrefix":"10.0.0.0/8","NextHop":"fd00::1"}]}`, "field Setting[0].NextHop"},
		{`{"HostComputeEndpoints":["a"],"Setting":[{"DestinationPrefix":"10.0.0/8"}]}`, "field Setting[0].DestinationPrefix"},
		{`{"HostComputeEndpoints":["a"],"Setting":[]}`, "field Setting"},
		{`{"Setting":[{"DestinationPrefix":"10.0.0.0/8"}]}`, "field HostComputeEndpoints"},
		{`{"HostComputeEndpoints":["a","a"],"Setting":[{"DestinationPrefix":"10.0.0.0/8"}]}`, "field HostComputeEndpoints[1]"},
		{`{"HostComputeEndpoints":["a"],"Setting":[{"DestinationPrefix":"10.0.0.0/8"},{"DestinationPrefix":"10.0.0.0/8","NextHop":"10.7.0.1"}]}`, "field Setting[1].DestinationPrefix"},
		{`{"HostComputeEndpoints":["a"],"Setting":[{"DestinationPrefix":"10.0.0.0/8"}],"Flags":4}`, "field Flags"},
		{`{"HostComputeEndpoints":["a"],"Setting":[{"DestinationPrefix":"10.0.0.0/8"}],"SchemaVersion":{"Major":1}}`, "SchemaVersion"},
	} {
		var r HostComputeRoute
		if err := json.Unmarshal([]byte(c.doc), &r); err != nil {
			t.Fatal(err)
		}
		_, err := ParseRoute(&r)
		if err == nil || !strings.Contains(err.Error(), c.want) || CodeOf(err) == 0 {
			t.Errorf("%s: %v, want a 400 naming %s", c.doc, err, c.want)
		}
	}
}

// FuzzRoute checks route documents as the other documents are checked:
// they round-trip, a rejection is an API error with a message, and what
// is accepted is storable and validates the same as stored.
func FuzzRoute(f *testing.F) {
	f.Add([]byte(`{"HostComputeEndpoints":["a"],"Setting":[{"DestinationPrefix":"169.254.169.254/24","NextHop":"127.10.0.33"}],"SchemaVersion":{"Major":2}}`))
	f.Add([]byte(`{"ID":"x","HostComputeEndpoints":["a","b"],"Setting":[{"DestinationPrefix":"::/0","NextHop":"fe80::1","NeedEncap":true}],"Flags":1,"Extra":{}}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		fuzzDocument(t, data, "route", "ParseRoute", ParseRoute)
	})
}
