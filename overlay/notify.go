package overlay

import (
	"context"
	"log/slog"
	"sync"
	"time"

	"github.com/coreos/go-systemd/v22/daemon"
)

// notifier speaks systemd's notify protocol on the socket NOTIFY_SOCKET names, which
// systemd sets for a Type=notify service; without it every call does nothing. Failures
// to send are logged once and never stop the daemon.
type notifier struct {
	log *slog.Logger
	// send delivers one message; daemon.SdNotify in the daemon.
	send func(state string) (bool, error)

	mu     sync.Mutex
	status string
	ready  bool
	warned bool
}

func newNotifier(log *slog.Logger) *notifier {
	return &notifier{
		log:  log,
		send: func(state string) (bool, error) { return daemon.SdNotify(false, state) },
	}
}

// notifyLocked sends state and logs the first failure.
func (n *notifier) notifyLocked(state string) {
	sent, err := n.send(state)
	switch {
	case err != nil && !n.warned:
		n.log.Warn("telling systemd the daemon's state", "err", err)
		n.warned = true
	case sent:
		n.log.Debug("told systemd", "state", state)
	}
}

// setStatus sends STATUS=s when s differs from the last status sent.
func (n *notifier) setStatus(s string) {
	n.mu.Lock()
	defer n.mu.Unlock()
	if s == n.status {
		return
	}
	n.status = s
	n.notifyLocked("STATUS=" + s)
}

// setReady sends READY=1 with status s the first time; later calls only update the
// status.
func (n *notifier) setReady(s string) {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.ready {
		if s != n.status {
			n.status = s
			n.notifyLocked("STATUS=" + s)
		}
		return
	}
	n.ready, n.status = true, s
	n.notifyLocked(daemon.SdNotifyReady + "\nSTATUS=" + s)
}

// stopping tells systemd that the daemon is shutting down.
func (n *notifier) stopping() {
	n.mu.Lock()
	defer n.mu.Unlock()
	n.notifyLocked(daemon.SdNotifyStopping)
}

// watchdogInterval returns how often to send WATCHDOG=1: half the WATCHDOG_USEC that
// systemd sets for a service with WatchdogSec, or 0 when no watchdog is asked for (or
// it is meant for another process, per WATCHDOG_PID).
func watchdogInterval() time.Duration {
	d, err := daemon.SdWatchdogEnabled(false)
	if err != nil || d <= 0 {
		return 0
	}
	return d / 2
}

// runWatchdog sends WATCHDOG=1 every interval until ctx is done, as long as alive says
// the daemon makes progress. When alive stops saying so, systemd's watchdog fires and
// restarts the service.
func (n *notifier) runWatchdog(ctx context.Context, interval time.Duration, alive func() bool) {
	t := time.NewTicker(interval)
	defer t.Stop()
	silent := false
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		if !alive() {
			if !silent {
				n.log.Error("the daemon's main loop is stuck; no longer feeding systemd's " +
					"watchdog")
				silent = true
			}
			continue
		}
		silent = false
		n.mu.Lock()
		n.notifyLocked(daemon.SdNotifyWatchdog)
		n.mu.Unlock()
	}
}
