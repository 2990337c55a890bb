package e2e

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/hostnet/hostnet/api"
	"github.com/hostnet/hostnet/internal/server"
)

// hostilePeerEnv makes TestHostilePeer, in a copy of the test binary run
// under another uid, send one request and print what came back.
const hostilePeerEnv = "HOSTNET_E2E_HOSTILE_PEER"

// Hostile clients: 200 connections that hold a slot and do nothing (silent,
// half a request, kept alive), oversized bodies and a slowloris drip, while
// normal requests must be answered about as fast as before, and the
// daemon's memory must stay bounded.
func TestHostileClients(t *testing.T) {
	const (
		headerTimeout = 2 * time.Second
		holders       = 200
		maxConns      = 128
	)
	e := NewEnv(t, "--read-header-timeout", headerTimeout.String(), "--read-timeout", "4s",
		"--max-connections", strconv.Itoa(maxConns))
	pid := hostileDaemonPID(t, e)
	c := e.Client()
	ctx := context.Background()
	t.Cleanup(func() {
		if t.Failed() {
			// What the daemon took for the mutations, and what it warned of.
			b, _ := os.ReadFile(filepath.Join(e.Dir, "daemon.log"))
			var lines []string
			for line := range strings.Lines(string(b)) {
				if !strings.Contains(line, "method=GET") {
					lines = append(lines, line)
				}
			}
			t.Logf("the daemon's log, but reads:\n%s", strings.Join(lines, ""))
		}
	})

	// fresh sends one request on a connection of its own, as a CNI
	// plugin or the CLI does, and decodes the answer into out.
	fresh := &http.Client{Transport: &http.Transport{DisableKeepAlives: true,
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, "unix", e.Socket)
		}}}
	freshDo := func(method, path, body string, want int, out any) error {
		req, err := http.NewRequestWithContext(ctx, method, "http://hostnetd"+path, strings.NewReader(body))
		if err != nil {
			return err
		}
		resp, err := fresh.Do(req)
		if err != nil {
			return err
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		if resp.StatusCode != want {
			return fmt.Errorf("%s %s: %s: %s", method, path, resp.Status, b)
		}
		return json.Unmarshal(b, out)
	}

	// requests runs normal calls for d, and on until there are at least
	// 40 reads and 8 creates and deletes (or for 5s more on a starved
	// machine), and returns when each started and how long it took:
	// reads on a kept-alive connection and on new ones, creates on new
	// connections, deletes on a kept-alive one.
	seq := 0
	type samples struct{ reads, freshReads, creates, deletes []hostileSample }
	requests := func(d time.Duration) (m samples) {
		t.Helper()
		timed := func(to *[]hostileSample, what string, call func() error) {
			t.Helper()
			start := time.Now()
			if err := call(); err != nil {
				t.Fatalf("a normal %s failed: %v", what, err)
			}
			*to = append(*to, hostileSample{start, time.Since(start)})
		}
		end, hardEnd := time.Now().Add(d), time.Now().Add(d+5*time.Second)
		for time.Now().Before(end) || (len(m.reads) < 40 || len(m.creates) < 8) && time.Now().Before(hardEnd) {
			timed(&m.reads, "version", func() error { _, err := c.Version(ctx); return err })
			timed(&m.reads, "list", func() error { _, err := c.ListNetworks(ctx, nil); return err })
			timed(&m.freshReads, "version on a new connection", func() error {
				var v api.VersionInfo
				return freshDo(http.MethodGet, "/version", "", http.StatusOK, &v)
			})
			if len(m.freshReads)%5 == 0 {
				seq++
				var n api.Network
				timed(&m.creates, "create on a new connection", func() error {
					body := mustJSON(natNetwork(fmt.Sprintf("hostile%d", seq), fmt.Sprintf("10.77.%d.0/24", seq%250)))
					return freshDo(http.MethodPost, "/networks", body, http.StatusCreated, &n)
				})
				timed(&m.deletes, "delete", func() error { return c.DeleteNetwork(ctx, n.ID) })
			}
			time.Sleep(5 * time.Millisecond)
		}
		return m
	}

	// A loaded machine may stop running this test for seconds: that is
	// no measure of the daemon. The drips' bounds allow for it, and the
	// requests under way then are left out of the comparison.
	stalls := hostileStallMeter(t)

	// The baseline, with one drip on the quiet daemon: it is cut off by
	// the header timeout.
	// Warm up: the first network made costs more.
	if n, err := c.CreateNetwork(ctx, natNetwork("hostile-warmup", "10.76.0.0/24")); err != nil {
		t.Fatal(err)
	} else if err := c.DeleteNetwork(ctx, n.ID); err != nil {
		t.Fatal(err)
	}
	quietDrip := hostileDrip(e.Socket)
	baseline := requests(time.Second)
	rssBefore := hostileMemKB(t, pid, "VmRSS")
	if d := <-quietDrip; d.err != "" || d.after < headerTimeout-100*time.Millisecond || d.after > headerTimeout+3*time.Second+stalls.during(d.start, d.after) {
		t.Errorf("a drip on a quiet daemon: cut off after %v (%s), want about %v (this test stalled for %v meanwhile)",
			d.after, d.err, headerTimeout, stalls.during(d.start, d.after))
	} else {
		t.Logf("a drip on a quiet daemon was cut off after %v (%d bytes)", d.after.Round(time.Millisecond), d.sent)
	}

	// The attack.
	attack, stop := context.WithCancel(ctx)
	var wg sync.WaitGroup
	var st hostileStats
	for i := range holders {
		wg.Add(1)
		go func() { defer wg.Done(); hostileHold(attack, e.Socket, i%3, &st) }()
	}
	var rssMax atomic.Int64
	wg.Add(1)
	go func() {
		defer wg.Done()
		for attack.Err() == nil {
			if kb := hostileMemKB(t, pid, "VmRSS"); kb > rssMax.Load() {
				rssMax.Store(kb)
			}
			time.Sleep(50 * time.Millisecond)
		}
	}()
	defer func() { stop(); wg.Wait() }()
	for deadline := time.Now().Add(15 * time.Second); st.dials.Load() < holders; time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("only %d of %d connections were made", st.dials.Load(), holders)
		}
	}

	// Oversized bodies: refused with 413 and an HNS error, with a length
	// or streamed.
	hostileOversized(t, e.Socket, false)
	hostileOversized(t, e.Socket, true)

	busyDrip := hostileDrip(e.Socket)
	attacked := requests(2 * headerTimeout)
	d := <-busyDrip
	if d.err != "" || d.after > headerTimeout+3*time.Second+stalls.during(d.start, d.after) {
		t.Errorf("a drip under attack: cut off after %v (%s), want within %v (this test stalled for %v meanwhile)",
			d.after, d.err, headerTimeout, stalls.during(d.start, d.after))
	} else {
		t.Logf("a drip under attack was cut off after %v (%d bytes)", d.after.Round(time.Millisecond), d.sent)
	}
	stop()
	wg.Wait()
	hwm := hostileMemKB(t, pid, "VmHWM")

	// Normal requests were answered about as fast as before: the medians
	// compared (a baseline under 1ms counts as 1ms), and for reads the 90th
	// percentiles too. Mutations get no bound on their slowest: they wait
	// on the kernel (a bridge made or torn down), which a loaded machine
	// slows down by seconds with or without an attack.
	t.Logf("this test stalled for %v at most", stalls.worst().Round(time.Millisecond))
	for _, m := range []struct {
		what         string
		base, attack []hostileSample
	}{
		{"reads", baseline.reads, attacked.reads},
		{"reads on new connections", baseline.freshReads, attacked.freshReads},
		{"creates on new connections", baseline.creates, attacked.creates},
		{"deletes", baseline.deletes, attacked.deletes},
	} {
		base, under := stalls.keep(m.base), stalls.keep(m.attack)
		if len(base) < 5 || len(under) < 5 {
			t.Logf("%s: too few measured while this test ran (%d of %d before, %d of %d under attack): not compared",
				m.what, len(base), len(m.base), len(under), len(m.attack))
			continue
		}
		b, a := hostilePercentile(base, 50), hostilePercentile(under, 50)
		t.Logf("%s: median %v before (%d, p90 %v, worst %v), %v under attack (%d, p90 %v, worst %v): %.1fx",
			m.what, b.Round(time.Microsecond), len(base), hostilePercentile(base, 90).Round(time.Microsecond), slices.Max(base).Round(time.Microsecond),
			a.Round(time.Microsecond), len(under), hostilePercentile(under, 90).Round(time.Microsecond), slices.Max(under).Round(time.Microsecond),
			float64(a)/float64(b))
		if a > 20*max(b, time.Millisecond) {
			t.Errorf("%s: median %v under attack, more than 20x the %v before", m.what, a, b)
		}
		// A new connection that has to wait for a slot waits about the
		// header timeout: the 90th percentile of reads shows it.
		bp, ap := hostilePercentile(base, 90), hostilePercentile(under, 90)
		if bound := min(2*time.Second, 20*max(bp, 5*time.Millisecond)); strings.HasPrefix(m.what, "reads") && ap > bound {
			t.Errorf("%s under attack: 90th percentile %v, over %v (20x the %v before, at least 100ms, at most 2s)", m.what, ap, bound, bp)
		}
	}
	t.Logf("the attack: %d connections made, %d closed by the daemon, %d dials failed", st.dials.Load(), st.cut.Load(), st.dialErrs.Load())
	if st.cut.Load() < holders-maxConns {
		t.Errorf("only %d waiting connections were closed", st.cut.Load())
	}

	// Memory stayed bounded.
	growth := max(rssMax.Load(), hwm) - rssBefore
	t.Logf("daemon memory: VmRSS %d KiB before, at most %d KiB under attack, VmHWM %d KiB: growth %d KiB",
		rssBefore, rssMax.Load(), hwm, growth)
	if growth > 100<<10 {
		t.Errorf("the daemon's memory grew by %d MiB", growth>>10)
	}

	// Still answering, and it said what happened.
	if _, err := c.Version(ctx); err != nil {
		t.Fatalf("after the attack: %v", err)
	}
	log, _ := os.ReadFile(filepath.Join(e.Dir, "daemon.log"))
	if !strings.Contains(string(log), "connection limit reached") {
		t.Error("the daemon did not log that the connection limit was reached")
	}
	comm, _ := os.ReadFile("/proc/self/comm")
	mutation := regexp.MustCompile(fmt.Sprintf(`level=INFO msg=request method=POST path=/networks status=201 uid=0 pid=%d comm=%s `,
		os.Getpid(), regexp.QuoteMeta(strings.TrimSpace(string(comm)))))
	if !mutation.Match(log) {
		t.Errorf("no mutation logged with the caller's uid, pid and command; log:\n%s", e.LogTail(20))
	}
}

// hostileStats counts what the holders saw.
type hostileStats struct {
	dials, cut, dialErrs atomic.Int64
}

// hostileHold keeps a connection open doing nothing until ctx ends: kind 0
// sends nothing, kind 1 half a request, kind 2 a whole one, then keeps the
// connection alive. When the daemon closes it, it connects again.
func hostileHold(ctx context.Context, socket string, kind int, st *hostileStats) {
	pause := func() {
		select {
		case <-ctx.Done():
		case <-time.After(200*time.Millisecond + rand.N(100*time.Millisecond)):
		}
	}
	for ctx.Err() == nil {
		c, err := net.DialTimeout("unix", socket, 5*time.Second)
		if err != nil {
			st.dialErrs.Add(1)
			pause()
			continue
		}
		st.dials.Add(1)
		unhook := context.AfterFunc(ctx, func() { c.Close() })
		r := bufio.NewReader(c)
		switch kind {
		case 1:
			_, _ = io.WriteString(c, "GET /networks HTTP/1.1\r\nHost: hostnetd\r\n")
		case 2:
			if _, err := io.WriteString(c, "GET /version HTTP/1.1\r\nHost: hostnetd\r\n\r\n"); err == nil {
				if resp, err := http.ReadResponse(r, nil); err == nil {
					_, _ = io.Copy(io.Discard, resp.Body)
					resp.Body.Close()
				}
			}
		}
		_, _ = io.Copy(io.Discard, r) // until the daemon closes it
		unhook()
		c.Close()
		if ctx.Err() == nil {
			st.cut.Add(1)
		}
		pause()
	}
}

type hostileDripResult struct {
	start time.Time
	after time.Duration // from the dial to the daemon closing the connection
	sent  int
	err   string
}

// hostileDrip sends a request one byte every 100ms, never ending its
// headers, and reports when the daemon closes the connection.
func hostileDrip(socket string) <-chan hostileDripResult {
	ch := make(chan hostileDripResult, 1)
	go func() {
		// From before the connection: the daemon's header timeout starts
		// when it accepts it.
		start := time.Now()
		c, err := net.Dial("unix", socket)
		if err != nil {
			ch <- hostileDripResult{start: start, err: err.Error()}
			return
		}
		defer c.Close()
		closed := make(chan struct{})
		go func() {
			// An answer (408) or the end of the connection.
			_, _ = io.Copy(io.Discard, c)
			close(closed)
		}()
		line := "GET /networks HTTP/1.1\r\nHost: hostnetd\r\nX-Drip: " + strings.Repeat("a", 1000)
		for i := range len(line) {
			if _, err := c.Write([]byte{line[i]}); err != nil {
				ch <- hostileDripResult{start: start, after: time.Since(start), sent: i}
				return
			}
			select {
			case <-closed:
				ch <- hostileDripResult{start: start, after: time.Since(start), sent: i + 1}
				return
			case <-time.After(100 * time.Millisecond):
			}
		}
		ch <- hostileDripResult{start: start, after: time.Since(start), sent: len(line), err: "never cut off"}
	}()
	return ch
}

// hostileOversized posts a body of 2 MiB, with a length or chunked, and
// expects 413 with an HNS error.
func hostileOversized(t *testing.T, socket string, chunked bool) {
	t.Helper()
	c, err := net.DialTimeout("unix", socket, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(10 * time.Second))
	body := `{"Name":"` + strings.Repeat("a", 2<<20) + `"}`
	go func() {
		// The daemon may close before it has read it all: write errors are
		// expected.
		if chunked {
			_, _ = io.WriteString(c, "POST /networks HTTP/1.1\r\nHost: hostnetd\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n")
			for b := body; len(b) > 0; {
				n := min(len(b), 64<<10)
				if _, err := fmt.Fprintf(c, "%x\r\n%s\r\n", n, b[:n]); err != nil {
					return
				}
				b = b[n:]
			}
			_, _ = io.WriteString(c, "0\r\n\r\n")
			return
		}
		_, _ = fmt.Fprintf(c, "POST /networks HTTP/1.1\r\nHost: hostnetd\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n%s", len(body), body)
	}()
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		t.Fatalf("an oversized body (chunked %v): %v", chunked, err)
	}
	defer resp.Body.Close()
	var e api.ErrorResponse
	derr := json.NewDecoder(resp.Body).Decode(&e)
	if resp.StatusCode != http.StatusRequestEntityTooLarge || derr != nil || e.Success || e.ErrorCode != api.CodeInvalidJSON ||
		!strings.Contains(e.Error, "larger than") {
		t.Errorf("an oversized body (chunked %v): %s %+v %v, want 413 with an HNS error", chunked, resp.Status, e, derr)
	}
}

// hostileSample is one normal request: when it started, how long it took.
type hostileSample struct {
	start time.Time
	took  time.Duration
}

// hostileStalls are the spans in which this test process did not run: a
// goroutine that wakes every 10ms woke 50ms late or more.
type hostileStalls struct {
	mu    sync.Mutex
	spans [][2]time.Time
}

// hostileStallMeter records this process's stalls until the test ends.
func hostileStallMeter(t *testing.T) *hostileStalls {
	s := &hostileStalls{}
	done, stopped := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(stopped)
		tick := time.NewTicker(10 * time.Millisecond)
		defer tick.Stop()
		last := time.Now()
		for {
			select {
			case <-done:
				return
			case <-tick.C:
				now := time.Now()
				if now.Sub(last) >= 60*time.Millisecond {
					s.mu.Lock()
					s.spans = append(s.spans, [2]time.Time{last, now})
					s.mu.Unlock()
				}
				last = now
			}
		}
	}()
	t.Cleanup(func() { close(done); <-stopped })
	return s
}

// during returns how long this process stalled within d from start.
func (s *hostileStalls) during(start time.Time, d time.Duration) time.Duration {
	end := start.Add(d)
	s.mu.Lock()
	defer s.mu.Unlock()
	var sum time.Duration
	for _, sp := range s.spans {
		a, b := sp[0], sp[1]
		if a.Before(start) {
			a = start
		}
		if b.After(end) {
			b = end
		}
		if b.After(a) {
			sum += b.Sub(a)
		}
	}
	return sum
}

// worst returns the longest stall.
func (s *hostileStalls) worst() time.Duration {
	s.mu.Lock()
	defer s.mu.Unlock()
	var w time.Duration
	for _, sp := range s.spans {
		w = max(w, sp[1].Sub(sp[0]))
	}
	return w
}

// keep returns the latencies of the samples during which this process did
// not stall.
func (s *hostileStalls) keep(samples []hostileSample) []time.Duration {
	var out []time.Duration
	for _, x := range samples {
		if s.during(x.start, x.took) == 0 {
			out = append(out, x.took)
		}
	}
	return out
}

// hostilePercentile returns the p-th percentile of ds.
func hostilePercentile(ds []time.Duration, p int) time.Duration {
	s := slices.Clone(ds)
	slices.Sort(s)
	return s[min(len(s)-1, len(s)*p/100)]
}

// hostileDaemonPID returns the pid of hostnetd: nsenter execs it without a
// fork when it enters only a network namespace.
func hostileDaemonPID(t *testing.T, e *Env) int {
	t.Helper()
	pid := e.daemonPID()
	comm, err := os.ReadFile(fmt.Sprintf("/proc/%d/comm", pid))
	if err != nil || strings.TrimSpace(string(comm)) != "hostnetd" {
		t.Fatalf("pid %d is %q (%v), not hostnetd", pid, comm, err)
	}
	return pid
}

// hostileMemKB returns a field of /proc/PID/status in KiB (VmRSS, VmHWM).
func hostileMemKB(t *testing.T, pid int, field string) int64 {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		t.Errorf("daemon memory: %v", err)
		return 0
	}
	for line := range strings.Lines(string(b)) {
		if rest, ok := strings.CutPrefix(line, field+":"); ok {
			kb, err := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(rest), " kB"), 10, 64)
			if err != nil {
				t.Errorf("daemon memory: %q: %v", line, err)
			}
			return kb
		}
	}
	t.Errorf("daemon memory: no %s", field)
	return 0
}

// The socket admits root and the daemon's own uid only, unless a group is
// admitted too; its mode keeps others out, and a caller who gets in anyway
// (a socket made world-writable) is refused with 403 and E_ACCESSDENIED.
func TestSocketAdmission(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root")
	}
	pub := hostilePublicDir(t)
	const nobody, group = 65534, 4242
	as := func(gid uint32, groups ...uint32) *syscall.Credential {
		return &syscall.Credential{Uid: nobody, Gid: gid, Groups: groups}
	}
	ctx := context.Background()

	t.Run("NoGroup", func(t *testing.T) {
		e := NewTopology(t, "--socket-mode", "0666")
		e.Socket = filepath.Join(pub, "nogroup.sock")
		e.Start()
		hostileSocketMode(t, e.Socket, 0o666, 0)
		for _, cred := range []*syscall.Credential{as(nobody), as(group), as(nobody, group)} {
			r := hostilePeer(t, pub, e.Socket, cred, "GET", "/version", "")
			hostileDenied(t, r, cred)
		}
		body := mustJSON(natNetwork("intruder", "10.78.0.0/24"))
		hostileDenied(t, hostilePeer(t, pub, e.Socket, as(nobody), "POST", "/networks", body), as(nobody))
		if _, err := e.Client().GetNetwork(ctx, "intruder"); !api.IsNotFound(err) {
			t.Errorf("a refused caller's network: %v, want not found", err)
		}
		if _, err := e.Client().Version(ctx); err != nil {
			t.Errorf("root: %v", err)
		}
		if !strings.Contains(e.LogTail(100), fmt.Sprintf("msg=\"request refused: caller not admitted\" method=POST path=/networks status=403 uid=%d", nobody)) {
			t.Errorf("the refusal was not logged:\n%s", e.LogTail(20))
		}
	})

	t.Run("Group", func(t *testing.T) {
		e := NewTopology(t, "--socket-group", strconv.Itoa(group))
		e.Socket = filepath.Join(pub, "group.sock")
		e.Start()
		hostileSocketMode(t, e.Socket, 0o660, group)
		for _, cred := range []*syscall.Credential{as(group), as(nobody, 100, group)} {
			r := hostilePeer(t, pub, e.Socket, cred, "GET", "/version", "")
			if r.Status != http.StatusOK {
				t.Errorf("a member (gid %d, groups %v): %+v, want 200", cred.Gid, cred.Groups, r)
			}
		}
		// A member's mutation is logged with its uid, pid and command.
		r := hostilePeer(t, pub, e.Socket, as(nobody, group), "POST", "/networks", mustJSON(natNetwork("member", "10.79.0.0/24")))
		if r.Status != http.StatusCreated {
			t.Fatalf("a member's create: %+v", r)
		}
		want := fmt.Sprintf("msg=request method=POST path=/networks status=201 uid=%d pid=%d comm=hostile-peer ", nobody, r.PID)
		if !strings.Contains(e.LogTail(100), want) {
			t.Errorf("the log has no %q:\n%s", want, e.LogTail(20))
		}
		if err := e.Client().DeleteNetwork(ctx, "member"); err != nil {
			t.Error(err)
		}
		// Others cannot even connect.
		if r := hostilePeer(t, pub, e.Socket, as(nobody), "GET", "/version", ""); !strings.Contains(r.DialError, "permission denied") {
			t.Errorf("a non-member: %+v, want the socket to refuse the connection", r)
		}
		// Nor use it if they could.
		if err := os.Chmod(e.Socket, 0o666); err != nil {
			t.Fatal(err)
		}
		hostileDenied(t, hostilePeer(t, pub, e.Socket, as(nobody), "GET", "/version", ""), as(nobody))
	})
}

// hostilePublicDir makes a directory everyone can reach, holding a link to
// the test binary (named hostile-peer) for hostilePeer.
func hostilePublicDir(t *testing.T) string {
	t.Helper()
	dir, err := os.MkdirTemp("", "hnt-peer-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	for p := filepath.Dir(dir); ; p = filepath.Dir(p) {
		if fi, err := os.Stat(p); err != nil || fi.Mode().Perm()&0o001 == 0 {
			t.Skipf("%s cannot be reached by other users", p)
		}
		if p == "/" {
			break
		}
	}
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	bin := filepath.Join(dir, "hostile-peer")
	if err := os.Link(self, bin); err != nil {
		// Another file system: copy it.
		b, err := os.ReadFile(self)
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(bin, b, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

func hostileSocketMode(t *testing.T, path string, mode os.FileMode, gid int) {
	t.Helper()
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	st := fi.Sys().(*syscall.Stat_t)
	if fi.Mode().Perm() != mode || int(st.Gid) != gid {
		t.Errorf("socket mode %04o group %d, want %04o group %d", fi.Mode().Perm(), st.Gid, mode, gid)
	}
}

// hostilePeerRequest is what hostilePeer asks of TestHostilePeer, and
// hostilePeerResult what it answers.
type hostilePeerRequest struct {
	Socket, Method, Path, Body string
}

type hostilePeerResult struct {
	PID       int
	DialError string
	Status    int
	Body      string
}

// hostilePeer sends one request to the daemon from a process with the
// given credentials: the test binary, run as TestHostilePeer.
func hostilePeer(t *testing.T, dir, socket string, cred *syscall.Credential, method, path, body string) hostilePeerResult {
	t.Helper()
	cmd := exec.Command(filepath.Join(dir, "hostile-peer"), "-test.run=^TestHostilePeer$")
	cmd.Dir = dir
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "TMPDIR=") && !strings.HasPrefix(kv, hostilePeerEnv+"=") {
			cmd.Env = append(cmd.Env, kv)
		}
	}
	cmd.Env = append(cmd.Env, "TMPDIR=/tmp", hostilePeerEnv+"="+mustJSON(hostilePeerRequest{socket, method, path, body}))
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: cred}
	out, err := cmd.Output()
	var exit *exec.ExitError
	if errors.As(err, &exit) {
		t.Fatalf("the peer (uid %d gid %d): %v\n%s%s", cred.Uid, cred.Gid, err, out, exit.Stderr)
	} else if err != nil {
		t.Fatal(err)
	}
	for line := range strings.Lines(string(out)) {
		if rest, ok := strings.CutPrefix(line, "hostile-peer: "); ok {
			var r hostilePeerResult
			if err := json.Unmarshal([]byte(rest), &r); err != nil {
				t.Fatal(err)
			}
			return r
		}
	}
	t.Fatalf("the peer printed no result:\n%s", out)
	return hostilePeerResult{}
}

func hostileDenied(t *testing.T, r hostilePeerResult, cred *syscall.Credential) {
	t.Helper()
	var e api.ErrorResponse
	err := json.Unmarshal([]byte(r.Body), &e)
	if r.Status != http.StatusForbidden || err != nil || e.Success || e.ErrorCode != server.CodeAccessDenied || !strings.Contains(e.Error, "access denied") {
		t.Errorf("uid %d gid %d groups %v: %+v, want 403 with E_ACCESSDENIED", cred.Uid, cred.Gid, cred.Groups, r)
	}
}

// TestHostilePeer is no test of its own: TestSocketAdmission runs the test
// binary as another user to send one request from there.
func TestHostilePeer(t *testing.T) {
	spec := os.Getenv(hostilePeerEnv)
	if spec == "" {
		t.Skip("run by TestSocketAdmission only")
	}
	var req hostilePeerRequest
	if err := json.Unmarshal([]byte(spec), &req); err != nil {
		t.Fatal(err)
	}
	res := hostilePeerResult{PID: os.Getpid()}
	defer func() { fmt.Printf("hostile-peer: %s\n", mustJSON(res)) }()
	c, err := net.DialTimeout("unix", req.Socket, 5*time.Second)
	if err != nil {
		res.DialError = err.Error()
		return
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(10 * time.Second))
	fmt.Fprintf(c, "%s %s HTTP/1.1\r\nHost: hostnetd\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n%s",
		req.Method, req.Path, len(req.Body), req.Body)
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		res.DialError = "read: " + err.Error()
		return
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	res.Status, res.Body = resp.StatusCode, string(b)
}
