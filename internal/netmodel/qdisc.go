package netmodel

import "fmt"

// QdiscHandle is the handle major of the token bucket qdiscs hostnet
// installs ("hn" in ASCII): a root qdisc with it on a tagged link is
// hostnet's, any other is left alone.
const QdiscHandle = 0x686e

// Shaper caps one direction of a host link's traffic with a token bucket
// (tc tbf), outside the namespace of the endpoint behind the link, so the
// endpoint cannot undo it. It is a tc object (KindTC); changing its rate
// replaces the qdisc's parameters in place, without touching the link.
//
//   - TCEgress shapes what the host sends out of Link (to the endpoint):
//     `tc qdisc replace dev LINK root handle 686e: tbf rate R burst B`.
//   - TCIngress shapes what arrives on Link (from the endpoint). A qdisc
//     cannot queue arriving packets, so an ingress filter redirects them
//     to IFB, an ifb device of the same owner, whose root tbf shapes
//     them: `tc qdisc add dev LINK ingress; tc filter add dev LINK
//     parent ffff: matchall action mirred egress redirect dev IFB; tc
//     qdisc replace dev IFB root handle 686e: tbf ...` (as the CNI
//     bandwidth plugin does).
type Shaper struct {
	NS        NS
	Link      string
	Direction TCDirection
	// IFB is the ifb device of a TCIngress shaper.
	IFB string
	// Rate is in bytes per second, Burst in bytes (both above zero).
	Rate, Burst uint64
}

func (s Shaper) Key() Key {
	return Key{Kind: KindTC, NS: s.NS, ID: s.Link + " " + string(s.Direction) + " shaper"}
}

func (s Shaper) String() string {
	via := ""
	if s.IFB != "" {
		via = " via " + s.IFB
	}
	return fmt.Sprintf("tc %s %s%s tbf rate %dB/s burst %dB", s.Link, s.Direction, via, s.Rate, s.Burst) + inNS(s.NS)
}

// SameShaping reports whether an observed shaper shapes as s does: the
// rate exactly, the burst within what the kernel's rounding of it to
// scheduler ticks loses.
func (s Shaper) SameShaping(o Shaper) bool {
	if s.Rate != o.Rate || s.IFB != o.IFB {
		return false
	}
	d := int64(s.Burst) - int64(o.Burst)
	return d < 0 && -d <= int64(s.Burst/100)+64 || d >= 0 && d <= int64(s.Burst/100)+64
}
