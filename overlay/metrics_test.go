package overlay

import (
	"net/http/httptest"
	"net/netip"
	"strings"
	"testing"
	"time"

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

func TestLabelEscaping(t *testing.T) {
	got := labels("a", `x"y\z`+"\n", "b", "ü")
	if want := `{a="x\"y\\z\n",b="ü"}`; got != want {
		t.Errorf("labels = %s, want %s", got, want)
	}
}

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
