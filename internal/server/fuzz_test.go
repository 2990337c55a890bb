package server

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/hostnet/hostnet/api"
	"github.com/hostnet/hostnet/internal/dataplane"
	"github.com/hostnet/hostnet/internal/driver"
	"github.com/hostnet/hostnet/internal/driver/nat"
	"github.com/hostnet/hostnet/internal/netmodel"
	"github.com/hostnet/hostnet/internal/reconcile"
	"github.com/hostnet/hostnet/internal/service"
	"github.com/hostnet/hostnet/internal/store"
)

// The fuzz target below sends arbitrary requests (method, path, filter
// query, body) to a real server over its unix socket, in front of a real
// service, and checks the answers: bad input gets a 4xx JSON error document
// {"Success":false,"Error":"...","ErrorCode":N} with a message and a code,
// never a 500; good input a JSON document.
//
// The service runs on an in-memory store and a reconciler over a fake host
// (dataplane.Fake): nothing reaches a kernel. Networks are validated with
// the real NAT driver's rules; a valid network document stops there with
// a mark of its own (checkOnly refuses it with errValid, status 418, before
// the service picks a subnet or stores anything), which the target counts
// as accepted. Other valid documents are carried out on the fake host.
//
// Mutations go to a service whose store is emptied after each request, so
// no endpoint or network exists for them to change: endpoint creation is
// checked up to its network's lookup, modify requests up to the lookup of
// their object (which, for endpoints and namespaces, comes after the
// request is decoded). Reads (GET, HEAD) go to a service seeded once with a
// network, an endpoint and a namespace, so that filters and references are
// matched against real objects.

// errValid is checkOnly's answer to a network that passed validation.
var errValid = &api.Error{Code: api.CodeRequestUnsupported, Status: http.StatusTeapot,
	Message: "fuzz: the network is valid; it is not realised"}

// checkOnly validates with the NAT driver and refuses what passes.
type checkOnly struct{ driver.Driver }

func (d checkOnly) Validate(spec *api.NetworkSpec) error {
	if err := d.Driver.Validate(spec); err != nil {
		return err
	}
	return errValid
}

// wrappedNS is the namespace the read-only service wraps (on the fake host).
const wrappedNS = "/proc/self/ns/net"

// fuzzService returns a service on an empty in-memory store and a fake
// host, whose NAT networks drv handles.
func fuzzService(tb testing.TB, netnsDir string, drv driver.Driver) (*service.Service, store.Store) {
	st := store.NewMemory()
	host := dataplane.NewFake(dataplane.HostConfig{LinkPrefixes: []string{"hn"}, NetnsDir: netnsDir})
	host.AddNamespace(wrappedNS, netmodel.NSID{Dev: 3, Ino: 3})
	rec := reconcile.New(reconcile.Config{Host: host, Logger: slog.New(slog.DiscardHandler),
		Resync: func(context.Context, string) error { return nil }})
	tb.Cleanup(rec.Close)
	return service.New(service.Config{
		Store:      st,
		Reconciler: rec,
		Drivers:    map[api.NetworkType]driver.Driver{api.NAT: drv},
		NetnsDir:   netnsDir,
		Logger:     slog.New(slog.DiscardHandler),
		Build:      "fuzz",
	}), st
}

// Objects of the read-only service.
const (
	fuzzNetworkID  = "5f0c6b2b-3d39-4bd4-9c5b-5b1b5f3b8d8e"
	fuzzEndpointID = "0d9e8a7c-6b5a-4f3e-8d2c-1b0a9f8e7d6c"
)

// seed gives svc a network "fuzznet", an endpoint "fuzzep" on it (not
// attached) and a namespace "fuzzns" wrapping a namespace of the fake
// host.
func seed(tb testing.TB, svc *service.Service) {
	tb.Helper()
	ctx := context.Background()
	_, err := svc.CreateNetwork(ctx, api.Network{ID: fuzzNetworkID, Name: "fuzznet", Type: api.NAT,
		Ipams:    []api.Ipam{{Type: "Static", Subnets: []api.Subnet{{IpAddressPrefix: "10.77.0.0/24"}}}},
		Policies: []api.Policy{{Type: api.NetworkACL, Settings: json.RawMessage(`{"Action":"Block","Direction":"In","Protocols":"6","LocalPorts":"80","Priority":10}`)}},
		Dns:      &api.DNS{Domain: "fuzz.test", ServerList: []string{"10.77.0.2"}},
	})
	if err != nil {
		tb.Fatalf("seed network: %v", err)
	}
	_, err = svc.CreateEndpoint(ctx, api.Endpoint{ID: fuzzEndpointID, Name: "fuzzep", HostComputeNetwork: "fuzznet",
		IpConfigurations: []api.IPConfig{{IpAddress: "10.77.0.10"}}, MacAddress: "02-00-00-00-77-10",
		Policies: []api.Policy{{Type: api.ACL, Settings: json.RawMessage(`{"Action":"Allow","Direction":"In","Protocols":"6","LocalPorts":"80,8080","Priority":100}`)}},
	})
	if err != nil {
		tb.Fatalf("seed endpoint: %v", err)
	}
	if _, err := svc.CreateNamespace(ctx, api.Namespace{Name: "fuzzns", NetNamespacePath: wrappedNS, Type: api.NamespaceHostDefault}); err != nil {
		tb.Fatalf("seed namespace: %v", err)
	}
}

// serve serves svc on a unix socket under dir until the test ends, and
// returns a client of it.
func serve(tb testing.TB, svc *service.Service, dir string) *http.Client {
	tb.Helper()
	path := filepath.Join(dir, "hostnet.sock")
	l, err := net.Listen("unix", path)
	if err != nil {
		tb.Fatal(err)
	}
	srv := New(svc, slog.New(slog.DiscardHandler), Options{})
	done := make(chan error, 1)
	go func() { done <- srv.Serve(l) }()
	tr := &http.Transport{DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
		return (&net.Dialer{}).DialContext(ctx, "unix", path)
	}}
	tb.Cleanup(func() {
		tr.CloseIdleConnections()
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := srv.Shutdown(ctx); err != nil {
			tb.Errorf("shutdown: %v", err)
		}
		if err := <-done; err != nil {
			tb.Errorf("serve: %v", err)
		}
		svc.Close()
	})
	return &http.Client{Transport: tr, Timeout: 30 * time.Second,
		// The answer to check is the redirect itself.
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
}

// wipe empties a store.
func wipe(t *testing.T, st store.Store) {
	if err := st.Update(func(tx store.Tx) error { return store.Replace(tx, nil) }); err != nil {
		t.Fatal(err)
	}
}

var fuzzMethods = []string{http.MethodGet, http.MethodHead, http.MethodPost, http.MethodPut, http.MethodPatch, http.MethodDelete, http.MethodOptions}

// FuzzServer sends one request to the server and checks the answer.
func FuzzServer(f *testing.F) {
	dir := f.TempDir()
	netnsDir := filepath.Join(dir, "netns")
	readSvc, _ := fuzzService(f, netnsDir, nat.New())
	seed(f, readSvc)
	if err := os.Mkdir(filepath.Join(dir, "read"), 0o755); err != nil {
		f.Fatal(err)
	}
	readClient := serve(f, readSvc, filepath.Join(dir, "read"))
	writeSvc, writeStore := fuzzService(f, netnsDir, checkOnly{nat.New()})
	if err := os.Mkdir(filepath.Join(dir, "write"), 0o755); err != nil {
		f.Fatal(err)
	}
	writeClient := serve(f, writeSvc, filepath.Join(dir, "write"))

	f.Fuzz(func(t *testing.T, method, path, filter string, body []byte) {
		// A request line carries a method token and an absolute path.
		if !isToken(method) {
			method = fuzzMethods[len(method)%len(fuzzMethods)]
		}
		if !strings.HasPrefix(path, "/") {
			path = "/" + path
		}
		client := readClient
		if method != http.MethodGet && method != http.MethodHead {
			client = writeClient
			defer wipe(t, writeStore)
		}
		u := &url.URL{Scheme: "http", Host: "hostnet", Path: path}
		if filter != "" {
			u.RawQuery = "filter=" + url.QueryEscape(filter)
		}
		req := &http.Request{Method: method, URL: u, Host: "hostnet", Header: http.Header{"Content-Type": {"application/json"}},
			Body: io.NopCloser(bytes.NewReader(body)), ContentLength: int64(len(body))}
		if len(body) == 0 {
			req.Body = http.NoBody
		}
		resp, err := client.Do(req)
		if err != nil {
			t.Fatalf("%s %s: %v", method, u, err)
		}
		answer, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		if err != nil {
			t.Fatalf("%s %s: read the answer: %v", method, u, err)
		}
		checkAnswer(t, req, body, resp, answer)
	})
}

// checkAnswer checks the answer to req.
func checkAnswer(t *testing.T, req *http.Request, reqBody []byte, resp *http.Response, body []byte) {
	t.Helper()
	what := fmt.Sprintf("%s %s with body %q", req.Method, req.URL, reqBody)
	status, ct := resp.StatusCode, resp.Header.Get("Content-Type")
	head := req.Method == http.MethodHead // answered without a body
	switch status {
	case http.StatusOK, http.StatusCreated:
		if ct != "application/json" || !head && !json.Valid(body) {
			t.Fatalf("%s: answer %d (%s) is not a JSON document: %q", what, status, ct, body)
		}
		return
	case http.StatusMovedPermanently, http.StatusTemporaryRedirect, http.StatusPermanentRedirect:
		// ServeMux redirects a path that is not clean ("//networks",
		// "/networks/../version") to its clean form.
		if resp.Header.Get("Location") == "" {
			t.Fatalf("%s: redirect without a location", what)
		}
		return
	}
	if ct != "application/json" {
		t.Fatalf("%s: error answer %d has content type %q: %q", what, status, ct, body)
	}
	var e api.ErrorResponse
	if !head {
		dec := json.NewDecoder(bytes.NewReader(body))
		dec.DisallowUnknownFields()
		if err := dec.Decode(&e); err != nil {
			t.Fatalf("%s: answer %d is not an error document (%v): %q", what, status, err, body)
		}
		if e.Success || strings.TrimSpace(e.Error) == "" || e.ErrorCode == 0 {
			t.Fatalf("%s: error document %d lacks a message or a code: %q", what, status, body)
		}
	}
	switch {
	case status == http.StatusBadRequest, status == http.StatusNotFound, status == http.StatusConflict,
		status == http.StatusRequestEntityTooLarge, status == http.StatusForbidden:
	case !head && status == errValid.Status && e.Error == errValid.Message:
		// A valid network document.
	default:
		t.Fatalf("%s: answer %d: %s", what, status, body)
	}
}

// isToken reports whether s is an HTTP method token.
func isToken(s string) bool {
	if s == "" {
		return false
	}
	for _, c := range []byte(s) {
		if c <= ' ' || c >= 0x7f || strings.IndexByte(`()<>@,;:\"/[]?={}`, c) >= 0 {
			return false
		}
	}
	return true
}
