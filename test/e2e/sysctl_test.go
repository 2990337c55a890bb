package e2e

import (
	"context"
	"os"
	"strings"
	"testing"
	"time"
)

// The sysctls hostnet depends on are desired state: net.ipv4.ip_forward
// (or route_localnet of the network's bridge) set to 0 by hand in the
// host namespace, while a port is published, is put back by the periodic
// check (a Repaired event naming it), and the published port works again
// within the self-repair bound. Forwarding turned off is reported by the
// kernel: with a periodic check too rare to matter, it is put back within
// a second all the same.
func TestSysctlDriftRepaired(t *testing.T) {
	for _, c := range []struct{ key, interval string }{
		{"net/ipv4/ip_forward", "1s"},
		{"net/ipv4/conf/BRIDGE/route_localnet", "1s"},
		{"net/ipv4/ip_forward", "1m"},
	} {
		key := c.key
		t.Run(key+" every "+c.interval, func(t *testing.T) {
			e := NewEnv(t, "--repair-interval", c.interval)
			web := e.createWith("nat", "web", 0, mapping(6, 8080, 80, ""))
			Serve(t, web.Namespace.NetNamespacePath, "tcp", ":80")
			if !reachTCP(t, e.ExtNS, hostAddr+":8080") {
				t.Fatal("the published port does not work before the drift")
			}
			n, err := e.Client().GetNetwork(context.Background(), "nat")
			if err != nil {
				t.Fatal(err)
			}
			key = strings.Replace(key, "BRIDGE", n.BridgeName, 1)
			setSysctl(t, e.HostNS, key, "0")
			start := time.Now()
			var back time.Duration
			for deadline := time.Now().Add(15 * time.Second); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
				if readSysctl(t, e.HostNS, key) == "1" {
					back = time.Since(start)
					break
				}
			}
			if back == 0 {
				t.Fatalf("%s was not put back within 15 s", key)
			}
			if c.interval == "1m" && back > 5*time.Second {
				t.Errorf("%s put back after %v: the kernel's report was not acted on", key, back)
			}
			t.Logf("%s put back in %v", key, back.Round(10*time.Millisecond))
			if !reachTCP(t, e.ExtNS, hostAddr+":8080") {
				t.Error("the published port does not work after the repair")
			}
			evs, err := e.Client().Events(context.Background())
			if err != nil {
				t.Fatal(err)
			}
			dotted := strings.ReplaceAll(key, "/", ".")
			found := false
			for _, ev := range evs {
				found = found || ev.Kind == "Repaired" && strings.Contains(ev.Message, dotted)
			}
			if !found {
				t.Errorf("no Repaired event naming %s: %+v", dotted, evs)
			}
		})
	}
}

func setSysctl(t *testing.T, ns, key, value string) {
	t.Helper()
	In(t, ns, func() error { return os.WriteFile("/proc/sys/"+key, []byte(value), 0o644) })
}

func readSysctl(t *testing.T, ns, key string) string {
	t.Helper()
	var v string
	In(t, ns, func() error {
		b, err := os.ReadFile("/proc/sys/" + key)
		v = strings.TrimSpace(string(b))
		return err
	})
	return v
}
