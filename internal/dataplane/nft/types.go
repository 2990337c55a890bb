// Package nft is hostnet's model of its nftables tables in a network
// namespace (one per family: inet, and bridge for what crosses bridge
// ports): a pure description of the desired content (sets, maps, chains
// and rules), a deterministic rendering of it in nft syntax, validation,
// and Appliers that bring a namespace's tables to that content — Kernel,
// which diffs against what the kernel holds and sends the difference in
// one atomic netlink batch, or sends an incremental TablePatch in time
// proportional to the patch, and Fake, an in-memory stand-in for unit
// tests with the same semantics.
//
// The package never runs the nft or iptables binaries.
package nft

import (
	"fmt"
	"strings"

	"github.com/google/nftables"
	"golang.org/x/sys/unix"
)

// Table is the desired content of one hostnet table.
//
// A Table is a plain value: build it, Validate it, hand it to an Applier.
// Appliers do not keep references to it (Fake keeps a deep copy). Appliers
// key tables by (Family, Name): an inet and a bridge table may share a name.
type Table struct {
	Family Family   // FamilyInet (the zero value) or FamilyBridge
	Name   string   // e.g. "hostnet"
	Sets   []*Set   // named sets; rendered sorted by name
	Maps   []*Map   // named maps (data and verdict maps); rendered sorted by name
	Chains []*Chain // rendered in this order
}

// Family is the nftables family of a table.
type Family int

// Families.
const (
	// FamilyInet sees IPv4 and IPv6 packets at the IP layer (hooks of the
	// host's routing path). The zero value.
	FamilyInet Family = iota
	// FamilyBridge sees frames crossing a Linux bridge (hooks of the
	// bridge's forwarding path). Its base chains use the same hook names;
	// it has no nat or route chains. An IPv4 or IPv6 match in it implies
	// `ether type ip` or `ether type ip6` (untagged frames only).
	//
	// Kernel support varies: ct expressions in a bridge table need
	// nf_conntrack_bridge and reject needs nft_reject_bridge; the kernels
	// hostnet is tested on have neither, and refuse such a table at Apply
	// (Validate cannot know).
	FamilyBridge
)

// String returns the nft name of the family: "inet" or "bridge".
func (f Family) String() string {
	switch f {
	case FamilyInet:
		return "inet"
	case FamilyBridge:
		return "bridge"
	}
	return fmt.Sprintf("family(%d)", int(f))
}

func (f Family) valid() bool { return f == FamilyInet || f == FamilyBridge }

// kernel returns the google/nftables family.
func (f Family) kernel() nftables.TableFamily {
	if f == FamilyBridge {
		return nftables.TableFamilyBridge
	}
	return nftables.TableFamilyINet
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
	KeyEther               // Ethernet address, 6 bytes, e.g. 02:00:00:00:00:01 ("ether_addr")
	KeyEtherType           // EtherType, 2 bytes big endian: ip, ip6, arp, vlan or 0x88cc ("ether_type")
	KeyICMPv6Type          // ICMPv6 type, 1 byte: nd-neighbor-solicit, ... or a number ("icmpv6_type")
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
	KeyEther:       nftables.TypeEtherAddr,
	KeyEtherType:   nftables.TypeEtherType,
	KeyICMPv6Type:  nftables.TypeICMP6Type,
}

// keyTypeByMagic maps nft datatype numbers back to KeyTypes (reading the
// kernel).
var keyTypeByMagic = func() map[uint32]KeyType {
	m := make(map[uint32]KeyType, len(keyDatatypes))
	for k, d := range keyDatatypes {
		m[d.GetNFTMagic()] = k
	}
	return m
}()

// datatype returns the google/nftables datatype of a (possibly
// concatenated) key or value.
func datatype(keys []KeyType) nftables.SetDatatype {
	if len(keys) == 1 {
		return keyDatatypes[keys[0]]
	}
	types := make([]nftables.SetDatatype, len(keys))
	for i, k := range keys {
		types[i] = keyDatatypes[k]
	}
	return nftables.MustConcatSetType(types...)
}

// keysFromMagic decodes a (possibly concatenated) nft datatype number of
// a key of n bytes; false when a part is not a modelled type or the
// length does not match.
func keysFromMagic(magic uint32, n uint32) ([]KeyType, bool) {
	var keys []KeyType
	for magic != 0 {
		k, ok := keyTypeByMagic[magic&nftables.SetConcatTypeMask]
		if !ok {
			return nil, false
		}
		keys = append([]KeyType{k}, keys...)
		magic >>= nftables.SetConcatTypeBits
	}
	if len(keys) == 0 || keyLen(keys) != int(n) {
		return nil, false
	}
	return keys, true
}

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

// Map is a named map of the table: a data map, Key -> Value (e.g.
// `inet_proto . inet_service : ipv4_addr . inet_service`), or, when Verdict
// is true, a verdict map, Key -> verdict (values "accept", "drop",
// "return", "jump CHAIN", "goto CHAIN"; CHAIN a regular chain of the
// table). Rules use data maps through DNATMap and SNATMap, verdict maps
// through VMap.
//
// Appliers diff a map's elements by key: new keys are added, missing
// ones deleted, and a key whose value changed is deleted and re-added in
// the same batch. A map whose Key, Value, Verdict or Interval changed is
// recreated (and the chains whose rules use it refilled).
type Map struct {
	Name string
	Key  []KeyType // len>1 = concatenation, as for Set.Key
	// Value is the data type of the values; len>1 = concatenation (e.g.
	// {KeyIPv4, KeyInetService}). It must be empty when Verdict is true.
	Value    []KeyType
	Verdict  bool
	Interval bool // prefixes and ranges allowed in keys
	// Elements maps key text (in Set.Elements syntax) to value text:
	// "10.0.0.2 . 80" for a data map, "jump acl_a1" for a verdict map.
	Elements map[string]string
	// Comment is written when the map is created, like Set.Comment.
	Comment string
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

// Hooks of base chains; the inet and bridge families have the same five
// (with the same numbers).
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

// Standard chain priorities of the inet family (as nft names them).
const (
	PriorityRaw      = -300
	PriorityMangle   = -150
	PriorityDstNAT   = -100
	PriorityFilter   = 0
	PrioritySecurity = 50
	PrioritySrcNAT   = 100
)

// Standard chain priorities of the bridge family (as nft names them). A
// bridge base chain may use any priority.
const (
	PriorityBridgeDstNAT = -300 // "dstnat" on hook prerouting
	PriorityBridgeFilter = -200 // "filter"
	PriorityBridgeOut    = 100  // "out" on hook output
	PriorityBridgeSrcNAT = 300  // "srcnat" on hook postrouting
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
	c := &Table{Family: t.Family, Name: t.Name}
	for _, s := range t.Sets {
		cs := *s
		cs.Key = append([]KeyType(nil), s.Key...)
		cs.Elements = append([]string(nil), s.Elements...)
		c.Sets = append(c.Sets, &cs)
	}
	for _, m := range t.Maps {
		cm := *m
		cm.Key = append([]KeyType(nil), m.Key...)
		cm.Value = append([]KeyType(nil), m.Value...)
		if m.Elements != nil {
			cm.Elements = make(map[string]string, len(m.Elements))
			for k, v := range m.Elements {
				cm.Elements[k] = v
			}
		}
		c.Maps = append(c.Maps, &cm)
	}
	for _, ch := range t.Chains {
		c.Chains = append(c.Chains, cloneChain(ch))
	}
	return c
}

// cloneChain returns a deep copy of ch (nil for nil).
func cloneChain(ch *Chain) *Chain {
	if ch == nil {
		return nil
	}
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
	return &cc
}
