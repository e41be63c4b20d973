package hostgw

import (
	"fmt"

	"github.com/vishvananda/netlink"

	"github.com/weftnet/weft/backend"
	"github.com/weftnet/weft/backend/kernel"
)

// New returns the host-gw backend for the process's network namespace. It fails if
// netlink cannot be opened.
func New(p backend.Params) (backend.Backend, error) {
	h, err := netlink.NewHandle()
	if err != nil {
		return nil, fmt.Errorf("opening netlink: %w", err)
	}
	return newBackend(p, kernel.NewNetlink(h)), nil
}
