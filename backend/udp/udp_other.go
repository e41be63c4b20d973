//go:build !linux

package udp

import (
	"context"
	"errors"

	"github.com/weftnet/weft/backend"
	"github.com/weftnet/weft/subnet"
)

// RegisterNetwork fails: the data path needs Linux's TUN device and UDP offloads.
func (b *udpBackend) RegisterNetwork(ctx context.Context, cfg *subnet.Config,
	lm backend.LeaseManager) (backend.Network, error) {
	return nil, errors.New("udp backend needs Linux")
}
