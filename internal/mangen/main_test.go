package main

import (
	"flag"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/spf13/cobra"

	"github.com/hostnet/hostnet/internal/cli"
	"github.com/hostnet/hostnet/internal/daemon"
)

// Every command of the tree has its page, hostnetd's page has every flag,
// and groff reads them all without a warning.
func TestGenerate(t *testing.T) {
	dir := t.TempDir()
	if err := generate(dir, "v9.9.9", time.Date(2026, 1, 2, 0, 0, 0, 0, time.UTC)); err != nil {
		t.Fatal(err)
	}
	var walk func(c *cobra.Command)
	walk = func(c *cobra.Command) {
		if !c.IsAvailableCommand() && c.HasParent() {
			return
		}
		page := filepath.Join(dir, strings.ReplaceAll(c.CommandPath(), " ", "-")+".1")
		b, err := os.ReadFile(page)
		if err != nil {
			t.Errorf("%s: %v", c.CommandPath(), err)
		} else if !strings.Contains(string(b), "hostnet v9.9.9") {
			t.Errorf("%s does not name the version", page)
		}
		for _, sub := range c.Commands() {
			walk(sub)
		}
	}
	walk(cli.NewRootCommand(cli.IO{}, nil))
	for _, want := range []string{"hostnet-completion-bash.1", "hostnet-namespace-create.1", "hostnet-endpoint-policy-rm.1"} {
		if _, err := os.Stat(filepath.Join(dir, want)); err != nil {
			t.Error(err)
		}
	}
	b, err := os.ReadFile(filepath.Join(dir, "hostnetd.8"))
	if err != nil {
		t.Fatal(err)
	}
	fs := flag.NewFlagSet("hostnetd", flag.ContinueOnError)
	daemon.Flags(fs)
	fs.VisitAll(func(f *flag.Flag) {
		if !strings.Contains(string(b), `\fB\-\-`+strings.ReplaceAll(f.Name, "-", `\-`)+`\fR`) {
			t.Errorf("hostnetd.8 lacks --%s", f.Name)
		}
	})
	for _, want := range []string{"journalctl", "--socket-group"} {
		if !strings.Contains(strings.ReplaceAll(string(b), `\-`, "-"), want) {
			t.Errorf("hostnetd.8 does not mention %s", want)
		}
	}
	groff, err := exec.LookPath("groff")
	if err != nil {
		t.Log("no groff: the pages are not rendered")
		return
	}
	pages, _ := filepath.Glob(filepath.Join(dir, "*.[18]"))
	for _, p := range pages {
		out, err := exec.Command(groff, "-z", "-ww", "-man", p).CombinedOutput()
		if err != nil || len(out) > 0 {
			t.Errorf("groff %s: %v\n%s", filepath.Base(p), err, out)
		}
	}
}
