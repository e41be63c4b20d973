package overlay

import (
	"log/slog"
	"strings"
	"sync"
	"testing"

	"github.com/weftnet/weft/internal/logbuf"
)

// logCapture keeps every log line of a daemon run, and shows it in the test's log while
// the test runs.
type logCapture struct {
	t   *testing.T
	buf logbuf.Buffer

	mu   sync.Mutex
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
	c.buf.Write(p)
	c.mu.Lock()
	defer c.mu.Unlock()
	if !c.done {
		c.t.Log(strings.TrimSuffix(string(p), "\n"))
	}
	return len(p), nil
}

// String returns every line so far.
func (c *logCapture) String() string { return c.buf.String() }

// lines returns the lines that contain every one of parts.
func (c *logCapture) lines(parts ...string) []string { return c.buf.Lines(parts...) }
