package bench

import (
	"bytes"
	"encoding/json"
	"encoding/xml"
	"errors"
	"io"
	"math"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"
)

// sampleReport returns a report of two rounds over the underlay, vxlan under two daemons
// and a udp row that never came up. In round 2 the whole machine is slower by a quarter,
// which the same-round ratios must not see.
func sampleReport() *Report {
	gb := int64(1e9)
	run := func(round int, gbps1, gbps4, p50 float64, rss int64) Run {
		slow := 1.0
		if round == 2 {
			slow = 0.75
		}
		return Run{
			Round: round,
			Streams: []StreamRun{
				{Streams: 1, Bytes: int64(gbps1 * slow * float64(gb) / 8), Seconds: 1,
					CPUSeconds: gbps1 * slow / 8 * 0.2},
				{Streams: 4, Bytes: int64(gbps4 * slow * float64(gb) / 8), Seconds: 1,
					CPUSeconds: gbps4 * slow / 8 * 0.3},
			},
			RTTCount:     1000,
			RTTP50Micros: p50 / slow,
			RTTP99Micros: 2 * p50 / slow,
			RSSBytes:     rss,
		}
	}
	r := &Report{
		Format:          Format,
		Started:         time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC),
		Kernel:          "6.18.0",
		CPUs:            2,
		DurationSeconds: 1,
		RTTSeconds:      0.5,
		Rounds:          2,
		Streams:         []int{1, 4},
		WriteBytes:      128 << 10,
		MessageBytes:    64,
		Rows: []Row{
			{Path: PathUnderlay, Lab: "b-under",
				Runs: []Run{run(1, 10, 12, 30, 0), run(2, 10, 12, 30, 0)}},
			{Path: "vxlan", Daemon: "weftd", Command: []string{"weftd"}, Lab: "b-vxlan",
				Runs: []Run{run(1, 8, 9, 33, 10<<20), run(2, 8, 9, 33, 12<<20)}},
			{Path: "vxlan", Daemon: "flanneld", Command: []string{"/usr/bin/flanneld"},
				Lab:  "b-d2-vxlan",
				Runs: []Run{run(1, 7, 9, 36, 40<<20), run(2, 7, 9, 36, 44<<20)}},
			{Path: "udp", Daemon: "weftd", Command: []string{"weftd"}, Lab: "b-udp",
				Error: "weftd has no udp backend\nits log ends: ..."},
		},
	}
	// weftd's vxlan daemons: 2 and 4 % of a CPU with one stream, idle with four.
	vx := r.Rows[1].Runs
	vx[0].Streams[0].DaemonCPUSeconds = ptr(0.02)
	vx[1].Streams[0].DaemonCPUSeconds = ptr(0.04)
	vx[0].Streams[1].DaemonCPUSeconds = ptr(0)
	vx[1].Streams[1].DaemonCPUSeconds = ptr(0)
	return r
}

func ptr(x float64) *float64 { return &x }

func near(a, b float64) bool { return math.Abs(a-b) <= 1e-6*math.Max(1, math.Abs(b)) }

func TestSummarize(t *testing.T) {
	r := sampleReport()
	r.Summarize()

	tests := []struct {
		name string
		got  float64
		want float64
	}{
		// medians of 10 and 7.5
		{name: "underlay 1 stream Gbit/s", got: r.Rows[0].Throughput[0].Gbps, want: 8.75},
		{name: "underlay ratio", got: r.Rows[0].Throughput[0].Ratio, want: 1},
		{name: "underlay spread", got: r.Rows[0].Throughput[0].Spread, want: 2.5 / 8.75},
		{name: "vxlan 1 stream ratio, same round", got: r.Rows[1].Throughput[0].Ratio,
			want: 0.8},
		{name: "vxlan 4 streams ratio", got: r.Rows[1].Throughput[1].Ratio, want: 0.75},
		{name: "flanneld 1 stream ratio", got: r.Rows[2].Throughput[0].Ratio, want: 0.7},
		{name: "CPU per GB", got: r.Rows[1].Throughput[0].CPUPerGB, want: 0.2},
		{name: "CPU per GB, 4 streams", got: r.Rows[1].Throughput[1].CPUPerGB, want: 0.3},
		{name: "RTT p50 median", got: r.Rows[1].RTTP50Micros, want: (33 + 44) / 2.0},
		{name: "RTT p99 median", got: r.Rows[1].RTTP99Micros, want: (66 + 88) / 2.0},
		{name: "RTT ratio", got: r.Rows[1].RTTRatio, want: 1.1},
		{name: "RSS median in MiB", got: r.Rows[1].RSSMiB, want: 11},
		{name: "no RSS for the underlay", got: r.Rows[0].RSSMiB, want: 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if !near(tt.got, tt.want) {
				t.Errorf("got %v, want %v", tt.got, tt.want)
			}
		})
	}

	if p := r.Rows[1].Throughput[0].DaemonCPUPercent; p == nil || !near(*p, 3) {
		t.Errorf("vxlan daemon CPU with one stream = %v, want 3 %%", p)
	}
	if p := r.Rows[1].Throughput[1].DaemonCPUPercent; p == nil || *p != 0 {
		t.Errorf("vxlan daemon CPU with four streams = %v, want a measured 0 %%", p)
	}
	if p := r.Rows[0].Throughput[0].DaemonCPUPercent; p != nil {
		t.Errorf("the underlay has a daemon CPU of %v %%", *p)
	}

	udp := r.Rows[3]
	if udp.Throughput == nil || len(udp.Throughput) != 0 || udp.Runs == nil ||
		udp.RTTP50Micros != 0 {
		t.Errorf("the failed row's summary = %+v, want empty, non-nil lists", udp)
	}
	if f := r.Failed(); len(f) != 1 || f[0].Name() != "udp (weftd)" {
		t.Errorf("Failed() = %v, want the udp row", f)
	}
}

func TestSummarizeWithoutUnderlay(t *testing.T) {
	r := sampleReport()
	r.Rows = r.Rows[1:]
	r.Summarize()
	if got := r.Rows[0].Throughput[0]; got.Ratio != 0 || got.Gbps <= 0 {
		t.Errorf("throughput without an underlay = %+v, want Gbit/s and no ratio", got)
	}
	if r.Rows[0].RTTRatio != 0 {
		t.Errorf("RTT ratio without an underlay = %v, want none", r.Rows[0].RTTRatio)
	}
}

func TestWriteJSON(t *testing.T) {
	r := sampleReport()
	r.Summarize()
	var b bytes.Buffer
	if err := r.WriteJSON(&b); err != nil {
		t.Fatal(err)
	}

	// The field names are a promise to scripts: check them as plain JSON.
	var doc map[string]any
	if err := json.Unmarshal(b.Bytes(), &doc); err != nil {
		t.Fatalf("WriteJSON wrote invalid JSON: %v\n%s", err, b.String())
	}
	for _, k := range []string{"format", "started", "kernel", "cpus", "duration_s",
		"rtt_duration_s", "rounds", "streams", "write_bytes", "message_bytes", "rows"} {
		if _, ok := doc[k]; !ok {
			t.Errorf("report lacks %q", k)
		}
	}
	rows := doc["rows"].([]any)
	vx := rows[1].(map[string]any)
	for _, k := range []string{"path", "daemon", "command", "lab", "runs", "throughput",
		"rtt_p50_us", "rtt_p99_us", "rtt_p50_ratio", "rss_mib"} {
		if _, ok := vx[k]; !ok {
			t.Errorf("row lacks %q", k)
		}
	}
	tp := vx["throughput"].([]any)[0].(map[string]any)
	for _, k := range []string{"streams", "gbps", "spread", "ratio", "cpu_s_per_gb",
		"daemon_cpu_pct"} {
		if _, ok := tp[k]; !ok {
			t.Errorf("throughput lacks %q", k)
		}
	}
	idle := vx["throughput"].([]any)[1].(map[string]any)
	if v, ok := idle["daemon_cpu_pct"]; !ok || v != 0.0 {
		t.Errorf("an idle daemon's CPU shows as %v, %v; want 0", v, ok)
	}
	underTP := rows[0].(map[string]any)["throughput"].([]any)[0].(map[string]any)
	if _, ok := underTP["daemon_cpu_pct"]; ok {
		t.Error("the underlay's throughput has a daemon CPU")
	}
	run := vx["runs"].([]any)[0].(map[string]any)
	for _, k := range []string{"round", "streams", "rtt_count", "rtt_p50_us", "rtt_p99_us",
		"rss_bytes"} {
		if _, ok := run[k]; !ok {
			t.Errorf("run lacks %q", k)
		}
	}
	sr := run["streams"].([]any)[0].(map[string]any)
	for _, k := range []string{"streams", "bytes", "seconds", "cpu_s", "daemon_cpu_s"} {
		if _, ok := sr[k]; !ok {
			t.Errorf("stream run lacks %q", k)
		}
	}
	under := rows[0].(map[string]any)
	for _, k := range []string{"daemon", "rss_mib", "error"} {
		if _, ok := under[k]; ok {
			t.Errorf("the underlay row has %q", k)
		}
	}
	if e := rows[3].(map[string]any)["error"]; e == nil {
		t.Error("the failed row has no error")
	}
	if doc["format"] != Format {
		t.Errorf("format = %v", doc["format"])
	}

	// And it reads back into the same report.
	var back Report
	if err := json.Unmarshal(b.Bytes(), &back); err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(back.Rows[1].Throughput, r.Rows[1].Throughput) ||
		!slices.Equal(back.Streams, r.Streams) || !back.Started.Equal(r.Started) {
		t.Errorf("JSON round trip changed the report:\n%+v\n%+v", back.Rows[1], r.Rows[1])
	}
}

func TestWriteTable(t *testing.T) {
	r := sampleReport()
	r.Summarize()
	var b strings.Builder
	if err := r.WriteTable(&b); err != nil {
		t.Fatal(err)
	}
	out := b.String()
	lines := strings.Split(out, "\n")
	// find returns the line whose words start with the words of prefix.
	words := func(s string) string { return strings.Join(strings.Fields(s), " ") }
	find := func(prefix string) string {
		for _, l := range lines {
			if strings.HasPrefix(words(l), words(prefix)) {
				return l
			}
		}
		return ""
	}

	tests := []struct {
		name   string
		prefix string // the words the table line starts with
		fields []string
	}{
		{name: "header", prefix: "PATH DAEMON STREAMS",
			fields: []string{"Gbit/s", "SPREAD", "x UNDERLAY", "CPU-s/GB", "DAEMON CPU"}},
		{name: "vxlan weftd 1 stream", prefix: "vxlan weftd 1",
			fields: []string{"7.00", "0.80", "3.0%"}},
		{name: "underlay 1 stream", prefix: "underlay 1",
			fields: []string{"8.75", "29%", "1.00", "0.20"}},
		{name: "vxlan weftd 4 streams", prefix: "vxlan weftd 4",
			fields: []string{"7.88", "29%", "0.75", "0.30", "0.0%"}},
		{name: "flanneld 1 stream", prefix: "vxlan flanneld 1",
			fields: []string{"0.70"}},
		{name: "latency header", prefix: "PATH DAEMON RTT p50",
			fields: []string{"RTT p99", "DAEMON RSS"}},
		{name: "flanneld latency", prefix: "vxlan flanneld 42 us",
			fields: []string{"84 us", "1.20", "42.0 MiB"}},
		{name: "failed row", prefix: "udp (weftd): weftd has no udp backend",
			fields: []string{"(more in --json)"}},
		{name: "the machine is named", prefix: "1s per run, 2 rounds interleaved, medians;",
			fields: []string{"kernel 6.18.0, 2 CPUs"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			l := find(tt.prefix)
			if l == "" {
				t.Fatalf("no line starts with %q:\n%s", tt.prefix, out)
			}
			for _, f := range tt.fields {
				if !strings.Contains(l, f) {
					t.Errorf("line %q lacks %q", l, f)
				}
			}
		})
	}
	for _, want := range []string{"/proc/stat", "share this machine's 2 CPUs",
		"128 KiB writes", "64-byte TCP requests"} {
		if !strings.Contains(out, want) {
			t.Errorf("table lacks %q:\n%s", want, out)
		}
	}
	if strings.Contains(out, "its log ends") {
		t.Errorf("table shows more than the first line of an error:\n%s", out)
	}
}

// chartBar is a bar of the chart as the XML says it.
type chartBar struct {
	row     string
	streams string
	width   string
}

// parseSVG decodes every element of an SVG document and returns its root's name and
// its bars.
func parseSVG(t *testing.T, doc []byte) (root string, bars []chartBar) {
	t.Helper()
	d := xml.NewDecoder(bytes.NewReader(doc))
	for {
		tok, err := d.Token()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatalf("the SVG is not valid XML: %v\n%s", err, doc)
		}
		se, ok := tok.(xml.StartElement)
		if !ok {
			continue
		}
		if root == "" {
			root = se.Name.Space + " " + se.Name.Local
		}
		attr := map[string]string{}
		for _, a := range se.Attr {
			attr[a.Name.Local] = a.Value
		}
		if se.Name.Local == "rect" && attr["class"] == "bar" {
			bars = append(bars, chartBar{row: attr["data-row"], streams: attr["data-streams"],
				width: attr["width"]})
		}
	}
	return root, bars
}

func TestWriteSVG(t *testing.T) {
	r := sampleReport()
	r.Rows[2].Daemon = `flanneld <"v0.28" & co>`
	r.Summarize()
	var b bytes.Buffer
	if err := r.WriteSVG(&b); err != nil {
		t.Fatal(err)
	}
	root, bars := parseSVG(t, b.Bytes())
	if root != "http://www.w3.org/2000/svg svg" {
		t.Errorf("root element %q, want an svg in the SVG namespace", root)
	}

	// One bar per row and stream count, none for the row without figures.
	var want []chartBar
	for _, row := range r.Rows[:3] {
		for _, n := range []string{"1", "4"} {
			want = append(want, chartBar{row: row.Name(), streams: n})
		}
	}
	var got []chartBar
	for _, bar := range bars {
		got = append(got, chartBar{row: bar.row, streams: bar.streams})
		if w := bar.width; w == "" || w == "0.0" || strings.HasPrefix(w, "-") {
			t.Errorf("bar %s/%s has width %q", bar.row, bar.streams, w)
		}
	}
	if !slices.Equal(got, want) {
		t.Errorf("bars = %v\nwant %v", got, want)
	}

	out := b.String()
	for _, s := range []string{"throughput, Gbit/s", "path (daemon)", "not measured: weftd " +
		"has no udp backend", `class="reference"`, "(0.80x)", "1 stream", "4 streams"} {
		if !strings.Contains(out, s) {
			t.Errorf("SVG lacks %q", s)
		}
	}
}

func TestNiceStep(t *testing.T) {
	tests := []struct {
		in, want float64
	}{
		{in: 1.9, want: 2}, {in: 2, want: 2}, {in: 2.1, want: 2.5}, {in: 3, want: 5},
		{in: 0.07, want: 0.1}, {in: 7, want: 10}, {in: 0, want: 1}, {in: math.NaN(), want: 1},
	}
	for _, tt := range tests {
		if got := niceStep(tt.in); !near(got, tt.want) {
			t.Errorf("niceStep(%v) = %v, want %v", tt.in, got, tt.want)
		}
	}
}

func TestParseReport(t *testing.T) {
	r := sampleReport()
	r.Summarize()
	var b bytes.Buffer
	if err := r.WriteJSON(&b); err != nil {
		t.Fatal(err)
	}
	good := b.String()

	back, err := ParseReport([]byte(good))
	if err != nil {
		t.Fatalf("ParseReport of WriteJSON's output: %v", err)
	}
	if !reflect.DeepEqual(back.Rows[1], r.Rows[1]) || back.Rows[3].Error == "" {
		t.Errorf("ParseReport changed the report: %+v", back.Rows[1])
	}

	// The summary is derived again from the runs, whatever the file says.
	tampered := strings.Replace(good, `"gbps": 7`, `"gbps": 70`, 1)
	if tampered == good {
		t.Fatal("the sample has no vxlan figure of 7 Gbit/s to tamper with")
	}
	if back, err := ParseReport([]byte(tampered)); err != nil ||
		back.Rows[1].Throughput[0].Gbps != 7 {
		t.Errorf("ParseReport kept a summary that its runs contradict: %v", err)
	}

	tests := []struct {
		name    string
		edit    func(string) string
		wantErr string
	}{
		{name: "not JSON", edit: func(string) string { return "{" }, wantErr: "bench report"},
		{name: "other format", edit: func(s string) string {
			return strings.Replace(s, Format, "weft-bench/9", 1)
		}, wantErr: `format "weft-bench/9"`},
		{name: "no rounds", edit: func(s string) string {
			return strings.Replace(s, `"rounds": 2`, `"rounds": 0`, 1)
		}, wantErr: "rounds 0"},
		{name: "bad streams", edit: func(s string) string {
			return strings.Replace(s, "\"streams\": [\n    1,", "\"streams\": [\n    4,", 1)
		}, wantErr: "streams [4 4]"},
		{name: "negative bytes", edit: func(s string) string {
			return strings.Replace(s, `"bytes": 1250000000`, `"bytes": -1`, 1)
		}, wantErr: "underlay, round 1: 1 streams: -1 bytes"},
		{name: "negative daemon CPU", edit: func(s string) string {
			return strings.Replace(s, `"daemon_cpu_s": 0.02`, `"daemon_cpu_s": -0.02`, 1)
		}, wantErr: "out of range"},
		{name: "a run of a femtosecond", edit: func(s string) string {
			return strings.Replace(s, `"seconds": 1,`, `"seconds": 1e-15,`, 1)
		}, wantErr: "out of range"},
		{name: "no path", edit: func(s string) string {
			return strings.Replace(s, `"path": "udp"`, `"path": ""`, 1)
		}, wantErr: `lab "b-udp" has no path`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			in := tt.edit(good)
			if in == good {
				t.Fatal("the edit changed nothing")
			}
			_, err := ParseReport([]byte(in))
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Errorf("ParseReport = %v, want an error with %q", err, tt.wantErr)
			}
		})
	}
}

func FuzzParseReport(f *testing.F) {
	r := sampleReport()
	r.Summarize()
	var b bytes.Buffer
	if err := r.WriteJSON(&b); err != nil {
		f.Fatal(err)
	}
	f.Add(b.Bytes())
	f.Add([]byte(`{"format":"weft-bench/1","rounds":1,"streams":[1],"rows":[{"path":"x",` +
		`"runs":[{"round":1,"streams":[{"streams":1,"bytes":1,"seconds":1e-6}]}]}]}`))
	f.Add([]byte(`{"format":"weft-bench/1","rounds":1}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		r, err := ParseReport(data)
		if err != nil {
			return
		}
		// Whatever is accepted can be shown in every form.
		if err := r.WriteJSON(io.Discard); err != nil {
			t.Fatalf("WriteJSON of an accepted report: %v", err)
		}
		if err := r.WriteTable(io.Discard); err != nil {
			t.Fatalf("WriteTable of an accepted report: %v", err)
		}
		var svg bytes.Buffer
		if err := r.WriteSVG(&svg); err != nil {
			t.Fatalf("WriteSVG of an accepted report: %v", err)
		}
		d := xml.NewDecoder(&svg)
		for {
			_, err := d.Token()
			if errors.Is(err, io.EOF) {
				break
			}
			if err != nil {
				t.Fatalf("the chart of an accepted report is not XML: %v", err)
			}
		}
	})
}
