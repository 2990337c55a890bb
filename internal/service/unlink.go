package service

import (
	"github.com/hostnet/hostnet/internal/driver"
)

// An unlink is a detached endpoint's NIC waiting to be removed.
type unlink struct {
	drv  driver.Driver
	ep   *driver.Endpoint
	ns   string        // the namespace its NIC was in (its side goes too)
	done chan struct{} // closed once it is gone (or its removal failed)
}

// detachLater removes an endpoint's NIC in the background; see
// unrealiseAttachment. NICs queued while a removal runs go together in the
// next one: the kernel deletes a batch of devices for about the price of
// one, so a burst of detaches does not keep the RTNL lock for long.
func (s *Service) detachLater(ep *endpointRecord, pn *parsedNetwork, nsID string) {
	drv, ok := s.cfg.Drivers[pn.spec.Type]
	if !ok {
		return
	}
	u := &unlink{drv: drv, ep: &driver.Endpoint{ID: ep.Doc.ID, Network: pn.driverNetwork(), HostName: ep.Doc.HostInterfaceName},
		ns: nsID, done: make(chan struct{})}
	s.unlinkMu.Lock()
	defer s.unlinkMu.Unlock()
	s.unlinking[u.ep.HostName] = u.done
	s.unlinkQueue = append(s.unlinkQueue, u)
	if s.unlinkRunning {
		return
	}
	s.unlinkRunning = true
	s.background.Add(1)
	go s.unlinkAll()
}

// unlinkAll removes queued NICs, a batch per driver, until none is left.
func (s *Service) unlinkAll() {
	defer s.background.Done()
	for {
		s.unlinkMu.Lock()
		batch := s.unlinkQueue
		s.unlinkQueue, s.unlinkBatch = nil, batch
		if len(batch) == 0 {
			s.unlinkRunning = false
			s.unlinkMu.Unlock()
			return
		}
		s.unlinkMu.Unlock()
		byDriver := map[driver.Driver][]*driver.Endpoint{}
		for _, u := range batch {
			byDriver[u.drv] = append(byDriver[u.drv], u.ep)
		}
		for drv, eps := range byDriver {
			if err := drv.Detach(eps...); err != nil {
				s.log.Error("removing endpoint NICs failed; reconciliation will retry", "count", len(eps), "err", err)
			}
		}
		s.unlinkMu.Lock()
		for _, u := range batch {
			if s.unlinking[u.ep.HostName] == u.done {
				delete(s.unlinking, u.ep.HostName)
			}
			close(u.done)
		}
		s.unlinkBatch = nil
		s.unlinkMu.Unlock()
	}
}

// awaitUnlink waits until no NIC that an attach of the host-side device
// name into namespace nsID could meet is being removed in the background:
// that device itself (which the attach would adopt just before it goes),
// and the NICs leaving that namespace (whose names inside it the attach
// may take again).
func (s *Service) awaitUnlink(name, nsID string) {
	s.unlinkMu.Lock()
	var waits []chan struct{}
	if done := s.unlinking[name]; done != nil {
		waits = append(waits, done)
	}
	for _, u := range s.unlinkQueue {
		if u.ns == nsID {
			waits = append(waits, u.done)
		}
	}
	for _, u := range s.unlinkBatch {
		if u.ns == nsID {
			waits = append(waits, u.done)
		}
	}
	s.unlinkMu.Unlock()
	for _, done := range waits {
		<-done
	}
}
