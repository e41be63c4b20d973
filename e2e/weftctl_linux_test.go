package e2e

import (
	"cmp"
	"encoding/json"
	"os/exec"
	"strings"
	"testing"
)

// weftctl runs the built weftctl with args and returns its exit status and output.
func weftctl(t *testing.T, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	cmd := exec.Command(bins.weftctl, args...)
	var out, errOut strings.Builder
	cmd.Stdout, cmd.Stderr = &out, &errOut
	err := cmd.Run()
	if ee, ok := err.(*exec.ExitError); ok {
		return ee.ExitCode(), out.String(), errOut.String()
	}
	if err != nil {
		t.Fatal(err)
	}
	return 0, out.String(), errOut.String()
}

// TestWeftctlLab drives a lab through weftctl's commands, as a person would.
func TestWeftctlLab(t *testing.T) {
	o := labOptions(t, "cli")
	if bins.weftdErr != nil {
		t.Skipf("weftd does not build: %v", bins.weftdErr)
	}
	name, dir := o.Name, o.StateDir
	t.Cleanup(func() { weftctl(t, "lab", "down", "--name", name, "--state-dir", dir) })

	code, out, errOut := weftctl(t, "lab", "up", "--name", name, "--state-dir", dir,
		"--hosts", "2", "--pods", "1", "--backend", "alloc", "--weftd", bins.weftd,
		"--daemon", "h2="+bins.weftd+" -v 1")
	if code != 0 {
		t.Fatalf("lab up: exit %d\n%s\n%s", code, out, errOut)
	}
	for _, want := range []string{"h1    " + name + "-h1  198.18.0.1/24", name + "-h2-p1",
		"weftctl lab down --name " + name, "etcd ready"} {
		if !strings.Contains(out+errOut, want) {
			t.Errorf("lab up output lacks %q:\n%s\n%s", want, out, errOut)
		}
	}

	code, out, errOut = weftctl(t, "lab", "status", "--name", name, "--state-dir", dir, "--json")
	if code != 0 {
		t.Fatalf("lab status: exit %d\n%s", code, errOut)
	}
	var st Status
	if err := json.Unmarshal([]byte(out), &st); err != nil {
		t.Fatalf("lab status --json: %v\n%s", err, out)
	}
	if len(st.Hosts) != 2 || !st.Etcd.Running || st.Hosts[1].Lease == nil ||
		!st.Hosts[1].Daemon.Running || len(st.Hosts[1].Pods) != 1 {
		t.Errorf("lab status --json = %+v", st)
	}
	if argv := st.Hosts[1].Daemon.Argv; len(argv) < 3 || argv[1] != "-v" || argv[2] != "1" {
		t.Errorf("h2's daemon runs %q, want the --daemon h2= command line first", argv)
	}
	if argv := st.Hosts[0].Daemon.Argv; argv[1] == "-v" {
		t.Errorf("h1's daemon runs %q, want the plain weftd", argv)
	}

	code, out, errOut = weftctl(t, "lab", "exec", "--name", name, "h2-p1", "--",
		"cat", "/proc/net/route")
	if code != 0 || !strings.Contains(out, "eth0") {
		t.Errorf("lab exec cat /proc/net/route in the pod: exit %d\n%s\n%s", code, out, errOut)
	}
	code, _, _ = weftctl(t, "lab", "exec", "--name", name, "h2", "--", "sh", "-c", "exit 3")
	if code != 3 {
		t.Errorf("lab exec of a command exiting 3: exit %d", code)
	}

	code, out, errOut = weftctl(t, "lab", "down", "--name", name, "--state-dir", dir)
	if code != 0 || !strings.Contains(out, "removed") {
		t.Fatalf("lab down: exit %d\n%s\n%s", code, out, errOut)
	}
	assertGone(t, dir, State{Name: name, Etcd: Proc{PID: st.Etcd.PID}})
	if procs := procsRunning(t, name); len(procs) > 0 {
		t.Errorf("processes left after lab down: %v", procs)
	}
}

// TestDemo runs weftctl demo, the program behind make demo, as it is and with the
// other backends.
func TestDemo(t *testing.T) {
	if bins.weftdErr != nil {
		t.Skipf("weftd does not build: %v", bins.weftdErr)
	}
	tests := []struct {
		backend string
		want    string
	}{
		{backend: "", want: "vxlan VNI 2000"},
		{backend: "udp", want: "3 hosts, udp, 1 pod(s)"},
		{backend: "host-gw", want: "3 hosts, host-gw, 1 pod(s)"},
	}
	for _, tt := range tests {
		t.Run(cmp.Or(tt.backend, "default"), func(t *testing.T) {
			o := labOptions(t, "demo")
			args := []string{"demo", "--name", o.Name, "--state-dir", o.StateDir,
				"--weftd", bins.weftd}
			if tt.backend != "" {
				args = append(args, "--backend", tt.backend)
			}
			code, out, errOut := weftctl(t, args...)
			if code != 0 {
				t.Fatalf("demo: exit %d\n%s\n%s", code, out, errOut)
			}
			for _, want := range []string{tt.want, "ping matrix", "h3-p1",
				"lab " + o.Name + " removed"} {
				if !strings.Contains(out, want) {
					t.Errorf("demo output lacks %q:\n%s", want, out)
				}
			}
			if strings.Contains(out, "LOST") {
				t.Errorf("demo lost pings:\n%s", out)
			}
			if ns := labNamespaces(t, o.Name); len(ns) > 0 {
				t.Errorf("namespaces left after the demo: %v", ns)
			}
			if procs := procsRunning(t, o.Name); len(procs) > 0 {
				t.Errorf("processes left after the demo: %v", procs)
			}
		})
	}
}
