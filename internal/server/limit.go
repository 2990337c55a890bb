package server

import (
	"log/slog"
	"net"
	"net/http"
	"sync"
	"syscall"
	"time"
)

// limitListener bounds the number of connections open at once, like
// golang.org/x/net/netutil.LimitListener, but so that connections that
// hold a slot while doing nothing cannot starve the clients that have work.
//
// A connection is either waiting for its client (StateNew: connected, has
// sent nothing; StateIdle: a kept-alive connection between requests; or
// reading a request: its headers, or its body, which the server reads in
// full before it runs a request) or busy (its request was read, and is
// being carried out and answered). When a connection arrives while max
// are open, the listener closes the connection that has waited longest for
// its client, preferring one whose caller is not admitted; only when all
// max are busy does the new connection wait, in Accept (one more open
// connection than max, at most), with the ones after it in the kernel's
// backlog, until one is closed or goes idle.
//
// So 200 silent or idle connections and a limit of 128 keep nobody out: a
// new connection, which sends its request at once, closes the oldest
// waiting one, and its request is read and run long before it could be
// the oldest. A request is never cut once it runs: the server marks the
// connection busy first, and a connection closed before that runs
// nothing. The one cost falls on a client that sends a request on a
// kept-alive connection at the moment it is closed: it sees the error it
// would see at the idle timeout (Go's client retries an idempotent
// request then). Besides, the server's timeouts close connections that
// wait too long (ReadHeaderTimeout, ReadTimeout, IdleTimeout), at any
// load.
type limitListener struct {
	net.Listener
	max int
	log *slog.Logger

	mu      sync.Mutex
	changed *sync.Cond // a slot freed, a connection went idle, or the listener closed
	conns   map[*limitConn]struct{}
	closed  bool
	evicted int       // since the last warning
	warned  time.Time // when the last warning was logged
}

func newLimitListener(l net.Listener, max int, log *slog.Logger) *limitListener {
	ll := &limitListener{Listener: l, max: max, log: log, conns: make(map[*limitConn]struct{})}
	ll.changed = sync.NewCond(&ll.mu)
	return ll
}

// Accept accepts a connection, then, when max are open, closes the one
// that has waited longest for its client, or waits until one is idle or
// closed.
func (l *limitListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	for len(l.conns) >= l.max {
		if l.closed {
			c.Close()
			return nil, net.ErrClosed
		}
		if v := l.victimLocked(); v != nil {
			warn := l.evictLocked(v)
			// Not under the lock: Close waits for the connection's
			// goroutine to leave its read, and that goroutine, or
			// any other, may want the lock meanwhile.
			l.mu.Unlock()
			_ = v.Conn.Close()
			if warn > 0 {
				l.log.Warn("connection limit reached: closing the connections that waited longest for their clients",
					"max_connections", l.max, "closed", warn)
			}
			l.mu.Lock()
			continue
		}
		l.changed.Wait()
	}
	lc := &limitConn{Conn: c, l: l, since: time.Now()}
	l.conns[lc] = struct{}{}
	return lc, nil
}

// Close closes the listener and wakes an Accept waiting for a slot.
func (l *limitListener) Close() error {
	l.mu.Lock()
	l.closed = true
	l.changed.Broadcast()
	l.mu.Unlock()
	return l.Listener.Close()
}

// open returns the number of connections open.
func (l *limitListener) open() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.conns)
}

// victimLocked returns the connection to close for a new one: of those
// waiting for their client, a caller that is not admitted first, then the
// one that has waited longest.
func (l *limitListener) victimLocked() *limitConn {
	var v *limitConn
	for c := range l.conns {
		if c.busy {
			continue
		}
		if v == nil || c.denied && !v.denied || c.denied == v.denied && c.since.Before(v.since) {
			v = c
		}
	}
	return v
}

// evictLocked takes c's slot; the caller closes it, and warns when it
// returns a count of connections closed: at most once a minute.
func (l *limitListener) evictLocked(c *limitConn) (warn int) {
	delete(l.conns, c)
	c.gone = true
	l.evicted++
	if now := time.Now(); now.Sub(l.warned) >= time.Minute {
		warn = l.evicted
		l.warned, l.evicted = now, 0
	}
	return warn
}

// limitConn is a connection holding one of the listener's slots.
type limitConn struct {
	net.Conn
	l *limitListener

	// Guarded by l.mu.
	busy   bool      // a request is being carried out or answered
	denied bool      // the caller is not admitted
	gone   bool      // closed, or evicted
	since  time.Time // when it last began to wait for its client

	closeOnce sync.Once
}

// Close closes the connection and frees its slot.
func (c *limitConn) Close() error {
	err := c.Conn.Close()
	c.closeOnce.Do(c.release)
	return err
}

func (c *limitConn) release() {
	l := c.l
	l.mu.Lock()
	defer l.mu.Unlock()
	if !c.gone {
		c.gone = true
		delete(l.conns, c)
	}
	l.changed.Broadcast()
}

// setState follows http.Server's ConnState.
func (c *limitConn) setState(s http.ConnState) {
	l := c.l
	l.mu.Lock()
	defer l.mu.Unlock()
	switch s {
	case http.StateNew, http.StateActive, http.StateIdle:
		// Waiting for the client: to send (more of) a request, or to
		// reuse a kept-alive connection.
		c.busy = false
		c.since = time.Now()
		l.changed.Broadcast()
	case http.StateHijacked:
		c.busy = true
	case http.StateClosed:
		if !c.gone {
			c.gone = true
			delete(l.conns, c)
			l.changed.Broadcast()
		}
	}
}

// startRequest marks the connection busy before its request is carried
// out, and reports false when it was closed for a new one already: then
// nothing must be done.
func (c *limitConn) startRequest() bool {
	c.l.mu.Lock()
	defer c.l.mu.Unlock()
	if c.gone {
		return false
	}
	c.busy = true
	return true
}

// deny marks the caller as not admitted: its connection goes first.
func (c *limitConn) deny() {
	c.l.mu.Lock()
	c.denied = true
	c.l.mu.Unlock()
}

// SyscallConn gives the server the socket, for the caller's credentials.
func (c *limitConn) SyscallConn() (syscall.RawConn, error) {
	if sc, ok := c.Conn.(syscall.Conn); ok {
		return sc.SyscallConn()
	}
	return nil, syscall.EINVAL
}

// CloseWrite lets the server half-close, as it does on a connection whose
// request body it did not read in full, so that the answer gets through.
func (c *limitConn) CloseWrite() error {
	if cw, ok := c.Conn.(interface{ CloseWrite() error }); ok {
		return cw.CloseWrite()
	}
	return nil
}
