package bench

import (
	"encoding/json"
	"fmt"
	"io"
	"slices"
	"time"
)

// Format names the JSON layout of a Report. It changes only when a field changes its
// meaning or goes away; new fields may appear without a change.
const Format = "weft-bench/1"

// PathUnderlay is the Path of the reference row: host to host over the underlay, with no
// overlay in between.
const PathUnderlay = "underlay"

// Report is one run of weftctl bench: how it measured, and per row the raw figures of
// every round and, after Summarize, their summary. Its JSON field names are stable (see
// Format); durations are in seconds or microseconds as their names say, throughput in
// Gbit/s (1e9 bits per second) and CPU cost in CPU-seconds per GB (1e9 bytes).
type Report struct {
	Format  string    `json:"format"`
	Started time.Time `json:"started"`
	// Kernel is the kernel release, as uname -r gives it.
	Kernel string `json:"kernel"`
	// CPUs is the number of online CPUs, which everything in the run shares.
	CPUs int `json:"cpus"`
	// DurationSeconds is how long each stream run writes; RTTSeconds how long each
	// latency probe goes on.
	DurationSeconds float64 `json:"duration_s"`
	RTTSeconds      float64 `json:"rtt_duration_s"`
	// Rounds is how many times every row was measured, rows interleaved in each round.
	Rounds int `json:"rounds"`
	// Streams are the numbers of parallel TCP connections of the stream runs.
	Streams []int `json:"streams"`
	// WriteBytes is the size of each write of a stream run; MessageBytes the size of a
	// latency probe's request and of its response.
	WriteBytes   int   `json:"write_bytes"`
	MessageBytes int   `json:"message_bytes"`
	Rows         []Row `json:"rows"`
}

// Row is one path through the lab: the underlay, or one backend under one daemon.
type Row struct {
	// Path is PathUnderlay or the backend's type: vxlan, udp, host-gw.
	Path string `json:"path"`
	// Daemon names the daemon command line, after its program; empty for the underlay.
	Daemon string `json:"daemon,omitempty"`
	// Command is the daemon's command line before the flags the lab adds.
	Command []string `json:"command,omitempty"`
	// Lab is the name of the lab the row was measured in.
	Lab string `json:"lab"`
	// Error says why the row was not measured, or why its measuring stopped; its Runs
	// are the rounds that completed before.
	Error string `json:"error,omitempty"`
	// Runs holds one entry per completed round.
	Runs []Run `json:"runs"`

	// Throughput summarises the stream runs, one entry per stream count that has runs.
	Throughput []Throughput `json:"throughput"`
	// RTTP50Micros and RTTP99Micros are the medians over rounds of each round's
	// round-trip percentiles; absent when not measured.
	RTTP50Micros float64 `json:"rtt_p50_us,omitempty"`
	RTTP99Micros float64 `json:"rtt_p99_us,omitempty"`
	// RTTRatio is the median over rounds of the p50 round trip divided by the underlay's
	// of the same round; absent without an underlay.
	RTTRatio float64 `json:"rtt_p50_ratio,omitempty"`
	// RSSMiB is the median over rounds of the larger resident set of the row's two
	// daemons, in MiB; absent for the underlay.
	RSSMiB float64 `json:"rss_mib,omitempty"`
}

// Name returns the row's label, "underlay" or "<path> (<daemon>)".
func (r Row) Name() string {
	if r.Daemon == "" {
		return r.Path
	}
	return fmt.Sprintf("%s (%s)", r.Path, r.Daemon)
}

// Run is what one round measured on one row.
type Run struct {
	// Round counts from 1.
	Round   int         `json:"round"`
	Streams []StreamRun `json:"streams"`
	// RTTCount is the number of round trips the latency probe made.
	RTTCount     int     `json:"rtt_count"`
	RTTP50Micros float64 `json:"rtt_p50_us"`
	RTTP99Micros float64 `json:"rtt_p99_us"`
	// RSSBytes is the larger VmRSS of the row's two daemons after the round; absent for
	// the underlay.
	RSSBytes int64 `json:"rss_bytes,omitempty"`
}

// StreamRun is one TCP throughput run.
type StreamRun struct {
	Streams int `json:"streams"`
	// Bytes is what the receiver read, all of it also acknowledged to the sender.
	Bytes int64 `json:"bytes"`
	// Seconds is the time from the start of the run to the last byte read.
	Seconds float64 `json:"seconds"`
	// CPUSeconds is the machine's busy CPU time during the run, over every CPU.
	CPUSeconds float64 `json:"cpu_s"`
	// DaemonCPUSeconds is the CPU time the row's two daemons used during the run,
	// together, from /proc/<pid>/stat in ticks of 10 ms; absent for the underlay.
	DaemonCPUSeconds *float64 `json:"daemon_cpu_s,omitempty"`
}

// Gbps returns the run's throughput in Gbit/s; 0 for a run of no time.
func (s StreamRun) Gbps() float64 {
	if !(s.Seconds > 0) {
		return 0
	}
	return float64(s.Bytes) * 8 / s.Seconds / 1e9
}

// CPUPerGB returns the CPU-seconds spent per GB (1e9 bytes) moved; 0 when nothing moved.
func (s StreamRun) CPUPerGB() float64 { return Ratio(s.CPUSeconds, float64(s.Bytes)/1e9) }

// Throughput is the summary of one row's stream runs with one stream count.
type Throughput struct {
	Streams int `json:"streams"`
	// Gbps is the median over rounds.
	Gbps float64 `json:"gbps"`
	// Spread is (max-min)/median over rounds; 0 with one round.
	Spread float64 `json:"spread"`
	// Ratio is the median over rounds of Gbps divided by the underlay's of the same
	// round and stream count; absent without an underlay.
	Ratio float64 `json:"ratio,omitempty"`
	// CPUPerGB is the median over rounds of CPU-seconds per GB moved.
	CPUPerGB float64 `json:"cpu_s_per_gb"`
	// DaemonCPUPercent is the median over rounds of the CPU the row's two daemons used
	// together, in percent of one CPU; absent for the underlay.
	DaemonCPUPercent *float64 `json:"daemon_cpu_pct,omitempty"`
}

// Summarize fills in every row's summary from its Runs. Ratios compare each round with
// the underlay row's run of the same round, so that drift of a noisy machine across
// rounds cancels; rounds the underlay lacks give no ratio.
func (r *Report) Summarize() {
	var under *Row
	for i := range r.Rows {
		if r.Rows[i].Path == PathUnderlay {
			under = &r.Rows[i]
			break
		}
	}
	for i := range r.Rows {
		r.Rows[i].summarize(r.Streams, under)
	}
}

func (row *Row) summarize(streams []int, under *Row) {
	// The underlay's runs by round; the first of a round counts.
	underRuns := map[int]Run{}
	if under != nil {
		for _, u := range slices.Backward(under.Runs) {
			underRuns[u.Round] = u
		}
	}
	underRun := func(round int) (Run, bool) {
		u, ok := underRuns[round]
		return u, ok
	}

	if row.Runs == nil {
		row.Runs = []Run{}
	}
	row.Throughput = []Throughput{}
	for _, n := range streams {
		var gbps, ratios, cpu, daemon []float64
		for _, run := range row.Runs {
			s, ok := run.stream(n)
			if !ok {
				continue
			}
			gbps = append(gbps, s.Gbps())
			cpu = append(cpu, s.CPUPerGB())
			if s.DaemonCPUSeconds != nil && s.Seconds > 0 {
				daemon = append(daemon, *s.DaemonCPUSeconds/s.Seconds*100)
			}
			if u, ok := underRun(run.Round); ok {
				if us, ok := u.stream(n); ok && us.Gbps() > 0 {
					ratios = append(ratios, s.Gbps()/us.Gbps())
				}
			}
		}
		if len(gbps) == 0 {
			continue
		}
		t := Throughput{
			Streams:  n,
			Gbps:     Median(gbps),
			Spread:   Spread(gbps),
			Ratio:    Median(ratios),
			CPUPerGB: Median(cpu),
		}
		if len(daemon) > 0 {
			pct := Median(daemon)
			t.DaemonCPUPercent = &pct
		}
		row.Throughput = append(row.Throughput, t)
	}

	var p50, p99, ratios, rss []float64
	for _, run := range row.Runs {
		if run.RTTCount > 0 {
			p50 = append(p50, run.RTTP50Micros)
			p99 = append(p99, run.RTTP99Micros)
			if u, ok := underRun(run.Round); ok && u.RTTCount > 0 && u.RTTP50Micros > 0 {
				ratios = append(ratios, run.RTTP50Micros/u.RTTP50Micros)
			}
		}
		if run.RSSBytes > 0 {
			rss = append(rss, float64(run.RSSBytes)/(1<<20))
		}
	}
	row.RTTP50Micros, row.RTTP99Micros = Median(p50), Median(p99)
	row.RTTRatio = Median(ratios)
	row.RSSMiB = Median(rss)
}

// stream returns the run's stream run with n streams.
func (run Run) stream(n int) (StreamRun, bool) {
	for _, s := range run.Streams {
		if s.Streams == n {
			return s, true
		}
	}
	return StreamRun{}, false
}

// Failed returns the rows that have an Error.
func (r *Report) Failed() []Row {
	var out []Row
	for _, row := range r.Rows {
		if row.Error != "" {
			out = append(out, row)
		}
	}
	return out
}

// WriteJSON writes r as indented JSON, followed by a newline.
func (r *Report) WriteJSON(w io.Writer) error {
	b, err := json.MarshalIndent(r, "", "  ")
	if err != nil {
		return fmt.Errorf("encoding the bench report: %w", err)
	}
	_, err = w.Write(append(b, '\n'))
	return err
}

// ParseReport reads a report that WriteJSON wrote, checks that its figures can be
// summarised and summarises it afresh from its runs; the summary fields in data are
// ignored. Fields it does not know are skipped, as Format allows.
func ParseReport(data []byte) (*Report, error) {
	var r Report
	if err := json.Unmarshal(data, &r); err != nil {
		return nil, fmt.Errorf("bench report: %w", err)
	}
	if r.Format != Format {
		return nil, fmt.Errorf("bench report: format %q, want %q", r.Format, Format)
	}
	if r.Rounds < 1 || r.CPUs < 0 || !inRange(r.DurationSeconds, 0, maxSeconds) ||
		!inRange(r.RTTSeconds, 0, maxSeconds) || r.WriteBytes < 0 || r.MessageBytes < 0 {
		return nil, fmt.Errorf("bench report: rounds %d, cpus %d, duration %gs, rtt "+
			"duration %gs, write %d bytes, message %d bytes: out of range", r.Rounds, r.CPUs,
			r.DurationSeconds, r.RTTSeconds, r.WriteBytes, r.MessageBytes)
	}
	for i, n := range r.Streams {
		if n < 1 || n > MaxStreams || slices.Contains(r.Streams[:i], n) {
			return nil, fmt.Errorf("bench report: streams %v: want counts from 1 to %d, "+
				"each once", r.Streams, MaxStreams)
		}
	}
	for _, row := range r.Rows {
		if row.Path == "" {
			return nil, fmt.Errorf("bench report: a row of lab %q has no path", row.Lab)
		}
		for _, run := range row.Runs {
			if err := run.check(); err != nil {
				return nil, fmt.Errorf("bench report: %s, round %d: %w", row.Name(), run.Round,
					err)
			}
		}
	}
	r.Summarize()
	return &r, nil
}

// Bounds of the figures a report may hold: far beyond any real run, and small enough
// that every sum, median and ratio of them stays finite.
const (
	maxSeconds = 1e9
	minSeconds = 1e-6
	maxMicros  = 1e12
	minMicros  = 1e-3
)

// inRange reports whether x is 0, or from lo to hi.
func inRange(x, lo, hi float64) bool { return x == 0 || x >= lo && x <= hi }

func (run Run) check() error {
	if run.RTTCount < 0 || run.RSSBytes < 0 || !inRange(run.RTTP50Micros, minMicros, maxMicros) ||
		!inRange(run.RTTP99Micros, minMicros, maxMicros) {
		return fmt.Errorf("latency %d round trips, p50 %gus, p99 %gus, rss %d bytes: out of "+
			"range", run.RTTCount, run.RTTP50Micros, run.RTTP99Micros, run.RSSBytes)
	}
	for _, s := range run.Streams {
		daemon := 0.0
		if s.DaemonCPUSeconds != nil {
			daemon = *s.DaemonCPUSeconds
		}
		if s.Bytes < 0 || !inRange(s.Seconds, minSeconds, maxSeconds) ||
			!inRange(s.CPUSeconds, 0, maxSeconds) || !inRange(daemon, 0, maxSeconds) {
			return fmt.Errorf("%d streams: %d bytes, %gs, %g CPU-s: out of range", s.Streams,
				s.Bytes, s.Seconds, s.CPUSeconds)
		}
	}
	return nil
}
