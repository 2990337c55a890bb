package service

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/hostnet/hostnet/api"
	"github.com/hostnet/hostnet/internal/driver/nat"
	"github.com/hostnet/hostnet/internal/netmodel"
	"github.com/hostnet/hostnet/internal/store"
)

// put writes raw records into the lab's store, as a version of hostnet
// before this one, a damaged disk or a hand might have left them.
func (l *lab) put(bucket, key, raw string) {
	l.t.Helper()
	l.must(l.st.Update(func(tx store.Tx) error { return tx.Put(bucket, key, []byte(raw)) }))
}

// problemsOf returns the problems doctor reports, one a line.
func (l *lab) problemsOf() string {
	l.t.Helper()
	rep, err := l.svc.Check(context.Background())
	l.must(err)
	var out []string
	for _, p := range rep.Problems {
		out = append(out, fmt.Sprintf("%s %s %s: %s", p.Kind, p.Name, p.ID, p.Problem))
	}
	return strings.Join(out, "\n")
}

func (l *lab) eventsOf(kind string) []api.Event {
	var out []api.Event
	for _, e := range l.svc.Events() {
		if e.Kind == kind {
			out = append(out, e)
		}
	}
	return out
}

// Hand-written records of an earlier build: a NetworkACL whose type was
// stored as "11" (F2), OutBoundNAT exceptions not in canonical form (F3),
// flags and a ResolvConfPath it accepted and ignored (F13). A start
// writes them back in canonical form, once, logs the count, and enforces
// what they say.
func TestOldRecordsAreNormalisedAtStart(t *testing.T) {
	l := newLab(t)
	ctx := context.Background()
	netID, epID, nsID := fixedID("old-net"), fixedID("old-ep"), fixedID("old-ns")
	nsPath := labNetnsDir + "/" + nsID
	l.put(store.Networks, netID, `{"Doc":{"ID":"`+netID+`","Name":"old","Type":"NAT","Flags":1024,"SchemaVersion":{"Major":2,"Minor":0},`+
		`"BridgeName":"`+nat.New().NetworkDevice(netID)+`",`+
		`"Ipams":[{"Type":"Static","Subnets":[{"IpAddressPrefix":"10.9.0.0/24"}]}],`+
		`"Policies":[{"Type":"11","Settings":{"Action":"Block","Direction":"In","Protocols":"6","LocalPorts":"23","Priority":10}}]}}`)
	l.put(store.Namespaces, nsID, `{"Doc":{"ID":"`+nsID+`","Name":"old-ns","SchemaVersion":{"Major":2,"Minor":0},"NetNamespacePath":"`+nsPath+`","Managed":true,`+
		`"ResolvConfPath":"/tmp/x","Resources":[{"Type":"Endpoint","Data":{"ID":"`+epID+`"}}]},"ResolvConf":"/etc/netns/hn-`+nsID+`/resolv.conf"}`)
	l.put(store.Endpoints, epID, `{"Doc":{"ID":"`+epID+`","Name":"old-ep","HostComputeNetwork":"`+netID+`","HostComputeNamespace":"`+nsID+`",`+
		`"NetNamespacePath":"`+nsPath+`","HostInterfaceName":"`+nat.New().EndpointDevice(epID)+`","InterfaceName":"eth0","Flags":64,`+
		`"IpConfigurations":[{"IpAddress":"10.9.0.2","PrefixLength":24}],"MacAddress":"02-11-0a-09-00-02","SchemaVersion":{"Major":2,"Minor":0},`+
		`"Policies":[{"Type":"OutBoundNAT","Settings":{"Exceptions":["10.0.0.1","10.0.0.1/32","10.1.0.0/16","10.0.0.0/8"]}}]},"AutoName":true}`)
	l.put(store.Names, "network/old", netID)
	l.put(store.Names, "endpoint/old-ep", epID)
	l.put(store.Names, "namespace/old-ns", nsID)

	logged := l.restart()
	if !strings.Contains(logged, "normalised records stored by an earlier version") || !strings.Contains(logged, "count=3") {
		t.Errorf("the start does not log the count of normalised records:\n%s", logged)
	}
	n, err := l.svc.GetNetwork(ctx, "old")
	l.must(err)
	if n.Flags != 0 || n.Policies[0].Type != api.NetworkACL {
		t.Errorf("the network is not normalised: flags %d, policy type %q", n.Flags, n.Policies[0].Type)
	}
	ep, err := l.svc.GetEndpoint(ctx, "old-ep")
	l.must(err)
	var obnat api.OutboundNATSettings
	l.must(json.Unmarshal(ep.Policies[0].Settings, &obnat))
	if got := strings.Join(obnat.Exceptions, ","); got != "10.0.0.0/8" || ep.Flags != 0 {
		t.Errorf("the endpoint is not normalised: exceptions %s, flags %d", got, ep.Flags)
	}
	ns, err := l.svc.GetNamespace(ctx, "old-ns")
	l.must(err)
	if string(ns.Extra["ResolvConfPath"]) != `"/etc/netns/hn-`+nsID+`/resolv.conf"` {
		t.Errorf("the namespace keeps the client's ResolvConfPath: %s", ns.Extra["ResolvConfPath"])
	}
	if len(l.eventsOf("Normalised")) != 3 {
		t.Errorf("events: %+v", l.svc.Events())
	}
	// The NetworkACL is enforced: the endpoint's profile blocks port 23.
	if d := l.dump(); !strings.Contains(d, "th dport 23 drop") {
		t.Errorf("the normalised NetworkACL is not enforced:\n%s", d)
	}
	l.check()
	if logged := l.restart(); strings.Contains(logged, "normalised") {
		t.Errorf("a second start normalises again:\n%s", logged)
	}
	l.check()
}

// A record that does not decode (damaged JSON, F1's nesting) is set aside
// by the start, which goes on: the other objects start, lists answer, and
// doctor names it. Its kernel objects are kept and its address is not
// handed out; its name is free. Dropping it frees its address and removes
// what was kept for it.
func TestUnreadableRecordIsSetAside(t *testing.T) {
	l, ctx := blueLab(t)
	web, _ := l.attached("blue", "web", mapping(6, 8080, 80))
	db, _ := l.attached("blue", "db")
	l.put(store.Endpoints, web.ID, `{"Doc":{"ID":"`+web.ID+`","Name":"web",`+strings.Repeat("[", 10001))
	deepNS := fixedID("deep-ns")
	l.put(store.Namespaces, deepNS, `{"Doc":{"ID":"`+deepNS+`","Resources":[{"Type":"Container","Data":`+strings.Repeat(`{"a":`, 10001)+`1`+strings.Repeat("}", 10001)+`}]}}`)
	l.put(store.Names, "namespace/deep", deepNS)

	logged := l.restart()
	for _, want := range []string{"level=ERROR", "set aside", "bucket=endpoints", "key=" + web.ID, "bucket=namespaces", "key=" + deepNS} {
		if !strings.Contains(logged, want) {
			t.Errorf("the start's log lacks %q:\n%s", want, logged)
		}
	}
	eps, err := l.svc.ListEndpoints(ctx, "")
	l.must(err)
	if len(eps) != 1 || eps[0].ID != db.ID {
		t.Errorf("endpoints after the start: %+v", eps)
	}
	if _, err := l.svc.ListNamespaces(ctx, ""); err != nil {
		t.Errorf("list namespaces: %v", err)
	}
	problems := l.problemsOf()
	for _, want := range []string{"Endpoint web " + web.ID + ": set aside at start", "it does not decode", "Namespace deep " + deepNS, "--drop-set-aside endpoints/" + web.ID,
		"Device " + web.HostInterfaceName + " : kept: it belongs to set-aside endpoint web"} {
		if !strings.Contains(problems, want) {
			t.Errorf("doctor lacks %q:\n%s", want, problems)
		}
	}
	if n := len(l.eventsOf("SetAside")); n != 2 {
		t.Errorf("%d SetAside events, want 2", n)
	}
	// Its kernel objects stay: its port, its firewall elements; db is
	// served as before.
	d := l.dump()
	if !strings.Contains(d, "link "+web.HostInterfaceName) || !strings.Contains(d, web.HostInterfaceName+`" . 02:`) {
		t.Errorf("the set-aside endpoint's port or firewall went:\n%s", d)
	}
	// Its address and its host port stay held; its name is free.
	webAddr := web.IpConfigurations[0].IpAddress
	_, err = l.svc.CreateEndpoint(ctx, api.Endpoint{Name: "other", HostComputeNetwork: "blue", IpConfigurations: []api.IPConfig{{IpAddress: webAddr}}})
	if !api.IsConflict(err) || !strings.Contains(err.Error(), web.ID) {
		t.Errorf("the set-aside endpoint's address was handed out again: %v", err)
	}
	_, err = l.svc.CreateEndpoint(ctx, api.Endpoint{Name: "other", HostComputeNetwork: "blue", Policies: []api.Policy{mapping(6, 8080, 80)}})
	if api.CodeOf(err) != api.CodePortAlreadyExists {
		t.Errorf("the set-aside endpoint's host port was handed out again: %v", err)
	}
	if _, err := l.svc.CreateEndpoint(ctx, api.Endpoint{Name: "web", HostComputeNetwork: "blue"}); err != nil {
		t.Errorf("the set-aside endpoint's name is still taken: %v", err)
	}
	l.must(l.svc.DeleteEndpoint(ctx, "web"))

	// Its namespace no longer lists it.
	webNS, err := l.svc.GetNamespace(ctx, "web-ns")
	l.must(err)
	if ids := attachedIDs(webNS); len(ids) != 0 {
		t.Errorf("the set-aside endpoint's namespace still lists %v", ids)
	}

	list, err := l.svc.ListSetAside(ctx)
	l.must(err)
	if len(list) != 2 || list[0].ID != "endpoints/"+web.ID || list[0].Name != "web" || list[0].Record != nil || list[1].Name != "deep" {
		t.Errorf("set-aside records: %+v", list)
	}
	one, err := l.svc.GetSetAside(ctx, web.ID)
	l.must(err)
	if !strings.HasPrefix(string(one.Record), `{"Doc":{"ID":"`+web.ID) {
		t.Errorf("the raw record: %.80s", one.Record)
	}

	// Dropped: the address and the port are free, its device is gone.
	_, err = l.svc.DropSetAside(ctx, "endpoints/"+web.ID)
	l.must(err)
	l.must(l.svc.DeleteEndpoint(ctx, "db")) // to compare with a host that never had web
	_, err = l.svc.DropSetAside(ctx, deepNS)
	l.must(err)
	if _, err := l.svc.DropSetAside(ctx, deepNS); !api.IsNotFound(err) {
		t.Errorf("dropping twice: %v", err)
	}
	if d := l.dump(); strings.Contains(d, web.HostInterfaceName) {
		t.Errorf("the dropped record's objects are still there:\n%s", d)
	}
	again, err := l.svc.CreateEndpoint(ctx, api.Endpoint{Name: "again", HostComputeNetwork: "blue", IpConfigurations: []api.IPConfig{{IpAddress: webAddr}},
		Policies: []api.Policy{mapping(6, 8080, 80)}})
	l.must(err)
	l.must(l.svc.DeleteEndpoint(ctx, again.ID))
	l.check()
}

// A network that no longer passes validation (a name that reads as an ID,
// which earlier builds accepted: F12) is set aside with its endpoints;
// the other network starts.
func TestSetAsideNetworkTakesItsEndpoints(t *testing.T) {
	l := newLab(t)
	ctx := context.Background()
	blue := l.network("blue", "10.7.0.0/24")
	web, _ := l.attached("blue", "web")
	l.network("red", "10.8.0.0/24")
	red, _ := l.attached("red", "other")
	var rec networkRecord
	l.must(l.st.View(func(tx store.Tx) error { return store.GetJSON(tx, store.Networks, blue.ID, &rec) }))
	rec.Doc.Name = "{" + fixedID("x") + "}"
	b, _ := json.Marshal(rec)
	l.put(store.Networks, blue.ID, string(b))

	l.restart()
	list, err := l.svc.ListSetAside(ctx)
	l.must(err)
	if len(list) != 2 || list[0].Kind != "Endpoint" || list[0].Key != web.ID || !strings.Contains(list[0].Reason, "its network "+blue.ID+" is set aside") ||
		list[1].Kind != "Network" || !strings.Contains(list[1].Reason, "field Name") {
		t.Fatalf("set-aside records: %+v", list)
	}
	if _, err := l.svc.GetEndpoint(ctx, red.ID); err != nil {
		t.Errorf("the other network's endpoint: %v", err)
	}
	if d := l.dump(); !strings.Contains(d, "link "+blue.BridgeName) || !strings.Contains(d, "link "+web.HostInterfaceName) {
		t.Errorf("the set-aside network's bridge or its endpoint's port went:\n%s", d)
	}
	// Drop both: the subnet is free for a new network.
	for _, r := range list {
		_, err := l.svc.DropSetAside(ctx, r.ID)
		l.must(err)
	}
	if d := l.dump(); strings.Contains(d, blue.BridgeName) || strings.Contains(d, web.HostInterfaceName) {
		t.Errorf("after the drops:\n%s", d)
	}
	l.network("blue", "10.7.0.0/24")
	l.attached("blue", "web")
	l.check()
}

// A record damaged while the daemon runs breaks no list, check or repair:
// lists leave it out, doctor names it, and it can be dropped at once.
func TestRecordDamagedWhileRunning(t *testing.T) {
	l, ctx := blueLab(t)
	web, _ := l.attached("blue", "web")
	l.put(store.Endpoints, web.ID, "{not json")
	l.put(store.Networks, fixedID("bad-net"), `{"Doc":`)
	if nets, err := l.svc.ListNetworks(ctx, ""); err != nil || len(nets) != 1 {
		t.Errorf("list networks: %d, %v", len(nets), err)
	}
	if eps, err := l.svc.ListEndpoints(ctx, ""); err != nil || len(eps) != 0 {
		t.Errorf("list endpoints: %d, %v", len(eps), err)
	}
	problems := l.problemsOf()
	if !strings.Contains(problems, "Endpoint  "+web.ID+": its stored record does not decode") || !strings.Contains(problems, "Network  "+fixedID("bad-net")) {
		t.Errorf("doctor:\n%s", problems)
	}
	if _, err := l.svc.Repair(ctx, "test"); err != nil {
		t.Errorf("repair: %v", err)
	}
	if _, err := l.svc.DropSetAside(ctx, "endpoints/"+web.ID); err != nil {
		t.Fatal(err)
	}
	if _, err := l.svc.DropSetAside(ctx, "networks/"+fixedID("bad-net")); err != nil {
		t.Fatal(err)
	}
	_, err := l.svc.DropSetAside(ctx, "endpoints/"+fixedID("nothing"))
	if e := api.AsError(err); e == nil || e.Status != http.StatusNotFound {
		t.Errorf("dropping what is not there: %v", err)
	}
	if d := l.dump(); strings.Contains(d, web.HostInterfaceName) {
		t.Errorf("the dropped endpoint's port is still there:\n%s", d)
	}
	l.check()
}

// snapshot copies every bucket of a memory store.
func snapshot(t testing.TB, st store.Store) store.Snapshot {
	var snap store.Snapshot
	if err := st.View(func(tx store.Tx) (err error) { snap, err = store.Take(tx); return err }); err != nil {
		t.Fatal(err)
	}
	return snap
}

// restore puts a snapshot back, as --restore-backup puts the backup back.
func restore(t *testing.T, st store.Store, snap store.Snapshot) {
	if err := st.Update(func(tx store.Tx) error { return store.Replace(tx, snap) }); err != nil {
		t.Fatal(err)
	}
}

// After a restore from a backup, what was made since (B, in a namespace
// of its own) is wanted by no record: the start keeps it all, devices,
// namespace and firewall, reports it, and keeps its address from the
// pool; a prune removes it, and the host is as if B had never been.
func TestRestoreKeepsWhatNoRecordWants(t *testing.T) {
	l, ctx := blueLab(t)
	l.attached("blue", "a")
	backup := snapshot(t, l.st)
	onlyA := l.dump()
	b, bns := l.attached("blue", "b", mapping(6, 8080, 80))
	withB := l.dump()

	restore(t, l.st, backup)
	l.must(MarkRestored(l.st, time.Now()))
	logged := l.restart()
	if !strings.Contains(logged, "level=WARN") || !strings.Contains(logged, "kept kernel objects that no record wants, after a restore from backup") ||
		!strings.Contains(logged, b.HostInterfaceName) || !strings.Contains(logged, b.IpConfigurations[0].IpAddress) {
		t.Errorf("the start does not warn of what it keeps:\n%s", logged)
	}
	if got := l.dump(); got != strings.Replace(withB, "port tcp4/8080/*\n", "", 1) {
		t.Errorf("the restore start changed the host:\n%s\nwant\n%s", got, withB)
	}
	problems := l.problemsOf()
	for _, want := range []string{"Device " + b.HostInterfaceName + " : kept after a restore from backup: no record wants it", "Namespace " + labNetnsDir + "/" + bns.ID,
		"Firewall  : kept after a restore from backup", "Address " + b.IpConfigurations[0].IpAddress} {
		if !strings.Contains(problems, want) {
			t.Errorf("doctor lacks %q:\n%s", want, problems)
		}
	}
	if len(l.eventsOf("Kept")) == 0 {
		t.Errorf("no Kept events")
	}
	// A's last use of the default profile goes, while B's kept element
	// still jumps to it: the change is made, the chain kept.
	_, err := l.svc.ModifyEndpoint(ctx, "a", api.ModifyRequest{ResourceType: api.ResourcePolicy, RequestType: api.RequestAdd,
		Settings: json.RawMessage(`{"Policies":[{"Type":"ACL","Settings":{"Action":"Allow","Direction":"In","Protocols":"6","LocalPorts":"22","Priority":100}}]}`)})
	l.must(err)
	if d := l.dump(); !strings.Contains(d, "chain acl_default_in") {
		t.Errorf("the default profile B's kept element jumps to went:\n%s", d)
	}
	_, err = l.svc.ModifyEndpoint(ctx, "a", api.ModifyRequest{ResourceType: api.ResourcePolicy, RequestType: api.RequestRemove,
		Settings: json.RawMessage(`{"Policies":[{"Type":"ACL","Settings":{"Action":"Allow","Direction":"In","Protocols":"6","LocalPorts":"22","Priority":100}}]}`)})
	l.must(err)
	// B's address is not handed out again; self-repair keeps B too.
	c, err := l.svc.CreateEndpoint(ctx, api.Endpoint{Name: "c", HostComputeNetwork: "blue"})
	l.must(err)
	if c.IpConfigurations[0].IpAddress == b.IpConfigurations[0].IpAddress {
		t.Errorf("the kept device's address %s was handed out again", c.IpConfigurations[0].IpAddress)
	}
	l.must(l.svc.DeleteEndpoint(ctx, "c"))
	for range fullPassEvery {
		if _, err := l.svc.Repair(ctx, "test"); err != nil {
			t.Fatal(err)
		}
	}
	if d := l.dump(); !strings.Contains(d, "link "+b.HostInterfaceName) {
		t.Errorf("self-repair removed what the restore kept:\n%s", d)
	}
	// A restart before the prune keeps it still.
	l.restart()
	if d := l.dump(); !strings.Contains(d, "link "+b.HostInterfaceName) {
		t.Errorf("a second start removed what the restore kept:\n%s", d)
	}

	rep, err := l.svc.Prune(ctx)
	l.must(err)
	var removed []string
	for _, p := range rep.Removed {
		removed = append(removed, p.Problem)
	}
	if !strings.Contains(strings.Join(removed, "\n"), b.HostInterfaceName) {
		t.Errorf("prune does not report the removal of %s: %v", b.HostInterfaceName, removed)
	}
	if got := l.dump(); got != onlyA {
		t.Errorf("after the prune:\n%s\nwant\n%s", got, onlyA)
	}
	l.check()
	// The address is free again.
	again, err := l.svc.CreateEndpoint(ctx, api.Endpoint{Name: "b2", HostComputeNetwork: "blue", IpConfigurations: []api.IPConfig{{IpAddress: b.IpConfigurations[0].IpAddress}}})
	l.must(err)
	l.must(l.svc.DeleteEndpoint(ctx, again.ID))
	if logged := l.restart(); strings.Contains(logged, "kept") {
		t.Errorf("a start after the prune keeps something:\n%s", logged)
	}
}

// A restore that finds nothing to keep ends keeping at its start.
func TestRestoreWithNothingToKeep(t *testing.T) {
	l := newLab(t)
	l.network("blue", "10.7.0.0/24")
	l.attached("blue", "a")
	l.must(MarkRestored(l.st, time.Now()))
	logged := l.restart()
	if !strings.Contains(logged, "holds nothing of hostnet's that no record wants") {
		t.Errorf("the start:\n%s", logged)
	}
	l.must(l.st.View(func(tx store.Tx) error {
		if _, err := tx.Get(store.Meta, restoredKey); err == nil {
			t.Error("the restore mark stays")
		}
		return nil
	}))
	l.check()
}

// A new object that takes a set-aside record's key (a client chose the
// ID) keeps what it holds when the set-aside record is dropped.
func TestDropLeavesANewObjectOfTheSameKey(t *testing.T) {
	l, ctx := blueLab(t)
	web, _ := l.attached("blue", "web", mapping(6, 8080, 80))
	l.put(store.Endpoints, web.ID, "{")
	l.restart()
	again, err := l.svc.CreateEndpoint(ctx, api.Endpoint{ID: web.ID, Name: "again", HostComputeNetwork: "blue", Policies: []api.Policy{mapping(6, 9090, 90)}})
	l.must(err)
	_, err = l.svc.DropSetAside(ctx, "endpoints/"+web.ID)
	l.must(err)
	_, err = l.svc.CreateEndpoint(ctx, api.Endpoint{Name: "thief", HostComputeNetwork: "blue", IpConfigurations: again.IpConfigurations,
		Policies: []api.Policy{mapping(6, 9090, 90)}})
	if !api.IsConflict(err) {
		t.Errorf("the new endpoint's address or port was released with the set-aside record: %v", err)
	}
	l.must(l.svc.DeleteEndpoint(ctx, again.ID))
	l.check()
}

// An implicit namespace (a runtime's, made by its first endpoint) goes
// with its last endpoint when that is set aside, as when it is deleted;
// the endpoint's port in it is kept.
func TestImplicitNamespaceGoesWithItsSetAsideEndpoint(t *testing.T) {
	l, ctx := blueLab(t)
	l.host.AddNamespace("/proc/1234/ns/net", netmodel.NSID{Dev: 3, Ino: 77})
	ep, err := l.svc.CreateEndpoint(ctx, api.Endpoint{Name: "c1", HostComputeNetwork: "blue", HostComputeNamespace: "cni:c1", NetNamespacePath: "/proc/1234/ns/net"})
	l.must(err)
	l.put(store.Endpoints, ep.ID, `{"Doc":`)
	logged := l.restart()
	if _, err := l.svc.GetNamespace(ctx, "cni:c1"); !api.IsNotFound(err) {
		t.Errorf("the implicit namespace of a set-aside endpoint stays: %v", err)
	}
	if !strings.Contains(logged, "normalised") {
		t.Errorf("the start does not say what it did:\n%s", logged)
	}
	if d := l.dump(); !strings.Contains(d, "link "+ep.HostInterfaceName) {
		t.Errorf("the set-aside endpoint's port went:\n%s", d)
	}
	// The kept device holds its name in the namespace: a new endpoint
	// there is told so, and attaches once the record is dropped.
	again := api.Endpoint{Name: "c1b", HostComputeNetwork: "blue", HostComputeNamespace: "cni:c1", NetNamespacePath: "/proc/1234/ns/net"}
	if _, err := l.svc.CreateEndpoint(ctx, again); !api.IsConflict(err) || !strings.Contains(err.Error(), "device name taken") {
		t.Errorf("a new endpoint beside the kept device: %v", err)
	}
	_, err = l.svc.DropSetAside(ctx, ep.ID)
	l.must(err)
	l.rec.Wait()
	if _, err := l.svc.CreateEndpoint(ctx, again); err != nil {
		t.Errorf("a new endpoint once the record is dropped: %v", err)
	}
	l.check()
}
