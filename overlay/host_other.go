//go:build !linux

package overlay

import (
	"context"
	"errors"
	"log/slog"

	"github.com/vishvananda/netns"

	"github.com/weftnet/weft/backend"
	"github.com/weftnet/weft/subnet"
)

var errNotLinux = errors.New("weftd needs Linux: it programs the kernel through netlink")

func currentNetNS() (netns.NsHandle, error) { return netns.None(), errNotLinux }

func chooseExternal(ns netns.NsHandle, spec InterfaceSpec, log *slog.Logger) (
	backend.ExternalInterface, error) {
	return backend.ExternalInterface{}, errNotLinux
}

type hostSetup struct {
	net   *subnet.Config
	lease *subnet.Lease
	mtu   int
	prev  subnet.Env
}

type hostState struct{}

func (d *daemonState) setupHost(ctx context.Context, s hostSetup) (*hostState, error) {
	return nil, errNotLinux
}

func (hs *hostState) stop() {}
