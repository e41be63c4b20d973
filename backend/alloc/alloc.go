// Package alloc is the backend that only holds a lease: it programs no data plane. It
// lets weftd hand out subnets where something else carries the traffic, as flanneld's
// alloc backend does.
package alloc

import (
	"context"
	"fmt"

	"github.com/weftnet/weft/backend"
	"github.com/weftnet/weft/subnet"
)

// TypeName is the backend's name in the network config.
const TypeName = "alloc"

// New returns the alloc backend. Its leases carry no BackendType, as flanneld's do.
func New(p backend.Params) (backend.Backend, error) {
	return &allocBackend{ext: p.Ext}, nil
}

type allocBackend struct {
	ext backend.ExternalInterface
}

func (b *allocBackend) RegisterNetwork(ctx context.Context, cfg *subnet.Config,
	lm backend.LeaseManager) (backend.Network, error) {
	attrs := subnet.LeaseAttrs{PublicIP: b.ext.ExtAddr}
	if cfg.EnableIPv6 {
		attrs.PublicIPv6 = b.ext.ExtV6Addr
	}
	lease, err := lm.AcquireLease(ctx, attrs)
	if err != nil {
		return nil, fmt.Errorf("acquiring lease: %w", err)
	}
	return &network{lease: lease, mtu: b.ext.MTU}, nil
}

type network struct {
	lease *subnet.Lease
	mtu   int
}

func (n *network) Lease() *subnet.Lease { return n.lease }
func (n *network) MTU() int             { return n.mtu }

// Run drains events until ctx is cancelled: there is nothing to program.
func (n *network) Run(ctx context.Context, events <-chan []subnet.Event) error {
	for {
		select {
		case <-ctx.Done():
			return nil
		case _, ok := <-events:
			if !ok {
				<-ctx.Done()
				return nil
			}
		}
	}
}
