package server

import (
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"path/filepath"
	"testing"
	"time"
)

// limitPair is a limitListener on a unix socket, and a way to dial it.
type limitPair struct {
	t    *testing.T
	path string
	l    *limitListener
}

func newLimitPair(t *testing.T, max int) *limitPair {
	t.Helper()
	path := filepath.Join(t.TempDir(), "s.sock")
	inner, err := net.Listen("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	l := newLimitListener(inner, max, slog.New(slog.DiscardHandler))
	t.Cleanup(func() { l.Close() })
	return &limitPair{t: t, path: path, l: l}
}

func (p *limitPair) dial() net.Conn {
	p.t.Helper()
	c, err := net.Dial("unix", p.path)
	if err != nil {
		p.t.Fatal(err)
	}
	p.t.Cleanup(func() { c.Close() })
	return c
}

// accept accepts one connection, failing after a few seconds.
func (p *limitPair) accept() *limitConn {
	p.t.Helper()
	select {
	case r := <-p.acceptAsync():
		if r.err != nil {
			p.t.Fatal(r.err)
		}
		return r.c
	case <-time.After(5 * time.Second):
		p.t.Fatal("Accept did not return")
	}
	return nil
}

type acceptResult struct {
	c   *limitConn
	err error
}

func (p *limitPair) acceptAsync() <-chan acceptResult {
	ch := make(chan acceptResult, 1)
	go func() {
		c, err := p.l.Accept()
		lc, _ := c.(*limitConn)
		if lc != nil {
			p.t.Cleanup(func() { lc.Close() })
		}
		ch <- acceptResult{lc, err}
	}()
	return ch
}

// closed reports whether the server closed the client's connection c.
func closed(c net.Conn) bool {
	_ = c.SetReadDeadline(time.Now().Add(2 * time.Second))
	_, err := c.Read(make([]byte, 1))
	return errors.Is(err, io.EOF)
}

func TestLimitListenerClosesTheLongestWaiting(t *testing.T) {
	p := newLimitPair(t, 2)
	p.dial()
	b := p.dial()
	p.dial()
	la := p.accept()
	time.Sleep(time.Millisecond)
	lb := p.accept()
	time.Sleep(time.Millisecond)
	la.setState(http.StateIdle) // a has waited since accept; idle again now: the youngest
	lc := p.accept()            // closes b, which waited longest
	if !closed(b) {
		t.Error("the longest-waiting connection was not closed")
	}
	if lb.startRequest() {
		t.Error("a request started on a connection closed for a new one")
	}
	if n := p.l.open(); n != 2 {
		t.Errorf("%d connections open, want 2", n)
	}
	for _, x := range []*limitConn{la, lc} {
		if !x.startRequest() {
			t.Error("a request did not start on an open connection")
		}
	}
}

func TestLimitListenerWaitsWhenAllAreBusy(t *testing.T) {
	p := newLimitPair(t, 2)
	p.dial()
	b := p.dial()
	la, lb := p.accept(), p.accept()
	la.startRequest()
	lb.startRequest()
	p.dial()
	ch := p.acceptAsync()
	select {
	case <-ch:
		t.Fatal("Accept evicted a busy connection or exceeded the limit")
	case <-time.After(200 * time.Millisecond):
	}
	// b's request is answered: its connection waits for the client again
	// and can make room.
	lb.setState(http.StateIdle)
	select {
	case r := <-ch:
		if r.err != nil {
			t.Fatal(r.err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Accept did not return once a connection went idle")
	}
	if !closed(b) {
		t.Error("the idle connection was not closed")
	}

	// Both busy again: closing one frees its slot.
	p.dial()
	ch = p.acceptAsync()
	time.Sleep(50 * time.Millisecond)
	la.Close()
	select {
	case r := <-ch:
		if r.err != nil {
			t.Fatal(r.err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Accept did not return once a connection closed")
	}
}

func TestLimitListenerPrefersCallersNotAdmitted(t *testing.T) {
	p := newLimitPair(t, 2)
	a, b := p.dial(), p.dial()
	p.accept()
	time.Sleep(time.Millisecond)
	lb := p.accept()
	lb.deny()
	p.dial()
	p.accept()
	if !closed(b) {
		t.Error("the caller not admitted was not closed first")
	}
	_ = a.SetReadDeadline(time.Now().Add(100 * time.Millisecond))
	if _, err := a.Read(make([]byte, 1)); !isTimeout(err) {
		t.Errorf("the admitted caller's connection: %v, want it open", err)
	}
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

func TestLimitListenerCloseWakesAccept(t *testing.T) {
	p := newLimitPair(t, 1)
	p.dial()
	p.accept().startRequest()
	p.dial()
	ch := p.acceptAsync()
	time.Sleep(50 * time.Millisecond)
	p.l.Close()
	select {
	case r := <-ch:
		if !errors.Is(r.err, net.ErrClosed) {
			t.Errorf("Accept after Close: %v", r.err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Close did not wake Accept")
	}
}
