package bench

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"path/filepath"
	"time"

	"github.com/hostnet/hostnet/api"
)

// ProgramConfig sets up the policy programming benchmark.
type ProgramConfig struct {
	N         int // endpoints
	Mappings  int // published ports per endpoint
	ACLs      int // ACL rules per endpoint
	Changes   int // incremental changes measured
	Out       io.Writer
	DaemonCmd []string
}

func portMapping(external, internal uint16) api.Policy {
	b, _ := json.Marshal(api.PortMappingSettings{Protocol: 6, ExternalPort: external, InternalPort: internal})
	return api.Policy{Type: api.PortMapping, Settings: b}
}

func aclPolicy(action, dir, remote, lports string, priority uint16) api.Policy {
	b, _ := json.Marshal(api.ACLSettings{Action: api.FlexString(action), Direction: api.FlexString(dir), Protocols: "6",
		RemoteAddresses: remote, LocalPorts: api.FlexString(lports), Priority: priority, RuleType: "Switch"})
	return api.Policy{Type: api.ACL, Settings: b}
}

// programRun is what one programming run measured.
type programRun struct {
	create  time.Duration // all endpoints, created and attached
	each    Series        // each endpoint's creation
	changes Series        // single changes
	full    Series        // daemon restarts re-applying everything
}

// RunProgram measures programming policies through the API: N endpoints,
// each created and attached with its published ports and ACL rules in one
// call, then single changes at that scale (one ACL rule added to or removed
// from one endpoint). It runs three times: with every endpoint's rules
// distinct (they name its own peer, so no two endpoints share an ACL
// chain: the worst case), with the same rules on every endpoint (they share
// one chain, as pods under one network policy do), and distinct again at a
// tenth of the scale, to show what grows. The baseline of a change is
// re-applying everything, as a full sync or a restart does.
func RunProgram(cfg ProgramConfig) error {
	distinct, err := programOnce(cfg, cfg.N, true, true)
	if err != nil {
		return err
	}
	shared, err := programOnce(cfg, cfg.N, false, false)
	if err != nil {
		return err
	}
	small, err := programOnce(cfg, max(1, cfg.N/10), true, false)
	if err != nil {
		return err
	}
	fmt.Fprintf(cfg.Out, "\nprogramming: %d endpoints x (%d published ports + %d ACL rules), through the API\n\n", cfg.N, cfg.Mappings, cfg.ACLs)
	fmt.Fprintf(cfg.Out, "| measure | value | baseline | ratio |\n|---|---|---|---|\n")
	fmt.Fprintf(cfg.Out, "| all %d endpoints created and attached with their policies (distinct ACLs) | %s total, %s median each | | |\n",
		cfg.N, distinct.create.Round(time.Millisecond), ms(distinct.each.Median()))
	fmt.Fprintf(cfg.Out, "| one change, %d endpoints, distinct ACLs (median of %d) | %s (p99 %s) | re-applying everything: %s | %s |\n",
		cfg.N, len(distinct.changes), ms(distinct.changes.Median()), ms(distinct.changes.Quantile(0.99)), ms(distinct.full.Median()), ratio(distinct.changes.Median(), distinct.full.Median()))
	fmt.Fprintf(cfg.Out, "| one change, %d endpoints, shared ACLs (median of %d) | %s (p99 %s) | one change with distinct ACLs: %s | %s |\n",
		cfg.N, len(shared.changes), ms(shared.changes.Median()), ms(shared.changes.Quantile(0.99)), ms(distinct.changes.Median()), ratio(shared.changes.Median(), distinct.changes.Median()))
	fmt.Fprintf(cfg.Out, "| one change, %d endpoints, distinct ACLs: growth from %d endpoints | %s | at %d endpoints: %s | %s |\n",
		cfg.N, max(1, cfg.N/10), ms(distinct.changes.Median()), max(1, cfg.N/10), ms(small.changes.Median()), ratio(distinct.changes.Median(), small.changes.Median()))
	fmt.Fprintf(cfg.Out, "\none change at %d endpoints: %s with distinct ACLs, %s with shared ones (goal: under 10 ms; kube-proxy's nftables mode: about 141 ms for one service at 10,000)\n",
		cfg.N, ms(distinct.changes.Median()), ms(shared.changes.Median()))
	return nil
}

// programOnce runs the programming benchmark on a daemon of its own with n
// endpoints; distinct gives every endpoint its own ACL rules; withRestart
// measures the full re-application.
func programOnce(cfg ProgramConfig, n int, distinct, withRestart bool) (*programRun, error) {
	dir, err := newBenchDir("hnt-bench-")
	if err != nil {
		return nil, err
	}
	defer removeBenchDir(dir)
	d, err := startDaemon(filepath.Join(dir, "program"), cfg.DaemonCmd, false)
	if err != nil {
		return nil, err
	}
	defer func() { d.close() }()
	ctx := context.Background()
	if _, err := d.c.CreateNetwork(ctx, &api.Network{Name: "bench", Type: api.NAT,
		Ipams: []api.Ipam{{Subnets: []api.Subnet{{IpAddressPrefix: "10.200.0.0/16"}}}}}); err != nil {
		return nil, err
	}
	kind := "shared"
	if distinct {
		kind = "distinct"
	}
	fmt.Fprintf(cfg.Out, "%d endpoints, %s ACLs: preparing namespaces...\n", n, kind)
	var nss []string
	for i := 0; i < n; i++ {
		ns, err := d.c.CreateNamespace(ctx, &api.Namespace{})
		if err != nil {
			return nil, err
		}
		nss = append(nss, ns.ID)
	}
	policies := func(i int) []api.Policy {
		var ps []api.Policy
		for k := 0; k < cfg.Mappings; k++ {
			ps = append(ps, portMapping(uint16(10000+cfg.Mappings*i+k), uint16(80+k)))
		}
		peer := "10.201.0.0/16"
		if distinct {
			peer = fmt.Sprintf("10.201.%d.%d", i>>8, i&255)
		}
		for k := 0; k < cfg.ACLs; k++ {
			ps = append(ps, aclPolicy("Allow", "In", peer, fmt.Sprint(1000+k), uint16(100+k)))
		}
		return ps
	}
	r := &programRun{}
	start := time.Now()
	var ids []string
	for i := 0; i < n; i++ {
		t0 := time.Now()
		ep, err := d.c.CreateEndpoint(ctx, &api.Endpoint{HostComputeNetwork: "bench", HostComputeNamespace: nss[i], Policies: policies(i)})
		if err != nil {
			return nil, fmt.Errorf("endpoint %d: %w", i, err)
		}
		r.each = append(r.each, time.Since(t0))
		ids = append(ids, ep.ID)
	}
	r.create = time.Since(start)

	extra := aclPolicy("Block", "In", "192.0.2.1", "", 1)
	settings, _ := json.Marshal(api.PolicyRequest{Policies: []api.Policy{extra}})
	for k := 0; k < cfg.Changes; k++ {
		rt := api.RequestAdd
		if k%2 == 1 {
			rt = api.RequestRemove
		}
		t0 := time.Now()
		if _, err := d.c.ModifyEndpoint(ctx, ids[(k/2*37)%len(ids)], &api.ModifyRequest{ResourceType: api.ResourcePolicy, RequestType: rt, Settings: settings}); err != nil {
			return nil, fmt.Errorf("change %d: %w", k, err)
		}
		r.changes = append(r.changes, time.Since(t0))
	}
	if !withRestart {
		return r, nil
	}
	// The baseline of a change: what re-applying the whole tables takes
	// at this scale (a restart's reconciliation does exactly that).
	for k := 0; k < 3; k++ {
		t0 := time.Now()
		d.close()
		if d, err = restartDaemon(d); err != nil {
			return nil, err
		}
		r.full = append(r.full, time.Since(t0))
	}
	return r, nil
}

// restartDaemon starts the daemon of d again on the same state.
func restartDaemon(d *benchDaemon) (*benchDaemon, error) {
	p, err := spawnDaemon(d.proc.Config, 60*time.Second, 5*time.Millisecond)
	if err != nil {
		return nil, fmt.Errorf("hostnetd did not restart: %w", err)
	}
	return &benchDaemon{Host: d.Host, proc: p, c: d.c}, nil
}
