//go:build !linux

package vxlan

import (
	"errors"

	"github.com/weftnet/weft/backend"
)

// New fails: the vxlan backend programs the Linux kernel's VXLAN driver.
func New(p backend.Params) (backend.Backend, error) {
	return nil, errors.New("the vxlan backend needs Linux")
}
