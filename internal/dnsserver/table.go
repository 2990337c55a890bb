package dnsserver

import (
	"net/netip"
	"slices"
	"strings"

	"github.com/hostnet/hostnet/api"
	"github.com/hostnet/hostnet/internal/service"
	"github.com/miekg/dns"
)

// TTL is the time to live of the answers about endpoints: none, so that
// no resolver keeps an endpoint's name past its deletion.
const TTL = 0

// Table is the name table built from one view: which network each listen
// address serves, who may ask there, and what each network's names are.
// It is immutable once built, and safe for concurrent use.
type Table struct {
	// Gen is the generation of the source the view was read at.
	Gen      uint64
	networks map[string]*netNames
	// serves maps a listen address to the network answered there.
	serves map[netip.Addr]string
	// queriers maps a network and an address on it to the endpoint there.
	queriers map[querierKey]*Querier
	upstream []netip.Addr // the host's resolvers
}

type querierKey struct {
	network string
	addr    netip.Addr
}

// netNames are one network's names.
type netNames struct {
	id     string
	domain string // lower case, "" for none
	// names maps a name (lower case, without the final dot) to the
	// addresses of the endpoints it names, sorted.
	names map[string][]netip.Addr
	// ptr maps an endpoint's address to the name a reverse lookup gives.
	ptr      map[netip.Addr]string
	upstream []netip.Addr
}

// Querier is an endpoint asking: the networks whose names it sees (its
// own first, then those of the other endpoints of its namespace) and the
// resolvers its other questions go to.
type Querier struct {
	Endpoint string
	scope    []*netNames
	// Upstream are the resolvers (port 53) the querier's other questions
	// are forwarded to, in order: its own Dns servers, else its network's,
	// else the host's; never an address the server answers on.
	Upstream []netip.AddrPort
}

// NewTable builds the table of view v, read at generation gen.
func NewTable(v service.DNSView, gen uint64) *Table {
	t := &Table{Gen: gen, networks: map[string]*netNames{}, serves: map[netip.Addr]string{},
		queriers: map[querierKey]*Querier{}, upstream: v.Upstream}
	own := map[netip.Addr]bool{}
	for _, n := range v.Networks {
		t.networks[n.ID] = &netNames{id: n.ID, domain: strings.ToLower(strings.TrimSuffix(n.Domain, ".")),
			names: map[string][]netip.Addr{}, ptr: map[netip.Addr]string{}, upstream: n.Upstream}
		for _, a := range n.Listen {
			t.serves[a] = n.ID
			own[a] = true
		}
	}
	byNamespace := map[string][]*service.DNSEndpoint{}
	for i := range v.Endpoints {
		e := &v.Endpoints[i]
		nn := t.networks[e.Network]
		if nn == nil {
			continue
		}
		byNamespace[e.Namespace] = append(byNamespace[e.Namespace], e)
		var names []string
		if api.CheckDNSName(e.Name) == nil {
			names = append(names, strings.ToLower(e.Name))
		}
		for _, a := range e.Aliases {
			if api.CheckDNSName(a) == nil {
				names = append(names, strings.ToLower(a))
			}
		}
		for _, name := range names {
			nn.add(name, e.Addrs)
			if nn.domain != "" {
				nn.add(name+"."+nn.domain, e.Addrs)
			}
		}
		if len(names) > 0 {
			primary := names[0]
			if nn.domain != "" {
				primary += "." + nn.domain
			}
			for _, a := range e.Addrs {
				nn.ptr[a] = primary
			}
		}
	}
	for _, nn := range t.networks {
		for name, addrs := range nn.names {
			slices.SortFunc(addrs, func(a, b netip.Addr) int { return a.Compare(b) })
			nn.names[name] = slices.Compact(addrs)
		}
	}
	for i := range v.Endpoints {
		e := &v.Endpoints[i]
		nn := t.networks[e.Network]
		if nn == nil {
			continue
		}
		q := &Querier{Endpoint: e.ID, scope: []*netNames{nn}}
		for _, other := range byNamespace[e.Namespace] {
			if o := t.networks[other.Network]; o != nil && !slices.Contains(q.scope, o) {
				q.scope = append(q.scope, o)
			}
		}
		upstream := e.Upstream
		if len(upstream) == 0 {
			upstream = nn.upstream
		}
		if len(upstream) == 0 {
			upstream = t.upstream
		}
		for _, a := range upstream {
			if !own[a] {
				q.Upstream = append(q.Upstream, netip.AddrPortFrom(a, 53))
			}
		}
		for _, a := range e.Addrs {
			t.queriers[querierKey{e.Network, a}] = q
		}
	}
	return t
}

func (n *netNames) add(name string, addrs []netip.Addr) {
	n.names[name] = append(n.names[name], addrs...)
}

// Listen are the addresses the table's networks are served on, sorted.
func (t *Table) Listen() []netip.Addr {
	out := make([]netip.Addr, 0, len(t.serves))
	for a := range t.serves {
		out = append(out, a)
	}
	slices.SortFunc(out, func(a, b netip.Addr) int { return a.Compare(b) })
	return out
}

// Querier finds who asks at local from src: an endpoint of the network
// served at local with address src. Nobody else is answered (the server
// is no open resolver for whatever can reach the host).
func (t *Table) Querier(local, src netip.Addr) (*Querier, bool) {
	network, ok := t.serves[local.Unmap()]
	if !ok {
		return nil, false
	}
	q, ok := t.queriers[querierKey{network, src.Unmap()}]
	return q, ok
}

// Answer answers req for q from the table: the reply, or nil when the
// question is about no name q sees and goes upstream.
func (t *Table) Answer(q *Querier, req *dns.Msg) *dns.Msg {
	if len(req.Question) != 1 {
		return reply(req, dns.RcodeFormatError)
	}
	question := req.Question[0]
	if question.Qclass != dns.ClassINET {
		return nil
	}
	name := strings.ToLower(strings.TrimSuffix(question.Name, "."))
	if question.Qtype == dns.TypePTR {
		if addr, ok := reverseAddr(name); ok {
			for _, nn := range q.scope {
				if target, ok := nn.ptr[addr]; ok {
					m := reply(req, dns.RcodeSuccess)
					m.Answer = append(m.Answer, &dns.PTR{Hdr: header(question.Name, dns.TypePTR), Ptr: dns.Fqdn(target)})
					return m
				}
			}
		}
		return nil
	}
	for _, nn := range q.scope {
		addrs, ok := nn.names[name]
		if !ok {
			continue
		}
		// The name is an endpoint's: the answer is here, if empty
		// (NODATA) for a type it has no record of.
		m := reply(req, dns.RcodeSuccess)
		for _, a := range addrs {
			switch {
			case a.Is4() && (question.Qtype == dns.TypeA || question.Qtype == dns.TypeANY):
				m.Answer = append(m.Answer, &dns.A{Hdr: header(question.Name, dns.TypeA), A: a.AsSlice()})
			case a.Is6() && (question.Qtype == dns.TypeAAAA || question.Qtype == dns.TypeANY):
				m.Answer = append(m.Answer, &dns.AAAA{Hdr: header(question.Name, dns.TypeAAAA), AAAA: a.AsSlice()})
			}
		}
		return m
	}
	return nil
}

// reply is an authoritative answer to req with rcode.
func reply(req *dns.Msg, rcode int) *dns.Msg {
	m := new(dns.Msg)
	m.SetRcode(req, rcode)
	m.Authoritative = true
	m.RecursionAvailable = true
	return m
}

func header(name string, rrtype uint16) dns.RR_Header {
	return dns.RR_Header{Name: name, Rrtype: rrtype, Class: dns.ClassINET, Ttl: TTL}
}

// reverseAddr reads the address of a reverse-lookup name
// (d.c.b.a.in-addr.arpa, or 32 nibbles then ip6.arpa).
func reverseAddr(name string) (netip.Addr, bool) {
	if rest, ok := strings.CutSuffix(name, ".in-addr.arpa"); ok {
		labels := strings.Split(rest, ".")
		if len(labels) != 4 {
			return netip.Addr{}, false
		}
		slices.Reverse(labels)
		a, err := netip.ParseAddr(strings.Join(labels, "."))
		return a, err == nil && a.Is4()
	}
	if rest, ok := strings.CutSuffix(name, ".ip6.arpa"); ok {
		nibbles := strings.Split(rest, ".")
		if len(nibbles) != 32 {
			return netip.Addr{}, false
		}
		var b [16]byte
		for i, n := range nibbles {
			if len(n) != 1 {
				return netip.Addr{}, false
			}
			v := strings.IndexByte("0123456789abcdef", n[0])
			if v < 0 {
				return netip.Addr{}, false
			}
			// nibbles[0] is the low nibble of the last byte.
			pos := 31 - i
			if pos%2 == 0 {
				b[pos/2] |= byte(v) << 4
			} else {
				b[pos/2] |= byte(v)
			}
		}
		return netip.AddrFrom16(b), true
	}
	return netip.Addr{}, false
}
