package netmodel

import (
	"fmt"
	"net/netip"
	"slices"
	"strings"
)

// FlowGuard says which connections of an owner's addresses the host's
// connection tracker may keep. The firewall already judges every packet
// of a flow; what is left after a policy change is to forget the
// tracker's entries of flows the new policy denies, and, for a published
// port that goes, to end the flows its translation keeps alive (nothing
// else stands between them and the endpoint).
type FlowGuard struct {
	Addrs []netip.Addr
	// Published are the ports through which flows reach the owner
	// translated (DNAT): such a flow stays while its port is published.
	Published []PublishedPort
	// Admit judges the first packet of a flow; nil admits nothing.
	Admit Admission
}

// PublishedPort is a published port as the tracker sees its flows.
type PublishedPort struct {
	Proto                      uint8
	ExternalPort, InternalPort uint16
}

// Admission judges flows by their first packet.
type Admission interface {
	Admits(FlowPacket) bool
	// String renders the rules, for golden files and for telling whether
	// two admissions differ.
	String() string
}

// FlowPacket is the first packet of a flow, seen from the owner: Local is
// its own address.
type FlowPacket struct {
	In                    bool // the flow came to the owner
	Proto                 uint8
	Local, Remote         netip.Addr
	LocalPort, RemotePort uint16
}

func (g *FlowGuard) String() string {
	if g == nil {
		return "flows: none kept"
	}
	var b strings.Builder
	fmt.Fprintf(&b, "flows of %v", g.Addrs)
	if len(g.Published) > 0 {
		ps := make([]string, len(g.Published))
		for i, p := range g.Published {
			ps[i] = fmt.Sprintf("%d:%d/%d", p.ExternalPort, p.InternalPort, p.Proto)
		}
		slices.Sort(ps)
		fmt.Fprintf(&b, " published %s", strings.Join(ps, ","))
	}
	if g.Admit != nil {
		fmt.Fprintf(&b, " admit %s", g.Admit)
	} else {
		b.WriteString(" admit nothing")
	}
	return b.String()
}

// Equal reports whether two guards keep the same flows.
func (g *FlowGuard) Equal(o *FlowGuard) bool {
	if g == nil || o == nil {
		return g == o
	}
	return g.String() == o.String()
}

// Published reports whether p is published.
func (g *FlowGuard) publishes(p PublishedPort) bool {
	return g != nil && slices.Contains(g.Published, p)
}

// Dropped reports whether next stops publishing a port g publishes.
func (g *FlowGuard) Dropped(next *FlowGuard) bool {
	if g == nil {
		return false
	}
	for _, p := range g.Published {
		if !next.publishes(p) {
			return true
		}
	}
	return false
}

// Flow is a connection the host's connection tracker follows: its tuple in
// the direction it was opened (Orig) and the tuple replies come back with
// (Reply), which differ when the flow is NATed.
type Flow struct {
	Proto    uint8
	OrigSrc  netip.AddrPort
	OrigDst  netip.AddrPort
	ReplySrc netip.AddrPort
	ReplyDst netip.AddrPort
}

func (f Flow) String() string {
	return fmt.Sprintf("proto %d %s -> %s (reply %s -> %s)", f.Proto, f.OrigSrc, f.OrigDst, f.ReplySrc, f.ReplyDst)
}

// EndsIncoming tells whether g ends a flow the owner received (the owner
// is the reply's source). A flow that reached it through a published port
// was translated, and ends when the port no longer is.
func (g *FlowGuard) EndsIncoming(f Flow) bool {
	if f.OrigDst != f.ReplySrc && !g.publishes(PublishedPort{Proto: f.Proto, ExternalPort: f.OrigDst.Port(), InternalPort: f.ReplySrc.Port()}) {
		return true
	}
	return g == nil || g.Admit == nil || !g.Admit.Admits(FlowPacket{In: true, Proto: f.Proto,
		Local: f.ReplySrc.Addr(), LocalPort: f.ReplySrc.Port(), Remote: f.OrigSrc.Addr(), RemotePort: f.OrigSrc.Port()})
}

// EndsOutgoing tells whether g ends a flow the owner opened.
func (g *FlowGuard) EndsOutgoing(f Flow) bool {
	return g == nil || g.Admit == nil || !g.Admit.Admits(FlowPacket{Proto: f.Proto,
		Local: f.OrigSrc.Addr(), LocalPort: f.OrigSrc.Port(), Remote: f.OrigDst.Addr(), RemotePort: f.OrigDst.Port()})
}
