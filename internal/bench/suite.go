package bench

import (
	"encoding/json"
	"fmt"
	"io"
	"math"
	"os"
	"runtime"
	"sort"
	"strings"
	"time"
)

// SuiteConfig sets up one run of the whole suite (hostnet-bench all).
type SuiteConfig struct {
	// Quick uses small counts and short measurements: the everyday run,
	// a couple of minutes. The full run uses the counts the goals name.
	Quick bool
	// Out receives progress lines while the suite runs; the table comes
	// at the end.
	Out io.Writer
	// DaemonCmd starts hostnetd; DriverCmd runs the CNI benchmark's driver.
	DaemonCmd, DriverCmd []string
	// Only, when set, runs the benchmarks whose name contains it.
	Only string
	// L2Drivers, when set, is a comma-separated list of the L2 network
	// types (L2Bridge, Transparent, L2Tunnel) the l2 benchmarks measure.
	L2Drivers string
}

// Verdict says whether a row meets its goal.
type Verdict string

const (
	Met     Verdict = "met"
	Missed  Verdict = "MISSED"
	NoGoal  Verdict = ""
	NotRun  Verdict = "not measured"
	Partial Verdict = "partly met"
)

// judge is Met when ok, Missed otherwise.
func judge(ok bool) Verdict {
	if ok {
		return Met
	}
	return Missed
}

// Row is one line of the suite's table: a figure of hostnet's beside its
// baselines, all measured in the same run.
type Row struct {
	Benchmark string  `json:"benchmark"`
	Hostnet   string  `json:"hostnet"`  // the figure: median and spread
	Baseline  string  `json:"baseline"` // each baseline named, with its figure
	Ratio     string  `json:"ratio"`    // hostnet against each baseline
	Goal      string  `json:"goal"`
	Verdict   Verdict `json:"verdict"`
	// Raw holds the samples and counts behind the figures, for the JSON.
	Raw map[string]any `json:"raw,omitempty"`
}

// Benchmark is one part of the suite; it returns its rows, or an error
// that names what failed. It removes everything it made.
type Benchmark struct {
	Name string
	Run  func(SuiteConfig) ([]Row, error)
}

// Report is a whole run: the machine, the command, the rows.
type Report struct {
	Started  time.Time     `json:"started"`
	Took     time.Duration `json:"tookNs"`
	Quick    bool          `json:"quick"`
	Machine  string        `json:"machine"`
	Kernel   string        `json:"kernel"`
	GoVer    string        `json:"go"`
	Rows     []Row         `json:"rows"`
	Failures []string      `json:"failures,omitempty"`
}

// RunSuite runs the benchmarks one after the other (never two at once:
// they would measure each other) and returns the report; a benchmark that
// fails leaves its rows out and its error in Failures, and the others run.
func RunSuite(cfg SuiteConfig, benches []Benchmark) *Report {
	rep := &Report{Started: time.Now(), Quick: cfg.Quick, Machine: machine(), Kernel: kernel(), GoVer: runtime.Version()}
	for _, b := range benches {
		if cfg.Only != "" && !strings.Contains(b.Name, cfg.Only) {
			continue
		}
		fmt.Fprintf(cfg.Out, "== %s\n", b.Name)
		t0 := time.Now()
		rows, err := b.Run(cfg)
		if err != nil {
			fmt.Fprintf(cfg.Out, "== %s failed after %s: %v\n", b.Name, time.Since(t0).Round(time.Second), err)
			rep.Failures = append(rep.Failures, fmt.Sprintf("%s: %v", b.Name, err))
			continue
		}
		fmt.Fprintf(cfg.Out, "== %s done in %s\n", b.Name, time.Since(t0).Round(time.Second))
		rep.Rows = append(rep.Rows, rows...)
	}
	rep.Took = time.Since(rep.Started)
	return rep
}

// Markdown prints the report as one table, then the failures.
func (r *Report) Markdown(w io.Writer) {
	mode := "full"
	if r.Quick {
		mode = "quick (small counts: not the goals' scale)"
	}
	fmt.Fprintf(w, "\n%s run of %s, %s, kernel %s, %s; took %s\n\n", mode, r.Started.UTC().Format("2006-01-02 15:04 MST"),
		r.Machine, r.Kernel, r.GoVer, r.Took.Round(time.Second))
	fmt.Fprintln(w, "| benchmark | hostnet | baseline(s), same run | ratio | goal | verdict |")
	fmt.Fprintln(w, "|---|---|---|---|---|---|")
	for _, row := range r.Rows {
		fmt.Fprintf(w, "| %s | %s | %s | %s | %s | %s |\n", cellText(row.Benchmark), cellText(row.Hostnet), cellText(row.Baseline),
			cellText(row.Ratio), cellText(row.Goal), cellText(string(row.Verdict)))
	}
	for _, f := range r.Failures {
		fmt.Fprintf(w, "\nFAILED: %s\n", f)
	}
}

func cellText(s string) string {
	if s == "" {
		return "—"
	}
	return strings.ReplaceAll(strings.ReplaceAll(s, "|", `\|`), "\n", "<br>")
}

// WriteJSON writes the report, raw numbers included, to path.
func (r *Report) WriteJSON(path string) error {
	b, err := json.MarshalIndent(r, "", "  ")
	if err != nil {
		return err
	}
	return os.WriteFile(path, append(b, '\n'), 0o644)
}

// machine describes the CPU and memory, for the report's heading.
func machine() string {
	cpu := "unknown CPU"
	if b, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		for _, line := range strings.Split(string(b), "\n") {
			if k, v, ok := strings.Cut(line, ":"); ok && strings.TrimSpace(k) == "model name" {
				cpu = strings.TrimSpace(v)
				break
			}
		}
	}
	mem := ""
	if b, err := os.ReadFile("/proc/meminfo"); err == nil {
		var kb int64
		if _, err := fmt.Sscanf(string(b), "MemTotal: %d kB", &kb); err == nil {
			mem = fmt.Sprintf(", %.0f GiB", float64(kb)/(1<<20))
		}
	}
	return fmt.Sprintf("%d vCPU %s%s", runtime.NumCPU(), cpu, mem)
}

func kernel() string {
	b, err := os.ReadFile("/proc/sys/kernel/osrelease")
	if err != nil {
		return "unknown"
	}
	return strings.TrimSpace(string(b))
}

// Summary describes a sample: its median and spread.
type Summary struct {
	N                     int
	Median, P25, P75, P99 float64
	Min, Max              float64
	samples               []float64
}

// Summarize sorts a copy of v and takes its quantiles (nearest rank).
func Summarize(v []float64) Summary {
	s := append([]float64(nil), v...)
	sort.Float64s(s)
	q := func(p float64) float64 {
		if len(s) == 0 {
			return 0
		}
		i := int(math.Ceil(p*float64(len(s)))) - 1
		return s[max(0, min(i, len(s)-1))]
	}
	sum := Summary{N: len(s), Median: q(0.5), P25: q(0.25), P75: q(0.75), P99: q(0.99), samples: s}
	if len(s) > 0 {
		sum.Min, sum.Max = s[0], s[len(s)-1]
	}
	return sum
}

// Millis converts a Series to milliseconds.
func (s Series) Millis() []float64 {
	out := make([]float64, len(s))
	for i, d := range s {
		out[i] = float64(d) / float64(time.Millisecond)
	}
	return out
}

// Fmt formats the summary with unit: the median, then the spread as the
// range of the middle half (min–max under four samples), and the count.
func (s Summary) Fmt(unit string) string {
	if s.N == 0 {
		return "no samples"
	}
	if s.N < 4 {
		return fmt.Sprintf("%s %s (%s–%s, n=%d)", num(s.Median), unit, num(s.Min), num(s.Max), s.N)
	}
	return fmt.Sprintf("%s %s (IQR %s–%s, n=%d)", num(s.Median), unit, num(s.P25), num(s.P75), s.N)
}

// FmtP99 is Fmt with the 99th percentile.
func (s Summary) FmtP99(unit string) string {
	if s.N < 20 {
		return s.Fmt(unit)
	}
	return fmt.Sprintf("%s %s, p99 %s (IQR %s–%s, n=%d)", num(s.Median), unit, num(s.P99), num(s.P25), num(s.P75), s.N)
}

// num prints a figure with three significant digits, thousands grouped.
func num(v float64) string {
	a := math.Abs(v)
	switch {
	case a == 0:
		return "0"
	case a >= 1000:
		return group(fmt.Sprintf("%.0f", v))
	case a >= 100:
		return fmt.Sprintf("%.0f", v)
	case a >= 10:
		return fmt.Sprintf("%.1f", v)
	case a >= 1:
		return fmt.Sprintf("%.2f", v)
	}
	return fmt.Sprintf("%.3f", v)
}

func group(digits string) string {
	neg := strings.HasPrefix(digits, "-")
	digits = strings.TrimPrefix(digits, "-")
	var b strings.Builder
	for i, c := range digits {
		if i > 0 && (len(digits)-i)%3 == 0 {
			b.WriteByte(',')
		}
		b.WriteRune(c)
	}
	if neg {
		return "-" + b.String()
	}
	return b.String()
}

// Ratio formats a/b as a ratio ("1.02x"); "n/a" when b is zero.
func Ratio(a, b float64) string {
	if b == 0 {
		return "n/a"
	}
	r := a / b
	if r < 0.1 {
		return fmt.Sprintf("%.4fx", r)
	}
	return fmt.Sprintf("%.2fx", r)
}

// Suite is every benchmark, in the order the table lists them.
func Suite() []Benchmark {
	return []Benchmark{
		{"attach", BenchAttach},
		{"cni", BenchCNI},
		{"datapath", BenchDatapath},
		{"l2-datapath", BenchL2Datapath},
		{"l2-attach", BenchL2Attach},
		{"program", BenchProgram},
		{"ipset", BenchIPSet},
		{"scale", BenchScale},
		{"podman", BenchPodman},
	}
}
