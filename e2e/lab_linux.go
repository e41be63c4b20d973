package e2e

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"net/http"
	"net/netip"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/vishvananda/netlink"
	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/weftnet/weft/internal/netlab"
	"github.com/weftnet/weft/subnet"
)

// Lab is a running lab: built by Up, or found again by Open. Its methods are not safe for
// concurrent use.
type Lab struct {
	opts  Options
	state *State
	dir   string
	log   *slog.Logger

	// cmds holds the processes this Lab started itself, to be waited for when they stop:
	// key 0 is etcd, key I host I's daemon.
	cmds map[int]*exec.Cmd
	etcd *clientv3.Client
}

// Up builds the lab that opts describe and returns once every host's daemon is ready and
// every pod is wired: the namespaces and the underlay, etcd with the network config, one
// daemon per host, the pods. With opts.StartLater it returns before starting any daemon. On error, or when ctx is cancelled, everything made so far is
// removed again. A lab of the same name must not exist.
func Up(ctx context.Context, opts Options) (_ *Lab, err error) {
	o, err := opts.withDefaults()
	if err != nil {
		return nil, err
	}
	if err := checkFree(o.StateDir, o.Name); err != nil {
		return nil, err
	}
	if err := o.checkPrograms(); err != nil {
		return nil, err
	}

	l := &Lab{
		opts: o,
		state: &State{
			Name:       o.Name,
			Backend:    o.Backend,
			VNI:        o.VNI,
			Network:    o.Network,
			EtcdPrefix: o.EtcdPrefix,
			Created:    time.Now().UTC().Truncate(time.Second),
		},
		dir:  labDir(o.StateDir, o.Name),
		log:  o.Log.With("lab", o.Name),
		cmds: map[int]*exec.Cmd{},
	}
	if err := os.MkdirAll(l.dir, 0o755); err != nil {
		return nil, fmt.Errorf("creating lab %s: %w", o.Name, err)
	}
	defer func() {
		if err == nil {
			return
		}
		l.log.Info("removing the half-built lab")
		cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 60*time.Second)
		defer cancel()
		if derr := l.Down(cctx); derr != nil {
			err = errors.Join(err, fmt.Errorf("removing lab %s: %w", o.Name, derr))
		}
	}()
	if err := l.save(); err != nil {
		return nil, err
	}

	if err := l.buildWan(); err != nil {
		return nil, err
	}
	if err := l.startEtcd(ctx); err != nil {
		return nil, err
	}
	for i := 1; i <= o.Hosts && ctx.Err() == nil; i++ {
		if err := l.buildHost(i); err != nil {
			return nil, err
		}
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	if o.Outside {
		if err := l.buildOutside(); err != nil {
			return nil, err
		}
	}
	l.log.Info("hosts wired to the underlay", "hosts", o.Hosts, "underlay", underlayNet)
	if o.StartLater {
		return l, nil
	}

	for i := 1; i <= o.Hosts; i++ {
		if err := l.startDaemon(i); err != nil {
			return nil, err
		}
	}
	envs, err := l.waitAllReady(ctx)
	if err != nil {
		return nil, err
	}

	for i := 1; i <= o.Hosts && ctx.Err() == nil; i++ {
		if err := l.addPods(i, envs[i-1]); err != nil {
			return nil, err
		}
	}
	if o.Pods > 0 {
		l.log.Info("pods wired", "per_host", o.Pods, "bridge", podBridge)
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	return l, nil
}

// checkFree returns an error if anything of a lab called name exists: its state directory
// or any of its namespaces.
func checkFree(stateDir, name string) error {
	hint := fmt.Sprintf("remove it with: weftctl lab down --name %s", name)
	if _, err := os.Stat(labDir(stateDir, name)); err == nil {
		return fmt.Errorf("lab %s already exists (%s): %s", name, labDir(stateDir, name), hint)
	}
	names, err := netlab.List()
	if err != nil {
		return err
	}
	for _, n := range names {
		if OwnsNamespace(name, n) {
			return fmt.Errorf("lab %s already exists (namespace %s): %s", name, n, hint)
		}
	}
	return nil
}

// checkPrograms makes sure every command the lab will start exists, before anything is
// built.
func (o Options) checkPrograms() error {
	if _, err := exec.LookPath(o.Weftctl); err != nil {
		return fmt.Errorf("weftctl, which runs the lab's etcd: %w", err)
	}
	for i := 1; i <= o.Hosts; i++ {
		argv := o.daemonArgv(i)
		if len(argv) == 0 {
			return fmt.Errorf("daemon of h%d: empty command line", i)
		}
		if _, err := exec.LookPath(argv[0]); err != nil {
			hint := ""
			if argv[0] == o.Weftd {
				hint = " (build it with make build, or choose another daemon with --daemon)"
			}
			return fmt.Errorf("daemon of h%d: %w%s", i, err, hint)
		}
	}
	return nil
}

func (l *Lab) save() error { return l.state.save(l.opts.StateDir) }

// buildWan creates the underlay namespace and its bridge.
//
// Equivalent to: ip netns add L-wan; ip -n L-wan link add wan0 type bridge;
// ip -n L-wan addr add 198.18.0.254/24 dev wan0; ip -n L-wan link set wan0 up
func (l *Lab) buildWan() error {
	ns := WanNS(l.state.Name)
	if err := netlab.Create(ns); err != nil {
		return err
	}
	h, err := netlab.NewHandle(ns)
	if err != nil {
		return err
	}
	defer h.Close()
	addr := netip.PrefixFrom(wanAddr, underlayNet.Bits())
	if _, err := netlab.EnsureBridge(h, wanBridge, 1500, addr); err != nil {
		return fmt.Errorf("underlay of lab %s: %w", l.state.Name, err)
	}
	l.log.Info("underlay ready", "namespace", ns, "bridge", wanBridge, "address", addr)
	return nil
}

// startEtcd starts `weftctl lab etcd`, waits until it answers and stores the network
// config.
func (l *Lab) startEtcd(ctx context.Context) error {
	argv := []string{l.opts.Weftctl, "lab", "etcd", "--name", l.state.Name,
		"--state-dir", l.opts.StateDir}
	p, cmd, err := startProc("", argv, filepath.Join(l.dir, "etcd.log"))
	if err != nil {
		return fmt.Errorf("etcd of lab %s: %w", l.state.Name, err)
	}
	l.state.Etcd, l.cmds[0] = p, cmd
	if err := l.save(); err != nil {
		return err
	}

	c, err := l.Client()
	if err != nil {
		return err
	}
	key := path.Join(l.state.EtcdPrefix, "config")
	deadline := time.Now().Add(l.opts.ReadyTimeout)
	for {
		if !p.alive() {
			return fmt.Errorf("etcd of lab %s exited; its log %s ends:\n%s", l.state.Name, p.Log,
				tailFile(p.Log, 20))
		}
		cctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		_, err = c.Put(cctx, key, string(l.opts.networkConfig()))
		cancel()
		if err == nil {
			break
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("etcd of lab %s: no answer within %s: %w; its log %s ends:\n%s",
				l.state.Name, l.opts.ReadyTimeout, err, p.Log, tailFile(p.Log, 20))
		}
		time.Sleep(100 * time.Millisecond)
	}
	l.log.Info("etcd ready", "endpoint", EtcdEndpoint(), "pid", p.PID,
		"config", string(l.opts.networkConfig()))
	return nil
}

// buildHost creates host i's namespace with its underlay link into the wan bridge and
// IPv4 forwarding on.
//
// Equivalent to: ip netns add L-hI;
// ip -n L-wan link add hI type veth peer name eth0 netns L-hI;
// ip -n L-wan link set hI master wan0 up; ip -n L-hI addr add 198.18.0.I/24 dev eth0;
// ip -n L-hI link set eth0 up; ip netns exec L-hI sysctl -w net.ipv4.ip_forward=1
func (l *Lab) buildHost(i int) error {
	name := l.state.Name
	ns := HostNS(name, i)
	if err := netlab.Create(ns); err != nil {
		return err
	}
	hostDir := filepath.Join(l.dir, fmt.Sprintf("h%d", i))
	if err := os.MkdirAll(hostDir, 0o755); err != nil {
		return fmt.Errorf("creating host h%d: %w", i, err)
	}
	host := HostState{
		Index:      i,
		NS:         ns,
		Underlay:   UnderlayAddr(i),
		Dev:        hostUplink,
		SubnetFile: filepath.Join(hostDir, "subnet.env"),
		HealthPort: max(l.opts.HealthPort, 0),
		Daemon:     Proc{Log: filepath.Join(hostDir, "daemon.log")},
		// weftd keeps the bridge with -bridge; other flanneld-compatible daemons
		// have no such flag, and the lab makes the bridge for them.
		DaemonBridge: filepath.Base(l.opts.daemonArgv(i)[0]) == "weftd",
	}

	wan, err := netlab.NewHandle(WanNS(name))
	if err != nil {
		return err
	}
	defer wan.Close()
	hh, err := netlab.NewHandle(ns)
	if err != nil {
		return err
	}
	defer hh.Close()

	wanEnd := fmt.Sprintf("h%d", i)
	veth := netlab.Veth{Name: wanEnd, PeerName: hostUplink, PeerNS: ns, MTU: 1500}
	if err := netlab.AddVeth(wan, veth); err != nil {
		return fmt.Errorf("wiring host h%d: %w", i, err)
	}
	if err := netlab.LinkSetup(wan, wanEnd, netip.Prefix{}, wanBridge); err != nil {
		return fmt.Errorf("wiring host h%d: %w", i, err)
	}
	if err := netlab.LinkSetup(hh, hostUplink, host.Underlay, ""); err != nil {
		return fmt.Errorf("wiring host h%d: %w", i, err)
	}
	if err := netlab.SetSysctl(ns, "net.ipv4.ip_forward", "1"); err != nil {
		return fmt.Errorf("host h%d: %w", i, err)
	}

	l.state.Hosts = append(l.state.Hosts, host)
	return l.save()
}

// buildOutside creates the outside namespace: wired into the underlay like a host, but
// with no daemon, no forwarding and no route beyond the underlay.
//
// Equivalent to: ip netns add L-out;
// ip -n L-wan link add out type veth peer name eth0 netns L-out;
// ip -n L-wan link set out master wan0 up; ip -n L-out addr add 198.18.0.200/24 dev eth0;
// ip -n L-out link set eth0 up
func (l *Lab) buildOutside() error {
	name := l.state.Name
	ns := OutNS(name)
	if err := netlab.Create(ns); err != nil {
		return err
	}
	wan, err := netlab.NewHandle(WanNS(name))
	if err != nil {
		return err
	}
	defer wan.Close()
	out, err := netlab.NewHandle(ns)
	if err != nil {
		return err
	}
	defer out.Close()

	veth := netlab.Veth{Name: wanOutside, PeerName: hostUplink, PeerNS: ns, MTU: 1500}
	if err := netlab.AddVeth(wan, veth); err != nil {
		return fmt.Errorf("wiring the outside namespace: %w", err)
	}
	if err := netlab.LinkSetup(wan, wanOutside, netip.Prefix{}, wanBridge); err != nil {
		return fmt.Errorf("wiring the outside namespace: %w", err)
	}
	if err := netlab.LinkSetup(out, hostUplink, outsideAddr, ""); err != nil {
		return fmt.Errorf("wiring the outside namespace: %w", err)
	}
	l.log.Info("outside namespace ready", "namespace", ns, "address", outsideAddr)
	return nil
}

// host returns the state of host i, or nil.
func (l *Lab) host(i int) *HostState {
	for k := range l.state.Hosts {
		if l.state.Hosts[k].Index == i {
			return &l.state.Hosts[k]
		}
	}
	return nil
}

// labFlags returns the flags the lab appends to a host's daemon command line.
func (l *Lab) labFlags(h *HostState) []string {
	flags := []string{
		"-etcd-endpoints", EtcdEndpoint(),
		"-etcd-prefix", l.state.EtcdPrefix,
		"-iface", h.Dev,
		"-subnet-file", h.SubnetFile,
	}
	if h.HealthPort > 0 {
		flags = append(flags, "-healthz-ip", "127.0.0.1", "-healthz-port",
			strconv.Itoa(h.HealthPort))
	}
	if h.DaemonBridge {
		flags = append(flags, "-bridge", podBridge)
	}
	return flags
}

// startDaemon starts host i's daemon for the first time.
func (l *Lab) startDaemon(i int) error {
	h := l.host(i)
	if err := os.Remove(h.SubnetFile); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("host h%d: %w", i, err)
	}
	return l.spawnDaemon(h, l.opts.commandLine(i, l.labFlags(h)))
}

func (l *Lab) spawnDaemon(h *HostState, argv []string) error {
	p, cmd, err := startProc(h.NS, argv, h.Daemon.Log)
	if err != nil {
		return fmt.Errorf("daemon of %s: %w", h.Name(), err)
	}
	h.Daemon, l.cmds[h.Index] = p, cmd
	l.log.Debug("daemon started", "host", h.Name(), "pid", p.PID, "argv", strings.Join(argv, " "))
	return l.save()
}

// waitAllReady waits for every host's daemon at once and returns their subnet.env files in
// host order.
func (l *Lab) waitAllReady(ctx context.Context) ([]subnet.Env, error) {
	envs := make([]subnet.Env, len(l.state.Hosts))
	errs := make([]error, len(l.state.Hosts))
	var wg sync.WaitGroup
	for k := range l.state.Hosts {
		wg.Add(1)
		go func() {
			defer wg.Done()
			envs[k], errs[k] = l.waitReady(ctx, &l.state.Hosts[k], fileID{})
		}()
	}
	wg.Wait()
	if err := ctx.Err(); err != nil {
		return nil, err
	}

	// Hosts tend to fail alike: show one in full and count the rest.
	var failed []error
	for _, err := range errs {
		if err != nil {
			failed = append(failed, err)
		}
	}
	switch len(failed) {
	case 0:
		return envs, nil
	case 1:
		return nil, failed[0]
	default:
		return nil, fmt.Errorf("%w\n(and %d more hosts failed)", failed[0], len(failed)-1)
	}
}

// fileID tells one version of a file from another: the daemons replace subnet.env by
// renaming a new file over it.
type fileID struct {
	ino   uint64
	mtime time.Time
}

func statID(path string) fileID {
	fi, err := os.Stat(path)
	if err != nil {
		return fileID{}
	}
	return fileID{ino: fi.Sys().(*syscall.Stat_t).Ino, mtime: fi.ModTime()}
}

// waitReady waits until host h's daemon has written a subnet.env other than before with a
// subnet in it and, if it serves /readyz, says it is ready there. It fails early when the
// daemon exits.
func (l *Lab) waitReady(ctx context.Context, h *HostState, before fileID) (subnet.Env, error) {
	deadline := time.Now().Add(l.opts.ReadyTimeout)
	client := h.httpClient()
	for {
		if !h.Daemon.alive() {
			return subnet.Env{}, fmt.Errorf("daemon of %s exited (or replaced its command "+
				"line); its log %s ends:\n%s",
				h.Name(), h.Daemon.Log, tailFile(h.Daemon.Log, 10))
		}
		id := statID(h.SubnetFile)
		if id != (fileID{}) && id != before {
			env, err := subnet.ReadEnvFile(h.SubnetFile)
			if err == nil && env.Subnet.IsValid() && readyz(ctx, client, h) != notReady {
				l.log.Info("host ready", "host", h.Name(), "subnet", env.Subnet, "mtu", env.MTU,
					"pid", h.Daemon.PID)
				return env, nil
			}
		}
		if time.Now().After(deadline) {
			return subnet.Env{}, fmt.Errorf("daemon of %s: not ready within %s (no subnet in "+
				"%s, or /readyz not 200); its log %s ends:\n%s", h.Name(), l.opts.ReadyTimeout,
				h.SubnetFile, h.Daemon.Log, tailFile(h.Daemon.Log, 20))
		}
		select {
		case <-ctx.Done():
			return subnet.Env{}, ctx.Err()
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// readiness is what a daemon's /readyz says.
type readiness int

const (
	ready readiness = iota
	notReady
	// noHealth means the daemon has no readiness endpoint: nothing listens on the health
	// port, or it does not know /readyz. subnet.env alone tells.
	noHealth
)

// httpClient returns a client whose connections start inside the host's namespace.
func (h *HostState) httpClient() *http.Client {
	return &http.Client{
		Timeout: time.Second,
		Transport: &http.Transport{
			DialContext:       netlab.Dialer(h.NS),
			DisableKeepAlives: true,
		},
	}
}

func readyz(ctx context.Context, client *http.Client, h *HostState) readiness {
	if h.HealthPort <= 0 {
		return noHealth
	}
	url := fmt.Sprintf("http://127.0.0.1:%d/readyz", h.HealthPort)
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return notReady
	}
	resp, err := client.Do(req)
	if errors.Is(err, syscall.ECONNREFUSED) {
		return noHealth
	}
	if err != nil {
		return notReady
	}
	resp.Body.Close()
	switch resp.StatusCode {
	case http.StatusOK:
		return ready
	case http.StatusNotFound:
		// flanneld before v0.28.x serves /healthz alone.
		return noHealth
	default:
		return notReady
	}
}

// addPods wires the pods of host i behind the bridge that carries the first address of the
// host's subnet: the daemon's bridge, checked, when it keeps one, or one the lab makes.
//
// Equivalent to, for each pod J: ip netns add L-hI-pJ;
// ip -n L-hI link add veth-pJ mtu <mtu> type veth peer name eth0 netns L-hI-pJ;
// ip -n L-hI link set veth-pJ master cni0 up;
// ip -n L-hI-pJ addr add <subnet + 10 + J> dev eth0; ip -n L-hI-pJ route add default via
// <subnet + 1>
func (l *Lab) addPods(i int, env subnet.Env) error {
	if l.opts.Pods == 0 {
		return nil
	}
	h := l.host(i)
	gw := subnet.FirstHost(env.Subnet)
	hh, err := netlab.NewHandle(h.NS)
	if err != nil {
		return err
	}
	defer hh.Close()
	if h.DaemonBridge {
		err = checkBridge(hh, env.MTU, gw)
	} else {
		_, err = netlab.EnsureBridge(hh, podBridge, env.MTU, gw)
	}
	if err != nil {
		return fmt.Errorf("pod bridge of %s: %w", h.Name(), err)
	}

	for j := 1; j <= l.opts.Pods; j++ {
		pod := PodState{
			Index:   j,
			NS:      PodNS(l.state.Name, i, j),
			Addr:    netip.PrefixFrom(addrAdd(env.Subnet.Addr(), 10+j), env.Subnet.Bits()),
			Gateway: gw.Addr(),
		}
		if err := addPod(h, pod, env.MTU); err != nil {
			return fmt.Errorf("pod %s: %w", pod.NS, err)
		}
		h.Pods = append(h.Pods, pod)
		if err := l.save(); err != nil {
			return err
		}
	}
	return nil
}

// checkBridge verifies the bridge a daemon keeps for the pods: a bridge with the gateway
// address and the overlay's MTU.
func checkBridge(h *netlink.Handle, mtu int, gw netip.Prefix) error {
	link, err := h.LinkByName(podBridge)
	if err != nil {
		return fmt.Errorf("the daemon keeps no bridge %s: %w", podBridge, err)
	}
	if link.Type() != "bridge" || link.Attrs().MTU != mtu {
		return fmt.Errorf("%s is a %s with MTU %d, want a bridge with FLANNEL_MTU %d",
			podBridge, link.Type(), link.Attrs().MTU, mtu)
	}
	addrs, err := netlab.Retry(func() ([]netlink.Addr, error) {
		return h.AddrList(link, netlink.FAMILY_V4)
	})
	if err != nil {
		return fmt.Errorf("reading addresses of %s: %w", podBridge, err)
	}
	for _, a := range addrs {
		if a.IPNet.String() == gw.String() {
			return nil
		}
	}
	return fmt.Errorf("%s lacks the gateway address %s", podBridge, gw)
}

func addPod(h *HostState, pod PodState, mtu int) error {
	if err := netlab.Create(pod.NS); err != nil {
		return err
	}
	host, err := netlab.NewHandle(h.NS)
	if err != nil {
		return err
	}
	defer host.Close()
	ph, err := netlab.NewHandle(pod.NS)
	if err != nil {
		return err
	}
	defer ph.Close()

	hostEnd := fmt.Sprintf("veth-p%d", pod.Index)
	veth := netlab.Veth{Name: hostEnd, PeerName: podInterface, PeerNS: pod.NS, MTU: mtu}
	if err := netlab.AddVeth(host, veth); err != nil {
		return err
	}
	if err := netlab.LinkSetup(host, hostEnd, netip.Prefix{}, podBridge); err != nil {
		return err
	}
	if err := netlab.LinkSetup(ph, podInterface, pod.Addr, ""); err != nil {
		return err
	}
	return netlab.DefaultRoute(ph, pod.Gateway)
}

// Open finds the lab called name again from its state directory, for status, exec and
// daemon control from a later command. Processes it did not start itself are stopped by
// PID, after checking that the PID still runs the recorded command.
func Open(stateDir, name string, log *slog.Logger) (*Lab, error) {
	if stateDir == "" {
		stateDir = DefaultStateDir
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	s, err := LoadState(stateDir, name)
	if err != nil {
		return nil, err
	}
	o := Options{
		Name:         s.Name,
		Backend:      s.Backend,
		VNI:          s.VNI,
		Network:      s.Network,
		EtcdPrefix:   s.EtcdPrefix,
		StateDir:     stateDir,
		Log:          log,
		ReadyTimeout: 60 * time.Second,
	}
	if len(s.Hosts) > 0 {
		o.Hosts = len(s.Hosts)
		o.Pods = len(s.Hosts[0].Pods)
	}
	return &Lab{
		opts:  o,
		state: s,
		dir:   labDir(stateDir, name),
		log:   log.With("lab", name),
		cmds:  map[int]*exec.Cmd{},
	}, nil
}

// Name returns the lab's name.
func (l *Lab) Name() string { return l.state.Name }

// State returns a copy of what the lab records about itself.
func (l *Lab) State() State {
	s := *l.state
	s.Hosts = slices.Clone(s.Hosts)
	for k := range s.Hosts {
		s.Hosts[k].Pods = slices.Clone(s.Hosts[k].Pods)
	}
	return s
}

// Client returns a client of the lab's etcd, made on first use and closed by Close or
// Down.
func (l *Lab) Client() (*clientv3.Client, error) {
	if l.etcd == nil {
		c, err := newEtcdClient(l.state.Name)
		if err != nil {
			return nil, err
		}
		l.etcd = c
	}
	return l.etcd, nil
}

// Close lets go of the lab without stopping it: the etcd client is closed, the processes
// and namespaces stay.
func (l *Lab) Close() error {
	if l.etcd == nil {
		return nil
	}
	err := l.etcd.Close()
	l.etcd = nil
	return err
}

// Leases returns the leases in the lab's etcd, in key order.
func (l *Lab) Leases(ctx context.Context) ([]subnet.Lease, error) {
	c, err := l.Client()
	if err != nil {
		return nil, err
	}
	prefix := path.Join(l.state.EtcdPrefix, "subnets") + "/"
	resp, err := c.Get(ctx, prefix, clientv3.WithPrefix(), clientv3.WithSort(clientv3.SortByKey,
		clientv3.SortAscend))
	if err != nil {
		return nil, fmt.Errorf("reading leases of lab %s: %w", l.state.Name, err)
	}
	leases := make([]subnet.Lease, 0, len(resp.Kvs))
	for _, kv := range resp.Kvs {
		lease, err := subnet.DecodeLease(strings.TrimPrefix(string(kv.Key), prefix), kv.Value)
		if err != nil {
			l.log.Debug("skipping a lease key", "key", string(kv.Key), "error", err)
			continue
		}
		lease.EtcdLease = kv.Lease
		lease.ModRevision = kv.ModRevision
		leases = append(leases, lease)
	}
	return leases, nil
}

// HostLease returns the lease of host i: the one whose PublicIP is the host's underlay
// address.
func (l *Lab) HostLease(ctx context.Context, i int) (subnet.Lease, error) {
	h := l.host(i)
	if h == nil {
		return subnet.Lease{}, fmt.Errorf("lab %s has no host h%d", l.state.Name, i)
	}
	leases, err := l.Leases(ctx)
	if err != nil {
		return subnet.Lease{}, err
	}
	for _, lease := range leases {
		if lease.Attrs.PublicIP == h.Underlay.Addr() {
			return lease, nil
		}
	}
	return subnet.Lease{}, fmt.Errorf("lab %s: no lease with PublicIP %s of %s", l.state.Name,
		h.Underlay.Addr(), h.Name())
}

// StopDaemon sends sig to host i's daemon and waits until it has exited; a SIGTERM that is
// not obeyed within 10 s is followed by SIGKILL. A daemon that is not running is stopped.
// Kernel state the daemon left (devices, routes) and its lease stay.
func (l *Lab) StopDaemon(ctx context.Context, i int, sig syscall.Signal) error {
	h := l.host(i)
	if h == nil {
		return fmt.Errorf("lab %s has no host h%d", l.state.Name, i)
	}
	cmd := l.cmds[i]
	delete(l.cmds, i)
	if sig == syscall.SIGTERM {
		return h.Daemon.stop(ctx, cmd, 10*time.Second)
	}
	if err := h.Daemon.signal(sig); err != nil {
		return err
	}
	gone := h.Daemon.waitGone(ctx, 10*time.Second)
	h.Daemon.reap(cmd)
	if !gone {
		return fmt.Errorf("daemon of %s (pid %d): still running 10s after %s", h.Name(),
			h.Daemon.PID, sig)
	}
	l.log.Info("daemon stopped", "host", h.Name(), "pid", h.Daemon.PID, "signal", sig)
	return nil
}

// StartDaemon starts host i's daemon again with the command line it had, or for the
// first time in a lab built with Options.StartLater, and waits until it has written
// subnet.env anew and is ready. It is an error if the daemon still runs.
func (l *Lab) StartDaemon(ctx context.Context, i int) error {
	h := l.host(i)
	if h == nil {
		return fmt.Errorf("lab %s has no host h%d", l.state.Name, i)
	}
	if h.Daemon.alive() {
		return fmt.Errorf("daemon of %s still runs as pid %d", h.Name(), h.Daemon.PID)
	}
	before := statID(h.SubnetFile)
	if len(h.Daemon.Argv) == 0 {
		// Only the Lab that built the hosts knows their daemon's command line.
		if l.opts.daemonArgv(i)[0] == "" {
			return fmt.Errorf("daemon of %s was never started, and lab %s was opened "+
				"again without its options", h.Name(), l.state.Name)
		}
		if err := l.startDaemon(i); err != nil {
			return err
		}
	} else if err := l.spawnDaemon(h, h.Daemon.Argv); err != nil {
		return err
	}
	_, err := l.waitReady(ctx, h, before)
	return err
}

// Down stops the lab's processes and removes its namespaces and state; see the function
// Down.
func (l *Lab) Down(ctx context.Context) error {
	l.Close()
	return down(ctx, l.opts.StateDir, l.state.Name, l.state, l.cmds, l.log)
}

// Down removes the lab called name, whatever is left of it: it stops the processes its
// state records (after checking each PID still runs the recorded command) and any other
// process inside its namespaces, deletes every namespace of the lab by name, and removes
// its state directory. A lab that does not exist is removed.
func Down(ctx context.Context, stateDir, name string, log *slog.Logger) error {
	if stateDir == "" {
		stateDir = DefaultStateDir
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	if err := CheckName(name); err != nil {
		return err
	}
	log = log.With("lab", name)
	s, err := LoadState(stateDir, name)
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		// A damaged state file still leaves the namespaces to find by name.
		log.Warn("ignoring the lab's state", "error", err)
	}
	return down(ctx, stateDir, name, s, nil, log)
}

func down(
	ctx context.Context,
	stateDir, name string,
	s *State,
	cmds map[int]*exec.Cmd,
	log *slog.Logger,
) error {
	var errs []error

	// Daemons first, then etcd, so that no daemon sees its datastore go.
	if s != nil {
		var wg sync.WaitGroup
		herrs := make([]error, len(s.Hosts))
		for k, h := range s.Hosts {
			wg.Add(1)
			go func() {
				defer wg.Done()
				herrs[k] = h.Daemon.stop(ctx, cmds[h.Index], 10*time.Second)
			}()
		}
		wg.Wait()
		errs = append(errs, herrs...)
		errs = append(errs, s.Etcd.stop(ctx, cmds[0], 10*time.Second))
		log.Info("processes stopped")
	}

	all, err := netlab.List()
	if err != nil {
		errs = append(errs, err)
	}
	var mine []string
	for _, n := range all {
		if OwnsNamespace(name, n) {
			mine = append(mine, n)
		}
	}
	leftovers, err := procsInNamespaces(mine)
	if err != nil {
		errs = append(errs, err)
	}
	for _, p := range leftovers {
		log.Info("stopping a process left in the lab", "pid", p.PID,
			"argv", strings.Join(p.Argv, " "))
		errs = append(errs, p.stop(ctx, nil, 5*time.Second))
	}

	// Pods before hosts before the wan, the reverse of building.
	slices.SortFunc(mine, func(a, b string) int { return len(b) - len(a) })
	for _, n := range mine {
		if err := netlab.Delete(n); err != nil {
			errs = append(errs, err)
		}
	}
	if len(mine) > 0 {
		log.Info("namespaces deleted", "count", len(mine))
	}

	if err := os.RemoveAll(labDir(stateDir, name)); err != nil {
		errs = append(errs, fmt.Errorf("removing state of lab %s: %w", name, err))
	}
	// The parent goes too once the last lab is gone; a non-empty one stays.
	os.Remove(stateDir)
	return errors.Join(errs...)
}

// Labs returns the names of the labs that have a state directory under stateDir.
func Labs(stateDir string) ([]string, error) {
	if stateDir == "" {
		stateDir = DefaultStateDir
	}
	entries, err := os.ReadDir(stateDir)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("listing labs: %w", err)
	}
	var names []string
	for _, e := range entries {
		if e.IsDir() && CheckName(e.Name()) == nil {
			names = append(names, e.Name())
		}
	}
	return names, nil
}
