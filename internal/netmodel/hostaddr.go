package netmodel

import (
	"net"
	"net/netip"
)

// HostAddressing is what the host namespace holds of addresses and
// routes, apart from hostnet's own devices: what a network's subnet must
// not collide with.
type HostAddressing struct {
	// Addrs are the host's addresses, each with its prefix length
	// (10.0.0.5/24; `ip addr`).
	Addrs []netip.Prefix
	// Routes are the destinations of the host's routes in every table
	// (`ip route show table all`), masked.
	Routes []netip.Prefix
	// Links are the host's own devices (not hostnet's): what a network
	// may take as its uplink.
	Links []HostLink
}

// HostLink is a device of the host that hostnet did not make (`ip link`).
type HostLink struct {
	Name string
	Kind string // the kernel's kind: "veth", "bridge", "macvlan", "" for a physical NIC...
	MAC  net.HardwareAddr
	MTU  int
	// Up says the device is administratively up and has a carrier.
	Up bool
	// Master is the device this one is a port of ("" when none).
	Master string
	// Addrs are its addresses with their prefix lengths.
	Addrs []netip.Prefix
}

// Link returns the host's device named name.
func (h HostAddressing) Link(name string) (HostLink, bool) {
	for _, l := range h.Links {
		if l.Name == name {
			return l, true
		}
	}
	return HostLink{}, false
}

// Clash is an address or route of the host that a subnet overlaps.
type Clash struct {
	Prefix netip.Prefix
	Route  bool // a route's destination, not an address
}

func (c Clash) String() string {
	if c.Route {
		return "the host's route to " + c.Prefix.String()
	}
	return "the host's address " + c.Prefix.String()
}

// Clashes returns the host's addresses and routes that p overlaps. A
// default route (/0) is no clash: every subnet overlaps it.
func (h HostAddressing) Clashes(p netip.Prefix) []Clash {
	var out []Clash
	for _, a := range h.Addrs {
		if a.Overlaps(p) {
			out = append(out, Clash{Prefix: a})
		}
	}
	for _, r := range h.Routes {
		if r.Bits() > 0 && r.Overlaps(p) {
			out = append(out, Clash{Prefix: r, Route: true})
		}
	}
	return out
}

// Prefixes returns every address's prefix and every route's destination.
func (h HostAddressing) Prefixes() []netip.Prefix {
	out := make([]netip.Prefix, 0, len(h.Addrs)+len(h.Routes))
	for _, a := range h.Addrs {
		out = append(out, a.Masked())
	}
	return append(out, h.Routes...)
}
