package netmodel

// UplinkHandover gives a host adapter (the uplink) to a bridge of
// hostnet's, the way a Hyper-V external switch that shares its adapter
// with the host does: the bridge takes the uplink's MAC, the uplink
// becomes its port, and the host's addressing moves from the uplink to
// the bridge: every global address (IPv4, and IPv6 but link-local) and
// every main-table route through the uplink (the kernel's own prefix
// routes follow the addresses). A port's addresses stop working (the
// bridge takes what it receives), so without the move the host would lose
// the segment.
//
// Removing it moves back to the uplink what is on the bridge and frees
// the uplink (nomaster). Both ways are read from the kernel as it is, not
// from a record, so that a step cut short (a crash) is finished by the
// next apply or removal; a bridge that goes hands its uplink back first
// (the dataplane does it for any bridge with a port not of hostnet's).
// It lives in the host namespace.
type UplinkHandover struct {
	Uplink string
	Bridge string
}

func (u UplinkHandover) Key() Key { return Key{Kind: KindHandover, ID: u.Uplink} }
func (u UplinkHandover) String() string {
	return "handover " + u.Uplink + " to bridge " + u.Bridge + " (its MAC, addresses and routes)"
}

// ObservedHandover is an uplink found as a port of one of hostnet's
// bridges, with what of the host's addressing is not yet on the bridge.
type ObservedHandover struct {
	UplinkHandover
	// Left describes what is still on the uplink that belongs on the
	// bridge (an address, a route), or a bridge without the uplink's MAC.
	Left []string
}
