//go:build !linux

package main

import (
	"context"
	"errors"
)

var errLinuxOnly = errors.New("needs Linux: the lab is made of network namespaces")

func runLab(context.Context, *env, []string) error  { return errLinuxOnly }
func runDemo(context.Context, *env, []string) error { return errLinuxOnly }
