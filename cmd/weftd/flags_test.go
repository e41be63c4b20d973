package main

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net/netip"
	"os"
	"slices"
	"strings"
	"testing"
	"time"
)

// env returns a lookup function over a fixed environment.
func env(kv ...string) func(string) (string, bool) {
	m := map[string]string{}
	for i := 0; i+1 < len(kv); i += 2 {
		m[kv[i]] = kv[i+1]
	}
	return func(k string) (string, bool) {
		v, ok := m[k]
		return v, ok
	}
}

func mustParse(t *testing.T, args []string, lookup func(string) (string, bool)) *options {
	t.Helper()
	var out bytes.Buffer
	o, err := parseOptions(args, lookup, &out)
	if err != nil {
		t.Fatalf("parseOptions(%q): %v\n%s", args, err, out.String())
	}
	return o
}

// TestFlagDefaults checks that weftd has all of flanneld's flags with its defaults, and
// beyond them only weft's own.
func TestFlagDefaults(t *testing.T) {
	want := map[string]string{
		"etcd-endpoints":               "http://127.0.0.1:4001,http://127.0.0.1:2379",
		"etcd-prefix":                  "/coreos.com/network",
		"etcd-keyfile":                 "",
		"etcd-certfile":                "",
		"etcd-cafile":                  "",
		"etcd-username":                "",
		"etcd-password":                "",
		"iface":                        "",
		"iface-regex":                  "",
		"iface-can-reach":              "",
		"subnet-file":                  "/run/flannel/subnet.env",
		"public-ip":                    "",
		"public-ipv6":                  "",
		"subnet-lease-renew-margin":    "60",
		"ip-masq":                      "false",
		"ip-masq-fully-random-disable": "false",
		"kube-subnet-mgr":              "false",
		"kube-api-url":                 "",
		"kube-annotation-prefix":       "flannel.alpha.coreos.com",
		"kubeconfig-file":              "",
		"net-config-path":              "/etc/kube-flannel/net-conf.json",
		"set-node-network-unavailable": "true",
		"version":                      "false",
		"healthz-ip":                   "0.0.0.0",
		"healthz-port":                 "0",
		"iptables-resync":              "5",
		"iptables-forward-rules":       "true",
		"ip-blackhole-route":           "false",
		"v":                            "0",
		"vmodule":                      "",
		"log_backtrace_at":             "",
	}
	weftOnly := map[string]string{
		"bridge":          "",
		"hyper-config":    "",
		"docker-opts":     "",
		"docker-opts-key": "DOCKER_OPTS",
		"cni-conf":        "",
		"udp-datapath":    "offload",
	}
	o := mustParse(t, nil, env())
	got := map[string]string{}
	o.fs.VisitAll(func(f *flag.Flag) { got[f.Name] = f.Value.String() })
	for name, def := range want {
		v, ok := got[name]
		if !ok {
			t.Errorf("flanneld's flag -%s missing", name)
			continue
		}
		if v != def {
			t.Errorf("-%s defaults to %q, want %q", name, v, def)
		}
	}
	for name, v := range got {
		_, flanneld := want[name]
		def, weft := weftOnly[name]
		switch {
		case weft && v != def:
			t.Errorf("-%s defaults to %q, want %q", name, v, def)
		case !flanneld && !weft:
			t.Errorf("flag -%s is neither flanneld's nor known to this test", name)
		}
	}

	c, err := o.config()
	if err != nil {
		t.Fatalf("config of the defaults: %v", err)
	}
	if c.RenewMargin != time.Hour || c.IPTablesResync != 5*time.Second ||
		!c.IPTablesForwardRules || c.HealthAddr != "" ||
		!slices.Equal(c.Etcd.Endpoints,
			[]string{"http://127.0.0.1:4001", "http://127.0.0.1:2379"}) {
		t.Errorf("config of the defaults = %+v", c)
	}
}

func TestParseForms(t *testing.T) {
	tests := []struct {
		name  string
		args  []string
		check func(*options) bool
	}{
		{name: "single dash", args: []string{"-etcd-prefix", "/a"},
			check: func(o *options) bool { return o.etcdPrefix == "/a" }},
		{name: "double dash", args: []string{"--etcd-prefix", "/b"},
			check: func(o *options) bool { return o.etcdPrefix == "/b" }},
		{name: "equals", args: []string{"--etcd-prefix=/c"},
			check: func(o *options) bool { return o.etcdPrefix == "/c" }},
		{name: "bool alone", args: []string{"-ip-masq"},
			check: func(o *options) bool { return o.ipMasq }},
		{name: "bool false", args: []string{"--iptables-forward-rules=false"},
			check: func(o *options) bool { return !o.iptablesForwardRules }},
		{name: "repeatable in order",
			args: []string{"-iface", "eth1", "--iface=198.18.0.1", "-iface", "eth0"},
			check: func(o *options) bool {
				return slices.Equal(o.iface, []string{"eth1", "198.18.0.1", "eth0"})
			}},
		{name: "repeatable regex", args: []string{"-iface-regex", "^en", "-iface-regex", "^eth"},
			check: func(o *options) bool {
				return slices.Equal(o.ifaceRegex, []string{"^en", "^eth"})
			}},
		{name: "verbosity", args: []string{"-v", "3"},
			check: func(o *options) bool { return o.verbosity == 3 }},
		{name: "klog flags accepted",
			args: []string{"-vmodule=foo=2", "-log_backtrace_at", "main.go:1"},
			check: func(o *options) bool {
				return o.vmodule == "foo=2" && o.logBacktraceAt == "main.go:1"
			}},
		{name: "stops at the first argument", args: []string{"-ip-masq", "extra", "-v", "5"},
			check: func(o *options) bool {
				return o.ipMasq && o.verbosity == 0 && len(o.notes) == 1
			}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			o := mustParse(t, tt.args, env())
			if !tt.check(o) {
				t.Errorf("parseOptions(%q) gave the wrong options", tt.args)
			}
		})
	}
}

func TestUsageExitsZero(t *testing.T) {
	tests := []struct {
		name    string
		args    []string
		wantOut []string
	}{
		{name: "-h", args: []string{"-h"}, wantOut: []string{"Usage: weftd", "-etcd-endpoints"}},
		{name: "--help", args: []string{"--help"}, wantOut: []string{"Usage: weftd", "FLANNELD_"}},
		{name: "unknown flag", args: []string{"-no-such-flag"},
			wantOut: []string{"flag provided but not defined: -no-such-flag", "Usage: weftd"}},
		{name: "bad value", args: []string{"-healthz-port", "eighty"},
			wantOut: []string{"invalid value \"eighty\" for flag -healthz-port", "Usage: weftd"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var out bytes.Buffer
			_, err := parseOptions(tt.args, env(), &out)
			if !errors.Is(err, errUsage) {
				t.Fatalf("err = %v, want errUsage", err)
			}
			if code := exitCode(err); code != 0 {
				t.Errorf("exit status %d, want 0 as flanneld", code)
			}
			for _, w := range tt.wantOut {
				if !strings.Contains(out.String(), w) {
					t.Errorf("output lacks %q:\n%s", w, out.String())
				}
			}
		})
	}
}

func TestEnvironment(t *testing.T) {
	tests := []struct {
		name      string
		args      []string
		env       []string
		check     func(*options) bool
		wantNotes []string
	}{{
		name:  "applies to flags not on the command line",
		env:   []string{"FLANNELD_ETCD_PREFIX", "/env", "FLANNELD_IP_MASQ", "true"},
		check: func(o *options) bool { return o.etcdPrefix == "/env" && o.ipMasq },
	}, {
		name:  "command line wins",
		args:  []string{"-etcd-prefix", "/cli"},
		env:   []string{"FLANNELD_ETCD_PREFIX", "/env"},
		check: func(o *options) bool { return o.etcdPrefix == "/cli" },
	}, {
		name: "command line wins even when it repeats the default",
		args: []string{"-subnet-lease-renew-margin", "60"},
		env:  []string{"FLANNELD_SUBNET_LEASE_RENEW_MARGIN", "30"},
		check: func(o *options) bool {
			return o.subnetLeaseRenewMargin == 60
		},
	}, {
		name: "empty value ignored",
		env:  []string{"FLANNELD_ETCD_PREFIX", "", "FLANNELD_IPTABLES_FORWARD_RULES", ""},
		check: func(o *options) bool {
			return o.etcdPrefix == "/coreos.com/network" && o.iptablesForwardRules
		},
	}, {
		name: "invalid value noted and skipped",
		env: []string{"FLANNELD_HEALTHZ_PORT", "eighty", "FLANNELD_IP_MASQ", "yes",
			"FLANNELD_ETCD_PREFIX", "/still"},
		check: func(o *options) bool {
			return o.healthzPort == 0 && !o.ipMasq && o.etcdPrefix == "/still"
		},
		wantNotes: []string{"FLANNELD_HEALTHZ_PORT", "FLANNELD_IP_MASQ"},
	}, {
		name:  "repeatable flag takes one value, commas and all",
		env:   []string{"FLANNELD_IFACE", "eth0,eth1"},
		check: func(o *options) bool { return slices.Equal(o.iface, []string{"eth0,eth1"}) },
	}, {
		name:  "repeatable flag on the command line ignores the environment",
		args:  []string{"-iface", "eth2"},
		env:   []string{"FLANNELD_IFACE", "eth0"},
		check: func(o *options) bool { return slices.Equal(o.iface, []string{"eth2"}) },
	}, {
		name:  "version has no effect",
		env:   []string{"FLANNELD_VERSION", "true"},
		check: func(o *options) bool { return !o.version },
	}, {
		name:  "klog flags",
		env:   []string{"FLANNELD_V", "2", "FLANNELD_LOG_BACKTRACE_AT", "x.go:3"},
		check: func(o *options) bool { return o.verbosity == 2 && o.logBacktraceAt == "x.go:3" },
	}, {
		name: "kube flags",
		env:  []string{"FLANNELD_KUBE_SUBNET_MGR", "true", "FLANNELD_NET_CONFIG_PATH", "/x"},
		check: func(o *options) bool {
			return o.kubeSubnetMgr && o.netConfigPath == "/x"
		},
	}, {
		name:  "password",
		env:   []string{"FLANNELD_ETCD_PASSWORD", "hunter2"},
		check: func(o *options) bool { return o.etcdPassword == "hunter2" },
	}}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			o := mustParse(t, tt.args, env(tt.env...))
			if !tt.check(o) {
				t.Errorf("options from %q and %q are wrong", tt.args, tt.env)
			}
			var warned []string
			for _, n := range o.notes {
				if n.level == slog.LevelWarn {
					warned = append(warned, fmt.Sprint(n.attrs...))
				}
			}
			if len(warned) != len(tt.wantNotes) {
				t.Errorf("warnings %q, want one each for %q", warned, tt.wantNotes)
			}
			for _, w := range tt.wantNotes {
				if !strings.Contains(strings.Join(warned, "\n"), w) {
					t.Errorf("no warning names %s: %q", w, warned)
				}
			}
		})
	}
}

func TestVersionSkipsEnvironment(t *testing.T) {
	o := mustParse(t, []string{"-version"}, env("FLANNELD_ETCD_PREFIX", "/env"))
	if !o.version || o.etcdPrefix != "/coreos.com/network" {
		t.Errorf("-version: version=%v prefix=%q", o.version, o.etcdPrefix)
	}
}

func TestConfig(t *testing.T) {
	tests := []struct {
		name    string
		args    []string
		wantErr string
	}{
		{name: "kube subnet manager", args: []string{"-kube-subnet-mgr"},
			wantErr: "-kube-subnet-mgr: weftd does not implement the Kubernetes subnet manager"},
		{name: "kube options without it are fine", args: []string{"-kube-api-url", "https://k8s",
			"-set-node-network-unavailable=false"}},
		{name: "renew margin 0", args: []string{"-subnet-lease-renew-margin", "0"},
			wantErr: "-subnet-lease-renew-margin 0: want 1 to 1439 minutes"},
		{name: "renew margin 1440", args: []string{"-subnet-lease-renew-margin", "1440"},
			wantErr: "-subnet-lease-renew-margin 1440"},
		{name: "renew margin negative", args: []string{"-subnet-lease-renew-margin=-5"},
			wantErr: "-subnet-lease-renew-margin -5"},
		{name: "renew margin 1", args: []string{"-subnet-lease-renew-margin", "1"}},
		{name: "renew margin 1439", args: []string{"-subnet-lease-renew-margin", "1439"}},
		{name: "public ip not an address", args: []string{"-public-ip", "example.com"},
			wantErr: `-public-ip "example.com" is not an IP address`},
		{name: "public ip IPv6", args: []string{"-public-ip", "2001:db8::1"},
			wantErr: `-public-ip "2001:db8::1" is not an IPv4 address`},
		{name: "public ipv6 IPv4", args: []string{"-public-ipv6", "198.18.0.1"},
			wantErr: `-public-ipv6 "198.18.0.1" is not an IPv6 address`},
		{name: "can-reach", args: []string{"-iface-can-reach", "198.18.0.300"},
			wantErr: `-iface-can-reach "198.18.0.300" is not an IP address`},
		{name: "regex", args: []string{"-iface-regex", "^en", "-iface-regex", "(eth"},
			wantErr: `-iface-regex "(eth"`},
		{name: "resync", args: []string{"-iptables-resync", "0"}, wantErr: "-iptables-resync 0"},
		{name: "healthz port",
			args:    []string{"-healthz-port", "70000"},
			wantErr: "-healthz-port 70000"},
		{name: "udp data path", args: []string{"-udp-datapath", "one-packet"}},
		{name: "udp data path unknown", args: []string{"-udp-datapath", "turbo"},
			wantErr: `-udp-datapath: udp data path "turbo": want one of offload,`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			o := mustParse(t, tt.args, env())
			_, err := o.config()
			if tt.wantErr == "" {
				if err != nil {
					t.Errorf("config: %v", err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Errorf("config error = %v, want one containing %q", err, tt.wantErr)
			}
			if code := exitCode(err); code != 1 {
				t.Errorf("exit status %d, want 1", code)
			}
		})
	}
}

func TestConfigValues(t *testing.T) {
	o := mustParse(t, []string{
		"-etcd-endpoints", "http://198.18.0.254:2379,https://198.18.0.253:2379",
		"-etcd-prefix", "/weft/net", "-etcd-username", "root", "-etcd-password", "pw",
		"-iface", "eth0", "-iface-regex", "^198\\.18\\.", "-iface-can-reach", "198.18.0.254",
		"-public-ip", "203.0.113.9", "-public-ipv6", "2001:db8::9",
		"-subnet-file", "/tmp/x.env", "-subnet-lease-renew-margin", "30",
		"-ip-masq", "-iptables-resync", "7", "-healthz-ip", "127.0.0.1", "-healthz-port", "8081",
		"-bridge", "cni0", "-cni-conf", "/tmp/c", "-docker-opts", "/tmp/d",
		"-docker-opts-key", "OPTS", "-hyper-config", "/tmp/h",
	}, env())
	c, err := o.config()
	if err != nil {
		t.Fatal(err)
	}
	switch {
	case !slices.Equal(c.Etcd.Endpoints, []string{"http://198.18.0.254:2379",
		"https://198.18.0.253:2379"}):
		t.Errorf("endpoints %q", c.Etcd.Endpoints)
	case c.Etcd.Prefix != "/weft/net" || c.Etcd.Username != "root" || c.Etcd.Password != "pw":
		t.Errorf("etcd options %v", c.Etcd)
	case !slices.Equal(c.Interface.Ifaces, []string{"eth0"}) || len(c.Interface.Regexes) != 1:
		t.Errorf("interface options %+v", c.Interface)
	case c.Interface.CanReach != netip.MustParseAddr("198.18.0.254"),
		c.Interface.PublicIP != netip.MustParseAddr("203.0.113.9"),
		c.Interface.PublicIPv6 != netip.MustParseAddr("2001:db8::9"):
		t.Errorf("interface addresses %+v", c.Interface)
	case c.SubnetFile != "/tmp/x.env" || c.RenewMargin != 30*time.Minute || !c.IPMasq:
		t.Errorf("lease options %+v", c)
	case c.IPTablesResync != 7*time.Second || c.HealthAddr != "127.0.0.1:8081":
		t.Errorf("resync %v, health %q", c.IPTablesResync, c.HealthAddr)
	case c.Bridge != "cni0" || c.CNIConf != "/tmp/c" || c.DockerOpts != "/tmp/d" ||
		c.DockerOptsKey != "OPTS" || c.HyperdConfig != "/tmp/h":
		t.Errorf("runtime options %+v", c)
	}
}

// TestPasswordNeverLogged runs the startup log line and the environment notes through a
// real handler and looks for the password.
func TestPasswordNeverLogged(t *testing.T) {
	for _, tt := range []struct {
		name string
		args []string
		env  []string
	}{
		{name: "command line", args: []string{"-etcd-password", "s3cr3t-pw"}, env: nil},
		{name: "environment", args: nil, env: []string{"FLANNELD_ETCD_PASSWORD", "s3cr3t-pw"}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			o := mustParse(t, tt.args, env(tt.env...))
			var buf bytes.Buffer
			log := slog.New(slog.NewTextHandler(&buf,
				&slog.HandlerOptions{Level: slog.Level(-100)}))
			for _, n := range o.notes {
				log.Log(context.Background(), n.level, n.msg, n.attrs...)
			}
			log.Info("starting weftd", "options", o)
			c, err := o.config()
			if err != nil {
				t.Fatal(err)
			}
			log.Info("etcd", "etcd", c.Etcd)
			log.Info("etcd", "etcd", fmt.Sprintf("%v %+v %#v", c.Etcd, c.Etcd, c.Etcd))
			if strings.Contains(buf.String(), "s3cr3t-pw") {
				t.Errorf("the password is in the log:\n%s", buf.String())
			}
			if !strings.Contains(buf.String(), "etcd-password=<redacted>") {
				t.Errorf("the options line does not show the password as redacted:\n%s",
					buf.String())
			}
		})
	}
}

func TestLogLevel(t *testing.T) {
	tests := []struct {
		v    int
		want slog.Level
	}{
		{v: -1, want: slog.LevelInfo},
		{v: 0, want: slog.LevelInfo},
		{v: 1, want: slog.LevelDebug},
		{v: 2, want: slog.LevelDebug - 1},
		{v: 10, want: slog.LevelDebug - 9},
	}
	for _, tt := range tests {
		if got := logLevel(tt.v); got != tt.want {
			t.Errorf("logLevel(%d) = %v, want %v", tt.v, got, tt.want)
		}
	}
}

func TestExitCode(t *testing.T) {
	tests := []struct {
		name string
		err  error
		want int
	}{
		{name: "clean stop", err: nil, want: 0},
		{name: "usage", err: fmt.Errorf("%w: %w", errUsage, flag.ErrHelp), want: 0},
		{name: "cancelled", err: fmt.Errorf("waiting: %w", context.Canceled), want: 0},
		{name: "failure", err: errors.New("registering network: out of subnets"), want: 1},
		{name: "deadline", err: context.DeadlineExceeded, want: 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := exitCode(tt.err); got != tt.want {
				t.Errorf("exitCode(%v) = %d, want %d", tt.err, got, tt.want)
			}
		})
	}
}

// FuzzOptions feeds arbitrary command lines and FLANNELD_* values through parsing and
// the conversion to the daemon's configuration: neither may panic, the password may
// not reach the log line or the notes, and a flag given on the command line is never
// overridden by the environment.
func FuzzOptions(f *testing.F) {
	f.Add("-iface\x00eth0\x00-public-ip\x00198.18.0.1", "FLANNELD_IFACE", "eth1")
	f.Add("--subnet-lease-renew-margin=0", "FLANNELD_IP_MASQ", "maybe")
	f.Add("-iface-regex\x00(\x00-v\x00-3", "FLANNELD_HEALTHZ_PORT", "99999")
	f.Add("-etcd-password\x00pw", "FLANNELD_ETCD_PASSWORD", "other")
	f.Add("-iface-can-reach\x00::ffff:198.18.0.1\x00x", "FLANNELD_PUBLIC_IPV6", "fe80::1%eth0")
	f.Fuzz(func(t *testing.T, cmdline, envName, envValue string) {
		var args []string
		if cmdline != "" {
			args = strings.Split(cmdline, "\x00")
		}
		o, err := parseOptions(args, env(envName, envValue), io.Discard)
		if err != nil {
			if !errors.Is(err, errUsage) {
				t.Fatalf("parseOptions: %v, not errUsage", err)
			}
			return
		}
		if o.version {
			return
		}
		bare, err := parseOptions(args, env(), io.Discard)
		if err != nil {
			t.Fatalf("parsing without the environment: %v", err)
		}
		bare.fs.Visit(func(fl *flag.Flag) {
			if got := o.fs.Lookup(fl.Name).Value.String(); got != fl.Value.String() {
				t.Fatalf("-%s given as %q became %q from the environment",
					fl.Name, fl.Value.String(), got)
			}
		})

		var buf bytes.Buffer
		log := slog.New(slog.NewTextHandler(&buf, &slog.HandlerOptions{Level: slog.Level(-100)}))
		for _, n := range o.notes {
			log.Log(context.Background(), n.level, n.msg, n.attrs...)
		}
		log.Info("options", "options", o)
		if pw := o.etcdPassword; len(pw) > 3 && strings.Contains(buf.String(), pw) &&
			!strings.Contains(cmdline, pw) && !strings.Contains(envName, pw) {
			t.Fatalf("password %q in the log:\n%s", pw, buf.String())
		}

		c, err := o.config()
		if err == nil && (c.RenewMargin < time.Minute || c.RenewMargin > 1439*time.Minute) {
			t.Fatalf("config accepted renew margin %v", c.RenewMargin)
		}
	})
}

// TestDistEnvFile checks that every variable dist/weftd.env sets or shows is an option's,
// and that the values it sets parse.
func TestDistEnvFile(t *testing.T) {
	data, err := os.ReadFile("../../dist/weftd.env")
	if err != nil {
		t.Fatal(err)
	}
	o := mustParse(t, nil, env())
	var set []string
	n := 0
	for line := range strings.Lines(string(data)) {
		line = strings.TrimSpace(line)
		commented := strings.HasPrefix(line, "#")
		name, value, ok := strings.Cut(strings.TrimPrefix(line, "#"), "=")
		if !ok || !strings.HasPrefix(name, envPrefix) || strings.Contains(name, " ") {
			continue
		}
		n++
		flagName := strings.ToLower(strings.ReplaceAll(strings.TrimPrefix(name, envPrefix),
			"_", "-"))
		if o.fs.Lookup(flagName) == nil || envName(flagName) != name {
			t.Errorf("dist/weftd.env: %s is the variable of no option", name)
			continue
		}
		if !commented || value != "" {
			set = append(set, name, value)
		}
	}
	if n < 10 {
		t.Fatalf("dist/weftd.env: found %d variables, want the file's options", n)
	}
	// Every value shown, commented or not, is one the option takes.
	o = mustParse(t, nil, env(set...))
	for _, nt := range o.notes {
		if nt.level >= slog.LevelWarn {
			t.Errorf("dist/weftd.env: %s %v", nt.msg, nt.attrs)
		}
	}
	if _, err := o.config(); err != nil {
		t.Errorf("dist/weftd.env: %v", err)
	}
}
