package metrics

import (
	"context"
	"errors"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/hostnet/hostnet/api"
	"github.com/hostnet/hostnet/internal/dataplane"
	"github.com/hostnet/hostnet/internal/netmodel"
)

// scrape serves h and parses what a scrape of it answers.
func scrape(t *testing.T, h http.Handler) map[string]*dto.MetricFamily {
	t.Helper()
	srv := httptest.NewServer(h)
	defer srv.Close()
	resp, err := http.Get(srv.URL)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	p := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := p.TextToMetricFamilies(resp.Body)
	if err != nil {
		t.Fatalf("parse the scrape: %v", err)
	}
	return fams
}

// value returns the value of the family's metric with the given labels
// (a counter's, a gauge's, or a histogram's sample count), and whether
// there is one.
func value(fams map[string]*dto.MetricFamily, name string, labels map[string]string) (float64, bool) {
	f := fams[name]
	if f == nil {
		return 0, false
	}
next:
	for _, m := range f.Metric {
		have := map[string]string{}
		for _, l := range m.Label {
			have[l.GetName()] = l.GetValue()
		}
		for k, v := range labels {
			if have[k] != v {
				continue next
			}
		}
		switch {
		case m.Counter != nil:
			return m.Counter.GetValue(), true
		case m.Gauge != nil:
			return m.Gauge.GetValue(), true
		case m.Histogram != nil:
			return float64(m.Histogram.GetSampleCount()), true
		}
	}
	return 0, false
}

func TestScrape(t *testing.T) {
	const netID, epID = "5f0c2a8e-9b1d-4c3e-8f7a-0123456789ab", "0d9e8a7c-6b5a-4f3e-8d2c-1b0a9f8e7d6c"
	src := Source{
		Build:     "test",
		Followers: func() int { return 2 },
		Inventory: func(context.Context) (Inventory, error) {
			return Inventory{
				Networks: []api.Network{{ID: netID, Name: "nat", Type: api.NAT}, {ID: "n2", Name: "t", Type: api.Transparent}},
				Endpoints: []api.Endpoint{
					{ID: epID, Name: "web", HostComputeNetwork: netID, HostComputeNamespace: "ns1", HostInterfaceName: "hnv000000000001"},
					{ID: "e2", Name: "db", HostComputeNetwork: netID, HostInterfaceName: "hnv000000000002"},
					{ID: "e3", HostComputeNetwork: "n2", HostComputeNamespace: "ns1"},
				},
				Namespaces: []api.Namespace{{ID: "ns1", Type: api.NamespaceHostDefault}},
			}, nil
		},
		LinkCounters: func(_ context.Context, prefix string) (map[string]dataplane.LinkCounters, error) {
			if prefix != "hnv00000000000" {
				return nil, errors.New("unexpected prefix " + prefix)
			}
			return map[string]dataplane.LinkCounters{"hnv000000000001": {RxPackets: 3, TxPackets: 5, RxBytes: 300, TxBytes: 500}}, nil
		},
	}
	m := New(src, slog.New(slog.DiscardHandler))
	m.ObserveRequest("POST", "/networks", 201, 3*time.Millisecond)
	m.ObserveRequest("POST", "/networks", 201, time.Millisecond)
	m.ObserveRequest("GET", "/networks/{ref}", 404, time.Millisecond)
	m.ObserveEvent(api.Event{Type: api.EventTypeNetwork, Action: api.EventCreate})
	m.ObserveEvent(api.Event{Type: api.EventTypeDaemon, Action: "repair"})
	m.ObserveEvent(api.Event{Type: api.EventTypeDaemon, Action: "repair"})
	m.ObserveEvent(api.Event{Type: api.EventTypeDaemon, Action: "fail"})
	m.ObserveReconcile(time.Millisecond, nil)

	fake := dataplane.NewFake(dataplane.HostConfig{LinkPrefixes: []string{"hn"}})
	host := m.InstrumentHost(fake)
	bridge := netmodel.Link{Name: "hnbrtest", Kind: netmodel.LinkBridge, Up: true}
	if err := host.Apply(context.Background(), []netmodel.Object{bridge}, nil); err != nil {
		t.Fatal(err)
	}
	if err := host.Apply(context.Background(), nil, []netmodel.Object{bridge}); err != nil {
		t.Fatal(err)
	}
	if _, err := host.Observe(context.Background(), netmodel.Query{}); err != nil {
		t.Fatal(err)
	}

	fams := scrape(t, m.Handler())
	for _, c := range []struct {
		name   string
		labels map[string]string
		want   float64
	}{
		{"hostnet_networks", map[string]string{"type": "NAT"}, 1},
		{"hostnet_networks", map[string]string{"type": "Transparent"}, 1},
		{"hostnet_endpoints", map[string]string{"network_type": "NAT", "state": "attached"}, 1},
		{"hostnet_endpoints", map[string]string{"network_type": "NAT", "state": "detached"}, 1},
		{"hostnet_endpoints", map[string]string{"network_type": "Transparent", "state": "attached"}, 1},
		{"hostnet_namespaces", map[string]string{"type": "HostDefault"}, 1},
		{"hostnet_api_request_duration_seconds", map[string]string{"method": "POST", "route": "/networks", "code": "201"}, 2},
		{"hostnet_api_request_duration_seconds", map[string]string{"method": "GET", "route": "/networks/{ref}", "code": "404"}, 1},
		{"hostnet_events_total", map[string]string{"type": "network", "action": "create"}, 1},
		{"hostnet_reconcile_drift_found_total", nil, 3},
		{"hostnet_reconcile_drift_repaired_total", nil, 2},
		{"hostnet_reconcile_duration_seconds", map[string]string{"result": "ok"}, 1},
		{"hostnet_kernel_operation_duration_seconds", map[string]string{"operation": "apply", "result": "ok"}, 2},
		{"hostnet_kernel_operation_duration_seconds", map[string]string{"operation": "observe", "result": "ok"}, 1},
		{"hostnet_kernel_objects_applied_total", map[string]string{"kind": "link", "change": "ensure"}, 1},
		{"hostnet_kernel_objects_applied_total", map[string]string{"kind": "link", "change": "remove"}, 1},
		// The endpoint's view: what its host side received, it sent.
		{"hostnet_endpoint_transmit_packets_total", map[string]string{"endpoint": epID, "name": "web", "network": "nat"}, 3},
		{"hostnet_endpoint_receive_packets_total", map[string]string{"endpoint": epID}, 5},
		{"hostnet_endpoint_transmit_bytes_total", map[string]string{"endpoint": epID}, 300},
		{"hostnet_endpoint_receive_bytes_total", map[string]string{"endpoint": epID}, 500},
		{"hostnet_build_info", map[string]string{"version": "test"}, 1},
		{"hostnet_event_followers", nil, 2},
	} {
		if got, ok := value(fams, c.name, c.labels); !ok || got != c.want {
			t.Errorf("%s%v = %v (present %v), want %v", c.name, c.labels, got, ok, c.want)
		}
	}
	// An endpoint whose device is not there has no counters; no scrape
	// error is reported.
	if _, ok := value(fams, "hostnet_endpoint_receive_packets_total", map[string]string{"endpoint": "e2"}); ok {
		t.Error("counters of an endpoint whose device was not read")
	}
	if _, ok := fams["hostnet_scrape_errors"]; ok {
		t.Error("scrape errors reported")
	}
	if _, ok := fams["go_goroutines"]; !ok {
		t.Error("no Go runtime metrics")
	}
	for name, f := range fams {
		if f.GetType() == dto.MetricType_COUNTER && len(name) > 8 && name[:8] == "hostnet_" && name[len(name)-6:] != "_total" {
			t.Errorf("counter %s does not end in _total", name)
		}
	}
}

// A source that fails is reported as a scrape error, not a failed scrape.
func TestScrapeErrors(t *testing.T) {
	m := New(Source{Inventory: func(context.Context) (Inventory, error) { return Inventory{}, errors.New("store closed") }}, slog.New(slog.DiscardHandler))
	fams := scrape(t, m.Handler())
	if v, ok := value(fams, "hostnet_scrape_errors", map[string]string{"source": "inventory"}); !ok || v != 1 {
		t.Errorf("scrape errors: %v %v", v, ok)
	}
}

// The listener serves /metrics until its context ends, and nothing else.
func TestServe(t *testing.T) {
	m := New(Source{}, slog.New(slog.DiscardHandler))
	l, err := m.Listen("127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- m.Serve(ctx, l) }()
	base := "http://" + l.Addr().String()
	resp, err := http.Get(base + "/metrics")
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("GET /metrics: %v %v", resp, err)
	}
	resp.Body.Close()
	if resp, err := http.Get(base + "/networks"); err != nil || resp.StatusCode != 404 {
		t.Errorf("GET /networks: %v %v", resp, err)
	} else {
		resp.Body.Close()
	}
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("serve: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("serve did not return")
	}
	if _, err := net.DialTimeout("tcp", l.Addr().String(), time.Second); err == nil {
		t.Error("the listener is still open")
	}
}
