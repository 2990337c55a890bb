package nft

import (
	"encoding/binary"
	"errors"
	"fmt"
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
	sets   map[string]*Set
	chains map[string]*Chain
	chain  *Chain // the chain the rule is in

	nfproto byte // network family the rule is known to be restricted to

	refSets   []string // named sets the rule looks up
	refChains []string // chains the rule jumps or goes to
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
	nfproto byte         // implied network family (NFPROTO_*), 0 for none
	meta    expr.MetaKey // meta key, when payload is false
	payload bool         // load from the packet instead of meta
	base    expr.PayloadBase
	offset  uint32
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
	OpEq    Op = iota // equal to a literal value
	OpNeq             // not equal to a literal value
	OpIn              // element of a named set
	OpNotIn           // not an element of a named set
)

// Match compares a Field with a literal value or looks it up in a named set.
type Match struct {
	Field Field
	Op    Op
	// Value is the literal of OpEq and OpNeq, in set-element syntax: a single
	// value, a prefix or range ("10.0.0.0/8", "8000-8080"), or an interface
	// name prefix ending in "*" ("hnbr-*"). Concatenations can only be
	// matched against sets.
	Value string
	Set   string // the set of OpIn and OpNotIn
}

// Eq matches packets whose field equals v (see Match.Value).
func (f Field) Eq(v string) Match { return Match{Field: f, Op: OpEq, Value: v} }

// Neq matches packets whose field does not equal v.
func (f Field) Neq(v string) Match { return Match{Field: f, Op: OpNeq, Value: v} }

// InSet matches packets whose field is an element of the named set.
func (f Field) InSet(set string) Match { return Match{Field: f, Op: OpIn, Set: set} }

// NotInSet matches packets whose field is not an element of the named set.
func (f Field) NotInSet(set string) Match { return Match{Field: f, Op: OpNotIn, Set: set} }

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
	default:
		op = fmt.Sprintf("op(%d) ", int(m.Op))
	}
	return m.Field.String() + " " + op + arg
}

func (m Match) clone() Expr {
	m.Field.parts = append([]selector(nil), m.Field.parts...)
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

func (m Match) lower(c *ruleCtx) ([]expr.Any, error) {
	parts := m.Field.parts
	if len(parts) == 0 {
		return nil, errors.New("match without a field")
	}
	keys := m.Field.Key()
	if keyLen(keys) > maxKeyLen {
		return nil, fmt.Errorf("%s: concatenation of %d bytes exceeds %d", m.Field, keyLen(keys), maxKeyLen)
	}
	var out []expr.Any
	// Implicit dependencies, as nft adds them: an address match in an
	// inet table first checks the packet's family.
	for _, p := range parts {
		if p.nfproto == 0 {
			continue
		}
		if c.nfproto != 0 && c.nfproto != p.nfproto {
			return nil, fmt.Errorf("%s: rule mixes ipv4 and ipv6 matches", m)
		}
		if c.nfproto == 0 {
			out = append(out,
				&expr.Meta{Key: expr.MetaKeyNFPROTO, Register: unix.NFT_REG_1},
				&expr.Cmp{Op: expr.CmpOpEq, Register: unix.NFT_REG_1, Data: []byte{p.nfproto}})
			c.nfproto = p.nfproto
		}
	}
	off := 0
	for _, p := range parts {
		reg := regAt(off)
		if p.payload {
			out = append(out, &expr.Payload{DestRegister: reg, Base: p.base, Offset: p.offset, Len: uint32(p.key.size())})
		} else {
			out = append(out, &expr.Meta{Key: p.meta, Register: reg})
		}
		off += pad4(p.key.size())
	}
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
			if k == KeyNFProto && op == expr.CmpOpEq {
				c.nfproto = v.lo[0]
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
			return nil, fmt.Errorf("%s: unknown set %q", m, m.Set)
		}
		if keyString(s.Key) != keyString(keys) {
			return nil, fmt.Errorf("%s: set %q has type %s, field has type %s", m, m.Set, keyString(s.Key), keyString(keys))
		}
		out = append(out, &expr.Lookup{SourceRegister: unix.NFT_REG_1, SetName: m.Set, Invert: m.Op == OpNotIn})
		c.refSets = append(c.refSets, m.Set)
	default:
		return nil, fmt.Errorf("%s: unknown operator %d", m.Field, int(m.Op))
	}
	return out, nil
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
// (or none of them when Negate).
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
	target, ok := c.chains[v.Chain]
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
