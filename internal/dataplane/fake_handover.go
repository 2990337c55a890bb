package dataplane

import (
	"fmt"
	"net/netip"

	"github.com/hostnet/hostnet/internal/netmodel"
	"golang.org/x/sys/unix"
)

// AddHostLink makes a device of the host's own (not hostnet's), up, with
// its addresses and routes (not tagged as hostnet's): an uplink.
func (f *Fake) AddHostLink(l netmodel.Link, addrs []netip.Prefix, routes []netmodel.Route) {
	f.mu.Lock()
	defer f.mu.Unlock()
	s := f.spaces[""]
	l.NS, l.Up = netmodel.Host, true
	s.links[l.Name] = &fakeLink{Link: l, index: f.index()}
	for _, p := range addrs {
		a := netmodel.Addr{Link: l.Name, Prefix: p}
		s.addrs[a.Key()] = a
	}
	for _, r := range routes {
		r.NS, r.Link = netmodel.Host, l.Name
		s.routes[r.Key()] = fakeRoute{Route: r}
	}
}

// SetMaster makes a link a port of a bridge, or of none, as someone else
// would (`ip link set NAME master BR`, `nomaster`).
func (f *Fake) SetMaster(name, master string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if l := f.spaces[""].links[name]; l != nil {
		l.Master = master
	}
}

// HostAddrs returns the addresses of a host link, link-local ones aside.
func (f *Fake) HostAddrs(link string) []netip.Prefix {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []netip.Prefix
	for _, a := range f.spaces[""].addrs {
		if a.Link == link {
			out = append(out, a.Prefix)
		}
	}
	return out
}

// HostRoutes returns the routes through a host link that are not
// hostnet's.
func (f *Fake) HostRoutes(link string) []netmodel.Route {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []netmodel.Route
	for _, r := range f.spaces[""].routes {
		if r.Link == link && !r.ours {
			out = append(out, r.Route)
		}
	}
	return out
}

// handOver is UplinkHandover's apply, as the Linux host does it.
func (f *Fake) handOver(u netmodel.UplinkHandover) error {
	s := f.spaces[""]
	up, br := s.links[u.Uplink], s.links[u.Bridge]
	if up == nil {
		return fmt.Errorf("uplink %s: %w", u.Uplink, unix.ENODEV)
	}
	if br == nil || br.Kind != netmodel.LinkBridge {
		return fmt.Errorf("bridge %s: %w", u.Bridge, unix.ENODEV)
	}
	br.MAC = up.MAC
	up.Master = u.Bridge
	f.moveAddressing(s, u.Uplink, u.Bridge)
	return nil
}

// handBack is UplinkHandover's removal.
func (f *Fake) handBack(uplink, bridge string) {
	s := f.spaces[""]
	up, br := s.links[uplink], s.links[bridge]
	if up == nil || br == nil {
		return
	}
	f.moveAddressing(s, bridge, uplink)
	if up.Master == bridge {
		up.Master = ""
	}
}

func (f *Fake) moveAddressing(s *fakeNS, from, to string) {
	for k, a := range s.addrs {
		if a.Link == from && !a.Prefix.Addr().IsLinkLocalUnicast() {
			delete(s.addrs, k)
			a.Link = to
			s.addrs[a.Key()] = a
		}
	}
	for k, r := range s.routes {
		if r.Link == from && !r.ours {
			r.Link = to
			s.routes[k] = r
		}
	}
}

// handedOver is Linux.handedOver: the host's link name is an uplink
// handed over to its master, one of hostnet's bridges that took its MAC.
func (f *Fake) handedOver(s *fakeNS, name string) bool {
	l, ok := s.links[name]
	if !ok || l.Master == "" || f.cfg.tagged(name) || !f.cfg.tagged(l.Master) {
		return false
	}
	br, ok := s.links[l.Master]
	return ok && br.Kind == netmodel.LinkBridge && len(l.MAC) > 0 && br.MAC.String() == l.MAC.String()
}

// observeHandovers reports the uplinks handed over to hostnet's bridges.
func (f *Fake) observeHandovers(s *fakeNS, o *netmodel.Observation) {
	for name, l := range s.links {
		if !f.handedOver(s, name) {
			continue
		}
		oh := netmodel.ObservedHandover{UplinkHandover: netmodel.UplinkHandover{Uplink: name, Bridge: l.Master}}
		for _, a := range s.addrs {
			if a.Link == name && !a.Prefix.Addr().IsLinkLocalUnicast() {
				oh.Left = append(oh.Left, fmt.Sprintf("address %s is on %s, not on bridge %s", a.Prefix, name, l.Master))
			}
		}
		for _, r := range s.routes {
			if r.Link == name && !r.ours {
				oh.Left = append(oh.Left, fmt.Sprintf("route %s goes through %s, not bridge %s", r.Dst, name, l.Master))
			}
		}
		o.Handovers[oh.Key()] = oh
	}
}
