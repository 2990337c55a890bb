// Package ipam hands out IP addresses and MAC addresses from a network's
// pools. It keeps its state in the store, inside the caller's transaction,
// so an allocation lands together with the object that holds it, or not at
// all; and since store updates are serialised, an address is never handed
// out twice, also under concurrent requests.
package ipam

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"net/netip"

	"github.com/hostnet/hostnet/api"
	"github.com/hostnet/hostnet/internal/store"
)

// ErrExhausted is returned when a pool has no free address left.
var ErrExhausted = errors.New("no free address")

// InUseError is returned when a requested address is already held, or is
// one that is never handed out.
type InUseError struct {
	Addr   string // the address, IP or MAC
	Owner  string // who holds it (an endpoint ID), or "" when Reason is set
	Reason string // why a reserved address cannot be had, e.g. "the gateway address of its subnet"
}

func (e *InUseError) Error() string {
	if e.Reason != "" {
		return fmt.Sprintf("%s is %s", e.Addr, e.Reason)
	}
	return fmt.Sprintf("%s is already in use by %s", e.Addr, e.Owner)
}

// OutOfRangeError is returned when a requested address is outside the pool.
type OutOfRangeError struct {
	Addr   netip.Addr
	Subnet netip.Prefix
}

func (e *OutOfRangeError) Error() string {
	return fmt.Sprintf("%s is outside subnet %s", e.Addr, e.Subnet)
}

// Pool is the address pool of one subnet of a network.
type Pool struct {
	// ID keys the pool's state in the store; the service uses
	// "<network ID>/<subnet>".
	ID             string
	Subnet         netip.Prefix
	Range          netip.Prefix // automatic allocation takes from here
	Gateway        netip.Addr
	ReserveGateway bool
}

// NewPool returns the pool of a validated subnet of a network.
func NewPool(networkID string, s api.SubnetSpec) Pool {
	return Pool{
		ID:             networkID + "/" + s.Prefix.String(),
		Subnet:         s.Prefix,
		Range:          s.Range,
		Gateway:        s.Gateway,
		ReserveGateway: s.ReserveGateway,
	}
}

func addrKey(a netip.Addr) string {
	b := a.AsSlice()
	return hex.EncodeToString(b)
}

func (p Pool) key(a netip.Addr) string { return p.ID + "/" + addrKey(a) }
func (p Pool) cursorKey() string       { return "ipam-cursor/" + p.ID }

// reserved reports why a can never be handed out, or "".
func (p Pool) reserved(a netip.Addr) string {
	switch {
	case a == p.Subnet.Addr():
		return "the network address of its subnet"
	case a.Is4() && a == api.LastAddr(p.Subnet):
		return "the broadcast address of its subnet"
	case p.ReserveGateway && a == p.Gateway:
		return "the gateway address of its subnet"
	}
	return ""
}

// Reserve records a as held by owner. It fails with *OutOfRangeError when a
// is outside the subnet and with *InUseError when a is reserved or held by
// another owner; holding it already is not an error (Reserve is idempotent).
func (p Pool) Reserve(tx store.Tx, a netip.Addr, owner string) error {
	if !p.Subnet.Contains(a) {
		return &OutOfRangeError{Addr: a, Subnet: p.Subnet}
	}
	if why := p.reserved(a); why != "" {
		return &InUseError{Addr: a.String(), Reason: why}
	}
	held, err := tx.Get(store.IPAM, p.key(a))
	switch {
	case err == nil && string(held) == owner:
		return nil
	case err == nil:
		return &InUseError{Addr: a.String(), Owner: string(held)}
	case !errors.Is(err, store.ErrNotFound):
		return err
	}
	return tx.Put(store.IPAM, p.key(a), []byte(owner))
}

// Allocate hands a free address of the range to owner. It walks on from the
// last address handed out, so a released address is not reused at once
// (a late packet for the old holder does not reach a new one).
func (p Pool) Allocate(tx store.Tx, owner string) (netip.Addr, error) {
	first := p.Range.Addr()
	last := api.LastAddr(p.Range)
	start := first
	if b, err := tx.Get(store.Meta, p.cursorKey()); err == nil {
		if c, ok := netip.AddrFromSlice(b); ok && p.Range.Contains(c) && c != last {
			start = c.Next()
		}
	}
	a := start
	for {
		if p.reserved(a) == "" {
			_, err := tx.Get(store.IPAM, p.key(a))
			if errors.Is(err, store.ErrNotFound) {
				if err := tx.Put(store.IPAM, p.key(a), []byte(owner)); err != nil {
					return netip.Addr{}, err
				}
				if err := tx.Put(store.Meta, p.cursorKey(), a.AsSlice()); err != nil {
					return netip.Addr{}, err
				}
				return a, nil
			}
			if err != nil {
				return netip.Addr{}, err
			}
		}
		if a == last {
			a = first
		} else {
			a = a.Next()
		}
		if a == start {
			return netip.Addr{}, fmt.Errorf("range %s of subnet %s: %w", p.Range, p.Subnet, ErrExhausted)
		}
	}
}

// Release frees a if owner holds it; releasing an address that is free or
// held by someone else changes nothing (so a retried delete is harmless).
func (p Pool) Release(tx store.Tx, a netip.Addr, owner string) error {
	held, err := tx.Get(store.IPAM, p.key(a))
	if errors.Is(err, store.ErrNotFound) || (err == nil && string(held) != owner) {
		return nil
	}
	if err != nil {
		return err
	}
	return tx.Delete(store.IPAM, p.key(a))
}

// Holdings returns every held address of the pool and its owner.
func (p Pool) Holdings(tx store.Tx) (map[netip.Addr]string, error) {
	out := map[netip.Addr]string{}
	err := tx.ForEach(store.IPAM, p.ID+"/", func(k string, v []byte) error {
		b, err := hex.DecodeString(k[len(p.ID)+1:])
		if err != nil {
			return fmt.Errorf("bad IPAM key %q", k)
		}
		a, _ := netip.AddrFromSlice(b)
		out[a] = string(v)
		return nil
	})
	return out, err
}

// Drop forgets the pool's whole state, for when its network is deleted.
func (p Pool) Drop(tx store.Tx) error {
	return dropPrefix(tx, p.ID+"/", p.cursorKey())
}

func dropPrefix(tx store.Tx, prefix, cursor string) error {
	var keys []string
	if err := tx.ForEach(store.IPAM, prefix, func(k string, _ []byte) error {
		keys = append(keys, k)
		return nil
	}); err != nil {
		return err
	}
	for _, k := range keys {
		if err := tx.Delete(store.IPAM, k); err != nil {
			return err
		}
	}
	return tx.Delete(store.Meta, cursor)
}

// MACPool hands out MAC addresses of one network: from its MacPool ranges
// when it has some, else a stable locally administered address derived
// from the endpoint. Every MAC in use on the network is recorded, so a
// static MAC cannot collide with one handed out.
type MACPool struct {
	NetworkID string
	Ranges    []api.MacRangeSpec
}

func (m MACPool) prefix() string                  { return "mac/" + m.NetworkID + "/" }
func (m MACPool) key(mac net.HardwareAddr) string { return m.prefix() + hex.EncodeToString(mac) }
func (m MACPool) cursorKey() string               { return "mac-cursor/" + m.NetworkID }

// Reserve records mac as held by owner (idempotent for the same owner).
func (m MACPool) Reserve(tx store.Tx, mac net.HardwareAddr, owner string) error {
	held, err := tx.Get(store.IPAM, m.key(mac))
	switch {
	case err == nil && string(held) == owner:
		return nil
	case err == nil:
		return &InUseError{Addr: api.FormatMAC(mac), Owner: string(held)}
	case !errors.Is(err, store.ErrNotFound):
		return err
	}
	return tx.Put(store.IPAM, m.key(mac), []byte(owner))
}

// Allocate hands out a MAC for owner. seed is the endpoint's first IPv4
// address when it has one: without ranges the MAC is then 02-xx-a-b-c-d
// (xx from the network ID), unique on the network because the address is.
func (m MACPool) Allocate(tx store.Tx, owner string, seed netip.Addr) (net.HardwareAddr, error) {
	if len(m.Ranges) == 0 {
		mac := StableMAC(m.NetworkID, owner, seed)
		for i := 0; i < 16; i++ {
			err := m.Reserve(tx, mac, owner)
			var inUse *InUseError
			if !errors.As(err, &inUse) {
				return mac, err
			}
			// A static MAC took the derived one: derive another.
			mac = StableMAC(m.NetworkID, fmt.Sprintf("%s/%d", owner, i), netip.Addr{})
		}
		return nil, fmt.Errorf("no free MAC address derived for %s: %w", owner, ErrExhausted)
	}
	var cursor uint64
	if b, err := tx.Get(store.Meta, m.cursorKey()); err == nil && len(b) == 6 {
		cursor = api.MACToUint64(b)
	}
	// Walk the ranges in order from after the cursor, wrapping once.
	var total uint64
	for _, r := range m.Ranges {
		total += r.End - r.Start + 1
	}
	pos := uint64(0) // index into the concatenated ranges
	if cursor != 0 {
		var off uint64
		for _, r := range m.Ranges {
			if cursor >= r.Start && cursor <= r.End {
				pos = off + cursor - r.Start + 1
				break
			}
			off += r.End - r.Start + 1
		}
	}
	at := func(i uint64) uint64 {
		for _, r := range m.Ranges {
			n := r.End - r.Start + 1
			if i < n {
				return r.Start + i
			}
			i -= n
		}
		return 0
	}
	for n := uint64(0); n < total; n++ {
		v := at((pos + n) % total)
		mac := api.MACFromUint64(v)
		_, err := tx.Get(store.IPAM, m.key(mac))
		if errors.Is(err, store.ErrNotFound) {
			if err := tx.Put(store.IPAM, m.key(mac), []byte(owner)); err != nil {
				return nil, err
			}
			return mac, tx.Put(store.Meta, m.cursorKey(), mac)
		}
		if err != nil {
			return nil, err
		}
	}
	return nil, fmt.Errorf("MAC pool of network %s: %w", m.NetworkID, ErrExhausted)
}

// Release frees mac if owner holds it.
func (m MACPool) Release(tx store.Tx, mac net.HardwareAddr, owner string) error {
	held, err := tx.Get(store.IPAM, m.key(mac))
	if errors.Is(err, store.ErrNotFound) || (err == nil && string(held) != owner) {
		return nil
	}
	if err != nil {
		return err
	}
	return tx.Delete(store.IPAM, m.key(mac))
}

// Drop forgets every MAC of the network.
func (m MACPool) Drop(tx store.Tx) error {
	return dropPrefix(tx, m.prefix(), m.cursorKey())
}

// StableMAC derives a locally administered unicast MAC: 02-xx-a-b-c-d from
// an IPv4 address, else 02 and five bytes of a hash of the owner.
func StableMAC(networkID, owner string, seed netip.Addr) net.HardwareAddr {
	if seed.Is4() {
		h := sha256.Sum256([]byte(networkID))
		b := seed.As4()
		return net.HardwareAddr{0x02, h[0], b[0], b[1], b[2], b[3]}
	}
	h := sha256.Sum256([]byte(networkID + "/" + owner))
	return net.HardwareAddr{0x02, h[0], h[1], h[2], h[3], h[4]}
}
