package e2e

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/containernetworking/cni/libcni"
	"github.com/containernetworking/cni/pkg/types"
	types100 "github.com/containernetworking/cni/pkg/types/100"
	"github.com/hostnet/hostnet/api"
	"github.com/hostnet/hostnet/internal/cni"
	"github.com/hostnet/hostnet/internal/dataplane/netns"
	"github.com/hostnet/hostnet/internal/testutil"
	"github.com/vishvananda/netlink"
)

// The reference tools the CNI tests drive hostnet-cni with, built from the
// Go module proxy once per run.
const (
	cniToolModule = "github.com/containernetworking/cni/cnitool@v1.3.1"
	tuningModule  = "github.com/containernetworking/plugins/plugins/meta/tuning@v1.10.0"
)

var (
	cniToolsOnce sync.Once
	cniToolsErr  error
	cnitoolBin   string
)

// cniTools builds cnitool and the tuning plugin (into the CNI_PATH of the
// tests) the first time a test needs them.
func cniTools(t *testing.T) {
	t.Helper()
	cniToolsOnce.Do(func() {
		toolDir := filepath.Join(baseDir, "cni-tools")
		for _, b := range []struct{ dir, pkg string }{{toolDir, cniToolModule}, {cniBinDir, tuningModule}} {
			cmd := exec.Command("go", "install", b.pkg)
			cmd.Env = append(os.Environ(), "GOBIN="+b.dir)
			if out, err := cmd.CombinedOutput(); err != nil {
				cniToolsErr = fmt.Errorf("go install %s: %v\n%s", b.pkg, err, out)
				return
			}
		}
		cnitoolBin = filepath.Join(toolDir, "cnitool")
	})
	if cniToolsErr != nil {
		t.Fatal(cniToolsErr)
	}
}

var cniVersions = []string{"0.3.0", "0.3.1", "0.4.0", "1.0.0", "1.1.0"}

// cniConf is a conflist of hostnet-cni on the network "pods" (10.99.0.0/24,
// created by the first ADD), for this Env's daemon, followed by more.
func (e *Env) cniConf(t *testing.T, version, name string, more ...map[string]any) *libcni.NetworkConfigList {
	t.Helper()
	plugins := []map[string]any{{
		"type": "hostnet-cni", "socket": e.Socket, "network": "pods",
		"networkDefinition": map[string]any{"type": "NAT", "subnet": "10.99.0.0/24", "gateway": "10.99.0.1"},
		"capabilities":      map[string]bool{"portMappings": true, "ips": true, "mac": true, "dns": true},
	}}
	plugins = append(plugins, more...)
	b, _ := json.Marshal(map[string]any{"cniVersion": version, "name": name, "plugins": plugins})
	list, err := libcni.ConfListFromBytes(b)
	if err != nil {
		t.Fatal(err)
	}
	return list
}

func (e *Env) libcni() *libcni.CNIConfig {
	return libcni.NewCNIConfigWithCacheDir([]string{cniBinDir}, filepath.Join(e.Dir, "cni-cache"), nil)
}

func asResult100(t *testing.T, r types.Result) *types100.Result {
	t.Helper()
	out, err := types100.NewResultFromResult(r)
	if err != nil {
		t.Fatalf("result of version %s does not convert: %v", r.Version(), err)
	}
	return out
}

// ADD, a repeated ADD, CHECK, STATUS, DEL and a repeated DEL through
// libcni for every supported version; each result is in the version of
// its configuration, as libcni parses it.
func TestCNILibcniLifecycle(t *testing.T) {
	e := NewEnv(t)
	c := e.Client()
	cfg := e.libcni()
	ctx := context.Background()
	if _, err := c.CreateNetwork(ctx, &api.Network{Name: "pods", Type: api.NAT, Ipams: []api.Ipam{{Subnets: []api.Subnet{
		{IpAddressPrefix: "10.99.0.0/24", Routes: []api.Route{{NextHop: "10.99.0.1", DestinationPrefix: "0.0.0.0/0"}}}}}}}); err != nil {
		t.Fatal(err)
	}
	// The bridge takes an IPv6 link-local address when its first port
	// comes up, and keeps it: a first container makes that happen.
	warm, _ := testutil.NewNS(t, "warm")
	warmRT := &libcni.RuntimeConf{ContainerID: "warm", NetNS: warm, IfName: "eth0"}
	if _, err := cfg.AddNetworkList(ctx, e.cniConf(t, "1.1.0", "lifecycle"), warmRT); err != nil {
		t.Fatal(err)
	}
	if err := cfg.DelNetworkList(ctx, e.cniConf(t, "1.1.0", "lifecycle"), warmRT); err != nil {
		t.Fatal(err)
	}
	e.checkNoCNILeft(t) // waits for its port to go
	before := e.kernelState()
	for _, v := range cniVersions {
		t.Run(v, func(t *testing.T) {
			path, _ := testutil.NewNS(t, "c")
			list := e.cniConf(t, v, "lifecycle")
			rt := &libcni.RuntimeConf{ContainerID: "ctr-" + strings.ReplaceAll(v, ".", ""), NetNS: path, IfName: "eth0",
				CapabilityArgs: map[string]any{"mac": "02:aa:bb:cc:dd:0" + v[:1], "dns": map[string]any{"servers": []string{"10.0.0.10"}, "searches": []string{"svc.test"}}}}
			res, err := cfg.AddNetworkList(ctx, list, rt)
			if err != nil {
				t.Fatalf("ADD: %v", err)
			}
			if res.Version() != v {
				t.Errorf("ADD answered version %s, want %s", res.Version(), v)
			}
			r := asResult100(t, res)
			if len(r.IPs) != 1 || !strings.HasPrefix(r.IPs[0].Address.String(), "10.99.0.") || r.IPs[0].Gateway.String() != "10.99.0.1" {
				t.Fatalf("ADD result IPs: %v", r.IPs)
			}
			if len(r.Interfaces) != 2 || r.Interfaces[1].Name != "eth0" || r.Interfaces[1].Sandbox != path || r.IPs[0].Interface == nil || *r.IPs[0].Interface != 1 {
				t.Errorf("ADD result interfaces: %v", r.Interfaces)
			}
			if len(r.Routes) != 1 || r.Routes[0].Dst.String() != "0.0.0.0/0" || r.Routes[0].GW.String() != "10.99.0.1" {
				t.Errorf("ADD result routes: %v", r.Routes)
			}
			if r.Interfaces[1].Mac != rt.CapabilityArgs["mac"] || len(r.DNS.Nameservers) != 1 || r.DNS.Search[0] != "svc.test" {
				t.Errorf("the mac and dns capabilities: interface %v, dns %v", r.Interfaces[1], r.DNS)
			}
			got, err := cni.InspectInterface(path, "eth0")
			if err != nil || len(got.Addrs) == 0 || got.Addrs[0].String() != r.IPs[0].Address.String() || got.MAC.String() != rt.CapabilityArgs["mac"] {
				t.Errorf("the interface in the namespace: %+v, %v", got, err)
			}
			name := cni.EndpointName("lifecycle", rt.ContainerID, "eth0")
			ep, err := c.GetEndpoint(ctx, name)
			if err != nil {
				t.Fatalf("the endpoint is not named after the container: %v", err)
			}
			again, err := cfg.AddNetworkList(ctx, list, rt)
			if err != nil || asResult100(t, again).IPs[0].Address.String() != r.IPs[0].Address.String() {
				t.Errorf("a repeated ADD: %v, %v", again, err)
			}
			if v >= "0.4.0" {
				if err := cfg.CheckNetworkList(ctx, list, rt); err != nil {
					t.Errorf("CHECK: %v", err)
				}
			}
			if v == "1.1.0" {
				if err := cfg.GetStatusNetworkList(ctx, list); err != nil {
					t.Errorf("STATUS: %v", err)
				}
			}
			if err := cfg.DelNetworkList(ctx, list, rt); err != nil {
				t.Fatalf("DEL: %v", err)
			}
			if _, err := c.GetEndpoint(ctx, ep.ID); !api.IsNotFound(err) {
				t.Errorf("the endpoint outlived DEL: %v", err)
			}
			if _, err := c.GetNamespace(ctx, cni.NamespaceName(rt.ContainerID)); !api.IsNotFound(err) {
				t.Errorf("the namespace object outlived DEL: %v", err)
			}
			if _, err := os.Stat(path); err != nil {
				t.Errorf("DEL removed the runtime's namespace: %v", err)
			}
			if err := cfg.DelNetworkList(ctx, list, rt); err != nil {
				t.Errorf("a repeated DEL: %v", err)
			}
			e.expectKernel(t, before, "after DEL")
		})
	}
	e.checkNoCNILeft(t)
}

// GC removes the attachments the runtime no longer lists, and only those;
// STATUS fails with code 50 when the daemon cannot be reached.
func TestCNIGCAndStatus(t *testing.T) {
	e := NewEnv(t)
	cfg := e.libcni()
	ctx := context.Background()
	list := e.cniConf(t, "1.1.0", "gc")
	var rts []*libcni.RuntimeConf
	var withKeep string
	for _, id := range []string{"keep", "drop1", "drop2"} {
		path, _ := testutil.NewNS(t, id)
		rt := &libcni.RuntimeConf{ContainerID: id, NetNS: path, IfName: "eth0"}
		if _, err := cfg.AddNetworkList(ctx, list, rt); err != nil {
			t.Fatalf("ADD %s: %v", id, err)
		}
		rts = append(rts, rt)
		if id == "keep" {
			withKeep = e.kernelState()
		}
	}
	// An endpoint of another CNI network stays whatever GC of this one says.
	other := e.cniConf(t, "1.1.0", "other")
	second := *rts[1]
	second.IfName = "eth1"
	if _, err := cfg.AddNetworkList(ctx, other, &second); err != nil {
		t.Fatal(err)
	}
	if err := cfg.GCNetworkList(ctx, list, &libcni.GCArgs{ValidAttachments: []types.GCAttachment{{ContainerID: "keep", IfName: "eth0"}}}); err != nil {
		t.Fatalf("GC: %v", err)
	}
	c := e.Client()
	for _, want := range []struct {
		name string
		kept bool
	}{
		{cni.EndpointName("gc", "keep", "eth0"), true},
		{cni.EndpointName("gc", "drop1", "eth0"), false},
		{cni.EndpointName("gc", "drop2", "eth0"), false},
		{cni.EndpointName("other", "drop1", "eth1"), true},
	} {
		if _, err := c.GetEndpoint(ctx, want.name); (err == nil) != want.kept {
			t.Errorf("after GC, %s: %v (want kept %v)", want.name, err, want.kept)
		}
	}
	if _, err := c.GetNamespace(ctx, cni.NamespaceName("drop2")); !api.IsNotFound(err) {
		t.Errorf("GC left the namespace object of a container without interfaces: %v", err)
	}
	if err := cfg.GCNetworkList(ctx, other, &libcni.GCArgs{}); err != nil {
		t.Fatal(err)
	}
	e.expectKernel(t, withKeep, "after GC")
	if err := cfg.GCNetworkList(ctx, list, &libcni.GCArgs{}); err != nil {
		t.Fatal(err)
	}
	e.checkNoCNILeft(t)

	e.Stop()
	err := cfg.GetStatusNetworkList(ctx, list)
	var cniErr *types.Error
	if !errors.As(err, &cniErr) || cniErr.Code != types.ErrPluginNotAvailable {
		t.Errorf("STATUS with the daemon stopped: %v, want code 50", err)
	}
}

// A failed ADD leaves nothing behind: here its port is held by another
// container's mapping.
func TestCNIFailedAddLeavesNothing(t *testing.T) {
	e := NewEnv(t)
	cfg := e.libcni()
	ctx := context.Background()
	list := e.cniConf(t, "1.1.0", "fail")
	ports := map[string]any{"portMappings": []map[string]any{{"hostPort": 8080, "containerPort": 80, "protocol": "tcp"}}}
	pathA, _ := testutil.NewNS(t, "a")
	a := &libcni.RuntimeConf{ContainerID: "a", NetNS: pathA, IfName: "eth0", CapabilityArgs: ports}
	if _, err := cfg.AddNetworkList(ctx, list, a); err != nil {
		t.Fatal(err)
	}
	withA := e.kernelState()
	pathB, _ := testutil.NewNS(t, "b")
	b := &libcni.RuntimeConf{ContainerID: "b", NetNS: pathB, IfName: "eth0", CapabilityArgs: ports}
	_, err := cfg.AddNetworkList(ctx, list, b)
	var cniErr *types.Error
	if !errors.As(err, &cniErr) || !strings.Contains(cniErr.Msg, "8080") {
		t.Fatalf("ADD of a taken port: %v", err)
	}
	c := e.Client()
	if _, err := c.GetEndpoint(ctx, cni.EndpointName("fail", "b", "eth0")); !api.IsNotFound(err) {
		t.Errorf("the failed ADD left its endpoint: %v", err)
	}
	if _, err := c.GetNamespace(ctx, cni.NamespaceName("b")); !api.IsNotFound(err) {
		t.Errorf("the failed ADD left its namespace object: %v", err)
	}
	h := e.handle(pathB)
	defer h.Close()
	if _, err := h.LinkByName("eth0"); err == nil {
		t.Error("the failed ADD left an interface in the container")
	}
	e.expectKernel(t, withA, "after a failed ADD")
	if err := cfg.DelNetworkList(ctx, list, b); err != nil {
		t.Errorf("DEL after a failed ADD: %v", err)
	}
	if err := cfg.DelNetworkList(ctx, list, a); err != nil {
		t.Fatal(err)
	}
	e.checkNoCNILeft(t)
}

// The runtimes' own command line: cnitool adds a container with a port
// mapping given as a capability argument, reachable from the outside;
// CHECK notices an address removed by hand; DEL after the namespace was
// deleted releases the address. hostnet-cni is chained with the reference
// tuning plugin, which sets the MTU from the result it passes on.
func TestCNICnitool(t *testing.T) {
	cniTools(t)
	e := NewEnv(t)
	confDir := filepath.Join(e.Dir, "net.d")
	if err := os.MkdirAll(confDir, 0o755); err != nil {
		t.Fatal(err)
	}
	list := map[string]any{"cniVersion": "1.1.0", "name": "web", "plugins": []map[string]any{
		{"type": "hostnet-cni", "socket": e.Socket, "network": "nat", "capabilities": map[string]bool{"portMappings": true, "ips": true}},
		{"type": "tuning", "mtu": 1400},
	}}
	b, _ := json.Marshal(list)
	if err := os.WriteFile(filepath.Join(confDir, "10-web.conflist"), b, 0o644); err != nil {
		t.Fatal(err)
	}
	path, _ := testutil.NewNS(t, "web")
	ports := `{"portMappings":[{"hostPort":8088,"containerPort":80,"protocol":"tcp"}]}`
	out := e.cnitool(t, confDir, ports, "add", "web", path)
	var res types100.Result
	if err := json.Unmarshal([]byte(out), &res); err != nil || len(res.IPs) != 1 {
		t.Fatalf("cnitool add printed %s (%v)", out, err)
	}
	addr := res.IPs[0].Address
	Serve(t, path, "tcp", ":80")
	if !reachTCP(t, e.ExtNS, hostAddr+":8088") {
		t.Error("the mapped port is not reachable from outside")
	}
	h := e.handle(path)
	defer h.Close()
	link, err := h.LinkByName("eth0")
	if err != nil {
		t.Fatal(err)
	}
	if link.Attrs().MTU != 1400 {
		t.Errorf("MTU %d: the chained tuning plugin did not apply", link.Attrs().MTU)
	}
	e.cnitool(t, confDir, ports, "check", "web", path)
	if err := h.AddrDel(link, &netlink.Addr{IPNet: &net.IPNet{IP: addr.IP, Mask: addr.Mask}}); err != nil {
		t.Fatal(err)
	}
	if out, err := e.cnitoolErr(confDir, ports, "check", "web", path); err == nil || !strings.Contains(out, "missing") {
		t.Errorf("CHECK after an address was removed by hand: %v\n%s", err, out)
	}
	h.Close()
	if err := netns.Delete(path); err != nil {
		t.Fatal(err)
	}
	e.cnitool(t, confDir, ports, "del", "web", path)
	// The address is free again: a new container can ask for it.
	path2, _ := testutil.NewNS(t, "web2")
	static := fmt.Sprintf(`{"ips":[%q]}`, addr.String())
	e.cnitool(t, confDir, static, "add", "web", path2)
	e.cnitool(t, confDir, static, "del", "web", path2)
	e.checkNoCNILeft(t)
}

// cnitool runs cnitool with the test's configuration directory and
// capability arguments; its result cache goes to the test's directory
// (a private mount namespace binds it over /var/lib).
func (e *Env) cnitool(t *testing.T, confDir, capArgs string, args ...string) string {
	t.Helper()
	out, err := e.cnitoolErr(confDir, capArgs, args...)
	if err != nil {
		t.Fatalf("cnitool %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return out
}

func (e *Env) cnitoolErr(confDir, capArgs string, args ...string) (string, error) {
	varLib := filepath.Join(e.Dir, "var-lib")
	if err := os.MkdirAll(filepath.Join(varLib, "cni"), 0o755); err != nil {
		return "", err
	}
	script := `mount --bind "$0" /var/lib && exec "$@"`
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "unshare", append([]string{"--mount", "--propagation", "private", "--", "sh", "-c", script, varLib, cnitoolBin}, args...)...)
	cmd.Env = append(cleanEnv(), "NETCONFPATH="+confDir, "CNI_PATH="+cniBinDir, "CAP_ARGS="+capArgs)
	out, err := cmd.CombinedOutput()
	return string(out), err
}

// expectKernel fails the test unless the host's devices, addresses and
// nftables elements come back to want (a kernelState) within 5 s: the
// ports of deleted endpoints go in the background.
func (e *Env) expectKernel(t *testing.T, want, when string) {
	t.Helper()
	got := e.kernelState()
	for deadline := time.Now().Add(5 * time.Second); got != want && time.Now().Before(deadline); {
		time.Sleep(20 * time.Millisecond)
		got = e.kernelState()
	}
	if got != want {
		t.Errorf("%s, the kernel differs:\n%s", when, lineDiff(want, got))
	}
}

// lineDiff lists the lines only in a (-) and only in b (+).
func lineDiff(a, b string) string {
	in := func(s string) map[string]bool {
		m := map[string]bool{}
		for _, l := range strings.Split(s, "\n") {
			m[l] = true
		}
		return m
	}
	am, bm := in(a), in(b)
	var out []string
	for _, l := range strings.Split(a, "\n") {
		if !bm[l] {
			out = append(out, "- "+l)
		}
	}
	for _, l := range strings.Split(b, "\n") {
		if !am[l] {
			out = append(out, "+ "+l)
		}
	}
	return strings.Join(out, "\n")
}

// checkNoCNILeft fails the test if an endpoint or namespace object of
// hostnet-cni, or an endpoint port in the host, is left.
func (e *Env) checkNoCNILeft(t *testing.T) {
	t.Helper()
	ctx := context.Background()
	c := e.Client()
	eps, err := c.ListEndpoints(ctx, nil)
	reportCNILeft(t, "endpoint", eps, err, func(e *api.Endpoint) string { return e.Name })
	nss, err := c.ListNamespaces(ctx, nil)
	reportCNILeft(t, "namespace object", nss, err, func(n *api.Namespace) string { return n.Name })
	// Ports of deleted endpoints go in the background, within milliseconds.
	h := e.handle(e.HostNS)
	defer h.Close()
	var left []string
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		left = left[:0]
		links, _ := h.LinkList()
		for _, l := range links {
			if strings.HasPrefix(l.Attrs().Name, "hnv") {
				left = append(left, l.Attrs().Name)
			}
		}
		if len(left) == 0 || time.Now().After(deadline) {
			break
		}
	}
	for _, name := range left {
		t.Errorf("endpoint port %s left in the host", name)
	}
}

// reportCNILeft fails the test for each object of hostnet-cni (named
// "cni:...") in the list l of objects of one kind (what), or for err,
// the list's failure.
func reportCNILeft[T any](t *testing.T, what string, l []T, err error, name func(*T) string) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
	for i := range l {
		if n := name(&l[i]); strings.HasPrefix(n, "cni:") {
			t.Errorf("%s %s left", what, n)
		}
	}
}

// Concurrent ADDs and DELs, as a runtime starting and stopping a node's
// pods at once: every container gets its own address, and DELs leave
// nothing.
func TestCNIConcurrentAddDel(t *testing.T) {
	e := NewEnv(t)
	ctx := context.Background()
	list := e.cniConf(t, "1.1.0", "many")
	const n = 20
	rts := make([]*libcni.RuntimeConf, n)
	for i := range rts {
		path, _ := testutil.NewNS(t, fmt.Sprintf("c%d", i))
		rts[i] = &libcni.RuntimeConf{ContainerID: fmt.Sprintf("ctr%02d", i), NetNS: path, IfName: "eth0",
			CapabilityArgs: map[string]any{"portMappings": []map[string]any{{"hostPort": 9000 + i, "containerPort": 80}}}}
	}
	addrs := make([]string, n)
	run := func(op func(i int) error) {
		var wg sync.WaitGroup
		errs := make([]error, n)
		for i := range rts {
			wg.Add(1)
			go func(i int) {
				defer wg.Done()
				errs[i] = op(i)
			}(i)
		}
		wg.Wait()
		if err := errors.Join(errs...); err != nil {
			t.Fatal(err)
		}
	}
	run(func(i int) error {
		res, err := e.libcni().AddNetworkList(ctx, list, rts[i]) // libcni.CNIConfig is not safe for concurrent use
		if err == nil {
			addrs[i] = asResult100(t, res).IPs[0].Address.String()
		}
		return err
	})
	seen := map[string]bool{}
	for _, a := range addrs {
		if seen[a] {
			t.Errorf("address %s handed out twice", a)
		}
		seen[a] = true
	}
	run(func(i int) error { return e.libcni().DelNetworkList(ctx, list, rts[i]) })
	e.checkNoCNILeft(t)
}
