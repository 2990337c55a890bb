package dataplane

import (
	"errors"
	"fmt"
	"math"

	"github.com/hostnet/hostnet/internal/netmodel"
	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// shaperLatencyMicros bounds how long a packet waits in a shaper's queue
// (the queue holds the burst and this much at the rate). The CNI
// bandwidth plugin takes 25 ms; with a tail-drop queue that short (this
// kernel has no fq_codel to put under the bucket), a TCP sender of the
// host, whose segments arrive in 64 KiB GSO bursts, lost a fifth of its
// segments and now and then waited out a retransmission timeout, 8% of a
// three-second transfer. At 100 ms it lost none (test/e2e TestQoSOnL2).
const shaperLatencyMicros = 100_000

var (
	shaperHandle  = netlink.MakeHandle(netmodel.QdiscHandle, 0)
	ingressHandle = netlink.MakeHandle(0xffff, 0)
)

// ensureShapers applies the shapers of p, after the links they sit on.
func (h *Linux) ensureShapers(p *plan, fail failures) {
	for _, s := range objectsOf[netmodel.Shaper](p, netmodel.KindTC) {
		if _, failed := fail[s.Key()]; failed {
			continue
		}
		fail.add(s.Key(), h.withHandle(s.NS, func(nh *netlink.Handle) error { return ensureShaper(nh, s, h.ownTC.note) }))
	}
}

// removeShapers removes the shapers of p, before the links go (a
// redirect to an ifb device that is gone would drop what it redirects).
func (h *Linux) removeShapers(p *plan, fail failures) {
	for _, s := range objectsOf[netmodel.Shaper](p, netmodel.KindTC) {
		fail.add(s.Key(), ignoreGone(h.withHandle(s.NS, func(nh *netlink.Handle) error { return removeShaper(nh, s, h.ownTC.note) })))
	}
}

// tbf returns the token bucket of s on the link with index.
func tbf(index int, s netmodel.Shaper) *netlink.Tbf {
	buffer := float64(s.Burst) * 1e6 / float64(s.Rate) * netlink.TickInUsec()
	limit := float64(s.Rate)*shaperLatencyMicros/1e6 + float64(s.Burst)
	return &netlink.Tbf{
		QdiscAttrs: netlink.QdiscAttrs{LinkIndex: index, Handle: shaperHandle, Parent: netlink.HANDLE_ROOT},
		Rate:       s.Rate,
		Buffer:     uint32(min(buffer, math.MaxUint32)),
		Limit:      uint32(min(limit, math.MaxInt32)),
	}
}

// burstOf is the burst, in bytes, of a token bucket the kernel reports.
func burstOf(t *netlink.Tbf) uint64 {
	return uint64(math.Round(float64(t.Buffer) / netlink.TickInUsec() * float64(t.Rate) / 1e6))
}

// ensureShaper makes s so: `tc qdisc replace` changes a token bucket's
// parameters in place (no packet of the link is lost, the link stays
// up); an ingress redirect found wrong is made again. own is told of the
// devices whose qdiscs it deletes.
func ensureShaper(nh *netlink.Handle, s netmodel.Shaper, own func(index int)) error {
	link, err := nh.LinkByName(s.Link)
	if err != nil {
		return fmt.Errorf("shaper on %s: %w", s.Link, err)
	}
	if s.Direction == netmodel.TCEgress {
		if err := nh.QdiscReplace(tbf(link.Attrs().Index, s)); err != nil {
			return fmt.Errorf("tc qdisc replace dev %s root tbf: %w", s.Link, err)
		}
		return nil
	}
	ifb, err := nh.LinkByName(s.IFB)
	if err != nil {
		return fmt.Errorf("shaper on %s: ifb device %s: %w", s.Link, s.IFB, err)
	}
	// The bucket first, so that what the redirect sends is shaped from
	// its first packet.
	if err := nh.QdiscReplace(tbf(ifb.Attrs().Index, s)); err != nil {
		return fmt.Errorf("tc qdisc replace dev %s root tbf: %w", s.IFB, err)
	}
	to, err := redirectOf(nh, link)
	if err != nil {
		return err
	}
	if to == ifb.Attrs().Index {
		return nil
	}
	if to != 0 {
		// Another redirect (or a stray filter): start the ingress over.
		own(link.Attrs().Index)
		if err := nh.QdiscDel(&netlink.Ingress{QdiscAttrs: netlink.QdiscAttrs{LinkIndex: link.Attrs().Index,
			Handle: ingressHandle, Parent: netlink.HANDLE_INGRESS}}); err != nil && !isNotFound(err) && !errors.Is(err, unix.EINVAL) {
			return fmt.Errorf("tc qdisc del dev %s ingress: %w", s.Link, err)
		}
	}
	ingress := &netlink.Ingress{QdiscAttrs: netlink.QdiscAttrs{LinkIndex: link.Attrs().Index, Handle: ingressHandle, Parent: netlink.HANDLE_INGRESS}}
	if err := nh.QdiscReplace(ingress); err != nil {
		return fmt.Errorf("tc qdisc add dev %s ingress: %w", s.Link, err)
	}
	filter := &netlink.U32{
		FilterAttrs: netlink.FilterAttrs{LinkIndex: link.Attrs().Index, Parent: ingressHandle, Priority: 1, Protocol: unix.ETH_P_ALL},
		// No selector: the library's default matches every packet.
		Actions: []netlink.Action{&netlink.MirredAction{ActionAttrs: netlink.ActionAttrs{Action: netlink.TC_ACT_STOLEN},
			MirredAction: netlink.TCA_EGRESS_REDIR, Ifindex: ifb.Attrs().Index}},
	}
	if err := nh.FilterAdd(filter); err != nil {
		return fmt.Errorf("tc filter add dev %s ingress ... action mirred egress redirect dev %s: %w", s.Link, s.IFB, err)
	}
	return nil
}

// redirectOf returns the index of the device the ingress filters of link
// redirect to: 0 when there is no ingress qdisc or no redirect, -1 when
// there are filters that are not one redirect.
func redirectOf(nh *netlink.Handle, link netlink.Link) (int, error) {
	filters, err := nh.FilterList(link, ingressHandle)
	if err != nil {
		if isNotFound(err) || errors.Is(err, unix.EINVAL) {
			return 0, nil
		}
		return 0, fmt.Errorf("tc filter show dev %s ingress: %w", link.Attrs().Name, err)
	}
	to := 0
	for _, f := range filters {
		u, ok := f.(*netlink.U32)
		if !ok || len(u.Actions) != 1 {
			return -1, nil
		}
		m, ok := u.Actions[0].(*netlink.MirredAction)
		if !ok || m.MirredAction != netlink.TCA_EGRESS_REDIR || (to != 0 && to != m.Ifindex) {
			return -1, nil
		}
		to = m.Ifindex
	}
	return to, nil
}

// removeShaper removes s: the token bucket, and for an ingress shaper
// the ingress qdisc with its redirect (the ifb device is a link of its
// own). own is told of the devices whose qdiscs it deletes.
func removeShaper(nh *netlink.Handle, s netmodel.Shaper, own func(index int)) error {
	link, err := nh.LinkByName(s.Link)
	if err != nil {
		return err
	}
	own(link.Attrs().Index)
	if s.Direction == netmodel.TCEgress {
		return delOurs(nh, link, netlink.HANDLE_ROOT, shaperHandle)
	}
	if err := delOurs(nh, link, netlink.HANDLE_INGRESS, ingressHandle); err != nil {
		return err
	}
	if ifb, err := nh.LinkByName(s.IFB); err == nil {
		own(ifb.Attrs().Index)
		return delOurs(nh, ifb, netlink.HANDLE_ROOT, shaperHandle)
	}
	return nil
}

// delOurs deletes the qdisc of link at parent if it has the handle given
// (another's qdisc stays).
func delOurs(nh *netlink.Handle, link netlink.Link, parent, handle uint32) error {
	qs, err := nh.QdiscList(link)
	if err != nil {
		return err
	}
	for _, q := range qs {
		if a := q.Attrs(); a.Parent == parent && a.Handle == handle {
			if err := nh.QdiscDel(q); err != nil && !isNotFound(err) {
				return fmt.Errorf("tc qdisc del dev %s handle %x: %w", link.Attrs().Name, handle>>16, err)
			}
		}
	}
	return nil
}

// observeShapers reads hostnet's shapers on the tagged links of the host
// namespace (those o holds): a root token bucket with hostnet's handle
// is an egress shaper, unless its link is the ifb device an ingress
// redirect of another link leads to, when it is that link's ingress
// shaper.
func (h *Linux) observeShapers(o *netmodel.Observation) error {
	qs, err := h.nl.QdiscList(nil)
	if err != nil {
		return fmt.Errorf("tc qdisc show: %w", err)
	}
	byIndex := map[int]netmodel.ObservedLink{}
	for k, l := range o.Links {
		if k.NS.IsHost() {
			byIndex[l.Index] = l
		}
	}
	buckets := map[int]*netlink.Tbf{}
	var ingress []int
	for _, q := range qs {
		a := q.Attrs()
		if _, ours := byIndex[a.LinkIndex]; !ours {
			continue
		}
		switch q := q.(type) {
		case *netlink.Tbf:
			if a.Parent == netlink.HANDLE_ROOT && a.Handle == shaperHandle {
				buckets[a.LinkIndex] = q
			}
		case *netlink.Ingress:
			ingress = append(ingress, a.LinkIndex)
		}
	}
	ifbs := map[int]bool{}
	for _, i := range ingress {
		l := byIndex[i]
		link := &netlink.Dummy{LinkAttrs: netlink.LinkAttrs{Index: i, Name: l.Name}}
		to, err := redirectOf(h.nl, link)
		if err != nil {
			return err
		}
		target, ok := byIndex[to]
		if to <= 0 || !ok {
			continue
		}
		ifbs[to] = true
		s := netmodel.Shaper{Link: l.Name, Direction: netmodel.TCIngress, IFB: target.Name}
		if t := buckets[to]; t != nil {
			s.Rate, s.Burst = t.Rate, burstOf(t)
		}
		o.Shapers[s.Key()] = s
	}
	for i, t := range buckets {
		if ifbs[i] {
			continue
		}
		s := netmodel.Shaper{Link: byIndex[i].Name, Direction: netmodel.TCEgress, Rate: t.Rate, Burst: burstOf(t)}
		o.Shapers[s.Key()] = s
	}
	return nil
}
