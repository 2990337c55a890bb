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
// else its network's, else its DHCP lease's, else the host's. The lookups return nil for what is
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
		if len(d.Servers) == 0 {
			if pn := network(ep); pn != nil && len(pn.spec.DNS.Servers) > 0 {
				d = pn.spec.DNS
			}
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
