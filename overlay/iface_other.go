//go:build !linux

package overlay

import (
	"errors"
	"log/slog"

	"github.com/vishvananda/netlink"

	"github.com/weftnet/weft/backend"
)

// ChooseInterface needs Linux: it reads links, addresses and routes through netlink.
func ChooseInterface(h *netlink.Handle, spec InterfaceSpec, log *slog.Logger) (
	backend.ExternalInterface, error) {
	return backend.ExternalInterface{}, errors.New("choosing the external interface needs Linux")
}
