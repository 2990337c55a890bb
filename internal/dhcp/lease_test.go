package dhcp

import (
	"encoding/json"
	"net/netip"
	"reflect"
	"strings"
	"testing"
	"time"
)

func TestLeaseFromAck(t *testing.T) {
	now := time.Date(2025, 1, 2, 3, 4, 5, 0, time.UTC)
	l, err := LeaseFromAck(ackMessage(t), now, netip.MustParseAddr("192.0.2.9"))
	if err != nil {
		t.Fatal(err)
	}
	want := Lease{
		Addr:     netip.MustParsePrefix("192.0.2.100/24"),
		Router:   netip.MustParseAddr("192.0.2.1"),
		DNS:      []netip.Addr{netip.MustParseAddr("192.0.2.53")},
		Domain:   "example.test",
		ServerID: netip.MustParseAddr("192.0.2.1"),
		Obtained: now,
		Duration: time.Hour,
		T1:       20 * time.Minute,
		T2:       40 * time.Minute,
	}
	if !reflect.DeepEqual(l, want) {
		t.Fatalf("lease\n got %+v\nwant %+v", l, want)
	}
	if !l.RenewAt().Equal(now.Add(20*time.Minute)) || !l.RebindAt().Equal(now.Add(40*time.Minute)) || !l.Expiry().Equal(now.Add(time.Hour)) {
		t.Errorf("times: %s %s %s", l.RenewAt(), l.RebindAt(), l.Expiry())
	}
	if !l.Valid(now.Add(59*time.Minute)) || l.Valid(now.Add(time.Hour)) || (Lease{}).Valid(now) {
		t.Error("Valid")
	}

	// The store keeps it as JSON.
	b, err := json.Marshal(l)
	if err != nil {
		t.Fatal(err)
	}
	var back Lease
	if err := json.Unmarshal(b, &back); err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(back, l) {
		t.Errorf("JSON round trip %s:\n got %+v", b, back)
	}
	if !strings.Contains(string(b), `"Addr":"192.0.2.100/24"`) {
		t.Errorf("JSON: %s", b)
	}
}

func TestLeaseFromAckDefaults(t *testing.T) {
	m := ackMessage(t)
	delete(m.Options, OptSubnetMask)
	delete(m.Options, OptServerID)
	delete(m.Options, OptRouter)
	m.Options.SetDuration(OptRenewalTime, 2*time.Hour) // after T2: ignored
	delete(m.Options, OptRebindingTime)
	m.YIAddr = netip.MustParseAddr("172.16.5.5")
	from := netip.MustParseAddr("172.16.0.1")
	l, err := LeaseFromAck(m, time.Now(), from)
	if err != nil {
		t.Fatal(err)
	}
	if l.Addr.Bits() != 16 || l.ServerID != from || l.Router.IsValid() {
		t.Errorf("class B default, server from source, no router: %+v", l)
	}
	if l.T1 != 30*time.Minute || l.T2 != 52*time.Minute+30*time.Second {
		t.Errorf("T1 %s T2 %s, want RFC 2131's defaults", l.T1, l.T2)
	}

	for name, change := range map[string]func(*Message){
		"no address":    func(m *Message) { m.YIAddr = netip.MustParseAddr("0.0.0.0") },
		"no lease time": func(m *Message) { delete(m.Options, OptLeaseTime) },
		"bad mask":      func(m *Message) { m.Options[OptSubnetMask] = []byte{255, 0, 255, 0} },
	} {
		m := ackMessage(t)
		change(m)
		if _, err := LeaseFromAck(m, time.Now(), from); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
}
