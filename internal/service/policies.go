package service

import (
	"fmt"
	"strings"

	"github.com/hostnet/hostnet/api"
	"github.com/hostnet/hostnet/internal/store"
)

// endpointPolicies is the parsed form of an endpoint's policies.
type endpointPolicies struct {
	routes   []api.RouteSpec
	mappings []api.PortMappingSpec
	acls     []api.ACLSpec
	obnat    *api.OutboundNATSpec
}

// parseEndpointPolicies validates an endpoint's policies (their types
// already resolved and known) and returns them parsed; owner names the
// document in errors.
func parseEndpointPolicies(owner string, ps []api.Policy) (*endpointPolicies, error) {
	out := &endpointPolicies{}
	seen := map[string]int{}
	// The api parsers say "invalid <owner>" themselves.
	policyOwner := strings.TrimPrefix(owner, "invalid ")
	for i, p := range ps {
		if !supported(supportedEndpointPolicies, p.Type) {
			return nil, unsupportedPolicy(owner, i, p.Type, supportedEndpointPolicies)
		}
		switch p.Type {
		case api.SDNRoute:
			r, err := parseSDNRoute(p.Settings)
			if err != nil {
				return nil, prefixError(fmt.Sprintf("%s: field Policies[%d]", owner, i), err)
			}
			out.routes = append(out.routes, r)
		case api.PortMapping:
			m, err := api.ParsePortMapping(policyOwner, i, p)
			if err != nil {
				return nil, err
			}
			if j, dup := seen[m.Key()]; dup {
				return nil, api.Invalid(api.CodeInvalidPolicy, "%s: field Policies[%d]: host port %s is published twice (also by Policies[%d])", owner, i, m, j)
			}
			seen[m.Key()] = i
			out.mappings = append(out.mappings, m)
		case api.ACL:
			a, err := api.ParseACL(policyOwner, i, api.ACL, p)
			if err != nil {
				return nil, err
			}
			out.acls = append(out.acls, a)
		case api.OutBoundNAT:
			if out.obnat != nil {
				return nil, api.Invalid(api.CodeInvalidPolicy, "%s: field Policies[%d]: an endpoint has at most one OutBoundNAT policy", owner, i)
			}
			o, err := api.ParseOutboundNAT(policyOwner, i, p)
			if err != nil {
				return nil, err
			}
			out.obnat = &o
		}
	}
	return out, nil
}

// prefixError puts where in the document an error is before its message,
// keeping its API code and status.
func prefixError(where string, err error) error {
	if e, ok := err.(*api.Error); ok {
		c := *e
		c.Message = where + ": " + e.Message
		return &c
	}
	return fmt.Errorf("%s: %w", where, err)
}

// parseNetworkACLs returns a network's NetworkACL rules.
func parseNetworkACLs(owner string, ps []api.Policy) ([]api.ACLSpec, error) {
	var out []api.ACLSpec
	for i, p := range ps {
		if p.Type != api.NetworkACL {
			continue
		}
		a, err := api.ParseACL(owner, i, api.NetworkACL, p)
		if err != nil {
			return nil, err
		}
		out = append(out, a)
	}
	return out, nil
}

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
