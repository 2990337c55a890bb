package nft

import "errors"

// Applier brings hostnet's table in one network namespace to a desired content.
type Applier interface {
	// Apply makes the kernel table equal to t in one atomic netlink batch, creating it if absent,
	// touching only what differs (set elements added/removed; a chain whose rule list differs is
	// flushed and refilled inside the same batch; unchanged chains and sets are not touched).
	// Idempotent: applying the same table twice sends nothing the second time (or nothing that changes state).
	// On error the kernel is unchanged (the batch is atomic).
	Apply(t *Table) error
	// Delete removes the table; a table that is absent is not an error.
	Delete(name string) error
}

// ErrMapsUnsupported is returned by Apply for a table with maps: they are
// modelled and rendered, but no applier programs them yet.
var ErrMapsUnsupported = errors.New("maps are not supported by the appliers yet")

// checkApplicable validates t and returns its compiled form, refusing what
// the appliers cannot program. Both appliers use it so that a table the
// Fake accepts is one the Kernel accepts too.
func checkApplicable(t *Table) (*compiled, error) {
	c, err := compile(t)
	if err != nil {
		return nil, err
	}
	if len(t.Maps) > 0 {
		return nil, ErrMapsUnsupported
	}
	return c, nil
}
