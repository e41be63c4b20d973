// Package nstest gives tests throwaway network namespaces, so that code which programs
// devices, routes and entries runs against the real kernel without touching the
// namespace the test started in.
package nstest

import (
	"os"
	"runtime"
	"testing"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
)

// RequireRoot skips the test unless it runs as root, which network namespaces need, and
// in -short mode, which make's unit pass uses.
func RequireRoot(t testing.TB) {
	t.Helper()
	if testing.Short() {
		t.Skip("-short: netns tests run in make test-root")
	}
	if os.Geteuid() != 0 {
		t.Skip("needs root: it creates network namespaces")
	}
}

// New returns a fresh, anonymous network namespace that lives until the test ends. The
// calling goroutine's namespace is not changed.
func New(t testing.TB) netns.NsHandle {
	t.Helper()
	RequireRoot(t)

	result := make(chan netns.NsHandle, 1)
	errc := make(chan error, 1)
	go func() {
		// This thread enters the new namespace and is never unlocked, so it exits with
		// the goroutine instead of returning to the scheduler in the wrong namespace.
		runtime.LockOSThread()
		ns, err := netns.New()
		if err != nil {
			errc <- err
			return
		}
		result <- ns
	}()
	select {
	case err := <-errc:
		t.Fatalf("creating network namespace: %v", err)
	case ns := <-result:
		t.Cleanup(func() { ns.Close() })
		h, err := netlink.NewHandleAt(ns)
		if err != nil {
			t.Fatalf("opening netlink in namespace: %v", err)
		}
		defer h.Close()
		lo, err := h.LinkByName("lo")
		if err == nil {
			err = h.LinkSetUp(lo)
		}
		if err != nil {
			t.Fatalf("setting lo up in namespace: %v", err)
		}
		return ns
	}
	panic("unreachable")
}

// Handle returns a netlink handle that works inside ns, closed when the test ends.
func Handle(t testing.TB, ns netns.NsHandle) *netlink.Handle {
	t.Helper()
	h, err := netlink.NewHandleAt(ns)
	if err != nil {
		t.Fatalf("opening netlink in namespace: %v", err)
	}
	t.Cleanup(h.Close)
	return h
}

// Do runs fn on an OS thread that has entered ns, and waits for it. Sockets and devices
// that fn opens belong to ns. The thread is discarded afterwards.
func Do(t testing.TB, ns netns.NsHandle, fn func()) {
	t.Helper()
	done := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		if err := netns.Set(ns); err != nil {
			done <- err
			return
		}
		fn()
		done <- nil
	}()
	if err := <-done; err != nil {
		t.Fatalf("entering network namespace: %v", err)
	}
}
