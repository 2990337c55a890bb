package nft

import (
	"encoding/binary"
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
// applied last, and sends only the difference, in one atomic batch. Tables
// are keyed by (family, name). Objects of the table that are not desired
// are removed. A set or map whose key type, value type or flags changed,
// or a base chain whose type, hook or priority changed, is recreated in
// the same batch. Map elements are diffed by key; an element whose value
// changed is deleted and re-added in the same batch. A chain's rules are
// compared as a sequence of rule identities (comment plus a hash of the
// rule text, kept in each rule's userdata); a chain whose sequence differs
// is flushed and refilled, with the anonymous sets of its rules.
//
// Patch changes tables incrementally (see TablePatch): it validates the
// patch against the cache, in which each set and map keeps its elements
// indexed by canonical text, and sends only the patch, in time
// proportional to the patch. ApplyAll and Patch send all their tables in
// one batch (nftables commits a netlink batch atomically, whatever tables
// it touches).
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
	known map[tableKey]*compiled // per table: what the kernel holds; nil = absent. No entry = unknown.
	// batches is the lasting netlink socket that batches are sent on
	// (nil: open one at the next batch). Closing an nfnetlink socket
	// waits for the kernel to finish releasing what the last transactions
	// removed (an RCU grace period, ~5-10 ms), so the Kernel keeps it open;
	// it replaces it after a failed or abandoned batch, whose replies or
	// queued messages must not reach the next one.
	batches *nftables.Conn

	lastBatch []string // what the last Apply, ApplyAll, Patch or Delete sent (for tests and debugging)
}

// tableKey identifies a table in a namespace.
type tableKey struct {
	family Family
	name   string
}

// String returns the name of an inet table, "bridge NAME" otherwise (the
// form errors use).
func (k tableKey) String() string {
	if k.family == FamilyInet {
		return k.name
	}
	return k.family.String() + " " + k.name
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
	k := &Kernel{fd: fd, known: map[tableKey]*compiled{}}
	if k.conn, err = k.newConn(); err != nil {
		unix.Close(fd)
		return nil, fmt.Errorf("new nftables applier: %w", err)
	}
	return k, nil
}

// newConn returns a netlink connection to the namespace for reading. It
// opens a socket per operation (no lasting socket that a failed exchange
// could leave with unread replies).
func (k *Kernel) newConn() (*nftables.Conn, error) {
	return nftables.New(nftables.WithNetNSFd(k.fd), nftables.WithSockOptions(bigBuffers))
}

// batchConn returns the lasting connection batches are sent on.
func (k *Kernel) batchConn() (*nftables.Conn, error) {
	if k.batches == nil {
		c, err := nftables.New(nftables.WithNetNSFd(k.fd), nftables.WithSockOptions(bigBuffers), nftables.AsLasting())
		if err != nil {
			return nil, err
		}
		k.batches = c
	}
	return k.batches, nil
}

// dropBatchConn closes the batch connection c if it is still the current
// one (the next batch opens a new one).
func (k *Kernel) dropBatchConn(c *nftables.Conn) {
	if c != nil && k.batches == c {
		_ = c.CloseLasting()
		k.batches = nil
	}
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
	k.dropBatchConn(k.batches)
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
	k.known = map[tableKey]*compiled{}
}

// Apply makes the kernel table (t.Family, t.Name) equal to t (see
// Applier). It is ApplyAll with one table.
func (k *Kernel) Apply(t *Table) error { return k.ApplyAll(t) }

// ApplyAll makes each kernel table equal to its desired content, as
// Apply does, in one atomic netlink batch for all of them: either every
// table changes or none does. Invalid tables, or two tables with the same
// family and name, are refused before anything is sent. If a batch built
// from the cached state fails, the Kernel rereads the tables and tries
// once more (a batch that fails changes nothing).
func (k *Kernel) ApplyAll(tables ...*Table) error {
	if len(tables) == 0 {
		return nil
	}
	wants, keys, err := checkTables("apply", tables)
	if err != nil {
		return err
	}
	what := "table " + keys[0].String()
	if len(keys) > 1 {
		what = "tables " + joinKeys(keys)
	}
	k.mu.Lock()
	defer k.mu.Unlock()
	if k.fd <= 0 {
		return fmt.Errorf("apply %s: %w", what, errClosed)
	}
	haves := make([]*compiled, len(keys))
	cachedAny := false
	for i, key := range keys {
		var ok bool
		if haves[i], ok = k.known[key]; ok {
			cachedAny = true
		} else if haves[i], err = k.read(key); err != nil {
			return fmt.Errorf("apply %s: read table %s: %w", what, key, err)
		}
	}
	for attempt := 0; ; attempt++ {
		b, err := k.newBatch(keys[0])
		if err != nil {
			return fmt.Errorf("apply %s: %w", what, err)
		}
		defer b.release()
		for i := range keys {
			b.section(keys[i], len(keys) > 1)
			plan(b, wants[i], haves[i])
		}
		k.lastBatch = b.ops
		if len(b.ops) == 0 {
			err = nil
		} else {
			err = b.flush()
		}
		if err == nil {
			for i, key := range keys {
				k.known[key] = wants[i]
			}
			return nil
		}
		for _, key := range keys {
			delete(k.known, key)
		}
		if !cachedAny || attempt > 0 {
			return fmt.Errorf("apply %s: %w", what, err)
		}
		// The cache may be stale: reread and retry once.
		for i, key := range keys {
			if haves[i], err = k.read(key); err != nil {
				return fmt.Errorf("apply %s: read table %s: %w", what, key, err)
			}
		}
	}
}

// TableExists tells whether the table (family, name) exists in the
// kernel (`nft list table FAMILY NAME` succeeds).
func (k *Kernel) TableExists(f Family, name string) (bool, error) {
	k.mu.Lock()
	defer k.mu.Unlock()
	return k.exists(tableKey{f, name})
}

// Drift implements Applier: `nft list table` of each table, compared with
// its desired content. A table that differs from what the Kernel last
// applied is also dropped from its cache, so that the next change rereads
// it rather than build on a state someone else changed.
func (k *Kernel) Drift(tables ...*Table) ([]string, error) {
	k.mu.Lock()
	defer k.mu.Unlock()
	if k.fd <= 0 {
		return nil, errClosed
	}
	wants, keys, err := checkTables("drift of", tables)
	if err != nil {
		return nil, err
	}
	b := &batch{}
	for i, want := range wants {
		key := keys[i]
		have, err := k.read(key)
		if err != nil {
			return nil, fmt.Errorf("drift of table %s: read: %w", key, err)
		}
		b.section(key, true)
		n := len(b.ops)
		plan(b, want, have)
		if len(b.ops) > n {
			delete(k.known, key)
		}
	}
	return b.ops, nil
}

// Patch applies incremental changes to tables the Kernel holds (see
// TablePatch for their meaning and order), all in one atomic netlink
// batch, whatever their tables and families. Empty patches are ignored.
//
// Each patch is validated against the Kernel's cache of its table: an
// unknown table, set, map or chain, an element text that is not valid for
// the key or value type, an overlapping interval, a chain that exists
// already, or the deletion of a chain still referenced after the patch is
// an error naming the patch and the object, and nothing is sent. A table
// the Kernel has not cached (never applied by it, or after Resync) is
// read from the kernel first, once. The time spent in Go is proportional
// to the size of the patches: no table is re-rendered, re-validated or
// diffed.
//
// The cache changes only when the kernel accepts the batch. If it refuses
// a batch built from the cache, the Kernel rereads the tables and tries
// once more; on a second refusal the error describes the batch (the
// kernel does not say which message failed) and neither the kernel nor
// the cache has changed.
func (k *Kernel) Patch(patches ...TablePatch) error {
	keys, err := checkPatches(patches)
	if err != nil || len(keys) == 0 {
		return err
	}
	k.mu.Lock()
	defer k.mu.Unlock()
	if k.fd <= 0 {
		return fmt.Errorf("patch: %w", errClosed)
	}
	states := make(map[tableKey]*compiled, len(keys))
	cachedAny := false
	for attempt := 0; ; attempt++ {
		for _, key := range keys {
			if attempt == 0 {
				if st, ok := k.known[key]; ok {
					if st == nil {
						return fmt.Errorf("patch: table %s does not exist (apply it first)", key)
					}
					states[key] = st
					cachedAny = true
					continue
				}
			}
			st, err := k.read(key)
			if err != nil {
				return fmt.Errorf("patch: read table %s: %w", key, err)
			}
			if st == nil {
				k.known[key] = nil
				return fmt.Errorf("patch: table %s does not exist (apply it first)", key)
			}
			states[key] = st
		}
		b, err := k.newBatch(keys[0])
		if err != nil {
			return fmt.Errorf("patch: %w", err)
		}
		defer b.release()
		run := &patchRun{b: b, multiple: len(keys) > 1}
		for i, p := range patches {
			if p.Empty() {
				continue
			}
			if err := run.apply(i, p, states[p.key()]); err != nil {
				run.rollback()
				return fmt.Errorf("patch: %w", err)
			}
		}
		k.lastBatch = b.ops
		if len(b.ops) == 0 {
			err = nil
		} else {
			err = b.flush()
		}
		if err == nil {
			for _, key := range keys {
				k.known[key] = states[key]
			}
			return nil
		}
		run.rollback()
		if !cachedAny || attempt > 0 {
			// The states were just read (and are rolled back): they are
			// what the kernel holds.
			for _, key := range keys {
				k.known[key] = states[key]
			}
			return fmt.Errorf("patch %s: %w", joinKeys(keys), err)
		}
		for _, key := range keys {
			delete(k.known, key) // the cache may be stale: reread and retry once
		}
	}
}

// checkPatches returns the distinct tables of the patches that change
// something, in order; a patch naming an invalid family or table name is
// an error.
func checkPatches(patches []TablePatch) ([]tableKey, error) {
	var keys []tableKey
	seen := map[tableKey]bool{}
	for i, p := range patches {
		if p.Empty() {
			continue
		}
		if !p.Family.valid() {
			return nil, fmt.Errorf("patch: patch %d (table %s): invalid family %d", i, p.Table, int(p.Family))
		}
		if !nameRE.MatchString(p.Table) {
			return nil, fmt.Errorf("patch: patch %d: invalid table name %q", i, p.Table)
		}
		if !seen[p.key()] {
			seen[p.key()] = true
			keys = append(keys, p.key())
		}
	}
	return keys, nil
}

// joinKeys renders table keys for errors: "hostnet, bridge hostnet".
func joinKeys(keys []tableKey) string {
	s := make([]string, len(keys))
	for i, k := range keys {
		s[i] = k.String()
	}
	return strings.Join(s, ", ")
}

// Delete removes the inet table name from the namespace; an absent table
// is not an error.
func (k *Kernel) Delete(name string) error { return k.DeleteTable(FamilyInet, name) }

// DeleteTable removes the table (family, name) from the namespace; an
// absent table is not an error.
func (k *Kernel) DeleteTable(family Family, name string) error {
	key := tableKey{family, name}
	k.mu.Lock()
	defer k.mu.Unlock()
	if k.fd <= 0 {
		return fmt.Errorf("delete table %s: %w", key, errClosed)
	}
	if !family.valid() {
		return fmt.Errorf("delete table %s: invalid family", key)
	}
	k.lastBatch = nil
	exists, err := k.exists(key)
	if err != nil {
		return fmt.Errorf("delete table %s: %w", key, err)
	}
	if exists {
		b, err := k.newBatch(key)
		if err != nil {
			return fmt.Errorf("delete table %s: %w", key, err)
		}
		defer b.release()
		b.op("delete table")
		b.conn.DelTable(b.table)
		k.lastBatch = b.ops
		if err := b.flush(); err != nil {
			delete(k.known, key)
			return fmt.Errorf("delete table %s: %w", key, err)
		}
	}
	k.known[key] = nil
	return nil
}

func (k *Kernel) exists(key tableKey) (bool, error) {
	tables, err := k.conn.ListTablesOfFamily(key.family.kernel())
	if err != nil {
		return false, fmt.Errorf("list tables: %w", err)
	}
	for _, t := range tables {
		if t.Name == key.name {
			return true, nil
		}
	}
	return false, nil
}

// read returns what the kernel holds of the table, nil if absent. Sets and
// maps of types hostnet does not model come back with nil keys, chains on
// unknown hooks with a hook that matches nothing, so that both are
// replaced.
func (k *Kernel) read(key tableKey) (*compiled, error) {
	exists, err := k.exists(key)
	if err != nil || !exists {
		return nil, err
	}
	tbl := &nftables.Table{Name: key.name, Family: key.family.kernel()}
	c := newCompiled(key.family, key.name)
	sets, err := k.listSets(tbl)
	if err != nil {
		return nil, fmt.Errorf("list sets: %w", err)
	}
	for _, s := range sets {
		if s.flags&unix.NFT_SET_ANONYMOUS != 0 {
			continue
		}
		interval := s.flags&unix.NFT_SET_INTERVAL != 0
		ks := &nftables.Set{Table: tbl, Name: s.name}
		if s.flags&unix.NFT_SET_MAP != 0 {
			ms := &mapState{interval: interval, elems: map[string]mapElem{}}
			c.maps[s.name] = ms
			keys, ok := keysFromMagic(s.keyType, s.keyLen)
			if !ok {
				continue
			}
			var vals []KeyType
			if s.dataType != unix.NFT_DATA_VERDICT {
				if vals, ok = keysFromMagic(s.dataType, s.dataLen); !ok {
					continue
				}
			}
			kel, err := k.conn.GetSetElements(ks)
			if err != nil {
				return nil, fmt.Errorf("list elements of map %s: %w", s.name, err)
			}
			elems, err := decodeMapElements(keys, vals, interval, kel)
			if err != nil {
				continue // unreadable: leave keys nil so the map is recreated
			}
			ms.keys, ms.vals, ms.verdict = keys, vals, vals == nil
			for _, e := range elems {
				ms.elems[e.key.canonical(keys)] = e
			}
			continue
		}
		st := &setState{interval: interval, elems: map[string]element{}}
		c.sets[s.name] = st
		keys, ok := keysFromMagic(s.keyType, s.keyLen)
		if !ok {
			continue
		}
		kel, err := k.conn.GetSetElements(ks)
		if err != nil {
			return nil, fmt.Errorf("list elements of set %s: %w", s.name, err)
		}
		elems, err := decodeElements(keys, interval, kel)
		if err != nil {
			continue // unreadable: leave keys nil so the set is recreated
		}
		st.keys = keys
		for _, e := range elems {
			st.elems[e.canonical(keys)] = e
		}
	}
	chains, err := k.conn.ListChainsOfTableFamily(tbl.Family)
	if err != nil {
		return nil, fmt.Errorf("list chains: %w", err)
	}
	for _, ch := range chains {
		if ch.Table == nil || ch.Table.Name != key.name {
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
	c.countRefs()
	return c, nil
}

// setInfo is what the kernel says of a set or map.
type setInfo struct {
	name              string
	flags             uint32
	keyType, keyLen   uint32
	dataType, dataLen uint32
}

// listSets dumps the sets and maps of a table. It speaks netlink itself
// rather than using google/nftables' GetSets, which (v0.3.0) loses the key
// type of a verdict map.
func (k *Kernel) listSets(t *nftables.Table) ([]setInfo, error) {
	conn, err := netlink.Dial(unix.NETLINK_NETFILTER, &netlink.Config{NetNS: k.fd})
	if err != nil {
		return nil, err
	}
	defer conn.Close()
	_ = bigBuffers(conn)
	attrs, err := netlink.MarshalAttributes([]netlink.Attribute{{Type: unix.NFTA_SET_TABLE, Data: []byte(t.Name + "\x00")}})
	if err != nil {
		return nil, err
	}
	msgs, err := conn.Execute(netlink.Message{
		Header: netlink.Header{
			Type:  netlink.HeaderType(unix.NFNL_SUBSYS_NFTABLES<<8 | unix.NFT_MSG_GETSET),
			Flags: netlink.Request | netlink.Dump,
		},
		Data: append([]byte{byte(t.Family), unix.NFNETLINK_V0, 0, 0}, attrs...),
	})
	if err != nil {
		return nil, err
	}
	var out []setInfo
	for _, m := range msgs {
		if len(m.Data) < 4 {
			continue
		}
		ad, err := netlink.NewAttributeDecoder(m.Data[4:])
		if err != nil {
			return nil, err
		}
		ad.ByteOrder = binary.BigEndian
		var s setInfo
		var table string
		for ad.Next() {
			switch ad.Type() {
			case unix.NFTA_SET_TABLE:
				table = ad.String()
			case unix.NFTA_SET_NAME:
				s.name = ad.String()
			case unix.NFTA_SET_FLAGS:
				s.flags = ad.Uint32()
			case unix.NFTA_SET_KEY_TYPE:
				s.keyType = ad.Uint32()
			case unix.NFTA_SET_KEY_LEN:
				s.keyLen = ad.Uint32()
			case unix.NFTA_SET_DATA_TYPE:
				s.dataType = ad.Uint32()
			case unix.NFTA_SET_DATA_LEN:
				s.dataLen = ad.Uint32()
			}
		}
		if err := ad.Err(); err != nil {
			return nil, err
		}
		if table == t.Name {
			out = append(out, s)
		}
	}
	return out, nil
}

// batch accumulates the messages of one transaction on the Kernel's
// lasting batch connection (which is replaced if the batch is abandoned or
// fails, so that its messages and replies never mix with the next batch's),
// and a description of each (for errors, tests and debugging). A batch
// without a connection (the Fake's) only records the descriptions.
//
// A batch may span several tables: section switches the table that the
// following messages address.
type batch struct {
	owner  *Kernel // whose lasting connection conn is (nil for the Fake's)
	sent   bool    // flushed successfully
	conn   *nftables.Conn
	table  *nftables.Table
	prefix string // "FAMILY NAME: " before each op when the batch spans several tables
	bridge bool   // a section addresses a bridge table
	ops    []string
	err    error
}

// newBatch returns a batch on the Kernel's lasting connection, addressing
// table key. The caller must release it.
func (k *Kernel) newBatch(key tableKey) (*batch, error) {
	conn, err := k.batchConn()
	if err != nil {
		return nil, err
	}
	b := &batch{owner: k, conn: conn}
	b.section(key, false)
	return b, nil
}

// release abandons a batch that was not sent: its queued messages must
// not go out with the next batch, so the connection is replaced.
func (b *batch) release() {
	if b.owner != nil && !b.sent && len(b.ops) > 0 {
		b.owner.dropBatchConn(b.conn)
	}
}

// section makes the following messages address the table key; with named,
// their descriptions start with the table's family and name.
func (b *batch) section(key tableKey, named bool) {
	b.table = &nftables.Table{Name: key.name, Family: key.family.kernel()}
	b.prefix = ""
	if named {
		b.prefix = key.family.String() + " " + key.name + ": "
	}
	if key.family == FamilyBridge {
		b.bridge = true
	}
}

func (b *batch) op(format string, args ...any) {
	b.ops = append(b.ops, b.prefix+fmt.Sprintf(format, args...))
}

func (b *batch) fail(err error) {
	if b.err == nil {
		b.err = err
	}
}

// flush sends the batch; on error the kernel has applied none of it (and
// the connection, which may hold unread replies, is replaced).
func (b *batch) flush() error {
	if b.err != nil {
		b.release() // the queued messages die with the connection
		return b.err
	}
	if err := b.conn.Flush(); err != nil {
		if b.owner != nil {
			b.owner.dropBatchConn(b.conn)
		}
		hint := ""
		if b.bridge && errors.Is(err, unix.EPROTO) {
			hint = " (ct expressions in a bridge table need nf_conntrack_bridge, which this kernel lacks)"
		}
		return fmt.Errorf("kernel refused the batch (%s)%s: %w", summarize(b.ops), hint, err)
	}
	b.sent = true
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

// The batch's messages. Without a connection they do nothing.

func (b *batch) addTable() {
	if b.conn != nil {
		b.conn.AddTable(b.table)
	}
}

func (b *batch) flushChain(name string) {
	if b.conn != nil {
		b.conn.FlushChain(&nftables.Chain{Name: name, Table: b.table})
	}
}

func (b *batch) delChain(name string) {
	if b.conn != nil {
		b.conn.DelChain(&nftables.Chain{Name: name, Table: b.table})
	}
}

func (b *batch) addChain(c *nftables.Chain) {
	if b.conn != nil {
		b.conn.AddChain(c)
	}
}

func (b *batch) delSet(name string) {
	if b.conn != nil {
		b.conn.DelSet(&nftables.Set{Name: name, Table: b.table})
	}
}

func (b *batch) addSet(kind, name string, s *nftables.Set) {
	if b.conn == nil {
		return
	}
	if err := b.conn.AddSet(s, nil); err != nil {
		b.fail(fmt.Errorf("%s %s: %w", kind, name, err))
	}
}

func (b *batch) addRule(chain string, r ruleState) {
	if b.conn == nil {
		return
	}
	for _, a := range r.anon {
		s := a.set
		s.Table = b.table
		if err := b.conn.AddSet(&s, a.elems); err != nil {
			b.fail(fmt.Errorf("chain %s: rule %q: anonymous set: %w", chain, r.id, err))
		}
	}
	b.conn.AddRule(&nftables.Rule{Table: b.table, Chain: &nftables.Chain{Name: chain, Table: b.table}, Exprs: r.exprs, UserData: r.userdata})
}

// plan queues on b the messages that turn have (nil: no table) into want.
// Order inside the batch: flush chains that change or go; delete the map
// elements that go, change value, or jump to a chain that goes; delete
// maps; delete chains; delete sets; delete set elements; create sets and
// add their elements; create maps; create chains (and update policies);
// add map elements (after the chains they jump to); add rules (after the
// sets and maps they use). So a chain is never deleted while a rule or a
// map element still references it, and nothing is referenced before it
// exists.
func plan(b *batch, want, have *compiled) {
	if have == nil {
		b.op("add table")
		b.addTable()
		have = newCompiled(want.family, want.name)
	}
	setGone := map[string]bool{}
	for name, hs := range have.sets {
		if ws, ok := want.sets[name]; !ok || !hs.sameShape(ws) {
			setGone[name] = true
		}
	}
	mapGone := map[string]bool{}
	for name, hm := range have.maps {
		if wm, ok := want.maps[name]; !ok || !hm.sameShape(wm) {
			mapGone[name] = true
		}
	}
	chainGone := map[string]bool{}
	for name, hc := range have.chains {
		if wc, ok := want.chains[name]; !ok || !hc.sameShape(wc) {
			chainGone[name] = true
		}
	}
	lookupGone := map[string]bool{} // sets and maps that rules must stop using
	for name := range setGone {
		lookupGone[name] = true
	}
	for name := range mapGone {
		lookupGone[name] = true
	}
	refill := map[string]bool{}
	for name, hc := range have.chains {
		if !chainGone[name] && (!sameRules(hc.rules, want.chains[name].rules) || refsGone(hc.rules, lookupGone, chainGone)) {
			refill[name] = true
		}
	}
	// Elements of kept maps to delete and to add.
	mapDel, mapAdd := map[string][]mapElem{}, map[string][]mapElem{}
	for _, name := range sortedKeys(want.maps) {
		wm := want.maps[name]
		hm, ok := have.maps[name]
		if !ok || mapGone[name] {
			mapAdd[name] = mapElemValues(wm.elems)
			continue
		}
		for canon, he := range hm.elems {
			we, keep := wm.elems[canon]
			retarget := hm.verdict && chainGone[he.verdict.Chain]
			if !keep || we.text != he.text || retarget {
				mapDel[name] = append(mapDel[name], he)
			}
			if keep && (we.text != he.text || retarget) {
				mapAdd[name] = append(mapAdd[name], we)
			}
		}
		for canon, we := range wm.elems {
			if _, had := hm.elems[canon]; !had {
				mapAdd[name] = append(mapAdd[name], we)
			}
		}
	}

	for _, name := range sortedKeys(have.chains) {
		if (refill[name] || chainGone[name]) && len(have.chains[name].rules) > 0 {
			b.op("flush chain %s", name)
			b.flushChain(name)
		}
	}
	for _, name := range sortedKeys(mapDel) {
		b.mapElements(false, name, have.maps[name], mapDel[name])
	}
	for _, name := range sortedKeys(have.maps) {
		if mapGone[name] {
			b.op("delete map %s", name)
			b.delSet(name)
		}
	}
	for _, name := range sortedKeys(have.chains) {
		if chainGone[name] {
			b.op("delete chain %s", name)
			b.delChain(name)
		}
	}
	for _, name := range sortedKeys(have.sets) {
		if setGone[name] {
			b.op("delete set %s", name)
			b.delSet(name)
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
		b.addSet("set", name, kernelSet(b.table, name, ws))
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
	for _, name := range sortedKeys(want.maps) {
		if _, ok := have.maps[name]; ok && !mapGone[name] {
			continue
		}
		b.op("add map %s", name)
		b.addSet("map", name, kernelMap(b.table, name, want.maps[name]))
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
		b.addChain(kernelChain(b.table, name, wc))
	}
	for _, name := range sortedKeys(mapAdd) {
		b.mapElements(true, name, want.maps[name], mapAdd[name])
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
		for _, r := range rules {
			b.addRule(name, r)
		}
	}
}

// elements queues the addition (or deletion) of elems to the set.
func (b *batch) elements(add bool, name string, s *setState, elems []element) {
	if len(elems) == 0 {
		return
	}
	sort.Slice(elems, func(i, j int) bool { return elems[i].compare(elems[j]) < 0 })
	groups := make([][]nftables.SetElement, len(elems))
	for i, e := range elems {
		groups[i] = e.kernelElements(s.interval)
	}
	b.sendElements(add, "set", name, groups)
}

// mapElements queues the addition (or deletion) of elems to the map.
func (b *batch) mapElements(add bool, name string, m *mapState, elems []mapElem) {
	if len(elems) == 0 {
		return
	}
	sort.Slice(elems, func(i, j int) bool { return elems[i].key.compare(elems[j].key) < 0 })
	groups := make([][]nftables.SetElement, len(elems))
	for i, e := range elems {
		groups[i] = e.kernelElements(m.interval, m.verdict)
	}
	b.sendElements(add, "map", name, groups)
}

// sendElements queues groups of kernel elements (one group per element)
// in messages small enough for netlink's 16-bit attribute lengths.
func (b *batch) sendElements(add bool, kind, name string, groups [][]nftables.SetElement) {
	verb, prep := "delete", "from"
	if add {
		verb, prep = "add", "to"
	}
	b.op("%s %d elements %s %s %s", verb, len(groups), prep, kind, name)
	if b.conn == nil {
		return
	}
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
			b.fail(fmt.Errorf("%s elements %s %s %s: %w", verb, prep, kind, name, err))
		}
		chunk, size = nil, 0
	}
	for _, kel := range groups {
		for _, x := range kel {
			size += 48 + len(x.Key) + len(x.KeyEnd) + len(x.Val)
			if x.VerdictData != nil {
				size += len(x.VerdictData.Chain)
			}
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
		KeyType:  datatype(s.keys),
	}
	ks.Concatenation = len(s.keys) > 1
	ks.KeyByteOrder = keyByteOrder(s.keys)
	return ks
}

// keyByteOrder is the byte order nft records for a key type (it only
// affects how `nft list` shows elements).
func keyByteOrder(keys []KeyType) binaryutil.ByteOrder {
	if len(keys) == 1 && keys[0] == KeyIfname {
		return binaryutil.NativeEndian
	}
	return binaryutil.BigEndian
}

// kernelMap describes a new map for google/nftables.
func kernelMap(t *nftables.Table, name string, m *mapState) *nftables.Set {
	ks := &nftables.Set{
		Table:         t,
		Name:          name,
		ID:            setIDs.Add(1),
		IsMap:         true,
		Interval:      m.interval,
		Comment:       m.comment,
		KeyType:       datatype(m.keys),
		Concatenation: len(m.keys) > 1,
		KeyByteOrder:  keyByteOrder(m.keys),
		DataType:      nftables.TypeVerdict,
	}
	if !m.verdict {
		ks.DataType = datatype(m.vals)
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

func mapElemValues(m map[string]mapElem) []mapElem {
	out := make([]mapElem, 0, len(m))
	for _, e := range m {
		out = append(out, e)
	}
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
