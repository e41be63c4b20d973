// Package version holds weft's version, set at link time by the Makefile.
package version

// Version is the release, or "dev" for a build outside the Makefile.
var Version = "dev"
