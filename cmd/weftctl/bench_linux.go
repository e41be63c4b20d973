package main

import (
	"bytes"
	"context"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"slices"
	"strings"
	"time"

	"github.com/weftnet/weft/e2e"
	"github.com/weftnet/weft/internal/atomicfile"
	"github.com/weftnet/weft/internal/bench"
)

const benchUsage = `weftctl bench [flags]

Measures the encapsulation path side by side: for the underlay (host to host, no
overlay) and for each backend under each daemon, a two-host lab with one pod per host,
then pod-to-pod TCP throughput for each stream count, request/response latency (p50,
p99), machine-wide CPU seconds per GB moved and the daemons' resident memory. Rows are
measured interleaved, one round after another, and reported as medians with their
ratio to the underlay of the same round. Every lab stays up for the whole run and is
removed at the end, also on error and on Ctrl-C. Needs root.

A table goes to stdout (JSON with --json), progress to stderr. Exits 1 if any row could
not be measured; the others are still reported.

With --from FILE, shows a report that --json saved earlier, as a table, JSON or chart,
without measuring anything.`

// daemonList collects --daemon values, each a whole command line split at spaces.
type daemonList [][]string

// String is empty: the flag has no default to show.
func (d *daemonList) String() string { return "" }

// Set adds one daemon command line.
func (d *daemonList) Set(v string) error {
	argv := strings.Fields(v)
	if len(argv) == 0 {
		return fmt.Errorf("daemon %q: empty command", v)
	}
	if hostDaemon.MatchString(v) {
		return fmt.Errorf("daemon %q: bench compares whole clusters of one daemon; "+
			"hI= is for lab up", v)
	}
	*d = append(*d, argv)
	return nil
}

// benchConfig is a parsed bench command line.
type benchConfig struct {
	opts e2e.BenchOptions
	// from is a report saved by --json to show instead of measuring.
	from    string
	svg     string
	asJSON  bool
	verbose bool
}

// parseBench parses and checks a bench command line; every mistake is a usageError.
func parseBench(e *env, args []string) (benchConfig, error) {
	var c benchConfig
	o := &c.opts
	fs := newFlagSet(e, "bench", benchUsage)
	backends := fs.String("backends", strings.Join(e2e.BenchBackends, ","),
		"comma-separated `backends` to measure: vxlan, udp, host-gw")
	fs.DurationVar(&o.Duration, "duration", 5*time.Second, "how long each stream run writes")
	fs.IntVar(&o.Repeat, "repeat", 3, "rounds, each measuring every row once")
	streams := fs.String("streams", "1,4", "comma-separated numbers of parallel TCP `streams`")
	var daemons daemonList
	fs.Var(&daemons, "daemon", "another daemon `command` to measure every backend with, "+
		"beside weftd; repeatable; split at spaces")
	fs.StringVar(&o.Name, "name", e2e.DefaultBenchName, "`prefix` of the labs' names")
	fs.StringVar(&o.Weftd, "weftd", "", "weftd `binary` (default: weftd next to weftctl)")
	fs.StringVar(&o.StateDir, "state-dir", e2e.DefaultStateDir, "`directory` of the labs' state")
	fs.BoolVar(&c.asJSON, "json", false, "print the report as JSON instead of tables")
	fs.StringVar(&c.svg, "svg", "", "write a throughput bar chart to `file` (SVG)")
	fs.StringVar(&c.from, "from", "", "show the report that --json saved in `file` instead "+
		"of measuring")
	fs.BoolVar(&c.verbose, "v", false, "print every step")
	if err := parseFlags(fs, args); err != nil {
		return c, err
	}
	if fs.NArg() > 0 {
		return c, usageError{fmt.Sprintf("unexpected argument %q", fs.Arg(0))}
	}

	if c.from != "" {
		var measuring []string
		fs.Visit(func(f *flag.Flag) {
			if !slices.Contains([]string{"from", "json", "svg", "v"}, f.Name) {
				measuring = append(measuring, "--"+f.Name)
			}
		})
		if len(measuring) > 0 {
			return c, usageError{fmt.Sprintf("--from shows a saved report; %s would measure",
				strings.Join(measuring, ", "))}
		}
		return c, nil
	}

	var err error
	if o.Streams, err = bench.ParseStreams(*streams); err != nil {
		return c, usageError{err.Error()}
	}
	o.Backends = strings.Split(*backends, ",")
	o.Daemons = append([][]string{nil}, daemons...)
	// 0 would mean the default to BenchOptions; on the command line it is a mistake.
	if o.Repeat < 1 {
		return c, usageError{fmt.Sprintf("repeat %d: want 1 or more rounds", o.Repeat)}
	}
	if o.Duration <= 0 {
		return c, usageError{fmt.Sprintf("duration %s: want a positive time like 5s",
			o.Duration)}
	}
	if err := o.Check(); err != nil {
		return c, usageError{err.Error()}
	}
	return c, nil
}

func runBench(ctx context.Context, e *env, args []string) error {
	c, err := parseBench(e, args)
	if err != nil {
		return err
	}
	log := newProgressLogger(e.stderr, c.verbose)

	if c.from != "" {
		data, err := os.ReadFile(c.from)
		if err != nil {
			return err
		}
		report, err := bench.ParseReport(data)
		if err != nil {
			return fmt.Errorf("%s: %w", c.from, err)
		}
		return c.show(e, report, log)
	}

	if err := requireRoot(); err != nil {
		return err
	}
	c.opts.Log = log
	// Even when removing a lab failed, what was measured is worth showing.
	report, benchErr := e2e.Bench(ctx, c.opts)
	if report == nil {
		return benchErr
	}
	if err := c.show(e, report, log); err != nil {
		return err
	}
	if benchErr != nil {
		return benchErr
	}
	if failed := report.Failed(); len(failed) > 0 {
		fmt.Fprintf(e.stderr, "weftctl bench: %d of %d rows could not be measured\n",
			len(failed), len(report.Rows))
		return errSilent
	}
	return nil
}

// show prints report as a table, or as JSON with --json, and writes its chart with --svg.
func (c benchConfig) show(e *env, report *bench.Report, log *slog.Logger) error {
	if c.svg != "" {
		var b bytes.Buffer
		if err := report.WriteSVG(&b); err != nil {
			return err
		}
		if err := atomicfile.Write(c.svg, b.Bytes(), 0o644); err != nil {
			return fmt.Errorf("writing the chart: %w", err)
		}
		log.Info("chart written", "file", c.svg)
	}
	if c.asJSON {
		return report.WriteJSON(e.stdout)
	}
	return report.WriteTable(e.stdout)
}
