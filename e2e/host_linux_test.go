package e2e

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/google/nftables"
	"github.com/google/nftables/expr"
	"github.com/google/nftables/userdata"
	"github.com/vishvananda/netlink"

	"github.com/weftnet/weft/internal/netlab"
	"github.com/weftnet/weft/rules"
	"github.com/weftnet/weft/subnet"
)

// hostResync is the -iptables-resync of the host-side tests, in seconds: the period at
// which weftd puts its rules and its bridge back.
const hostResync = 1

// vxlanMTU is FLANNEL_MTU of a vxlan lab: the underlay's 1500 less VXLAN's 50 bytes.
const vxlanMTU = 1450

// hostLabOptions returns options for a test lab called wt-hs-<suffix>, on VXLAN.
func hostLabOptions(t *testing.T, suffix string) Options {
	t.Helper()
	o := labOptions(t, suffix)
	o.Name = "wt-hs-" + suffix
	o.Backend, o.VNI = "vxlan", testVNI
	return o
}

// TestHostSourceAddresses checks whose address pod traffic carries. Between pods on the
// bridges weftd keeps, every pod is seen with its own address, also where weftd
// masquerades. To the outside namespace, which has no route to the overlay, a pod of a
// host with -ip-masq is seen from that host's underlay address; a pod of a host without
// it gets no answer at all.
func TestHostSourceAddresses(t *testing.T) {
	o := hostLabOptions(t, "src")
	o.Hosts, o.Pods, o.Outside = 2, 1, true
	o.HostFlags = map[int][]string{1: {"-ip-masq"}}
	l := upLab(t, o)
	ctx := context.Background()
	s := l.State()
	h1, h2 := s.Hosts[0], s.Hosts[1]
	p1, p2 := h1.Pods[0], h2.Pods[0]
	for _, h := range s.Hosts {
		if !h.DaemonBridge {
			t.Fatalf("%s: the lab made the pods' bridge, not weftd", h.Name())
		}
	}

	t.Run("pod to pod keeps the source", func(t *testing.T) {
		tests := []struct {
			name     string
			from, to PodState
		}{
			{name: "from the masquerading host", from: p1, to: p2},
			{name: "to the masquerading host", from: p2, to: p1},
		}
		for _, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				got, err := sourceSeen(ctx, tt.from.NS, tt.to.NS, tt.to.Addr.Addr(), 5*time.Second)
				if err != nil {
					t.Fatal(err)
				}
				if got != tt.from.Addr.Addr() {
					t.Errorf("%s sees %s connecting from %s, want the pod's own address %s",
						tt.to.NS, tt.from.NS, got, tt.from.Addr.Addr())
				}
			})
		}
	})

	t.Run("pod to outside with -ip-masq", func(t *testing.T) {
		got, err := sourceSeen(ctx, p1.NS, OutNS(o.Name), OutsideAddr().Addr(), 5*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		if got != h1.Underlay.Addr() {
			t.Errorf("the outside sees %s connecting from %s, want h1's underlay address %s",
				p1.NS, got, h1.Underlay.Addr())
		}
	})

	t.Run("pod to outside without -ip-masq", func(t *testing.T) {
		got, err := sourceSeen(ctx, p2.NS, OutNS(o.Name), OutsideAddr().Addr(),
			1500*time.Millisecond)
		if err == nil {
			t.Errorf("the outside answered %s from %s, although h2 does not masquerade and the "+
				"outside has no route to the overlay", p2.NS, got)
		}
	})
}

// sourceSeen connects by TCP from namespace from to a listener it opens on to in
// namespace toNS, and returns the source address the listener's end of the connection
// has. It gives up after timeout.
func sourceSeen(
	ctx context.Context, from, toNS string, to netip.Addr, timeout time.Duration,
) (netip.Addr, error) {
	l, err := netlab.Listen(toNS, "tcp", netip.AddrPortFrom(to, 0).String())
	if err != nil {
		return netip.Addr{}, err
	}
	var wg sync.WaitGroup
	defer wg.Wait()
	defer l.Close()

	seen := make(chan netip.Addr, 1)
	wg.Go(func() {
		conn, err := l.Accept()
		if err != nil {
			return
		}
		defer conn.Close()
		seen <- conn.RemoteAddr().(*net.TCPAddr).AddrPort().Addr().Unmap()
	})

	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	conn, err := netlab.Dial(ctx, from, "tcp", l.Addr().String())
	if err != nil {
		return netip.Addr{}, fmt.Errorf("connecting from %s to %s in %s: %w", from,
			l.Addr(), toNS, err)
	}
	defer conn.Close()
	select {
	case a := <-seen:
		return a, nil
	case <-ctx.Done():
		return netip.Addr{}, fmt.Errorf("connected from %s to %s, but %s accepted nothing: %w",
			from, l.Addr(), toNS, ctx.Err())
	}
}

// TestHostRulesRestored removes weftd's masquerade and forward rules behind its back, in
// ever larger pieces, and expects each time the same rules back within a few resync
// periods; at the end a pod still reaches the outside masqueraded.
func TestHostRulesRestored(t *testing.T) {
	o := hostLabOptions(t, "rules")
	o.Hosts, o.Pods, o.Outside = 1, 1, true
	o.HostFlags = map[int][]string{1: {"-ip-masq", "-iptables-resync", fmt.Sprint(hostResync)}}
	l := upLab(t, o)
	ctx := context.Background()
	h1 := l.State().Hosts[0]
	c := nftIn(t, h1.NS)

	want := readTable(t, c)
	checkFlannelTable(t, want)
	if t.Failed() {
		t.FailNow()
	}

	tests := []struct {
		name   string
		remove func(t *testing.T)
	}{
		{name: "masquerade rule deleted", remove: func(t *testing.T) {
			rs := want.chains[rules.ChainPostrouting].rules
			r := rs[len(rs)-2].raw
			r.Table, r.Chain = flannelTable, &nftables.Chain{Name: rules.ChainPostrouting,
				Table: flannelTable}
			if err := c.DelRule(r); err != nil {
				t.Fatal(err)
			}
		}},
		{name: "forward chain flushed", remove: func(t *testing.T) {
			c.FlushChain(&nftables.Chain{Name: rules.ChainForward, Table: flannelTable})
		}},
		{name: "postrtg chain deleted", remove: func(t *testing.T) {
			ch := &nftables.Chain{Name: rules.ChainPostrouting, Table: flannelTable}
			c.FlushChain(ch)
			c.DelChain(ch)
		}},
		{name: "table deleted", remove: func(t *testing.T) {
			c.DelTable(flannelTable)
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			// weftd is stopped while the rules are removed and read back, so that no
			// resync can put them back before the test has seen them gone.
			if err := h1.Daemon.signal(syscall.SIGSTOP); err != nil {
				t.Fatal(err)
			}
			defer h1.Daemon.signal(syscall.SIGCONT)

			// Equivalent to, for example: ip netns exec wt-hs-rules-h1 nft delete table
			// ip flannel-ipv4
			tt.remove(t)
			if err := c.Flush(); err != nil {
				t.Fatalf("removing: %v", err)
			}
			if got := readTable(t, c); got.equal(want) {
				t.Fatal("the table reads back unchanged after the removal")
			}
			if err := h1.Daemon.signal(syscall.SIGCONT); err != nil {
				t.Fatal(err)
			}
			removed := time.Now()

			deadline := removed.Add(3 * hostResync * time.Second)
			var got tableState
			for {
				got = readTable(t, c)
				if got.equal(want) || time.Now().After(deadline) {
					break
				}
				time.Sleep(50 * time.Millisecond)
			}
			if !got.equal(want) {
				t.Fatalf("%s not back %s after the removal:\nhave %s\nwant %s",
					flannelTable.Name, 3*hostResync*time.Second, got, want)
			}
			t.Logf("back %s after weftd went on", time.Since(removed).Round(time.Millisecond))
		})
	}

	p1 := h1.Pods[0]
	got, err := sourceSeen(ctx, p1.NS, OutNS(o.Name), OutsideAddr().Addr(), 5*time.Second)
	if err != nil {
		t.Fatalf("after the repairs: %v", err)
	}
	if got != h1.Underlay.Addr() {
		t.Errorf("after the repairs the outside sees the pod from %s, want %s", got,
			h1.Underlay.Addr())
	}
}

// flannelTable is the IPv4 table weftd and flanneld's nftables mode keep.
var flannelTable = &nftables.Table{Name: rules.TableIPv4, Family: nftables.TableFamilyIPv4}

// nftIn returns an nftables connection whose requests act in the namespace called ns.
func nftIn(t *testing.T, ns string) *nftables.Conn {
	t.Helper()
	h, err := netlab.Open(ns)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { h.Close() })
	c, err := nftables.New(nftables.WithNetNSFd(int(h)))
	if err != nil {
		t.Fatalf("opening nftables in %s: %v", ns, err)
	}
	return c
}

// tableState is what the kernel holds of the flannel-ipv4 table.
type tableState struct {
	exists bool
	chains map[string]chainState
}

// chainState is one chain as read back: its base chain attributes and its rules.
type chainState struct {
	kind     nftables.ChainType
	hook     nftables.ChainHook
	priority nftables.ChainPriority
	policy   nftables.ChainPolicy
	rules    []ruleState
}

type ruleState struct {
	exprs   []expr.Any
	comment string
	// raw is the rule as read, with its handle; left out of comparisons.
	raw *nftables.Rule
}

// readTable reads the flannel-ipv4 table of c's namespace.
func readTable(t *testing.T, c *nftables.Conn) tableState {
	t.Helper()
	tables, err := c.ListTablesOfFamily(nftables.TableFamilyIPv4)
	if err != nil {
		t.Fatalf("listing tables: %v", err)
	}
	s := tableState{chains: map[string]chainState{}}
	for _, tb := range tables {
		s.exists = s.exists || tb.Name == flannelTable.Name
	}
	if !s.exists {
		return s
	}

	chains, err := c.ListChainsOfTableFamily(nftables.TableFamilyIPv4)
	if err != nil {
		t.Fatalf("listing chains: %v", err)
	}
	for _, ch := range chains {
		if ch.Table == nil || ch.Table.Name != flannelTable.Name {
			continue
		}
		cs := chainState{kind: ch.Type}
		if ch.Hooknum != nil {
			cs.hook = *ch.Hooknum
		}
		if ch.Priority != nil {
			cs.priority = *ch.Priority
		}
		if ch.Policy != nil {
			cs.policy = *ch.Policy
		}
		rs, err := c.GetRules(flannelTable, ch)
		if errors.Is(err, syscall.ENOENT) {
			// Deleted between the listing and now.
			continue
		}
		if err != nil {
			t.Fatalf("reading rules of chain %s: %v", ch.Name, err)
		}
		for _, r := range rs {
			comment, _ := userdata.GetString(r.UserData, userdata.TypeComment)
			cs.rules = append(cs.rules, ruleState{exprs: r.Exprs, comment: comment, raw: r})
		}
		s.chains[ch.Name] = cs
	}
	return s
}

// equal reports whether s and o hold the same chains with the same rules.
func (s tableState) equal(o tableState) bool {
	if s.exists != o.exists || len(s.chains) != len(o.chains) {
		return false
	}
	for name, a := range s.chains {
		b, ok := o.chains[name]
		if !ok || a.kind != b.kind || a.hook != b.hook || a.priority != b.priority ||
			a.policy != b.policy || len(a.rules) != len(b.rules) {
			return false
		}
		for i := range a.rules {
			if a.rules[i].comment != b.rules[i].comment ||
				!reflect.DeepEqual(a.rules[i].exprs, b.rules[i].exprs) {
				return false
			}
		}
	}
	return true
}

// String summarises s for failure messages: each chain with its rule count.
func (s tableState) String() string {
	if !s.exists {
		return "no table"
	}
	var parts []string
	for name, c := range s.chains {
		parts = append(parts, fmt.Sprintf("%s (%s, %d rules)", name, c.kind, len(c.rules)))
	}
	if len(parts) == 0 {
		return "a table without chains"
	}
	return strings.Join(parts, ", ")
}

// checkFlannelTable checks that s is what flanneld's nftables mode has with -ip-masq and
// the forward rules: chain forward, a filter chain with flanneld's two forward rules, and
// chain postrtg, a nat chain with its six masquerade rules, each rule carrying
// flanneld's comment.
func checkFlannelTable(t *testing.T, s tableState) {
	t.Helper()
	if !s.exists {
		t.Fatalf("weftd -ip-masq made no table %s", flannelTable.Name)
	}
	want := []struct {
		name    string
		kind    nftables.ChainType
		hook    nftables.ChainHook
		rules   int
		comment string
	}{
		{name: rules.ChainForward, kind: nftables.ChainTypeFilter,
			hook: *nftables.ChainHookForward, rules: 2, comment: rules.CommentForward},
		{name: rules.ChainPostrouting, kind: nftables.ChainTypeNAT,
			hook: *nftables.ChainHookPostrouting, rules: 6, comment: rules.CommentMasq},
	}
	if len(s.chains) != len(want) {
		t.Errorf("table %s has chains %s, want %s and %s", flannelTable.Name, s,
			rules.ChainForward, rules.ChainPostrouting)
	}
	for _, w := range want {
		c, ok := s.chains[w.name]
		if !ok {
			t.Errorf("table %s has no chain %s", flannelTable.Name, w.name)
			continue
		}
		if c.kind != w.kind || c.hook != w.hook || c.policy != nftables.ChainPolicyAccept ||
			len(c.rules) != w.rules {
			t.Errorf("chain %s: type %s hook %d policy %d with %d rules, want type %s hook %d "+
				"policy accept with %d rules", w.name, c.kind, c.hook, c.policy, len(c.rules),
				w.kind, w.hook, w.rules)
		}
		for i, r := range c.rules {
			if r.comment != w.comment {
				t.Errorf("chain %s rule %d: comment %q, want %q", w.name, i, r.comment, w.comment)
			}
		}
	}
}

// TestHostBridgeAddress gives the bridge weftd keeps a stale address, once while weftd is
// stopped and once while it runs, and expects weftd to leave FLANNEL_SUBNET's address
// as the only IPv4 address, with the overlay's MTU, on the same bridge.
func TestHostBridgeAddress(t *testing.T) {
	o := hostLabOptions(t, "br")
	o.Hosts = 1
	o.HostFlags = map[int][]string{1: {"-iptables-resync", fmt.Sprint(hostResync)}}
	l := upLab(t, o)
	ctx := context.Background()
	h1 := l.State().Hosts[0]
	h, err := netlab.NewHandle(h1.NS)
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close()

	lease, err := l.HostLease(ctx, 1)
	if err != nil {
		t.Fatal(err)
	}
	want := subnet.FirstHost(lease.Subnet)
	env, err := subnet.ReadEnvFile(h1.SubnetFile)
	if err != nil {
		t.Fatal(err)
	}
	if env.Subnet != lease.Subnet || env.MTU != vxlanMTU {
		t.Fatalf("subnet.env has subnet %s and FLANNEL_MTU=%d, want the lease's %s and %d",
			env.Subnet, env.MTU, lease.Subnet, vxlanMTU)
	}
	checkPodBridge(t, h, want)
	// Addresses of earlier leases, inside the overlay and outside it.
	stale := []netip.Prefix{
		netip.MustParsePrefix("198.19.254.1/24"),
		netip.MustParsePrefix("198.18.77.1/24"),
	}

	t.Run("before weftd starts", func(t *testing.T) {
		if err := l.StopDaemon(ctx, 1, syscall.SIGTERM); err != nil {
			t.Fatal(err)
		}
		// Equivalent to: ip link del cni0; ip link add cni0 type bridge;
		// ip addr add 198.19.254.1/24 dev cni0; ip addr add 198.18.77.1/24 dev cni0
		if link, err := h.LinkByName(podBridge); err == nil {
			if err := h.LinkDel(link); err != nil {
				t.Fatal(err)
			}
		}
		br := &netlink.Bridge{LinkAttrs: netlink.LinkAttrs{Name: podBridge}}
		if err := h.LinkAdd(br); err != nil {
			t.Fatal(err)
		}
		link, err := h.LinkByName(podBridge)
		if err != nil {
			t.Fatal(err)
		}
		for _, p := range stale {
			if err := h.AddrAdd(link, &netlink.Addr{IPNet: netlab.IPNet(p)}); err != nil {
				t.Fatal(err)
			}
		}

		if err := l.StartDaemon(ctx, 1); err != nil {
			t.Fatal(err)
		}
		got := checkPodBridge(t, h, want)
		if got.Attrs().Index != link.Attrs().Index {
			t.Errorf("weftd replaced bridge %s (index %d) instead of correcting it (index %d)",
				podBridge, got.Attrs().Index, link.Attrs().Index)
		}
	})

	t.Run("while weftd runs", func(t *testing.T) {
		link, err := h.LinkByName(podBridge)
		if err != nil {
			t.Fatal(err)
		}
		// Equivalent to: ip addr add 198.19.254.1/24 dev cni0; ip addr del <want> dev
		// cni0; ip link set cni0 mtu 1400
		if err := h.AddrAdd(link, &netlink.Addr{IPNet: netlab.IPNet(stale[0])}); err != nil {
			t.Fatal(err)
		}
		if err := h.AddrDel(link, &netlink.Addr{IPNet: netlab.IPNet(want)}); err != nil {
			t.Fatal(err)
		}
		if err := h.LinkSetMTU(link, 1400); err != nil {
			t.Fatal(err)
		}
		changed := time.Now()

		deadline := changed.Add(3 * hostResync * time.Second)
		for {
			link, err = h.LinkByName(podBridge)
			if err != nil {
				t.Fatal(err)
			}
			addrs := bridgeAddrs(t, h, link)
			if len(addrs) == 1 && addrs[0] == want && link.Attrs().MTU == vxlanMTU {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("%s not corrected %s after the change: addresses %v, MTU %d", podBridge,
					3*hostResync*time.Second, addrs, link.Attrs().MTU)
			}
			time.Sleep(50 * time.Millisecond)
		}
		t.Logf("corrected after %s", time.Since(changed).Round(time.Millisecond))
		checkPodBridge(t, h, want)
	})
}

// checkPodBridge checks that the pods' bridge is a bridge that is up, at the overlay's
// MTU, with want as its only IPv4 address, and returns it.
func checkPodBridge(t *testing.T, h *netlink.Handle, want netip.Prefix) netlink.Link {
	t.Helper()
	link, err := h.LinkByName(podBridge)
	if err != nil {
		t.Fatalf("weftd keeps no bridge %s: %v", podBridge, err)
	}
	a := link.Attrs()
	if link.Type() != "bridge" || a.MTU != vxlanMTU || a.Flags&net.FlagUp == 0 {
		t.Errorf("%s is a %s with MTU %d and flags %v, want a bridge that is up with MTU %d",
			podBridge, link.Type(), a.MTU, a.Flags, vxlanMTU)
	}
	if got := bridgeAddrs(t, h, link); len(got) != 1 || got[0] != want {
		t.Errorf("%s has IPv4 addresses %v, want only %s", podBridge, got, want)
	}
	return link
}

// bridgeAddrs returns the IPv4 addresses of link.
func bridgeAddrs(t *testing.T, h *netlink.Handle, link netlink.Link) []netip.Prefix {
	t.Helper()
	addrs, err := netlab.Retry(func() ([]netlink.Addr, error) {
		return h.AddrList(link, netlink.FAMILY_V4)
	})
	if err != nil {
		t.Fatalf("reading addresses of %s: %v", link.Attrs().Name, err)
	}
	var out []netip.Prefix
	for _, a := range addrs {
		ip, _ := netip.AddrFromSlice(a.IP)
		bits, _ := a.Mask.Size()
		out = append(out, netip.PrefixFrom(ip.Unmap(), bits))
	}
	return out
}

// TestHostFiles runs weftd with -hyper-config, -docker-opts and -cni-conf on two hosts,
// one with -ip-masq, and checks that the files carry each host's lease from etcd.
func TestHostFiles(t *testing.T) {
	o := hostLabOptions(t, "files")
	o.Hosts = 2
	dir := t.TempDir()
	type files struct{ hyperd, docker, cni string }
	paths := map[int]files{}
	o.HostFlags = map[int][]string{}
	for i := 1; i <= o.Hosts; i++ {
		f := files{
			hyperd: filepath.Join(dir, fmt.Sprintf("h%d", i), "hyper", "config"),
			docker: filepath.Join(dir, fmt.Sprintf("h%d", i), "docker_opts.env"),
			cni:    filepath.Join(dir, fmt.Sprintf("h%d", i), "net.d", "10-flannel.conflist"),
		}
		paths[i] = f
		o.HostFlags[i] = []string{"-hyper-config", f.hyperd, "-docker-opts", f.docker,
			"-cni-conf", f.cni}
	}
	o.HostFlags[1] = append(o.HostFlags[1], "-ip-masq")
	o.HostFlags[2] = append(o.HostFlags[2], "-docker-opts-key", "DOCKER_NETWORK_OPTIONS")

	// h1's hyperd was configured before, for its own bridge.
	oldHyperd := "Kernel=/var/lib/hyper/kernel\nBridge=hyper0\nBridgeIP=192.168.123.1/24\n" +
		"\n[Log]\nPodLogPrefix=/var/run/hyper/Pods\n"
	if err := os.MkdirAll(filepath.Dir(paths[1].hyperd), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(paths[1].hyperd, []byte(oldHyperd), 0o644); err != nil {
		t.Fatal(err)
	}

	l := upLab(t, o)
	ctx := context.Background()
	gws := map[int]string{}
	for i := 1; i <= o.Hosts; i++ {
		lease, err := l.HostLease(ctx, i)
		if err != nil {
			t.Fatal(err)
		}
		gws[i] = subnet.FirstHost(lease.Subnet).String()
	}

	t.Run("hyperd", func(t *testing.T) {
		want := map[int]string{
			1: "Kernel=/var/lib/hyper/kernel\nBridge=cni0\nBridgeIP=" + gws[1] + "\n" +
				"DisableIptables=true\n\n[Log]\nPodLogPrefix=/var/run/hyper/Pods\n",
			2: "Bridge=cni0\nBridgeIP=" + gws[2] + "\n",
		}
		for i, w := range want {
			if got := readFile(t, paths[i].hyperd); got != w {
				t.Errorf("h%d %s:\n%s\nwant:\n%s", i, paths[i].hyperd, got, w)
			}
		}
	})

	t.Run("docker", func(t *testing.T) {
		want := map[int]string{
			1: fmt.Sprintf("DOCKER_OPT_BIP=\"--bip=%s\"\nDOCKER_OPT_IPMASQ=\"--ip-masq=false\"\n"+
				"DOCKER_OPT_MTU=\"--mtu=%d\"\nDOCKER_OPTS=\" --bip=%s --ip-masq=false --mtu=%d\"\n",
				gws[1], vxlanMTU, gws[1], vxlanMTU),
			2: fmt.Sprintf("DOCKER_OPT_BIP=\"--bip=%s\"\nDOCKER_OPT_IPMASQ=\"--ip-masq=true\"\n"+
				"DOCKER_OPT_MTU=\"--mtu=%d\"\n"+
				"DOCKER_NETWORK_OPTIONS=\" --bip=%s --ip-masq=true --mtu=%d\"\n",
				gws[2], vxlanMTU, gws[2], vxlanMTU),
		}
		for i, w := range want {
			if got := readFile(t, paths[i].docker); got != w {
				t.Errorf("h%d %s:\n%s\nwant:\n%s", i, paths[i].docker, got, w)
			}
		}
	})

	t.Run("cni", func(t *testing.T) {
		hosts := l.State().Hosts
		for i := 1; i <= o.Hosts; i++ {
			var got struct {
				Name       string
				CNIVersion string
				Plugins    []map[string]any
			}
			if err := json.Unmarshal([]byte(readFile(t, paths[i].cni)), &got); err != nil {
				t.Fatalf("h%d %s: %v", i, paths[i].cni, err)
			}
			if got.Name != "cbr0" || len(got.Plugins) != 2 || got.Plugins[0]["type"] != "flannel" {
				t.Errorf("h%d %s: network %q with plugins %v, want cbr0 with flannel first",
					i, paths[i].cni, got.Name, got.Plugins)
				continue
			}
			// The plugin reads this host's subnet.env; the bridge it delegates to is the
			// bridge plugin's default, cni0, which weftd keeps.
			flannel := got.Plugins[0]
			if sf := flannel["subnetFile"]; sf != hosts[i-1].SubnetFile {
				t.Errorf("h%d %s: subnetFile %v, want %s", i, paths[i].cni, sf,
					hosts[i-1].SubnetFile)
			}
			if d, _ := flannel["delegate"].(map[string]any); d == nil || d["bridge"] != nil {
				t.Errorf("h%d %s: delegate %v, want one that leaves the bridge at cni0",
					i, paths[i].cni, flannel["delegate"])
			}
		}
	})
}

// readFile returns the content of path, failing the test when it cannot be read.
func readFile(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}
