package e2e

import (
	"fmt"
	"io"
	"net/netip"
	"strings"
	"time"

	"github.com/weftnet/weft/internal/columns"

	"github.com/weftnet/weft/internal/netlab"
)

// Endpoint is a place the lab pings from and to: a namespace and an address in it.
type Endpoint struct {
	// Name is short, for tables: "h1" for a host, "h1-p2" for a pod.
	Name string
	NS   string
	Addr netip.Addr
}

// MatrixOptions says how PingMatrix probes each pair.
type MatrixOptions struct {
	// Settle is how long a pair may take to answer its first request, while daemons are
	// still programming their peers; default 10 s.
	Settle time.Duration
	// Count is the number of requests measured per pair after that; default 5.
	Count int
	// Interval is the time between measured requests; default 50 ms.
	Interval time.Duration
	// Timeout is how long each measured request waits; default 1 s.
	Timeout time.Duration
}

func (o MatrixOptions) withDefaults() MatrixOptions {
	if o.Settle <= 0 {
		o.Settle = 10 * time.Second
	}
	if o.Count <= 0 {
		o.Count = 5
	}
	if o.Interval <= 0 {
		o.Interval = 50 * time.Millisecond
	}
	if o.Timeout <= 0 {
		o.Timeout = time.Second
	}
	return o
}

// Matrix is the outcome of pinging every endpoint from every other.
type Matrix struct {
	Endpoints []Endpoint
	// Results[i][j] is from Endpoints[i] to Endpoints[j]; the diagonal is empty.
	Results [][]netlab.PingResult
}

// Failed describes each pair that lost a request, "h1-p1 -> h2-p1 (198.19.7.11): 0 of 5
// answered: <why>"; it is empty when every pair answered every request.
func (m *Matrix) Failed() []string {
	var out []string
	for i, row := range m.Results {
		for j, r := range row {
			if i == j || r.OK() {
				continue
			}
			why := ""
			if r.Err != nil {
				why = ": " + r.Err.Error()
			}
			out = append(out, fmt.Sprintf("%s -> %s (%s): %d of %d answered%s",
				m.Endpoints[i].Name, m.Endpoints[j].Name, m.Endpoints[j].Addr, r.Received, r.Sent,
				why))
		}
	}
	return out
}

// WriteText prints the matrix for people: one row per source, one column per destination,
// each cell the median round-trip time, or how many requests were lost.
func (m *Matrix) WriteText(w io.Writer) error {
	var b strings.Builder
	count := 0
	for i, row := range m.Results {
		for j, r := range row {
			if i != j {
				count = max(count, r.Sent)
			}
		}
	}
	fmt.Fprintf(&b, "ping matrix: median round-trip time of %d ICMP echo requests, "+
		"from row to column\n\n", count)

	rows := [][]string{{"FROM \\ TO", ""}}
	for _, e := range m.Endpoints {
		rows[0] = append(rows[0], e.Name)
	}
	for i, row := range m.Results {
		cells := []string{m.Endpoints[i].Name, m.Endpoints[i].Addr.String()}
		for j, r := range row {
			cells = append(cells, cell(i == j, r))
		}
		rows = append(rows, cells)
	}
	columns.Write(&b, rows, 2)
	if failed := m.Failed(); len(failed) > 0 {
		fmt.Fprintf(&b, "\n%d of %d pairs failed:\n", len(failed),
			len(m.Endpoints)*(len(m.Endpoints)-1))
		for _, f := range failed {
			fmt.Fprintf(&b, "  %s\n", f)
		}
	}
	_, err := io.WriteString(w, b.String())
	return err
}

func cell(self bool, r netlab.PingResult) string {
	switch {
	case self:
		return "-"
	case r.Sent == 0:
		return "not run"
	case r.OK():
		return formatRTT(r.Median())
	default:
		return fmt.Sprintf("LOST %d/%d", r.Sent-r.Received, r.Sent)
	}
}

// formatRTT prints d in milliseconds with microsecond precision, "0.071 ms".
func formatRTT(d time.Duration) string {
	return fmt.Sprintf("%.3f ms", float64(d)/float64(time.Millisecond))
}
