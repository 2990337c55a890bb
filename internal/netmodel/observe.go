package netmodel

// Query says what to read of the host beyond what is always read: the
// links whose names carry hostnet's prefixes in the host namespace, with
// their addresses; the namespaces under hostnet's run directory and the
// `ip netns` links into it; the ports hostnet holds.
type Query struct {
	// Sysctls are read by key (their Value is ignored).
	Sysctls []Key
	// Files are read by path.
	Files []string
	// Namespaces are checked for presence (and identity, when their ID is
	// set), and the host's ID of each is read (see ObservedLink.PeerNSID).
	Namespaces []NS
	// LookInto are namespaces read in full: their links, the addresses of
	// those links and the routes hostnet tagged.
	LookInto []NS
	// OnlyAsked skips what is always read: only what the query names is.
	OnlyAsked bool
	// NoIDs checks the presence of Namespaces without asking their IDs
	// (NSIDs then says -1 for each present one).
	NoIDs bool
}

// Observation is what the host holds of hostnet's objects and of the
// objects a Query named. Objects are keyed as the desired ones are, so a
// reconciler compares them key by key.
type Observation struct {
	Links      map[Key]ObservedLink
	Addrs      map[Key]Addr   // addresses of the links read (link-local ones left out)
	Routes     map[Key]Route  // routes tagged RouteProtocol in the namespaces looked into
	Sysctls    map[Key]Sysctl // the sysctls asked that exist
	Files      map[Key]File   // the files asked that exist
	Symlinks   map[Key]Symlink
	Namespaces map[Key]Namespace // namespaces under hostnet's run directory
	Ports      map[Key]Port      // ports hostnet holds
	// Shapers are hostnet's token buckets (see QdiscHandle) on the
	// tagged links of the host namespace.
	Shapers map[Key]Shaper
	// Handovers are the host adapters found as ports of hostnet's
	// bridges (always read, with the links).
	Handovers map[Key]ObservedHandover
	// NSIDs are the host's IDs of the namespaces asked that are present
	// (-1: present, without an ID yet); absent ones are left out.
	NSIDs map[NS]int
	// LookedInto are the namespaces read in full.
	LookedInto map[NS]bool
}

// NewObservation returns an empty observation.
func NewObservation() *Observation {
	return &Observation{Links: map[Key]ObservedLink{}, Addrs: map[Key]Addr{}, Routes: map[Key]Route{},
		Sysctls: map[Key]Sysctl{}, Files: map[Key]File{}, Symlinks: map[Key]Symlink{},
		Namespaces: map[Key]Namespace{}, Ports: map[Key]Port{}, Shapers: map[Key]Shaper{}, Handovers: map[Key]ObservedHandover{}, NSIDs: map[NS]int{}, LookedInto: map[NS]bool{}}
}

// ObservedLink is a link as the host reports it.
type ObservedLink struct {
	Link
	Index int
	// MasterIndex is the index of the bridge it is a port of (0: none).
	MasterIndex int
	// PeerNSID is, for a veth of the host, the host's ID of the namespace
	// of its other side (-1: none, or the same namespace).
	PeerNSID int
}
