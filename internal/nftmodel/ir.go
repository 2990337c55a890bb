package nftmodel

import (
	"fmt"
	"time"
)

// This file is the lowering target: plain structs that mirror, field for
// field, the kernel's nf_tables objects and expressions that hostnet uses,
// with the kernel's numbers (include/uapi/linux/netfilter/nf_tables.h). An
// applier translates each into its netlink library's type and nothing
// more: every choice (registers, byte order, implicit dependencies,
// interval ends) is made here.

// IRExpr is one kernel expression of a lowered rule. The set of IR
// expressions is closed: it grows here, with one translation case in the
// dataplane for each.
type IRExpr interface{ irExpr() }

// Register is an nf_tables register: RegVerdict, one of the four 16-byte
// registers RegN(1..4), or one of the sixteen 4-byte registers that
// overlay them (Reg32(0..15)).
type Register uint32

// Registers.
const (
	RegVerdict Register = 0 // NFT_REG_VERDICT
	Reg1       Register = 1 // NFT_REG_1, the first 16-byte register
	reg32First Register = 8 // NFT_REG32_00
)

// Reg32 returns the 4-byte register i (0 to 15), NFT_REG32_00 + i.
func Reg32(i int) Register { return reg32First + Register(i) }

// regAt returns the register that holds byte offset off of a
// concatenation starting at register 1: 16-byte registers where aligned,
// 4-byte registers otherwise (both address the same storage).
func regAt(off int) Register {
	if off%16 == 0 {
		return Reg1 + Register(off/16)
	}
	return Reg32(off / 4)
}

// The kinds of the kernel's numbers that IR expressions carry.
type (
	MetaKey     uint32 // NFT_META_*: what a meta expression loads
	PayloadBase uint32 // NFT_PAYLOAD_*: the header a payload expression addresses
	CmpOp       uint32 // NFT_CMP_*: a comparison operator
	CtKey       uint32 // NFT_CT_*: what a ct expression loads
	NATType     uint32 // NFT_NAT_*: what a nat expression rewrites
	// NetProto is a netfilter protocol family (NFPROTO_*), as `meta
	// nfproto` loads it and a nat expression names its address family.
	NetProto    byte
	FibFlags    uint32 // NFTA_FIB_F_*: the input of a fib lookup
	FibResult   uint32 // NFT_FIB_RESULT_*: what a fib lookup returns
	NumgenType  uint32 // NFT_NG_*: how numgen generates
	HashType    uint32 // NFT_HASH_*: the hash function of a hash expression
	VerdictCode int32  // NF_ACCEPT, NF_DROP, NFT_JUMP, NFT_GOTO, NFT_RETURN
)

// The kernel's numbers that hostnet uses.
const (
	MetaProtocol MetaKey = 1  // NFT_META_PROTOCOL: the frame's EtherType (skb->protocol)
	MetaIIFName  MetaKey = 6  // NFT_META_IIFNAME
	MetaOIFName  MetaKey = 7  // NFT_META_OIFNAME
	MetaNFProto  MetaKey = 15 // NFT_META_NFPROTO
	MetaL4Proto  MetaKey = 16 // NFT_META_L4PROTO

	PayloadLinkHeader      PayloadBase = 0 // NFT_PAYLOAD_LL_HEADER
	PayloadNetworkHeader   PayloadBase = 1 // NFT_PAYLOAD_NETWORK_HEADER
	PayloadTransportHeader PayloadBase = 2 // NFT_PAYLOAD_TRANSPORT_HEADER

	CmpEq  CmpOp = 0 // NFT_CMP_EQ
	CmpNeq CmpOp = 1 // NFT_CMP_NEQ

	CtKeyState     CtKey = 0 // NFT_CT_STATE
	CtKeyDirection CtKey = 1 // NFT_CT_DIRECTION
	CtKeyStatus    CtKey = 2 // NFT_CT_STATUS

	NATTypeSrc NATType = 0 // NFT_NAT_SNAT
	NATTypeDst NATType = 1 // NFT_NAT_DNAT

	NetProtoIPv4 NetProto = 2  // NFPROTO_IPV4
	NetProtoARP  NetProto = 3  // NFPROTO_ARP
	NetProtoIPv6 NetProto = 10 // NFPROTO_IPV6

	FibSAddr FibFlags = 1 << 0 // NFTA_FIB_F_SADDR
	FibDAddr FibFlags = 1 << 1 // NFTA_FIB_F_DADDR

	FibResultOIF      FibResult = 1 // NFT_FIB_RESULT_OIF
	FibResultOIFName  FibResult = 2 // NFT_FIB_RESULT_OIFNAME
	FibResultAddrType FibResult = 3 // NFT_FIB_RESULT_ADDRTYPE

	RejectICMPX          = 2 // NFT_REJECT_ICMPX_UNREACH, the type of IRReject
	RejectICMPXPortUnrch = 1 // NFT_REJECT_ICMPX_PORT_UNREACH, its code

	NumgenTypeInc    NumgenType = 0 // NFT_NG_INCREMENTAL
	NumgenTypeRandom NumgenType = 1 // NFT_NG_RANDOM

	HashJenkins HashType = 0 // NFT_HASH_JENKINS

	CodeDrop   VerdictCode = 0  // NF_DROP
	CodeAccept VerdictCode = 1  // NF_ACCEPT
	CodeJump   VerdictCode = -3 // NFT_JUMP
	CodeGoto   VerdictCode = -4 // NFT_GOTO
	CodeReturn VerdictCode = -5 // NFT_RETURN

	rtnLocal = 2 // RTN_LOCAL, the address type of a local destination
)

var verdictCodes = map[Verdict]VerdictCode{
	VerdictAccept: CodeAccept,
	VerdictDrop:   CodeDrop,
	VerdictReturn: CodeReturn,
	VerdictJump:   CodeJump,
	VerdictGoto:   CodeGoto,
}

// IRMeta loads a meta key into Dest (the `meta` expression).
type IRMeta struct {
	Key  MetaKey
	Dest Register
}

// IRPayload loads Len bytes at Offset of a header into Dest (`payload`).
type IRPayload struct {
	Base   PayloadBase
	Offset uint32
	Len    uint32
	Dest   Register
}

// IRPayloadWrite writes Len bytes of Source at Offset of a header
// (`payload` with a source register), without checksum update.
type IRPayloadWrite struct {
	Base   PayloadBase
	Offset uint32
	Len    uint32
	Source Register
}

// IRCmp compares a register with Data (`cmp`).
type IRCmp struct {
	Op   CmpOp
	Reg  Register
	Data []byte
}

// IRBitwise computes Dest = (Source & Mask) ^ Xor over Len bytes
// (`bitwise`).
type IRBitwise struct {
	Source, Dest Register
	Len          uint32
	Mask, Xor    []byte
}

// IRCt loads a conntrack key into Dest (`ct`).
type IRCt struct {
	Key  CtKey
	Dest Register
}

// IRRange compares a register with the inclusive range [From, To]
// (`range`).
type IRRange struct {
	Op       CmpOp
	Reg      Register
	From, To []byte
}

// IRLookup looks Source up in a set (`lookup`): by name, or, for an
// anonymous set created in the same batch, by SetID. With HasDest, the
// mapped value (or verdict) lands in Dest.
type IRLookup struct {
	Source  Register
	Set     string
	SetID   uint32
	Dest    Register
	HasDest bool
	Invert  bool
}

// IRNAT rewrites an address (and port) to the values in registers
// (`nat`); Specified says the port registers are set.
type IRNAT struct {
	Type               NATType
	Family             NetProto
	AddrMin, AddrMax   Register
	ProtoMin, ProtoMax Register
	Specified          bool
}

// IRMasq masquerades (`masq`).
type IRMasq struct{}

// IRFib does a routing lookup (`fib`).
type IRFib struct {
	Dest   Register
	Flags  FibFlags
	Result FibResult
}

// IRReject rejects the packet (`reject`).
type IRReject struct {
	Type uint32
	Code uint8
}

// IRDynset adds (Op 0, NFT_DYNSET_OP_ADD) or updates (1,
// NFT_DYNSET_OP_UPDATE) the key in register Key in a set, from the data
// path (`dynset`); a zero Timeout leaves the set's.
type IRDynset struct {
	Op      uint32
	Set     string
	Key     Register
	Timeout time.Duration
}

// IRCounter counts packets and bytes (`counter`).
type IRCounter struct{}

// IRImmediate loads Data into Dest (`immediate` with data).
type IRImmediate struct {
	Dest Register
	Data []byte
}

// IRVerdict ends the rule with a verdict (`immediate` into the verdict
// register); Chain is the target of a jump or goto.
type IRVerdict struct {
	Code  VerdictCode
	Chain string
}

// IRNumgen loads a generated number, 0 to Modulus-1 (plus Offset), into
// Dest (`numgen`).
type IRNumgen struct {
	Type    NumgenType
	Modulus uint32
	Offset  uint32
	Dest    Register
}

// IRHash hashes Len bytes from Source into a number, 0 to Modulus-1 (plus
// Offset), in Dest (`hash`). A zero Seed is not sent: the kernel then
// picks a random one.
type IRHash struct {
	Type         HashType
	Source, Dest Register
	Len, Modulus uint32
	Seed, Offset uint32
}

func (IRMeta) irExpr()         {}
func (IRPayload) irExpr()      {}
func (IRPayloadWrite) irExpr() {}
func (IRCmp) irExpr()          {}
func (IRBitwise) irExpr()      {}
func (IRCt) irExpr()           {}
func (IRRange) irExpr()        {}
func (IRLookup) irExpr()       {}
func (IRNAT) irExpr()          {}
func (IRMasq) irExpr()         {}
func (IRFib) irExpr()          {}
func (IRReject) irExpr()       {}
func (IRCounter) irExpr()      {}
func (IRImmediate) irExpr()    {}
func (IRVerdict) irExpr()      {}
func (IRNumgen) irExpr()       {}
func (IRHash) irExpr()         {}
func (IRDynset) irExpr()       {}

// Datatype is the data type of a set's keys or a map's values as the
// kernel records it: nft's name (" . "-joined for a concatenation), the
// length in bytes (fields padded to 4 in a concatenation) and nft's type
// number (6 bits per field, the first field highest).
type Datatype struct {
	Name  string
	Bytes uint32
	Magic uint32
}

// VerdictDatatype is the data type of a verdict map's values.
var VerdictDatatype = Datatype{Name: "verdict", Bytes: 0, Magic: 1}

// concatTypeBits is how many bits a field of a concatenation occupies in
// the type number (NFT_TYPEOF... TYPE_BITS of nft).
const concatTypeBits = 6

// DatatypeOf returns the data type of a (possibly concatenated) key.
func DatatypeOf(keys []KeyType) Datatype {
	d := Datatype{Bytes: uint32(keyLen(keys)), Name: keyString(keys)}
	for _, k := range keys {
		d.Magic = d.Magic<<concatTypeBits | keyInfos[k].magic
	}
	return d
}

// KeysOf decodes a data type the kernel records for a set (type number and
// length in bytes) into key types; false when a field is not a modelled
// type or the length does not match.
func KeysOf(magic, n uint32) ([]KeyType, bool) {
	var keys []KeyType
	for magic != 0 {
		k, ok := keyByMagic[magic&(1<<concatTypeBits-1)]
		if !ok {
			return nil, false
		}
		keys = append([]KeyType{k}, keys...)
		magic >>= concatTypeBits
	}
	if len(keys) == 0 || keyLen(keys) != int(n) {
		return nil, false
	}
	return keys, true
}

var keyByMagic = func() map[uint32]KeyType {
	m := make(map[uint32]KeyType, len(keyInfos))
	for k, d := range keyInfos {
		m[d.magic] = k
	}
	return m
}()

// SetDef is a set or map to create (NFT_MSG_NEWSET).
type SetDef struct {
	Name string // "__set%d" for an anonymous set: the kernel numbers it
	// ID identifies the set within a batch (lookups of an anonymous set
	// name it by ID); unique across all batches of the process.
	ID        uint32
	Key       Datatype
	Concat    bool // the key is a concatenation
	Interval  bool
	Anonymous bool
	Constant  bool
	IsMap     bool
	Data      Datatype // the values of a map (VerdictDatatype for a verdict map)
	// KeyHostOrder records the key's byte order as host order in the set's
	// userdata (as nft does for ifname and integer keys); it only changes
	// how `nft list` prints elements.
	KeyHostOrder bool
	Comment      string
	Dynamic      bool          // NFT_SET_EVAL: rules may add elements
	Timeout      time.Duration // NFT_SET_TIMEOUT with this default, when not zero
	Size         uint32        // NFTA_SET_DESC_SIZE, when not zero
}

// SetElem is one kernel element of a set or map (NFTA_LIST_ELEM). A
// single-field interval is two of them, a start and an end (the first
// value after the interval, IntervalEnd set), unless it runs to the
// largest value; a concatenated interval is one with Key and KeyEnd (both
// inclusive).
type SetElem struct {
	Key         []byte
	KeyEnd      []byte
	IntervalEnd bool
	Val         []byte     // the value of a data map element
	Verdict     *IRVerdict // the value of a verdict map element
}

// ChainDef is a chain to create, or a base chain whose policy to update
// (NFT_MSG_NEWCHAIN). Hook is empty for a regular chain.
type ChainDef struct {
	Name     string
	Type     ChainType
	Hook     Hook
	Priority int
	Policy   Verdict // VerdictAccept or VerdictDrop, base chains only
	Device   string  // the device of a netdev base chain
}

// RuleIR is a lowered rule (NFT_MSG_NEWRULE): its identity, written to
// the rule's userdata as its comment, its expressions, and the anonymous
// sets it looks up, which must be created in the same batch just before
// it.
type RuleIR struct {
	ID    string // "<comment> #<hash>"
	Exprs []IRExpr
	Anon  []AnonSet
}

// AnonSet is an anonymous constant set of a rule, with its elements.
type AnonSet struct {
	Def   SetDef
	Elems []SetElem
}

// StepKind is the kind of a batch step.
type StepKind int

// Step kinds.
const (
	StepAddTable       StepKind = iota + 1 // create the table
	StepFlushChain                         // flush chain Name
	StepDeleteChain                        // delete chain Name
	StepAddChain                           // create Chain, or update its policy
	StepDeleteSet                          // delete set or map Name
	StepAddSet                             // create Set
	StepAddElements                        // add Elems to set or map Name
	StepDeleteElements                     // delete Elems from set or map Name
	StepAddRules                           // append Rules to chain Name
)

// Step is one step of a batch: a description, the table it addresses and
// the kernel messages it stands for.
type Step struct {
	Kind  StepKind
	Table TableKey
	// Desc describes the step for errors, tests and debugging: "add set
	// ports", "add 3 elements to map pm4" (prefixed with "FAMILY NAME: "
	// when the batch spans several tables).
	Desc  string
	Name  string    // the chain, set or map
	Chain *ChainDef // StepAddChain
	Set   *SetDef   // StepAddSet
	// Elems are the elements of StepAddElements and StepDeleteElements,
	// one group per model element (the kernel elements of an rbtree
	// interval go together), in key order.
	Elems [][]SetElem
	Rules []*RuleIR // StepAddRules
}

// Batch is the IR of one atomic netlink transaction: steps in the order
// the kernel must see them. Build one with Plan (ApplyAll) or a PatchRun
// (Patch); a batch may span several tables (Section).
type Batch struct {
	Steps []Step
	table TableKey
	named bool // descriptions name the table
}

// Section makes the following steps address table key; with named, their
// descriptions start with "FAMILY NAME: ".
func (b *Batch) Section(key TableKey, named bool) {
	b.table, b.named = key, named
}

// Ops returns the descriptions of the steps.
func (b *Batch) Ops() []string {
	out := make([]string, len(b.Steps))
	for i, s := range b.Steps {
		out[i] = s.Desc
	}
	return out
}

// add queues a step on the current table, described by format and args.
func (b *Batch) add(s Step, format string, args ...any) {
	s.Table = b.table
	s.Desc = fmt.Sprintf(format, args...)
	if b.named {
		s.Desc = b.table.Family.String() + " " + b.table.Name + ": " + s.Desc
	}
	b.Steps = append(b.Steps, s)
}
