package dhcp

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/netip"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/hostnet/hostnet/internal/dataplane/netns"
	"golang.org/x/sys/unix"
)

// Defaults of Config's timing (RFC 2131 4.1).
const (
	DefaultRetransmit    = 4 * time.Second
	DefaultMaxRetransmit = 64 * time.Second
)

// rebootTries is how often a request of a remembered address (INIT-REBOOT)
// and a request of an offered one (SELECTING) are sent before the client
// gives up on them: the retransmission schedule of RFC 2131 4.1 over
// about a minute with the default timing.
const rebootTries = 4

// ErrNak is wrapped by the errors of Renew and Rebind when a server
// refused the lease (DHCPNAK): the lease is lost and the client holds none.
var ErrNak = errors.New("dhcp server refused the lease (DHCPNAK)")

// errNoAnswer ends an exchange whose tries ran out before its context.
var errNoAnswer = errors.New("no answer")

// Config says which interface a Client works on and how.
type Config struct {
	// NS is the network namespace that holds Interface. New keeps a
	// duplicate of the handle: the caller may close its own.
	NS        netns.Handle
	Interface string
	// Hostname, when set, is sent to the server (option 12).
	Hostname string
	// Lease is a lease stored earlier, by a daemon before its restart:
	// Acquire asks for its address again (INIT-REBOOT) before it discovers
	// a new one, so the endpoint keeps its address.
	Lease Lease
	// Bound says Lease is still bound on the interface (a daemon restarted
	// while the interface kept the address and its traffic): the client
	// holds it as granted, and Run renews it from T1 (at once when T1 has
	// passed) instead of asking for it again. An expired Lease is not
	// held, whatever Bound says.
	Bound bool
	// Retransmit is the first wait for a reply; each retransmission
	// doubles it, up to MaxRetransmit, randomised by up to an eighth either
	// way so that clients started together spread out. MaxRetransmit is
	// also the shortest wait while renewing or rebinding (RFC 2131 4.4.5
	// says a minute). Zero means the defaults, 4 s and 64 s.
	Retransmit, MaxRetransmit time.Duration
	// Logger receives the client's events; nil means slog.Default().
	Logger *slog.Logger
}

// Client is a DHCPv4 client for one interface. It reports leases and
// never configures the interface: the caller applies the address (and
// must, before the client renews: renewal is unicast from it).
//
// Its methods may be called from several goroutines but run one at a
// time; Run holds the client only while it exchanges messages. Stop Run
// (cancel its context and wait for it) before Release, or Run would go
// on with a lease that is gone.
type Client struct {
	cfg Config
	ns  netns.Handle
	log *slog.Logger

	mu sync.Mutex // serialises exchanges: one socket on the interface
	// lease is the lease the client holds; held says it was granted or
	// confirmed in this process, rather than handed over by Config.Lease
	// or kept from before it expired (a hint for the next discovery).
	lease Lease
	held  bool
}

// New makes a client for cfg.Interface in cfg.NS. Nothing is sent until a
// method is called. Close releases the namespace handle, not the lease.
func New(cfg Config) (*Client, error) {
	if cfg.Interface == "" {
		return nil, errors.New("dhcp client: no interface")
	}
	fd, err := unix.FcntlInt(uintptr(cfg.NS), unix.F_DUPFD_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("dhcp client on %s: duplicate namespace handle: %w", cfg.Interface, err)
	}
	if cfg.Retransmit <= 0 {
		cfg.Retransmit = DefaultRetransmit
	}
	if cfg.MaxRetransmit <= 0 {
		cfg.MaxRetransmit = DefaultMaxRetransmit
	}
	cfg.MaxRetransmit = max(cfg.MaxRetransmit, cfg.Retransmit)
	log := cfg.Logger
	if log == nil {
		log = slog.Default()
	}
	return &Client{
		cfg:   cfg,
		ns:    netns.Handle(fd),
		log:   log.With("interface", cfg.Interface),
		lease: cfg.Lease,
		held:  cfg.Bound && cfg.Lease.Valid(time.Now()),
	}, nil
}

// Close releases what New took; call it once Run has returned. It neither
// releases the lease nor stops Run.
func (c *Client) Close() error { return c.ns.Close() }

// Lease returns the lease the client holds, or the zero Lease: none yet,
// lost, released, or expired.
func (c *Client) Lease() Lease {
	c.mu.Lock()
	defer c.mu.Unlock()
	if !c.held || !c.lease.Valid(time.Now()) {
		return Lease{}
	}
	return c.lease
}

// Acquire obtains a lease and returns it. With a remembered lease that
// has not expired (Config.Lease, or one held) it first asks for that
// address again (INIT-REBOOT, broadcast); refused, it discovers a new
// lease; unanswered after a few tries, it keeps the remembered lease, as
// RFC 2131 3.7 allows, until its expiry. Otherwise it discovers (DISCOVER,
// OFFER, REQUEST, ACK, all broadcast), asking for an expired lease's
// address again, and retries with backoff until it gets a lease or ctx
// ends; then the error wraps ctx's and names the interface.
func (c *Client) Acquire(ctx context.Context) (Lease, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	l, err := c.acquire(ctx)
	if err != nil {
		if ctx.Err() != nil {
			if rpf := c.rpFilter(); rpf != 0 {
				return Lease{}, fmt.Errorf("dhcp on %s: no lease (reverse path filter %d in its namespace drops answers from a server the interface has no route to: set net.ipv4.conf.all.rp_filter and net.ipv4.conf.%s.rp_filter to 0 there): %w",
					c.cfg.Interface, rpf, c.cfg.Interface, err)
			}
		}
		return Lease{}, fmt.Errorf("dhcp on %s: no lease: %w", c.cfg.Interface, err)
	}
	return l, nil
}

// rpFilter is the reverse path filter in force on the interface (the
// higher of all's and the interface's): a server's answers come from an
// address the interface has no route to before it is configured, and the
// kernel drops them unless it is 0. A namespace inherits the host's
// IPv4 settings, and distributions set 2, so the caller (who owns the
// namespace's sysctls) must lower it. 0 also when it cannot be read.
func (c *Client) rpFilter() int {
	rpf := 0
	netns.Do(c.ns, func() error {
		for _, dev := range []string{"all", c.cfg.Interface} {
			b, err := os.ReadFile("/proc/sys/net/ipv4/conf/" + dev + "/rp_filter")
			if err != nil {
				continue
			}
			if v, err := strconv.Atoi(strings.TrimSpace(string(b))); err == nil {
				rpf = max(rpf, v)
			}
		}
		return nil
	})
	return rpf
}

func (c *Client) acquire(ctx context.Context) (Lease, error) {
	x, err := c.open()
	if err != nil {
		return Lease{}, err
	}
	defer x.close()
	want := netip.Addr{}
	if !c.lease.IsZero() {
		want = c.lease.Addr.Addr()
	}
	if c.lease.Valid(time.Now()) {
		l, err := c.reboot(ctx, x)
		switch {
		case err == nil:
			c.lease, c.held = l, true
			c.log.Info("dhcp lease confirmed", "lease", l)
			return l, nil
		case errors.Is(err, ErrNak):
			c.log.Info("dhcp server refused the remembered lease, discovering", "addr", want)
			c.lease, c.held = Lease{}, false
			want = netip.Addr{}
		case errors.Is(err, errNoAnswer) && c.lease.Valid(time.Now()):
			c.held = true
			c.log.Warn("no dhcp server confirmed the remembered lease, keeping it until it expires", "lease", c.lease, "expires", c.lease.Expiry())
			return c.lease, nil
		case errors.Is(err, errNoAnswer):
		default:
			return Lease{}, err
		}
	}
	l, err := c.discover(ctx, x, want)
	if err != nil {
		return Lease{}, err
	}
	c.lease, c.held = l, true
	c.log.Info("dhcp lease obtained", "lease", l)
	return l, nil
}

// reboot asks for the remembered lease's address (INIT-REBOOT).
func (c *Client) reboot(ctx context.Context, x *exchange) (Lease, error) {
	req := c.request(x, Request, rand.Uint32())
	req.Flags = flagBroadcast
	req.Options.SetAddrs(OptRequestedIP, c.lease.Addr.Addr())
	c.log.Debug("dhcp init-reboot", "addr", c.lease.Addr.Addr())
	return c.leaseExchange(ctx, x, req, broadcast, rebootTries, nil)
}

// discover runs DISCOVER, OFFER, REQUEST, ACK until a lease is granted or
// ctx ends; want, if valid, is asked for in the DISCOVER.
func (c *Client) discover(ctx context.Context, x *exchange, want netip.Addr) (Lease, error) {
	for attempt := 0; ; attempt++ {
		if attempt > 0 {
			// Refused or unanswered REQUESTs: start over, not at once.
			if err := sleep(ctx, c.backoff(attempt)); err != nil {
				return Lease{}, err
			}
		}
		xid := rand.Uint32()
		d := c.request(x, Discover, xid)
		d.Flags = flagBroadcast
		if want.IsValid() {
			d.Options.SetAddrs(OptRequestedIP, want)
		}
		offer, _, _, err := x.transact(ctx, d, broadcast, 0, c.backoff, func(m *Message) bool {
			_, ok := m.Options.Addr(OptServerID)
			return m.Type() == Offer && m.YIAddr.Is4() && !m.YIAddr.IsUnspecified() && ok
		})
		if err != nil {
			return Lease{}, err
		}
		server, _ := offer.Options.Addr(OptServerID)
		c.log.Debug("dhcp offer", "addr", offer.YIAddr, "server", server)
		// SELECTING: the REQUEST keeps the offer's xid and names the
		// server chosen, so that the others withdraw their offers.
		r := c.request(x, Request, xid)
		r.Flags = flagBroadcast
		r.Options.SetAddrs(OptRequestedIP, offer.YIAddr)
		r.Options.SetAddrs(OptServerID, server)
		l, err := c.leaseExchange(ctx, x, r, broadcast, rebootTries, func(m *Message) bool {
			id, _ := m.Options.Addr(OptServerID)
			return id == server
		})
		switch {
		case err == nil:
			return l, nil
		case errors.Is(err, ErrNak), errors.Is(err, errNoAnswer):
			c.log.Info("dhcp request of offered address failed, discovering again", "addr", offer.YIAddr, "server", server, "err", err)
			want = netip.Addr{}
		default:
			return Lease{}, err
		}
	}
}

// Renew asks the server that granted the lease to extend it (RENEWING:
// unicast from the leased address, which the caller must have applied;
// broadcast when the address cannot send), retransmitting until ctx ends.
// It returns the renewed lease; on DHCPNAK an error wrapping ErrNak, the
// lease lost; when ctx ends first, ctx's error, the lease kept.
func (c *Client) Renew(ctx context.Context) (Lease, error) {
	return c.extend(ctx, "renew", true)
}

// Rebind asks any server to extend the lease (REBINDING: broadcast),
// retransmitting until ctx ends, with Renew's results.
func (c *Client) Rebind(ctx context.Context) (Lease, error) {
	return c.extend(ctx, "rebind", false)
}

func (c *Client) extend(ctx context.Context, what string, unicast bool) (Lease, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.lease.IsZero() {
		return Lease{}, fmt.Errorf("dhcp on %s: %s: no lease", c.cfg.Interface, what)
	}
	x, err := c.open()
	if err != nil {
		return Lease{}, fmt.Errorf("dhcp on %s: %s: %w", c.cfg.Interface, what, err)
	}
	defer x.close()
	// RFC 2131 4.3.2: ciaddr says which lease; no server identifier and
	// no requested address.
	req := c.request(x, Request, rand.Uint32())
	req.CIAddr = c.lease.Addr.Addr()
	dst := broadcast
	if unicast {
		dst = netip.AddrPortFrom(c.lease.ServerID, ServerPort)
	}
	addr := req.CIAddr
	l, err := c.leaseExchange(ctx, x, req, dst, 0, nil)
	switch {
	case err == nil:
		c.lease, c.held = l, true
		c.log.Info("dhcp lease extended", "how", what, "lease", l)
		return l, nil
	case errors.Is(err, ErrNak):
		c.log.Warn("dhcp lease refused", "how", what, "lease", c.lease)
		c.lease, c.held = Lease{}, false
	}
	return Lease{}, fmt.Errorf("dhcp on %s: %s %s: %w", c.cfg.Interface, what, addr, err)
}

// Release gives the lease back to its server (DHCPRELEASE, unicast from
// the leased address, broadcast when that cannot send; sent once, as no
// answer comes). The client holds no lease afterwards, even when sending
// failed. Call it before the address or the interface goes. Without a
// lease it does nothing.
func (c *Client) Release(ctx context.Context) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	l := c.lease
	if l.IsZero() {
		return nil
	}
	c.lease, c.held = Lease{}, false
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("dhcp on %s: release %s: %w", c.cfg.Interface, l.Addr.Addr(), err)
	}
	x, err := c.open()
	if err != nil {
		return fmt.Errorf("dhcp on %s: release %s: %w", c.cfg.Interface, l.Addr.Addr(), err)
	}
	defer x.close()
	m := c.request(x, Release, rand.Uint32())
	m.CIAddr = l.Addr.Addr()
	m.Options.SetAddrs(OptServerID, l.ServerID)
	delete(m.Options, OptParamRequest)
	if err := x.send(m, netip.AddrPortFrom(l.ServerID, ServerPort)); err != nil {
		return fmt.Errorf("dhcp on %s: release %s: %w", c.cfg.Interface, l.Addr.Addr(), err)
	}
	c.log.Info("dhcp lease released", "lease", l)
	return nil
}

// Run keeps a lease: it acquires one (as Acquire) unless the client holds
// one (an Acquire before Run got it: onChange is not told of it again),
// renews it from T1, rebinds from T2, and when it is refused or
// expires reports the loss and acquires again. onChange is called, on
// Run's goroutine, with every lease granted (a renewal too: its times
// change, and a store must keep them to survive a restart) and with the
// zero Lease when the lease is lost. Run returns ctx's error when ctx
// ends, leaving the lease held (Release gives it back).
func (c *Client) Run(ctx context.Context, onChange func(Lease)) error {
	failures := 0
	for {
		c.mu.Lock()
		l, held := c.lease, c.held && c.lease.Valid(time.Now())
		c.mu.Unlock()
		if !held {
			var err error
			if l, err = c.Acquire(ctx); err != nil {
				if ctx.Err() != nil {
					return ctx.Err()
				}
				// Not the server's silence (that waits for ctx) but the
				// interface: gone for now, perhaps being repaired.
				failures++
				c.log.Warn("dhcp acquire failed", "err", err)
				if err := sleep(ctx, c.backoff(failures)); err != nil {
					return err
				}
				continue
			}
			failures = 0
			onChange(l)
		}
		if err := sleepUntil(ctx, l.RenewAt()); err != nil {
			return err
		}
		next, err := c.keep(ctx, l)
		if ctx.Err() != nil {
			return ctx.Err()
		}
		if err != nil {
			c.log.Warn("dhcp lease lost", "lease", l, "err", err)
			c.mu.Lock()
			if c.lease.Addr == l.Addr {
				c.held = false // kept, expired or not, as a hint
			}
			c.mu.Unlock()
			onChange(Lease{})
			continue
		}
		onChange(next)
	}
}

// keep renews l until T2, then rebinds it until it expires.
func (c *Client) keep(ctx context.Context, l Lease) (Lease, error) {
	for _, phase := range []struct {
		until time.Time
		do    func(context.Context) (Lease, error)
	}{{l.RebindAt(), c.Renew}, {l.Expiry(), c.Rebind}} {
		pctx, cancel := context.WithDeadline(ctx, phase.until)
		for try := 1; ; try++ {
			next, err := phase.do(pctx)
			if err == nil || errors.Is(err, ErrNak) {
				cancel()
				return next, err
			}
			if pctx.Err() != nil {
				break
			}
			// Not an unanswered request (that lasts until pctx ends) but
			// a socket that would not open or send: try again shortly.
			if sleep(pctx, c.backoff(try)) != nil {
				break
			}
		}
		cancel()
		if ctx.Err() != nil {
			return Lease{}, ctx.Err()
		}
	}
	return Lease{}, fmt.Errorf("lease %s expired at %s", l.Addr, l.Expiry().Format(time.RFC3339))
}

// request is a message of the client's with what every one carries.
func (c *Client) request(x *exchange, t MessageType, xid uint32) *Message {
	m := &Message{
		Op:      BootRequest,
		HType:   htypeEthernet,
		XID:     xid,
		CHAddr:  x.mac,
		Options: Options{OptMessageType: {byte(t)}},
	}
	// RFC 2132 9.14: hardware type 1 (Ethernet) and the address.
	m.Options[OptClientID] = append([]byte{htypeEthernet}, x.mac...)
	m.Options[OptParamRequest] = []byte{
		byte(OptSubnetMask), byte(OptRouter), byte(OptDNS), byte(OptDomainName),
		byte(OptLeaseTime), byte(OptRenewalTime), byte(OptRebindingTime),
	}
	if c.cfg.Hostname != "" {
		m.Options[OptHostname] = []byte(c.cfg.Hostname)
	}
	return m
}

// leaseExchange sends req to dst until an ACK or NAK answers it (one that
// also passes from, when given) and returns the lease an ACK grants, or
// an error wrapping ErrNak.
func (c *Client) leaseExchange(ctx context.Context, x *exchange, req *Message, dst netip.AddrPort, tries int, from func(*Message) bool) (Lease, error) {
	wait := c.backoff
	if tries == 0 {
		wait = c.untilDeadline(ctx)
	}
	reply, src, sent, err := x.transact(ctx, req, dst, tries, wait, func(m *Message) bool {
		return (m.Type() == Ack || m.Type() == Nak) && (from == nil || from(m))
	})
	if err != nil {
		return Lease{}, err
	}
	if reply.Type() == Nak {
		if msg := reply.Options.String(OptMessage); msg != "" {
			return Lease{}, fmt.Errorf("%w: %q", ErrNak, msg)
		}
		return Lease{}, ErrNak
	}
	l, err := LeaseFromAck(reply, sent, src)
	if err != nil {
		return Lease{}, err
	}
	// RFC 2131 4.3.1 lets a server leave out of the ACK of a renewal or of
	// an init-reboot what has not changed: the remembered lease's stands.
	if prev := c.lease; prev.Addr.Addr() == l.Addr.Addr() {
		if _, ok := reply.Options[OptSubnetMask]; !ok {
			l.Addr = prev.Addr
		}
		if _, ok := reply.Options[OptRouter]; !ok {
			l.Router = prev.Router
		}
		if _, ok := reply.Options[OptDNS]; !ok {
			l.DNS = prev.DNS
		}
		if _, ok := reply.Options[OptDomainName]; !ok {
			l.Domain = prev.Domain
		}
	}
	return l, nil
}

// backoff is the wait after the try'th transmission (from 0): doubling
// from Retransmit up to MaxRetransmit, randomised.
func (c *Client) backoff(try int) time.Duration {
	d := c.cfg.Retransmit << min(try, 16)
	d = min(d, c.cfg.MaxRetransmit)
	return jitter(d)
}

// untilDeadline is RFC 2131 4.4.5's wait while renewing or rebinding: half
// of what is left until ctx's deadline, but not less than MaxRetransmit
// (ctx's deadline cuts the last wait short). Without a deadline it is
// backoff.
func (c *Client) untilDeadline(ctx context.Context) func(int) time.Duration {
	dl, ok := ctx.Deadline()
	if !ok {
		return c.backoff
	}
	return func(int) time.Duration {
		return max(time.Until(dl)/2, c.cfg.MaxRetransmit)
	}
}

func jitter(d time.Duration) time.Duration {
	if r := int64(d / 8); r > 0 {
		d += time.Duration(rand.Int64N(2*r+1) - r)
	}
	return d
}

func sleep(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}

func sleepUntil(ctx context.Context, at time.Time) error { return sleep(ctx, time.Until(at)) }

var broadcast = netip.AddrPortFrom(netip.AddrFrom4([4]byte{255, 255, 255, 255}), ServerPort)

// exchange is the client's socket on its interface for one operation.
type exchange struct {
	conn  *net.UDPConn
	mac   net.HardwareAddr
	ifc   string
	start time.Time // for the secs field
}

func (c *Client) open() (*exchange, error) {
	conn, ifc, err := Listen(c.ns, c.cfg.Interface, ClientPort)
	if err != nil {
		return nil, err
	}
	if len(ifc.HardwareAddr) == 0 || len(ifc.HardwareAddr) > 16 {
		conn.Close()
		return nil, fmt.Errorf("interface %s has no hardware address", c.cfg.Interface)
	}
	return &exchange{conn: conn, mac: ifc.HardwareAddr, ifc: c.cfg.Interface, start: time.Now()}, nil
}

func (x *exchange) close() { x.conn.Close() }

// send writes m to dst; a unicast that cannot leave (no address or route
// yet on the interface) goes to the broadcast address instead, where
// servers take it as well.
func (x *exchange) send(m *Message, dst netip.AddrPort) error {
	m.Secs = uint16(min(time.Since(x.start)/time.Second, 0xffff))
	b, err := m.Encode()
	if err != nil {
		return err
	}
	_, err = x.conn.WriteToUDPAddrPort(b, dst)
	if err != nil && dst != broadcast {
		_, err = x.conn.WriteToUDPAddrPort(b, broadcast)
	}
	if err != nil {
		return fmt.Errorf("send %s: %w", m.Type(), err)
	}
	return nil
}

// transact sends req to dst and waits for a reply to it (its xid, our
// hardware address) that accept takes, sending again after each wait(try)
// until tries transmissions (0: no limit) are unanswered (errNoAnswer) or
// ctx ends (its error). It returns the reply, its source, and when the
// first request was sent.
func (x *exchange) transact(ctx context.Context, req *Message, dst netip.AddrPort, tries int, wait func(int) time.Duration, accept func(*Message) bool) (*Message, netip.Addr, time.Time, error) {
	// A read blocks until its deadline; ctx's end moves the deadline to now.
	stop := context.AfterFunc(ctx, func() { x.conn.SetReadDeadline(time.Now()) })
	defer stop()
	first := time.Now()
	buf := make([]byte, 1500)
	for try := 0; tries == 0 || try < tries; try++ {
		if err := ctx.Err(); err != nil {
			return nil, netip.Addr{}, first, err
		}
		if err := x.send(req, dst); err != nil {
			return nil, netip.Addr{}, first, err
		}
		deadline := time.Now().Add(wait(try))
		if dl, ok := ctx.Deadline(); ok && dl.Before(deadline) {
			deadline = dl
		}
		x.conn.SetReadDeadline(deadline)
		for {
			// After the deadline is set: a ctx that ended before it was
			// set would not have cut it short.
			if err := ctx.Err(); err != nil {
				return nil, netip.Addr{}, first, err
			}
			n, src, err := x.conn.ReadFromUDPAddrPort(buf)
			if err != nil {
				if errors.Is(err, os.ErrDeadlineExceeded) {
					break
				}
				return nil, netip.Addr{}, first, fmt.Errorf("receive: %w", err)
			}
			m, err := Decode(buf[:n])
			if err != nil || m.Op != BootReply || m.XID != req.XID || !bytes.Equal(m.CHAddr, x.mac) || !accept(m) {
				continue // someone else's, or not what this step waits for
			}
			return m, src.Addr().Unmap(), first, nil
		}
	}
	if err := ctx.Err(); err != nil {
		return nil, netip.Addr{}, first, err
	}
	return nil, netip.Addr{}, first, errNoAnswer
}
