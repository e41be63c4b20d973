package e2e

import (
	"bytes"
	"errors"
	"fmt"
	"strconv"
	"strings"
)

// procStat is what the lab reads from /proc/<pid>/stat.
type procStat struct {
	State byte
	// Start is field 22, starttime: clock ticks after boot.
	Start uint64
}

// parseProcStat decodes the content of /proc/<pid>/stat. The command name in parentheses
// may itself hold spaces and parentheses, so the fields are counted from the last ')'.
func parseProcStat(data []byte) (procStat, error) {
	i := bytes.LastIndexByte(data, ')')
	if i < 0 {
		return procStat{}, errors.New("process stat: no ')' after the command name")
	}
	fields := strings.Fields(string(data[i+1:]))
	// fields[0] is field 3 (state), so field 22 is fields[19].
	if len(fields) < 20 {
		return procStat{}, fmt.Errorf("process stat: %d fields after the command name, "+
			"want 20 or more", len(fields))
	}
	if len(fields[0]) != 1 {
		return procStat{}, fmt.Errorf("process stat: state %q is not one letter", fields[0])
	}
	start, err := strconv.ParseUint(fields[19], 10, 64)
	if err != nil {
		return procStat{}, fmt.Errorf("process stat: start time %q: %w", fields[19], err)
	}
	return procStat{State: fields[0][0], Start: start}, nil
}

// parseCmdline splits the content of /proc/<pid>/cmdline into its arguments.
func parseCmdline(data []byte) []string {
	data = bytes.TrimSuffix(data, []byte{0})
	if len(data) == 0 {
		return nil
	}
	return strings.Split(string(data), "\x00")
}

// name returns the program name of p, for messages.
func (p Proc) name() string {
	if len(p.Argv) == 0 {
		return "?"
	}
	return p.Argv[0]
}
