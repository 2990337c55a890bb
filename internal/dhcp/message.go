// Package dhcp is a DHCPv4 client (RFC 2131, options of RFC 2132) that
// runs on one interface inside a network namespace, and the encoding of
// DHCP messages it and test servers share.
//
// The client only obtains, keeps and gives back leases: applying the
// leased address, routes and DNS to the interface is its caller's job.
// It knows nothing of hostnet's daemon; the lease it reports is plain
// data the caller may store (it marshals to JSON) and hand back after a
// restart, so that the same address is asked for again.
package dhcp

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"slices"
	"strings"
	"time"
)

// Ports of RFC 2131.
const (
	ServerPort = 67
	ClientPort = 68
)

// Op is the BOOTP op field.
type Op uint8

// BOOTP ops.
const (
	BootRequest Op = 1
	BootReply   Op = 2
)

// MessageType is the DHCP message type (option 53).
type MessageType uint8

// Message types of RFC 2132 9.6.
const (
	Discover MessageType = 1
	Offer    MessageType = 2
	Request  MessageType = 3
	Decline  MessageType = 4
	Ack      MessageType = 5
	Nak      MessageType = 6
	Release  MessageType = 7
	Inform   MessageType = 8
)

var typeNames = [...]string{"", "DHCPDISCOVER", "DHCPOFFER", "DHCPREQUEST", "DHCPDECLINE", "DHCPACK", "DHCPNAK", "DHCPRELEASE", "DHCPINFORM"}

func (t MessageType) String() string {
	if int(t) < len(typeNames) && t != 0 {
		return typeNames[t]
	}
	return fmt.Sprintf("DHCP(%d)", uint8(t))
}

// OptionCode is a DHCP option's code.
type OptionCode uint8

// Option codes of RFC 2132 that the client and its tests use.
const (
	OptPad            OptionCode = 0
	OptSubnetMask     OptionCode = 1
	OptRouter         OptionCode = 3
	OptDNS            OptionCode = 6
	OptHostname       OptionCode = 12
	OptDomainName     OptionCode = 15
	OptRequestedIP    OptionCode = 50
	OptLeaseTime      OptionCode = 51
	OptOverload       OptionCode = 52
	OptMessageType    OptionCode = 53
	OptServerID       OptionCode = 54
	OptParamRequest   OptionCode = 55
	OptMessage        OptionCode = 56
	OptMaxMessageSize OptionCode = 57
	OptRenewalTime    OptionCode = 58
	OptRebindingTime  OptionCode = 59
	OptClientID       OptionCode = 61
	OptEnd            OptionCode = 255
)

const (
	htypeEthernet        = 1
	flagBroadcast        = 0x8000
	headerLen            = 236
	minLen               = 300 // BOOTP's minimum; some relays drop shorter
	magicCookie   uint32 = 0x63825363
)

// Options are a message's options by code. A code that appears several
// times in a message is one option, its parts concatenated (RFC 3396).
type Options map[OptionCode][]byte

// Addr returns a single IPv4 address option.
func (o Options) Addr(c OptionCode) (netip.Addr, bool) {
	v, ok := o[c]
	if !ok || len(v) != 4 {
		return netip.Addr{}, false
	}
	return netip.AddrFrom4([4]byte(v)), true
}

// Addrs returns a list-of-addresses option (routers, DNS servers); nil
// when absent or not a whole number of addresses.
func (o Options) Addrs(c OptionCode) []netip.Addr {
	v := o[c]
	if len(v) == 0 || len(v)%4 != 0 {
		return nil
	}
	out := make([]netip.Addr, 0, len(v)/4)
	for i := 0; i < len(v); i += 4 {
		out = append(out, netip.AddrFrom4([4]byte(v[i:i+4])))
	}
	return out
}

// Duration returns a 32-bit count of seconds (lease time, T1, T2).
func (o Options) Duration(c OptionCode) (time.Duration, bool) {
	v, ok := o[c]
	if !ok || len(v) != 4 {
		return 0, false
	}
	return time.Duration(binary.BigEndian.Uint32(v)) * time.Second, true
}

// String returns a text option (hostname, domain name), without the NUL
// bytes some servers end it with.
func (o Options) String(c OptionCode) string {
	return strings.TrimRight(string(o[c]), "\x00")
}

// SetAddrs sets an option to a list of IPv4 addresses; addresses of
// other families cannot be written and are left out.
func (o Options) SetAddrs(c OptionCode, addrs ...netip.Addr) {
	v := make([]byte, 0, 4*len(addrs))
	for _, a := range addrs {
		if !a.Is4() {
			continue
		}
		b := a.As4()
		v = append(v, b[:]...)
	}
	o[c] = v
}

// SetDuration sets a 32-bit seconds option; longer durations are capped
// at 0xffffffff, which means infinity in a lease time.
func (o Options) SetDuration(c OptionCode, d time.Duration) {
	s := d / time.Second
	if s > 0xffffffff {
		s = 0xffffffff
	}
	if s < 0 {
		s = 0
	}
	o[c] = binary.BigEndian.AppendUint32(nil, uint32(s))
}

// Message is a DHCP message: the BOOTP header and its options.
type Message struct {
	Op     Op
	HType  uint8 // hardware type: 1 for Ethernet
	Hops   uint8
	XID    uint32
	Secs   uint16
	Flags  uint16
	CIAddr netip.Addr // zero Addr encodes as 0.0.0.0
	YIAddr netip.Addr
	SIAddr netip.Addr
	GIAddr netip.Addr
	CHAddr net.HardwareAddr // up to 16 bytes
	// SName and File are the header's server name and boot file, when they
	// hold text; when option 52 overloads them with options, Decode moves
	// those into Options and leaves these empty.
	SName   string
	File    string
	Options Options
}

// Type is the message type option; 0 when absent.
func (m *Message) Type() MessageType {
	if v := m.Options[OptMessageType]; len(v) == 1 {
		return MessageType(v[0])
	}
	return 0
}

// Broadcast reports whether the client asked for a broadcast reply.
func (m *Message) Broadcast() bool { return m.Flags&flagBroadcast != 0 }

// ErrMalformed is wrapped by every Decode error.
var ErrMalformed = errors.New("malformed dhcp message")

// Decode parses a DHCP message. It refuses what is not one (short, no
// magic cookie, truncated option, hardware address over 16 bytes) with an
// error wrapping ErrMalformed; it never panics on any input.
func Decode(b []byte) (*Message, error) {
	if len(b) < headerLen+4 {
		return nil, fmt.Errorf("%w: %d bytes, want at least %d", ErrMalformed, len(b), headerLen+4)
	}
	if c := binary.BigEndian.Uint32(b[headerLen:]); c != magicCookie {
		return nil, fmt.Errorf("%w: magic cookie %#x", ErrMalformed, c)
	}
	hlen := int(b[2])
	if hlen > 16 {
		return nil, fmt.Errorf("%w: hardware address length %d", ErrMalformed, hlen)
	}
	m := &Message{
		Op:      Op(b[0]),
		HType:   b[1],
		Hops:    b[3],
		XID:     binary.BigEndian.Uint32(b[4:]),
		Secs:    binary.BigEndian.Uint16(b[8:]),
		Flags:   binary.BigEndian.Uint16(b[10:]),
		CIAddr:  netip.AddrFrom4([4]byte(b[12:16])),
		YIAddr:  netip.AddrFrom4([4]byte(b[16:20])),
		SIAddr:  netip.AddrFrom4([4]byte(b[20:24])),
		GIAddr:  netip.AddrFrom4([4]byte(b[24:28])),
		CHAddr:  slices.Clone(b[28 : 28+hlen]),
		Options: Options{},
	}
	sname, file := b[44:108], b[108:236]
	if err := parseOptions(b[headerLen+4:], m.Options); err != nil {
		return nil, err
	}
	// RFC 2131 4.1: options continue in the file field, then in sname.
	overload := byte(0)
	if v := m.Options[OptOverload]; len(v) == 1 {
		overload = v[0]
	}
	if overload&1 != 0 {
		if err := parseOptions(file, m.Options); err != nil {
			return nil, fmt.Errorf("options in file: %w", err)
		}
	} else {
		m.File = cstring(file)
	}
	if overload&2 != 0 {
		if err := parseOptions(sname, m.Options); err != nil {
			return nil, fmt.Errorf("options in sname: %w", err)
		}
	} else {
		m.SName = cstring(sname)
	}
	delete(m.Options, OptOverload)
	return m, nil
}

func cstring(b []byte) string {
	if i := slices.Index(b, 0); i >= 0 {
		b = b[:i]
	}
	return string(b)
}

// parseOptions adds the options of b to o, concatenating repeats; it
// stops at the end option or at the end of b.
func parseOptions(b []byte, o Options) error {
	for i := 0; i < len(b); {
		c := OptionCode(b[i])
		switch c {
		case OptPad:
			i++
			continue
		case OptEnd:
			return nil
		}
		if i+1 >= len(b) {
			return fmt.Errorf("%w: option %d without length", ErrMalformed, c)
		}
		n := int(b[i+1])
		if i+2+n > len(b) {
			return fmt.Errorf("%w: option %d of %d bytes overruns the message", ErrMalformed, c, n)
		}
		o[c] = append(o[c], b[i+2:i+2+n]...)
		if o[c] == nil {
			o[c] = []byte{}
		}
		i += 2 + n
	}
	return nil
}

// Encode writes the message. Options go after the header, the message
// type first and then by code; one longer than 255 bytes is split into
// parts (RFC 3396). The message is padded to BOOTP's 300 bytes. Encode
// refuses a hardware address over 16 bytes, a header address that is not
// IPv4, header text too long for its field, and options 0, 52 and 255.
func (m *Message) Encode() ([]byte, error) {
	if len(m.CHAddr) > 16 {
		return nil, fmt.Errorf("hardware address of %d bytes, at most 16", len(m.CHAddr))
	}
	if len(m.SName) > 64 || len(m.File) > 128 {
		return nil, fmt.Errorf("sname or file too long")
	}
	b := make([]byte, headerLen+4, minLen)
	b[0] = byte(m.Op)
	b[1] = m.HType
	b[2] = byte(len(m.CHAddr))
	b[3] = m.Hops
	binary.BigEndian.PutUint32(b[4:], m.XID)
	binary.BigEndian.PutUint16(b[8:], m.Secs)
	binary.BigEndian.PutUint16(b[10:], m.Flags)
	for i, a := range []netip.Addr{m.CIAddr, m.YIAddr, m.SIAddr, m.GIAddr} {
		if !a.IsValid() {
			continue
		}
		if !a.Is4() {
			return nil, fmt.Errorf("header address %s is not IPv4", a)
		}
		v := a.As4()
		copy(b[12+4*i:], v[:])
	}
	copy(b[28:44], m.CHAddr)
	copy(b[44:108], m.SName)
	copy(b[108:236], m.File)
	binary.BigEndian.PutUint32(b[headerLen:], magicCookie)

	codes := make([]OptionCode, 0, len(m.Options))
	for c := range m.Options {
		switch c {
		case OptPad, OptEnd, OptOverload:
			return nil, fmt.Errorf("option %d cannot be set", c)
		}
		codes = append(codes, c)
	}
	slices.SortFunc(codes, func(x, y OptionCode) int {
		// Message type first: some servers look for it there.
		switch {
		case x == y:
			return 0
		case x == OptMessageType:
			return -1
		case y == OptMessageType:
			return 1
		}
		return int(x) - int(y)
	})
	for _, c := range codes {
		v := m.Options[c]
		for {
			n := min(len(v), 255)
			b = append(b, byte(c), byte(n))
			b = append(b, v[:n]...)
			v = v[n:]
			if len(v) == 0 {
				break
			}
		}
	}
	b = append(b, byte(OptEnd))
	for len(b) < minLen {
		b = append(b, 0)
	}
	return b, nil
}
