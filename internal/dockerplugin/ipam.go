package dockerplugin

import (
	"context"
	"fmt"
	"net/netip"
	"strings"

	"github.com/hostnet/hostnet/api"
)

// The IPAM driver (`docker network create --ipam-driver hostnet`) hands out
// what hostnet will accept: pools that no hostnet network has, and
// addresses that no hostnet endpoint of the pool's network holds. The
// network driver then gives them to hostnet as static addresses, as it does
// those of Docker's own IPAM. A pool ID is "hostnet/SPACE/POOL[/SUBPOOL]":
// the requests carry all the driver needs.

// Address spaces the driver answers; hostnet has one kind of each.
const (
	localSpace  = "hostnet-local"
	globalSpace = "hostnet-global"
	poolPrefix  = "hostnet/"
)

// defaultPools is where a pool is taken from when Docker asks for none
// (docker network create without --subnet): the /24s of 10.200.0.0/16.
var defaultPools = netip.MustParsePrefix("10.200.0.0/16")

// ipamState is what the driver handed out and Docker has not released:
// hostnet learns of a pool when the network is created and of an address
// when the endpoint is, a moment later.
type ipamState struct {
	pools map[netip.Prefix]bool
	addrs map[netip.Prefix]map[netip.Addr]bool // by pool
}

func (p *Plugin) ipamCapabilities(context.Context, []byte) (any, error) {
	return ipamCapabilitiesResponse{}, nil
}

func (p *Plugin) addressSpaces(context.Context, []byte) (any, error) {
	return addressSpacesResponse{LocalDefaultAddressSpace: localSpace, GlobalDefaultAddressSpace: globalSpace}, nil
}

// poolID is the ID of a pool and its sub-pool (invalid when none).
func poolID(space string, pool, sub netip.Prefix) string {
	id := poolPrefix + space + "/" + pool.String()
	if sub.IsValid() {
		id += "/" + sub.String()
	}
	return id
}

// parsePoolID reads a pool ID back.
func parsePoolID(id string) (pool, sub netip.Prefix, err error) {
	bad := fmt.Errorf("hostnet: field PoolID: %q is not a pool of hostnet's IPAM driver", id)
	rest, ok := strings.CutPrefix(id, poolPrefix)
	if !ok {
		return pool, sub, bad
	}
	parts := strings.Split(rest, "/")
	// SPACE / ADDR / BITS [/ ADDR / BITS]
	if len(parts) != 3 && len(parts) != 5 {
		return pool, sub, bad
	}
	if pool, err = netip.ParsePrefix(parts[1] + "/" + parts[2]); err != nil {
		return pool, sub, bad
	}
	if len(parts) == 5 {
		if sub, err = netip.ParsePrefix(parts[3] + "/" + parts[4]); err != nil {
			return pool, sub, bad
		}
	}
	return pool, sub, nil
}

// requestPool answers the pool Docker asks for (--subnet, --ip-range), or
// a free /24 of 10.200.0.0/16 when it asks for none. A pool that a hostnet
// network has, or that the driver handed out already, is refused.
func (p *Plugin) requestPool(ctx context.Context, body []byte) (any, error) {
	req, err := decode[requestPoolRequest]("RequestPool", body)
	if err != nil {
		return nil, err
	}
	space := req.AddressSpace
	if space == "" {
		space = localSpace
	}
	taken, err := p.networkPrefixes(ctx)
	if err != nil {
		return nil, err
	}
	var pool, sub netip.Prefix
	if req.Pool == "" {
		if req.V6 {
			return nil, fmt.Errorf("hostnet: RequestPool: hostnet's IPAM driver picks IPv4 pools only: give the IPv6 subnet (--subnet)")
		}
		if req.SubPool != "" {
			return nil, fmt.Errorf("hostnet: RequestPool: field SubPool %q needs a Pool (--ip-range needs --subnet)", req.SubPool)
		}
		p.mu.Lock()
		defer p.mu.Unlock()
		for c := netip.PrefixFrom(defaultPools.Addr(), 24); defaultPools.Contains(c.Addr()); c = netip.PrefixFrom(nextBlock(c), 24) {
			if !overlapsAny(c, taken) && !overlapsAny(c, p.heldPools()) {
				pool = c
				break
			}
		}
		if !pool.IsValid() {
			return nil, fmt.Errorf("hostnet: RequestPool: every /24 of %s is taken: give a subnet (--subnet)", defaultPools)
		}
	} else {
		if pool, err = netip.ParsePrefix(req.Pool); err != nil {
			return nil, fmt.Errorf("hostnet: RequestPool: field Pool: %q is not a CIDR prefix", req.Pool)
		}
		pool = pool.Masked()
		if pool.Addr().Is6() != req.V6 {
			return nil, fmt.Errorf("hostnet: RequestPool: field Pool: %s is not of the family asked for (V6 %v)", pool, req.V6)
		}
		if req.SubPool != "" {
			if sub, err = netip.ParsePrefix(req.SubPool); err != nil {
				return nil, fmt.Errorf("hostnet: RequestPool: field SubPool: %q is not a CIDR prefix", req.SubPool)
			}
			sub = sub.Masked()
			if sub.Bits() < pool.Bits() || !pool.Contains(sub.Addr()) {
				return nil, fmt.Errorf("hostnet: RequestPool: field SubPool: %s is not inside pool %s", sub, pool)
			}
		}
		for _, t := range taken {
			if t.Overlaps(pool) {
				return nil, fmt.Errorf("hostnet: RequestPool: field Pool: %s overlaps hostnet network subnet %s", pool, t)
			}
		}
		p.mu.Lock()
		defer p.mu.Unlock()
		if overlapsAny(pool, p.heldPools()) {
			return nil, fmt.Errorf("hostnet: RequestPool: field Pool: %s overlaps a pool in use", pool)
		}
	}
	if p.ipam.pools == nil {
		p.ipam.pools = map[netip.Prefix]bool{}
	}
	p.ipam.pools[pool] = true
	return requestPoolResponse{PoolID: poolID(space, pool, sub), Pool: pool.String()}, nil
}

func (p *Plugin) heldPools() []netip.Prefix {
	var out []netip.Prefix
	for q := range p.ipam.pools {
		out = append(out, q)
	}
	return out
}

func nextBlock(c netip.Prefix) netip.Addr {
	a := c.Addr().As4()
	a[2]++
	if a[2] == 0 {
		a[1]++
	}
	return netip.AddrFrom4(a)
}

func overlapsAny(p netip.Prefix, list []netip.Prefix) bool {
	for _, q := range list {
		if q.Overlaps(p) {
			return true
		}
	}
	return false
}

// networkPrefixes lists the subnets of hostnet's networks.
func (p *Plugin) networkPrefixes(ctx context.Context) ([]netip.Prefix, error) {
	nets, err := p.D.ListNetworks(ctx, nil)
	if err != nil {
		return nil, daemonErr("list networks", err)
	}
	var out []netip.Prefix
	for _, n := range nets {
		for _, ip := range n.Ipams {
			for _, s := range ip.Subnets {
				if q, err := netip.ParsePrefix(s.IpAddressPrefix); err == nil {
					out = append(out, q.Masked())
				}
			}
		}
	}
	return out, nil
}

func (p *Plugin) releasePool(_ context.Context, body []byte) (any, error) {
	req, err := decode[releasePoolRequest]("ReleasePool", body)
	if err != nil {
		return nil, err
	}
	pool, _, err := parsePoolID(req.PoolID)
	if err != nil {
		return nil, err
	}
	p.mu.Lock()
	delete(p.ipam.pools, pool)
	delete(p.ipam.addrs, pool)
	p.mu.Unlock()
	return ipamResponse{}, nil
}

// requestAddress answers the network's gateway (the address asked for, or
// the pool's first) or an endpoint's address: the one asked for (--ip),
// else the first of the sub-pool (or pool) that neither the driver nor a
// hostnet endpoint of the pool's network holds.
func (p *Plugin) requestAddress(ctx context.Context, body []byte) (any, error) {
	req, err := decode[requestAddressRequest]("RequestAddress", body)
	if err != nil {
		return nil, err
	}
	pool, sub, err := parsePoolID(req.PoolID)
	if err != nil {
		return nil, err
	}
	var want netip.Addr
	if req.Address != "" {
		if want, err = netip.ParseAddr(req.Address); err != nil || !pool.Contains(want) {
			return nil, fmt.Errorf("hostnet: RequestAddress: field Address: %q is not an address of pool %s", req.Address, pool)
		}
	}
	if req.Options[ipamRequestType] == ipamGateway {
		if !want.IsValid() {
			want = pool.Addr().Next()
		}
		p.hold(pool, want)
		return requestAddressResponse{Address: netip.PrefixFrom(want, pool.Bits()).String()}, nil
	}
	used, err := p.usedIn(ctx, pool)
	if err != nil {
		return nil, err
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	for a := range p.ipam.addrs[pool] {
		used[a] = true
	}
	if want.IsValid() {
		if used[want] {
			return nil, fmt.Errorf("hostnet: RequestAddress: field Address: %s is in use in pool %s", want, pool)
		}
	} else {
		from := pool
		if sub.IsValid() {
			from = sub
		}
		for a := from.Addr(); from.Contains(a); a = a.Next() {
			if a == pool.Addr() || (a.Is4() && isBroadcast(a, pool)) || used[a] {
				continue
			}
			want = a
			break
		}
		if !want.IsValid() {
			return nil, fmt.Errorf("hostnet: RequestAddress: no address of %s is free", from)
		}
	}
	p.holdLocked(pool, want)
	return requestAddressResponse{Address: netip.PrefixFrom(want, pool.Bits()).String()}, nil
}

func isBroadcast(a netip.Addr, pool netip.Prefix) bool {
	b := a.As4()
	host := uint32(b[0])<<24 | uint32(b[1])<<16 | uint32(b[2])<<8 | uint32(b[3])
	mask := uint32(1)<<(32-pool.Bits()) - 1
	return pool.Bits() < 31 && host&mask == mask
}

// usedIn lists the addresses hostnet holds in a pool: those of the
// endpoints and the gateways of the network whose subnet it is.
func (p *Plugin) usedIn(ctx context.Context, pool netip.Prefix) (map[netip.Addr]bool, error) {
	used := map[netip.Addr]bool{}
	nets, err := p.D.ListNetworks(ctx, nil)
	if err != nil {
		return nil, daemonErr("list networks", err)
	}
	for _, n := range nets {
		mine := false
		for _, ip := range n.Ipams {
			for _, s := range ip.Subnets {
				if q, err := netip.ParsePrefix(s.IpAddressPrefix); err == nil && q.Masked() == pool {
					mine = true
					for _, r := range s.Routes {
						if gw, err := netip.ParseAddr(r.NextHop); err == nil {
							used[gw] = true
						}
					}
				}
			}
		}
		if !mine {
			continue
		}
		if spec, err := api.ParseNetwork(&n); err == nil {
			for _, s := range spec.Subnets {
				used[s.Gateway] = true
			}
		}
		eps, err := p.D.ListEndpoints(ctx, map[string]string{"VirtualNetwork": n.ID})
		if err != nil {
			return nil, daemonErr("list the endpoints of network "+n.Name, err)
		}
		for _, ep := range eps {
			for _, c := range ep.IpConfigurations {
				if a, err := netip.ParseAddr(c.IpAddress); err == nil {
					used[a] = true
				}
			}
		}
	}
	return used, nil
}

func (p *Plugin) hold(pool netip.Prefix, a netip.Addr) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.holdLocked(pool, a)
}

func (p *Plugin) holdLocked(pool netip.Prefix, a netip.Addr) {
	if p.ipam.addrs == nil {
		p.ipam.addrs = map[netip.Prefix]map[netip.Addr]bool{}
	}
	if p.ipam.addrs[pool] == nil {
		p.ipam.addrs[pool] = map[netip.Addr]bool{}
	}
	p.ipam.addrs[pool][a] = true
}

func (p *Plugin) releaseAddress(_ context.Context, body []byte) (any, error) {
	req, err := decode[releaseAddressRequest]("ReleaseAddress", body)
	if err != nil {
		return nil, err
	}
	pool, _, err := parsePoolID(req.PoolID)
	if err != nil {
		return nil, err
	}
	a, err := netip.ParseAddr(req.Address)
	if err != nil {
		return nil, fmt.Errorf("hostnet: ReleaseAddress: field Address: %q is not an address", req.Address)
	}
	p.mu.Lock()
	delete(p.ipam.addrs[pool], a)
	p.mu.Unlock()
	return ipamResponse{}, nil
}
