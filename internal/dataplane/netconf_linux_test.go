package dataplane

import (
	"encoding/binary"
	"testing"

	"golang.org/x/sys/unix"
)

// netconfMsg builds the body of an RTM_NEWNETCONF message.
func netconfMsg(family byte, attrs map[uint16]int32) []byte {
	b := []byte{family, 0, 0, 0}
	for _, typ := range []uint16{netconfIfindex, netconfForwarding} {
		v, ok := attrs[typ]
		if !ok {
			continue
		}
		a := make([]byte, 8)
		binary.NativeEndian.PutUint16(a[0:], 8)
		binary.NativeEndian.PutUint16(a[2:], typ)
		binary.NativeEndian.PutUint32(a[4:], uint32(v))
		b = append(b, a...)
	}
	return b
}

func TestForwardingOff(t *testing.T) {
	for _, c := range []struct {
		name   string
		typ    uint16
		data   []byte
		family string
		off    bool
	}{
		{"ip_forward=0", unix.RTM_NEWNETCONF, netconfMsg(unix.AF_INET, map[uint16]int32{netconfIfindex: -1, netconfForwarding: 0}), "IPv4", true},
		{"all.forwarding=0 (IPv6)", unix.RTM_NEWNETCONF, netconfMsg(unix.AF_INET6, map[uint16]int32{netconfIfindex: -1, netconfForwarding: 0}), "IPv6", true},
		{"ip_forward=1", unix.RTM_NEWNETCONF, netconfMsg(unix.AF_INET, map[uint16]int32{netconfIfindex: -1, netconfForwarding: 1}), "IPv4", false},
		{"one device", unix.RTM_NEWNETCONF, netconfMsg(unix.AF_INET, map[uint16]int32{netconfIfindex: 7, netconfForwarding: 0}), "IPv4", false},
		{"the default for new devices", unix.RTM_NEWNETCONF, netconfMsg(unix.AF_INET, map[uint16]int32{netconfIfindex: -2, netconfForwarding: 0}), "IPv4", false},
		{"no forwarding attribute", unix.RTM_NEWNETCONF, netconfMsg(unix.AF_INET, map[uint16]int32{netconfIfindex: -1}), "IPv4", false},
		{"another message", unix.RTM_NEWLINK, netconfMsg(unix.AF_INET, map[uint16]int32{netconfIfindex: -1, netconfForwarding: 0}), "", false},
		{"short", unix.RTM_NEWNETCONF, []byte{unix.AF_INET}, "", false},
	} {
		fam, off := forwardingOff(c.typ, c.data)
		if off != c.off || off && fam != c.family {
			t.Errorf("%s: %q %v, want %q %v", c.name, fam, off, c.family, c.off)
		}
	}
}
