package overlay

import (
	"log/slog"
	"strings"
	"sync"
	"testing"
)

// logCapture keeps every log line of a daemon run, and shows it in the test's log while
// the test runs.
type logCapture struct {
	t *testing.T

	mu   sync.Mutex
	buf  strings.Builder
	done bool
}

// captureLog returns a Debug-level logger whose lines c keeps.
func captureLog(t *testing.T) (*slog.Logger, *logCapture) {
	c := &logCapture{t: t}
	t.Cleanup(func() {
		c.mu.Lock()
		c.done = true
		c.mu.Unlock()
	})
	return slog.New(slog.NewTextHandler(c, &slog.HandlerOptions{Level: slog.LevelDebug})), c
}

func (c *logCapture) Write(p []byte) (int, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.buf.Write(p)
	if !c.done {
		c.t.Log(strings.TrimSuffix(string(p), "\n"))
	}
	return len(p), nil
}

// String returns every line so far.
func (c *logCapture) String() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.buf.String()
}

// lines returns the lines that contain every one of parts.
func (c *logCapture) lines(parts ...string) []string {
	var out []string
	for _, l := range strings.Split(c.String(), "\n") {
		all := l != ""
		for _, p := range parts {
			all = all && strings.Contains(l, p)
		}
		if all {
			out = append(out, l)
		}
	}
	return out
}
