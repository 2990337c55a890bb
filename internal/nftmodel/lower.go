package nftmodel

import (
	"encoding/binary"
	"errors"
	"fmt"
	"sync/atomic"
)

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

	nfproto NetProto // network protocol the rule is known to be restricted to
	l4proto byte     // transport protocol the rule is known to be restricted to

	refSets   []string  // named sets and maps the rule looks up
	refChains []string  // chains the rule jumps or goes to
	anon      []AnonSet // anonymous sets the rule looks up, sent with it
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

// netNames names the network protocols of implicit dependencies.
var netNames = map[NetProto]string{NetProtoIPv4: "ipv4", NetProtoIPv6: "ipv6", NetProtoARP: "arp"}

// etherTypeOf is the EtherType that a network protocol implies in a bridge
// table, and the reverse.
var etherTypeOf = map[NetProto]uint16{NetProtoIPv4: ethPIP, NetProtoIPv6: ethPIPv6, NetProtoARP: ethPARP}

// requireNet returns the implicit dependency on network protocol proto, as
// nft adds it: `meta nfproto` in an inet table, `ether type` in a bridge
// table, `meta protocol` in a netdev table; nothing when the rule already
// established it.
func (c *ruleCtx) requireNet(proto NetProto, what fmt.Stringer) ([]IRExpr, error) {
	if proto == 0 || c.nfproto == proto {
		return nil, nil
	}
	if c.nfproto != 0 {
		return nil, fmt.Errorf("%s: rule mixes %s and %s matches", what, netNames[c.nfproto], netNames[proto])
	}
	c.nfproto = proto
	if c.family == FamilyNetdev {
		// As nft does: the frame's EtherType as the device saw it.
		return []IRExpr{
			IRMeta{Key: MetaProtocol, Dest: Reg1},
			IRCmp{Op: CmpEq, Reg: Reg1, Data: binary.BigEndian.AppendUint16(nil, etherTypeOf[proto])},
		}, nil
	}
	if c.family == FamilyBridge {
		return []IRExpr{
			IRPayload{Dest: Reg1, Base: PayloadLinkHeader, Offset: 12, Len: 2},
			IRCmp{Op: CmpEq, Reg: Reg1, Data: binary.BigEndian.AppendUint16(nil, etherTypeOf[proto])},
		}, nil
	}
	if proto == NetProtoARP {
		return nil, fmt.Errorf("%s: arp fields are only valid in a bridge table", what)
	}
	return []IRExpr{
		IRMeta{Key: MetaNFProto, Dest: Reg1},
		IRCmp{Op: CmpEq, Reg: Reg1, Data: []byte{byte(proto)}},
	}, nil
}

// requireL4 returns the implicit dependency `meta l4proto PROTO`, unless
// the rule already established it.
func (c *ruleCtx) requireL4(proto byte, what fmt.Stringer) ([]IRExpr, error) {
	if proto == 0 || c.l4proto == proto {
		return nil, nil
	}
	if c.l4proto != 0 {
		return nil, fmt.Errorf("%s: rule mixes meta l4proto %s and %s", what,
			KeyInetProto.formatOne([]byte{c.l4proto}), KeyInetProto.formatOne([]byte{proto}))
	}
	c.l4proto = proto
	return []IRExpr{
		IRMeta{Key: MetaL4Proto, Dest: Reg1},
		IRCmp{Op: CmpEq, Reg: Reg1, Data: []byte{proto}},
	}, nil
}

// load returns the loads of f into registers from 1 on (each field of a
// concatenation padded to 4 bytes), preceded by the implicit dependencies
// of its selectors that the rule has not established yet. what names the
// expression in errors (rendered only for an error).
func (c *ruleCtx) load(f Field, what fmt.Stringer) ([]IRExpr, error) {
	if len(f.parts) == 0 {
		return nil, errors.New("match without a field")
	}
	if n := keyLen(f.Key()); n > maxKeyLen {
		return nil, fmt.Errorf("%s: concatenation of %d bytes exceeds %d", f, n, maxKeyLen)
	}
	deps, err := c.dependencies(f.parts, what)
	if err != nil {
		return nil, err
	}
	loads, err := loadAt(f.parts, 0, what)
	if err != nil {
		return nil, err
	}
	return append(deps, loads...), nil
}

// dependencies checks the selectors (and the inputs of hashes) against the
// table and returns their implicit dependencies.
func (c *ruleCtx) dependencies(parts []selector, what fmt.Stringer) ([]IRExpr, error) {
	var out []IRExpr
	for _, p := range parts {
		switch {
		case p.err != "":
			return nil, fmt.Errorf("%s: %s: %s", what, p.text, p.err)
		case !p.key.Valid():
			return nil, fmt.Errorf("%s: %s: invalid key type %d", what, p.text, int(p.key))
		case p.link && !c.family.linkLayer():
			return nil, fmt.Errorf("%s: %s is only valid in a bridge or netdev table", what, p.text)
		case p.kind == loadMeta && p.meta == MetaNFProto && c.family != FamilyInet:
			return nil, fmt.Errorf("%s: meta nfproto never matches in a %s table (use ether type)", what, c.family)
		}
		if p.kind == loadHash {
			dep, err := c.dependencies(p.inputs, what)
			if err != nil {
				return nil, err
			}
			out = append(out, dep...)
			continue
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
	return out, nil
}

// loadAt returns the loads of parts into the registers from byte offset
// start of the register file on, laid out as a concatenation. A hash
// loads its inputs from its own offset on, then hashes them into it: the
// parts after it are loaded afterwards, over the inputs.
func loadAt(parts []selector, start int, what fmt.Stringer) ([]IRExpr, error) {
	keys := make([]KeyType, len(parts))
	for i, p := range parts {
		keys[i] = p.key
	}
	if n := start + keyLen(keys); n > maxKeyLen {
		return nil, fmt.Errorf("%s: concatenation of %d bytes exceeds %d", what, n, maxKeyLen)
	}
	var out []IRExpr
	off := start
	for _, p := range parts {
		reg := regAt(off)
		switch p.kind {
		case loadPayload:
			out = append(out, IRPayload{Dest: reg, Base: p.base, Offset: p.offset, Len: uint32(p.key.Size())})
		case loadMeta:
			out = append(out, IRMeta{Key: p.meta, Dest: reg})
		case loadNumgen:
			out = append(out, IRNumgen{Type: p.numgen, Modulus: p.modulus, Dest: reg})
		case loadHash:
			in, err := loadAt(p.inputs, off, what)
			if err != nil {
				return nil, err
			}
			out = append(out, in...)
			out = append(out, IRHash{Type: HashJenkins, Source: reg, Dest: reg, Len: uint32(keyLen(p.inputKeys())),
				Modulus: p.modulus, Seed: p.seed})
		}
		off += pad4(p.key.Size())
	}
	return out, nil
}

// established records what an equality match on p with value b restricts
// the rule to: `meta nfproto ipv4`, `ether type ip6`, `meta l4proto tcp`
// make later implicit dependencies on the same protocol redundant.
func (c *ruleCtx) established(p selector, b []byte) {
	switch {
	case p.key == KeyNFProto:
		c.nfproto = NetProto(b[0])
	case p.key == KeyEtherType && p.kind == loadPayload && p.base == PayloadLinkHeader && p.offset == 12:
		et := binary.BigEndian.Uint16(b)
		for proto, t := range etherTypeOf {
			if t == et {
				c.nfproto = proto
			}
		}
	case p.key == KeyInetProto && p.kind == loadMeta && p.meta == MetaL4Proto:
		c.l4proto = b[0]
	}
}

// setIDs numbers the sets that batches create: anonymous sets when their
// rule is lowered, named sets when a batch creates them, from one counter
// so that no two sets of a batch share an ID.
var setIDs atomic.Uint32

// nextSetID returns a set ID no other set of the process has.
func nextSetID() uint32 { return setIDs.Add(1) }
