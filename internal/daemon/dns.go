package daemon

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"sync/atomic"

	"github.com/hostnet/hostnet/internal/dataplane/netns"
	"github.com/hostnet/hostnet/internal/dnsserver"
	"github.com/hostnet/hostnet/internal/service"
	"github.com/hostnet/hostnet/internal/store"
)

// commitCounter is the store as the service uses it, counting the
// transactions that committed: the embedded DNS server's generation. A
// count is taken after the commit returns, so a view read after it sees
// the change, and before the service answers the request that made it.
// A commit that wrote a network record also calls networksChanged, so
// that the server binds a new network's sockets before the request is
// answered.
type commitCounter struct {
	store.Store
	commits         atomic.Uint64
	networksChanged atomic.Pointer[func()] // when set
}

func (c *commitCounter) committed(networks bool) {
	c.commits.Add(1)
	if f := c.networksChanged.Load(); networks && f != nil {
		(*f)()
	}
}

func (c *commitCounter) Update(fn func(store.Tx) error) error {
	var networks atomic.Bool
	err := c.Store.Update(func(tx store.Tx) error { return fn(watchedTx{Tx: tx, networks: &networks}) })
	if err == nil {
		c.committed(networks.Load())
	}
	return err
}

func (c *commitCounter) UpdateEarly(fn func(store.Tx) error, decided func()) error {
	var networks atomic.Bool
	err := c.Store.UpdateEarly(func(tx store.Tx) error { return fn(watchedTx{Tx: tx, networks: &networks}) }, decided)
	if err == nil {
		c.committed(networks.Load())
	}
	return err
}

// watchedTx notes whether a transaction writes a network record.
type watchedTx struct {
	store.Tx
	networks *atomic.Bool
}

func (t watchedTx) Put(bucket, key string, value []byte) error {
	if bucket == store.Networks {
		t.networks.Store(true)
	}
	return t.Tx.Put(bucket, key, value)
}

func (t watchedTx) Delete(bucket, key string) error {
	if bucket == store.Networks {
		t.networks.Store(true)
	}
	return t.Tx.Delete(bucket, key)
}

// startDNS starts the embedded DNS server over svc's view, its sockets in
// the host namespace; the caller closes what it returns.
func (cfg Config) startDNS(svc *service.Service, st *commitCounter, log *slog.Logger) (func(), error) {
	sockets, closeSockets, err := hostSockets(cfg.HostNetns)
	if err != nil {
		return nil, err
	}
	srv := dnsserver.New(dnsserver.Config{Source: svc, Generation: st.commits.Load, Sockets: sockets, Logger: log})
	srv.Start()
	changed := srv.NetworksChanged
	st.networksChanged.Store(&changed)
	return func() {
		st.networksChanged.Store(nil)
		srv.Close()
		closeSockets()
	}, nil
}

// hostSockets makes sockets in the host namespace: the daemon's own when
// it runs there, else on a thread that enters it for each socket.
func hostSockets(path string) (dnsserver.Sockets, func(), error) {
	if path == "" {
		return dnsserver.LocalSockets{}, func() {}, nil
	}
	h, err := netns.Open(path)
	if err != nil {
		return nil, nil, err
	}
	self, err := netns.Current()
	if err != nil {
		h.Close()
		return nil, nil, fmt.Errorf("open the daemon's namespace: %w", err)
	}
	defer self.Close()
	hd, hi, err1 := netns.Identity(h)
	sd, si, err2 := netns.Identity(self)
	if err1 == nil && err2 == nil && hd == sd && hi == si {
		h.Close()
		return dnsserver.LocalSockets{}, func() {}, nil
	}
	return nsSockets{h}, func() { h.Close() }, nil
}

// nsSockets makes each socket on a thread inside the namespace ns; the
// socket stays there when used from any thread.
type nsSockets struct{ ns netns.Handle }

func (s nsSockets) ListenPacket(addr netip.AddrPort) (pc net.PacketConn, err error) {
	err = netns.Do(s.ns, func() error {
		pc, err = dnsserver.LocalSockets{}.ListenPacket(addr)
		return err
	})
	return pc, err
}

func (s nsSockets) Listen(addr netip.AddrPort) (l net.Listener, err error) {
	err = netns.Do(s.ns, func() error {
		l, err = dnsserver.LocalSockets{}.Listen(addr)
		return err
	})
	return l, err
}

func (s nsSockets) Dial(ctx context.Context, network string, addr netip.AddrPort) (c net.Conn, err error) {
	err = netns.Do(s.ns, func() error {
		c, err = dnsserver.LocalSockets{}.Dial(ctx, network, addr)
		return err
	})
	return c, err
}
