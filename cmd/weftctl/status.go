package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/weftnet/weft/overlay"
)

// maxStatusBody bounds what weftctl reads from a daemon's /status.
const maxStatusBody = 1 << 20

func runStatus(ctx context.Context, e *env, args []string) error {
	fs := newFlagSet(e, "status", "weftctl status [--addr HOST:PORT] [--json]")
	addr := fs.String("addr", "", "`address` of weftd's health port (default: from "+
		"FLANNELD_HEALTHZ_IP and FLANNELD_HEALTHZ_PORT, else 127.0.0.1:8081)")
	asJSON := fs.Bool("json", false, "print the daemon's answer as JSON")
	timeout := fs.Duration("timeout", 5*time.Second, "how long to wait for the daemon")
	// weftd's own names, so that FLANNELD_HEALTHZ_IP and FLANNELD_HEALTHZ_PORT from its
	// environment file apply.
	healthIP := fs.String("healthz-ip", "127.0.0.1", "weftd's -healthz-ip, when -addr "+
		"is not given")
	healthPort := fs.Int("healthz-port", 8081, "weftd's -healthz-port, when -addr is not "+
		"given")
	pos, err := parseArgs(e, fs, args)
	if err != nil {
		return err
	}
	if err := noArgs(pos); err != nil {
		return err
	}
	if *addr == "" {
		ip := *healthIP
		if ip == "" || ip == "0.0.0.0" || ip == "::" {
			ip = "127.0.0.1"
		}
		*addr = net.JoinHostPort(ip, strconv.Itoa(*healthPort))
	}

	body, err := fetchStatus(ctx, *addr, *timeout)
	if err != nil {
		return err
	}
	if *asJSON {
		_, err := e.stdout.Write(body)
		return err
	}
	var s overlay.Status
	if err := json.Unmarshal(body, &s); err != nil {
		return fmt.Errorf("reading the status from %s: %w", *addr, err)
	}
	return writeStatus(e.stdout, &s, time.Now())
}

// fetchStatus returns the body of GET /status from the daemon at addr.
func fetchStatus(ctx context.Context, addr string, timeout time.Duration) ([]byte, error) {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	url := "http://" + addr + "/status"
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return nil, fmt.Errorf("status address %q: %w", addr, err)
	}
	resp, err := http.DefaultClient.Do(req)
	if errors.Is(err, syscall.ECONNREFUSED) {
		return nil, fmt.Errorf("no weftd answers on %s: is it running, with -healthz-port "+
			"set? (%w)", addr, err)
	}
	if err != nil {
		return nil, fmt.Errorf("asking weftd on %s: %w", addr, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxStatusBody))
	if err != nil {
		return nil, fmt.Errorf("reading %s: %w", url, err)
	}
	if resp.StatusCode == http.StatusNotFound {
		return nil, fmt.Errorf("%s answers 404 for /status: a flanneld, or a weftd too old "+
			"to report its status", addr)
	}
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("%s: %s", url, resp.Status)
	}
	return body, nil
}

// writeStatus prints a daemon's status for people.
func writeStatus(w io.Writer, s *overlay.Status, now time.Time) error {
	var b strings.Builder
	row := func(k, format string, args ...any) {
		fmt.Fprintf(&b, "%-16s "+format+"\n", append([]any{k + ":"}, args...)...)
	}
	since := func(t time.Time) string {
		if t.IsZero() {
			return "never"
		}
		return fmt.Sprintf("%s (%s ago)", t.UTC().Format(time.RFC3339),
			now.Sub(t).Round(time.Second))
	}

	row("weftd", "%s, %s", dash(s.Version), dash(s.State))
	ready := "no: subnet.env does not describe the lease yet"
	if s.Ready {
		ready = "yes"
	}
	row("ready", "%s", ready)
	if !s.Started.IsZero() {
		row("started", "%s", since(s.Started))
	}
	if s.Network.IsValid() || s.Backend != "" {
		net := orDash(s.Network)
		if s.IPv6Network.IsValid() {
			net += ", " + s.IPv6Network.String()
		}
		row("network", "%s, backend %s", net, dash(s.Backend))
	}
	if l := s.Lease; l != nil {
		lease := l.Subnet.String()
		if l.IPv6Subnet.IsValid() {
			lease += ", " + l.IPv6Subnet.String()
		}
		row("lease", "%s, public IP %s", lease, l.PublicIP)
		switch {
		case l.Reserved:
			row("expires", "never: a reservation")
		case !l.Expiration.IsZero():
			row("expires", "%s (in %s)", l.Expiration.UTC().Format(time.RFC3339),
				l.Expiration.Sub(now).Round(time.Second))
		}
		if mac := vtepMAC(l.BackendData); mac != "" {
			row("vtep mac", "%s", mac)
		}
	} else {
		row("lease", "none yet")
	}
	row("peers", "%d programmed, synced %s", s.Peers, since(s.PeersSynced))
	row("last change", "%s", since(s.LastPeerChange))
	row("renewals", "%d, %d failed; lease lost %d times", s.LeaseRenewals,
		s.LeaseRenewalFailures, s.LeaseLosses)
	row("restarts", "%d etcd watch, %d data plane", s.WatchRestarts, s.DataPlaneRestarts)
	row("kernel errors", "%d", s.NetlinkErrors)
	if len(s.RecentErrors) > 0 {
		b.WriteString("recent errors:\n")
		for _, r := range s.RecentErrors {
			line := fmt.Sprintf("  %s %-5s %s: %s", r.Time.UTC().Format(time.RFC3339),
				r.Level, dash(r.Subsystem), r.Message)
			if r.Err != "" {
				line += ": " + r.Err
			}
			b.WriteString(strings.ReplaceAll(line, "\n", " ") + "\n")
		}
	}
	_, err := io.WriteString(w, b.String())
	return err
}
