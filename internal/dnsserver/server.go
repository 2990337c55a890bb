// Package dnsserver is hostnet's embedded DNS server (docs/dns.md): for
// each network with the AutomaticDNS policy it answers, on the network's
// gateway addresses (port 53, UDP and TCP, in the host namespace), the
// names and aliases of the network's endpoints to those endpoints, A,
// AAAA and PTR, and forwards every other question to the upstream
// resolvers: the asking endpoint's own DNS servers, else its network's,
// else the host's.
//
// It is a runtime component of the daemon, fed by the service's read-only
// view of the records (service.DNSView) and a generation that changes
// after every commit: a question asked after a change was answered by the
// API is answered from a table built after it, so a deleted endpoint's
// name is gone at once. It keeps no state of its own: a restart builds
// the table and binds the sockets again.
package dnsserver

import (
	"context"
	"errors"
	"log/slog"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hostnet/hostnet/internal/service"
	"github.com/miekg/dns"
)

// Source is where the server reads its view from.
type Source interface {
	// DNSView is the whole view, for answering.
	DNSView() (service.DNSView, error)
	// DNSNetworks is its networks alone, for binding sockets: cheaper,
	// as it reads no endpoint.
	DNSNetworks() ([]service.DNSNetwork, error)
}

// Config is what a Server runs on.
type Config struct {
	Source Source
	// Generation changes (grows) whenever what Source returns may have
	// changed: the daemon counts the store's commits.
	Generation func() uint64
	// Sockets makes the listening and forwarding sockets, in the host
	// namespace.
	Sockets Sockets
	Logger  *slog.Logger
	// Port is where the server listens; 0 means 53.
	Port uint16
	// Refresh is how often the view is read again although no commit
	// came (the host's resolvers may change, a port may have been busy);
	// 0 means 30s.
	Refresh time.Duration
	// ForwardTimeout bounds one upstream's answer; 0 means 2s.
	ForwardTimeout time.Duration
}

// ednsSize is the UDP payload the server's own answers advertise (the
// DNS flag day's size, which no path fragments).
const ednsSize = 1232

// Server is the embedded DNS server. Start it, tell it when networks
// change (NetworksChanged), Close it.
//
// Questions only ever build tables; binding and closing sockets is done
// under lmu by whoever keeps them in step (Start, NetworksChanged, the
// periodic pass, Close), never by a question: closing a listener waits
// for its questions under way, which must not wait for it.
type Server struct {
	cfg   Config
	log   *slog.Logger
	table atomic.Pointer[Table]
	mu    sync.Mutex // serialises building tables

	lmu       sync.Mutex // guards listeners and failed
	listeners map[netip.Addr]*listener
	failed    map[netip.Addr]string // listen addresses that failed, with the error logged

	done chan struct{}
	wg   sync.WaitGroup
}

// New returns a server over cfg; Start starts it.
func New(cfg Config) *Server {
	if cfg.Port == 0 {
		cfg.Port = 53
	}
	if cfg.Refresh <= 0 {
		cfg.Refresh = 30 * time.Second
	}
	if cfg.ForwardTimeout <= 0 {
		cfg.ForwardTimeout = 2 * time.Second
	}
	log := cfg.Logger
	if log == nil {
		log = slog.Default()
	}
	return &Server{cfg: cfg, log: log.With("component", "dns"), listeners: map[netip.Addr]*listener{},
		failed: map[netip.Addr]string{}, done: make(chan struct{})}
}

// Start builds the first table and binds its networks' addresses before
// it returns, then checks them every Refresh until Close. An address that
// cannot be bound (another server holds the port) is logged and tried
// again at the next pass; it does not stop the daemon.
func (s *Server) Start() {
	s.build(true)
	s.syncNetworks()
	s.wg.Add(1)
	go s.loop()
}

// NetworksChanged binds the sockets of new networks and closes those of
// deleted ones before it returns: the daemon calls it after a commit that
// wrote a network record, so the API answers a network's creation once
// its DNS answers. It reads networks only. The names need no call: each
// question compares the generation itself.
func (s *Server) NetworksChanged() {
	s.syncNetworks()
}

// Close stops the server and closes its sockets, once the questions
// under way are answered.
func (s *Server) Close() {
	close(s.done)
	s.wg.Wait()
	s.lmu.Lock()
	defer s.lmu.Unlock()
	for a, l := range s.listeners {
		l.close()
		delete(s.listeners, a)
	}
	s.listeners = nil // a late NetworksChanged binds nothing
}

// loop builds the table again every Refresh (the host's resolvers may
// have changed) and retries the addresses that could not be bound.
func (s *Server) loop() {
	defer s.wg.Done()
	t := time.NewTicker(s.cfg.Refresh)
	defer t.Stop()
	for {
		select {
		case <-s.done:
			return
		case <-t.C:
			s.build(true)
			s.syncNetworks()
		}
	}
}

// current is the table of the source's current generation.
func (s *Server) current() *Table {
	if t := s.table.Load(); t != nil && t.Gen == s.cfg.Generation() {
		return t
	}
	return s.build(false)
}

// build builds the table again when the generation moved on (or always,
// with force). When the view cannot be read it answers from an empty
// table, never from an old one: a stale answer could name a deleted
// endpoint.
func (s *Server) build(force bool) *Table {
	s.mu.Lock()
	defer s.mu.Unlock()
	gen := s.cfg.Generation()
	if t := s.table.Load(); !force && t != nil && t.Gen == gen {
		return t
	}
	v, err := s.cfg.Source.DNSView()
	if err != nil {
		s.log.Error("reading the names failed; questions are refused until it succeeds", "err", err)
		s.table.Store(nil)
		return NewTable(service.DNSView{}, gen)
	}
	t := NewTable(v, gen)
	s.table.Store(t)
	return t
}

// syncNetworks binds and closes sockets for the networks of the view as it
// is now, reading networks only.
func (s *Server) syncNetworks() {
	nets, err := s.cfg.Source.DNSNetworks()
	if err != nil {
		s.log.Error("reading the networks failed; their sockets follow at the next pass", "err", err)
		return
	}
	var want []netip.Addr
	for _, n := range nets {
		want = append(want, n.Listen...)
	}
	s.syncListeners(want)
}

// syncListeners closes the listeners of addresses not in want (first, so
// that an address given up and wanted again is bound anew) and binds the
// addresses of want that have none.
func (s *Server) syncListeners(want []netip.Addr) {
	s.lmu.Lock()
	defer s.lmu.Unlock()
	if s.listeners == nil {
		return // closed
	}
	wanted := map[netip.Addr]bool{}
	for _, a := range want {
		wanted[a] = true
	}
	for a, l := range s.listeners {
		if !wanted[a] {
			l.close()
			delete(s.listeners, a)
			s.log.Info("no longer answering DNS", "addr", netip.AddrPortFrom(a, s.cfg.Port))
		}
	}
	for a := range s.failed {
		if !wanted[a] {
			delete(s.failed, a)
		}
	}
	for _, a := range want {
		if s.listeners[a] != nil {
			continue
		}
		l, err := s.listen(netip.AddrPortFrom(a, s.cfg.Port))
		if err != nil {
			if s.failed[a] != err.Error() {
				s.log.Error("cannot answer on a network's DNS address; tried again at the next pass", "addr", a, "err", err)
				s.failed[a] = err.Error()
			}
			continue
		}
		if _, ok := s.failed[a]; ok {
			s.log.Info("answering on a network's DNS address now", "addr", a)
			delete(s.failed, a)
		}
		s.listeners[a] = l
		s.log.Info("answering DNS", "addr", netip.AddrPortFrom(a, s.cfg.Port))
	}
}

// listener is one address's UDP and TCP servers.
type listener struct {
	udp, tcp *dns.Server
}

// close stops both servers, giving the questions under way two seconds
// to be answered (a forwarded one may wait for its upstream that long).
func (l *listener) close() {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	_ = l.udp.ShutdownContext(ctx)
	_ = l.tcp.ShutdownContext(ctx)
}

// listen binds addr for UDP and TCP and serves both.
func (s *Server) listen(addr netip.AddrPort) (*listener, error) {
	pc, err := s.cfg.Sockets.ListenPacket(addr)
	if err != nil {
		return nil, err
	}
	ln, err := s.cfg.Sockets.Listen(addr)
	if err != nil {
		pc.Close()
		return nil, err
	}
	l := &listener{
		udp: &dns.Server{PacketConn: pc, Handler: s},
		tcp: &dns.Server{Listener: ln, Handler: s, ReadTimeout: 5 * time.Second, WriteTimeout: 5 * time.Second},
	}
	for _, srv := range []*dns.Server{l.udp, l.tcp} {
		started := make(chan struct{})
		srv.NotifyStartedFunc = func() { close(started) }
		errc := make(chan error, 1)
		go func() { errc <- srv.ActivateAndServe() }()
		select {
		case <-started:
		case err := <-errc:
			// Shutdown is refused before the server started: close
			// what it was given directly.
			pc.Close()
			ln.Close()
			if l.udp != srv {
				_ = l.udp.Shutdown()
			}
			return nil, err
		}
	}
	return l, nil
}

// ServeDNS answers one question (dns.Handler).
func (s *Server) ServeDNS(w dns.ResponseWriter, req *dns.Msg) {
	local, src := addrOf(w.LocalAddr()), addrOf(w.RemoteAddr())
	_, udp := w.RemoteAddr().(*net.UDPAddr)
	t := s.current()
	q, ok := t.Querier(local, src)
	var m *dns.Msg
	switch {
	case !ok:
		s.log.Debug("refused a question from an address that is no endpoint of the network", "local", local, "from", src)
		m = reply(req, dns.RcodeRefused)
	case req.Opcode != dns.OpcodeQuery:
		m = reply(req, dns.RcodeNotImplemented)
	default:
		if m = t.Answer(q, req); m == nil {
			network := "tcp"
			if udp {
				network = "udp"
			}
			if m = s.forward(q, req, network); m == nil {
				m = reply(req, dns.RcodeServerFailure)
			}
		}
	}
	if opt := req.IsEdns0(); opt != nil && m.IsEdns0() == nil {
		// An answer of the server's own says EDNS back, as RFC 6891 asks.
		m.SetEdns0(ednsSize, false)
	}
	if udp {
		size := dns.MinMsgSize
		if opt := req.IsEdns0(); opt != nil && int(opt.UDPSize()) > size {
			size = int(opt.UDPSize())
		}
		m.Truncate(size)
	}
	if err := w.WriteMsg(m); err != nil {
		s.log.Debug("answer not sent", "to", src, "err", err)
	}
}

// forward asks q's upstream resolvers in turn, with a fresh ID, and
// returns the first answer that is not a failure (or the last failure);
// nil when none answered.
func (s *Server) forward(q *Querier, req *dns.Msg, network string) *dns.Msg {
	out := req.Copy()
	out.Id = dns.Id()
	var last *dns.Msg
	for _, up := range q.Upstream {
		resp, err := s.exchange(out, network, up)
		if err != nil {
			s.log.Debug("upstream did not answer", "upstream", up, "err", err)
			continue
		}
		resp.Id = req.Id
		if resp.Rcode == dns.RcodeServerFailure || resp.Rcode == dns.RcodeRefused {
			last = resp
			continue
		}
		return resp
	}
	return last
}

func (s *Server) exchange(m *dns.Msg, network string, up netip.AddrPort) (*dns.Msg, error) {
	ctx, cancel := context.WithTimeout(context.Background(), s.cfg.ForwardTimeout)
	defer cancel()
	conn, err := s.cfg.Sockets.Dial(ctx, network, up)
	if err != nil {
		return nil, err
	}
	defer conn.Close()
	c := &dns.Client{Net: network, Timeout: s.cfg.ForwardTimeout, UDPSize: dns.MaxMsgSize}
	resp, _, err := c.ExchangeWithConnContext(ctx, m, &dns.Conn{Conn: conn})
	if err == nil && resp == nil {
		err = errors.New("no answer")
	}
	return resp, err
}

func addrOf(a net.Addr) netip.Addr {
	switch a := a.(type) {
	case *net.UDPAddr:
		ip, _ := netip.AddrFromSlice(a.IP)
		return ip.Unmap()
	case *net.TCPAddr:
		ip, _ := netip.AddrFromSlice(a.IP)
		return ip.Unmap()
	}
	return netip.Addr{}
}
