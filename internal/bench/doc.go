// Package bench is the arithmetic and the output of weftctl bench, free of any network
// or kernel work: the statistics of repeated runs (medians, percentiles, ratios against
// the underlay of the same round), the CPU accounting read from /proc/stat and the
// memory read from /proc/<pid>/status, and the report as a table, as JSON and as an SVG
// bar chart.
//
// A Report holds the raw figures of every round; Summarize derives the medians and the
// ratios from them, so the summary can always be recomputed from what the JSON carries.
package bench
