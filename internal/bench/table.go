package bench

import (
	"fmt"
	"io"
	"strconv"
	"strings"
	"time"

	"github.com/weftnet/weft/internal/columns"
)

// WriteTable prints the summary of r for people: a throughput table with a line per row
// and stream count, a latency and memory table with a line per row, the rows that failed,
// and what the columns mean. Summarize must have run.
func (r *Report) WriteTable(w io.Writer) error {
	var b strings.Builder
	fmt.Fprintf(&b, "weft bench: pod to pod across 2 hosts; the underlay host to host\n")
	how := "1 round"
	if r.Rounds > 1 {
		how = fmt.Sprintf("%d rounds interleaved, medians", r.Rounds)
	}
	fmt.Fprintf(&b, "%s per run, %s; kernel %s, %d CPUs, %s\n\n", seconds(r.DurationSeconds),
		how, r.Kernel, r.CPUs, r.Started.Format(time.RFC3339))

	tp := [][]string{{"PATH", "DAEMON", "STREAMS", "Gbit/s", "SPREAD", "x UNDERLAY",
		"CPU-s/GB", "DAEMON CPU"}}
	for _, row := range r.Rows {
		for _, t := range row.Throughput {
			daemon := ""
			if t.DaemonCPUPercent != nil {
				daemon = fmt.Sprintf("%.1f%%", *t.DaemonCPUPercent)
			}
			tp = append(tp, []string{row.Path, row.Daemon, strconv.Itoa(t.Streams),
				fixed(t.Gbps, 2), percent(t.Spread), fixed(t.Ratio, 2), fixed(t.CPUPerGB, 2),
				daemon})
		}
	}
	columns.Write(&b, tp, 2)
	b.WriteString("\n")

	lat := [][]string{{"PATH", "DAEMON", "RTT p50", "RTT p99", "x UNDERLAY", "DAEMON RSS"}}
	for _, row := range r.Rows {
		if row.RTTP50Micros == 0 && row.RSSMiB == 0 {
			continue
		}
		rss := ""
		if row.RSSMiB > 0 {
			rss = fixed(row.RSSMiB, 1) + " MiB"
		}
		lat = append(lat, []string{row.Path, row.Daemon, micros(row.RTTP50Micros),
			micros(row.RTTP99Micros), fixed(row.RTTRatio, 2), rss})
	}
	columns.Write(&b, lat, 2)

	if failed := r.Failed(); len(failed) > 0 {
		b.WriteString("\nfailed:\n")
		for _, row := range failed {
			first, _, more := strings.Cut(row.Error, "\n")
			if more {
				first += " (more in --json)"
			}
			fmt.Fprintf(&b, "  %s: %s\n", row.Name(), first)
		}
	}

	b.WriteString("\n")
	for _, l := range []string{
		fmt.Sprintf("Gbit/s: bytes the receiving pod read; %s writes on each TCP stream.",
			size(r.WriteBytes)),
		"SPREAD: (max-min)/median over rounds. x UNDERLAY: the ratio to the underlay " +
			"of the same",
		"  round, median over rounds.",
		fmt.Sprintf("RTT: %d-byte TCP requests and responses on one connection for %s; "+
			"p50 and p99", r.MessageBytes, seconds(r.RTTSeconds)),
		"  of each round, median over rounds.",
		"CPU-s/GB: machine-wide busy time from /proc/stat during a stream run, per GB " +
			"(1e9 bytes)",
		"  moved. Both hosts, both TCP ends, both daemons and the idle labs of the other " +
			"rows",
		fmt.Sprintf("  share this machine's %d CPUs: a daemon's CPU shows here and in the "+
			"throughput.", r.CPUs),
		"DAEMON CPU: CPU time of both daemons together during a stream run, in % of one " +
			"CPU.",
		"DAEMON RSS: VmRSS of the larger of the row's two daemons, after each round.",
	} {
		b.WriteString(l + "\n")
	}
	_, err := io.WriteString(w, b.String())
	return err
}

// fixed prints x with prec decimals, or "-" for 0, which means not measured.
func fixed(x float64, prec int) string {
	if x == 0 {
		return "-"
	}
	return strconv.FormatFloat(x, 'f', prec, 64)
}

func percent(x float64) string { return fmt.Sprintf("%.0f%%", x*100) }

func micros(us float64) string {
	if us == 0 {
		return "-"
	}
	if us >= 10000 {
		return fmt.Sprintf("%.1f ms", us/1000)
	}
	return fmt.Sprintf("%.0f us", us)
}

func seconds(s float64) string {
	return (time.Duration(s * float64(time.Second))).Round(time.Millisecond).String()
}

func rounds(n int) string {
	if n == 1 {
		return "1 round"
	}
	return fmt.Sprintf("%d rounds", n)
}

// size prints a byte count in KiB when it is a whole number of them.
func size(n int) string {
	if n >= 1<<10 && n%(1<<10) == 0 {
		return fmt.Sprintf("%d KiB", n>>10)
	}
	return fmt.Sprintf("%d-byte", n)
}
