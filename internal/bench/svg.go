package bench

import (
	"encoding/xml"
	"fmt"
	"io"
	"math"
	"strings"
)

// The chart's geometry, in SVG user units (pixels at 100 %).
const (
	svgWidth  = 820
	svgLeft   = 180 // room for the row labels
	svgRight  = 120 // room for the value after the longest bar
	svgTop    = 86  // title and legend
	svgBottom = 56  // tick labels and the axis label
	svgBar    = 16
	svgBarGap = 3
	svgRowGap = 14
	svgPlotW  = svgWidth - svgLeft - svgRight
)

// palette colours the stream counts, in the order of Report.Streams.
var palette = []string{"#4e79a7", "#f28e2b", "#59a14f", "#b07aa1", "#76b7b2", "#edc948"}

// WriteSVG draws the throughput of r as a horizontal bar chart, hand-written SVG: a group
// of bars per row, one bar per stream count with its Gbit/s and its ratio to the
// underlay, and a dashed line per stream count at the underlay's figure for reference.
// Each bar is a rect of class "bar" with data-row (the row's Name) and data-streams.
// Rows without figures get a note instead of bars. Summarize must have run.
func (r *Report) WriteSVG(w io.Writer) error {
	rowH := len(r.Streams)*(svgBar+svgBarGap) - svgBarGap + svgRowGap
	plotH := max(len(r.Rows), 1) * rowH
	height := svgTop + plotH + svgBottom

	top := 0.0
	for _, row := range r.Rows {
		for _, t := range row.Throughput {
			top = math.Max(top, t.Gbps)
		}
	}
	step := niceStep(top / 5)
	axisMax := math.Max(step, math.Ceil(top*1.02/step)*step)
	x := func(v float64) float64 { return svgLeft + v/axisMax*svgPlotW }

	var b strings.Builder
	fmt.Fprintf(&b, `<?xml version="1.0" encoding="UTF-8"?>`+"\n")
	fmt.Fprintf(&b, `<svg xmlns="http://www.w3.org/2000/svg" width="%d" height="%d" `+
		`viewBox="0 0 %d %d" font-family="sans-serif" font-size="12">`+"\n",
		svgWidth, height, svgWidth, height)
	title := fmt.Sprintf("TCP throughput, pod to pod across two hosts: median of %s of %s",
		rounds(r.Rounds), seconds(r.DurationSeconds))
	fmt.Fprintf(&b, "<title>%s</title>\n", esc(title))
	fmt.Fprintf(&b, `<rect width="100%%" height="100%%" fill="#ffffff"/>`+"\n")
	fmt.Fprintf(&b, `<text x="%d" y="22" font-size="15" font-weight="bold">%s</text>`+"\n",
		12, esc(title))
	fmt.Fprintf(&b, `<text x="%d" y="40" fill="#555555">%s</text>`+"\n", 12,
		esc(fmt.Sprintf("weftctl bench; kernel %s, %d CPUs; %s writes; (0.00x): ratio to "+
			"the underlay (host to host) of the same round", r.Kernel, r.CPUs,
			size(r.WriteBytes))))

	// The legend: a swatch per stream count, and the reference line.
	lx := 12.0
	for k, n := range r.Streams {
		fmt.Fprintf(&b, `<rect x="%.1f" y="54" width="12" height="12" fill="%s"/>`+"\n", lx,
			color(k))
		label := streamsLabel(n)
		fmt.Fprintf(&b, `<text x="%.1f" y="64">%s</text>`+"\n", lx+16, esc(label))
		lx += 16 + float64(7*len(label)) + 18
	}
	fmt.Fprintf(&b, `<line x1="%.1f" y1="60" x2="%.1f" y2="60" stroke="#333333" `+
		`stroke-dasharray="4 3"/>`+"\n", lx, lx+24)
	fmt.Fprintf(&b, `<text x="%.1f" y="64">underlay, same stream count</text>`+"\n", lx+30)

	// Grid and ticks.
	plotBottom := svgTop + plotH
	for i := range int(math.Round(axisMax/step)) + 1 {
		v := float64(i) * step
		fmt.Fprintf(&b, `<line x1="%.1f" y1="%d" x2="%.1f" y2="%d" stroke="#e0e0e0"/>`+"\n",
			x(v), svgTop, x(v), plotBottom)
		fmt.Fprintf(&b, `<text x="%.1f" y="%d" text-anchor="middle">%s</text>`+"\n", x(v),
			plotBottom+16, tick(v))
	}
	fmt.Fprintf(&b, `<line x1="%d" y1="%d" x2="%d" y2="%d" stroke="#333333"/>`+"\n",
		svgLeft, plotBottom, svgLeft+svgPlotW, plotBottom)
	fmt.Fprintf(&b, `<line x1="%d" y1="%d" x2="%d" y2="%d" stroke="#333333"/>`+"\n",
		svgLeft, svgTop, svgLeft, plotBottom)
	fmt.Fprintf(&b, `<text x="%d" y="%d" text-anchor="middle">%s</text>`+"\n",
		svgLeft+svgPlotW/2, plotBottom+40, "throughput, Gbit/s")
	fmt.Fprintf(&b, `<text x="14" y="%d" text-anchor="middle" transform="rotate(-90 14 %d)">`+
		`path (daemon)</text>`+"\n", svgTop+plotH/2, svgTop+plotH/2)

	// The bars.
	for i, row := range r.Rows {
		y0 := svgTop + svgRowGap/2 + i*rowH
		groupH := rowH - svgRowGap
		fmt.Fprintf(&b, `<text x="%d" y="%d" text-anchor="end" dominant-baseline="middle">`+
			`%s</text>`+"\n", svgLeft-8, y0+groupH/2, esc(row.Name()))
		if len(row.Throughput) == 0 {
			note := "not measured"
			if row.Error != "" {
				note = "not measured: " + shorten(row.Error, 60)
			}
			fmt.Fprintf(&b, `<text x="%d" y="%d" dominant-baseline="middle" `+
				`fill="#a00000">%s</text>`+"\n", svgLeft+8, y0+groupH/2, esc(note))
			continue
		}
		for k, n := range r.Streams {
			t, ok := row.throughput(n)
			if !ok {
				continue
			}
			y := y0 + k*(svgBar+svgBarGap)
			value := fmt.Sprintf("%.2f", t.Gbps)
			if t.Ratio > 0 && row.Path != PathUnderlay {
				value += fmt.Sprintf(" (%.2fx)", t.Ratio)
			}
			fmt.Fprintf(&b, `<rect class="bar" data-row="%s" data-streams="%d" x="%d" y="%d" `+
				`width="%.1f" height="%d" fill="%s"><title>%s, %s: %s Gbit/s</title></rect>`+"\n",
				esc(row.Name()), n, svgLeft, y, x(t.Gbps)-svgLeft, svgBar, color(k),
				esc(row.Name()), esc(streamsLabel(n)), value)
			// A white halo keeps the value readable across a reference line.
			fmt.Fprintf(&b, `<text x="%.1f" y="%d" dominant-baseline="middle" `+
				`font-size="11" stroke="#ffffff" stroke-width="3" paint-order="stroke">`+
				`%s</text>`+"\n", x(t.Gbps)+4, y+svgBar/2, esc(value))
		}
	}

	// The underlay's figures, as reference lines over every row.
	for _, row := range r.Rows {
		if row.Path != PathUnderlay {
			continue
		}
		for k, n := range r.Streams {
			if t, ok := row.throughput(n); ok {
				fmt.Fprintf(&b, `<line class="reference" data-streams="%d" x1="%.1f" y1="%d" `+
					`x2="%.1f" y2="%d" stroke="%s" stroke-width="1.5" stroke-dasharray="4 3"/>`+
					"\n", n, x(t.Gbps), svgTop, x(t.Gbps), plotBottom, color(k))
			}
		}
		break
	}

	b.WriteString("</svg>\n")
	_, err := io.WriteString(w, b.String())
	return err
}

// throughput returns the row's summary for n streams.
func (row Row) throughput(n int) (Throughput, bool) {
	for _, t := range row.Throughput {
		if t.Streams == n {
			return t, true
		}
	}
	return Throughput{}, false
}

func color(k int) string { return palette[k%len(palette)] }

func streamsLabel(n int) string {
	if n == 1 {
		return "1 stream"
	}
	return fmt.Sprintf("%d streams", n)
}

// niceStep returns the smallest of 1, 2, 2.5 and 5 times a power of ten that is at
// least v; 1 for v that is not positive.
func niceStep(v float64) float64 {
	if !(v > 0) || math.IsInf(v, 0) {
		return 1
	}
	p := math.Pow(10, math.Floor(math.Log10(v)))
	for _, m := range []float64{1, 2, 2.5, 5, 10} {
		if m*p >= v*(1-1e-9) {
			return m * p
		}
	}
	return 10 * p
}

// tick prints an axis value without trailing zeros.
func tick(v float64) string {
	s := fmt.Sprintf("%.2f", v)
	s = strings.TrimRight(s, "0")
	return strings.TrimSuffix(s, ".")
}

// shorten returns the first line of s, cut to n characters.
func shorten(s string, n int) string {
	s, _, _ = strings.Cut(s, "\n")
	if r := []rune(s); len(r) > n {
		return string(r[:n-1]) + "…"
	}
	return s
}

// esc escapes s for text and attribute values.
func esc(s string) string {
	var b strings.Builder
	xml.EscapeText(&b, []byte(s))
	return b.String()
}
