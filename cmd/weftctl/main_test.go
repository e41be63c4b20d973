package main

import (
	"context"
	"slices"
	"strings"
	"testing"
)

func runArgs(args ...string) (code int, stdout, stderr string) {
	var out, errOut strings.Builder
	code = run(context.Background(), &env{stdout: &out, stderr: &errOut}, args)
	return code, out.String(), errOut.String()
}

func TestRun(t *testing.T) {
	tests := []struct {
		name   string
		args   []string
		code   int
		stdout string // a part of stdout
		stderr string // a part of stderr
	}{
		{name: "no command", args: nil, code: 2, stderr: "usage: weftctl"},
		{name: "help", args: []string{"help"}, code: 0, stderr: "demo"},
		{name: "unknown", args: []string{"frob"}, code: 2, stderr: `unknown command "frob"`},
		{name: "version", args: []string{"version"}, code: 0, stdout: "weftctl "},
		{name: "lab alone", args: []string{"lab"}, code: 2, stderr: "missing lab command"},
		{name: "lab unknown", args: []string{"lab", "frob"}, code: 2,
			stderr: `unknown lab command "frob"`},
		{name: "lab up bad flag", args: []string{"lab", "up", "--hosts", "x"}, code: 2,
			stderr: "invalid value"},
		{name: "lab up extra argument", args: []string{"lab", "up", "extra"}, code: 2,
			stderr: `unexpected argument "extra"`},
		{name: "lab up bad network", args: []string{"lab", "up", "--network", "10.0.0.0"},
			code: 2, stderr: "is not an IPv4 CIDR"},
		{name: "lab up help", args: []string{"lab", "up", "-h"}, code: 0, stderr: "-backend"},
		{name: "lab exec no target", args: []string{"lab", "exec"}, code: 2,
			stderr: "missing target"},
		{name: "lab exec bad target", args: []string{"lab", "exec", "x1", "--", "true"}, code: 2,
			stderr: `lab target "x1"`},
		{name: "demo bad daemon", args: []string{"demo", "--daemon", "h1="}, code: 2,
			stderr: "empty command"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			code, stdout, stderr := runArgs(tt.args...)
			if code != tt.code || !strings.Contains(stdout, tt.stdout) ||
				!strings.Contains(stderr, tt.stderr) {
				t.Errorf("weftctl %q = %d\nstdout: %s\nstderr: %s\nwant %d, stdout with %q, "+
					"stderr with %q", tt.args, code, stdout, stderr, tt.code, tt.stdout, tt.stderr)
			}
		})
	}
}

func TestDaemonFlags(t *testing.T) {
	var d daemonFlags
	for _, v := range []string{"/usr/bin/flanneld -v=2", "h2=weftd  -ip-masq", "h10=x"} {
		if err := d.Set(v); err != nil {
			t.Fatalf("Set(%q): %v", v, err)
		}
	}
	if !slices.Equal(d.all, []string{"/usr/bin/flanneld", "-v=2"}) {
		t.Errorf("all = %q", d.all)
	}
	if !slices.Equal(d.hosts[2], []string{"weftd", "-ip-masq"}) || !slices.Equal(d.hosts[10],
		[]string{"x"}) {
		t.Errorf("hosts = %v", d.hosts)
	}

	for _, v := range []string{"other", "h2=again", "", "h3=  ", "   "} {
		if err := d.Set(v); err == nil {
			t.Errorf("Set(%q) succeeded, want an error", v)
		}
	}
}

func TestArgFlags(t *testing.T) {
	var a argFlags
	for _, v := range []string{"-ip-masq", "h2=-iptables-resync 1", "-v 2", "h2=-bridge x"} {
		if err := a.Set(v); err != nil {
			t.Fatalf("Set(%q): %v", v, err)
		}
	}
	got, err := a.forHosts(3)
	if err != nil {
		t.Fatal(err)
	}
	want := map[int][]string{
		1: {"-ip-masq", "-v", "2"},
		2: {"-ip-masq", "-v", "2", "-iptables-resync", "1", "-bridge", "x"},
		3: {"-ip-masq", "-v", "2"},
	}
	for h, w := range want {
		if !slices.Equal(got[h], w) {
			t.Errorf("h%d flags %q, want %q", h, got[h], w)
		}
	}
	if len(got) != 3 {
		t.Errorf("flags for %d hosts, want 3: %v", len(got), got)
	}

	if _, err := a.forHosts(1); err == nil || !strings.Contains(err.Error(), "h2") {
		t.Errorf("forHosts(1) with flags for h2: err %v, want one naming h2", err)
	}
	if err := a.Set("h1=  "); err == nil {
		t.Error("Set with no flags succeeded")
	}
	var none argFlags
	if got, err := none.forHosts(3); got != nil || err != nil {
		t.Errorf("no flags: %v, %v; want nil, nil", got, err)
	}
}

func FuzzParseDaemon(f *testing.F) {
	f.Add("h1=weftd -v 2")
	f.Add("/usr/bin/flanneld")
	f.Add("h0=x")
	f.Fuzz(func(t *testing.T, v string) {
		host, argv, err := parseDaemon(v)
		if err != nil {
			return
		}
		if host < 0 || host > 999 || len(argv) == 0 {
			t.Fatalf("parseDaemon(%q) = %d, %q", v, host, argv)
		}
		for _, a := range argv {
			if a == "" || strings.ContainsAny(a, " \t\n") {
				t.Fatalf("parseDaemon(%q) gave argument %q", v, a)
			}
		}
	})
}
