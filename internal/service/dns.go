package service

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"strings"

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

// namespaceDNS merges the DNS of a namespace's endpoints in attach order:
// each endpoint's own settings, else its network's, else the host's.
func (s *Service) namespaceDNS(tx store.Tx, ns *namespaceRecord) api.DNSSpec {
	return s.dnsOf(ns, func(id string) *endpointRecord {
		var ep endpointRecord
		if store.GetJSON(tx, store.Endpoints, id, &ep) != nil {
			return nil
		}
		return &ep
	}, func(ep *endpointRecord) *parsedNetwork {
		pn, _ := networkOf(tx, &ep.Doc)
		return pn
	}, func() api.DNSSpec { return hostDNS(s.cfg.HostResolvConf) })
}

// dnsOf merges the DNS settings of the endpoints attached to ns: each
// endpoint's own, else its network's, else the host's. The lookups return
// nil for what is not there.
func (s *Service) dnsOf(ns *namespaceRecord, endpoint func(id string) *endpointRecord,
	network func(*endpointRecord) *parsedNetwork, host func() api.DNSSpec) api.DNSSpec {
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
			useHost = true
			continue
		}
		mergeDNS(&out, d, seen)
	}
	if useHost && len(out.Servers) == 0 {
		mergeDNS(&out, host(), seen)
	}
	return out
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

// resolvContent is a namespace's resolv.conf as tx sees it: empty when no
// endpoint is attached.
func (s *Service) resolvContent(tx store.Tx, ns *namespaceRecord) []byte {
	if ns.ResolvConf == "" || len(attachedIDs(&ns.Doc)) == 0 {
		return nil
	}
	return resolvConf(ns.Doc.ID, s.namespaceDNS(tx, ns))
}

// writeResolvFile writes a namespace's resolv.conf in place. In place, not
// by rename: processes that bind-mounted the file over their
// /etc/resolv.conf (`ip netns exec`, `hostnet run`) then see the change,
// and overwriting a file costs far less than creating one.
func writeResolvFile(ns *namespaceRecord, content []byte) error {
	if ns.ResolvConf == "" {
		return nil
	}
	err := os.WriteFile(ns.ResolvConf, content, 0o644)
	if errors.Is(err, os.ErrNotExist) {
		// The directory is made with the namespace; make it again if it
		// went missing.
		if err := os.MkdirAll(filepath.Dir(ns.ResolvConf), 0o755); err != nil {
			return err
		}
		err = os.WriteFile(ns.ResolvConf, content, 0o644)
	}
	return err
}

// writeResolvConf rewrites a namespace's resolv.conf from the store.
func (s *Service) writeResolvConf(ns *namespaceRecord) error {
	if ns.ResolvConf == "" {
		return nil
	}
	var content []byte
	if err := s.cfg.Store.View(func(tx store.Tx) error {
		content = s.resolvContent(tx, ns)
		return nil
	}); err != nil {
		return err
	}
	return writeResolvFile(ns, content)
}

// refreshNetworkDNS rewrites the resolv.conf of every namespace that holds
// an endpoint of the network.
func (s *Service) refreshNetworkDNS(networkID string) {
	var nss []namespaceRecord
	_ = s.cfg.Store.View(func(tx store.Tx) error {
		eps, err := listEndpoints(tx)
		if err != nil {
			return err
		}
		done := map[string]bool{}
		for _, e := range eps {
			if e.Doc.HostComputeNetwork != networkID || e.Doc.HostComputeNamespace == "" || done[e.Doc.HostComputeNamespace] {
				continue
			}
			done[e.Doc.HostComputeNamespace] = true
			var ns namespaceRecord
			if store.GetJSON(tx, store.Namespaces, e.Doc.HostComputeNamespace, &ns) == nil {
				nss = append(nss, ns)
			}
		}
		return nil
	})
	for i := range nss {
		if err := s.writeResolvConf(&nss[i]); err != nil {
			s.log.Warn("writing resolv.conf failed", "namespace", nss[i].Doc.ID, "err", err)
		}
	}
}
