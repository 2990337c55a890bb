package daemon

import (
	"context"

	"github.com/hostnet/hostnet/api"
	"github.com/hostnet/hostnet/internal/leases"
	"github.com/hostnet/hostnet/internal/service"
)

// dhcpClients is the service's view of the DHCP clients (service.DHCP)
// over the manager that runs them.
type dhcpClients struct{ m *leases.Manager }

var _ service.DHCP = dhcpClients{}

func target(t service.DHCPTarget) leases.Target {
	return leases.Target{EndpointID: t.EndpointID, NSPath: t.NSPath, Interface: t.Interface, Hostname: t.Hostname, Lease: t.Lease}
}

func (d dhcpClients) Acquire(ctx context.Context, t service.DHCPTarget) (*api.DhcpLease, error) {
	return d.m.Acquire(ctx, target(t))
}

func (d dhcpClients) Keep(ts []service.DHCPTarget) {
	out := make([]leases.Target, len(ts))
	for i, t := range ts {
		out[i] = target(t)
	}
	d.m.Keep(out)
}

func (d dhcpClients) Stop(ctx context.Context, endpointID string, release bool) {
	d.m.Stop(ctx, endpointID, release)
}

// newLeases makes the daemon's DHCP client manager, which records what
// its clients get through svc (set once the service exists).
func newLeases(cfg Config, svc **service.Service) *leases.Manager {
	return leases.New(leases.Config{
		Logger:        cfg.Logger,
		Retransmit:    cfg.DHCPRetransmit,
		MaxRetransmit: cfg.DHCPRetransmit * 16,
		Report: func(ctx context.Context, t leases.Target, l *api.DhcpLease) error {
			_, err := (*svc).RecordLease(ctx, service.DHCPTarget{EndpointID: t.EndpointID, NSPath: t.NSPath, Interface: t.Interface, Hostname: t.Hostname}, l)
			return err
		},
	})
}
