package metrics

import (
	"context"
	"sort"

	"github.com/prometheus/client_golang/prometheus"
	"log/slog"

	"github.com/hostnet/hostnet/api"
)

// The metrics read at scrape time.
var (
	networksDesc  = prometheus.NewDesc("hostnet_networks", "Networks held, by type.", []string{"type"}, nil)
	endpointsDesc = prometheus.NewDesc("hostnet_endpoints", "Endpoints held, by network type and state (attached to a namespace, or detached).",
		[]string{"network_type", "state"}, nil)
	namespacesDesc   = prometheus.NewDesc("hostnet_namespaces", "Namespaces held, by type.", []string{"type"}, nil)
	scrapeErrorsDesc = prometheus.NewDesc("hostnet_scrape_errors", "Sources this scrape could not read (1 each): inventory, link_counters.", []string{"source"}, nil)

	endpointLabels = []string{"endpoint", "name", "network"}
	// Counted on the endpoint's host-side device, seen from the endpoint:
	// what the host side received, the endpoint transmitted.
	epRxPackets = prometheus.NewDesc("hostnet_endpoint_receive_packets_total", "Packets the endpoint received (sent to it through its host-side device).", endpointLabels, nil)
	epTxPackets = prometheus.NewDesc("hostnet_endpoint_transmit_packets_total", "Packets the endpoint transmitted (received by its host-side device).", endpointLabels, nil)
	epRxBytes   = prometheus.NewDesc("hostnet_endpoint_receive_bytes_total", "Bytes the endpoint received (sent to it through its host-side device).", endpointLabels, nil)
	epTxBytes   = prometheus.NewDesc("hostnet_endpoint_transmit_bytes_total", "Bytes the endpoint transmitted (received by its host-side device).", endpointLabels, nil)
)

// inventoryCollector reads the object counts and the endpoints' traffic
// at each scrape.
type inventoryCollector struct {
	src Source
	log *slog.Logger
}

func (c *inventoryCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{networksDesc, endpointsDesc, namespacesDesc, scrapeErrorsDesc, epRxPackets, epTxPackets, epRxBytes, epTxBytes} {
		ch <- d
	}
}

func (c *inventoryCollector) Collect(ch chan<- prometheus.Metric) {
	if c.src.Inventory == nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), ScrapeTimeout)
	defer cancel()
	inv, err := c.src.Inventory(ctx)
	if err != nil {
		c.log.Warn("metrics: read the objects", "err", err)
		ch <- prometheus.MustNewConstMetric(scrapeErrorsDesc, prometheus.GaugeValue, 1, "inventory")
		return
	}
	netType := map[string]api.NetworkType{}
	networks := map[string]float64{}
	for _, n := range inv.Networks {
		netType[n.ID] = n.Type
		networks[string(n.Type)]++
	}
	emit(ch, networksDesc, networks)
	endpoints := map[[2]string]float64{}
	for _, e := range inv.Endpoints {
		state := "detached"
		if e.HostComputeNamespace != "" {
			state = "attached"
		}
		endpoints[[2]string{string(netType[e.HostComputeNetwork]), state}]++
	}
	for k, v := range endpoints {
		ch <- prometheus.MustNewConstMetric(endpointsDesc, prometheus.GaugeValue, v, k[0], k[1])
	}
	namespaces := map[string]float64{}
	for _, n := range inv.Namespaces {
		namespaces[string(n.Type)]++
	}
	emit(ch, namespacesDesc, namespaces)
	c.collectTraffic(ctx, ch, inv)
}

// collectTraffic reports each endpoint's counters, read from its
// host-side device (api.Endpoint.HostInterfaceName). An endpoint without
// one (a macvlan endpoint has no host side) has none.
func (c *inventoryCollector) collectTraffic(ctx context.Context, ch chan<- prometheus.Metric, inv Inventory) {
	if c.src.LinkCounters == nil {
		return
	}
	names := map[string]string{}
	for _, n := range inv.Networks {
		names[n.ID] = n.Name
	}
	counters, err := c.src.LinkCounters(ctx, commonPrefix(inv.Endpoints))
	if err != nil {
		c.log.Warn("metrics: read the endpoints' counters", "err", err)
		ch <- prometheus.MustNewConstMetric(scrapeErrorsDesc, prometheus.GaugeValue, 1, "link_counters")
		return
	}
	for _, e := range inv.Endpoints {
		lc, ok := counters[e.HostInterfaceName]
		if e.HostInterfaceName == "" || !ok {
			continue
		}
		labels := []string{e.ID, e.Name, names[e.HostComputeNetwork]}
		// What the host side received, the endpoint sent.
		ch <- prometheus.MustNewConstMetric(epTxPackets, prometheus.CounterValue, float64(lc.RxPackets), labels...)
		ch <- prometheus.MustNewConstMetric(epRxPackets, prometheus.CounterValue, float64(lc.TxPackets), labels...)
		ch <- prometheus.MustNewConstMetric(epTxBytes, prometheus.CounterValue, float64(lc.RxBytes), labels...)
		ch <- prometheus.MustNewConstMetric(epRxBytes, prometheus.CounterValue, float64(lc.TxBytes), labels...)
	}
}

// commonPrefix is the longest prefix of the endpoints' host-side device
// names: the devices to read (all of hostnet's ports share one).
func commonPrefix(eps []api.Endpoint) string {
	var names []string
	for _, e := range eps {
		if e.HostInterfaceName != "" {
			names = append(names, e.HostInterfaceName)
		}
	}
	if len(names) == 0 {
		return "\x00" // matches no device
	}
	sort.Strings(names)
	first, last := names[0], names[len(names)-1]
	i := 0
	for i < len(first) && i < len(last) && first[i] == last[i] {
		i++
	}
	return first[:i]
}

func emit(ch chan<- prometheus.Metric, d *prometheus.Desc, counts map[string]float64) {
	for k, v := range counts {
		ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v, k)
	}
}
