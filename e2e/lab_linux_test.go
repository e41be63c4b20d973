package e2e

import (
	"context"
	"errors"
	"io/fs"
	"net"
	"net/netip"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/vishvananda/netlink"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"
	"google.golang.org/grpc"

	"github.com/weftnet/weft/internal/netlab"
	"github.com/weftnet/weft/internal/nstest"
	"github.com/weftnet/weft/subnet"
)

// ownState is a summary of the test's own namespace, which the lab must not change.
func ownState(t *testing.T) string {
	t.Helper()
	links, err := netlab.Retry(netlink.LinkList)
	if err != nil {
		t.Fatal(err)
	}
	routes, err := netlab.Retry(func() ([]netlink.Route, error) {
		return netlink.RouteList(nil, netlink.FAMILY_ALL)
	})
	if err != nil {
		t.Fatal(err)
	}
	addrs, err := netlab.Retry(func() ([]netlink.Addr, error) {
		return netlink.AddrList(nil, netlink.FAMILY_ALL)
	})
	if err != nil {
		t.Fatal(err)
	}
	var parts []string
	for _, l := range links {
		parts = append(parts, "link "+l.Attrs().Name)
	}
	for _, r := range routes {
		parts = append(parts, "route "+r.String())
	}
	for _, a := range addrs {
		parts = append(parts, "addr "+a.IPNet.String())
	}
	slices.Sort(parts)
	return strings.Join(parts, "\n")
}

// labNamespaces returns the namespaces of the lab called name that exist.
func labNamespaces(t *testing.T, name string) []string {
	t.Helper()
	all, err := netlab.List()
	if err != nil {
		t.Fatal(err)
	}
	var mine []string
	for _, n := range all {
		if OwnsNamespace(name, n) {
			mine = append(mine, n)
		}
	}
	return mine
}

// assertGone checks that nothing of the lab whose state was s is left.
func assertGone(t *testing.T, stateDir string, s State) {
	t.Helper()
	if ns := labNamespaces(t, s.Name); len(ns) > 0 {
		t.Errorf("namespaces left after Down: %v", ns)
	}
	procs := []Proc{s.Etcd}
	for _, h := range s.Hosts {
		procs = append(procs, h.Daemon)
	}
	for _, p := range procs {
		if p.alive() {
			t.Errorf("process %d (%s) still runs after Down", p.PID, strings.Join(p.Argv, " "))
		}
	}
	if _, err := os.Stat(labDir(stateDir, s.Name)); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("state directory %s left after Down: %v", labDir(stateDir, s.Name), err)
	}
}

func TestLabUpDown(t *testing.T) {
	nstest.RequireRoot(t)
	before := ownState(t)
	o := labOptions(t, "updown")
	o.Backend, o.Hosts, o.Pods = "alloc", 2, 2
	l := upLab(t, o)
	ctx := context.Background()
	s := l.State()

	t.Run("namespaces", func(t *testing.T) {
		want := []string{"wt-e-updown-h1", "wt-e-updown-h1-p1", "wt-e-updown-h1-p2",
			"wt-e-updown-h2", "wt-e-updown-h2-p1", "wt-e-updown-h2-p2", "wt-e-updown-wan"}
		if got := labNamespaces(t, o.Name); !slices.Equal(got, want) {
			t.Errorf("namespaces = %v, want %v", got, want)
		}
	})

	t.Run("daemons run in their hosts", func(t *testing.T) {
		for _, h := range s.Hosts {
			if !h.Daemon.alive() {
				t.Errorf("daemon of %s is not running", h.Name())
				continue
			}
			want, _ := statNS(netlab.Path(h.NS))
			got, _ := statNS("/proc/" + itoa(h.Daemon.PID) + "/ns/net")
			if got != want {
				t.Errorf("daemon of %s runs in namespace %v, want %s's %v", h.Name(), got, h.NS,
					want)
			}
		}
	})

	t.Run("underlay host to host", func(t *testing.T) {
		eps := append(l.HostEndpoints(), Endpoint{Name: "wan", NS: WanNS(o.Name), Addr: wanAddr})
		m, err := PingMatrix(ctx, eps, MatrixOptions{Count: 3, Settle: 2 * time.Second})
		if err != nil {
			t.Fatal(err)
		}
		if failed := m.Failed(); len(failed) > 0 {
			t.Errorf("underlay pings failed: %v", failed)
		}
	})

	t.Run("etcd from each host", func(t *testing.T) {
		for _, h := range s.Hosts {
			c := hostEtcdClient(t, h.NS)
			resp, err := c.Get(ctx, path.Join(s.EtcdPrefix, "config"))
			if err != nil {
				t.Errorf("reading the config from %s: %v", h.Name(), err)
				continue
			}
			if len(resp.Kvs) != 1 || string(resp.Kvs[0].Value) != string(o.networkConfigFor()) {
				t.Errorf("config read from %s = %v", h.Name(), resp.Kvs)
			}
		}
	})

	t.Run("pods", func(t *testing.T) {
		for _, h := range s.Hosts {
			env, err := subnet.ReadEnvFile(h.SubnetFile)
			if err != nil {
				t.Fatal(err)
			}
			for _, p := range h.Pods {
				checkPod(t, p, env)
			}
			// The pods of one host reach each other and their gateway over the bridge.
			eps := []Endpoint{{Name: h.Name() + "-cni0", NS: h.NS,
				Addr: subnet.FirstHost(env.Subnet).Addr()}}
			for _, p := range h.Pods {
				eps = append(eps, Endpoint{Name: p.NS, NS: p.NS, Addr: p.Addr.Addr()})
			}
			m, err := PingMatrix(ctx, eps, MatrixOptions{Count: 3, Settle: 2 * time.Second})
			if err != nil {
				t.Fatal(err)
			}
			if failed := m.Failed(); len(failed) > 0 {
				t.Errorf("pings within %s failed: %v", h.Name(), failed)
			}
		}
	})

	t.Run("status", func(t *testing.T) {
		st := l.Status(ctx)
		if st.EtcdError != "" || !st.Etcd.Running {
			t.Fatalf("etcd: %+v %s", st.Etcd, st.EtcdError)
		}
		for k, h := range st.Hosts {
			if !h.Daemon.Running || h.Lease == nil {
				t.Errorf("%s: running %t, lease %v", h.Name, h.Daemon.Running, h.Lease)
				continue
			}
			if h.Lease.PublicIP != UnderlayAddr(k+1).Addr() ||
				!h.Lease.Subnet.Contains(h.Pods[0].Addr.Addr()) {
				t.Errorf("%s: lease %+v does not hold pod %s", h.Name, h.Lease, h.Pods[0].Addr)
			}
		}
	})

	t.Run("name taken", func(t *testing.T) {
		o2 := o
		o2.StateDir = t.TempDir()
		_, err := Up(ctx, o2)
		if err == nil || !strings.Contains(err.Error(), "already exists") {
			t.Fatalf("Up of a lab that exists = %v, want an 'already exists' error", err)
		}
		if !s.Hosts[0].Daemon.alive() || len(labNamespaces(t, o.Name)) != 7 {
			t.Error("a refused Up touched the running lab")
		}
	})

	if after := ownState(t); after != before {
		t.Errorf("the test's own namespace changed:\nbefore:\n%s\nafter:\n%s", before, after)
	}

	if err := l.Down(ctx); err != nil {
		t.Fatalf("Down: %v", err)
	}
	assertGone(t, o.StateDir, s)
	if err := l.Down(ctx); err != nil {
		t.Errorf("second Down = %v, want nil", err)
	}
}

// networkConfigFor returns the config Up stores, with defaults as Up fills them.
func (o Options) networkConfigFor() []byte {
	full, err := o.withDefaults()
	if err != nil {
		panic(err)
	}
	return full.networkConfig()
}

// checkPod verifies a pod's address, MTU and default route.
func checkPod(t *testing.T, p PodState, env subnet.Env) {
	t.Helper()
	h, err := netlab.NewHandle(p.NS)
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close()
	link, err := h.LinkByName(podInterface)
	if err != nil {
		t.Fatalf("%s: %v", p.NS, err)
	}
	if link.Attrs().MTU != env.MTU {
		t.Errorf("%s: MTU %d, want FLANNEL_MTU %d", p.NS, link.Attrs().MTU, env.MTU)
	}
	addrs, err := netlab.Retry(func() ([]netlink.Addr, error) {
		return h.AddrList(link, netlink.FAMILY_V4)
	})
	if err != nil {
		t.Fatal(err)
	}
	want := netip.PrefixFrom(addrAdd(env.Subnet.Addr(), 10+p.Index), env.Subnet.Bits())
	if len(addrs) != 1 || addrs[0].IPNet.String() != want.String() || p.Addr != want {
		t.Errorf("%s: addresses %v (recorded %s), want %s", p.NS, addrs, p.Addr, want)
	}
	routes, err := netlab.Retry(func() ([]netlink.Route, error) {
		return h.RouteList(nil, netlink.FAMILY_V4)
	})
	if err != nil {
		t.Fatal(err)
	}
	gw := subnet.FirstHost(env.Subnet).Addr()
	found := false
	for _, r := range routes {
		if (r.Dst == nil || r.Dst.String() == "0.0.0.0/0") && r.Gw.String() == gw.String() {
			found = true
		}
	}
	if !found {
		t.Errorf("%s: no default route via %s in %v", p.NS, gw, routes)
	}
}

// hostEtcdClient returns an etcd client whose connections start inside namespace ns.
func hostEtcdClient(t *testing.T, ns string) *clientv3.Client {
	t.Helper()
	dial := func(ctx context.Context, addr string) (net.Conn, error) {
		return netlab.Dial(ctx, ns, "tcp", addr)
	}
	c, err := clientv3.New(clientv3.Config{
		Endpoints:   []string{EtcdEndpoint()},
		DialTimeout: 5 * time.Second,
		DialOptions: []grpc.DialOption{grpc.WithContextDialer(dial)},
		Logger:      zap.NewNop(),
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

func TestDownFindsLeftovers(t *testing.T) {
	o := labOptions(t, "left")
	o.Backend, o.Hosts, o.Pods = "alloc", 2, 1
	l := upLab(t, o)
	s := l.State()
	l.Close()

	// Lose the record of the lab: Down must still find its processes by their
	// namespaces, and the namespaces by name.
	if err := os.Remove(filepath.Join(labDir(o.StateDir, o.Name), stateFile)); err != nil {
		t.Fatal(err)
	}
	if err := Down(context.Background(), o.StateDir, o.Name, o.Log); err != nil {
		t.Fatalf("Down: %v", err)
	}
	assertGone(t, o.StateDir, s)
}

func TestUpCleansUpOnError(t *testing.T) {
	nstest.RequireRoot(t)
	tests := []struct {
		name   string
		daemon []string
		cancel time.Duration
		want   string
	}{
		{name: "daemon exits", daemon: []string{"/bin/false"}, want: "daemon of h1 exited"},
		{
			name:   "cancelled while waiting",
			daemon: []string{"/bin/sh", "-c", "sleep 60; exit 1", "sh"},
			cancel: 2 * time.Second,
			want:   "context canceled",
		},
		{name: "daemon missing", daemon: []string{"/nonexistent/weftd"}, want: "daemon of h1"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			o := labOptions(t, "fail")
			o.Backend, o.Hosts, o.Pods = "alloc", 2, 1
			o.Daemon = tt.daemon
			ctx := context.Background()
			if tt.cancel > 0 {
				var cancel context.CancelFunc
				ctx, cancel = context.WithCancel(ctx)
				defer time.AfterFunc(tt.cancel, cancel).Stop()
			}

			_, err := Up(ctx, o)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("Up = %v, want an error containing %q", err, tt.want)
			}
			if ns := labNamespaces(t, o.Name); len(ns) > 0 {
				t.Errorf("namespaces left after a failed Up: %v", ns)
			}
			if _, err := os.Stat(labDir(o.StateDir, o.Name)); !errors.Is(err, fs.ErrNotExist) {
				t.Errorf("state left after a failed Up: %v", err)
			}
			if procs := procsRunning(t, o.Name); len(procs) > 0 {
				t.Errorf("processes left after a failed Up: %v", procs)
			}
		})
	}
}

// procsRunning returns the command lines of processes that name the lab: its etcd, or a
// daemon with its subnet file.
func procsRunning(t *testing.T, lab string) []string {
	t.Helper()
	entries, err := os.ReadDir("/proc")
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, e := range entries {
		b, err := os.ReadFile("/proc/" + e.Name() + "/cmdline")
		if err != nil || e.Name() == itoa(os.Getpid()) {
			continue
		}
		argv := parseCmdline(b)
		if slices.Contains(argv, lab) || strings.Contains(strings.Join(argv, " "), "/"+lab+"/") {
			out = append(out, strings.Join(argv, " "))
		}
	}
	return out
}

func itoa(n int) string { return strconv.Itoa(n) }
