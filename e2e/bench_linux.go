package e2e

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"strconv"
	"strings"
	"time"

	"golang.org/x/sys/unix"

	"github.com/weftnet/weft/internal/bench"
	"github.com/weftnet/weft/internal/netlab"
)

// Bench runs the benchmark that opts describe and returns its report, summarised: it
// builds every row's lab, checks that each row's two endpoints reach each other, measures
// every row once per round, and removes the labs again, also on error and when ctx is
// cancelled. A row whose lab cannot be built, or that fails while measured, keeps its
// error in the report and is left out of later rounds; only a failing underlay, which
// every ratio needs, ends the run with an error. When only removing the labs fails, the
// report comes with that error.
func Bench(ctx context.Context, opts BenchOptions) (_ *bench.Report, err error) {
	o, err := opts.withDefaults()
	if err != nil {
		return nil, err
	}
	cpu, err := readCPUTimes()
	if err != nil {
		return nil, err
	}
	report := &bench.Report{
		Format:          bench.Format,
		Started:         time.Now().UTC().Truncate(time.Second),
		Kernel:          kernelRelease(),
		CPUs:            cpu.CPUs,
		DurationSeconds: o.Duration.Seconds(),
		RTTSeconds:      o.rttDuration().Seconds(),
		Rounds:          o.Repeat,
		Streams:         o.Streams,
		WriteBytes:      benchWriteSize,
		MessageBytes:    benchMessageSize,
	}

	rows := o.rows()
	defer func() {
		// The labs go even after Ctrl-C.
		cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 2*time.Minute)
		defer cancel()
		err = errors.Join(err, downBenchLabs(cctx, rows, o.Log))
	}()
	if err := buildBenchLabs(ctx, rows, o.Log); err != nil {
		return nil, err
	}
	for round := 1; round <= o.Repeat; round++ {
		if err := measureRound(ctx, o, rows, round); err != nil {
			return nil, err
		}
	}

	for _, r := range rows {
		report.Rows = append(report.Rows, r.row)
	}
	report.Summarize()
	return report, nil
}

// buildBenchLabs builds the lab of every row, one after the other, and finds its
// endpoints. A row whose lab fails gets the error and no lab; the error returned is
// for the underlay, or for ctx.
func buildBenchLabs(ctx context.Context, rows []benchRow, log *slog.Logger) error {
	for i := range rows {
		r := &rows[i]
		log.Info("building lab", "row", r.row.Name(), "lab", r.lab.Name)
		l, err := Up(ctx, r.lab)
		if err == nil {
			r.l = l
			r.eps, err = benchEndpoints(ctx, l, r.row.Path == bench.PathUnderlay)
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
		if err != nil && r.row.Path == bench.PathUnderlay {
			return fmt.Errorf("underlay lab %s: %w", r.lab.Name, err)
		}
		if err == nil {
			continue
		}
		r.row.Error = err.Error()
		log.Warn("row left out", "row", r.row.Name(), "error", firstLine(err))
		if r.l != nil {
			// A lab that does not carry traffic would only take CPU from the others.
			if err := r.l.Down(ctx); err != nil {
				return fmt.Errorf("removing lab %s: %w", r.lab.Name, err)
			}
			r.l = nil
		}
	}
	return nil
}

// measureRound measures every row that has not failed once, in order. A row that fails
// gets the error and drops out; the error returned is ctx's.
func measureRound(ctx context.Context, o BenchOptions, rows []benchRow, round int) error {
	for i := range rows {
		r := &rows[i]
		if r.row.Error != "" {
			continue
		}
		run, err := measureRow(ctx, o, r.l, r.eps, round)
		if ctx.Err() != nil {
			return ctx.Err()
		}
		if err != nil {
			r.row.Error = fmt.Sprintf("round %d: %v", round, err)
			o.Log.Warn("row failed", "row", r.row.Name(), "round", round,
				"error", firstLine(err))
			continue
		}
		r.row.Runs = append(r.row.Runs, run)
		attrs := []any{"round", fmt.Sprintf("%d/%d", round, o.Repeat), "row", r.row.Name()}
		o.Log.Info("measured", append(attrs, runAttrs(run)...)...)
	}
	return nil
}

// downBenchLabs removes every lab the rows still have.
func downBenchLabs(ctx context.Context, rows []benchRow, log *slog.Logger) error {
	var errs []error
	removed := 0
	for i := range rows {
		r := &rows[i]
		if r.l == nil {
			continue
		}
		if err := r.l.Down(ctx); err != nil {
			errs = append(errs, fmt.Errorf("removing lab %s: %w", r.lab.Name, err))
		}
		r.l = nil
		removed++
	}
	if removed > 0 {
		log.Info("labs removed", "count", removed)
	}
	return errors.Join(errs...)
}

// benchEndpoints returns the two ends of a row's path, sender first: the hosts for the
// underlay, the pods otherwise. It first waits until they reach each other, which on a
// fresh lab may take the daemons a moment.
func benchEndpoints(ctx context.Context, l *Lab, underlay bool) ([2]Endpoint, error) {
	eps := l.Pods()
	if underlay {
		eps = l.HostEndpoints()
	}
	if len(eps) != 2 {
		return [2]Endpoint{}, fmt.Errorf("lab %s has %d endpoints, want 2", l.Name(), len(eps))
	}
	m, err := PingMatrix(ctx, eps, MatrixOptions{Count: 3})
	if err != nil {
		return [2]Endpoint{}, err
	}
	if failed := m.Failed(); len(failed) > 0 {
		return [2]Endpoint{}, fmt.Errorf("lab %s: no connectivity: %s", l.Name(),
			strings.Join(failed, "; "))
	}
	return [2]Endpoint{eps[0], eps[1]}, nil
}

// measureRow measures one row once: a stream run per stream count, a latency probe, and
// the daemons' memory.
func measureRow(
	ctx context.Context,
	o BenchOptions,
	l *Lab,
	eps [2]Endpoint,
	round int,
) (bench.Run, error) {
	run := bench.Run{Round: round}
	from, to := eps[0], eps[1]
	var daemons []int
	if l.State().Backend != "alloc" {
		for _, h := range l.State().Hosts {
			daemons = append(daemons, h.Daemon.PID)
		}
	}
	for _, n := range o.Streams {
		s, err := measureStream(ctx, from, to, n, o.Duration, daemons)
		if err != nil {
			return run, err
		}
		run.Streams = append(run.Streams, s)
	}

	rtts, err := measureRTT(ctx, from, to, o.rttDuration())
	if err != nil {
		return run, err
	}
	run.RTTCount = len(rtts)
	run.RTTP50Micros = bench.Micros(bench.Percentile(rtts, 50))
	run.RTTP99Micros = bench.Micros(bench.Percentile(rtts, 99))

	if daemons == nil {
		return run, nil
	}
	for _, h := range l.State().Hosts {
		if !h.Daemon.alive() {
			return run, fmt.Errorf("daemon of %s (pid %d) exited; its log %s ends:\n%s",
				h.Name(), h.Daemon.PID, h.Daemon.Log, tailFile(h.Daemon.Log, 10))
		}
		rss, err := readRSS(h.Daemon.PID)
		if err != nil {
			return run, fmt.Errorf("daemon of %s: %w", h.Name(), err)
		}
		run.RSSBytes = max(run.RSSBytes, rss)
	}
	return run, nil
}

// measureStream runs n TCP streams from one endpoint to the other for d and returns
// what arrived, the machine's busy CPU time meanwhile, and the CPU time of the daemons
// with the given PIDs, if any.
func measureStream(
	ctx context.Context,
	from, to Endpoint,
	n int,
	d time.Duration,
	daemons []int,
) (bench.StreamRun, error) {
	addr := netip.AddrPortFrom(to.Addr, benchStreamPort).String()
	l, err := netlab.Listen(to.NS, "tcp", addr)
	if err != nil {
		return bench.StreamRun{}, fmt.Errorf("listening on %s in %s: %w", addr, to.NS, err)
	}
	defer l.Close()
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()

	type drained struct {
		bytes int64
		last  time.Time
		err   error
	}
	done := make(chan drained, 1)
	cpu0, err := readCPUTimes()
	if err != nil {
		return bench.StreamRun{}, err
	}
	daemon0, err := readProcsCPU(daemons)
	if err != nil {
		return bench.StreamRun{}, err
	}
	start := time.Now()
	go func() {
		b, last, err := netlab.Drain(ctx, l, n)
		done <- drained{b, last, err}
	}()
	dial := func(ctx context.Context) (net.Conn, error) {
		return netlab.Dial(ctx, from.NS, "tcp", addr)
	}
	sent, err := netlab.Pump(ctx, dial, netlab.LoadOptions{
		Streams:   n,
		Duration:  d,
		WriteSize: benchWriteSize,
	})
	if err != nil {
		cancel()
		<-done
		return bench.StreamRun{}, fmt.Errorf("%d streams from %s to %s: %w", n, from.Name,
			addr, err)
	}
	got := <-done
	wall := time.Since(start)
	cpu1, err := readCPUTimes()
	if err != nil {
		return bench.StreamRun{}, err
	}
	daemon1, err := readProcsCPU(daemons)
	if err != nil {
		return bench.StreamRun{}, err
	}
	if got.err != nil {
		return bench.StreamRun{}, fmt.Errorf("%d streams from %s to %s: %w", n, from.Name,
			addr, got.err)
	}
	if got.bytes != sent {
		return bench.StreamRun{}, fmt.Errorf("%d streams from %s to %s: %d bytes sent, "+
			"%d received", n, from.Name, addr, sent, got.bytes)
	}
	busy, err := bench.BusySeconds(cpu0, cpu1, wall)
	if err != nil {
		return bench.StreamRun{}, err
	}
	run := bench.StreamRun{
		Streams:    n,
		Bytes:      got.bytes,
		Seconds:    got.last.Sub(start).Seconds(),
		CPUSeconds: busy,
	}
	if len(daemons) > 0 {
		used := max(daemon1-daemon0, 0)
		run.DaemonCPUSeconds = &used
	}
	return run, nil
}

// readProcsCPU returns the CPU time the processes with the given PIDs have used, together.
func readProcsCPU(pids []int) (float64, error) {
	var total float64
	for _, pid := range pids {
		path := "/proc/" + strconv.Itoa(pid) + "/stat"
		data, err := os.ReadFile(path)
		if err != nil {
			return 0, fmt.Errorf("reading the CPU time of daemon %d: %w", pid, err)
		}
		s, err := bench.ParseProcCPU(data)
		if err != nil {
			return 0, fmt.Errorf("%s: %w", path, err)
		}
		total += s
	}
	return total, nil
}

// measureRTT runs a latency probe from one endpoint to the other for d and returns
// every round trip's time.
func measureRTT(ctx context.Context, from, to Endpoint, d time.Duration) (
	[]time.Duration, error,
) {
	addr := netip.AddrPortFrom(to.Addr, benchRTTPort).String()
	l, err := netlab.Listen(to.NS, "tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("listening on %s in %s: %w", addr, to.NS, err)
	}
	defer l.Close()
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	served := make(chan error, 1)
	go func() { served <- netlab.ServeEcho(ctx, l) }()

	conn, err := netlab.Dial(ctx, from.NS, "tcp", addr)
	if err != nil {
		cancel()
		<-served
		return nil, fmt.Errorf("latency probe from %s to %s: %w", from.Name, addr, err)
	}
	rtts, err := netlab.PingPong(ctx, conn, benchMessageSize, d)
	conn.Close()
	if err != nil {
		cancel()
		<-served
		return nil, fmt.Errorf("latency probe from %s: %w", from.Name, err)
	}
	if err := <-served; err != nil {
		return nil, err
	}
	if len(rtts) == 0 {
		return nil, fmt.Errorf("latency probe from %s to %s: no round trip in %s", from.Name,
			addr, d)
	}
	return rtts, nil
}

// runAttrs returns log attributes that sum up a run.
func runAttrs(run bench.Run) []any {
	var attrs []any
	for _, s := range run.Streams {
		attrs = append(attrs, fmt.Sprintf("gbps_%d", s.Streams), round2(s.Gbps()))
		if s.DaemonCPUSeconds != nil && s.Seconds > 0 {
			attrs = append(attrs, fmt.Sprintf("daemon_cpu_pct_%d", s.Streams),
				round2(*s.DaemonCPUSeconds/s.Seconds*100))
		}
	}
	attrs = append(attrs, "rtt_p50_us", round2(run.RTTP50Micros), "rtt_p99_us",
		round2(run.RTTP99Micros))
	if run.RSSBytes > 0 {
		attrs = append(attrs, "rss_mib", round2(float64(run.RSSBytes)/(1<<20)))
	}
	return attrs
}

func round2(x float64) string { return strconv.FormatFloat(x, 'f', 2, 64) }

func readCPUTimes() (bench.CPUTimes, error) {
	data, err := os.ReadFile("/proc/stat")
	if err != nil {
		return bench.CPUTimes{}, fmt.Errorf("reading CPU times: %w", err)
	}
	return bench.ParseCPUStat(data)
}

func readRSS(pid int) (int64, error) {
	path := "/proc/" + strconv.Itoa(pid) + "/status"
	data, err := os.ReadFile(path)
	if err != nil {
		return 0, fmt.Errorf("reading the memory of process %d: %w", pid, err)
	}
	rss, err := bench.ParseVmRSS(data)
	if err != nil {
		return 0, fmt.Errorf("%s: %w", path, err)
	}
	return rss, nil
}

// kernelRelease returns what uname -r prints, or "unknown".
func kernelRelease() string {
	var u unix.Utsname
	if err := unix.Uname(&u); err != nil {
		return "unknown"
	}
	return unix.ByteSliceToString(u.Release[:])
}

// firstLine returns the first line of err's message, for one-line progress.
func firstLine(err error) string {
	s, _, _ := strings.Cut(err.Error(), "\n")
	return s
}
