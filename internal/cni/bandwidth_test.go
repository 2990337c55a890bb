package cni

import (
	"testing"

	"github.com/hostnet/hostnet/api"
)

// The bandwidth capability becomes the endpoint's QOS policy: bits to
// bytes, egress (what the container sends) as HNS's outgoing cap, bursts
// kept within what a token bucket holds.
func TestBandwidthPolicy(t *testing.T) {
	for _, c := range []struct{ bandwidth, want string }{
		{`{}`, ""},
		{`{"ingressRate":0,"ingressBurst":0,"egressRate":0,"egressBurst":0}`, ""},
		{`{"egressRate":32000000,"egressBurst":1048576}`, `{"MaximumOutgoingBandwidthInBytes":4000000,"OutgoingBurstInBytes":131072}`},
		{`{"ingressRate":16000000,"ingressBurst":800}`, `{"MaximumOutgoingBandwidthInBytes":0,"MaximumIncomingBandwidthInBytes":2000000,"IncomingBurstInBytes":16384}`},
		// kubelet's "no limit" burst, 2^31-1 bits, at 1 Mbit/s: 59 s at the rate.
		{`{"ingressRate":1000000,"ingressBurst":2147483647,"egressRate":1000000,"egressBurst":2147483647}`,
			`{"MaximumOutgoingBandwidthInBytes":125000,"MaximumIncomingBandwidthInBytes":125000,"OutgoingBurstInBytes":7375000,"IncomingBurstInBytes":7375000}`},
	} {
		p, err := bandwidthPolicy([]byte(c.bandwidth))
		if err != nil {
			t.Errorf("%s: %v", c.bandwidth, err)
			continue
		}
		got := ""
		if p != nil {
			got = string(p.Settings)
			if p.Type != api.QOS {
				t.Errorf("%s: a %s policy", c.bandwidth, p.Type)
			}
			if _, err := api.ParseQoS("endpoint", 0, *p); err != nil {
				t.Errorf("%s: the policy is refused: %v", c.bandwidth, err)
			}
		}
		if got != c.want {
			t.Errorf("%s:\n got %s\nwant %s", c.bandwidth, got, c.want)
		}
	}
}
