package dataplane

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"sync"

	"github.com/hostnet/hostnet/internal/dataplane/netns"
	"github.com/vishvananda/netlink/nl"
	vnetns "github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

// rtnl is an rtnetlink socket bound to one namespace that sends several
// requests in one sendmsg: the kernel handles them in order and answers
// each. The attach path uses it to configure an endpoint's NIC in one
// round trip instead of one per address and route.
type rtnl struct {
	mu   sync.Mutex
	sock *nl.NetlinkSocket
	seq  uint32
}

// dialRtnl opens an rtnetlink socket inside ns.
func dialRtnl(ns netns.Handle) (*rtnl, error) {
	s, err := nl.GetNetlinkSocketAt(ns, vnetns.None(), unix.NETLINK_ROUTE)
	if err != nil {
		return nil, fmt.Errorf("open rtnetlink socket: %w", err)
	}
	tv := unix.NsecToTimeval(netlinkTimeout.Nanoseconds())
	_ = s.SetSendTimeout(&tv)
	_ = s.SetReceiveTimeout(&tv)
	_ = s.SetExtAck(true)
	return &rtnl{sock: s}, nil
}

func (r *rtnl) Close() { r.sock.Close() }

// exchange sends reqs in one message and waits for every answer. It
// returns each request's own error (nil when the kernel acknowledged it)
// and the messages of type echoType the kernel sent back (NLM_F_ECHO).
// The error result is set only when the exchange itself failed.
func (r *rtnl) exchange(reqs []*nl.NetlinkRequest, echoType uint16) ([]error, [][]byte, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	first := r.seq + 1
	var buf []byte
	for _, req := range reqs {
		r.seq++
		req.Seq = r.seq
		buf = append(buf, req.Serialize()...)
	}
	if err := unix.Sendto(int(r.sock.GetFd()), buf, 0, &unix.SockaddrNetlink{Family: unix.AF_NETLINK}); err != nil {
		return nil, nil, fmt.Errorf("send rtnetlink requests: %w", err)
	}
	errs := make([]error, len(reqs))
	var echoes [][]byte
	for pending := len(reqs); pending > 0; {
		msgs, _, err := r.sock.Receive()
		if err != nil {
			return nil, nil, fmt.Errorf("receive rtnetlink answers: %w", err)
		}
		for _, m := range msgs {
			i := int(m.Header.Seq - first)
			if i < 0 || i >= len(reqs) {
				continue // an answer to an earlier exchange that gave up
			}
			switch m.Header.Type {
			case unix.NLMSG_ERROR:
				pending--
				if len(m.Data) >= 4 {
					if code := int32(binary.NativeEndian.Uint32(m.Data[:4])); code != 0 {
						errs[i] = withExtAck(unix.Errno(-code), m.Header.Flags, m.Data)
					}
				}
			case echoType:
				echoes = append(echoes, m.Data)
			}
		}
	}
	return errs, echoes, nil
}

// withExtAck adds the kernel's extended-ack message, when it sent one, to
// an errno.
func withExtAck(errno unix.Errno, flags uint16, data []byte) error {
	if flags&unix.NLM_F_ACK_TLVS == 0 || len(data) < 4+unix.SizeofNlMsghdr {
		return errno
	}
	// The error message carries the original header, then attributes
	// (the request's payload is not echoed: NLM_F_CAPPED).
	off := 4 + unix.SizeofNlMsghdr
	if flags&unix.NLM_F_CAPPED == 0 {
		off = 4 + int(binary.NativeEndian.Uint32(data[4:8]))
	}
	for off+4 <= len(data) {
		l := int(binary.NativeEndian.Uint16(data[off:]))
		t := binary.NativeEndian.Uint16(data[off+2:])
		if l < 4 || off+l > len(data) {
			break
		}
		if t == unix.NLMSGERR_ATTR_MSG {
			msg := string(data[off+4 : off+l])
			for len(msg) > 0 && msg[len(msg)-1] == 0 {
				msg = msg[:len(msg)-1]
			}
			return fmt.Errorf("%w (%s)", errno, msg)
		}
		off += (l + 3) &^ 3
	}
	return errno
}

// firstError returns the first non-nil error, annotated with what it was.
func firstError(errs []error, what []string) error {
	for i, err := range errs {
		if err != nil {
			return fmt.Errorf("%s: %w", what[i], err)
		}
	}
	return nil
}

// Request builders. Each is the rtnetlink message of an `ip` command.

// setLinkReq is `ip link set dev INDEX up` (when up) and, when noIPv6LL,
// `addrgenmode none` first: no IPv6 link-local address, hence no DAD,
// router or MLD chatter flooded to every port of the bridge.
func setLinkReq(index int, up, noIPv6LL bool) *nl.NetlinkRequest {
	req := nl.NewNetlinkRequest(unix.RTM_NEWLINK, unix.NLM_F_ACK)
	msg := nl.NewIfInfomsg(unix.AF_UNSPEC)
	msg.Index = int32(index)
	if up {
		msg.Flags, msg.Change = unix.IFF_UP, unix.IFF_UP
	}
	req.AddData(msg)
	if noIPv6LL {
		spec := nl.NewRtAttr(unix.IFLA_AF_SPEC, nil)
		inet6 := spec.AddRtAttr(unix.AF_INET6, nil)
		inet6.AddRtAttr(unix.IFLA_INET6_ADDR_GEN_MODE, []byte{nl.IN6_ADDR_GEN_MODE_NONE})
		req.AddData(spec)
	}
	return req
}

// hairpinReq is `bridge link set dev INDEX hairpin on|off`.
func hairpinReq(index int, on bool) *nl.NetlinkRequest {
	req := nl.NewNetlinkRequest(unix.RTM_SETLINK, unix.NLM_F_ACK)
	msg := nl.NewIfInfomsg(unix.AF_BRIDGE)
	msg.Index = int32(index)
	req.AddData(msg)
	info := nl.NewRtAttr(unix.IFLA_PROTINFO|unix.NLA_F_NESTED, nil)
	mode := byte(0)
	if on {
		mode = 1
	}
	info.AddRtAttr(nl.IFLA_BRPORT_MODE, []byte{mode})
	req.AddData(info)
	return req
}

// linkLocal is the EUI-64 IPv6 link-local address of a MAC (fe80::/64).
func linkLocal(mac net.HardwareAddr) netip.Prefix {
	var b [16]byte
	b[0], b[1] = 0xfe, 0x80
	copy(b[8:11], mac[0:3])
	b[8] ^= 0x02
	b[11], b[12] = 0xff, 0xfe
	copy(b[13:16], mac[3:6])
	return netip.PrefixFrom(netip.AddrFrom16(b), 64)
}

// addrReq is `ip addr replace PREFIX dev INDEX` (IPv6 addresses skip DAD,
// IPv4 ones get their broadcast address).
func addrReq(index int, p netip.Prefix) *nl.NetlinkRequest {
	req := nl.NewNetlinkRequest(unix.RTM_NEWADDR, unix.NLM_F_CREATE|unix.NLM_F_REPLACE|unix.NLM_F_ACK)
	msg := nl.NewIfAddrmsg(unix.AF_INET)
	if p.Addr().Is6() {
		msg.Family = unix.AF_INET6
		msg.Flags = unix.IFA_F_NODAD
	}
	msg.Prefixlen = uint8(p.Bits())
	msg.Index = uint32(index)
	req.AddData(msg)
	a := p.Addr().AsSlice()
	req.AddData(nl.NewRtAttr(unix.IFA_LOCAL, a))
	req.AddData(nl.NewRtAttr(unix.IFA_ADDRESS, a))
	if p.Addr().Is4() && p.Bits() < 31 {
		req.AddData(nl.NewRtAttr(unix.IFA_BROADCAST, lastAddr(p).AsSlice()))
	}
	return req
}

func lastAddr(p netip.Prefix) netip.Addr {
	b := p.Masked().Addr().AsSlice()
	for i := p.Bits(); i < len(b)*8; i++ {
		b[i/8] |= 0x80 >> (i % 8)
	}
	a, _ := netip.AddrFromSlice(b)
	return a
}

// routeReq is `ip route replace DST [via GW] dev INDEX metric M proto 104`.
func routeReq(index int, r Route) *nl.NetlinkRequest {
	req := nl.NewNetlinkRequest(unix.RTM_NEWROUTE, unix.NLM_F_CREATE|unix.NLM_F_REPLACE|unix.NLM_F_ACK)
	msg := nl.NewRtMsg()
	msg.Family = unix.AF_INET
	if r.Dst.Addr().Is6() {
		msg.Family = unix.AF_INET6
	}
	msg.Dst_len = uint8(r.Dst.Bits())
	msg.Protocol = RouteProtocol
	msg.Scope = unix.RT_SCOPE_UNIVERSE
	if !r.Gateway.IsValid() {
		msg.Scope = unix.RT_SCOPE_LINK
	}
	req.AddData(msg)
	if r.Dst.Bits() > 0 {
		req.AddData(nl.NewRtAttr(unix.RTA_DST, r.Dst.Masked().Addr().AsSlice()))
	}
	if r.Gateway.IsValid() {
		req.AddData(nl.NewRtAttr(unix.RTA_GATEWAY, r.Gateway.AsSlice()))
	}
	req.AddData(nl.NewRtAttr(unix.RTA_OIF, nl.Uint32Attr(uint32(index))))
	if r.Metric > 0 {
		req.AddData(nl.NewRtAttr(unix.RTA_PRIORITY, nl.Uint32Attr(uint32(r.Metric))))
	}
	if r.Src.IsValid() {
		req.AddData(nl.NewRtAttr(unix.RTA_PREFSRC, r.Src.AsSlice()))
	}
	return req
}

// linkIndexes returns the index of a link from an echoed RTM_NEWLINK, and
// for a veth the index of its peer (in the peer's namespace).
func linkIndexes(msg []byte) (index, peer int, err error) {
	if len(msg) < unix.SizeofIfInfomsg {
		return 0, 0, errors.New("short RTM_NEWLINK message")
	}
	info := nl.DeserializeIfInfomsg(msg)
	attrs, err := nl.ParseRouteAttr(msg[unix.SizeofIfInfomsg:])
	if err != nil {
		return 0, 0, err
	}
	for _, a := range attrs {
		if a.Attr.Type == unix.IFLA_LINK && len(a.Value) >= 4 {
			peer = int(binary.NativeEndian.Uint32(a.Value))
		}
	}
	return int(info.Index), peer, nil
}

// one sends a single request and returns its error.
func (r *rtnl) one(req *nl.NetlinkRequest) error {
	errs, _, err := r.exchange([]*nl.NetlinkRequest{req}, 0)
	if err != nil {
		return err
	}
	return errs[0]
}

// linkIndex returns the index of the device name in r's namespace (`ip
// link show NAME`).
func (r *rtnl) linkIndex(name string) (int, error) {
	req := nl.NewNetlinkRequest(unix.RTM_GETLINK, unix.NLM_F_ACK)
	req.AddData(nl.NewIfInfomsg(unix.AF_UNSPEC))
	req.AddData(nl.NewRtAttr(unix.IFLA_IFNAME, nl.ZeroTerminated(name)))
	errs, echoes, err := r.exchange([]*nl.NetlinkRequest{req}, unix.RTM_NEWLINK)
	if err != nil {
		return 0, err
	}
	if errs[0] != nil {
		return 0, fmt.Errorf("look up %s: %w", name, errs[0])
	}
	for _, m := range echoes {
		if index, _, err := linkIndexes(m); err == nil && index > 0 {
			return index, nil
		}
	}
	return 0, fmt.Errorf("look up %s: %w", name, unix.ENODEV)
}

// linkRequest runs fn with the index of the device name.
func (r *rtnl) linkRequest(name string, fn func(index int) error) error {
	index, err := r.linkIndex(name)
	if err != nil {
		return err
	}
	return fn(index)
}
