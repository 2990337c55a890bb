package nft

import (
	"encoding/binary"
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/google/nftables/expr"
	"golang.org/x/sys/unix"
)

// Expr is one expression of a rule: a match or a statement.
//
// Every Expr renders itself in nft syntax (as `nft list ruleset` prints it)
// and lowers itself to google/nftables expressions. The set is closed to
// other packages (the lowering method is unexported) and grows here.
type Expr interface {
	// String returns the expression in nft syntax.
	String() string
	// lower appends the kernel expressions of the Expr, checking it against
	// the table (set and chain references, value syntax) through c.
	lower(c *ruleCtx) ([]expr.Any, error)
	// clone returns a deep copy.
	clone() Expr
}

// terminal is implemented by statements after which a rule may have no
// further expression (verdicts, NAT, reject).
type terminal interface{ terminal() bool }

// ruleCtx carries what lowering needs to know about the table and the rule
// lowered so far.
type ruleCtx struct {
	family Family
	sets   map[string]*Set
	maps   map[string]*Map
	chains map[string]*Chain
	// findChain, when set, replaces chains (a patch looks chains up in the
	// applier's state rather than in a Table).
	findChain func(name string) (*Chain, bool)
	chain     *Chain // the chain the rule is in

	nfproto byte // network protocol the rule is known to be restricted to (NFPROTO_*)
	l4proto byte // transport protocol the rule is known to be restricted to

	refSets   []string   // named sets and maps the rule looks up
	refChains []string   // chains the rule jumps or goes to
	anon      []*anonSet // anonymous sets the rule looks up, sent with it
}

// text is a string as a fmt.Stringer.
type text string

func (t text) String() string { return string(t) }

// lookupChain returns the chain name of the table.
func (c *ruleCtx) lookupChain(name string) (*Chain, bool) {
	if c.findChain != nil {
		return c.findChain(name)
	}
	ch, ok := c.chains[name]
	return ch, ok
}

// Field is a value of the packet or its metadata that a rule can match:
// one selector (e.g. `ip saddr`) or a concatenation of several.
type Field struct {
	parts []selector
}

// selector is one loadable value.
type selector struct {
	text    string       // nft text, e.g. "iifname", "ip saddr"
	key     KeyType      // its data type
	nfproto byte         // implied network protocol (NFPROTO_IPV4, _IPV6, _ARP), 0 for none
	l4proto byte         // implied transport protocol (meta l4proto), 0 for none
	link    bool         // a link-layer field: valid in bridge tables only
	meta    expr.MetaKey // meta key, when payload is false
	payload bool         // load from the packet instead of meta
	base    expr.PayloadBase
	offset  uint32
	err     string // why the selector cannot be used (e.g. a THRaw offset not on a byte)
}

func metaField(text string, key KeyType, mk expr.MetaKey) Field {
	return Field{parts: []selector{{text: text, key: key, meta: mk}}}
}

func payloadField(text string, key KeyType, nfproto byte, base expr.PayloadBase, off uint32) Field {
	return Field{parts: []selector{{text: text, key: key, nfproto: nfproto, payload: true, base: base, offset: off}}}
}

// Iifname is `meta iifname`, the input interface name.
func Iifname() Field { return metaField("iifname", KeyIfname, expr.MetaKeyIIFNAME) }

// Oifname is `meta oifname`, the output interface name.
func Oifname() Field { return metaField("oifname", KeyIfname, expr.MetaKeyOIFNAME) }

// NFProto is `meta nfproto`, the network family (ipv4 or ipv6).
func NFProto() Field { return metaField("meta nfproto", KeyNFProto, expr.MetaKeyNFPROTO) }

// L4Proto is `meta l4proto`, the transport protocol (e.g. tcp, udp, 47).
func L4Proto() Field { return metaField("meta l4proto", KeyInetProto, expr.MetaKeyL4PROTO) }

// IPSaddr is `ip saddr`; it implies `meta nfproto ipv4`.
func IPSaddr() Field {
	return payloadField("ip saddr", KeyIPv4, unix.NFPROTO_IPV4, expr.PayloadBaseNetworkHeader, 12)
}

// IPDaddr is `ip daddr`; it implies `meta nfproto ipv4`.
func IPDaddr() Field {
	return payloadField("ip daddr", KeyIPv4, unix.NFPROTO_IPV4, expr.PayloadBaseNetworkHeader, 16)
}

// IP6Saddr is `ip6 saddr`; it implies `meta nfproto ipv6`.
func IP6Saddr() Field {
	return payloadField("ip6 saddr", KeyIPv6, unix.NFPROTO_IPV6, expr.PayloadBaseNetworkHeader, 8)
}

// IP6Daddr is `ip6 daddr`; it implies `meta nfproto ipv6`.
func IP6Daddr() Field {
	return payloadField("ip6 daddr", KeyIPv6, unix.NFPROTO_IPV6, expr.PayloadBaseNetworkHeader, 24)
}

// THSport is `th sport`, the source port of the transport header. Like nft,
// it adds no protocol check: combine it with L4Proto for tcp/udp.
func THSport() Field {
	return payloadField("th sport", KeyInetService, 0, expr.PayloadBaseTransportHeader, 0)
}

// THDport is `th dport`, the destination port of the transport header (see
// THSport).
func THDport() Field {
	return payloadField("th dport", KeyInetService, 0, expr.PayloadBaseTransportHeader, 2)
}

// EtherSaddr is `ether saddr`, the source MAC address of the frame (6
// bytes, KeyEther). Bridge tables only.
func EtherSaddr() Field {
	f := payloadField("ether saddr", KeyEther, 0, expr.PayloadBaseLLHeader, 6)
	f.parts[0].link = true
	return f
}

// EtherType is `ether type`, the EtherType of the frame (KeyEtherType;
// literals ip, ip6, arp, vlan or a number such as 0x88cc). Bridge tables
// only. Matching it equal to ip, ip6 or arp satisfies the implicit
// dependency of later IPv4, IPv6 or ARP fields of the rule.
func EtherType() Field {
	f := payloadField("ether type", KeyEtherType, 0, expr.PayloadBaseLLHeader, 12)
	f.parts[0].link = true
	return f
}

// ArpSaddrEther is `arp saddr ether`, the sender hardware address of an
// (Ethernet/IPv4) ARP packet: offset 8 of the ARP header, 6 bytes. Bridge
// tables only; it implies `ether type arp`.
func ArpSaddrEther() Field {
	f := payloadField("arp saddr ether", KeyEther, unix.NFPROTO_ARP, expr.PayloadBaseNetworkHeader, 8)
	f.parts[0].link = true
	return f
}

// ArpSaddrIP is `arp saddr ip`, the sender protocol address of an
// (Ethernet/IPv4) ARP packet: offset 14 of the ARP header, 4 bytes. Bridge
// tables only; it implies `ether type arp`.
func ArpSaddrIP() Field {
	f := payloadField("arp saddr ip", KeyIPv4, unix.NFPROTO_ARP, expr.PayloadBaseNetworkHeader, 14)
	f.parts[0].link = true
	return f
}

// ICMPv6Type is `icmpv6 type` (KeyICMPv6Type: nd-neighbor-solicit,
// nd-neighbor-advert, nd-router-solicit, nd-router-advert, nd-redirect,
// echo-request, ... or a number). It implies IPv6 (`meta nfproto ipv6`,
// or `ether type ip6` in a bridge table) and `meta l4proto ipv6-icmp`.
func ICMPv6Type() Field {
	f := payloadField("icmpv6 type", KeyICMPv6Type, unix.NFPROTO_IPV6, expr.PayloadBaseTransportHeader, 0)
	f.parts[0].l4proto = unix.IPPROTO_ICMPV6
	return f
}

// THRaw is a raw load from the transport header, `@th,OFFSET,LEN`:
// key.size() bytes at offsetBits (a multiple of 8), typed as key. E.g. the
// target address of an ICMPv6 neighbour solicitation or advertisement is
// THRaw(64, KeyIPv6), `@th,64,128`. Like THDport, it adds no protocol
// check.
func THRaw(offsetBits int, key KeyType) Field {
	text := fmt.Sprintf("@th,%d,%d", offsetBits, key.size()*8)
	f := payloadField(text, key, 0, expr.PayloadBaseTransportHeader, uint32(max(offsetBits, 0)/8))
	switch {
	case !key.valid():
		f.parts[0].err = fmt.Sprintf("invalid key type %d", int(key))
	case offsetBits < 0 || offsetBits%8 != 0:
		f.parts[0].err = fmt.Sprintf("offset %d is not a non-negative multiple of 8 bits", offsetBits)
	}
	return f
}

// Concat joins fields into one concatenated value, e.g.
// Concat(Iifname(), Oifname()) is `iifname . oifname`. Each field occupies
// a multiple of 4 bytes; the whole may not exceed 64 bytes.
func Concat(fields ...Field) Field {
	var f Field
	for _, x := range fields {
		f.parts = append(f.parts, x.parts...)
	}
	return f
}

// String returns the field in nft syntax, e.g. "iifname . oifname".
func (f Field) String() string {
	s := make([]string, len(f.parts))
	for i, p := range f.parts {
		s[i] = p.text
	}
	return strings.Join(s, " . ")
}

// Key returns the key types of the field (one per concatenated part).
func (f Field) Key() []KeyType {
	k := make([]KeyType, len(f.parts))
	for i, p := range f.parts {
		k[i] = p.key
	}
	return k
}

// Op is the operator of a Match.
type Op int

// Operators.
const (
	OpEq        Op = iota // equal to a literal value
	OpNeq                 // not equal to a literal value
	OpIn                  // element of a named set
	OpNotIn               // not an element of a named set
	OpInAnon              // element of an anonymous set (Match.Elements)
	OpNotInAnon           // not an element of an anonymous set
)

// Match compares a Field with a literal value or looks it up in a named or
// anonymous set.
type Match struct {
	Field Field
	Op    Op
	// Value is the literal of OpEq and OpNeq, in set-element syntax: a single
	// value, a prefix or range ("10.0.0.0/8", "8000-8080"), or an interface
	// name prefix ending in "*" ("hnbr-*"). Concatenations can only be
	// matched against sets.
	Value string
	Set   string // the set of OpIn and OpNotIn
	// Elements are the elements of the anonymous set of OpInAnon and
	// OpNotInAnon, in Set.Elements syntax. The set has the interval flag
	// when any element is a prefix or range. They are part of the rule's
	// text, hence of its identity: changing them refills the chain.
	Elements []string
}

// Eq matches packets whose field equals v (see Match.Value).
func (f Field) Eq(v string) Match { return Match{Field: f, Op: OpEq, Value: v} }

// Neq matches packets whose field does not equal v.
func (f Field) Neq(v string) Match { return Match{Field: f, Op: OpNeq, Value: v} }

// InSet matches packets whose field is an element of the named set.
func (f Field) InSet(set string) Match { return Match{Field: f, Op: OpIn, Set: set} }

// NotInSet matches packets whose field is not an element of the named set.
func (f Field) NotInSet(set string) Match { return Match{Field: f, Op: OpNotIn, Set: set} }

// InAnon matches packets whose field is one of elements (an anonymous set,
// e.g. `th dport { 80, 8000-8080 }`); see Match.Elements.
func (f Field) InAnon(elements ...string) Match {
	return Match{Field: f, Op: OpInAnon, Elements: append([]string(nil), elements...)}
}

// NotInAnon matches packets whose field is none of elements.
func (f Field) NotInAnon(elements ...string) Match {
	return Match{Field: f, Op: OpNotInAnon, Elements: append([]string(nil), elements...)}
}

// String returns the match in nft syntax, e.g. `ip saddr @nat_v4` or
// `oifname != "hnbr-1"`.
func (m Match) String() string {
	var op, arg string
	switch m.Op {
	case OpEq, OpNeq:
		arg = m.Value
		if len(m.Field.parts) == 1 {
			k := m.Field.parts[0].key
			if v, err := k.parseValue(m.Value, modeLiteral); err == nil {
				arg = k.nftText(v)
			}
		}
		if m.Op == OpNeq {
			op = "!= "
		}
	case OpIn, OpNotIn:
		arg = "@" + m.Set
		if m.Op == OpNotIn {
			op = "!= "
		}
	case OpInAnon, OpNotInAnon:
		arg = "{ " + strings.Join(renderElements(m.Field.Key(), true, m.Elements), ", ") + " }"
		if m.Op == OpNotInAnon {
			op = "!= "
		}
	default:
		op = fmt.Sprintf("op(%d) ", int(m.Op))
	}
	return m.Field.String() + " " + op + arg
}

func (m Match) clone() Expr {
	m.Field.parts = append([]selector(nil), m.Field.parts...)
	m.Elements = append([]string(nil), m.Elements...)
	return m
}

// regAt returns the register that holds byte offset off of a
// concatenation starting at register 1: 16-byte registers where aligned,
// 4-byte registers otherwise (both address the same storage).
func regAt(off int) uint32 {
	if off%16 == 0 {
		return uint32(unix.NFT_REG_1 + off/16)
	}
	return uint32(unix.NFT_REG32_00 + off/4)
}

// netNames names the network protocols of implicit dependencies.
var netNames = map[byte]string{unix.NFPROTO_IPV4: "ipv4", unix.NFPROTO_IPV6: "ipv6", unix.NFPROTO_ARP: "arp"}

// etherTypeOf is the EtherType that a network protocol implies in a bridge
// table, and the reverse.
var etherTypeOf = map[byte]uint16{unix.NFPROTO_IPV4: unix.ETH_P_IP, unix.NFPROTO_IPV6: unix.ETH_P_IPV6, unix.NFPROTO_ARP: unix.ETH_P_ARP}

// requireNet returns the implicit dependency on network protocol proto
// (NFPROTO_*), as nft adds it: `meta nfproto` in an inet table, `ether
// type` in a bridge table; nothing when the rule already established it.
func (c *ruleCtx) requireNet(proto byte, what fmt.Stringer) ([]expr.Any, error) {
	if proto == 0 || c.nfproto == proto {
		return nil, nil
	}
	if c.nfproto != 0 {
		return nil, fmt.Errorf("%s: rule mixes %s and %s matches", what, netNames[c.nfproto], netNames[proto])
	}
	c.nfproto = proto
	if c.family == FamilyBridge {
		et := make([]byte, 2)
		binary.BigEndian.PutUint16(et, etherTypeOf[proto])
		return []expr.Any{
			&expr.Payload{DestRegister: unix.NFT_REG_1, Base: expr.PayloadBaseLLHeader, Offset: 12, Len: 2},
			&expr.Cmp{Op: expr.CmpOpEq, Register: unix.NFT_REG_1, Data: et},
		}, nil
	}
	if proto == unix.NFPROTO_ARP {
		return nil, fmt.Errorf("%s: arp fields are only valid in a bridge table", what)
	}
	return []expr.Any{
		&expr.Meta{Key: expr.MetaKeyNFPROTO, Register: unix.NFT_REG_1},
		&expr.Cmp{Op: expr.CmpOpEq, Register: unix.NFT_REG_1, Data: []byte{proto}},
	}, nil
}

// requireL4 returns the implicit dependency `meta l4proto PROTO`, unless
// the rule already established it.
func (c *ruleCtx) requireL4(proto byte, what fmt.Stringer) ([]expr.Any, error) {
	if proto == 0 || c.l4proto == proto {
		return nil, nil
	}
	if c.l4proto != 0 {
		return nil, fmt.Errorf("%s: rule mixes meta l4proto %s and %s", what,
			KeyInetProto.format(value{lo: []byte{c.l4proto}, hi: []byte{c.l4proto}}),
			KeyInetProto.format(value{lo: []byte{proto}, hi: []byte{proto}}))
	}
	c.l4proto = proto
	return []expr.Any{
		&expr.Meta{Key: expr.MetaKeyL4PROTO, Register: unix.NFT_REG_1},
		&expr.Cmp{Op: expr.CmpOpEq, Register: unix.NFT_REG_1, Data: []byte{proto}},
	}, nil
}

// load returns the loads of f into registers from 1 on (each field of a
// concatenation padded to 4 bytes), preceded by the implicit dependencies
// of its selectors that the rule has not established yet. what names the
// expression in errors (rendered only for an error).
func (c *ruleCtx) load(f Field, what fmt.Stringer) ([]expr.Any, error) {
	if len(f.parts) == 0 {
		return nil, errors.New("match without a field")
	}
	keys := f.Key()
	if keyLen(keys) > maxKeyLen {
		return nil, fmt.Errorf("%s: concatenation of %d bytes exceeds %d", f, keyLen(keys), maxKeyLen)
	}
	var out []expr.Any
	for _, p := range f.parts {
		switch {
		case p.err != "":
			return nil, fmt.Errorf("%s: %s: %s", what, p.text, p.err)
		case !p.key.valid():
			return nil, fmt.Errorf("%s: %s: invalid key type %d", what, p.text, int(p.key))
		case p.link && c.family != FamilyBridge:
			return nil, fmt.Errorf("%s: %s is only valid in a bridge table", what, p.text)
		case !p.payload && p.meta == expr.MetaKeyNFPROTO && c.family == FamilyBridge:
			return nil, fmt.Errorf("%s: meta nfproto never matches in a bridge table (use ether type)", what)
		}
		dep, err := c.requireNet(p.nfproto, what)
		if err != nil {
			return nil, err
		}
		out = append(out, dep...)
		if dep, err = c.requireL4(p.l4proto, what); err != nil {
			return nil, err
		}
		out = append(out, dep...)
	}
	off := 0
	for _, p := range f.parts {
		reg := regAt(off)
		if p.payload {
			out = append(out, &expr.Payload{DestRegister: reg, Base: p.base, Offset: p.offset, Len: uint32(p.key.size())})
		} else {
			out = append(out, &expr.Meta{Key: p.meta, Register: reg})
		}
		off += pad4(p.key.size())
	}
	return out, nil
}

func (m Match) lower(c *ruleCtx) ([]expr.Any, error) {
	out, err := c.load(m.Field, m)
	if err != nil {
		return nil, err
	}
	parts, keys := m.Field.parts, m.Field.Key()
	switch m.Op {
	case OpEq, OpNeq:
		if len(parts) > 1 {
			return nil, fmt.Errorf("%s: a concatenation can only be matched against a set", m)
		}
		k := keys[0]
		v, err := k.parseValue(m.Value, modeLiteral)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", m.Field, err)
		}
		op := expr.CmpOpEq
		if m.Op == OpNeq {
			op = expr.CmpOpNeq
		}
		switch {
		case v.wild:
			out = append(out, &expr.Cmp{Op: op, Register: unix.NFT_REG_1, Data: v.lo})
		case v.single():
			out = append(out, &expr.Cmp{Op: op, Register: unix.NFT_REG_1, Data: v.lo})
			if op == expr.CmpOpEq {
				c.established(parts[0], v.lo)
			}
		case isPrefix(v):
			mask := make([]byte, len(v.lo))
			for i := range mask {
				mask[i] = ^(v.lo[i] ^ v.hi[i])
			}
			out = append(out,
				&expr.Bitwise{SourceRegister: unix.NFT_REG_1, DestRegister: unix.NFT_REG_1, Len: uint32(len(mask)), Mask: mask, Xor: make([]byte, len(mask))},
				&expr.Cmp{Op: op, Register: unix.NFT_REG_1, Data: v.lo})
		default:
			out = append(out, &expr.Range{Op: op, Register: unix.NFT_REG_1, FromData: v.lo, ToData: v.hi})
		}
	case OpIn, OpNotIn:
		s, ok := c.sets[m.Set]
		if !ok {
			if _, isMap := c.maps[m.Set]; isMap {
				return nil, fmt.Errorf("%s: %q is a map, not a set", m, m.Set)
			}
			return nil, fmt.Errorf("%s: unknown set %q", m, m.Set)
		}
		if keyString(s.Key) != keyString(keys) {
			return nil, fmt.Errorf("%s: set %q has type %s, field has type %s", m, m.Set, keyString(s.Key), keyString(keys))
		}
		out = append(out, &expr.Lookup{SourceRegister: unix.NFT_REG_1, SetName: m.Set, Invert: m.Op == OpNotIn})
		c.refSets = append(c.refSets, m.Set)
	case OpInAnon, OpNotInAnon:
		a, err := newAnonSet(keys, m.Elements)
		if err != nil {
			return nil, fmt.Errorf("%s: anonymous set: %w", m.Field, err)
		}
		c.anon = append(c.anon, a)
		out = append(out, &expr.Lookup{SourceRegister: unix.NFT_REG_1, SetName: a.set.Name, SetID: a.set.ID, Invert: m.Op == OpNotInAnon})
	default:
		return nil, fmt.Errorf("%s: unknown operator %d", m.Field, int(m.Op))
	}
	return out, nil
}

// established records what an equality match on p with value b restricts
// the rule to: `meta nfproto ipv4`, `ether type ip6`, `meta l4proto tcp`
// make later implicit dependencies on the same protocol redundant.
func (c *ruleCtx) established(p selector, b []byte) {
	switch {
	case p.key == KeyNFProto:
		c.nfproto = b[0]
	case p.key == KeyEtherType && p.payload && p.base == expr.PayloadBaseLLHeader && p.offset == 12:
		et := binary.BigEndian.Uint16(b)
		for proto, t := range etherTypeOf {
			if t == et {
				c.nfproto = proto
			}
		}
	case p.key == KeyInetProto && !p.payload && p.meta == expr.MetaKeyL4PROTO:
		c.l4proto = b[0]
	}
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

// ct states, as nft names them, in bit order.
var ctStates = []struct {
	name string
	bit  uint32
}{
	{"invalid", expr.CtStateBitINVALID},
	{"established", expr.CtStateBitESTABLISHED},
	{"related", expr.CtStateBitRELATED},
	{"new", expr.CtStateBitNEW},
	{"untracked", expr.CtStateBitUNTRACKED},
}

// CtStateMatch matches the conntrack state of the packet: any of States
// (or none of them when Negate). In a bridge table it needs
// nf_conntrack_bridge (see FamilyBridge).
type CtStateMatch struct {
	States []string // invalid, established, related, new, untracked
	Negate bool
}

// CtState matches packets whose conntrack state is any of states, e.g.
// CtState("established", "related").
func CtState(states ...string) CtStateMatch { return CtStateMatch{States: states} }

func (m CtStateMatch) mask() (uint32, error) {
	var mask uint32
	for _, s := range m.States {
		found := false
		for _, cs := range ctStates {
			if cs.name == s {
				mask |= cs.bit
				found = true
			}
		}
		if !found {
			return 0, fmt.Errorf("unknown ct state %q", s)
		}
	}
	if mask == 0 {
		return 0, errors.New("ct state without a state")
	}
	return mask, nil
}

// String returns e.g. "ct state established,related" (states in nft's order).
func (m CtStateMatch) String() string {
	var names []string
	if mask, err := m.mask(); err == nil {
		for _, cs := range ctStates {
			if mask&cs.bit != 0 {
				names = append(names, cs.name)
			}
		}
	} else {
		names = m.States
	}
	op := ""
	if m.Negate {
		op = "!= "
	}
	return "ct state " + op + strings.Join(names, ",")
}

func (m CtStateMatch) lower(*ruleCtx) ([]expr.Any, error) {
	mask, err := m.mask()
	if err != nil {
		return nil, err
	}
	op := expr.CmpOpNeq
	if m.Negate {
		op = expr.CmpOpEq
	}
	mb := make([]byte, 4)
	binary.NativeEndian.PutUint32(mb, mask)
	return []expr.Any{
		&expr.Ct{Key: expr.CtKeySTATE, Register: unix.NFT_REG_1},
		&expr.Bitwise{SourceRegister: unix.NFT_REG_1, DestRegister: unix.NFT_REG_1, Len: 4, Mask: mb, Xor: make([]byte, 4)},
		&expr.Cmp{Op: op, Register: unix.NFT_REG_1, Data: make([]byte, 4)},
	}, nil
}

func (m CtStateMatch) clone() Expr {
	m.States = append([]string(nil), m.States...)
	return m
}

// ct status bits, as nft names them, in bit order.
var ctStatuses = []struct {
	name string
	bit  uint32
}{
	{"expected", 1 << 0},
	{"seen-reply", 1 << 1},
	{"assured", 1 << 2},
	{"confirmed", 1 << 3},
	{"snat", 1 << 4},
	{"dnat", 1 << 5},
}

// CtStatusMatch matches the conntrack status bits of the packet's
// connection: any of Flags set (none of them when Negate). In a bridge
// table it needs nf_conntrack_bridge (see FamilyBridge).
type CtStatusMatch struct {
	Flags  []string // dnat, snat, confirmed, assured, seen-reply, expected
	Negate bool
}

// CtStatus matches packets whose connection has any of flags set, e.g.
// CtStatus("dnat") is `ct status dnat`: a connection whose destination was
// rewritten by DNAT (both directions of it).
func CtStatus(flags ...string) CtStatusMatch {
	return CtStatusMatch{Flags: append([]string(nil), flags...)}
}

func (m CtStatusMatch) mask() (uint32, error) {
	var mask uint32
	for _, f := range m.Flags {
		found := false
		for _, cs := range ctStatuses {
			if cs.name == f {
				mask |= cs.bit
				found = true
			}
		}
		if !found {
			return 0, fmt.Errorf("unknown ct status %q", f)
		}
	}
	if mask == 0 {
		return 0, errors.New("ct status without a flag")
	}
	return mask, nil
}

// String returns e.g. "ct status dnat" or "ct status != snat,dnat" (flags
// in bit order).
func (m CtStatusMatch) String() string {
	var names []string
	if mask, err := m.mask(); err == nil {
		for _, cs := range ctStatuses {
			if mask&cs.bit != 0 {
				names = append(names, cs.name)
			}
		}
	} else {
		names = m.Flags
	}
	op := ""
	if m.Negate {
		op = "!= "
	}
	return "ct status " + op + strings.Join(names, ",")
}

func (m CtStatusMatch) lower(*ruleCtx) ([]expr.Any, error) {
	mask, err := m.mask()
	if err != nil {
		return nil, err
	}
	op := expr.CmpOpNeq
	if m.Negate {
		op = expr.CmpOpEq
	}
	mb := make([]byte, 4)
	binary.NativeEndian.PutUint32(mb, mask)
	return []expr.Any{
		&expr.Ct{Key: expr.CtKeySTATUS, Register: unix.NFT_REG_1},
		&expr.Bitwise{SourceRegister: unix.NFT_REG_1, DestRegister: unix.NFT_REG_1, Len: 4, Mask: mb, Xor: make([]byte, 4)},
		&expr.Cmp{Op: op, Register: unix.NFT_REG_1, Data: make([]byte, 4)},
	}, nil
}

func (m CtStatusMatch) clone() Expr {
	m.Flags = append([]string(nil), m.Flags...)
	return m
}

// CtDirectionMatch is `ct direction reply` (or `original`): which way the
// packet goes in its connection. `ct direction reply` is how a firewall that
// judges every packet of a flow lets the replies of the flows it admitted
// through: a flow's first packet creates its connection only if it passes.
// In a bridge table it needs nf_conntrack_bridge (see FamilyBridge).
type CtDirectionMatch struct {
	Reply bool
}

// CtDirection matches packets going the given way: "reply" or "original".
func CtDirection(dir string) CtDirectionMatch { return CtDirectionMatch{Reply: dir == "reply"} }

// String returns "ct direction reply" or "ct direction original".
func (m CtDirectionMatch) String() string {
	if m.Reply {
		return "ct direction reply"
	}
	return "ct direction original"
}

func (m CtDirectionMatch) lower(*ruleCtx) ([]expr.Any, error) {
	dir := byte(0) // IP_CT_DIR_ORIGINAL
	if m.Reply {
		dir = 1 // IP_CT_DIR_REPLY
	}
	return []expr.Any{
		&expr.Ct{Key: expr.CtKeyDIRECTION, Register: unix.NFT_REG_1},
		&expr.Cmp{Op: expr.CmpOpEq, Register: unix.NFT_REG_1, Data: []byte{dir}},
	}, nil
}

func (m CtDirectionMatch) clone() Expr { return m }

// FibMatch is `fib daddr type local` (or, when Negate, `fib daddr type !=
// local`): whether the packet's destination address is an address of this
// namespace, by a routing lookup. Inet tables only.
type FibMatch struct {
	Negate bool
}

// FibDaddrTypeLocal matches packets addressed to this namespace.
func FibDaddrTypeLocal() FibMatch { return FibMatch{} }

// String returns "fib daddr type local" or "fib daddr type != local".
func (m FibMatch) String() string {
	if m.Negate {
		return "fib daddr type != local"
	}
	return "fib daddr type local"
}

func (m FibMatch) clone() Expr { return m }

func (m FibMatch) lower(c *ruleCtx) ([]expr.Any, error) {
	if c.family != FamilyInet {
		return nil, fmt.Errorf("%s is not valid in a %s table", m, c.family)
	}
	op := expr.CmpOpEq
	if m.Negate {
		op = expr.CmpOpNeq
	}
	local := make([]byte, 4)
	binary.NativeEndian.PutUint32(local, unix.RTN_LOCAL)
	return []expr.Any{
		&expr.Fib{Register: unix.NFT_REG_1, FlagDADDR: true, ResultADDRTYPE: true},
		&expr.Cmp{Op: op, Register: unix.NFT_REG_1, Data: local},
	}, nil
}

// VMapStmt looks Field up in a verdict map and applies the verdict it maps
// to (`iifname vmap @acl_out`); a packet whose field is not in the map
// goes on to the next rule.
type VMapStmt struct {
	Field Field
	Map   string
}

// VMap returns `FIELD vmap @MAP`. The map must be a verdict map whose key
// type is the field's.
func VMap(field Field, mapName string) VMapStmt { return VMapStmt{Field: field, Map: mapName} }

// String returns e.g. "iifname vmap @acl_out".
func (v VMapStmt) String() string { return v.Field.String() + " vmap @" + v.Map }

func (VMapStmt) terminal() bool { return true }

func (v VMapStmt) clone() Expr {
	v.Field.parts = append([]selector(nil), v.Field.parts...)
	return v
}

func (v VMapStmt) lower(c *ruleCtx) ([]expr.Any, error) {
	m, ok := c.maps[v.Map]
	if !ok {
		return nil, fmt.Errorf("%s: unknown map %q", v, v.Map)
	}
	if !m.Verdict {
		return nil, fmt.Errorf("%s: map %q is not a verdict map", v, v.Map)
	}
	if keyString(m.Key) != keyString(v.Field.Key()) {
		return nil, fmt.Errorf("%s: map %q has key type %s, field has type %s", v, v.Map, keyString(m.Key), keyString(v.Field.Key()))
	}
	out, err := c.load(v.Field, v)
	if err != nil {
		return nil, err
	}
	c.refSets = append(c.refSets, v.Map)
	return append(out, &expr.Lookup{SourceRegister: unix.NFT_REG_1, SetName: v.Map, DestRegister: unix.NFT_REG_VERDICT, IsDestRegSet: true}), nil
}

// NATKind is the kind of a NAT map statement.
type NATKind string

// NAT kinds.
const (
	NATDst NATKind = "dnat" // rewrite the destination
	NATSrc NATKind = "snat" // rewrite the source
)

// NATMapStmt rewrites the packet's destination (dnat) or source (snat)
// to the value that Key maps to in a data map: `dnat ip to ip daddr .
// meta l4proto . th dport map @pm4_vip`. The map's values are an address
// (ipv4_addr or ipv6_addr, which gives the statement its family) or an
// address and a port (`ipv4_addr . inet_service`). A packet whose key is
// not in the map is left alone and goes on to the next rule. Inet tables
// only; dnat in nat chains on hooks prerouting or output, snat on
// postrouting or input. The rule implicitly matches the map's family
// (`meta nfproto`).
type NATMapStmt struct {
	Kind NATKind
	Key  Field
	Map  string
}

// DNATMap returns `dnat ip|ip6 to KEY map @MAP`.
func DNATMap(key Field, mapName string) NATMapStmt {
	return NATMapStmt{Kind: NATDst, Key: key, Map: mapName}
}

// SNATMap returns `snat ip|ip6 to KEY map @MAP`.
func SNATMap(key Field, mapName string) NATMapStmt {
	return NATMapStmt{Kind: NATSrc, Key: key, Map: mapName}
}

// String returns the statement without its family, e.g. "dnat to meta
// l4proto . th dport map @pm": the family comes from the map, and
// Table.String shows it ("dnat ip to ...").
func (n NATMapStmt) String() string { return n.text("") }

func (n NATMapStmt) text(family string) string {
	if family != "" {
		family += " "
	}
	return string(n.Kind) + " " + family + "to " + n.Key.String() + " map @" + n.Map
}

// textIn renders the statement with the family of its map, when known.
func (n NATMapStmt) textIn(maps map[string]*Map) string {
	if m, ok := maps[n.Map]; ok && !m.Verdict && len(m.Value) > 0 {
		switch m.Value[0] {
		case KeyIPv4:
			return n.text("ip")
		case KeyIPv6:
			return n.text("ip6")
		}
	}
	return n.String()
}

func (NATMapStmt) terminal() bool { return true }

func (n NATMapStmt) clone() Expr {
	n.Key.parts = append([]selector(nil), n.Key.parts...)
	return n
}

func (n NATMapStmt) lower(c *ruleCtx) ([]expr.Any, error) {
	what := n.textIn(c.maps)
	var natType expr.NATType
	var hooks []Hook
	switch n.Kind {
	case NATDst:
		natType, hooks = expr.NATTypeDestNAT, []Hook{HookPrerouting, HookOutput}
	case NATSrc:
		natType, hooks = expr.NATTypeSourceNAT, []Hook{HookPostrouting, HookInput}
	default:
		return nil, fmt.Errorf("%s: unknown nat kind %q", what, n.Kind)
	}
	if c.family != FamilyInet {
		return nil, fmt.Errorf("%s: nat is not valid in a %s table", what, c.family)
	}
	if c.chain != nil && c.chain.base() && (c.chain.Type != ChainTypeNAT || !slices.Contains(hooks, c.chain.Hook)) {
		return nil, fmt.Errorf("%s: %s is only valid in a nat chain on hook %s or %s", what, n.Kind, hooks[0], hooks[1])
	}
	m, ok := c.maps[n.Map]
	if !ok {
		return nil, fmt.Errorf("%s: unknown map %q", what, n.Map)
	}
	if m.Verdict {
		return nil, fmt.Errorf("%s: map %q is a verdict map", what, n.Map)
	}
	if keyString(m.Key) != keyString(n.Key.Key()) {
		return nil, fmt.Errorf("%s: map %q has key type %s, key has type %s", what, n.Map, keyString(m.Key), keyString(n.Key.Key()))
	}
	var family byte
	switch {
	case len(m.Value) >= 1 && m.Value[0] == KeyIPv4:
		family = unix.NFPROTO_IPV4
	case len(m.Value) >= 1 && m.Value[0] == KeyIPv6:
		family = unix.NFPROTO_IPV6
	}
	withPort := len(m.Value) == 2 && m.Value[1] == KeyInetService
	if family == 0 || (len(m.Value) != 1 && !withPort) {
		return nil, fmt.Errorf("%s: map %q has value type %s, want an address (ipv4_addr, ipv6_addr) optionally followed by inet_service", what, n.Map, keyString(m.Value))
	}
	out, err := c.requireNet(family, text(what))
	if err != nil {
		return nil, err
	}
	load, err := c.load(n.Key, text(what))
	if err != nil {
		return nil, err
	}
	out = append(out, load...)
	c.refSets = append(c.refSets, n.Map)
	// The value lands in registers from 1 on, laid out like a
	// concatenation: the address at register 1, the port in the 4-byte
	// register after the (padded) address.
	// One address (and port), not a range: max = min, as the kernel
	// records it anyway.
	nat := &expr.NAT{Type: natType, Family: uint32(family), RegAddrMin: unix.NFT_REG_1, RegAddrMax: unix.NFT_REG_1}
	if withPort {
		nat.RegProtoMin = regAt(pad4(m.Value[0].size()))
		nat.RegProtoMax = nat.RegProtoMin
		nat.Specified = true
	}
	return append(out,
		&expr.Lookup{SourceRegister: unix.NFT_REG_1, SetName: n.Map, DestRegister: unix.NFT_REG_1, IsDestRegSet: true},
		nat), nil
}

// CounterStmt counts packets and bytes (`counter`).
type CounterStmt struct{}

// Counter returns a `counter` statement.
func Counter() CounterStmt { return CounterStmt{} }

// String returns "counter".
func (CounterStmt) String() string                     { return "counter" }
func (CounterStmt) lower(*ruleCtx) ([]expr.Any, error) { return []expr.Any{&expr.Counter{}}, nil }
func (s CounterStmt) clone() Expr                      { return s }

// MasqueradeStmt rewrites the source address to the output interface's
// (`masquerade`). Only valid in a nat chain on hook postrouting.
type MasqueradeStmt struct{}

// Masquerade returns a `masquerade` statement.
func Masquerade() MasqueradeStmt { return MasqueradeStmt{} }

// String returns "masquerade".
func (MasqueradeStmt) String() string { return "masquerade" }
func (MasqueradeStmt) terminal() bool { return true }
func (s MasqueradeStmt) clone() Expr  { return s }
func (MasqueradeStmt) lower(c *ruleCtx) ([]expr.Any, error) {
	if c.family != FamilyInet {
		return nil, fmt.Errorf("masquerade is not valid in a %s table", c.family)
	}
	if c.chain != nil && c.chain.base() && (c.chain.Type != ChainTypeNAT || c.chain.Hook != HookPostrouting) {
		return nil, errors.New("masquerade is only valid in a nat chain on hook postrouting")
	}
	return []expr.Any{&expr.Masq{}}, nil
}

// RejectStmt drops the packet and answers with an ICMP (or ICMPv6)
// port-unreachable (`reject`). Valid on hooks input, forward and output.
type RejectStmt struct{}

// Reject returns a plain `reject` statement.
func Reject() RejectStmt { return RejectStmt{} }

// String returns "reject".
func (RejectStmt) String() string { return "reject" }
func (RejectStmt) terminal() bool { return true }
func (s RejectStmt) clone() Expr  { return s }
func (RejectStmt) lower(*ruleCtx) ([]expr.Any, error) {
	return []expr.Any{&expr.Reject{Type: unix.NFT_REJECT_ICMPX_UNREACH, Code: unix.NFT_REJECT_ICMPX_PORT_UNREACH}}, nil
}

// VerdictStmt ends the rule with a verdict: accept, drop, return, or jump
// or goto a regular chain of the table.
type VerdictStmt struct {
	Verdict Verdict
	Chain   string // target of VerdictJump and VerdictGoto
}

// Accept returns `accept`.
func Accept() VerdictStmt { return VerdictStmt{Verdict: VerdictAccept} }

// Drop returns `drop`.
func Drop() VerdictStmt { return VerdictStmt{Verdict: VerdictDrop} }

// Return returns `return`.
func Return() VerdictStmt { return VerdictStmt{Verdict: VerdictReturn} }

// Jump returns `jump chain`.
func Jump(chain string) VerdictStmt { return VerdictStmt{Verdict: VerdictJump, Chain: chain} }

// Goto returns `goto chain`.
func Goto(chain string) VerdictStmt { return VerdictStmt{Verdict: VerdictGoto, Chain: chain} }

// String returns e.g. "accept" or "jump fwd_endpoints".
func (v VerdictStmt) String() string {
	if v.Verdict == VerdictJump || v.Verdict == VerdictGoto {
		return string(v.Verdict) + " " + v.Chain
	}
	return string(v.Verdict)
}

func (VerdictStmt) terminal() bool { return true }
func (v VerdictStmt) clone() Expr  { return v }

var verdictKinds = map[Verdict]expr.VerdictKind{
	VerdictAccept: expr.VerdictAccept,
	VerdictDrop:   expr.VerdictDrop,
	VerdictReturn: expr.VerdictReturn,
	VerdictJump:   expr.VerdictJump,
	VerdictGoto:   expr.VerdictGoto,
}

func (v VerdictStmt) lower(c *ruleCtx) ([]expr.Any, error) {
	kind, ok := verdictKinds[v.Verdict]
	if !ok {
		return nil, fmt.Errorf("unknown verdict %q", v.Verdict)
	}
	if v.Verdict != VerdictJump && v.Verdict != VerdictGoto {
		if v.Chain != "" {
			return nil, fmt.Errorf("verdict %s takes no chain", v.Verdict)
		}
		return []expr.Any{&expr.Verdict{Kind: kind}}, nil
	}
	target, ok := c.lookupChain(v.Chain)
	if !ok {
		return nil, fmt.Errorf("%s: unknown chain %q", v, v.Chain)
	}
	if target.base() {
		return nil, fmt.Errorf("%s: chain %q is a base chain", v, v.Chain)
	}
	if c.chain != nil && target.Name == c.chain.Name {
		return nil, fmt.Errorf("%s: chain jumps to itself", v)
	}
	c.refChains = append(c.refChains, v.Chain)
	return []expr.Any{&expr.Verdict{Kind: kind, Chain: v.Chain}}, nil
}
