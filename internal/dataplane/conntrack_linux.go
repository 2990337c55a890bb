package dataplane

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"
	"time"

	"github.com/hostnet/hostnet/internal/dataplane/netns"
	"github.com/hostnet/hostnet/internal/netmodel"
	"github.com/mdlayher/netlink"
	"golang.org/x/sys/unix"
)

// Flow is a connection the host's connection tracker follows.
type Flow = netmodel.Flow

// ErrDumpInterrupted is wrapped by DeleteFlows' error when the kernel
// flagged its walk of the connection tracker as inconsistent: the table
// changed during it, so a flow may have been missed.
var ErrDumpInterrupted = errors.New("conntrack dump interrupted")

// ctnetlink messages and attributes (linux/netfilter/nfnetlink_conntrack.h),
// which golang.org/x/sys/unix does not define.
const (
	ctMsgGet    = unix.NFNL_SUBSYS_CTNETLINK<<8 | 1 // IPCTNL_MSG_CT_GET
	ctMsgDelete = unix.NFNL_SUBSYS_CTNETLINK<<8 | 2 // IPCTNL_MSG_CT_DELETE

	ctaTupleOrig  = 1  // CTA_TUPLE_ORIG
	ctaTupleReply = 2  // CTA_TUPLE_REPLY
	ctaZone       = 18 // CTA_ZONE

	ctaTupleIP    = 1 // CTA_TUPLE_IP
	ctaTupleProto = 2 // CTA_TUPLE_PROTO

	ctaIPv4Src = 1 // CTA_IP_V4_SRC
	ctaIPv4Dst = 2 // CTA_IP_V4_DST
	ctaIPv6Src = 3 // CTA_IP_V6_SRC
	ctaIPv6Dst = 4 // CTA_IP_V6_DST

	ctaProtoNum     = 1 // CTA_PROTO_NUM
	ctaProtoSrcPort = 2 // CTA_PROTO_SRC_PORT
	ctaProtoDstPort = 3 // CTA_PROTO_DST_PORT
)

// DeleteFlows removes from the host's connection tracker every flow for
// which match returns true (`conntrack -D ...`), so that their next packet
// is judged again by the current rules: the way a policy change takes
// effect on established flows too. It returns how many it removed; a flow
// that ended by itself before its turn counts as removed.
//
// It walks the tracker once, for IPv4 and IPv6 together (a dump with family
// AF_UNSPEC, where `conntrack -D -f ipv4 ...` and `conntrack -D -f ipv6 ...`
// make one each), then deletes the selected flows one by one. A walk visits
// every bucket of the tracker's table, which all namespaces share, so it
// costs milliseconds even when the table is empty, with bottom halves
// disabled (stalling a concurrent nftables commit): one walk per family
// cost twice that. When the kernel flags the walk as interrupted, the flows
// read are deleted all the same and the error wraps ErrDumpInterrupted.
func (h *Linux) DeleteFlows(ctx context.Context, match func(Flow) bool) (int, error) {
	h.ctMu.Lock()
	defer h.ctMu.Unlock()
	c, err := dialConntrack(h.ns)
	if err != nil {
		return 0, err
	}
	defer c.Close()
	msgs, err := ctExchange(c, ctRequest(ctMsgGet, netlink.Dump, unix.AF_UNSPEC, nil))
	if err != nil {
		return 0, fmt.Errorf("list conntrack entries: %w", err)
	}
	doomed, readErr := selectFlows(msgs, match)
	n, delErr := deleteFlows(c, doomed)
	return n, errors.Join(readErr, delErr)
}

// dialConntrack opens a ctnetlink socket inside ns. A short-lived thread
// enters ns to make it and returns (netlink.Config.NetNS): no thread of the
// daemon is left in another namespace.
func dialConntrack(ns netns.Handle) (*netlink.Conn, error) {
	c, err := netlink.Dial(unix.NETLINK_NETFILTER, &netlink.Config{NetNS: int(ns)})
	if err != nil {
		return nil, fmt.Errorf("open conntrack socket: %w", err)
	}
	return c, nil
}

// ctExchange sends m and collects its answers, all of a dump's parts or the
// acknowledgement, giving up after netlinkTimeout.
func ctExchange(c *netlink.Conn, m netlink.Message) ([]netlink.Message, error) {
	if err := c.SetDeadline(time.Now().Add(netlinkTimeout)); err != nil {
		return nil, fmt.Errorf("set conntrack socket deadline: %w", err)
	}
	return c.Execute(m)
}

// ctRequest builds a ctnetlink request: the nfgenmsg header (family,
// version 0, resource id 0), then attrs.
func ctRequest(typ uint16, flags netlink.HeaderFlags, family uint8, attrs []byte) netlink.Message {
	data := make([]byte, 4, 4+len(attrs))
	data[0], data[1] = family, unix.NFNETLINK_V0
	return netlink.Message{
		Header: netlink.Header{Type: netlink.HeaderType(typ), Flags: netlink.Request | flags},
		Data:   append(data, attrs...),
	}
}

// ctEntry is a flow as the walk read it: what match sees, and what names
// it again in a delete.
type ctEntry struct {
	flow   Flow
	family uint8  // the flow's own: a delete with AF_UNSPEC finds nothing
	orig   []byte // CTA_TUPLE_ORIG's content, sent back as it came
	zone   []byte // CTA_ZONE's content (be16), when the flow has a zone
}

// selectFlows returns the entries of a walk that match selects. An
// unreadable entry is skipped and reported, as is a walk the kernel flagged
// as interrupted (wrapping ErrDumpInterrupted): the entries that could be
// read are returned all the same.
func selectFlows(msgs []netlink.Message, match func(Flow) bool) ([]ctEntry, error) {
	var doomed []ctEntry
	var errs []error
	interrupted := false
	for _, m := range msgs {
		interrupted = interrupted || m.Header.Flags&netlink.DumpInterrupted != 0
		e, err := parseEntry(m.Data)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		if match(e.flow) {
			doomed = append(doomed, e)
		}
	}
	var err error
	if len(errs) > 0 {
		err = fmt.Errorf("read %d conntrack entries: %w", len(errs), errs[0])
	}
	if interrupted {
		err = errors.Join(fmt.Errorf("list conntrack entries: %w", ErrDumpInterrupted), err)
	}
	return doomed, err
}

// parseEntry reads a flow from the data of a ctnetlink message: nfgenmsg,
// then attributes, of which the tuples of both directions and the zone
// matter here.
func parseEntry(data []byte) (ctEntry, error) {
	if len(data) < 4 {
		return ctEntry{}, errors.New("short conntrack message")
	}
	e := ctEntry{family: data[0]}
	ad, err := netlink.NewAttributeDecoder(data[4:])
	if err != nil {
		return ctEntry{}, fmt.Errorf("conntrack entry: %w", err)
	}
	for ad.Next() {
		switch ad.Type() { // Type masks NLA_F_NESTED and NLA_F_NET_BYTEORDER
		case ctaTupleOrig:
			e.orig = ad.Bytes()
			e.flow.Proto, e.flow.OrigSrc, e.flow.OrigDst, err = parseTuple(e.orig)
		case ctaTupleReply:
			_, e.flow.ReplySrc, e.flow.ReplyDst, err = parseTuple(ad.Bytes())
		case ctaZone:
			e.zone = ad.Bytes()
		}
		if err != nil {
			return ctEntry{}, err
		}
	}
	if err := ad.Err(); err != nil {
		return ctEntry{}, fmt.Errorf("conntrack entry: %w", err)
	}
	if e.orig == nil {
		return ctEntry{}, errors.New("conntrack entry without an original tuple")
	}
	return e, nil
}

// parseTuple reads a CTA_TUPLE_* attribute: addresses and protocol, and
// ports for the protocols that have them (ICMP's are left 0).
func parseTuple(b []byte) (proto uint8, src, dst netip.AddrPort, err error) {
	ad, err := netlink.NewAttributeDecoder(b)
	if err != nil {
		return 0, src, dst, fmt.Errorf("conntrack tuple: %w", err)
	}
	var srcIP, dstIP netip.Addr
	var sport, dport uint16
	for ad.Next() {
		switch ad.Type() {
		case ctaTupleIP:
			ad.Nested(func(ad *netlink.AttributeDecoder) error {
				var err error
				srcIP, dstIP, err = parseTupleIP(ad)
				return err
			})
		case ctaTupleProto:
			ad.Nested(func(ad *netlink.AttributeDecoder) error {
				ad.ByteOrder = binary.BigEndian
				for ad.Next() {
					switch ad.Type() {
					case ctaProtoNum:
						proto = ad.Uint8()
					case ctaProtoSrcPort:
						sport = ad.Uint16()
					case ctaProtoDstPort:
						dport = ad.Uint16()
					}
				}
				return nil
			})
		}
	}
	if err := ad.Err(); err != nil {
		return 0, src, dst, fmt.Errorf("conntrack tuple: %w", err)
	}
	return proto, netip.AddrPortFrom(srcIP, sport), netip.AddrPortFrom(dstIP, dport), nil
}

// parseTupleIP reads the addresses of a CTA_TUPLE_IP. IPv4-mapped IPv6
// addresses come out as IPv4 ones, as they always did for match.
func parseTupleIP(ad *netlink.AttributeDecoder) (src, dst netip.Addr, err error) {
	for ad.Next() {
		var a *netip.Addr
		switch ad.Type() {
		case ctaIPv4Src, ctaIPv6Src:
			a = &src
		case ctaIPv4Dst, ctaIPv6Dst:
			a = &dst
		default:
			continue
		}
		b := ad.Bytes()
		ip, ok := netip.AddrFromSlice(b)
		if !ok {
			return src, dst, fmt.Errorf("conntrack tuple address of %d bytes", len(b))
		}
		*a = ip.Unmap()
	}
	return src, dst, nil
}

// deleteFlows deletes each entry by its original tuple and zone (`conntrack
// -D -f FAMILY -p PROTO -s SRC -d DST [--sport P --dport P] [-w ZONE]`).
// A flow already gone (ENOENT) counts as deleted. It goes on past failures
// and returns the first, with how many there were.
func deleteFlows(c *netlink.Conn, entries []ctEntry) (int, error) {
	n, failed := 0, 0
	var first error
	for _, e := range entries {
		err := deleteFlow(c, e)
		if err == nil || errors.Is(err, unix.ENOENT) {
			n++
			continue
		}
		failed++
		if first == nil {
			first = fmt.Errorf("delete conntrack entry %s: %w", e.flow, err)
		}
	}
	if failed > 1 {
		first = fmt.Errorf("%w (and %d more failures)", first, failed-1)
	}
	return n, first
}

// deleteFlow sends IPCTNL_MSG_CT_DELETE for e with the flow's own family.
// The original tuple goes back exactly as the walk read it, so the kernel
// finds the flow whatever its protocol: an ICMP tuple, for instance, must
// carry its type, code and id, which Flow does not keep, and a tuple of a
// zone that applies to one direction only carries that zone.
func deleteFlow(c *netlink.Conn, e ctEntry) error {
	attrs := []netlink.Attribute{{Type: ctaTupleOrig | unix.NLA_F_NESTED, Data: e.orig}}
	if e.zone != nil {
		attrs = append(attrs, netlink.Attribute{Type: ctaZone, Data: e.zone})
	}
	b, err := netlink.MarshalAttributes(attrs)
	if err != nil {
		return fmt.Errorf("encode conntrack delete: %w", err)
	}
	_, err = ctExchange(c, ctRequest(ctMsgDelete, netlink.Acknowledge, e.family, b))
	return err
}
