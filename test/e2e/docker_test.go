package e2e

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/hostnet/hostnet/api"
	"github.com/hostnet/hostnet/internal/testutil/lab"
)

// Docker drives hostnet through hostnet-docker, its remote network and
// IPAM driver: Debian's docker.io (dockerd 20.10 with a containerd of its
// own), run with hostnetd and the plugin in the test's sandbox (the Env's
// host namespace, a private mount namespace with tmpfs over /run and
// /var/lib: /run/docker/plugins, where dockerd finds the plugin, and
// /run/docker/netns, where it mounts its sandboxes, are the test's).
// dockerd's data root is under the Env's directory; it runs with
// --iptables=false --ip6tables=false --bridge=none, so it makes no bridge
// and no rules of its own.

// dockerNet is the Docker network of the test (and its hostnet network's
// name, through the windowsshim networkname option).
const (
	dockerNet    = "dnet"
	dockerSubnet = "10.89.0.0/24"
	dockerGW     = "10.89.0.1"
)

// dockerd is a dockerd of the test's own in the sandbox, and the docker
// command line that talks to it.
type dockerd struct{ rtCommand }

// dockerCLI prefers Debian's docker (docker.io) next to its dockerd.
func dockerCLI(t *testing.T) string {
	if isExecutable("/usr/bin/docker") {
		return "/usr/bin/docker"
	}
	return lookRuntime(t, "docker", "apt-get install docker.io")
}

func newDockerd(t *testing.T, sb *sandbox, dir string) *dockerd {
	t.Helper()
	dbin := lookRuntime(t, "dockerd", "apt-get install docker.io", "/usr/sbin")
	cli := dockerCLI(t)
	lookRuntime(t, "containerd", "apt-get install containerd runc")
	lookRuntime(t, "runc", "apt-get install runc")
	if err := os.MkdirAll(filepath.Join(dir, "cli"), 0o755); err != nil {
		t.Fatal(err)
	}
	sb.Env = append(sb.Env, "DOCKER_CONFIG="+filepath.Join(dir, "cli"))
	// The plugin first: dockerd asks it when a network names it, and it
	// must outlive dockerd, which leaves the networks' containers on stop.
	plog, err := os.Create(filepath.Join(dir, "hostnet-docker.log"))
	if err != nil {
		t.Fatal(err)
	}
	plugin := sb.Command(context.Background(), dockerPluginBin, "--plugin-dir", "/run/docker/plugins", "--socket", sb.e.Socket, "--log-level", "debug")
	plugin.Stdout, plugin.Stderr = plog, plog
	if err := plugin.Start(); err != nil {
		t.Fatal(err)
	}
	stopProcess(t, plugin, plog)

	// Sockets and the exec root in the sandbox's /run: their paths must be
	// short, and they go with it.
	sock := "/run/dockerd.sock"
	log, err := os.Create(filepath.Join(dir, "dockerd.log"))
	if err != nil {
		t.Fatal(err)
	}
	d := sb.Command(context.Background(), dbin, "--data-root", filepath.Join(dir, "data"), "--exec-root", "/run/dockerd",
		"--pidfile", "/run/dockerd.pid", "--host", "unix://"+sock, "--iptables=false", "--ip6tables=false", "--bridge=none",
		"--storage-driver", "vfs", "--log-level", "debug")
	d.Stdout, d.Stderr = log, log
	if err := d.Start(); err != nil {
		t.Fatal(err)
	}
	exited := stopProcess(t, d, log)
	dk := &dockerd{rtCommand{sb: sb, args: []string{cli, "--host", "unix://" + sock}}}
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(100 * time.Millisecond) {
		out, err := dk.run("version", "--format", "{{.Server.Version}}")
		if err == nil {
			t.Logf("dockerd %s", strings.TrimSpace(out))
			break
		}
		select {
		case <-exited:
			b, _ := os.ReadFile(filepath.Join(dir, "dockerd.log"))
			skipRuntime(t, "dockerd cannot run on this machine: %s", lab.Tail(string(b), 20))
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("dockerd did not answer within 30 s: %v\n%s", err, out)
		}
	}
	t.Cleanup(func() {
		if out, _ := dk.run("ps", "-aq"); strings.TrimSpace(out) != "" {
			_, _ = dk.run(append([]string{"rm", "-f"}, strings.Fields(out)...)...)
		}
		_, _ = dk.run("network", "rm", dockerNet)
	})
	return dk
}

// stopProcess has the test's cleanup stop a process it started (SIGTERM,
// then SIGKILL after 15 s) and close its log; the channel closes when it
// has exited.
func stopProcess(t *testing.T, cmd *exec.Cmd, log *os.File) <-chan struct{} {
	t.Helper()
	exited := make(chan struct{})
	go func() { _ = cmd.Wait(); close(exited); log.Close() }()
	t.Cleanup(func() {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-exited:
		case <-time.After(15 * time.Second):
			_ = cmd.Process.Kill()
			<-exited
		}
	})
	return exited
}

// A Docker network on hostnet, and containers on it, as `docker` makes
// them: network create -d hostnet --ipam-driver hostnet makes the hostnet
// network (named by the windowsshim networkname option, with the subnet
// and gateway given); two containers get addresses of it and ping each
// other; a port published with -p is reached from outside through
// hostnet's mapping (no docker-proxy); docker rm -f and docker network rm
// leave no endpoint, namespace object, network or port of hostnet's.
func TestDocker(t *testing.T) {
	start := time.Now()
	e := NewTopology(t, "--default-network=false")
	sb := newSandbox(t, e)
	e.Start()
	dk := newDockerd(t, sb, filepath.Join(e.Dir, "docker"))
	rootfs, _ := busyboxRootfs(t, e.Dir)
	dk.must("import", rootfs, rtImage)
	t.Logf("dockerd, the plugin and the image ready in %v", time.Since(start).Round(time.Millisecond))
	ctx := context.Background()
	c := e.Client()

	step := time.Now()
	dk.must("network", "create", "--driver", "hostnet", "--ipam-driver", "hostnet", "--subnet", dockerSubnet, "--gateway", dockerGW,
		"-o", "com.docker.network.windowsshim.networkname="+dockerNet, dockerNet)
	n, err := c.GetNetwork(ctx, dockerNet)
	if err != nil {
		t.Fatalf("the hostnet network of docker network create: %v", err)
	}
	if spec, err := api.ParseNetwork(n); err != nil || n.Type != api.NAT || len(spec.Subnets) != 1 ||
		spec.Subnets[0].Prefix.String() != dockerSubnet || spec.Subnets[0].Gateway.String() != dockerGW {
		t.Errorf("the hostnet network: %s (%v)", mustJSON(n), err)
	}
	// A type hostnet does not know is refused, saying which it knows.
	if out, err := dk.run("network", "create", "--driver", "hostnet", "-o", "hostnet.type=nosuch", "bad"); err == nil || !strings.Contains(out, `"nosuch" is not a network type`) {
		t.Errorf("docker network create -o hostnet.type=nosuch: %v\n%s", err, out)
	}
	t.Logf("network create in %v", time.Since(step).Round(time.Millisecond))

	step = time.Now()
	dk.must("run", "-d", "--name", "web", "--network", dockerNet, "-p", "18080:80", rtImage, "httpd", "-f", "-p", "80", "-h", "/www")
	dk.must("run", "-d", "--name", "db", "--network", dockerNet, rtImage, "httpd", "-f", "-p", "80", "-h", "/www")
	t.Logf("two docker run -d in %v", time.Since(step).Round(time.Millisecond))
	ips := map[string]string{}
	for _, name := range []string{"web", "db"} {
		ip := strings.TrimSpace(dk.must("inspect", "--format", "{{range .NetworkSettings.Networks}}{{.IPAddress}}{{end}}", name))
		if !strings.HasPrefix(ip, "10.89.0.") {
			t.Fatalf("docker inspect %s: address %q", name, ip)
		}
		ips[name] = ip
		// hostnet attaches the endpoint as soon as Docker has mounted the
		// container's namespace.
		if !settle(true, func() bool {
			out, err := dk.run("exec", name, "ip", "-o", "-4", "addr", "show", "eth0")
			return err == nil && strings.Contains(out, "inet "+ip+"/24")
		}) {
			out, _ := dk.run("exec", name, "ip", "addr")
			t.Fatalf("%s: no eth0 with %s within 10 s:\n%s", name, ip, out)
		}
		if out := dk.must("exec", name, "ip", "route"); !strings.Contains(out, "default via "+dockerGW+" dev eth0") {
			t.Errorf("%s: routes:\n%s", name, out)
		}
	}
	for _, pair := range [][2]string{{"web", "db"}, {"db", "web"}} {
		if out, err := dk.run("exec", pair[0], "ping", "-c", "1", "-W", "2", ips[pair[1]]); err != nil {
			t.Errorf("%s pings %s (%s): %v\n%s", pair[0], pair[1], ips[pair[1]], err, out)
		}
		// By name: Docker's embedded DNS (127.0.0.11 in the container)
		// answers for the containers of a user-defined network, whatever
		// its driver.
		if out, err := dk.run("exec", pair[0], "ping", "-c", "1", "-W", "2", pair[1]); err != nil {
			t.Errorf("%s pings %s by name: %v\n%s", pair[0], pair[1], err, out)
		}
	}
	if !serves(t, e.ExtNS, hostAddr+":18080") {
		t.Errorf("the published port does not answer from outside")
	}
	eps, err := c.ListEndpoints(ctx, nil)
	if err != nil || len(eps) != 2 {
		t.Errorf("hostnet endpoints: %v, %v", eps, err)
	}
	for _, ep := range eps {
		// Attached to the container's namespace, where Docker mounts it
		// under its exec root.
		if !strings.HasPrefix(ep.Name, "docker-") || ep.HostComputeNamespace == "" || !strings.HasPrefix(ep.NetNamespacePath, "/run/dockerd/netns/") {
			t.Errorf("endpoint %s: %s", ep.Name, mustJSON(ep))
		}
	}

	// A container's first instruction may run before hostnet has attached
	// its endpoint (see dockerplugin.Plugin.Join): how often it does here.
	step = time.Now()
	missed := 0
	const tries = 3
	for i := 0; i < tries; i++ {
		out, err := dk.run("run", "--rm", "--network", dockerNet, rtImage, "ip", "-o", "-4", "addr", "show")
		if err != nil {
			t.Errorf("docker run --rm: %v\n%s", err, out)
		}
		if !strings.Contains(out, "inet 10.89.0.") {
			missed++
		}
	}
	t.Logf("docker run --rm: %d of %d containers ran their command before their interface was there; %v each",
		missed, tries, (time.Since(step) / tries).Round(time.Millisecond))

	step = time.Now()
	dk.must("rm", "-f", "web", "db")
	dk.must("network", "rm", dockerNet)
	t.Logf("rm -f and network rm in %v", time.Since(step).Round(time.Millisecond))
	e.checkNothingLeft(t)
	if body, err := httpGet(t, e.ExtNS, hostAddr+":18080"); err == nil {
		t.Errorf("the mapping outlived its container: %q", body)
	}
	t.Logf("TestDocker took %v", time.Since(start).Round(time.Millisecond))
}

// checkNothingLeft fails the test for any network, endpoint or namespace
// object the daemon has, and any endpoint port left in the host (they go
// in the background, within milliseconds).
func (e *Env) checkNothingLeft(t *testing.T) {
	t.Helper()
	ctx := context.Background()
	c := e.Client()
	nets, err := c.ListNetworks(ctx, nil)
	reportLeft(t, "network", nets, err, func(n *api.Network) string { return n.Name })
	eps, err := c.ListEndpoints(ctx, nil)
	reportLeft(t, "endpoint", eps, err, func(e *api.Endpoint) string { return e.Name })
	nss, err := c.ListNamespaces(ctx, nil)
	reportLeft(t, "namespace object", nss, err, func(n *api.Namespace) string { return n.Name })
	e.checkNoCNILeft(t)
}

func reportLeft[T any](t *testing.T, what string, l []T, err error, name func(*T) string) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
	for i := range l {
		t.Errorf("%s %s left", what, name(&l[i]))
	}
}
