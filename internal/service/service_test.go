package service

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"maps"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/google/uuid"
	"github.com/hostnet/hostnet/api"
	"github.com/hostnet/hostnet/internal/dataplane"
	"github.com/hostnet/hostnet/internal/driver"
	"github.com/hostnet/hostnet/internal/driver/nat"
	"github.com/hostnet/hostnet/internal/netmodel"
	"github.com/hostnet/hostnet/internal/nftmodel"
	"github.com/hostnet/hostnet/internal/policy"
	"github.com/hostnet/hostnet/internal/reconcile"
	"github.com/hostnet/hostnet/internal/store"
	"github.com/hostnet/hostnet/internal/testutil"
)

// lab is a service on an in-memory store and a fake host.
type lab struct {
	t    testing.TB
	svc  *Service
	host *dataplane.Fake
	st   *store.Memory
	rec  *reconcile.Reconciler
	dir  string
}

const (
	labNetnsDir = "/run/hostnet/netns"
	labLinkDir  = "/run/netns"
	labEtcDir   = "/etc/netns"
)

func newLab(t testing.TB) *lab {
	dir := t.TempDir()
	resolv := filepath.Join(dir, "resolv.conf")
	if err := os.WriteFile(resolv, []byte("nameserver 192.0.2.53\nsearch example.test\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	l := &lab{t: t, dir: dir, st: store.NewMemory()}
	l.host = dataplane.NewFake(dataplane.HostConfig{LinkPrefixes: []string{driver.BridgePrefix, driver.PortPrefix, driver.IFBPrefix},
		NetnsDir: labNetnsDir, NetnsLinkDir: labLinkDir,
		Tables: []dataplane.TableName{{Family: nftmodel.FamilyInet, Name: policy.TableName}, {Family: nftmodel.FamilyBridge, Name: policy.TableName}}})
	l.rec = reconcile.New(reconcile.Config{Host: l.host, Logger: slog.New(slog.DiscardHandler),
		Resync: func(ctx context.Context, reason string) error { _, err := l.svc.Repair(ctx, reason); return err }})
	l.svc = New(Config{Store: l.st, Reconciler: l.rec, Drivers: map[api.NetworkType]driver.Driver{api.NAT: nat.New()},
		NetnsDir: labNetnsDir, NetnsLinkDir: labLinkDir, NetnsEtcDir: labEtcDir, HostResolvConf: resolv,
		Logger: slog.New(slog.DiscardHandler)})
	t.Cleanup(func() { l.svc.Close(); l.rec.Close() })
	if _, err := l.svc.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	return l
}

func (l *lab) must(err error) {
	l.t.Helper()
	if err != nil {
		l.t.Fatal(err)
	}
}

// blueLab is a lab with the NAT network "blue" (10.7.0.0/24), where most
// tests start.
func blueLab(t testing.TB) (*lab, context.Context) {
	l := newLab(t)
	l.network("blue", "10.7.0.0/24")
	return l, context.Background()
}

// network creates a NAT network with a subnet.
func (l *lab) network(name, subnet string, policies ...api.Policy) *api.Network {
	l.t.Helper()
	n, err := l.svc.CreateNetwork(context.Background(), api.Network{ID: fixedID(name), Name: name, Type: api.NAT,
		Ipams: []api.Ipam{{Type: "Static", Subnets: []api.Subnet{{IpAddressPrefix: subnet}}}}, Policies: policies})
	l.must(err)
	return n
}

// attached creates a namespace and an endpoint on network attached to it.
func (l *lab) attached(network, name string, policies ...api.Policy) (*api.Endpoint, *api.Namespace) {
	l.t.Helper()
	ctx := context.Background()
	ns, err := l.svc.CreateNamespace(ctx, api.Namespace{ID: fixedID(name + "-ns"), Name: name + "-ns"})
	l.must(err)
	ep, err := l.svc.CreateEndpoint(ctx, api.Endpoint{ID: fixedID(name), Name: name, HostComputeNetwork: network, HostComputeNamespace: ns.ID, Policies: policies})
	l.must(err)
	return ep, ns
}

func mapping(proto, external, internal int) api.Policy {
	return api.Policy{Type: api.PortMapping, Settings: json.RawMessage(fmt.Sprintf(`{"Protocol":%d,"ExternalPort":%d,"InternalPort":%d}`, proto, external, internal))}
}

func acl(action, dir string, ports string, priority int) api.Policy {
	return api.Policy{Type: api.ACL, Settings: json.RawMessage(fmt.Sprintf(`{"Action":%q,"Direction":%q,"Protocols":"6","LocalPorts":%q,"Priority":%d}`,
		action, dir, ports, priority))}
}

// fixedID is the ID of the lab's object named name: fixed, so that the
// names and MACs derived from IDs are too.
func fixedID(name string) string {
	return uuid.NewSHA1(uuid.NameSpaceOID, []byte("hostnet-lab/"+name)).String()
}

// dump is the fake host's whole state, once the background work is done.
func (l *lab) dump() string {
	l.rec.Wait()
	return l.host.Dump()
}

func golden(t *testing.T, name, got string) { testutil.Golden(t, name, got) }

// check asserts that a full pass finds nothing to do: the incremental
// changes left the host exactly as planning everything again says.
func (l *lab) check() {
	l.t.Helper()
	rep, err := l.svc.Check(context.Background())
	l.must(err)
	if !rep.InSync {
		l.t.Fatalf("not in sync after incremental changes: %+v", rep.Problems)
	}
}

// A sequence of configurations, each checked against the whole state of
// the fake host (golden files) and against a full pass, which must find
// nothing to do: the incremental path and the full one agree.
func TestStateSequence(t *testing.T) {
	l := newLab(t)
	ctx := context.Background()
	steps := []struct {
		name string
		do   func()
	}{
		{"1-network", func() { l.network("blue", "10.7.0.0/24") }},
		{"2-endpoint", func() { l.attached("blue", "web", mapping(6, 8080, 80), acl("Allow", "In", "80", 100)) }},
		{"3-second-endpoint", func() { l.attached("blue", "db") }},
		{"4-acl-change", func() {
			_, err := l.svc.ModifyEndpoint(ctx, "web", api.ModifyRequest{ResourceType: api.ResourcePolicy, RequestType: api.RequestUpdate,
				Settings: json.RawMessage(`{"Policies":[{"Type":"ACL","Settings":{"Action":"Allow","Direction":"In","Protocols":"6","LocalPorts":"443","Priority":100}}]}`)})
			l.must(err)
		}},
		{"5-mapping-removed", func() {
			_, err := l.svc.ModifyEndpoint(ctx, "web", api.ModifyRequest{ResourceType: api.ResourcePolicy, RequestType: api.RequestRemove,
				Settings: json.RawMessage(`{"Policies":[{"Type":"PortMapping","Settings":{"Protocol":6,"ExternalPort":8080,"InternalPort":80}}]}`)})
			l.must(err)
		}},
		{"6-network-acl", func() {
			_, err := l.svc.ModifyNetwork(ctx, "blue", api.ModifyRequest{ResourceType: api.ResourcePolicy, RequestType: api.RequestAdd,
				Settings: json.RawMessage(`{"Policies":[{"Type":"NetworkACL","Settings":{"Action":"Block","Direction":"In","Protocols":"17","Priority":10}}]}`)})
			l.must(err)
		}},
		{"7-detach-delete", func() {
			l.must(l.svc.DeleteEndpoint(ctx, "db"))
			l.must(l.svc.DeleteNamespace(ctx, "db-ns"))
		}},
		{"8-all-gone", func() {
			l.must(l.svc.DeleteEndpoint(ctx, "web"))
			l.must(l.svc.DeleteNamespace(ctx, "web-ns"))
			l.must(l.svc.DeleteNetwork(ctx, "blue"))
		}},
	}
	for _, s := range steps {
		s.do()
		golden(t, "state-"+s.name+".txt", l.dump())
		l.check()
	}
	if d := l.dump(); strings.Contains(d, "hnbr") || strings.Contains(d, "hnv") || strings.Contains(d, "table inet") || strings.Contains(d, "file ") {
		t.Errorf("objects left after everything was deleted:\n%s", d)
	}
}

// A refused kernel change leaves the intent and the kernel as they were.
func TestRefusedChangeRollsBack(t *testing.T) {
	l, ctx := blueLab(t)
	before := l.state()
	l.host.TakePort("tcp4/8080/*", `process "nginx" (pid 42)`)
	_, err := l.svc.CreateEndpoint(ctx, api.Endpoint{Name: "web", HostComputeNetwork: "blue", Policies: []api.Policy{mapping(6, 8080, 80)}})
	if api.CodeOf(err) != api.CodePortAlreadyExists || !strings.Contains(err.Error(), "nginx") {
		t.Fatalf("a port a process holds: %v", err)
	}
	l.unchanged("a refused endpoint", before)
	// The same with an attach: the NIC's creation fails.
	ns, err := l.svc.CreateNamespace(ctx, api.Namespace{Name: "n1"})
	l.must(err)
	ep, err := l.svc.CreateEndpoint(ctx, api.Endpoint{Name: "db", HostComputeNetwork: "blue"})
	l.must(err)
	before = l.state()
	portKey := netmodel.Link{Name: nat.PortName(ep.ID)}.Key()
	l.host.FailNext(portKey, fmt.Errorf("injected"))
	if _, err := l.svc.Attach(ctx, ns.ID, ep.ID); err == nil {
		t.Fatal("attach succeeded despite the kernel's refusal")
	}
	l.unchanged("a refused attach", before)
	l.check()
}

// A mapping whose caller holds the host port (a runtime's, through CNI)
// is published without a socket of hostnet's on the port, so the caller
// can bind it; it still goes with its endpoint, and a second endpoint
// still cannot publish the same port.
func TestCallerHeldPortIsNotHeld(t *testing.T) {
	l, ctx := blueLab(t)
	// The runtime has bound it already (a reload: conmon holds it).
	l.host.TakePort("tcp4/8080/*", `process "conmon" (pid 42)`)
	held := api.Policy{Type: api.PortMapping, Settings: json.RawMessage(`{"Protocol":6,"ExternalPort":8080,"InternalPort":80,"CallerHoldsHostPort":true}`)}
	ep, _ := l.attached("blue", "web", held)
	if d := l.dump(); strings.Contains(d, "port tcp4/8080") || !strings.Contains(d, "8080") {
		t.Errorf("a caller-held port is held by hostnet, or not published:\n%s", d)
	}
	l.check()
	_, err := l.svc.CreateEndpoint(ctx, api.Endpoint{Name: "other", HostComputeNetwork: "blue", Policies: []api.Policy{held}})
	if api.CodeOf(err) != api.CodePortAlreadyExists && !api.IsConflict(err) {
		t.Errorf("a second endpoint publishing the same caller-held port: %v, want a conflict", err)
	}
	l.must(l.svc.DeleteEndpoint(ctx, ep.ID))
	if d := l.dump(); strings.Contains(d, "8080") {
		t.Errorf("the mapping outlived its endpoint:\n%s", d)
	}
	// Held by hostnet, the same port is refused while a process has it.
	_, err = l.svc.CreateEndpoint(ctx, api.Endpoint{Name: "own", HostComputeNetwork: "blue", Policies: []api.Policy{mapping(6, 8080, 80)}})
	if api.CodeOf(err) != api.CodePortAlreadyExists || !strings.Contains(err.Error(), "conmon") {
		t.Errorf("a port a process holds, published by hostnet: %v", err)
	}
}

// Damage is found by a full pass and repaired; the repair is an event.
func TestRepairPutsBack(t *testing.T) {
	l := newLab(t)
	ctx := context.Background()
	n := l.network("blue", "10.7.0.0/24")
	ep, ns := l.attached("blue", "web")
	want := l.dump()
	l.host.DeleteLink(netmodel.Host, ep.HostInterfaceName)
	l.host.SetSysctl(netmodel.Host, "net/ipv4/ip_forward", "0")
	l.host.SetLinkUp(netmodel.Host, n.BridgeName, false)
	rep, err := l.svc.Check(ctx)
	l.must(err)
	if rep.InSync || len(rep.Problems) < 3 {
		t.Fatalf("check after damage: %+v", rep)
	}
	if _, err := l.svc.Repair(ctx, "test"); err != nil {
		t.Fatal(err)
	}
	if got := l.dump(); got != want {
		t.Errorf("after repair:\n%s\nwant\n%s", got, want)
	}
	l.check()
	_ = ns
	repaired := 0
	for _, e := range l.svc.Events() {
		if e.Kind == "Repaired" {
			repaired++
		}
	}
	if repaired < 3 {
		t.Errorf("%d repair events, want one per problem", repaired)
	}
}

// The light check does not look inside containers' namespaces: an
// address deleted there comes back at the next full pass, at most
// fullPassEvery checks later.
func TestDriftInsideANamespaceIsRepairedByAFullPass(t *testing.T) {
	l, ctx := blueLab(t)
	ep, ns := l.attached("blue", "web")
	want := l.dump()
	prefix := netip.MustParsePrefix(ep.IpConfigurations[0].IpAddress + "/24")
	l.host.DeleteAddr(netmodel.Addr{NS: netmodel.NS{Path: labNetnsDir + "/" + ns.ID}, Link: "eth0", Prefix: prefix})
	if l.dump() == want {
		t.Fatal("the address was not deleted")
	}
	for i := 0; i < fullPassEvery && l.dump() != want; i++ {
		if _, err := l.svc.Repair(ctx, "test"); err != nil {
			t.Fatal(err)
		}
		l.svc.background.Wait()
	}
	if got := l.dump(); got != want {
		t.Errorf("after %d checks:\n%s\nwant\n%s", fullPassEvery, got, want)
	}
}

// A wrapped namespace that vanishes takes its endpoints with it, and their
// addresses go back to the pool.
func TestVanishedNamespaceIsCollected(t *testing.T) {
	l, ctx := blueLab(t)
	l.host.AddNamespace("/proc/1234/ns/net", netmodel.NSID{Dev: 3, Ino: 77})
	ep, err := l.svc.CreateEndpoint(ctx, api.Endpoint{Name: "c1", HostComputeNetwork: "blue", HostComputeNamespace: "cni:c1", NetNamespacePath: "/proc/1234/ns/net"})
	l.must(err)
	l.check()
	l.host.RemoveNamespace("/proc/1234/ns/net")
	// Another namespace at the same path (a reused PID) is not it.
	l.host.AddNamespace("/proc/1234/ns/net", netmodel.NSID{Dev: 3, Ino: 78})
	if _, err := l.svc.Repair(ctx, "test"); err != nil {
		t.Fatal(err)
	}
	if _, err := l.svc.GetEndpoint(ctx, ep.ID); !api.IsNotFound(err) {
		t.Errorf("the endpoint of a vanished namespace is still there: %v", err)
	}
	again, err := l.svc.CreateEndpoint(ctx, api.Endpoint{Name: "c2", HostComputeNetwork: "blue", IpConfigurations: ep.IpConfigurations})
	l.must(err)
	if again.IpConfigurations[0].IpAddress != ep.IpConfigurations[0].IpAddress {
		t.Errorf("the address did not go back to the pool")
	}
	l.check()
}

// The namespaces a caller may wrap.
func TestWrapRefusals(t *testing.T) {
	l := newLab(t)
	ctx := context.Background()
	for _, c := range []struct{ path, want string }{
		{"/nowhere", "not a network namespace"},
		{labNetnsDir + "/x", "not a network namespace"},
	} {
		_, err := l.svc.CreateNamespace(ctx, api.Namespace{NetNamespacePath: c.path})
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("wrapping %s: %v, want %q", c.path, err, c.want)
		}
	}
}

// BenchmarkAttach measures the service and reconciler's own cost of a
// create with attach (one published port, one ACL rule) on the fake host:
// deciding, recording, planning and diffing, without a kernel.
func BenchmarkAttach(b *testing.B) {
	l := newLab(b)
	ctx := context.Background()
	l.network("blue", "10.64.0.0/12")
	nss := make([]string, b.N)
	for i := range nss {
		ns, err := l.svc.CreateNamespace(ctx, api.Namespace{})
		if err != nil {
			b.Fatal(err)
		}
		nss[i] = ns.ID
	}
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		_, err := l.svc.CreateEndpoint(ctx, api.Endpoint{HostComputeNetwork: "blue", HostComputeNamespace: nss[i],
			Policies: []api.Policy{mapping(6, 10000+i%50000, 80), acl("Allow", "In", "80", 100)}})
		if err != nil {
			b.Fatal(err)
		}
	}
}

// Every mutation that the kernel refuses leaves the intent and the host as
// they were: a policy change of an endpoint, of a network, a namespace's
// creation.
func TestEveryRefusedMutationRollsBack(t *testing.T) {
	l, ctx := blueLab(t)
	ep, _ := l.attached("blue", "web", mapping(6, 8080, 80))
	addr := ep.IpConfigurations[0].IpAddress
	cases := []struct {
		name string
		fail netmodel.Key // an object the change makes
		do   func() error
	}{
		{"endpoint policies", netmodel.Port{Proto: "tcp", Port: 9090}.Key(), func() error {
			_, err := l.svc.ModifyEndpoint(ctx, "web", api.ModifyRequest{ResourceType: api.ResourcePolicy, RequestType: api.RequestAdd,
				Settings: json.RawMessage(`{"Policies":[{"Type":"PortMapping","Settings":{"Protocol":6,"ExternalPort":9090,"InternalPort":90}}]}`)})
			return err
		}},
		// The network's ACLs change its endpoint's profile: the element
		// that sends the endpoint's address to it.
		{"network policies", netmodel.NftElement{Table: policy.TableName, Set: policy.MapACLIn4, Elem: addr}.Key(), func() error {
			_, err := l.svc.ModifyNetwork(ctx, "blue", api.ModifyRequest{ResourceType: api.ResourcePolicy, RequestType: api.RequestAdd,
				Settings: json.RawMessage(`{"Policies":[{"Type":"NetworkACL","Settings":{"Action":"Block","Direction":"In","Protocols":"17","Priority":10}}]}`)})
			return err
		}},
		{"namespace", netmodel.Namespace{NS: netmodel.NS{Path: labNetnsDir + "/" + fixedID("new-ns")}}.Key(), func() error {
			_, err := l.svc.CreateNamespace(ctx, api.Namespace{ID: fixedID("new-ns"), Name: "new-ns"})
			return err
		}},
	}
	for _, c := range cases {
		before := l.state()
		l.host.FailNext(c.fail, fmt.Errorf("injected"))
		if err := c.do(); err == nil {
			t.Errorf("%s: the kernel's refusal was not reported", c.name)
			continue
		}
		l.unchanged(c.name, before)
		l.check()
	}
}

// records renders the store's records: not the outbox, which a change
// writes and the next one sweeps, nor the pools' cursors, which say where
// the next allocation looks and hold nothing (a refused endpoint moves
// them on, so a late packet for it meets no new holder).
func records(t testing.TB, st store.Store) string {
	var b strings.Builder
	snap := snapshot(t, st)
	for _, bucket := range store.Buckets {
		if bucket == store.Outbox {
			continue
		}
		for _, k := range slices.Sorted(maps.Keys(snap[bucket])) {
			if bucket == store.Meta && strings.HasPrefix(k, "ipam-cursor/") {
				continue
			}
			fmt.Fprintf(&b, "%s/%s=%s\n", bucket, k, snap[bucket][k])
		}
	}
	return b.String()
}

// BenchmarkFullPass measures a full pass of the reconciler (the periodic
// self-repair check) over 2,000 attached endpoints on the fake host: it
// plans every owner and compares it with what the host reports.
func BenchmarkFullPass(b *testing.B) {
	l := newLab(b)
	ctx := context.Background()
	l.network("blue", "10.64.0.0/12")
	for i := 0; i < 2000; i++ {
		ns, err := l.svc.CreateNamespace(ctx, api.Namespace{})
		if err != nil {
			b.Fatal(err)
		}
		if _, err := l.svc.CreateEndpoint(ctx, api.Endpoint{HostComputeNetwork: "blue", HostComputeNamespace: ns.ID,
			Policies: []api.Policy{mapping(6, 10000+i, 80), acl("Allow", "In", "80", 100)}}); err != nil {
			b.Fatal(err)
		}
	}
	for _, full := range []bool{false, true} {
		name := "light"
		if full {
			name = "full"
		}
		b.Run(name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if full {
					l.svc.lightChecks = fullPassEvery - 1
				}
				if n, err := l.svc.Repair(ctx, "bench"); err != nil || n != 0 {
					b.Fatalf("repair: %d problems, %v", n, err)
				}
			}
			l.svc.background.Wait()
		})
	}
}

// A full pass looks into verifyBatch namespaces, in turn, going round.
func TestFullPassesLookIntoNamespacesInTurn(t *testing.T) {
	s := &Service{}
	var spaces []spaceOwners
	for i := range verifyBatch*2 + verifyBatch/2 {
		spaces = append(spaces, spaceOwners{ns: netmodel.NS{Path: fmt.Sprintf("/ns/%04d", i)}})
	}
	seen := map[string]int{}
	for range 5 {
		for _, sp := range s.nextBatch(spaces) {
			seen[sp.ns.Path]++
		}
	}
	for _, sp := range spaces {
		if seen[sp.ns.Path] != 2 {
			t.Fatalf("%s looked into %d times in 5 passes over 2.5 batches, want 2", sp.ns.Path, seen[sp.ns.Path])
		}
	}
}

// Uninstall refuses while endpoints exist; forced, it leaves the host
// with nothing of hostnet's (the sysctls excepted), and says what it
// removed.
func TestUninstall(t *testing.T) {
	l, ctx := blueLab(t)
	l.attached("blue", "web", mapping(6, 8080, 80))
	before := l.state()
	_, err := l.svc.Uninstall(ctx, false)
	if api.CodeOf(err) != api.CodeResourceInUse || !strings.Contains(err.Error(), "web") {
		t.Fatalf("uninstall with an endpoint: %v", err)
	}
	l.unchanged("a refused uninstall", before)
	rep, err := l.svc.Uninstall(ctx, true)
	l.must(err)
	if rep.Networks != 1 || rep.Endpoints != 1 || rep.Namespaces != 1 {
		t.Errorf("counted %+v", rep)
	}
	removed := strings.Join(rep.Removed, "\n")
	for _, want := range []string{"link hnbr", "link hnv", "namespace " + labNetnsDir, "port tcp4/8080/*", "table inet hostnet", "table bridge hostnet", "file " + labEtcDir + "/hn-"} {
		if !strings.Contains(removed, want) {
			t.Errorf("the report lacks %q:\n%s", want, removed)
		}
	}
	// The fake keeps no files: its dump says they are gone.
	if d := l.dump(); d != golden8(t) {
		t.Errorf("left after the uninstall:\n%s", d)
	}
}

func golden8(t *testing.T) string {
	b, err := os.ReadFile(filepath.Join("testdata", "state-8-all-gone.txt"))
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}
