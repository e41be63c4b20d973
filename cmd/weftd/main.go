// Command weftd is weft's host daemon, a drop-in replacement for flannel's flanneld. It
// leases this host a subnet of the overlay network kept in etcd, programs the data
// plane towards every other host's subnet, writes subnet.env for container runtimes,
// and keeps the lease alive. It takes flanneld's flags and FLANNELD_* variables.
//
// Exit status: 0 after SIGINT or SIGTERM (also while still waiting for the network
// config), after -version and -h, and after a command line that does not parse (which
// prints the usage, as flanneld does); 1 when the daemon cannot start or run.
package main

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"syscall"

	"github.com/weftnet/weft/internal/version"
)

func main() {
	oneProc(os.LookupEnv)
	o, err := parseOptions(os.Args[1:], os.LookupEnv, os.Stderr)
	if err != nil {
		os.Exit(exitCode(err))
	}
	if o.version {
		fmt.Fprintln(os.Stderr, version.Version)
		os.Exit(0)
	}
	log := slog.New(slog.NewTextHandler(os.Stderr,
		&slog.HandlerOptions{Level: logLevel(o.verbosity)}))

	// The first signal stops the daemon cleanly; once it has, a second one kills it.
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	context.AfterFunc(ctx, stop)

	err = run(ctx, o, log)
	stop()
	code := exitCode(err)
	if code != 0 {
		log.Error("weftd failed", "err", err)
	}
	log.Info("exiting", "status", code)
	os.Exit(code)
}
