package dhcp

import (
	"bytes"
	"encoding/binary"
	"errors"
	"net"
	"net/netip"
	"reflect"
	"testing"
	"time"
)

func mustMAC(t testing.TB, s string) net.HardwareAddr {
	t.Helper()
	m, err := net.ParseMAC(s)
	if err != nil {
		t.Fatal(err)
	}
	return m
}

func ackMessage(t testing.TB) *Message {
	m := &Message{
		Op:      BootReply,
		HType:   1,
		XID:     0xdeadbeef,
		Flags:   flagBroadcast,
		CIAddr:  netip.MustParseAddr("0.0.0.0"),
		YIAddr:  netip.MustParseAddr("192.0.2.100"),
		SIAddr:  netip.MustParseAddr("0.0.0.0"),
		GIAddr:  netip.MustParseAddr("0.0.0.0"),
		CHAddr:  mustMAC(t, "02:00:00:00:00:01"),
		SName:   "server",
		Options: Options{OptMessageType: {byte(Ack)}},
	}
	m.Options.SetAddrs(OptSubnetMask, netip.MustParseAddr("255.255.255.0"))
	m.Options.SetAddrs(OptRouter, netip.MustParseAddr("192.0.2.1"), netip.MustParseAddr("192.0.2.2"))
	m.Options.SetAddrs(OptDNS, netip.MustParseAddr("192.0.2.53"))
	m.Options.SetAddrs(OptServerID, netip.MustParseAddr("192.0.2.1"))
	m.Options.SetDuration(OptLeaseTime, time.Hour)
	m.Options.SetDuration(OptRenewalTime, 20*time.Minute)
	m.Options.SetDuration(OptRebindingTime, 40*time.Minute)
	m.Options[OptDomainName] = []byte("example.test")
	m.Options[OptHostname] = []byte("ep1")
	m.Options[OptClientID] = []byte{1, 2, 0, 0, 0, 0, 1}
	m.Options[OptParamRequest] = []byte{1, 3, 6, 15, 51, 58, 59}
	return m
}

func TestEncodeLayout(t *testing.T) {
	m := &Message{Op: BootRequest, HType: 1, XID: 0x01020304, Secs: 7, Flags: flagBroadcast,
		CHAddr: mustMAC(t, "02:aa:bb:cc:dd:ee"), Options: Options{OptMessageType: {byte(Discover)}}}
	m.Options.SetAddrs(OptRequestedIP, netip.MustParseAddr("192.0.2.7"))
	b, err := m.Encode()
	if err != nil {
		t.Fatal(err)
	}
	if len(b) != minLen {
		t.Errorf("length %d, want the BOOTP minimum %d", len(b), minLen)
	}
	head := []byte{1, 1, 6, 0, 1, 2, 3, 4, 0, 7, 0x80, 0}
	if !bytes.Equal(b[:12], head) {
		t.Errorf("header % x, want % x", b[:12], head)
	}
	if !bytes.Equal(b[28:34], m.CHAddr) {
		t.Errorf("chaddr % x", b[28:34])
	}
	if c := binary.BigEndian.Uint32(b[236:]); c != magicCookie {
		t.Errorf("cookie %#x", c)
	}
	// Message type first, then by code, then the end option.
	opts := []byte{53, 1, 1, 50, 4, 192, 0, 2, 7, 255}
	if !bytes.Equal(b[240:240+len(opts)], opts) {
		t.Errorf("options % x, want % x", b[240:240+len(opts)], opts)
	}
}

func TestRoundTrip(t *testing.T) {
	m := ackMessage(t)
	b, err := m.Encode()
	if err != nil {
		t.Fatal(err)
	}
	got, err := Decode(b)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got, m) {
		t.Errorf("round trip:\n got %+v\nwant %+v", got, m)
	}
	if got.Type() != Ack || !got.Broadcast() {
		t.Errorf("type %s broadcast %v", got.Type(), got.Broadcast())
	}
}

func TestLongOptionSplitAndJoined(t *testing.T) {
	m := &Message{Op: BootReply, HType: 1, Options: Options{OptMessageType: {byte(Offer)}}}
	var dns []netip.Addr
	for i := range 100 { // 400 bytes: two parts
		dns = append(dns, netip.AddrFrom4([4]byte{192, 0, 2, byte(i)}))
	}
	m.Options.SetAddrs(OptDNS, dns...)
	b, err := m.Encode()
	if err != nil {
		t.Fatal(err)
	}
	if n := bytes.Count(b, []byte{byte(OptDNS), 255}); n != 1 {
		t.Errorf("a 255-byte part %d times, want 1", n)
	}
	got, err := Decode(b)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got.Options.Addrs(OptDNS), dns) {
		t.Errorf("DNS servers after a split: %v", got.Options.Addrs(OptDNS))
	}
}

// raw is a reply whose options area is opts, and whose sname and file
// fields are given.
func raw(opts, sname, file []byte) []byte {
	b := make([]byte, 240)
	b[0], b[1], b[2] = 2, 1, 6
	copy(b[44:108], sname)
	copy(b[108:236], file)
	binary.BigEndian.PutUint32(b[236:], magicCookie)
	return append(b, opts...)
}

func TestDecodeOverload(t *testing.T) {
	// Option 52 = 3: options go on in file, then in sname.
	b := raw([]byte{53, 1, 5, 52, 1, 3, 0, 255},
		[]byte{15, 4, 't', 'e', 's', 't', 255},
		[]byte{51, 4, 0, 0, 0x0e, 0x10, 15, 3, 'a', '.', 'b', 255})
	m, err := Decode(b)
	if err != nil {
		t.Fatal(err)
	}
	if d, _ := m.Options.Duration(OptLeaseTime); d != time.Hour {
		t.Errorf("lease time from file: %s", d)
	}
	// RFC 3396: the parts join in the order options, file, sname.
	if s := m.Options.String(OptDomainName); s != "a.btest" {
		t.Errorf("domain joined from file and sname: %q", s)
	}
	if m.SName != "" || m.File != "" {
		t.Errorf("overloaded fields kept as text: %q %q", m.SName, m.File)
	}
	if _, ok := m.Options[OptOverload]; ok {
		t.Error("option 52 kept after it was applied")
	}
}

func TestDecodeRefuses(t *testing.T) {
	good := raw([]byte{53, 1, 2, 255}, nil, nil)
	badCookie := bytes.Clone(good)
	badCookie[236] = 0
	longHW := bytes.Clone(good)
	longHW[2] = 17
	for name, b := range map[string][]byte{
		"short":            good[:239],
		"bad cookie":       badCookie,
		"hlen 17":          longHW,
		"no length":        raw([]byte{53}, nil, nil),
		"overrun":          raw([]byte{53, 5, 1}, nil, nil),
		"overrun in file":  raw([]byte{52, 1, 1, 255}, nil, bytes.Repeat([]byte{15}, 128)),
		"overrun in sname": raw([]byte{52, 1, 2, 255}, []byte{1, 200}, nil),
	} {
		if _, err := Decode(b); !errors.Is(err, ErrMalformed) {
			t.Errorf("%s: %v, want ErrMalformed", name, err)
		}
	}
	// Pads, no end option, and a message cut right after its options are
	// all fine.
	if m, err := Decode(raw([]byte{0, 0, 53, 1, 2}, nil, nil)); err != nil || m.Type() != Offer {
		t.Errorf("no end option: %v", err)
	}
}

func TestEncodeRefuses(t *testing.T) {
	for name, m := range map[string]*Message{
		"long chaddr": {CHAddr: make([]byte, 17)},
		"ipv6 header": {CIAddr: netip.MustParseAddr("2001:db8::1")},
		"long sname":  {SName: string(make([]byte, 65))},
		"option 0":    {Options: Options{OptPad: {1}}},
		"option 52":   {Options: Options{OptOverload: {1}}},
		"option 255":  {Options: Options{OptEnd: nil}},
	} {
		if _, err := m.Encode(); err == nil {
			t.Errorf("%s: encoded", name)
		}
	}
}

func TestOptionAccessors(t *testing.T) {
	o := Options{
		OptServerID:   {192, 0, 2, 1},
		OptRouter:     {192, 0, 2, 1, 192, 0, 2},
		OptDomainName: []byte("example.test\x00"),
		OptLeaseTime:  {0, 0, 1},
	}
	if a, ok := o.Addr(OptServerID); !ok || a != netip.MustParseAddr("192.0.2.1") {
		t.Errorf("Addr: %s %v", a, ok)
	}
	if a := o.Addrs(OptRouter); a != nil {
		t.Errorf("Addrs of 7 bytes: %v, want nil", a)
	}
	if _, ok := o.Duration(OptLeaseTime); ok {
		t.Error("Duration of 3 bytes accepted")
	}
	if s := o.String(OptDomainName); s != "example.test" {
		t.Errorf("String: %q", s)
	}
	o.SetDuration(OptLeaseTime, 200*365*24*time.Hour)
	if !bytes.Equal(o[OptLeaseTime], []byte{255, 255, 255, 255}) {
		t.Errorf("a lease over 2^32 s: % x, want infinity", o[OptLeaseTime])
	}
	o.SetAddrs(OptDNS, netip.MustParseAddr("2001:db8::1"), netip.MustParseAddr("192.0.2.53"))
	if !bytes.Equal(o[OptDNS], []byte{192, 0, 2, 53}) {
		t.Errorf("SetAddrs with IPv6: % x", o[OptDNS])
	}
	if MessageType(5).String() != "DHCPACK" || MessageType(42).String() != "DHCP(42)" {
		t.Error("MessageType.String")
	}
}

// FuzzDecode: Decode never panics, and what it accepts encodes and
// decodes to itself.
func FuzzDecode(f *testing.F) {
	b, _ := ackMessage(f).Encode()
	f.Add(b)
	f.Add(raw([]byte{53, 1, 5, 52, 1, 3, 0, 255}, []byte{15, 1, 'x', 255}, []byte{51, 4, 0, 0, 0, 60, 255}))
	f.Add(raw([]byte{53}, nil, nil))
	f.Fuzz(func(t *testing.T, b []byte) {
		m, err := Decode(b)
		if err != nil {
			if !errors.Is(err, ErrMalformed) {
				t.Fatalf("error %v does not wrap ErrMalformed", err)
			}
			return
		}
		m.Type()
		m.Options.Addrs(OptDNS)
		if _, err := LeaseFromAck(m, time.Now(), netip.Addr{}); err == nil {
			m.Options.Duration(OptLeaseTime)
		}
		out, err := m.Encode()
		if err != nil {
			t.Fatalf("decoded message does not encode: %v", err)
		}
		again, err := Decode(out)
		if err != nil {
			t.Fatalf("re-encoded message does not decode: %v", err)
		}
		if !reflect.DeepEqual(again, m) {
			t.Fatalf("round trip differs:\n got %+v\nwant %+v", again, m)
		}
	})
}
