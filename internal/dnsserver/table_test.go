package dnsserver

import (
	"fmt"
	"net/netip"
	"strings"
	"testing"

	"github.com/hostnet/hostnet/internal/service"
	"github.com/hostnet/hostnet/internal/testutil"
	"github.com/miekg/dns"
)

func addrs(s ...string) []netip.Addr {
	var out []netip.Addr
	for _, a := range s {
		out = append(out, netip.MustParseAddr(a))
	}
	return out
}

// fakeView is two networks with embedded DNS: "front" (dual stack, with
// a domain) and "back" (its own upstream), their endpoints, and a
// namespace with an endpoint on each.
func fakeView() service.DNSView {
	return service.DNSView{
		Upstream: addrs("127.0.0.53", "198.51.100.53"),
		Networks: []service.DNSNetwork{
			{ID: "net-front", Name: "front", Domain: "Front.Test.", Listen: addrs("10.1.0.1", "fd00:1::1")},
			{ID: "net-back", Name: "back", Listen: addrs("10.2.0.1"), Upstream: addrs("192.0.2.99", "10.2.0.1")},
		},
		Endpoints: []service.DNSEndpoint{
			{ID: "ep-web", Name: "Web", Aliases: []string{"www", "app"}, Network: "net-front", Namespace: "ns-web", Addrs: addrs("10.1.0.2", "fd00:1::2")},
			{ID: "ep-db", Name: "db", Aliases: []string{"app"}, Network: "net-front", Namespace: "ns-db", Addrs: addrs("10.1.0.3"), Upstream: addrs("192.0.2.7")},
			{ID: "ep-odd", Name: "not a dns name", Network: "net-front", Namespace: "ns-odd", Addrs: addrs("10.1.0.9")},
			{ID: "ep-api", Name: "api", Network: "net-back", Namespace: "ns-api", Addrs: addrs("10.2.0.2")},
			{ID: "ep-both-front", Name: "both", Network: "net-front", Namespace: "ns-both", Addrs: addrs("10.1.0.4")},
			{ID: "ep-both-back", Name: "both-back", Network: "net-back", Namespace: "ns-both", Addrs: addrs("10.2.0.3")},
			{ID: "ep-stray", Name: "stray", Network: "net-gone", Namespace: "ns-stray", Addrs: addrs("10.3.0.2")},
		},
	}
}

// TestTableGolden pins who is answered what: names and aliases within
// the asker's networks (its namespace's), not across; A, AAAA, PTR;
// NODATA for a type a name has no record of; everything else forwarded
// to the asker's upstream; strangers refused.
func TestTableGolden(t *testing.T) {
	tab := NewTable(fakeView(), 7)
	questions := []struct {
		local, src, name string
		qtype            uint16
	}{
		{"10.1.0.1", "10.1.0.3", "web.", dns.TypeA},
		{"10.1.0.1", "10.1.0.3", "WEB.", dns.TypeAAAA},
		{"10.1.0.1", "10.1.0.3", "web.front.test.", dns.TypeA},
		{"10.1.0.1", "10.1.0.3", "www.", dns.TypeA},
		{"10.1.0.1", "10.1.0.2", "app.", dns.TypeA},
		{"10.1.0.1", "10.1.0.2", "db.", dns.TypeAAAA},
		{"10.1.0.1", "10.1.0.2", "db.", dns.TypeMX},
		{"fd00:1::1", "fd00:1::2", "db.", dns.TypeA},
		{"10.1.0.1", "10.1.0.3", "2.0.1.10.in-addr.arpa.", dns.TypePTR},
		{"10.1.0.1", "10.1.0.3", "2.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.1.0.0.0.0.0.d.f.ip6.arpa.", dns.TypePTR},
		{"10.1.0.1", "10.1.0.3", "2.0.2.10.in-addr.arpa.", dns.TypePTR},
		{"10.1.0.1", "10.1.0.3", "api.", dns.TypeA},
		{"10.1.0.1", "10.1.0.2", "api.", dns.TypeA},
		{"10.1.0.1", "10.1.0.3", "example.org.", dns.TypeA},
		{"10.2.0.1", "10.2.0.2", "api.", dns.TypeA},
		{"10.2.0.1", "10.2.0.2", "web.", dns.TypeA},
		{"10.2.0.1", "10.2.0.2", "example.org.", dns.TypeA},
		{"10.1.0.1", "10.1.0.4", "api.", dns.TypeA},
		{"10.1.0.1", "10.1.0.4", "both-back.", dns.TypeA},
		{"10.2.0.1", "10.2.0.3", "web.", dns.TypeA},
		{"10.1.0.1", "10.1.0.9", "web.", dns.TypeA},
		{"10.1.0.1", "10.1.0.3", "not a dns name.", dns.TypeA},
		{"10.1.0.1", "10.2.0.2", "web.", dns.TypeA},
		{"10.2.0.1", "10.1.0.2", "api.", dns.TypeA},
		{"10.1.0.1", "198.51.100.1", "web.", dns.TypeA},
		{"10.3.0.1", "10.3.0.2", "web.", dns.TypeA},
	}
	var b strings.Builder
	fmt.Fprintf(&b, "listen %v\n", tab.Listen())
	for _, q := range questions {
		req := new(dns.Msg)
		req.SetQuestion(q.name, q.qtype)
		fmt.Fprintf(&b, "%s asks %s: %s %s -> ", q.src, q.local, dns.TypeToString[q.qtype], q.name)
		who, ok := tab.Querier(netip.MustParseAddr(q.local), netip.MustParseAddr(q.src))
		if !ok {
			b.WriteString("REFUSED\n")
			continue
		}
		m := tab.Answer(who, req)
		if m == nil {
			fmt.Fprintf(&b, "forward to %v\n", who.Upstream)
			continue
		}
		fmt.Fprintf(&b, "%s aa=%v", dns.RcodeToString[m.Rcode], m.Authoritative)
		for _, rr := range m.Answer {
			fmt.Fprintf(&b, " [%s]", strings.Join(strings.Fields(rr.String()), " "))
		}
		b.WriteString("\n")
	}
	testutil.Golden(t, "table.txt", b.String())
}

func TestReverseAddr(t *testing.T) {
	for _, a := range addrs("10.1.2.3", "fd00:1::2", "2001:db8::ff00:42:8329") {
		name, err := dns.ReverseAddr(a.String())
		if err != nil {
			t.Fatal(err)
		}
		got, ok := reverseAddr(strings.TrimSuffix(name, "."))
		if !ok || got != a {
			t.Errorf("reverseAddr(%q) = %v, %v; want %v", name, got, ok, a)
		}
	}
	for _, bad := range []string{"1.2.3.in-addr.arpa", "x.1.2.3.in-addr.arpa", "1.2.ip6.arpa", "example.org"} {
		if got, ok := reverseAddr(bad); ok {
			t.Errorf("reverseAddr(%q) = %v; want none", bad, got)
		}
	}
}

// TestNewerGenerationDropsDeleted: a table built after a delete has no
// trace of the endpoint; the server's generation check (current) is what
// makes every question after the delete use such a table.
func TestNewerGenerationDropsDeleted(t *testing.T) {
	v := fakeView()
	gen := uint64(1)
	src := &fakeSource{view: v}
	s := New(Config{Source: src, Generation: func() uint64 { return gen }, Sockets: noSockets{}})
	req := new(dns.Msg)
	req.SetQuestion("web.", dns.TypeA)
	ask := func() *dns.Msg {
		tab := s.current()
		q, ok := tab.Querier(netip.MustParseAddr("10.1.0.1"), netip.MustParseAddr("10.1.0.3"))
		if !ok {
			t.Fatal("db is no querier")
		}
		return tab.Answer(q, req)
	}
	if m := ask(); m == nil || len(m.Answer) != 1 {
		t.Fatalf("before the delete: %v", m)
	}
	src.view.Endpoints = src.view.Endpoints[1:] // web is deleted
	if m := ask(); m == nil || len(m.Answer) != 1 {
		t.Fatalf("same generation: want the table kept, got %v", m)
	}
	gen++
	if m := ask(); m != nil {
		t.Fatalf("after the delete: want web forwarded (unknown), got %v", m)
	}
	if src.reads != 2 {
		t.Errorf("read the view %d times; want 2 (once per generation)", src.reads)
	}
}

type fakeSource struct {
	view  service.DNSView
	reads int
}

func (f *fakeSource) DNSView() (service.DNSView, error) { f.reads++; return f.view, nil }

// BenchmarkNewTable builds the table of one network of 5,000 endpoints
// (two names each): what a question pays once after a change.
func BenchmarkNewTable(b *testing.B) {
	v := service.DNSView{Networks: []service.DNSNetwork{{ID: "n", Name: "n", Listen: addrs("10.0.0.1")}}}
	for i := range 5000 {
		a := netip.AddrFrom4([4]byte{10, 0, byte((i + 2) >> 8), byte(i + 2)})
		v.Endpoints = append(v.Endpoints, service.DNSEndpoint{ID: fmt.Sprint("e", i), Name: fmt.Sprint("web-", i),
			Aliases: []string{fmt.Sprint("alias-", i)}, Network: "n", Namespace: fmt.Sprint("ns", i), Addrs: []netip.Addr{a}})
	}
	b.ReportAllocs()
	for b.Loop() {
		NewTable(v, 1)
	}
}

func (f *fakeSource) DNSNetworks() ([]service.DNSNetwork, error) { return f.view.Networks, nil }
