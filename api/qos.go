package api

import "fmt"

// QoSSpec is a validated QOS policy: an endpoint's bandwidth caps, each
// direction seen from the endpoint. A zero rate is no cap.
type QoSSpec struct {
	// Outgoing caps what the endpoint sends (HNS's
	// MaximumOutgoingBandwidthInBytes), Incoming what it receives.
	Outgoing, Incoming Rate
}

// Rate is a token bucket: a rate in bytes per second and the bytes that
// may pass at once above it (0: the default, DefaultBurst).
type Rate struct {
	BytesPerSecond uint64
	BurstBytes     uint64
}

// Limited reports whether the rate caps anything.
func (r Rate) Limited() bool { return r.BytesPerSecond > 0 }

// Burst returns the burst the bucket holds: BurstBytes, or, when zero, a
// fiftieth of a second at the rate, at least MinBurstBytes (so that a
// TCP sender that shapes its own bursts reaches the rate).
func (r Rate) Burst() uint64 {
	if r.BurstBytes > 0 {
		return r.BurstBytes
	}
	return max(r.BytesPerSecond/50, MinBurstBytes)
}

// Bounds of a QOS policy.
const (
	// MinRateBytes is the smallest rate shaped: below it a single
	// full-sized frame takes more than a second to pass.
	MinRateBytes = 1000
	// MaxRateBytes is the largest (about 8 Tbit/s): above it the kernel's
	// token bucket loses precision.
	MaxRateBytes = 1 << 40
	// MinBurstBytes is the smallest burst: a bucket must hold a full
	// frame of the largest MTU hostnet sets, with room for a second.
	MinBurstBytes = 16 << 10
	// MaxBurstBytes bounds a burst (the kernel counts it in 32 bits of
	// scheduler ticks).
	MaxBurstBytes = 1 << 30
	// MaxBurstSeconds bounds a burst by its rate: the kernel holds the
	// time a burst takes at the rate in 32 bits of scheduler ticks
	// (about four minutes).
	MaxBurstSeconds = 60
)

// Any reports whether the spec caps anything.
func (q QoSSpec) Any() bool { return q.Outgoing.Limited() || q.Incoming.Limited() }

// ParseQoS validates the Settings of a QOS policy (Policies[index] of
// owner). Every value is bytes (per second for rates), 0 meaning
// unlimited; a burst without its rate is refused.
func ParseQoS(owner string, index int, p Policy) (QoSSpec, error) {
	var s QOSSettings
	if err := DecodeSettings(p.Settings, &s); err != nil {
		return QoSSpec{}, invalidPolicy(owner, index, QOS, "%v", err)
	}
	check := func(rateField string, rate uint64, burstField string, burst uint64) (Rate, error) {
		field := fmt.Sprintf("Policies[%d].Settings.", index)
		switch {
		case rate == 0 && burst != 0:
			return Rate{}, Invalid(CodeInvalidPolicy, "invalid %s: field %s%s: %d: a burst needs a rate (%s is 0, unlimited)",
				owner, field, burstField, burst, rateField)
		case rate == 0:
			return Rate{}, nil
		case rate < MinRateBytes || rate > MaxRateBytes:
			return Rate{}, Invalid(CodeInvalidPolicy, "invalid %s: field %s%s: %d: a rate is 0 (unlimited) or %d to %d bytes per second",
				owner, field, rateField, rate, MinRateBytes, uint64(MaxRateBytes))
		case burst != 0 && (burst < MinBurstBytes || burst > MaxBurstBytes):
			return Rate{}, Invalid(CodeInvalidPolicy, "invalid %s: field %s%s: %d: a burst is 0 (the default) or %d to %d bytes",
				owner, field, burstField, burst, MinBurstBytes, MaxBurstBytes)
		case burst/rate >= MaxBurstSeconds:
			return Rate{}, Invalid(CodeInvalidPolicy, "invalid %s: field %s%s: %d: a burst holds at most %d seconds at the rate (%s is %d)",
				owner, field, burstField, burst, MaxBurstSeconds, rateField, rate)
		}
		return Rate{BytesPerSecond: rate, BurstBytes: burst}, nil
	}
	out, err := check("MaximumOutgoingBandwidthInBytes", s.MaximumOutgoingBandwidthInBytes, "OutgoingBurstInBytes", s.OutgoingBurstInBytes)
	if err != nil {
		return QoSSpec{}, err
	}
	in, err := check("MaximumIncomingBandwidthInBytes", s.MaximumIncomingBandwidthInBytes, "IncomingBurstInBytes", s.IncomingBurstInBytes)
	if err != nil {
		return QoSSpec{}, err
	}
	return QoSSpec{Outgoing: out, Incoming: in}, nil
}
