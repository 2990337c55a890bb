package dnsserver

import (
	"log/slog"
	"net"
	"net/netip"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hostnet/hostnet/internal/service"
	"github.com/miekg/dns"
)

// lockedSource is a view the test changes while the server reads it.
type lockedSource struct {
	mu   sync.Mutex
	view service.DNSView
}

func (l *lockedSource) DNSView() (service.DNSView, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.view, nil
}

func (l *lockedSource) set(v service.DNSView) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.view = v
}

// freePort is a port free for UDP and TCP on 127.0.0.1 a moment ago.
func freePort(t *testing.T) uint16 {
	t.Helper()
	for range 20 {
		l, err := net.Listen("tcp4", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		port := l.Addr().(*net.TCPAddr).Port
		pc, err := net.ListenPacket("udp4", "127.0.0.1:"+strconv.Itoa(port))
		l.Close()
		if err == nil {
			pc.Close()
			return uint16(port)
		}
	}
	t.Fatal("no free port")
	return 0
}

// TestServerFollowsChanges runs the server on loopback (the network's
// DNS address and its one endpoint both 127.0.0.1) while the view
// flips between having the network and not, questions coming all the
// while: no deadlock, no race, and once the view settles the server
// answers again, on both transports.
func TestServerFollowsChanges(t *testing.T) {
	lo := netip.MustParseAddr("127.0.0.1")
	with := service.DNSView{
		Networks:  []service.DNSNetwork{{ID: "n", Name: "n", Listen: []netip.Addr{lo}}},
		Endpoints: []service.DNSEndpoint{{ID: "e", Name: "web", Network: "n", Namespace: "ns", Addrs: []netip.Addr{lo}}},
	}
	src := &lockedSource{view: with}
	var gen atomic.Uint64
	port := freePort(t)
	s := New(Config{Source: src, Generation: gen.Load, Sockets: LocalSockets{}, Port: port,
		Logger: slog.New(slog.DiscardHandler), ForwardTimeout: 100 * time.Millisecond})
	s.Start()
	defer s.Close()
	server := netip.AddrPortFrom(lo, port).String()
	ask := func(network string) (*dns.Msg, error) {
		req := new(dns.Msg)
		req.SetQuestion("web.", dns.TypeA)
		c := &dns.Client{Net: network, Timeout: 500 * time.Millisecond}
		m, _, err := c.Exchange(req, server)
		return m, err
	}
	for _, network := range []string{"udp", "tcp"} {
		if m, err := ask(network); err != nil || len(m.Answer) != 1 {
			t.Fatalf("over %s: %v, %v", network, m, err)
		}
	}

	stop := make(chan struct{})
	var wg sync.WaitGroup
	for i := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			network := []string{"udp", "tcp"}[i%2]
			for {
				select {
				case <-stop:
					return
				default:
				}
				_, _ = ask(network)
			}
		}()
	}
	for i := range 40 {
		if i%2 == 0 {
			src.set(service.DNSView{})
		} else {
			src.set(with)
		}
		gen.Add(1)
		s.NetworksChanged()
		time.Sleep(10 * time.Millisecond)
	}
	close(stop)
	wg.Wait()

	src.set(with)
	gen.Add(1)
	s.NetworksChanged()
	deadline := time.Now().Add(5 * time.Second)
	for _, network := range []string{"udp", "tcp"} {
		for {
			m, err := ask(network)
			if err == nil && len(m.Answer) == 1 {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("over %s after the changes: %v, %v", network, m, err)
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
}

func (l *lockedSource) DNSNetworks() ([]service.DNSNetwork, error) {
	v, err := l.DNSView()
	return v.Networks, err
}
