package reconcile

import (
	"fmt"

	"github.com/hostnet/hostnet/internal/netmodel"
)

// shaperDiff says how the host's shaper differs from s ("" when it
// does not): a shaper whose token bucket or redirect is gone, or whose
// rate is not s's, is applied again (in place: tc replace).
func (p *pass) shaperDiff(s netmodel.Shaper) string {
	have, ok := p.obs.Shapers[s.Key()]
	switch {
	case !ok:
		return fmt.Sprintf("%s traffic of %s is not shaped", s.Direction, s.Link)
	case have.IFB != s.IFB:
		return fmt.Sprintf("%s traffic of %s goes to %s, not %s", s.Direction, s.Link, have.IFB, s.IFB)
	case have.Rate == 0:
		return fmt.Sprintf("%s traffic of %s is redirected to %s but not shaped there", s.Direction, s.Link, s.IFB)
	case !s.SameShaping(have):
		return fmt.Sprintf("%s traffic of %s is shaped at %d B/s burst %d B, not %d B/s burst %d B",
			s.Direction, s.Link, have.Rate, have.Burst, s.Rate, s.Burst)
	}
	return ""
}

// pruneShapers removes hostnet's shapers that no owner wants (an
// endpoint's QoS removed while the daemon was down).
func (p *pass) pruneShapers() {
	for k, s := range p.obs.Shapers {
		if _, ok := p.want[k]; ok {
			continue
		}
		if _, ok := p.want[netmodel.Key{Kind: netmodel.KindLink, NS: s.NS, ID: s.Link}]; !ok {
			continue // goes with its link
		}
		p.unwanted(k, s, fmt.Sprintf("%s traffic of %s is shaped but no endpoint asks it", s.Direction, s.Link), false)
	}
}
