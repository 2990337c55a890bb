// Package lab builds the hermetic host that hostnet's end-to-end tests,
// its API fuzzer and its benchmarks run hostnetd in: a "host" network
// namespace, which the daemon programs, joined by a veth uplink to an
// "external" namespace that plays the outside world, every namespace a
// bind mount under one directory of the caller's. Nothing is created in
// the root namespace, and removing that directory (Remove) takes every
// device, route and nftables table of the lab with it.
//
// It is test support: only tests and benchmarks import it.
package lab

import (
	"fmt"
	"net"
	"os"
	"path/filepath"

	"github.com/hostnet/hostnet/internal/dataplane/netns"
	"github.com/hostnet/hostnet/internal/testutil"
	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// The uplink's addresses and devices. The addresses are of TEST-NET-2
// (RFC 5737) and exist inside the lab's namespaces only.
const (
	ExtAddr     = "198.51.100.1" // the outside, behind the host's uplink
	HostAddr    = "198.51.100.2" // the host's uplink address
	UplinkName  = "uplink0"      // the uplink's device in the host namespace
	ExtLinkName = "ext0"         // its peer in the external namespace
)

// Host is a lab host: the namespaces' paths under Dir.
type Host struct {
	Dir    string
	HostNS string // the host namespace: hostnetd programs it
	ExtNS  string // the external namespace behind the uplink; empty without one
	// ResolvConf is the host's resolv.conf, once WriteResolvConf wrote
	// it; empty, no resolver at all, until then.
	ResolvConf string
}

// NewHost makes the host namespace Dir/host.ns and, with withExt, the
// external namespace Dir/ext.ns joined to it by Uplink. A host namespace
// already at that path is used as it is: a caller makes it first when a
// mount namespace made later (a container runtime's sandbox) must see it.
// On failure what was made stays under dir, for the caller's Remove.
func NewHost(dir string, withExt bool) (*Host, error) {
	h := &Host{Dir: dir, HostNS: filepath.Join(dir, "host.ns")}
	if !netns.IsNamespace(h.HostNS) {
		if err := netns.Create(h.HostNS); err != nil {
			return nil, err
		}
	}
	if !withExt {
		return h, nil
	}
	h.ExtNS = filepath.Join(dir, "ext.ns")
	if err := netns.Create(h.ExtNS); err != nil {
		return nil, err
	}
	if err := Uplink(h.HostNS, h.ExtNS); err != nil {
		return nil, fmt.Errorf("uplink: %w", err)
	}
	return h, nil
}

// WriteResolvConf writes the host's resolv.conf, Dir/resolv.conf, for
// the daemons of DaemonConfig to read.
func (h *Host) WriteResolvConf(content string) error {
	path := filepath.Join(h.Dir, "resolv.conf")
	if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
		return err
	}
	h.ResolvConf = path
	return nil
}

// DaemonConfig is the configuration of a hostnetd (command runs it) that
// programs the host, its files under Dir; the caller adds the rest.
func (h *Host) DaemonConfig(command ...string) DaemonConfig {
	return DaemonConfig{Command: command, Dir: h.Dir, HostNS: h.HostNS, ResolvConf: h.ResolvConf}
}

// Uplink joins the namespaces at host and ext with a veth pair:
// UplinkName with HostAddr/24 in host, ExtLinkName with ExtAddr/24 in ext,
// both up with their namespace's loopback, and host's default route
// through ExtAddr.
func Uplink(host, ext string) error {
	hh, err := Handle(host)
	if err != nil {
		return err
	}
	defer hh.Close()
	eh, err := Handle(ext)
	if err != nil {
		return err
	}
	defer eh.Close()
	ens, err := netns.Open(ext)
	if err != nil {
		return err
	}
	defer ens.Close()
	attrs := netlink.NewLinkAttrs()
	attrs.Name = UplinkName
	if err := hh.LinkAdd(&netlink.Veth{LinkAttrs: attrs, PeerName: ExtLinkName, PeerNamespace: netlink.NsFd(ens)}); err != nil {
		return err
	}
	for _, side := range []struct {
		h          *netlink.Handle
		name, addr string
	}{{hh, UplinkName, HostAddr + "/24"}, {eh, ExtLinkName, ExtAddr + "/24"}} {
		l, err := side.h.LinkByName(side.name)
		if err != nil {
			return err
		}
		a, err := netlink.ParseAddr(side.addr)
		if err != nil {
			return err
		}
		if err := side.h.AddrAdd(l, a); err != nil {
			return err
		}
		for _, up := range []netlink.Link{l, &netlink.Device{LinkAttrs: netlink.LinkAttrs{Index: 1}}} {
			if err := side.h.LinkSetUp(up); err != nil {
				return err
			}
		}
	}
	return hh.RouteAdd(&netlink.Route{Gw: net.ParseIP(ExtAddr)})
}

// Handle opens a netlink handle in the namespace at path; the caller
// closes it.
func Handle(path string) (*netlink.Handle, error) {
	ns, err := netns.Open(path)
	if err != nil {
		return nil, err
	}
	defer ns.Close()
	return netlink.NewHandleAt(ns, unix.NETLINK_ROUTE)
}

// In runs fn on a thread inside the namespace at path. Sockets made in fn
// stay in that namespace when used afterwards from any goroutine.
func In(path string, fn func() error) error {
	ns, err := netns.Open(path)
	if err != nil {
		return err
	}
	defer ns.Close()
	return netns.Do(ns, fn)
}

// Remove throws a lab away: it detaches every mount under dir (the
// namespaces, and with them every device and table in them, once no
// process holds them) and removes dir.
func Remove(dir string) error {
	testutil.UnmountUnder(dir, func(p string) error { return unix.Unmount(p, unix.MNT_DETACH) })
	return os.RemoveAll(dir)
}
