package service

import (
	"context"
	"fmt"
	"net/netip"
	"time"

	"github.com/hostnet/hostnet/api"
	"github.com/hostnet/hostnet/internal/dataplane"
	"github.com/hostnet/hostnet/internal/policy"
)

// A flowChange is an endpoint's firewall state before and after a change:
// the connections of before's addresses that after no longer admits are to
// be forgotten by the connection tracker.
type flowChange struct {
	before, after policy.Endpoint
	network       policy.Network // after's network
}

// gone is the change of an endpoint that leaves the firewall: none of its
// flows stays.
func gone(e policy.Endpoint) flowChange {
	return flowChange{before: e, after: policy.Endpoint{ID: e.ID}, network: policy.Network{ACLs: []api.ACLSpec{{Action: api.ACLBlock}}}}
}

// flowJudge decides, for the flows of one endpoint, which go.
type flowJudge struct {
	profile   policy.Profile
	published map[api.PortMappingSpec]bool // protocol and ports only
}

func newFlowJudge(c flowChange) *flowJudge {
	j := &flowJudge{profile: policy.NewProfile(c.network.ACLs, c.after.ACLs), published: map[api.PortMappingSpec]bool{}}
	for _, m := range c.after.Mappings {
		j.published[api.PortMappingSpec{Protocol: m.Protocol, ExternalPort: m.ExternalPort, InternalPort: m.InternalPort}] = true
	}
	return j
}

// endsIncoming tells whether a flow the endpoint received goes.
func (j *flowJudge) endsIncoming(f dataplane.Flow) bool {
	// The endpoint is the reply's source; a flow reached through a
	// published port was DNATed, and goes if the port no longer is.
	if f.OrigDst != f.ReplySrc && !j.published[api.PortMappingSpec{Protocol: f.Proto, ExternalPort: f.OrigDst.Port(), InternalPort: f.ReplySrc.Port()}] {
		return true
	}
	return !j.profile.Admits(policy.Packet{Dir: api.ACLIn, Proto: f.Proto,
		Local: f.ReplySrc.Addr(), LocalPort: f.ReplySrc.Port(), Remote: f.OrigSrc.Addr(), RemotePort: f.OrigSrc.Port()})
}

// endsOutgoing tells whether a flow the endpoint opened goes.
func (j *flowJudge) endsOutgoing(f dataplane.Flow) bool {
	return !j.profile.Admits(policy.Packet{Dir: api.ACLOut, Proto: f.Proto,
		Local: f.OrigSrc.Addr(), LocalPort: f.OrigSrc.Port(), Remote: f.OrigDst.Addr(), RemotePort: f.OrigDst.Port()})
}

// endFlows makes the connection tracker forget the flows that changes
// deny, in one walk of its table whatever the number of changes. A walk
// costs milliseconds even when the table is empty (it visits every bucket
// of the host's table), so callers that need not wait use endFlowsLater.
func (s *Service) endFlows(changes []flowChange) {
	judges := map[netip.Addr]*flowJudge{}
	for _, c := range changes {
		j := newFlowJudge(c)
		for _, a := range c.before.Addrs {
			judges[a] = j // a later change of the same address wins
		}
	}
	if len(judges) == 0 {
		return
	}
	n, err := s.cfg.Host.DeleteFlows(context.TODO(), func(f dataplane.Flow) bool {
		if j := judges[f.ReplySrc.Addr()]; j != nil && j.endsIncoming(f) {
			return true
		}
		if j := judges[f.OrigSrc.Addr()]; j != nil && j.endsOutgoing(f) {
			return true
		}
		return false
	})
	if err != nil {
		s.log.Warn("ending the flows a policy change denies failed", "changes", len(changes), "ended", n, "err", err)
		return
	}
	if n > 0 {
		s.log.Info("ended flows the firewall no longer admits", "flows", n, "endpoints", fmt.Sprint(endpointIDs(changes)))
	}
}

// Cleanup of flows waits for the firewall to be quiet for flowQuiet, or
// at most flowMaxDelay after the first change that queued it: a walk of the
// connection tracker disables bottom halves on its CPU for milliseconds,
// which stalls a concurrent nftables commit (it waits for an RCU grace
// period), so walks are kept out of bursts of changes and shared by them.
const (
	flowQuiet    = 50 * time.Millisecond
	flowMaxDelay = 500 * time.Millisecond
)

// endFlowsLater is endFlows in the background, for changes whose flows the
// firewall already stops: the ACL chains judge every packet of a flow, not
// only its first, so what is left is to free the connection tracker's
// entries. Changes queued before a walk share it. Close cuts the wait short
// and waits for the queue to drain.
func (s *Service) endFlowsLater(changes ...flowChange) {
	if len(changes) == 0 {
		return
	}
	s.flowMu.Lock()
	defer s.flowMu.Unlock()
	now := time.Now()
	if len(s.flowQueue) == 0 {
		s.flowFirst = now
	}
	s.flowLast = now
	s.flowQueue = append(s.flowQueue, changes...)
	if s.flowWalking {
		return
	}
	s.flowWalking = true
	s.background.Add(1)
	go func() {
		defer s.background.Done()
		for {
			s.flowMu.Lock()
			if len(s.flowQueue) == 0 {
				s.flowWalking = false
				s.flowMu.Unlock()
				return
			}
			due := s.flowLast.Add(flowQuiet)
			if limit := s.flowFirst.Add(flowMaxDelay); limit.Before(due) {
				due = limit
			}
			if wait := time.Until(due); wait > 0 && !s.flowFlush {
				s.flowMu.Unlock()
				select {
				case <-time.After(wait):
				case <-s.flowWake:
				}
				continue
			}
			batch := s.flowQueue
			s.flowQueue = nil
			s.flowMu.Unlock()
			s.endFlows(batch)
		}
	}()
}

func endpointIDs(changes []flowChange) []string {
	ids := make([]string, 0, len(changes))
	for _, c := range changes {
		ids = append(ids, c.before.ID)
	}
	return ids
}
