package cli

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
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

// policyRows renders policies as rows of TYPE and compact SETTINGS.
func policyRows(pols []api.Policy) [][]string {
	rows := make([][]string, 0, len(pols))
	for _, p := range pols {
		settings := "{}"
		if len(bytes.TrimSpace(p.Settings)) > 0 {
			var buf bytes.Buffer
			if err := json.Compact(&buf, p.Settings); err == nil {
				settings = buf.String()
			} else {
				settings = string(p.Settings)
			}
		}
		rows = append(rows, []string{string(p.Type), settings})
	}
	return rows
}

// policyTarget is what the policy commands need of a network or an endpoint.
type policyTarget struct {
	modify   func(ctx context.Context, c *client.Client, ref string, req *api.ModifyRequest) (any, error)
	policies func(ctx context.Context, c *client.Client, ref string) ([]api.Policy, error)
}

func policyTargetOf(kind string) policyTarget {
	if kind == kindEndpoint {
		return policyTarget{
			modify: func(ctx context.Context, c *client.Client, ref string, req *api.ModifyRequest) (any, error) {
				return c.ModifyEndpoint(ctx, ref, req)
			},
			policies: func(ctx context.Context, c *client.Client, ref string) ([]api.Policy, error) {
				e, err := c.GetEndpoint(ctx, ref)
				if err != nil {
					return nil, err
				}
				return e.Policies, nil
			},
		}
	}
	return policyTarget{
		modify: func(ctx context.Context, c *client.Client, ref string, req *api.ModifyRequest) (any, error) {
			return c.ModifyNetwork(ctx, ref, req)
		},
		policies: func(ctx context.Context, c *client.Client, ref string) ([]api.Policy, error) {
			n, err := c.GetNetwork(ctx, ref)
			if err != nil {
				return nil, err
			}
			return n.Policies, nil
		},
	}
}

// newPolicyCommand builds `network policy` or `endpoint policy`.
func newPolicyCommand(a *app, kind string) *cobra.Command {
	target := policyTargetOf(kind)
	obj := strings.ToUpper(kind)
	cmd := newGroupCommand("policy", "Manage the policies of a "+kind)
	modify := func(verb string, rt api.RequestType) *cobra.Command {
		var inline, file string
		c := &cobra.Command{
			Use:   verb + " " + obj + " (--policy JSON | -f FILE)",
			Short: map[string]string{"add": "Add", "rm": "Remove"}[verb] + " policies of a " + kind,
			Long: "The policy is one HCN policy object, {\"Type\":\"...\",\"Settings\":{...}},\n" +
				"or an array of them. FILE may be - for stdin.",
			Args: exactArgs(1),
			RunE: func(cmd *cobra.Command, args []string) error {
				var data []byte
				switch {
				case inline != "" && file != "":
					return &usageError{cmd: cmd, err: errors.New("give either --policy or --file, not both")}
				case inline != "":
					data = []byte(inline)
				case file != "":
					b, err := a.readInput(file)
					if err != nil {
						return err
					}
					data = b
				default:
					return &usageError{cmd: cmd, err: errors.New("no policy given: use --policy JSON or -f FILE")}
				}
				pols, err := parsePolicies(data)
				if err != nil {
					return err
				}
				req, err := policyRequest(rt, pols)
				if err != nil {
					return err
				}
				cl := a.client()
				var doc any
				err = withRef(cmd.Context(), cl, kind, args[0], func(ref string) (err error) {
					doc, err = target.modify(cmd.Context(), cl, ref, req)
					return err
				})
				if err != nil {
					return err
				}
				if a.jsonOutput() {
					return writeJSON(a.io.Out, doc)
				}
				return nil
			},
		}
		c.Flags().StringVar(&inline, "policy", "", "policy JSON (an object or an array)")
		c.Flags().StringVarP(&file, "file", "f", "", "file holding the policy JSON (- for stdin)")
		return c
	}
	rm := modify("rm", api.RequestRemove)
	rm.Aliases = []string{"remove"}
	ls := &cobra.Command{
		Use:     "ls " + obj,
		Aliases: []string{"list"},
		Short:   "List the policies of a " + kind,
		Args:    exactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			cl := a.client()
			var pols []api.Policy
			err := withRef(cmd.Context(), cl, kind, args[0], func(ref string) (err error) {
				pols, err = target.policies(cmd.Context(), cl, ref)
				return err
			})
			if err != nil {
				return err
			}
			if a.jsonOutput() {
				if pols == nil {
					pols = []api.Policy{}
				}
				return writeJSON(a.io.Out, pols)
			}
			return writeTable(a.io.Out, []string{"TYPE", "SETTINGS"}, policyRows(pols))
		},
	}
	cmd.AddCommand(modify("add", api.RequestAdd), rm, ls)
	return cmd
}
