package e2e

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/hostnet/hostnet/api"
	"github.com/miekg/dns"
	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// upstreamAnswer is what the fake upstream resolver answers for
// upstreamName; every other name is NXDOMAIN there.
const (
	upstreamName   = "upstream.example."
	upstreamAnswer = "203.0.113.7"
)

// fakeUpstream is the host's resolver of the lab (hostDNS, named by the
// host's resolv.conf): a DNS server in the external namespace, never a
// real one. It records the names it is asked.
type fakeUpstream struct {
	mu    sync.Mutex
	asked []string
}

func (u *fakeUpstream) ServeDNS(w dns.ResponseWriter, req *dns.Msg) {
	m := new(dns.Msg)
	m.SetReply(req)
	q := req.Question[0]
	u.mu.Lock()
	u.asked = append(u.asked, strings.ToLower(q.Name))
	u.mu.Unlock()
	switch {
	case strings.EqualFold(q.Name, upstreamName) && q.Qtype == dns.TypeA:
		m.Answer = append(m.Answer, &dns.A{Hdr: dns.RR_Header{Name: q.Name, Rrtype: dns.TypeA, Class: dns.ClassINET, Ttl: 60},
			A: net.ParseIP(upstreamAnswer)})
	case strings.EqualFold(q.Name, upstreamName):
	default:
		m.Rcode = dns.RcodeNameError
	}
	_ = w.WriteMsg(m)
}

func (u *fakeUpstream) wasAsked(name string) bool {
	u.mu.Lock()
	defer u.mu.Unlock()
	return slices.Contains(u.asked, strings.ToLower(dns.Fqdn(name)))
}

// startUpstream gives the external namespace the address hostDNS and
// serves DNS there (UDP and TCP) until the test ends.
func startUpstream(t *testing.T, e *Env) *fakeUpstream {
	t.Helper()
	h := e.handle(e.ExtNS)
	defer h.Close()
	link, err := h.LinkByName(extLinkName)
	if err != nil {
		t.Fatal(err)
	}
	if err := h.AddrAdd(link, &netlink.Addr{IPNet: &net.IPNet{IP: net.ParseIP(hostDNS), Mask: net.CIDRMask(24, 32)}}); err != nil {
		t.Fatal(err)
	}
	u := &fakeUpstream{}
	var pc net.PacketConn
	var l net.Listener
	In(t, e.ExtNS, func() error {
		var err error
		if pc, err = net.ListenPacket("udp4", hostDNS+":53"); err != nil {
			return err
		}
		l, err = net.Listen("tcp4", hostDNS+":53")
		return err
	})
	for _, srv := range []*dns.Server{{PacketConn: pc, Handler: u}, {Listener: l, Handler: u}} {
		started := make(chan struct{})
		srv.NotifyStartedFunc = func() { close(started) }
		go func() { _ = srv.ActivateAndServe() }()
		<-started
		t.Cleanup(func() { _ = srv.Shutdown() })
	}
	return u
}

// ask sends one question from inside the namespace at nsPath to server
// (port 53) over network ("udp" or "tcp") and returns the answer.
func ask(t *testing.T, nsPath string, server netip.Addr, network, name string, qtype uint16) (*dns.Msg, error) {
	t.Helper()
	c, err := Dial(t, nsPath, network, netip.AddrPortFrom(server, 53).String(), 2*time.Second)
	if err != nil {
		return nil, err
	}
	defer c.Close()
	req := new(dns.Msg)
	req.SetQuestion(dns.Fqdn(name), qtype)
	client := &dns.Client{Net: network, Timeout: 4 * time.Second}
	m, _, err := client.ExchangeWithConn(req, &dns.Conn{Conn: c})
	return m, err
}

// answers renders an answer as "RCODE value value ..." for comparing.
func answers(m *dns.Msg, err error) string {
	if err != nil {
		return "error: " + err.Error()
	}
	out := []string{dns.RcodeToString[m.Rcode]}
	for _, rr := range m.Answer {
		switch rr := rr.(type) {
		case *dns.A:
			out = append(out, rr.A.String())
		case *dns.AAAA:
			out = append(out, rr.AAAA.String())
		case *dns.PTR:
			out = append(out, rr.Ptr)
		default:
			out = append(out, rr.String())
		}
	}
	return strings.Join(out, " ")
}

// dnsNetwork creates a NAT network with embedded DNS (the AutomaticDNS
// policy), through the CLI's apply.
func dnsNetwork(t *testing.T, e *Env, name string, subnets ...string) *api.Network {
	t.Helper()
	var subs []string
	for _, s := range subnets {
		subs = append(subs, fmt.Sprintf(`{"IpAddressPrefix":%q}`, s))
	}
	doc := fmt.Sprintf(`{"Name":%q,"Type":"NAT","Ipams":[{"Type":"Static","Subnets":[%s]}],`+
		`"Policies":[{"Type":"AutomaticDNS","Settings":{"Enable":true}}],"SchemaVersion":{"Major":2,"Minor":0}}`, name, strings.Join(subs, ","))
	file := filepath.Join(e.Dir, name+".json")
	if err := os.WriteFile(file, []byte(doc), 0o644); err != nil {
		t.Fatal(err)
	}
	e.MustCLI("apply", "-f", file)
	n, err := e.Client().GetNetwork(ctx, name)
	if err != nil {
		t.Fatal(err)
	}
	return n
}

// attachDNS creates an endpoint with aliases on network, attached to a
// new namespace, and returns it with its namespace's path.
func attachDNS(t *testing.T, e *Env, network, name string, aliases ...string) *Attached {
	t.Helper()
	c := e.Client()
	ns, err := c.CreateNamespace(ctx, &api.Namespace{})
	if err != nil {
		t.Fatal(err)
	}
	ep, err := c.CreateEndpoint(ctx, &api.Endpoint{Name: name, HostComputeNetwork: network, HostComputeNamespace: ns.ID, DnsAliases: aliases})
	if err != nil {
		t.Fatal(err)
	}
	if ns, err = c.GetNamespace(ctx, ns.ID); err != nil {
		t.Fatal(err)
	}
	return &Attached{Endpoint: ep, Namespace: ns, Addr: netip.MustParseAddr(ep.IpConfigurations[0].IpAddress)}
}

func addrOfFamily(ep *api.Endpoint, v6 bool) netip.Addr {
	for _, c := range ep.IpConfigurations {
		if a := netip.MustParseAddr(c.IpAddress); a.Is6() == v6 {
			return a
		}
	}
	return netip.Addr{}
}

// TestEmbeddedDNS: endpoints of a network with AutomaticDNS resolve each
// other's names and aliases (A, AAAA, PTR, over UDP and TCP) at the
// network's gateway, which their resolv.conf names; other names go to the
// host's resolver (a fake one in the external namespace); endpoints of
// another network neither see the names nor may ask the gateway; a
// deleted endpoint's name is gone at once; and all of it holds after the
// daemon is killed and started again.
func TestEmbeddedDNS(t *testing.T) {
	e := NewEnv(t)
	up := startUpstream(t, e)
	front := dnsNetwork(t, e, "front", "10.61.0.0/24", "fd00:61::/64")
	dnsNetwork(t, e, "back", "10.62.0.0/24")
	gw4, gw6 := netip.MustParseAddr("10.61.0.1"), netip.MustParseAddr("fd00:61::1")
	backGW := netip.MustParseAddr("10.62.0.1")

	web := attachDNS(t, e, front.ID, "web", "www", "shop")
	db := attachDNS(t, e, front.ID, "db", "shop")
	other := attachDNS(t, e, "back", "other")
	webV6 := addrOfFamily(web.Endpoint, true)
	dbNS, otherNS := db.Namespace.NetNamespacePath, other.Namespace.NetNamespacePath

	// Endpoints' resolv.conf names the embedded server, with the host's
	// search list.
	resolv, err := os.ReadFile(filepath.Join(e.Dir, "etc-netns", "hn-"+db.Namespace.ID, "resolv.conf"))
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"nameserver 10.61.0.1\n", "nameserver fd00:61::1\n", "search example.test\n"} {
		if !strings.Contains(string(resolv), want) {
			t.Errorf("resolv.conf of db's namespace:\n%s\nwant %q", resolv, want)
		}
	}
	if strings.Contains(string(resolv), hostDNS) {
		t.Errorf("resolv.conf of db's namespace names the host's resolver:\n%s", resolv)
	}

	type question struct {
		from    string // namespace path
		server  netip.Addr
		network string
		name    string
		qtype   uint16
		want    string
	}
	check := func(stage string, qs []question) {
		t.Helper()
		for _, q := range qs {
			got := answers(ask(t, q.from, q.server, q.network, q.name, q.qtype))
			if got != q.want {
				t.Errorf("%s: %s %s over %s to %s: got %q, want %q", stage, dns.TypeToString[q.qtype], q.name, q.network, q.server, got, q.want)
			}
		}
	}
	webPTR, _ := dns.ReverseAddr(web.Addr.String())
	webPTR6, _ := dns.ReverseAddr(webV6.String())
	shop := []netip.Addr{web.Addr, db.Addr}
	slices.SortFunc(shop, netip.Addr.Compare)
	sameNetwork := func() []question {
		return []question{
			{dbNS, gw4, "udp", "web", dns.TypeA, "NOERROR " + web.Addr.String()},
			{dbNS, gw4, "tcp", "web", dns.TypeA, "NOERROR " + web.Addr.String()},
			{dbNS, gw4, "udp", "WWW", dns.TypeA, "NOERROR " + web.Addr.String()},
			{dbNS, gw4, "udp", "web", dns.TypeAAAA, "NOERROR " + webV6.String()},
			{dbNS, gw6, "udp", "web", dns.TypeA, "NOERROR " + web.Addr.String()},
			{dbNS, gw4, "udp", "shop", dns.TypeA, "NOERROR " + shop[0].String() + " " + shop[1].String()},
			{dbNS, gw4, "udp", webPTR, dns.TypePTR, "NOERROR web."},
			{dbNS, gw4, "udp", webPTR6, dns.TypePTR, "NOERROR web."},
			{dbNS, gw4, "udp", upstreamName, dns.TypeA, "NOERROR " + upstreamAnswer},
			{dbNS, gw4, "tcp", upstreamName, dns.TypeA, "NOERROR " + upstreamAnswer},
			{dbNS, gw4, "udp", "nosuch.example", dns.TypeA, "NXDOMAIN"},
			// Not across networks: back's endpoint asks its own gateway
			// (the name goes upstream, which does not know it), and is
			// refused at front's.
			{otherNS, backGW, "udp", "web", dns.TypeA, "NXDOMAIN"},
			{otherNS, backGW, "udp", "other", dns.TypeA, "NOERROR " + other.Addr.String()},
			{otherNS, gw4, "udp", "web", dns.TypeA, "REFUSED"},
			{dbNS, gw4, "udp", "other", dns.TypeA, "NXDOMAIN"},
		}
	}
	check("first start", sameNetwork())
	if !up.wasAsked(upstreamName) {
		t.Error("the fake upstream was never asked: forwarding went elsewhere")
	}
	if up.wasAsked("www") || up.wasAsked("shop") {
		t.Error("the upstream was asked for an endpoint's name")
	}

	// A real program's resolver (glibc, through the namespace's
	// resolv.conf, as `hostnet run` binds it).
	r := e.CLI("run", "--rm", "--network", "front", "--", "getent", "hosts", "www")
	if r.Code != 0 || !strings.Contains(r.Stdout, web.Addr.String()) && !strings.Contains(r.Stdout, webV6.String()) {
		t.Errorf("getent hosts www in a new endpoint of front: exit %d, stdout %q, stderr %q", r.Code, r.Stdout, r.Stderr)
	}

	// The README's flow: an endpoint made by `hostnet run` keeps its name.
	e.MustCLI("run", "--name", "app", "--network", "front", "--", "true")
	app, err := e.Client().GetEndpoint(ctx, "app")
	if err != nil {
		t.Fatal(err)
	}
	r = e.CLI("run", "--rm", "--network", "front", "--", "getent", "ahostsv4", "app")
	if r.Code != 0 || !strings.Contains(r.Stdout, app.IpConfigurations[0].IpAddress) {
		t.Errorf("getent ahostsv4 app: exit %d, stdout %q, stderr %q; want %s", r.Code, r.Stdout, r.Stderr, app.IpConfigurations[0].IpAddress)
	}

	// The daemon dies and comes back: the same answers, from sockets
	// bound again.
	e.Restart(true)
	check("after a restart", sameNetwork())

	// A deleted endpoint's name is gone for the very next question, and
	// so is its alias's address.
	if err := e.Client().DeleteEndpoint(ctx, web.Endpoint.ID); err != nil {
		t.Fatal(err)
	}
	check("after web's delete", []question{
		{dbNS, gw4, "udp", "web", dns.TypeA, "NXDOMAIN"},
		{dbNS, gw4, "udp", "www", dns.TypeAAAA, "NXDOMAIN"},
		{dbNS, gw4, "udp", "shop", dns.TypeA, "NOERROR " + db.Addr.String()},
		{dbNS, gw4, "udp", webPTR, dns.TypePTR, "NXDOMAIN"},
	})

	// An endpoint that comes is answered at once, and a network that
	// goes stops answering.
	web2 := attachDNS(t, e, front.ID, "web")
	check("after web comes back", []question{{dbNS, gw4, "udp", "web", dns.TypeA, "NOERROR " + web2.Addr.String()}})
	if err := e.Client().DeleteEndpoint(ctx, other.Endpoint.ID); err != nil {
		t.Fatal(err)
	}
	if err := e.Client().DeleteNetwork(ctx, "back"); err != nil {
		t.Fatal(err)
	}
	// Its address is free again (bound with IP_FREEBIND, as the bridge
	// that carried it is gone) once the server has followed, soon.
	deadline := time.Now().Add(5 * time.Second)
	for {
		var bindErr error
		In(t, e.HostNS, func() error {
			lc := net.ListenConfig{Control: func(_, _ string, c syscall.RawConn) error {
				return c.Control(func(fd uintptr) { _ = unix.SetsockoptInt(int(fd), unix.SOL_IP, unix.IP_FREEBIND, 1) })
			}}
			pc, err := lc.ListenPacket(context.Background(), "udp4", backGW.String()+":53")
			if err == nil {
				pc.Close()
			}
			bindErr = err
			return nil
		})
		if bindErr == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Errorf("the deleted network's DNS address is still bound 5s later: %v", bindErr)
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// TestEmbeddedDNSOff: a daemon started with --embedded-dns=false refuses
// a network that enables it, naming the policy, and accepts one that
// sends it disabled (as Windows clients do).
func TestEmbeddedDNSOff(t *testing.T) {
	e := NewEnv(t, "--embedded-dns=false")
	_, err := e.Client().CreateNetwork(ctx, &api.Network{Name: "on", Ipams: []api.Ipam{{Subnets: []api.Subnet{{IpAddressPrefix: "10.63.0.0/24"}}}},
		Policies: []api.Policy{{Type: api.AutomaticDNS, Settings: []byte(`{"Enable":true}`)}}})
	if err == nil || !strings.Contains(err.Error(), "Policies[0] (AutomaticDNS)") {
		t.Errorf("Enable with the server off: %v; want a refusal naming the policy", err)
	}
	if _, err := e.Client().CreateNetwork(ctx, &api.Network{Name: "off", Ipams: []api.Ipam{{Subnets: []api.Subnet{{IpAddressPrefix: "10.63.0.0/24"}}}},
		Policies: []api.Policy{{Type: api.AutomaticDNS, Settings: []byte(`{"Enable":false}`)}}}); err != nil {
		t.Errorf("Enable false: %v", err)
	}
}

// TestEmbeddedDNSDaemonElsewhere: with the daemon in a namespace of its
// own, the server still answers in the host namespace (its sockets are
// made there), and forwards from there.
func TestEmbeddedDNSDaemonElsewhere(t *testing.T) {
	e := NewTopology(t)
	e.DaemonNS = e.newNS("daemon.ns")
	e.Start()
	startUpstream(t, e)
	n := dnsNetwork(t, e, "front", "10.64.0.0/24")
	web := attachDNS(t, e, n.ID, "web")
	db := attachDNS(t, e, n.ID, "db")
	gw := netip.MustParseAddr("10.64.0.1")
	for _, q := range []struct {
		network, name, want string
	}{
		{"udp", "web", "NOERROR " + web.Addr.String()},
		{"tcp", "web", "NOERROR " + web.Addr.String()},
		{"udp", upstreamName, "NOERROR " + upstreamAnswer},
		{"tcp", upstreamName, "NOERROR " + upstreamAnswer},
	} {
		if got := answers(ask(t, db.Namespace.NetNamespacePath, gw, q.network, q.name, dns.TypeA)); got != q.want {
			t.Errorf("A %s over %s: got %q, want %q", q.name, q.network, got, q.want)
		}
	}
}
