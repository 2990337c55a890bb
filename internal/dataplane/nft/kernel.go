package nft

import (
	"encoding/binary"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/google/nftables"
	"github.com/hostnet/hostnet/internal/nftmodel"
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
// is flushed and refilled, with the anonymous sets of its rules. A dynamic
// set's elements are its rules' (nftmodel.Set.Dynamic): they are never
// read, diffed or removed, so an Apply leaves the flows they record.
//
// Patch changes tables incrementally (see TablePatch): it validates the
// patch against the cache, in which each set and map keeps its elements
// indexed by canonical text, and sends only the patch, in time
// proportional to the patch. ApplyAll and Patch send all their tables in
// one batch (nftables commits a netlink batch atomically, whatever tables
// it touches).
//
// What the Kernel sends is planned by nftmodel (Batch.Plan, PatchAll) and
// translated here one step, one expression at a time.
//
// The Kernel trusts what it applied last: if something else changes the
// table, call Resync, or an Apply that finds nothing to do sends nothing.
// (A batch that fails, e.g. because of such a change, is retried once after
// rereading the kernel.)
//
// Kernel is safe for concurrent use; calls are serialized.
type Kernel struct {
	mu   sync.Mutex
	fd   int // our duplicate of the namespace fd
	conn *nftables.Conn
	// known holds, per table, what the kernel holds; nil = absent. No
	// entry = unknown.
	known map[nftmodel.TableKey]*nftmodel.State
	// batches is the lasting netlink socket that batches are sent on
	// (nil: open one at the next batch). Closing an nfnetlink socket
	// waits for the kernel to finish releasing what the last transactions
	// removed (an RCU grace period, ~5-10 ms), so the Kernel keeps it open;
	// it replaces it after a failed or abandoned batch, whose replies or
	// queued messages must not reach the next one.
	batches *nftables.Conn

	lastBatch []string // what the last Apply, ApplyAll, Patch or Delete sent (for tests and debugging)
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
	k := &Kernel{fd: fd, known: map[nftmodel.TableKey]*nftmodel.State{}}
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
	k.known = map[nftmodel.TableKey]*nftmodel.State{}
}

// Apply makes the kernel table (t.Family, t.Name) equal to t (see
// Applier). It is ApplyAll with one table.
func (k *Kernel) Apply(t *nftmodel.Table) error { return k.ApplyAll(t) }

// ApplyAll makes each kernel table equal to its desired content, as
// Apply does, in one atomic netlink batch for all of them: either every
// table changes or none does. Invalid tables, two tables with the same
// family and name, or a change the kernel would refuse (an interval
// element that clashes) are refused before anything is sent. If a batch
// built from the cached state fails, the Kernel rereads the tables and
// tries once more (a batch that fails changes nothing).
func (k *Kernel) ApplyAll(tables ...*nftmodel.Table) error {
	if len(tables) == 0 {
		return nil
	}
	wants, err := nftmodel.CompileAll(tables...)
	if err != nil {
		return fmt.Errorf("apply %w", err)
	}
	keys := tableKeys(wants)
	what := "table " + keys[0].String()
	if len(keys) > 1 {
		what = "tables " + joinKeys(keys)
	}
	return k.commit(change{op: "apply", what: what, keys: keys,
		build: func(haves []*nftmodel.State) (*nftmodel.Batch, []*nftmodel.State, func(), error) {
			b, refused := plan(wants, haves, len(wants) > 1)
			if refused != nil {
				return nil, nil, nil, fmt.Errorf("apply %w", refused)
			}
			return b, wants, nil, nil
		}})
}

// Patch applies incremental changes to tables the Kernel holds (see
// TablePatch for their meaning and order), all in one atomic netlink
// batch, whatever their tables and families. Empty patches are ignored.
//
// Each patch is validated against the Kernel's cache of its table: an
// unknown table, set, map or chain, an element text that is not valid for
// the key or value type, an interval element the kernel would refuse, a
// chain that exists already, or the deletion of a chain still referenced
// after the patch is an error naming the patch and the object, and nothing
// is sent. A table the Kernel has not cached (never applied by it, or
// after Resync) is read from the kernel first, once. The time spent in Go
// is proportional to the size of the patches: no table is re-rendered,
// re-validated or diffed.
//
// The cache changes only when the kernel accepts the batch. If it refuses
// a batch built from the cache, the Kernel rereads the tables and tries
// once more; on a second refusal the error describes the batch (the
// kernel does not say which message failed) and neither the kernel nor
// the cache has changed.
func (k *Kernel) Patch(patches ...nftmodel.TablePatch) error {
	keys, err := nftmodel.PatchTables(patches)
	if err != nil || len(keys) == 0 {
		return wrapPatch(err)
	}
	return k.commit(change{op: "patch", what: joinKeys(keys), keys: keys,
		build: func(haves []*nftmodel.State) (*nftmodel.Batch, []*nftmodel.State, func(), error) {
			run, err := nftmodel.PatchAll(patches, patchStates(keys, haves))
			if err != nil {
				return nil, nil, nil, wrapPatch(err)
			}
			return run.Batch(), haves, run.Rollback, nil
		}})
}

// patchStates indexes the states of the tables a patch changes (nil for
// an absent one).
func patchStates(keys []nftmodel.TableKey, haves []*nftmodel.State) map[nftmodel.TableKey]*nftmodel.State {
	states := make(map[nftmodel.TableKey]*nftmodel.State, len(keys))
	for i, key := range keys {
		states[key] = haves[i]
	}
	return states
}

// wrapPatch prefixes an error of Patch (nil stays nil).
func wrapPatch(err error) error {
	if err == nil {
		return nil
	}
	return fmt.Errorf("patch: %w", err)
}

// change is one atomic change of tables of the namespace (see commit).
type change struct {
	op   string // "apply", "patch": how errors start
	what string // the tables, for errors
	keys []nftmodel.TableKey
	// build queues the batch against haves (the tables' states, in the
	// order of keys; nil for an absent table) and returns the states the
	// tables hold once the kernel accepts it; undo, if not nil, restores
	// haves after the kernel refuses it. An error refuses the change.
	build func(haves []*nftmodel.State) (b *nftmodel.Batch, after []*nftmodel.State, undo func(), err error)
}

// commit makes a change: it builds the batch against the cached states
// (tables not cached are read first), sends it, and caches the result. If
// the kernel refuses a batch built from the cache (which may be stale), it
// rereads the tables and builds and sends it once more. A refused batch
// changes nothing; the cache then holds the states just read.
func (k *Kernel) commit(c change) error {
	k.mu.Lock()
	defer k.mu.Unlock()
	if k.fd <= 0 {
		return fmt.Errorf("%s %s: %w", c.op, c.what, errClosed)
	}
	haves := make([]*nftmodel.State, len(c.keys))
	cached := false
	for i, key := range c.keys {
		if st, ok := k.known[key]; ok {
			haves[i], cached = st, true
		} else if err := k.reread(c, haves, i); err != nil {
			return err
		}
	}
	for attempt := 0; ; attempt++ {
		b, after, undo, err := c.build(haves)
		if err != nil {
			return err
		}
		k.lastBatch = b.Ops()
		if err = k.send(b); err == nil {
			for i, key := range c.keys {
				k.known[key] = after[i]
			}
			return nil
		}
		if undo != nil {
			undo()
		}
		if !cached || attempt > 0 {
			return fmt.Errorf("%s %s: %w", c.op, c.what, err)
		}
		for i := range c.keys {
			if err := k.reread(c, haves, i); err != nil {
				return err
			}
		}
	}
}

// reread reads table i of a change into haves and the cache.
func (k *Kernel) reread(c change, haves []*nftmodel.State, i int) error {
	st, err := k.read(c.keys[i])
	if err != nil {
		delete(k.known, c.keys[i])
		return fmt.Errorf("%s %s: read table %s: %w", c.op, c.what, c.keys[i], err)
	}
	haves[i], k.known[c.keys[i]] = st, st
	return nil
}

// TableExists tells whether the table (family, name) exists in the
// kernel (`nft list table FAMILY NAME` succeeds).
func (k *Kernel) TableExists(f nftmodel.Family, name string) (bool, error) {
	k.mu.Lock()
	defer k.mu.Unlock()
	return k.exists(nftmodel.TableKey{Family: f, Name: name})
}

// Drift implements Applier: `nft list table` of each table, compared with
// its desired content. A table that differs from what the Kernel last
// applied is also dropped from its cache, so that the next change rereads
// it rather than build on a state someone else changed.
func (k *Kernel) Drift(tables ...*nftmodel.Table) ([]string, error) {
	k.mu.Lock()
	defer k.mu.Unlock()
	if k.fd <= 0 {
		return nil, errClosed
	}
	wants, err := nftmodel.CompileAll(tables...)
	if err != nil {
		return nil, fmt.Errorf("drift of %w", err)
	}
	haves := make([]*nftmodel.State, len(wants))
	for i, want := range wants {
		if haves[i], err = k.read(want.Key()); err != nil {
			return nil, fmt.Errorf("drift of table %s: read: %w", want.Key(), err)
		}
	}
	b, _ := plan(wants, haves, true) // a table the kernel would refuse to take still differs
	for key := range drifted(b) {
		delete(k.known, key)
	}
	return b.Ops(), nil
}

// Delete removes the inet table name from the namespace; an absent table
// is not an error.
func (k *Kernel) Delete(name string) error { return k.DeleteTable(nftmodel.FamilyInet, name) }

// DeleteTable removes the table (family, name) from the namespace; an
// absent table is not an error.
func (k *Kernel) DeleteTable(family nftmodel.Family, name string) error {
	key := nftmodel.TableKey{Family: family, Name: name}
	k.mu.Lock()
	defer k.mu.Unlock()
	if k.fd <= 0 {
		return fmt.Errorf("delete table %s: %w", key, errClosed)
	}
	if !family.Valid() {
		return fmt.Errorf("delete table %s: invalid family", key)
	}
	k.lastBatch = nil
	exists, err := k.exists(key)
	if err != nil {
		return fmt.Errorf("delete table %s: %w", key, err)
	}
	if exists {
		conn, err := k.batchConn()
		if err != nil {
			return fmt.Errorf("delete table %s: %w", key, err)
		}
		conn.DelTable(kernelTable(key))
		k.lastBatch = []string{"delete table"}
		if err := k.flush(conn, k.lastBatch, family == nftmodel.FamilyBridge); err != nil {
			delete(k.known, key)
			return fmt.Errorf("delete table %s: %w", key, err)
		}
	}
	k.known[key] = nil
	return nil
}

func (k *Kernel) exists(key nftmodel.TableKey) (bool, error) {
	tables, err := k.conn.ListTablesOfFamily(kernelTable(key).Family)
	if err != nil {
		return false, fmt.Errorf("list tables: %w", err)
	}
	for _, t := range tables {
		if t.Name == key.Name {
			return true, nil
		}
	}
	return false, nil
}

// read returns what the kernel holds of the table, nil if absent. Sets and
// maps of types hostnet does not model come back without keys, chains on
// unknown hooks with a hook that matches nothing, so that both are
// replaced.
func (k *Kernel) read(key nftmodel.TableKey) (*nftmodel.State, error) {
	exists, err := k.exists(key)
	if err != nil || !exists {
		return nil, err
	}
	tbl := kernelTable(key)
	st := nftmodel.NewState(key.Family, key.Name)
	sets, err := k.listSets(tbl)
	if err != nil {
		return nil, fmt.Errorf("list sets: %w", err)
	}
	for _, s := range sets {
		if s.flags&unix.NFT_SET_ANONYMOUS != 0 {
			continue
		}
		interval := s.flags&unix.NFT_SET_INTERVAL != 0
		isMap := s.flags&unix.NFT_SET_MAP != 0
		if s.flags&unix.NFT_SET_EVAL != 0 && !isMap {
			// A dynamic set: its elements are its rules' (see
			// nftmodel.Set.Dynamic), not read.
			keys, _ := nftmodel.KeysOf(s.keyType, s.keyLen)
			timeout := time.Duration(0)
			if s.flags&unix.NFT_SET_TIMEOUT != 0 {
				timeout = s.timeout
			}
			st.ReadDynamicSet(s.name, keys, timeout, s.size)
			continue
		}
		verdict := isMap && s.dataType == unix.NFT_DATA_VERDICT
		keys, known := nftmodel.KeysOf(s.keyType, s.keyLen)
		var vals []nftmodel.KeyType
		if isMap && !verdict {
			var ok bool
			vals, ok = nftmodel.KeysOf(s.dataType, s.dataLen)
			known = known && ok
		}
		var elems []nftmodel.SetElem
		if known {
			kel, err := k.conn.GetSetElements(&nftables.Set{Table: tbl, Name: s.name})
			if err != nil {
				return nil, fmt.Errorf("list elements of %s %s: %w", setKind(isMap), s.name, err)
			}
			elems = modelElems(kel, verdict)
		} else {
			keys = nil // not modelled: recreated
		}
		if isMap {
			st.ReadMap(s.name, keys, vals, verdict, interval, elems)
		} else {
			st.ReadSet(s.name, keys, interval, elems)
		}
	}
	chains, err := k.conn.ListChainsOfTableFamily(tbl.Family)
	if err != nil {
		return nil, fmt.Errorf("list chains: %w", err)
	}
	var devices map[string]string
	if key.Family == nftmodel.FamilyNetdev {
		if devices, err = k.chainDevices(tbl); err != nil {
			return nil, fmt.Errorf("list chains: %w", err)
		}
	}
	for _, ch := range chains {
		if ch.Table == nil || ch.Table.Name != key.Name {
			continue
		}
		ch.Device = devices[ch.Name]
		rules, err := k.conn.GetRules(tbl, ch)
		if err != nil {
			return nil, fmt.Errorf("list rules of chain %s: %w", ch.Name, err)
		}
		read := make([]nftmodel.ReadRule, len(rules))
		for i, r := range rules {
			read[i] = modelRule(r)
		}
		st.ReadChain(modelChain(key.Family, ch), read)
	}
	return st, nil
}

func setKind(isMap bool) string {
	if isMap {
		return "map"
	}
	return "set"
}

// setInfo is what the kernel says of a set or map.
type setInfo struct {
	name              string
	flags             uint32
	keyType, keyLen   uint32
	dataType, dataLen uint32
	timeout           time.Duration // the default timeout (NFTA_SET_TIMEOUT)
	size              uint32        // NFTA_SET_DESC_SIZE, 0 for none
}

// dump sends a dump request of type msg (NFT_MSG_GET*) for the family of
// t, with attrs, and returns the replies.
func (k *Kernel) dump(t *nftables.Table, msg uint16, attrs []netlink.Attribute) ([]netlink.Message, error) {
	conn, err := netlink.Dial(unix.NETLINK_NETFILTER, &netlink.Config{NetNS: k.fd})
	if err != nil {
		return nil, err
	}
	defer conn.Close()
	_ = bigBuffers(conn)
	data, err := netlink.MarshalAttributes(attrs)
	if err != nil {
		return nil, err
	}
	return conn.Execute(netlink.Message{
		Header: netlink.Header{
			Type:  netlink.HeaderType(unix.NFNL_SUBSYS_NFTABLES<<8 | msg),
			Flags: netlink.Request | netlink.Dump,
		},
		Data: append([]byte{byte(t.Family), unix.NFNETLINK_V0, 0, 0}, data...),
	})
}

// nftaHookDevs is NFTA_HOOK_DEVS, the devices of a netdev base chain
// (x/sys/unix does not name it).
const nftaHookDevs = 4

// chainDevices returns the device of each base chain of the table t that
// has one (by chain name). google/nftables (v0.3.0) does not read a
// chain's device back.
func (k *Kernel) chainDevices(t *nftables.Table) (map[string]string, error) {
	msgs, err := k.dump(t, unix.NFT_MSG_GETCHAIN, []netlink.Attribute{{Type: unix.NFTA_CHAIN_TABLE, Data: []byte(t.Name + "\x00")}})
	if err != nil {
		return nil, err
	}
	out := map[string]string{}
	for _, m := range msgs {
		if len(m.Data) < 4 {
			continue
		}
		ad, err := netlink.NewAttributeDecoder(m.Data[4:])
		if err != nil {
			return nil, err
		}
		var table, name, dev string
		for ad.Next() {
			switch ad.Type() {
			case unix.NFTA_CHAIN_TABLE:
				table = ad.String()
			case unix.NFTA_CHAIN_NAME:
				name = ad.String()
			case unix.NFTA_CHAIN_HOOK:
				ad.Nested(func(nd *netlink.AttributeDecoder) error {
					for nd.Next() {
						switch nd.Type() {
						case unix.NFTA_HOOK_DEV:
							dev = nd.String()
						case nftaHookDevs:
							// A chain of several devices (the model
							// binds one): the first names it.
							nd.Nested(func(dd *netlink.AttributeDecoder) error {
								for dd.Next() {
									if dev == "" {
										dev = dd.String()
									}
								}
								return nil
							})
						}
					}
					return nil
				})
			}
		}
		if err := ad.Err(); err != nil {
			return nil, err
		}
		if table == t.Name && dev != "" {
			out[name] = dev
		}
	}
	return out, nil
}

// listSets dumps the sets and maps of a table. It speaks netlink itself
// rather than using google/nftables' GetSets, which (v0.3.0) loses the key
// type of a verdict map.
func (k *Kernel) listSets(t *nftables.Table) ([]setInfo, error) {
	msgs, err := k.dump(t, unix.NFT_MSG_GETSET, []netlink.Attribute{{Type: unix.NFTA_SET_TABLE, Data: []byte(t.Name + "\x00")}})
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
		numbers := map[uint16]*uint32{unix.NFTA_SET_FLAGS: &s.flags, unix.NFTA_SET_KEY_TYPE: &s.keyType,
			unix.NFTA_SET_KEY_LEN: &s.keyLen, unix.NFTA_SET_DATA_TYPE: &s.dataType, unix.NFTA_SET_DATA_LEN: &s.dataLen}
		for ad.Next() {
			switch ad.Type() {
			case unix.NFTA_SET_TABLE:
				table = ad.String()
			case unix.NFTA_SET_NAME:
				s.name = ad.String()
			case unix.NFTA_SET_TIMEOUT:
				s.timeout = time.Duration(ad.Uint64()) * time.Millisecond
			case unix.NFTA_SET_DESC:
				ad.Nested(func(nd *netlink.AttributeDecoder) error {
					nd.ByteOrder = binary.BigEndian
					for nd.Next() {
						if nd.Type() == unix.NFTA_SET_DESC_SIZE {
							s.size = nd.Uint32()
						}
					}
					return nil
				})
			default:
				if n, ok := numbers[ad.Type()]; ok {
					*n = ad.Uint32()
				}
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

// send translates the batch and sends it on the lasting batch
// connection; nothing for an empty batch. On error the kernel has applied
// none of it.
func (k *Kernel) send(b *nftmodel.Batch) error {
	if len(b.Steps) == 0 {
		return nil
	}
	conn, err := k.batchConn()
	if err != nil {
		return err
	}
	bridge := false
	for _, s := range b.Steps {
		bridge = bridge || s.Table.Family == nftmodel.FamilyBridge
	}
	if err := queue(conn, b); err != nil {
		k.dropBatchConn(conn) // the queued messages die with the connection
		return err
	}
	return k.flush(conn, b.Ops(), bridge)
}

// flush sends the messages queued on the batch connection conn; on error
// the kernel has applied none of them (and the connection, which may hold
// unread replies, is replaced).
func (k *Kernel) flush(conn *nftables.Conn, ops []string, bridge bool) error {
	if err := conn.Flush(); err != nil {
		k.dropBatchConn(conn)
		hint := ""
		if bridge && errors.Is(err, unix.EPROTO) {
			hint = " (ct expressions in a bridge table need nf_conntrack_bridge, which this kernel lacks)"
		}
		return fmt.Errorf("kernel refused the batch (%s)%s: %w", summarize(ops), hint, err)
	}
	return nil
}

// queue translates the steps of b into messages on conn.
func queue(conn *nftables.Conn, b *nftmodel.Batch) error {
	tables := map[nftmodel.TableKey]*nftables.Table{}
	for _, s := range b.Steps {
		t := tables[s.Table]
		if t == nil {
			t = kernelTable(s.Table)
			tables[s.Table] = t
		}
		switch s.Kind {
		case nftmodel.StepAddTable:
			conn.AddTable(t)
		case nftmodel.StepFlushChain:
			conn.FlushChain(&nftables.Chain{Name: s.Name, Table: t})
		case nftmodel.StepDeleteChain:
			conn.DelChain(&nftables.Chain{Name: s.Name, Table: t})
		case nftmodel.StepAddChain:
			conn.AddChain(kernelChain(t, s.Chain))
		case nftmodel.StepDeleteSet:
			conn.DelSet(&nftables.Set{Name: s.Name, Table: t})
		case nftmodel.StepAddSet:
			if err := conn.AddSet(kernelSet(t, s.Set), nil); err != nil {
				return fmt.Errorf("%s %s: %w", setKind(s.Set.IsMap), s.Name, err)
			}
		case nftmodel.StepAddElements, nftmodel.StepDeleteElements:
			if err := sendElements(conn, &nftables.Set{Name: s.Name, Table: t}, s); err != nil {
				return err
			}
		case nftmodel.StepAddRules:
			if err := addRules(conn, t, s); err != nil {
				return err
			}
		default:
			return fmt.Errorf("%s: unknown step kind %d", s.Desc, s.Kind)
		}
	}
	return nil
}

// addRules queues the rules of a step, each after its anonymous sets.
func addRules(conn *nftables.Conn, t *nftables.Table, s nftmodel.Step) error {
	for _, r := range s.Rules {
		for _, a := range r.Anon {
			if err := conn.AddSet(kernelSet(t, &a.Def), kernelElems(a.Elems)); err != nil {
				return fmt.Errorf("chain %s: rule %q: anonymous set: %w", s.Name, r.ID, err)
			}
		}
		kr, err := kernelRule(t, s.Name, r)
		if err != nil {
			return fmt.Errorf("chain %s: rule %q: %w", s.Name, r.ID, err)
		}
		conn.AddRule(kr)
	}
	return nil
}

// sendElements queues the elements of a step in messages small enough
// for netlink's 16-bit attribute lengths, never splitting the kernel
// elements of one model element.
func sendElements(conn *nftables.Conn, set *nftables.Set, s nftmodel.Step) error {
	const chunkBytes = 32 << 10
	var chunk []nftables.SetElement
	size := 0
	send := func() error {
		if len(chunk) == 0 {
			return nil
		}
		var err error
		if s.Kind == nftmodel.StepAddElements {
			err = conn.SetAddElements(set, chunk)
		} else {
			err = conn.SetDeleteElements(set, chunk)
		}
		chunk, size = nil, 0
		if err != nil {
			return fmt.Errorf("%s: %w", s.Desc, err)
		}
		return nil
	}
	for _, group := range s.Elems {
		for _, x := range group {
			size += 48 + len(x.Key) + len(x.KeyEnd) + len(x.Val)
			if x.Verdict != nil {
				size += len(x.Verdict.Chain)
			}
		}
		chunk = append(chunk, kernelElems(group)...)
		if size >= chunkBytes {
			if err := send(); err != nil {
				return err
			}
		}
	}
	return send()
}

func summarize(ops []string) string {
	const max = 6
	if len(ops) <= max {
		return strings.Join(ops, "; ")
	}
	return strings.Join(ops[:max], "; ") + fmt.Sprintf("; and %d more", len(ops)-max)
}

// errClosed reports use after Close.
var errClosed = errors.New("applier is closed")
