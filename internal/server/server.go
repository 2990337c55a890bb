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
//
// {ref} is an ID or a name. PATCH takes an HNS modify request. A failed
// call answers {"Success":false,"Error":"...","ErrorCode":N}.
package server

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"time"

	"github.com/hostnet/hostnet/api"
	"github.com/hostnet/hostnet/internal/service"
	"golang.org/x/sys/unix"
)

// MaxBodyBytes bounds a request body.
const MaxBodyBytes = 1 << 20

// Server is the API server.
type Server struct {
	svc  *service.Service
	log  *slog.Logger
	http *http.Server
}

// New returns a server for svc.
func New(svc *service.Service, log *slog.Logger) *Server {
	s := &Server{svc: svc, log: log}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /version", func(w http.ResponseWriter, r *http.Request) { reply(w, http.StatusOK, svc.Version()) })

	mux.HandleFunc("GET /networks", s.list(func(f string) (any, error) { return svc.ListNetworks(f) }))
	mux.HandleFunc("POST /networks", create(s, func(n api.Network) (any, error) { return svc.CreateNetwork(n) }))
	mux.HandleFunc("GET /networks/{ref}", s.get(func(ref string) (any, error) { return svc.GetNetwork(ref) }))
	mux.HandleFunc("PATCH /networks/{ref}", s.modify(func(ref string, m api.ModifyRequest) (any, error) { return svc.ModifyNetwork(ref, m) }))
	mux.HandleFunc("DELETE /networks/{ref}", s.delete(svc.DeleteNetwork))

	mux.HandleFunc("GET /endpoints", s.list(func(f string) (any, error) { return svc.ListEndpoints(f) }))
	mux.HandleFunc("POST /endpoints", create(s, func(e api.Endpoint) (any, error) { return svc.CreateEndpoint(e) }))
	mux.HandleFunc("GET /endpoints/{ref}", s.get(func(ref string) (any, error) { return svc.GetEndpoint(ref) }))
	mux.HandleFunc("PATCH /endpoints/{ref}", s.modify(func(ref string, m api.ModifyRequest) (any, error) { return svc.ModifyEndpoint(ref, m) }))
	mux.HandleFunc("DELETE /endpoints/{ref}", s.delete(svc.DeleteEndpoint))

	mux.HandleFunc("GET /namespaces", s.list(func(f string) (any, error) { return svc.ListNamespaces(f) }))
	mux.HandleFunc("POST /namespaces", create(s, func(n api.Namespace) (any, error) { return svc.CreateNamespace(n) }))
	mux.HandleFunc("GET /namespaces/{ref}", s.get(func(ref string) (any, error) { return svc.GetNamespace(ref) }))
	mux.HandleFunc("PATCH /namespaces/{ref}", s.modify(func(ref string, m api.ModifyRequest) (any, error) { return svc.ModifyNamespace(ref, m) }))
	mux.HandleFunc("DELETE /namespaces/{ref}", s.delete(svc.DeleteNamespace))

	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		replyError(w, &api.Error{Code: api.CodeRequestUnsupported, Status: http.StatusNotFound,
			Message: fmt.Sprintf("no API route %s %s", r.Method, r.URL.Path)})
	})
	s.http = &http.Server{
		Handler:           s.logged(mux),
		ReadHeaderTimeout: 10 * time.Second,
		ReadTimeout:       30 * time.Second,
		WriteTimeout:      60 * time.Second,
		IdleTimeout:       2 * time.Minute,
		MaxHeaderBytes:    64 << 10,
		ConnContext:       connContext,
	}
	return s
}

// Listen opens the unix socket at path with the given mode, replacing a
// stale socket file that no daemon answers on.
func Listen(path string, mode os.FileMode) (net.Listener, error) {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return nil, fmt.Errorf("create socket directory: %w", err)
	}
	if _, err := os.Stat(path); err == nil {
		if c, err := net.DialTimeout("unix", path, time.Second); err == nil {
			c.Close()
			return nil, fmt.Errorf("socket %s is in use: is another hostnetd running?", path)
		}
		if err := os.Remove(path); err != nil {
			return nil, fmt.Errorf("remove stale socket %s: %w", path, err)
		}
	}
	// Create the socket with no access for others from the start.
	old := unix.Umask(0o177)
	l, err := net.Listen("unix", path)
	unix.Umask(old)
	if err != nil {
		return nil, fmt.Errorf("listen on %s: %w", path, err)
	}
	if err := os.Chmod(path, mode); err != nil {
		l.Close()
		return nil, fmt.Errorf("chmod %s: %w", path, err)
	}
	return l, nil
}

// Serve serves on l until Shutdown.
func (s *Server) Serve(l net.Listener) error {
	err := s.http.Serve(l)
	if errors.Is(err, http.ErrServerClosed) {
		return nil
	}
	return err
}

// Shutdown stops accepting requests and waits for those under way.
func (s *Server) Shutdown(ctx context.Context) error { return s.http.Shutdown(ctx) }

type credKey struct{}

// peer is the caller at the other end of the socket.
type peer struct{ pid, uid int }

func connContext(ctx context.Context, c net.Conn) context.Context {
	uc, ok := c.(*net.UnixConn)
	if !ok {
		return ctx
	}
	raw, err := uc.SyscallConn()
	if err != nil {
		return ctx
	}
	var cred *unix.Ucred
	_ = raw.Control(func(fd uintptr) {
		cred, _ = unix.GetsockoptUcred(int(fd), unix.SOL_SOCKET, unix.SO_PEERCRED)
	})
	if cred == nil {
		return ctx
	}
	return context.WithValue(ctx, credKey{}, peer{pid: int(cred.Pid), uid: int(cred.Uid)})
}

type statusWriter struct {
	http.ResponseWriter
	status int
}

func (w *statusWriter) WriteHeader(code int) {
	w.status = code
	w.ResponseWriter.WriteHeader(code)
}

// logged logs every mutation with the caller's credentials, and reads at
// debug level.
func (s *Server) logged(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		sw := &statusWriter{ResponseWriter: w, status: http.StatusOK}
		h.ServeHTTP(sw, r)
		p, _ := r.Context().Value(credKey{}).(peer)
		level := slog.LevelInfo
		if r.Method == http.MethodGet {
			level = slog.LevelDebug
		}
		s.log.Log(r.Context(), level, "request", "method", r.Method, "path", r.URL.Path, "status", sw.status,
			"uid", p.uid, "pid", p.pid, "duration", time.Since(start))
	})
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

func (s *Server) list(fn func(filter string) (any, error)) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		out, err := fn(r.URL.Query().Get("filter"))
		if err != nil {
			replyError(w, err)
			return
		}
		reply(w, http.StatusOK, out)
	}
}

func create[T any](s *Server, fn func(T) (any, error)) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		var doc T
		if err := decode(w, r, "the document", &doc); err != nil {
			replyError(w, err)
			return
		}
		out, err := fn(doc)
		if err != nil {
			replyError(w, err)
			return
		}
		reply(w, http.StatusCreated, out)
	}
}

func (s *Server) get(fn func(ref string) (any, error)) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		out, err := fn(r.PathValue("ref"))
		if err != nil {
			replyError(w, err)
			return
		}
		reply(w, http.StatusOK, out)
	}
}

func (s *Server) modify(fn func(ref string, m api.ModifyRequest) (any, error)) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		var m api.ModifyRequest
		if err := decode(w, r, "the modify request", &m); err != nil {
			replyError(w, err)
			return
		}
		out, err := fn(r.PathValue("ref"), m)
		if err != nil {
			replyError(w, err)
			return
		}
		reply(w, http.StatusOK, out)
	}
}

func (s *Server) delete(fn func(ref string) error) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if err := fn(r.PathValue("ref")); err != nil {
			replyError(w, err)
			return
		}
		reply(w, http.StatusOK, map[string]bool{"Success": true})
	}
}
