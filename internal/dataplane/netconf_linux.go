package dataplane

import (
	"encoding/binary"
	"fmt"

	"github.com/vishvananda/netlink/nl"
	vnetns "github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

// Attributes of an RTM_NEWNETCONF message (linux/netconf.h).
const (
	netconfIfindex    = 1  // NETCONFA_IFINDEX, s32
	netconfForwarding = 2  // NETCONFA_FORWARDING, s32
	netconfIfindexAll = -1 // NETCONFA_IFINDEX_ALL: the "all" settings
)

// watchForwarding calls off with the family ("IPv4", "IPv6") whenever
// forwarding of the host namespace as a whole is turned off
// (net.ipv4.ip_forward, net.ipv4.conf.all.forwarding or
// net.ipv6.conf.all.forwarding set to 0: `ip monitor netconf`), until done
// is closed. NAT networks stop forwarding without it, and no other
// notification tells. The kernel also reports per-device settings and
// new devices in the same groups; they are left out, so hostnet's own
// attaches trigger nothing. A failure of the subscription later is passed
// to failed, after which nothing more is reported.
func (h *Linux) watchForwarding(done <-chan struct{}, off func(family string), failed func(error)) error {
	s, err := nl.SubscribeAt(h.ns, vnetns.None(), unix.NETLINK_ROUTE, unix.RTNLGRP_IPV4_NETCONF, unix.RTNLGRP_IPV6_NETCONF)
	if err != nil {
		return fmt.Errorf("subscribe to forwarding changes: %w", err)
	}
	go func() { <-done; s.Close() }()
	go func() {
		for {
			msgs, _, err := s.Receive()
			if err != nil {
				select {
				case <-done:
				default:
					failed(fmt.Errorf("forwarding changes: %w", err))
				}
				return
			}
			for _, m := range msgs {
				if fam, ok := forwardingOff(m.Header.Type, m.Data); ok {
					off(fam)
				}
			}
		}
	}()
	return nil
}

// forwardingOff reads a netconf message: whether it says that forwarding
// of the namespace as a whole is off, and for which family.
func forwardingOff(typ uint16, data []byte) (family string, off bool) {
	// struct netconfmsg is one byte, the family, padded to four.
	if typ != unix.RTM_NEWNETCONF || len(data) < 4 {
		return "", false
	}
	switch data[0] {
	case unix.AF_INET:
		family = "IPv4"
	case unix.AF_INET6:
		family = "IPv6"
	default:
		return "", false
	}
	attrs, err := nl.ParseRouteAttr(data[4:])
	if err != nil {
		return "", false
	}
	all, forwarding := false, int32(-1)
	for _, a := range attrs {
		if len(a.Value) < 4 {
			continue
		}
		v := int32(binary.NativeEndian.Uint32(a.Value[:4]))
		switch a.Attr.Type {
		case netconfIfindex:
			all = v == netconfIfindexAll
		case netconfForwarding:
			forwarding = v
		}
	}
	return family, all && forwarding == 0
}
