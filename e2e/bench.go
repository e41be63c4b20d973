package e2e

import (
	"cmp"
	"fmt"
	"log/slog"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/weftnet/weft/internal/bench"
)

// DefaultBenchName prefixes the names of the labs of a benchmark run.
const DefaultBenchName = "weft-bench"

// BenchBackends are the backends a benchmark measures unless told otherwise, in the
// order it shows them.
var BenchBackends = []string{"vxlan", "udp", "host-gw"}

// What every benchmark run uses.
const (
	benchWriteSize   = 128 << 10
	benchMessageSize = 64
	benchStreamPort  = 5201
	benchRTTPort     = 5202
	benchMinDuration = 100 * time.Millisecond
	benchMaxDuration = time.Hour
	benchMaxRepeat   = 100
)

// BenchOptions describe a benchmark run: pod-to-pod TCP throughput, request/response
// latency, CPU cost and daemon memory over each backend under each daemon, against the
// underlay (host to host, no overlay) measured in the same rounds.
//
// Every row gets a two-host lab of its own (one pod per host; no pods for the underlay),
// and all of them are built before the first round and stay up until the last, so that
// each round measures every row on the same labs, one after the other (A B C A B C ...).
// The labs share no namespace, so they all use the same underlay addresses; the idle
// labs cost a little CPU and memory while another row is measured, alike for every row.
type BenchOptions struct {
	// Name prefixes the labs' names: <Name>-under for the underlay, <Name>-<backend>
	// for each backend (without its '-') under the first daemon and <Name>-d<K>-<backend>
	// under the K-th; DefaultBenchName when empty.
	Name string
	// Backends are the backend types measured, in order: vxlan, udp or host-gw;
	// BenchBackends when empty.
	Backends []string
	// Daemons are the daemon command lines compared, each with every backend, before the
	// flags the lab adds; an empty one is weftd (Weftd). One weftd when empty.
	Daemons [][]string
	// Duration is how long each stream run writes; default 5 s. Each latency probe runs
	// for half of it, at least 0.5 s.
	Duration time.Duration
	// Repeat is the number of rounds; default 3, the fewest a median means much with.
	Repeat int
	// Streams are the numbers of parallel TCP streams, one run each per row and round;
	// default 1 and 4.
	Streams []int

	// Weftctl, Weftd, StateDir and ReadyTimeout are as in Options, for every lab.
	Weftctl      string
	Weftd        string
	StateDir     string
	ReadyTimeout time.Duration
	// Log receives progress at Info; discarded when nil.
	Log *slog.Logger
}

// benchRow is one row of a run: what it measures, the lab to build for it, and once
// built the lab and the two ends of the path, sender first.
type benchRow struct {
	row bench.Row
	lab Options
	l   *Lab
	eps [2]Endpoint
}

// withDefaults returns o with defaults filled in, or an error naming the first option
// that is out of range.
func (o BenchOptions) withDefaults() (BenchOptions, error) {
	if o.Name == "" {
		o.Name = DefaultBenchName
	}
	if len(o.Backends) == 0 {
		o.Backends = BenchBackends
	}
	var backends []string
	for _, b := range o.Backends {
		b = strings.ToLower(strings.TrimSpace(b))
		if !slices.Contains(BenchBackends, b) {
			return o, fmt.Errorf("backend %q: want one of %s", b, strings.Join(BenchBackends,
				", "))
		}
		if slices.Contains(backends, b) {
			return o, fmt.Errorf("backend %s is listed twice", b)
		}
		backends = append(backends, b)
	}
	o.Backends = backends
	if len(o.Daemons) == 0 {
		o.Daemons = [][]string{nil}
	}
	if o.Duration == 0 {
		o.Duration = 5 * time.Second
	}
	if o.Duration < benchMinDuration || o.Duration > benchMaxDuration {
		return o, fmt.Errorf("duration %s: want %s to %s", o.Duration, benchMinDuration,
			benchMaxDuration)
	}
	if o.Repeat == 0 {
		o.Repeat = 3
	}
	if o.Repeat < 1 || o.Repeat > benchMaxRepeat {
		return o, fmt.Errorf("repeat %d: want 1 to %d rounds", o.Repeat, benchMaxRepeat)
	}
	if len(o.Streams) == 0 {
		o.Streams = []int{1, 4}
	}
	for i, n := range o.Streams {
		if n < 1 || n > bench.MaxStreams || slices.Contains(o.Streams[:i], n) {
			return o, fmt.Errorf("streams %v: want counts from 1 to %d, each once", o.Streams,
				bench.MaxStreams)
		}
	}
	if o.Log == nil {
		o.Log = slog.New(slog.DiscardHandler)
	}
	for _, r := range o.rows() {
		if err := CheckName(r.lab.Name); err != nil {
			return o, fmt.Errorf("bench name %q is too long or not a lab name: %w", o.Name,
				err)
		}
	}
	return o, nil
}

// Check returns an error naming the first option that is out of range, as Bench would,
// without building anything.
func (o BenchOptions) Check() error {
	_, err := o.withDefaults()
	return err
}

// rttDuration is how long each latency probe runs.
func (o BenchOptions) rttDuration() time.Duration {
	return max(o.Duration/2, 500*time.Millisecond)
}

// rows returns the run's rows in the order they are measured in every round: the
// underlay, then each backend under each daemon, so that the daemons compared on one
// backend are measured next to each other.
func (o BenchOptions) rows() []benchRow {
	lab := func(name, backend string, pods int, daemon []string) Options {
		return Options{
			Name:         name,
			Hosts:        2,
			Pods:         pods,
			Backend:      backend,
			Daemon:       daemon,
			Weftctl:      o.Weftctl,
			Weftd:        o.Weftd,
			StateDir:     o.StateDir,
			ReadyTimeout: o.ReadyTimeout,
			Log:          o.Log,
		}
	}
	// The underlay's lab only needs leases to come up: weftd with the alloc backend.
	under := o.Name + "-under"
	rows := []benchRow{{
		row: bench.Row{Path: bench.PathUnderlay, Lab: under},
		lab: lab(under, "alloc", 0, nil),
	}}
	labels := daemonLabels(o.Daemons)
	for _, b := range o.Backends {
		for k, argv := range o.Daemons {
			name := fmt.Sprintf("%s-%s", o.Name, strings.ReplaceAll(b, "-", ""))
			if k > 0 {
				name = fmt.Sprintf("%s-d%d-%s", o.Name, k+1, strings.ReplaceAll(b, "-", ""))
			}
			cmd := argv
			if len(cmd) == 0 {
				cmd = []string{cmp.Or(o.Weftd, "weftd")}
			}
			rows = append(rows, benchRow{
				row: bench.Row{Path: b, Daemon: labels[k], Command: cmd, Lab: name},
				lab: lab(name, b, 1, argv),
			})
		}
	}
	return rows
}

// daemonLabels names each daemon command line after its program, "weftd" for the empty
// one. A name already taken gets the command's arguments after it ("weftd
// -udp-datapath=one-packet"), and if it has none or that is taken too, "#K", K counting
// the daemons from 1.
func daemonLabels(daemons [][]string) []string {
	var labels []string
	for k, argv := range daemons {
		label := "weftd"
		if len(argv) > 0 {
			label = filepath.Base(argv[0])
		}
		if slices.Contains(labels, label) && len(argv) > 1 {
			label = strings.Join(append([]string{label}, argv[1:]...), " ")
		}
		if slices.Contains(labels, label) {
			label = fmt.Sprintf("%s#%d", label, k+1)
		}
		labels = append(labels, label)
	}
	return labels
}
