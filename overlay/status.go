package overlay

import (
	"encoding/json"
	"net/netip"
	"time"

	"github.com/weftnet/weft/internal/version"
	"github.com/weftnet/weft/subnet"
)

// Status is what a running daemon reports about itself on GET /status, as JSON, for
// `weftctl status`. Times are RFC 3339; a zero time or an empty field is left out.
type Status struct {
	Version string
	// State says what the daemon is doing, in a few words; systemd shows the same text
	// (STATUS=).
	State string
	// Ready is /readyz: subnet.env describes the lease the data plane is programmed for.
	Ready   bool
	Started time.Time `json:",omitzero"`

	Network     netip.Prefix `json:",omitzero"`
	IPv6Network netip.Prefix `json:",omitzero"`
	Backend     string       `json:",omitempty"`
	Lease       *LeaseStatus `json:",omitempty"`

	// Peers is the number of peer leases handed to the data plane.
	Peers int
	// PeersSynced is when the data plane took its first full listing of the peers;
	// systemd is told the daemon is ready then.
	PeersSynced time.Time `json:",omitzero"`
	// LastPeerChange is when the data plane last took a batch of peer events.
	LastPeerChange time.Time `json:",omitzero"`

	LeaseRenewals        uint64
	LeaseRenewalFailures uint64
	LeaseLosses          uint64
	WatchRestarts        uint64
	NetlinkErrors        uint64
	DataPlaneRestarts    uint64

	// RecentErrors are the latest warnings and errors logged, oldest first.
	RecentErrors []LogEntry `json:",omitempty"`
}

// LeaseStatus is the lease a daemon holds.
type LeaseStatus struct {
	Subnet      netip.Prefix
	IPv6Subnet  netip.Prefix `json:",omitzero"`
	PublicIP    netip.Addr
	PublicIPv6  netip.Addr `json:",omitzero"`
	BackendType string     `json:",omitempty"`
	// BackendData is the lease's backend data as stored, VXLAN's VNI and VtepMAC.
	BackendData json.RawMessage `json:",omitempty"`
	// Expiration is when etcd deletes the lease unless it is renewed; zero for a
	// reservation.
	Expiration time.Time `json:",omitzero"`
	Reserved   bool      `json:",omitempty"`
}

// NewLeaseStatus condenses a lease for Status.
func NewLeaseStatus(l *subnet.Lease) *LeaseStatus {
	return &LeaseStatus{
		Subnet:      l.Subnet,
		IPv6Subnet:  l.IPv6Subnet,
		PublicIP:    l.Attrs.PublicIP,
		PublicIPv6:  l.Attrs.PublicIPv6,
		BackendType: l.Attrs.BackendType,
		BackendData: l.Attrs.BackendData,
		Expiration:  l.Expiration,
		Reserved:    l.Reserved(),
	}
}

// Status returns what /status reports.
func (h *Health) Status() Status {
	h.mu.Lock()
	s := Status{
		Version:     version.Version,
		State:       h.state,
		Started:     h.started,
		Network:     h.network,
		IPv6Network: h.ipv6Network,
		PeersSynced: h.peersSynced,
	}
	h.mu.Unlock()
	s.Ready = h.Ready()

	m := &h.Metrics
	m.mu.Lock()
	s.Backend = m.backend
	leaseFn := m.lease
	m.mu.Unlock()
	if leaseFn != nil {
		if l := leaseFn(); l != nil {
			s.Lease = NewLeaseStatus(l)
		}
	}
	s.Peers = int(m.peers.Load())
	if t := m.lastPeerChange.Load(); t != 0 {
		s.LastPeerChange = time.Unix(0, t)
	}
	s.LeaseRenewals = m.renewals.Load()
	s.LeaseRenewalFailures = m.renewalFailures.Load()
	s.LeaseLosses = m.leaseLosses.Load()
	s.WatchRestarts = m.watchErrors.Load() + m.watchCompacted.Load() + m.ownWatchErrors.Load()
	s.NetlinkErrors = m.netlinkErrorTotal()
	s.DataPlaneRestarts = m.planeRestarts.Load()
	s.RecentErrors = m.recentLog()
	return s
}

// setState records what the daemon is doing, for /status.
func (h *Health) setState(s string) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.state = s
}

// setNetwork records the network config the daemon runs with, for /status.
func (h *Health) setNetwork(cfg *subnet.Config) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.network, h.ipv6Network = cfg.Network, cfg.IPv6Network
}

// setPeersSynced records when the data plane took its first full listing of peers; a
// zero t clears it, when the data plane starts again.
func (h *Health) setPeersSynced(t time.Time) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.peersSynced = t
}
