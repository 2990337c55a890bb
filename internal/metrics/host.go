package metrics

import (
	"context"
	"time"

	"github.com/hostnet/hostnet/internal/dataplane"
	"github.com/hostnet/hostnet/internal/netmodel"
	"github.com/hostnet/hostnet/internal/nftmodel"
)

// InstrumentHost returns h with its kernel operations timed and counted:
// the reconciler is given the result, and knows nothing of metrics.
func (m *Metrics) InstrumentHost(h dataplane.Host) dataplane.Host { return &host{Host: h, m: m} }

type host struct {
	dataplane.Host
	m *Metrics
}

func (h *host) observe(op string, start time.Time, err error) {
	h.m.kernelOps.WithLabelValues(op, result(err)).Observe(time.Since(start).Seconds())
}

// Apply is timed; its objects are counted by kind, and its nftables
// objects, sent as one batch, make a batch size.
func (h *host) Apply(ctx context.Context, ensure, remove []netmodel.Object) error {
	start := time.Now()
	err := h.Host.Apply(ctx, ensure, remove)
	h.observe("apply", start, err)
	nft := h.count(ensure, "ensure") + h.count(remove, "remove")
	if nft > 0 {
		h.m.nftBatch.Observe(float64(nft))
	}
	return err
}

// count counts objs by kind and returns how many are nftables objects.
func (h *host) count(objs []netmodel.Object, change string) int {
	byKind := map[netmodel.Kind]int{}
	nft := 0
	for _, o := range objs {
		k := o.Key().Kind
		byKind[k]++
		if k >= netmodel.KindNftSet {
			nft++
		}
	}
	for k, n := range byKind {
		h.m.kernelObjects.WithLabelValues(k.String(), change).Add(float64(n))
	}
	return nft
}

// SyncFirewall is timed; the tables' sets, maps, chains and rules make a
// batch size.
func (h *host) SyncFirewall(ctx context.Context, tables []*nftmodel.Table) error {
	start := time.Now()
	err := h.Host.SyncFirewall(ctx, tables)
	h.observe("sync_firewall", start, err)
	n := 0
	for _, t := range tables {
		n += len(t.Sets) + len(t.Maps) + len(t.Chains)
		for _, c := range t.Chains {
			n += len(c.Rules)
		}
	}
	if n > 0 {
		h.m.nftBatch.Observe(float64(n))
	}
	return err
}

func (h *host) Observe(ctx context.Context, q netmodel.Query) (*netmodel.Observation, error) {
	start := time.Now()
	obs, err := h.Host.Observe(ctx, q)
	h.observe("observe", start, err)
	return obs, err
}

func (h *host) FirewallDrift(ctx context.Context, tables []*nftmodel.Table) ([]string, error) {
	start := time.Now()
	left, err := h.Host.FirewallDrift(ctx, tables)
	h.observe("firewall_drift", start, err)
	return left, err
}

func (h *host) DeleteFlows(ctx context.Context, match func(netmodel.Flow) bool) (int, error) {
	start := time.Now()
	n, err := h.Host.DeleteFlows(ctx, match)
	h.observe("delete_flows", start, err)
	return n, err
}
