// Package client is the Go client of hostnet's API, used by the CLI and the
// CNI plugin. Every call returns the daemon's own error as an *api.Error
// (inspect it with api.IsNotFound, api.IsConflict, api.CodeOf), or an
// *UnreachableError when the daemon cannot be reached.
package client

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strings"
	"syscall"
	"time"

	"github.com/hostnet/hostnet/api"
)

// DefaultSocket is where hostnetd listens unless told otherwise.
const DefaultSocket = "/run/hostnet/hostnet.sock"

// Client talks to one hostnetd over its unix socket. It is safe for
// concurrent use.
type Client struct {
	socket string
	http   *http.Client
}

// New returns a client of the daemon listening on socket.
func New(socket string) *Client {
	if socket == "" {
		socket = DefaultSocket
	}
	tr := &http.Transport{
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, "unix", socket)
		},
		MaxIdleConns:    4,
		IdleConnTimeout: 30 * time.Second,
	}
	return &Client{socket: socket, http: &http.Client{Transport: tr, Timeout: 5 * time.Minute}}
}

// Socket returns the socket path the client dials.
func (c *Client) Socket() string { return c.socket }

// UnreachableError says the daemon could not be reached at all.
type UnreachableError struct {
	Socket string
	Err    error
}

func (e *UnreachableError) Error() string {
	if e.PermissionDenied() {
		return fmt.Sprintf("cannot reach hostnetd at %s: permission denied: its socket is for root and for the members of the group "+
			"hostnetd was started with (--socket-group); use sudo, or ask for that group (%v)", e.Socket, e.Err)
	}
	return fmt.Sprintf("cannot reach hostnetd at %s: is it running? (%v)", e.Socket, e.Err)
}

// PermissionDenied reports whether the socket, or a directory on its way,
// refused the caller.
func (e *UnreachableError) PermissionDenied() bool {
	return errors.Is(e.Err, syscall.EACCES) || errors.Is(e.Err, syscall.EPERM)
}

func (e *UnreachableError) Unwrap() error { return e.Err }

// IsUnreachable reports whether err says the daemon could not be reached.
func IsUnreachable(err error) bool {
	var u *UnreachableError
	return errors.As(err, &u)
}

func (c *Client) do(ctx context.Context, method, path string, query url.Values, in, out any) error {
	var body io.Reader
	if in != nil {
		b, err := json.Marshal(in)
		if err != nil {
			return fmt.Errorf("encode request: %w", err)
		}
		body = bytes.NewReader(b)
	}
	u := "http://hostnetd" + path
	if len(query) > 0 {
		u += "?" + query.Encode()
	}
	req, err := http.NewRequestWithContext(ctx, method, u, body)
	if err != nil {
		return err
	}
	if in != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := c.http.Do(req)
	if err != nil {
		var op *net.OpError
		if errors.As(err, &op) && op.Op == "dial" {
			return &UnreachableError{Socket: c.socket, Err: op.Err}
		}
		return fmt.Errorf("hostnetd at %s: %w", c.socket, err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(resp.Body)
	if err != nil {
		return fmt.Errorf("read answer of hostnetd: %w", err)
	}
	if resp.StatusCode >= 300 {
		var e api.ErrorResponse
		if json.Unmarshal(data, &e) != nil || e.Error == "" {
			return &api.Error{Code: api.CodeInternal, Status: resp.StatusCode, Message: fmt.Sprintf("hostnetd answered %s: %s", resp.Status, bytes.TrimSpace(data))}
		}
		return &api.Error{Code: e.ErrorCode, Status: resp.StatusCode, Message: e.Error}
	}
	if out == nil {
		return nil
	}
	if err := json.Unmarshal(data, out); err != nil {
		return fmt.Errorf("decode answer of hostnetd: %w", err)
	}
	return nil
}

// filterQuery encodes an HNS filter document, e.g. {"Name":"nat"}.
func filterQuery(filter map[string]string) url.Values {
	if len(filter) == 0 {
		return nil
	}
	b, _ := json.Marshal(filter)
	return url.Values{"filter": {string(b)}}
}

func escape(ref string) string { return url.PathEscape(ref) }

// Version returns the daemon's API version and what it supports.
func (c *Client) Version(ctx context.Context) (*api.VersionInfo, error) {
	var v api.VersionInfo
	return &v, c.do(ctx, http.MethodGet, "/version", nil, nil, &v)
}

// resource is one kind of object of the API, under its path: the five
// calls every kind answers.
type resource[T any] struct {
	c    *Client
	path string
}

func (r resource[T]) create(ctx context.Context, doc *T) (*T, error) {
	var out T
	return &out, r.c.do(ctx, http.MethodPost, r.path, nil, doc, &out)
}

func (r resource[T]) get(ctx context.Context, ref string) (*T, error) {
	var out T
	return &out, r.c.do(ctx, http.MethodGet, r.path+"/"+escape(ref), nil, nil, &out)
}

func (r resource[T]) list(ctx context.Context, filter map[string]string) ([]T, error) {
	var out []T
	return out, r.c.do(ctx, http.MethodGet, r.path, filterQuery(filter), nil, &out)
}

func (r resource[T]) modify(ctx context.Context, ref string, req *api.ModifyRequest) (*T, error) {
	var out T
	return &out, r.c.do(ctx, http.MethodPatch, r.path+"/"+escape(ref), nil, req, &out)
}

func (r resource[T]) delete(ctx context.Context, ref string) error {
	return r.c.do(ctx, http.MethodDelete, r.path+"/"+escape(ref), nil, nil, nil)
}

func (c *Client) networks() resource[api.Network]   { return resource[api.Network]{c, "/networks"} }
func (c *Client) endpoints() resource[api.Endpoint] { return resource[api.Endpoint]{c, "/endpoints"} }
func (c *Client) namespaces() resource[api.Namespace] {
	return resource[api.Namespace]{c, "/namespaces"}
}

// CreateNetwork creates a network and returns it as stored.
func (c *Client) CreateNetwork(ctx context.Context, n *api.Network) (*api.Network, error) {
	return c.networks().create(ctx, n)
}

// GetNetwork returns a network by ID or name.
func (c *Client) GetNetwork(ctx context.Context, ref string) (*api.Network, error) {
	return c.networks().get(ctx, ref)
}

// ListNetworks returns the networks matching an HNS filter (nil: all).
func (c *Client) ListNetworks(ctx context.Context, filter map[string]string) ([]api.Network, error) {
	return c.networks().list(ctx, filter)
}

// ModifyNetwork sends a modify request to a network.
func (c *Client) ModifyNetwork(ctx context.Context, ref string, req *api.ModifyRequest) (*api.Network, error) {
	return c.networks().modify(ctx, ref, req)
}

// DeleteNetwork deletes a network that has no endpoints.
func (c *Client) DeleteNetwork(ctx context.Context, ref string) error {
	return c.networks().delete(ctx, ref)
}

// CreateEndpoint creates an endpoint on the network named by
// e.HostComputeNetwork (an ID or a name).
func (c *Client) CreateEndpoint(ctx context.Context, e *api.Endpoint) (*api.Endpoint, error) {
	return c.endpoints().create(ctx, e)
}

// GetEndpoint returns an endpoint by ID or name.
func (c *Client) GetEndpoint(ctx context.Context, ref string) (*api.Endpoint, error) {
	return c.endpoints().get(ctx, ref)
}

// ListEndpoints returns the endpoints matching an HNS filter (nil: all),
// e.g. {"VirtualNetwork": networkID}.
func (c *Client) ListEndpoints(ctx context.Context, filter map[string]string) ([]api.Endpoint, error) {
	return c.endpoints().list(ctx, filter)
}

// ModifyEndpoint sends a modify request to an endpoint.
func (c *Client) ModifyEndpoint(ctx context.Context, ref string, req *api.ModifyRequest) (*api.Endpoint, error) {
	return c.endpoints().modify(ctx, ref, req)
}

// DeleteEndpoint deletes an endpoint, detaching it first if needed.
func (c *Client) DeleteEndpoint(ctx context.Context, ref string) error {
	return c.endpoints().delete(ctx, ref)
}

// CreateNamespace creates a namespace (or wraps the one at
// n.NetNamespacePath).
func (c *Client) CreateNamespace(ctx context.Context, n *api.Namespace) (*api.Namespace, error) {
	return c.namespaces().create(ctx, n)
}

// GetNamespace returns a namespace by ID or name.
func (c *Client) GetNamespace(ctx context.Context, ref string) (*api.Namespace, error) {
	return c.namespaces().get(ctx, ref)
}

// ListNamespaces returns the namespaces matching an HNS filter (nil: all).
func (c *Client) ListNamespaces(ctx context.Context, filter map[string]string) ([]api.Namespace, error) {
	return c.namespaces().list(ctx, filter)
}

// ModifyNamespace sends a modify request to a namespace.
func (c *Client) ModifyNamespace(ctx context.Context, ref string, req *api.ModifyRequest) (*api.Namespace, error) {
	return c.namespaces().modify(ctx, ref, req)
}

// DeleteNamespace deletes a namespace, detaching its endpoints.
func (c *Client) DeleteNamespace(ctx context.Context, ref string) error {
	return c.namespaces().delete(ctx, ref)
}

// Attach attaches an endpoint to a namespace.
func (c *Client) Attach(ctx context.Context, namespace, endpoint string) (*api.Namespace, error) {
	return c.namespaceEndpoint(ctx, namespace, endpoint, api.RequestAdd)
}

// Detach detaches an endpoint from a namespace.
func (c *Client) Detach(ctx context.Context, namespace, endpoint string) (*api.Namespace, error) {
	return c.namespaceEndpoint(ctx, namespace, endpoint, api.RequestRemove)
}

func (c *Client) namespaceEndpoint(ctx context.Context, namespace, endpoint string, rt api.RequestType) (*api.Namespace, error) {
	settings, _ := json.Marshal(api.NamespaceEndpointRequest{EndpointId: endpoint})
	return c.ModifyNamespace(ctx, namespace, &api.ModifyRequest{
		ResourceType: api.ResourceEndpoint, RequestType: rt, Settings: settings,
	})
}

// Check asks the daemon to compare the kernel with its intent (`hostnet
// doctor`); nothing is changed.
func (c *Client) Check(ctx context.Context) (*api.CheckReport, error) {
	var out api.CheckReport
	return &out, c.do(ctx, http.MethodGet, "/check", nil, nil, &out)
}

// Events returns the recent events, oldest first: the objects clients
// created, changed and deleted, and what the daemon did on its own
// (repairs, removals of endpoints whose namespace is gone, ...).
func (c *Client) Events(ctx context.Context) ([]api.Event, error) {
	return c.FilterEvents(ctx, api.EventFilter{})
}

// FilterEvents returns the recent events that pass f, oldest first.
func (c *Client) FilterEvents(ctx context.Context, f api.EventFilter) ([]api.Event, error) {
	var out []api.Event
	return out, c.do(ctx, http.MethodGet, "/events", f.Query(), nil, &out)
}

// FollowEvents calls fn with the recent events that pass f, then with each
// new one as it happens, until ctx ends (it returns nil then), fn returns
// an error (returned), or the daemon ends the stream (io.ErrUnexpectedEOF:
// it shut down, or this follower fell too far behind).
func (c *Client) FollowEvents(ctx context.Context, f api.EventFilter, fn func(api.Event) error) error {
	q := f.Query()
	q.Set("follow", "1")
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://hostnetd/events?"+q.Encode(), nil)
	if err != nil {
		return err
	}
	// The stream has no end in time: no client timeout.
	hc := &http.Client{Transport: c.http.Transport}
	resp, err := hc.Do(req)
	if err != nil {
		if ctx.Err() != nil {
			return nil
		}
		var op *net.OpError
		if errors.As(err, &op) && op.Op == "dial" {
			return &UnreachableError{Socket: c.socket, Err: op.Err}
		}
		return fmt.Errorf("hostnetd at %s: %w", c.socket, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode >= 300 {
		data, _ := io.ReadAll(resp.Body)
		var e api.ErrorResponse
		if json.Unmarshal(data, &e) != nil || e.Error == "" {
			return &api.Error{Code: api.CodeInternal, Status: resp.StatusCode, Message: fmt.Sprintf("hostnetd answered %s: %s", resp.Status, bytes.TrimSpace(data))}
		}
		return &api.Error{Code: e.ErrorCode, Status: resp.StatusCode, Message: e.Error}
	}
	dec := json.NewDecoder(resp.Body)
	for {
		var ev api.Event
		if err := dec.Decode(&ev); err != nil {
			if ctx.Err() != nil {
				return nil
			}
			if errors.Is(err, io.EOF) {
				return fmt.Errorf("hostnetd ended the event stream: %w", io.ErrUnexpectedEOF)
			}
			return fmt.Errorf("read events of hostnetd: %w", err)
		}
		if err := fn(ev); err != nil {
			return err
		}
	}
}

// SetAside lists the records a start of the daemon set aside because it
// could not read them (without their raw bytes).
func (c *Client) SetAside(ctx context.Context) ([]api.SetAsideRecord, error) {
	var out []api.SetAsideRecord
	return out, c.do(ctx, http.MethodGet, "/setaside", nil, nil, &out)
}

// GetSetAside returns a set-aside record with its raw bytes; id is its ID
// ("<bucket>/<key>") or its key when that is unique.
func (c *Client) GetSetAside(ctx context.Context, id string) (*api.SetAsideRecord, error) {
	var out api.SetAsideRecord
	return &out, c.do(ctx, http.MethodGet, "/setaside/"+escapeID(id), nil, nil, &out)
}

// DropSetAside forgets a set-aside record: what it held is free again and
// the kernel objects kept for it are removed. It returns the record
// dropped.
func (c *Client) DropSetAside(ctx context.Context, id string) (*api.SetAsideRecord, error) {
	var out api.SetAsideRecord
	return &out, c.do(ctx, http.MethodDelete, "/setaside/"+escapeID(id), nil, nil, &out)
}

// Prune removes the kernel objects of hostnet's that no record wants,
// which the daemon kept (after a restore from a backup, or while records
// are set aside), and returns what it removed.
func (c *Client) Prune(ctx context.Context) (*api.PruneReport, error) {
	var out api.PruneReport
	return &out, c.do(ctx, http.MethodPost, "/prune", nil, nil, &out)
}

// escapeID escapes a set-aside record's ID for a path, keeping the slash
// between its bucket and its key.
func escapeID(id string) string {
	bucket, key, ok := strings.Cut(id, "/")
	if !ok {
		return escape(id)
	}
	return escape(bucket) + "/" + escape(key)
}
