package overlay

import (
	"fmt"
	"io"
	"net/netip"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/weftnet/weft/internal/version"
	"github.com/weftnet/weft/subnet"
)

// Metrics are the daemon's gauges and counters, served in the Prometheus text format on
// /metrics. The zero value is ready to use; it is safe for concurrent use.
type Metrics struct {
	peers         atomic.Int64
	subnetChanges atomic.Uint64
	planeRestarts atomic.Uint64

	mu      sync.Mutex
	backend string
	lease   func() *subnet.Lease
}

// setLeaseSource names the backend and the function that returns the lease held, read
// at each scrape so that renewals show.
func (m *Metrics) setLeaseSource(backend string, lease func() *subnet.Lease) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.backend, m.lease = backend, lease
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
}

// WriteText writes the metrics in the Prometheus text exposition format; ready is the
// daemon's readiness.
func (m *Metrics) WriteText(w io.Writer, ready bool) error {
	m.mu.Lock()
	backend, leaseFn := m.backend, m.lease
	m.mu.Unlock()
	var lease *subnet.Lease
	if leaseFn != nil {
		lease = leaseFn()
	}

	var b strings.Builder
	metric := func(name, typ, help string, samples ...string) {
		fmt.Fprintf(&b, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, typ)
		for _, s := range samples {
			fmt.Fprintf(&b, "%s%s\n", name, s)
		}
	}
	metric("weft_build_info", "gauge", "The weftd version running.",
		labels("version", version.Version)+" 1")
	metric("weft_ready", "gauge",
		"1 when subnet.env describes the lease the data plane is programmed for.",
		" "+boolValue(ready))
	if lease != nil {
		metric("weft_lease_info", "gauge", "The lease this host holds.",
			labels("subnet", lease.Subnet.String(), "public_ip", lease.Attrs.PublicIP.String(),
				"backend", backend)+" 1")
		if !lease.Expiration.IsZero() {
			metric("weft_lease_expiry_timestamp_seconds", "gauge",
				"When the lease expires unless renewed, in seconds since the epoch.",
				" "+strconv.FormatInt(lease.Expiration.Unix(), 10))
		}
	}
	metric("weft_peers", "gauge", "Peer leases the data plane follows.",
		" "+strconv.FormatInt(m.peers.Load(), 10))
	metric("weft_lease_subnet_changes_total", "counter",
		"Times the lease came back with another subnet and the network was registered again.",
		" "+strconv.FormatUint(m.subnetChanges.Load(), 10))
	metric("weft_data_plane_restarts_total", "counter",
		"Times the peer watch or the backend ended on its own and was started again.",
		" "+strconv.FormatUint(m.planeRestarts.Load(), 10))

	_, err := io.WriteString(w, b.String())
	return err
}

// labels renders name/value pairs as a Prometheus label set.
func labels(kv ...string) string {
	var parts []string
	for i := 0; i+1 < len(kv); i += 2 {
		v := strings.NewReplacer(`\`, `\\`, `"`, `\"`, "\n", `\n`).Replace(kv[i+1])
		parts = append(parts, kv[i]+`="`+v+`"`)
	}
	return "{" + strings.Join(parts, ",") + "}"
}

func boolValue(b bool) string {
	if b {
		return "1"
	}
	return "0"
}
