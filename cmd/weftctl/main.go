// Command weftctl is weft's operator tool. It reads and writes the network's state in
// etcd, with weftd's -etcd-* options and FLANNELD_* variables, asks a running weftd
// how it is, and removes what weftd leaves behind:
//
//	weftctl config get | set FILE | validate FILE
//	weftctl leases [--watch] [--json]
//	weftctl reserve 198.19.5.0/24 --public-ip 198.18.0.5
//	weftctl unreserve 198.19.5.0/24 [--force]
//	weftctl status [--addr 127.0.0.1:8081] [--json]
//	weftctl cleanup [--bridge cni0] [--subnet-file /run/flannel/subnet.env] [--dry-run]
//
// It also runs the network-namespace lab and the benchmarks:
//
//	weftctl lab up --hosts 3 --backend vxlan --vni 2000 --pods 1
//	weftctl lab status [--json]
//	weftctl lab exec h1-p1 -- ping 198.19.7.11
//	weftctl lab down
//	weftctl demo
//
// Every command prints its own flags with -h. Exit status: 0 on success, 1 on failure,
// 2 for a command line that does not parse.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"sort"
	"strings"
	"syscall"

	"github.com/weftnet/weft/internal/version"
)

// command is one subcommand: run gets the arguments after the command's name.
type command struct {
	summary string
	hidden  bool
	run     func(ctx context.Context, env *env, args []string) error
}

// env is what every command writes to.
type env struct {
	stdout, stderr io.Writer
}

// usageError marks a command line that does not parse; it exits with status 2.
type usageError struct{ msg string }

// Error returns the message, without the usage.
func (e usageError) Error() string { return e.msg }

// errSilent is a failure the command has already reported; it exits with status 1.
var errSilent = errors.New("failed")

func commands() map[string]command {
	return map[string]command{
		"lab": {summary: "build, inspect and remove a network-namespace lab", run: runLab},
		"demo": {
			summary: "3 hosts over VXLAN VNI 2000, leases and a ping matrix; cleans up",
			run:     runDemo,
		},
		"bench": {
			summary: "TCP throughput, latency, CPU and memory per backend against the underlay",
			run:     runBench,
		},
		"version": {summary: "print weftctl's version", run: runVersion},
		"config": {
			summary: "print, check or store the network config in etcd",
			run:     runConfig,
		},
		"leases":    {summary: "list the leases in etcd, or --watch them", run: runLeases},
		"reserve":   {summary: "keep a subnet for the host with a given PublicIP", run: runReserve},
		"unreserve": {summary: "remove a reservation", run: runUnreserve},
		"status": {
			summary: "show what a running weftd reports on its health port",
			run:     runStatus,
		},
		"cleanup": {
			summary: "remove weft's devices, routes, nftables tables and files (uninstall)",
			run:     runCleanup,
		},
	}
}

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	code := run(ctx, &env{stdout: os.Stdout, stderr: os.Stderr}, os.Args[1:])
	stop()
	os.Exit(code)
}

// run dispatches args to a command and maps its error to an exit status.
func run(ctx context.Context, e *env, args []string) int {
	cmds := commands()
	if len(args) == 0 || args[0] == "-h" || args[0] == "--help" || args[0] == "help" {
		printUsage(e.stderr, "weftctl", cmds)
		if len(args) == 0 {
			return 2
		}
		return 0
	}
	cmd, ok := cmds[args[0]]
	if !ok {
		fmt.Fprintf(e.stderr, "weftctl: unknown command %q\n\n", args[0])
		printUsage(e.stderr, "weftctl", cmds)
		return 2
	}
	err := cmd.run(ctx, e, args[1:])
	var ue usageError
	switch {
	case err == nil:
		return 0
	case errors.Is(err, flag.ErrHelp):
		return 0
	case errors.As(err, &ue):
		fmt.Fprintf(e.stderr, "weftctl %s: %s\n", args[0], ue.msg)
		return 2
	case errors.Is(err, errSilent):
		return 1
	case errors.Is(err, context.Canceled) && ctx.Err() != nil:
		fmt.Fprintf(e.stderr, "weftctl %s: interrupted\n", args[0])
		return 1
	default:
		fmt.Fprintf(e.stderr, "weftctl %s: %v\n", args[0], err)
		return 1
	}
}

func printUsage(w io.Writer, name string, cmds map[string]command) {
	fmt.Fprintf(w, "usage: %s <command> [flags] [arguments]\n\ncommands:\n", name)
	var names []string
	for n, c := range cmds {
		if !c.hidden {
			names = append(names, n)
		}
	}
	sort.Strings(names)
	for _, n := range names {
		fmt.Fprintf(w, "  %-10s %s\n", n, cmds[n].summary)
	}
	fmt.Fprintf(w, "\nRun '%s <command> -h' for a command's flags.\n", name)
}

// newFlagSet returns a flag set that reports errors instead of exiting.
func newFlagSet(e *env, name, usage string) *flag.FlagSet {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(e.stderr)
	fs.Usage = func() {
		fmt.Fprintf(e.stderr, "usage: %s\n\nflags:\n", usage)
		fs.PrintDefaults()
	}
	return fs
}

// parseFlags parses args into fs and turns a parse failure into a usageError (flag has
// already printed it, and the usage).
func parseFlags(fs *flag.FlagSet, args []string) error {
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return err
		}
		return usageError{strings.TrimSpace(err.Error())}
	}
	return nil
}

func runVersion(_ context.Context, e *env, args []string) error {
	fs := newFlagSet(e, "version", "weftctl version")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	fmt.Fprintf(e.stdout, "weftctl %s\n", version.Version)
	return nil
}
