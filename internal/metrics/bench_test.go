package metrics

import (
	"context"
	"fmt"
	"log/slog"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/hostnet/hostnet/api"
	"github.com/hostnet/hostnet/internal/dataplane"
)

// BenchmarkScrape measures a whole scrape (collect and encode) of a host
// with 5,000 endpoints, each with its four traffic series, against the
// baseline of a scrape without them (the Go runtime's and the process's
// metrics only); it reports the ratio.
func BenchmarkScrape(b *testing.B) {
	const n = 5000
	inv := Inventory{Networks: []api.Network{{ID: "n", Name: "nat", Type: api.NAT}}}
	counters := map[string]dataplane.LinkCounters{}
	for i := range n {
		dev := fmt.Sprintf("hnv%012d", i)
		inv.Endpoints = append(inv.Endpoints, api.Endpoint{ID: fmt.Sprintf("e%d", i), Name: fmt.Sprintf("ep%d", i), HostComputeNetwork: "n",
			HostComputeNamespace: "ns", HostInterfaceName: dev})
		counters[dev] = dataplane.LinkCounters{RxPackets: uint64(i), TxPackets: 2, RxBytes: 3, TxBytes: 4}
	}
	full := New(Source{
		Inventory:    func(context.Context) (Inventory, error) { return inv, nil },
		LinkCounters: func(context.Context, string) (map[string]dataplane.LinkCounters, error) { return counters, nil },
	}, slog.New(slog.DiscardHandler))
	bare := New(Source{}, slog.New(slog.DiscardHandler))
	scrapeOnce := func(m *Metrics) int {
		rec := httptest.NewRecorder()
		m.Handler().ServeHTTP(rec, httptest.NewRequest("GET", "/metrics", nil))
		if rec.Code != 200 {
			b.Fatalf("scrape: %d", rec.Code)
		}
		return rec.Body.Len()
	}
	// Timed by hand: testing.Benchmark cannot nest in a benchmark.
	measure := func(m *Metrics, runs int) (nsPerScrape float64, size int) {
		start := time.Now()
		for range runs {
			size = scrapeOnce(m)
		}
		return float64(time.Since(start).Nanoseconds()) / float64(runs), size
	}
	base, _ := measure(bare, 20)
	b.ResetTimer()
	fig, size := measure(full, b.N)
	b.StopTimer()
	b.ReportMetric(fig/1e6, "ms/scrape")
	b.ReportMetric(base/1e6, "baseline-ms/scrape")
	b.ReportMetric(fig/base, "ratio")
	b.ReportMetric(float64(size)/1024, "KiB")
}
