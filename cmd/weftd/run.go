package main

import (
	"context"
	"errors"
	"flag"
	"log/slog"
	"os"
	"slices"

	"github.com/weftnet/weft/internal/version"
	"github.com/weftnet/weft/overlay"
)

// run logs what parsing noted, turns the options into the daemon's configuration and
// runs the daemon until ctx is cancelled.
func run(ctx context.Context, o *options, log *slog.Logger) error {
	for _, n := range o.notes {
		log.Log(ctx, n.level, n.msg, n.attrs...)
	}
	log.Info("starting weftd", "version", version.Version, "options", o)
	o.fs.VisitAll(func(f *flag.Flag) {
		switch {
		case f.Value.String() == f.DefValue:
		case f.Name == "vmodule" || f.Name == "log_backtrace_at":
			log.Debug("klog option accepted and ignored", "option", f.Name)
		case f.Name != "kube-subnet-mgr" && slices.Contains(kubeFlags, f.Name):
			log.Debug("Kubernetes option accepted and ignored", "option", f.Name)
		}
	})

	cfg, err := o.config()
	if err != nil {
		return err
	}
	cfg.Log = log
	cfg.Synced = settleMemory(os.LookupEnv)
	return overlay.Run(ctx, cfg)
}

// exitCode maps run's result to weftd's exit status, which is flanneld's: 0 for a
// clean stop and for the usage text, 1 for everything else.
func exitCode(err error) int {
	switch {
	case err == nil, errors.Is(err, errUsage), errors.Is(err, context.Canceled):
		return 0
	default:
		return 1
	}
}
