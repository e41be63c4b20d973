package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"strings"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/weftnet/weft/overlay"
	"github.com/weftnet/weft/subnet"
)

// defaultTimeout bounds a one-shot command's exchange with etcd.
const defaultTimeout = 10 * time.Second

// etcdFlags are the options of every command that talks to etcd: weftd's, with its
// FLANNELD_* variables, plus a time limit.
type etcdFlags struct {
	fs      *flag.FlagSet
	options func() subnet.EtcdOptions
	timeout time.Duration
}

// addEtcdFlags declares the etcd options on fs.
func addEtcdFlags(fs *flag.FlagSet) *etcdFlags {
	f := &etcdFlags{fs: fs, options: overlay.EtcdFlags(fs)}
	fs.DurationVar(&f.timeout, "timeout", defaultTimeout,
		"how long to wait for etcd before giving up")
	return f
}

// parseArgs parses args into fs, with options allowed before and after the positional
// arguments (until "--"), then applies the FLANNELD_* variables of weftd's options and
// tells on stderr about each value that was ignored. It returns the positional
// arguments.
func parseArgs(e *env, fs *flag.FlagSet, args []string) ([]string, error) {
	var pos []string
	for {
		if err := parseFlags(fs, args); err != nil {
			return nil, err
		}
		rest := fs.Args()
		if len(rest) == 0 {
			break
		}
		// flag stops after "--" as well, having taken it: the rest is positional.
		if i := len(args) - len(rest) - 1; i >= 0 && args[i] == "--" {
			pos = append(pos, rest...)
			break
		}
		pos = append(pos, rest[0])
		args = rest[1:]
	}
	for _, n := range overlay.ApplyEnv(fs, os.LookupEnv, isWeftdOption) {
		if n.Err != nil {
			fmt.Fprintf(e.stderr, "weftctl: ignoring %s=%s: %v\n", n.Var, n.Value, n.Err)
		}
	}
	return pos, nil
}

// weftdOptions are the options weftctl shares with weftd, which take its FLANNELD_*
// variables; weftctl's own options do not.
var weftdOptions = map[string]bool{
	"etcd-endpoints": true, "etcd-prefix": true, "etcd-keyfile": true, "etcd-certfile": true,
	"etcd-cafile": true, "etcd-username": true, "etcd-password": true,
	"healthz-ip": true, "healthz-port": true,
	"bridge": true, "subnet-file": true, "docker-opts": true, "cni-conf": true,
}

func isWeftdOption(name string) bool { return weftdOptions[name] }

// noArgs returns a usage error for the first of pos.
func noArgs(pos []string) error {
	if len(pos) > 0 {
		return usageError{fmt.Sprintf("unexpected argument %q", pos[0])}
	}
	return nil
}

// etcdConn is an open connection to the network's registry.
type etcdConn struct {
	cli  *clientv3.Client
	reg  *subnet.Registry
	opts subnet.EtcdOptions
}

// connect opens the registry that the parsed flags name. The registry's own warnings,
// such as keys under subnets/ that are not leases, go to stderr.
func (f *etcdFlags) connect(e *env) (*etcdConn, error) {
	if f.timeout <= 0 {
		return nil, usageError{fmt.Sprintf("-timeout %v: want a positive duration", f.timeout)}
	}
	o := f.options()
	cli, err := subnet.NewEtcdClient(o)
	if err != nil {
		return nil, err
	}
	log := slog.New(slog.NewTextHandler(e.stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	return &etcdConn{cli: cli, reg: subnet.NewRegistry(cli, o.Prefix, log), opts: o}, nil
}

func (c *etcdConn) close() { c.cli.Close() }

// within returns a context bounded by the command's time limit.
func (f *etcdFlags) within(ctx context.Context) (context.Context, context.CancelFunc) {
	return context.WithTimeout(ctx, f.timeout)
}

// explain adds to an error that etcd did not answer in time where it was asked.
func (c *etcdConn) explain(err error, timeout time.Duration) error {
	if errors.Is(err, context.DeadlineExceeded) {
		return fmt.Errorf("etcd at %s did not answer within %v (check -etcd-endpoints and "+
			"the TLS options): %w", strings.Join(c.opts.Endpoints, ","), timeout, err)
	}
	return err
}
