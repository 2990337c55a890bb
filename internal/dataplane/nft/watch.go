package nft

import (
	"fmt"
	"os"

	"github.com/google/nftables"
)

// WatchOthers calls changed whenever a process other than this one
// commits a change to the nftables ruleset of the Kernel's namespace
// (`nft monitor`: each committed batch ends with a new generation that
// names the process that made it), until done is closed. It returns once
// subscribed; if the subscription ends early (a netlink buffer overrun),
// failed is called and no more changes are reported.
func (k *Kernel) WatchOthers(done <-chan struct{}, changed func(pid uint32, comm string), failed func(error)) error {
	conn, err := nftables.New(nftables.WithNetNSFd(k.fd))
	if err != nil {
		return fmt.Errorf("nftables monitor: %w", err)
	}
	mon := nftables.NewMonitor(nftables.WithMonitorEventBuffer(256))
	events, err := conn.AddGenerationalMonitor(mon)
	if err != nil {
		return fmt.Errorf("nftables monitor: %w", err)
	}
	self := uint32(os.Getpid())
	go func() {
		<-done
		mon.Close()
	}()
	go func() {
		for ev := range events {
			if ev.GeneratedBy == nil {
				continue
			}
			if gen, ok := ev.GeneratedBy.Data.(*nftables.GenMsg); ok && gen.ProcPID != self {
				changed(gen.ProcPID, gen.ProcComm)
			}
		}
		select {
		case <-done:
		default:
			failed(fmt.Errorf("the nftables monitor stopped"))
		}
	}()
	return nil
}
