package api

import (
	"encoding/json"
	"errors"
	"strings"
	"testing"
)

func TestAutomaticDNSPolicy(t *testing.T) {
	for _, tc := range []struct {
		settings string
		want     bool
		err      string
	}{
		{`{"Enable":true}`, true, ""},
		{`{"Enable":false}`, false, ""},
		{`{}`, false, ""},
		{`{"Enable":"yes"}`, false, "Policies[0].Settings"},
		{`{"Enabled":true}`, false, "Policies[0].Settings"},
	} {
		n := &Network{Policies: []Policy{{Type: "AutomaticDNS", Settings: json.RawMessage(tc.settings)}}}
		spec, err := ParseNetwork(n)
		if tc.err != "" {
			if err == nil || !strings.Contains(err.Error(), tc.err) {
				t.Errorf("%s: err %v, want one naming %s", tc.settings, err, tc.err)
			}
			continue
		}
		if err != nil || spec.AutomaticDNS != tc.want {
			t.Errorf("%s: AutomaticDNS %v, err %v; want %v", tc.settings, spec != nil && spec.AutomaticDNS, err, tc.want)
		}
	}
}

func TestDnsAliases(t *testing.T) {
	ok := [][]string{nil, {"web"}, {"web", "www.example", "my_app-1"}}
	for _, a := range ok {
		if _, err := ParseEndpoint(&Endpoint{DnsAliases: a}); err != nil {
			t.Errorf("%q: %v", a, err)
		}
	}
	bad := []struct {
		aliases []string
		field   string
	}{
		{[]string{""}, "DnsAliases[0]"},
		{[]string{"web", "a..b"}, "DnsAliases[1]"},
		{[]string{"has space"}, "DnsAliases[0]"},
		{[]string{"web."}, "DnsAliases[0]"},
		{[]string{strings.Repeat("a", 64)}, "DnsAliases[0]"},
		{[]string{"web", "WEB"}, "DnsAliases[1]"},
		{make([]string, MaxDNSEntries+1), "DnsAliases"},
	}
	for _, tc := range bad {
		_, err := ParseEndpoint(&Endpoint{DnsAliases: tc.aliases})
		var e *Error
		if err == nil || !strings.Contains(err.Error(), "field "+tc.field) || !errors.As(err, &e) || e.Status != 400 {
			t.Errorf("%q: err %v, want a 400 naming %s", tc.aliases, err, tc.field)
		}
	}
}
