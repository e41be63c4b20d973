package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"net/netip"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/vishvananda/netlink"
	clientv3 "go.etcd.io/etcd/client/v3"
	"golang.org/x/sys/unix"

	"github.com/weftnet/weft/backend/kernel"
	"github.com/weftnet/weft/internal/bench"
	"github.com/weftnet/weft/internal/metrics"
	"github.com/weftnet/weft/internal/netlab"
	"github.com/weftnet/weft/subnet"
)

// The control-plane benchmark's sizes: peers already in etcd at the daemon's start, new
// peers put one at a time, and peers put at once.
const (
	cpColdPeers  = 1000
	cpNewPeers   = 100
	cpBurstPeers = 1000
	// cpSubnetLen makes the lab's /16 hold 4,096 leases, room for every fake peer.
	cpSubnetLen = 28
	// cpSteady is how long the daemon is watched for writes with no lease changing.
	cpSteady = 10 * time.Second
)

// cpDaemon is another daemon command line to measure the same way after weftd, in the same
// run, for example flanneld: -cp.daemon /usr/bin/flanneld. Its figures carry its base
// name before their units, and the netlink writes, which only weftd counts, are left out.
var cpDaemon = flag.String("cp.daemon", "", "another daemon `command` to measure after weftd")

// BenchmarkControlPlane measures a real weftd with the vxlan backend fed by etcd: 1,000
// peer leases of fake hosts are in etcd before the daemon starts, and the benchmark
// reports, watching the host's namespace through netlink subscriptions:
//
//   - cold start: from the daemon's process start to the 1,000 routes, and to the 1,000
//     routes, neighbour and FDB entries, being in the kernel;
//   - the daemon's VmRSS and VmHWM with 1,000 peers programmed, and with 2,100, with
//     the parts of VmRSS: RssAnon and RssFile;
//   - new peer: 100 lease puts one at a time, each timed from the put returning to its
//     route appearing, p50 and p99, and the netlink writes each peer cost
//     (weft_netlink_writes_total);
//   - burst: 1,000 leases put at once in transactions of 100, until all are programmed;
//   - steady state: netlink writes over 10 s without lease changes, after a no-op renewal
//     of one peer's lease (the same value under a fresh etcd lease), and the memory
//     after it, once the Go runtime has had time to return the garbage of the bursts.
//
// Every iteration builds a lab of its own and takes about 30 s; run it once:
// go test ./e2e -run '^$' -bench ControlPlane -benchtime 1x -v
func BenchmarkControlPlane(b *testing.B) {
	other := strings.Fields(*cpDaemon)
	for range b.N {
		weftd := benchControlPlane(b, cpRun{})
		if len(other) == 0 {
			continue
		}
		r := cpRun{daemon: other, label: filepath.Base(other[0])}
		theirs := benchControlPlane(b, r)
		b.Logf("cold start, weftd against %s: %.2fx", r.label,
			float64(weftd)/float64(theirs))
		b.ReportMetric(float64(weftd)/float64(theirs), "cold-routes/"+r.label)
	}
	b.ReportMetric(0, "ns/op")
}

// cpRun is the daemon one control-plane run measures: weftd when daemon is empty.
type cpRun struct {
	daemon []string
	// label names the daemon's figures: "" for weftd's, whose units stand alone.
	label string
}

// unit returns the metric unit of a figure of r's daemon.
func (r cpRun) unit(u string) string {
	if r.label == "" {
		return u
	}
	return r.label + "-" + u
}

// what returns the description of a figure of r's daemon.
func (r cpRun) what(w string) string {
	if r.label == "" {
		return w
	}
	return r.label + ": " + w
}

// benchControlPlane measures one daemon and returns its cold start to all routes.
func benchControlPlane(b *testing.B, r cpRun) time.Duration {
	o := labOptions(b, "cp")
	o.Name = "wt-cp"
	if r.label != "" {
		o.Name = "wt-cp-other"
	}
	o.Backend, o.VNI, o.Hosts, o.SubnetLen = "vxlan", testVNI, 1, cpSubnetLen
	o.StartLater = true
	o.Log = nil
	o.Daemon = r.daemon
	weftd := len(r.daemon) == 0
	l := upLab(b, o)
	ctx := context.Background()
	c, err := l.Client()
	if err != nil {
		b.Fatal(err)
	}
	prefix := path.Join(l.State().EtcdPrefix, "subnets")
	network := l.State().Network

	// Peers 1 to 1,000 wait in etcd; the daemon takes a free subnet among the rest.
	cold := cpLeases(network, 1, cpColdPeers, netip.Prefix{})
	if err := putLeases(ctx, c, prefix, cold, 1); err != nil {
		b.Fatal(err)
	}
	ns := HostNS(l.Name(), 1)
	w := watchKernel(b, ns)

	start := time.Now()
	if err := l.StartDaemon(ctx, 1); err != nil {
		b.Fatal(err)
	}
	pid := l.State().Hosts[0].Daemon.PID
	routes, all := w.waitProgrammed(b, keysOf(b, cold), 30*time.Second)
	cold1000 := routes.Sub(start)
	reportDuration(b, r.what("cold start, 1,000 peers in etcd: process start to 1,000 routes"),
		cold1000, r.unit("cold-routes-ms"), "<= 700 ms (flanneld: 1,400 ms)")
	reportDuration(b, r.what("cold start: process start to 1,000 routes, neighbours and "+
		"FDB entries"), all.Sub(start), r.unit("cold-all-ms"), "<= 700 ms")
	reportMemory(b, r, pid, "at 1,000 peers", "")

	own, err := l.HostLease(ctx, 1)
	if err != nil {
		b.Fatal(err)
	}

	// New peers, one at a time: the next put waits until the last peer is in full.
	fresh := cpLeases(network, cpColdPeers+1, cpNewPeers, own.Subnet)
	var writes uint64
	if weftd {
		writes = netlinkWrites(b, l)
	}
	lat := make([]time.Duration, 0, len(fresh))
	for _, lease := range fresh {
		if err := putLeases(ctx, c, prefix, []subnet.Lease{lease}, 1); err != nil {
			b.Fatal(err)
		}
		put := time.Now()
		w.waitProgrammed(b, keysOf(b, []subnet.Lease{lease}), 5*time.Second)
		lat = append(lat, max(w.routeSeen(lease.Subnet).Sub(put), 0))
	}
	slices.Sort(lat)
	reportDuration(b, r.what("new peer with 1,000 present: put returned to route, p50"),
		lat[len(lat)/2], r.unit("new-peer-p50-ms"), "<= 10 ms")
	reportDuration(b, r.what("new peer: p99"), lat[len(lat)*99/100], r.unit("new-peer-p99-ms"),
		"<= 50 ms")
	if weftd {
		perPeer := float64(netlinkWrites(b, l)-writes) / float64(len(fresh))
		reportFigure(b, "new peer: netlink writes each", perPeer, "writes/new-peer", "3")
	}

	// A burst: every transaction at once.
	burst := cpLeases(network, cpColdPeers+cpNewPeers+1, cpBurstPeers, own.Subnet)
	start = time.Now()
	if err := putLeases(ctx, c, prefix, burst, 100); err != nil {
		b.Fatal(err)
	}
	routes, all = w.waitProgrammed(b, keysOf(b, burst), 30*time.Second)
	reportDuration(b, r.what("burst of 1,000 new leases: first put to all routes"),
		routes.Sub(start), r.unit("burst-routes-ms"), "<= 1,000 ms")
	reportDuration(b, r.what("burst: first put to all routes, neighbours and FDB entries"),
		all.Sub(start), r.unit("burst-all-ms"), "<= 1,000 ms")
	every := keysOf(b, slices.Concat(cold, fresh, burst))
	if n := w.count(every); n != [3]int{len(every), len(every), len(every)} {
		b.Errorf("the kernel holds %v routes, neighbours and FDB entries of the peers, "+
			"want %d each", n, len(every))
	}
	reportMemory(b, r, pid, "at 2,100 peers", "-2100")

	// Steady state, after a no-op renewal of a peer's lease.
	if weftd {
		writes = netlinkWrites(b, l)
	}
	if err := renewLease(ctx, c, prefix, cold[0]); err != nil {
		b.Fatal(err)
	}
	time.Sleep(cpSteady)
	if weftd {
		reportFigure(b, fmt.Sprintf("steady state, %v after a no-op renewal: netlink writes",
			cpSteady), float64(netlinkWrites(b, l)-writes), "steady-writes", "0")
	}
	reportMemory(b, r, pid, "at 2,100 peers after the steady state", "-settled")
	if err := w.failed(); err != nil {
		b.Errorf("watching the kernel: %v", err)
	}
	daemonsAlive(b, l)
	return cold1000
}

// cpLeases returns n vxlan leases of fake peers, numbered from first: peer k has the k-th
// /28 of network, public IP 198.18.16.0 + k and VtepMAC 6a:1e:00:00:<k>, and skip is left
// out (the host's own subnet), the next subnet taken instead.
func cpLeases(network netip.Prefix, first, n int, skip netip.Prefix) []subnet.Lease {
	out := make([]subnet.Lease, 0, n)
	for k := first; len(out) < n; k++ {
		sn := netip.PrefixFrom(addrAdd(network.Addr(), k<<(32-cpSubnetLen)), cpSubnetLen)
		if sn == skip {
			n++
			continue
		}
		data := fmt.Sprintf(`{"VNI":%d,"VtepMAC":"6a:1e:00:00:%02x:%02x"}`, testVNI, k>>8,
			k&0xff)
		out = append(out, subnet.Lease{
			Subnet: sn,
			Attrs: subnet.LeaseAttrs{
				PublicIP:    addrAdd(netip.MustParseAddr("198.18.16.0"), k),
				BackendType: "vxlan",
				BackendData: json.RawMessage(data),
			},
		})
	}
	return out
}

// putLeases writes leases below prefix, without etcd leases, perTxn to a transaction,
// every transaction at once.
func putLeases(ctx context.Context, c *clientv3.Client, prefix string, leases []subnet.Lease,
	perTxn int) error {
	var txns [][]clientv3.Op
	for chunk := range slices.Chunk(leases, perTxn) {
		ops := make([]clientv3.Op, 0, len(chunk))
		for _, lease := range chunk {
			v, err := json.Marshal(lease.Attrs)
			if err != nil {
				return err
			}
			ops = append(ops, clientv3.OpPut(path.Join(prefix, lease.Key()), string(v)))
		}
		txns = append(txns, ops)
	}

	var wg sync.WaitGroup
	errs := make([]error, len(txns))
	for k, ops := range txns {
		wg.Go(func() {
			if _, err := c.Txn(ctx).Then(ops...).Commit(); err != nil {
				errs[k] = fmt.Errorf("writing %d leases: %w", len(ops), err)
			}
		})
	}
	wg.Wait()
	return errors.Join(errs...)
}

// renewLease writes lease again with the same value under a fresh etcd lease of 24
// hours, as a host renewing its lease does.
func renewLease(ctx context.Context, c *clientv3.Client, prefix string, lease subnet.Lease) error {
	grant, err := c.Grant(ctx, int64((24 * time.Hour).Seconds()))
	if err != nil {
		return fmt.Errorf("granting an etcd lease: %w", err)
	}
	v, err := json.Marshal(lease.Attrs)
	if err != nil {
		return err
	}
	key := path.Join(prefix, lease.Key())
	if _, err := c.Put(ctx, key, string(v), clientv3.WithLease(grant.ID)); err != nil {
		return fmt.Errorf("renewing %s: %w", key, err)
	}
	return nil
}

// netlinkWrites returns weft_netlink_writes_total of host 1's daemon.
func netlinkWrites(b *testing.B, l *Lab) uint64 {
	b.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	body, err := l.HealthGet(ctx, 1, "/metrics")
	if err != nil {
		b.Fatal(err)
	}
	samples, err := metrics.Parse(bytes.NewReader(body))
	if err != nil {
		b.Fatalf("/metrics of h1: %v", err)
	}
	v, ok := metrics.Find(samples, "weft_netlink_writes_total")
	if !ok {
		b.Fatal("/metrics of h1 lacks weft_netlink_writes_total")
	}
	return uint64(v)
}

// reportMemory reports the daemon's VmRSS and VmHWM in MiB, and the parts of VmRSS:
// RssAnon, the daemon's own memory, and RssFile, the pages of its binary and libraries
// mapped in.
func reportMemory(b *testing.B, r cpRun, pid int, when, suffix string) {
	b.Helper()
	data, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/status")
	if err != nil {
		b.Fatalf("reading the daemon's memory: %v", err)
	}
	for _, field := range []string{"VmRSS", "VmHWM", "RssAnon", "RssFile"} {
		n, err := bench.ParseStatusBytes(data, field)
		if err != nil {
			b.Fatal(err)
		}
		target := ""
		if field == "VmRSS" && suffix == "" && r.label == "" {
			target = "<= 25 MiB (flanneld: 45 MiB)"
		}
		reportFigure(b, r.what("daemon "+field+" "+when), float64(n)/(1<<20),
			r.unit(strings.ToLower(field)+suffix+"-MiB"), target)
	}
}

func reportDuration(b *testing.B, what string, d time.Duration, unit, target string) {
	b.Helper()
	reportFigure(b, what+" (ms)", float64(d.Microseconds())/1000, unit, target)
}

// reportFigure logs one figure with its target, and reports it as a benchmark metric.
func reportFigure(b *testing.B, what string, v float64, unit, target string) {
	b.Helper()
	if target != "" {
		target = "; target " + target
	}
	b.Logf("%s: %s%s", what, strconv.FormatFloat(v, 'f', -1, 64), target)
	b.ReportMetric(v, unit)
}

// kernelWatch follows, through netlink subscriptions in one namespace, the main-table
// routes, the IPv4 neighbour entries and the FDB entries with a destination, and records
// when each first appeared. Entries are keyed by what a vxlan peer lease makes them:
// its subnet, its subnet's address, its VtepMAC.
type kernelWatch struct {
	mu sync.Mutex
	// routes, neighs and fdb hold when each entry present appeared.
	routes map[netip.Prefix]time.Time
	neighs map[netip.Addr]time.Time
	fdb    map[kernel.MAC]time.Time
	// changed is closed, and replaced, on each change.
	changed chan struct{}
	err     error
}

// watchKernel starts watching namespace ns until the benchmark ends.
func watchKernel(b *testing.B, ns string) *kernelWatch {
	b.Helper()
	h, err := netlab.Open(ns)
	if err != nil {
		b.Fatal(err)
	}
	defer h.Close()
	done := make(chan struct{})
	w := &kernelWatch{
		routes:  map[netip.Prefix]time.Time{},
		neighs:  map[netip.Addr]time.Time{},
		fdb:     map[kernel.MAC]time.Time{},
		changed: make(chan struct{}),
	}

	// Buffers big enough for the notifications of thousands of entries at once; a
	// lost one would fail the benchmark (ENOBUFS).
	const rcvbuf = 32 << 20
	routes := make(chan netlink.RouteUpdate, 4096)
	err = netlink.RouteSubscribeWithOptions(routes, done, netlink.RouteSubscribeOptions{
		Namespace:              &h,
		ErrorCallback:          w.fail,
		ReceiveBufferSize:      rcvbuf,
		ReceiveBufferForceSize: true,
	})
	if err != nil {
		close(done)
		b.Fatalf("subscribing to routes in %s: %v", ns, err)
	}
	neighs := make(chan netlink.NeighUpdate, 4096)
	err = netlink.NeighSubscribeWithOptions(neighs, done, netlink.NeighSubscribeOptions{
		Namespace:              &h,
		ErrorCallback:          w.fail,
		ReceiveBufferSize:      rcvbuf,
		ReceiveBufferForceSize: true,
	})
	if err != nil {
		close(done)
		b.Fatalf("subscribing to neighbours in %s: %v", ns, err)
	}

	var wg sync.WaitGroup
	wg.Go(func() {
		for u := range routes {
			w.route(u)
		}
	})
	wg.Go(func() {
		for u := range neighs {
			w.neigh(u)
		}
	})
	b.Cleanup(func() {
		close(done)
		wg.Wait()
	})
	return w
}

// fail records the first error of a subscription; a closed socket at the end is none.
func (w *kernelWatch) fail(err error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.err == nil && !strings.Contains(err.Error(), "closed") {
		w.err = err
	}
}

func (w *kernelWatch) failed() error {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.err
}

func (w *kernelWatch) route(u netlink.RouteUpdate) {
	now := time.Now()
	if u.Dst == nil || u.Table != unix.RT_TABLE_MAIN {
		return
	}
	a, ok := netip.AddrFromSlice(u.Dst.IP)
	if !ok {
		return
	}
	ones, _ := u.Dst.Mask.Size()
	dst := netip.PrefixFrom(a.Unmap(), ones)

	w.mu.Lock()
	defer w.mu.Unlock()
	update(w.routes, dst, u.Type == unix.RTM_NEWROUTE, now)
	w.notifyLocked()
}

func (w *kernelWatch) neigh(u netlink.NeighUpdate) {
	now := time.Now()
	add := u.Type == unix.RTM_NEWNEIGH
	w.mu.Lock()
	defer w.mu.Unlock()
	switch {
	case u.Family == unix.AF_BRIDGE:
		mac, ok := kernel.MACFromSlice(u.HardwareAddr)
		if !ok || u.IP == nil {
			return
		}
		update(w.fdb, mac, add, now)
	case u.Family == unix.AF_INET:
		ip, ok := netip.AddrFromSlice(u.IP)
		if !ok {
			return
		}
		update(w.neighs, ip.Unmap(), add && u.State&netlink.NUD_PERMANENT != 0, now)
	default:
		return
	}
	w.notifyLocked()
}

// update records that k is present (from now on, unless it was already) or gone.
func update[K comparable](m map[K]time.Time, k K, present bool, now time.Time) {
	if !present {
		delete(m, k)
		return
	}
	if _, ok := m[k]; !ok {
		m[k] = now
	}
}

func (w *kernelWatch) notifyLocked() {
	close(w.changed)
	w.changed = make(chan struct{})
}

// routeSeen returns when the route to dst appeared; zero when it is absent.
func (w *kernelWatch) routeSeen(dst netip.Prefix) time.Time {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.routes[dst]
}

// peerKeys are the kernel entries one vxlan peer lease makes: its route, its neighbour
// entry and its FDB entry.
type peerKeys struct {
	dst netip.Prefix
	ip  netip.Addr
	mac kernel.MAC
}

func keysOf(b *testing.B, leases []subnet.Lease) []peerKeys {
	b.Helper()
	out := make([]peerKeys, 0, len(leases))
	for _, lease := range leases {
		var data struct{ VtepMAC string }
		if err := json.Unmarshal(lease.Attrs.BackendData, &data); err != nil {
			b.Fatalf("lease %s: %v", lease.Key(), err)
		}
		mac, err := kernel.ParseMAC(data.VtepMAC)
		if err != nil {
			b.Fatalf("lease %s: %v", lease.Key(), err)
		}
		out = append(out, peerKeys{dst: lease.Subnet, ip: lease.Subnet.Addr(), mac: mac})
	}
	return out
}

// count returns how many of the peers' routes, neighbours and FDB entries are present.
func (w *kernelWatch) count(peers []peerKeys) [3]int {
	w.mu.Lock()
	defer w.mu.Unlock()
	var n [3]int
	for _, p := range peers {
		if _, ok := w.routes[p.dst]; ok {
			n[0]++
		}
		if _, ok := w.neighs[p.ip]; ok {
			n[1]++
		}
		if _, ok := w.fdb[p.mac]; ok {
			n[2]++
		}
	}
	return n
}

// waitProgrammed waits until every peer has its route, neighbour and FDB entry, and
// returns when the last route, and the last entry of any kind, appeared. It fails the
// benchmark after timeout, saying how many are missing. It looks at most every 2 ms,
// leaving the CPU to the daemon: the times are those the watch recorded.
func (w *kernelWatch) waitProgrammed(b *testing.B, peers []peerKeys,
	timeout time.Duration) (routes, all time.Time) {
	b.Helper()
	deadline := time.After(timeout)
	missing := slices.Clone(peers)
	for {
		w.mu.Lock()
		missing = slices.DeleteFunc(missing, func(p peerKeys) bool {
			r, okr := w.routes[p.dst]
			n, okn := w.neighs[p.ip]
			f, okf := w.fdb[p.mac]
			if !okr || !okn || !okf {
				return false
			}
			routes = later(routes, r)
			all = later(all, later(r, later(n, f)))
			return true
		})
		changed, err := w.changed, w.err
		w.mu.Unlock()

		if err != nil {
			b.Fatalf("watching the kernel: %v", err)
		}
		if len(missing) == 0 {
			return routes, all
		}
		select {
		case <-changed:
			time.Sleep(2 * time.Millisecond)
		case <-deadline:
			b.Fatalf("%d of %d peers not programmed within %v", len(missing), len(peers),
				timeout)
		}
	}
}

func later(a, b time.Time) time.Time {
	if b.After(a) {
		return b
	}
	return a
}
