package main

import (
	"fmt"
	"regexp"
	"slices"
	"strconv"
	"strings"
)

// daemonFlags collects --daemon values: "CMD" for every host, "hI=CMD" for host I. A CMD
// is split at spaces; there is no quoting.
type daemonFlags struct {
	all   []string
	hosts map[int][]string
}

var hostDaemon = regexp.MustCompile(`^h([1-9][0-9]{0,2})=(.*)$`)

// String is empty: the flag has no default to show.
func (d *daemonFlags) String() string { return "" }

// Set records one --daemon value; a second value for the same hosts is an error.
func (d *daemonFlags) Set(v string) error {
	host, argv, err := parseDaemon(v)
	if err != nil {
		return err
	}
	if host == 0 {
		if d.all != nil {
			return fmt.Errorf("a daemon for every host is already given: %q",
				strings.Join(d.all, " "))
		}
		d.all = argv
		return nil
	}
	if d.hosts == nil {
		d.hosts = map[int][]string{}
	}
	if _, dup := d.hosts[host]; dup {
		return fmt.Errorf("the daemon of h%d is given twice", host)
	}
	d.hosts[host] = argv
	return nil
}

// parseDaemon splits a --daemon value into its host (0 for every host) and command line.
func parseDaemon(v string) (host int, argv []string, err error) {
	if m := hostDaemon.FindStringSubmatch(v); m != nil {
		host, _ = strconv.Atoi(m[1])
		v = m[2]
	}
	argv = strings.Fields(v)
	if len(argv) == 0 {
		return 0, nil, fmt.Errorf("daemon %q: empty command", v)
	}
	return host, argv, nil
}

// argFlags collects --daemon-flags values: "ARGS" for every host, "hI=ARGS" for host I,
// split at spaces. Values add up, so that each may carry one flag.
type argFlags struct {
	all   []string
	hosts map[int][]string
}

// String is empty: the flag has no default to show.
func (a *argFlags) String() string { return "" }

// Set appends one --daemon-flags value to the hosts it is for.
func (a *argFlags) Set(v string) error {
	host, argv, err := parseDaemon(v)
	if err != nil {
		return fmt.Errorf("daemon flags %q: nothing to add", v)
	}
	if host == 0 {
		a.all = append(a.all, argv...)
		return nil
	}
	if a.hosts == nil {
		a.hosts = map[int][]string{}
	}
	a.hosts[host] = append(a.hosts[host], argv...)
	return nil
}

// forHosts returns the flags of hosts 1 to n, those for every host first, or an error
// naming a host the lab does not have.
func (a *argFlags) forHosts(n int) (map[int][]string, error) {
	for h := range a.hosts {
		if h > n {
			return nil, fmt.Errorf("daemon flags for h%d, but the lab has %d hosts", h, n)
		}
	}
	if a.all == nil && a.hosts == nil {
		return nil, nil
	}
	out := map[int][]string{}
	for h := 1; h <= n; h++ {
		if flags := append(slices.Clone(a.all), a.hosts[h]...); len(flags) > 0 {
			out[h] = flags
		}
	}
	return out, nil
}
