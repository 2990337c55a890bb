// Package winshim maps the network options of Docker's Windows driver
// (`docker network create -o com.docker.network.windowsshim.*=...`) onto an
// HCN network document. `hostnet network create -o` and the Docker plugin
// (internal/dockerplugin) both take them.
package winshim

import (
	"encoding/json"
	"fmt"
	"sort"
	"strconv"
	"strings"

	"github.com/hostnet/hostnet/api"
)

// The options Docker's Windows driver defines, and hostnet's own.
const (
	NetworkName       = "com.docker.network.windowsshim.networkname"
	DNSServers        = "com.docker.network.windowsshim.dnsservers"
	DNSSuffix         = "com.docker.network.windowsshim.dnssuffix"
	MacPool           = "com.docker.network.windowsshim.macpool"
	VLANID            = "com.docker.network.windowsshim.vlanid"
	VSID              = "com.docker.network.windowsshim.vsid"
	Interface         = "com.docker.network.windowsshim.interface"
	DisableGatewayDNS = "com.docker.network.windowsshim.disable_gatewaydns"
	MTU               = "com.docker.network.driver.mtu"
	NonPersistent     = "nonpersistent"
	// UplinkMode is hostnet's own: a Transparent network's UplinkMode
	// ("macvlan", the default, or "bridge").
	UplinkMode = "hostnet.uplink_mode"
)

// Known lists the options Apply takes, NetworkName included.
func Known() []string {
	return []string{NetworkName, DNSServers, DNSSuffix, MacPool, VLANID, VSID, Interface, DisableGatewayDNS, MTU, NonPersistent, UplinkMode}
}

// IsKnown reports whether key is one of Known.
func IsKnown(key string) bool {
	for _, k := range Known() {
		if k == key {
			return true
		}
	}
	return false
}

// Apply sets on n what the options ask for, but NetworkName, which the
// caller weighs against the name it has: the VLAN or VSID policy of every
// subnet (n.Ipams must be set first), DNS servers (added to those n has),
// the DNS suffix, the MAC pool, the uplink (NetAdapterName) and its mode
// (UplinkMode), and the non-persistent flag. note receives what is accepted and ignored. An
// unknown option is an error naming it; so is a bad value, naming the
// option and the value.
func Apply(n *api.Network, opts map[string]string, note func(string)) error {
	keys := make([]string, 0, len(opts))
	for k := range opts {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		if !IsKnown(k) {
			return fmt.Errorf("unknown option %q (known: %s)", k, strings.Join(Known(), ", "))
		}
	}
	if _, ok := opts[MTU]; ok {
		return fmt.Errorf("option %s is not supported yet", MTU)
	}
	if _, ok := opts[DisableGatewayDNS]; ok {
		note(fmt.Sprintf("option %s is ignored: hostnet has no gateway DNS proxy", DisableGatewayDNS))
	}
	for _, key := range []string{VLANID, VSID} {
		v, ok := opts[key]
		if !ok {
			continue
		}
		id, err := strconv.ParseUint(strings.TrimSpace(v), 10, 32)
		if err != nil {
			return fmt.Errorf("option %s: %q is not a number", key, v)
		}
		if len(n.Ipams) == 0 || len(n.Ipams[0].Subnets) == 0 {
			return fmt.Errorf("option %s needs a --subnet to apply to", key)
		}
		typ := api.VLAN
		if key == VSID {
			typ = api.VSID
		}
		settings, err := json.Marshal(api.IsolationSettings{IsolationId: uint32(id)})
		if err != nil {
			return fmt.Errorf("encode %s policy: %w", typ, err)
		}
		for i := range n.Ipams {
			for j := range n.Ipams[i].Subnets {
				s := &n.Ipams[i].Subnets[j]
				s.Policies = append(s.Policies, api.Policy{Type: typ, Settings: settings})
			}
		}
	}
	if v, ok := opts[DNSServers]; ok {
		for _, s := range strings.Split(v, ",") {
			if s = strings.TrimSpace(s); s == "" {
				continue
			}
			a, err := api.ParseAddr(s)
			if err != nil {
				return fmt.Errorf("option %s: invalid DNS server: %w", DNSServers, err)
			}
			if n.Dns == nil {
				n.Dns = &api.DNS{}
			}
			n.Dns.ServerList = append(n.Dns.ServerList, a.String())
		}
	}
	if v := strings.TrimSpace(opts[DNSSuffix]); v != "" {
		if n.Dns == nil {
			n.Dns = &api.DNS{}
		}
		n.Dns.Domain = v
	}
	if v, ok := opts[MacPool]; ok {
		pool, err := ParseMacPool(v)
		if err != nil {
			return fmt.Errorf("option %s: %w", MacPool, err)
		}
		n.MacPool = pool
	}
	if v, ok := opts[Interface]; ok {
		if strings.TrimSpace(v) == "" {
			return fmt.Errorf("option %s: the interface name is empty", Interface)
		}
		settings, err := json.Marshal(map[string]string{"NetworkAdapterName": strings.TrimSpace(v)})
		if err != nil {
			return fmt.Errorf("encode NetAdapterName policy: %w", err)
		}
		n.Policies = append(n.Policies, api.Policy{Type: api.NetAdapterName, Settings: settings})
	}
	if v, ok := opts[UplinkMode]; ok {
		if strings.TrimSpace(v) == "" {
			return fmt.Errorf("option %s: empty (want macvlan or bridge)", UplinkMode)
		}
		n.UplinkMode = strings.TrimSpace(v) // checked with the document
	}
	if v, ok := opts[NonPersistent]; ok {
		b, err := strconv.ParseBool(strings.TrimSpace(v))
		if err != nil {
			return fmt.Errorf("option %s: %q is not true or false", NonPersistent, v)
		}
		if b {
			n.Flags |= api.NetworkEnableNonPersistent
		}
	}
	return nil
}

// ParseMacPool parses Docker's macpool option: START-END ranges (MACs with
// dashes or colons), several separated by commas.
func ParseMacPool(v string) (*api.MacPool, error) {
	pool := &api.MacPool{}
	for _, r := range strings.Split(v, ",") {
		r = strings.TrimSpace(r)
		if r == "" {
			continue
		}
		var start, end string
		switch parts := strings.Split(r, "-"); len(parts) {
		case 12:
			start, end = strings.Join(parts[:6], "-"), strings.Join(parts[6:], "-")
		case 2:
			start, end = parts[0], parts[1]
		default:
			return nil, fmt.Errorf("%q is not a START-END range of MAC addresses (e.g. 00-15-5D-52-C0-00-00-15-5D-52-CF-FF)", r)
		}
		s, err := api.ParseMAC(start)
		if err != nil {
			return nil, err
		}
		e, err := api.ParseMAC(end)
		if err != nil {
			return nil, err
		}
		if api.MACToUint64(s) > api.MACToUint64(e) {
			return nil, fmt.Errorf("range %q starts after it ends", r)
		}
		pool.Ranges = append(pool.Ranges, api.MacRange{StartMacAddress: api.FormatMAC(s), EndMacAddress: api.FormatMAC(e)})
	}
	if len(pool.Ranges) == 0 {
		return nil, fmt.Errorf("no MAC range given")
	}
	return pool, nil
}
