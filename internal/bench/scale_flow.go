package bench

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hostnet/hostnet/internal/testutil/lab"
)

// scaleFlow is a UDP stream with sequence numbers at a fixed rate from the
// external namespace to a published port, counted by a receiver inside the
// endpoint, and beside it a TCP connection through another published port
// that exchanges a small message every few milliseconds and must stay up.
type scaleFlow struct {
	rate     float64 // UDP packets per second
	epNS     string  // the endpoint's namespace
	sent     atomic.Uint64
	sendErrs atomic.Uint64 // sends refused (ICMP errors reported back)

	udpIn  *net.UDPConn
	udpOut *net.UDPConn
	tcpLn  net.Listener
	tcpOut net.Conn

	mu     sync.Mutex
	got    []bool // by sequence number
	dups   int
	tcpErr error
	tcpMax time.Duration // the longest TCP round trip
	tcpN   int
	// New TCP connections opened one after the other through the
	// published port, each exchanging one message: they need the NAT
	// rules themselves, where the running flows need only the connection
	// tracker's entries.
	newOK, newFailed int
	newErr           error
	host             string
	tcpPort          int
	ext              string
	stop             chan struct{}
	stopped          sync.WaitGroup
}

// startScaleFlow starts the receivers in the endpoint namespace epNS and
// the senders in ext, towards host's udpPort and tcpPort (published ports
// leading to the same ports of the endpoint). It returns once packets
// arrive.
func startScaleFlow(ext, epNS, host string, udpPort, tcpPort int, rate float64) (_ *scaleFlow, err error) {
	f := &scaleFlow{rate: rate, epNS: epNS, stop: make(chan struct{}), host: host, tcpPort: tcpPort, ext: ext}
	defer func() {
		if err != nil {
			f.close()
		}
	}()
	if err := lab.In(epNS, func() error {
		var err error
		if f.udpIn, err = net.ListenUDP("udp4", &net.UDPAddr{Port: udpPort}); err != nil {
			return err
		}
		f.tcpLn, err = net.Listen("tcp4", fmt.Sprintf(":%d", tcpPort))
		return err
	}); err != nil {
		return nil, fmt.Errorf("flow receivers: %w", err)
	}
	// A large buffer, so that a receiver descheduled on a busy machine
	// does not turn into loss the data path did not cause (the socket's
	// overflows are counted apart anyway).
	_ = f.udpIn.SetReadBuffer(4 << 20)
	f.stopped.Add(2)
	go f.receive()
	go f.echo()
	if err := lab.In(ext, func() error {
		var err error
		if f.udpOut, err = net.DialUDP("udp4", nil, &net.UDPAddr{IP: net.ParseIP(host), Port: udpPort}); err != nil {
			return err
		}
		f.tcpOut, err = net.DialTimeout("tcp4", fmt.Sprintf("%s:%d", host, tcpPort), 3*time.Second)
		return err
	}); err != nil {
		return nil, fmt.Errorf("flow senders: %w", err)
	}
	f.stopped.Add(3)
	go f.send()
	go f.ping()
	go f.dialNew()
	deadline := time.Now().Add(5 * time.Second)
	for f.received() == 0 {
		if time.Now().After(deadline) {
			return nil, errors.New("no packet of the UDP flow arrived through the published port")
		}
		time.Sleep(10 * time.Millisecond)
	}
	return f, nil
}

// send sends sequence numbers at the rate, catching up after a stall.
func (f *scaleFlow) send() {
	defer f.stopped.Done()
	buf := make([]byte, 64)
	start := time.Now()
	for {
		select {
		case <-f.stop:
			return
		default:
		}
		due := uint64(time.Since(start).Seconds() * f.rate)
		for n := f.sent.Load(); n < due; n++ {
			binary.BigEndian.PutUint64(buf, n)
			// A connected UDP socket reports an ICMP error that came
			// back on the next send, which is then not sent: that
			// packet counts as lost, as it should.
			if _, err := f.udpOut.Write(buf); err != nil {
				f.sendErrs.Add(1)
			}
			f.sent.Store(n + 1)
		}
		time.Sleep(250 * time.Microsecond)
	}
}

func (f *scaleFlow) receive() {
	defer f.stopped.Done()
	buf := make([]byte, 2048)
	for {
		n, err := f.udpIn.Read(buf)
		if err != nil {
			return
		}
		if n < 8 {
			continue
		}
		seq := binary.BigEndian.Uint64(buf)
		f.mu.Lock()
		for uint64(len(f.got)) <= seq {
			f.got = append(f.got, false)
		}
		if f.got[seq] {
			f.dups++
		}
		f.got[seq] = true
		f.mu.Unlock()
	}
}

// echo answers the TCP connections' messages inside the endpoint. Each
// connection's goroutine ends when its client, in this process, closes it.
func (f *scaleFlow) echo() {
	defer f.stopped.Done()
	for {
		c, err := f.tcpLn.Accept()
		if err != nil {
			return
		}
		go func() {
			defer c.Close()
			_, _ = io.Copy(c, c)
		}()
	}
}

// dialNew opens a new TCP connection through the published port every
// 20 ms, exchanges one message and closes it.
func (f *scaleFlow) dialNew() {
	defer f.stopped.Done()
	t := time.NewTicker(20 * time.Millisecond)
	defer t.Stop()
	buf := make([]byte, 8)
	for {
		select {
		case <-f.stop:
			return
		case <-t.C:
		}
		var c net.Conn
		err := lab.In(f.ext, func() error {
			var err error
			c, err = net.DialTimeout("tcp4", fmt.Sprintf("%s:%d", f.host, f.tcpPort), time.Second)
			return err
		})
		if err == nil {
			_ = c.SetDeadline(time.Now().Add(time.Second))
			if _, err = c.Write(buf); err == nil {
				_, err = io.ReadFull(c, buf)
			}
			c.Close()
		}
		f.mu.Lock()
		if err != nil {
			f.newFailed++
			if f.newErr == nil {
				f.newErr = err
			}
		} else {
			f.newOK++
		}
		f.mu.Unlock()
	}
}

// newConns reports the new connections that worked and failed, and the
// first failure.
func (f *scaleFlow) newConns() (ok, failed int, first error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.newOK, f.newFailed, f.newErr
}

// ping sends 8 bytes every 5 ms over the TCP connection and waits for
// them back; the first error ends it.
func (f *scaleFlow) ping() {
	defer f.stopped.Done()
	buf := make([]byte, 8)
	t := time.NewTicker(5 * time.Millisecond)
	defer t.Stop()
	for {
		select {
		case <-f.stop:
			return
		case <-t.C:
		}
		t0 := time.Now()
		_ = f.tcpOut.SetDeadline(t0.Add(3 * time.Second))
		_, err := f.tcpOut.Write(buf)
		if err == nil {
			_, err = io.ReadFull(f.tcpOut, buf)
		}
		f.mu.Lock()
		if err != nil {
			f.tcpErr = err
		} else {
			f.tcpN++
			f.tcpMax = max(f.tcpMax, time.Since(t0))
		}
		f.mu.Unlock()
		if err != nil {
			return
		}
	}
}

func (f *scaleFlow) received() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	n := 0
	for _, g := range f.got {
		if g {
			n++
		}
	}
	return n
}

// seq is the next sequence number to be sent.
func (f *scaleFlow) seq() uint64 { return f.sent.Load() }

// finish stops the senders, lets the last packets land, and returns which
// sequence numbers in [from, to) never arrived.
func (f *scaleFlow) finish(from uint64) (lost []uint64, to uint64) {
	close(f.stop)
	time.Sleep(500 * time.Millisecond)
	to = f.sent.Load()
	f.mu.Lock()
	defer f.mu.Unlock()
	for s := from; s < to; s++ {
		if s >= uint64(len(f.got)) || !f.got[s] {
			lost = append(lost, s)
		}
	}
	return lost, to
}

// tcp reports the TCP connection's round trips and its error, if it broke.
func (f *scaleFlow) tcp() (n int, longest time.Duration, err error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.tcpN, f.tcpMax, f.tcpErr
}

// close closes every socket and waits for the goroutines.
func (f *scaleFlow) close() {
	select {
	case <-f.stop:
	default:
		close(f.stop)
	}
	if f.udpIn != nil {
		_ = f.udpIn.Close()
	}
	if f.udpOut != nil {
		_ = f.udpOut.Close()
	}
	if f.tcpLn != nil {
		_ = f.tcpLn.Close()
	}
	if f.tcpOut != nil {
		_ = f.tcpOut.Close()
	}
	f.stopped.Wait()
}

// scaleRcvbufErrors reads the UDP receive-buffer overflows of the namespace
// at path: loss at the receiving socket, not in the data path.
func scaleRcvbufErrors(path string) (int64, error) {
	var n int64
	err := lab.In(path, func() error {
		// thread-self: the namespace of this thread, which Do put there.
		b, err := os.ReadFile("/proc/thread-self/net/snmp")
		if err != nil {
			return err
		}
		n, err = scaleSnmpField(string(b), "Udp:", "RcvbufErrors")
		return err
	})
	return n, err
}

// scaleSnmpField reads one counter of /proc/net/snmp: the header line and the
// value line both start with proto.
func scaleSnmpField(snmp, proto, field string) (int64, error) {
	var names []string
	for _, line := range strings.Split(snmp, "\n") {
		f := strings.Fields(line)
		if len(f) == 0 || f[0] != proto {
			continue
		}
		if names == nil {
			names = f
			continue
		}
		for i, name := range names {
			if name == field && i < len(f) {
				return strconv.ParseInt(f[i], 10, 64)
			}
		}
		break
	}
	return 0, fmt.Errorf("no %s %s in snmp", proto, field)
}
