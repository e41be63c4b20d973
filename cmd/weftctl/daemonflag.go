package main

import (
	"fmt"
	"regexp"
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
