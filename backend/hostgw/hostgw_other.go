//go:build !linux

package hostgw

import (
	"errors"

	"github.com/weftnet/weft/backend"
)

// New fails: the host-gw backend programs the Linux kernel's routing table.
func New(p backend.Params) (backend.Backend, error) {
	return nil, errors.New("the host-gw backend needs Linux")
}
