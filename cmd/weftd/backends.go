package main

import (
	"github.com/weftnet/weft/backend"
	"github.com/weftnet/weft/backend/alloc"
	"github.com/weftnet/weft/backend/hostgw"
	"github.com/weftnet/weft/backend/udp"
	"github.com/weftnet/weft/backend/vxlan"
)

// backends returns the data planes weftd can run, by the type name the network config
// gives them; the udp backend's data path runs with udpOpts.
func backends(udpOpts udp.Options) backend.Registry {
	return backend.Registry{
		alloc.TypeName:  alloc.New,
		hostgw.TypeName: hostgw.New,
		udp.TypeName: func(p backend.Params) (backend.Backend, error) {
			return udp.NewWithOptions(p, udpOpts)
		},
		vxlan.TypeName: vxlan.New,
	}
}
