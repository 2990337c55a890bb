package nftmodel

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"math/bits"
	"net"
	"net/netip"
	"sort"
	"strconv"
	"strings"
)

// value is one field of an element or of a literal match: the inclusive
// range [lo, hi] of encoded (network order, unpadded) values; lo == hi for a
// single value. wild marks an interface-name prefix ("hnbr-*"), where lo
// holds the prefix bytes only. Host-order types (KeyInteger) are held in
// network order too, so that byte order is numeric order; they are
// converted where they meet the kernel (wire).
type value struct {
	lo, hi []byte
	wild   bool
}

func (v value) single() bool { return !v.wild && bytes.Equal(v.lo, v.hi) }

// parseMode says which forms a value may take.
type parseMode int

const (
	modeSingle   parseMode = iota // one value (element of a plain set)
	modeInterval                  // also prefixes and ranges (interval set element)
	modeLiteral                   // also prefixes, ranges, ifname wildcards (match literal)
)

// modeFor is the parse mode of the elements of a set with or without the
// interval flag.
func modeFor(interval bool) parseMode {
	if interval {
		return modeInterval
	}
	return modeSingle
}

// ifNameSize is IFNAMSIZ: an interface name and its NUL.
const ifNameSize = 16

var protoNames = map[string]byte{
	"icmp": 1, "igmp": 2, "tcp": 6, "udp": 17, "gre": 47, "esp": 50, "ah": 51,
	"icmpv6": 58, "sctp": 132, "udplite": 136,
}

var protoByNum = func() map[byte]string {
	m := map[byte]string{}
	for n, v := range protoNames {
		m[v] = n
	}
	return m
}()

var nfprotoNames = map[string]byte{"ipv4": byte(NetProtoIPv4), "ipv6": byte(NetProtoIPv6)}

// protoAliases are other names nft accepts for protocol numbers.
var protoAliases = map[string]byte{"ipv6-icmp": 58}

// EtherTypes of the implicit dependencies (ETH_P_*).
const (
	ethPIP   = 0x0800
	ethPIPv6 = 0x86dd
	ethPARP  = 0x0806
)

// etherTypeNames are the EtherType literals (nft's names).
var etherTypeNames = map[string]uint16{"ip": ethPIP, "ip6": ethPIPv6, "arp": ethPARP, "vlan": 0x8100}

// icmpv6TypeNames are the ICMPv6 type literals (nft's names).
var icmpv6TypeNames = map[string]byte{
	"destination-unreachable": 1, "packet-too-big": 2, "time-exceeded": 3, "parameter-problem": 4,
	"echo-request": 128, "echo-reply": 129,
	"mld-listener-query": 130, "mld-listener-report": 131, "mld-listener-done": 132,
	"nd-router-solicit": 133, "nd-router-advert": 134, "nd-neighbor-solicit": 135,
	"nd-neighbor-advert": 136, "nd-redirect": 137, "router-renumbering": 138,
	"ind-neighbor-solicit": 141, "ind-neighbor-advert": 142, "mld2-listener-report": 143,
}

// icmpTypeNames are the ICMP type literals (nft's names).
var icmpTypeNames = map[string]byte{
	"echo-reply": 0, "destination-unreachable": 3, "source-quench": 4, "redirect": 5,
	"echo-request": 8, "router-advertisement": 9, "router-solicitation": 10, "time-exceeded": 11,
	"parameter-problem": 12, "timestamp-request": 13, "timestamp-reply": 14, "info-request": 15,
	"info-reply": 16, "address-mask-request": 17, "address-mask-reply": 18,
}

// nameOf returns the name that maps to n in names, if any.
func nameOf[N comparable](names map[string]N, n N) (string, bool) {
	for name, v := range names {
		if v == n {
			return name, true
		}
	}
	return "", false
}

// numberParsers parse the numeric key types: a name or a number.
var numberParsers = map[KeyType]func(string) (uint64, error){
	KeyInetService: func(s string) (uint64, error) { return strconv.ParseUint(s, 10, 16) },
	KeyInetProto: func(s string) (uint64, error) {
		if p, ok := protoNames[s]; ok {
			return uint64(p), nil
		}
		if p, ok := protoAliases[s]; ok {
			return uint64(p), nil
		}
		return strconv.ParseUint(s, 10, 8)
	},
	KeyEtherType: func(s string) (uint64, error) {
		if p, ok := etherTypeNames[s]; ok {
			return uint64(p), nil
		}
		return strconv.ParseUint(s, 0, 16)
	},
	KeyICMPv6Type: func(s string) (uint64, error) {
		if p, ok := icmpv6TypeNames[s]; ok {
			return uint64(p), nil
		}
		return strconv.ParseUint(s, 10, 8)
	},
	KeyInteger: func(s string) (uint64, error) { return strconv.ParseUint(s, 10, 32) },
	KeyICMPType: func(s string) (uint64, error) {
		if p, ok := icmpTypeNames[s]; ok {
			return uint64(p), nil
		}
		return strconv.ParseUint(s, 10, 8)
	},
}

// parseValue parses the text of one field of type k.
func (k KeyType) parseValue(text string, mode parseMode) (value, error) {
	if text == "" {
		return value{}, errors.New("empty value")
	}
	ranges := mode != modeSingle
	if num, ok := numberParsers[k]; ok {
		return parseNumRange(text, ranges, k.Size(), num)
	}
	switch k {
	case KeyIfname:
		return parseIfname(text, mode == modeLiteral)
	case KeyIPv4, KeyIPv6:
		return parseAddr(k, text, ranges)
	case KeyEther:
		return parseRange(text, ranges, parseMAC)
	case KeyNFProto:
		p, ok := nfprotoNames[text]
		if !ok {
			return value{}, fmt.Errorf("%q is not ipv4 or ipv6", text)
		}
		return value{lo: []byte{p}, hi: []byte{p}}, nil
	}
	return value{}, fmt.Errorf("unsupported key type %v", k)
}

// parseIfname parses an interface name, bare or double-quoted as nft
// shows it ("hnbr-1" or "\"hnbr-1\""); with wildcard, a name ending in "*"
// is a prefix match.
func parseIfname(text string, wildcard bool) (value, error) {
	if len(text) >= 2 && text[0] == '"' && text[len(text)-1] == '"' {
		if u, err := strconv.Unquote(text); err == nil {
			text = u
		}
	}
	name, wild := text, false
	if wildcard && strings.HasSuffix(text, "*") {
		name, wild = strings.TrimSuffix(text, "*"), true
	}
	if len(name) > ifNameSize-1 {
		return value{}, fmt.Errorf("interface name %q longer than %d bytes", text, ifNameSize-1)
	}
	if strings.ContainsAny(name, "\"*/: \t\n\x00") || (!wild && name == "") {
		return value{}, fmt.Errorf("invalid interface name %q", text)
	}
	if wild {
		return value{lo: []byte(name), wild: true}, nil
	}
	b := make([]byte, ifNameSize)
	copy(b, name)
	return value{lo: b, hi: b}, nil
}

// parseAddr parses an address, a prefix or (with ranges) "LO-HI".
func parseAddr(k KeyType, text string, ranges bool) (value, error) {
	want := "IPv4"
	if k == KeyIPv6 {
		want = "IPv6"
	}
	addr := func(s string) ([]byte, error) {
		a, err := netip.ParseAddr(s)
		if err != nil || a.Zone() != "" || (k == KeyIPv4) != a.Is4() {
			return nil, fmt.Errorf("%q is not an %s address", s, want)
		}
		return a.AsSlice(), nil
	}
	if i := strings.IndexByte(text, '/'); i >= 0 {
		p, err := netip.ParsePrefix(text)
		if err != nil {
			return value{}, fmt.Errorf("%q is not an %s prefix", text, want)
		}
		if _, err := addr(text[:i]); err != nil {
			return value{}, err
		}
		if p.Masked() != p {
			return value{}, fmt.Errorf("prefix %q has host bits set (want %s)", text, p.Masked())
		}
		lo, hi := prefixRange(p)
		if !ranges && lo != hi {
			return value{}, fmt.Errorf("prefix %q needs an interval set", text)
		}
		return value{lo: lo.AsSlice(), hi: hi.AsSlice()}, nil
	}
	return parseRange(text, ranges, addr)
}

// parseMAC parses a colon-separated 6-byte MAC address.
func parseMAC(s string) ([]byte, error) {
	hw, err := net.ParseMAC(s)
	if err != nil || len(hw) != 6 || strings.Count(s, ":") != 5 {
		return nil, fmt.Errorf("%q is not an Ethernet address", s)
	}
	return hw, nil
}

// parseRange parses one value with one, or (with ranges) "LO-HI" split at
// the first dash (the values contain none).
func parseRange(text string, ranges bool, one func(string) ([]byte, error)) (value, error) {
	i := strings.IndexByte(text, '-')
	if i < 0 {
		b, err := one(text)
		if err != nil {
			return value{}, err
		}
		return value{lo: b, hi: b}, nil // lo and hi may share: values are never modified in place
	}
	lo, err := one(text[:i])
	if err != nil {
		return value{}, err
	}
	hi, err := one(text[i+1:])
	if err != nil {
		return value{}, err
	}
	return checkRange(text, ranges, lo, hi)
}

// checkRange returns the range [lo, hi] of text, refusing one that ends
// before it starts or (without ranges) is more than one value.
func checkRange(text string, ranges bool, lo, hi []byte) (value, error) {
	if bytes.Compare(hi, lo) < 0 {
		return value{}, fmt.Errorf("range %q ends before it starts", text)
	}
	if !ranges && !bytes.Equal(lo, hi) {
		return value{}, fmt.Errorf("range %q needs an interval set", text)
	}
	return value{lo: lo, hi: hi}, nil
}

// prefixRange returns the first and last address of p (p is masked).
func prefixRange(p netip.Prefix) (netip.Addr, netip.Addr) {
	b := p.Addr().AsSlice()
	for i := p.Bits(); i < len(b)*8; i++ {
		b[i/8] |= 0x80 >> (i % 8)
	}
	hi, _ := netip.AddrFromSlice(b)
	return p.Addr(), hi
}

// parseNumRange parses a number (or name) of size bytes, or, with ranges,
// "LO-HI". Names may contain dashes ("nd-neighbor-advert"): the whole text
// is tried as one value first, then each dash as the range separator.
func parseNumRange(text string, ranges bool, size int, num func(string) (uint64, error)) (value, error) {
	enc := func(s string) ([]byte, error) {
		n, err := num(s)
		if err != nil {
			return nil, fmt.Errorf("%q is not a valid number", s)
		}
		b := make([]byte, size)
		for i := size - 1; i >= 0; i-- {
			b[i] = byte(n)
			n >>= 8
		}
		return b, nil
	}
	b, err := enc(text)
	if err == nil {
		return value{lo: b, hi: b}, nil
	}
	for i := 1; i < len(text)-1; i++ {
		if text[i] != '-' {
			continue
		}
		lo, err1 := enc(text[:i])
		hi, err2 := enc(text[i+1:])
		if err1 != nil || err2 != nil {
			if strings.Count(text, "-") == 1 && (err1 == nil || err2 == nil) {
				return value{}, errors.Join(err1, err2) // one bound of a range is wrong
			}
			continue
		}
		return checkRange(text, ranges, lo, hi)
	}
	return value{}, err
}

// format returns the canonical text of v (the form Set.Elements accepts and
// the form rendering and kernel read-back produce).
func (k KeyType) format(v value) string {
	one := func(b []byte) string { return k.formatOne(b) }
	switch k {
	case KeyIfname:
		if v.wild {
			return string(v.lo) + "*"
		}
		return one(v.lo)
	case KeyIPv4, KeyIPv6:
		lo, _ := netip.AddrFromSlice(v.lo)
		if isPrefix(v) && !bytes.Equal(v.lo, v.hi) {
			host := 0
			for i := range v.lo {
				host += bits.OnesCount8(v.lo[i] ^ v.hi[i])
			}
			return netip.PrefixFrom(lo, lo.BitLen()-host).String()
		}
	}
	if bytes.Equal(v.lo, v.hi) {
		return one(v.lo)
	}
	return one(v.lo) + "-" + one(v.hi)
}

// formatOne returns the canonical text of one encoded value of type k.
func (k KeyType) formatOne(b []byte) string {
	switch k {
	case KeyIfname:
		return string(bytes.TrimRight(b, "\x00"))
	case KeyIPv4, KeyIPv6:
		a, _ := netip.AddrFromSlice(b)
		return a.String()
	case KeyEther:
		return net.HardwareAddr(b).String()
	case KeyNFProto:
		if name, ok := nameOf(nfprotoNames, b[0]); ok {
			return name
		}
		return strconv.Itoa(int(b[0]))
	case KeyInetService, KeyInetProto, KeyEtherType, KeyICMPv6Type, KeyICMPType, KeyInteger:
		var n uint64
		for _, c := range b {
			n = n<<8 | uint64(c)
		}
		switch k {
		case KeyInetProto:
			if name, ok := protoByNum[byte(n)]; ok {
				return name
			}
		case KeyEtherType:
			if name, ok := nameOf(etherTypeNames, uint16(n)); ok {
				return name
			}
			return fmt.Sprintf("0x%04x", n)
		case KeyICMPv6Type:
			if name, ok := nameOf(icmpv6TypeNames, byte(n)); ok {
				return name
			}
		case KeyICMPType:
			if name, ok := nameOf(icmpTypeNames, byte(n)); ok {
				return name
			}
		}
		return strconv.FormatUint(n, 10)
	}
	return fmt.Sprintf("%x", b)
}

// nftText renders v as nft prints it (interface names quoted).
func (k KeyType) nftText(v value) string {
	s := k.format(v)
	if k == KeyIfname {
		return strconv.Quote(s)
	}
	return s
}

// wire converts an encoded value of type k to the bytes the kernel
// compares (host order for host-order types; a copy).
func (k KeyType) wire(b []byte) []byte {
	if keyInfos[k].hostOrder && len(b) == 4 {
		return binary.NativeEndian.AppendUint32(nil, binary.BigEndian.Uint32(b))
	}
	return append([]byte(nil), b...)
}

// unwire is the inverse of wire.
func (k KeyType) unwire(b []byte) []byte {
	if keyInfos[k].hostOrder && len(b) == 4 {
		return binary.BigEndian.AppendUint32(nil, binary.NativeEndian.Uint32(b))
	}
	return append([]byte(nil), b...)
}

// isPrefix reports whether [lo, hi] is exactly a bit prefix (lo has zeros
// where hi has ones, and the ones are a contiguous suffix).
func isPrefix(v value) bool {
	seenHost := false
	for i := range v.lo {
		for b := 7; b >= 0; b-- {
			l, h := v.lo[i]>>b&1, v.hi[i]>>b&1
			switch {
			case l == h && !seenHost:
			case l == 0 && h == 1:
				seenHost = true
			default:
				return false
			}
		}
	}
	return true
}

// element is one parsed set element: one value per key field.
type element []value

// parseElement parses the text of a (possibly concatenated) element.
func parseElement(keys []KeyType, text string, mode parseMode) (element, error) {
	if len(keys) == 1 {
		v, err := keys[0].parseValue(strings.TrimSpace(text), mode)
		if err != nil {
			return nil, fmt.Errorf("element %q: %w", text, err)
		}
		return element{v}, nil
	}
	parts := strings.Split(text, " . ")
	if len(parts) != len(keys) {
		return nil, fmt.Errorf("element %q has %d fields, key %s has %d", text, len(parts), keyString(keys), len(keys))
	}
	e := make(element, len(keys))
	for i, k := range keys {
		v, err := k.parseValue(strings.TrimSpace(parts[i]), mode)
		if err != nil {
			return nil, fmt.Errorf("element %q: %w", text, err)
		}
		e[i] = v
	}
	return e, nil
}

// canonical returns the canonical text of e.
func (e element) canonical(keys []KeyType) string {
	if len(e) == 1 {
		return keys[0].format(e[0])
	}
	s := make([]string, len(e))
	for i, v := range e {
		s[i] = keys[i].format(v)
	}
	return strings.Join(s, " . ")
}

// nftText renders e as nft prints it.
func (e element) nftText(keys []KeyType) string {
	s := make([]string, len(e))
	for i, v := range e {
		s[i] = keys[i].nftText(v)
	}
	return strings.Join(s, " . ")
}

// compare orders elements by their encoded start, then end (the order in
// which appliers send them).
func (e element) compare(o element) int {
	for i := range e {
		if c := bytes.Compare(e[i].lo, o[i].lo); c != 0 {
			return c
		}
	}
	for i := range e {
		if c := bytes.Compare(e[i].hi, o[i].hi); c != 0 {
			return c
		}
	}
	return 0
}

// wireKey joins one side of each field as the kernel holds it, padding
// each to 4 bytes when there is more than one field (the register layout
// of a concatenation).
func (e element) wireKey(keys []KeyType, hi bool) []byte {
	var b []byte
	for i, v := range e {
		x := v.lo
		if hi {
			x = v.hi
		}
		b = append(b, keys[i].wire(x)...)
		if len(e) > 1 {
			b = append(b, make([]byte, pad4(len(x))-len(x))...)
		}
	}
	return b
}

// lower encodes e for the kernel. A plain set element is its key. A
// single-field interval is a start element and, unless it runs to the
// largest value, an end element holding last+1 with the interval-end flag
// (the rbtree representation). A concatenated interval is one element with
// a key and an inclusive key end (the pipapo representation).
func (e element) lower(keys []KeyType, interval bool) []SetElem {
	switch {
	case !interval:
		return []SetElem{{Key: e.wireKey(keys, false)}}
	case len(e) > 1:
		return []SetElem{{Key: e.wireKey(keys, false), KeyEnd: e.wireKey(keys, true)}}
	}
	out := []SetElem{{Key: e.wireKey(keys, false)}}
	if next, ok := increment(e[0].hi); ok {
		out = append(out, SetElem{Key: next, IntervalEnd: true})
	}
	return out
}

// increment returns b+1 (big endian) and false when b is all ones.
func increment(b []byte) ([]byte, bool) {
	n := append([]byte(nil), b...)
	for i := len(n) - 1; i >= 0; i-- {
		n[i]++
		if n[i] != 0 {
			return n, true
		}
	}
	return nil, false
}

// decrement returns b-1 (b must not be zero).
func decrement(b []byte) []byte {
	n := append([]byte(nil), b...)
	for i := len(n) - 1; i >= 0; i-- {
		n[i]--
		if n[i] != 0xff {
			break
		}
	}
	return n
}

// splitKey cuts a kernel key into one encoded value per field.
func splitKey(keys []KeyType, key []byte) ([][]byte, error) {
	if len(key) != keyLen(keys) {
		return nil, fmt.Errorf("key of %d bytes, want %d", len(key), keyLen(keys))
	}
	out := make([][]byte, len(keys))
	off := 0
	for i, k := range keys {
		out[i] = k.unwire(key[off : off+k.Size()])
		off += pad4(k.Size())
	}
	return out, nil
}

// decoded is a parsed element and the kernel element that starts it (the
// one that carries a map element's value).
type decoded struct {
	e   element
	src SetElem
}

// decodeElements turns the elements the kernel lists for a set back into
// parsed elements (the inverse of element.lower).
func decodeElements(keys []KeyType, interval bool, kel []SetElem) ([]decoded, error) {
	var out []decoded
	if !interval || len(keys) > 1 {
		for _, ke := range kel {
			lo, err := splitKey(keys, ke.Key)
			if err != nil {
				return nil, err
			}
			hi := lo
			if interval && len(ke.KeyEnd) > 0 {
				if hi, err = splitKey(keys, ke.KeyEnd); err != nil {
					return nil, err
				}
			}
			e := make(element, len(keys))
			for i := range keys {
				e[i] = value{lo: lo[i], hi: hi[i]}
			}
			out = append(out, decoded{e, ke})
		}
		return out, nil
	}
	// rbtree: sort by key, interval ends before starts of the same key (a
	// range ending where the next starts), then pair each start with the
	// end that follows it; a start without one runs to the largest value.
	size := keys[0].Size()
	sorted := append([]SetElem(nil), kel...)
	sort.SliceStable(sorted, func(i, j int) bool {
		if c := bytes.Compare(sorted[i].Key, sorted[j].Key); c != 0 {
			return c < 0
		}
		return sorted[i].IntervalEnd && !sorted[j].IntervalEnd
	})
	for i := 0; i < len(sorted); i++ {
		s := sorted[i]
		if len(s.Key) != size {
			return nil, fmt.Errorf("key of %d bytes, want %d", len(s.Key), size)
		}
		if s.IntervalEnd {
			continue // a stray end (e.g. the zero end some tools add)
		}
		hi := bytes.Repeat([]byte{0xff}, size)
		if i+1 < len(sorted) && sorted[i+1].IntervalEnd {
			hi = decrement(sorted[i+1].Key)
			i++
		}
		out = append(out, decoded{element{{lo: append([]byte(nil), s.Key...), hi: hi}}, s})
	}
	return out, nil
}
