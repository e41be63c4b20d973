package main

import (
	"runtime"
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
