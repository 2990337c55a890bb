package bench

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strings"
)

// refPluginsVersion is the containernetworking/plugins release the reference
// chain is built from: pinned, so that runs stay comparable.
const refPluginsVersion = "v1.10.0"

// refPlugins are the reference chain's plugins, as `go install` paths.
var refPlugins = []string{
	"github.com/containernetworking/plugins/plugins/main/bridge",
	"github.com/containernetworking/plugins/plugins/ipam/host-local",
	"github.com/containernetworking/plugins/plugins/meta/portmap",
	"github.com/containernetworking/plugins/plugins/meta/firewall",
}

// refSubnet is the reference chain's pool; it only exists inside the
// chain's throwaway host namespace.
const refSubnet = "10.211.0.0/16"

// checkIptables fails early, and says what to do, when iptables is missing:
// portmap and firewall shell out to it, and would otherwise fail on the
// first ADD with a message that does not say why.
func checkIptables() error {
	if _, err := exec.LookPath("iptables"); err != nil {
		return errors.New("iptables not found in PATH: the reference chain's portmap and firewall plugins need it " +
			"(apt-get install -y iptables, as `make bench-cni` does, or run with -only hostnet)")
	}
	return nil
}

// installRefPlugins builds the reference plugins from the module proxy into
// binDir. The Go build cache makes every run after the first cheap.
func installRefPlugins(ctx context.Context, binDir string) error {
	args := []string{"install"}
	for _, p := range refPlugins {
		args = append(args, p+"@"+refPluginsVersion)
	}
	cmd := exec.CommandContext(ctx, "go", args...)
	cmd.Env = append(os.Environ(), "GOBIN="+binDir)
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("go install reference plugins %s: %w: %s", refPluginsVersion, err, strings.TrimSpace(string(out)))
	}
	return nil
}

// refConflist is the reference chain: bridge (gateway, masquerade, with
// host-local on a /16), portmap (port mappings from the runtime, SNAT for
// hairpin), firewall. Every netfilter user is pinned to its iptables
// backend: portmap and bridge's masquerade would otherwise pick nftables
// whenever iptables cannot be probed, and firewall firewalld when it runs,
// and either would make the chain measure something else than it did
// before. host-local keeps its leases in dataDir, not /var/lib/cni.
func refConflist(dataDir string) ([]byte, error) {
	return json.Marshal(map[string]any{
		"cniVersion": "1.1.0",
		"name":       "cnibench-ref",
		"plugins": []map[string]any{
			{
				"type":          "bridge",
				"bridge":        "cnibench0",
				"isGateway":     true,
				"ipMasq":        true,
				"ipMasqBackend": "iptables",
				"ipam": map[string]any{
					"type":    "host-local",
					"ranges":  [][]map[string]string{{{"subnet": refSubnet}}},
					"routes":  []map[string]string{{"dst": "0.0.0.0/0"}},
					"dataDir": dataDir,
				},
			},
			{
				"type":         "portmap",
				"capabilities": map[string]bool{"portMappings": true},
				"snat":         true,
				"backend":      "iptables",
			},
			{
				"type":    "firewall",
				"backend": "iptables",
			},
		},
	})
}
