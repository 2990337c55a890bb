package server

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/hostnet/hostnet/api"
	"github.com/hostnet/hostnet/internal/testutil"
)

// testServer serves a stub API on a unix socket: GET /ok, and POST /echo,
// which answers its body.
type testServer struct {
	path string
	srv  *Server
}

func startTestServer(t *testing.T, opts Options) (*testServer, *testutil.SyncBuffer) {
	t.Helper()
	mux := http.NewServeMux()
	mux.HandleFunc("GET /ok", func(w http.ResponseWriter, r *http.Request) { reply(w, http.StatusOK, "ok") })
	mux.HandleFunc("POST /echo", func(w http.ResponseWriter, r *http.Request) {
		var v any
		if err := decode(w, r, "the document", &v); err != nil {
			replyError(w, err)
			return
		}
		reply(w, http.StatusCreated, v)
	})
	logs := &testutil.SyncBuffer{}
	log := slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelInfo}))
	s := newServer(mux, log, opts)
	dir := t.TempDir()
	path := filepath.Join(dir, "s.sock")
	l, err := Listen(path, 0o600, -1)
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- s.Serve(l) }()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := s.Shutdown(ctx); err != nil {
			t.Errorf("shutdown: %v", err)
		}
		if err := <-done; err != nil {
			t.Errorf("serve: %v", err)
		}
	})
	return &testServer{path: path, srv: s}, logs
}

func (ts *testServer) client() *http.Client {
	return &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, "unix", ts.path)
		},
	}}
}

func TestListenModeAndGroup(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("chown needs root")
	}
	path := filepath.Join(t.TempDir(), "s.sock")
	l, err := Listen(path, 0o660, 4242)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o660 {
		t.Errorf("mode %v, want 0660", fi.Mode().Perm())
	}
	if st, ok := statGid(fi); !ok || st != 4242 {
		t.Errorf("group %d, want 4242", st)
	}
}

// A socket whose path bind(2) takes is made even when the directory
// Listen makes it in first would be too deep for bind(2).
func TestListenNearTheLengthLimit(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, strings.Repeat("d", maxSocketPath-len(dir)-len("/s.sock")-1), "s.sock")
	if len(path) > maxSocketPath {
		t.Skipf("the temporary directory %s is too deep already", dir)
	}
	l, err := Listen(path, 0o600, -1)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	go func() {
		if c, err := l.Accept(); err == nil {
			c.Close()
		}
	}()
	c, err := net.Dial("unix", path)
	if err != nil {
		t.Fatalf("dial %s: %v", path, err)
	}
	c.Close()
	if fi, err := os.Stat(path); err != nil || fi.Mode().Perm() != 0o600 {
		t.Errorf("socket: %v %v", fi, err)
	}
	entries, _ := os.ReadDir(filepath.Dir(path))
	if len(entries) != 1 {
		t.Errorf("left in the directory: %v", entries)
	}
}

// Listen replaces a stale socket of its own user, and nothing else: a
// regular file, a directory or a live socket at the path is refused and
// left as it is.
func TestListenReplacesOnlyAStaleSocket(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "file")
	if err := os.WriteFile(file, []byte("precious"), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := Listen(file, 0o600, -1); err == nil || !strings.Contains(err.Error(), "not a socket") {
		t.Errorf("a regular file at the path: %v", err)
	}
	if b, _ := os.ReadFile(file); string(b) != "precious" {
		t.Errorf("the file was changed: %q", b)
	}
	sub := filepath.Join(dir, "dir")
	if err := os.Mkdir(sub, 0o755); err != nil {
		t.Fatal(err)
	}
	if _, err := Listen(sub, 0o600, -1); err == nil {
		t.Error("a directory at the path was replaced")
	}
	path := filepath.Join(dir, "s.sock")
	live, err := Listen(path, 0o600, -1)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := Listen(path, 0o600, -1); err == nil || !strings.Contains(err.Error(), "in use") {
		t.Errorf("a live socket at the path: %v", err)
	}
	live.Close() // stale now: the file stays, no one answers
	again, err := Listen(path, 0o600, -1)
	if err != nil {
		t.Fatalf("a stale socket at the path: %v", err)
	}
	defer again.Close()
	c, err := net.Dial("unix", path)
	if err != nil {
		t.Fatalf("the new socket does not answer: %v", err)
	}
	c.Close()
	if entries, _ := os.ReadDir(dir); len(entries) != 3 {
		t.Errorf("left in the directory: %v", entries)
	}
}

func statGid(fi os.FileInfo) (int, bool) {
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !ok {
		return 0, false
	}
	return int(st.Gid), true
}

func TestGuardRefusesCallersNotAdmitted(t *testing.T) {
	ran := false
	h := (&Server{log: slog.New(slog.DiscardHandler)}).guard(http.HandlerFunc(func(http.ResponseWriter, *http.Request) { ran = true }))
	for _, ci := range []*connInfo{nil, {peer: peer{known: true, pid: 1, uid: 65534, gid: 65534}}} {
		r := httptest.NewRequest(http.MethodPost, "/networks", strings.NewReader(`{}`))
		if ci != nil {
			r = r.WithContext(context.WithValue(r.Context(), connInfoKey{}, ci))
		}
		w := httptest.NewRecorder()
		h.ServeHTTP(w, r)
		var e api.ErrorResponse
		if err := json.Unmarshal(w.Body.Bytes(), &e); err != nil {
			t.Fatalf("answer %q: %v", w.Body, err)
		}
		if w.Code != http.StatusForbidden || e.Success || e.ErrorCode != CodeAccessDenied || e.Error == "" {
			t.Errorf("answer %d %+v, want 403 with E_ACCESSDENIED", w.Code, e)
		}
		if w.Header().Get("Connection") != "close" {
			t.Error("the connection is kept")
		}
	}
	if ran {
		t.Error("a request of a caller not admitted ran")
	}
}

func TestBodyLimit(t *testing.T) {
	ts, _ := startTestServer(t, Options{})
	c := ts.client()
	small := `{"Name":"x"}`
	resp, err := c.Post("http://x/echo", "application/json", strings.NewReader(small))
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusCreated || strings.TrimSpace(string(b)) != small {
		t.Errorf("small body: %d %s", resp.StatusCode, b)
	}
	big := `{"Name":"` + strings.Repeat("a", MaxBodyBytes) + `"}`
	for name, body := range map[string]io.Reader{
		"with a length": strings.NewReader(big),
		"chunked":       io.MultiReader(strings.NewReader(big)), // no length known: chunked
	} {
		resp, err := c.Post("http://x/echo", "application/json", body)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		var e api.ErrorResponse
		err = json.NewDecoder(resp.Body).Decode(&e)
		resp.Body.Close()
		if resp.StatusCode != http.StatusRequestEntityTooLarge || err != nil || e.Success || e.ErrorCode != api.CodeInvalidJSON {
			t.Errorf("%s: %d %+v %v, want 413", name, resp.StatusCode, e, err)
		}
	}
}

// TestHostileConnections holds more idle, silent and half-sent connections
// than the limit, and a drip, and checks that requests are still answered
// at once and the drip is cut off.
func TestHostileConnections(t *testing.T) {
	const max = 16
	ts, logs := startTestServer(t, Options{MaxConnections: max, Timeouts: Timeouts{ReadHeader: 500 * time.Millisecond, Read: time.Second}})
	c := ts.client()
	get := func() time.Duration {
		t.Helper()
		start := time.Now()
		resp, err := c.Get("http://x/ok")
		if err != nil {
			t.Fatal(err)
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("status %d", resp.StatusCode)
		}
		return time.Since(start)
	}
	get()
	var conns []net.Conn
	defer func() {
		for _, c := range conns {
			c.Close()
		}
	}()
	for i := range 3 * max {
		nc, err := net.Dial("unix", ts.path)
		if err != nil {
			t.Fatal(err)
		}
		conns = append(conns, nc)
		switch i % 3 {
		case 1:
			fmt.Fprint(nc, "GET /ok HTTP/1.1\r\nHost: x\r\n")
		case 2:
			fmt.Fprint(nc, "GET /ok HTTP/1.1\r\nHost: x\r\n\r\n")
			if _, err := http.ReadResponse(bufio.NewReader(nc), nil); err != nil {
				// Closed for a newer connection already: fine.
				continue
			}
		}
	}
	// A drip: one byte every 50ms, never the end of the headers.
	drip, err := net.Dial("unix", ts.path)
	if err != nil {
		t.Fatal(err)
	}
	defer drip.Close()
	dripped := make(chan time.Duration, 1)
	go func() {
		start := time.Now()
		line := "GET /ok HTTP/1.1\r\nHost: x\r\nX-Slow: " + strings.Repeat("a", 1000)
		for i := range len(line) {
			if _, err := drip.Write([]byte{line[i]}); err != nil {
				break
			}
			time.Sleep(50 * time.Millisecond)
		}
		dripped <- time.Since(start)
	}()
	for range 20 {
		if d := get(); d > 2*time.Second {
			t.Errorf("a request took %v", d)
		}
	}
	select {
	case d := <-dripped:
		t.Logf("the drip was cut off after %v", d)
	case <-time.After(5 * time.Second):
		t.Error("the drip was not cut off")
	}
	if n := ts.srv.openConnections(); n > max {
		t.Errorf("%d connections open, max %d", n, max)
	}
	if !strings.Contains(logs.String(), "connection limit reached") {
		t.Errorf("no warning of the limit in the log:\n%s", logs.String())
	}
}
