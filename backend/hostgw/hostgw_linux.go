package hostgw

import (
	"fmt"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/weftnet/weft/backend"
	"github.com/weftnet/weft/backend/kernel"
)

// New returns the host-gw backend for the network namespace of the calling thread (the
// process's own unless the caller locked its thread into another). It fails if netlink
// cannot be opened.
func New(p backend.Params) (backend.Backend, error) {
	h, err := netlink.NewHandle(unix.NETLINK_ROUTE)
	if err != nil {
		return nil, fmt.Errorf("opening netlink: %w", err)
	}
	return newBackend(p, kernel.NewNetlink(h)), nil
}
