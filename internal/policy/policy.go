// Package policy compiles firewall policies into nftables objects, for the
// drivers to place at the hook points where their traffic passes. It is
// pure: the same policies give the same objects.
//
// An endpoint's ACL rules (with its network's NetworkACL rules) become a
// profile: one chain per direction, named by a hash of its content, so
// that endpoints with the same rules share one chain. A hook point
// (HookPoint) dispatches each packet to the chains of the endpoints it
// concerns through verdict maps, so the rules a packet meets do not grow
// with the number of endpoints. Anti-spoofing (AntiSpoof) holds each
// endpoint's port to its own MAC and addresses, in a bridge table: an inet
// table never sees ARP nor the Ethernet source of a bridged frame, and the
// addresses the hook point dispatches by are only sound once the sources
// are checked.
//
// ACLs live in the inet table because they need connection tracking,
// which the bridge family lacks without nf_conntrack_bridge; bridged
// traffic reaches the inet hooks through br_netfilter. Macvlan traffic
// never does: DeviceHooks puts the same profiles on the uplink's netdev
// hooks, with a flow table of its own in place of conntrack.
package policy

import (
	"net/netip"

	"github.com/hostnet/hostnet/internal/nftmodel"
)

// TableName is the name of hostnet's tables in the host namespace.
const TableName = "hostnet"

// Maps of a hook point.
const (
	MapACLIn4  = "acl_in_v4" // endpoint address : jump to the chain of its In rules
	MapACLIn6  = "acl_in_v6"
	MapACLOut4 = "acl_out_v4" // endpoint address : jump to the chain of its Out rules
	MapACLOut6 = "acl_out_v6"
)

// Sets of the anti-spoofing table.
const (
	SetPorts   = "endpoint_ports" // host sides of endpoints' veths
	SetPortMAC = "endpoint_mac"   // port . the endpoint's MAC
	SetPortV4  = "endpoint_v4"    // port . an IPv4 address of the endpoint
	SetPortV6  = "endpoint_v6"    // port . an IPv6 address of the endpoint
	// SetPortFrom4 is port . MAC . IPv4 address: the common frame of an
	// endpoint, let on by one lookup before the full checks.
	SetPortFrom4 = "endpoint_from_v4"
)

func set(name, comment string, interval bool, keys ...nftmodel.KeyType) *nftmodel.Set {
	return &nftmodel.Set{Name: name, Key: keys, Interval: interval, Comment: comment}
}

func verdictMap(name, comment string, key nftmodel.KeyType) *nftmodel.Map {
	return &nftmodel.Map{Name: name, Key: []nftmodel.KeyType{key}, Verdict: true, Comment: comment}
}

func rule(comment string, exprs ...nftmodel.Expr) nftmodel.Rule {
	return nftmodel.Rule{Comment: comment, Exprs: exprs}
}

// pick returns v4 for an IPv4 address, else v6.
func pick(a netip.Addr, v4, v6 string) string {
	if a.Is4() {
		return v4
	}
	return v6
}

// bridgePrioritySpoof runs the bridge table's source checks before
// anything else sees a frame (br_netfilter runs at 0).
const bridgePrioritySpoof = -300
