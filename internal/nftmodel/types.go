// Package nftmodel is hostnet's model of its nftables tables: a pure
// description of the desired content of a table (sets, maps, chains and
// rules), a deterministic rendering of it in nft syntax, validation, and
// its lowering to a small intermediate representation of the kernel's
// objects and expressions (see ir.go) that an applier translates 1:1 into
// netlink messages.
//
// The package touches no kernel and imports no netlink library. It also
// holds what appliers share beyond one table: the compiled form of a
// table (State) that they diff (Plan) and patch (TablePatch, PatchRun),
// so that an in-memory applier and the kernel one refuse and send the
// same things.
package nftmodel

import (
	"fmt"
	"strings"
	"time"
)

// Table is the desired content of one hostnet table.
//
// A Table is a plain value: build it, Validate it, hand it to an applier.
// Appliers do not keep references to it. They key tables by (Family,
// Name): an inet and a bridge table may share a name.
type Table struct {
	Family Family   // FamilyInet (the zero value), FamilyBridge or FamilyNetdev
	Name   string   // e.g. "hostnet"
	Sets   []*Set   // named sets; rendered sorted by name
	Maps   []*Map   // named maps (data and verdict maps); rendered sorted by name
	Chains []*Chain // rendered in this order
}

// Key returns the key appliers know the table by.
func (t *Table) Key() TableKey { return TableKey{t.Family, t.Name} }

// TableKey identifies a table in a network namespace.
type TableKey struct {
	Family Family
	Name   string
}

// String returns the name of an inet table, "FAMILY NAME" otherwise
// ("bridge hostnet", "netdev hostnet"; the form errors use).
func (k TableKey) String() string {
	if k.Family == FamilyInet {
		return k.Name
	}
	return k.Family.String() + " " + k.Name
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
	// FamilyNetdev sees the frames a device receives (hook ingress) or
	// sends (hook egress), before and after every other hook of the host,
	// whatever their path: macvlan traffic, which never meets the inet or
	// bridge hooks, is seen on its lower device. Each base chain is bound
	// to one device (Chain.Device); its only chain type is filter. There
	// is no conntrack at these hooks: ct expressions are refused, as are
	// nat, fib and `meta nfproto` (always netdev here). An IPv4 or IPv6
	// match implies `meta protocol ip` or `meta protocol ip6` (the frame's
	// EtherType, as the device saw it).
	FamilyNetdev
)

// String returns the nft name of the family: "inet", "bridge" or
// "netdev".
func (f Family) String() string {
	switch f {
	case FamilyInet:
		return "inet"
	case FamilyBridge:
		return "bridge"
	case FamilyNetdev:
		return "netdev"
	}
	return fmt.Sprintf("family(%d)", int(f))
}

// Valid reports whether f is one of the modelled families.
func (f Family) Valid() bool { return f == FamilyInet || f == FamilyBridge || f == FamilyNetdev }

// linkLayer reports whether the family's rules see the link-layer header
// (ether fields, ARP).
func (f Family) linkLayer() bool { return f == FamilyBridge || f == FamilyNetdev }

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
	// KeyInteger is a 32-bit number in host byte order ("integer"): what
	// numgen and jhash produce, so the key type of the maps they look up.
	// Elements are decimal numbers; it cannot be an interval.
	KeyInteger
	KeyICMPType // ICMP type, 1 byte: echo-request, echo-reply, ... or a number ("icmp_type")
)

// keyInfo is what nft and the kernel know of a key type.
type keyInfo struct {
	name  string // nft's name of the datatype
	size  int    // bytes a value occupies (before padding)
	magic uint32 // nft's datatype number, recorded by the kernel as the set's key type
	// hostOrder: values are host-endian in registers and keys (they come
	// from the kernel's own arithmetic, not from packets).
	hostOrder bool
}

// keyInfos are nft's datatypes (src/datatype.h of nftables).
var keyInfos = map[KeyType]keyInfo{
	KeyIfname:      {name: "ifname", size: 16, magic: 41},
	KeyIPv4:        {name: "ipv4_addr", size: 4, magic: 7},
	KeyIPv6:        {name: "ipv6_addr", size: 16, magic: 8},
	KeyInetService: {name: "inet_service", size: 2, magic: 13},
	KeyInetProto:   {name: "inet_proto", size: 1, magic: 12},
	KeyNFProto:     {name: "nf_proto", size: 1, magic: 2},
	KeyEther:       {name: "ether_addr", size: 6, magic: 9},
	KeyEtherType:   {name: "ether_type", size: 2, magic: 10},
	KeyICMPv6Type:  {name: "icmpv6_type", size: 1, magic: 29},
	KeyInteger:     {name: "integer", size: 4, magic: 4, hostOrder: true},
	KeyICMPType:    {name: "icmp_type", size: 1, magic: 14},
}

// String returns the nft name of the type, e.g. "ipv4_addr".
func (k KeyType) String() string {
	if d, ok := keyInfos[k]; ok {
		return d.name
	}
	return fmt.Sprintf("keytype(%d)", int(k))
}

// Size is the number of bytes a value of k occupies (before padding); 0
// for an invalid type.
func (k KeyType) Size() int { return keyInfos[k].size }

// Valid reports whether k is one of the defined key types.
func (k KeyType) Valid() bool { _, ok := keyInfos[k]; return ok }

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
		return keys[0].Size()
	}
	n := 0
	for _, k := range keys {
		n += pad4(k.Size())
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
	// may appear once, and intervals must not overlap (see Table.Validate
	// for concatenations).
	Elements []string
	// Comment is shown by `nft list`. It is written when the set is created;
	// changing only the comment of an existing set does not recreate it.
	Comment string
	// Dynamic makes the set one that rules fill (`flags dynamic`, see
	// DynsetStmt): its elements are the kernel's, so Elements must be
	// empty, appliers never diff them (they survive every Apply), a patch
	// may not name it, and it cannot be an interval set.
	Dynamic bool
	// Timeout, when not zero, lets elements expire (`flags timeout`): it is
	// the set's default, and a DynsetStmt may give its own. Only a dynamic
	// set may have one (a timeout would make an applier's elements vanish
	// under it). Whole milliseconds, as the kernel keeps it.
	Timeout time.Duration
	// Size bounds the number of elements (`size N`): a dynamic set whose
	// size is reached adds no more until some expire. 0 leaves the kernel's
	// default (65535 once a rule updates the set), and appliers then do
	// not compare it.
	Size uint32
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
// (with the same numbers), the netdev family its own two.
const (
	HookPrerouting  Hook = "prerouting"
	HookInput       Hook = "input"
	HookForward     Hook = "forward"
	HookOutput      Hook = "output"
	HookPostrouting Hook = "postrouting"

	HookIngress Hook = "ingress" // netdev: frames the device received
	HookEgress  Hook = "egress"  // netdev: frames the device is about to send
)

// hookNums are the kernel's numbers of the hooks (NF_INET_*, which the
// bridge family shares).
var hookNums = map[Hook]uint32{
	HookPrerouting:  0,
	HookInput:       1,
	HookForward:     2,
	HookOutput:      3,
	HookPostrouting: 4,
}

// netdevHookNums are the kernel's numbers of the netdev family's hooks
// (NF_NETDEV_*).
var netdevHookNums = map[Hook]uint32{
	HookIngress: 0,
	HookEgress:  1,
}

// hookNumbers returns the hooks of family f and their numbers.
func hookNumbers(f Family) map[Hook]uint32 {
	if f == FamilyNetdev {
		return netdevHookNums
	}
	return hookNums
}

// Number returns the kernel's number of the hook in the inet and bridge
// families (NF_INET_PRE_ROUTING, ...); false for a hook the model does not
// know there. See NumberIn for the netdev family.
func (h Hook) Number() (uint32, bool) { return h.NumberIn(FamilyInet) }

// NumberIn returns the kernel's number of the hook in family f; false for
// a hook the family does not have (as the model knows it).
func (h Hook) NumberIn(f Family) (uint32, bool) {
	n, ok := hookNumbers(f)[h]
	return n, ok
}

// HookByNumber returns the hook the kernel numbers n in the inet and
// bridge families; false for a hook the model does not know.
func HookByNumber(n uint32) (Hook, bool) { return HookByNumberIn(FamilyInet, n) }

// HookByNumberIn returns the hook the kernel numbers n in family f; false
// for a hook the model does not know.
func HookByNumberIn(f Family, n uint32) (Hook, bool) {
	for h, v := range hookNumbers(f) {
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

// maxIfnameLen is the longest interface name (IFNAMSIZ without its NUL).
const maxIfnameLen = ifNameSize - 1

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
	// Device is the device a base chain of a netdev table is bound to
	// (required there, refused elsewhere). Kernels from 6.16 take a
	// device that does not exist (yet); older ones refuse the chain.
	Device string
	Rules  []Rule
}

// IsBase reports whether c is a base chain.
func (c *Chain) IsBase() bool { return c.Hook != "" }

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
		c.Chains = append(c.Chains, ch.Clone())
	}
	return c
}

// Clone returns a deep copy of ch (nil for nil).
func (ch *Chain) Clone() *Chain {
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
