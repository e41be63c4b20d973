package e2e

import (
	"encoding/json"
	"fmt"
	"log/slog"
	"net/netip"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"time"

	"github.com/weftnet/weft/subnet"
)

// Defaults of a lab.
const (
	DefaultName       = "weft"
	DefaultStateDir   = "/run/weft-lab"
	DefaultEtcdPrefix = "/coreos.com/network"
	DefaultHealthPort = 8081
)

// DefaultNetwork is the overlay a lab uses unless told otherwise: the upper half of the
// benchmarking range 198.18.0.0/15, whose lower /24 is the underlay.
var DefaultNetwork = netip.MustParsePrefix("198.19.0.0/16")

// The underlay: hosts are 198.18.0.I/24, the wan bridge and etcd 198.18.0.254, the outside
// namespace 198.18.0.200.
var (
	underlayNet = netip.MustParsePrefix("198.18.0.0/24")
	wanAddr     = netip.MustParseAddr("198.18.0.254")
	outsideAddr = UnderlayAddr(outsideIndex)
)

// outsideIndex is the host number whose underlay address the outside namespace takes.
const outsideIndex = 200

// Device names inside the lab's namespaces.
const (
	wanBridge    = "wan0"
	wanOutside   = "out"
	hostUplink   = "eth0"
	podBridge    = "cni0"
	podInterface = "eth0"
)

// Limits of a lab's size: a host takes one underlay address (254 is the wan's), and pod J
// takes address 10+J of a /24 lease.
const (
	maxHosts = 253
	maxPods  = 200
)

// Backends the lab knows how to configure. alloc only leases subnets, with no data plane:
// it checks the lab itself.
var backends = []string{"vxlan", "host-gw", "udp", "alloc"}

// Options describe a lab to build.
//
// TODO: the lab is IPv4 only (no IPv6 underlay, EnableIPv6 never set), so weftd's
// dual-stack paths are covered only by their own packages' tests, not end to end. The zero value of a field means its default.
type Options struct {
	// Name names the lab and prefixes its namespaces; DefaultName when empty.
	Name string
	// Hosts is the number of hosts, 1 to 253; default 3.
	Hosts int
	// Pods is the number of pods per host, 0 to 200.
	Pods int

	// Backend is the network config's Backend.Type: vxlan (default), host-gw, udp or
	// alloc.
	Backend string
	// VNI goes into the Backend object of a vxlan network when not 0.
	VNI int
	// Network is the overlay; DefaultNetwork when invalid.
	Network netip.Prefix
	// SubnetLen is each host's lease length; 0 leaves flanneld's default (/24).
	SubnetLen int
	// EtcdPrefix is where the network config and leases live; DefaultEtcdPrefix when empty.
	EtcdPrefix string

	// Daemon is every host's daemon command line before the flags the lab appends; the
	// weftd binary (Weftd) when empty. HostDaemons overrides it for single hosts, by
	// host number.
	Daemon      []string
	HostDaemons map[int][]string
	// HostFlags are appended to host I's daemon command line after the lab's own flags,
	// by host number, for example {1: {"-ip-masq", "-iptables-resync", "1"}}. A daemon
	// started again keeps them.
	HostFlags map[int][]string
	// Weftd is the weftd binary; by default the weftd next to Weftctl.
	Weftd string
	// Weftctl is the weftctl binary that runs the lab's etcd (`weftctl lab etcd`); by
	// default the running executable.
	Weftctl string
	// StartLater makes Up return with etcd running, the network config stored and the
	// hosts wired, but no daemon started: StartDaemon starts each one for the first time,
	// after the caller has written what it wants into etcd (peer leases, for one). Such a
	// lab has no pods.
	StartLater bool
	// HealthPort is the port each daemon serves /readyz on, on the host's loopback;
	// DefaultHealthPort when 0, none when negative.
	HealthPort int
	// ReadyTimeout bounds the wait for etcd and for each daemon; default 60 s.
	ReadyTimeout time.Duration

	// Outside adds namespace L-out: a machine on the underlay, 198.18.0.200/24 on its
	// eth0, that is no overlay host and has no route to the overlay, so that it can
	// answer a pod only when the pod's host masquerades. Such a lab has at most 199
	// hosts, the address of h200 being taken.
	Outside bool

	// StateDir holds one directory per lab; DefaultStateDir when empty.
	StateDir string
	// Log receives progress at Info and details at Debug; discarded when nil.
	Log *slog.Logger
}

var labName = regexp.MustCompile(`^[a-z][a-z0-9-]{0,39}$`)

// CheckName returns an error unless name can name a lab: a lowercase letter, then up to
// 39 lowercase letters, digits and '-', so that every namespace name stays short.
func CheckName(name string) error {
	if !labName.MatchString(name) {
		return fmt.Errorf("lab name %q: want a lowercase letter, then up to 39 lowercase "+
			"letters, digits or '-'", name)
	}
	return nil
}

// withDefaults returns o with defaults filled in, or an error naming the first option
// that is out of range.
func (o Options) withDefaults() (Options, error) {
	if o.Name == "" {
		o.Name = DefaultName
	}
	if err := CheckName(o.Name); err != nil {
		return o, err
	}
	if o.Hosts == 0 {
		o.Hosts = 3
	}
	if o.Hosts < 1 || o.Hosts > maxHosts {
		return o, fmt.Errorf("hosts %d: want 1 to %d", o.Hosts, maxHosts)
	}
	if o.Pods < 0 || o.Pods > maxPods {
		return o, fmt.Errorf("pods %d: want 0 to %d per host", o.Pods, maxPods)
	}
	if o.Backend == "" {
		o.Backend = "vxlan"
	}
	o.Backend = strings.ToLower(o.Backend)
	if !slices.Contains(backends, o.Backend) {
		return o, fmt.Errorf("backend %q: want one of %s", o.Backend, strings.Join(backends, ", "))
	}
	if o.VNI != 0 && o.Backend != "vxlan" {
		return o, fmt.Errorf("vni %d: only the vxlan backend has a VNI, not %s", o.VNI, o.Backend)
	}
	if o.VNI < 0 || o.VNI > 1<<24-1 {
		return o, fmt.Errorf("vni %d: want 1 to %d", o.VNI, 1<<24-1)
	}
	if !o.Network.IsValid() {
		o.Network = DefaultNetwork
	}
	if o.EtcdPrefix == "" {
		o.EtcdPrefix = DefaultEtcdPrefix
	}
	if !strings.HasPrefix(o.EtcdPrefix, "/") {
		return o, fmt.Errorf("etcd prefix %q: want an absolute key like %q", o.EtcdPrefix,
			DefaultEtcdPrefix)
	}
	cfg, err := subnet.ParseConfig(o.networkConfig())
	if err != nil {
		return o, fmt.Errorf("network config for the lab: %w", err)
	}
	if pods := 10 + o.Pods; o.Pods > 0 && pods >= 1<<(32-cfg.SubnetLen)-1 {
		return o, fmt.Errorf("pods %d: a /%d lease has no room for addresses .10 to .%d",
			o.Pods, cfg.SubnetLen, pods-1)
	}
	if o.Network.Overlaps(underlayNet) {
		return o, fmt.Errorf("network %s overlaps the lab's underlay %s", o.Network, underlayNet)
	}

	if o.Weftctl == "" {
		exe, err := os.Executable()
		if err != nil {
			return o, fmt.Errorf("finding weftctl: %w", err)
		}
		o.Weftctl = exe
	}
	if o.Weftd == "" {
		o.Weftd = filepath.Join(filepath.Dir(o.Weftctl), "weftd")
	}
	for i := range o.HostDaemons {
		if i < 1 || i > o.Hosts {
			return o, fmt.Errorf("daemon for h%d: the lab has hosts h1 to h%d", i, o.Hosts)
		}
	}
	for i := range o.HostFlags {
		if i < 1 || i > o.Hosts {
			return o, fmt.Errorf("daemon flags for h%d: the lab has hosts h1 to h%d", i,
				o.Hosts)
		}
	}
	if o.StartLater && o.Pods > 0 {
		return o, fmt.Errorf("pods %d: a lab whose daemons start later has no pods", o.Pods)
	}
	if o.Outside && o.Hosts >= outsideIndex {
		return o, fmt.Errorf("hosts %d: the outside namespace takes %s, so at most %d hosts",
			o.Hosts, outsideAddr.Addr(), outsideIndex-1)
	}
	if o.HealthPort == 0 {
		o.HealthPort = DefaultHealthPort
	}
	if o.HealthPort > 65535 {
		return o, fmt.Errorf("health port %d: want 1 to 65535", o.HealthPort)
	}
	if o.ReadyTimeout <= 0 {
		o.ReadyTimeout = 60 * time.Second
	}
	if o.StateDir == "" {
		o.StateDir = DefaultStateDir
	}
	if o.Log == nil {
		o.Log = slog.New(slog.DiscardHandler)
	}
	return o, nil
}

// networkConfig returns the JSON the lab stores at <prefix>/config.
func (o Options) networkConfig() []byte {
	backend := map[string]any{"Type": o.Backend}
	if o.VNI != 0 {
		backend["VNI"] = o.VNI
	}
	cfg := map[string]any{"Network": o.Network.String(), "Backend": backend}
	if o.SubnetLen != 0 {
		cfg["SubnetLen"] = o.SubnetLen
	}
	b, err := json.Marshal(cfg)
	if err != nil {
		panic(err) // maps of strings and numbers always marshal
	}
	return b
}

// daemonArgv returns host i's daemon command line without the lab's flags.
func (o Options) daemonArgv(i int) []string {
	if argv, ok := o.HostDaemons[i]; ok {
		return argv
	}
	if len(o.Daemon) > 0 {
		return o.Daemon
	}
	return []string{o.Weftd}
}

// commandLine returns host i's daemon command line: the daemon, the lab's flags, then
// the host's HostFlags, which so win over the lab's where a flag is given twice.
func (o Options) commandLine(i int, labFlags []string) []string {
	argv := slices.Clone(o.daemonArgv(i))
	argv = append(argv, labFlags...)
	return append(argv, o.HostFlags[i]...)
}

// WanNS returns the name of lab's underlay namespace.
func WanNS(lab string) string { return lab + "-wan" }

// OutNS returns the name of lab's outside namespace, made with Options.Outside.
func OutNS(lab string) string { return lab + "-out" }

// OutsideAddr returns the underlay address of the outside namespace.
func OutsideAddr() netip.Prefix { return outsideAddr }

// HostNS returns the name of host i's namespace.
func HostNS(lab string, i int) string { return fmt.Sprintf("%s-h%d", lab, i) }

// PodNS returns the name of pod j of host i.
func PodNS(lab string, i, j int) string { return fmt.Sprintf("%s-h%d-p%d", lab, i, j) }

// UnderlayAddr returns host i's underlay address.
func UnderlayAddr(i int) netip.Prefix {
	a := underlayNet.Addr().As4()
	a[3] = byte(i)
	return netip.PrefixFrom(netip.AddrFrom4(a), underlayNet.Bits())
}

// EtcdEndpoint returns the client URL of every lab's etcd, as seen from its hosts.
func EtcdEndpoint() string { return "http://" + netip.AddrPortFrom(wanAddr, 2379).String() }

// OwnsNamespace reports whether the namespace called ns belongs to the lab called lab:
// L-wan, L-out, L-hI or L-hI-pJ, and nothing else (not the namespaces of a lab called
// L-h1).
func OwnsNamespace(lab, ns string) bool {
	rest, ok := strings.CutPrefix(ns, lab+"-")
	if !ok {
		return false
	}
	if rest == "wan" || rest == "out" {
		return true
	}
	host, pod, hasPod := strings.Cut(rest, "-p")
	return isIndex(strings.TrimPrefix(host, "h"), maxHosts) && strings.HasPrefix(host, "h") &&
		(!hasPod || isIndex(pod, maxPods))
}

// isIndex reports whether s is a decimal number from 1 to max without leading zeros.
func isIndex(s string, max int) bool {
	if s == "" || len(s) > 3 || s[0] == '0' {
		return false
	}
	n := 0
	for _, c := range s {
		if c < '0' || c > '9' {
			return false
		}
		n = n*10 + int(c-'0')
	}
	return n >= 1 && n <= max
}

// ParseTarget resolves what `weftctl lab exec` names, "wan", "out", "hI" or "hI-pJ", to a
// namespace of the lab called lab.
func ParseTarget(lab, target string) (string, error) {
	ns := lab + "-" + target
	if !OwnsNamespace(lab, ns) {
		return "", fmt.Errorf("lab target %q: want wan, out, hI or hI-pJ, like h1 or h2-p1",
			target)
	}
	return ns, nil
}

// addrAdd returns the IPv4 address n after a.
func addrAdd(a netip.Addr, n int) netip.Addr {
	b := a.As4()
	v := uint32(b[0])<<24 | uint32(b[1])<<16 | uint32(b[2])<<8 | uint32(b[3])
	v += uint32(n)
	return netip.AddrFrom4([4]byte{byte(v >> 24), byte(v >> 16), byte(v >> 8), byte(v)})
}
