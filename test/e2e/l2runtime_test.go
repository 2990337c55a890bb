package e2e

import (
	"fmt"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// The real runtimes on the L2 drivers, on the L2 lab's segment: what a
// user of `docker network create -d hostnet -o hostnet.type=...` or of a
// CNI configuration naming an L2 network gets, checked from the segment's
// router (another machine) and on the wire.

// l2Container is a container of a runtime on an L2 network: the router
// reaches its server, it reaches the router, and the host reaches it (its
// shim, on Transparent); its frames on the wire carry its own MAC
// (Transparent) or only the host's (L2Bridge).
func l2Container(t *testing.T, seg *segment, rt *rtCommand, wire *capture, typ, name, addr string) {
	t.Helper()
	h := seg.hosts[0]
	if !serves(t, seg.router, addr+":80") {
		t.Errorf("%s: the router on the segment does not reach %s's server at %s", typ, name, addr)
	}
	var out string
	var err error
	if !settle(true, func() bool { out, err = rt.run("exec", name, "ping", "-c", "1", "-W", "2", routerA); return err == nil }) {
		t.Errorf("%s: %s does not reach the router %s: %v\n%s", typ, name, routerA, err, out)
	}
	if !serves(t, h.HostNS, addr+":80") {
		t.Errorf("%s: the host does not reach %s's server at %s", typ, name, addr)
	}
	out = rt.must("exec", name, "cat", "/sys/class/net/eth0/address")
	own, err := net.ParseMAC(strings.TrimSpace(out))
	if err != nil {
		t.Fatalf("%s's MAC: %q", name, out)
	}
	macs := wire.sources()[netip.MustParseAddr(addr)]
	want := own.String()
	if typ == "l2bridge" {
		want = h.mac.String()
	}
	if len(macs) != 1 || !macs[want] {
		t.Errorf("%s: %s's frames (%s) reached the wire with source MACs %v, want only %s", typ, name, addr, sortedMACs(macs), want)
	}
}

// TestDockerOnASegment: dockerd makes a Transparent and an L2Bridge
// network of hostnet's on the segment's uplink with the options Docker on
// Windows takes (-o com.docker.network.windowsshim.interface), the
// subnet, gateway and --ip-range of the segment; a container with --ip on
// each is a machine of the segment. A wrong adapter is refused through
// Docker with hostnet's error, nothing left.
func TestDockerOnASegment(t *testing.T) {
	seg := newSegment(t, 1, "--default-network=false")
	h := seg.hosts[0]
	h.Stop() // to start again in the runtime's sandbox, where its namespaces are
	sb := newSandbox(t, h.Env)
	h.Start()
	dk := newDockerd(t, sb, filepath.Join(h.Dir, "docker"))
	rootfs, _ := busyboxRootfs(t, h.Dir)
	dk.must("import", rootfs, rtImage)
	// Bad input through Docker: the error names the field and the value,
	// and no network is left on either side.
	for _, bad := range []struct{ opt, want string }{
		{"com.docker.network.windowsshim.interface=nosuch0", `field Policies (NetAdapterName): the host has no adapter "nosuch0"`},
		{"com.docker.network.windowsshim.interface=lo", `"lo" is the loopback`},
	} {
		out, err := dk.run("network", "create", "--driver", "hostnet", "--ipam-driver", "hostnet", "--subnet", segA, "--gateway", routerA,
			"-o", "hostnet.type=transparent", "-o", bad.opt, "bad")
		if err == nil || !strings.Contains(out, bad.want) {
			t.Errorf("docker network create -o %s: %v, want an error saying %q:\n%s", bad.opt, err, bad.want, out)
		}
	}
	if out := dk.must("network", "ls", "--format", "{{.Name}}"); strings.Contains(out, "bad") {
		t.Errorf("a refused network is listed by docker:\n%s", out)
	}
	h.checkNothingLeft(t)
	for _, c := range []struct{ typ, addr string }{{"transparent", "192.0.2.70"}, {"l2bridge", "192.0.2.80"}} {
		name := "seg-" + c.typ
		dk.must("network", "create", "--driver", "hostnet", "--ipam-driver", "hostnet",
			"--subnet", segA, "--gateway", routerA, "--ip-range", "192.0.2.64/27",
			"-o", "hostnet.type="+c.typ, "-o", "com.docker.network.windowsshim.interface="+segUplink, name)
		wire := seg.capture(h.port)
		dk.must("run", "-d", "--name", name, "--network", name, "--ip", c.addr, rtImage, "httpd", "-f", "-p", "80", "-h", "/www")
		l2Container(t, seg, &dk.rtCommand, wire, c.typ, name, c.addr)
		dk.must("rm", "-f", name)
		dk.must("network", "rm", name)
	}
	h.checkNothingLeft(t)
}

// TestPodmanOnASegment: podman (CNI backend) joins an L2Bridge network
// made with `hostnet network create -d l2bridge` through a conflist that
// names it; its container is a machine of the segment with the host's
// MAC, at a static address (--ip) or one of the pool.
func TestPodmanOnASegment(t *testing.T) {
	seg := newSegment(t, 1, "--default-network=false")
	h := seg.hosts[0]
	h.Stop() // to start again in the runtime's sandbox, where its namespaces are
	sb := newSandbox(t, h.Env)
	dir := filepath.Join(h.Dir, "podman")
	p := newPodman(t, sb, dir)
	h.Start()
	rootfs, _ := busyboxRootfs(t, h.Dir)
	p.must("import", rootfs, rtImage)
	h.MustCLI("network", "create", "-d", "l2bridge", "--subnet", segA, "--gateway", routerA, "--ip-range", "192.0.2.64/27",
		"-o", "com.docker.network.windowsshim.interface="+segUplink, "lan")
	// The README's conflist, naming the network made above (no
	// networkDefinition: the network exists).
	conf := fmt.Sprintf(`{"cniVersion": "1.0.0", "name": "lan", "plugins": [{"type": "hostnet-cni", "network": "lan", "socket": %q,
  "capabilities": {"portMappings": true, "ips": true, "mac": true, "dns": true}}]}`, h.Socket)
	if err := os.WriteFile(filepath.Join(dir, "net.d", "lan.conflist"), []byte(conf), 0o644); err != nil {
		t.Fatal(err)
	}
	wire := seg.capture(h.port)
	p.must("run", "-d", "--name", "web", "--network", "lan", "--ip", "192.0.2.90", rtImage, "httpd", "-f", "-p", "80", "-h", "/www")
	if out := p.must("run", "--rm", "--network", "lan", rtImage, "sh", "-c", "ip -o -4 addr show eth0; ip route"); !strings.Contains(out, "inet 192.0.2.") || !strings.Contains(out, "default via "+routerA) {
		t.Errorf("podman run on lan: the container's address and routes:\n%s", out)
	}
	l2Container(t, seg, &p.rtCommand, wire, "l2bridge", "web", "192.0.2.90")
	p.must("rm", "--force", "--time", "0", "web")
	h.checkNoCNILeft(t)
}
