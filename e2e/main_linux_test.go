package e2e

import (
	"context"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/weftnet/weft/internal/nstest"
)

// The binaries the lab tests run, built on first use into a directory TestMain removes.
var bins struct {
	once    sync.Once
	dir     string
	weftctl string
	// weftctlErr says why weftctl could not be built; tests fail on it.
	weftctlErr error
	weftd      string
	// weftdErr says why weftd could not be built; tests that need it skip.
	weftdErr error
}

func TestMain(m *testing.M) {
	flag.Parse()
	code := m.Run()
	if bins.dir != "" {
		os.RemoveAll(bins.dir)
	}
	os.Exit(code)
}

// buildBinaries builds weftctl and weftd once per test run.
func buildBinaries(t testing.TB) {
	t.Helper()
	bins.once.Do(func() {
		dir, err := os.MkdirTemp("", "weft-e2e-bin")
		if err != nil {
			bins.weftctlErr, bins.weftdErr = err, err
			return
		}
		bins.dir = dir
		bins.weftctl = filepath.Join(dir, "weftctl")
		bins.weftctlErr = goBuild(bins.weftctl, "github.com/weftnet/weft/cmd/weftctl")
		bins.weftd = filepath.Join(dir, "weftd")
		bins.weftdErr = goBuild(bins.weftd, "github.com/weftnet/weft/cmd/weftd")
	})
	if bins.weftctlErr != nil {
		t.Fatal(bins.weftctlErr)
	}
}

// goBuild builds pkg into out as the Makefile does: without cgo, a static binary.
func goBuild(out, pkg string) error {
	cmd := exec.Command("go", "build", "-o", out, pkg)
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if b, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("go build %s: %w\n%s", pkg, err, b)
	}
	return nil
}

// labOptions returns options for a test lab called wt-e-<suffix>, with its state in a
// temporary directory and its log in the test's.
func labOptions(t testing.TB, suffix string) Options {
	t.Helper()
	nstest.RequireRoot(t)
	buildBinaries(t)
	return Options{
		Name:         "wt-e-" + suffix,
		Weftctl:      bins.weftctl,
		Weftd:        bins.weftd,
		StateDir:     t.TempDir(),
		ReadyTimeout: 30 * time.Second,
		Log:          slog.New(slog.NewTextHandler(testWriter{t}, nil)),
	}
}

// upLab builds the lab o describes and removes it when the test ends. It skips the test
// when weftd is needed and does not build, or does not know the backend yet.
func upLab(t testing.TB, o Options) *Lab {
	t.Helper()
	nstest.RequireRoot(t)
	if len(o.Daemon) == 0 && bins.weftdErr != nil {
		t.Skipf("weftd does not build: %v", bins.weftdErr)
	}
	ctx := context.Background()

	// A crashed earlier run may have left namespaces of this name.
	if err := Down(ctx, o.StateDir, o.Name, nil); err != nil {
		t.Fatalf("removing leftovers of lab %s: %v", o.Name, err)
	}
	l, err := Up(ctx, o)
	if err != nil && strings.Contains(err.Error(), "unknown backend type") {
		t.Skipf("weftd has no %s backend yet", o.Backend)
	}
	if err != nil {
		t.Fatalf("Up: %v", err)
	}
	t.Cleanup(func() {
		if err := l.Down(context.Background()); err != nil {
			t.Errorf("Down: %v", err)
		}
	})
	return l
}

// testWriter sends log lines to the test's log.
type testWriter struct{ t testing.TB }

func (w testWriter) Write(b []byte) (int, error) {
	w.t.Helper()
	w.t.Log(strings.TrimRight(string(b), "\n"))
	return len(b), nil
}
