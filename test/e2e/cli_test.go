package e2e

import (
	"encoding/json"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/hostnet/hostnet/api"
)

// helper returns the command line and environment that make `hostnet run`
// start this test binary as a small program (see runHelper).
func helper(t *testing.T, mode string, args ...string) ([]string, []string) {
	t.Helper()
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	return append([]string{"--", self}, args...), []string{helperEnv + "=" + mode}
}

// `hostnet run` on the default network reaches the outside: the server
// sees the host's uplink address; the command's exit code passes through;
// with --rm nothing is left.
func TestRunReachesTheOutside(t *testing.T) {
	e := NewEnv(t)
	Serve(t, e.ExtNS, "tcp", extAddr+":7777")
	cmd, env := helper(t, "talk", "tcp", extAddr+":7777")
	r := e.CLIEnv(env, append([]string{"run", "--rm"}, cmd...)...)
	if r.Code != 0 {
		t.Fatalf("hostnet run: exit %d\nstdout: %s\nstderr: %s", r.Code, r.Stdout, r.Stderr)
	}
	if got := strings.Fields(r.Stdout); len(got) != 2 || !strings.HasPrefix(got[0], hostAddr+":") || got[1] != "hello" {
		t.Errorf("the outside answered %q, want it to have seen %s", r.Stdout, hostAddr)
	}

	cmd, env = helper(t, "exit", "3")
	if r := e.CLIEnv(env, append([]string{"run", "--rm"}, cmd...)...); r.Code != 3 {
		t.Errorf("exit code: got %d, want 3 (stderr %s)", r.Code, r.Stderr)
	}
	if r := e.CLI("run", "--rm", "--", "/nonexistent/command"); r.Code != 127 {
		t.Errorf("a missing command: exit %d, want 127", r.Code)
	}
	eps, _ := e.Client().ListEndpoints(ctx, nil)
	nss, _ := e.Client().ListNamespaces(ctx, nil)
	if len(eps)+len(nss) != 0 {
		t.Errorf("--rm left %d endpoints and %d namespaces", len(eps), len(nss))
	}
}

// The command sees the namespace's resolv.conf (as `ip netns exec` does),
// and without --rm the objects stay, named.
func TestRunDNSAndNames(t *testing.T) {
	e := NewEnv(t)
	cmd, env := helper(t, "cat", "/etc/resolv.conf")
	r := e.CLIEnv(env, append([]string{"run", "--name", "web", "--dns", "10.7.7.7"}, cmd...)...)
	if r.Code != 0 {
		t.Fatalf("hostnet run: exit %d: %s", r.Code, r.Stderr)
	}
	if !strings.Contains(r.Stdout, "nameserver 10.7.7.7") {
		t.Errorf("resolv.conf inside the namespace:\n%s", r.Stdout)
	}
	b, _ := os.ReadFile("/etc/resolv.conf")
	if strings.Contains(string(b), "10.7.7.7") {
		t.Error("the host's /etc/resolv.conf was changed")
	}
	ep, err := e.Client().GetEndpoint(ctx, "web")
	if err != nil {
		t.Fatalf("the endpoint named web: %v", err)
	}
	if ep.HostComputeNamespace == "" {
		t.Error("the endpoint of a run without --rm is not attached")
	}
	out := e.MustCLI("endpoint", "ls")
	if !strings.Contains(out, "web") || !strings.Contains(out, ep.IpConfigurations[0].IpAddress) {
		t.Errorf("endpoint ls:\n%s", out)
	}
}

// The docker-like verbs: create, ls, inspect, rm; errors worded by the
// daemon; a missing daemon.
func TestCLINetworkVerbs(t *testing.T) {
	e := NewEnv(t)
	id := strings.TrimSpace(e.MustCLI("network", "create", "-d", "nat", "--subnet", "10.77.0.0/24", "--gateway", "10.77.0.254", "blue"))
	n, err := e.Client().GetNetwork(ctx, "blue")
	if err != nil || n.ID != id {
		t.Fatalf("created %q; the daemon has %+v, %v", id, n, err)
	}
	ls := e.MustCLI("network", "ls")
	for _, want := range []string{"NETWORK ID", "blue", "nat", "10.77.0.0/24"} {
		if !strings.Contains(ls, want) {
			t.Errorf("network ls lacks %q:\n%s", want, ls)
		}
	}
	var docs []api.Network
	if err := json.Unmarshal([]byte(e.MustCLI("network", "inspect", "blue")), &docs); err != nil || len(docs) != 1 ||
		docs[0].Ipams[0].Subnets[0].Routes[0].NextHop != "10.77.0.254" {
		t.Errorf("network inspect: %+v %v", docs, err)
	}
	r := e.CLI("network", "create", "--subnet", "10.77.0.128/25", "clash")
	if r.Code != 1 || !strings.Contains(r.Stderr, "Error: ") || !strings.Contains(r.Stderr, "overlaps") {
		t.Errorf("overlapping create: exit %d, stderr %q", r.Code, r.Stderr)
	}
	e.MustCLI("network", "create", "--subnet", "10.78.0.0/24", "--ip-range", "10.78.0.128/25", "-o", "com.docker.network.windowsshim.dnsservers=10.78.0.53", "ranged")
	ep := strings.TrimSpace(e.MustCLI("endpoint", "create", "--network", "ranged"))
	if got, _ := e.Client().GetEndpoint(ctx, ep); got == nil || got.IpConfigurations[0].IpAddress != "10.78.0.128" {
		t.Errorf("--ip-range 10.78.0.128/25: the first endpoint got %+v", got)
	}
	if got, _ := e.Client().GetNetwork(ctx, "ranged"); got == nil || got.Dns == nil || got.Dns.ServerList[0] != "10.78.0.53" {
		t.Errorf("windowsshim dnsservers option: %+v", got)
	}
	e.MustCLI("network", "rm", "blue")
	if _, err := e.Client().GetNetwork(ctx, "blue"); !api.IsNotFound(err) {
		t.Errorf("after rm: %v", err)
	}
	e.Stop()
	r = e.CLI("network", "ls")
	if r.Code == 0 || !strings.Contains(r.Stderr, "cannot reach hostnetd at "+e.Socket+": is it running?") {
		t.Errorf("without a daemon: exit %d, stderr %q", r.Code, r.Stderr)
	}
}

// Namespaces and endpoints through the CLI, and HCN documents applied from
// a file (applying twice changes nothing).
func TestCLINamespacesAndApply(t *testing.T) {
	e := NewEnv(t)
	nsID := strings.TrimSpace(e.MustCLI("namespace", "create", "--name", "box"))
	epID := strings.TrimSpace(e.MustCLI("endpoint", "create", "--network", "nat", "--ip", "172.16.0.50", "web"))
	e.MustCLI("namespace", "attach", "box", "web")
	ep, err := e.Client().GetEndpoint(ctx, epID)
	if err != nil || ep.HostComputeNamespace != nsID || ep.IpConfigurations[0].IpAddress != "172.16.0.50" {
		t.Fatalf("after attach: %+v, %v", ep, err)
	}
	if ls := e.MustCLI("namespace", "ls"); !strings.Contains(ls, "box") {
		t.Errorf("namespace ls:\n%s", ls)
	}
	e.MustCLI("namespace", "detach", "box", "web")
	e.MustCLI("endpoint", "rm", "web")
	e.MustCLI("namespace", "rm", "box")

	file := e.Dir + "/docs.json"
	docs := `[{"Name":"applied","Type":"NAT","Ipams":[{"Type":"Static","Subnets":[{"IpAddressPrefix":"10.89.0.0/24"}]}],"SchemaVersion":{"Major":2,"Minor":0}},
	{"Name":"applied-ep","HostComputeNetwork":"applied","IpConfigurations":[{"IpAddress":"10.89.0.9","PrefixLength":24}],"SchemaVersion":{"Major":2,"Minor":0}}]`
	if err := os.WriteFile(file, []byte(docs), 0o644); err != nil {
		t.Fatal(err)
	}
	out := e.MustCLI("apply", "-f", file)
	if !strings.Contains(out, "created") {
		t.Errorf("first apply: %s", out)
	}
	out = e.MustCLI("apply", "-f", file)
	if strings.Contains(out, "created") || !strings.Contains(out, "unchanged") {
		t.Errorf("second apply: %s", out)
	}
	if ep, err := e.Client().GetEndpoint(ctx, "applied-ep"); err != nil || ep.IpConfigurations[0].IpAddress != "10.89.0.9" {
		t.Errorf("applied endpoint: %+v, %v", ep, err)
	}
}

// `hostnet run -p` publishes a port as docker run does; `endpoint policy
// add --acl` firewalls it and `policy rm` lifts the rule; `policy ls`
// shows both readably; `endpoint create -p` publishes too.
func TestRunPublishAndPolicyVerbs(t *testing.T) {
	e := NewEnv(t)
	cmd, env := helper(t, "exit", "0")
	if r := e.CLIEnv(env, append([]string{"run", "--name", "site", "-p", "8080:80"}, cmd...)...); r.Code != 0 {
		t.Fatalf("hostnet run -p: exit %d: %s", r.Code, r.Stderr)
	}
	ep, err := e.Client().GetEndpoint(ctx, "site")
	if err != nil {
		t.Fatal(err)
	}
	ns, err := e.Client().GetNamespace(ctx, ep.HostComputeNamespace)
	if err != nil {
		t.Fatal(err)
	}
	Serve(t, ns.NetNamespacePath, "tcp", ":80")
	if !reachTCP(t, e.ExtNS, hostAddr+":8080") {
		t.Fatal("the port hostnet run -p published is not reachable from outside")
	}

	rule := "block in proto tcp lport 80 priority 10"
	e.MustCLI("endpoint", "policy", "add", "site", "--acl", rule, "--acl", "allow in priority 100", "--acl", "allow out priority 100")
	if probeTCP(t, e.ExtNS, hostAddr+":8080") {
		t.Error("the published port still answers behind a Block rule")
	}
	ls := e.MustCLI("endpoint", "policy", "ls", "site")
	t.Logf("policy ls:\n%s", ls)
	block, allow := strings.Index(ls, "Block"), strings.Index(ls, "Allow")
	if !strings.Contains(ls, "8080") || block < 0 || allow < 0 || block > allow {
		t.Errorf("policy ls: want the mapping, then the Block rule before the Allow ones:\n%s", ls)
	}
	if out := e.MustCLI("endpoint", "policy", "rm", "site", "--acl", rule); out != "endpoint site: removed ACL "+rule+"\n" {
		t.Errorf("policy rm printed %q", out)
	}
	if !reachTCP(t, e.ExtNS, hostAddr+":8080") {
		t.Error("the published port does not answer once the Block rule is removed")
	}
	// Removing it again matches nothing: a failure that says so.
	if r := e.CLI("endpoint", "policy", "rm", "site", "--acl", rule); r.Code != 1 || !strings.Contains(r.Stderr, "no policy of endpoint site matches: nothing was removed") {
		t.Errorf("policy rm of a rule that is not there: exit %d, stderr %q", r.Code, r.Stderr)
	}

	e.MustCLI("endpoint", "create", "--network", "nat", "-p", "9090:80/udp", "dns")
	got, err := e.Client().GetEndpoint(ctx, "dns")
	if err != nil {
		t.Fatal(err)
	}
	if len(got.Policies) != 1 || got.Policies[0].Type != api.PortMapping || !strings.Contains(string(got.Policies[0].Settings), `"ExternalPort":9090`) {
		t.Errorf("endpoint create -p: policies %+v", got.Policies)
	}
}

// A user who is neither root nor in the socket's group is told to use sudo
// or to join the group, not asked whether the daemon runs.
func TestCLINotRootSaysSudo(t *testing.T) {
	pub := hostilePublicDir(t)
	bin := filepath.Join(pub, "hostnet")
	b, err := os.ReadFile(hostnetBin)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(bin, b, 0o755); err != nil {
		t.Fatal(err)
	}
	e := NewTopology(t)
	e.Socket = filepath.Join(pub, "cli.sock")
	e.Start()
	cmd := exec.Command(bin, "--socket", e.Socket, "network", "ls")
	cmd.Env = append(cleanEnv(), "TMPDIR=/tmp")
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: 65534, Gid: 65534}}
	out, err := cmd.CombinedOutput()
	var exit *exec.ExitError
	if !errors.As(err, &exit) || exit.ExitCode() != 1 {
		t.Fatalf("hostnet as nobody: %v\n%s", err, out)
	}
	for _, want := range []string{"cannot reach hostnetd at " + e.Socket + ": permission denied", "use sudo", "--socket-group"} {
		if !strings.Contains(string(out), want) {
			t.Errorf("hostnet as nobody says %q, want %q in it", out, want)
		}
	}
	if strings.Contains(string(out), "is it running") {
		t.Errorf("hostnet as nobody asks whether the daemon runs: %q", out)
	}
}

// Output formats, errors as JSON, and drivers that are not built, against
// a real daemon.
func TestCLIOutputFormats(t *testing.T) {
	e := NewEnv(t)
	if out := e.MustCLI("network", "ls", "-o", "yaml"); !strings.Contains(out, "- ID: ") || !strings.Contains(out, "  Name: nat\n") {
		t.Errorf("network ls -o yaml:\n%s", out)
	}
	if out := e.MustCLI("network", "ls", "--format", "{{.Name}} {{.BridgeName}}"); !strings.HasPrefix(out, "nat hnbr") {
		t.Errorf("network ls --format: %q", out)
	}
	if out := e.MustCLI("network", "ls", "-o", "wide"); !strings.Contains(out, "GATEWAY") {
		t.Errorf("network ls -o wide:\n%s", out)
	}
	r := e.CLI("network", "inspect", "nope", "-o", "json")
	var doc struct {
		Success   bool
		Error     string
		ErrorCode uint32
	}
	if err := json.Unmarshal([]byte(r.Stderr), &doc); err != nil || r.Code != 1 || doc.Success || doc.ErrorCode != uint32(api.CodeElementNotFound) || !strings.Contains(doc.Error, "nope") {
		t.Errorf("inspect of a missing network under -o json: exit %d, stderr %q (%v)", r.Code, r.Stderr, err)
	}
	r = e.CLI("network", "create", "-d", "overlay", "--subnet", "10.91.0.0/24", "ov")
	if r.Code != 1 || !strings.Contains(r.Stderr, `driver "overlay" is not built yet: this hostnetd supports nat, transparent, l2bridge, l2tunnel`) {
		t.Errorf("network create -d overlay: exit %d, stderr %q", r.Code, r.Stderr)
	}
	if out := e.MustCLI("namespace", "create", "box"); len(strings.TrimSpace(out)) != 36 {
		t.Errorf("namespace create box printed %q, want the ID", out)
	}
	if _, err := e.Client().GetNamespace(ctx, "box"); err != nil {
		t.Errorf("namespace create NAME: %v", err)
	}
}
