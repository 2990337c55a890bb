// Package service is hostnet's orchestrator. Every mutation follows the
// same order: validate (nothing changes on bad input) -> allocate and
// persist the intent in one store transaction -> bring the kernel to the
// intent -> on a kernel failure, undo both. On start, Reconcile brings the
// kernel to the stored intent without flushing what is already right.
package service

import (
	"errors"
	"log/slog"
	"strings"
	"sync"
	"time"

	"github.com/google/uuid"
	"github.com/hostnet/hostnet/api"
	"github.com/hostnet/hostnet/internal/dataplane"
	"github.com/hostnet/hostnet/internal/dataplane/nft"
	"github.com/hostnet/hostnet/internal/driver"
	"github.com/hostnet/hostnet/internal/policy"
	"github.com/hostnet/hostnet/internal/store"
)

// Config is what the service runs on.
type Config struct {
	Store store.Store
	// Host is the namespace hostnet programs as the host.
	Host *dataplane.Linux
	// Firewall applies hostnet's nftables table in the host namespace.
	Firewall nft.Applier
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

	Logger *slog.Logger
	// Build is the version string reported by the version call.
	Build string
}

// Service carries out API requests. Mutations are serialised by one lock:
// the kernel work of an attach is a few hundred microseconds, and one
// writer at a time keeps intent and kernel in step without lock ordering.
// Reads go to the store and do not wait for mutations.
type Service struct {
	cfg Config
	log *slog.Logger
	mu  sync.Mutex

	// Guarded by mu:
	reserved map[string]*dataplane.PortReservation // published host ports, by portKey
	fw       *policy.State                         // the policy compiler, incrementally

	events events // what hostnet did on its own, for GET /events

	background sync.WaitGroup // flow cleanups and device deletions still running; Close waits
	flowWake   chan struct{}  // closed by Close: walk now

	unlinkMu      sync.Mutex               // guards the fields below
	unlinking     map[string]chan struct{} // host-side devices being removed, closed when gone
	unlinkQueue   []*unlink                // NICs waiting for the next batch
	unlinkBatch   []*unlink                // the batch being removed
	unlinkRunning bool                     // a goroutine is draining unlinkQueue

	flowMu              sync.Mutex   // guards the fields below
	flowQueue           []flowChange // changes whose flows are yet to be forgotten
	flowFirst, flowLast time.Time    // when the first and last of them came
	flowWalking         bool         // a goroutine is draining flowQueue
	flowFlush           bool         // Close was called: no more waiting
}

// Close finishes the work requests left running in the background (the
// removal of connections a policy change denies, without its usual delay,
// and of the devices of detached endpoints).
// The caller closes the Host and Firewall after.
func (s *Service) Close() {
	s.flowMu.Lock()
	if !s.flowFlush {
		s.flowFlush = true
		close(s.flowWake)
	}
	s.flowMu.Unlock()
	s.background.Wait()
}

// New returns a service over cfg. Call Reconcile before serving requests.
func New(cfg Config) *Service {
	log := cfg.Logger
	if log == nil {
		log = slog.Default()
	}
	return &Service{cfg: cfg, log: log, reserved: map[string]*dataplane.PortReservation{}, flowWake: make(chan struct{}),
		unlinking: map[string]chan struct{}{}}
}

// Supported endpoint and network policy types: those this build realises.
// A policy of another known type is refused as unsupported, never dropped.
var (
	supportedEndpointPolicies = []api.PolicyType{api.PortMapping, api.ACL, api.OutBoundNAT, api.SDNRoute}
	supportedNetworkPolicies  = []api.PolicyType{api.NetworkACL}
	supportedSubnetPolicies   = []api.PolicyType{}
)

// Version answers the version call.
func (s *Service) Version() api.VersionInfo {
	v := api.VersionInfo{
		Version:       api.APIVersion,
		SchemaVersion: api.SchemaVersion{Major: 2, Minor: 0},
		Build:         s.cfg.Build,
		Supported: api.Supported{
			NetworkPolicies:  supportedNetworkPolicies,
			SubnetPolicies:   supportedSubnetPolicies,
			EndpointPolicies: supportedEndpointPolicies,
		},
	}
	for _, t := range []api.NetworkType{api.NAT, api.ICS, api.Transparent, api.L2Bridge, api.L2Tunnel, api.Overlay, api.Private, api.Internal} {
		if _, ok := s.cfg.Drivers[t]; ok {
			v.Supported.NetworkTypes = append(v.Supported.NetworkTypes, t)
		}
	}
	return v
}

func supported(list []api.PolicyType, t api.PolicyType) bool {
	for _, s := range list {
		if s == t {
			return true
		}
	}
	return false
}

// updateOverlapped runs fn in a store transaction. The kernel step fn
// returns starts as soon as fn has decided the transaction's writes, and
// runs while the store makes them durable: on this path the two fsyncs of
// a commit cost about as much as the kernel work, so doing them one after
// the other would double the latency of an attach. The caller acknowledges
// only when both are done, so no acknowledged operation is lost; and if the
// daemon dies in between, the kernel objects made for an operation that
// never committed are tagged and claimed by nothing, so the next
// reconciliation removes them.
//
// It returns where the time went, the transaction's error and the kernel
// step's (nil when the step did not start). When the transaction fails
// after the step ran, the caller undoes the step.
func (s *Service) updateOverlapped(fn func(tx store.Tx) (step func() error, err error)) (t overlapTimes, txErr, stepErr error) {
	var done chan error
	start := time.Now()
	var stepStart time.Time
	txErr = s.cfg.Store.Update(func(tx store.Tx) error {
		step, err := fn(tx)
		if err != nil || step == nil {
			return err
		}
		done = make(chan error, 1)
		t.Started = true
		stepStart = time.Now()
		t.Prepare = stepStart.Sub(start)
		go func() {
			err := step()
			t.Kernel = time.Since(stepStart)
			done <- err
		}()
		return nil
	})
	if done != nil {
		t.Commit = time.Since(stepStart)
		stepErr = <-done
	}
	return t, txErr, stepErr
}

// overlapTimes says whether an overlapped operation's kernel step started,
// and where its time went: deciding in the transaction, then the commit and
// the kernel work side by side.
type overlapTimes struct {
	Started                 bool
	Prepare, Commit, Kernel time.Duration
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

// joinTypes lists policy types for messages.
func joinTypes(ts []api.PolicyType) string {
	if len(ts) == 0 {
		return "none"
	}
	s := make([]string, len(ts))
	for i, t := range ts {
		s[i] = string(t)
	}
	return strings.Join(s, ", ")
}

func unsupportedPolicy(owner string, i int, t api.PolicyType, list []api.PolicyType) error {
	return api.Unsupported("%s: field Policies[%d]: policy type %s is not supported by this build (supported: %s)",
		owner, i, t, joinTypes(list))
}
