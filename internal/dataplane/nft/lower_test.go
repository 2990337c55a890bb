package nft

import (
	"encoding/binary"
	"testing"

	"github.com/google/nftables"
	"github.com/google/nftables/expr"
	"github.com/hostnet/hostnet/internal/nftmodel"
	"github.com/hostnet/hostnet/internal/nftmodel/nfttest"
	"github.com/mdlayher/netlink"
	"golang.org/x/sys/unix"
)

// ruleExprs returns the kernel expressions of rule i of chain, as a batch
// creating tbl sends them.
func ruleExprs(t *testing.T, tbl *nftmodel.Table, chain string, i int) []expr.Any {
	t.Helper()
	for _, s := range created(t, tbl) {
		if s.Kind == nftmodel.StepAddRules && s.Name == chain {
			r, err := kernelRule(nil, chain, s.Rules[i])
			if err != nil {
				t.Fatal(err)
			}
			return r.Exprs
		}
	}
	t.Fatalf("no rules of chain %s", chain)
	return nil
}

func TestImplicitDependencies(t *testing.T) {
	ll := func(et uint16) []expr.Any {
		b := make([]byte, 2)
		binary.BigEndian.PutUint16(b, et)
		return []expr.Any{
			&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseLLHeader, Offset: 12, Len: 2},
			&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: b},
		}
	}
	nfproto := func(p byte) []expr.Any {
		return []expr.Any{&expr.Meta{Key: expr.MetaKeyNFPROTO, Register: 1}, &expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: []byte{p}}}
	}
	l4 := func(p byte) []expr.Any {
		return []expr.Any{&expr.Meta{Key: expr.MetaKeyL4PROTO, Register: 1}, &expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: []byte{p}}}
	}
	cat := func(xs ...[]expr.Any) []expr.Any {
		var out []expr.Any
		for _, x := range xs {
			out = append(out, x...)
		}
		return out
	}
	for _, tc := range []struct {
		name string
		tbl  *nftmodel.Table
		want []expr.Any // the prefix of the rule's expressions
	}{
		{"bridge ip", nfttest.OneRule(nftmodel.FamilyBridge, nftmodel.ChainTypeFilter, nftmodel.HookForward, nftmodel.IPSaddr().Eq("10.0.0.1"), nftmodel.Drop()), ll(unix.ETH_P_IP)},
		{"bridge ip6", nfttest.OneRule(nftmodel.FamilyBridge, nftmodel.ChainTypeFilter, nftmodel.HookForward, nftmodel.IP6Saddr().Eq("::1"), nftmodel.Drop()), ll(unix.ETH_P_IPV6)},
		{"bridge arp", nfttest.OneRule(nftmodel.FamilyBridge, nftmodel.ChainTypeFilter, nftmodel.HookForward, nftmodel.ArpSaddrIP().Eq("10.0.0.1"), nftmodel.Drop()),
			cat(ll(unix.ETH_P_ARP), []expr.Any{&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseNetworkHeader, Offset: 14, Len: 4}})},
		{"explicit ether type", nfttest.OneRule(nftmodel.FamilyBridge, nftmodel.ChainTypeFilter, nftmodel.HookForward, nftmodel.EtherType().Eq("arp"), nftmodel.ArpSaddrEther().Eq("02:00:00:00:00:01"), nftmodel.Drop()),
			cat(ll(unix.ETH_P_ARP), []expr.Any{&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseNetworkHeader, Offset: 8, Len: 6}})},
		{"inet ip", nfttest.OneRule(nftmodel.FamilyInet, "", "", nftmodel.IPSaddr().Eq("10.0.0.1"), nftmodel.Drop()), nfproto(unix.NFPROTO_IPV4)},
		{"icmpv6 inet", nfttest.OneRule(nftmodel.FamilyInet, "", "", nftmodel.ICMPv6Type().Eq("nd-neighbor-advert"), nftmodel.Drop()),
			cat(nfproto(unix.NFPROTO_IPV6), l4(58), []expr.Any{&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseTransportHeader, Offset: 0, Len: 1}})},
		{"icmpv6 bridge after l4proto", nfttest.OneRule(nftmodel.FamilyBridge, "", "", nftmodel.L4Proto().Eq("ipv6-icmp"), nftmodel.ICMPv6Type().Eq("136"), nftmodel.THRaw(64, nftmodel.KeyIPv6).Eq("fd00::1"), nftmodel.Drop()),
			cat(l4(58), ll(unix.ETH_P_IPV6), []expr.Any{
				&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseTransportHeader, Offset: 0, Len: 1},
				&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: []byte{136}},
				&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseTransportHeader, Offset: 8, Len: 16},
			})},
		{"ifname . ether", nfttest.OneRule(nftmodel.FamilyBridge, "", "", nftmodel.Concat(nftmodel.Iifname(), nftmodel.EtherSaddr()).InAnon("a . 02:00:00:00:00:01"), nftmodel.Drop()),
			[]expr.Any{&expr.Meta{Key: expr.MetaKeyIIFNAME, Register: 1}, &expr.Payload{DestRegister: 2, Base: expr.PayloadBaseLLHeader, Offset: 6, Len: 6}}},
	} {
		got := ruleExprs(t, tc.tbl, "c", 0)
		if len(got) < len(tc.want) || exprDump(got[:len(tc.want)]) != exprDump(tc.want) {
			t.Errorf("%s:\n got %s\nwant %s...", tc.name, exprDump(got), exprDump(tc.want))
		}
	}
}

func TestNATAndFibLowering(t *testing.T) {
	tbl := nfttest.NAT()
	rules := map[string][]expr.Any{
		"vip4": ruleExprs(t, tbl, "publish", 0), "any4": ruleExprs(t, tbl, "publish", 1),
		"vip6": ruleExprs(t, tbl, "publish", 2), "any6": ruleExprs(t, tbl, "publish", 3),
		"obnat4": ruleExprs(t, tbl, "postrouting", 0),
	}
	last := func(es []expr.Any, n int) string { return exprDump(es[len(es)-n:]) }
	for name, want := range map[string][]expr.Any{
		"vip4": {&expr.Lookup{SourceRegister: 1, SetName: "pm4_vip", DestRegister: 1, IsDestRegSet: true},
			&expr.NAT{Type: expr.NATTypeDestNAT, Family: unix.NFPROTO_IPV4, RegAddrMin: 1, RegAddrMax: 1, RegProtoMin: unix.NFT_REG32_01, RegProtoMax: unix.NFT_REG32_01, Specified: true}},
		"any6": {&expr.Lookup{SourceRegister: 1, SetName: "pm6", DestRegister: 1, IsDestRegSet: true},
			&expr.NAT{Type: expr.NATTypeDestNAT, Family: unix.NFPROTO_IPV6, RegAddrMin: 1, RegAddrMax: 1, RegProtoMin: unix.NFT_REG_2, RegProtoMax: unix.NFT_REG_2, Specified: true}},
		"obnat4": {&expr.Lookup{SourceRegister: 1, SetName: "obnat4", DestRegister: 1, IsDestRegSet: true},
			&expr.NAT{Type: expr.NATTypeSourceNAT, Family: unix.NFPROTO_IPV4, RegAddrMin: 1, RegAddrMax: 1}},
	} {
		if got := last(rules[name], len(want)); got != exprDump(want) {
			t.Errorf("%s ends with\n  %s\nwant\n  %s", name, got, exprDump(want))
		}
	}
	// any4: fib, then the implied family, then the key: meta l4proto in
	// register 1, th dport in the 4-byte register after it.
	local := make([]byte, 4)
	binary.NativeEndian.PutUint32(local, unix.RTN_LOCAL)
	want := []expr.Any{
		&expr.Fib{Register: 1, FlagDADDR: true, ResultADDRTYPE: true},
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: local},
		&expr.Meta{Key: expr.MetaKeyNFPROTO, Register: 1},
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: []byte{unix.NFPROTO_IPV4}},
		&expr.Meta{Key: expr.MetaKeyL4PROTO, Register: 1},
		&expr.Payload{DestRegister: unix.NFT_REG32_01, Base: expr.PayloadBaseTransportHeader, Offset: 2, Len: 2},
	}
	if got := exprDump(rules["any4"][:len(want)]); got != exprDump(want) {
		t.Errorf("any4 starts with\n  %s\nwant\n  %s", got, exprDump(want))
	}
	// vip6's address match already establishes ipv6: one family check.
	n := 0
	for _, e := range rules["vip6"] {
		if m, ok := e.(*expr.Meta); ok && m.Key == expr.MetaKeyNFPROTO {
			n++
		}
	}
	if n != 1 {
		t.Errorf("vip6 checks the family %d times", n)
	}
	// ct status.
	mask := make([]byte, 4)
	binary.NativeEndian.PutUint32(mask, 0x20)
	if got, want := exprDump(ruleExprs(t, tbl, "forward", 0)[:3]), exprDump([]expr.Any{
		&expr.Ct{Key: expr.CtKeySTATUS, Register: 1},
		&expr.Bitwise{SourceRegister: 1, DestRegister: 1, Len: 4, Mask: mask, Xor: make([]byte, 4)},
		&expr.Cmp{Op: expr.CmpOpNeq, Register: 1, Data: make([]byte, 4)},
	}); got != want {
		t.Errorf("ct status dnat:\n  %s\nwant\n  %s", got, want)
	}
}

// listedVerdict encodes verdict data as the kernel lists it (the attributes
// nested in NFTA_DATA_VERDICT, as google/nftables hands them over in Val).
func listedVerdict(t *testing.T, v *expr.Verdict) []byte {
	t.Helper()
	attrs := []netlink.Attribute{{Type: unix.NFTA_VERDICT_CODE, Data: binary.BigEndian.AppendUint32(nil, uint32(v.Kind))}}
	if v.Chain != "" {
		attrs = append(attrs, netlink.Attribute{Type: unix.NFTA_VERDICT_CHAIN, Data: []byte(v.Chain + "\x00")})
	}
	b, err := netlink.MarshalAttributes(attrs)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// Verdict map values go to the kernel as verdicts and come back, as
// google/nftables lists them (undecoded), to the same verdicts.
func TestVerdictRoundTrip(t *testing.T) {
	for _, v := range []nftmodel.IRVerdict{{Code: nftmodel.CodeAccept}, {Code: nftmodel.CodeDrop}, {Code: nftmodel.CodeReturn},
		{Code: nftmodel.CodeGoto, Chain: "x"}, {Code: nftmodel.CodeJump, Chain: "y"}} {
		kel := kernelElems([]nftmodel.SetElem{{Key: []byte{1}, Verdict: &v}})
		kel[0].Val, kel[0].VerdictData = listedVerdict(t, kel[0].VerdictData), nil
		if got := modelElems(kel, true); got[0].Verdict == nil || *got[0].Verdict != v {
			t.Errorf("verdict %+v came back as %+v", v, got[0].Verdict)
		}
	}
	if got := modelElems([]nftables.SetElement{{Key: []byte{1}, Val: []byte{1, 2}}}, true); got[0].Verdict != nil {
		t.Errorf("garbage decoded as verdict %+v", got[0].Verdict)
	}
}

// Every IR expression has a translation (the model may use any of them).
func TestEveryIRTranslates(t *testing.T) {
	for _, e := range []nftmodel.IRExpr{nftmodel.IRMeta{}, nftmodel.IRPayload{}, nftmodel.IRPayloadWrite{}, nftmodel.IRCmp{},
		nftmodel.IRBitwise{}, nftmodel.IRCt{}, nftmodel.IRRange{}, nftmodel.IRLookup{}, nftmodel.IRNAT{}, nftmodel.IRMasq{},
		nftmodel.IRFib{}, nftmodel.IRReject{}, nftmodel.IRCounter{}, nftmodel.IRImmediate{}, nftmodel.IRVerdict{},
		nftmodel.IRNumgen{}, nftmodel.IRHash{}, nftmodel.IRDynset{}} {
		if _, err := kernelExpr(e); err != nil {
			t.Error(err)
		}
	}
}

// The model's numbers for nft's data types are google/nftables' (which
// are nft's).
func TestDatatypesMatchNftables(t *testing.T) {
	for k, want := range map[nftmodel.KeyType]nftables.SetDatatype{
		nftmodel.KeyIfname: nftables.TypeIFName, nftmodel.KeyIPv4: nftables.TypeIPAddr, nftmodel.KeyIPv6: nftables.TypeIP6Addr,
		nftmodel.KeyInetService: nftables.TypeInetService, nftmodel.KeyInetProto: nftables.TypeInetProto,
		nftmodel.KeyNFProto: nftables.TypeNFProto, nftmodel.KeyEther: nftables.TypeEtherAddr,
		nftmodel.KeyEtherType: nftables.TypeEtherType, nftmodel.KeyICMPv6Type: nftables.TypeICMP6Type,
		nftmodel.KeyInteger: nftables.TypeInteger, nftmodel.KeyICMPType: nftables.TypeICMPType,
	} {
		if got := datatype(nftmodel.DatatypeOf([]nftmodel.KeyType{k})); got != want {
			t.Errorf("%s: %+v, want %+v", k, got, want)
		}
	}
	concat := []nftmodel.KeyType{nftmodel.KeyIfname, nftmodel.KeyEther, nftmodel.KeyInetService}
	want := nftables.MustConcatSetType(nftables.TypeIFName, nftables.TypeEtherAddr, nftables.TypeInetService)
	if got := datatype(nftmodel.DatatypeOf(concat)); got != want {
		t.Errorf("concatenation: %+v, want %+v", got, want)
	}
	if got := datatype(nftmodel.VerdictDatatype); got != nftables.TypeVerdict {
		t.Errorf("verdict: %+v", got)
	}
}
