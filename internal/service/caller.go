package service

import (
	"context"
	"fmt"

	"golang.org/x/sys/unix"
)

// Caller is who made a request, as the kernel saw it at connect.
type Caller struct {
	UID, GID, PID int
}

type callerKey struct{}

// WithCaller returns a context that carries the caller of a request.
func WithCaller(ctx context.Context, c Caller) context.Context {
	return context.WithValue(ctx, callerKey{}, c)
}

// callerMayUse refuses a namespace path the caller could not act on
// itself: hostnet runs as root and would otherwise attach a NIC into any
// namespace of the host for any caller the socket admits. Root may name
// any; another caller only a namespace file it owns (/proc/PID/ns/net is
// owned by the process's user). Calls without a caller (from inside the
// daemon) are not checked.
func callerMayUse(ctx context.Context, path string) error {
	c, ok := ctx.Value(callerKey{}).(Caller)
	if !ok || c.UID == 0 {
		return nil
	}
	var st unix.Stat_t
	if err := unix.Stat(path, &st); err != nil {
		return fmt.Errorf("%q: %w", path, err)
	}
	if int(st.Uid) != c.UID {
		return fmt.Errorf("%q belongs to uid %d, not to the caller (uid %d)", path, st.Uid, c.UID)
	}
	return nil
}
