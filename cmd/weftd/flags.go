package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/weftnet/weft/backend/udp"
	"github.com/weftnet/weft/bridge"
	"github.com/weftnet/weft/overlay"
	"github.com/weftnet/weft/subnet"
)

// envPrefix starts the environment variable of every flag: FLANNELD_ + the flag name in
// upper case with '-' turned into '_' (FLANNELD_ETCD_ENDPOINTS, FLANNELD_IP_MASQ).
const envPrefix = "FLANNELD_"

// errUsage means the usage text was printed, for -h or a command line that did not
// parse. flanneld exits 0 then, and so does weftd.
var errUsage = errors.New("usage printed")

// options holds every flag as flanneld spells and types it.
type options struct {
	etcdEndpoints string
	etcdPrefix    string
	etcdKeyfile   string
	etcdCertfile  string
	etcdCafile    string
	etcdUsername  string
	etcdPassword  string

	iface         stringList
	ifaceRegex    stringList
	ifaceCanReach string
	publicIP      string
	publicIPv6    string

	subnetFile             string
	subnetLeaseRenewMargin int

	ipMasq                   bool
	ipMasqFullyRandomDisable bool
	iptablesResync           int
	iptablesForwardRules     bool
	ipBlackholeRoute         bool

	kubeSubnetMgr             bool
	kubeAPIURL                string
	kubeAnnotationPrefix      string
	kubeconfigFile            string
	netConfigPath             string
	setNodeNetworkUnavailable bool

	healthzIP   string
	healthzPort int

	// bridge, hyperConfig, dockerOpts, dockerOptsKey and cniConf are weft's own: they
	// prepare the host for container runtimes, which flanneld leaves to scripts.
	bridge        string
	hyperConfig   string
	dockerOpts    string
	dockerOptsKey string
	cniConf       string

	// udpDatapath picks the udp backend's data path by name (weft only).
	udpDatapath string

	version bool

	// verbosity, vmodule and logBacktraceAt are the klog flags flanneld copies.
	verbosity      int
	vmodule        string
	logBacktraceAt string

	// fs is the set the options were parsed with, for the log line listing them.
	fs *flag.FlagSet
	// notes are what parsing found worth logging once a logger exists: FLANNELD_*
	// values applied or ignored, arguments ignored.
	notes []note
}

// note is a message for the log, kept until the logger exists.
type note struct {
	level slog.Level
	msg   string
	attrs []any
}

// stringList is a repeatable flag: each use appends one value.
type stringList []string

func (l *stringList) String() string { return strings.Join(*l, ",") }

func (l *stringList) Set(v string) error {
	*l = append(*l, v)
	return nil
}

// kubeFlags are accepted for flanneld's command lines and do nothing in weftd.
var kubeFlags = []string{"kube-subnet-mgr", "kube-api-url", "kube-annotation-prefix",
	"kubeconfig-file", "net-config-path", "set-node-network-unavailable"}

// newFlagSet declares flanneld's flags, with its names, types and defaults, on o.
func newFlagSet(o *options, out io.Writer) *flag.FlagSet {
	fs := flag.NewFlagSet("weftd", flag.ContinueOnError)
	fs.SetOutput(out)
	fs.Usage = func() { usage(fs) }

	fs.StringVar(&o.etcdEndpoints, "etcd-endpoints", subnet.DefaultEtcdEndpoints,
		"etcd client URLs, separated by commas")
	fs.StringVar(&o.etcdPrefix, "etcd-prefix", subnet.DefaultPrefix,
		"etcd key under which the network config and the leases live")
	fs.StringVar(&o.etcdKeyfile, "etcd-keyfile", "",
		"PEM client key for etcd; TLS needs it together with -etcd-certfile")
	fs.StringVar(&o.etcdCertfile, "etcd-certfile", "",
		"PEM client certificate for etcd; TLS needs it together with -etcd-keyfile")
	fs.StringVar(&o.etcdCafile, "etcd-cafile", "",
		"PEM CA bundle that etcd's server certificate must chain to (with TLS only)")
	fs.StringVar(&o.etcdUsername, "etcd-username", "", "etcd user name")
	fs.StringVar(&o.etcdPassword, "etcd-password", "", "etcd password (never logged)")

	fs.Var(&o.iface, "iface",
		"external interface, by name or by one of its addresses; repeat to give "+
			"fallbacks, tried in order")
	fs.Var(&o.ifaceRegex, "iface-regex",
		"regular expression matched against addresses, then interface names; "+
			"repeatable, tried after every -iface")
	fs.StringVar(&o.ifaceCanReach, "iface-can-reach", "",
		"take the interface and source address of the route to this address")
	fs.StringVar(&o.publicIP, "public-ip", "",
		"IPv4 address peers reach this host at (default: the interface's address)")
	fs.StringVar(&o.publicIPv6, "public-ipv6", "",
		"IPv6 address peers reach this host at (default: the interface's address)")

	fs.StringVar(&o.subnetFile, "subnet-file", subnet.DefaultEnvFile,
		"where to write FLANNEL_NETWORK, FLANNEL_SUBNET, FLANNEL_MTU and FLANNEL_IPMASQ")
	fs.IntVar(&o.subnetLeaseRenewMargin, "subnet-lease-renew-margin",
		int(subnet.DefaultRenewMargin/time.Minute),
		"minutes before expiry at which the 24-hour lease is renewed, 1 to 1439")

	fs.BoolVar(&o.ipMasq, "ip-masq", false,
		"masquerade traffic from the overlay to destinations outside it")
	fs.BoolVar(&o.ipMasqFullyRandomDisable, "ip-masq-fully-random-disable", false,
		"masquerade without fully random source ports")
	fs.IntVar(&o.iptablesResync, "iptables-resync", 5,
		"seconds between checks that the rules are still in place")
	fs.BoolVar(&o.iptablesForwardRules, "iptables-forward-rules", true,
		"accept forwarded traffic from and to the overlay network")
	fs.BoolVar(&o.ipBlackholeRoute, "ip-blackhole-route", false,
		"keep a blackhole route for this host's subnet")

	fs.BoolVar(&o.kubeSubnetMgr, "kube-subnet-mgr", false,
		"Kubernetes subnet manager: not implemented, true is an error")
	fs.StringVar(&o.kubeAPIURL, "kube-api-url", "", "Kubernetes mode only (ignored)")
	fs.StringVar(&o.kubeAnnotationPrefix, "kube-annotation-prefix",
		"flannel.alpha.coreos.com", "Kubernetes mode only (ignored)")
	fs.StringVar(&o.kubeconfigFile, "kubeconfig-file", "", "Kubernetes mode only (ignored)")
	fs.StringVar(&o.netConfigPath, "net-config-path", "/etc/kube-flannel/net-conf.json",
		"Kubernetes mode only (ignored)")
	fs.BoolVar(&o.setNodeNetworkUnavailable, "set-node-network-unavailable", true,
		"Kubernetes mode only (ignored)")

	fs.StringVar(&o.healthzIP, "healthz-ip", "0.0.0.0",
		"address for /healthz and /readyz")
	fs.IntVar(&o.healthzPort, "healthz-port", 0,
		"port for /healthz and /readyz; 0 serves nothing")

	fs.StringVar(&o.bridge, "bridge", "",
		"keep this Linux bridge with FLANNEL_SUBNET's address and FLANNEL_MTU (weft only)")
	fs.StringVar(&o.hyperConfig, "hyper-config", "",
		"keep Bridge and BridgeIP in this hyperd config file, e.g. "+
			bridge.DefaultHyperdConfigPath+"; needs -bridge (weft only)")
	fs.StringVar(&o.dockerOpts, "docker-opts", "",
		"write Docker daemon options here, as mk-docker-opts.sh does (weft only)")
	fs.StringVar(&o.dockerOptsKey, "docker-opts-key", bridge.DefaultDockerOptsKey,
		"variable of -docker-opts that holds all options together (weft only)")
	fs.StringVar(&o.cniConf, "cni-conf", "",
		"write a conflist for the CNI flannel plugin here, e.g. "+
			bridge.DefaultCNIConfPath+" (weft only)")
	fs.StringVar(&o.udpDatapath, "udp-datapath", udp.DatapathOffload,
		"how the udp backend moves packets: "+strings.Join(udp.Datapaths(), ", ")+
			"; the others leave offloads out, for kernels whose offloads misbehave "+
			"and for comparisons (weft only)")

	fs.BoolVar(&o.version, "version", false, "print the version to stderr and exit")

	fs.IntVar(&o.verbosity, "v", 0,
		"log detail: 0 logs Info and up, 1 adds Debug, each step above one finer level")
	fs.StringVar(&o.vmodule, "vmodule", "", "accepted for klog compatibility, ignored")
	fs.StringVar(&o.logBacktraceAt, "log_backtrace_at", "",
		"accepted for klog compatibility, ignored")
	return fs
}

func usage(fs *flag.FlagSet) {
	fmt.Fprintf(fs.Output(), "Usage: weftd [OPTION]...\n\n"+
		"weftd leases this host a subnet of the overlay network kept in etcd, programs\n"+
		"the routes to every other host's subnet and writes subnet.env. Every option\n"+
		"can also be set by an environment variable FLANNELD_<OPTION>, upper case\n"+
		"with '-' as '_', used only when the option is not on the command line.\n\n")
	fs.PrintDefaults()
}

// parseOptions parses the command line into options and then applies FLANNELD_*
// variables from lookupEnv to the flags the command line did not give. With -version it
// stops before the environment, as flanneld does. Usage goes to out; a command line that
// does not parse, and -h, give errUsage.
func parseOptions(args []string, lookupEnv func(string) (string, bool), out io.Writer) (
	*options, error) {
	o := &options{}
	fs := newFlagSet(o, out)
	o.fs = fs
	if err := fs.Parse(args); err != nil {
		return nil, fmt.Errorf("%w: %w", errUsage, err)
	}
	if o.version {
		return o, nil
	}
	if fs.NArg() > 0 {
		o.notes = append(o.notes, note{slog.LevelWarn, "ignoring arguments after the options",
			[]any{"args", fs.Args()}})
	}
	o.applyEnv(lookupEnv)
	return o, nil
}

// envName returns the environment variable of a flag.
func envName(flagName string) string {
	return envPrefix + strings.ToUpper(strings.ReplaceAll(flagName, "-", "_"))
}

// applyEnv sets each flag that the command line did not give from its FLANNELD_*
// variable, if that is set and not empty. A repeatable flag takes the value as one
// entry. A value that does not parse is noted and skipped.
func (o *options) applyEnv(lookupEnv func(string) (string, bool)) {
	given := map[string]bool{}
	o.fs.Visit(func(f *flag.Flag) { given[f.Name] = true })

	o.fs.VisitAll(func(f *flag.Flag) {
		if given[f.Name] || f.Name == "version" {
			return
		}
		name := envName(f.Name)
		v, ok := lookupEnv(name)
		if !ok || v == "" {
			return
		}
		shown := v
		if f.Name == "etcd-password" {
			shown = "<redacted>"
		}
		if err := o.fs.Set(f.Name, v); err != nil {
			o.notes = append(o.notes, note{slog.LevelWarn, "ignoring environment variable",
				[]any{"var", name, "value", shown, "err", redactErr(err, f.Name)}})
			return
		}
		o.notes = append(o.notes, note{slog.LevelDebug, "option set from environment",
			[]any{"var", name, "value", shown}})
	})
}

// redactErr keeps the password out of a flag error, whose text may quote the value.
func redactErr(err error, flagName string) string {
	if flagName == "etcd-password" {
		return "invalid value"
	}
	return err.Error()
}

// LogValue lists every option with its value, the password shown as "<redacted>".
func (o *options) LogValue() slog.Value {
	var attrs []slog.Attr
	o.fs.VisitAll(func(f *flag.Flag) {
		v := f.Value.String()
		if f.Name == "etcd-password" && v != "" {
			v = "<redacted>"
		}
		attrs = append(attrs, slog.String(f.Name, v))
	})
	return slog.GroupValue(attrs...)
}

// logLevel maps -v to a slog level: 0 (and below) is Info, 1 is Debug, and each step
// above that one level finer than Debug.
func logLevel(v int) slog.Level {
	if v <= 0 {
		return slog.LevelInfo
	}
	return slog.LevelDebug - slog.Level(v-1)
}

// config turns the options into the daemon's configuration. Each error names the flag
// and the value at fault.
func (o *options) config() (overlay.Config, error) {
	var c overlay.Config
	if o.kubeSubnetMgr {
		return c, errors.New("-kube-subnet-mgr: weftd does not implement the Kubernetes " +
			"subnet manager; it keeps leases in etcd (drop the option and give " +
			"-etcd-endpoints)")
	}
	if o.subnetLeaseRenewMargin < 1 || o.subnetLeaseRenewMargin > 1439 {
		return c, fmt.Errorf("-subnet-lease-renew-margin %d: want 1 to 1439 minutes",
			o.subnetLeaseRenewMargin)
	}
	if o.iptablesResync < 1 {
		return c, fmt.Errorf("-iptables-resync %d: want at least 1 second", o.iptablesResync)
	}
	if o.healthzPort > 65535 {
		return c, fmt.Errorf("-healthz-port %d: want 0 to 65535", o.healthzPort)
	}
	udpOpts, err := udp.ParseDatapath(o.udpDatapath)
	if err != nil {
		return c, fmt.Errorf("-udp-datapath: %w", err)
	}
	c.Backends = backends(udpOpts)

	c.Etcd = subnet.EtcdOptions{
		Endpoints: subnet.SplitEndpoints(o.etcdEndpoints),
		Prefix:    o.etcdPrefix,
		KeyFile:   o.etcdKeyfile,
		CertFile:  o.etcdCertfile,
		CAFile:    o.etcdCafile,
		Username:  o.etcdUsername,
		Password:  o.etcdPassword,
	}

	c.Interface.Ifaces = o.iface
	for _, s := range o.ifaceRegex {
		re, err := regexp.Compile(s)
		if err != nil {
			return c, fmt.Errorf("-iface-regex %q: %w", s, err)
		}
		c.Interface.Regexes = append(c.Interface.Regexes, re)
	}
	if c.Interface.CanReach, err = parseAddr("-iface-can-reach", o.ifaceCanReach, 0); err != nil {
		return c, err
	}
	if c.Interface.PublicIP, err = parseAddr("-public-ip", o.publicIP, 4); err != nil {
		return c, err
	}
	if c.Interface.PublicIPv6, err = parseAddr("-public-ipv6", o.publicIPv6, 6); err != nil {
		return c, err
	}

	c.SubnetFile = o.subnetFile
	c.RenewMargin = time.Duration(o.subnetLeaseRenewMargin) * time.Minute
	c.IPMasq = o.ipMasq
	c.IPMasqFullyRandomDisable = o.ipMasqFullyRandomDisable
	c.IPTablesResync = time.Duration(o.iptablesResync) * time.Second
	c.IPTablesForwardRules = o.iptablesForwardRules
	c.IPBlackholeRoute = o.ipBlackholeRoute
	c.Bridge = o.bridge
	c.HyperdConfig = o.hyperConfig
	c.DockerOpts = o.dockerOpts
	c.DockerOptsKey = o.dockerOptsKey
	c.CNIConf = o.cniConf
	if o.healthzPort > 0 {
		c.HealthAddr = net.JoinHostPort(o.healthzIP, strconv.Itoa(o.healthzPort))
	}
	return c, nil
}

// parseAddr parses an optional address flag; family 4 or 6 demands that family, 0
// takes either.
func parseAddr(flagName, s string, family int) (netip.Addr, error) {
	if s == "" {
		return netip.Addr{}, nil
	}
	a, err := netip.ParseAddr(s)
	if err == nil {
		a = a.Unmap()
	}
	switch {
	case err != nil || a.Zone() != "":
		return netip.Addr{}, fmt.Errorf("%s %q is not an IP address", flagName, s)
	case family == 4 && !a.Is4():
		return netip.Addr{}, fmt.Errorf("%s %q is not an IPv4 address", flagName, s)
	case family == 6 && !a.Is6():
		return netip.Addr{}, fmt.Errorf("%s %q is not an IPv6 address", flagName, s)
	}
	return a, nil
}
