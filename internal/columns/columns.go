// Package columns prints plain-text tables for terminals: cells padded to their column's
// width, two spaces apart, text on the left and numbers on the right.
package columns

import "strings"

// Write appends rows to b as columns two spaces apart: the first left columns aligned
// left, the others (numbers) aligned right. Rows may have different lengths; trailing
// spaces are trimmed from each line.
func Write(b *strings.Builder, rows [][]string, left int) {
	var widths []int
	for _, r := range rows {
		for k, c := range r {
			if k == len(widths) {
				widths = append(widths, 0)
			}
			widths[k] = max(widths[k], len(c))
		}
	}
	for _, r := range rows {
		var line strings.Builder
		for k, c := range r {
			if k > 0 {
				line.WriteString("  ")
			}
			pad := strings.Repeat(" ", widths[k]-len(c))
			if k < left {
				line.WriteString(c + pad)
			} else {
				line.WriteString(pad + c)
			}
		}
		b.WriteString(strings.TrimRight(line.String(), " ") + "\n")
	}
}
