package e2e

import (
	"bufio"
	"bytes"
	"encoding/json"
	"encoding/xml"
	"errors"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/weftnet/weft/internal/bench"
	"github.com/weftnet/weft/internal/netlab"
	"github.com/weftnet/weft/internal/nstest"
)

// benchTestSetup skips unless the test can build labs with weftd, and returns a state
// directory of its own.
func benchTestSetup(t *testing.T) (stateDir string) {
	t.Helper()
	nstest.RequireRoot(t)
	buildBinaries(t)
	if bins.weftdErr != nil {
		t.Skipf("weftd does not build: %v", bins.weftdErr)
	}
	return t.TempDir()
}

// benchLabsGone checks that no namespace and no process of the run's labs is left.
func benchLabsGone(t *testing.T, prefix string) {
	t.Helper()
	all, err := netlab.List()
	if err != nil {
		t.Fatal(err)
	}
	for _, n := range all {
		if strings.HasPrefix(n, prefix+"-") {
			t.Errorf("namespace %s left after the bench", n)
		}
	}
	for _, suffix := range []string{"under", "vxlan", "hostgw", "d2-vxlan", "d2-hostgw"} {
		if procs := procsRunning(t, prefix+"-"+suffix); len(procs) > 0 {
			t.Errorf("processes of lab %s-%s left after the bench: %v", prefix, suffix, procs)
		}
	}
}

// TestBenchCommand runs a short weftctl bench, vxlan and host-gw under weftd and under a
// second weftd command line, and checks the JSON, the chart and the cleanup.
func TestBenchCommand(t *testing.T) {
	dir := benchTestSetup(t)
	const prefix = "wt-bn-t"
	// Not in the state directory, which goes with the last lab.
	svgPath := filepath.Join(t.TempDir(), "bench.svg")
	cmd := exec.Command(bins.weftctl, "bench", "--name", prefix, "--state-dir", dir,
		"--weftd", bins.weftd, "--daemon", bins.weftd+" -v 1",
		"--backends", "vxlan,host-gw", "--duration", "1s", "--repeat", "1", "--streams", "1,2",
		"--json", "--svg", svgPath)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	start := time.Now()
	err := cmd.Run()
	t.Logf("weftctl bench took %s; its progress:\n%s", time.Since(start), stderr.String())
	benchLabsGone(t, prefix)
	if err != nil {
		t.Fatalf("weftctl bench: %v\n%s", err, stdout.String())
	}

	// The field names scripts rely on, read as plain JSON.
	var doc map[string]any
	if err := json.Unmarshal(stdout.Bytes(), &doc); err != nil {
		t.Fatalf("bench --json printed no JSON: %v\n%s", err, stdout.String())
	}
	for _, k := range []string{"format", "kernel", "cpus", "duration_s", "rounds", "streams",
		"rows"} {
		if _, ok := doc[k]; !ok {
			t.Errorf("the report lacks %q", k)
		}
	}

	var r bench.Report
	if err := json.Unmarshal(stdout.Bytes(), &r); err != nil {
		t.Fatal(err)
	}
	if r.Format != bench.Format || r.Rounds != 1 || !slices.Equal(r.Streams, []int{1, 2}) ||
		r.CPUs < 1 || r.DurationSeconds != 1 {
		t.Errorf("report header = %+v", r)
	}
	var names []string
	for _, row := range r.Rows {
		names = append(names, row.Name())
	}
	wantNames := []string{"underlay", "vxlan (weftd)", "vxlan (weftd -v 1)", "host-gw (weftd)",
		"host-gw (weftd -v 1)"}
	if !slices.Equal(names, wantNames) {
		t.Fatalf("rows %q, want %q", names, wantNames)
	}
	for _, row := range r.Rows {
		t.Run(row.Name(), func(t *testing.T) { checkBenchRow(t, row) })
	}

	// The chart: valid XML with one bar per row and stream count.
	svg, err := os.ReadFile(svgPath)
	if err != nil {
		t.Fatal(err)
	}
	bars := svgBars(t, svg)
	var wantBars []string
	for _, n := range wantNames {
		wantBars = append(wantBars, n+" 1", n+" 2")
	}
	if !slices.Equal(bars, wantBars) {
		t.Errorf("chart bars %q, want %q", bars, wantBars)
	}
}

// checkBenchRow checks that a row was measured and that every figure is positive.
func checkBenchRow(t *testing.T, row bench.Row) {
	t.Helper()
	if row.Error != "" || len(row.Runs) != 1 {
		t.Fatalf("row error %q, %d runs", row.Error, len(row.Runs))
	}
	run := row.Runs[0]
	if len(run.Streams) != 2 {
		t.Fatalf("%d stream runs, want 2", len(run.Streams))
	}
	for _, s := range run.Streams {
		if s.Bytes <= 0 || s.Seconds < 0.9 || s.CPUSeconds <= 0 {
			t.Errorf("%d streams: %d bytes in %.3fs, %.3f CPU-s", s.Streams, s.Bytes, s.Seconds,
				s.CPUSeconds)
		}
	}
	if run.RTTCount <= 0 || run.RTTP50Micros <= 0 || run.RTTP99Micros < run.RTTP50Micros {
		t.Errorf("latency: %d round trips, p50 %.1f us, p99 %.1f us", run.RTTCount,
			run.RTTP50Micros, run.RTTP99Micros)
	}
	underlay := row.Path == bench.PathUnderlay
	for _, s := range run.Streams {
		// An idle daemon may use less CPU than one tick of 10 ms: 0 is a figure too.
		if underlay != (s.DaemonCPUSeconds == nil) || s.DaemonCPUSeconds != nil &&
			(*s.DaemonCPUSeconds < 0 || *s.DaemonCPUSeconds > 2*s.Seconds) {
			t.Errorf("%d streams: daemon CPU %v: want 0 to 2 CPUs for every row but the "+
				"underlay", s.Streams, s.DaemonCPUSeconds)
		}
	}
	if underlay != (run.RSSBytes == 0) || underlay != (row.RSSMiB == 0) {
		t.Errorf("daemon memory %d bytes, %.1f MiB: want it for every row but the underlay",
			run.RSSBytes, row.RSSMiB)
	}
	if row.RSSMiB < 0 || row.RSSMiB > 1024 {
		t.Errorf("daemon memory %.1f MiB", row.RSSMiB)
	}

	if len(row.Throughput) != 2 {
		t.Fatalf("%d throughput summaries, want 2", len(row.Throughput))
	}
	for _, tp := range row.Throughput {
		if tp.Gbps <= 0 || tp.Ratio <= 0 || tp.CPUPerGB <= 0 {
			t.Errorf("%d streams: %.2f Gbit/s, %.2fx the underlay, %.2f CPU-s/GB", tp.Streams,
				tp.Gbps, tp.Ratio, tp.CPUPerGB)
		}
		if underlay != (tp.DaemonCPUPercent == nil) {
			t.Errorf("%d streams: daemon CPU %v %%: want it for every row but the underlay",
				tp.Streams, tp.DaemonCPUPercent)
		}
		if underlay && tp.Ratio != 1 {
			t.Errorf("the underlay is %.2fx itself", tp.Ratio)
		}
	}
	if row.RTTP50Micros <= 0 || row.RTTP99Micros <= 0 || row.RTTRatio <= 0 {
		t.Errorf("latency summary: p50 %.1f us, p99 %.1f us, %.2fx the underlay",
			row.RTTP50Micros, row.RTTP99Micros, row.RTTRatio)
	}
}

// svgBars parses an SVG document and returns its bars as "<row> <streams>".
func svgBars(t *testing.T, doc []byte) []string {
	t.Helper()
	var bars []string
	d := xml.NewDecoder(bytes.NewReader(doc))
	for {
		tok, err := d.Token()
		if errors.Is(err, io.EOF) {
			return bars
		}
		if err != nil {
			t.Fatalf("the chart is not valid XML: %v", err)
		}
		se, ok := tok.(xml.StartElement)
		if !ok || se.Name.Local != "rect" {
			continue
		}
		attr := map[string]string{}
		for _, a := range se.Attr {
			attr[a.Name.Local] = a.Value
		}
		if attr["class"] == "bar" {
			bars = append(bars, attr["data-row"]+" "+attr["data-streams"])
		}
	}
}

// TestBenchInterrupted stops weftctl bench with SIGINT while it measures, and expects
// it to say so and leave nothing behind.
func TestBenchInterrupted(t *testing.T) {
	dir := benchTestSetup(t)
	const prefix = "wt-bn-i"
	cmd := exec.Command(bins.weftctl, "bench", "--name", prefix, "--state-dir", dir,
		"--weftd", bins.weftd, "--backends", "vxlan", "--duration", "30s", "--repeat", "1")
	errOut, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		// Only if the test failed before the process ended.
		if cmd.ProcessState == nil {
			cmd.Process.Kill()
			cmd.Wait()
		}
	})

	// The last lab's pods are wired: the first stream run starts next.
	var progress strings.Builder
	sc := bufio.NewScanner(errOut)
	for sc.Scan() {
		progress.WriteString(sc.Text() + "\n")
		if strings.Contains(sc.Text(), "pods wired") {
			break
		}
	}
	time.Sleep(time.Second)
	if err := cmd.Process.Signal(syscall.SIGINT); err != nil {
		t.Fatal(err)
	}
	rest, _ := io.ReadAll(errOut)
	progress.Write(rest)
	start := time.Now()
	err = cmd.Wait()
	t.Logf("progress:\n%s", progress.String())

	var ee *exec.ExitError
	if !errors.As(err, &ee) || ee.ExitCode() != 1 {
		t.Errorf("weftctl bench after SIGINT: %v, want exit status 1", err)
	}
	if !strings.Contains(progress.String(), "interrupted") {
		t.Errorf("weftctl bench does not say it was interrupted")
	}
	if took := time.Since(start); took > 20*time.Second {
		t.Errorf("weftctl bench took %s to stop", took)
	}
	benchLabsGone(t, prefix)
}
