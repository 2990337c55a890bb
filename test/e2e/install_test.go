package e2e

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// `make install` puts the binaries (the Docker plugin among them), the CNI
// plugin, the systemd unit (with the path of the installed hostnetd), the
// man pages and the completions under PREFIX; the unit passes systemd-analyze verify where it is there.
func TestMakeInstall(t *testing.T) {
	if _, err := exec.LookPath("make"); err != nil {
		t.Skip("no make")
	}
	prefix := t.TempDir()
	cmd := exec.Command("make", "-C", "../..", "install", "PREFIX="+prefix, "CNI_BIN_DIR="+prefix+"/cni", "BIN="+prefix+"/build", "VERSION=v0.0.0-test")
	cmd.Env = cleanEnv()
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("make install: %v\n%s", err, out)
	}
	for _, f := range []string{"bin/hostnet", "bin/hostnetd", "bin/hostnet-docker", "cni/hostnet-cni", "lib/systemd/system/hostnetd.service",
		"share/man/man1/hostnet.1", "share/man/man1/hostnet-network-create.1", "share/man/man8/hostnetd.8",
		"share/bash-completion/completions/hostnet", "share/zsh/site-functions/_hostnet", "share/fish/vendor_completions.d/hostnet.fish"} {
		if fi, err := os.Stat(filepath.Join(prefix, f)); err != nil || fi.Size() == 0 {
			t.Errorf("%s: %v", f, err)
		}
	}
	unit := filepath.Join(prefix, "lib/systemd/system/hostnetd.service")
	b, err := os.ReadFile(unit)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(b), "\nExecStart="+prefix+"/bin/hostnetd\n") {
		t.Errorf("the unit does not start the installed hostnetd:\n%s", b)
	}
	out, err := exec.Command(filepath.Join(prefix, "bin/hostnet"), "--version").Output()
	if err != nil || !strings.HasPrefix(string(out), "hostnet version v0.0.0-test (") {
		t.Errorf("hostnet --version: %q, %v", out, err)
	}
	out, err = exec.Command(filepath.Join(prefix, "bin/hostnetd"), "--version").Output()
	if err != nil || !strings.HasPrefix(string(out), "hostnetd version v0.0.0-test (") {
		t.Errorf("hostnetd --version: %q, %v", out, err)
	}
	if _, err := exec.LookPath("systemd-analyze"); err == nil {
		if out, err := exec.Command("systemd-analyze", "verify", "--man=no", unit).CombinedOutput(); err != nil {
			t.Errorf("systemd-analyze verify: %v\n%s", err, out)
		}
	}
}
