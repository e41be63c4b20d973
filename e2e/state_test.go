package e2e

import (
	"encoding/json"
	"errors"
	"io/fs"
	"net/netip"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"
)

func sampleState() *State {
	return &State{
		Name:       "weft",
		Backend:    "vxlan",
		VNI:        2000,
		Network:    DefaultNetwork,
		EtcdPrefix: DefaultEtcdPrefix,
		Created:    time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC),
		Etcd:       Proc{Argv: []string{"weftctl", "lab", "etcd"}, PID: 10, Start: 99, Log: "/l"},
		Hosts: []HostState{{
			Index:      1,
			NS:         "weft-h1",
			Underlay:   UnderlayAddr(1),
			Dev:        "eth0",
			SubnetFile: "/run/weft-lab/weft/h1/subnet.env",
			HealthPort: 8081,
			Daemon:     Proc{Argv: []string{"weftd", "-iface", "eth0"}, PID: 11, Start: 100},
			Pods: []PodState{{
				Index:   1,
				NS:      "weft-h1-p1",
				Addr:    netip.MustParsePrefix("198.19.7.11/24"),
				Gateway: netip.MustParseAddr("198.19.7.1"),
			}},
		}},
	}
}

func TestStateRoundTrip(t *testing.T) {
	dir := t.TempDir()
	s := sampleState()
	if err := os.MkdirAll(labDir(dir, s.Name), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := s.save(dir); err != nil {
		t.Fatal(err)
	}
	got, err := LoadState(dir, "weft")
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got, s) {
		t.Errorf("LoadState = %+v\nwant %+v", got, s)
	}

	_, err = LoadState(dir, "other")
	if !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("LoadState of a missing lab = %v, want fs.ErrNotExist", err)
	}

	// A state file under another lab's name is refused.
	if err := os.Rename(labDir(dir, "weft"), labDir(dir, "other")); err != nil {
		t.Fatal(err)
	}
	if _, err := LoadState(dir, "other"); err == nil || !strings.Contains(err.Error(), `"weft"`) {
		t.Errorf("LoadState of a renamed lab = %v, want an error naming weft", err)
	}
}

func TestParseStateErrors(t *testing.T) {
	tests := []struct {
		name   string
		change func(s *State)
		want   string
	}{
		{name: "bad name", change: func(s *State) { s.Name = "../x" }, want: "lab name"},
		{name: "host elsewhere", change: func(s *State) { s.Hosts[0].NS = "other-h1" },
			want: "not one of its hosts"},
		{name: "host index", change: func(s *State) { s.Hosts[0].Index = 0 },
			want: "not one of its hosts"},
		{name: "pod elsewhere", change: func(s *State) { s.Hosts[0].Pods[0].NS = "weft-h2-p1" },
			want: "is not its pod"},
		{name: "pid without command", change: func(s *State) { s.Etcd.Argv = nil },
			want: "without a command line"},
		{name: "negative pid", change: func(s *State) { s.Hosts[0].Daemon.PID = -4 },
			want: "PID -4"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := sampleState()
			tt.change(s)
			data, err := json.Marshal(s)
			if err != nil {
				t.Fatal(err)
			}
			_, err = ParseState(data)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("ParseState = %v, want an error containing %q", err, tt.want)
			}
		})
	}
	if _, err := ParseState([]byte("{")); err == nil {
		t.Error("ParseState accepted broken JSON")
	}
}

func FuzzParseState(f *testing.F) {
	good, _ := json.Marshal(sampleState())
	f.Add(good)
	f.Add([]byte(`{"Name":"weft","Hosts":[{"Index":1,"NS":"weft-h1"}]}`))
	f.Add([]byte(`null`))
	f.Fuzz(func(t *testing.T, data []byte) {
		s, err := ParseState(data)
		if err != nil {
			return
		}
		// What parses names only the lab's own namespaces.
		for _, h := range s.Hosts {
			if !OwnsNamespace(s.Name, h.NS) {
				t.Fatalf("accepted host namespace %q for lab %q", h.NS, s.Name)
			}
			for _, p := range h.Pods {
				if !OwnsNamespace(s.Name, p.NS) {
					t.Fatalf("accepted pod namespace %q for lab %q", p.NS, s.Name)
				}
			}
		}
		if filepath.Base(labDir("/run/weft-lab", s.Name)) != s.Name {
			t.Fatalf("lab name %q escapes the state directory", s.Name)
		}
	})
}
