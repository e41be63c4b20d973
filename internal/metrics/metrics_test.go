package metrics

import (
	"bytes"
	"math"
	"reflect"
	"strings"
	"testing"
)

func TestWriter(t *testing.T) {
	var w Writer
	w.Metric("weft_ready", Gauge, "1 when ready.", 1)
	w.Family("weft_udp_drops_total", Counter, "Packets dropped,\nby reason \\ cause.")
	w.Sample("weft_udp_drops_total", 3, "reason", "no-route")
	w.Sample("weft_udp_drops_total", 0, "reason", `a"b\c`+"\n", "odd")
	w.Metric("weft_big", Gauge, "A big one.", 1.5e20)
	w.Metric("weft_frac", Gauge, "A fraction.", 0.25)

	want := `# HELP weft_ready 1 when ready.
# TYPE weft_ready gauge
weft_ready 1
# HELP weft_udp_drops_total Packets dropped,\nby reason \\ cause.
# TYPE weft_udp_drops_total counter
weft_udp_drops_total{reason="no-route"} 3
weft_udp_drops_total{reason="a\"b\\c\n"} 0
# HELP weft_big A big one.
# TYPE weft_big gauge
weft_big 1.5e+20
# HELP weft_frac A fraction.
# TYPE weft_frac gauge
weft_frac 0.25
`
	if got := string(w.Bytes()); got != want {
		t.Errorf("written:\n%s\nwant:\n%s", got, want)
	}
}

func TestFormatValue(t *testing.T) {
	tests := []struct {
		v    float64
		want string
	}{
		{v: 0, want: "0"},
		{v: 1900000000, want: "1900000000"},
		{v: -3, want: "-3"},
		{v: 0.5, want: "0.5"},
		{v: math.NaN(), want: "NaN"},
		{v: math.Inf(1), want: "+Inf"},
		{v: math.Inf(-1), want: "-Inf"},
		{v: 1e300, want: "1e+300"},
	}
	for _, tt := range tests {
		if got := FormatValue(tt.v); got != tt.want {
			t.Errorf("FormatValue(%v) = %q, want %q", tt.v, got, tt.want)
		}
	}
}

func TestParse(t *testing.T) {
	in := `# HELP a x
# TYPE a gauge
a 1

b_total{reason="no-route",dir="tx"} 42 1700000000000
c{x="a\"b\\c\nd"} -Inf
d{} NaN
e:sub 2.5e3
`
	got, err := Parse(strings.NewReader(in))
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 5 {
		t.Fatalf("parsed %d samples, want 5: %+v", len(got), got)
	}
	if v, ok := Find(got, "b_total", "reason", "no-route"); !ok || v != 42 {
		t.Errorf("b_total{reason=no-route} = %v %v", v, ok)
	}
	if _, ok := Find(got, "b_total", "reason", "ttl"); ok {
		t.Error("found b_total{reason=ttl}, which is not there")
	}
	if got[2].Label("x") != "a\"b\\c\nd" || !math.IsInf(got[2].Value, -1) {
		t.Errorf("c = %+v", got[2])
	}
	if !math.IsNaN(got[3].Value) || len(got[3].Labels) != 0 {
		t.Errorf("d = %+v", got[3])
	}
	if v, _ := Find(got, "e:sub"); v != 2500 {
		t.Errorf("e:sub = %v", v)
	}
}

func TestParseErrors(t *testing.T) {
	tests := []struct {
		name, in, want string
	}{
		{name: "no value", in: "a\n", want: "line 1"},
		{name: "bad value", in: "# c\na x\n", want: `line 2 "a x": value "x" is not a number`},
		{name: "digit first", in: "1a 1\n", want: "no metric name"},
		{name: "open labels", in: `a{x="1" 1`, want: "want ',' or '}'"},
		{name: "unclosed value", in: `a{x="1} 1`, want: "not closed"},
		{name: "bad escape", in: `a{x="\t"} 1`, want: `unknown escape`},
		{name: "duplicate label", in: `a{x="1",x="2"} 1`, want: "given twice"},
		{name: "label without value", in: `a{x} 1`, want: `label x: want ="value"`},
		{name: "extra field", in: "a 1 2 3\n", want: "3 fields"},
		{name: "bad timestamp", in: "a 1 soon\n", want: "timestamp"},
		{name: "no space", in: `a{x="1"}1`, want: "no value after the name"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Parse(strings.NewReader(tt.in))
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("Parse(%q) = %v, want an error containing %q", tt.in, err, tt.want)
			}
		})
	}
}

// FuzzParse checks that Parse never panics and that whatever it accepts, written again,
// parses to the same samples.
func FuzzParse(f *testing.F) {
	f.Add("a 1\n")
	f.Add(`b_total{reason="no-route",dir="tx"} 42 1700000000000` + "\n# HELP x y\n")
	f.Add(`c{x="a\"b\\c\nd"} -Inf`)
	f.Add("d{} NaN\ne:sub 2.5e3")
	f.Fuzz(func(t *testing.T, in string) {
		samples, err := Parse(strings.NewReader(in))
		if err != nil {
			return
		}
		var w Writer
		for _, s := range samples {
			var labels []string
			for k, v := range s.Labels {
				labels = append(labels, k, v)
			}
			w.Sample(s.Name, s.Value, labels...)
		}
		again, err := Parse(bytes.NewReader(w.Bytes()))
		if err != nil {
			t.Fatalf("reading back %q: %v", w.Bytes(), err)
		}
		if len(again) != len(samples) {
			t.Fatalf("%d samples read back, want %d", len(again), len(samples))
		}
		for i := range samples {
			a, b := samples[i], again[i]
			if len(a.Labels) == 0 && len(b.Labels) == 0 {
				a.Labels, b.Labels = nil, nil
			}
			same := a.Name == b.Name && reflect.DeepEqual(a.Labels, b.Labels) &&
				(a.Value == b.Value || math.IsNaN(a.Value) && math.IsNaN(b.Value))
			if !same {
				t.Fatalf("sample %d: %+v read back as %+v", i, a, b)
			}
		}
	})
}
