package hostgw

import (
	"context"
	"fmt"
	"log/slog"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"

	"github.com/weftnet/weft/backend"
	"github.com/weftnet/weft/backend/kernel"
)

// New returns the host-gw backend for the network namespace of the calling thread (the
// process's own unless the caller locked its thread into another): every later call,
// from any goroutine, works there. It fails if netlink cannot be opened.
func New(p backend.Params) (backend.Backend, error) {
	ns, err := netns.Get()
	if err != nil {
		return nil, fmt.Errorf("opening the current network namespace: %w", err)
	}
	h, err := netlink.NewHandleAt(ns, unix.NETLINK_ROUTE)
	if err != nil {
		ns.Close()
		return nil, fmt.Errorf("opening netlink: %w", err)
	}
	b := newBackend(p, kernel.NewNetlink(h))
	b.drift = watchDrift(ns, b.log)
	return b, nil
}

// watchDrift returns the driftFunc that watches namespace ns for deleted routes.
func watchDrift(ns netns.NsHandle, log *slog.Logger) driftFunc {
	return func(ctx context.Context, filter *kernel.DriftFilter,
		out chan<- struct{}) <-chan struct{} {
		return kernel.DriftWatch{NS: ns, Filter: filter, Log: log}.Start(ctx, out)
	}
}
