package cni

import (
	"bytes"
	"encoding/json"

	"github.com/hostnet/hostnet/api"
)

// Bandwidth is the bandwidth capability's argument, as the CNI reference
// bandwidth plugin defines it: rates in bits per second, bursts in bits,
// each direction seen from the container (ingress: what it receives); a
// zero rate is no limit.
type Bandwidth struct {
	IngressRate  uint64 `json:"ingressRate"`
	IngressBurst uint64 `json:"ingressBurst"`
	EgressRate   uint64 `json:"egressRate"`
	EgressBurst  uint64 `json:"egressBurst"`
}

// bandwidthPolicy turns the bandwidth capability's argument into the
// endpoint's QOS policy (nil when it limits nothing). Bursts are raised to
// the smallest a token bucket passes full frames with and lowered to the
// largest the kernel holds at the rate (a runtime asks no limit of the
// burst with a huge one: kubelet sends 2^31-1 bits); a burst without a
// rate, and a rate outside what hostnet shapes, are refused.
func bandwidthPolicy(raw json.RawMessage) (*api.Policy, error) {
	if len(raw) == 0 || string(raw) == "null" {
		return nil, nil
	}
	var bw Bandwidth
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&bw); err != nil {
		return nil, configErr("runtimeConfig.bandwidth", "%v", err)
	}
	in, err := bucket("ingress", bw.IngressRate, bw.IngressBurst)
	if err != nil {
		return nil, err
	}
	out, err := bucket("egress", bw.EgressRate, bw.EgressBurst)
	if err != nil {
		return nil, err
	}
	if !in.Limited() && !out.Limited() {
		return nil, nil
	}
	settings, _ := json.Marshal(api.QOSSettings{
		MaximumOutgoingBandwidthInBytes: out.BytesPerSecond, OutgoingBurstInBytes: out.BurstBytes,
		MaximumIncomingBandwidthInBytes: in.BytesPerSecond, IncomingBurstInBytes: in.BurstBytes,
	})
	return &api.Policy{Type: api.QOS, Settings: settings}, nil
}

// bucket converts one direction from bits to bytes.
func bucket(dir string, rateBits, burstBits uint64) (api.Rate, error) {
	field := "runtimeConfig.bandwidth." + dir
	switch rate := rateBits / 8; {
	case rateBits == 0 && burstBits != 0:
		return api.Rate{}, configErr(field+"Burst", "%d: a burst needs a rate (%sRate is 0, no limit)", burstBits, dir)
	case rateBits == 0:
		return api.Rate{}, nil
	case rate < api.MinRateBytes || rate > api.MaxRateBytes:
		return api.Rate{}, configErr(field+"Rate", "%d bits per second: hostnet shapes %d to %d bits per second (0: no limit)",
			rateBits, 8*api.MinRateBytes, uint64(8*api.MaxRateBytes))
	default:
		burst := burstBits / 8
		if burst != 0 {
			burst = max(burst, api.MinBurstBytes)
			burst = min(burst, api.MaxBurstBytes, rate*(api.MaxBurstSeconds-1))
		}
		return api.Rate{BytesPerSecond: rate, BurstBytes: burst}, nil
	}
}
