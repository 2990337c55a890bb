package service

import (
	"context"
	"encoding/json"
	"strings"
	"testing"

	"github.com/hostnet/hostnet/api"
	"github.com/hostnet/hostnet/internal/netmodel"
)

func qos(settings string) api.Policy {
	return api.Policy{Type: api.QOS, Settings: json.RawMessage(settings)}
}

// A QOS policy reaches the kernel as shapers on the endpoint's port,
// changes with an Update, goes with a cap of 0; an endpoint takes one.
func TestQoSPolicy(t *testing.T) {
	l := newLab(t)
	ctx := context.Background()
	l.network("blue", "10.7.0.0/24")
	ep, _ := l.attached("blue", "web", qos(`{"MaximumOutgoingBandwidthInBytes":4000000,"MaximumIncomingBandwidthInBytes":1000000}`))
	shapers := func() string {
		var out []string
		for _, s := range l.host.Shapers(netmodel.Host) {
			out = append(out, s.String())
		}
		return strings.Join(out, "; ")
	}
	if got := shapers(); !strings.Contains(got, "tc "+ep.HostInterfaceName+" ingress via hnq") || !strings.Contains(got, "rate 4000000B/s") ||
		!strings.Contains(got, "egress tbf rate 1000000B/s") {
		t.Fatalf("shapers: %s", got)
	}
	l.check()
	update := func(settings string) error {
		_, err := l.svc.ModifyEndpoint(ctx, "web", api.ModifyRequest{ResourceType: api.ResourcePolicy, RequestType: api.RequestUpdate,
			Settings: json.RawMessage(`{"Policies":[` + mustJSON(qos(settings)) + `]}`)})
		return err
	}
	l.must(update(`{"MaximumOutgoingBandwidthInBytes":2000000}`))
	if got := shapers(); got != "tc "+ep.HostInterfaceName+" ingress via hnq"+ep.HostInterfaceName[3:]+" tbf rate 2000000B/s burst 40000B" {
		t.Fatalf("after the update: %s", got)
	}
	l.check()
	l.must(update(`{"MaximumOutgoingBandwidthInBytes":0}`))
	if got := shapers(); got != "" {
		t.Fatalf("with no cap: %s", got)
	}
	if strings.Contains(l.dump(), "hnq") {
		t.Fatalf("the ifb device stays with no cap:\n%s", l.dump())
	}
	l.check()
	_, err := l.svc.ModifyEndpoint(ctx, "web", api.ModifyRequest{ResourceType: api.ResourcePolicy, RequestType: api.RequestAdd,
		Settings: json.RawMessage(`{"Policies":[` + mustJSON(qos(`{"MaximumOutgoingBandwidthInBytes":5000}`)) + `]}`)})
	if api.CodeOf(err) != api.CodeInvalidPolicy || !strings.Contains(err.Error(), "at most one QOS policy") {
		t.Errorf("a second QOS policy: %v", err)
	}
}

func mustJSON(v any) string {
	b, err := json.Marshal(v)
	if err != nil {
		panic(err)
	}
	return string(b)
}
