package bench

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"math"
	"strconv"
	"strings"
	"time"
)

// CPUTimes is the machine-wide CPU time from /proc/stat, in the kernel's USER_HZ ticks
// summed over every online CPU.
type CPUTimes struct {
	// Busy is time spent running anything: user, nice, system, irq and softirq.
	Busy uint64
	// Total is Busy plus idle, iowait and steal: all the time there was.
	Total uint64
	// CPUs is the number of online CPUs, the per-CPU lines "cpuN".
	CPUs int
}

// maxTicks bounds one column of /proc/stat, so that the sums of eight cannot overflow.
const maxTicks = 1 << 58

// ParseCPUStat reads the content of /proc/stat: the aggregate "cpu" line and the number
// of "cpuN" lines. The guest columns are part of user and nice already and are not
// counted again; lines that are not about CPUs are skipped.
func ParseCPUStat(data []byte) (CPUTimes, error) {
	var (
		t     CPUTimes
		found bool
	)
	sc := bufio.NewScanner(bytes.NewReader(data))
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) == 0 || !strings.HasPrefix(fields[0], "cpu") {
			continue
		}
		if n := strings.TrimPrefix(fields[0], "cpu"); n != "" {
			if _, err := strconv.ParseUint(n, 10, 16); err != nil {
				return CPUTimes{}, fmt.Errorf("/proc/stat: line %q is no CPU", fields[0])
			}
			t.CPUs++
			continue
		}
		if found {
			return CPUTimes{}, errors.New("/proc/stat: two aggregate cpu lines")
		}
		found = true

		// user nice system idle iowait irq softirq steal [guest guest_nice]
		if len(fields) < 5 {
			return CPUTimes{}, fmt.Errorf("/proc/stat: cpu line has %d columns, want 4 "+
				"or more", len(fields)-1)
		}
		var v [8]uint64
		for i := 0; i < len(v) && i+1 < len(fields); i++ {
			n, err := strconv.ParseUint(fields[i+1], 10, 64)
			if err != nil {
				return CPUTimes{}, fmt.Errorf("/proc/stat: cpu column %d %q: %w", i+1,
					fields[i+1], err)
			}
			// Centuries of ticks: anything larger is damage, and could overflow the sums.
			if n > maxTicks {
				return CPUTimes{}, fmt.Errorf("/proc/stat: cpu column %d %q: implausibly "+
					"large", i+1, fields[i+1])
			}
			v[i] = n
		}
		user, nice, system, idle, iowait, irq, softirq, steal := v[0], v[1], v[2], v[3],
			v[4], v[5], v[6], v[7]
		t.Busy = user + nice + system + irq + softirq
		t.Total = t.Busy + idle + iowait + steal
	}
	if err := sc.Err(); err != nil {
		return CPUTimes{}, fmt.Errorf("/proc/stat: %w", err)
	}
	if !found {
		return CPUTimes{}, errors.New("/proc/stat: no aggregate cpu line")
	}
	if t.CPUs == 0 {
		return CPUTimes{}, errors.New("/proc/stat: no cpuN lines")
	}
	return t, nil
}

// BusySeconds returns the CPU-seconds the machine was busy between two readings a and b
// that were wall apart: the busy share of all ticks that passed, times the CPUs, times
// the wall time. Working from the share leaves the tick rate out. It is 0 when no tick
// passed, and an error when b is not a later reading of the same machine than a.
func BusySeconds(a, b CPUTimes, wall time.Duration) (float64, error) {
	if b.Total < a.Total || b.Busy < a.Busy || b.Busy-a.Busy > b.Total-a.Total {
		return 0, fmt.Errorf("CPU times went backwards: busy %d to %d of %d to %d ticks",
			a.Busy, b.Busy, a.Total, b.Total)
	}
	if a.CPUs != b.CPUs {
		return 0, fmt.Errorf("CPU count changed from %d to %d during the run", a.CPUs, b.CPUs)
	}
	total := b.Total - a.Total
	if total == 0 {
		return 0, nil
	}
	share := float64(b.Busy-a.Busy) / float64(total)
	return share * float64(b.CPUs) * wall.Seconds(), nil
}

// ParseVmRSS returns the resident set size, in bytes, from the content of
// /proc/<pid>/status: its "VmRSS:" line, which the kernel gives in kB. A process without
// memory of its own (a kernel thread, a zombie) has no such line, and is an error.
func ParseVmRSS(data []byte) (int64, error) {
	rss, err := ParseStatusBytes(data, "VmRSS")
	var missing missingField
	if errors.As(err, &missing) {
		return 0, fmt.Errorf("%w (a kernel thread or a zombie)", err)
	}
	return rss, err
}

// missingField is the error of ParseStatusBytes for a field the status does not hold.
type missingField string

func (f missingField) Error() string { return "process status: no " + string(f) + " line" }

// ParseStatusBytes returns the memory figure field ("VmRSS", "VmHWM", "RssAnon",
// "RssFile", ...), in bytes, from the content of /proc/<pid>/status, where the kernel
// gives it in kB.
func ParseStatusBytes(data []byte, field string) (int64, error) {
	for line := range strings.Lines(string(data)) {
		rest, ok := strings.CutPrefix(line, field+":")
		if !ok {
			continue
		}
		fields := strings.Fields(rest)
		if len(fields) != 2 || fields[1] != "kB" {
			return 0, fmt.Errorf("process status: %s %q: want a number of kB", field,
				strings.TrimSpace(rest))
		}
		kb, err := strconv.ParseInt(fields[0], 10, 64)
		if err != nil || kb < 0 || kb > math.MaxInt64>>10 {
			return 0, fmt.Errorf("process status: %s %q: want a number of kB", field,
				strings.TrimSpace(rest))
		}
		return kb << 10, nil
	}
	return 0, missingField(field)
}

// UserHZ is the unit of the times in /proc/<pid>/stat: clock ticks of 1/100 s, which
// Linux keeps for user space whatever its internal tick rate.
const UserHZ = 100

// ParseProcCPU returns the CPU time a process has used, user and system together, in
// seconds, from the content of /proc/<pid>/stat (fields 14 and 15). The command name in
// parentheses may itself hold spaces and parentheses, so fields are counted from the
// last ')'.
func ParseProcCPU(data []byte) (float64, error) {
	i := bytes.LastIndexByte(data, ')')
	if i < 0 {
		return 0, errors.New("process stat: no ')' after the command name")
	}
	// fields[0] is field 3, the state; utime and stime are fields 14 and 15.
	fields := strings.Fields(string(data[i+1:]))
	if len(fields) < 13 {
		return 0, fmt.Errorf("process stat: %d fields after the command name, want 13 or "+
			"more", len(fields))
	}
	var ticks uint64
	for _, f := range fields[11:13] {
		n, err := strconv.ParseUint(f, 10, 64)
		if err != nil || n > maxTicks {
			return 0, fmt.Errorf("process stat: CPU time %q: want a number of ticks", f)
		}
		ticks += n
	}
	return float64(ticks) / UserHZ, nil
}
