package bench

import (
	"context"
	"encoding/json"
	"fmt"
	"net/netip"
	"path/filepath"
	"strings"
	"time"

	"github.com/hostnet/hostnet/api"
	"github.com/hostnet/hostnet/internal/dataplane/netns"
	"github.com/hostnet/hostnet/internal/dataplane/nft"
	"github.com/hostnet/hostnet/internal/nftmodel"
	"github.com/hostnet/hostnet/internal/testutil/lab"
)

// ipsetMembers is the size of the IP set the benchmark changes.
const ipsetMembers = 10000

// BenchIPSet measures one member change of an IP set (a network's
// SetPolicy) of 10,000 members through the API, as a network policy agent
// sends it (an Update of the SetPolicy with its whole Values, one member
// swapped), while an endpoint's ACL names the set; beside re-creating the
// set at the same size (Remove of the SetPolicy, then Add of it again),
// measured on the same daemon in the same run. The change touches one set
// element and no rule; re-creating the set rewrites all its elements.
func BenchIPSet(cfg SuiteConfig) ([]Row, error) {
	changes, recreations := 100, 20
	if cfg.Quick {
		changes, recreations = 30, 6
	}
	dir, err := newBenchDir("hnt-bench-")
	if err != nil {
		return nil, err
	}
	defer removeBenchDir(dir)
	d, err := startDaemon(filepath.Join(dir, "ipset"), cfg.DaemonCmd, false)
	if err != nil {
		return nil, err
	}
	defer d.close()
	ctx := context.Background()

	// Members 10.100.0.0 onwards; a change swaps one of them for an
	// address of 10.101.0.0/16 and back.
	members := make([]string, ipsetMembers)
	base := netip.MustParseAddr("10.100.0.0")
	for i := range members {
		members[i] = base.String()
		base = base.Next()
	}
	set := func(values []string) api.Policy {
		b, _ := json.Marshal(api.SetPolicySettings{Id: "azure-npm-bench", Name: "bench", PolicyType: "IPSET", Values: strings.Join(values, ",")})
		return api.Policy{Type: api.SetPolicy, Settings: b}
	}
	if _, err := d.c.CreateNetwork(ctx, &api.Network{Name: "bench", Type: api.NAT, Policies: []api.Policy{set(members)},
		Ipams: []api.Ipam{{Subnets: []api.Subnet{{IpAddressPrefix: "10.200.0.0/16"}}}}}); err != nil {
		return nil, err
	}
	ns, err := d.c.CreateNamespace(ctx, &api.Namespace{})
	if err != nil {
		return nil, err
	}
	if _, err := d.c.CreateEndpoint(ctx, &api.Endpoint{HostComputeNetwork: "bench", HostComputeNamespace: ns.ID,
		Policies: []api.Policy{aclPolicy("Allow", "In", "azure-npm-bench", "80", 100)}}); err != nil {
		return nil, err
	}
	modify := func(rt api.RequestType, p api.Policy) error {
		b, _ := json.Marshal(api.PolicyRequest{Policies: []api.Policy{p}})
		_, err := d.c.ModifyNetwork(ctx, "bench", &api.ModifyRequest{ResourceType: api.ResourcePolicy, RequestType: rt, Settings: b})
		return err
	}
	fmt.Fprintf(cfg.Out, "ipset: %d member changes at %s members, %d re-creations\n", changes, num(ipsetMembers), recreations)
	var change, recreate Series
	swapped := append([]string(nil), members...)
	for k := 0; k < changes; k++ {
		i := (k / 2 * 97) % len(members)
		swapped[i] = members[i]
		if k%2 == 0 {
			swapped[i] = fmt.Sprintf("10.101.%d.%d", (k/2)>>8&255, (k/2)&255)
		}
		p := set(swapped)
		t0 := time.Now()
		if err := modify(api.RequestUpdate, p); err != nil {
			return nil, fmt.Errorf("change %d: %w", k, err)
		}
		change = append(change, time.Since(t0))
	}
	full := set(swapped)
	for k := 0; k < recreations; k++ {
		t0 := time.Now()
		if err := modify(api.RequestRemove, full); err != nil {
			return nil, fmt.Errorf("re-creation %d, remove: %w", k, err)
		}
		if err := modify(api.RequestAdd, full); err != nil {
			return nil, fmt.Errorf("re-creation %d, add: %w", k, err)
		}
		recreate = append(recreate, time.Since(t0))
	}
	kChange, kRecreate, err := kernelIPSet(filepath.Join(dir, "kernel"), members, changes, recreations)
	if err != nil {
		return nil, fmt.Errorf("kernel: %w", err)
	}
	c, r := Summarize(change.Millis()), Summarize(recreate.Millis())
	kc, kr := Summarize(kChange.Millis()), Summarize(kRecreate.Millis())
	return []Row{{
		Benchmark: fmt.Sprintf("IP set: one member change of a %s-member SetPolicy named by an ACL (Update through the API, whole Values sent)", num(ipsetMembers)),
		Hostnet:   c.FmtP99("ms"),
		Baseline:  "re-creating the set (Remove, then Add of the SetPolicy), same daemon: " + r.Fmt("ms"),
		Ratio:     Ratio(c.Median, r.Median) + " the re-creation",
		Raw:       map[string]any{"changeMs": change.Millis(), "recreateMs": recreate.Millis(), "members": ipsetMembers},
	}, {
		Benchmark: fmt.Sprintf("IP set, the kernel's part: one member swapped in a %s-element interval set (one nftables commit, as the daemon sends it)", num(ipsetMembers)),
		Hostnet:   kc.FmtP99("ms"),
		Baseline:  "re-creating the set with its elements (delete, then create: two commits): " + kr.Fmt("ms"),
		Ratio:     Ratio(kc.Median, kr.Median) + " the re-creation",
		Raw:       map[string]any{"changeMs": kChange.Millis(), "recreateMs": kRecreate.Millis(), "members": ipsetMembers},
	}}, nil
}

// kernelIPSet measures, with hostnet's nftables applier in a namespace of
// its own (a lab host under dir), swapping one member of an interval set
// of members against deleting and re-creating the set with all of them.
func kernelIPSet(dir string, members []string, changes, recreations int) (change, recreate Series, err error) {
	h, err := lab.NewHost(dir, false)
	if err != nil {
		return nil, nil, err
	}
	ns, err := netns.Open(h.HostNS)
	if err != nil {
		return nil, nil, err
	}
	defer ns.Close()
	k, err := nft.NewKernel(int(ns))
	if err != nil {
		return nil, nil, err
	}
	defer k.Close()
	const table = "hnbench"
	with := &nftmodel.Table{Name: table, Sets: []*nftmodel.Set{{Name: "members", Key: []nftmodel.KeyType{nftmodel.KeyIPv4}, Interval: true,
		Elements: members, Comment: "the benchmark's IP set"}}}
	without := &nftmodel.Table{Name: table}
	defer func() { _ = k.DeleteTable(nftmodel.FamilyInet, table) }()
	if err := k.ApplyAll(with); err != nil {
		return nil, nil, err
	}
	for i := 0; i < changes; i++ {
		old, repl := members[i], fmt.Sprintf("10.101.0.%d", i%250)
		p := nftmodel.TablePatch{Table: table, DeleteElements: map[string][]string{"members": {old}}, AddElements: map[string][]string{"members": {repl}}}
		back := nftmodel.TablePatch{Table: table, DeleteElements: map[string][]string{"members": {repl}}, AddElements: map[string][]string{"members": {old}}}
		t0 := time.Now()
		if err := k.Patch(p); err != nil {
			return nil, nil, fmt.Errorf("change %d: %w", i, err)
		}
		change = append(change, time.Since(t0))
		if err := k.Patch(back); err != nil {
			return nil, nil, fmt.Errorf("change %d, back: %w", i, err)
		}
	}
	for i := 0; i < recreations; i++ {
		t0 := time.Now()
		if err := k.ApplyAll(without); err != nil {
			return nil, nil, fmt.Errorf("re-creation %d, delete: %w", i, err)
		}
		if err := k.ApplyAll(with); err != nil {
			return nil, nil, fmt.Errorf("re-creation %d, create: %w", i, err)
		}
		recreate = append(recreate, time.Since(t0))
	}
	return change, recreate, nil
}
