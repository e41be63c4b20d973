package main

import (
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/google/nftables"
	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/weftnet/weft/internal/netlab"
	"github.com/weftnet/weft/internal/nstest"
	"github.com/weftnet/weft/rules"
	"github.com/weftnet/weft/subnet"
)

func ipnet(s string) *net.IPNet {
	return netlab.IPNet(netip.MustParsePrefix(s))
}

// TestCleanup builds what weftd leaves on a host in a fresh namespace (VXLAN and TUN
// devices with their entries, the bridge, host-gw routes, the blackhole route, the
// nftables tables, the files), next to things that are not weft's, and checks that
// cleanup removes exactly weft's, says so, and finds nothing the second time.
func TestCleanup(t *testing.T) {
	ns := nstest.New(t)
	h := nstest.Handle(t, ns)
	var rm *rules.Manager
	must := func(what string, err error) {
		t.Helper()
		if err != nil {
			t.Fatalf("%s: %v", what, err)
		}
	}

	// Equivalent to: ip link add eth0 type veth peer name wan0;
	// ip addr add 198.18.0.1/24 dev eth0
	eth0 := &netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: "eth0"}, PeerName: "wan0"}
	must("adding eth0", h.LinkAdd(eth0))
	wan0, err := h.LinkByName("wan0")
	must("finding wan0", err)
	must("wan0 up", h.LinkSetUp(wan0))
	must("addressing eth0", h.AddrAdd(eth0, &netlink.Addr{IPNet: ipnet("198.18.0.1/24")}))
	must("eth0 up", h.LinkSetUp(eth0))

	// Equivalent to: ip link add flannel.7 type vxlan id 7 local 198.18.0.1 dev eth0
	// dstport 8472 nolearning; ip addr add 198.19.5.0/32 dev flannel.7
	vx := &netlink.Vxlan{LinkAttrs: netlink.LinkAttrs{Name: "flannel.7"}, VxlanId: 7,
		Port: 8472, SrcAddr: net.ParseIP("198.18.0.1"), VtepDevIndex: eth0.Index}
	must("adding flannel.7", h.LinkAdd(vx))
	must("addressing flannel.7", h.AddrAdd(vx, &netlink.Addr{IPNet: ipnet("198.19.5.0/32")}))
	must("flannel.7 up", h.LinkSetUp(vx))
	mac, _ := net.ParseMAC("6a:1e:33:10:00:06")
	// Equivalent to: ip neigh replace 198.19.6.0 lladdr <mac> dev flannel.7 nud permanent;
	// bridge fdb append <mac> dst 198.18.0.2 dev flannel.7;
	// ip route replace 198.19.6.0/24 via 198.19.6.0 dev flannel.7 onlink
	must("neighbour", h.NeighSet(&netlink.Neigh{LinkIndex: vx.Index, Family: unix.AF_INET,
		State: netlink.NUD_PERMANENT, IP: net.ParseIP("198.19.6.0"), HardwareAddr: mac}))
	must("FDB entry", h.NeighAppend(&netlink.Neigh{LinkIndex: vx.Index,
		Family: unix.AF_BRIDGE, State: netlink.NUD_PERMANENT, Flags: netlink.NTF_SELF,
		IP: net.ParseIP("198.18.0.2"), HardwareAddr: mac}))
	must("vxlan route", h.RouteReplace(&netlink.Route{LinkIndex: vx.Index,
		Dst: ipnet("198.19.6.0/24"), Gw: net.ParseIP("198.19.6.0"), Flags: int(netlink.FLAG_ONLINK)}))

	// A host-gw route, and a route that is not weft's.
	must("host-gw route", h.RouteReplace(&netlink.Route{LinkIndex: eth0.Index,
		Dst: ipnet("198.19.7.0/24"), Gw: net.ParseIP("198.18.0.3")}))
	must("other route", h.RouteReplace(&netlink.Route{LinkIndex: eth0.Index,
		Dst: ipnet("203.0.113.0/24"), Gw: net.ParseIP("198.18.0.254")}))

	// The bridge, and a veth that only has a weft name.
	br := &netlink.Bridge{LinkAttrs: netlink.LinkAttrs{Name: "cni0"}}
	must("adding cni0", h.LinkAdd(br))
	must("addressing cni0", h.AddrAdd(br, &netlink.Addr{IPNet: ipnet("198.19.5.1/24")}))
	must("cni0 up", h.LinkSetUp(br))
	must("adding flannel.9", h.LinkAdd(&netlink.Veth{LinkAttrs: netlink.LinkAttrs{
		Name: "flannel.9"}, PeerName: "peer9"}))

	// The TUN device, made from inside the namespace as its ioctl needs.
	nstest.Do(t, ns, func() {
		must("adding flannel0", netlink.LinkAdd(&netlink.Tuntap{
			LinkAttrs: netlink.LinkAttrs{Name: "flannel0"}, Mode: netlink.TUNTAP_MODE_TUN}))
	})

	// The nftables tables and the blackhole route, as weftd keeps them.
	rm, err = rules.New(rules.Config{
		Network: netip.MustParsePrefix("198.19.0.0/16"), Subnet: netip.MustParsePrefix(
			"198.19.5.0/24"), Masquerade: true, Forward: true, BlackholeRoute: true,
	}, slog.New(slog.DiscardHandler), ns)
	must("preparing rules", err)
	_, err = rm.Sync()
	must("installing rules", err)
	rm.Close()

	dir := t.TempDir()
	o := cleanupOptions{
		bridge:     "cni0",
		subnetFile: filepath.Join(dir, "subnet.env"),
		dockerOpts: filepath.Join(dir, "docker"),
		cniConf:    filepath.Join(dir, "10-flannel.conflist"),
	}
	must("subnet.env", subnet.WriteEnvFile(o.subnetFile, subnet.Env{
		Network: netip.MustParsePrefix("198.19.0.0/16"),
		Subnet:  netip.MustParsePrefix("198.19.5.0/24"), MTU: 1450}))
	for _, p := range []string{o.dockerOpts, o.cniConf} {
		must("file", os.WriteFile(p, []byte("x\n"), 0o644))
	}

	run := func(o cleanupOptions) []string {
		t.Helper()
		var lines []string
		if err := cleanup(o, ns, func(l string) { lines = append(lines, l) }); err != nil {
			t.Fatalf("cleanup: %v\n%s", err, strings.Join(lines, "\n"))
		}
		t.Logf("cleanup (dry run %v):\n%s", o.dryRun, strings.Join(lines, "\n"))
		return lines
	}
	contains := func(lines []string, parts ...string) bool {
		return slices.ContainsFunc(lines, func(l string) bool {
			for _, p := range parts {
				if !strings.Contains(l, p) {
					return false
				}
			}
			return true
		})
	}

	t.Run("dry run", func(t *testing.T) {
		dry := o
		dry.dryRun = true
		lines := run(dry)
		if !contains(lines, "would remove device flannel.7") ||
			contains(lines, "removed") {
			t.Errorf("dry run said %q", lines)
		}
		if _, err := h.LinkByName("flannel.7"); err != nil {
			t.Errorf("the dry run removed flannel.7: %v", err)
		}
	})

	lines := run(o)
	for _, want := range [][]string{
		{"removed nftables table ip flannel-ipv4"},
		{"removed route 198.19.6.0/24 via 198.19.6.0 dev flannel.7"},
		{"removed route 198.19.7.0/24 via 198.18.0.3 dev eth0"},
		{"removed route blackhole 198.19.5.0/24", "metric 4096"},
		{"removed device flannel.7 (vxlan VNI 7) with 1 neighbour entry and 1 FDB entry"},
		{"removed device flannel0 (tuntap)"},
		{"removed device cni0 (bridge)"},
		{"left flannel.9 in place: it is a veth device"},
		{"removed file " + o.subnetFile},
		{"removed file " + o.dockerOpts},
		{"removed file " + o.cniConf},
	} {
		if !contains(lines, want...) {
			t.Errorf("cleanup did not say %q", want)
		}
	}

	links, err := netlab.Retry(h.LinkList)
	must("listing links", err)
	var names []string
	for _, l := range links {
		names = append(names, l.Attrs().Name)
	}
	slices.Sort(names)
	if want := []string{"eth0", "flannel.9", "lo", "peer9", "wan0"}; !slices.Equal(names,
		want) {
		t.Errorf("links left %q, want %q", names, want)
	}
	routes, err := netlab.Retry(func() ([]netlink.Route, error) {
		return h.RouteList(nil, netlink.FAMILY_V4)
	})
	must("listing routes", err)
	var dsts []string
	for _, r := range routes {
		dsts = append(dsts, fmt.Sprint(r.Dst))
	}
	slices.Sort(dsts)
	if want := []string{"198.18.0.0/24", "203.0.113.0/24"}; !slices.Equal(dsts, want) {
		t.Errorf("routes left to %q, want %q", dsts, want)
	}
	conn, err := nftables.New(nftables.WithNetNSFd(int(ns)))
	must("opening nftables", err)
	tables, err := conn.ListTables()
	must("listing tables", err)
	for _, tb := range tables {
		if tb.Name == rules.TableIPv4 || tb.Name == rules.TableIPv6 {
			t.Errorf("table %s still there", tb.Name)
		}
	}
	for _, p := range []string{o.subnetFile, o.dockerOpts, o.cniConf} {
		if _, err := os.Stat(p); !os.IsNotExist(err) {
			t.Errorf("%s still there (%v)", p, err)
		}
	}

	// Everything is gone: a second run finds only the veth it leaves alone.
	again := run(o)
	if len(again) != 1 || !strings.HasPrefix(again[0], "left flannel.9") {
		t.Errorf("second cleanup said %q, want only that it left flannel.9", again)
	}
}
