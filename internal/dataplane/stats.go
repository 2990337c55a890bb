package dataplane

// LinkCounters are a device's traffic counters, as the kernel counts them
// on that device (for the host side of a veth, what the device received
// is what its peer sent).
type LinkCounters struct {
	RxPackets, TxPackets uint64
	RxBytes, TxBytes     uint64
}
