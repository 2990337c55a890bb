package netmodel

import (
	"errors"
	"fmt"
)

// Errors a host reports for objects it cannot apply, which callers tell
// apart with errors.Is and errors.As.
var (
	// ErrNamespaceGone: the namespace of an object is not there, or is not
	// the one its identity names.
	ErrNamespaceGone = errors.New("network namespace is gone")
	// ErrNameTaken: a device name hostnet wants in a namespace is held by
	// a device that is not hostnet's.
	ErrNameTaken = errors.New("device name taken")
	// ErrBridgeFull: a bridge has no port left (a Linux bridge has at most
	// 1024 ports, the bridge itself included).
	ErrBridgeFull = errors.New("the bridge has no free port (a Linux bridge has at most 1024 ports)")
	// ErrNotHostAddress: a port is to be held on an address the host
	// does not have (a published port's VirtualIP that was removed).
	ErrNotHostAddress = errors.New("not an address of the host")
)

// IsHostCondition reports whether err is a condition of the host that
// hostnet waits out rather than a fault of its own: a port another
// process holds, an address the host lacks, a device name another
// program took.
func IsHostCondition(err error) bool {
	var inUse *PortInUseError
	return errors.As(err, &inUse) || errors.Is(err, ErrNotHostAddress) || errors.Is(err, ErrNameTaken)
}

// PortInUseError says a host port is bound by something else.
type PortInUseError struct {
	Port   string // e.g. "8080/tcp"
	Holder string // e.g. `process "nginx" (pid 1234)`, or "" when unknown
}

func (e *PortInUseError) Error() string {
	if e.Holder == "" {
		return fmt.Sprintf("port %s is already in use on the host", e.Port)
	}
	return fmt.Sprintf("port %s is already in use on the host by %s", e.Port, e.Holder)
}
