package service

import (
	"context"
	"net/http"
	"net/netip"
	"strings"
	"testing"

	"github.com/hostnet/hostnet/api"
	"github.com/hostnet/hostnet/internal/netmodel"
)

// An explicit subnet that overlaps an address or a route of the host is
// refused, naming the clash, and leaves nothing behind; AllowHostOverlap
// lets it through, with the host's addresses kept from endpoints and its
// gateway refused when it is one of them.
func TestSubnetsClashingWithTheHostAreRefused(t *testing.T) {
	l := newLab(t)
	ctx := context.Background()
	l.host.SetHostAddressing(netmodel.HostAddressing{
		Addrs:  []netip.Prefix{netip.MustParsePrefix("10.202.0.5/24"), netip.MustParsePrefix("127.0.0.1/8")},
		Routes: []netip.Prefix{netip.MustParsePrefix("0.0.0.0/0"), netip.MustParsePrefix("10.202.0.0/24"), netip.MustParsePrefix("192.168.50.0/24")},
	})
	before := l.state()
	doc := func(name, subnet string, allow bool, routes ...api.Route) api.Network {
		return api.Network{Name: name, Type: api.NAT, AllowHostOverlap: allow,
			Ipams: []api.Ipam{{Type: "Static", Subnets: []api.Subnet{{IpAddressPrefix: subnet, Routes: routes}}}}}
	}
	for _, c := range []struct {
		subnet string
		want   string
	}{
		{"10.202.0.0/24", "the host's address 10.202.0.5/24"},
		{"10.202.0.0/16", "the host's route to 10.202.0.0/24"},
		{"192.168.50.128/25", "the host's route to 192.168.50.0/24"},
	} {
		_, err := l.svc.CreateNetwork(ctx, doc("clash", c.subnet, false))
		refused(t, "subnet "+c.subnet, err, http.StatusBadRequest, c.subnet, c.want, "AllowHostOverlap")
		if api.CodeOf(err) != api.CodeInvalidNetwork {
			t.Errorf("subnet %s: code %v", c.subnet, api.CodeOf(err))
		}
	}
	l.unchanged("a refused network", before)

	// The default route and other subnets clash with nothing.
	l.network("free", "10.9.0.0/24")

	// The override: the host's address is never an endpoint's.
	_, err := l.svc.CreateNetwork(ctx, doc("shadow", "10.202.0.0/24", true,
		api.Route{DestinationPrefix: "0.0.0.0/0", NextHop: "10.202.0.5"}))
	refused(t, "a gateway that is the host's address", err, http.StatusBadRequest, "gateway 10.202.0.5 is an address of the host")
	n, err := l.svc.CreateNetwork(ctx, doc("shadow", "10.202.0.0/29", true))
	l.must(err)
	var got []string
	for i := range 5 {
		ep, err := l.svc.CreateEndpoint(ctx, api.Endpoint{Name: "e" + string(rune('0'+i)), HostComputeNetwork: n.ID})
		if err != nil {
			got = append(got, "refused")
			break
		}
		got = append(got, ep.IpConfigurations[0].IpAddress)
	}
	if want := "10.202.0.2 10.202.0.3 10.202.0.4 10.202.0.6 refused"; strings.Join(got, " ") != want {
		t.Errorf("endpoints got %s, want %s", strings.Join(got, " "), want)
	}
	_, err = l.svc.CreateEndpoint(ctx, api.Endpoint{Name: "static", HostComputeNetwork: n.ID,
		IpConfigurations: []api.IPConfig{{IpAddress: "10.202.0.5"}}})
	if err == nil || !strings.Contains(err.Error(), "the host") {
		t.Errorf("an endpoint asking for the host's address: %v", err)
	}
	l.check()
}
