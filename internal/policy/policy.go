// Package policy compiles hostnet's objects into the desired content of its
// nftables table. It is pure: the same objects give the same table, and the
// table's chains are fixed; networks and (later) endpoints, mappings and
// ACLs change only the elements of its sets and maps, so the rules a packet
// meets do not grow with their number.
package policy

import (
	"net/netip"
	"sort"

	"github.com/hostnet/hostnet/api"
	"github.com/hostnet/hostnet/internal/dataplane/nft"
)

// TableName is the name of hostnet's table (family inet) in the host
// namespace.
const TableName = "hostnet"

// Set names of the table.
const (
	SetBridges     = "bridges"      // every hostnet bridge
	SetIntraBridge = "intra_bridge" // bridge . same bridge: traffic within one network
	SetNATv4       = "nat_v4"       // IPv4 subnets masqueraded behind the host
	SetNATv6       = "nat_v6"       // IPv6 subnets masqueraded behind the host
)

// Network is what the compiler needs of a network.
type Network struct {
	ID      string
	Type    api.NetworkType
	Bridge  string
	Subnets []netip.Prefix
}

// Compile returns the desired table for the given networks.
func Compile(nets []Network) *nft.Table {
	sorted := append([]Network(nil), nets...)
	sort.Slice(sorted, func(i, j int) bool { return sorted[i].Bridge < sorted[j].Bridge })

	bridges := &nft.Set{Name: SetBridges, Key: []nft.KeyType{nft.KeyIfname},
		Comment: "bridges of hostnet networks"}
	intra := &nft.Set{Name: SetIntraBridge, Key: []nft.KeyType{nft.KeyIfname, nft.KeyIfname},
		Comment: "traffic that stays within one network"}
	nat4 := &nft.Set{Name: SetNATv4, Key: []nft.KeyType{nft.KeyIPv4}, Interval: true,
		Comment: "IPv4 subnets of NAT networks"}
	nat6 := &nft.Set{Name: SetNATv6, Key: []nft.KeyType{nft.KeyIPv6}, Interval: true,
		Comment: "IPv6 subnets of NAT networks"}
	for _, n := range sorted {
		if n.Bridge == "" {
			continue
		}
		bridges.Elements = append(bridges.Elements, n.Bridge)
		intra.Elements = append(intra.Elements, n.Bridge+" . "+n.Bridge)
		if n.Type != api.NAT {
			continue
		}
		for _, p := range n.Subnets {
			if p.Addr().Is4() {
				nat4.Elements = append(nat4.Elements, p.Masked().String())
			} else {
				nat6.Elements = append(nat6.Elements, p.Masked().String())
			}
		}
	}

	forward := &nft.Chain{
		Name: "forward", Type: nft.ChainTypeFilter, Hook: nft.HookForward, Priority: nft.PriorityFilter,
		Rules: []nft.Rule{
			{Comment: "bridged within one network",
				Exprs: []nft.Expr{nft.Concat(nft.Iifname(), nft.Oifname()).InSet(SetIntraBridge), nft.Accept()}},
			{Comment: "networks are isolated from each other",
				Exprs: []nft.Expr{nft.Iifname().InSet(SetBridges), nft.Oifname().InSet(SetBridges), nft.Drop()}},
		},
	}
	postrouting := &nft.Chain{
		Name: "postrouting", Type: nft.ChainTypeNAT, Hook: nft.HookPostrouting, Priority: nft.PrioritySrcNAT,
		Rules: []nft.Rule{
			{Comment: "NAT networks reach the outside behind the host (IPv4)",
				Exprs: []nft.Expr{nft.IPSaddr().InSet(SetNATv4), nft.Oifname().NotInSet(SetBridges), nft.Masquerade()}},
			{Comment: "NAT networks reach the outside behind the host (IPv6)",
				Exprs: []nft.Expr{nft.IP6Saddr().InSet(SetNATv6), nft.Oifname().NotInSet(SetBridges), nft.Masquerade()}},
		},
	}
	return &nft.Table{
		Name:   TableName,
		Sets:   []*nft.Set{bridges, intra, nat4, nat6},
		Chains: []*nft.Chain{forward, postrouting},
	}
}
