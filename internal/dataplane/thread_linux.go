package dataplane

import (
	"fmt"
	"runtime"

	"github.com/hostnet/hostnet/internal/dataplane/netns"
	vnetns "github.com/vishvananda/netns"
)

// nsThread is an OS thread that lives inside one namespace, for what can
// only be done from inside it (sysctls under /proc/sys/net): jobs run on it
// without switching namespaces back and forth.
type nsThread struct {
	jobs chan func()
}

func startNSThread(ns netns.Handle) (*nsThread, error) {
	t := &nsThread{jobs: make(chan func())}
	errc := make(chan error, 1)
	go func() {
		// The thread stays locked for good: once in another namespace it
		// must not serve other goroutines, so it exits with this one.
		runtime.LockOSThread()
		if err := vnetns.Set(ns); err != nil {
			errc <- fmt.Errorf("enter the host namespace: %w", err)
			return
		}
		errc <- nil
		for job := range t.jobs {
			job()
		}
	}()
	if err := <-errc; err != nil {
		return nil, err
	}
	return t, nil
}

// do runs fn on the thread and returns its error.
func (t *nsThread) do(fn func() error) error {
	errc := make(chan error, 1)
	t.jobs <- func() { errc <- fn() }
	return <-errc
}

func (t *nsThread) close() { close(t.jobs) }
