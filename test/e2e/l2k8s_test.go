package e2e

import (
	"context"
	"encoding/binary"
	"encoding/json"
	"net"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/google/nftables"
	"github.com/google/nftables/expr"
	"github.com/hostnet/hostnet/api"
	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// kubeProxyDNAT stands in for kube-proxy on a host: a table of its own
// that sends service vip:port to backend (`nft add rule ip kubeproxy
// prerouting ip daddr VIP tcp dport PORT dnat to BACKEND`).
func kubeProxyDNAT(t *testing.T, path string, vip netip.AddrPort, backend netip.AddrPort) {
	t.Helper()
	In(t, path, func() error {
		c, err := nftables.New()
		if err != nil {
			return err
		}
		tb := c.AddTable(&nftables.Table{Family: nftables.TableFamilyIPv4, Name: "kubeproxy"})
		ch := c.AddChain(&nftables.Chain{Name: "prerouting", Table: tb, Type: nftables.ChainTypeNAT,
			Hooknum: nftables.ChainHookPrerouting, Priority: nftables.ChainPriorityNATDest})
		port := func(p uint16) []byte { b := make([]byte, 2); binary.BigEndian.PutUint16(b, p); return b }
		c.AddRule(&nftables.Rule{Table: tb, Chain: ch, Exprs: []expr.Any{
			&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseNetworkHeader, Offset: 16, Len: 4},
			&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: vip.Addr().AsSlice()},
			&expr.Meta{Key: expr.MetaKeyL4PROTO, Register: 1},
			&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: []byte{unix.IPPROTO_TCP}},
			&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseTransportHeader, Offset: 2, Len: 2},
			&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: port(vip.Port())},
			&expr.Immediate{Register: 1, Data: backend.Addr().AsSlice()},
			&expr.Immediate{Register: 2, Data: port(backend.Port())},
			&expr.NAT{Type: expr.NATTypeDestNAT, Family: unix.NFPROTO_IPV4, RegAddrMin: 1, RegProtoMin: 2},
		}})
		return c.Flush()
	})
}

func policyOf(t *testing.T, typ api.PolicyType, settings any) api.Policy {
	t.Helper()
	b, err := json.Marshal(settings)
	if err != nil {
		t.Fatal(err)
	}
	return api.Policy{Type: typ, Settings: b}
}

// TestL2BridgeTakesKubernetesPolicies: the policies Kubernetes on Windows
// gives an l2bridge endpoint (OutBoundNAT with the cluster's ranges as
// exceptions; SDNRoute with NeedEncap for the service range and the
// host's address) work: a service address reaches its backend through
// the host's kube-proxy, traffic to an exception keeps the endpoint's
// address, other traffic leaves behind the host's. A NAT network refuses
// NeedEncap, naming the field.
func TestL2BridgeTakesKubernetesPolicies(t *testing.T) {
	seg := newSegment(t, 1)
	h := seg.hosts[0]
	n := h.l2Network(t, api.L2Bridge, "pods", segA, "192.0.2.128/26", routerA)
	serveHost(t, seg.router)
	const services = "10.96.0.0/12"
	vip := netip.MustParseAddrPort("10.96.0.10:80")
	kubeProxyDNAT(t, h.HostNS, vip, netip.AddrPortFrom(netip.MustParseAddr(routerA), 7000))

	ctx := context.Background()
	c := h.Client()
	policies := []api.Policy{
		policyOf(t, api.OutBoundNAT, api.OutboundNATSettings{Exceptions: []string{segA, services}}),
		policyOf(t, api.SDNRoute, api.SDNRouteSettings{DestinationPrefix: services, NeedEncap: true}),
		policyOf(t, api.SDNRoute, api.SDNRouteSettings{DestinationPrefix: h.addr.String() + "/32", NeedEncap: true}),
	}
	ns, err := c.CreateNamespace(ctx, &api.Namespace{})
	if err != nil {
		t.Fatal(err)
	}
	ep, err := c.CreateEndpoint(ctx, &api.Endpoint{Name: "pod", HostComputeNetwork: n.ID, Policies: policies})
	if err != nil {
		t.Fatalf("create an endpoint with Kubernetes' l2bridge policies: %v", err)
	}
	if _, err := c.Attach(ctx, ns.ID, ep.ID); err != nil {
		t.Fatal(err)
	}
	ep, err = c.GetEndpoint(ctx, ep.ID)
	if err != nil {
		t.Fatal(err)
	}
	pod := netip.MustParseAddr(ep.IpConfigurations[0].IpAddress)
	path := ns.NetNamespacePath

	seen := func(addr string) netip.Addr {
		t.Helper()
		for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(200 * time.Millisecond) {
			a, err := Talk(t, path, "tcp", addr)
			if err == nil {
				return a
			}
			if time.Now().After(deadline) {
				t.Fatalf("the pod does not reach %s: %v", addr, err)
			}
		}
	}
	if got := seen(vip.String()); got != pod {
		t.Errorf("the service (through the host's kube-proxy) saw %s, want the pod's %s (its backend is an exception)", got, pod)
	}
	if got := seen(netip.AddrPortFrom(netip.MustParseAddr(routerB), 7000).String()); got != netip.MustParseAddr("198.18.0.11") {
		t.Errorf("the router's other subnet saw %s, want the host's 198.18.0.11 (not an exception: masqueraded)", got)
	}
	// The service range is routed through the host: by the subnet's
	// gateway, whose MAC for the pod is the host's.
	svc := netip.MustParsePrefix(services)
	rs, err := seg.handle(path).RouteListFiltered(netlink.FAMILY_V4,
		&netlink.Route{Dst: &net.IPNet{IP: svc.Addr().AsSlice(), Mask: net.CIDRMask(svc.Bits(), 32)}}, netlink.RT_FILTER_DST)
	if err != nil || len(rs) != 1 || rs[0].Gw.String() != routerA {
		t.Errorf("the pod's route to the service range: %v (%v), want one via %s", rs, err, routerA)
	}

	// NeedEncap on a NAT network: a 400 that names the field.
	_, err = c.CreateEndpoint(ctx, &api.Endpoint{Name: "nat-pod", HostComputeNetwork: "nat", Policies: policies[1:2]})
	if api.CodeOf(err) != api.CodeRequestUnsupported || !strings.Contains(err.Error(), "Policies[0].Settings.NeedEncap") {
		t.Errorf("NeedEncap on a NAT network: %v, want a 400 naming Policies[0].Settings.NeedEncap", err)
	}
}
