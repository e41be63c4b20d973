package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io/fs"
	"log/slog"
	"net/netip"
	"os"
	"strings"
	"time"

	"github.com/weftnet/weft/e2e"
	"github.com/weftnet/weft/internal/netlab"
)

func labCommands() map[string]command {
	return map[string]command{
		"up":     {summary: "build a lab and leave it running", run: labUp},
		"status": {summary: "show a lab's hosts, leases, pods and processes", run: labStatus},
		"exec": {
			summary: "run a command inside a host or pod: lab exec h1-p1 -- CMD",
			run:     labExec,
		},
		"down": {summary: "stop a lab's processes and remove everything it made", run: labDown},
		"etcd": {summary: "serve a lab's etcd (started by lab up)", hidden: true, run: labEtcd},
	}
}

func runLab(ctx context.Context, e *env, args []string) error {
	cmds := labCommands()
	if len(args) == 0 || args[0] == "-h" || args[0] == "--help" || args[0] == "help" {
		printUsage(e.stderr, "weftctl lab", cmds)
		if len(args) == 0 {
			return usageError{"missing lab command"}
		}
		return flag.ErrHelp
	}
	cmd, ok := cmds[args[0]]
	if !ok {
		printUsage(e.stderr, "weftctl lab", cmds)
		return usageError{fmt.Sprintf("unknown lab command %q", args[0])}
	}
	if err := cmd.run(ctx, e, args[1:]); err != nil {
		var ue usageError
		if errors.As(err, &ue) {
			return usageError{args[0] + ": " + ue.msg}
		}
		if errors.Is(err, flag.ErrHelp) || errors.Is(err, errSilent) {
			return err
		}
		return fmt.Errorf("%s: %w", args[0], err)
	}
	return nil
}

// requireRoot fails unless weftctl runs as root, which namespaces need.
func requireRoot() error {
	if os.Geteuid() != 0 {
		return errors.New("needs root: it creates network namespaces (run it with sudo)")
	}
	return nil
}

// labFlags are the flags of lab up and demo that do not go straight into e2e.Options.
type labFlags struct {
	daemons daemonFlags
	args    argFlags
	verbose bool
}

// apply puts the daemon commands and flags into o, once the flags are parsed and o.Hosts
// is known; an error is a usage error.
func (f *labFlags) apply(o *e2e.Options) error {
	hostFlags, err := f.args.forHosts(o.Hosts)
	if err != nil {
		return usageError{err.Error()}
	}
	o.Daemon, o.HostDaemons, o.HostFlags = f.daemons.all, f.daemons.hosts, hostFlags
	return nil
}

// buildFlags registers the flags that describe a lab to build, shared by lab up and demo.
func buildFlags(fs *flag.FlagSet, o *e2e.Options) *labFlags {
	f := &labFlags{}
	fs.StringVar(&o.Name, "name", o.Name, "lab `name`, the prefix of its namespaces")
	fs.IntVar(&o.Hosts, "hosts", o.Hosts, "number of hosts")
	fs.IntVar(&o.Pods, "pods", o.Pods, "pods per host")
	fs.StringVar(&o.Backend, "backend", o.Backend, "backend `type`: vxlan, host-gw or udp")
	fs.IntVar(&o.VNI, "vni", o.VNI, "VXLAN `VNI` in the network config (0: the daemon's default)")
	fs.Func("network", "overlay `CIDR` (default "+e2e.DefaultNetwork.String()+")",
		func(s string) error {
			p, err := netip.ParsePrefix(s)
			if err != nil || !p.Addr().Is4() {
				return fmt.Errorf("%q is not an IPv4 CIDR like 198.19.0.0/16", s)
			}
			o.Network = p.Masked()
			return nil
		})
	fs.Var(&f.daemons, "daemon", "daemon `command` for every host, or hI=command for host I; "+
		"repeatable; split at spaces (default: weftd next to weftctl)")
	fs.Var(&f.args, "daemon-flags", "`flags` added to every host's daemon after the lab's, or "+
		"hI=flags for host I; repeatable; split at spaces (e.g. -ip-masq)")
	fs.StringVar(&o.Weftd, "weftd", "", "weftd `binary` (default: weftd next to weftctl)")
	fs.StringVar(&o.StateDir, "state-dir", e2e.DefaultStateDir, "`directory` of the labs' state")
	fs.BoolVar(&f.verbose, "v", false, "print every step")
	return f
}

func labUp(ctx context.Context, e *env, args []string) error {
	fs := newFlagSet(e, "lab up", "weftctl lab up [flags]")
	o := e2e.Options{Name: e2e.DefaultName, Hosts: 3, Pods: 1, Backend: "vxlan"}
	f := buildFlags(fs, &o)
	fs.BoolVar(&o.Outside, "outside", false, "add namespace L-out, a machine on the underlay "+
		"outside the overlay (198.18.0.200), to see what masquerading does")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return usageError{fmt.Sprintf("unexpected argument %q", fs.Arg(0))}
	}
	if err := f.apply(&o); err != nil {
		return err
	}
	if err := requireRoot(); err != nil {
		return err
	}
	o.Log = newProgressLogger(e.stderr, f.verbose)

	l, err := e2e.Up(ctx, o)
	if err != nil {
		return err
	}
	defer l.Close()

	fmt.Fprintln(e.stdout)
	if err := l.Status(ctx).WriteText(e.stdout); err != nil {
		return err
	}
	fmt.Fprintf(e.stdout, "\nThe lab keeps running. Look inside with: %s h1 -- <command>\n"+
		"Remove it with: %s\n", labCommand("exec", l.Name()), labCommand("down", l.Name()))
	return nil
}

// labCommand returns "weftctl lab VERB" for the lab called name, for hints, with
// "--name L" unless L is the default.
func labCommand(verb, name string) string {
	cmd := "weftctl lab " + verb
	if name != e2e.DefaultName {
		cmd += " --name " + name
	}
	return cmd
}

// openLab opens the lab called name, listing the labs there are when it does not exist.
func openLab(stateDir, name string) (*e2e.Lab, error) {
	l, err := e2e.Open(stateDir, name, nil)
	if errors.Is(err, fs.ErrNotExist) {
		labs, _ := e2e.Labs(stateDir)
		if len(labs) > 0 {
			return nil, fmt.Errorf("no lab %s; labs here: %s (choose one with --name)", name,
				strings.Join(labs, ", "))
		}
		return nil, fmt.Errorf("no lab %s: build one with weftctl lab up", name)
	}
	return l, err
}

func labStatus(ctx context.Context, e *env, args []string) error {
	fs := newFlagSet(e, "lab status", "weftctl lab status [--name L] [--json]")
	name := fs.String("name", e2e.DefaultName, "lab `name`")
	stateDir := fs.String("state-dir", e2e.DefaultStateDir, "`directory` of the labs' state")
	asJSON := fs.Bool("json", false, "print JSON")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return usageError{fmt.Sprintf("unexpected argument %q", fs.Arg(0))}
	}
	l, err := openLab(*stateDir, *name)
	if err != nil {
		return err
	}
	defer l.Close()

	s := l.Status(ctx)
	if *asJSON {
		enc := json.NewEncoder(e.stdout)
		enc.SetIndent("", "  ")
		return enc.Encode(s)
	}
	return s.WriteText(e.stdout)
}

func labExec(_ context.Context, e *env, args []string) error {
	fs := newFlagSet(e, "lab exec", "weftctl lab exec [--name L] wan|hI|hI-pJ [--] [command...]"+
		"\n\nRuns command (default /bin/sh) inside the namespace of the lab's underlay, host I "+
		"or pod J of host I.")
	name := fs.String("name", e2e.DefaultName, "lab `name`")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if fs.NArg() == 0 {
		return usageError{"missing target: wan, hI or hI-pJ"}
	}
	ns, err := e2e.ParseTarget(*name, fs.Arg(0))
	if err != nil {
		return usageError{err.Error()}
	}
	argv := fs.Args()[1:]
	if len(argv) > 0 && argv[0] == "--" {
		argv = argv[1:]
	}
	if len(argv) == 0 {
		argv = []string{"/bin/sh"}
	}
	if err := requireRoot(); err != nil {
		return err
	}
	if !netlab.Exists(ns) {
		return fmt.Errorf("lab %s has no namespace %s", *name, ns)
	}
	return netlab.Exec(ns, argv, os.Environ())
}

func labDown(ctx context.Context, e *env, args []string) error {
	fs := newFlagSet(e, "lab down", "weftctl lab down [--name L]")
	name := fs.String("name", e2e.DefaultName, "lab `name`")
	stateDir := fs.String("state-dir", e2e.DefaultStateDir, "`directory` of the labs' state")
	verbose := fs.Bool("v", false, "print every step")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return usageError{fmt.Sprintf("unexpected argument %q", fs.Arg(0))}
	}
	if err := requireRoot(); err != nil {
		return err
	}
	// A Ctrl-C must not leave the teardown half done.
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 2*time.Minute)
	defer cancel()
	if err := e2e.Down(ctx, *stateDir, *name, newProgressLogger(e.stderr, *verbose)); err != nil {
		return err
	}
	fmt.Fprintf(e.stdout, "lab %s removed\n", *name)
	return nil
}

func labEtcd(ctx context.Context, e *env, args []string) error {
	fs := newFlagSet(e, "lab etcd", "weftctl lab etcd --name L [--state-dir D]")
	name := fs.String("name", "", "lab `name`")
	stateDir := fs.String("state-dir", e2e.DefaultStateDir, "`directory` of the labs' state")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if *name == "" || fs.NArg() > 0 {
		return usageError{"want --name and nothing else"}
	}
	log := slog.New(slog.NewTextHandler(e.stderr, nil))
	return e2e.ServeEtcd(ctx, *stateDir, *name, log)
}
