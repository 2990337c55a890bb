package e2e

import (
	"encoding/json"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/hostnet/hostnet/api"
	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// behind is an address only the router endpoint's namespace has (on a
// veth of the test's): a packet for it gets there only through a route via the
// router. (Only arrival is checked: the bridge's firewall drops the
// router's answers, whose source is no address of the router's endpoint,
// as it should.)
const behind = "192.0.2.77"

// routerEnv is the default network with a router endpoint that has
// behind, and a client endpoint.
func routerEnv(t *testing.T) (e *Env, router, client *Attached) {
	e = NewEnv(t)
	router, client = e.addRouter(t, "nat"), e.AttachNew("nat", "client")
	return e, router, client
}

// addRouter attaches an endpoint named router to network, its namespace
// having behind.
func (e *Env) addRouter(t *testing.T, network string) *Attached {
	router := e.AttachNew(network, "router")
	// On a device of the test's own: hostnet keeps the loopback of a
	// namespace it made as it planned it.
	h := e.handle(router.Namespace.NetNamespacePath)
	defer h.Close()
	dev := &netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: "behind0"}, PeerName: "behind1"}
	if err := h.LinkAdd(dev); err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"behind0", "behind1"} {
		l, err := h.LinkByName(name)
		if err == nil {
			err = h.LinkSetUp(l)
		}
		if err != nil {
			t.Fatal(err)
		}
	}
	if err := h.AddrAdd(dev, &netlink.Addr{IPNet: &net.IPNet{IP: net.ParseIP(behind), Mask: net.CIDRMask(32, 32)}}); err != nil {
		t.Fatal(err)
	}
	return router
}

// probeProtoExperimental is IP protocol 253 (RFC 3692, for experiments):
// no service of the host answers it.
const probeProtoExperimental = 253

// viaRouter reports whether a packet from the namespace at from (whose
// address is src) for behind arrives in the router's namespace; want
// true waits for it with a deadline (see settle).
func viaRouter(t *testing.T, from string, src netip.Addr, router *Attached, want bool) bool {
	t.Helper()
	return settle(want, func() bool {
		return probeProto(t, from, router.Namespace.NetNamespacePath, probeProtoExperimental, src, netip.MustParseAddr(behind))
	})
}

// routesIn lists the IPv4 routes of the main table inside the namespace
// at path, as "DST via GW" ("default" for the default route).
func routesIn(t *testing.T, e *Env, path string) []string {
	t.Helper()
	h := e.handle(path)
	defer h.Close()
	rs, err := h.RouteListFiltered(unix.AF_INET, &netlink.Route{Table: unix.RT_TABLE_MAIN}, netlink.RT_FILTER_TABLE)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, r := range rs {
		dst := "default"
		if r.Dst != nil && !(r.Dst.IP.IsUnspecified() && net.IP(r.Dst.Mask).IsUnspecified()) {
			dst = r.Dst.String()
		}
		if r.Gw != nil {
			dst += " via " + r.Gw.String()
		}
		out = append(out, dst)
	}
	return out
}

func countPrefix(list []string, prefix string) int {
	n := 0
	for _, s := range list {
		if strings.HasPrefix(s, prefix) {
			n++
		}
	}
	return n
}

// A route object (HCN HostComputeRoute) puts its routes inside the
// namespace of each endpoint it lists: the client reaches an address
// behind a next hop (another endpoint's namespace) through it, the route
// survives a restart, and it goes with the object. Created from the CLI,
// listed and inspected, and applied from a document.
func TestRouteObjectCarriesTraffic(t *testing.T) {
	e, router, client := routerEnv(t)
	c := e.Client()
	clientNS := client.Namespace.NetNamespacePath
	if viaRouter(t, clientNS, client.Addr, router, false) {
		t.Fatal("the address behind the router is reached without a route")
	}
	id := strings.TrimSpace(e.MustCLI("route", "create", "--endpoint", "client", "--next-hop", router.Addr.String(), "192.0.2.0/24"))
	if !viaRouter(t, clientNS, client.Addr, router, true) {
		t.Fatalf("no traffic through the route object; routes: %q", routesIn(t, e, clientNS))
	}
	if ls := e.MustCLI("route", "ls"); !strings.Contains(ls, "client") || !strings.Contains(ls, "192.0.2.0/24 via "+router.Addr.String()) {
		t.Errorf("route ls:\n%s", ls)
	}
	var docs []api.HostComputeRoute
	if err := json.Unmarshal([]byte(e.MustCLI("route", "inspect", id)), &docs); err != nil || len(docs) != 1 ||
		docs[0].HostComputeEndpoints[0] != client.Endpoint.ID || docs[0].Setting[0].NextHop != router.Addr.String() {
		t.Errorf("route inspect: %+v, %v", docs, err)
	}

	e.Restart(false)
	if !viaRouter(t, clientNS, client.Addr, router, true) {
		t.Errorf("no traffic through the route object after a restart; routes: %q", routesIn(t, e, clientNS))
	}
	if rep, err := c.Check(ctx); err != nil || !rep.InSync {
		t.Errorf("not in sync after the restart: %+v %v", rep, err)
	}

	e.MustCLI("route", "rm", id)
	if viaRouter(t, clientNS, client.Addr, router, false) {
		t.Error("traffic still goes through the deleted route object")
	}
	if n := countPrefix(routesIn(t, e, clientNS), "192.0.2.0/24"); n != 0 {
		t.Errorf("%d routes to 192.0.2.0/24 left", n)
	}

	// The same, as hcsshim marshals it, applied from a file.
	file := filepath.Join(e.Dir, "route.json")
	doc := `{"ID":"6f9c2a4e-3b8d-4c1e-9a57-2d0e8b1f4c33","HostComputeEndpoints":["client"],` +
		`"Setting":[{"DestinationPrefix":"192.0.2.0/24","NextHop":"` + router.Addr.String() + `"}],"SchemaVersion":{"Major":2,"Minor":0}}`
	if err := os.WriteFile(file, []byte(doc), 0o644); err != nil {
		t.Fatal(err)
	}
	if out := e.MustCLI("apply", "-f", file); !strings.Contains(out, "route 6f9c2a4e-3b8d-4c1e-9a57-2d0e8b1f4c33 created") {
		t.Errorf("apply: %s", out)
	}
	if out := e.MustCLI("apply", "-f", file); !strings.Contains(out, "unchanged") {
		t.Errorf("apply again: %s", out)
	}
	if !viaRouter(t, clientNS, client.Addr, router, true) {
		t.Errorf("no traffic through the applied route object; routes: %q", routesIn(t, e, clientNS))
	}
	// The endpoint's deletion drops it from the route.
	if err := c.DeleteEndpoint(ctx, client.Endpoint.ID); err != nil {
		t.Fatal(err)
	}
	r, err := c.GetRoute(ctx, "6f9c2a4e-3b8d-4c1e-9a57-2d0e8b1f4c33")
	if err != nil || len(r.HostComputeEndpoints) != 0 {
		t.Errorf("the route after its endpoint's deletion: %+v, %v", r, err)
	}
}

// Bad route objects and SDNRoutes are a 400 naming the field and the
// value, never a 500, and nothing is stored: hcsshim's own test next hop
// (127.10.0.33/34), NeedEncap, a next hop off the endpoint's subnet; an
// SDNRoute with such a next hop on a detached endpoint does not poison
// its later attach.
func TestBadRoutesAreRefused(t *testing.T) {
	e := NewEnv(t)
	c := e.Client()
	a := e.AttachNew("nat", "a")
	for _, s := range []struct {
		setting api.SDNRouteSettings
		field   string
	}{
		{api.SDNRouteSettings{DestinationPrefix: "169.254.169.254/24", NextHop: "127.10.0.33"}, "Setting[0].NextHop"},
		{api.SDNRouteSettings{DestinationPrefix: "169.254.169.254/24", NextHop: "10.255.0.1"}, "Setting[0].NextHop"},
		{api.SDNRouteSettings{DestinationPrefix: "169.254.169.254/24", NextHop: a.Addr.String()}, "Setting[0].NextHop"},
		{api.SDNRouteSettings{DestinationPrefix: "10.0.0.0/8", NextHop: a.Addr.Next().String(), NeedEncap: true}, "Setting[0].NeedEncap"},
	} {
		_, err := c.CreateRoute(ctx, &api.HostComputeRoute{HostComputeEndpoints: []string{"a"}, Setting: []api.SDNRouteSettings{s.setting}})
		if ae := api.AsError(err); ae.Status != 400 || !strings.Contains(err.Error(), s.field) {
			t.Errorf("%+v: %v, want a 400 naming %s", s.setting, err, s.field)
		}
	}
	if rs, err := c.ListRoutes(ctx, nil); err != nil || len(rs) != 0 {
		t.Errorf("routes stored: %+v, %v", rs, err)
	}

	bad := api.Policy{Type: api.SDNRoute, Settings: json.RawMessage(`{"DestinationPrefix":"169.254.169.254/24","NextHop":"127.10.0.34"}`)}
	_, err := c.CreateEndpoint(ctx, &api.Endpoint{Name: "d", HostComputeNetwork: "nat", Policies: []api.Policy{bad}})
	if ae := api.AsError(err); ae.Status != 400 || !strings.Contains(err.Error(), "Policies[0].Settings.NextHop") || !strings.Contains(err.Error(), "127.10.0.34") {
		t.Errorf("a detached endpoint's SDNRoute: %v", err)
	}
	for _, ref := range []string{"a"} {
		_, err := c.ModifyEndpoint(ctx, ref, &api.ModifyRequest{ResourceType: api.ResourcePolicy, RequestType: api.RequestAdd,
			Settings: json.RawMessage(`{"Policies":[{"Type":"SDNRoute","Settings":{"DestinationPrefix":"169.254.169.254/24","NextHop":"127.10.0.34"}}]}`)})
		if ae := api.AsError(err); ae.Status != 400 || !strings.Contains(err.Error(), "Policies[0].Settings.NextHop") {
			t.Errorf("an attached endpoint's SDNRoute: %v", err)
		}
	}
	d, err := c.CreateEndpoint(ctx, &api.Endpoint{Name: "d", HostComputeNetwork: "nat"})
	if err != nil {
		t.Fatal(err)
	}
	_, err = c.ModifyEndpoint(ctx, "d", &api.ModifyRequest{ResourceType: api.ResourcePolicy, RequestType: api.RequestAdd,
		Settings: json.RawMessage(`{"Policies":[{"Type":"SDNRoute","Settings":{"DestinationPrefix":"169.254.169.254/24","NextHop":"127.10.0.34"}}]}`)})
	if api.AsError(err).Status != 400 {
		t.Errorf("a detached endpoint's SDNRoute added: %v", err)
	}
	ns, err := c.CreateNamespace(ctx, &api.Namespace{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.Attach(ctx, ns.ID, d.ID); err != nil {
		t.Errorf("attaching the endpoint after the refused SDNRoute: %v", err)
	}
}

// An endpoint with its own default route has one default route in its
// namespace, the explicit one, and its traffic takes it: not the subnet's
// own default route (the network's Routes), nor its gateway's.
func TestExplicitDefaultRouteWins(t *testing.T) {
	e := NewEnv(t, "--default-network=false")
	c := e.Client()
	n := natNetwork("routed", "10.61.0.0/24")
	n.Ipams[0].Subnets[0].Routes = []api.Route{{DestinationPrefix: "0.0.0.0/0", NextHop: "10.61.0.1"}}
	if _, err := c.CreateNetwork(ctx, n); err != nil {
		t.Fatal(err)
	}
	router := e.addRouter(t, "routed")
	ns, err := c.CreateNamespace(ctx, &api.Namespace{})
	if err != nil {
		t.Fatal(err)
	}
	ep, err := c.CreateEndpoint(ctx, &api.Endpoint{Name: "own", HostComputeNetwork: "routed", HostComputeNamespace: ns.ID,
		Routes: []api.Route{{DestinationPrefix: "0.0.0.0/0", NextHop: router.Addr.String()}}})
	if err != nil {
		t.Fatal(err)
	}
	routes := routesIn(t, e, ns.NetNamespacePath)
	if n := countPrefix(routes, "default"); n != 1 || !strings.Contains(strings.Join(routes, ";"), "default via "+router.Addr.String()) {
		t.Errorf("routes of an endpoint with its own default route: %q, want one default, via %s", routes, router.Addr)
	}
	if !viaRouter(t, ns.NetNamespacePath, netip.MustParseAddr(ep.IpConfigurations[0].IpAddress), router, true) {
		t.Error("the endpoint's traffic does not take its own default route")
	}
}
