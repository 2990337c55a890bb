package nftmodel

import (
	"encoding/binary"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"
)

// Expr is one expression of a rule: a match or a statement.
//
// Every Expr renders itself in nft syntax (as `nft list ruleset` prints it)
// and lowers itself to IR expressions, checking itself against the table.
// The set is closed to other packages (the lowering method is unexported)
// and grows here: a new expression is a type in this file and, if it needs
// a kernel expression hostnet does not use yet, an IR type in ir.go and its
// translation in the dataplane.
type Expr interface {
	// String returns the expression in nft syntax.
	String() string
	// lower returns the IR of the Expr, checking it against the table (set
	// and chain references, value syntax) through c.
	lower(c *ruleCtx) ([]IRExpr, error)
	// clone returns a deep copy.
	clone() Expr
}

// terminal is implemented by statements after which a rule may have no
// further expression (verdicts, NAT, reject).
type terminal interface{ terminal() bool }

// Field is a value of the packet, its metadata or the kernel's arithmetic
// that a rule can match or look up: one selector (e.g. `ip saddr`,
// `numgen random mod 2`) or a concatenation of several.
type Field struct {
	parts []selector
}

// loadKind says how a selector's value reaches its register.
type loadKind int

const (
	loadMeta    loadKind = iota // meta expression
	loadPayload                 // payload load
	loadNumgen                  // number generator
	loadHash                    // hash of other selectors
)

// selector is one loadable value.
type selector struct {
	text    string   // nft text, e.g. "iifname", "ip saddr"
	key     KeyType  // its data type
	nfproto NetProto // implied network protocol, 0 for none
	l4proto byte     // implied transport protocol (meta l4proto), 0 for none
	link    bool     // a link-layer field: valid in bridge and netdev tables only
	kind    loadKind
	meta    MetaKey // loadMeta
	base    PayloadBase
	offset  uint32
	numgen  NumgenType // loadNumgen
	modulus uint32     // loadNumgen, loadHash
	seed    uint32     // loadHash
	inputs  []selector // loadHash
	err     string     // why the selector cannot be used (e.g. a THRaw offset not on a byte)
}

// inputKeys returns the key types of a hash's inputs.
func (p selector) inputKeys() []KeyType { return Field{parts: p.inputs}.Key() }

func metaField(text string, key KeyType, mk MetaKey) Field {
	return Field{parts: []selector{{text: text, key: key, kind: loadMeta, meta: mk}}}
}

func payloadField(text string, key KeyType, nfproto NetProto, base PayloadBase, off uint32) Field {
	return Field{parts: []selector{{text: text, key: key, nfproto: nfproto, kind: loadPayload, base: base, offset: off}}}
}

// linkField is a payload field of the link-layer header: bridge and
// netdev tables only.
func linkField(text string, key KeyType, nfproto NetProto, base PayloadBase, off uint32) Field {
	f := payloadField(text, key, nfproto, base, off)
	f.parts[0].link = true
	return f
}

// Iifname is `meta iifname`, the input interface name.
func Iifname() Field { return metaField("iifname", KeyIfname, MetaIIFName) }

// Oifname is `meta oifname`, the output interface name.
func Oifname() Field { return metaField("oifname", KeyIfname, MetaOIFName) }

// NFProto is `meta nfproto`, the network family (ipv4 or ipv6).
func NFProto() Field { return metaField("meta nfproto", KeyNFProto, MetaNFProto) }

// L4Proto is `meta l4proto`, the transport protocol (e.g. tcp, udp, 47).
func L4Proto() Field { return metaField("meta l4proto", KeyInetProto, MetaL4Proto) }

// IPSaddr is `ip saddr`; it implies `meta nfproto ipv4`.
func IPSaddr() Field {
	return payloadField("ip saddr", KeyIPv4, NetProtoIPv4, PayloadNetworkHeader, 12)
}

// IPDaddr is `ip daddr`; it implies `meta nfproto ipv4`.
func IPDaddr() Field {
	return payloadField("ip daddr", KeyIPv4, NetProtoIPv4, PayloadNetworkHeader, 16)
}

// IP6Saddr is `ip6 saddr`; it implies `meta nfproto ipv6`.
func IP6Saddr() Field {
	return payloadField("ip6 saddr", KeyIPv6, NetProtoIPv6, PayloadNetworkHeader, 8)
}

// IP6Daddr is `ip6 daddr`; it implies `meta nfproto ipv6`.
func IP6Daddr() Field {
	return payloadField("ip6 daddr", KeyIPv6, NetProtoIPv6, PayloadNetworkHeader, 24)
}

// THSport is `th sport`, the source port of the transport header. Like nft,
// it adds no protocol check: combine it with L4Proto for tcp/udp.
func THSport() Field {
	return payloadField("th sport", KeyInetService, 0, PayloadTransportHeader, 0)
}

// THDport is `th dport`, the destination port of the transport header (see
// THSport).
func THDport() Field {
	return payloadField("th dport", KeyInetService, 0, PayloadTransportHeader, 2)
}

// EtherSaddr is `ether saddr`, the source MAC address of the frame (6
// bytes, KeyEther). Bridge tables only.
func EtherSaddr() Field { return linkField("ether saddr", KeyEther, 0, PayloadLinkHeader, 6) }

// EtherDaddr is `ether daddr`, the destination MAC address of the frame (6
// bytes, KeyEther). Bridge tables only.
func EtherDaddr() Field { return linkField("ether daddr", KeyEther, 0, PayloadLinkHeader, 0) }

// EtherType is `ether type`, the EtherType of the frame (KeyEtherType;
// literals ip, ip6, arp, vlan or a number such as 0x88cc). Bridge tables
// only. Matching it equal to ip, ip6 or arp satisfies the implicit
// dependency of later IPv4, IPv6 or ARP fields of the rule.
func EtherType() Field { return linkField("ether type", KeyEtherType, 0, PayloadLinkHeader, 12) }

// ArpSaddrEther is `arp saddr ether`, the sender hardware address of an
// (Ethernet/IPv4) ARP packet: offset 8 of the ARP header, 6 bytes. Bridge
// tables only; it implies `ether type arp`.
func ArpSaddrEther() Field {
	return linkField("arp saddr ether", KeyEther, NetProtoARP, PayloadNetworkHeader, 8)
}

// ArpSaddrIP is `arp saddr ip`, the sender protocol address of an
// (Ethernet/IPv4) ARP packet: offset 14 of the ARP header, 4 bytes. Bridge
// tables only; it implies `ether type arp`.
func ArpSaddrIP() Field {
	return linkField("arp saddr ip", KeyIPv4, NetProtoARP, PayloadNetworkHeader, 14)
}

// ICMPv6Type is `icmpv6 type` (KeyICMPv6Type: nd-neighbor-solicit,
// nd-neighbor-advert, nd-router-solicit, nd-router-advert, nd-redirect,
// echo-request, ... or a number). It implies IPv6 (`meta nfproto ipv6`,
// or `ether type ip6` in a bridge table) and `meta l4proto ipv6-icmp`.
func ICMPv6Type() Field {
	f := payloadField("icmpv6 type", KeyICMPv6Type, NetProtoIPv6, PayloadTransportHeader, 0)
	f.parts[0].l4proto = protoNames["icmpv6"]
	return f
}

// ICMPType is `icmp type` (KeyICMPType: echo-request, echo-reply,
// destination-unreachable, ... or a number). It implies IPv4 and `meta
// l4proto icmp`.
func ICMPType() Field {
	f := payloadField("icmp type", KeyICMPType, NetProtoIPv4, PayloadTransportHeader, 0)
	f.parts[0].l4proto = protoNames["icmp"]
	return f
}

// THRaw is a raw load from the transport header, `@th,OFFSET,LEN`:
// key.Size() bytes at offsetBits (a multiple of 8), typed as key. E.g. the
// target address of an ICMPv6 neighbour solicitation or advertisement is
// THRaw(64, KeyIPv6), `@th,64,128`. Like THDport, it adds no protocol
// check.
func THRaw(offsetBits int, key KeyType) Field {
	text := fmt.Sprintf("@th,%d,%d", offsetBits, key.Size()*8)
	f := payloadField(text, key, 0, PayloadTransportHeader, uint32(max(offsetBits, 0)/8))
	switch {
	case !key.Valid():
		f.parts[0].err = fmt.Sprintf("invalid key type %d", int(key))
	case offsetBits < 0 || offsetBits%8 != 0:
		f.parts[0].err = fmt.Sprintf("offset %d is not a non-negative multiple of 8 bits", offsetBits)
	}
	return f
}

// NumgenRandom is `numgen random mod N`: a random number from 0 to N-1 for
// each packet (KeyInteger), e.g. the key of a load-balancing map.
func NumgenRandom(modulus uint32) Field {
	return numgenField("random", NumgenTypeRandom, modulus)
}

// NumgenInc is `numgen inc mod N`: 0, 1, ..., N-1, 0, ... for successive
// packets (KeyInteger).
func NumgenInc(modulus uint32) Field { return numgenField("inc", NumgenTypeInc, modulus) }

func numgenField(kind string, typ NumgenType, modulus uint32) Field {
	p := selector{text: fmt.Sprintf("numgen %s mod %d", kind, modulus), key: KeyInteger, kind: loadNumgen, numgen: typ, modulus: modulus}
	if modulus == 0 {
		p.err = "modulus 0"
	}
	return Field{parts: []selector{p}}
}

// JHash is `jhash INPUT mod N seed S`: a Jenkins hash of input (packet or
// meta fields, possibly concatenated) from 0 to N-1 (KeyInteger), e.g.
// `jhash ip saddr . th sport mod 2` to spread flows over N backends. A
// zero seed lets the kernel pick a random one when it creates the rule.
func JHash(input Field, modulus, seed uint32) Field {
	t := "jhash " + input.String() + fmt.Sprintf(" mod %d", modulus)
	if seed != 0 {
		t += fmt.Sprintf(" seed 0x%x", seed)
	}
	p := selector{text: t, key: KeyInteger, kind: loadHash, modulus: modulus, seed: seed, inputs: input.clone().parts}
	switch {
	case modulus == 0:
		p.err = "modulus 0"
	case len(input.parts) == 0:
		p.err = "no input"
	}
	for _, in := range input.parts {
		if in.kind == loadNumgen || in.kind == loadHash {
			p.err = "the input must be packet or meta fields"
		}
	}
	return Field{parts: []selector{p}}
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

// clone returns a deep copy of f.
func (f Field) clone() Field {
	parts := append([]selector(nil), f.parts...)
	for i := range parts {
		if parts[i].inputs != nil {
			parts[i].inputs = Field{parts: parts[i].inputs}.clone().parts
		}
	}
	return Field{parts: parts}
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

// negation is the text of a negated operator.
func negation(neg bool) string {
	if neg {
		return "!= "
	}
	return ""
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
		op = negation(m.Op == OpNeq)
	case OpIn, OpNotIn:
		arg = "@" + m.Set
		op = negation(m.Op == OpNotIn)
	case OpInAnon, OpNotInAnon:
		arg = "{ " + strings.Join(renderElements(m.Field.Key(), true, m.Elements), ", ") + " }"
		op = negation(m.Op == OpNotInAnon)
	default:
		op = fmt.Sprintf("op(%d) ", int(m.Op))
	}
	return m.Field.String() + " " + op + arg
}

func (m Match) clone() Expr {
	m.Field = m.Field.clone()
	m.Elements = append([]string(nil), m.Elements...)
	return m
}

func (m Match) lower(c *ruleCtx) ([]IRExpr, error) {
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
		if keyInfos[k].hostOrder && !v.single() {
			return nil, fmt.Errorf("%s: a range of %s values can only be matched against a set", m, k)
		}
		op := CmpEq
		if m.Op == OpNeq {
			op = CmpNeq
		}
		switch {
		case v.wild:
			out = append(out, IRCmp{Op: op, Reg: Reg1, Data: v.lo})
		case v.single():
			out = append(out, IRCmp{Op: op, Reg: Reg1, Data: k.wire(v.lo)})
			if op == CmpEq {
				c.established(parts[0], v.lo)
			}
		case isPrefix(v):
			mask := make([]byte, len(v.lo))
			for i := range mask {
				mask[i] = ^(v.lo[i] ^ v.hi[i])
			}
			out = append(out,
				IRBitwise{Source: Reg1, Dest: Reg1, Len: uint32(len(mask)), Mask: mask, Xor: make([]byte, len(mask))},
				IRCmp{Op: op, Reg: Reg1, Data: v.lo})
		default:
			out = append(out, IRRange{Op: op, Reg: Reg1, From: v.lo, To: v.hi})
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
		out = append(out, IRLookup{Source: Reg1, Set: m.Set, Invert: m.Op == OpNotIn})
		c.refSets = append(c.refSets, m.Set)
	case OpInAnon, OpNotInAnon:
		a, err := newAnonSet(keys, m.Elements)
		if err != nil {
			return nil, fmt.Errorf("%s: anonymous set: %w", m.Field, err)
		}
		c.anon = append(c.anon, a)
		out = append(out, IRLookup{Source: Reg1, Set: a.Def.Name, SetID: a.Def.ID, Invert: m.Op == OpNotInAnon})
	default:
		return nil, fmt.Errorf("%s: unknown operator %d", m.Field, int(m.Op))
	}
	return out, nil
}

// ctBits names the bits of a conntrack bitmask key.
type ctBits struct {
	word  string   // "state", "status": the nft keyword after "ct"
	unit  string   // what one bit is called in errors: "state", "flag"
	names []string // bit i is names[i]
}

// ctBitmasks are the conntrack keys that are bitmasks.
var ctBitmasks = map[CtKey]ctBits{
	// The ct states, as nft names them, in bit order (NF_CT_STATE_INVALID_BIT
	// is bit 0, then IP_CT_ESTABLISHED, IP_CT_RELATED, IP_CT_NEW;
	// NF_CT_STATE_UNTRACKED_BIT is bit 6).
	CtKeyState: {word: "state", unit: "state", names: []string{"invalid", "established", "related", "new", "", "", "untracked"}},
	// The ct status bits (IPS_*), as nft names them.
	CtKeyStatus: {word: "status", unit: "flag", names: []string{"expected", "seen-reply", "assured", "confirmed", "snat", "dnat"}},
}

// CtMatch matches bits of the packet's connection: its conntrack state
// (Key CtKeyState, see CtState) or status (CtKeyStatus, see CtStatus). It
// matches when any of Bits is set (none of them when Negate). In a bridge
// table it needs nf_conntrack_bridge (see FamilyBridge).
type CtMatch struct {
	Key    CtKey
	Bits   []string // states or status flags, by nft name
	Negate bool
}

// CtState matches packets whose conntrack state is any of states (invalid,
// established, related, new, untracked), e.g. CtState("established",
// "related").
func CtState(states ...string) CtMatch { return CtMatch{Key: CtKeyState, Bits: states} }

// CtStatus matches packets whose connection has any of the status flags
// set (expected, seen-reply, assured, confirmed, snat, dnat), e.g.
// CtStatus("dnat") is `ct status dnat`: a connection whose destination was
// rewritten by DNAT (both directions of it).
func CtStatus(flags ...string) CtMatch {
	return CtMatch{Key: CtKeyStatus, Bits: append([]string(nil), flags...)}
}

// Not returns the negated match: none of the bits set.
func (m CtMatch) Not() CtMatch {
	m.Negate = !m.Negate
	return m
}

// word returns the nft keyword of the key, e.g. "state".
func (m CtMatch) word() string {
	if b, ok := ctBitmasks[m.Key]; ok {
		return b.word
	}
	return fmt.Sprintf("key(%d)", int(m.Key))
}

func (m CtMatch) mask() (uint32, error) {
	b, ok := ctBitmasks[m.Key]
	if !ok {
		return 0, fmt.Errorf("ct %s is not a bitmask", m.word())
	}
	var mask uint32
	for _, s := range m.Bits {
		i := slices.Index(b.names, s)
		if i < 0 || s == "" {
			return 0, fmt.Errorf("unknown ct %s %q", b.word, s)
		}
		mask |= 1 << i
	}
	if mask == 0 {
		return 0, fmt.Errorf("ct %s without a %s", b.word, b.unit)
	}
	return mask, nil
}

// String returns e.g. "ct state established,related" or "ct status !=
// snat,dnat" (bits in nft's order).
func (m CtMatch) String() string {
	names := m.Bits
	if mask, err := m.mask(); err == nil {
		names = nil
		for i, n := range ctBitmasks[m.Key].names {
			if mask&(1<<i) != 0 {
				names = append(names, n)
			}
		}
	}
	return "ct " + m.word() + " " + negation(m.Negate) + strings.Join(names, ",")
}

// noConntrack refuses a ct expression in a netdev table, whose hooks run
// before (ingress) or after (egress) conntrack and never see a
// connection.
func noConntrack(c *ruleCtx, e fmt.Stringer) error {
	if c.family == FamilyNetdev {
		return fmt.Errorf("%s is not valid in a netdev table (netdev hooks have no conntrack; match replies with a dynamic set)", e)
	}
	return nil
}

func (m CtMatch) lower(c *ruleCtx) ([]IRExpr, error) {
	if err := noConntrack(c, m); err != nil {
		return nil, err
	}
	mask, err := m.mask()
	if err != nil {
		return nil, err
	}
	op := CmpNeq
	if m.Negate {
		op = CmpEq
	}
	return []IRExpr{
		IRCt{Key: m.Key, Dest: Reg1},
		IRBitwise{Source: Reg1, Dest: Reg1, Len: 4, Mask: binary.NativeEndian.AppendUint32(nil, mask), Xor: make([]byte, 4)},
		IRCmp{Op: op, Reg: Reg1, Data: make([]byte, 4)},
	}, nil
}

func (m CtMatch) clone() Expr {
	m.Bits = append([]string(nil), m.Bits...)
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

func (m CtDirectionMatch) lower(c *ruleCtx) ([]IRExpr, error) {
	if err := noConntrack(c, m); err != nil {
		return nil, err
	}
	dir := byte(0) // IP_CT_DIR_ORIGINAL
	if m.Reply {
		dir = 1 // IP_CT_DIR_REPLY
	}
	return []IRExpr{
		IRCt{Key: CtKeyDirection, Dest: Reg1},
		IRCmp{Op: CmpEq, Reg: Reg1, Data: []byte{dir}},
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
func (m FibMatch) String() string { return "fib daddr type " + negation(m.Negate) + "local" }

func (m FibMatch) clone() Expr { return m }

func (m FibMatch) lower(c *ruleCtx) ([]IRExpr, error) {
	if c.family != FamilyInet {
		return nil, fmt.Errorf("%s is not valid in a %s table", m, c.family)
	}
	op := CmpEq
	if m.Negate {
		op = CmpNeq
	}
	return []IRExpr{
		IRFib{Dest: Reg1, Flags: FibDAddr, Result: FibResultAddrType},
		IRCmp{Op: op, Reg: Reg1, Data: binary.NativeEndian.AppendUint32(nil, rtnLocal)},
	}, nil
}

// PayloadSetStmt rewrites a field of the frame to a constant: `ether
// saddr set 02:00:00:00:00:01` (MAC rewrite). Only link-layer header
// fields can be written, so only in bridge tables: a network or transport
// header field would need its checksums updated, which the model does not
// lower.
type PayloadSetStmt struct {
	Field Field
	Value string // in Match.Value syntax, a single value
}

// SetPayload returns `FIELD set VALUE`.
func SetPayload(f Field, value string) PayloadSetStmt { return PayloadSetStmt{Field: f, Value: value} }

// String returns e.g. "ether saddr set 02:00:00:00:00:01".
func (s PayloadSetStmt) String() string {
	arg := s.Value
	if len(s.Field.parts) == 1 {
		k := s.Field.parts[0].key
		if v, err := k.parseValue(s.Value, modeSingle); err == nil {
			arg = k.nftText(v)
		}
	}
	return s.Field.String() + " set " + arg
}

func (s PayloadSetStmt) clone() Expr {
	s.Field = s.Field.clone()
	return s
}

func (s PayloadSetStmt) lower(c *ruleCtx) ([]IRExpr, error) {
	if len(s.Field.parts) != 1 {
		return nil, fmt.Errorf("%s: only a single field can be set", s)
	}
	p := s.Field.parts[0]
	if p.kind != loadPayload || p.base != PayloadLinkHeader {
		return nil, fmt.Errorf("%s: only link-layer header fields can be set (others need checksum updates)", s)
	}
	deps, err := c.dependencies(s.Field.parts, s)
	if err != nil {
		return nil, err
	}
	v, err := p.key.parseValue(s.Value, modeSingle)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", s, err)
	}
	return append(deps,
		IRImmediate{Dest: Reg1, Data: p.key.wire(v.lo)},
		IRPayloadWrite{Source: Reg1, Base: p.base, Offset: p.offset, Len: uint32(p.key.Size())}), nil
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
	v.Field = v.Field.clone()
	return v
}

func (v VMapStmt) lower(c *ruleCtx) ([]IRExpr, error) {
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
	return append(out, IRLookup{Source: Reg1, Set: v.Map, Dest: RegVerdict, HasDest: true}), nil
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
// (`meta nfproto`). The key may be computed: `dnat to numgen random mod 2
// map @backends` spreads connections over the map's values.
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
	n.Key = n.Key.clone()
	return n
}

func (n NATMapStmt) lower(c *ruleCtx) ([]IRExpr, error) {
	what := n.textIn(c.maps)
	var natType NATType
	var hooks []Hook
	switch n.Kind {
	case NATDst:
		natType, hooks = NATTypeDst, []Hook{HookPrerouting, HookOutput}
	case NATSrc:
		natType, hooks = NATTypeSrc, []Hook{HookPostrouting, HookInput}
	default:
		return nil, fmt.Errorf("%s: unknown nat kind %q", what, n.Kind)
	}
	if c.family != FamilyInet {
		return nil, fmt.Errorf("%s: nat is not valid in a %s table", what, c.family)
	}
	if c.chain != nil && c.chain.IsBase() && (c.chain.Type != ChainTypeNAT || !slices.Contains(hooks, c.chain.Hook)) {
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
	var family NetProto
	switch {
	case len(m.Value) >= 1 && m.Value[0] == KeyIPv4:
		family = NetProtoIPv4
	case len(m.Value) >= 1 && m.Value[0] == KeyIPv6:
		family = NetProtoIPv6
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
	nat := IRNAT{Type: natType, Family: family, AddrMin: Reg1, AddrMax: Reg1}
	if withPort {
		nat.ProtoMin = regAt(pad4(m.Value[0].Size()))
		nat.ProtoMax = nat.ProtoMin
		nat.Specified = true
	}
	return append(out, IRLookup{Source: Reg1, Set: n.Map, Dest: Reg1, HasDest: true}, nat), nil
}

// CounterStmt counts packets and bytes (`counter`).
type CounterStmt struct{}

// Counter returns a `counter` statement.
func Counter() CounterStmt { return CounterStmt{} }

// String returns "counter".
func (CounterStmt) String() string                   { return "counter" }
func (CounterStmt) lower(*ruleCtx) ([]IRExpr, error) { return []IRExpr{IRCounter{}}, nil }
func (s CounterStmt) clone() Expr                    { return s }

// MasqueradeStmt rewrites the source address to the output interface's
// (`masquerade`). Only valid in a nat chain on hook postrouting.
type MasqueradeStmt struct{}

// Masquerade returns a `masquerade` statement.
func Masquerade() MasqueradeStmt { return MasqueradeStmt{} }

// String returns "masquerade".
func (MasqueradeStmt) String() string { return "masquerade" }
func (MasqueradeStmt) terminal() bool { return true }
func (s MasqueradeStmt) clone() Expr  { return s }
func (MasqueradeStmt) lower(c *ruleCtx) ([]IRExpr, error) {
	if c.family != FamilyInet {
		return nil, fmt.Errorf("masquerade is not valid in a %s table", c.family)
	}
	if c.chain != nil && c.chain.IsBase() && (c.chain.Type != ChainTypeNAT || c.chain.Hook != HookPostrouting) {
		return nil, errors.New("masquerade is only valid in a nat chain on hook postrouting")
	}
	return []IRExpr{IRMasq{}}, nil
}

// RejectStmt drops the packet and answers with an ICMP (or ICMPv6)
// port-unreachable (`reject`). Valid on hooks input, forward and output,
// and, in a netdev table, on hook ingress.
type RejectStmt struct{}

// Reject returns a plain `reject` statement.
func Reject() RejectStmt { return RejectStmt{} }

// String returns "reject".
func (RejectStmt) String() string { return "reject" }
func (RejectStmt) terminal() bool { return true }
func (s RejectStmt) clone() Expr  { return s }
func (RejectStmt) lower(c *ruleCtx) ([]IRExpr, error) {
	if c.family == FamilyNetdev && c.chain != nil && c.chain.IsBase() && c.chain.Hook != HookIngress {
		return nil, fmt.Errorf("reject is only valid on hook ingress in a netdev table")
	}
	return []IRExpr{IRReject{Type: RejectICMPX, Code: RejectICMPXPortUnrch}}, nil
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

// ir returns the verdict as the kernel encodes it (v is valid).
func (v VerdictStmt) ir() IRVerdict { return IRVerdict{Code: verdictCodes[v.Verdict], Chain: v.Chain} }

func (v VerdictStmt) lower(c *ruleCtx) ([]IRExpr, error) {
	if _, ok := verdictCodes[v.Verdict]; !ok {
		return nil, fmt.Errorf("unknown verdict %q", v.Verdict)
	}
	if v.Verdict != VerdictJump && v.Verdict != VerdictGoto {
		if v.Chain != "" {
			return nil, fmt.Errorf("verdict %s takes no chain", v.Verdict)
		}
		return []IRExpr{v.ir()}, nil
	}
	target, ok := c.lookupChain(v.Chain)
	if !ok {
		return nil, fmt.Errorf("%s: unknown chain %q", v, v.Chain)
	}
	if target.IsBase() {
		return nil, fmt.Errorf("%s: chain %q is a base chain", v, v.Chain)
	}
	if c.chain != nil && target.Name == c.chain.Name {
		return nil, fmt.Errorf("%s: chain jumps to itself", v)
	}
	c.refChains = append(c.refChains, v.Chain)
	return []IRExpr{v.ir()}, nil
}

// DynsetOp is what a DynsetStmt does to its set.
type DynsetOp string

// Dynamic set operations.
const (
	// DynsetAdd adds the key if absent (an element present keeps its
	// expiry).
	DynsetAdd DynsetOp = "add"
	// DynsetUpdate adds the key, or, if present, restarts its timeout:
	// what keeps a flow's entry alive while packets flow.
	DynsetUpdate DynsetOp = "update"
)

// dynsetOps are the kernel's numbers of the operations (NFT_DYNSET_OP_*).
var dynsetOps = map[DynsetOp]uint32{DynsetAdd: 0, DynsetUpdate: 1}

// DynsetStmt adds the packet's Key to a dynamic set from the data path,
// `update @flows4 { ip daddr . ip saddr timeout 2m }`: how a rule records
// what later packets look up (e.g. the reversed tuple of an admitted
// flow, where no conntrack exists). The set must be Dynamic, with Key's
// type; Timeout, if not zero, overrides the set's default and needs the
// set to have one (Set.Timeout). The statement never ends the rule:
// evaluation goes on whether or not the set had room.
type DynsetStmt struct {
	Op      DynsetOp
	Set     string
	Key     Field
	Timeout time.Duration
}

// SetUpdate returns `update @SET { KEY [timeout T] }`; a zero timeout
// leaves the set's.
func SetUpdate(set string, key Field, timeout time.Duration) DynsetStmt {
	return DynsetStmt{Op: DynsetUpdate, Set: set, Key: key, Timeout: timeout}
}

// SetAdd returns `add @SET { KEY [timeout T] }`.
func SetAdd(set string, key Field, timeout time.Duration) DynsetStmt {
	return DynsetStmt{Op: DynsetAdd, Set: set, Key: key, Timeout: timeout}
}

// String returns e.g. "update @flows4 { ip daddr . ip saddr timeout 2m }".
func (d DynsetStmt) String() string {
	s := string(d.Op) + " @" + d.Set + " { " + d.Key.String()
	if d.Timeout != 0 {
		s += " timeout " + durationText(d.Timeout)
	}
	return s + " }"
}

func (d DynsetStmt) clone() Expr {
	d.Key = d.Key.clone()
	return d
}

func (d DynsetStmt) lower(c *ruleCtx) ([]IRExpr, error) {
	op, ok := dynsetOps[d.Op]
	if !ok {
		return nil, fmt.Errorf("%s: unknown operation %q", d, d.Op)
	}
	s, ok := c.sets[d.Set]
	if !ok {
		if _, isMap := c.maps[d.Set]; isMap {
			return nil, fmt.Errorf("%s: %q is a map, not a set", d, d.Set)
		}
		return nil, fmt.Errorf("%s: unknown set %q", d, d.Set)
	}
	if !s.Dynamic {
		return nil, fmt.Errorf("%s: set %q is not dynamic", d, d.Set)
	}
	if keyString(s.Key) != keyString(d.Key.Key()) {
		return nil, fmt.Errorf("%s: set %q has type %s, key has type %s", d, d.Set, keyString(s.Key), keyString(d.Key.Key()))
	}
	if err := checkTimeout(d.Timeout); err != nil {
		return nil, fmt.Errorf("%s: %w", d, err)
	}
	if d.Timeout != 0 && s.Timeout == 0 {
		return nil, fmt.Errorf("%s: set %q has no timeout (give it one to time its elements)", d, d.Set)
	}
	out, err := c.load(d.Key, d)
	if err != nil {
		return nil, err
	}
	c.refSets = append(c.refSets, d.Set)
	return append(out, IRDynset{Op: op, Set: d.Set, Key: Reg1, Timeout: d.Timeout}), nil
}

// checkTimeout refuses a negative timeout or one that is not whole
// milliseconds (the kernel keeps milliseconds: another value would not
// read back equal).
func checkTimeout(d time.Duration) error {
	if d < 0 || d%time.Millisecond != 0 {
		return fmt.Errorf("timeout %s is not a whole, positive number of milliseconds", d)
	}
	return nil
}

// durationText renders a duration as nft does: "2m", "1h30m", "1s500ms".
func durationText(d time.Duration) string {
	if d == 0 {
		return "0s"
	}
	var b strings.Builder
	for _, u := range []struct {
		unit string
		d    time.Duration
	}{{"d", 24 * time.Hour}, {"h", time.Hour}, {"m", time.Minute}, {"s", time.Second}, {"ms", time.Millisecond}} {
		if n := d / u.d; n > 0 {
			fmt.Fprintf(&b, "%d%s", n, u.unit)
			d -= n * u.d
		}
	}
	return b.String()
}
