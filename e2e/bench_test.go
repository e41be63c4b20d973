package e2e

import (
	"slices"
	"strings"
	"testing"
	"time"
)

func TestBenchOptions(t *testing.T) {
	tests := []struct {
		name    string
		opts    BenchOptions
		wantErr string
	}{
		{name: "defaults", opts: BenchOptions{}},
		{name: "unknown backend", opts: BenchOptions{Backends: []string{"vxlan", "ipsec"}},
			wantErr: `backend "ipsec": want one of vxlan, udp, host-gw`},
		{name: "alloc is no data plane", opts: BenchOptions{Backends: []string{"alloc"}},
			wantErr: `backend "alloc"`},
		{name: "backend twice", opts: BenchOptions{Backends: []string{"vxlan", "VXLAN"}},
			wantErr: "backend vxlan is listed twice"},
		{name: "duration too short", opts: BenchOptions{Duration: time.Millisecond},
			wantErr: "duration 1ms: want 100ms to 1h0m0s"},
		{name: "negative repeat", opts: BenchOptions{Repeat: -1}, wantErr: "repeat -1"},
		{name: "too many streams", opts: BenchOptions{Streams: []int{1, 65}},
			wantErr: "streams [1 65]"},
		{name: "streams twice", opts: BenchOptions{Streams: []int{4, 4}},
			wantErr: "streams [4 4]"},
		{name: "name too long for its labs",
			opts:    BenchOptions{Name: strings.Repeat("b", 33), Daemons: [][]string{nil, {"x"}}},
			wantErr: "is too long or not a lab name"},
		{name: "name not a lab name", opts: BenchOptions{Name: "Bench"},
			wantErr: `bench name "Bench"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.opts.Check()
			if tt.wantErr == "" && err != nil {
				t.Fatalf("Check() = %v", err)
			}
			if tt.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tt.wantErr)) {
				t.Fatalf("Check() = %v, want an error with %q", err, tt.wantErr)
			}
		})
	}

	o, err := BenchOptions{}.withDefaults()
	if err != nil {
		t.Fatal(err)
	}
	if o.Duration != 5*time.Second || o.Repeat != 3 || !slices.Equal(o.Streams, []int{1, 4}) ||
		!slices.Equal(o.Backends, []string{"vxlan", "udp", "host-gw"}) || len(o.Daemons) != 1 {
		t.Errorf("defaults = %+v", o)
	}
	if d := o.rttDuration(); d != 2500*time.Millisecond {
		t.Errorf("latency probe of a 5s run lasts %s, want 2.5s", d)
	}
	o.Duration = 200 * time.Millisecond
	if d := o.rttDuration(); d != 500*time.Millisecond {
		t.Errorf("latency probe of a 200ms run lasts %s, want at least 500ms", d)
	}
}

func TestBenchRows(t *testing.T) {
	o, err := BenchOptions{
		Name:     "wt-bn-u",
		Backends: []string{"vxlan", "host-gw"},
		Daemons:  [][]string{nil, {"/opt/flannel/flanneld", "-v=2"}, {"/tmp/weftd"}},
		Weftd:    "/usr/local/bin/weftd",
	}.withDefaults()
	if err != nil {
		t.Fatal(err)
	}
	type row struct {
		name, lab, backend string
		pods               int
		daemon             string // the lab's daemon command line, "" for weftd
	}
	var got []row
	for _, r := range o.rows() {
		got = append(got, row{name: r.row.Name(), lab: r.lab.Name, backend: r.lab.Backend,
			pods: r.lab.Pods, daemon: strings.Join(r.lab.Daemon, " ")})
		if r.lab.Hosts != 2 || r.lab.Weftd != o.Weftd {
			t.Errorf("lab %s: %d hosts, weftd %q", r.lab.Name, r.lab.Hosts, r.lab.Weftd)
		}
	}
	want := []row{
		{name: "underlay", lab: "wt-bn-u-under", backend: "alloc"},
		{name: "vxlan (weftd)", lab: "wt-bn-u-vxlan", backend: "vxlan", pods: 1},
		{name: "vxlan (flanneld)", lab: "wt-bn-u-d2-vxlan", backend: "vxlan", pods: 1,
			daemon: "/opt/flannel/flanneld -v=2"},
		{name: "vxlan (weftd#3)", lab: "wt-bn-u-d3-vxlan", backend: "vxlan", pods: 1,
			daemon: "/tmp/weftd"},
		{name: "host-gw (weftd)", lab: "wt-bn-u-hostgw", backend: "host-gw", pods: 1},
		{name: "host-gw (flanneld)", lab: "wt-bn-u-d2-hostgw", backend: "host-gw", pods: 1,
			daemon: "/opt/flannel/flanneld -v=2"},
		{name: "host-gw (weftd#3)", lab: "wt-bn-u-d3-hostgw", backend: "host-gw", pods: 1,
			daemon: "/tmp/weftd"},
	}
	if !slices.Equal(got, want) {
		t.Errorf("rows:\n%v\nwant\n%v", got, want)
	}
	if cmd := o.rows()[1].row.Command; !slices.Equal(cmd, []string{"/usr/local/bin/weftd"}) {
		t.Errorf("weftd's row shows command %q", cmd)
	}

	// No lab of one run owns a namespace of another lab of the run.
	rows := o.rows()
	for _, a := range rows {
		for _, b := range rows {
			if a.lab.Name != b.lab.Name && (OwnsNamespace(a.lab.Name, HostNS(b.lab.Name, 1)) ||
				OwnsNamespace(a.lab.Name, PodNS(b.lab.Name, 2, 1))) {
				t.Errorf("lab %s would take namespaces of lab %s", a.lab.Name, b.lab.Name)
			}
		}
	}
}

func TestDaemonLabels(t *testing.T) {
	got := daemonLabels([][]string{nil, {"/opt/flannel/flanneld", "-v=2"},
		{"/tmp/weftd", "-udp-datapath=one-packet"}, {"/tmp/weftd"},
		{"bin/weftd", "-udp-datapath=one-packet"}, {"/opt/flanneld"}})
	want := []string{"weftd", "flanneld", "weftd -udp-datapath=one-packet", "weftd#4",
		"weftd -udp-datapath=one-packet#5", "flanneld#6"}
	if !slices.Equal(got, want) {
		t.Errorf("daemonLabels = %q, want %q", got, want)
	}
}
