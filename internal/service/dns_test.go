package service

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/netip"
	"strings"
	"testing"

	"github.com/hostnet/hostnet/api"
	"github.com/hostnet/hostnet/internal/store"
)

var enableDNS = api.Policy{Type: api.AutomaticDNS, Settings: json.RawMessage(`{"Enable":true}`)}

// resolvOf is the resolv.conf hostnet writes for namespace id.
func (l *lab) resolvOf(id string) string {
	l.t.Helper()
	var out []byte
	l.must(l.st.View(func(tx store.Tx) error {
		var ns namespaceRecord
		if err := store.GetJSON(tx, store.Namespaces, id, &ns); err != nil {
			return err
		}
		out = l.svc.resolvContent(tx, &ns)
		return nil
	}))
	return string(out)
}

func TestEmbeddedDNSView(t *testing.T) {
	l := newLab(t)
	l.svc.cfg.EmbeddedDNS = true
	ctx := context.Background()
	l.network("dns", "10.8.0.0/24", enableDNS)
	named, err := l.svc.CreateNetwork(ctx, api.Network{Name: "named", Type: api.NAT, Dns: &api.DNS{Domain: "named.test"},
		Ipams: []api.Ipam{{Subnets: []api.Subnet{{IpAddressPrefix: "10.11.0.0/24"}}}}, Policies: []api.Policy{enableDNS}})
	l.must(err)
	_, namedNS := l.attached(named.ID, "named-ep")
	l.network("plain", "10.9.0.0/24")
	web, webNS := l.attached("dns", "web")
	_, plainNS := l.attached("plain", "other")
	ns, err := l.svc.CreateNamespace(ctx, api.Namespace{Name: "db-ns"})
	l.must(err)
	db, err := l.svc.CreateEndpoint(ctx, api.Endpoint{Name: "db", HostComputeNetwork: "dns", HostComputeNamespace: ns.ID,
		DnsAliases: []string{"database"}, Dns: &api.DNS{ServerList: []string{"192.0.2.7"}, Search: []string{"corp.test"}}})
	l.must(err)
	_, err = l.svc.CreateEndpoint(ctx, api.Endpoint{Name: "detached", HostComputeNetwork: "dns"})
	l.must(err)
	_ = named

	if got, want := l.resolvOf(webNS.ID), "nameserver 10.8.0.1\n"; !strings.Contains(got, want) || !strings.Contains(got, "search example.test\n") {
		t.Errorf("resolv.conf of web:\n%s\nwant %q and the host's search list", got, want)
	}
	if got := l.resolvOf(ns.ID); !strings.Contains(got, "nameserver 10.8.0.1\n") || !strings.Contains(got, "search corp.test\n") || strings.Contains(got, "192.0.2.7") {
		t.Errorf("resolv.conf of db:\n%s\nwant the embedded server and db's own search list (its servers are the upstream)", got)
	}
	if got := l.resolvOf(namedNS.ID); !strings.Contains(got, "nameserver 10.11.0.1\n") || !strings.Contains(got, "search named.test\n") {
		t.Errorf("resolv.conf on a network with a domain:\n%s\nwant the embedded server and the network's domain", got)
	}
	if got := l.resolvOf(plainNS.ID); !strings.Contains(got, "nameserver 192.0.2.53\n") {
		t.Errorf("resolv.conf of a network without embedded DNS:\n%s\nwant the host's server", got)
	}

	v, err := l.svc.DNSView()
	l.must(err)
	var dnsNet *DNSNetwork
	for i := range v.Networks {
		if v.Networks[i].Name == "dns" {
			dnsNet = &v.Networks[i]
		}
	}
	if len(v.Networks) != 2 || dnsNet == nil || len(dnsNet.Listen) != 1 || dnsNet.Listen[0] != netip.MustParseAddr("10.8.0.1") {
		t.Fatalf("networks %+v; want dns (listening on 10.8.0.1) and named", v.Networks)
	}
	if len(v.Endpoints) != 3 {
		t.Fatalf("endpoints %+v; want web, db and named-ep (the attached ones)", v.Endpoints)
	}
	for _, e := range v.Endpoints {
		switch e.ID {
		case fixedID("named-ep"):
		case web.ID:
			if e.Namespace != webNS.ID || len(e.Addrs) != 1 {
				t.Errorf("web: %+v", e)
			}
		case db.ID:
			if len(e.Aliases) != 1 || len(e.Upstream) != 1 || e.Upstream[0] != netip.MustParseAddr("192.0.2.7") {
				t.Errorf("db: %+v", e)
			}
		default:
			t.Errorf("unexpected endpoint %+v", e)
		}
	}
	if len(v.Upstream) != 1 || v.Upstream[0] != netip.MustParseAddr("192.0.2.53") {
		t.Errorf("upstream %v; want the host's", v.Upstream)
	}

	// Turning it off by a modify request gives the namespaces the servers
	// they had without it.
	_, err = l.svc.ModifyNetwork(ctx, "dns", api.ModifyRequest{ResourceType: "Policy", RequestType: "Remove",
		Settings: json.RawMessage(`{"Policies":[{"Type":"AutomaticDNS","Settings":{"Enable":true}}]}`)})
	l.must(err)
	if got := l.resolvOf(webNS.ID); !strings.Contains(got, "nameserver 192.0.2.53\n") {
		t.Errorf("resolv.conf of web after AutomaticDNS is removed:\n%s", got)
	}
	if v, _ := l.svc.DNSView(); len(v.Networks) != 1 || len(v.Endpoints) != 1 {
		t.Errorf("view after AutomaticDNS is removed: %+v", v)
	}
}

func TestAutomaticDNSRefusals(t *testing.T) {
	l := newLab(t)
	ctx := context.Background()
	create := func(name string, p api.Policy) error {
		_, err := l.svc.CreateNetwork(ctx, api.Network{Name: name, Type: api.NAT,
			Ipams: []api.Ipam{{Subnets: []api.Subnet{{IpAddressPrefix: "10.10.0.0/24"}}}}, Policies: []api.Policy{p}})
		return err
	}
	var e *api.Error
	if err := create("on", enableDNS); !errors.As(err, &e) || !strings.Contains(err.Error(), "Policies[0] (AutomaticDNS)") {
		t.Errorf("Enable without the embedded server: %v; want a refusal naming the policy", err)
	}
	// Windows clients send the policy with Enable false: accepted.
	if err := create("off", api.Policy{Type: api.AutomaticDNS, Settings: json.RawMessage(`{"Enable":false}`)}); err != nil {
		t.Errorf("Enable false: %v", err)
	}
}

// BenchmarkDNSView reads the view of one network of 5,000 attached
// endpoints (records written directly): what the embedded DNS server's
// first question after a change pays, besides building its table.
func BenchmarkDNSView(b *testing.B) {
	l := newLab(b)
	l.svc.cfg.EmbeddedDNS = true
	n := l.network("dns", "10.64.0.0/16", enableDNS)
	l.must(l.st.Update(func(tx store.Tx) error {
		for i := range 5000 {
			id := fixedID(fmt.Sprint("ep", i))
			ep := endpointRecord{Doc: api.Endpoint{ID: id, Name: fmt.Sprint("web-", i), HostComputeNetwork: n.ID,
				HostComputeNamespace: fixedID(fmt.Sprint("ns", i)), DnsAliases: []string{fmt.Sprint("alias-", i)},
				IpConfigurations: []api.IPConfig{{IpAddress: fmt.Sprintf("10.64.%d.%d", (i+2)>>8, (i+2)&255), PrefixLength: 16}}}}
			if err := store.PutJSON(tx, store.Endpoints, id, ep); err != nil {
				return err
			}
		}
		return nil
	}))
	b.ReportAllocs()
	for b.Loop() {
		v, err := l.svc.DNSView()
		if err != nil || len(v.Endpoints) != 5000 {
			b.Fatalf("%d endpoints, %v", len(v.Endpoints), err)
		}
	}
}
