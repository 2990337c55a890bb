package service

import (
	"fmt"
	"strings"

	"github.com/hostnet/hostnet/api"
	"github.com/hostnet/hostnet/internal/store"
)

// portKey is the store key of a published host port: "tcp4/8080/*" for
// every address, "tcp4/8080/10.0.0.1" for one.
func portKey(m api.PortMappingSpec) string {
	fam := "4"
	if m.IPv6 {
		fam = "6"
	}
	addr := "*"
	if m.VIP.IsValid() {
		addr = m.VIP.String()
	}
	return fmt.Sprintf("%s%s/%d/%s", m.ProtocolName(), fam, m.ExternalPort, addr)
}

// claimPorts records the host ports of an endpoint's mappings in tx,
// refusing one another endpoint publishes: the same port on every address
// collides with the port on any one address, and the other way round.
func claimPorts(tx store.Tx, epID string, ms []api.PortMappingSpec) error {
	for _, m := range ms {
		key := portKey(m)
		prefix := key[:strings.LastIndex(key, "/")+1]
		err := tx.ForEach(store.Ports, prefix, func(k string, v []byte) error {
			if string(v) == epID {
				return nil
			}
			if k == key || strings.HasSuffix(k, "/*") || strings.HasSuffix(key, "/*") {
				holder := string(v)
				var other endpointRecord
				if store.GetJSON(tx, store.Endpoints, holder, &other) == nil {
					holder = fmt.Sprintf("endpoint %q (%s)", displayName(other.Doc.Name, holder), holder)
				}
				return api.Conflict(api.CodePortAlreadyExists, "host port %s is already published by %s", m, holder)
			}
			return nil
		})
		if err != nil {
			return err
		}
		if err := tx.Put(store.Ports, key, []byte(epID)); err != nil {
			return err
		}
	}
	return nil
}

// dropPorts forgets the host ports of mappings in tx.
func dropPorts(tx store.Tx, ms []api.PortMappingSpec) error {
	for _, m := range ms {
		if err := tx.Delete(store.Ports, portKey(m)); err != nil {
			return err
		}
	}
	return nil
}

// checkSetPolicies validates a network's IP sets (SetPolicy): only the
// network types whose endpoints are filtered in hostnet's inet table
// (NAT, L2Bridge) hold them.
func checkSetPolicies(spec *api.NetworkSpec) error {
	if spec.Sets != nil && len(spec.Sets.List) > 0 && spec.Type != api.NAT && spec.Type != api.L2Bridge {
		return api.Unsupported("invalid network: field Policies: SetPolicy applies to NAT and L2Bridge networks, not %s", spec.Type)
	}
	return nil
}

// checkSetReferences refuses endpoint policies whose rules name an IP set
// that network pn does not have.
func checkSetReferences(owner string, pn *parsedNetwork, policies []api.Policy) error {
	sets, err := pn.ipSets()
	if err != nil {
		sets = nil // a network whose sets do not parse has none to name
	}
	return api.CheckSetReferences(owner, policies, sets)
}
