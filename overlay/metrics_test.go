package overlay

import (
	"net/http/httptest"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/weftnet/weft/backend/kernel"
	"github.com/weftnet/weft/backend/udp"
	"github.com/weftnet/weft/internal/metrics"
	"github.com/weftnet/weft/subnet"
)

func TestMetricsText(t *testing.T) {
	var m Metrics
	lease := &subnet.Lease{
		Subnet:     netip.MustParsePrefix("198.19.42.0/24"),
		Attrs:      subnet.LeaseAttrs{PublicIP: netip.MustParseAddr("198.18.0.1")},
		Expiration: time.Unix(1900000000, 0),
	}
	m.setLeaseSource("vxlan", func() *subnet.Lease { return lease })
	ev := func(typ subnet.EventType, s string) subnet.Event {
		return subnet.Event{Type: typ, Lease: subnet.Lease{Subnet: netip.MustParsePrefix(s)}}
	}
	c := newPeerCounter(&m)
	c.apply([]subnet.Event{
		ev(subnet.EventAdded, "198.19.1.0/24"),
		ev(subnet.EventAdded, "198.19.2.0/24"),
		ev(subnet.EventAdded, "198.19.2.0/24"),
	})
	c.apply([]subnet.Event{
		ev(subnet.EventRemoved, "198.19.1.0/24"),
		ev(subnet.EventAdded, "198.19.3.0/24"),
	})
	m.subnetChanges.Add(2)
	m.planeRestarts.Add(1)

	var b strings.Builder
	if err := m.WriteText(&b, true); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{
		"# TYPE weft_build_info gauge\nweft_build_info{version=\"dev\"} 1\n",
		"# TYPE weft_ready gauge\nweft_ready 1\n",
		`weft_lease_info{subnet="198.19.42.0/24",public_ip="198.18.0.1",backend="vxlan"} 1` + "\n",
		"weft_lease_expiry_timestamp_seconds 1900000000\n",
		"weft_peers 2\n",
		"# TYPE weft_lease_subnet_changes_total counter\nweft_lease_subnet_changes_total 2\n",
		"weft_data_plane_restarts_total 1\n",
	} {
		if !strings.Contains(b.String(), want) {
			t.Errorf("metrics lack %q:\n%s", want, b.String())
		}
	}

	t.Run("udp data path", func(t *testing.T) {
		var c udp.Counters
		c.TxPackets.Store(7)
		c.RxBytes.Store(1500)
		m.setDataPath(counterNetwork{&c})
		var b strings.Builder
		m.WriteText(&b, true)
		for _, want := range []string{
			`weft_udp_packets_total{direction="tx"} 7` + "\n",
			`weft_udp_bytes_total{direction="rx"} 1500` + "\n",
			`weft_udp_drops_total{reason="no-route"} 0` + "\n",
			`weft_udp_drops_total{reason="unknown-source"} 0` + "\n",
			"weft_udp_icmp_errors_total 0\n",
		} {
			if !strings.Contains(b.String(), want) {
				t.Errorf("metrics lack %q:\n%s", want, b.String())
			}
		}
		samples, err := metrics.Parse(strings.NewReader(b.String()))
		if err != nil {
			t.Fatalf("the metrics do not parse: %v", err)
		}
		if v, ok := metrics.Find(samples, "weft_lease_expiry_timestamp_seconds"); !ok ||
			v != 1900000000 {
			t.Errorf("expiry read back as %v %v", v, ok)
		}

		m.setDataPath(struct{}{})
		b.Reset()
		m.WriteText(&b, true)
		if strings.Contains(b.String(), "weft_udp") {
			t.Errorf("udp metrics without a udp network:\n%s", b.String())
		}
	})

	t.Run("before a lease", func(t *testing.T) {
		var empty Metrics
		var b strings.Builder
		empty.WriteText(&b, false)
		if strings.Contains(b.String(), "weft_lease_info") ||
			!strings.Contains(b.String(), "weft_ready 0\n") {
			t.Errorf("metrics before a lease:\n%s", b.String())
		}
	})
}

func TestMetricsNetlinkWrites(t *testing.T) {
	var m Metrics
	read := func() float64 {
		t.Helper()
		var b strings.Builder
		if err := m.WriteText(&b, true); err != nil {
			t.Fatal(err)
		}
		samples, err := metrics.Parse(strings.NewReader(b.String()))
		if err != nil {
			t.Fatalf("the metrics do not parse: %v", err)
		}
		v, ok := metrics.Find(samples, "weft_netlink_writes_total")
		if !ok {
			t.Fatalf("metrics lack weft_netlink_writes_total:\n%s", b.String())
		}
		return v
	}

	before := read()
	kernel.CountWrite()
	kernel.CountWrite()
	if got := read() - before; got != 2 {
		t.Errorf("2 kernel writes raised weft_netlink_writes_total by %v", got)
	}
}

// counterNetwork has the method by which the udp backend's network shows its counters.
type counterNetwork struct{ c *udp.Counters }

func (n counterNetwork) Counters() *udp.Counters { return n.c }

func TestMetricsEndpoint(t *testing.T) {
	var h Health
	h.SetReady(true)
	rec := httptest.NewRecorder()
	h.Handler().ServeHTTP(rec, httptest.NewRequest("GET", "/metrics", nil))
	if rec.Code != 200 || !strings.Contains(rec.Body.String(), "weft_ready 1\n") ||
		!strings.HasPrefix(rec.Header().Get("Content-Type"), "text/plain; version=0.0.4") {
		t.Errorf("/metrics = %d %q %q", rec.Code, rec.Header().Get("Content-Type"), rec.Body)
	}
}
