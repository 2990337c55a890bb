package bench

import (
	"fmt"
	"time"

	"github.com/hostnet/hostnet/internal/testutil"
	"golang.org/x/sys/unix"
)

// attachScale is the attach benchmark's counts: endpoints per path, per
// network, and how many are then deleted, one at a time.
func attachScale(quick bool) (n, per, deletes int) {
	if quick {
		return 300, 100, 100
	}
	return 5000, 1000, 1000
}

// BenchAttach measures creating and attaching endpoints through the API,
// each with one published port and one ACL rule, in one call, n of them on
// one host (a network per 1,000: a bridge takes at most 1,023 ports),
// then deleting some, one at a time; beside the kernel's floor doing the
// same with bare netlink calls (veth into the namespace, bridge port, up,
// address, route; no rules), on a bridge set up so that it stays flat
// (MTU and MAC set, no IPv6 link-local chatter), each on its own
// throwaway host.
func BenchAttach(cfg SuiteConfig) ([]Row, error) {
	n, per, deletes := attachScale(cfg.Quick)
	dir, err := newBenchDir("hnt-bench-")
	if err != nil {
		return nil, err
	}
	defer removeBenchDir(dir)
	acfg := AttachConfig{N: n, Out: cfg.Out, DaemonCmd: cfg.DaemonCmd, Policies: true, PerNetwork: per}
	type detacher interface {
		attacher
		detach(i int) (time.Duration, error)
	}
	measure := func(name string, setup func() (detacher, error)) (attach, del Series, err error) {
		fmt.Fprintf(cfg.Out, "%s: preparing %d namespaces...\n", name, n)
		a, err := setup()
		if err != nil {
			return nil, nil, fmt.Errorf("%s: %w", name, err)
		}
		defer func() {
			a.close()
			testutil.UnmountUnder(a.dir(), func(p string) error { return unix.Unmount(p, unix.MNT_DETACH) })
			time.Sleep(cniSettle) // the next path gets a machine as quiet as this one had
		}()
		time.Sleep(time.Second)
		fmt.Fprintf(cfg.Out, "%s: %d attaches, then %d deletes...\n", name, n, deletes)
		for i := 0; i < n; i++ {
			d, err := a.attach(i)
			if err != nil {
				return nil, nil, fmt.Errorf("%s, endpoint %d: %w", name, i, err)
			}
			attach = append(attach, d)
		}
		for i := 0; i < deletes; i++ {
			d, err := a.detach(i)
			if err != nil {
				return nil, nil, fmt.Errorf("%s, delete %d: %w", name, i, err)
			}
			del = append(del, d)
		}
		return attach, del, nil
	}
	floorAttach, floorDel, err := measure("floor", func() (detacher, error) { return newFloor(dir, "floor", true, n, per) })
	if err != nil {
		return nil, err
	}
	apiAttach, apiDel, err := measure("hostnet", func() (detacher, error) { return newHostnetPath(dir, "hostnet", acfg, true) })
	if err != nil {
		return nil, err
	}

	first := min(n, 1000)
	api, floor := Summarize(apiAttach.Window(0, first).Millis()), Summarize(floorAttach.Window(0, first).Millis())
	r := api.Median / floor.Median
	rows := []Row{{
		Benchmark: fmt.Sprintf("attach: create + attach one endpoint with 1 published port and 1 ACL rule, through the API in one call, over the first %s", num(float64(first))),
		Hostnet:   api.FmtP99("ms"),
		Baseline:  "bare netlink floor (veth, port, address, route; no rules): " + floor.FmtP99("ms"),
		Ratio:     Ratio(api.Median, floor.Median) + " the floor",
		Goal:      "median within 1.5x of the floor",
		Verdict:   judge(r <= 1.5),
		Raw:       map[string]any{"hostnetMs": apiAttach.Millis(), "floorMs": floorAttach.Millis()},
	}}

	// Growth: the median of a window of 50 around the 1st, the 1,000th
	// (or middle) and the last endpoint: one attach is too noisy alone.
	mid := min(1000, n/2)
	at := func(s Series) (a, b, c float64) {
		const w = 50
		return Summarize(s.Window(0, w).Millis()).Median,
			Summarize(s.Window(mid-w/2, mid+w/2).Millis()).Median,
			Summarize(s.Window(n-w, n).Millis()).Median
	}
	h1, hm, hn := at(apiAttach)
	f1, fm, fn := at(floorAttach)
	rows = append(rows, Row{
		Benchmark: fmt.Sprintf("attach scaling: time per endpoint at the 1st, %s and %s endpoint on one host (medians of 50 around each)", ordinal(mid), ordinal(n)),
		Hostnet:   fmt.Sprintf("%s / %s / %s ms", num(h1), num(hm), num(hn)),
		Baseline:  fmt.Sprintf("floor: %s / %s / %s ms", num(f1), num(fm), num(fn)),
		Ratio:     fmt.Sprintf("last/first: hostnet %s, floor %s", Ratio(hn, h1), Ratio(fn, f1)),
		Goal:      fmt.Sprintf("flat: %s within 1.3x of the 1st", ordinal(n)),
		Verdict:   judge(hn/h1 <= 1.3),
		Raw:       map[string]any{"hostnetMs": []float64{h1, hm, hn}, "floorMs": []float64{f1, fm, fn}, "at": []int{1, mid, n}},
	})
	apiD, floorD := Summarize(apiDel.Millis()), Summarize(floorDel.Millis())
	rows = append(rows, Row{
		Benchmark: fmt.Sprintf("detach/delete: delete one endpoint through the API (with %s on the host)", num(float64(n))),
		Hostnet:   apiD.FmtP99("ms"),
		Baseline:  "bare netlink floor (delete the veth): " + floorD.FmtP99("ms") + "; the CNI reference DEL: see the cni rows",
		Ratio:     Ratio(apiD.Median, floorD.Median) + " the floor",
		Raw:       map[string]any{"hostnetMs": apiDel.Millis(), "floorMs": floorDel.Millis()},
	})
	return rows, nil
}

// ordinal spells 1000 as "1,000th".
func ordinal(n int) string {
	suffix := "th"
	switch {
	case n%100 >= 11 && n%100 <= 13:
	case n%10 == 1:
		suffix = "st"
	case n%10 == 2:
		suffix = "nd"
	case n%10 == 3:
		suffix = "rd"
	}
	return num(float64(n)) + suffix
}

// BenchCNI measures hostnet-cni beside the reference chain (bridge,
// host-local, portmap, firewall v1.10.0), each container publishing one
// port: ADD and DEL one at a time, then 20 at once.
func BenchCNI(cfg SuiteConfig) ([]Row, error) {
	if _, err := ensureCommand(cfg.Out, "iptables", "iptables"); err != nil {
		return nil, err
	}
	n := 500
	if cfg.Quick {
		n = 30
	}
	hn, ref, err := measureCNI(CNIConfig{N: n, Concurrent: cniGoalConcurrent, Out: cfg.Out, DaemonCmd: cfg.DaemonCmd, DriverCmd: cfg.DriverCmd})
	if err != nil {
		return nil, err
	}
	raw := map[string]any{"hostnet": hn, "reference": ref}
	speed := func(what string, h, r Series) Row {
		hs, rs := Summarize(h.Millis()), Summarize(r.Millis())
		return Row{
			Benchmark: fmt.Sprintf("%s through CNI (libcni, 1 published port), over %d", what, n),
			Hostnet:   "hostnet-cni: " + hs.FmtP99("ms"),
			Baseline:  "reference chain: " + rs.FmtP99("ms"),
			Ratio:     Ratio(rs.Median, hs.Median) + " faster",
			Goal:      fmt.Sprintf("at least %gx faster", cniGoalSpeedup),
			Verdict:   judge(rs.Median >= cniGoalSpeedup*hs.Median),
			Raw:       raw,
		}
	}
	wallRow := func(what string, h, r time.Duration) Row {
		return Row{
			Benchmark: fmt.Sprintf("%d concurrent %s through CNI, wall time", cniGoalConcurrent, what),
			Hostnet:   "hostnet-cni: " + ms(h),
			Baseline:  "reference chain: " + ms(r),
			Ratio:     ratio(r, h) + " faster",
			Goal:      fmt.Sprintf("at least %gx faster", cniGoalSpeedup),
			Verdict:   judge(float64(r) >= cniGoalSpeedup*float64(h)),
		}
	}
	rows := []Row{
		speed("attach: ADD", hn.Add, ref.Add),
		speed("detach/delete: DEL", hn.Del, ref.Del),
		wallRow("attaches (ADD)", hn.ConcurrentAdd, ref.ConcurrentAdd),
	}
	rows[2].Raw = nil
	return rows, nil
}

// BenchProgram measures programming policies at scale: n endpoints, each
// created with 5 published ports and 10 ACL rules of its own, then single
// changes (one rule added to or removed from one endpoint), beside
// re-applying everything (a restart's reconciliation) and beside the same
// change when every endpoint has the same rules (one shared chain).
func BenchProgram(cfg SuiteConfig) ([]Row, error) {
	pcfg := ProgramConfig{N: 1000, Mappings: 5, ACLs: 10, Changes: 40, Out: cfg.Out, DaemonCmd: cfg.DaemonCmd}
	if cfg.Quick {
		pcfg.N, pcfg.Changes = 100, 20
	}
	distinct, err := programOnce(pcfg, pcfg.N, true, true)
	if err != nil {
		return nil, err
	}
	shared, err := programOnce(pcfg, pcfg.N, false, false)
	if err != nil {
		return nil, err
	}
	each := Summarize(distinct.each.Millis())
	change, full, sharedChange := Summarize(distinct.changes.Millis()), Summarize(distinct.full.Millis()), Summarize(shared.changes.Millis())
	return []Row{{
		Benchmark: fmt.Sprintf("policy programming: %s endpoints x (%d published ports + %d ACL rules of their own), each created and attached in one call",
			num(float64(pcfg.N)), pcfg.Mappings, pcfg.ACLs),
		Hostnet: fmt.Sprintf("%s total; each %s", distinct.create.Round(time.Millisecond), each.FmtP99("ms")),
		Raw:     map[string]any{"eachMs": distinct.each.Millis()},
	}, {
		Benchmark: fmt.Sprintf("policy programming: then one incremental change (one ACL rule added to or removed from one endpoint) at %s endpoints", num(float64(pcfg.N))),
		Hostnet:   change.FmtP99("ms"),
		Baseline: fmt.Sprintf("re-applying everything (restart): %s; the same change with every endpoint sharing its rules: %s",
			full.Fmt("ms"), sharedChange.FmtP99("ms")),
		Ratio:   Ratio(change.Median, full.Median) + " re-applying everything",
		Goal:    "one change under 10 ms at 1,000 endpoints",
		Verdict: judge(change.Median < 10),
		Raw:     map[string]any{"changeMs": distinct.changes.Millis(), "fullMs": distinct.full.Millis(), "sharedChangeMs": shared.changes.Millis()},
	}}, nil
}
