package main

import (
	"github.com/weftnet/weft/backend"
	"github.com/weftnet/weft/backend/alloc"
	"github.com/weftnet/weft/backend/hostgw"
	"github.com/weftnet/weft/backend/udp"
	"github.com/weftnet/weft/backend/vxlan"
)

// backends returns the data planes weftd can run, by the type name the network config
// gives them.
func backends() backend.Registry {
	return backend.Registry{
		alloc.TypeName:  alloc.New,
		hostgw.TypeName: hostgw.New,
		udp.TypeName:    udp.New,
		vxlan.TypeName:  vxlan.New,
	}
}
