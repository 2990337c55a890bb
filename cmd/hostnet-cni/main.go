// Command hostnet-cni is hostnet's CNI plugin: container runtimes
// (containerd, CRI-O, podman, Kubernetes through them) run it to give a
// container its network, and it hands the work to hostnetd. Install it in
// the runtime's CNI bin directory (/opt/cni/bin) and name it as the first
// plugin of a conflist; see the README.
package main

import (
	"github.com/containernetworking/cni/pkg/skel"
	"github.com/containernetworking/cni/pkg/version"
	"github.com/hostnet/hostnet/client"
	"github.com/hostnet/hostnet/internal/cni"
)

// build is set by the linker (-X main.build=...).
var build = "dev"

func main() {
	p := &cni.Plugin{Dial: func(socket string) cni.Daemon { return client.New(socket) }}
	skel.PluginMainFuncs(skel.CNIFuncs{Add: p.Add, Del: p.Del, Check: p.Check, GC: p.GC, Status: p.Status},
		version.PluginSupports("0.3.0", "0.3.1", "0.4.0", "1.0.0", "1.1.0"), "hostnet-cni "+build+": containers on hostnet networks")
}
