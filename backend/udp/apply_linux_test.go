package udp

import (
	"encoding/json"
	"log/slog"
	"net/netip"
	"testing"

	"github.com/weftnet/weft/subnet"
)

func TestApplyEvents(t *testing.T) {
	own := subnet.Lease{Subnet: netip.MustParsePrefix("198.19.1.0/24")}
	n := &Network{log: slog.New(slog.DiscardHandler), lease: &own, port: 8285}
	lease := func(pfx, ip, backendType string) subnet.Lease {
		l := subnet.Lease{Subnet: netip.MustParsePrefix(pfx),
			Attrs: subnet.LeaseAttrs{PublicIP: netip.MustParseAddr(ip), BackendType: backendType}}
		if backendType == "vxlan" {
			l.Attrs.BackendData = json.RawMessage(`{"VNI":1,"VtepMAC":"c6:d2:32:6f:8f:44"}`)
		}
		return l
	}
	added := func(l subnet.Lease) subnet.Event { return subnet.Event{Type: subnet.EventAdded, Lease: l} }
	removed := func(l subnet.Lease) subnet.Event {
		return subnet.Event{Type: subnet.EventRemoved, Lease: l}
	}

	const (
		two     = "198.19.2.0/24"
		three   = "198.19.3.0/24"
		atTwo   = "198.18.0.2:8285"
		moved   = "198.18.0.22:8285"
		atThree = "198.18.0.3:8285"
	)
	peers := map[netip.Prefix]netip.AddrPort{}
	steps := []struct {
		name    string
		batch   []subnet.Event
		changed bool
		want    map[string]string
	}{
		{
			name: "udp and vxlan leases are both peers",
			batch: []subnet.Event{
				added(lease("198.19.2.0/24", "198.18.0.2", "")),
				added(lease("198.19.3.0/24", "198.18.0.3", "vxlan")),
			},
			changed: true,
			want:    map[string]string{two: atTwo, three: atThree},
		},
		{
			name:    "renewal changes nothing",
			batch:   []subnet.Event{added(lease("198.19.2.0/24", "198.18.0.2", ""))},
			changed: false,
			want:    map[string]string{two: atTwo, three: atThree},
		},
		{
			name:    "new PublicIP",
			batch:   []subnet.Event{added(lease("198.19.2.0/24", "198.18.0.22", ""))},
			changed: true,
			want:    map[string]string{two: moved, three: atThree},
		},
		{
			name: "unusable leases are ignored",
			batch: []subnet.Event{
				added(lease("198.19.4.0/24", "0.0.0.0", "")),
				added(lease("198.19.1.0/24", "198.18.0.1", "")), // our own
			},
			changed: false,
			want:    map[string]string{two: moved, three: atThree},
		},
		{
			name: "removal, and removal of a stranger",
			batch: []subnet.Event{
				removed(lease("198.19.3.0/24", "198.18.0.3", "vxlan")),
				removed(lease("198.19.9.0/24", "198.18.0.9", "")),
			},
			changed: true,
			want:    map[string]string{two: moved},
		},
	}
	for _, st := range steps {
		if got := n.apply(peers, st.batch); got != st.changed {
			t.Errorf("%s: changed = %v, want %v", st.name, got, st.changed)
		}
		if len(peers) != len(st.want) {
			t.Errorf("%s: peers %v, want %v", st.name, peers, st.want)
		}
		for pfx, addr := range st.want {
			if got := peers[netip.MustParsePrefix(pfx)].String(); got != addr {
				t.Errorf("%s: %s -> %s, want %s", st.name, pfx, got, addr)
			}
		}
	}
}
