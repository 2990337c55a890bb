package api

import (
	"encoding/json"
	"errors"
	"net/http"
	"strings"
	"testing"
)

func TestParseQoS(t *testing.T) {
	good := []struct {
		settings string
		want     QoSSpec
	}{
		{`{"MaximumOutgoingBandwidthInBytes":0}`, QoSSpec{}},
		{`{"MaximumOutgoingBandwidthInBytes":1000000}`, QoSSpec{Outgoing: Rate{BytesPerSecond: 1000000}}},
		{`{"MaximumOutgoingBandwidthInBytes":1000,"OutgoingBurstInBytes":32768,"MaximumIncomingBandwidthInBytes":2000000}`,
			QoSSpec{Outgoing: Rate{1000, 32768}, Incoming: Rate{BytesPerSecond: 2000000}}},
	}
	for _, c := range good {
		got, err := ParseQoS("endpoint e", 0, Policy{Type: QOS, Settings: json.RawMessage(c.settings)})
		if err != nil || got != c.want {
			t.Errorf("%s: got %+v, %v; want %+v", c.settings, got, err, c.want)
		}
	}
	bad := []struct{ settings, field string }{
		{`{"MaximumOutgoingBandwidthInBytes":999}`, "Policies[2].Settings.MaximumOutgoingBandwidthInBytes: 999"},
		{`{"MaximumOutgoingBandwidthInBytes":1099511627777}`, "Policies[2].Settings.MaximumOutgoingBandwidthInBytes: 1099511627777"},
		{`{"MaximumOutgoingBandwidthInBytes":5000,"OutgoingBurstInBytes":100}`, "Policies[2].Settings.OutgoingBurstInBytes: 100"},
		{`{"MaximumIncomingBandwidthInBytes":1000,"IncomingBurstInBytes":100000}`, "Policies[2].Settings.IncomingBurstInBytes: 100000: a burst holds at most 60 seconds"},
		{`{"IncomingBurstInBytes":100000}`, "Policies[2].Settings.IncomingBurstInBytes: 100000"},
		{`{"MaximumOutgoingBandwidthInBytes":-1}`, "Policies[2] (QOS)"},
		{`{"MaximumOutgoingBandwidth":5}`, "Policies[2] (QOS)"},
	}
	for _, c := range bad {
		_, err := ParseQoS("endpoint e", 2, Policy{Type: QOS, Settings: json.RawMessage(c.settings)})
		var e *Error
		if !errors.As(err, &e) || e.Status != http.StatusBadRequest || e.Code != CodeInvalidPolicy || !strings.Contains(e.Message, c.field) {
			t.Errorf("%s: got %v, want a 400 naming %q", c.settings, err, c.field)
		}
	}
}

func TestRateBurst(t *testing.T) {
	if b := (Rate{BytesPerSecond: 4 << 20}).Burst(); b != (4<<20)/50 {
		t.Errorf("default burst of 4 MiB/s: %d", b)
	}
	if b := (Rate{BytesPerSecond: 1000}).Burst(); b != MinBurstBytes {
		t.Errorf("default burst of 1000 B/s: %d", b)
	}
	if b := (Rate{BytesPerSecond: 1000, BurstBytes: 70000}).Burst(); b != 70000 {
		t.Errorf("given burst: %d", b)
	}
}
