package cli

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/netip"
	"strconv"
	"strings"

	"github.com/hostnet/hostnet/api"
)

// publishSyntax is how --publish is written, for help texts and errors.
const publishSyntax = "[HOSTIP:]HOSTPORT:CONTAINERPORT[/PROTO] or CONTAINERPORT[/PROTO]"

// parsePublishProtocol maps the PROTO of a --publish value onto its IANA
// number.
func parsePublishProtocol(s string) (uint32, error) {
	switch strings.ToLower(s) {
	case "tcp":
		return api.ProtoTCP, nil
	case "udp":
		return api.ProtoUDP, nil
	case "":
		return 0, errors.New("the protocol after / is empty (want tcp or udp)")
	}
	return 0, fmt.Errorf("protocol %q is not tcp or udp", s)
}

// parsePublishPorts parses a port or an inclusive range of ports, "80" or
// "8000-8010"; what names the side in errors ("host", "container").
func parsePublishPorts(what, s string) (api.PortRange, error) {
	if s == "" {
		return api.PortRange{}, fmt.Errorf("the %s port is empty", what)
	}
	from, to, isRange := strings.Cut(s, "-")
	lo, err1 := strconv.ParseUint(from, 10, 16)
	hi := lo
	var err2 error
	if isRange {
		hi, err2 = strconv.ParseUint(to, 10, 16)
	}
	if err1 != nil || err2 != nil || lo == 0 || hi == 0 {
		return api.PortRange{}, fmt.Errorf("%s port %q is not a port (1-65535) or a range of ports (low-high)", what, s)
	}
	if hi < lo {
		return api.PortRange{}, fmt.Errorf("%s port range %q ends before it starts", what, s)
	}
	return api.PortRange{From: uint16(lo), To: uint16(hi)}, nil
}

// errEmptyHostPort refuses Docker's HOSTIP::CONTAINERPORT, which asks for
// an ephemeral host port.
var errEmptyHostPort = errors.New("the host port is empty (hostnet does not pick host ports: give one, or CONTAINERPORT alone to publish on the same number)")

// splitPublish splits a --publish value without its /PROTO into its host
// address (empty when absent; without the brackets of an IPv6 address),
// host ports (empty when only the container port is given) and container
// ports.
func splitPublish(rest string) (host, hostPorts, containerPorts string, err error) {
	if strings.HasPrefix(rest, "[") {
		end := strings.IndexByte(rest, ']')
		if end < 0 {
			return "", "", "", errors.New("the IPv6 host address has no closing bracket")
		}
		host = rest[1:end]
		if host == "" {
			return "", "", "", errors.New("the host address in brackets is empty")
		}
		after, ok := strings.CutPrefix(rest[end+1:], ":")
		parts := strings.Split(after, ":")
		if !ok || len(parts) != 2 {
			return "", "", "", errors.New("want [HOSTIP]:HOSTPORT:CONTAINERPORT[/PROTO] after a bracketed host address")
		}
		if parts[0] == "" {
			return "", "", "", errEmptyHostPort
		}
		return host, parts[0], parts[1], nil
	}
	parts := strings.Split(rest, ":")
	switch len(parts) {
	case 1:
		return "", "", parts[0], nil
	case 2:
		if parts[0] == "" {
			return "", "", "", errEmptyHostPort
		}
		return "", parts[0], parts[1], nil
	case 3:
		if parts[1] == "" {
			return "", "", "", errEmptyHostPort
		}
		return parts[0], parts[1], parts[2], nil
	}
	return "", "", "", errors.New("too many colons (an IPv6 host address goes in brackets, e.g. [::1]:8080:80)")
}

// parsePublish parses one --publish value, Docker's
// [HOSTIP:]HOSTPORT:CONTAINERPORT[/PROTO] or CONTAINERPORT[/PROTO], into
// the settings of one PortMapping policy per port: a range publishes each
// of its ports on the port at the same place of the host range, and a lone
// CONTAINERPORT is published on the same host port. PROTO is tcp (the
// default) or udp; HOSTIP, IPv6 in brackets, binds the mappings to one
// host address (VIP), and an IPv6 one sets the IPv6 flag.
func parsePublish(s string) ([]api.PortMappingSettings, error) {
	rest, protoText, hasProto := strings.Cut(strings.TrimSpace(s), "/")
	proto := uint32(api.ProtoTCP)
	if hasProto {
		var err error
		if proto, err = parsePublishProtocol(protoText); err != nil {
			return nil, err
		}
	}
	host, hostPorts, containerPorts, err := splitPublish(rest)
	if err != nil {
		return nil, err
	}
	var vip netip.Addr
	if host != "" {
		if vip, err = api.ParseAddr(host); err != nil {
			return nil, fmt.Errorf("invalid host address: %w", err)
		}
	}
	inner, err := parsePublishPorts("container", containerPorts)
	if err != nil {
		return nil, err
	}
	outer := inner
	if hostPorts != "" {
		if outer, err = parsePublishPorts("host", hostPorts); err != nil {
			return nil, err
		}
	}
	if outer.To-outer.From != inner.To-inner.From {
		return nil, fmt.Errorf("host ports %s and container ports %s are not ranges of the same length", outer, inner)
	}
	base := api.PortMappingSettings{Protocol: proto}
	if vip.IsValid() {
		base.VIP = vip.String()
		if vip.Is6() {
			base.Flags = api.PortMappingIPv6
		}
	}
	n := int(inner.To-inner.From) + 1
	out := make([]api.PortMappingSettings, 0, n)
	for i := 0; i < n; i++ {
		m := base
		m.InternalPort = inner.From + uint16(i)
		m.ExternalPort = outer.From + uint16(i)
		out = append(out, m)
	}
	return out, nil
}

// publishedHost is how a listing shows the host address of a mapping:
// its VIP, else every address of its family (0.0.0.0 or [::]).
func publishedHost(vip netip.Addr, ipv6 bool) string {
	switch {
	case vip.IsValid() && vip.Is6():
		return "[" + vip.String() + "]"
	case vip.IsValid():
		return vip.String()
	case ipv6:
		return "[::]"
	}
	return "0.0.0.0"
}

// publishedString shows a mapping as HOST:EXTERNAL->INTERNAL/PROTO, e.g.
// 0.0.0.0:8080->80/tcp or [::1]:8443->443/tcp.
func publishedString(m api.PortMappingSpec) string {
	return fmt.Sprintf("%s:%d->%d/%s", publishedHost(m.VIP, m.IPv6), m.ExternalPort, m.InternalPort, m.ProtocolName())
}

// publishKey identifies the host port a mapping takes, the unspecified
// address counting as no address.
func publishKey(m api.PortMappingSettings) string {
	vip, _ := netip.ParseAddr(m.VIP)
	if vip.IsValid() && vip.IsUnspecified() {
		vip = netip.Addr{}
	}
	proto := "tcp"
	if m.Protocol == api.ProtoUDP {
		proto = "udp"
	}
	return fmt.Sprintf("%s:%d/%s", publishedHost(vip, m.Flags&api.PortMappingIPv6 != 0), m.ExternalPort, proto)
}

// publishPolicies turns --publish values into PortMapping policies, in
// order; a host port given twice is an error.
func publishPolicies(values []string) ([]api.Policy, error) {
	var pols []api.Policy
	taken := map[string]string{}
	for _, v := range values {
		maps, err := parsePublish(v)
		if err != nil {
			return nil, fmt.Errorf("invalid --publish %q: %w", v, err)
		}
		for _, m := range maps {
			key := publishKey(m)
			if prev, dup := taken[key]; dup {
				return nil, fmt.Errorf("invalid --publish %q: host port %s is already published by --publish %q", v, key, prev)
			}
			taken[key] = v
			settings, err := json.Marshal(m)
			if err != nil {
				return nil, fmt.Errorf("encode PortMapping policy: %w", err)
			}
			pols = append(pols, api.Policy{Type: api.PortMapping, Settings: settings})
		}
	}
	return pols, nil
}
