// Package leases runs the DHCP clients of the daemon's endpoints: one
// client per attached endpoint of a network whose addresses come from
// DHCP, inside the endpoint's namespace, on its interface. It is a runtime
// component of the daemon, like the reconciler's repair loop: it decides
// nothing and configures nothing. A lease it obtains is handed to the
// service (Config.Report), which records it; the address and routes then
// follow from the record through the driver's plan and the reconciler,
// like every other desired state.
package leases

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"sync"
	"time"

	"github.com/hostnet/hostnet/api"
	"github.com/hostnet/hostnet/internal/dataplane/netns"
	"github.com/hostnet/hostnet/internal/dhcp"
)

// Target is an endpoint whose address a client keeps.
type Target struct {
	EndpointID string
	// NSPath is the endpoint's network namespace, Interface its device
	// there.
	NSPath    string
	Interface string
	// Hostname, when set, is sent to the server.
	Hostname string
	// Lease is the stored lease, nil when there is none: a client started
	// by Keep holds it as still bound (the interface kept the address
	// across the daemon's restart) and renews it from T1 instead of
	// asking for an address again.
	Lease *api.DhcpLease
}

// Config is what a Manager runs with.
type Config struct {
	// Report records a lease a running client was granted after its first
	// (a renewal changes its times), or nil when the lease was lost. It
	// is called on the client's goroutine; an error is logged.
	Report func(ctx context.Context, t Target, l *api.DhcpLease) error
	// Retransmit and MaxRetransmit are the clients' timing (zero: RFC
	// 2131's 4 s and 64 s).
	Retransmit, MaxRetransmit time.Duration
	// ReleaseTimeout bounds sending a DHCPRELEASE (zero: 2 s).
	ReleaseTimeout time.Duration
	Logger         *slog.Logger
}

// Manager runs the clients, one per endpoint. Its methods may be called
// from several goroutines.
type Manager struct {
	cfg Config
	log *slog.Logger

	mu      sync.Mutex
	clients map[string]*running // by endpoint ID
	// released are the endpoints whose leases Stop gave back, on their way
	// out (detached or deleted): Keep, from records read before they went,
	// must not start them again.
	released map[string]bool
	closed   bool
}

// running is one endpoint's client.
type running struct {
	t      Target
	c      *dhcp.Client
	ctx    context.Context // ends when the client is stopped
	cancel context.CancelFunc
	done   chan struct{} // closed when its goroutine (if any) returned
	// acquiring says Acquire is waiting for its first lease: Keep, from
	// records read before the attach, must not stop it (guarded by mu).
	acquiring bool
}

// New returns a manager with no clients.
func New(cfg Config) *Manager {
	log := cfg.Logger
	if log == nil {
		log = slog.Default()
	}
	if cfg.ReleaseTimeout <= 0 {
		cfg.ReleaseTimeout = 2 * time.Second
	}
	return &Manager{cfg: cfg, log: log.With("component", "dhcp"), clients: map[string]*running{}, released: map[string]bool{}}
}

// ErrClosed is returned by Acquire once the manager is closed.
var ErrClosed = errors.New("dhcp clients: shut down")

// Acquire starts a client for t (after stopping the endpoint's previous
// one, without releasing its lease) and waits until it is granted a lease
// (or confirms t.Lease), or until ctx ends. On success the client runs on:
// it renews the lease and reports changes until Stop or Close. On failure
// it is stopped and nothing of it is left.
func (m *Manager) Acquire(ctx context.Context, t Target) (*api.DhcpLease, error) {
	m.Stop(context.Background(), t.EndpointID, false)
	m.mu.Lock()
	delete(m.released, t.EndpointID)
	m.mu.Unlock()
	r, err := m.register(t, false)
	if err != nil {
		return nil, err
	}
	m.mu.Lock()
	r.acquiring = true
	m.mu.Unlock()
	actx, cancel := context.WithCancel(ctx)
	stop := context.AfterFunc(r.ctx, cancel)
	l, err := r.c.Acquire(actx)
	stop()
	cancel()
	if err != nil {
		if m.drop(r) {
			r.c.Close()
		} // else whoever stopped it closes it
		return nil, err
	}
	m.mu.Lock()
	r.acquiring = false
	m.mu.Unlock()
	go m.run(r)
	out := ToAPI(l)
	return &out, nil
}

// Keep makes the running clients those of ts: the clients of endpoints
// not in ts (or of another namespace or interface) stop without releasing
// their leases, and each target without a client gets one, which resumes
// the stored lease (or, with none, discovers) and reports what it gets. A
// client being acquired is left alone (ts may have been read before its
// attach), and no client is started for an endpoint whose lease Stop
// released (until ts no longer has it: ts may have been read before its
// detach).
func (m *Manager) Keep(ts []Target) {
	want := map[string]Target{}
	for _, t := range ts {
		want[t.EndpointID] = t
	}
	m.mu.Lock()
	for id := range m.released {
		if _, ok := want[id]; !ok {
			delete(m.released, id)
		}
	}
	var stale []*running
	for id, r := range m.clients {
		if r.acquiring {
			continue
		}
		if t, ok := want[id]; !ok || t.NSPath != r.t.NSPath || t.Interface != r.t.Interface {
			stale = append(stale, r)
			delete(m.clients, id)
		}
	}
	m.mu.Unlock()
	for _, r := range stale {
		m.finish(context.Background(), r, false)
	}
	for _, t := range ts {
		m.mu.Lock()
		_, have := m.clients[t.EndpointID]
		released := m.released[t.EndpointID]
		m.mu.Unlock()
		if have || released {
			continue
		}
		r, err := m.register(t, true)
		if err != nil {
			m.log.Warn("dhcp client not started", "endpoint", t.EndpointID, "err", err)
			continue
		}
		go m.run(r)
	}
}

// Stop stops the endpoint's client, if any. With release it first gives
// the lease back to its server (DHCPRELEASE, from the leased address):
// call it while the interface still has the address.
func (m *Manager) Stop(ctx context.Context, endpointID string, release bool) {
	m.mu.Lock()
	r := m.clients[endpointID]
	delete(m.clients, endpointID)
	if release {
		m.released[endpointID] = true
	}
	m.mu.Unlock()
	if r != nil {
		m.finish(ctx, r, release)
	}
}

// Running lists the endpoints that have a client.
func (m *Manager) Running() []string {
	m.mu.Lock()
	defer m.mu.Unlock()
	out := make([]string, 0, len(m.clients))
	for id := range m.clients {
		out = append(out, id)
	}
	return out
}

// Close stops every client without releasing its lease: the leases stay
// recorded and the addresses on their interfaces, for the next start.
func (m *Manager) Close() {
	m.mu.Lock()
	m.closed = true
	all := m.clients
	m.clients = map[string]*running{}
	m.mu.Unlock()
	for _, r := range all {
		m.finish(context.Background(), r, false)
	}
}

// register makes t's client and records it.
func (m *Manager) register(t Target, bound bool) (*running, error) {
	ns, err := netns.Open(t.NSPath)
	if err != nil {
		return nil, fmt.Errorf("dhcp on %s: namespace %s: %w", t.Interface, t.NSPath, err)
	}
	defer ns.Close() // the client keeps a duplicate
	cfg := dhcp.Config{NS: ns, Interface: t.Interface, Hostname: t.Hostname,
		Retransmit: m.cfg.Retransmit, MaxRetransmit: m.cfg.MaxRetransmit, Bound: bound,
		Logger: m.log.With("endpoint", t.EndpointID)}
	if t.Lease != nil {
		if cfg.Lease, err = FromAPI(*t.Lease); err != nil {
			m.log.Warn("stored dhcp lease unreadable, discovering", "endpoint", t.EndpointID, "err", err)
		}
	}
	c, err := dhcp.New(cfg)
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithCancel(context.Background())
	r := &running{t: t, c: c, ctx: ctx, cancel: cancel, done: make(chan struct{})}
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.closed {
		cancel()
		c.Close()
		return nil, ErrClosed
	}
	m.clients[t.EndpointID] = r
	return r, nil
}

// drop ends r, whose goroutine never started, and forgets it; it reports
// whether r was still the endpoint's client (else Stop, Keep or Close took
// it, and closes it).
func (m *Manager) drop(r *running) bool {
	m.mu.Lock()
	owned := m.clients[r.t.EndpointID] == r
	if owned {
		delete(m.clients, r.t.EndpointID)
	}
	m.mu.Unlock()
	r.cancel()
	close(r.done)
	return owned
}

// run keeps r's lease until r is stopped.
func (m *Manager) run(r *running) {
	defer close(r.done)
	err := r.c.Run(r.ctx, func(l dhcp.Lease) {
		var out *api.DhcpLease
		if !l.IsZero() {
			a := ToAPI(l)
			out = &a
		}
		if m.cfg.Report == nil {
			return
		}
		if err := m.cfg.Report(r.ctx, r.t, out); err != nil && r.ctx.Err() == nil {
			m.log.Warn("recording a dhcp lease failed", "endpoint", r.t.EndpointID, "lease", l, "err", err)
		}
	})
	if err != nil && r.ctx.Err() == nil {
		m.log.Warn("dhcp client stopped", "endpoint", r.t.EndpointID, "err", err)
	}
}

// finish stops r (already taken out of the map), releasing its lease
// first if asked. The client's lease is the one granted, confirmed or
// resumed (a resumed one is released too).
func (m *Manager) finish(ctx context.Context, r *running, release bool) {
	r.cancel()
	<-r.done
	defer r.c.Close()
	if !release {
		return
	}
	rctx, cancel := context.WithTimeout(ctx, m.cfg.ReleaseTimeout)
	defer cancel()
	if err := r.c.Release(rctx); err != nil {
		m.log.Warn("dhcp release failed", "endpoint", r.t.EndpointID, "err", err)
	}
}

// ToAPI is a lease as hostnet stores and shows it. What a server says
// that goes to the endpoint's resolv.conf is held to a document's bounds:
// a domain that a document's Dns.Domain could not be (a line break would
// add lines of the server's choosing) is left out, and so are servers
// past api.MaxDNSEntries.
func ToAPI(l dhcp.Lease) api.DhcpLease {
	out := api.DhcpLease{
		IpAddress: l.Addr.Addr().String(), PrefixLength: uint8(l.Addr.Bits()), Server: l.ServerID.String(),
		Obtained: l.Obtained.UTC(), RenewAt: l.RenewAt().UTC(), RebindAt: l.RebindAt().UTC(), Expires: l.Expiry().UTC(),
	}
	if api.CheckDNSName(l.Domain) == nil {
		out.Domain = l.Domain
	}
	if l.Router.IsValid() {
		out.Gateway = l.Router.String()
	}
	for _, d := range l.DNS[:min(len(l.DNS), api.MaxDNSEntries)] {
		out.DnsServers = append(out.DnsServers, d.String())
	}
	return out
}

// FromAPI reads a stored lease back.
func FromAPI(a api.DhcpLease) (dhcp.Lease, error) {
	addr, err := netip.ParseAddr(a.IpAddress)
	if err != nil || !addr.Is4() || a.PrefixLength > 32 {
		return dhcp.Lease{}, fmt.Errorf("lease address %q/%d: not an IPv4 address", a.IpAddress, a.PrefixLength)
	}
	server, err := netip.ParseAddr(a.Server)
	if err != nil {
		return dhcp.Lease{}, fmt.Errorf("lease server %q: %w", a.Server, err)
	}
	l := dhcp.Lease{Addr: netip.PrefixFrom(addr, int(a.PrefixLength)), ServerID: server, Domain: a.Domain,
		Obtained: a.Obtained, Duration: a.Expires.Sub(a.Obtained), T1: a.RenewAt.Sub(a.Obtained), T2: a.RebindAt.Sub(a.Obtained)}
	if a.Gateway != "" {
		if l.Router, err = netip.ParseAddr(a.Gateway); err != nil {
			return dhcp.Lease{}, fmt.Errorf("lease gateway %q: %w", a.Gateway, err)
		}
	}
	for _, d := range a.DnsServers {
		ip, err := netip.ParseAddr(d)
		if err != nil {
			return dhcp.Lease{}, fmt.Errorf("lease dns server %q: %w", d, err)
		}
		l.DNS = append(l.DNS, ip)
	}
	if l.Duration <= 0 || l.T1 <= 0 || l.T2 < l.T1 || l.Duration < l.T2 {
		return dhcp.Lease{}, fmt.Errorf("lease times out of order (obtained %s, renew %s, rebind %s, expires %s)", a.Obtained, a.RenewAt, a.RebindAt, a.Expires)
	}
	return l, nil
}
