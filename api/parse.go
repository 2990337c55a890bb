package api

import (
	"fmt"
	"net"
	"net/netip"
	"strings"
)

// ParseMAC parses a 48-bit MAC address written with dashes
// (00-15-5D-52-C0-00, the HNS form) or colons. It does not judge the
// address: the validators refuse the all-zero and multicast ones where a
// NIC's address is meant.
func ParseMAC(s string) (net.HardwareAddr, error) {
	t := strings.ReplaceAll(s, "-", ":")
	mac, err := net.ParseMAC(t)
	if err != nil || len(mac) != 6 {
		return nil, fmt.Errorf("%q is not a MAC address (want 00-15-5D-52-C0-00)", s)
	}
	return mac, nil
}

// FormatMAC writes mac in the HNS form, upper-case with dashes.
func FormatMAC(mac net.HardwareAddr) string {
	parts := make([]string, len(mac))
	for i, b := range mac {
		parts[i] = fmt.Sprintf("%02X", b)
	}
	return strings.Join(parts, "-")
}

// MACToUint64 and MACFromUint64 convert between a 48-bit MAC and a number,
// for walking MAC ranges.
func MACToUint64(mac net.HardwareAddr) uint64 {
	var v uint64
	for _, b := range mac {
		v = v<<8 | uint64(b)
	}
	return v
}

// MACFromUint64 is the inverse of MACToUint64.
func MACFromUint64(v uint64) net.HardwareAddr {
	mac := make(net.HardwareAddr, 6)
	for i := 5; i >= 0; i-- {
		mac[i] = byte(v)
		v >>= 8
	}
	return mac
}

// ParsePrefix parses a CIDR prefix; host bits are cleared.
func ParsePrefix(s string) (netip.Prefix, error) {
	p, err := netip.ParsePrefix(strings.TrimSpace(s))
	if err != nil {
		return netip.Prefix{}, fmt.Errorf("%q is not a CIDR prefix", s)
	}
	if p.Addr().Zone() != "" {
		return netip.Prefix{}, fmt.Errorf("%q: zones are not allowed", s)
	}
	return p.Masked(), nil
}

// ParseAddr parses an IPv4 or IPv6 address (IPv4-mapped IPv6 addresses are
// unmapped).
func ParseAddr(s string) (netip.Addr, error) {
	a, err := netip.ParseAddr(strings.TrimSpace(s))
	if err != nil || a.Zone() != "" {
		return netip.Addr{}, fmt.Errorf("%q is not an IP address", s)
	}
	return a.Unmap(), nil
}

// ValidInterfaceName reports whether the kernel keeps name as given for a
// network device: 1 to 15 bytes (IFNAMSIZ), not "." or "..", no '/', ':'
// or whitespace (the kernel's dev_valid_name), and no '%', which the
// kernel reads as a pattern to fill in ("eth%d" becomes eth0, eth1, ...:
// the device would not have the name hostnet recorded). hostnet keeps to
// printable ASCII.
func ValidInterfaceName(name string) error {
	if name == "" || len(name) > MaxInterfaceNameLen {
		return fmt.Errorf("%q must be 1 to %d characters", name, MaxInterfaceNameLen)
	}
	if name == "." || name == ".." {
		return fmt.Errorf("%q is not a device name", name)
	}
	for _, r := range name {
		if r == '%' {
			return fmt.Errorf("%q has a '%%', which the kernel replaces with a number when it names a device", name)
		}
		if r == '/' || r == ':' || r <= ' ' || r > '~' {
			return fmt.Errorf("%q has a character not allowed in a device name", name)
		}
	}
	return nil
}
