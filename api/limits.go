package api

import (
	"fmt"
	"net"
	"net/netip"
	"sort"
	"strings"
	"unicode"
	"unicode/utf8"

	"github.com/google/uuid"
)

// Bounds on what a document may carry. A document within them is stored,
// read back and applied; one beyond them is refused with a 400 naming the
// field before anything is stored. Each bound sits well above what the
// schema's clients send and well below what would break something:
//
//   - Verbatim values (unknown top-level fields, Health, a namespace
//     resource's Data, a policy's Settings) are kept as the client sent
//     them. The store wraps each document in a record, and encoding/json
//     refuses to decode anything nested 10,000 deep: a value nested 9,999
//     deep was accepted and its record could never be read again (F1). They
//     are bounded in depth and in size.
//   - Names end up in store keys (bbolt refuses keys over 32 KiB) and in
//     URLs: at most MaxNameLen bytes, printable, and never something that
//     parses as a GUID, since GET/PATCH/DELETE look a reference up as an ID
//     first (F8, F12).
//   - Counts (policies, routes, subnets, exceptions, DNS entries) bound the
//     work of a request and of every later request that merges with the
//     stored document. Policies are at most MaxPolicies per document and
//     per modify request; a modify request is decoded and checked before
//     the service's lock, and merged with the stored policies by key, in
//     time linear in both (F7).
//   - Routes: an attach programs the endpoint's routes in one netlink
//     batch, and the kernel refused batches of about 250 routes with
//     ENOBUFS (F10). An endpoint has at most MaxEndpointRoutes routes of
//     its own (Routes and SDNRoute policies together) and a network at most
//     MaxNetworkRoutes subnet routes, which every endpoint receives, so an
//     attach sends at most 64 + 64 + 2 (default routes) routes.
const (
	MaxNameLen             = 256
	MaxVerbatimDepth       = 32
	MaxVerbatimBytes       = 64 << 10 // all verbatim values of a document together, policy Settings aside
	MaxPolicies            = 256      // per network, per endpoint, per modify request
	MaxSubnetPolicies      = 16       // per subnet
	MaxPolicySettingsBytes = 64 << 10 // one policy's Settings
	MaxSubnets             = 16       // per network, over all its Ipams
	MaxMacRanges           = 64
	MaxNetworkRoutes       = 64 // subnet Routes of a network, all subnets together
	MaxEndpointRoutes      = 64 // an endpoint's Routes plus its SDNRoute policies
	MaxIPConfigurations    = 16
	MaxOutboundNATExcept   = 256 // OutBoundNAT exceptions after splitting comma lists
	MaxDNSEntries          = 32  // ServerList (after splitting comma lists), Search, Options each
	MaxDNSEntryLen         = 255
	MaxNamespaceResources  = 1024
	MaxPathLen             = 4096 // NetNamespacePath (PATH_MAX)
	MaxListEntries         = 1024 // entries of an ACL's address, port or protocol list
	MaxACLIDLen            = 48   // see ParseACL
	MaxInterfaceNameLen    = 15   // IFNAMSIZ - 1
)

// checkName validates the name of a network, endpoint or namespace.
func checkName(name string) error {
	if len(name) > MaxNameLen {
		return fmt.Errorf("is %d bytes long (at most %d)", len(name), MaxNameLen)
	}
	if !utf8.ValidString(name) {
		return fmt.Errorf("%q is not valid UTF-8", name)
	}
	if name == "." || name == ".." {
		return fmt.Errorf("%q cannot name an object (it is a path element)", name)
	}
	for _, r := range name {
		if r == '/' {
			return fmt.Errorf("%q must not contain '/'", name)
		}
		if !unicode.IsPrint(r) {
			return fmt.Errorf("%q has a character that is not printable (%U)", name, r)
		}
	}
	if u, err := uuid.Parse(name); err == nil {
		return fmt.Errorf("%q reads as the GUID %s: a name cannot be an ID, or looking it up would reach the object of that ID", name, u)
	}
	return nil
}

// jsonDepth returns the nesting depth of a JSON text (0 for a scalar), in
// one pass over its bytes.
func jsonDepth(data []byte) int {
	depth, max := 0, 0
	for i := 0; i < len(data); i++ {
		switch data[i] {
		case '"':
			i = skipString(data, i) - 1
		case '{', '[':
			depth++
			if depth > max {
				max = depth
			}
		case '}', ']':
			depth--
		}
	}
	return max
}

// verbatimBudget accounts for the values a document keeps verbatim.
type verbatimBudget struct{ used int }

// check bounds one verbatim value's depth, and the document's verbatim
// bytes together.
func (b *verbatimBudget) check(raw []byte) error {
	if d := jsonDepth(raw); d > MaxVerbatimDepth {
		return fmt.Errorf("is nested %d deep (at most %d)", d, MaxVerbatimDepth)
	}
	b.used += len(raw)
	if b.used > MaxVerbatimBytes {
		return fmt.Errorf("brings the document's verbatim fields (unknown fields, Health, resource Data) to %d bytes (at most %d)", b.used, MaxVerbatimBytes)
	}
	return nil
}

// checkExtra bounds the unknown fields of a document, naming the first at
// fault.
func (b *verbatimBudget) checkExtra(extra Extra) (string, error) {
	for _, k := range extra.keys() {
		v := extra[k]
		if len(k) > MaxNameLen {
			return fmt.Sprintf("%.40q...", k), fmt.Errorf("unknown field name is %d bytes long (at most %d)", len(k), MaxNameLen)
		}
		b.used += len(k)
		if err := b.check(v); err != nil {
			return k, err
		}
	}
	return "", nil
}

// keys returns the unknown fields' names in order, so that the same
// document always gets the same message.
func (e Extra) keys() []string {
	keys := make([]string, 0, len(e))
	for k := range e {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

// checkSettings bounds a policy's Settings.
func checkSettings(raw []byte) error { return checkSettingsWithin(raw, MaxPolicySettingsBytes) }

// checkSettingsWithin bounds a policy's Settings to limit bytes.
func checkSettingsWithin(raw []byte, limit int) error {
	if len(raw) > limit {
		return fmt.Errorf("field Settings is %d bytes long (at most %d)", len(raw), limit)
	}
	if d := jsonDepth(raw); d > MaxVerbatimDepth {
		return fmt.Errorf("field Settings is nested %d deep (at most %d)", d, MaxVerbatimDepth)
	}
	return nil
}

// checkUnicastMAC refuses MACs no NIC may have: all zero, or multicast
// (broadcast included).
func checkUnicastMAC(mac net.HardwareAddr) error {
	if MACToUint64(mac) == 0 {
		return fmt.Errorf("%s is the all-zero address", FormatMAC(mac))
	}
	if mac[0]&1 != 0 {
		return fmt.Errorf("%s is a multicast address (the low bit of its first octet is set)", FormatMAC(mac))
	}
	return nil
}

// Address blocks no subnet of a network may overlap: its endpoints could
// not be reached there (the kernel treats those addresses specially).
var reservedBlocks = []struct {
	prefix netip.Prefix
	what   string
}{
	{netip.MustParsePrefix("0.0.0.0/8"), "\"this network\" (0.0.0.0/8)"},
	{netip.MustParsePrefix("127.0.0.0/8"), "loopback (127.0.0.0/8)"},
	{netip.MustParsePrefix("169.254.0.0/16"), "link-local (169.254.0.0/16)"},
	{netip.MustParsePrefix("224.0.0.0/4"), "multicast (224.0.0.0/4)"},
	{netip.MustParsePrefix("255.255.255.255/32"), "the limited broadcast address (255.255.255.255)"},
	{netip.MustParsePrefix("::/128"), "the unspecified address (::)"},
	{netip.MustParsePrefix("::1/128"), "loopback (::1)"},
	{netip.MustParsePrefix("::ffff:0:0/96"), "IPv4-mapped addresses (::ffff:0:0/96)"},
	{netip.MustParsePrefix("fe80::/10"), "link-local (fe80::/10)"},
	{netip.MustParsePrefix("ff00::/8"), "multicast (ff00::/8)"},
}

// checkUsableSubnet refuses a subnet whose addresses cannot be given to
// endpoints.
func checkUsableSubnet(p netip.Prefix) error {
	if p.Bits() == 0 {
		return fmt.Errorf("subnet %s covers every address of its family", p)
	}
	for _, r := range reservedBlocks {
		if p.Overlaps(r.prefix) {
			return fmt.Errorf("subnet %s overlaps %s, which cannot be given to endpoints", p, r.what)
		}
	}
	return nil
}

// checkUnicastAddr refuses an address that cannot be a host's own source
// address: unspecified, loopback, link-local, multicast or broadcast.
func checkUnicastAddr(a netip.Addr) error {
	switch {
	case a.IsUnspecified():
		return fmt.Errorf("%s is the unspecified address", a)
	case a.IsLoopback():
		return fmt.Errorf("%s is a loopback address", a)
	case a.IsMulticast():
		return fmt.Errorf("%s is a multicast address", a)
	case a.IsLinkLocalUnicast():
		return fmt.Errorf("%s is a link-local address", a)
	case a == netip.AddrFrom4([4]byte{255, 255, 255, 255}):
		return fmt.Errorf("%s is the broadcast address", a)
	}
	return nil
}

// checkDNSEntry refuses a resolv.conf entry that would spill into other
// lines or, with space, into other entries.
func checkDNSEntry(s string, spaceOK bool) error {
	if len(s) > MaxDNSEntryLen {
		return fmt.Errorf("%.40q... is %d bytes long (at most %d)", s, len(s), MaxDNSEntryLen)
	}
	for _, r := range s {
		if r < 0x20 || r == 0x7f || (!spaceOK && unicode.IsSpace(r)) {
			if r == '\n' || r == '\r' {
				return fmt.Errorf("%q has a line break", s)
			}
			return fmt.Errorf("%q has a space or control character", s)
		}
	}
	if !utf8.ValidString(s) {
		return fmt.Errorf("%q is not valid UTF-8", s)
	}
	return nil
}

// splitCount counts the non-empty entries of a comma-separated list,
// without allocating.
func splitCount(s string) int {
	n := 0
	for len(s) > 0 {
		part, rest, _ := strings.Cut(s, ",")
		if strings.TrimSpace(part) != "" {
			n++
		}
		s = rest
	}
	return n
}
