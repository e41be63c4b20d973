package e2e

import (
	"context"
	"log/slog"
	"net/netip"
	"slices"
	"testing"
	"time"

	"github.com/weftnet/weft/internal/netlab"
)

// benchPaths are the paths the benchmarks compare: the plain underlay between two hosts,
// and pod to pod across two hosts over each backend.
var benchPaths = []struct {
	name    string
	backend string
	vni     int
}{
	{name: "underlay", backend: "alloc"},
	{name: "vxlan", backend: "vxlan", vni: testVNI},
	{name: "host-gw", backend: "host-gw"},
	{name: "udp", backend: "udp"},
}

// benchLab builds a two-host lab with one pod each and returns the sending and the
// receiving endpoint of the path: the hosts for the underlay, the pods otherwise.
func benchLab(b *testing.B, name, backend string, vni int) (from, to Endpoint) {
	b.Helper()
	o := labOptions(b, "b-"+name)
	o.Backend, o.VNI, o.Hosts, o.Pods = backend, vni, 2, 1
	o.Log = slog.New(slog.DiscardHandler)
	l := upLab(b, o)
	eps := l.Pods()
	if backend == "alloc" {
		eps = l.HostEndpoints()
	}
	return eps[0], eps[1]
}

// BenchmarkStream measures one TCP stream of 128 KiB writes from h1 to h2, for one second
// per iteration, and reports Gbit/s over all iterations. Compare paths within one run:
// go test -run - -bench Stream -benchtime 3x ./e2e
func BenchmarkStream(b *testing.B) {
	for _, p := range benchPaths {
		b.Run(p.name, func(b *testing.B) {
			from, to := benchLab(b, p.name, p.backend, p.vni)
			addr := netip.AddrPortFrom(to.Addr, 5201)
			var total netlab.StreamResult
			b.ResetTimer()
			for range b.N {
				r, err := netlab.Stream(context.Background(), netlab.StreamOptions{
					From:     from.NS,
					To:       to.NS,
					Addr:     addr,
					Duration: time.Second,
				})
				if err != nil {
					b.Fatal(err)
				}
				total.Bytes += r.Bytes
				total.Elapsed += r.Elapsed
			}
			b.ReportMetric(total.Gbps(), "Gbit/s")
		})
	}
}

// BenchmarkRoundTrip measures TCP request/response latency from h1 to h2, one byte each
// way on one connection; ns/op is the mean round trip, and the median is reported too.
func BenchmarkRoundTrip(b *testing.B) {
	for _, p := range benchPaths {
		b.Run(p.name, func(b *testing.B) {
			from, to := benchLab(b, p.name, p.backend, p.vni)
			addr := netip.AddrPortFrom(to.Addr, 5202)
			b.ResetTimer()
			rtts, err := netlab.RoundTrips(context.Background(), from.NS, to.NS, addr, b.N)
			if err != nil {
				b.Fatal(err)
			}
			b.StopTimer()
			slices.Sort(rtts)
			b.ReportMetric(float64(rtts[len(rtts)/2].Microseconds()), "us-median")
		})
	}
}
