package ipam

import (
	"errors"
	"fmt"
	"net/netip"
	"sync"
	"testing"

	"github.com/hostnet/hostnet/api"
	"github.com/hostnet/hostnet/internal/store"
)

func pool(t *testing.T, cidr string, reserveGW bool) Pool {
	t.Helper()
	p := netip.MustParsePrefix(cidr)
	return NewPool("net1", api.SubnetSpec{Prefix: p, Range: p, Gateway: p.Addr().Next(), ReserveGateway: reserveGW})
}

func allocate(t *testing.T, s store.Store, p Pool, owner string) (netip.Addr, error) {
	t.Helper()
	var a netip.Addr
	err := s.Update(func(tx store.Tx) error {
		var err error
		a, err = p.Allocate(tx, owner)
		return err
	})
	return a, err
}

func TestAllocateSkipsReservedAndExhausts(t *testing.T) {
	s := store.NewMemory()
	p := pool(t, "10.0.0.0/29", true) // .1 gateway, .2-.6 free, .7 broadcast
	var got []string
	for i := 0; i < 5; i++ {
		a, err := allocate(t, s, p, fmt.Sprint("ep", i))
		if err != nil {
			t.Fatal(err)
		}
		got = append(got, a.String())
	}
	if fmt.Sprint(got) != "[10.0.0.2 10.0.0.3 10.0.0.4 10.0.0.5 10.0.0.6]" {
		t.Errorf("allocated %v", got)
	}
	if _, err := allocate(t, s, p, "one-too-many"); !errors.Is(err, ErrExhausted) {
		t.Errorf("allocation from a full pool: %v, want ErrExhausted", err)
	}
}

func TestDoNotReserveGateway(t *testing.T) {
	s := store.NewMemory()
	p := pool(t, "10.0.0.0/30", false)
	a, _ := allocate(t, s, p, "a")
	b, _ := allocate(t, s, p, "b")
	if a.String() != "10.0.0.1" || b.String() != "10.0.0.2" {
		t.Errorf("got %s %s, want the gateway handed out", a, b)
	}
}

func TestReleaseIsNotReusedAtOnce(t *testing.T) {
	s := store.NewMemory()
	p := pool(t, "10.0.0.0/24", true)
	a, _ := allocate(t, s, p, "a")
	if err := s.Update(func(tx store.Tx) error { return p.Release(tx, a, "a") }); err != nil {
		t.Fatal(err)
	}
	b, _ := allocate(t, s, p, "b")
	if b == a {
		t.Errorf("released %s was handed out again at once", a)
	}
}

func TestReserveStatic(t *testing.T) {
	s := store.NewMemory()
	p := pool(t, "10.0.0.0/24", true)
	reserve := func(addr, owner string) error {
		return s.Update(func(tx store.Tx) error { return p.Reserve(tx, netip.MustParseAddr(addr), owner) })
	}
	if err := reserve("10.0.0.10", "a"); err != nil {
		t.Fatal(err)
	}
	if err := reserve("10.0.0.10", "a"); err != nil {
		t.Errorf("reserving again for the same owner: %v", err)
	}
	var inUse *InUseError
	if err := reserve("10.0.0.10", "b"); !errors.As(err, &inUse) || inUse.Owner != "a" {
		t.Errorf("taken address: %v", err)
	}
	if err := reserve("10.0.0.1", "b"); !errors.As(err, &inUse) || inUse.Reason == "" {
		t.Errorf("gateway: %v", err)
	}
	var out *OutOfRangeError
	if err := reserve("10.0.1.1", "b"); !errors.As(err, &out) {
		t.Errorf("outside: %v", err)
	}
	// Release by another owner changes nothing.
	_ = s.Update(func(tx store.Tx) error { return p.Release(tx, netip.MustParseAddr("10.0.0.10"), "b") })
	if err := reserve("10.0.0.10", "b"); !errors.As(err, &inUse) {
		t.Errorf("released by a non-owner: %v", err)
	}
}

func TestIPv6(t *testing.T) {
	s := store.NewMemory()
	p := pool(t, "fd00:1::/64", true)
	a, err := allocate(t, s, p, "a")
	if err != nil || a.String() != "fd00:1::2" {
		t.Errorf("got %s, %v", a, err)
	}
}

func TestConcurrentAllocationsAreDistinct(t *testing.T) {
	s := store.NewMemory()
	p := pool(t, "10.0.0.0/24", true)
	var mu sync.Mutex
	seen := map[netip.Addr]bool{}
	var wg sync.WaitGroup
	for i := 0; i < 100; i++ {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			a, err := allocate(t, s, p, fmt.Sprint("ep", i))
			if err != nil {
				t.Error(err)
				return
			}
			mu.Lock()
			defer mu.Unlock()
			if seen[a] {
				t.Errorf("%s handed out twice", a)
			}
			seen[a] = true
		}(i)
	}
	wg.Wait()
}

func TestMACPoolRanges(t *testing.T) {
	s := store.NewMemory()
	start, _ := api.ParseMAC("00-15-5D-00-00-FE")
	end, _ := api.ParseMAC("00-15-5D-00-01-00")
	m := MACPool{NetworkID: "n", Ranges: []api.MacRangeSpec{{Start: api.MACToUint64(start), End: api.MACToUint64(end)}}}
	var got []string
	for i := 0; i < 3; i++ {
		err := s.Update(func(tx store.Tx) error {
			mac, err := m.Allocate(tx, fmt.Sprint("ep", i), netip.Addr{})
			got = append(got, api.FormatMAC(mac))
			return err
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	if fmt.Sprint(got) != "[00-15-5D-00-00-FE 00-15-5D-00-00-FF 00-15-5D-00-01-00]" {
		t.Errorf("got %v", got)
	}
	err := s.Update(func(tx store.Tx) error {
		_, err := m.Allocate(tx, "x", netip.Addr{})
		return err
	})
	if !errors.Is(err, ErrExhausted) {
		t.Errorf("full MAC pool: %v", err)
	}
}

func TestStableMACIsUnicastLocal(t *testing.T) {
	mac := StableMAC("n", "ep", netip.MustParseAddr("172.16.0.2"))
	if mac[0] != 0x02 || mac[2] != 172 || mac[5] != 2 {
		t.Errorf("got %s", mac)
	}
	if !bytesEqual(StableMAC("n", "ep", netip.Addr{}), StableMAC("n", "ep", netip.Addr{})) {
		t.Error("not stable")
	}
}

func bytesEqual(a, b []byte) bool { return string(a) == string(b) }
