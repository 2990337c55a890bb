package bench

import (
	"fmt"
	"os"
	"strings"
	"time"
)

// scaleFlowRate is the UDP flow's rate across the restarts, packets/s:
// a gap of a millisecond in the data path loses a packet or two.
const scaleFlowRate = 2000

// BenchScale measures the daemon's memory with 0, 1,000 and 5,000
// endpoints, and its restart with 5,000: time, and packets lost by a flow
// running across it. One daemon, with its endpoints spread over networks
// of 1,000 (a bridge takes at most 1023 ports), serves all three rows:
// creating the endpoints is the slow part. The quick run uses 0, 200 and
// 500 endpoints and two restarts.
func BenchScale(cfg SuiteConfig) (_ []Row, err error) {
	counts, per, restarts := []int{0, 1000, 5000}, 1000, 5
	settle, gap := 3*time.Second, time.Second
	if cfg.Quick {
		counts, per, restarts = []int{0, 200, 500}, 200, 2
		settle, gap = time.Second, 500*time.Millisecond
	}
	top := counts[len(counts)-1]
	e, err := newScaleEnv(cfg, per)
	if err != nil {
		return nil, err
	}
	defer e.close()
	if err := e.addNetwork(); err != nil {
		return nil, err
	}

	// The baseline of the restart: the same daemon with no endpoint.
	fmt.Fprintf(cfg.Out, "scale: %d restarts with 0 endpoints (baseline)\n", restarts)
	var base []float64
	for range restarts {
		r, err := e.restart()
		if err != nil {
			return nil, fmt.Errorf("restart with 0 endpoints: %w", err)
		}
		base = append(base, scaleMs(r.Total))
	}
	// HOSTNET_BENCH_SCALE_PROFILE=PATH profiles the daemon (its CPU
	// profile, which also shows where it allocates): PATH.setup while it
	// creates the endpoints, PATH.restart for one more restart at the
	// end. Each is written when that daemon stops; neither restart is
	// among the timed ones.
	profile := os.Getenv("HOSTNET_BENCH_SCALE_PROFILE")
	if profile != "" {
		if _, err := e.restart("HOSTNET_CPU_PROFILE=" + profile + ".setup"); err != nil {
			return nil, fmt.Errorf("restart with the profile on: %w", err)
		}
	}

	var mems []scaleMem
	pidIsCmd := true
	for _, n := range counts {
		if err := e.grow(n); err != nil {
			return nil, fmt.Errorf("growing to %d endpoints: %w", n, err)
		}
		m, same, err := e.memory(settle)
		if err != nil {
			return nil, fmt.Errorf("memory at %d endpoints: %w", n, err)
		}
		pidIsCmd = pidIsCmd && same
		mems = append(mems, m)
		fmt.Fprintf(cfg.Out, "scale: %d endpoints: RSS %s MB (peak %s, anonymous %s, file %s; heap live %s MB at gc %d)\n",
			n, num(m.RSSMB), num(m.HWMMB), num(m.AnonMB), num(m.FileMB), num(m.HeapLiveMB), m.GCs)
	}
	setup := time.Since(e.started)

	// The flow, then the restarts under it.
	if e.flow, err = startScaleFlow(e.d.ExtNS, e.flowNS, benchHostAddr, scaleUDPPort, scaleTCPPort, scaleFlowRate); err != nil {
		return nil, err
	}
	overflowBefore, ovErr := scaleRcvbufErrors(e.flowNS)
	time.Sleep(gap) // packets lost with no restart: the control
	from := e.flow.seq()
	time.Sleep(gap)
	fmt.Fprintf(cfg.Out, "scale: %d restarts with %d endpoints, a UDP flow of %d packets/s and a TCP connection running\n", restarts, top, scaleFlowRate)
	var rs []scaleRestart
	var times, shutdowns, userCPU, sysCPU []float64
	for i := range restarts {
		r, err := e.restart()
		if err != nil {
			return nil, fmt.Errorf("restart %d with %d endpoints: %w", i+1, top, err)
		}
		rs = append(rs, r)
		times, shutdowns = append(times, scaleMs(r.Total)), append(shutdowns, scaleMs(r.Shutdown))
		userCPU, sysCPU = append(userCPU, scaleMs(r.UserCPU)), append(sysCPU, scaleMs(r.SysCPU))
		fmt.Fprintf(cfg.Out, "  restart %d: %s ms (shutdown %s ms; the new daemon's CPU until then %s ms user + %s ms system); logged: %d warnings or errors while stopping, %d while starting\n",
			i+1, num(scaleMs(r.Total)), num(scaleMs(r.Shutdown)), num(scaleMs(r.UserCPU)), num(scaleMs(r.SysCPU)), len(r.ShutdownLog), len(r.StartLog))
		time.Sleep(gap)
	}
	lost, to := e.flow.finish(from)
	tcpN, tcpMax, tcpErr := e.flow.tcp()
	newOK, newFailed, newErr := e.flow.newConns()
	overflowAfter, ovErr2 := scaleRcvbufErrors(e.flowNS)
	after, _, err := e.memory(settle)
	if err != nil {
		return nil, fmt.Errorf("memory after the restarts: %w", err)
	}
	var profiled time.Duration
	if profile != "" {
		r, err := e.restart("HOSTNET_CPU_PROFILE=" + profile + ".restart")
		if err != nil {
			return nil, fmt.Errorf("profiled restart: %w", err)
		}
		profiled = r.Total
		fmt.Fprintf(cfg.Out, "scale: profiled restart: %s ms; CPU profiles in %s.setup and %s.restart\n", num(scaleMs(r.Total)), profile, profile)
	}

	// Each loss goes to the restart in whose window (its SIGTERM to the
	// next one's) it fell; those before the first are the control's.
	perRestart := make([]int, restarts)
	control := 0
	for _, s := range lost {
		k := -1
		for i, r := range rs {
			if s >= r.StartSeq {
				k = i
			}
		}
		if k < 0 {
			control++
		} else {
			perRestart[k]++
		}
	}
	overflows := int64(-1)
	if ovErr == nil && ovErr2 == nil {
		overflows = overflowAfter - overflowBefore
	}
	var startLog, stopLog []string
	for _, r := range rs {
		startLog, stopLog = append(startLog, r.StartLog...), append(stopLog, r.ShutdownLog...)
	}

	scaleNote := ""
	if cfg.Quick {
		scaleNote = fmt.Sprintf(" (quick: %s endpoints, not the goal's 5,000)", scaleJoinCounts(counts))
	}
	last := mems[len(mems)-1]
	peak := 0.0
	for _, m := range append(mems, after) {
		peak = max(peak, m.HWMMB)
	}
	var memParts []string
	for _, m := range mems {
		memParts = append(memParts, fmt.Sprintf("%s: %s MB", group(fmt.Sprint(m.Endpoints)), num(m.RSSMB)))
	}
	memRow := Row{
		Benchmark: "daemon memory (RSS) with 0, 1,000 and 5,000 endpoints" + scaleNote,
		Hostnet: fmt.Sprintf("%s; peak (VmHWM) %s MB; at %s by mapping: %s; Go heap live after the last GC %s MB; after a restart at %s: %s MB",
			strings.Join(memParts, ", "), num(peak), group(fmt.Sprint(top)), scaleTopMappings(last.ByMapping, 3), num(last.HeapLiveMB),
			group(fmt.Sprint(top)), num(after.RSSMB)),
		Baseline: fmt.Sprintf("the same daemon with 0 endpoints: %s MB", num(mems[0].RSSMB)),
		Ratio:    Ratio(last.RSSMB, mems[0].RSSMB),
		Goal:     "under 50 MB at 5,000 endpoints",
		Verdict:  judge(last.RSSMB < 50),
		Raw: map[string]any{"readings": mems, "afterRestart": after, "peakMB": peak, "settleNs": settle,
			"pidIsNsenterPid": pidIsCmd, "endpointsPerNetwork": per, "networks": len(e.nets), "setupNs": setup},
	}

	ts, bs := Summarize(times), Summarize(base)
	verdict := Missed
	switch {
	case ts.Max < 1000:
		verdict = Met
	case ts.Median < 1000:
		verdict = Partial
	}
	restartRow := Row{
		Benchmark: fmt.Sprintf("restart: daemon restart time with %s endpoints (SIGTERM to the new daemon answering the API, kernel reconciled)%s",
			group(fmt.Sprint(top)), scaleNote),
		Hostnet: fmt.Sprintf("%s, max %s ms; of which the old daemon's shutdown %s; the new daemon's CPU until it answered: %s ms user + %s ms system (medians)",
			ts.Fmt("ms"), num(ts.Max), Summarize(shutdowns).Fmt("ms"), num(Summarize(userCPU).Median), num(Summarize(sysCPU).Median)),
		Baseline: fmt.Sprintf("the same daemon with 0 endpoints: %s", bs.Fmt("ms")),
		Ratio:    Ratio(ts.Median, bs.Median),
		Goal:     "under 1 s",
		Verdict:  verdict,
		Raw: map[string]any{"restartMs": times, "shutdownMs": shutdowns, "baselineMs": base, "restarts": rs, "userCpuMs": userCPU, "sysCpuMs": sysCPU, "profiledRestartNs": profiled,
			"startWarningsOrErrors": len(startLog), "shutdownWarningsOrErrors": len(stopLog)},
	}
	if len(startLog) > 0 {
		restartRow.Hostnet += fmt.Sprintf("; the new daemons logged %d warnings or errors while starting, first: %s", len(startLog), startLog[0])
	}

	sent := to - from
	tcpState := fmt.Sprintf("TCP connection through a published port stayed up (%s round trips, longest %s ms)", group(fmt.Sprint(tcpN)), num(scaleMs(tcpMax)))
	if tcpErr != nil {
		tcpState = fmt.Sprintf("TCP connection through a published port BROKE after %d round trips: %v", tcpN, tcpErr)
	}
	if newFailed == 0 {
		tcpState += fmt.Sprintf("; new TCP connections every 20 ms through it all worked (%s)", group(fmt.Sprint(newOK)))
	} else {
		tcpState += fmt.Sprintf("; new TCP connections every 20 ms: %d of %d FAILED, first: %v", newFailed, newOK+newFailed, newErr)
	}
	lostRestarts := len(lost) - control
	flowRow := Row{
		Benchmark: fmt.Sprintf("packets lost by a flow running across the restart (UDP, %s packets/s through a published port, %d restarts at %s endpoints)%s",
			group(fmt.Sprint(scaleFlowRate)), restarts, group(fmt.Sprint(top)), scaleNote),
		Hostnet: fmt.Sprintf("%d lost of %s sent across the restarts (per restart: %s); %s",
			lostRestarts, group(fmt.Sprint(sent)), scaleJoinInts(perRestart), tcpState),
		Baseline: fmt.Sprintf("the same flow with no restart running (%s before the first): %d lost", gap, control),
		Goal:     "zero lost",
		Verdict:  judge(len(lost) == 0 && tcpErr == nil),
		Raw: map[string]any{"sent": sent, "lost": len(lost), "lostPerRestart": perRestart, "lostControl": control,
			"sendErrors": e.flow.sendErrs.Load(), "receiverOverflows": overflows, "tcpRoundTrips": tcpN, "tcpLongestMs": scaleMs(tcpMax),
			"tcpError": scaleErrString(tcpErr), "newConnsOK": newOK, "newConnsFailed": newFailed, "newConnError": scaleErrString(newErr), "ratePerSecond": scaleFlowRate},
	}
	if len(lost) > 0 {
		flowRow.Hostnet += fmt.Sprintf("; lost sequence numbers %d..%d, %d sends refused, receiver socket overflows %d",
			lost[0], lost[len(lost)-1], e.flow.sendErrs.Load(), overflows)
	}
	return []Row{memRow, restartRow, flowRow}, nil
}

func scaleMs(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

func scaleJoinCounts(v []int) string {
	var s []string
	for _, n := range v {
		s = append(s, group(fmt.Sprint(n)))
	}
	return strings.Join(s, "/")
}

func scaleJoinInts(v []int) string {
	var s []string
	for _, n := range v {
		s = append(s, fmt.Sprint(n))
	}
	return strings.Join(s, ", ")
}

func scaleErrString(err error) string {
	if err == nil {
		return ""
	}
	return err.Error()
}
