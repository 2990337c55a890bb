package dhcp

import (
	"fmt"
	"net/netip"
	"time"
)

// Lease is an address leased by a DHCP server and the configuration that
// came with it. It marshals to JSON, for the caller's store. The zero
// Lease is no lease.
type Lease struct {
	Addr     netip.Prefix // the leased address and the subnet's length
	Router   netip.Addr   `json:",omitzero"` // the first router offered, if any
	DNS      []netip.Addr `json:",omitempty"`
	Domain   string       `json:",omitempty"`
	ServerID netip.Addr   // the server that granted it: renewals go there
	Obtained time.Time    // when the request that got it was sent
	Duration time.Duration
	T1       time.Duration // from Obtained: renew with the granting server
	T2       time.Duration // from Obtained: rebind with any server
}

// IsZero reports whether l is no lease.
func (l Lease) IsZero() bool { return !l.Addr.IsValid() }

// Expiry is when the lease ends unless renewed.
func (l Lease) Expiry() time.Time { return l.Obtained.Add(l.Duration) }

// RenewAt is when the client starts renewing (T1).
func (l Lease) RenewAt() time.Time { return l.Obtained.Add(l.T1) }

// RebindAt is when the client starts rebinding (T2).
func (l Lease) RebindAt() time.Time { return l.Obtained.Add(l.T2) }

// Valid reports whether l is a lease that has not expired at now.
func (l Lease) Valid(now time.Time) bool { return !l.IsZero() && now.Before(l.Expiry()) }

// String is a one-line summary for logs.
func (l Lease) String() string {
	if l.IsZero() {
		return "no lease"
	}
	return fmt.Sprintf("%s from %s for %s", l.Addr, l.ServerID, l.Duration)
}

// LeaseFromAck reads the lease an ACK grants, obtained at the time the
// request was sent. from (the ACK's source) stands in for a missing
// server identifier. An ACK without an address or a lease time is
// refused; a missing subnet mask is taken from the address's class, and
// T1 and T2 that are missing or out of order get RFC 2131's defaults
// (one half and seven eighths of the lease).
func LeaseFromAck(m *Message, obtained time.Time, from netip.Addr) (Lease, error) {
	if !m.YIAddr.Is4() || m.YIAddr.IsUnspecified() {
		return Lease{}, fmt.Errorf("ack without an address")
	}
	d, ok := m.Options.Duration(OptLeaseTime)
	if !ok || d <= 0 {
		return Lease{}, fmt.Errorf("ack for %s without a lease time", m.YIAddr)
	}
	bits := classBits(m.YIAddr)
	if mask, ok := m.Options[OptSubnetMask]; ok {
		b, ok := maskBits(mask)
		if !ok {
			return Lease{}, fmt.Errorf("ack for %s: subnet mask %x is not a mask", m.YIAddr, mask)
		}
		bits = b
	}
	l := Lease{
		Addr:     netip.PrefixFrom(m.YIAddr, bits),
		DNS:      m.Options.Addrs(OptDNS),
		Domain:   m.Options.String(OptDomainName),
		ServerID: from,
		Obtained: obtained,
		Duration: d,
	}
	if id, ok := m.Options.Addr(OptServerID); ok {
		l.ServerID = id
	}
	if r := m.Options.Addrs(OptRouter); len(r) > 0 {
		l.Router = r[0]
	}
	t1, ok1 := m.Options.Duration(OptRenewalTime)
	t2, ok2 := m.Options.Duration(OptRebindingTime)
	if !ok2 || t2 <= 0 || t2 > d {
		t2 = d * 7 / 8
	}
	if !ok1 || t1 <= 0 || t1 > t2 {
		t1 = min(d/2, t2)
	}
	l.T1, l.T2 = t1, t2
	return l, nil
}

// maskBits is the prefix length of a contiguous 4-byte mask.
func maskBits(m []byte) (int, bool) {
	if len(m) != 4 {
		return 0, false
	}
	v := uint32(m[0])<<24 | uint32(m[1])<<16 | uint32(m[2])<<8 | uint32(m[3])
	bits := 0
	for v&0x80000000 != 0 {
		bits++
		v <<= 1
	}
	return bits, v == 0
}

// classBits is the mask length of a's class (A, B or C), what a host
// assumed before subnet masks were sent.
func classBits(a netip.Addr) int {
	switch b := a.As4()[0]; {
	case b < 128:
		return 8
	case b < 192:
		return 16
	}
	return 24
}
