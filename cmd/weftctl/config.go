package main

import (
	"context"
	"encoding/binary"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/netip"
	"os"
	"strings"

	"github.com/weftnet/weft/subnet"
)

func configCommands() map[string]command {
	return map[string]command{
		"get": {summary: "print the network config stored in etcd", run: configGet},
		"set": {
			summary: "check a network config file as weftd would, then store it in etcd",
			run:     configSet,
		},
		"validate": {
			summary: "check a network config file as weftd would, without etcd",
			run:     configValidate,
		},
	}
}

func runConfig(ctx context.Context, e *env, args []string) error {
	return runGroup(ctx, e, "config", configCommands(), args)
}

// runGroup dispatches args to one of cmds, the subcommands of the command called name.
func runGroup(ctx context.Context, e *env, name string, cmds map[string]command,
	args []string) error {
	if len(args) == 0 || args[0] == "-h" || args[0] == "--help" || args[0] == "help" {
		printUsage(e.stderr, "weftctl "+name, cmds)
		if len(args) == 0 {
			return usageError{"missing " + name + " command"}
		}
		return flag.ErrHelp
	}
	cmd, ok := cmds[args[0]]
	if !ok {
		printUsage(e.stderr, "weftctl "+name, cmds)
		return usageError{fmt.Sprintf("unknown %s command %q", name, args[0])}
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

func configGet(ctx context.Context, e *env, args []string) error {
	fs := newFlagSet(e, "config get", "weftctl config get [flags]")
	ef := addEtcdFlags(fs)
	pos, err := parseArgs(e, fs, args)
	if err != nil {
		return err
	}
	if err := noArgs(pos); err != nil {
		return err
	}
	c, err := ef.connect(e)
	if err != nil {
		return err
	}
	defer c.close()

	cctx, cancel := ef.within(ctx)
	defer cancel()
	key := c.reg.ConfigKey()
	resp, err := c.cli.Get(cctx, key)
	if err != nil {
		return c.explain(fmt.Errorf("reading %s: %w", key, err), ef.timeout)
	}
	if len(resp.Kvs) == 0 {
		return fmt.Errorf("no network config at %s (store one with: weftctl config set "+
			"FILE -etcd-prefix %s)", key, c.reg.Prefix())
	}
	data := resp.Kvs[0].Value
	e.stdout.Write(data)
	if len(data) > 0 && data[len(data)-1] != '\n' {
		fmt.Fprintln(e.stdout)
	}
	if _, err := subnet.ParseConfig(data); err != nil {
		fmt.Fprintf(e.stderr, "weftctl config get: weftd refuses this config: %v\n", err)
	}
	return nil
}

func configSet(ctx context.Context, e *env, args []string) error {
	fs := newFlagSet(e, "config set", "weftctl config set [flags] FILE (- for stdin)")
	ef := addEtcdFlags(fs)
	pos, err := parseArgs(e, fs, args)
	if err != nil {
		return err
	}
	data, name, err := readConfigArg(pos)
	if err != nil {
		return err
	}
	cfg, err := subnet.ParseConfig(data)
	if err != nil {
		return fmt.Errorf("%s: %w; nothing stored", name, err)
	}
	c, err := ef.connect(e)
	if err != nil {
		return err
	}
	defer c.close()

	cctx, cancel := ef.within(ctx)
	defer cancel()
	if err := c.reg.PutConfig(cctx, data); err != nil {
		return c.explain(err, ef.timeout)
	}
	fmt.Fprintf(e.stdout, "stored %s at %s\n", name, c.reg.ConfigKey())
	return writeDerived(e.stdout, cfg)
}

func configValidate(_ context.Context, e *env, args []string) error {
	fs := newFlagSet(e, "config validate", "weftctl config validate FILE (- for stdin)")
	pos, err := parseArgs(e, fs, args)
	if err != nil {
		return err
	}
	data, name, err := readConfigArg(pos)
	if err != nil {
		return err
	}
	cfg, err := subnet.ParseConfig(data)
	if err != nil {
		return fmt.Errorf("%s: %w", name, err)
	}
	fmt.Fprintf(e.stdout, "%s is a valid network config\n", name)
	return writeDerived(e.stdout, cfg)
}

// readConfigArg reads the file the one argument names, or stdin for "-".
func readConfigArg(pos []string) ([]byte, string, error) {
	if len(pos) != 1 {
		return nil, "", usageError{"want one FILE argument, or - for stdin"}
	}
	name := pos[0]
	if name == "-" {
		data, err := io.ReadAll(os.Stdin)
		if err != nil {
			return nil, "", fmt.Errorf("reading stdin: %w", err)
		}
		return data, "stdin", nil
	}
	data, err := os.ReadFile(name)
	if err != nil {
		return nil, "", fmt.Errorf("reading network config: %w", err)
	}
	return data, name, nil
}

// writeDerived prints what weftd makes of a network config, including the values it
// fills in when the file leaves them out.
func writeDerived(w io.Writer, cfg *subnet.Config) error {
	var b strings.Builder
	row := func(k string, v any) { fmt.Fprintf(&b, "  %-15s %v\n", k, v) }
	if cfg.EnableIPv4 {
		row("Network", cfg.Network)
		row("SubnetLen", cfg.SubnetLen)
		row("SubnetMin", cfg.SubnetMin)
		row("SubnetMax", cfg.SubnetMax)
		row("subnets", subnetCount(cfg.SubnetMin, cfg.SubnetMax, cfg.SubnetLen))
	}
	if cfg.EnableIPv6 {
		row("IPv6Network", cfg.IPv6Network)
		row("IPv6SubnetLen", cfg.IPv6SubnetLen)
		row("IPv6SubnetMin", cfg.IPv6SubnetMin)
		row("IPv6SubnetMax", cfg.IPv6SubnetMax)
	}
	backend := cfg.BackendType
	switch {
	case cfg.Backend == nil:
		backend += " (no Backend object: flanneld's default)"
	case backend == "":
		backend = "(none: Backend has no Type)"
	}
	row("backend", backend)
	_, err := io.WriteString(w, b.String())
	return err
}

// subnetCount returns how many leases of length bits fit from lo to hi, both network
// addresses of such leases.
func subnetCount(lo, hi netip.Addr, bits int) uint64 {
	if !lo.Is4() || !hi.Is4() || bits < 1 || bits > 32 {
		return 0
	}
	a, b := lo.As4(), hi.As4()
	l := binary.BigEndian.Uint32(a[:])
	h := binary.BigEndian.Uint32(b[:])
	if h < l {
		return 0
	}
	return uint64(h-l)>>(32-bits) + 1
}
