package bench

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"time"
)

// scaleMem is one reading of the daemon's memory.
type scaleMem struct {
	Endpoints int     `json:"endpoints"`
	RSSMB     float64 `json:"rssMB"`  // VmRSS: what the process holds now
	HWMMB     float64 `json:"hwmMB"`  // VmHWM: the most it ever held
	AnonMB    float64 `json:"anonMB"` // anonymous part of the RSS: heap, stacks
	FileMB    float64 `json:"fileMB"` // file-backed part: the binary, the state file's mmap
	// ByMapping splits the RSS by what is mapped: a file's name, or
	// "anonymous" (the Go heap, stacks and runtime).
	ByMapping map[string]float64 `json:"byMappingMB"`
	Threads   int                `json:"threads"`
	// From the daemon's last gctrace line before the reading: the heap
	// live after its last collection, and the goal of the next one.
	HeapLiveMB float64 `json:"heapLiveMB,omitempty"`
	HeapGoalMB float64 `json:"heapGoalMB,omitempty"`
	GCs        int     `json:"gcs,omitempty"`
}

// scaleDaemonPID is the pid of hostnetd itself. The benchmark starts it
// as nsenter (and env) followed by the daemon; neither forks when it
// enters only a network namespace, they exec, so the pid is normally the
// daemon's own. That is checked, not assumed: if the process is still
// nsenter or env, its only child is taken.
func scaleDaemonPID(pid int) (int, error) {
	for range 3 {
		exe, err := os.Readlink(fmt.Sprintf("/proc/%d/exe", pid))
		if err != nil {
			return 0, fmt.Errorf("daemon process %d: %w", pid, err)
		}
		switch filepath.Base(exe) {
		case "nsenter", "env":
		default:
			return pid, nil
		}
		b, err := os.ReadFile(fmt.Sprintf("/proc/%d/task/%d/children", pid, pid))
		if err != nil {
			return 0, fmt.Errorf("children of %d: %w", pid, err)
		}
		kids := strings.Fields(string(b))
		if len(kids) != 1 {
			return 0, fmt.Errorf("%s (pid %d) has %d children, want the daemon alone", exe, pid, len(kids))
		}
		if pid, err = strconv.Atoi(kids[0]); err != nil {
			return 0, fmt.Errorf("children of %d: %w", pid, err)
		}
	}
	return 0, fmt.Errorf("no daemon under pid %d", pid)
}

// readScaleMem reads the memory figures of process pid; logPath is the
// daemon's log, where its gctrace lines go.
func readScaleMem(pid, endpoints int, logPath string) (scaleMem, error) {
	m := scaleMem{Endpoints: endpoints}
	status, err := scaleProcFields(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return m, err
	}
	rollup, err := scaleProcFields(fmt.Sprintf("/proc/%d/smaps_rollup", pid))
	if err != nil {
		return m, err
	}
	m.RSSMB, m.HWMMB = scaleKBToMB(status["VmRSS"]), scaleKBToMB(status["VmHWM"])
	m.AnonMB = scaleKBToMB(rollup["Anonymous"])
	m.FileMB = scaleKBToMB(rollup["Rss"] - rollup["Anonymous"])
	m.Threads = int(status["Threads"])
	if m.ByMapping, err = scaleSmaps(pid); err != nil {
		return m, err
	}
	if logPath != "" {
		m.GCs, m.HeapLiveMB, m.HeapGoalMB = scaleLastGCTrace(logPath)
	}
	return m, nil
}

// scaleProcFields reads the "Name: number [kB]" lines of a /proc file.
func scaleProcFields(path string) (map[string]int64, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", path, err)
	}
	out := map[string]int64{}
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() {
		k, v, ok := strings.Cut(sc.Text(), ":")
		if !ok {
			continue
		}
		f := strings.Fields(v)
		if len(f) == 0 {
			continue
		}
		if n, err := strconv.ParseInt(f[0], 10, 64); err == nil {
			out[strings.TrimSpace(k)] = n
		}
	}
	return out, nil
}

func scaleKBToMB(kb int64) float64 { return float64(kb) * 1024 / 1e6 }

// scaleGCTraceRe matches a gctrace line: "gc 12 @3.4s 1%: ... 4->5->2 MB, 5 MB goal, ...".
var scaleGCTraceRe = regexp.MustCompile(`^gc (\d+) @.* (\d+)->(\d+)->(\d+) MB, (\d+) MB goal`)

// scaleLastGCTrace returns the number, live heap and heap goal of the last
// garbage collection logged in path (zeros if none is).
func scaleLastGCTrace(path string) (gcs int, liveMB, goalMB float64) {
	b, err := os.ReadFile(path)
	if err != nil {
		return 0, 0, 0
	}
	lines := strings.Split(string(b), "\n")
	for i := len(lines) - 1; i >= 0; i-- {
		if m := scaleGCTraceRe.FindStringSubmatch(lines[i]); m != nil {
			gcs, _ = strconv.Atoi(m[1])
			live, _ := strconv.ParseFloat(m[4], 64)
			goal, _ := strconv.ParseFloat(m[5], 64)
			// gctrace's MB are MiB.
			return gcs, live * (1 << 20) / 1e6, goal * (1 << 20) / 1e6
		}
	}
	return 0, 0, 0
}

// scaleProcCPU reads the user and system CPU time process pid has used
// (/proc/PID/stat, in clock ticks of 10 ms: the kernel's USER_HZ is 100).
func scaleProcCPU(pid int) (user, sys time.Duration, err error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, 0, err
	}
	// The command name, in parentheses, may hold spaces: count from after it.
	s := string(b)
	f := strings.Fields(s[strings.LastIndexByte(s, ')')+1:])
	if len(f) < 13 {
		return 0, 0, fmt.Errorf("short /proc/%d/stat", pid)
	}
	u, err1 := strconv.ParseInt(f[11], 10, 64)
	st, err2 := strconv.ParseInt(f[12], 10, 64)
	if err := errors.Join(err1, err2); err != nil {
		return 0, 0, fmt.Errorf("/proc/%d/stat: %w", pid, err)
	}
	return time.Duration(u) * 10 * time.Millisecond, time.Duration(st) * 10 * time.Millisecond, nil
}

// scaleSmaps sums the RSS of process pid's mappings by what they map
// (/proc/PID/smaps): a file's base name, or "anonymous".
func scaleSmaps(pid int) (map[string]float64, error) {
	path := fmt.Sprintf("/proc/%d/smaps", pid)
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", path, err)
	}
	out := map[string]float64{}
	name := "anonymous"
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() {
		line := sc.Text()
		f := strings.Fields(line)
		if len(f) == 0 {
			continue
		}
		if strings.Contains(f[0], "-") && !strings.HasSuffix(f[0], ":") {
			// A mapping's header: range perms offset dev inode [path].
			name = "anonymous"
			if len(f) >= 6 && strings.HasPrefix(f[5], "/") {
				name = filepath.Base(f[5])
			}
			continue
		}
		if f[0] == "Rss:" && len(f) >= 2 {
			if kb, err := strconv.ParseInt(f[1], 10, 64); err == nil && kb > 0 {
				out[name] += scaleKBToMB(kb)
			}
		}
	}
	return out, nil
}

// scaleTopMappings names the largest entries of m, "name X MB", largest first.
func scaleTopMappings(m map[string]float64, n int) string {
	type kv struct {
		k string
		v float64
	}
	var all []kv
	for k, v := range m {
		all = append(all, kv{k, v})
	}
	sort.Slice(all, func(i, j int) bool { return all[i].v > all[j].v })
	var parts []string
	for i := 0; i < len(all) && i < n; i++ {
		parts = append(parts, fmt.Sprintf("%s %s MB", all[i].k, num(all[i].v)))
	}
	return strings.Join(parts, ", ")
}
