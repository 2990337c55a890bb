// Package server serves hostnet's REST API over a unix socket: routing,
// request decoding with size limits, peer credentials, and the mapping of
// errors onto HTTP statuses and HNS error codes.
//
// Routes (bodies and answers are HCN v2 JSON documents):
//
//	GET    /version
//	GET    /networks[?filter=<HNS filter JSON>]     POST /networks
//	GET    /networks/{ref}   PATCH /networks/{ref}   DELETE /networks/{ref}
//	GET    /endpoints[?filter=...]                  POST /endpoints
//	GET    /endpoints/{ref}  PATCH /endpoints/{ref}  DELETE /endpoints/{ref}
//	GET    /namespaces[?filter=...]                 POST /namespaces
//	GET    /namespaces/{ref} PATCH /namespaces/{ref} DELETE /namespaces/{ref}
//	GET    /routes[?filter=...]                     POST /routes
//	GET    /routes/{ID}                             DELETE /routes/{ID}
//	GET    /check     how the kernel differs from the intent (hostnet doctor)
//	GET    /events    recent events: what clients changed, what the daemon did
//	                  on its own; ?type=&action=&object=&since= filter them,
//	                  ?follow=1 streams them as newline-delimited JSON
//	GET    /setaside  records a start could not read, set aside
//	GET    /setaside/{id}  one, with its raw bytes; DELETE drops it
//	POST   /prune     remove the kernel objects no record wants, kept after
//	                  a restore from backup or while records are set aside
//
// {ref} is an ID or a name. PATCH takes an HNS modify request. A failed
// call answers {"Success":false,"Error":"...","ErrorCode":N}.
//
// Hostile or broken clients: only admitted callers are served (see admit);
// a request body is at most MaxBodyBytes (413 beyond), read in full before
// the request runs; every read and write has a deadline (see Timeouts);
// and at most Options.MaxConnections connections are open at once, where
// connections that wait on their clients make room for new ones (see
// limitListener). Every mutation is logged with the caller's uid, pid and
// command.
package server

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/hostnet/hostnet/api"
	"github.com/hostnet/hostnet/internal/service"
)

// MaxBodyBytes bounds a request body.
const MaxBodyBytes = 1 << 20

// Timeouts bound how long a connection may take over each part of an
// exchange; a zero field takes its default.
type Timeouts struct {
	// ReadHeader bounds reading a request's headers, from the
	// connection's start or from the first byte of a request on a
	// kept-alive connection. It ends a slowloris drip (a few bytes at a
	// time, never the end of the headers): the connection is closed
	// without an answer. Default 5s.
	ReadHeader time.Duration
	// Read bounds reading a whole request, headers and body, from the
	// same start. Default 15s. (It also ends the context of a request
	// still running when it expires: its kernel work stops, and its
	// intent is rolled back.)
	Read time.Duration
	// Write bounds carrying out a request and writing its answer, from the
	// end of its headers. Default 60s.
	Write time.Duration
	// Idle bounds how long a kept-alive connection waits for its next
	// request. Default 2m; under the connection limit waiting connections
	// are closed sooner, oldest first.
	Idle time.Duration
}

// The defaults of Timeouts and Options.MaxConnections.
const (
	DefaultReadHeaderTimeout = 5 * time.Second
	DefaultReadTimeout       = 15 * time.Second
	DefaultWriteTimeout      = 60 * time.Second
	DefaultIdleTimeout       = 2 * time.Minute
	DefaultMaxConnections    = 128
)

// Options tunes the server; a zero field takes its default.
type Options struct {
	Timeouts
	// MaxConnections bounds the connections open at once (see
	// limitListener).
	MaxConnections int
	// Groups are admitted besides uid 0 and the daemon's own uid: callers
	// whose primary or a supplementary group is one of them.
	Groups []int
	// AfterMutation, if set, is called after each request that may have
	// changed something (any method but GET and HEAD) was answered.
	AfterMutation func()
	// ObserveRequest, if set, is called after each request was answered
	// (a followed event stream aside), with its route pattern (e.g.
	// "/networks/{ref}", "other" when none matched), the status answered,
	// and how long it took: the metrics of the API.
	ObserveRequest func(method, route string, status int, took time.Duration)
}

func (o Options) withDefaults() Options {
	def := func(d *time.Duration, v time.Duration) {
		if *d <= 0 {
			*d = v
		}
	}
	def(&o.ReadHeader, DefaultReadHeaderTimeout)
	def(&o.Read, DefaultReadTimeout)
	def(&o.Write, DefaultWriteTimeout)
	def(&o.Idle, DefaultIdleTimeout)
	if o.MaxConnections <= 0 {
		o.MaxConnections = DefaultMaxConnections
	}
	return o
}

// Server is the API server.
type Server struct {
	svc     *service.Service
	log     *slog.Logger
	opts    Options
	selfUID int
	http    *http.Server
	limit   atomic.Pointer[limitListener]
	// shutdown is closed when Shutdown begins: event streams end.
	shutdown chan struct{}
}

// New returns a server for svc.
func New(svc *service.Service, log *slog.Logger, opts Options) *Server {
	mux := http.NewServeMux()
	s := newServer(mux, log, opts)
	s.svc = svc
	mux.HandleFunc("GET /version", func(w http.ResponseWriter, r *http.Request) { reply(w, http.StatusOK, svc.Version()) })

	mux.HandleFunc("GET /networks", s.list(func(ctx context.Context, f string) (any, error) { return svc.ListNetworks(ctx, f) }))
	mux.HandleFunc("POST /networks", create(s, func(ctx context.Context, n api.Network) (any, error) { return svc.CreateNetwork(ctx, n) }))
	mux.HandleFunc("GET /networks/{ref}", s.get(func(ctx context.Context, ref string) (any, error) { return svc.GetNetwork(ctx, ref) }))
	mux.HandleFunc("PATCH /networks/{ref}", s.modify(func(ctx context.Context, ref string, m api.ModifyRequest) (any, error) {
		return svc.ModifyNetwork(ctx, ref, m)
	}))
	mux.HandleFunc("DELETE /networks/{ref}", s.delete(func(ctx context.Context, ref string) (any, error) { return svc.GetNetwork(ctx, ref) }, svc.DeleteNetwork))

	mux.HandleFunc("GET /endpoints", s.list(func(ctx context.Context, f string) (any, error) { return svc.ListEndpoints(ctx, f) }))
	mux.HandleFunc("POST /endpoints", create(s, func(ctx context.Context, e api.Endpoint) (any, error) { return svc.CreateEndpoint(ctx, e) }))
	mux.HandleFunc("GET /endpoints/{ref}", s.get(func(ctx context.Context, ref string) (any, error) { return svc.GetEndpoint(ctx, ref) }))
	mux.HandleFunc("PATCH /endpoints/{ref}", s.modify(func(ctx context.Context, ref string, m api.ModifyRequest) (any, error) {
		return svc.ModifyEndpoint(ctx, ref, m)
	}))
	mux.HandleFunc("DELETE /endpoints/{ref}", s.delete(func(ctx context.Context, ref string) (any, error) { return svc.GetEndpoint(ctx, ref) }, svc.DeleteEndpoint))

	mux.HandleFunc("GET /namespaces", s.list(func(ctx context.Context, f string) (any, error) { return svc.ListNamespaces(ctx, f) }))
	mux.HandleFunc("POST /namespaces", create(s, func(ctx context.Context, n api.Namespace) (any, error) { return svc.CreateNamespace(ctx, n) }))
	mux.HandleFunc("GET /namespaces/{ref}", s.get(func(ctx context.Context, ref string) (any, error) { return svc.GetNamespace(ctx, ref) }))
	mux.HandleFunc("PATCH /namespaces/{ref}", s.modify(func(ctx context.Context, ref string, m api.ModifyRequest) (any, error) {
		return svc.ModifyNamespace(ctx, ref, m)
	}))
	mux.HandleFunc("DELETE /namespaces/{ref}", s.delete(func(ctx context.Context, ref string) (any, error) { return svc.GetNamespace(ctx, ref) }, svc.DeleteNamespace))

	mux.HandleFunc("GET /routes", s.list(func(ctx context.Context, f string) (any, error) { return svc.ListRoutes(ctx, f) }))
	mux.HandleFunc("POST /routes", create(s, func(ctx context.Context, r api.HostComputeRoute) (any, error) { return svc.CreateRoute(ctx, r) }))
	mux.HandleFunc("GET /routes/{ref}", s.get(func(ctx context.Context, ref string) (any, error) { return svc.GetRoute(ctx, ref) }))
	mux.HandleFunc("DELETE /routes/{ref}", s.delete(func(ctx context.Context, ref string) (any, error) { return svc.GetRoute(ctx, ref) }, svc.DeleteRoute))

	mux.HandleFunc("GET /check", func(w http.ResponseWriter, r *http.Request) {
		rep, err := svc.Check(s.ctx(r))
		if err != nil {
			replyError(w, err)
			return
		}
		reply(w, http.StatusOK, rep)
	})
	mux.HandleFunc("GET /events", s.events)
	mux.HandleFunc("GET /setaside", s.list(func(ctx context.Context, _ string) (any, error) { return svc.ListSetAside(ctx) }))
	// A set-aside record's ID is "<bucket>/<key>": the pattern takes the
	// rest of the path.
	mux.HandleFunc("GET /setaside/{ref...}", s.get(func(ctx context.Context, ref string) (any, error) { return svc.GetSetAside(ctx, ref) }))
	mux.HandleFunc("DELETE /setaside/{ref...}", s.get(func(ctx context.Context, ref string) (any, error) { return svc.DropSetAside(ctx, ref) }))
	mux.HandleFunc("POST /prune", func(w http.ResponseWriter, r *http.Request) {
		rep, err := svc.Prune(s.ctx(r))
		if err != nil {
			replyError(w, err)
			return
		}
		reply(w, http.StatusOK, rep)
	})

	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		replyError(w, &api.Error{Code: api.CodeRequestUnsupported, Status: http.StatusNotFound,
			Message: fmt.Sprintf("no API route %s %s", r.Method, r.URL.Path)})
	})
	return s
}

// newServer returns a server of the routes in h, behind the admission
// check, the body limit and the log.
func newServer(h http.Handler, log *slog.Logger, opts Options) *Server {
	s := &Server{log: log, opts: opts.withDefaults(), selfUID: os.Geteuid(), shutdown: make(chan struct{})}
	s.http = &http.Server{
		Handler:           s.logged(s.guard(h)),
		ReadHeaderTimeout: s.opts.ReadHeader,
		ReadTimeout:       s.opts.Read,
		WriteTimeout:      s.opts.Write,
		IdleTimeout:       s.opts.Idle,
		MaxHeaderBytes:    64 << 10,
		ConnContext:       s.connContext,
		ConnState: func(c net.Conn, st http.ConnState) {
			if lc, ok := c.(*limitConn); ok {
				lc.setState(st)
			}
		},
		ErrorLog: slog.NewLogLogger(log.Handler(), slog.LevelWarn),
	}
	s.http.RegisterOnShutdown(func() { close(s.shutdown) })
	return s
}

// Listen opens the unix socket at path with the given mode, and group
// gid unless it is negative. What is at path already is replaced only
// when it is a stale socket of this user's that no daemon answers on:
// anything else (a file, a directory, a live socket, another user's
// socket) is refused, and left as it is.
//
// The socket is made in a directory of its own that only this user can
// enter, given its mode and group there, then renamed into place: it is
// never reachable with looser permissions, and the process's umask (which
// every thread shares) is not touched.
func Listen(path string, mode os.FileMode, gid int) (net.Listener, error) {
	dir := filepath.Dir(path)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("create socket directory: %w", err)
	}
	if err := removeStale(path); err != nil {
		return nil, err
	}
	tmp, err := os.MkdirTemp(dir, ".hostnetd-socket-")
	if err != nil {
		return nil, fmt.Errorf("make the socket: %w", err)
	}
	defer os.RemoveAll(tmp)
	made := filepath.Join(tmp, "s")
	l, err := listenUnix(tmp, "s")
	if err != nil {
		return nil, fmt.Errorf("listen on %s: %w", path, err)
	}
	l.(*net.UnixListener).SetUnlinkOnClose(false)
	fail := func(format string, args ...any) (net.Listener, error) {
		l.Close()
		return nil, fmt.Errorf(format, args...)
	}
	if gid >= 0 {
		if err := os.Lchown(made, -1, gid); err != nil {
			return fail("chown %s to group %d: %w", path, gid, err)
		}
	}
	if err := os.Chmod(made, mode); err != nil {
		return fail("chmod %s: %w", path, err)
	}
	if err := os.Rename(made, path); err != nil {
		return fail("put the socket at %s: %w", path, err)
	}
	return l, nil
}

// maxSocketPath is the longest path bind(2) takes for a unix socket
// (sun_path, less its terminating NUL).
const maxSocketPath = 107

// listenUnix listens on a unix socket named name in dir. A path too long
// for bind(2) is reached through the directory's descriptor in
// /proc/self/fd, which is short whatever the directory's depth.
func listenUnix(dir, name string) (net.Listener, error) {
	path := filepath.Join(dir, name)
	if len(path) <= maxSocketPath {
		return net.Listen("unix", path)
	}
	d, err := os.Open(dir)
	if err != nil {
		return nil, err
	}
	defer d.Close()
	return net.Listen("unix", fmt.Sprintf("/proc/self/fd/%d/%s", d.Fd(), name))
}

// removeStale removes a stale socket of this user's at path; anything
// else at path is an error.
func removeStale(path string) error {
	st, err := os.Lstat(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("socket %s: %w", path, err)
	}
	if st.Mode()&os.ModeSocket == 0 {
		return fmt.Errorf("%s exists and is not a socket (%s): hostnetd will not replace it", path, st.Mode().Type())
	}
	if sys, ok := st.Sys().(*syscall.Stat_t); ok && int(sys.Uid) != os.Geteuid() {
		return fmt.Errorf("%s is a socket of uid %d, not of hostnetd's user: hostnetd will not replace it", path, sys.Uid)
	}
	if c, err := net.DialTimeout("unix", path, time.Second); err == nil {
		c.Close()
		return fmt.Errorf("socket %s is in use: is another hostnetd running?", path)
	}
	if err := os.Remove(path); err != nil {
		return fmt.Errorf("remove stale socket %s: %w", path, err)
	}
	return nil
}

// Serve serves on l until Shutdown, with at most MaxConnections
// connections open at once.
func (s *Server) Serve(l net.Listener) error {
	ll := newLimitListener(l, s.opts.MaxConnections, s.log)
	s.limit.Store(ll)
	err := s.http.Serve(ll)
	if errors.Is(err, http.ErrServerClosed) {
		return nil
	}
	return err
}

// openConnections returns the number of connections open.
func (s *Server) openConnections() int {
	if ll := s.limit.Load(); ll != nil {
		return ll.open()
	}
	return 0
}

// Shutdown stops accepting requests and waits for those under way.
func (s *Server) Shutdown(ctx context.Context) error { return s.http.Shutdown(ctx) }

type statusWriter struct {
	http.ResponseWriter
	status int
}

func (w *statusWriter) WriteHeader(code int) {
	w.status = code
	w.ResponseWriter.WriteHeader(code)
}

// Unwrap gives http.ResponseController the connection's writer: an event
// stream flushes and lifts its deadlines through it.
func (w *statusWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

// logged logs every mutation at info with the caller's uid, pid and
// command, a refused caller at warn, and reads at debug.
func (s *Server) logged(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		sw := &statusWriter{ResponseWriter: w, status: http.StatusOK}
		h.ServeHTTP(sw, r)
		mutation := r.Method != http.MethodGet && r.Method != http.MethodHead
		if mutation && s.opts.AfterMutation != nil {
			s.opts.AfterMutation()
		}
		if s.opts.ObserveRequest != nil && !isTrue(r.URL.Query().Get("follow")) {
			route := r.Pattern
			if _, path, ok := strings.Cut(route, " "); ok {
				route = path
			}
			if route == "" || route == "/" {
				route = "other"
			}
			s.opts.ObserveRequest(r.Method, route, sw.status, time.Since(start))
		}
		ci := infoOf(r)
		if ci == nil {
			ci = &connInfo{peer: peer{pid: -1, uid: -1, gid: -1}}
		}
		level, msg := slog.LevelInfo, "request"
		switch {
		case !ci.admitted:
			level, msg = slog.LevelWarn, "request refused: caller not admitted"
		case !mutation:
			level = slog.LevelDebug
		}
		if !s.log.Enabled(r.Context(), level) {
			return
		}
		attrs := []slog.Attr{slog.String("method", r.Method), slog.String("path", r.URL.Path), slog.Int("status", sw.status),
			slog.Int("uid", ci.peer.uid), slog.Int("pid", ci.peer.pid)}
		if level >= slog.LevelInfo {
			attrs = append(attrs, slog.String("comm", ci.command()))
		}
		if !ci.admitted {
			attrs = append(attrs, slog.Int("gid", ci.peer.gid))
		}
		attrs = append(attrs, slog.Duration("duration", time.Since(start)))
		s.log.LogAttrs(r.Context(), level, msg, attrs...)
	})
}

// guard answers 403 to a caller that is not admitted, reads the body in
// full (413 beyond MaxBodyBytes), and marks the connection busy before the
// request runs.
func (s *Server) guard(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ci := infoOf(r)
		if ci == nil || !ci.admitted {
			w.Header().Set("Connection", "close")
			msg := "access denied: the caller's credentials are unknown"
			if ci != nil && ci.peer.known {
				who := "root and the daemon's own user are"
				if len(s.opts.Groups) > 0 {
					who = fmt.Sprintf("root, the daemon's own user and the members of group %s are",
						strings.Trim(fmt.Sprint(s.opts.Groups), "[]"))
				}
				msg = fmt.Sprintf("access denied: uid %d (gid %d) is not admitted to hostnetd's API; %s", ci.peer.uid, ci.peer.gid, who)
			}
			replyError(w, &api.Error{Code: CodeAccessDenied, Status: http.StatusForbidden, Message: msg})
			return
		}
		if err := readBody(w, r); err != nil {
			w.Header().Set("Connection", "close")
			replyError(w, err)
			return
		}
		if ci.conn != nil && !ci.conn.startRequest() {
			// Closed for a newer connection before it ran: run nothing.
			// (The answer goes nowhere; the log shows it.)
			replyError(w, &api.Error{Code: api.CodeResourceInUse, Status: http.StatusServiceUnavailable,
				Message: "connection closed for a newer one at the connection limit"})
			return
		}
		h.ServeHTTP(w, r)
	})
}

// readBody reads the request's body in full, so that a slow client cannot
// hold a running request, and so that a connection still reading one
// counts as waiting for its client.
func readBody(w http.ResponseWriter, r *http.Request) error {
	if r.Body == nil || r.Body == http.NoBody {
		return nil
	}
	tooLarge := &api.Error{Code: api.CodeInvalidJSON, Status: http.StatusRequestEntityTooLarge,
		Message: fmt.Sprintf("request body is larger than %d bytes", MaxBodyBytes)}
	if r.ContentLength > MaxBodyBytes {
		return tooLarge
	}
	body := http.MaxBytesReader(w, r.Body, MaxBodyBytes)
	var buf []byte
	var err error
	if r.ContentLength > 0 {
		buf = make([]byte, r.ContentLength)
		_, err = io.ReadFull(body, buf)
	} else {
		buf, err = io.ReadAll(body)
	}
	if err != nil {
		var tooBig *http.MaxBytesError
		if errors.As(err, &tooBig) {
			return tooLarge
		}
		status := http.StatusBadRequest
		var ne net.Error
		if errors.As(err, &ne) && ne.Timeout() {
			status = http.StatusRequestTimeout
		}
		return &api.Error{Code: api.CodeInvalidJSON, Status: status, Message: "read the request body: " + err.Error()}
	}
	r.Body = io.NopCloser(bytes.NewReader(buf))
	return nil
}

func reply(w http.ResponseWriter, status int, v any) {
	b, err := json.Marshal(v)
	if err != nil {
		replyError(w, api.InternalError(err, "encode answer"))
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_, _ = w.Write(append(b, '\n'))
}

func replyError(w http.ResponseWriter, err error) {
	e := api.AsError(err)
	b, _ := json.Marshal(api.ErrorResponse{Success: false, Error: e.Error(), ErrorCode: e.Code})
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(e.Status)
	_, _ = w.Write(append(b, '\n'))
}

// decode reads a JSON body into v.
func decode(w http.ResponseWriter, r *http.Request, what string, v any) error {
	body := http.MaxBytesReader(w, r.Body, MaxBodyBytes)
	dec := json.NewDecoder(body)
	if err := dec.Decode(v); err != nil {
		var tooBig *http.MaxBytesError
		if errors.As(err, &tooBig) {
			return &api.Error{Code: api.CodeInvalidJSON, Status: http.StatusRequestEntityTooLarge,
				Message: fmt.Sprintf("%s: request body is larger than %d bytes", what, MaxBodyBytes)}
		}
		return api.Invalid(api.CodeInvalidJSON, "invalid JSON in %s: %v", what, err)
	}
	if dec.More() {
		return api.Invalid(api.CodeInvalidJSON, "invalid JSON in %s: more than one document", what)
	}
	return nil
}

// ctx is a request's context, with its caller for the service.
func (s *Server) ctx(r *http.Request) context.Context {
	ctx := r.Context()
	if ci := infoOf(r); ci != nil && ci.peer.known {
		ctx = service.WithCaller(ctx, service.Caller{UID: ci.peer.uid, GID: ci.peer.gid, PID: ci.peer.pid})
	}
	return ctx
}

func (s *Server) list(fn func(ctx context.Context, filter string) (any, error)) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		out, err := fn(s.ctx(r), r.URL.Query().Get("filter"))
		if err != nil {
			replyError(w, err)
			return
		}
		reply(w, http.StatusOK, out)
	}
}

func create[T any](s *Server, fn func(context.Context, T) (any, error)) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		var doc T
		if err := decode(w, r, "the document", &doc); err != nil {
			replyError(w, err)
			return
		}
		out, err := fn(s.ctx(r), doc)
		if err != nil {
			replyError(w, err)
			return
		}
		s.created(out)
		reply(w, http.StatusCreated, out)
	}
}

func (s *Server) get(fn func(ctx context.Context, ref string) (any, error)) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		out, err := fn(s.ctx(r), r.PathValue("ref"))
		if err != nil {
			replyError(w, err)
			return
		}
		reply(w, http.StatusOK, out)
	}
}

func (s *Server) modify(fn func(ctx context.Context, ref string, m api.ModifyRequest) (any, error)) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		var m api.ModifyRequest
		if err := decode(w, r, "the modify request", &m); err != nil {
			replyError(w, err)
			return
		}
		out, err := fn(s.ctx(r), r.PathValue("ref"), m)
		if err != nil {
			replyError(w, err)
			return
		}
		s.modified(s.ctx(r), m, out)
		reply(w, http.StatusOK, out)
	}
}

// delete answers a delete; get finds the object first, for the event.
func (s *Server) delete(get resolver, fn func(ctx context.Context, ref string) error) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		ref := r.PathValue("ref")
		before, _ := get(s.ctx(r), ref)
		if err := fn(s.ctx(r), ref); err != nil {
			replyError(w, err)
			return
		}
		if typ, id, name, ok := objectOf(before); ok {
			s.deleted(typ, id, name)
		}
		reply(w, http.StatusOK, map[string]bool{"Success": true})
	}
}
