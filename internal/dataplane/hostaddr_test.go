package dataplane

import (
	"context"
	"fmt"
	"net/netip"
	"testing"

	"github.com/vishvananda/netlink"
)

// A bridge of hostnet's made while the host's addressing is being read (a
// network created by a concurrent request) is not taken for the host's:
// its address appearing between the list of devices and the list of
// addresses made a second CNI ADD's network create clash with the first's.
func TestHostAddressingLeavesOutBridgesMadeMeanwhile(t *testing.T) {
	ctx := context.Background()
	h, nh, _ := kernelHost(t)
	const n = 60
	done := make(chan error, 1)
	go func() {
		for i := range n {
			br := &netlink.Bridge{LinkAttrs: netlink.LinkAttrs{Name: fmt.Sprintf("hnbrt%d", i)}}
			if err := nh.LinkAdd(br); err != nil {
				done <- err
				return
			}
			a, _ := netlink.ParseAddr(fmt.Sprintf("10.77.%d.1/24", i))
			if err := nh.AddrAdd(br, a); err != nil {
				done <- err
				return
			}
			if err := nh.LinkSetUp(br); err != nil {
				done <- err
				return
			}
		}
		done <- nil
	}()
	mine := netip.MustParsePrefix("10.77.0.0/16")
	reads := 0
	for finished := false; !finished; reads++ {
		select {
		case err := <-done:
			if err != nil {
				t.Fatal(err)
			}
			finished = true
		default:
		}
		host, err := h.HostAddressing(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if c := host.Clashes(mine); len(c) > 0 {
			t.Fatalf("read %d: hostnet's bridges taken for the host's: %v", reads, c)
		}
	}
	t.Logf("%d reads while %d bridges were made", reads, n)
}
