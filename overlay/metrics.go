package overlay

import (
	"io"
	"net/netip"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/weftnet/weft/backend/kernel"
	"github.com/weftnet/weft/backend/udp"
	"github.com/weftnet/weft/internal/metrics"
	"github.com/weftnet/weft/internal/version"
	"github.com/weftnet/weft/subnet"
)

// Metrics are the daemon's gauges and counters, served in the Prometheus text format on
// /metrics and summed up on /status. The zero value is ready to use; it is safe for
// concurrent use.
type Metrics struct {
	peers         atomic.Int64
	subnetChanges atomic.Uint64
	planeRestarts atomic.Uint64
	// lastPeerChange is when the data plane last took a batch of peer events, in Unix
	// nanoseconds; 0 before the first.
	lastPeerChange atomic.Int64
	// acquireRetries counts lease acquisitions tried again because etcd did not answer.
	acquireRetries atomic.Uint64

	// Counted from the log records of the lease manager and the registry; see tap.
	renewals        atomic.Uint64
	renewalFailures atomic.Uint64
	leaseLosses     atomic.Uint64
	watchErrors     atomic.Uint64
	watchCompacted  atomic.Uint64
	ownWatchErrors  atomic.Uint64

	mu      sync.Mutex
	backend string
	lease   func() *subnet.Lease
	// udp is the data path's counters when the network is the udp backend's.
	udp *udp.Counters
	// netlinkErrors counts failed kernel calls reported in log records, by subsystem.
	netlinkErrors map[string]uint64
	// logged counts Warn and Error records by level and subsystem.
	logged map[logKey]uint64
	// recent holds the latest Warn and Error records, oldest first.
	recent []LogEntry
}

// logKey groups counted log records.
type logKey struct{ level, subsystem string }

// LogEntry is a warning or error the daemon logged, as /status shows it.
type LogEntry struct {
	Time      time.Time
	Level     string
	Subsystem string `json:",omitempty"`
	Message   string
	Err       string `json:",omitempty"`
}

// maxRecent bounds the log entries /status shows.
const maxRecent = 10

// setLeaseSource names the backend and the function that returns the lease held, read
// at each scrape so that renewals show.
func (m *Metrics) setLeaseSource(backend string, lease func() *subnet.Lease) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.backend, m.lease = backend, lease
}

// setDataPath takes the data path's counters from nw when it has any: the udp backend's
// network does.
func (m *Metrics) setDataPath(nw any) {
	var c *udp.Counters
	if src, ok := nw.(interface{ Counters() *udp.Counters }); ok {
		c = src.Counters()
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	m.udp = c
}

// peerCounter follows a stream of peer events and publishes how many peers there are.
type peerCounter struct {
	m     *Metrics
	peers map[netip.Prefix]bool
}

func newPeerCounter(m *Metrics) *peerCounter {
	m.peers.Store(0)
	return &peerCounter{m: m, peers: map[netip.Prefix]bool{}}
}

func (c *peerCounter) apply(batch []subnet.Event) {
	for _, ev := range batch {
		if ev.Type == subnet.EventRemoved {
			delete(c.peers, ev.Lease.Subnet)
		} else {
			c.peers[ev.Lease.Subnet] = true
		}
	}
	c.m.peers.Store(int64(len(c.peers)))
	c.m.lastPeerChange.Store(time.Now().UnixNano())
}

// noteLog records a Warn or Error record for /metrics and /status.
func (m *Metrics) noteLog(e LogEntry, netlinkErrors int) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.logged == nil {
		m.logged = map[logKey]uint64{}
		m.netlinkErrors = map[string]uint64{}
	}
	m.logged[logKey{e.Level, e.Subsystem}]++
	if netlinkErrors > 0 {
		m.netlinkErrors[e.Subsystem] += uint64(netlinkErrors)
	}
	if len(m.recent) == maxRecent {
		copy(m.recent, m.recent[1:])
		m.recent = m.recent[:maxRecent-1]
	}
	m.recent = append(m.recent, e)
}

// recentLog returns a copy of the latest warnings and errors, oldest first.
func (m *Metrics) recentLog() []LogEntry {
	m.mu.Lock()
	defer m.mu.Unlock()
	return append([]LogEntry(nil), m.recent...)
}

// netlinkErrorTotal returns the failed kernel calls reported by every subsystem.
func (m *Metrics) netlinkErrorTotal() uint64 {
	m.mu.Lock()
	defer m.mu.Unlock()
	var n uint64
	for _, v := range m.netlinkErrors {
		n += v
	}
	return n
}

// WriteText writes the metrics in the Prometheus text exposition format; ready is the
// daemon's readiness.
func (m *Metrics) WriteText(w io.Writer, ready bool) error {
	m.mu.Lock()
	backend, leaseFn, udpc := m.backend, m.lease, m.udp
	netlinkErrors := sortedCounts(m.netlinkErrors,
		func(sub string) []string { return []string{"subsystem", sub} })
	logged := sortedCounts(m.logged,
		func(k logKey) []string { return []string{"level", k.level, "subsystem", k.subsystem} })
	m.mu.Unlock()
	var lease *subnet.Lease
	if leaseFn != nil {
		lease = leaseFn()
	}

	var mw metrics.Writer
	mw.Family("weft_build_info", metrics.Gauge, "The weftd version running.")
	mw.Sample("weft_build_info", 1, "version", version.Version)
	mw.Metric("weft_ready", metrics.Gauge,
		"1 when subnet.env describes the lease the data plane is programmed for.",
		boolValue(ready))
	if lease != nil {
		mw.Family("weft_lease_info", metrics.Gauge, "The lease this host holds.")
		mw.Sample("weft_lease_info", 1, "subnet", lease.Subnet.String(),
			"public_ip", lease.Attrs.PublicIP.String(), "backend", backend)
		if !lease.Expiration.IsZero() {
			mw.Metric("weft_lease_expiry_timestamp_seconds", metrics.Gauge,
				"When the lease expires unless renewed, in seconds since the epoch.",
				float64(lease.Expiration.Unix()))
		}
		mw.Metric("weft_lease_reserved", metrics.Gauge,
			"1 when the lease is a reservation, which never expires.",
			boolValue(lease.Reserved()))
	}
	mw.Metric("weft_lease_renewals_total", metrics.Counter,
		"Times the lease was renewed with a fresh 24-hour etcd lease.",
		float64(m.renewals.Load()))
	mw.Metric("weft_lease_renewal_failures_total", metrics.Counter,
		"Renewals of the lease that failed and were retried.",
		float64(m.renewalFailures.Load()))
	mw.Metric("weft_lease_losses_total", metrics.Counter,
		"Times the lease was found deleted, expired or taken over by another host.",
		float64(m.leaseLosses.Load()))
	mw.Metric("weft_lease_acquire_retries_total", metrics.Counter,
		"Lease acquisitions tried again because etcd did not answer.",
		float64(m.acquireRetries.Load()))
	mw.Metric("weft_lease_subnet_changes_total", metrics.Counter,
		"Times the lease came back with another subnet and the network was registered again.",
		float64(m.subnetChanges.Load()))

	mw.Metric("weft_peers", metrics.Gauge,
		"Peer leases handed to the data plane to program.", float64(m.peers.Load()))
	if t := m.lastPeerChange.Load(); t != 0 {
		mw.Metric("weft_peers_last_change_timestamp_seconds", metrics.Gauge,
			"When the data plane last took a batch of peer lease events.",
			float64(time.Unix(0, t).Unix()))
	}
	mw.Metric("weft_data_plane_restarts_total", metrics.Counter,
		"Times the peer watch or the backend ended on its own and was started again.",
		float64(m.planeRestarts.Load()))

	mw.Family("weft_etcd_watch_restarts_total", metrics.Counter,
		"Times a watch of etcd broke and was started again, by watch and reason.")
	mw.Sample("weft_etcd_watch_restarts_total", float64(m.watchErrors.Load()),
		"watch", "leases", "reason", "error")
	mw.Sample("weft_etcd_watch_restarts_total", float64(m.watchCompacted.Load()),
		"watch", "leases", "reason", "compacted")
	mw.Sample("weft_etcd_watch_restarts_total", float64(m.ownWatchErrors.Load()),
		"watch", "own-lease", "reason", "error")

	mw.Metric("weft_netlink_writes_total", metrics.Counter,
		"Kernel changes made and accepted: routes, neighbour and FDB entries, devices.",
		float64(kernel.Writes()))
	mw.Family("weft_netlink_errors_total", metrics.Counter,
		"Kernel calls that failed with an errno, as reported by each subsystem.")
	for _, c := range netlinkErrors {
		mw.Sample("weft_netlink_errors_total", float64(c.n), c.labels...)
	}
	mw.Family("weft_log_messages_total", metrics.Counter,
		"Warnings and errors logged, by level and subsystem.")
	for _, c := range logged {
		mw.Sample("weft_log_messages_total", float64(c.n), c.labels...)
	}

	if udpc != nil {
		writeUDP(&mw, udpc)
	}

	_, err := w.Write(mw.Bytes())
	return err
}

// writeUDP writes the udp data path's counters.
func writeUDP(mw *metrics.Writer, c *udp.Counters) {
	mw.Family("weft_udp_packets_total", metrics.Counter,
		"Inner packets carried by the udp backend, tx to peers and rx from them.")
	mw.Sample("weft_udp_packets_total", float64(c.TxPackets.Load()), "direction", "tx")
	mw.Sample("weft_udp_packets_total", float64(c.RxPackets.Load()), "direction", "rx")
	mw.Family("weft_udp_bytes_total", metrics.Counter,
		"Bytes of inner packets carried by the udp backend.")
	mw.Sample("weft_udp_bytes_total", float64(c.TxBytes.Load()), "direction", "tx")
	mw.Sample("weft_udp_bytes_total", float64(c.RxBytes.Load()), "direction", "rx")
	mw.Family("weft_udp_drops_total", metrics.Counter,
		"Packets the udp backend dropped, by reason.")
	for r := udp.DropReason(0); r < udp.NumDropReasons; r++ {
		mw.Sample("weft_udp_drops_total", float64(c.Drops(r)), "reason", r.String())
	}
	mw.Metric("weft_udp_icmp_errors_total", metrics.Counter,
		"ICMP errors the udp backend sent back for packets it could not deliver.",
		float64(c.ICMPErrors.Load()))
}

// count is one entry of a counter map, for writing in a stable order.
type count struct {
	labels []string
	n      uint64
}

// sortedCounts returns m's entries with the labels each key gives, sorted by them.
func sortedCounts[K comparable](m map[K]uint64, labels func(K) []string) []count {
	out := make([]count, 0, len(m))
	for k, n := range m {
		out = append(out, count{labels(k), n})
	}
	slices.SortFunc(out, func(a, b count) int { return slices.Compare(a.labels, b.labels) })
	return out
}

func boolValue(b bool) float64 {
	if b {
		return 1
	}
	return 0
}
