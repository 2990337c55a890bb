package cli

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"

	"github.com/spf13/cobra"

	"github.com/hostnet/hostnet/api"
	"github.com/hostnet/hostnet/client"
)

// parsePolicies reads one HCN policy object or an array of them. Unknown
// fields are refused so that a misspelt "Settings" is not silently dropped.
func parsePolicies(data []byte) ([]api.Policy, error) {
	data = bytes.TrimSpace(data)
	if len(data) == 0 {
		return nil, errors.New("no policy given")
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	var pols []api.Policy
	if data[0] == '[' {
		if err := dec.Decode(&pols); err != nil {
			return nil, fmt.Errorf("invalid policy JSON: %w", err)
		}
	} else {
		var p api.Policy
		if err := dec.Decode(&p); err != nil {
			return nil, fmt.Errorf("invalid policy JSON: %w", err)
		}
		pols = []api.Policy{p}
	}
	if _, err := dec.Token(); err != io.EOF {
		return nil, errors.New("invalid policy JSON: more than one document (give several policies as an array)")
	}
	if len(pols) == 0 {
		return nil, errors.New("no policy given: the array is empty")
	}
	for i, p := range pols {
		if p.Type == "" {
			return nil, fmt.Errorf("policy %d has no Type", i)
		}
	}
	return pols, nil
}

// policyRequest builds the modify request that adds or removes policies.
func policyRequest(rt api.RequestType, pols []api.Policy) (*api.ModifyRequest, error) {
	settings, err := json.Marshal(api.PolicyRequest{Policies: pols})
	if err != nil {
		return nil, fmt.Errorf("encode policies: %w", err)
	}
	return &api.ModifyRequest{ResourceType: api.ResourcePolicy, RequestType: rt, Settings: settings}, nil
}

// policyTarget is what the policy commands need of a network or an endpoint.
type policyTarget struct {
	modify func(ctx context.Context, c *client.Client, ref string, req *api.ModifyRequest) (any, error)
	// policies returns the object's policies and, for an endpoint, the ID
	// of its network.
	policies func(ctx context.Context, c *client.Client, ref string) ([]api.Policy, string, error)
	// aclType is the type of the policies --acl makes.
	aclType api.PolicyType
}

func policyTargetOf(kind string) policyTarget {
	if kind == kindEndpoint {
		return policyTarget{
			modify: func(ctx context.Context, c *client.Client, ref string, req *api.ModifyRequest) (any, error) {
				return c.ModifyEndpoint(ctx, ref, req)
			},
			policies: func(ctx context.Context, c *client.Client, ref string) ([]api.Policy, string, error) {
				e, err := c.GetEndpoint(ctx, ref)
				if err != nil {
					return nil, "", err
				}
				return e.Policies, e.HostComputeNetwork, nil
			},
			aclType: api.ACL,
		}
	}
	return policyTarget{
		modify: func(ctx context.Context, c *client.Client, ref string, req *api.ModifyRequest) (any, error) {
			return c.ModifyNetwork(ctx, ref, req)
		},
		policies: func(ctx context.Context, c *client.Client, ref string) ([]api.Policy, string, error) {
			n, err := c.GetNetwork(ctx, ref)
			if err != nil {
				return nil, "", err
			}
			return n.Policies, "", nil
		},
		aclType: api.NetworkACL,
	}
}

// policySources are the flags of `policy add` and `policy rm` that give
// policies.
type policySources struct {
	inline, file string
	acls         []string
	publish      []string // endpoints only
}

// empty reports whether no policy was given.
func (s *policySources) empty() bool {
	return s.inline == "" && s.file == "" && len(s.acls) == 0 && len(s.publish) == 0
}

// policies gathers the policies given, in the order JSON (--policy or
// --file), --acl, --publish; aclType is the type of the --acl rules.
func (a *app) policies(s *policySources, aclType api.PolicyType) ([]api.Policy, error) {
	var pols []api.Policy
	if s.inline != "" || s.file != "" {
		data := []byte(s.inline)
		if s.file != "" {
			b, err := a.readInput(s.file)
			if err != nil {
				return nil, err
			}
			data = b
		}
		p, err := parsePolicies(data)
		if err != nil {
			return nil, err
		}
		pols = append(pols, p...)
	}
	acls, err := aclPolicies(s.acls, aclType)
	if err != nil {
		return nil, err
	}
	pols = append(pols, acls...)
	maps, err := publishPolicies(s.publish)
	if err != nil {
		return nil, err
	}
	return append(pols, maps...), nil
}

// newPolicyCommand builds `network policy` or `endpoint policy`.
func newPolicyCommand(a *app, kind string) *cobra.Command {
	target := policyTargetOf(kind)
	obj := strings.ToUpper(kind)
	cmd := newGroupCommand("policy", "Manage the policies of "+withArticle(kind))
	modify := func(verb string, rt api.RequestType) *cobra.Command {
		src := &policySources{}
		use := verb + " " + obj + " (--policy JSON | -f FILE | --acl SPEC...)"
		long := "The policy is one HCN policy object, {\"Type\":\"...\",\"Settings\":{...}},\n" +
			"or an array of them, given with --policy or read from FILE (- for stdin).\n\n" +
			"--acl SPEC (repeatable) makes " + string(target.aclType) + " policies, firewall rules:\n" +
			"  " + aclSyntax + "\n" +
			"ACTION is allow or block, DIRECTION in or out, P a protocol (tcp, udp, icmp,\n" +
			"icmpv6, igmp or a number), A an address or CIDR prefix, R a port or LOW-HIGH,\n" +
			"any value may be any. E.g. --acl 'allow in proto tcp lport 80,443 priority 100'."
		if kind == kindEndpoint {
			use = verb + " " + obj + " (--policy JSON | -f FILE | --acl SPEC... | -p PUBLISH...)"
			long += "\n\n-p/--publish (repeatable) makes PortMapping policies, as docker run does:\n" +
				"  " + publishSyntax + "\n" +
				"PROTO is tcp (the default) or udp; a range (8000-8010:80-90) maps each port."
		}
		long += "\n\nThe flags may be combined. A policy is removed by giving it as it was added."
		c := &cobra.Command{
			Use:   use,
			Short: map[string]string{"add": "Add", "rm": "Remove"}[verb] + " policies of " + withArticle(kind),
			Long:  long,
			Args:  exactArgs(1),
			RunE: func(cmd *cobra.Command, args []string) error {
				switch {
				case src.inline != "" && src.file != "":
					return &usageError{cmd: cmd, err: errors.New("give either --policy or --file, not both")}
				case src.empty():
					msg := "no policy given: use --policy JSON, -f FILE or --acl SPEC"
					if kind == kindEndpoint {
						msg = "no policy given: use --policy JSON, -f FILE, --acl SPEC or --publish PORTS"
					}
					return &usageError{cmd: cmd, err: errors.New(msg)}
				}
				pols, err := a.policies(src, target.aclType)
				if err != nil {
					return err
				}
				req, err := policyRequest(rt, pols)
				if err != nil {
					return err
				}
				// What changed is told by comparing the policies before and
				// after: the daemon ignores a policy added twice and one
				// removed that is not there.
				cl := a.client()
				var (
					doc    any
					before []api.Policy
				)
				err = withRef(cmd.Context(), cl, kind, args[0], func(ref string) (err error) {
					if before, _, err = target.policies(cmd.Context(), cl, ref); err != nil {
						return err
					}
					doc, err = target.modify(cmd.Context(), cl, ref, req)
					return err
				})
				if err != nil {
					return err
				}
				after := documentPolicies(doc)
				changed := policyDiff(after, before) // added
				if rt == api.RequestRemove {
					changed = policyDiff(before, after)
				}
				if err := a.render(doc, func(bool) error {
					return writePolicyChanges(a.io.Out, kind, args[0], rt, changed)
				}); err != nil {
					return err
				}
				switch {
				case rt == api.RequestRemove && len(changed) == 0:
					return fmt.Errorf("no policy of %s %s matches: nothing was removed (see 'hostnet %s policy ls %s')", kind, args[0], kind, args[0])
				case rt == api.RequestRemove && len(changed) < len(pols):
					return fmt.Errorf("%d of the %d policies given match no policy of %s %s (see 'hostnet %s policy ls %s')",
						len(pols)-len(changed), len(pols), kind, args[0], kind, args[0])
				}
				return nil
			},
		}
		c.ValidArgsFunction = a.completeRefs(kind)
		f := c.Flags()
		f.StringVar(&src.inline, "policy", "", "policy JSON (an object or an array)")
		f.StringVarP(&src.file, "file", "f", "", "file holding the policy JSON (- for stdin)")
		f.StringArrayVar(&src.acls, "acl", nil, "firewall rule: ACTION DIRECTION [KEYWORD VALUE]... (repeatable)")
		if kind == kindEndpoint {
			f.StringArrayVarP(&src.publish, "publish", "p", nil, "publish a port: "+publishSyntax+" (repeatable)")
		}
		return c
	}
	rm := modify("rm", api.RequestRemove)
	rm.Aliases = []string{"remove"}
	long := "List the policies of " + withArticle(kind) + ": port mappings as PUBLISHED, firewall rules\n" +
		"in the order they are evaluated (priority ascending, Block before Allow on a tie,\n" +
		"then in the order given), the others as TYPE and SETTINGS."
	if kind == kindEndpoint {
		long += "\nThe endpoint's firewall rules are listed with its network's NetworkACL rules,\n" +
			"as they are enforced together."
	}
	long += "\nWith -o json or -o yaml, the " + kind + "'s own policies as they are stored."
	ls := &cobra.Command{
		Use:               "ls [OPTIONS] " + obj,
		Aliases:           []string{"list"},
		Short:             "List the policies of " + withArticle(kind),
		Long:              long,
		Args:              exactArgs(1),
		ValidArgsFunction: a.completeRefs(kind),
		RunE: func(cmd *cobra.Command, args []string) error {
			ctx := cmd.Context()
			cl := a.client()
			var (
				pols      []api.Policy
				networkID string
			)
			err := withRef(ctx, cl, kind, args[0], func(ref string) (err error) {
				pols, networkID, err = target.policies(ctx, cl, ref)
				return err
			})
			if err != nil {
				return err
			}
			if pols == nil {
				pols = []api.Policy{}
			}
			return a.render(pols, func(bool) error { return a.writePolicyTables(ctx, cl, kind, pols, networkID) })
		},
	}
	a.addOutputFlag(ls)
	cmd.AddCommand(modify("add", api.RequestAdd), rm, ls)
	return cmd
}

// writePolicyTables writes the tables of `policy ls`, with the NetworkACL
// rules of an endpoint's network (networkID).
func (a *app) writePolicyTables(ctx context.Context, cl *client.Client, kind string, pols []api.Policy, networkID string) error {
	var networkPols []api.Policy
	if networkID != "" {
		n, err := cl.GetNetwork(ctx, networkID)
		switch {
		case err == nil:
			networkPols = n.Policies
		case isUnreachable(err):
			return err
		default:
			fmt.Fprintf(a.io.Err, "note: the NetworkACL rules of network %s are not shown: %v\n", networkID, err)
		}
	}
	return writePolicyListing(a.io.Out, kind, pols, networkPols)
}

// documentPolicies returns the policies of a network or endpoint document.
func documentPolicies(doc any) []api.Policy {
	switch d := doc.(type) {
	case *api.Endpoint:
		return d.Policies
	case *api.Network:
		return d.Policies
	}
	return nil
}

// policyKey identifies a policy by its type and its settings, compacted.
func policyKey(p api.Policy) string {
	return string(p.Type) + " " + compactSettings(p.Settings)
}

// policyDiff lists the policies of a that b does not hold (as many times
// as a holds them more often than b), in a's order.
func policyDiff(a, b []api.Policy) []api.Policy {
	count := map[string]int{}
	for _, p := range b {
		count[policyKey(p)]++
	}
	var out []api.Policy
	for _, p := range a {
		k := policyKey(p)
		if count[k] > 0 {
			count[k]--
			continue
		}
		out = append(out, p)
	}
	return out
}

// writePolicyChanges writes one line per policy added to or removed from
// the network or endpoint ref, as `policy add` and `policy rm` report them,
// or a line saying nothing was added.
func writePolicyChanges(w io.Writer, kind, ref string, rt api.RequestType, changed []api.Policy) error {
	verb := "added"
	if rt == api.RequestRemove {
		verb = "removed"
	}
	if len(changed) == 0 {
		if rt == api.RequestRemove {
			return nil // the failure says it
		}
		_, err := fmt.Fprintf(w, "%s %s: already has these policies, nothing added\n", kind, ref)
		return err
	}
	for _, p := range changed {
		if _, err := fmt.Fprintf(w, "%s %s: %s %s\n", kind, ref, verb, policyText(kind, p)); err != nil {
			return err
		}
	}
	return nil
}

// policyText describes a policy on one line: firewall rules in --acl's
// words, port mappings in --publish's, others as type and settings.
func policyText(kind string, p api.Policy) string {
	resolve := api.ResolveNetworkPolicyType
	source := aclSourceNetwork
	if kind == kindEndpoint {
		resolve, source = api.ResolveEndpointPolicyType, aclSourceEndpoint
	}
	typ := resolve(p.Type)
	switch {
	case isACLType(typ):
		if spec, err := api.ParseACL(source, 0, typ, p); err == nil {
			return string(typ) + " " + aclText(spec)
		}
	case typ == api.PortMapping:
		if m, err := api.ParsePortMapping(source, 0, p); err == nil {
			return string(typ) + " " + publishedString(m)
		}
	}
	return string(typ) + " " + compactSettings(p.Settings)
}

// aclText writes a firewall rule as --acl takes it.
func aclText(spec api.ACLSpec) string {
	words := []string{strings.ToLower(string(spec.Action)), strings.ToLower(string(spec.Direction))}
	add := func(key, val string) {
		if val != "" {
			words = append(words, key, val)
		}
	}
	if len(spec.Protocols) > 0 {
		add("proto", protocolsCell(spec.Protocols))
	}
	add("local", addressesText(spec.Local))
	add("lport", portsText(spec.LocalPorts))
	add("remote", addressesText(spec.Remote))
	add("rport", portsText(spec.RemotePorts))
	words = append(words, "priority", strconv.Itoa(int(spec.Priority)))
	return strings.Join(words, " ")
}

// withArticle is "an endpoint", "a network".
func withArticle(noun string) string {
	if strings.ContainsRune("aeiou", rune(noun[0])) {
		return "an " + noun
	}
	return "a " + noun
}
