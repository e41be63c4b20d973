package overlay

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/vishvananda/netns"
	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/weftnet/weft/backend"
	"github.com/weftnet/weft/bridge"
	"github.com/weftnet/weft/subnet"
)

// Restart delays for work that failed while the daemon runs: re-registering the
// network after the lease changed, the data plane, rewriting subnet.env.
const (
	minRetryDelay = time.Second
	maxRetryDelay = 30 * time.Second
)

// Run is the daemon. In flanneld's order it connects to etcd, reads the previous
// subnet.env, serves health checks, waits for the network config, chooses the external
// interface, registers the backend (which acquires the lease), installs the masquerade
// and forward rules and the blackhole route and keeps the bridge as configured, writes
// the runtime files and subnet.env and becomes ready, starts the data plane on the peer
// leases, and keeps the lease alive. When the lease has to be acquired again and comes
// back with another subnet, the data plane and the host side are stopped, set up again
// for the new lease and started again; the daemon does not exit for that.
//
// Under systemd (Type=notify) Run reports each stage as STATUS=, sends READY=1 once the
// data plane has taken the first full listing of the peers (or there are none), and,
// when the unit has WatchdogSec, sends WATCHDOG=1 at half that period for as long as its
// main loop runs.
//
// Run works in the network namespace of the thread that calls it: the interfaces it
// chooses from, the rules, the bridge and the backend's devices are that namespace's (a
// caller that wants another than the process's locks its OS thread into it first). Its
// etcd traffic goes wherever the process's other threads are.
//
// Run returns nil once ctx is cancelled, at any stage, after every goroutine it started
// has returned. The lease stays in etcd and the kernel state stays in place, so that a
// restarted daemon, or peers meanwhile, find them. Any other return is an error that
// names what failed: the configuration, an etcd TLS file, the health listener, the
// interface, the backend type, registering the network (including running out of
// subnets), or installing the rules or the bridge. While etcd does not answer, Run
// waits for it, at every stage.
func Run(ctx context.Context, cfg Config) error {
	if err := cfg.validate(); err != nil {
		return err
	}
	d := &daemonState{cfg: cfg}
	d.cfg.Log = slog.New(newTapHandler(cfg.Log.Handler(), &d.health.Metrics))
	d.notify = newNotifier(d.cfg.Log.With("subsystem", "systemd"))
	err := d.run(ctx)
	if ctx.Err() != nil {
		if err != nil && !errors.Is(err, context.Canceled) {
			d.cfg.Log.Debug("error while stopping", "err", err)
		}
		return nil
	}
	return err
}

// daemonState is one run of the daemon.
type daemonState struct {
	cfg    Config
	health Health
	notify *notifier
	// ns is the network namespace the daemon works in: the one Run was called in.
	ns netns.NsHandle

	// looping is set while the main loop serves; beat is when it last did, in Unix
	// nanoseconds. The watchdog is fed while the daemon starts, or while beat is recent.
	looping atomic.Bool
	beat    atomic.Int64
}

// setState records what the daemon is doing, for /status and systemd's STATUS=.
func (d *daemonState) setState(s string) {
	d.health.setState(s)
	d.notify.setStatus(s)
}

// alive reports whether the daemon makes progress, for the watchdog: it is starting or
// registering again, or its main loop turned within the last period.
func (d *daemonState) alive(period time.Duration) bool {
	if !d.looping.Load() {
		return true
	}
	return time.Since(time.Unix(0, d.beat.Load())) < 2*period
}

func (d *daemonState) run(ctx context.Context) error {
	log := d.cfg.Log.With("subsystem", "daemon")
	d.health.mu.Lock()
	d.health.started = time.Now()
	d.health.mu.Unlock()

	ns, err := currentNetNS()
	if err != nil {
		return err
	}
	defer ns.Close()
	d.ns = ns

	for _, w := range d.cfg.Etcd.Warnings() {
		log.Warn(w)
	}
	endpoints := joinEndpoints(d.cfg.Etcd.Endpoints)

	prev, err := subnet.ReadEnvFile(d.cfg.SubnetFile)
	if err != nil {
		log.Warn("ignoring parts of the previous subnet.env", "err", err)
	}
	if prev.Subnet.IsValid() {
		log.Info("previous subnet.env names a subnet", "path", d.cfg.SubnetFile,
			"subnet", prev.Subnet)
	}

	// The etcd client, once made, is closed after every goroutine using it has stopped.
	var cli *clientv3.Client
	defer func() {
		if cli != nil {
			cli.Close()
		}
	}()

	// Everything started from here on is stopped by cancel and waited for by wg.
	ctx, cancel := context.WithCancel(ctx)
	var wg sync.WaitGroup
	defer wg.Wait()
	defer cancel()
	defer func() {
		d.setState("stopping")
		d.notify.stopping()
	}()

	if d.cfg.HealthAddr != "" {
		hs, err := listenHealth(d.cfg.HealthAddr, &d.health,
			d.cfg.Log.With("subsystem", "health"))
		if err != nil {
			return err
		}
		wg.Go(func() {
			if err := hs.serve(ctx); err != nil {
				log.Error("health checks stopped", "err", err)
			}
		})
	}
	watchdog := watchdogInterval()
	if watchdog > 0 {
		log.Info("feeding systemd's watchdog", "every", watchdog)
		wg.Go(func() {
			d.notify.runWatchdog(ctx, watchdog, func() bool { return d.alive(watchdog) })
		})
	}

	d.setState("connecting to etcd at " + endpoints)
	if err := waitReachable(ctx, d.cfg.Etcd, log, d.setState); err != nil {
		return err
	}
	cli, err = subnet.NewEtcdClient(d.cfg.Etcd)
	if err != nil {
		return err
	}
	reg := subnet.NewRegistry(cli, d.cfg.Etcd.Prefix, d.cfg.Log)

	d.setState("waiting for the network config at " + reg.ConfigKey() + " in etcd " +
		endpoints)
	netCfg, err := reg.WaitConfig(ctx)
	if err != nil {
		return err
	}
	log.Info("network config", "network", netCfg.Network, "subnet-len", netCfg.SubnetLen,
		"ipv6-network", netCfg.IPv6Network, "backend", netCfg.BackendType)
	d.health.setNetwork(netCfg)

	spec := d.cfg.Interface
	spec.IPv6 = netCfg.EnableIPv6
	ext, err := chooseExternal(d.ns, spec, d.cfg.Log.With("subsystem", "iface"))
	if err != nil {
		return err
	}
	log.Info("using interface", "iface", ext.Name, "mtu", ext.MTU, "addr", ext.IfaceAddr,
		"public-ip", ext.ExtAddr)

	factory, err := d.cfg.Backends.Lookup(netCfg.BackendType)
	if err != nil {
		return err
	}
	be, err := factory(backend.Params{
		Ext: ext,
		Log: d.cfg.Log.With("subsystem", "backend"),
	})
	if err != nil {
		return fmt.Errorf("creating backend %s: %w", netCfg.BackendType, err)
	}

	mgr := subnet.NewManager(reg, subnet.ManagerOptions{
		Config:      netCfg,
		Prev:        prev,
		RenewMargin: d.cfg.RenewMargin,
		Log:         d.cfg.Log,
	})
	d.health.Metrics.setLeaseSource(netCfg.BackendType, mgr.Lease)
	leases := &patientLeases{
		mgr:       mgr,
		endpoints: endpoints,
		timeout:   d.cfg.acquireTimeout,
		log:       log,
		retried:   &d.health.Metrics.acquireRetries,
		status:    d.setState,
	}
	if leases.timeout <= 0 {
		leases.timeout = defaultAcquireTimeout
	}
	d.setState("registering the network: acquiring a lease")
	nw, host, err := d.register(ctx, be, netCfg, leases, prev)
	if err != nil {
		return err
	}
	defer func() { host.stop() }()

	filesErr := d.writeFiles(netCfg, nw)
	peers := peerSource{cli: cli, reg: reg, mgr: mgr}
	plane := d.startDataPlane(ctx, peers, nw)
	defer func() { plane.stop() }()
	d.setState("syncing peers for lease " + nw.Lease().String())

	leaseDone := make(chan error, 1)
	wg.Go(func() { leaseDone <- mgr.Run(ctx) })

	var filesRetry <-chan time.Time
	if filesErr != nil {
		filesRetry = time.After(minRetryDelay)
	}
	beat := time.NewTicker(time.Second)
	if watchdog > 0 {
		beat.Reset(min(watchdog, time.Second))
	}
	defer beat.Stop()
	d.beat.Store(time.Now().UnixNano())
	d.looping.Store(true)
	for {
		select {
		case <-ctx.Done():
			return ctx.Err()

		case <-beat.C:
			d.beat.Store(time.Now().UnixNano())

		case <-plane.synced:
			plane.synced = nil
			d.health.setPeersSynced(time.Now())
			log.Info("peers synced", "peers", d.health.Metrics.peers.Load())
			d.maybeReady(nw, netCfg)
			if d.cfg.Synced != nil {
				d.cfg.Synced()
				d.cfg.Synced = nil
			}

		case err := <-leaseDone:
			if err == nil {
				err = errors.New("stopped without an error")
			}
			return fmt.Errorf("keeping lease %s: %w", nw.Lease(), err)

		case <-filesRetry:
			filesRetry = nil
			if err := d.writeFiles(netCfg, nw); err != nil {
				filesRetry = time.After(maxRetryDelay)
				continue
			}
			d.maybeReady(nw, netCfg)

		case l := <-mgr.Changes():
			old := nw.Lease()
			if subnet.SameSubnets(&l, old) {
				log.Info("lease acquired again with the same subnet", "lease", l.String())
				continue
			}
			log.Info("lease acquired again with another subnet; registering the network "+
				"again", "old", old.String(), "new", l.String())
			d.setState("registering the network again for lease " + l.String())
			d.health.SetReady(false)
			d.health.Metrics.subnetChanges.Add(1)
			plane.stop()
			host.stop()
			oldEnv := subnet.Env{Subnet: old.Subnet, IPv6Subnet: old.IPv6Subnet}
			d.looping.Store(false)
			newNW, newHost, err := d.reregister(ctx, be, netCfg, leases, oldEnv)
			d.beat.Store(time.Now().UnixNano())
			d.looping.Store(true)
			if err != nil {
				return err
			}
			nw, host = newNW, newHost
			filesRetry = nil
			if err := d.writeFiles(netCfg, nw); err != nil {
				filesRetry = time.After(minRetryDelay)
			}
			plane = d.startDataPlane(ctx, peers, nw)
			d.setState("syncing peers for lease " + nw.Lease().String())
		}
	}
}

// maybeReady tells systemd the daemon is ready, and says so in its state, once both
// subnet.env is written and the data plane has synced the peers.
func (d *daemonState) maybeReady(nw backend.Network, netCfg *subnet.Config) {
	d.health.mu.Lock()
	synced := !d.health.peersSynced.IsZero()
	d.health.mu.Unlock()
	if !synced || !d.health.Ready() {
		return
	}
	status := fmt.Sprintf("running: lease %s, backend %s", nw.Lease(), netCfg.BackendType)
	d.health.setState(status)
	d.notify.setReady(status)
}

// register registers the network with the backend, which acquires the lease, and then
// sets up the host side for that lease. prev is the lease the host had before.
func (d *daemonState) register(ctx context.Context, be backend.Backend,
	netCfg *subnet.Config, lm backend.LeaseManager, prev subnet.Env) (
	backend.Network, *hostState, error) {
	nw, err := be.RegisterNetwork(ctx, netCfg, lm)
	if err != nil {
		return nil, nil, fmt.Errorf("registering network %s with backend %s: %w",
			netCfg.Network, netCfg.BackendType, err)
	}
	d.cfg.Log.Info("network registered", "subsystem", "daemon",
		"lease", nw.Lease().String(), "mtu", nw.MTU())
	d.health.Metrics.setDataPath(nw)

	host, err := d.setupHost(ctx, hostSetup{net: netCfg, lease: nw.Lease(), mtu: nw.MTU(),
		prev: prev})
	if err != nil {
		return nil, nil, err
	}
	return nw, host, nil
}

// reregister is register after the lease changed, retried with a growing delay until it
// works or ctx is done.
func (d *daemonState) reregister(ctx context.Context, be backend.Backend,
	netCfg *subnet.Config, lm backend.LeaseManager, prev subnet.Env) (
	backend.Network, *hostState, error) {
	log := d.cfg.Log.With("subsystem", "daemon")
	delay := minRetryDelay
	for {
		nw, host, err := d.register(ctx, be, netCfg, lm, prev)
		if err == nil {
			return nw, host, nil
		}
		if ctx.Err() != nil {
			return nil, nil, ctx.Err()
		}
		log.Error("registering the network again; retrying", "err", err, "in", delay)
		if err := sleep(ctx, delay); err != nil {
			return nil, nil, err
		}
		delay = min(2*delay, maxRetryDelay)
	}
}

// writeFiles writes the runtime files that are configured and then subnet.env, and
// when all of them are written marks the daemon ready. A failure is logged and leaves
// the daemon not ready.
func (d *daemonState) writeFiles(netCfg *subnet.Config, nw backend.Network) error {
	log := d.cfg.Log.With("subsystem", "daemon")
	l := nw.Lease()
	env := subnet.Env{MTU: nw.MTU(), IPMasq: d.cfg.IPMasq}
	if netCfg.EnableIPv4 {
		env.Network, env.Subnet = netCfg.Network, l.Subnet
	}
	if netCfg.EnableIPv6 {
		env.IPv6Network, env.IPv6Subnet = netCfg.IPv6Network, l.IPv6Subnet
	}

	err := d.writeRuntimeFiles(env)
	if err == nil {
		err = subnet.WriteEnvFile(d.cfg.SubnetFile, env)
	}
	if err != nil {
		d.health.SetReady(false)
		log.Error("writing files; not ready until they are written", "err", err)
		return err
	}
	log.Info("wrote subnet.env", "path", d.cfg.SubnetFile, "subnet", l.Subnet,
		"mtu", env.MTU)
	d.health.SetReady(true)
	return nil
}

// writeRuntimeFiles writes the files for Docker, hyperd and the CNI flannel plugin that
// are configured, and logs each that changed.
func (d *daemonState) writeRuntimeFiles(env subnet.Env) error {
	log := d.cfg.Log.With("subsystem", "daemon")
	if d.cfg.DockerOpts != "" {
		changed, err := bridge.WriteDockerOpts(d.cfg.DockerOpts, env,
			bridge.DockerOptions{Key: d.cfg.DockerOptsKey})
		if err != nil {
			return err
		}
		if changed {
			log.Info("wrote Docker options; dockerd reads them when it starts",
				"path", d.cfg.DockerOpts)
		}
	}
	if d.cfg.HyperdConfig != "" {
		changed, err := bridge.WriteHyperdConfig(d.cfg.HyperdConfig, bridge.HyperdConfig{
			Bridge:          d.cfg.Bridge,
			BridgeIP:        subnet.FirstHost(env.Subnet),
			DisableIptables: d.cfg.IPMasq,
		})
		if err != nil {
			return err
		}
		if changed {
			log.Info("wrote hyperd config; a running hyperd must be restarted to use it",
				"path", d.cfg.HyperdConfig)
		}
	}
	if d.cfg.CNIConf != "" {
		envFile, err := filepath.Abs(d.cfg.SubnetFile)
		if err != nil {
			return fmt.Errorf("making the subnet file path %s absolute: %w",
				d.cfg.SubnetFile, err)
		}
		changed, err := bridge.WriteCNIConflist(d.cfg.CNIConf,
			bridge.CNIConfig{SubnetFile: envFile, Bridge: d.cfg.Bridge})
		if err != nil {
			return err
		}
		if changed {
			log.Info("wrote CNI config", "path", d.cfg.CNIConf)
		}
	}
	return nil
}

// dataPlane is a running Network.Run fed by the manager's peer watch.
type dataPlane struct {
	cancel context.CancelFunc
	done   chan struct{}
	// synced is closed once the backend has taken the first full listing of the peers,
	// or a listing found none; the daemon sets it to nil once it has seen it.
	synced <-chan struct{}
}

// peerSource is where the data plane's peer leases come from.
type peerSource struct {
	cli *clientv3.Client
	reg *subnet.Registry
	mgr *subnet.Manager
}

// startDataPlane runs nw on the peer leases until ctx is done or stop is called. When
// the watch or the backend ends on its own, both are started again after a delay, so
// that the backend gets a fresh snapshot of the peers.
func (d *daemonState) startDataPlane(ctx context.Context, src peerSource,
	nw backend.Network) *dataPlane {
	log := d.cfg.Log.With("subsystem", "daemon")
	ctx, cancel := context.WithCancel(ctx)
	synced := make(chan struct{})
	var once sync.Once
	markSynced := func() { once.Do(func() { close(synced) }) }
	p := &dataPlane{cancel: cancel, done: make(chan struct{}), synced: synced}
	d.health.setPeersSynced(time.Time{})

	var wg sync.WaitGroup
	// The watch delivers nothing at all when there are no peers: a listing of its own
	// tells that case apart.
	wg.Go(func() {
		n, err := countPeers(ctx, src)
		switch {
		case err != nil:
			log.Debug("counting peer leases; waiting for the watch instead", "err", err)
		case n == 0:
			markSynced()
		}
	})
	wg.Go(func() {
		delay := minRetryDelay
		for {
			err := runDataPlaneOnce(ctx, src.mgr, nw, &d.health.Metrics, markSynced)
			if ctx.Err() != nil {
				return
			}
			d.health.Metrics.planeRestarts.Add(1)
			log.Error("data plane stopped; starting it again", "err", err, "in", delay)
			if sleep(ctx, delay) != nil {
				return
			}
			delay = min(2*delay, maxRetryDelay)
		}
	})
	go func() {
		wg.Wait()
		close(p.done)
	}()
	return p
}

// countPeers returns how many leases in etcd the peer watch would deliver: every valid
// lease except those on the held subnet or carrying this host's PublicIP, which
// subnet.Manager.WatchPeers leaves out too.
func countPeers(ctx context.Context, src peerSource) (int, error) {
	own := src.mgr.Lease()
	if own == nil {
		return 0, errors.New("no lease held")
	}
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	prefix := src.reg.SubnetsPrefix()
	resp, err := src.cli.Get(ctx, prefix, clientv3.WithPrefix())
	if err != nil {
		return 0, fmt.Errorf("listing leases under %s: %w", prefix, err)
	}
	n := 0
	for _, kv := range resp.Kvs {
		l, err := subnet.DecodeLease(strings.TrimPrefix(string(kv.Key), prefix), kv.Value)
		if err != nil || l.Subnet == own.Subnet || l.Attrs.PublicIP == own.Attrs.PublicIP {
			continue
		}
		n++
	}
	return n, nil
}

// stop stops the data plane and waits for it. Stopping twice is harmless.
func (p *dataPlane) stop() {
	p.cancel()
	<-p.done
}

// runDataPlaneOnce runs the peer watch and the backend until either ends, then stops
// the other and returns why they ended. The peer events pass through a counter on
// their way to the backend; synced is called once the backend has taken the first
// batch, the full listing of the peers.
func runDataPlaneOnce(ctx context.Context, mgr *subnet.Manager, nw backend.Network,
	m *Metrics, synced func()) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()

	watched := make(chan []subnet.Event)
	events := make(chan []subnet.Event)
	errc := make(chan error, 2)
	go func() {
		err := mgr.WatchPeers(ctx, watched)
		if err == nil {
			err = errors.New("ended")
		}
		errc <- fmt.Errorf("watching peer leases: %w", err)
	}()
	go func() {
		err := nw.Run(ctx, events)
		if err == nil {
			err = errors.New("ended")
		}
		errc <- fmt.Errorf("running the backend: %w", err)
	}()
	var relay sync.WaitGroup
	relay.Go(func() {
		count := newPeerCounter(m)
		for {
			var batch []subnet.Event
			select {
			case <-ctx.Done():
				return
			case batch = <-watched:
			}
			count.apply(batch)
			select {
			case <-ctx.Done():
				return
			case events <- batch:
			}
			synced()
		}
	})

	first := <-errc
	cancel()
	<-errc
	relay.Wait()
	return first
}

// sleep waits for d or until ctx is done, and then returns ctx.Err().
func sleep(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}
