package daemon

import (
	"bytes"
	"flag"
	"strings"
	"testing"
)

// `hostnetd -h` names each flag's argument with one word: the flag package
// takes `quoted` text of a usage string as the argument's name, so quoting
// anything else ("`ip netns`") renders as nonsense.
func TestFlagUsage(t *testing.T) {
	fs := flag.NewFlagSet("hostnetd", flag.ContinueOnError)
	Flags(fs)
	var buf bytes.Buffer
	fs.SetOutput(&buf)
	fs.PrintDefaults()
	for line := range strings.Lines(buf.String()) {
		if !strings.HasPrefix(line, "  -") {
			continue
		}
		fields := strings.Fields(line)
		if len(fields) > 2 {
			t.Errorf("the argument of %s is named %q", fields[0], strings.Join(fields[1:], " "))
		}
	}
	fs.VisitAll(func(f *flag.Flag) {
		name, _ := flag.UnquoteUsage(f)
		if name != "" && strings.Count(f.Usage, "`") != 2 {
			t.Errorf("-%s: usage %q", f.Name, f.Usage)
		}
		if env := "HOSTNET_" + strings.ToUpper(strings.ReplaceAll(f.Name, "-", "_")); !strings.Contains(f.Usage, "(env "+env+")") &&
			f.Name != "restore-backup" && f.Name != "forget-kernel-state" {
			t.Errorf("-%s: the usage does not name %s", f.Name, env)
		}
	})
}
