// Package testutil holds what hostnet's kernel tests share: throwaway
// network namespaces, and the check that a suite left nothing behind in
// the root namespace.
//
// The leak check compares against a snapshot taken before the run, so that
// a host that already holds hostnet objects (a running hostnetd and its
// bridge, namespaces and tables, leftovers of a crashed run) is not blamed
// on the tests: only what the run added is reported.
package testutil

import (
	"bufio"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"

	"github.com/google/nftables"
	"github.com/vishvananda/netlink"
)

// Leaks lists hostnet's kernel objects left in the root namespace and the
// mount table: devices named hn*, nftables tables named hostnet, ip-netns
// entries hn-*, mounts under hostnet's run directories, and mounts under
// scope (a test package's own directory) and processes running a program
// under it, or, when scope is empty, namespace mounts anywhere under the
// temporary directory (the check after a whole suite). Call it from the
// root namespace; it only reads.
func Leaks(scope string) []string {
	var out []string
	if links, err := netlink.LinkList(); err == nil {
		for _, l := range links {
			if strings.HasPrefix(l.Attrs().Name, "hn") {
				out = append(out, "device "+l.Attrs().Name)
			}
		}
	}
	if c, err := nftables.New(); err == nil {
		if tables, err := c.ListTables(); err == nil {
			for _, t := range tables {
				if strings.Contains(t.Name, "hostnet") {
					out = append(out, "nftables table "+familyName(t.Family)+" "+t.Name)
				}
			}
		}
	}
	if entries, err := os.ReadDir("/run/netns"); err == nil {
		for _, e := range entries {
			if strings.HasPrefix(e.Name(), "hn") {
				out = append(out, "ip netns "+e.Name())
			}
		}
	}
	tmp := filepath.Clean(os.TempDir())
	for _, m := range mounts() {
		switch {
		case strings.HasPrefix(m.point, "/run/hostnet") || strings.HasPrefix(m.point, "/run/netns/hn"):
		case scope != "" && under(m.point, scope):
		case scope == "" && m.fstype == "nsfs" && under(m.point, tmp):
		default:
			continue
		}
		out = append(out, fmt.Sprintf("mount %s (%s)", m.point, m.fstype))
	}
	if scope != "" {
		out = append(out, processesUnder(scope)...)
	}
	return out
}

// familyName is how nft(8) names a table family.
func familyName(f nftables.TableFamily) string {
	switch f {
	case nftables.TableFamilyINet:
		return "inet"
	case nftables.TableFamilyIPv4:
		return "ip"
	case nftables.TableFamilyIPv6:
		return "ip6"
	case nftables.TableFamilyARP:
		return "arp"
	case nftables.TableFamilyBridge:
		return "bridge"
	case nftables.TableFamilyNetdev:
		return "netdev"
	}
	return fmt.Sprintf("family-%d", f)
}

func under(path, dir string) bool {
	dir = filepath.Clean(dir)
	return path == dir || strings.HasPrefix(path, dir+"/")
}

type mount struct{ point, fstype string }

// mounts parses /proc/self/mountinfo: field 5 is the mount point, and the
// file system type follows the " - " separator.
func mounts() []mount {
	f, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		return nil
	}
	defer f.Close()
	var out []mount
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := sc.Text()
		fields := strings.Fields(line)
		if len(fields) < 5 {
			continue
		}
		m := mount{point: unescape(fields[4])}
		if _, after, ok := strings.Cut(line, " - "); ok {
			if f := strings.Fields(after); len(f) > 0 {
				m.fstype = f[0]
			}
		}
		out = append(out, m)
	}
	return out
}

func unescape(s string) string {
	r := strings.NewReplacer(`\040`, " ", `\011`, "\t", `\012`, "\n", `\134`, `\`)
	return r.Replace(s)
}

// UnmountUnder detaches every mount at or below dir (deepest first) and
// reports how many it found.
func UnmountUnder(dir string, unmount func(string) error) int {
	var found []string
	for _, m := range mounts() {
		if under(m.point, dir) {
			found = append(found, m.point)
		}
	}
	for i := len(found) - 1; i >= 0; i-- {
		_ = unmount(found[i])
	}
	return len(found)
}

// Snapshot is the set of hostnet's kernel objects present at one moment,
// as Leaks words them.
type Snapshot map[string]bool

// TakeSnapshot records the hostnet objects present now (Leaks(scope)).
func TakeSnapshot(scope string) Snapshot {
	s := Snapshot{}
	for _, o := range Leaks(scope) {
		s[o] = true
	}
	return s
}

// Added lists, sorted, the objects of now that the snapshot does not hold.
func (s Snapshot) Added(now []string) []string {
	var out []string
	for _, o := range now {
		if !s[o] {
			out = append(out, o)
		}
	}
	sort.Strings(out)
	return out
}

// Leaked lists the hostnet objects present now (Leaks(scope)) that were not
// there when the snapshot was taken.
func (s Snapshot) Leaked(scope string) []string { return s.Added(Leaks(scope)) }

// Write saves the snapshot to a file, as a JSON array.
func (s Snapshot) Write(path string) error {
	list := make([]string, 0, len(s))
	for o := range s {
		list = append(list, o)
	}
	sort.Strings(list)
	b, err := json.MarshalIndent(list, "", "  ")
	if err != nil {
		return err
	}
	return os.WriteFile(path, append(b, '\n'), 0o644)
}

// ReadSnapshot reads a snapshot saved by Write.
func ReadSnapshot(path string) (Snapshot, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var list []string
	if err := json.Unmarshal(b, &list); err != nil {
		return nil, fmt.Errorf("snapshot %s: %w", path, err)
	}
	s := Snapshot{}
	for _, o := range list {
		s[o] = true
	}
	return s, nil
}

// CheckMain runs after a package's tests (from TestMain) and turns leaks
// into a failing exit code: objects present now that before (taken before
// the tests ran) does not hold. scope is the package's own temporary
// directory, where every mount is the run's.
func CheckMain(code int, scope string, before Snapshot) int {
	if os.Geteuid() != 0 {
		return code
	}
	if leaks := before.Leaked(scope); len(leaks) > 0 {
		fmt.Fprintf(os.Stderr, "LEAK CHECK FAILED: the tests left kernel objects behind (present now, not before they ran):\n  %s\n", strings.Join(leaks, "\n  "))
		if code == 0 {
			code = 1
		}
	}
	return code
}

// processesUnder lists the processes whose program lies under dir (a
// daemon a test built and started there, left running: its namespaces live
// on with it, out of the mount table's sight).
func processesUnder(dir string) []string {
	entries, err := os.ReadDir("/proc")
	if err != nil {
		return nil
	}
	var out []string
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil || pid == os.Getpid() {
			continue
		}
		exe, err := os.Readlink(filepath.Join("/proc", e.Name(), "exe"))
		if err != nil {
			continue // gone, or a kernel thread
		}
		exe = strings.TrimSuffix(exe, " (deleted)")
		if under(exe, dir) {
			out = append(out, fmt.Sprintf("process %d (%s)", pid, exe))
		}
	}
	return out
}
