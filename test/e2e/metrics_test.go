package e2e

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os/exec"
	"strings"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
)

// metricsAddr is where the tests' daemons serve their metrics: the
// loopback of the test's own host namespace.
const metricsAddr = "127.0.0.1:9360"

// scrapeMetrics fetches /metrics from inside the host namespace and
// parses it with Prometheus' text parser.
func (e *Env) scrapeMetrics(t *testing.T) map[string]*dto.MetricFamily {
	t.Helper()
	hc := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{
		DisableKeepAlives: true,
		DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
			var c net.Conn
			var err error
			// The socket is made inside the namespace and stays there.
			In(t, e.HostNS, func() error {
				c, err = (&net.Dialer{Timeout: 5 * time.Second}).DialContext(ctx, network, addr)
				return nil
			})
			return c, err
		},
	}}
	resp, err := hc.Get("http://" + metricsAddr + "/metrics")
	if err != nil {
		t.Fatalf("scrape: %v", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != 200 {
		b, _ := io.ReadAll(resp.Body)
		t.Fatalf("scrape: %s: %s", resp.Status, b)
	}
	p := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := p.TextToMetricFamilies(resp.Body)
	if err != nil {
		t.Fatalf("parse the scrape: %v", err)
	}
	return fams
}

// metricValue sums the values of the family's metrics whose labels include
// labels (a histogram's sample counts); ok is false when none has them.
func metricValue(fams map[string]*dto.MetricFamily, name string, labels map[string]string) (sum float64, ok bool) {
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
		ok = true
		switch {
		case m.Counter != nil:
			sum += m.Counter.GetValue()
		case m.Gauge != nil:
			sum += m.Gauge.GetValue()
		case m.Histogram != nil:
			sum += float64(m.Histogram.GetSampleCount())
		}
	}
	return sum, ok
}

// A daemon with -metrics-listen serves Prometheus metrics on the host
// namespace's loopback: the objects it holds, its API and kernel work,
// and each endpoint's traffic, which moves as real packets flow; a repair
// of damage by hand is counted as drift found and repaired.
func TestMetricsScrape(t *testing.T) {
	e := NewEnv(t, "-metrics-listen="+metricsAddr)
	a := e.AttachNew("nat", "ma")
	b := e.AttachNew("nat", "mb")
	Serve(t, b.Namespace.NetNamespacePath, "tcp", ":80")

	before := e.scrapeMetrics(t)
	for _, c := range []struct {
		name   string
		labels map[string]string
		want   float64
	}{
		{"hostnet_networks", map[string]string{"type": "NAT"}, 1},
		{"hostnet_endpoints", map[string]string{"network_type": "NAT", "state": "attached"}, 2},
		{"hostnet_namespaces", nil, 2},
	} {
		if got, ok := metricValue(before, c.name, c.labels); !ok || got != c.want {
			t.Errorf("%s%v = %v (present %v), want %v", c.name, c.labels, got, ok, c.want)
		}
	}
	for _, c := range []struct {
		name   string
		labels map[string]string
	}{
		{"hostnet_api_request_duration_seconds", map[string]string{"method": "POST", "route": "/endpoints", "code": "201"}},
		{"hostnet_api_request_duration_seconds", map[string]string{"method": "PATCH", "route": "/namespaces/{ref}", "code": "200"}},
		{"hostnet_kernel_operation_duration_seconds", map[string]string{"operation": "apply", "result": "ok"}},
		{"hostnet_kernel_objects_applied_total", map[string]string{"kind": "link", "change": "ensure"}},
		{"hostnet_nftables_batch_objects", nil},
		{"hostnet_events_total", map[string]string{"type": "endpoint", "action": "create"}},
		{"hostnet_build_info", nil},
		{"process_cpu_seconds_total", nil},
	} {
		if got, ok := metricValue(before, c.name, c.labels); !ok || got <= 0 {
			t.Errorf("%s%v = %v (present %v), want > 0", c.name, c.labels, got, ok)
		}
	}
	labelsOf := func(at *Attached) map[string]string {
		return map[string]string{"endpoint": at.Endpoint.ID, "name": at.Endpoint.Name, "network": "nat"}
	}
	txBefore, ok := metricValue(before, "hostnet_endpoint_transmit_packets_total", labelsOf(a))
	if !ok {
		t.Fatalf("no traffic counters of endpoint ma: %v", before["hostnet_endpoint_transmit_packets_total"])
	}
	rxBytesBefore, _ := metricValue(before, "hostnet_endpoint_receive_bytes_total", labelsOf(b))

	const talks = 5
	for i := range talks {
		if _, err := Talk(t, a.Namespace.NetNamespacePath, "tcp", b.Addr.String()+":80"); err != nil {
			t.Fatalf("talk %d: %v", i, err)
		}
	}
	after := e.scrapeMetrics(t)
	// Each exchange is a TCP connection: at least 5 packets a side.
	txAfter, _ := metricValue(after, "hostnet_endpoint_transmit_packets_total", labelsOf(a))
	if txAfter-txBefore < 5*talks {
		t.Errorf("endpoint ma transmitted %v packets, then %v: want %d more", txBefore, txAfter, 5*talks)
	}
	rxBytesAfter, _ := metricValue(after, "hostnet_endpoint_receive_bytes_total", labelsOf(b))
	t.Logf("endpoint ma transmitted %v packets, then %v; mb received %v bytes, then %v", txBefore, txAfter, rxBytesBefore, rxBytesAfter)
	if testing.Verbose() {
		var names []string
		for name, f := range after {
			if strings.HasPrefix(name, "hostnet_") {
				names = append(names, fmt.Sprintf("%s (%s, %d series)", name, f.GetType(), len(f.Metric)))
			}
		}
		t.Logf("hostnet's metrics: %s", strings.Join(names, "; "))
	}
	if rxBytesAfter-rxBytesBefore < float64(talks*len("hello\n")) {
		t.Errorf("endpoint mb received %v bytes, then %v", rxBytesBefore, rxBytesAfter)
	}

	// Damage by hand: the repair is counted.
	e.deleteLink(t, b.Endpoint.HostInterfaceName)
	var repaired float64
	for deadline := time.Now().Add(20 * time.Second); time.Now().Before(deadline); time.Sleep(200 * time.Millisecond) {
		if repaired, _ = metricValue(e.scrapeMetrics(t), "hostnet_reconcile_drift_repaired_total", nil); repaired > 0 {
			break
		}
	}
	if repaired == 0 {
		t.Errorf("no drift repaired counted within 20 s of deleting %s", b.Endpoint.HostInterfaceName)
	}
	fams := e.scrapeMetrics(t)
	if found, _ := metricValue(fams, "hostnet_reconcile_drift_found_total", nil); found < repaired {
		t.Errorf("drift found %v < repaired %v", found, repaired)
	}
	if n, ok := metricValue(fams, "hostnet_reconcile_duration_seconds", nil); !ok || n == 0 {
		t.Error("no self-repair pass timed")
	}

	// hostnet graph draws what the daemon holds (DOT; SVG only with dot).
	dot := e.MustCLI("graph")
	for _, want := range []string{"digraph hostnet {", "network nat", "endpoint ma", "endpoint mb", `"namespace:` + a.Namespace.ID + `"`} {
		if !strings.Contains(dot, want) {
			t.Errorf("graph lacks %q:\n%s", want, dot)
		}
	}
	svg := e.CLI("graph", "-o", "svg")
	if _, err := exec.LookPath("dot"); err == nil {
		if svg.Code != 0 || !strings.Contains(svg.Stdout, "<svg") || !strings.Contains(svg.Stdout, "endpoint ma") {
			t.Errorf("graph -o svg with Graphviz: exit %d: %s\n%.300s", svg.Code, svg.Stderr, svg.Stdout)
		}
	} else if svg.Code == 0 || !strings.Contains(svg.Stderr, "Graphviz") {
		t.Errorf("graph -o svg without Graphviz: exit %d: %s", svg.Code, svg.Stderr)
	}
}

// Without -metrics-listen, nothing listens.
func TestMetricsOffByDefault(t *testing.T) {
	e := NewEnv(t)
	In(t, e.HostNS, func() error {
		c, err := net.DialTimeout("tcp", metricsAddr, time.Second)
		if err == nil {
			c.Close()
			return fmt.Errorf("something listens on %s", metricsAddr)
		}
		return nil
	})
}
