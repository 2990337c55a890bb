package nft

import (
	"encoding/binary"
	"errors"
	"fmt"

	"github.com/google/nftables"
	"github.com/google/nftables/binaryutil"
	"github.com/google/nftables/expr"
	"github.com/google/nftables/userdata"
	"github.com/hostnet/hostnet/internal/nftmodel"
	"github.com/mdlayher/netlink"
	"golang.org/x/sys/unix"
)

// This file translates the model's lowered form (nftmodel's IR) into
// google/nftables values, one for one, and what the kernel lists back
// into the model's form. It makes no choice of its own: registers, byte
// order and interval ends come from the model.

// kernelExpr translates one IR expression.
func kernelExpr(e nftmodel.IRExpr) (expr.Any, error) {
	switch x := e.(type) {
	case nftmodel.IRMeta:
		return &expr.Meta{Key: expr.MetaKey(x.Key), Register: uint32(x.Dest)}, nil
	case nftmodel.IRPayload:
		return &expr.Payload{DestRegister: uint32(x.Dest), Base: expr.PayloadBase(x.Base), Offset: x.Offset, Len: x.Len}, nil
	case nftmodel.IRPayloadWrite:
		return &expr.Payload{OperationType: expr.PayloadWrite, SourceRegister: uint32(x.Source), Base: expr.PayloadBase(x.Base),
			Offset: x.Offset, Len: x.Len}, nil
	case nftmodel.IRCmp:
		return &expr.Cmp{Op: expr.CmpOp(x.Op), Register: uint32(x.Reg), Data: x.Data}, nil
	case nftmodel.IRBitwise:
		return &expr.Bitwise{SourceRegister: uint32(x.Source), DestRegister: uint32(x.Dest), Len: x.Len, Mask: x.Mask, Xor: x.Xor}, nil
	case nftmodel.IRCt:
		return &expr.Ct{Key: expr.CtKey(x.Key), Register: uint32(x.Dest)}, nil
	case nftmodel.IRRange:
		return &expr.Range{Op: expr.CmpOp(x.Op), Register: uint32(x.Reg), FromData: x.From, ToData: x.To}, nil
	case nftmodel.IRLookup:
		return &expr.Lookup{SourceRegister: uint32(x.Source), SetName: x.Set, SetID: x.SetID, DestRegister: uint32(x.Dest),
			IsDestRegSet: x.HasDest, Invert: x.Invert}, nil
	case nftmodel.IRNAT:
		return &expr.NAT{Type: expr.NATType(x.Type), Family: uint32(x.Family), RegAddrMin: uint32(x.AddrMin), RegAddrMax: uint32(x.AddrMax),
			RegProtoMin: uint32(x.ProtoMin), RegProtoMax: uint32(x.ProtoMax), Specified: x.Specified}, nil
	case nftmodel.IRMasq:
		return &expr.Masq{}, nil
	case nftmodel.IRFib:
		return &expr.Fib{Register: uint32(x.Dest),
			FlagSADDR: x.Flags&nftmodel.FibSAddr != 0, FlagDADDR: x.Flags&nftmodel.FibDAddr != 0,
			ResultOIF: x.Result == nftmodel.FibResultOIF, ResultOIFNAME: x.Result == nftmodel.FibResultOIFName,
			ResultADDRTYPE: x.Result == nftmodel.FibResultAddrType}, nil
	case nftmodel.IRReject:
		return &expr.Reject{Type: x.Type, Code: x.Code}, nil
	case nftmodel.IRCounter:
		return &expr.Counter{}, nil
	case nftmodel.IRImmediate:
		return &expr.Immediate{Register: uint32(x.Dest), Data: x.Data}, nil
	case nftmodel.IRVerdict:
		return kernelVerdict(x), nil
	case nftmodel.IRNumgen:
		return &expr.Numgen{Register: uint32(x.Dest), Modulus: x.Modulus, Type: uint32(x.Type), Offset: x.Offset}, nil
	case nftmodel.IRDynset:
		return &expr.Dynset{SrcRegKey: uint32(x.Key), SetName: x.Set, Operation: x.Op, Timeout: x.Timeout}, nil
	case nftmodel.IRHash:
		return &expr.Hash{SourceRegister: uint32(x.Source), DestRegister: uint32(x.Dest), Length: x.Len, Modulus: x.Modulus,
			Seed: x.Seed, Offset: x.Offset, Type: expr.HashType(x.Type)}, nil
	}
	return nil, fmt.Errorf("no translation of %T", e)
}

func kernelVerdict(v nftmodel.IRVerdict) *expr.Verdict {
	return &expr.Verdict{Kind: expr.VerdictKind(v.Code), Chain: v.Chain}
}

// kernelRule translates a lowered rule of chain (its anonymous sets come
// separately, see batch.addRules).
func kernelRule(t *nftables.Table, chain string, r *nftmodel.RuleIR) (*nftables.Rule, error) {
	exprs := make([]expr.Any, len(r.Exprs))
	for i, e := range r.Exprs {
		x, err := kernelExpr(e)
		if err != nil {
			return nil, err
		}
		exprs[i] = x
	}
	return &nftables.Rule{Table: t, Chain: &nftables.Chain{Name: chain, Table: t}, Exprs: exprs,
		UserData: userdata.AppendString(nil, userdata.TypeComment, r.ID)}, nil
}

// kernelSet translates a set or map definition.
func kernelSet(t *nftables.Table, d *nftmodel.SetDef) *nftables.Set {
	s := &nftables.Set{
		Table:         t,
		Name:          d.Name,
		ID:            d.ID,
		Anonymous:     d.Anonymous,
		Constant:      d.Constant,
		Interval:      d.Interval,
		IsMap:         d.IsMap,
		Concatenation: d.Concat,
		Comment:       d.Comment,
		Dynamic:       d.Dynamic,
		HasTimeout:    d.Timeout != 0,
		Timeout:       d.Timeout,
		Size:          d.Size,
		KeyType:       datatype(d.Key),
		KeyByteOrder:  binaryutil.BigEndian,
	}
	if d.KeyHostOrder {
		s.KeyByteOrder = binaryutil.NativeEndian
	}
	if d.IsMap {
		s.DataType = datatype(d.Data)
	}
	return s
}

func datatype(d nftmodel.Datatype) nftables.SetDatatype {
	t := nftables.SetDatatype{Name: d.Name, Bytes: d.Bytes}
	t.SetNFTMagic(d.Magic)
	return t
}

// kernelElems translates elements.
func kernelElems(elems []nftmodel.SetElem) []nftables.SetElement {
	out := make([]nftables.SetElement, len(elems))
	for i, e := range elems {
		out[i] = nftables.SetElement{Key: e.Key, KeyEnd: e.KeyEnd, IntervalEnd: e.IntervalEnd, Val: e.Val}
		if e.Verdict != nil {
			out[i].VerdictData = kernelVerdict(*e.Verdict)
		}
	}
	return out
}

// kernelChain translates a chain definition.
func kernelChain(t *nftables.Table, c *nftmodel.ChainDef) *nftables.Chain {
	kc := &nftables.Chain{Name: c.Name, Table: t, Device: c.Device}
	num, ok := c.Hook.NumberIn(modelFamily(t.Family))
	if !ok {
		return kc
	}
	kc.Type = nftables.ChainType(c.Type)
	kc.Hooknum = nftables.ChainHookRef(nftables.ChainHook(num))
	kc.Priority = nftables.ChainPriorityRef(nftables.ChainPriority(c.Priority))
	p := nftables.ChainPolicyAccept
	if c.Policy == nftmodel.VerdictDrop {
		p = nftables.ChainPolicyDrop
	}
	kc.Policy = &p
	return kc
}

// kernelTable is the google/nftables table of key.
func kernelTable(key nftmodel.TableKey) *nftables.Table {
	f := nftables.TableFamilyINet
	switch key.Family {
	case nftmodel.FamilyBridge:
		f = nftables.TableFamilyBridge
	case nftmodel.FamilyNetdev:
		f = nftables.TableFamilyNetdev
	}
	return &nftables.Table{Name: key.Name, Family: f}
}

// modelFamily is the model's family of a google/nftables family
// (FamilyInet for one the model does not know).
func modelFamily(f nftables.TableFamily) nftmodel.Family {
	switch f {
	case nftables.TableFamilyBridge:
		return nftmodel.FamilyBridge
	case nftables.TableFamilyNetdev:
		return nftmodel.FamilyNetdev
	}
	return nftmodel.FamilyInet
}

// modelElems translates the elements the kernel lists for a set or map
// (verdict: a verdict map's, whose values google/nftables hands over
// undecoded). An element whose verdict does not decode has none: the
// model then sees the map as unreadable.
func modelElems(kel []nftables.SetElement, verdict bool) []nftmodel.SetElem {
	out := make([]nftmodel.SetElem, len(kel))
	for i, ke := range kel {
		out[i] = nftmodel.SetElem{Key: ke.Key, KeyEnd: ke.KeyEnd, IntervalEnd: ke.IntervalEnd}
		if !verdict {
			out[i].Val = ke.Val
		} else if v, err := decodeVerdict(ke.Val); err == nil {
			out[i].Verdict = &v
		}
	}
	return out
}

// decodeVerdict parses the verdict data of a verdict map element as
// google/nftables returns it: the attributes nested in NFTA_DATA_VERDICT.
func decodeVerdict(b []byte) (nftmodel.IRVerdict, error) {
	ad, err := netlink.NewAttributeDecoder(b)
	if err != nil {
		return nftmodel.IRVerdict{}, fmt.Errorf("verdict: %w", err)
	}
	ad.ByteOrder = binary.BigEndian
	var (
		v    nftmodel.IRVerdict
		seen bool
	)
	for ad.Next() {
		switch ad.Type() {
		case unix.NFTA_VERDICT_CODE:
			v.Code, seen = nftmodel.VerdictCode(int32(ad.Uint32())), true
		case unix.NFTA_VERDICT_CHAIN:
			v.Chain = ad.String()
		}
	}
	if err := ad.Err(); err != nil {
		return nftmodel.IRVerdict{}, fmt.Errorf("verdict: %w", err)
	}
	if !seen {
		return nftmodel.IRVerdict{}, errors.New("verdict without a code")
	}
	return v, nil
}

// modelRule is what the model needs of a rule the kernel lists: its
// identity and the sets and chains it names.
func modelRule(r *nftables.Rule) nftmodel.ReadRule {
	var rr nftmodel.ReadRule
	rr.ID, _ = userdata.GetString(r.UserData, userdata.TypeComment)
	for _, e := range r.Exprs {
		switch e := e.(type) {
		case *expr.Lookup:
			rr.Sets = append(rr.Sets, e.SetName)
		case *expr.Dynset:
			rr.Sets = append(rr.Sets, e.SetName)
		case *expr.Verdict:
			if e.Chain != "" {
				rr.Chains = append(rr.Chains, e.Chain)
			}
		}
	}
	return rr
}

// modelChain is the model's definition of a chain the kernel lists, in a
// table of family f. A base chain on a hook the model does not know gets a
// hook that matches none (so that it is replaced).
func modelChain(f nftmodel.Family, ch *nftables.Chain) nftmodel.ChainDef {
	d := nftmodel.ChainDef{Name: ch.Name, Type: nftmodel.ChainType(ch.Type), Device: ch.Device}
	if ch.Hooknum == nil {
		return d
	}
	h, ok := nftmodel.HookByNumberIn(f, uint32(*ch.Hooknum))
	if !ok {
		h = nftmodel.Hook(fmt.Sprintf("hook%d", *ch.Hooknum))
	}
	d.Hook = h
	if ch.Priority != nil {
		d.Priority = int(*ch.Priority)
	}
	d.Policy = nftmodel.VerdictAccept
	if ch.Policy != nil && *ch.Policy == nftables.ChainPolicyDrop {
		d.Policy = nftmodel.VerdictDrop
	}
	return d
}
