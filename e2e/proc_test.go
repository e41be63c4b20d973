package e2e

import (
	"slices"
	"strings"
	"testing"
)

func TestParseProcStat(t *testing.T) {
	tail := " 1 1 1 0 -1 4194560 100 0 0 0 5 3 0 0 20 0 1 0 123456 1000 100"
	tests := []struct {
		name  string
		data  string
		state byte
		start uint64
		err   string
	}{
		{name: "plain", data: "42 (weftd) S" + tail, state: 'S', start: 123456},
		{name: "spaces and parens in the name", data: "42 (a) b (c)) R" + tail, state: 'R',
			start: 123456},
		{name: "zombie", data: "42 (weftd) Z" + tail, state: 'Z', start: 123456},
		{name: "no name", data: "42 weftd S" + tail, err: "no ')'"},
		{name: "short", data: "42 (weftd) S 1 1", err: "fields"},
		{name: "bad start", data: "42 (weftd) S" + strings.Replace(tail, "123456", "x", 1),
			err: "start time"},
		{name: "long state", data: "42 (weftd) SS" + tail, err: "state"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			st, err := parseProcStat([]byte(tt.data))
			if tt.err != "" {
				if err == nil || !strings.Contains(err.Error(), tt.err) {
					t.Errorf("parseProcStat = %+v, %v, want an error containing %q",
						st, err, tt.err)
				}
				return
			}
			if err != nil || st.State != tt.state || st.Start != tt.start {
				t.Errorf("parseProcStat = %+v, %v, want state %c start %d", st, err, tt.state,
					tt.start)
			}
		})
	}
}

func FuzzParseProcStat(f *testing.F) {
	f.Add([]byte("42 (weftd) S 1 1 1 0 -1 4194560 100 0 0 0 5 3 0 0 20 0 1 0 123456 1000 100"))
	f.Add([]byte("1 ()) Z"))
	f.Fuzz(func(t *testing.T, data []byte) {
		st, err := parseProcStat(data)
		if err == nil && st.State == 0 && !strings.Contains(string(data), "\x00") {
			t.Fatalf("parsed %q into an empty state", data)
		}
	})
}

func TestParseCmdline(t *testing.T) {
	tests := []struct {
		name string
		data string
		want []string
	}{
		{name: "args", data: "weftd\x00-iface\x00eth0\x00",
			want: []string{"weftd", "-iface", "eth0"}},
		{name: "empty arg", data: "a\x00\x00b\x00", want: []string{"a", "", "b"}},
		{name: "zombie", data: "", want: nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := parseCmdline([]byte(tt.data)); !slices.Equal(got, tt.want) {
				t.Errorf("parseCmdline(%q) = %q, want %q", tt.data, got, tt.want)
			}
		})
	}
}
