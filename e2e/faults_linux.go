package e2e

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"time"

	"github.com/weftnet/weft/internal/netlab"
)

// The faults a test can inflict on a running lab: its etcd going away and coming back,
// and a host cut off from the underlay.

// StopEtcd stops the lab's etcd and keeps its data, as when the datastore fails. The
// daemons keep running.
func (l *Lab) StopEtcd(ctx context.Context) error {
	cmd := l.cmds[0]
	delete(l.cmds, 0)
	if err := l.state.Etcd.stop(ctx, cmd, 10*time.Second); err != nil {
		return fmt.Errorf("stopping etcd of lab %s: %w", l.state.Name, err)
	}
	l.log.Info("etcd stopped", "pid", l.state.Etcd.PID)
	return nil
}

// StartEtcd starts the lab's etcd again on the data it had, and returns once it
// answers. It is an error if etcd still runs.
func (l *Lab) StartEtcd(ctx context.Context) error {
	if l.state.Etcd.alive() {
		return fmt.Errorf("etcd of lab %s still runs as pid %d", l.state.Name,
			l.state.Etcd.PID)
	}
	return l.startEtcd(ctx)
}

// SetHostLink takes host i's cable out of the underlay bridge (up false) or plugs it
// back in: the wan side of its veth goes down or up, so that nothing reaches the host
// or leaves it, etcd's traffic included, while the host's own state stays as it is.
//
// Equivalent to: ip -n L-wan link set hI down (or up)
func (l *Lab) SetHostLink(i int, up bool) error {
	h := l.host(i)
	if h == nil {
		return fmt.Errorf("lab %s has no host h%d", l.state.Name, i)
	}
	wan, err := netlab.NewHandle(WanNS(l.state.Name))
	if err != nil {
		return err
	}
	defer wan.Close()
	name := h.Name()
	link, err := wan.LinkByName(name)
	if err != nil {
		return fmt.Errorf("finding %s's underlay link %s: %w", name, name, err)
	}
	if up {
		err = wan.LinkSetUp(link)
	} else {
		err = wan.LinkSetDown(link)
	}
	if err != nil {
		return fmt.Errorf("setting %s's underlay link up=%v: %w", name, up, err)
	}
	return nil
}

// HealthGet fetches path from host i's health port (/metrics, /status) and returns the
// body of a 200 answer.
func (l *Lab) HealthGet(ctx context.Context, i int, path string) ([]byte, error) {
	h := l.host(i)
	if h == nil {
		return nil, fmt.Errorf("lab %s has no host h%d", l.state.Name, i)
	}
	if h.HealthPort <= 0 {
		return nil, fmt.Errorf("the daemon of %s serves no health port", h.Name())
	}
	url := fmt.Sprintf("http://127.0.0.1:%d%s", h.HealthPort, path)
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return nil, err
	}
	resp, err := h.httpClient().Do(req)
	if err != nil {
		return nil, fmt.Errorf("%s of %s: %w", path, h.Name(), err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return nil, fmt.Errorf("reading %s of %s: %w", path, h.Name(), err)
	}
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("%s of %s: %s", path, h.Name(), resp.Status)
	}
	return body, nil
}
