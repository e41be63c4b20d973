package main

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"net/netip"
	"os"
	"regexp"
	"slices"
	"strings"

	"github.com/google/nftables"
	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"

	"github.com/weftnet/weft/internal/netlab"
	"github.com/weftnet/weft/rules"
	"github.com/weftnet/weft/subnet"
)

// cleanupOptions say what weftctl cleanup removes besides the devices, tables and
// routes it always looks for.
type cleanupOptions struct {
	// bridge is the runtime bridge weftd kept (-bridge); removed only when named.
	bridge string
	// subnetFile, dockerOpts and cniConf are weftd's files, removed only when named.
	// subnet.env also tells the overlay network when network is not given.
	subnetFile, dockerOpts, cniConf string
	// network and ipv6Network are the overlay: routes into them are removed.
	network, ipv6Network netip.Prefix
	dryRun               bool
}

func runCleanup(_ context.Context, e *env, args []string) error {
	fs := newFlagSet(e, "cleanup", "weftctl cleanup [flags]")
	var o cleanupOptions
	fs.StringVar(&o.bridge, "bridge", "", "the runtime `bridge` weftd kept (its -bridge), "+
		"removed too")
	fs.StringVar(&o.subnetFile, "subnet-file", "", "weftd's subnet.env `file`: read for "+
		"the overlay network, then removed")
	fs.StringVar(&o.dockerOpts, "docker-opts", "", "weftd's Docker options `file`, removed")
	fs.StringVar(&o.cniConf, "cni-conf", "", "weftd's CNI conflist `file`, removed")
	fs.Func("network", "overlay IPv4 `CIDR` whose routes are removed (default: "+
		"FLANNEL_NETWORK of -subnet-file)", prefixFlag(&o.network, 4))
	fs.Func("ipv6-network", "overlay IPv6 `CIDR` whose routes are removed (default: "+
		"FLANNEL_IPV6_NETWORK of -subnet-file)", prefixFlag(&o.ipv6Network, 6))
	fs.BoolVar(&o.dryRun, "dry-run", false, "say what would be removed, and remove nothing")
	pos, err := parseArgs(e, fs, args)
	if err != nil {
		return err
	}
	if err := noArgs(pos); err != nil {
		return err
	}

	ns, err := netns.Get()
	if err != nil {
		return fmt.Errorf("opening the current network namespace: %w", err)
	}
	defer ns.Close()
	n := 0
	err = cleanup(o, ns, func(line string) {
		n++
		fmt.Fprintln(e.stdout, line)
	})
	if n == 0 && err == nil {
		fmt.Fprintln(e.stdout, "nothing of weft's found")
	}
	return err
}

// prefixFlag parses a CIDR of one family into p.
func prefixFlag(p *netip.Prefix, family int) func(string) error {
	return func(s string) error {
		v, err := netip.ParsePrefix(s)
		if err != nil || (family == 4) != v.Addr().Is4() {
			return fmt.Errorf("%q is not an IPv%d CIDR", s, family)
		}
		*p = v.Masked()
		return nil
	}
}

// Devices weftd and flanneld make, by name; each must also be of its kind before it is
// removed.
var (
	vxlanDevice = regexp.MustCompile(`^flannel(-v6)?\.[0-9]+$`)
	tunDevice   = "flannel0"
)

// cleanup removes, in the network namespace ns, what weftd (or flanneld) leaves behind
// on purpose: the nftables tables flannel-ipv4 and flannel-ipv6, routes into the
// overlay and the blackhole route of the host's subnet, the VXLAN devices
// flannel.<VNI> and flannel-v6.<VNI> and the TUN device flannel0 with every route,
// neighbour and FDB entry on them, the bridge and the files when o names them. It
// calls report with one line per thing removed. A thing already gone is skipped, so a
// second run reports nothing. It goes on after a failure and returns every error.
//
// Equivalent to: nft delete table ip flannel-ipv4; nft delete table ip6 flannel-ipv6;
// ip route del <each route into the network>; ip route del blackhole <subnet>;
// ip link del flannel.<VNI>; ip link del flannel0; ip link del <bridge>;
// rm -f <subnet file> <docker opts> <cni conf>
func cleanup(o cleanupOptions, ns netns.NsHandle, report func(string)) error {
	verb := "removed"
	if o.dryRun {
		verb = "would remove"
	}
	var errs []error

	if o.subnetFile != "" && (!o.network.IsValid() || !o.ipv6Network.IsValid()) {
		env, err := subnet.ReadEnvFile(o.subnetFile)
		if err != nil {
			errs = append(errs, fmt.Errorf("reading the overlay network from %s: %w",
				o.subnetFile, err))
		}
		if !o.network.IsValid() {
			o.network = env.Network
		}
		if !o.ipv6Network.IsValid() {
			o.ipv6Network = env.IPv6Network
		}
	}

	errs = append(errs, cleanupTables(ns, o.dryRun, verb, report))

	h, err := netlink.NewHandleAt(ns)
	if err != nil {
		return errors.Join(append(errs, fmt.Errorf("opening netlink: %w", err))...)
	}
	defer h.Close()
	errs = append(errs, cleanupRoutes(h, o, verb, report))
	errs = append(errs, cleanupLinks(h, o, verb, report))

	for _, path := range []string{o.subnetFile, o.dockerOpts, o.cniConf} {
		if path == "" {
			continue
		}
		if _, err := os.Lstat(path); errors.Is(err, fs.ErrNotExist) {
			continue
		}
		if !o.dryRun {
			if err := os.Remove(path); err != nil && !errors.Is(err, fs.ErrNotExist) {
				errs = append(errs, fmt.Errorf("removing %s: %w", path, err))
				continue
			}
		}
		report(fmt.Sprintf("%s file %s", verb, path))
	}
	return errors.Join(errs...)
}

// cleanupTables deletes flannel's nftables tables.
func cleanupTables(ns netns.NsHandle, dryRun bool, verb string, report func(string)) error {
	conn, err := nftables.New(nftables.WithNetNSFd(int(ns)))
	if err != nil {
		return fmt.Errorf("opening nftables: %w", err)
	}
	var errs []error
	for _, t := range []struct {
		family nftables.TableFamily
		name   string
		shown  string
	}{
		{nftables.TableFamilyIPv4, rules.TableIPv4, "ip"},
		{nftables.TableFamilyIPv6, rules.TableIPv6, "ip6"},
	} {
		tables, err := conn.ListTablesOfFamily(t.family)
		if err != nil {
			errs = append(errs, fmt.Errorf("listing %s nftables tables: %w", t.shown, err))
			continue
		}
		i := slices.IndexFunc(tables, func(x *nftables.Table) bool { return x.Name == t.name })
		if i < 0 {
			continue
		}
		if !dryRun {
			conn.DelTable(tables[i])
			if err := conn.Flush(); err != nil && !errors.Is(err, unix.ENOENT) {
				errs = append(errs, fmt.Errorf("deleting nftables table %s %s: %w", t.shown,
					t.name, err))
				continue
			}
		}
		report(fmt.Sprintf("%s nftables table %s %s", verb, t.shown, t.name))
	}
	return errors.Join(errs...)
}

// cleanupRoutes deletes the main table's routes into the overlay networks, except
// those the kernel made for an address, and blackhole routes at weft's metric.
func cleanupRoutes(h *netlink.Handle, o cleanupOptions, verb string,
	report func(string)) error {
	var errs []error
	for _, fam := range []struct {
		family  int
		network netip.Prefix
	}{
		{netlink.FAMILY_V4, o.network},
		{netlink.FAMILY_V6, o.ipv6Network},
	} {
		routes, err := netlab.Retry(func() ([]netlink.Route, error) {
			return h.RouteList(nil, fam.family)
		})
		if err != nil {
			errs = append(errs, fmt.Errorf("listing routes: %w", err))
			continue
		}
		for _, r := range routes {
			if !weftRoute(r, fam.network) {
				continue
			}
			if !o.dryRun {
				if err := h.RouteDel(&r); err != nil && !errors.Is(err, unix.ESRCH) {
					errs = append(errs, fmt.Errorf("deleting route %s: %w", routeText(h, r), err))
					continue
				}
			}
			report(fmt.Sprintf("%s route %s", verb, routeText(h, r)))
		}
	}
	return errors.Join(errs...)
}

// weftRoute reports whether r is one of weft's: a blackhole route at weft's metric, or
// a route into network that the kernel did not make itself.
func weftRoute(r netlink.Route, network netip.Prefix) bool {
	if r.Dst == nil {
		return false
	}
	dst, ok := netip.AddrFromSlice(r.Dst.IP)
	if !ok {
		return false
	}
	bits, _ := r.Dst.Mask.Size()
	p := netip.PrefixFrom(dst.Unmap(), bits)
	if r.Type == unix.RTN_BLACKHOLE && r.Priority == rules.BlackholeMetric {
		return true
	}
	return network.IsValid() && r.Protocol != unix.RTPROT_KERNEL &&
		p.Bits() >= network.Bits() && network.Contains(p.Addr())
}

// routeText renders a route for the report, as ip route shows it.
func routeText(h *netlink.Handle, r netlink.Route) string {
	s := r.Dst.String()
	if r.Type == unix.RTN_BLACKHOLE {
		s = "blackhole " + s
	}
	if r.Gw != nil {
		s += " via " + r.Gw.String()
	}
	if r.LinkIndex > 0 {
		if l, err := h.LinkByIndex(r.LinkIndex); err == nil {
			s += " dev " + l.Attrs().Name
		}
	}
	if r.Priority > 0 {
		s += fmt.Sprintf(" metric %d", r.Priority)
	}
	return s
}

// cleanupLinks deletes weft's devices, counting the entries that go with each.
func cleanupLinks(h *netlink.Handle, o cleanupOptions, verb string,
	report func(string)) error {
	links, err := netlab.Retry(h.LinkList)
	if err != nil {
		return fmt.Errorf("listing links: %w", err)
	}
	var errs []error
	for _, l := range links {
		name, kind := l.Attrs().Name, l.Type()
		var want string
		switch {
		case vxlanDevice.MatchString(name):
			want = "vxlan"
		case name == tunDevice:
			want = "tuntap"
		case o.bridge != "" && name == o.bridge:
			want = "bridge"
		default:
			continue
		}
		if kind != want {
			report(fmt.Sprintf("left %s in place: it is a %s device, not weft's %s", name,
				kind, want))
			continue
		}
		what := describeLink(h, l)
		if !o.dryRun {
			if err := h.LinkDel(l); err != nil && !errors.Is(err, unix.ENODEV) {
				errs = append(errs, fmt.Errorf("deleting device %s: %w", name, err))
				continue
			}
		}
		report(fmt.Sprintf("%s device %s", verb, what))
	}
	return errors.Join(errs...)
}

// describeLink names a device with its kind and the neighbour and FDB entries it
// holds, which go with it.
func describeLink(h *netlink.Handle, l netlink.Link) string {
	s := fmt.Sprintf("%s (%s", l.Attrs().Name, l.Type())
	if v, ok := l.(*netlink.Vxlan); ok {
		s += fmt.Sprintf(" VNI %d", v.VxlanId)
	}
	s += ")"

	idx := l.Attrs().Index
	neighs, fdb := 0, 0
	for _, family := range []int{netlink.FAMILY_V4, netlink.FAMILY_V6} {
		ns, _ := netlab.Retry(func() ([]netlink.Neigh, error) {
			return h.NeighList(idx, family)
		})
		for _, x := range ns {
			if x.State&netlink.NUD_PERMANENT != 0 {
				neighs++
			}
		}
	}
	if l.Type() == "vxlan" {
		ns, _ := netlab.Retry(func() ([]netlink.Neigh, error) {
			return h.NeighList(idx, unix.AF_BRIDGE)
		})
		for _, x := range ns {
			if x.HardwareAddr != nil && !isZeroMAC(x.HardwareAddr) {
				fdb++
			}
		}
	}
	var held []string
	if neighs > 0 {
		held = append(held, plural(neighs, "neighbour entry", "neighbour entries"))
	}
	if fdb > 0 {
		held = append(held, plural(fdb, "FDB entry", "FDB entries"))
	}
	if len(held) > 0 {
		s += " with " + strings.Join(held, " and ")
	}
	return s
}

func plural(n int, one, many string) string {
	if n == 1 {
		return "1 " + one
	}
	return fmt.Sprintf("%d %s", n, many)
}

func isZeroMAC(m []byte) bool {
	for _, b := range m {
		if b != 0 {
			return false
		}
	}
	return true
}
