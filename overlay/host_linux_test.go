package overlay

import (
	"context"
	"net/netip"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/nftables"
	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"

	"github.com/weftnet/weft/backend"
	"github.com/weftnet/weft/internal/etcdtest"
	"github.com/weftnet/weft/internal/nstest"
	"github.com/weftnet/weft/subnet"
)

// runInNetNS runs Run on a thread inside ns, so that the daemon works on ns, and returns
// a channel with Run's result. The thread is not reused afterwards.
func runInNetNS(t *testing.T, ctx context.Context, ns netns.NsHandle, cfg Config) <-chan error {
	t.Helper()
	done := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		if err := netns.Set(ns); err != nil {
			done <- err
			return
		}
		done <- Run(ctx, cfg)
	}()
	return done
}

// blackholes returns the destinations of the blackhole routes in the main table.
func blackholes(t *testing.T, h *netlink.Handle) []netip.Prefix {
	t.Helper()
	routes, err := h.RouteListFiltered(netlink.FAMILY_V4,
		&netlink.Route{Table: unix.RT_TABLE_MAIN, Type: unix.RTN_BLACKHOLE},
		netlink.RT_FILTER_TABLE|netlink.RT_FILTER_TYPE)
	if err != nil {
		t.Fatalf("listing routes: %v", err)
	}
	var out []netip.Prefix
	for _, r := range routes {
		if r.Dst == nil {
			continue
		}
		a, _ := netip.AddrFromSlice(r.Dst.IP)
		ones, _ := r.Dst.Mask.Size()
		out = append(out, netip.PrefixFrom(a.Unmap(), ones))
	}
	return out
}

// bridgeAddrs returns the bridge's IPv4 addresses and MTU, or an error while it is
// missing.
func bridgeAddrs(h *netlink.Handle, name string) ([]netip.Prefix, int, error) {
	l, err := h.LinkByName(name)
	if err != nil {
		return nil, 0, err
	}
	addrs, err := h.AddrList(l, netlink.FAMILY_V4)
	if err != nil {
		return nil, 0, err
	}
	var out []netip.Prefix
	for _, a := range addrs {
		ip, _ := netip.AddrFromSlice(a.IP)
		ones, _ := a.Mask.Size()
		out = append(out, netip.PrefixFrom(ip.Unmap(), ones))
	}
	return out, l.Attrs().MTU, nil
}

// TestRunHostSide runs the daemon in a namespace of the test's own with masquerade,
// forward rules, the blackhole route, a bridge and the runtime files, and checks that
// all of them follow the lease when another host takes it.
func TestRunHostSide(t *testing.T) {
	nstest.RequireRoot(t)
	ns := nstest.New(t)
	h := nstest.Handle(t, ns)
	uplink := addLink(t, h, "wt-d-up0", 1500)
	addAddr(t, h, uplink, "198.18.3.2/24", 0, 0)

	etcd := etcdtest.Start(t)
	const prefix = "/weft/host"
	ctx := context.Background()
	if _, err := etcd.Client.Put(ctx, prefix+"/config",
		`{"Network": "198.19.0.0/16", "Backend": {"Type": "recording"}}`); err != nil {
		t.Fatal(err)
	}

	be := &recordingBackend{}
	dir := t.TempDir()
	cfg := Config{
		Etcd:                 subnet.EtcdOptions{Endpoints: etcd.Endpoints, Prefix: prefix},
		Interface:            InterfaceSpec{Ifaces: []string{"wt-d-up0"}},
		SubnetFile:           filepath.Join(dir, "subnet.env"),
		RenewMargin:          subnet.DefaultRenewMargin,
		IPMasq:               true,
		IPTablesForwardRules: true,
		IPBlackholeRoute:     true,
		IPTablesResync:       time.Second,
		Bridge:               "wt-d-br0",
		HyperdConfig:         filepath.Join(dir, "hyper", "config"),
		DockerOpts:           filepath.Join(dir, "docker_opts.env"),
		CNIConf:              filepath.Join(dir, "net.d", "10-flannel.conflist"),
		Backends: backend.Registry{"recording": func(p backend.Params) (backend.Backend, error) {
			be.ext = p.Ext
			return be, nil
		}},
		Log: testLog(t),
	}
	runCtx, cancel := context.WithCancel(ctx)
	defer cancel()
	done := runInNetNS(t, runCtx, ns, cfg)

	readEnv := func() subnet.Env {
		e, _ := subnet.ReadEnvFile(cfg.SubnetFile)
		return e
	}
	eventually(t, "subnet.env written", 20*time.Second, func() bool {
		return readEnv().Subnet.IsValid()
	})
	first := readEnv().Subnet
	if be.ext.Name != "wt-d-up0" || be.ext.IfaceAddr != netip.MustParseAddr("198.18.3.2") {
		t.Errorf("backend got external interface %+v", be.ext)
	}

	// checkLease asserts the host side for one lease.
	checkLease := func(lease netip.Prefix) {
		t.Helper()
		gw := subnet.FirstHost(lease)
		eventually(t, "bridge address "+gw.String(), 10*time.Second, func() bool {
			addrs, mtu, err := bridgeAddrs(h, "wt-d-br0")
			return err == nil && mtu == 1400 && slices.Equal(addrs, []netip.Prefix{gw})
		})
		eventually(t, "blackhole route for "+lease.String(), 10*time.Second, func() bool {
			return slices.Equal(blackholes(t, h), []netip.Prefix{lease})
		})

		nft, err := nftables.New(nftables.WithNetNSFd(int(ns)))
		if err != nil {
			t.Fatal(err)
		}
		chains, err := nft.ListChainsOfTableFamily(nftables.TableFamilyIPv4)
		if err != nil {
			t.Fatal(err)
		}
		var names []string
		for _, c := range chains {
			if c.Table.Name == "flannel-ipv4" {
				names = append(names, c.Name)
			}
		}
		slices.Sort(names)
		if !slices.Equal(names, []string{"forward", "postrtg"}) {
			t.Errorf("chains of table flannel-ipv4: %v, want forward and postrtg", names)
		}

		files := []struct{ path, want string }{
			{cfg.DockerOpts, "--bip=" + gw.String()},
			{cfg.DockerOpts, "--ip-masq=false"},
			{cfg.HyperdConfig, "BridgeIP=" + gw.String()},
			{cfg.HyperdConfig, "Bridge=wt-d-br0"},
			{cfg.HyperdConfig, "DisableIptables=true"},
			{cfg.CNIConf, `"subnetFile": "` + cfg.SubnetFile + `"`},
			{cfg.CNIConf, `"bridge": "wt-d-br0"`},
			{cfg.SubnetFile, "FLANNEL_IPMASQ=true"},
		}
		for _, f := range files {
			data, err := os.ReadFile(f.path)
			if err != nil || !strings.Contains(string(data), f.want) {
				t.Errorf("%s lacks %q (err %v):\n%s", f.path, f.want, err, data)
			}
		}
	}
	checkLease(first)

	// Another host takes the key: everything moves to the new subnet.
	reg, _, _, _ := be.state()
	if _, err := etcd.Client.Put(ctx, prefix+"/subnets/"+reg[0].Key(),
		`{"PublicIP":"198.18.3.9","PublicIPv6":null}`); err != nil {
		t.Fatal(err)
	}
	eventually(t, "subnet.env rewritten", 20*time.Second, func() bool {
		s := readEnv().Subnet
		return s.IsValid() && s != first
	})
	checkLease(readEnv().Subnet)

	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("Run: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Run did not return within 10s of cancel")
	}

	// Nothing is torn down at exit.
	if _, _, err := bridgeAddrs(h, "wt-d-br0"); err != nil {
		t.Errorf("bridge gone after stop: %v", err)
	}
	if len(blackholes(t, h)) != 1 {
		t.Errorf("blackhole route gone after stop")
	}
}
