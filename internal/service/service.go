// Package service is hostnet's orchestrator. Every mutation goes the same
// way: validate (nothing changes on bad input) -> decide and record the
// intent in one store transaction (names, addresses, records, and an
// outbox entry of what must follow) -> plan the owners whose desired
// state changed (drivers) -> apply the plans (the reconciler) -> answer.
// A failure in the kernel rolls the intent back. The service knows no
// kernel object: it knows records, pools and owners; drivers know
// bridges, the reconciler the kernel.
package service

import (
	"errors"
	"log/slog"
	"sync"
	"time"

	"github.com/google/uuid"
	"github.com/hostnet/hostnet/api"
	"github.com/hostnet/hostnet/internal/driver"
	"github.com/hostnet/hostnet/internal/reconcile"
	"github.com/hostnet/hostnet/internal/store"
)

// Config is what the service runs on.
type Config struct {
	Store store.Store
	// Reconciler applies the desired state to the host.
	Reconciler *reconcile.Reconciler
	// Drivers realise the network types, by type.
	Drivers map[api.NetworkType]driver.Driver

	// NetnsDir is where hostnet bind-mounts the namespaces it creates.
	NetnsDir string
	// NetnsLinkDir, when set, gets a symlink hn-<ID> to each namespace
	// hostnet creates, so `ip netns` lists it (normally /run/netns).
	NetnsLinkDir string
	// NetnsEtcDir, when set, is where each created namespace's resolv.conf
	// is written, as <dir>/hn-<ID>/resolv.conf: `ip netns exec` and
	// `hostnet run` bind it over /etc/resolv.conf (normally /etc/netns).
	NetnsEtcDir string
	// HostResolvConf supplies DNS servers to endpoints that have none of
	// their own or of their network (normally /etc/resolv.conf).
	HostResolvConf string
	// EmbeddedDNS says the daemon runs the embedded DNS server: networks
	// may enable it (the AutomaticDNS policy), and their endpoints'
	// resolv.conf names it. Off, an AutomaticDNS policy with Enable is
	// refused (one without is accepted: Windows clients send it).
	EmbeddedDNS bool
	// DHCP runs the DHCP clients of the endpoints whose addresses come
	// from DHCP (nil: such endpoints are refused); DHCPTimeout is how long
	// an attach waits for the first lease (0: DefaultDHCPTimeout).
	DHCP        DHCP
	DHCPTimeout time.Duration

	Logger *slog.Logger
	// Build is the version string reported by the version call.
	Build string
}

// Service carries out API requests. Mutations are serialised by one lock,
// from the decision to the kernel's answer, and so are full passes of the
// reconciler: a pass plans from records no request is half way through.
// Reads go to the store and do not wait.
type Service struct {
	cfg Config
	log *slog.Logger
	rec *reconcile.Reconciler
	mu  sync.Mutex

	events events // what hostnet did on its own, for GET /events

	outbox outbox // guarded by mu

	// lightChecks counts the light checks in a row that found nothing;
	// every fullPassEvery-th check is a full pass (guarded by mu).
	lightChecks int
	// verifying is set while namespaces are looked into in the
	// background; verifiedUpTo is the path of the last namespace a full
	// pass had looked into, where the next one goes on (guarded by mu).
	verifying    bool
	verifiedUpTo string

	hostResolv hostResolv // the host's DNS settings, cached

	background sync.WaitGroup // verification after a start; Close waits
	closing    chan struct{}
	closeOnce  sync.Once
}

// New returns a service over cfg. Call Start before serving requests.
func New(cfg Config) *Service {
	log := cfg.Logger
	if log == nil {
		log = slog.Default()
	}
	return &Service{cfg: cfg, log: log, rec: cfg.Reconciler, closing: make(chan struct{})}
}

// Close stops the work the service left running in the background and
// records what the kernel has done (the outbox). The caller closes the
// reconciler after.
func (s *Service) Close() {
	s.closeOnce.Do(func() { close(s.closing) })
	s.background.Wait()
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.cfg.Store.Update(s.outbox.sweep); err != nil {
		s.log.Warn("clearing the outbox failed; the next start does it", "err", err)
	}
}

// Version answers the version call.
func (s *Service) Version() api.VersionInfo {
	v := api.VersionInfo{
		Version:       api.APIVersion,
		SchemaVersion: api.SchemaVersion{Major: 2, Minor: 0},
		Build:         s.cfg.Build,
		Supported: api.Supported{
			NetworkPolicies:  api.SupportedNetworkPolicies,
			SubnetPolicies:   api.SupportedSubnetPolicies,
			EndpointPolicies: api.SupportedEndpointPolicies,
		},
	}
	for _, t := range []api.NetworkType{api.NAT, api.ICS, api.Transparent, api.L2Bridge, api.L2Tunnel, api.Overlay, api.Private, api.Internal} {
		if _, ok := s.cfg.Drivers[t]; ok {
			v.Supported.NetworkTypes = append(v.Supported.NetworkTypes, t)
		}
	}
	return v
}

// normalizeID returns a client-supplied GUID in canonical form, or a new
// GUID when id is empty.
func normalizeID(kind, id string) (string, error) {
	if id == "" {
		return uuid.NewString(), nil
	}
	u, err := uuid.Parse(id)
	if err != nil {
		return "", api.Invalid(api.CodeInvalidJSON, "invalid %s: field ID: %q is not a GUID", kind, id)
	}
	return u.String(), nil
}

// refID returns ref as a canonical GUID when it is one.
func refID(ref string) (string, bool) {
	u, err := uuid.Parse(ref)
	if err != nil {
		return "", false
	}
	return u.String(), true
}

func nameKey(kind, name string) string { return kind + "/" + name }

// lookup finds an object of the bucket by ID or, failing that, by name.
func lookup(tx store.Tx, bucket, kind, ref string, v any) (string, error) {
	if ref == "" {
		return "", api.Invalid(api.CodeInvalidJSON, "no %s named: the reference is empty", kind)
	}
	if id, ok := refID(ref); ok {
		err := store.GetJSON(tx, bucket, id, v)
		if err == nil {
			return id, nil
		}
		if !errors.Is(err, store.ErrNotFound) {
			return "", err
		}
	}
	id, err := tx.Get(store.Names, nameKey(kind, ref))
	if errors.Is(err, store.ErrNotFound) {
		return "", api.NotFound(kind, ref)
	}
	if err != nil {
		return "", err
	}
	if err := store.GetJSON(tx, bucket, string(id), v); err != nil {
		if errors.Is(err, store.ErrNotFound) {
			return "", api.NotFound(kind, ref)
		}
		return "", err
	}
	return string(id), nil
}

// claimName records name for an object, or fails if another object holds it.
func claimName(tx store.Tx, kind, name, id string) error {
	if name == "" {
		return nil
	}
	held, err := tx.Get(store.Names, nameKey(kind, name))
	if err == nil && string(held) != id {
		return api.Conflict(api.CodeObjectAlreadyExists, "a %s named %q already exists (ID %s)", kind, name, held)
	}
	if err != nil && !errors.Is(err, store.ErrNotFound) {
		return err
	}
	return tx.Put(store.Names, nameKey(kind, name), []byte(id))
}

func dropName(tx store.Tx, kind, name string) error {
	if name == "" {
		return nil
	}
	return tx.Delete(store.Names, nameKey(kind, name))
}

// internal wraps a store or kernel failure that is not the client's fault.
func internal(err error, format string, args ...any) error {
	var e *api.Error
	if errors.As(err, &e) {
		return err
	}
	return api.InternalError(err, format, args...)
}

func displayName(name, id string) string {
	if name != "" {
		return name
	}
	return id
}
