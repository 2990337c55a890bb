package service

import (
	"bufio"
	"bytes"
	"fmt"
	"net/netip"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/hostnet/hostnet/api"
	"github.com/hostnet/hostnet/internal/store"
)

// resolvConf renders a resolv.conf from DNS settings.
func resolvConf(nsID string, d api.DNSSpec) []byte {
	var b bytes.Buffer
	fmt.Fprintf(&b, "# Written by hostnet for namespace %s; changes are overwritten.\n", nsID)
	search := d.Search
	if len(search) == 0 && d.Domain != "" {
		search = []string{d.Domain}
	}
	if len(search) > 0 {
		fmt.Fprintf(&b, "search %s\n", strings.Join(search, " "))
	}
	for _, s := range d.Servers {
		fmt.Fprintf(&b, "nameserver %s\n", s)
	}
	if len(d.Options) > 0 {
		fmt.Fprintf(&b, "options %s\n", strings.Join(d.Options, " "))
	}
	return b.Bytes()
}

// hostDNS reads the host's resolver settings, dropping loopback servers:
// they answer on the host's loopback, which a namespace cannot reach.
func hostDNS(path string) api.DNSSpec {
	var d api.DNSSpec
	f, err := os.Open(path)
	if err != nil {
		return d
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) < 2 || strings.HasPrefix(fields[0], "#") || strings.HasPrefix(fields[0], ";") {
			continue
		}
		switch fields[0] {
		case "nameserver":
			if a, err := netip.ParseAddr(fields[1]); err == nil && !a.IsLoopback() {
				d.Servers = append(d.Servers, a)
			}
		case "search":
			d.Search = fields[1:]
		case "domain":
			d.Domain = fields[1]
		case "options":
			d.Options = fields[1:]
		}
	}
	return d
}

// resolvFrom renders the resolv.conf of a namespace from the DNS settings
// of the endpoints attached to it, in attach order: each endpoint's own,
// else its network's, else its DHCP lease's, else the host's; an endpoint
// of a network with embedded DNS names the embedded server instead (its
// network's DNS addresses), with the search list it would have had. The
// lookups return nil for what is
// not there. Empty when nothing is attached, or hostnet writes no file for
// the namespace.
func (s *Service) resolvFrom(ns *namespaceRecord, endpoint func(id string) *endpointRecord,
	network func(*endpointRecord) *parsedNetwork, host func() api.DNSSpec) []byte {
	if ns.ResolvConf == "" || len(attachedIDs(&ns.Doc)) == 0 {
		return nil
	}
	var out api.DNSSpec
	seen := map[netip.Addr]bool{}
	useHost := false
	for _, id := range attachedIDs(&ns.Doc) {
		ep := endpoint(id)
		if ep == nil {
			continue
		}
		spec, err := api.ParseEndpoint(&api.Endpoint{Dns: ep.Doc.Dns})
		if err != nil {
			continue
		}
		d := spec.DNS
		pn := network(ep)
		if pn != nil && s.embeddedDNS(pn.spec) {
			// The embedded server answers (and forwards to the servers
			// the endpoint or the network names, else the host's); the
			// search list is the first of theirs that says anything.
			if !saysAnything(d) {
				d = pn.spec.DNS
			}
			if !saysAnything(d) {
				d = host()
			}
			d.Servers = dnsAddrs(pn.spec)
			mergeDNS(&out, d, seen)
			continue
		}
		if len(d.Servers) == 0 && pn != nil && len(pn.spec.DNS.Servers) > 0 {
			d = pn.spec.DNS
		}
		if len(d.Servers) == 0 {
			d = leaseDNS(ep.Doc.DhcpLease, d)
		}
		if len(d.Servers) == 0 {
			useHost = true
			continue
		}
		mergeDNS(&out, d, seen)
	}
	if useHost && len(out.Servers) == 0 {
		mergeDNS(&out, host(), seen)
	}
	return resolvConf(ns.Doc.ID, out)
}

// hostDNSOnce returns the host's DNS settings, read on first use.
func (s *Service) hostDNSOnce() func() api.DNSSpec {
	var host *api.DNSSpec
	return func() api.DNSSpec {
		if host == nil {
			d := s.hostResolv.get(s.cfg.HostResolvConf)
			host = &d
		}
		return *host
	}
}

// hostResolv caches the host's DNS settings while its resolv.conf keeps
// its size and modification time: an attach plans a namespace's
// resolv.conf twice, before and after.
type hostResolv struct {
	mu    sync.Mutex
	size  int64
	mtime time.Time
	spec  api.DNSSpec
	ok    bool
}

func (h *hostResolv) get(path string) api.DNSSpec {
	st, err := os.Stat(path)
	if err != nil {
		return hostDNS(path)
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.ok && st.Size() == h.size && st.ModTime().Equal(h.mtime) {
		return h.spec
	}
	h.spec, h.size, h.mtime, h.ok = hostDNS(path), st.Size(), st.ModTime(), true
	return h.spec
}

// saysAnything reports whether d sets servers, a domain or a search list.
func saysAnything(d api.DNSSpec) bool {
	return len(d.Servers) > 0 || d.Domain != "" || len(d.Search) > 0
}

func mergeDNS(out *api.DNSSpec, d api.DNSSpec, seen map[netip.Addr]bool) {
	for _, a := range d.Servers {
		if !seen[a] {
			seen[a] = true
			out.Servers = append(out.Servers, a)
		}
	}
	if out.Domain == "" {
		out.Domain = d.Domain
	}
	if len(out.Search) == 0 {
		out.Search = d.Search
	}
	if len(out.Options) == 0 {
		out.Options = d.Options
	}
}

// resolvContent is a namespace's resolv.conf as tx sees it.
func (s *Service) resolvContent(tx store.Tx, ns *namespaceRecord) []byte {
	return s.resolvFrom(ns, func(id string) *endpointRecord {
		var ep endpointRecord
		if store.GetJSON(tx, store.Endpoints, id, &ep) != nil {
			return nil
		}
		return &ep
	}, func(ep *endpointRecord) *parsedNetwork {
		pn, _ := networkOf(tx, &ep.Doc)
		return pn
	}, func() api.DNSSpec { return s.hostResolv.get(s.cfg.HostResolvConf) })
}

// DNSView is what the embedded DNS server answers from (docs/dns.md): the
// networks whose endpoints resolve each other's names (AutomaticDNS
// enabled, and the daemon's embedded DNS on), their attached endpoints,
// and the host's resolvers. It is a read-only snapshot of the records:
// building it changes nothing.
type DNSView struct {
	Networks  []DNSNetwork
	Endpoints []DNSEndpoint
	// Upstream are the host's resolvers, loopback ones included (the
	// server forwards from the host namespace, where they answer).
	Upstream []netip.Addr
}

// DNSNetwork is a network with embedded DNS.
type DNSNetwork struct {
	ID, Name string
	// Domain, when set (the network's Dns.Domain), is a suffix the
	// endpoints' names are answered with too.
	Domain string
	// Listen are the addresses the server answers the network's endpoints
	// on: its subnets' gateways, which sit on its bridge.
	Listen []netip.Addr
	// Upstream are the network's Dns.ServerList: where names that are not
	// its endpoints' go; empty: the host's.
	Upstream []netip.Addr
}

// DNSEndpoint is an attached endpoint of a network with embedded DNS.
type DNSEndpoint struct {
	ID, Name string
	Aliases  []string
	// Network and Namespace are the IDs of its network and namespace.
	Network, Namespace string
	Addrs              []netip.Addr
	// Upstream are its own Dns.ServerList; empty: its network's.
	Upstream []netip.Addr
}

// embeddedDNS reports whether spec's endpoints get the embedded DNS
// server: the network asks for it and the daemon runs one.
func (s *Service) embeddedDNS(spec *api.NetworkSpec) bool {
	return s.cfg.EmbeddedDNS && spec.AutomaticDNS
}

// dnsAddrs are the addresses the embedded DNS server answers a network's
// endpoints on: its subnets' gateways, IPv4 first.
func dnsAddrs(spec *api.NetworkSpec) []netip.Addr {
	var v4, v6 []netip.Addr
	for _, sub := range spec.Subnets {
		if sub.Gateway.Is4() {
			v4 = append(v4, sub.Gateway)
		} else if sub.Gateway.IsValid() {
			v6 = append(v6, sub.Gateway)
		}
	}
	return append(v4, v6...)
}

// checkAutomaticDNS refuses embedded DNS where no server answers: when
// the daemon runs none, and on network types other than NAT. The server
// listens on the gateway a NAT network's bridge carries; the L2 types put
// their endpoints on a segment where the host may have no address.
func (s *Service) checkAutomaticDNS(spec *api.NetworkSpec) error {
	if !spec.AutomaticDNS {
		return nil
	}
	for i, p := range spec.Policies {
		var set api.AutomaticDNSSettings
		if p.Type != api.AutomaticDNS || api.DecodeSettings(p.Settings, &set) != nil || !set.Enable {
			continue
		}
		if !s.cfg.EmbeddedDNS {
			return api.Unsupported("invalid network: field Policies[%d] (AutomaticDNS): Enable: this daemon runs without its embedded DNS server (--embedded-dns=false)", i)
		}
		if spec.Type != api.NAT {
			return api.Unsupported("invalid network: field Policies[%d] (AutomaticDNS): Enable on a %s network is not supported: "+
				"the embedded DNS server answers on the gateway of a NAT network's bridge, and a %s network's segment may have no address of the host's", i, spec.Type, spec.Type)
		}
	}
	return nil
}

// DNSView returns the embedded DNS server's view of the records. With no
// network asking for embedded DNS it reads no endpoint.
func (s *Service) DNSView() (DNSView, error) {
	v, err := s.dnsView(true)
	if err == nil && len(v.Networks) > 0 {
		v.Upstream = hostResolvers(s.cfg.HostResolvConf)
	}
	return v, err
}

// DNSNetworks returns the networks of the embedded DNS server's view
// alone: what it binds sockets for, read without the endpoints.
func (s *Service) DNSNetworks() ([]DNSNetwork, error) {
	v, err := s.dnsView(false)
	return v.Networks, err
}

func (s *Service) dnsView(endpoints bool) (DNSView, error) {
	var v DNSView
	if !s.cfg.EmbeddedDNS {
		return v, nil
	}
	err := s.cfg.Store.View(func(tx store.Tx) error {
		nets, err := listNetworks(tx)
		if err != nil {
			return err
		}
		enabled := map[string]bool{}
		for i := range nets {
			spec, err := api.ParseNetwork(&nets[i].Doc)
			if err != nil || !s.embeddedDNS(spec) {
				continue
			}
			n := &nets[i].Doc
			enabled[n.ID] = true
			v.Networks = append(v.Networks, DNSNetwork{ID: n.ID, Name: n.Name, Domain: spec.DNS.Domain,
				Listen: dnsAddrs(spec), Upstream: spec.DNS.Servers})
		}
		if len(enabled) == 0 || !endpoints {
			return nil
		}
		eps, err := listRecords[dnsEndpointRecord](tx, store.Endpoints)
		if err != nil {
			return err
		}
		for i := range eps {
			e := &eps[i].Doc
			if !enabled[e.HostComputeNetwork] || e.HostComputeNamespace == "" {
				continue
			}
			de := DNSEndpoint{ID: e.ID, Name: e.Name, Aliases: e.DnsAliases, Network: e.HostComputeNetwork, Namespace: e.HostComputeNamespace}
			for _, c := range e.IpConfigurations {
				if a, err := netip.ParseAddr(c.IpAddress); err == nil {
					de.Addrs = append(de.Addrs, a.Unmap())
				}
			}
			if e.Dns != nil {
				if spec, err := api.ParseEndpoint(&api.Endpoint{Dns: e.Dns}); err == nil {
					de.Upstream = spec.DNS.Servers
				}
			}
			v.Endpoints = append(v.Endpoints, de)
		}
		return nil
	})
	if err != nil {
		return DNSView{}, err
	}
	return v, nil
}

// dnsEndpointRecord is the part of an endpoint record the DNS view reads:
// decoding only it (plain structs, no unknown fields kept) takes about
// 60% of the time a whole record takes (BenchmarkDNSView).
type dnsEndpointRecord struct {
	Doc struct {
		ID                   string
		Name                 string
		HostComputeNetwork   string
		HostComputeNamespace string
		IpConfigurations     []api.IPConfig
		Dns                  *api.DNS
		DnsAliases           []string
	}
}

// hostResolvers are the nameservers of the host's resolv.conf, loopback
// ones included.
func hostResolvers(path string) []netip.Addr {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil
	}
	var out []netip.Addr
	for _, line := range strings.Split(string(b), "\n") {
		fields := strings.Fields(line)
		if len(fields) >= 2 && fields[0] == "nameserver" {
			// A link-local IPv6 server may carry a zone: keep the address.
			if a, err := netip.ParseAddr(fields[1]); err == nil {
				out = append(out, a)
			}
		}
	}
	return out
}
