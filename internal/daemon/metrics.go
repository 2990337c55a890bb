package daemon

import (
	"context"
	"log/slog"
	"net"
	"time"

	"github.com/hostnet/hostnet/internal/dataplane"
	"github.com/hostnet/hostnet/internal/metrics"
	"github.com/hostnet/hostnet/internal/service"
)

// observability is the daemon's opt-in Prometheus metrics (-metrics-listen):
// a nil *observability is metrics off, and each of its methods then leaves
// what it is given as it is.
type observability struct {
	m    *metrics.Metrics
	l    net.Listener
	log  *slog.Logger
	svc  *service.Service // set by observe, before the listener serves
	stop context.CancelFunc
	done chan struct{}
}

// openMetrics opens the metrics listener when cfg asks for one: a bad or
// taken address fails the start.
func (cfg Config) openMetrics(log *slog.Logger, host *dataplane.Linux) (*observability, error) {
	if cfg.MetricsListen == "" {
		return nil, nil
	}
	o := &observability{log: log}
	o.m = metrics.New(metrics.Source{
		Build: cfg.Build,
		Inventory: func(ctx context.Context) (metrics.Inventory, error) {
			var inv metrics.Inventory
			var err error
			if inv.Networks, err = o.svc.ListNetworks(ctx, ""); err != nil {
				return inv, err
			}
			if inv.Endpoints, err = o.svc.ListEndpoints(ctx, ""); err != nil {
				return inv, err
			}
			inv.Namespaces, err = o.svc.ListNamespaces(ctx, "")
			return inv, err
		},
		LinkCounters: host.LinkCounters,
		Followers:    func() int { return o.svc.Followers() },
	}, log)
	l, err := o.m.Listen(cfg.MetricsListen)
	if err != nil {
		return nil, err
	}
	o.l = l
	return o, nil
}

// host returns h, instrumented.
func (o *observability) host(h dataplane.Host) dataplane.Host {
	if o == nil {
		return h
	}
	return o.m.InstrumentHost(h)
}

// timed returns resync, its passes timed.
func (o *observability) timed(resync func(context.Context, string) error) func(context.Context, string) error {
	if o == nil {
		return resync
	}
	return func(ctx context.Context, reason string) error {
		start := time.Now()
		err := resync(ctx, reason)
		o.m.ObserveReconcile(time.Since(start), err)
		return err
	}
}

// observe counts svc's events, and reads its objects at each scrape.
func (o *observability) observe(svc *service.Service) {
	if o == nil {
		return
	}
	o.svc = svc
	svc.Observe(o.m.ObserveEvent)
}

// requests is the server's request observer, or nil.
func (o *observability) requests() func(method, route string, status int, took time.Duration) {
	if o == nil {
		return nil
	}
	return o.m.ObserveRequest
}

// serve serves the metrics until close.
func (o *observability) serve() {
	if o == nil {
		return
	}
	ctx, stop := context.WithCancel(context.Background())
	o.stop, o.done = stop, make(chan struct{})
	go func() {
		defer close(o.done)
		if err := o.m.Serve(ctx, o.l); err != nil {
			o.log.Warn("the metrics listener failed", "addr", o.l.Addr().String(), "err", err)
		}
	}()
	o.log.Info("metrics served", "addr", "http://"+o.l.Addr().String()+"/metrics")
}

// close stops serving the metrics, and closes the listener.
func (o *observability) close() {
	if o == nil {
		return
	}
	if o.stop != nil {
		o.stop()
		<-o.done
		return
	}
	o.l.Close()
}
