package service

import (
	"fmt"
	"net/netip"
	"regexp"
	"strconv"
	"strings"

	"github.com/hostnet/hostnet/api"
)

// checkNextHopsOf refuses, naming the field and the value, a route of an
// endpoint whose next hop the kernel would not take inside its namespace
// (see api.CheckNextHop): one of routes (its Routes field) or of the
// SDNRoute policies among ps, by their index in ps. addrs are the
// endpoint's addresses with their subnets' prefix lengths. It is checked
// when the endpoint is created or its policies modified, attached or not:
// a route stored on a detached endpoint would otherwise fail every attach.
//
// An endpoint without any address (one whose addresses a DHCP server
// gives it, later) cannot be judged: its routes are left to the kernel.
func checkNextHopsOf(owner string, routes []api.Route, ps []api.Policy, addrs []netip.Prefix) error {
	if len(addrs) == 0 {
		return nil
	}
	for i, r := range routes {
		nh, err := api.ParseAddr(r.NextHop)
		if r.NextHop == "" || err != nil {
			continue // on-link, or refused by the document's own check
		}
		if err := api.CheckNextHop(nh, addrs); err != nil {
			return api.Invalid(api.CodeInvalidEndpoint, "%s: field Routes[%d].NextHop: %v", owner, i, err)
		}
	}
	for i, p := range ps {
		if p.Type != api.SDNRoute {
			continue
		}
		var s api.SDNRouteSettings
		if api.DecodeSettings(p.Settings, &s) != nil || s.NextHop == "" {
			continue
		}
		nh, err := api.ParseAddr(s.NextHop)
		if err != nil {
			continue
		}
		if err := api.CheckNextHop(nh, addrs); err != nil {
			return api.Invalid(api.CodeInvalidPolicy, "%s: field Policies[%d].Settings.NextHop (%s): %v", owner, i, p.Type, err)
		}
	}
	return nil
}

var policyIndex = regexp.MustCompile(`Policies\[(\d+)\]( \([A-Za-z]+\))?`)

// inRequestTerms rewords an error about the merged policy list of a
// modify request to a network or an endpoint (owner) (see mergePolicies)
// so that it names each policy by its index in the request and its type,
// or as the object's own policy: the client cannot tell which of its
// policies was wrong by an index into a list it never sent.
func inRequestTerms(err error, owner string, origins []int, in, cur []api.Policy) error {
	e, ok := err.(*api.Error)
	if !ok {
		return err
	}
	c := *e
	c.Message = policyIndex.ReplaceAllStringFunc(e.Message, func(m string) string {
		sub := policyIndex.FindStringSubmatch(m)
		k, err := strconv.Atoi(sub[1])
		if err != nil || k >= len(origins) {
			return m
		}
		if o := origins[k]; o >= 0 {
			return fmt.Sprintf("Policies[%d] (%s)", o, in[o].Type)
		}
		return fmt.Sprintf("the %s's Policies[%d] (%s)", owner, -1-origins[k], cur[-1-origins[k]].Type)
	})
	if rest, ok := strings.CutPrefix(c.Message, "invalid "+owner+": "); ok {
		c.Message = "invalid " + owner + " modify request: " + rest
	}
	return &c
}
