// Package nft is hostnet's model of its one nftables table per network
// namespace: a pure description of the desired content (sets, chains and
// rules), a deterministic rendering of it in nft syntax, validation, and
// Appliers that bring a namespace's table to that content — Kernel, which
// diffs against what the kernel holds and sends the difference in one atomic
// netlink batch, and Fake, an in-memory stand-in for unit tests.
//
// The package never runs the nft or iptables binaries.
package nft

import (
	"fmt"
	"strings"

	"github.com/google/nftables"
	"golang.org/x/sys/unix"
)

// Table is the desired content of one hostnet table (family inet).
//
// A Table is a plain value: build it, Validate it, hand it to an Applier.
// Appliers do not keep references to it (Fake keeps a deep copy).
type Table struct {
	Name   string   // e.g. "hostnet"
	Sets   []*Set   // named sets; rendered sorted by name
	Maps   []*Map   // named maps; model and rendering only for now (see Map)
	Chains []*Chain // rendered in this order
}

// KeyType is the data type of one field of a set key (or of a match).
type KeyType int

// Key types. A set whose Key has more than one KeyType is a concatenation;
// each field then occupies a multiple of 4 bytes of the key.
const (
	KeyInvalid     KeyType = iota
	KeyIfname              // interface name, 16 bytes NUL padded (nft "ifname")
	KeyIPv4                // IPv4 address, 4 bytes ("ipv4_addr")
	KeyIPv6                // IPv6 address, 16 bytes ("ipv6_addr")
	KeyInetService         // transport port, 2 bytes big endian ("inet_service")
	KeyInetProto           // IP protocol number, 1 byte ("inet_proto")
	KeyNFProto             // netfilter family, 1 byte: ipv4 or ipv6 ("nf_proto")
)

// String returns the nft name of the type, e.g. "ipv4_addr".
func (k KeyType) String() string {
	if d, ok := keyDatatypes[k]; ok {
		return d.Name
	}
	return fmt.Sprintf("keytype(%d)", int(k))
}

// size is the number of bytes a value of k occupies (before padding).
func (k KeyType) size() int {
	if d, ok := keyDatatypes[k]; ok {
		return int(d.Bytes)
	}
	return 0
}

// valid reports whether k is one of the defined key types.
func (k KeyType) valid() bool { _, ok := keyDatatypes[k]; return ok }

var keyDatatypes = map[KeyType]nftables.SetDatatype{
	KeyIfname:      nftables.TypeIFName,
	KeyIPv4:        nftables.TypeIPAddr,
	KeyIPv6:        nftables.TypeIP6Addr,
	KeyInetService: nftables.TypeInetService,
	KeyInetProto:   nftables.TypeInetProto,
	KeyNFProto:     nftables.TypeNFProto,
}

// keyTypeByName maps nft datatype names back to KeyTypes (reading the kernel).
var keyTypeByName = func() map[string]KeyType {
	m := make(map[string]KeyType, len(keyDatatypes))
	for k, d := range keyDatatypes {
		m[d.Name] = k
	}
	return m
}()

// keyString renders a (possibly concatenated) key type, e.g. "ifname . ifname".
func keyString(keys []KeyType) string {
	s := make([]string, len(keys))
	for i, k := range keys {
		s[i] = k.String()
	}
	return strings.Join(s, " . ")
}

// pad4 rounds n up to a multiple of 4 (the register size).
func pad4(n int) int { return (n + 3) &^ 3 }

// keyLen is the length in bytes of a key made of keys: a single field is its
// own size; a concatenation pads every field to 4 bytes.
func keyLen(keys []KeyType) int {
	if len(keys) == 1 {
		return keys[0].size()
	}
	n := 0
	for _, k := range keys {
		n += pad4(k.size())
	}
	return n
}

// maxKeyLen is the largest key a set or register concatenation may have
// (NFT_DATA_VALUE_MAXLEN, i.e. registers 1 to 4).
const maxKeyLen = 64

// Set is a named set of the table.
type Set struct {
	Name     string
	Key      []KeyType // len>1 = concatenation, e.g. {KeyIfname, KeyIfname}
	Interval bool      // prefixes and ranges allowed in elements
	// Elements in text form: "hnbr-1", "10.0.0.1", "10.0.0.0/24", "fd00::/64",
	// "10.0.0.1-10.0.0.9", "hnbr-1 . hnbr-2", "80", "8000-8080", "tcp".
	// Prefixes and ranges need Interval. Order does not matter; an element
	// may appear once, and intervals must not overlap.
	Elements []string
	// Comment is shown by `nft list`. It is written when the set is created;
	// changing only the comment of an existing set does not recreate it.
	Comment string
}

// Map is a named map of the table: Key -> Value, or Key -> verdict when
// Verdict is true (a verdict map; values are "accept", "drop", "jump CHAIN",
// "goto CHAIN", "return").
//
// Maps are modelled, rendered and validated, but not yet supported by the
// Kernel applier, which refuses a table that has any.
type Map struct {
	Name     string
	Key      []KeyType
	Value    KeyType // ignored when Verdict
	Verdict  bool
	Interval bool
	Elements map[string]string // key text -> value text
	Comment  string
}

// ChainType is the type of a base chain.
type ChainType string

// Chain types.
const (
	ChainTypeFilter ChainType = "filter"
	ChainTypeNAT    ChainType = "nat"
	ChainTypeRoute  ChainType = "route"
)

// Hook is the netfilter hook a base chain is attached to.
type Hook string

// Hooks of the inet family.
const (
	HookPrerouting  Hook = "prerouting"
	HookInput       Hook = "input"
	HookForward     Hook = "forward"
	HookOutput      Hook = "output"
	HookPostrouting Hook = "postrouting"
)

var hookNums = map[Hook]nftables.ChainHook{
	HookPrerouting:  unix.NF_INET_PRE_ROUTING,
	HookInput:       unix.NF_INET_LOCAL_IN,
	HookForward:     unix.NF_INET_FORWARD,
	HookOutput:      unix.NF_INET_LOCAL_OUT,
	HookPostrouting: unix.NF_INET_POST_ROUTING,
}

func hookByNum(n nftables.ChainHook) (Hook, bool) {
	for h, v := range hookNums {
		if v == n {
			return h, true
		}
	}
	return "", false
}

// Standard chain priorities (as nft names them).
const (
	PriorityRaw      = -300
	PriorityMangle   = -150
	PriorityDstNAT   = -100
	PriorityFilter   = 0
	PrioritySecurity = 50
	PrioritySrcNAT   = 100
)

// Verdict is a verdict: a base chain's policy (accept or drop) or the
// kind of a verdict statement.
type Verdict string

// Verdicts. Only VerdictAccept and VerdictDrop are valid chain policies.
const (
	VerdictAccept Verdict = "accept"
	VerdictDrop   Verdict = "drop"
	VerdictReturn Verdict = "return"
	VerdictJump   Verdict = "jump"
	VerdictGoto   Verdict = "goto"
)

// Chain is a chain of the table: a base chain when Hook is set, otherwise
// a regular chain that is only reached by jump or goto.
type Chain struct {
	Name     string
	Type     ChainType // "filter", "nat", "route"; empty for a regular chain
	Hook     Hook      // empty for a regular chain
	Priority int       // e.g. PriorityFilter, PrioritySrcNAT; 0 for a regular chain
	Policy   Verdict   // accept (the default when empty) or drop; base chains only
	Rules    []Rule
}

// base reports whether c is a base chain.
func (c *Chain) base() bool { return c.Hook != "" }

// policy returns the effective policy of a base chain.
func (c *Chain) policy() Verdict {
	if c.Policy == "" {
		return VerdictAccept
	}
	return c.Policy
}

// Rule is one rule of a chain.
type Rule struct {
	// Comment is the stable identity of the rule. It is stored in the rule's
	// userdata as an nft comment (with a short hash of the rule's text
	// appended) so `nft list` shows it. At most maxCommentLen bytes, no
	// double quote, no control characters.
	Comment string
	Exprs   []Expr // matches and statements, evaluated in order
}

// Clone returns a deep copy of t.
func (t *Table) Clone() *Table {
	if t == nil {
		return nil
	}
	c := &Table{Name: t.Name}
	for _, s := range t.Sets {
		cs := *s
		cs.Key = append([]KeyType(nil), s.Key...)
		cs.Elements = append([]string(nil), s.Elements...)
		c.Sets = append(c.Sets, &cs)
	}
	for _, m := range t.Maps {
		cm := *m
		cm.Key = append([]KeyType(nil), m.Key...)
		if m.Elements != nil {
			cm.Elements = make(map[string]string, len(m.Elements))
			for k, v := range m.Elements {
				cm.Elements[k] = v
			}
		}
		c.Maps = append(c.Maps, &cm)
	}
	for _, ch := range t.Chains {
		cc := *ch
		cc.Rules = make([]Rule, len(ch.Rules))
		for i, r := range ch.Rules {
			cc.Rules[i] = Rule{Comment: r.Comment, Exprs: make([]Expr, len(r.Exprs))}
			for j, e := range r.Exprs {
				if e != nil {
					e = e.clone()
				}
				cc.Rules[i].Exprs[j] = e
			}
		}
		c.Chains = append(c.Chains, &cc)
	}
	return c
}
