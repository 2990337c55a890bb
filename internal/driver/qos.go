package driver

import "github.com/hostnet/hostnet/internal/netmodel"

// IFBPrefix starts the name of an endpoint's ifb device, through which
// what the endpoint sends is shaped.
const IFBPrefix = "hnq"

// IFBName is the device name of an endpoint's ifb device.
func IFBName(endpointID string) string { return IFBPrefix + ShortHash(endpointID, 12) }

// Shaping returns what caps an endpoint's bandwidth (its QOS policy) on
// port, its device in the host namespace, outside the endpoint's reach:
// what it receives is what the host sends out of port (a token bucket on
// port's egress); what it sends arrives on port, and is redirected to an
// ifb device of its own whose egress holds the bucket. Nothing when the
// endpoint has no cap. The ifb device has port's MTU (mtu).
func Shaping(ep *Endpoint, port string, mtu int) []netmodel.Object {
	if ep.QoS == nil {
		return nil
	}
	var out []netmodel.Object
	if r := ep.QoS.Incoming; r.Limited() {
		out = append(out, netmodel.Shaper{Link: port, Direction: netmodel.TCEgress, Rate: r.BytesPerSecond, Burst: r.Burst()})
	}
	if r := ep.QoS.Outgoing; r.Limited() {
		ifb := IFBName(ep.ID)
		out = append(out,
			netmodel.Link{Name: ifb, Kind: netmodel.LinkIFB, MTU: mtu, Up: true, IPv6: netmodel.IPv6Off},
			netmodel.Shaper{Link: port, Direction: netmodel.TCIngress, IFB: ifb, Rate: r.BytesPerSecond, Burst: r.Burst()})
	}
	return out
}
