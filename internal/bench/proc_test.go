package bench

import (
	"math"
	"strings"
	"testing"
	"time"
)

const statSample = `cpu  4705 356 584 3699176 23 0 15 7 0 0
cpu0 1393 280 283 1849588 14 0 11 4 0 0
cpu1 3312 76 301 1849588 9 0 4 3 0 0
intr 114930548 113199788 3 0 5 263 0 0 0 1 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0
ctxt 1990473
btime 1062191376
processes 2915
`

func TestParseCPUStat(t *testing.T) {
	tests := []struct {
		name    string
		in      string
		want    CPUTimes
		wantErr string
	}{
		{
			name: "two CPUs",
			in:   statSample,
			// busy user+nice+system+irq+softirq; total adds idle, iowait and steal
			want: CPUTimes{Busy: 4705 + 356 + 584 + 15, Total: 4705 + 356 + 584 + 15 + 3699176 +
				23 + 7, CPUs: 2},
		},
		{
			name: "an old kernel's four columns",
			in:   "cpu 10 0 5 100\ncpu0 10 0 5 100\n",
			want: CPUTimes{Busy: 15, Total: 115, CPUs: 1},
		},
		{name: "no aggregate line", in: "cpu0 1 2 3 4\n", wantErr: "no aggregate cpu line"},
		{name: "no per-CPU lines", in: "cpu 1 2 3 4\n", wantErr: "no cpuN lines"},
		{name: "two aggregate lines", in: "cpu 1 2 3 4\ncpu 1 2 3 4\ncpu0 1 2 3 4\n",
			wantErr: "two aggregate"},
		{name: "short line", in: "cpu 1 2 3\ncpu0 1 2 3 4\n", wantErr: "3 columns"},
		{name: "not a number", in: "cpu 1 2 x 4\ncpu0 1 2 3 4\n", wantErr: `column 3 "x"`},
		{name: "negative", in: "cpu 1 -2 3 4\ncpu0 1 2 3 4\n", wantErr: `column 2 "-2"`},
		{name: "huge", in: "cpu 1 2 3 999999999999999999999\ncpu0 1\n", wantErr: "column 4"},
		{name: "beyond plausible", in: "cpu 1 2 3 288230376151711745\ncpu0 1\n",
			wantErr: "implausibly large"},
		{name: "odd cpu line", in: "cpu 1 2 3 4\ncpux 1 2 3 4\n", wantErr: `"cpux" is no CPU`},
		{name: "empty", in: "", wantErr: "no aggregate"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := ParseCPUStat([]byte(tt.in))
			if tt.wantErr != "" {
				if err == nil || !contains(err.Error(), tt.wantErr) {
					t.Errorf("ParseCPUStat = %+v, %v; want an error with %q", got, err,
						tt.wantErr)
				}
				return
			}
			if err != nil || got != tt.want {
				t.Errorf("ParseCPUStat = %+v, %v; want %+v", got, err, tt.want)
			}
		})
	}
}

func TestBusySeconds(t *testing.T) {
	a := CPUTimes{Busy: 1000, Total: 10000, CPUs: 2}
	tests := []struct {
		name    string
		b       CPUTimes
		wall    time.Duration
		want    float64
		wantErr string
	}{
		// 100 of 200 ticks busy over 2 CPUs for 1 s: one CPU's worth.
		{name: "half busy", b: CPUTimes{Busy: 1100, Total: 10200, CPUs: 2}, wall: time.Second,
			want: 1},
		{name: "all busy", b: CPUTimes{Busy: 1400, Total: 10400, CPUs: 2},
			wall: 2 * time.Second, want: 4},
		{name: "idle", b: CPUTimes{Busy: 1000, Total: 10400, CPUs: 2}, wall: time.Second,
			want: 0},
		{name: "no tick passed", b: a, wall: time.Millisecond, want: 0},
		{name: "backwards", b: CPUTimes{Busy: 900, Total: 10400, CPUs: 2}, wall: time.Second,
			wantErr: "went backwards"},
		{name: "more busy than total", b: CPUTimes{Busy: 1300, Total: 10100, CPUs: 2},
			wall: time.Second, wantErr: "went backwards"},
		{name: "CPU hotplug", b: CPUTimes{Busy: 1100, Total: 10200, CPUs: 3},
			wall: time.Second, wantErr: "CPU count changed"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := BusySeconds(a, tt.b, tt.wall)
			if tt.wantErr != "" {
				if err == nil || !contains(err.Error(), tt.wantErr) {
					t.Errorf("BusySeconds = %v, %v; want an error with %q", got, err, tt.wantErr)
				}
				return
			}
			if err != nil || math.Abs(got-tt.want) > 1e-9 {
				t.Errorf("BusySeconds = %v, %v; want %v", got, err, tt.want)
			}
		})
	}
}

func FuzzParseCPUStat(f *testing.F) {
	f.Add([]byte(statSample))
	f.Add([]byte("cpu 1 2 3 4\ncpu0 1 2 3 4\n"))
	f.Add([]byte("cpu 1 2 3\n"))
	f.Add([]byte("cpu0 1\ncpu 18446744073709551615 1 1 1 1 1 1 1 1 1\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		got, err := ParseCPUStat(data)
		if err != nil {
			return
		}
		if got.Busy > got.Total || got.CPUs < 1 {
			t.Fatalf("ParseCPUStat = %+v: busy beyond total, or no CPUs", got)
		}
		if s, err := BusySeconds(got, got, time.Second); err != nil || s != 0 {
			t.Fatalf("BusySeconds of a reading against itself = %v, %v", s, err)
		}
	})
}

func TestParseVmRSS(t *testing.T) {
	tests := []struct {
		name    string
		in      string
		want    int64
		wantErr string
	}{
		{name: "status", in: "Name:\tweftd\nVmPeak:\t  1 kB\nVmRSS:\t   12345 kB\nThreads:\t7\n",
			want: 12345 << 10},
		{name: "zero", in: "VmRSS: 0 kB\n", want: 0},
		{name: "last line without newline", in: "Name:\tx\nVmRSS:\t8 kB", want: 8 << 10},
		{name: "kernel thread", in: "Name:\tkthreadd\nThreads:\t1\n", wantErr: "no VmRSS"},
		{name: "other unit", in: "VmRSS:\t8 MB\n", wantErr: `VmRSS "8 MB"`},
		{name: "no number", in: "VmRSS:\t kB\n", wantErr: "want a number of kB"},
		{name: "negative", in: "VmRSS:\t-8 kB\n", wantErr: "want a number of kB"},
		{name: "huge", in: "VmRSS:\t99999999999999999999 kB\n", wantErr: "want a number of kB"},
		{name: "not at line start", in: "XVmRSS:\t8 kB\n", wantErr: "no VmRSS"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := ParseVmRSS([]byte(tt.in))
			if tt.wantErr != "" {
				if err == nil || !contains(err.Error(), tt.wantErr) {
					t.Errorf("ParseVmRSS = %v, %v; want an error with %q", got, err, tt.wantErr)
				}
				return
			}
			if err != nil || got != tt.want {
				t.Errorf("ParseVmRSS = %v, %v; want %v", got, err, tt.want)
			}
		})
	}
}

func FuzzParseVmRSS(f *testing.F) {
	f.Add([]byte("VmRSS:\t   12345 kB\n"))
	f.Add([]byte("Name:\tx\n"))
	f.Add([]byte("VmRSS: 9007199254740993 kB"))
	f.Fuzz(func(t *testing.T, data []byte) {
		got, err := ParseVmRSS(data)
		if err == nil && (got < 0 || got%1024 != 0) {
			t.Fatalf("ParseVmRSS = %d: want a non-negative whole number of KiB", got)
		}
	})
}

func contains(s, sub string) bool { return strings.Contains(s, sub) }

func TestParseProcCPU(t *testing.T) {
	// utime 250 and stime 50 ticks, after a command name with a space and a parenthesis.
	stat := "4242 (weft d) x) S 1 4242 4242 0 -1 4194560 1000 0 0 0 250 50 0 0 20 0 9 0 " +
		"123456 1000000 5000 18446744073709551615\n"
	tests := []struct {
		name    string
		in      string
		want    float64
		wantErr string
	}{
		{name: "odd command name", in: stat, want: 3},
		{name: "no command name", in: "4242 S 1 2 3", wantErr: "no ')'"},
		{name: "cut short", in: "4242 (weftd) S 1 4242 4242 0 -1 4194560 1000 0 0 0 250",
			wantErr: "12 fields"},
		{name: "not a number", in: strings.Replace(stat, " 250 ", " x ", 1),
			wantErr: `CPU time "x"`},
		{name: "negative", in: strings.Replace(stat, " 50 ", " -50 ", 1),
			wantErr: `CPU time "-50"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := ParseProcCPU([]byte(tt.in))
			if tt.wantErr != "" {
				if err == nil || !contains(err.Error(), tt.wantErr) {
					t.Errorf("ParseProcCPU = %v, %v; want an error with %q", got, err,
						tt.wantErr)
				}
				return
			}
			if err != nil || got != tt.want {
				t.Errorf("ParseProcCPU = %v, %v; want %v", got, err, tt.want)
			}
		})
	}
}

func FuzzParseProcCPU(f *testing.F) {
	f.Add([]byte("1 (weftd) S 1 1 1 0 -1 0 0 0 0 0 250 50 0 0 20 0 9 0 1 1 1\n"))
	f.Add([]byte("1 (a) b)) S 1 1 1 0 -1 0 0 0 0 0 18446744073709551615 1"))
	f.Add([]byte(")"))
	f.Fuzz(func(t *testing.T, data []byte) {
		got, err := ParseProcCPU(data)
		if err == nil && (got < 0 || math.IsInf(got, 0) || math.IsNaN(got)) {
			t.Fatalf("ParseProcCPU = %v", got)
		}
	})
}
