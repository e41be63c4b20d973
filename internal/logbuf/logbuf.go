// Package logbuf is a log sink that tests read while other goroutines write to it: the
// destination of a slog handler, or of a child process's output, whose lines a test
// waits for and counts.
package logbuf

import (
	"bytes"
	"strings"
	"sync"
)

// Buffer collects what is written to it. Its methods may be called concurrently; the
// zero value is empty and ready.
type Buffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

// Write appends p; it never fails.
func (b *Buffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.Write(p)
}

// String returns everything written so far.
func (b *Buffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.String()
}

// Lines returns the non-empty lines written so far that contain every one of parts, in
// order; with no parts, every non-empty line.
func (b *Buffer) Lines(parts ...string) []string {
	var out []string
	for _, line := range strings.Split(b.String(), "\n") {
		if line != "" && containsAll(line, parts) {
			out = append(out, line)
		}
	}
	return out
}

// Count returns how many lines Lines(parts...) would return.
func (b *Buffer) Count(parts ...string) int { return len(b.Lines(parts...)) }

func containsAll(s string, parts []string) bool {
	for _, p := range parts {
		if !strings.Contains(s, p) {
			return false
		}
	}
	return true
}
