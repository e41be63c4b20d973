package main

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

func TestBenchCommandLine(t *testing.T) {
	tests := []struct {
		name   string
		args   []string
		code   int
		stderr string // a part of stderr
	}{
		{name: "help", args: []string{"bench", "-h"}, code: 0, stderr: "-streams"},
		{name: "help names the underlay", args: []string{"bench", "-h"}, code: 0,
			stderr: "host to host"},
		{name: "bad streams", args: []string{"bench", "--streams", "1,0"}, code: 2,
			stderr: `stream count "0"`},
		{name: "bad backend", args: []string{"bench", "--backends", "vxlan,gre"}, code: 2,
			stderr: `backend "gre"`},
		{name: "bad duration", args: []string{"bench", "--duration", "1ms"}, code: 2,
			stderr: "duration 1ms"},
		{name: "no rounds", args: []string{"bench", "--repeat", "0"}, code: 2,
			stderr: "repeat 0: want 1 or more"},
		{name: "too many rounds", args: []string{"bench", "--repeat", "101"}, code: 2,
			stderr: "repeat 101: want 1 to 100"},
		{name: "no duration", args: []string{"bench", "--duration", "0s"}, code: 2,
			stderr: "duration 0s: want a positive time"},
		{name: "empty daemon", args: []string{"bench", "--daemon", " "}, code: 2,
			stderr: "empty command"},
		{name: "per-host daemon", args: []string{"bench", "--daemon", "h2=weftd"}, code: 2,
			stderr: "hI= is for lab up"},
		{name: "extra argument", args: []string{"bench", "now"}, code: 2,
			stderr: `unexpected argument "now"`},
		{name: "listed in help", args: []string{"help"}, code: 0, stderr: "bench"},
		{name: "from with measuring flags", args: []string{"bench", "--from", "r.json",
			"--repeat", "5", "--backends", "udp"}, code: 2,
			stderr: "--from shows a saved report; --backends, --repeat would measure"},
		{name: "from a missing file", args: []string{"bench", "--from", "/nonexistent.json"},
			code: 1, stderr: "/nonexistent.json"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			code, stdout, stderr := runArgs(tt.args...)
			if code != tt.code || !strings.Contains(stderr, tt.stderr) {
				t.Errorf("weftctl %q = %d\nstdout: %s\nstderr: %s\nwant %d, stderr with %q",
					tt.args, code, stdout, stderr, tt.code, tt.stderr)
			}
		})
	}
}

func TestDaemonList(t *testing.T) {
	var d daemonList
	for _, v := range []string{"/usr/bin/flanneld -v=2", "weftd  -ip-masq"} {
		if err := d.Set(v); err != nil {
			t.Fatal(err)
		}
	}
	if len(d) != 2 || !slices.Equal(d[0], []string{"/usr/bin/flanneld", "-v=2"}) ||
		!slices.Equal(d[1], []string{"weftd", "-ip-masq"}) {
		t.Errorf("daemonList = %q", d)
	}
}

func TestBenchFrom(t *testing.T) {
	dir := t.TempDir()
	saved := filepath.Join(dir, "bench.json")
	report := `{"format": "weft-bench/1", "kernel": "6.18.0", "cpus": 2, "duration_s": 1,
		"rtt_duration_s": 0.5, "rounds": 1, "streams": [1], "write_bytes": 131072,
		"message_bytes": 64, "rows": [
		{"path": "underlay", "lab": "b-under", "runs": [{"round": 1, "streams": [
			{"streams": 1, "bytes": 1000000000, "seconds": 1, "cpu_s": 1}],
			"rtt_count": 10, "rtt_p50_us": 30, "rtt_p99_us": 60}]},
		{"path": "vxlan", "daemon": "weftd", "lab": "b-vxlan", "runs": [{"round": 1,
			"streams": [{"streams": 1, "bytes": 500000000, "seconds": 1, "cpu_s": 1}],
			"rtt_count": 10, "rtt_p50_us": 45, "rtt_p99_us": 90, "rss_bytes": 20971520}]}]}`
	if err := os.WriteFile(saved, []byte(report), 0o644); err != nil {
		t.Fatal(err)
	}

	svg := filepath.Join(dir, "bench.svg")
	code, stdout, stderr := runArgs("bench", "--from", saved, "--svg", svg)
	if code != 0 {
		t.Fatalf("bench --from: exit %d\n%s", code, stderr)
	}
	// The summary is worked out from the runs: half the underlay, 2 CPU-s per GB.
	var line string
	for l := range strings.Lines(stdout) {
		if strings.HasPrefix(l, "vxlan ") {
			line = l
			break
		}
	}
	if f := strings.Fields(line); !slices.Equal(f, []string{"vxlan", "weftd", "1", "4.00",
		"0%", "0.50", "2.00"}) {
		t.Errorf("bench --from shows the vxlan row as %q:\n%s", line, stdout)
	}
	if b, err := os.ReadFile(svg); err != nil || !strings.Contains(string(b), "(0.50x)") {
		t.Errorf("bench --from --svg wrote %d bytes (%v), want a chart with the ratio", len(b),
			err)
	}

	code, stdout, _ = runArgs("bench", "--from", saved, "--json")
	if code != 0 || !strings.Contains(stdout, `"ratio": 0.5`) {
		t.Errorf("bench --from --json: exit %d\n%s", code, stdout)
	}

	if err := os.WriteFile(saved, []byte(`{"format": "other"}`), 0o644); err != nil {
		t.Fatal(err)
	}
	code, _, stderr = runArgs("bench", "--from", saved)
	if code != 1 || !strings.Contains(stderr, `format "other"`) {
		t.Errorf("bench --from a foreign file: exit %d\n%s", code, stderr)
	}
}
