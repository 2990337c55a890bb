package nftmodel

import (
	"fmt"
	"maps"
)

// CheckRefs reports an error when the chain reference counts that s keeps
// (through patches) differ from a fresh count.
func CheckRefs(s *State) error {
	if s.refs == nil {
		return nil
	}
	kept := maps.Clone(s.refs)
	s.countRefs()
	if !maps.Equal(kept, s.refs) {
		return fmt.Errorf("chain references kept %v, counted %v", kept, s.refs)
	}
	return nil
}

// ForgetRefs leaves s without its chain reference counts, as a state read
// from the kernel (ReadChain) starts.
func ForgetRefs(s *State) { s.refs = nil }
