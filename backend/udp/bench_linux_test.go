package udp

import (
	"flag"
	"fmt"
	"net"
	"net/netip"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/weftnet/weft/internal/nstest"
	"github.com/weftnet/weft/subnet"
)

// The lab benchmarks build their own namespaces (root only) and compare the udp backend
// with kernel VXLAN and with its own one-packet-per-syscall mode, measured in the same
// run, interleaved, as PERF.md asks. For example:
//
//	go test ./backend/udp -run '^$' -bench Lab -benchtime 1x -lab.rounds 5
var (
	labRounds  = flag.Int("lab.rounds", 5, "interleaved rounds per lab benchmark; figures are medians")
	labSeconds = flag.Duration("lab.time", 2*time.Second, "length of one throughput run")
	labOnly    = flag.String("lab.only", "", "comma-separated variants for "+
		"BenchmarkLabThroughput to run instead of the standard five, such as udp,rx8")
)

type variant struct {
	name string
	kind labKind
}

var (
	vxlanVariant     = variant{"vxlan", labKind{vxlan: true}}
	udpVariant       = variant{"udp", labKind{}}
	noTUNVariant     = variant{"udp-notun", labKind{opts: Options{NoTUNOffload: true}}}
	noOffloadVariant = variant{"udp-nooffload",
		labKind{opts: Options{NoTUNOffload: true, NoUDPOffload: true}}}
	plainVariant = variant{"udp-plain", labKind{opts: Options{Plain: true}}}
)

// tuneVariants are the fast path with other sizes, run only when -lab.only names them.
var tuneVariants = []variant{
	{"rx4", labKind{opts: Options{tune: tuning{rxBatch: 4}}}},
	{"rx8", labKind{opts: Options{tune: tuning{rxBatch: 8}}}},
	{"rx32", labKind{opts: Options{tune: tuning{rxBatch: 32}}}},
	{"tx4", labKind{opts: Options{tune: tuning{txBatch: 4}}}},
	{"tx16", labKind{opts: Options{tune: tuning{txBatch: 16}}}},
	{"tx32", labKind{opts: Options{tune: tuning{txBatch: 32}}}},
	{"q2", labKind{opts: Options{Queues: 2}}},
}

// BenchmarkLabThroughput measures pod-to-pod TCP throughput between two lab hosts with 1
// and 4 streams, for kernel VXLAN, the udp backend with every offload, without TUN
// offloads, with no offloads at all, and in plain one-packet-per-syscall mode.
func BenchmarkLabThroughput(b *testing.B) {
	nstest.RequireRoot(b)
	variants := []variant{vxlanVariant, udpVariant, noTUNVariant, noOffloadVariant, plainVariant}
	if *labOnly != "" {
		names := strings.Split(*labOnly, ",")
		variants = slices.DeleteFunc(append(variants, tuneVariants...), func(v variant) bool {
			return !slices.Contains(names, v.name)
		})
	}
	labs := make([]*lab, len(variants))
	for i, v := range variants {
		labs[i] = newLab(b, 2, v.kind)
	}

	port := uint16(20000)
	for _, n := range []int{1, 4} {
		gbps := make([][]float64, len(variants))
		cpu := make([][]float64, len(variants))
		for r := 0; r < *labRounds; r++ {
			for i, l := range labs {
				port++
				res := measureStreams(b, streams(l.hosts[0], l.hosts[1], n), port, *labSeconds)
				gbps[i] = append(gbps[i], res.gbps)
				cpu[i] = append(cpu[i], res.cpuPerG)
			}
		}

		med := map[string]float64{}
		for i, v := range variants {
			med[v.name] = median(gbps[i])
			b.Logf("%d stream(s) %-14s %6.2f Gbit/s (runs %s), %.3f CPU-s/Gbit (runs %s)", n,
				v.name, med[v.name], formatRuns(gbps[i]), median(cpu[i]),
				formatRunsPrec(cpu[i], 3))
			b.ReportMetric(med[v.name], fmt.Sprintf("%s-x%d-Gbit/s", v.name, n))
			if v.name == "vxlan" || v.name == "udp" || v.name == "udp-plain" {
				b.ReportMetric(median(cpu[i]), fmt.Sprintf("%s-x%d-CPU-s/Gbit", v.name, n))
			}
		}
		ratio := func(a, c string) {
			if med[a] > 0 && med[c] > 0 {
				b.ReportMetric(med[a]/med[c], fmt.Sprintf("%s/%s-x%d", a, c, n))
			}
		}
		ratio("udp", "vxlan")
		ratio("udp", "udp-plain")
		ratio("udp-notun", "udp-plain")
		ratio("udp-nooffload", "udp-plain")
	}
}

// BenchmarkLabRTT measures the request/response round trip of one byte between two pods,
// for kernel VXLAN, the udp backend and its plain mode, interleaved in blocks.
func BenchmarkLabRTT(b *testing.B) {
	nstest.RequireRoot(b)
	variants := []variant{vxlanVariant, udpVariant, plainVariant}
	conns := make([]net.Conn, len(variants))
	for i, v := range variants {
		l := newLab(b, 2, v.kind)
		h1, h2 := l.hosts[0], l.hosts[1]
		echoServer(listenTCP(b, h2.pod, netip.AddrPortFrom(h2.podIP, 7)))
		c, err := dialTCP(b, h1.pod, netip.AddrPortFrom(h2.podIP, 7))
		must(b, err)
		b.Cleanup(func() { c.Close() })
		conns[i] = c
	}

	const block = 250
	samples := make([][]time.Duration, len(variants))
	for r := 0; r < *labRounds*8; r++ {
		for i, c := range conns {
			samples[i] = append(samples[i], pingPong(b, c, block)...)
		}
	}
	p50 := map[string]float64{}
	p99 := map[string]float64{}
	for i, v := range variants {
		s := samples[i]
		slices.Sort(s)
		p50[v.name] = float64(s[len(s)/2]) / 1e3
		p99[v.name] = float64(s[len(s)*99/100]) / 1e3
		b.Logf("%-10s RTT p50 %6.1f us, p99 %6.1f us (%d samples)", v.name, p50[v.name],
			p99[v.name], len(s))
		b.ReportMetric(p50[v.name], v.name+"-p50-us")
		b.ReportMetric(p99[v.name], v.name+"-p99-us")
	}
	b.ReportMetric(p50["udp"]/p50["udp-plain"], "udp/udp-plain-p50")
	b.ReportMetric(p99["udp"]/p99["udp-plain"], "udp/udp-plain-p99")
}

// pingPong times n one-byte exchanges on c.
func pingPong(t testing.TB, c net.Conn, n int) []time.Duration {
	buf := []byte{1}
	out := make([]time.Duration, 0, n)
	c.SetDeadline(time.Now().Add(30 * time.Second))
	for i := 0; i < n; i++ {
		start := time.Now()
		if _, err := c.Write(buf); err != nil {
			t.Fatal(err)
		}
		if _, err := c.Read(buf); err != nil {
			t.Fatal(err)
		}
		out = append(out, time.Since(start))
	}
	return out
}

// BenchmarkLabManyPeers gives host 1 a table of 1,000 routes (eight real peers among 992
// leases of hosts that do not exist) and runs 8 TCP streams from its pod, one to each
// real peer's pod. It compares that with the same 8 streams all to one peer while the
// table holds that peer alone, and with the 8 peers' streams while the table holds just
// the 8: the first ratio is PERF.md's, the second isolates the table's size. The tables
// are swapped through lease events between runs.
func BenchmarkLabManyPeers(b *testing.B) {
	nstest.RequireRoot(b)
	l := newLab(b, 9, labKind{})
	h1 := l.hosts[0]

	var extra []subnet.Event
	for i := 0; len(extra) < 1000-8; i++ {
		extra = append(extra, subnet.Event{Type: subnet.EventAdded, Lease: subnet.Lease{
			Subnet: netip.PrefixFrom(netip.AddrFrom4([4]byte{10, byte(i >> 8), byte(i), 0}), 24),
			Attrs: subnet.LeaseAttrs{
				PublicIP: netip.AddrFrom4([4]byte{198, 18, 1 + byte(i>>8), byte(i)}),
			},
		}})
	}
	removeAll := func() []subnet.Event {
		var evs []subnet.Event
		for _, e := range append(slices.Clone(extra), l.peerEvents(h1)...) {
			evs = append(evs, subnet.Event{Type: subnet.EventRemoved, Lease: e.Lease})
		}
		return evs
	}()
	tables := map[string][]subnet.Event{
		"many":  append(slices.Clone(extra), l.peerEvents(h1)...),
		"eight": l.peerEvents(h1),
		"one":   {{Type: subnet.EventAdded, Lease: l.hosts[1].lease()}},
	}
	var toEight []labPair
	for _, h := range l.hosts[1:] {
		toEight = append(toEight, labPair{h1, h})
	}
	runs := []struct {
		table string
		pairs []labPair
	}{
		{"many", toEight},
		{"one", streams(h1, l.hosts[1], 8)},
		{"eight", toEight},
	}

	// The ratios are taken within each round, between runs seconds apart, and their
	// median reported: this machine's speed drifts by more than the differences measured
	// over a whole benchmark, and a ratio of medians would mix rounds. Every other round
	// runs in reverse order, so that a drift within a round favours no run.
	gbps := map[string][]float64{}
	var perOne, perEight []float64
	port := uint16(30000)
	for r := 0; r < *labRounds; r++ {
		order := slices.Clone(runs)
		if r%2 == 1 {
			slices.Reverse(order)
		}
		round := map[string]float64{}
		for _, run := range order {
			h1.send(b, removeAll, 0)
			h1.send(b, tables[run.table], len(tables[run.table]))
			port++
			round[run.table] = measureStreams(b, run.pairs, port, *labSeconds).gbps
			gbps[run.table] = append(gbps[run.table], round[run.table])
		}
		perOne = append(perOne, round["many"]/round["one"])
		perEight = append(perEight, round["many"]/round["eight"])
	}
	m, s, e := median(gbps["many"]), median(gbps["one"]), median(gbps["eight"])
	b.Logf("8 streams to 8 peers, 1,000 routes: %.2f Gbit/s (runs %s)", m, formatRuns(gbps["many"]))
	b.Logf("8 streams to 1 peer, 1 route:       %.2f Gbit/s (runs %s)", s, formatRuns(gbps["one"]))
	b.Logf("8 streams to 8 peers, 8 routes:     %.2f Gbit/s (runs %s)", e, formatRuns(gbps["eight"]))
	b.Logf("1,000 routes and 8 peers / 1 peer, by round:  %s", formatRunsPrec(perOne, 3))
	b.Logf("1,000 routes / 8 routes, 8 peers, by round:   %s", formatRunsPrec(perEight, 3))
	b.ReportMetric(m, "8peers-1000routes-Gbit/s")
	b.ReportMetric(s, "1peer-Gbit/s")
	b.ReportMetric(e, "8peers-8routes-Gbit/s")
	b.ReportMetric(median(perOne), "8peers-1000routes/1peer")
	b.ReportMetric(median(perEight), "1000routes/8routes")
}

func median(xs []float64) float64 {
	s := slices.Clone(xs)
	slices.Sort(s)
	if len(s) == 0 {
		return 0
	}
	return s[len(s)/2]
}

func formatRuns(xs []float64) string { return formatRunsPrec(xs, 2) }

func formatRunsPrec(xs []float64, prec int) string {
	parts := make([]string, len(xs))
	for i, x := range xs {
		parts[i] = fmt.Sprintf("%.*f", prec, x)
	}
	return strings.Join(parts, " ")
}
