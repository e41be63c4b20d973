package main

import (
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
