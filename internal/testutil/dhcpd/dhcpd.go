// Package dhcpd is a small DHCPv4 server for tests: it serves one pool on
// one interface inside a network namespace, records every message it is
// sent, and can be told to refuse requests (DHCPNAK). It answers as an
// authoritative server: a requested address that is free is granted, one
// held by another client or outside the subnet is refused.
//
// It is test support: only tests import it.
package dhcpd

import (
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"sync"
	"time"

	"github.com/hostnet/hostnet/internal/dataplane/netns"
	"github.com/hostnet/hostnet/internal/dhcp"
	"golang.org/x/sys/unix"
)

// Config is what a Server serves, and where.
type Config struct {
	NS        netns.Handle // the namespace that holds Interface
	Interface string
	// ServerID is the server's address on Interface, which the test
	// applies; replies come from it.
	ServerID netip.Addr
	// Subnet gives the mask; the pool is Size addresses from First.
	Subnet netip.Prefix
	First  netip.Addr
	Size   int
	Router netip.Addr // sent when valid
	DNS    []netip.Addr
	Domain string
	// LeaseTime is sent with every lease; T1 and T2 when not zero.
	LeaseTime, T1, T2 time.Duration
	// BareRenewals makes the ACK of a renewal or rebinding carry the lease
	// time and server alone, as RFC 2131 4.3.1 allows: no mask, router,
	// DNS or domain.
	BareRenewals bool
}

// Record is a message the server was sent, and what it answered.
type Record struct {
	Time        time.Time
	Type        dhcp.MessageType
	MAC         string // the client's hardware address, as net.HardwareAddr writes it
	XID         uint32
	Broadcast   bool       // the client asked for a broadcast reply
	Dst         netip.Addr // where the packet was sent: 255.255.255.255, or the server for a unicast
	CIAddr      netip.Addr
	RequestedIP netip.Addr // option 50, when sent
	ServerID    netip.Addr // option 54, when sent
	ClientID    []byte
	Hostname    string
	Reply       dhcp.MessageType // 0: none
	Addr        netip.Addr       // the address offered, granted or refused
}

// Server is a running test DHCP server.
type Server struct {
	cfg  Config
	conn *net.UDPConn
	done chan struct{}

	mu       sync.Mutex
	records  []Record
	bindings map[string]netip.Addr // client key -> address offered or granted
	nak      func(Record) bool
	ignore   func(Record) bool
	changed  chan struct{} // closed and replaced when a record is added
}

// Start serves cfg until Close.
func Start(cfg Config) (*Server, error) {
	if !cfg.ServerID.Is4() || !cfg.Subnet.Addr().Is4() || !cfg.First.Is4() || cfg.Size <= 0 {
		return nil, errors.New("dhcpd: server address, subnet and pool must be IPv4")
	}
	conn, _, err := dhcp.Listen(cfg.NS, cfg.Interface, dhcp.ServerPort)
	if err != nil {
		return nil, fmt.Errorf("dhcpd: %w", err)
	}
	// IP_PKTINFO tells a broadcast from a unicast: renewals must be unicast.
	rc, err := conn.SyscallConn()
	if err == nil {
		cerr := rc.Control(func(fd uintptr) {
			err = unix.SetsockoptInt(int(fd), unix.IPPROTO_IP, unix.IP_PKTINFO, 1)
		})
		err = errors.Join(cerr, err)
	}
	if err != nil {
		conn.Close()
		return nil, fmt.Errorf("dhcpd: IP_PKTINFO: %w", err)
	}
	s := &Server{cfg: cfg, conn: conn, done: make(chan struct{}), bindings: map[string]netip.Addr{}, changed: make(chan struct{})}
	go s.serve()
	return s, nil
}

// Close stops the server and waits for it.
func (s *Server) Close() error {
	err := s.conn.Close()
	<-s.done
	return err
}

// SetNAK makes the server refuse every DHCPREQUEST for which nak is true
// (it sees the request's record, Reply not yet set); nil refuses only
// what an authoritative server refuses.
func (s *Server) SetNAK(nak func(Record) bool) {
	s.mu.Lock()
	s.nak = nak
	s.mu.Unlock()
}

// SetIgnore makes the server record, but not answer, every message for
// which ignore is true (as a server that is down or cannot be reached);
// nil ignores none.
func (s *Server) SetIgnore(ignore func(Record) bool) {
	s.mu.Lock()
	s.ignore = ignore
	s.mu.Unlock()
}

// Seen returns the records of the client with hardware address mac, in
// the order they came; all records when mac is nil.
func (s *Server) Seen(mac net.HardwareAddr) []Record {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []Record
	for _, r := range s.records {
		if mac == nil || r.MAC == mac.String() {
			out = append(out, r)
		}
	}
	return out
}

// WaitFor waits up to timeout for a record of mac that match accepts
// (from the first, including those already seen) and returns it.
func (s *Server) WaitFor(timeout time.Duration, mac net.HardwareAddr, match func(Record) bool) (Record, bool) {
	deadline := time.After(timeout)
	for {
		s.mu.Lock()
		changed := s.changed
		for _, r := range s.records {
			if r.MAC == mac.String() && match(r) {
				s.mu.Unlock()
				return r, true
			}
		}
		s.mu.Unlock()
		select {
		case <-changed:
		case <-deadline:
			return Record{}, false
		}
	}
}

// Bound returns the address the server holds for mac (offered or
// granted), if any.
func (s *Server) Bound(mac net.HardwareAddr) (netip.Addr, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	a, ok := s.bindings[key(nil, mac)]
	return a, ok
}

func (s *Server) serve() {
	defer close(s.done)
	buf := make([]byte, 1500)
	oob := make([]byte, 256)
	for {
		n, oobn, _, _, err := s.conn.ReadMsgUDPAddrPort(buf, oob)
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			continue
		}
		m, err := dhcp.Decode(buf[:n])
		if err != nil || m.Op != dhcp.BootRequest {
			continue
		}
		reply, dst := s.handle(m, pktDst(oob[:oobn]))
		if reply == nil {
			continue
		}
		if b, err := reply.Encode(); err == nil {
			s.conn.WriteToUDPAddrPort(b, dst)
		}
	}
}

// pktDst is the destination address of a packet, from its IP_PKTINFO.
func pktDst(oob []byte) netip.Addr {
	msgs, err := unix.ParseSocketControlMessage(oob)
	if err != nil {
		return netip.Addr{}
	}
	for _, m := range msgs {
		// struct in_pktinfo: ifindex, spec_dst, then the header's address.
		if m.Header.Level == unix.IPPROTO_IP && m.Header.Type == unix.IP_PKTINFO && len(m.Data) >= 12 {
			return netip.AddrFrom4([4]byte(m.Data[8:12]))
		}
	}
	return netip.Addr{}
}

// key names a client: its client identifier, else its hardware address.
func key(clientID []byte, mac net.HardwareAddr) string {
	if len(clientID) > 0 {
		return "id:" + hex.EncodeToString(clientID)
	}
	// What the client package sends: type 1 and the address.
	return "id:" + hex.EncodeToString(append([]byte{1}, mac...))
}

var broadcast = netip.AddrPortFrom(netip.AddrFrom4([4]byte{255, 255, 255, 255}), dhcp.ClientPort)

// handle records m and decides the reply and where it goes.
func (s *Server) handle(m *dhcp.Message, dst netip.Addr) (*dhcp.Message, netip.AddrPort) {
	s.mu.Lock()
	defer func() {
		close(s.changed)
		s.changed = make(chan struct{})
		s.mu.Unlock()
	}()
	r := Record{
		Time: time.Now(), Type: m.Type(), MAC: m.CHAddr.String(), XID: m.XID,
		Broadcast: m.Broadcast(), Dst: dst, CIAddr: m.CIAddr,
		ClientID: m.Options[dhcp.OptClientID], Hostname: m.Options.String(dhcp.OptHostname),
	}
	r.RequestedIP, _ = m.Options.Addr(dhcp.OptRequestedIP)
	r.ServerID, _ = m.Options.Addr(dhcp.OptServerID)
	if s.ignore != nil && s.ignore(r) {
		s.records = append(s.records, r)
		return nil, netip.AddrPort{}
	}
	k := key(r.ClientID, m.CHAddr)
	bound, hasBinding := s.bindings[k]
	var reply dhcp.MessageType
	var addr netip.Addr
	switch r.Type {
	case dhcp.Discover:
		addr = bound
		if !hasBinding {
			addr = s.free(r.RequestedIP)
		}
		if addr.IsValid() {
			s.bindings[k] = addr
			reply = dhcp.Offer
		}
	case dhcp.Request:
		switch {
		case r.ServerID.IsValid() && r.ServerID != s.cfg.ServerID:
			// SELECTING another server's offer: withdraw ours.
			if hasBinding {
				delete(s.bindings, k)
			}
		case r.ServerID.IsValid(): // SELECTING
			addr, reply = r.RequestedIP, dhcp.Nak
			if hasBinding && bound == r.RequestedIP {
				reply = dhcp.Ack
			}
		case r.CIAddr.IsValid() && !r.CIAddr.IsUnspecified(): // RENEWING, REBINDING
			addr, reply = r.CIAddr, dhcp.Nak
			if hasBinding && bound == r.CIAddr {
				reply = dhcp.Ack
			}
		default: // INIT-REBOOT
			addr, reply = r.RequestedIP, dhcp.Nak
			if (hasBinding && bound == addr) || (!hasBinding && s.isFree(addr)) {
				reply = dhcp.Ack
			}
		}
		if reply != 0 && s.nak != nil && s.nak(r) {
			reply = dhcp.Nak
		}
		if reply == dhcp.Ack {
			s.bindings[k] = addr
		}
	case dhcp.Release:
		if r.ServerID == s.cfg.ServerID && hasBinding && bound == r.CIAddr {
			delete(s.bindings, k)
		}
	}
	r.Reply, r.Addr = reply, addr
	s.records = append(s.records, r)
	if reply == 0 {
		return nil, netip.AddrPort{}
	}
	out := &dhcp.Message{
		Op: dhcp.BootReply, HType: m.HType, XID: m.XID, Flags: m.Flags,
		GIAddr: m.GIAddr, CHAddr: m.CHAddr,
		Options: dhcp.Options{dhcp.OptMessageType: {byte(reply)}},
	}
	out.Options.SetAddrs(dhcp.OptServerID, s.cfg.ServerID)
	if reply == dhcp.Nak {
		out.Options[dhcp.OptMessage] = fmt.Appendf(nil, "%s refused", addr)
		return out, broadcast
	}
	out.YIAddr = addr
	out.Options.SetDuration(dhcp.OptLeaseTime, s.cfg.LeaseTime)
	if s.cfg.T1 > 0 {
		out.Options.SetDuration(dhcp.OptRenewalTime, s.cfg.T1)
	}
	if s.cfg.T2 > 0 {
		out.Options.SetDuration(dhcp.OptRebindingTime, s.cfg.T2)
	}
	if s.cfg.BareRenewals && !m.CIAddr.IsUnspecified() {
		return out, netip.AddrPortFrom(m.CIAddr, dhcp.ClientPort)
	}
	mask := net.CIDRMask(s.cfg.Subnet.Bits(), 32)
	out.Options[dhcp.OptSubnetMask] = mask
	if s.cfg.Router.IsValid() {
		out.Options.SetAddrs(dhcp.OptRouter, s.cfg.Router)
	}
	if len(s.cfg.DNS) > 0 {
		out.Options.SetAddrs(dhcp.OptDNS, s.cfg.DNS...)
	}
	if s.cfg.Domain != "" {
		out.Options[dhcp.OptDomainName] = []byte(s.cfg.Domain)
	}
	// A client with an address gets its answer there; one without cannot
	// take a unicast before it has the address (this server writes no ARP
	// entry for it), so it gets a broadcast, asked for or not.
	if m.CIAddr.IsValid() && !m.CIAddr.IsUnspecified() {
		return out, netip.AddrPortFrom(m.CIAddr, dhcp.ClientPort)
	}
	return out, broadcast
}

// free returns want when it is a free pool address, else the first free
// one; the zero Addr when the pool is exhausted.
func (s *Server) free(want netip.Addr) netip.Addr {
	if s.isFree(want) {
		return want
	}
	a := s.cfg.First
	for range s.cfg.Size {
		if s.isFree(a) {
			return a
		}
		a = a.Next()
	}
	return netip.Addr{}
}

// isFree reports whether a is in the pool and held by no client.
func (s *Server) isFree(a netip.Addr) bool {
	if !a.Is4() || a.Less(s.cfg.First) {
		return false
	}
	last := s.cfg.First
	for range s.cfg.Size - 1 {
		last = last.Next()
	}
	if last.Less(a) {
		return false
	}
	for _, b := range s.bindings {
		if b == a {
			return false
		}
	}
	return true
}
