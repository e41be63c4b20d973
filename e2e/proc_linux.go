package e2e

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/weftnet/weft/internal/netlab"
)

// startProc starts argv inside the namespace called ns, or in the caller's own when ns is
// empty, in a session of its own (so that Ctrl-C on a terminal reaches only weftctl, which
// cleans up), with stdin from /dev/null and stdout and stderr appended to p.Log. The
// returned Cmd is to be waited for by whoever stops the process.
//
// Equivalent to: ip netns exec <ns> setsid <argv> </dev/null >><log> 2>&1 &
func startProc(ns string, argv []string, logPath string) (Proc, *exec.Cmd, error) {
	if len(argv) == 0 {
		return Proc{}, nil, errors.New("starting a process: empty command line")
	}
	logf, err := os.OpenFile(logPath, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o644)
	if err != nil {
		return Proc{}, nil, fmt.Errorf("starting %s: opening its log: %w", argv[0], err)
	}
	defer logf.Close()

	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Stdout = logf
	cmd.Stderr = logf
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	if ns == "" {
		err = cmd.Start()
	} else {
		err = netlab.Start(ns, cmd)
	}
	if err != nil {
		return Proc{}, nil, fmt.Errorf("starting %s: %w", strings.Join(argv, " "), err)
	}

	p := Proc{Argv: cmd.Args, PID: cmd.Process.Pid, Log: logPath}
	st, err := readProcStat(p.PID)
	if err != nil {
		cmd.Process.Kill()
		cmd.Wait()
		return Proc{}, nil, fmt.Errorf("starting %s: %w", argv[0], err)
	}
	p.Start = st.Start
	return p, cmd, nil
}

func readProcStat(pid int) (procStat, error) {
	data, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return procStat{}, fmt.Errorf("reading state of process %d: %w", pid, err)
	}
	st, err := parseProcStat(data)
	if err != nil {
		return procStat{}, fmt.Errorf("process %d: %w", pid, err)
	}
	return st, nil
}

// alive reports whether p still runs: its PID exists, is no zombie, started when p did and
// runs p's command line. A PID reused by another process is not alive.
func (p Proc) alive() bool {
	if p.PID <= 0 {
		return false
	}
	st, err := readProcStat(p.PID)
	if err != nil || st.Start != p.Start || st.State == 'Z' || st.State == 'X' {
		return false
	}
	data, err := os.ReadFile("/proc/" + strconv.Itoa(p.PID) + "/cmdline")
	return err == nil && slices.Equal(parseCmdline(data), p.Argv)
}

// stop ends p: SIGTERM, then SIGKILL if it is still there after grace. A process that is
// already gone is stopped. cmd, when the caller started p, is reaped once p has exited,
// so no zombie stays behind.
func (p Proc) stop(ctx context.Context, cmd *exec.Cmd, grace time.Duration) error {
	defer p.reap(cmd)
	if err := p.signal(syscall.SIGTERM); err != nil {
		return err
	}
	if p.waitGone(ctx, grace) {
		return nil
	}
	if err := p.signal(syscall.SIGKILL); err != nil {
		return err
	}
	if p.waitGone(ctx, 5*time.Second) {
		return nil
	}
	return fmt.Errorf("stopping process %d (%s): still there after SIGKILL", p.PID, p.name())
}

// reap waits for cmd, the caller's own child p, if it has exited; it never blocks on a
// child that still runs (one that replaced its command line, and so is no longer p).
func (p Proc) reap(cmd *exec.Cmd) {
	if cmd == nil || cmd.ProcessState != nil {
		return
	}
	st, err := readProcStat(p.PID)
	if err == nil && st.Start == p.Start && st.State != 'Z' && st.State != 'X' {
		return
	}
	cmd.Wait()
}

// signal sends sig to p if p is still alive; a process that is gone is no error.
func (p Proc) signal(sig syscall.Signal) error {
	if !p.alive() {
		return nil
	}
	err := syscall.Kill(p.PID, sig)
	if err != nil && !errors.Is(err, syscall.ESRCH) {
		return fmt.Errorf("sending %s to process %d (%s): %w", sig, p.PID, p.name(), err)
	}
	return nil
}

// waitGone polls until p is no longer alive, for at most d or until ctx is done, and
// reports whether it went.
func (p Proc) waitGone(ctx context.Context, d time.Duration) bool {
	deadline := time.Now().Add(d)
	for p.alive() {
		if time.Now().After(deadline) || ctx.Err() != nil {
			return false
		}
		time.Sleep(20 * time.Millisecond)
	}
	return true
}

// procsInNamespaces returns the processes with a thread in one of the namespaces named,
// other than the caller: what a lab's namespaces still hold when its state is lost.
func procsInNamespaces(names []string) ([]Proc, error) {
	want := map[nsID]bool{}
	for _, n := range names {
		if id, ok := statNS(netlab.Path(n)); ok {
			want[id] = true
		}
	}
	if len(want) == 0 {
		return nil, nil
	}

	entries, err := os.ReadDir("/proc")
	if err != nil {
		return nil, fmt.Errorf("listing processes: %w", err)
	}
	var procs []Proc
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil || pid == os.Getpid() || !anyTaskIn(pid, want) {
			continue
		}
		ps, err := readProcStat(pid)
		if err != nil {
			continue // gone meanwhile
		}
		cmdline, err := os.ReadFile("/proc/" + e.Name() + "/cmdline")
		if err != nil {
			continue
		}
		procs = append(procs, Proc{Argv: parseCmdline(cmdline), PID: pid, Start: ps.Start})
	}
	return procs, nil
}

// nsID identifies a namespace by the device and inode of its nsfs file.
type nsID struct{ dev, ino uint64 }

func statNS(path string) (nsID, bool) {
	var st syscall.Stat_t
	if err := syscall.Stat(path, &st); err != nil {
		return nsID{}, false
	}
	return nsID{st.Dev, st.Ino}, true
}

// anyTaskIn reports whether any thread of process pid is in one of the namespaces want.
func anyTaskIn(pid int, want map[nsID]bool) bool {
	dir := "/proc/" + strconv.Itoa(pid) + "/task"
	tasks, err := os.ReadDir(dir)
	if err != nil {
		return false
	}
	for _, t := range tasks {
		if id, ok := statNS(dir + "/" + t.Name() + "/ns/net"); ok && want[id] {
			return true
		}
	}
	return false
}

// tailFile returns the last n lines of the file at path, for error messages; "" when it
// cannot be read.
func tailFile(path string, n int) string {
	data, err := os.ReadFile(path)
	if err != nil {
		return ""
	}
	lines := strings.Split(strings.TrimRight(string(data), "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}
