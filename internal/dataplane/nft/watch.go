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
	go func() {
		<-done
		mon.Close()
	}()
	go func() {
		for ev := range events {
			if ev.GeneratedBy == nil {
				continue
			}
			if gen, ok := ev.GeneratedBy.Data.(*nftables.GenMsg); ok && !ownThread(gen.ProcPID) {
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

// ownThread reports whether id is a thread of this process. The kernel
// names a generation's maker by the id of the thread that committed it
// (task_pid_nr), which for a Go program is any of its threads, rarely the
// one whose id is the process's.
func ownThread(id uint32) bool {
	if int(id) == os.Getpid() {
		return true
	}
	_, err := os.Stat(fmt.Sprintf("/proc/self/task/%d", id))
	return err == nil
}
