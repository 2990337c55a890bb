package nat

import (
	"net"
	"net/netip"
	"strings"
	"testing"

	"github.com/hostnet/hostnet/api"
	"github.com/hostnet/hostnet/internal/driver"
	"github.com/hostnet/hostnet/internal/netmodel"
)

// TestPlanQoS pins what a QOS policy adds to an endpoint's unit: the
// token buckets on its host-side port (outgoing through an ifb device of
// its own), and nothing when no direction is capped.
func TestPlanQoS(t *testing.T) {
	n := &driver.Network{ID: "a", Name: "a", Spec: &api.NetworkSpec{Type: api.NAT, Subnets: []api.SubnetSpec{subnet("172.16.0.0/20")}}}
	ep := func(q *api.QoSSpec) *driver.Endpoint {
		return &driver.Endpoint{ID: "web", NS: netmodel.NS{Path: "/run/hostnet/netns/web"}, Interface: "eth0",
			MAC: net.HardwareAddr{2, 0, 0, 0, 0, 2}, Addrs: []netip.Prefix{netip.MustParsePrefix("172.16.0.2/20")}, QoS: q}
	}
	var b strings.Builder
	for _, c := range []struct {
		name string
		qos  *api.QoSSpec
	}{
		{"outgoing (HNS MaximumOutgoingBandwidthInBytes)", &api.QoSSpec{Outgoing: api.Rate{BytesPerSecond: 4_000_000}}},
		{"both ways with bursts (CNI bandwidth)", &api.QoSSpec{Outgoing: api.Rate{BytesPerSecond: 1_000_000, BurstBytes: 65536},
			Incoming: api.Rate{BytesPerSecond: 2_500_000, BurstBytes: 131072}}},
	} {
		b.WriteString("# " + c.name + "\n")
		for _, o := range New().PlanEndpoint(n, ep(c.qos), driver.HostFacts{}).Objects {
			switch o := o.(type) {
			case netmodel.Shaper:
				b.WriteString(o.String() + "\n")
			case netmodel.Link:
				if o.Kind == netmodel.LinkIFB {
					b.WriteString(o.String() + "\n")
				}
			}
		}
	}
	golden(t, "qos.golden", b.String())
	plain := New().PlanEndpoint(n, ep(nil), driver.HostFacts{})
	for _, o := range plain.Objects {
		if o.Key().Kind == netmodel.KindTC {
			t.Errorf("an endpoint without QoS has %s", o)
		}
	}
}
