//go:build !linux

package main

import (
	"context"
	"errors"
)

func runCleanup(context.Context, *env, []string) error {
	return errors.New("needs Linux: weft's devices, routes and nftables tables are Linux's")
}
