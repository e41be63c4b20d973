package main

import (
	"runtime"
	"runtime/debug"
	"testing"
)

func TestOneProc(t *testing.T) {
	before := runtime.GOMAXPROCS(0)
	t.Cleanup(func() { runtime.GOMAXPROCS(before) })
	runtime.GOMAXPROCS(2)

	oneProc(func(string) (string, bool) { return "2", true })
	if n := runtime.GOMAXPROCS(0); n != 2 {
		t.Errorf("with GOMAXPROCS in the environment, GOMAXPROCS became %d, want 2 kept", n)
	}
	oneProc(func(string) (string, bool) { return "", false })
	if n := runtime.GOMAXPROCS(0); n != 1 {
		t.Errorf("without GOMAXPROCS in the environment, GOMAXPROCS is %d, want 1", n)
	}
}

func TestSettleMemory(t *testing.T) {
	before := debug.SetGCPercent(100)
	t.Cleanup(func() { debug.SetGCPercent(before) })

	settleMemory(func(string) (string, bool) { return "200", true })()
	if got := debug.SetGCPercent(100); got != 100 {
		t.Errorf("with GOGC in the environment, the GC percent became %d, want 100 kept", got)
	}
	settleMemory(func(string) (string, bool) { return "", false })()
	if got := debug.SetGCPercent(100); got != syncedGCPercent {
		t.Errorf("without GOGC in the environment, the GC percent is %d, want %d", got,
			syncedGCPercent)
	}
}
