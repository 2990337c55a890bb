package nft

import (
	"errors"
	"fmt"
	"sort"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/google/nftables"
	"github.com/google/nftables/binaryutil"
	"github.com/google/nftables/expr"
	"github.com/google/nftables/userdata"
	"github.com/mdlayher/netlink"
	"golang.org/x/sys/unix"
)

// Kernel is the Applier that programs nf_tables in one network namespace
// over netlink (github.com/google/nftables), never through the nft binary.
//
// It reads a table from the kernel the first time it is applied (and after
// Resync or a failed batch), then diffs each desired table against what it
// applied last, and sends only the difference, in one atomic batch. Objects
// of the table that are not desired are removed. A set whose key type or
// flags changed, or a base chain whose type, hook or priority changed, is
// recreated in the same batch. A chain's rules are compared as a sequence
// of rule identities (comment plus a hash of the rule text, kept in each
// rule's userdata); a chain whose sequence differs is flushed and refilled.
//
// The Kernel trusts what it applied last: if something else changes the
// table, call Resync, or an Apply that finds nothing to do sends nothing.
// (A batch that fails, e.g. because of such a change, is retried once after
// rereading the kernel.)
//
// Kernel is safe for concurrent use; calls are serialized.
type Kernel struct {
	mu    sync.Mutex
	fd    int // our duplicate of the namespace fd
	conn  *nftables.Conn
	known map[string]*compiled // per table: what the kernel holds; nil = absent. No entry = unknown.

	lastBatch []string // what the last Apply or Delete sent (for tests and debugging)
}

var _ Applier = (*Kernel)(nil)

// NewKernel returns a Kernel for the network namespace that nsFd refers to.
// nsFd must be an open network namespace file descriptor (e.g. from
// netns.Open): there is deliberately no value meaning "the current
// namespace", so that nothing programs the host's namespace by accident;
// a caller that means it opens /proc/thread-self/ns/net itself. The fd is
// duplicated; the caller may close its own. Close releases the Kernel.
func NewKernel(nsFd int) (*Kernel, error) {
	if nsFd <= 0 {
		return nil, fmt.Errorf("new nftables applier: %d is not a network namespace fd", nsFd)
	}
	var st unix.Statfs_t
	if err := unix.Fstatfs(nsFd, &st); err != nil {
		return nil, fmt.Errorf("new nftables applier: stat namespace fd %d: %w", nsFd, err)
	}
	if st.Type != unix.NSFS_MAGIC {
		return nil, fmt.Errorf("new nftables applier: fd %d is not a namespace", nsFd)
	}
	if typ, err := unix.IoctlRetInt(nsFd, unix.NS_GET_NSTYPE); err != nil || typ != unix.CLONE_NEWNET {
		return nil, fmt.Errorf("new nftables applier: fd %d is not a network namespace", nsFd)
	}
	fd, err := unix.FcntlInt(uintptr(nsFd), unix.F_DUPFD_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("new nftables applier: dup namespace fd: %w", err)
	}
	k := &Kernel{fd: fd, known: map[string]*compiled{}}
	if k.conn, err = k.newConn(); err != nil {
		unix.Close(fd)
		return nil, fmt.Errorf("new nftables applier: %w", err)
	}
	return k, nil
}

// newConn returns a netlink connection to the namespace. It opens a socket
// per operation (no lasting socket that a failed exchange could leave with
// unread replies).
func (k *Kernel) newConn() (*nftables.Conn, error) {
	return nftables.New(nftables.WithNetNSFd(k.fd), nftables.WithSockOptions(bigBuffers))
}

// bigBuffers raises the netlink socket buffers (best effort) so that a large
// batch fits in one send and a large dump is not dropped.
func bigBuffers(c *netlink.Conn) error {
	rc, err := c.SyscallConn()
	if err != nil {
		return nil
	}
	_ = rc.Control(func(fd uintptr) {
		_ = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_SNDBUFFORCE, 16<<20)
		_ = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_RCVBUFFORCE, 16<<20)
	})
	return nil
}

// Close releases the namespace fd. The Kernel must not be used afterwards.
func (k *Kernel) Close() error {
	k.mu.Lock()
	defer k.mu.Unlock()
	if k.fd <= 0 {
		return nil
	}
	err := unix.Close(k.fd)
	k.fd = -1
	return err
}

// Resync forgets what the Kernel believes the tables hold; the next Apply
// reads the kernel again. Use it when something else may have changed the
// table.
func (k *Kernel) Resync() {
	k.mu.Lock()
	defer k.mu.Unlock()
	k.known = map[string]*compiled{}
}

// Apply makes the kernel table equal to t (see Applier). An invalid table
// is refused before anything is sent. If a batch built from the cached
// state fails, the Kernel rereads the table and tries once more (a batch
// that fails changes nothing).
func (k *Kernel) Apply(t *Table) error {
	want, err := checkApplicable(t)
	if err != nil {
		return fmt.Errorf("apply table %s: %w", tableName(t), err)
	}
	k.mu.Lock()
	defer k.mu.Unlock()
	if k.fd <= 0 {
		return fmt.Errorf("apply table %s: %w", t.Name, errClosed)
	}
	have, cached := k.known[t.Name]
	for attempt := 0; ; attempt++ {
		if !cached {
			if have, err = k.read(t.Name); err != nil {
				return fmt.Errorf("apply table %s: %w", t.Name, err)
			}
		}
		b, err := k.newBatch(t.Name)
		if err != nil {
			return fmt.Errorf("apply table %s: %w", t.Name, err)
		}
		plan(b, want, have)
		k.lastBatch = b.ops
		if len(b.ops) == 0 {
			k.known[t.Name] = want
			return nil
		}
		err = b.flush()
		if err == nil {
			k.known[t.Name] = want
			return nil
		}
		delete(k.known, t.Name)
		if !cached || attempt > 0 {
			return fmt.Errorf("apply table %s: %w", t.Name, err)
		}
		cached = false // the cache may be stale: reread and retry once
	}
}

// Delete removes the named table from the namespace; an absent table is
// not an error.
func (k *Kernel) Delete(name string) error {
	k.mu.Lock()
	defer k.mu.Unlock()
	if k.fd <= 0 {
		return fmt.Errorf("delete table %s: %w", name, errClosed)
	}
	k.lastBatch = nil
	exists, err := k.exists(name)
	if err != nil {
		return fmt.Errorf("delete table %s: %w", name, err)
	}
	if exists {
		b, err := k.newBatch(name)
		if err != nil {
			return fmt.Errorf("delete table %s: %w", name, err)
		}
		b.op("delete table")
		b.conn.DelTable(b.table)
		k.lastBatch = b.ops
		if err := b.flush(); err != nil {
			delete(k.known, name)
			return fmt.Errorf("delete table %s: %w", name, err)
		}
	}
	k.known[name] = nil
	return nil
}

func (k *Kernel) exists(name string) (bool, error) {
	tables, err := k.conn.ListTablesOfFamily(nftables.TableFamilyINet)
	if err != nil {
		return false, fmt.Errorf("list tables: %w", err)
	}
	for _, t := range tables {
		if t.Name == name {
			return true, nil
		}
	}
	return false, nil
}

// read returns what the kernel holds of the named table, nil if absent.
// Sets of types hostnet does not model come back with nil keys, chains on
// unknown hooks with a hook that matches nothing, so that both are
// replaced.
func (k *Kernel) read(name string) (*compiled, error) {
	exists, err := k.exists(name)
	if err != nil || !exists {
		return nil, err
	}
	tbl := &nftables.Table{Name: name, Family: nftables.TableFamilyINet}
	c := &compiled{name: name, sets: map[string]*setState{}, chains: map[string]*chainState{}}
	sets, err := k.conn.GetSets(tbl)
	if err != nil {
		return nil, fmt.Errorf("list sets: %w", err)
	}
	for _, s := range sets {
		if s.Anonymous {
			continue
		}
		st := &setState{interval: s.Interval, elems: map[string]element{}}
		c.sets[s.Name] = st
		if s.IsMap {
			continue
		}
		var keys []KeyType
		for _, n := range strings.Split(s.KeyType.Name, " . ") {
			kt, ok := keyTypeByName[n]
			if !ok {
				keys = nil
				break
			}
			keys = append(keys, kt)
		}
		if keys == nil || keyLen(keys) != int(s.KeyType.Bytes) {
			continue
		}
		kel, err := k.conn.GetSetElements(s)
		if err != nil {
			return nil, fmt.Errorf("list elements of set %s: %w", s.Name, err)
		}
		elems, err := decodeElements(keys, s.Interval, kel)
		if err != nil {
			continue // unreadable: leave keys nil so the set is recreated
		}
		st.keys = keys
		for _, e := range elems {
			st.elems[e.canonical(keys)] = e
		}
	}
	chains, err := k.conn.ListChainsOfTableFamily(nftables.TableFamilyINet)
	if err != nil {
		return nil, fmt.Errorf("list chains: %w", err)
	}
	for _, ch := range chains {
		if ch.Table == nil || ch.Table.Name != name {
			continue
		}
		cs := &chainState{typ: ChainType(ch.Type)}
		if ch.Hooknum != nil {
			h, ok := hookByNum(*ch.Hooknum)
			if !ok {
				h = Hook(fmt.Sprintf("hook%d", *ch.Hooknum))
			}
			cs.hook = h
			if ch.Priority != nil {
				cs.prio = int(*ch.Priority)
			}
			cs.policy = VerdictAccept
			if ch.Policy != nil && *ch.Policy == nftables.ChainPolicyDrop {
				cs.policy = VerdictDrop
			}
		}
		rules, err := k.conn.GetRules(tbl, ch)
		if err != nil {
			return nil, fmt.Errorf("list rules of chain %s: %w", ch.Name, err)
		}
		for _, r := range rules {
			rs := ruleState{}
			rs.id, _ = userdata.GetString(r.UserData, userdata.TypeComment)
			for _, e := range r.Exprs {
				switch e := e.(type) {
				case *expr.Lookup:
					rs.refSets = append(rs.refSets, e.SetName)
				case *expr.Verdict:
					if e.Chain != "" {
						rs.refChains = append(rs.refChains, e.Chain)
					}
				}
			}
			cs.rules = append(cs.rules, rs)
		}
		c.chains[ch.Name] = cs
	}
	return c, nil
}

// batch accumulates the messages of one transaction, on a connection of
// its own (so that a batch abandoned on error is never sent), and a
// description of each (for errors, tests and debugging).
type batch struct {
	conn  *nftables.Conn
	table *nftables.Table
	ops   []string
	err   error
}

func (k *Kernel) newBatch(table string) (*batch, error) {
	conn, err := k.newConn()
	if err != nil {
		return nil, err
	}
	return &batch{conn: conn, table: &nftables.Table{Name: table, Family: nftables.TableFamilyINet}}, nil
}

func (b *batch) op(format string, args ...any) { b.ops = append(b.ops, fmt.Sprintf(format, args...)) }

func (b *batch) fail(err error) {
	if b.err == nil {
		b.err = err
	}
}

// flush sends the batch; on error the kernel has applied none of it.
func (b *batch) flush() error {
	if b.err != nil {
		return b.err // the queued messages die with the batch's connection
	}
	if err := b.conn.Flush(); err != nil {
		return fmt.Errorf("kernel refused the batch (%s): %w", summarize(b.ops), err)
	}
	return nil
}

func summarize(ops []string) string {
	const max = 6
	if len(ops) <= max {
		return strings.Join(ops, "; ")
	}
	return strings.Join(ops[:max], "; ") + fmt.Sprintf("; and %d more", len(ops)-max)
}

var setIDs atomic.Uint32

// plan queues on b the messages that turn have (nil: no table) into want.
// Order inside the batch: flush chains that change or go, delete chains,
// delete sets, delete elements, create sets, add elements, create chains
// (and update policies), add rules. Rules that reference a set or chain
// that is deleted are always flushed before it.
func plan(b *batch, want, have *compiled) {
	if have == nil {
		b.op("add table")
		b.conn.AddTable(b.table)
		have = &compiled{sets: map[string]*setState{}, chains: map[string]*chainState{}}
	}
	setGone := map[string]bool{}
	for name, hs := range have.sets {
		if ws, ok := want.sets[name]; !ok || !hs.sameShape(ws) {
			setGone[name] = true
		}
	}
	chainGone := map[string]bool{}
	for name, hc := range have.chains {
		if wc, ok := want.chains[name]; !ok || !hc.sameShape(wc) {
			chainGone[name] = true
		}
	}
	refill := map[string]bool{}
	for name, hc := range have.chains {
		if !chainGone[name] && (!sameRules(hc.rules, want.chains[name].rules) || refsGone(hc.rules, setGone, chainGone)) {
			refill[name] = true
		}
	}

	for _, name := range sortedKeys(have.chains) {
		if (refill[name] || chainGone[name]) && len(have.chains[name].rules) > 0 {
			b.op("flush chain %s", name)
			b.conn.FlushChain(&nftables.Chain{Name: name, Table: b.table})
		}
	}
	for _, name := range sortedKeys(have.chains) {
		if chainGone[name] {
			b.op("delete chain %s", name)
			b.conn.DelChain(&nftables.Chain{Name: name, Table: b.table})
		}
	}
	for _, name := range sortedKeys(have.sets) {
		if setGone[name] {
			b.op("delete set %s", name)
			b.conn.DelSet(&nftables.Set{Name: name, Table: b.table})
		}
	}
	for _, name := range sortedKeys(want.sets) {
		hs, ok := have.sets[name]
		if !ok || setGone[name] {
			continue
		}
		var del []element
		for canon, e := range hs.elems {
			if _, keep := want.sets[name].elems[canon]; !keep {
				del = append(del, e)
			}
		}
		b.elements(false, name, want.sets[name], del)
	}
	for _, name := range sortedKeys(want.sets) {
		if _, ok := have.sets[name]; ok && !setGone[name] {
			continue
		}
		ws := want.sets[name]
		b.op("add set %s", name)
		if err := b.conn.AddSet(kernelSet(b.table, name, ws), nil); err != nil {
			b.fail(fmt.Errorf("set %s: %w", name, err))
		}
		b.elements(true, name, ws, mapValues(ws.elems))
	}
	for _, name := range sortedKeys(want.sets) {
		hs, ok := have.sets[name]
		if !ok || setGone[name] {
			continue
		}
		var add []element
		for canon, e := range want.sets[name].elems {
			if _, had := hs.elems[canon]; !had {
				add = append(add, e)
			}
		}
		b.elements(true, name, want.sets[name], add)
	}
	for _, name := range want.chainOrder {
		wc := want.chains[name]
		hc, had := have.chains[name]
		switch {
		case !had || chainGone[name]:
			b.op("add chain %s", name)
		case wc.hook != "" && hc.policy != wc.policy:
			b.op("set policy of chain %s to %s", name, wc.policy)
		default:
			continue
		}
		b.conn.AddChain(kernelChain(b.table, name, wc))
	}
	for _, name := range want.chainOrder {
		_, had := have.chains[name]
		if had && !chainGone[name] && !refill[name] {
			continue
		}
		rules := want.chains[name].rules
		if len(rules) > 0 {
			b.op("add %d rules to chain %s", len(rules), name)
		}
		ch := &nftables.Chain{Name: name, Table: b.table}
		for _, r := range rules {
			b.conn.AddRule(&nftables.Rule{Table: b.table, Chain: ch, Exprs: r.exprs, UserData: r.userdata})
		}
	}
}

// elements queues the addition (or deletion) of elems to the set, in
// messages small enough for netlink's 16-bit attribute lengths.
func (b *batch) elements(add bool, name string, s *setState, elems []element) {
	if len(elems) == 0 {
		return
	}
	sort.Slice(elems, func(i, j int) bool { return elems[i].compare(elems[j]) < 0 })
	verb, prep := "delete", "from"
	if add {
		verb, prep = "add", "to"
	}
	b.op("%s %d elements %s set %s", verb, len(elems), prep, name)
	ks := &nftables.Set{Name: name, Table: b.table}
	const chunkBytes = 32 << 10
	var chunk []nftables.SetElement
	size := 0
	send := func() {
		if len(chunk) == 0 {
			return
		}
		var err error
		if add {
			err = b.conn.SetAddElements(ks, chunk)
		} else {
			err = b.conn.SetDeleteElements(ks, chunk)
		}
		if err != nil {
			b.fail(fmt.Errorf("%s elements %s set %s: %w", verb, prep, name, err))
		}
		chunk, size = nil, 0
	}
	for _, e := range elems {
		kel := e.kernelElements(s.interval)
		for _, x := range kel {
			size += 32 + len(x.Key) + len(x.KeyEnd)
		}
		chunk = append(chunk, kel...)
		if size >= chunkBytes {
			send()
		}
	}
	send()
}

// kernelSet describes a new set for google/nftables.
func kernelSet(t *nftables.Table, name string, s *setState) *nftables.Set {
	ks := &nftables.Set{
		Table:    t,
		Name:     name,
		ID:       setIDs.Add(1),
		Interval: s.interval,
		Comment:  s.comment,
	}
	if len(s.keys) > 1 {
		types := make([]nftables.SetDatatype, len(s.keys))
		for i, k := range s.keys {
			types[i] = keyDatatypes[k]
		}
		ks.KeyType = nftables.MustConcatSetType(types...)
		ks.Concatenation = true
	} else {
		ks.KeyType = keyDatatypes[s.keys[0]]
		if s.keys[0] == KeyIfname {
			ks.KeyByteOrder = binaryutil.NativeEndian
		} else {
			ks.KeyByteOrder = binaryutil.BigEndian
		}
	}
	return ks
}

// kernelChain describes a chain for google/nftables.
func kernelChain(t *nftables.Table, name string, c *chainState) *nftables.Chain {
	kc := &nftables.Chain{Name: name, Table: t}
	if c.hook == "" {
		return kc
	}
	kc.Type = nftables.ChainType(c.typ)
	kc.Hooknum = nftables.ChainHookRef(hookNums[c.hook])
	kc.Priority = nftables.ChainPriorityRef(nftables.ChainPriority(c.prio))
	p := nftables.ChainPolicyAccept
	if c.policy == VerdictDrop {
		p = nftables.ChainPolicyDrop
	}
	kc.Policy = &p
	return kc
}

func sameRules(a, b []ruleState) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i].id != b[i].id {
			return false
		}
	}
	return true
}

func refsGone(rules []ruleState, sets, chains map[string]bool) bool {
	for _, r := range rules {
		for _, s := range r.refSets {
			if sets[s] {
				return true
			}
		}
		for _, c := range r.refChains {
			if chains[c] {
				return true
			}
		}
	}
	return false
}

func sortedKeys[V any](m map[string]V) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

func mapValues(m map[string]element) []element {
	out := make([]element, 0, len(m))
	for _, e := range m {
		out = append(out, e)
	}
	return out
}

// errClosed reports use after Close.
var errClosed = errors.New("applier is closed")
