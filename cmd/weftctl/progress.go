package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"sync"
	"time"
)

// progressHandler prints log records as short progress lines for a person watching:
// "  1.24s  host ready host=h1 subnet=198.19.7.0/24". It drops the lab attribute, which
// every line of one command would repeat.
type progressHandler struct {
	out   *lockedWriter
	start time.Time
	level slog.Level
	attrs []slog.Attr
	group string
}

type lockedWriter struct {
	mu sync.Mutex
	w  io.Writer
}

func newProgressLogger(w io.Writer, verbose bool) *slog.Logger {
	level := slog.LevelInfo
	if verbose {
		level = slog.LevelDebug
	}
	return slog.New(&progressHandler{out: &lockedWriter{w: w}, start: time.Now(), level: level})
}

// Enabled reports whether records of level l are printed.
func (h *progressHandler) Enabled(_ context.Context, l slog.Level) bool { return l >= h.level }

// Handle prints r as one line: seconds since start, message, attributes.
func (h *progressHandler) Handle(_ context.Context, r slog.Record) error {
	var b strings.Builder
	fmt.Fprintf(&b, "%7.2fs  ", time.Since(h.start).Seconds())
	if r.Level >= slog.LevelWarn {
		b.WriteString(r.Level.String() + ": ")
	}
	b.WriteString(r.Message)
	write := func(a slog.Attr) {
		if a.Key == "lab" || a.Equal(slog.Attr{}) {
			return
		}
		v := a.Value.Resolve().String()
		if v == "" || strings.ContainsAny(v, " \t\n") {
			v = fmt.Sprintf("%q", v)
		}
		fmt.Fprintf(&b, " %s%s=%s", h.group, a.Key, v)
	}
	for _, a := range h.attrs {
		write(a)
	}
	r.Attrs(func(a slog.Attr) bool {
		write(a)
		return true
	})
	b.WriteString("\n")

	h.out.mu.Lock()
	defer h.out.mu.Unlock()
	_, err := io.WriteString(h.out.w, b.String())
	return err
}

// WithAttrs returns a handler that adds attrs to every line.
func (h *progressHandler) WithAttrs(attrs []slog.Attr) slog.Handler {
	c := *h
	c.attrs = append(append([]slog.Attr(nil), h.attrs...), attrs...)
	return &c
}

// WithGroup returns a handler that prefixes later attribute keys with name.
func (h *progressHandler) WithGroup(name string) slog.Handler {
	c := *h
	c.group = h.group + name + "."
	return &c
}
