// Package metrics writes and reads the Prometheus text exposition format, version 0.0.4,
// by hand: weftd serves its metrics in it, and tests and weftctl read them back. Only
// what weft needs is here: untyped, gauge and counter families of float samples with
// labels, no histograms, no timestamps.
package metrics

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"math"
	"strconv"
	"strings"
)

// ContentType is the Content-Type of a response in this format.
const ContentType = "text/plain; version=0.0.4; charset=utf-8"

// Types of metric families.
const (
	Gauge   = "gauge"
	Counter = "counter"
)

// Writer renders metric families into a buffer; Bytes returns the result. The zero
// value is ready to use.
type Writer struct {
	b strings.Builder
}

// Family starts a metric family: its HELP and TYPE lines. The samples of the family
// follow with Sample.
func (w *Writer) Family(name, typ, help string) {
	help = strings.NewReplacer(`\`, `\\`, "\n", `\n`).Replace(help)
	fmt.Fprintf(&w.b, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, typ)
}

// Sample writes one sample of the family name. labels are name, value pairs; an odd
// one out is dropped.
func (w *Writer) Sample(name string, value float64, labels ...string) {
	w.b.WriteString(name)
	if len(labels) >= 2 {
		w.b.WriteByte('{')
		for i := 0; i+1 < len(labels); i += 2 {
			if i > 0 {
				w.b.WriteByte(',')
			}
			w.b.WriteString(labels[i])
			w.b.WriteString(`="`)
			w.b.WriteString(escapeLabel(labels[i+1]))
			w.b.WriteByte('"')
		}
		w.b.WriteByte('}')
	}
	w.b.WriteByte(' ')
	w.b.WriteString(FormatValue(value))
	w.b.WriteByte('\n')
}

// Metric writes a family with a single sample without labels.
func (w *Writer) Metric(name, typ, help string, value float64) {
	w.Family(name, typ, help)
	w.Sample(name, value)
}

// Bytes returns everything written so far.
func (w *Writer) Bytes() []byte { return []byte(w.b.String()) }

// FormatValue renders a sample value as the format spells it: integers without a
// fraction, and NaN, +Inf and -Inf by name.
func FormatValue(v float64) string {
	switch {
	case math.IsNaN(v):
		return "NaN"
	case math.IsInf(v, 1):
		return "+Inf"
	case math.IsInf(v, -1):
		return "-Inf"
	case v == math.Trunc(v) && math.Abs(v) < 1e15:
		return strconv.FormatFloat(v, 'f', -1, 64)
	}
	return strconv.FormatFloat(v, 'g', -1, 64)
}

func escapeLabel(v string) string {
	return strings.NewReplacer(`\`, `\\`, `"`, `\"`, "\n", `\n`).Replace(v)
}

// Sample is one sample read back by Parse.
type Sample struct {
	Name   string
	Labels map[string]string
	Value  float64
}

// Label returns the value of label name, "" when the sample lacks it.
func (s Sample) Label(name string) string { return s.Labels[name] }

// maxLine bounds a line Parse accepts.
const maxLine = 64 << 10

// Parse reads samples in the text format. Comment lines (HELP, TYPE and others) and
// blank lines are skipped. A sample line is a metric name, optional labels in braces,
// a value, and an optional timestamp, which is ignored. Errors name the line.
func Parse(r io.Reader) ([]Sample, error) {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 4096), maxLine)
	var out []Sample
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		s, err := parseSample(line)
		if err != nil {
			return nil, fmt.Errorf("metrics line %d %q: %w", n, truncate(line), err)
		}
		out = append(out, s)
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("reading metrics: %w", err)
	}
	return out, nil
}

func truncate(s string) string {
	if len(s) > 80 {
		return s[:80] + "..."
	}
	return s
}

func parseSample(line string) (Sample, error) {
	i := 0
	for i < len(line) && isNameChar(line[i], i == 0) {
		i++
	}
	if i == 0 {
		return Sample{}, errors.New("no metric name")
	}
	s := Sample{Name: line[:i]}
	rest := line[i:]

	if strings.HasPrefix(rest, "{") {
		labels, n, err := parseLabels(rest)
		if err != nil {
			return Sample{}, err
		}
		s.Labels = labels
		rest = rest[n:]
	}
	if rest == "" || (rest[0] != ' ' && rest[0] != '\t') {
		return Sample{}, errors.New("no value after the name")
	}
	fields := strings.Fields(rest)
	if len(fields) > 2 {
		return Sample{}, fmt.Errorf("%d fields after the name, want a value and an "+
			"optional timestamp", len(fields))
	}
	v, err := parseValue(fields[0])
	if err != nil {
		return Sample{}, err
	}
	if len(fields) == 2 {
		if _, err := strconv.ParseInt(fields[1], 10, 64); err != nil {
			return Sample{}, fmt.Errorf("timestamp %q is not an integer", fields[1])
		}
	}
	s.Value = v
	return s, nil
}

func parseValue(f string) (float64, error) {
	switch f {
	case "NaN":
		return math.NaN(), nil
	case "+Inf", "Inf":
		return math.Inf(1), nil
	case "-Inf":
		return math.Inf(-1), nil
	}
	v, err := strconv.ParseFloat(f, 64)
	if err != nil || math.IsInf(v, 0) || math.IsNaN(v) {
		return 0, fmt.Errorf("value %q is not a number", f)
	}
	return v, nil
}

// parseLabels parses {name="value",...} at the start of s and returns the labels and
// the bytes consumed.
func parseLabels(s string) (map[string]string, int, error) {
	labels := map[string]string{}
	i := 1
	for {
		if i < len(s) && s[i] == '}' {
			return labels, i + 1, nil
		}
		start := i
		for i < len(s) && isNameChar(s[i], i == start) && s[i] != ':' {
			i++
		}
		if i == start {
			return nil, 0, errors.New("label without a name")
		}
		name := s[start:i]
		if !strings.HasPrefix(s[i:], `="`) {
			return nil, 0, fmt.Errorf("label %s: want =\"value\"", name)
		}
		i += 2
		var v strings.Builder
		for {
			if i >= len(s) {
				return nil, 0, fmt.Errorf("label %s: value not closed", name)
			}
			c := s[i]
			if c == '"' {
				i++
				break
			}
			if c == '\\' {
				if i+1 >= len(s) {
					return nil, 0, fmt.Errorf("label %s: value not closed", name)
				}
				switch s[i+1] {
				case '\\':
					v.WriteByte('\\')
				case '"':
					v.WriteByte('"')
				case 'n':
					v.WriteByte('\n')
				default:
					return nil, 0, fmt.Errorf("label %s: unknown escape \\%c", name, s[i+1])
				}
				i += 2
				continue
			}
			v.WriteByte(c)
			i++
		}
		if _, dup := labels[name]; dup {
			return nil, 0, fmt.Errorf("label %s given twice", name)
		}
		labels[name] = v.String()
		if i < len(s) && s[i] == ',' {
			i++
			continue
		}
		if i < len(s) && s[i] == '}' {
			return labels, i + 1, nil
		}
		return nil, 0, fmt.Errorf("label %s: want ',' or '}' after the value", name)
	}
}

// isNameChar reports whether c may appear in a metric or label name: letters, digits
// (not first), '_' and ':'.
func isNameChar(c byte, first bool) bool {
	switch {
	case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c == '_', c == ':':
		return true
	case c >= '0' && c <= '9':
		return !first
	}
	return false
}

// Find returns the value of the first sample called name whose labels include every
// name, value pair in labels, and whether there is one.
func Find(samples []Sample, name string, labels ...string) (float64, bool) {
	for _, s := range samples {
		if s.Name != name {
			continue
		}
		match := true
		for i := 0; i+1 < len(labels); i += 2 {
			if v, ok := s.Labels[labels[i]]; !ok || v != labels[i+1] {
				match = false
				break
			}
		}
		if match {
			return s.Value, true
		}
	}
	return 0, false
}
