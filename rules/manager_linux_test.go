package rules

import (
	"context"
	"encoding/binary"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"net"
	"net/netip"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/weftnet/weft/internal/logbuf"

	"github.com/google/nftables"
	"github.com/google/nftables/expr"
	"github.com/google/nftables/userdata"
	mdnetlink "github.com/mdlayher/netlink"
	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"

	"github.com/weftnet/weft/internal/nstest"
)

var discard = slog.New(slog.NewTextHandler(io.Discard, nil))

func newManager(t *testing.T, cfg Config, log *slog.Logger, ns netns.NsHandle) *Manager {
	t.Helper()
	m, err := New(cfg, log, ns)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	t.Cleanup(func() { m.Close() })
	return m
}

func mustSync(t *testing.T, m *Manager) bool {
	t.Helper()
	changed, err := m.Sync()
	if err != nil {
		t.Fatalf("Sync: %v", err)
	}
	return changed
}

// nftConn opens the nftables library on ns, for the test's own reads and writes.
func nftConn(t *testing.T, ns netns.NsHandle) *nftables.Conn {
	t.Helper()
	c, err := nftables.New(nftables.WithNetNSFd(int(ns)))
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// chainRules returns the rules of a chain as nft would print them, "?" for a rule of a
// shape weft does not write, nil when the chain does not exist.
func chainRules(t *testing.T, c *nftables.Conn, f family, table, chain string) []string {
	t.Helper()
	nt := &nftables.Table{Name: table, Family: f.nftFamily()}
	rules, err := c.GetRules(nt, &nftables.Chain{Name: chain, Table: nt})
	if err != nil {
		return nil
	}
	out := []string{}
	for _, r := range rules {
		pr, ok := parseRule(f, r.Exprs, r.UserData)
		if !ok {
			out = append(out, "?")
			continue
		}
		out = append(out, pr.format(f))
	}
	return out
}

// chains returns the chains of a table by name.
func chains(t *testing.T, c *nftables.Conn, f family, table string) map[string]*nftables.Chain {
	t.Helper()
	all, err := c.ListChainsOfTableFamily(f.nftFamily())
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]*nftables.Chain{}
	for _, ch := range all {
		if ch.Table.Name == table {
			out[ch.Name] = ch
		}
	}
	return out
}

// generation returns the nftables ruleset generation of ns, which every committed
// transaction moves on.
func generation(t *testing.T, ns netns.NsHandle) uint32 {
	t.Helper()
	c, err := nfnlDial(int(ns))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	replies, err := c.Execute(mdnetlink.Message{
		Header: mdnetlink.Header{Type: nftMsgType(unix.NFT_MSG_GETGEN), Flags: mdnetlink.Request},
		Data:   nfgenmsg(unix.AF_UNSPEC, 0),
	})
	if err != nil {
		t.Fatalf("reading nftables generation: %v", err)
	}
	for _, r := range replies {
		ad, err := mdnetlink.NewAttributeDecoder(r.Data[4:])
		if err != nil {
			t.Fatal(err)
		}
		for ad.Next() {
			if ad.Type() == unix.NFTA_GEN_ID {
				return binary.BigEndian.Uint32(ad.Bytes())
			}
		}
	}
	t.Fatal("no generation in the kernel's answer")
	return 0
}

// comments returns the comments of the tables ("" key) and chains of family f's table.
func comments(t *testing.T, ns netns.NsHandle, f family, table string) map[string]string {
	t.Helper()
	c, err := nfnlDial(int(ns))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	out := map[string]string{}
	for _, q := range []struct {
		msg              int
		nameAttr, udAttr uint16
	}{
		{unix.NFT_MSG_GETTABLE, unix.NFTA_TABLE_NAME, nftaTableUserdata},
		{unix.NFT_MSG_GETCHAIN, unix.NFTA_CHAIN_NAME, nftaChainUserdata},
	} {
		replies, err := c.Execute(mdnetlink.Message{
			Header: mdnetlink.Header{
				Type:  nftMsgType(q.msg),
				Flags: mdnetlink.Request | mdnetlink.Dump,
			},
			Data: nfgenmsg(uint8(f.nftFamily()), 0),
		})
		if err != nil {
			t.Fatal(err)
		}
		for _, r := range replies {
			ad, err := mdnetlink.NewAttributeDecoder(r.Data[4:])
			if err != nil {
				t.Fatal(err)
			}
			var tbl, name, comment string
			for ad.Next() {
				switch ad.Type() {
				case q.nameAttr:
					name = ad.String()
				case q.udAttr:
					comment, _ = userdata.GetString(ad.Bytes(), userdata.TypeComment)
				}
				if q.msg == unix.NFT_MSG_GETCHAIN && ad.Type() == unix.NFTA_CHAIN_TABLE {
					tbl = ad.String()
				}
			}
			switch {
			case q.msg == unix.NFT_MSG_GETTABLE && name == table:
				out[""] = comment
			case q.msg == unix.NFT_MSG_GETCHAIN && tbl == table:
				out[name] = comment
			}
		}
	}
	return out
}

// blackholeRoutes lists the blackhole routes of ns's main table as "dst metric".
func blackholeRoutes(t *testing.T, h *netlink.Handle) []string {
	t.Helper()
	var out []string
	for _, fam := range []int{netlink.FAMILY_V4, netlink.FAMILY_V6} {
		routes, err := h.RouteListFiltered(fam,
			&netlink.Route{Table: unix.RT_TABLE_MAIN, Type: unix.RTN_BLACKHOLE},
			netlink.RT_FILTER_TABLE|netlink.RT_FILTER_TYPE)
		if err != nil {
			t.Fatal(err)
		}
		for _, r := range routes {
			out = append(out, fmt.Sprintf("%s %d", r.Dst, r.Priority))
		}
	}
	slices.Sort(out)
	return out
}

// wantChains checks family f's table against the hand-written rule lists.
func wantChains(t *testing.T, c *nftables.Conn, f family, table string, want map[string][]string) {
	t.Helper()
	have := chains(t, c, f, table)
	if len(have) != len(want) {
		t.Errorf("%s %s has chains %v, want %d", f, table, have, len(want))
	}
	for name, rules := range want {
		if got := chainRules(t, c, f, table, name); !slices.Equal(got, rules) {
			t.Errorf("%s %s chain %s:\n got %q\nwant %q", f, table, name, got, rules)
		}
	}
}

func TestSyncInstalls(t *testing.T) {
	ns := nstest.New(t)
	h := nstest.Handle(t, ns)
	nft := nftConn(t, ns)
	m := newManager(t, testCfg, discard, ns)

	if !mustSync(t, m) {
		t.Error("first Sync reported no change")
	}

	wantChains(t, nft, ipv4, TableIPv4, map[string][]string{
		"forward": wantForward4, "postrtg": wantMasq4})
	wantChains(t, nft, ipv6, TableIPv6, map[string][]string{
		"forward": wantForward6, "postrtg": wantMasq6})

	for _, f := range []family{ipv4, ipv6} {
		ch := chains(t, nft, f, map[family]string{ipv4: TableIPv4, ipv6: TableIPv6}[f])
		for name, want := range map[string]struct {
			kind     nftables.ChainType
			hook     nftables.ChainHook
			priority nftables.ChainPriority
		}{
			"forward": {nftables.ChainTypeFilter, *nftables.ChainHookForward,
				*nftables.ChainPriorityFilter},
			"postrtg": {nftables.ChainTypeNAT, *nftables.ChainHookPostrouting,
				*nftables.ChainPriorityNATSource},
		} {
			c := ch[name]
			if c == nil || c.Type != want.kind || *c.Hooknum != want.hook ||
				*c.Priority != want.priority || *c.Policy != nftables.ChainPolicyAccept {
				t.Errorf("%s chain %s is %+v, want %+v policy accept", f, name, c, want)
			}
		}
	}

	wantComments := map[string]string{
		"":        "rules for flannel-ipv4",
		"forward": "chain to accept flannel traffic",
		"postrtg": "chain to manage traffic masquerading by flannel",
	}
	if got := comments(t, ns, ipv4, TableIPv4); !maps.Equal(got, wantComments) {
		t.Errorf("comments %q, want %q", got, wantComments)
	}
	wantComments[""] = "rules for flannel-ipv6"
	if got := comments(t, ns, ipv6, TableIPv6); !maps.Equal(got, wantComments) {
		t.Errorf("comments %q, want %q", got, wantComments)
	}

	wantRoutes := []string{"198.19.5.0/24 4096", "fd00:198:19:5::/64 4096"}
	if got := blackholeRoutes(t, h); !slices.Equal(got, wantRoutes) {
		t.Errorf("blackhole routes %q, want %q", got, wantRoutes)
	}
}

func TestSyncSteadyStateWritesNothing(t *testing.T) {
	ns := nstest.New(t)
	m := newManager(t, testCfg, discard, ns)
	mustSync(t, m)

	gen := generation(t, ns)
	for range 3 {
		if mustSync(t, m) {
			t.Error("Sync changed something in steady state")
		}
	}
	if after := generation(t, ns); after != gen {
		t.Errorf("nftables generation moved from %d to %d: a resync wrote", gen, after)
	}

	// The check can fail: one change moves the generation.
	mustSync(t, m)
	nft := nftConn(t, ns)
	nft.FlushChain(&nftables.Chain{Name: ChainForward,
		Table: &nftables.Table{Name: TableIPv4, Family: nftables.TableFamilyIPv4}})
	if err := nft.Flush(); err != nil {
		t.Fatal(err)
	}
	if generation(t, ns) == gen {
		t.Error("a flush did not move the generation; the check above proves nothing")
	}
}

func TestSyncRepairs(t *testing.T) {
	t4 := &nftables.Table{Name: TableIPv4, Family: nftables.TableFamilyIPv4}
	tests := []struct {
		name    string
		breakIt func(c *nftables.Conn)
	}{
		{name: "flushed chain", breakIt: func(c *nftables.Conn) {
			c.FlushChain(&nftables.Chain{Name: ChainPostrouting, Table: t4})
		}},
		{name: "one rule removed", breakIt: func(c *nftables.Conn) {
			ch := &nftables.Chain{Name: ChainPostrouting, Table: t4}
			rules, err := c.GetRules(t4, ch)
			if err != nil || len(rules) < 4 {
				panic(fmt.Sprintf("reading rules: %v", err))
			}
			if err := c.DelRule(rules[3]); err != nil {
				panic(err)
			}
		}},
		{name: "rule added", breakIt: func(c *nftables.Conn) {
			c.AddRule(&nftables.Rule{
				Table: t4,
				Chain: &nftables.Chain{Name: ChainForward, Table: t4},
				Exprs: rule{verdict: accept}.exprs(ipv4),
			})
		}},
		{name: "chain of the wrong priority", breakIt: func(c *nftables.Conn) {
			ch := &nftables.Chain{Name: ChainForward, Table: t4}
			c.FlushChain(ch)
			c.DelChain(ch)
			c.AddChain(&nftables.Chain{
				Name:     ChainForward,
				Table:    t4,
				Type:     nftables.ChainTypeFilter,
				Hooknum:  nftables.ChainHookForward,
				Priority: nftables.ChainPriorityMangle,
			})
		}},
		{name: "table deleted", breakIt: func(c *nftables.Conn) { c.DelTable(t4) }},
		{name: "extra chain", breakIt: func(c *nftables.Conn) {
			c.AddChain(&nftables.Chain{Name: "stray", Table: t4})
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ns := nstest.New(t)
			nft := nftConn(t, ns)
			var logs logbuf.Buffer
			m := newManager(t, testCfg, slog.New(slog.NewTextHandler(&logs, nil)), ns)
			mustSync(t, m)

			tt.breakIt(nft)
			if err := nft.Flush(); err != nil {
				t.Fatalf("breaking the table: %v", err)
			}
			if !mustSync(t, m) {
				t.Error("Sync reported no change")
			}
			wantChains(t, nft, ipv4, TableIPv4, map[string][]string{
				"forward": wantForward4, "postrtg": wantMasq4})
			if c := chains(t, nft, ipv4, TableIPv4)[ChainForward]; c == nil ||
				*c.Priority != *nftables.ChainPriorityFilter {
				t.Errorf("forward chain is %+v, want priority filter", c)
			}
			if got := comments(t, ns, ipv4, TableIPv4)[""]; got != "rules for flannel-ipv4" {
				t.Errorf("table comment %q", got)
			}
			if !strings.Contains(logs.String(), "level=INFO") {
				t.Errorf("the repair was not logged at Info:\n%s", logs.String())
			}
			if mustSync(t, m) {
				t.Error("Sync after the repair changed something again")
			}
		})
	}
}

func TestSyncRemovesWhatIsNotWanted(t *testing.T) {
	ns := nstest.New(t)
	h := nstest.Handle(t, ns)
	nft := nftConn(t, ns)
	mustSync(t, newManager(t, testCfg, discard, ns))

	cfg := testCfg
	cfg.Masquerade = false
	cfg.IPv6Network, cfg.IPv6Subnet = netip.Prefix{}, netip.Prefix{}
	cfg.BlackholeRoute = false
	if !mustSync(t, newManager(t, cfg, discard, ns)) {
		t.Error("Sync reported no change")
	}
	wantChains(t, nft, ipv4, TableIPv4, map[string][]string{"forward": wantForward4})
	if tables, _ := nft.ListTablesOfFamily(nftables.TableFamilyIPv6); len(tables) != 0 {
		t.Errorf("IPv6 tables %v remain without an IPv6 network", tables)
	}
	// The IPv6 route belongs to a subnet this Config no longer knows; it stays.
	want := []string{"fd00:198:19:5::/64 4096"}
	if got := blackholeRoutes(t, h); !slices.Equal(got, want) {
		t.Errorf("blackhole routes %q, want %q", got, want)
	}

	cfg.Forward = false
	mustSync(t, newManager(t, cfg, discard, ns))
	if tables, _ := nft.ListTablesOfFamily(nftables.TableFamilyIPv4); len(tables) != 0 {
		t.Errorf("tables %v remain with neither chain wanted", tables)
	}
}

func TestSyncPreviousLease(t *testing.T) {
	ns := nstest.New(t)
	h := nstest.Handle(t, ns)
	nft := nftConn(t, ns)
	old := testCfg
	old.Subnet = netip.MustParsePrefix("198.19.9.0/24")
	old.IPv6Subnet = netip.MustParsePrefix("fd00:198:19:9::/64")
	mustSync(t, newManager(t, old, discard, ns))

	cfg := testCfg
	cfg.PrevSubnet, cfg.PrevIPv6Subnet = old.Subnet, old.IPv6Subnet
	mustSync(t, newManager(t, cfg, discard, ns))

	wantChains(t, nft, ipv4, TableIPv4, map[string][]string{
		"forward": wantForward4, "postrtg": wantMasq4})
	wantChains(t, nft, ipv6, TableIPv6, map[string][]string{
		"forward": wantForward6, "postrtg": wantMasq6})
	want := []string{"198.19.5.0/24 4096", "fd00:198:19:5::/64 4096"}
	if got := blackholeRoutes(t, h); !slices.Equal(got, want) {
		t.Errorf("blackhole routes %q, want %q", got, want)
	}
}

func TestBlackholeYieldsToBridge(t *testing.T) {
	ns := nstest.New(t)
	h := nstest.Handle(t, ns)
	cfg := testCfg
	cfg.IPv6Network, cfg.IPv6Subnet = netip.Prefix{}, netip.Prefix{}

	// A blackhole at metric 0 for the own subnet, as flanneld adds it.
	flanneld := &netlink.Route{Dst: prefixToIPNet(cfg.Subnet), Type: unix.RTN_BLACKHOLE}
	if err := h.RouteAdd(flanneld); err != nil {
		t.Fatal(err)
	}
	mustSync(t, newManager(t, cfg, discard, ns))
	want := []string{"198.19.5.0/24 4096"}
	if got := blackholeRoutes(t, h); !slices.Equal(got, want) {
		t.Fatalf("blackhole routes %q, want %q", got, want)
	}

	// Without the bridge, the subnet is dropped here instead of leaving by a default
	// route.
	if _, err := h.RouteGet(netip.MustParseAddr("198.19.5.9").AsSlice()); err == nil {
		t.Error("a route to 198.19.5.9 exists with only the blackhole in place")
	}

	// When the bridge gets its address, its route wins.
	br := &netlink.Bridge{LinkAttrs: netlink.LinkAttrs{Name: "wt-b-br"}}
	if err := h.LinkAdd(br); err != nil {
		t.Fatal(err)
	}
	addr, _ := netlink.ParseAddr("198.19.5.1/24")
	if err := h.AddrAdd(br, addr); err != nil {
		t.Fatal(err)
	}
	if err := h.LinkSetUp(br); err != nil {
		t.Fatal(err)
	}
	routes, err := h.RouteGet(netip.MustParseAddr("198.19.5.9").AsSlice())
	if err != nil || len(routes) != 1 || routes[0].LinkIndex != br.Attrs().Index {
		t.Errorf("route to 198.19.5.9 is %v (%v), want one through the bridge", routes, err)
	}
}

func TestRunResyncs(t *testing.T) {
	ns := nstest.New(t)
	nft := nftConn(t, ns)
	m := newManager(t, testCfg, discard, ns)
	mustSync(t, m)

	if err := m.Run(context.Background(), 0); err == nil {
		t.Error("Run accepted a zero period")
	}

	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- m.Run(ctx, 20*time.Millisecond) }()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run: %v", err)
		}
	}()

	t4 := &nftables.Table{Name: TableIPv4, Family: nftables.TableFamilyIPv4}
	nft.FlushChain(&nftables.Chain{Name: ChainPostrouting, Table: t4})
	if err := nft.Flush(); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(5 * time.Second)
	for !slices.Equal(chainRules(t, nft, ipv4, TableIPv4, ChainPostrouting), wantMasq4) {
		if time.Now().After(deadline) {
			t.Fatal("Run did not restore the flushed chain")
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// veth connects namespace a (link nameA, address addrA) with namespace b (nameB, addrB)
// and sets both ends up.
func veth(t *testing.T, a, b netns.NsHandle, nameA, addrA, nameB, addrB string) {
	t.Helper()
	ha, hb := nstest.Handle(t, a), nstest.Handle(t, b)
	v := &netlink.Veth{
		LinkAttrs:     netlink.LinkAttrs{Name: nameA},
		PeerName:      nameB,
		PeerNamespace: netlink.NsFd(int(b)),
	}
	if err := ha.LinkAdd(v); err != nil {
		t.Fatalf("adding veth %s/%s: %v", nameA, nameB, err)
	}
	for _, end := range []struct {
		h          *netlink.Handle
		name, addr string
	}{{ha, nameA, addrA}, {hb, nameB, addrB}} {
		link, err := end.h.LinkByName(end.name)
		if err != nil {
			t.Fatal(err)
		}
		addr, err := netlink.ParseAddr(end.addr)
		if err != nil {
			t.Fatal(err)
		}
		if err := end.h.AddrAdd(link, addr); err != nil {
			t.Fatalf("adding %s to %s: %v", end.addr, end.name, err)
		}
		if err := end.h.LinkSetUp(link); err != nil {
			t.Fatal(err)
		}
	}
}

func addRoute(t *testing.T, ns netns.NsHandle, dst, gw string) {
	t.Helper()
	r := &netlink.Route{Gw: netip.MustParseAddr(gw).AsSlice()}
	if dst != "default" {
		r.Dst = prefixToIPNet(netip.MustParsePrefix(dst))
	}
	if err := nstest.Handle(t, ns).RouteAdd(r); err != nil {
		t.Fatalf("adding route %s via %s: %v", dst, gw, err)
	}
}

// listen opens a TCP listener inside ns and returns it with a channel that delivers
// the source address of each connection it accepts.
func listen(t *testing.T, ns netns.NsHandle, addr string) (string, <-chan netip.Addr) {
	t.Helper()
	var ln net.Listener
	var err error
	nstest.Do(t, ns, func() { ln, err = net.Listen("tcp4", addr) })
	if err != nil {
		t.Fatalf("listening on %s: %v", addr, err)
	}
	t.Cleanup(func() { ln.Close() })
	peers := make(chan netip.Addr, 4)
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			peers <- c.RemoteAddr().(*net.TCPAddr).AddrPort().Addr().Unmap()
			c.Close()
		}
	}()
	return ln.Addr().String(), peers
}

// dial connects from inside ns to addr and reports the address the far side saw.
func dial(
	t *testing.T, ns netns.NsHandle, addr string, peers <-chan netip.Addr,
) (netip.Addr, error) {
	t.Helper()
	var err error
	nstest.Do(t, ns, func() {
		var c net.Conn
		c, err = net.DialTimeout("tcp4", addr, time.Second)
		if err == nil {
			c.Close()
		}
	})
	if err != nil {
		return netip.Addr{}, err
	}
	select {
	case a := <-peers:
		return a, nil
	case <-time.After(5 * time.Second):
		t.Fatalf("%s accepted nothing", addr)
	}
	return netip.Addr{}, nil
}

func TestMasqueradeTraffic(t *testing.T) {
	// pod 198.19.5.2 ── host 198.19.5.1 │ 198.18.0.1 ── outside 198.18.0.2
	//                                   │ 198.18.1.1 ── peer 198.18.1.2, pods 198.19.7.0/24
	pod, host, outside, peer := nstest.New(t), nstest.New(t), nstest.New(t), nstest.New(t)
	veth(t, host, pod, "wt-h0", "198.19.5.1/24", "wt-p0", "198.19.5.2/24")
	veth(t, host, outside, "wt-u0", "198.18.0.1/24", "wt-o0", "198.18.0.2/24")
	veth(t, host, peer, "wt-r0", "198.18.1.1/24", "wt-r1", "198.18.1.2/24")
	addRoute(t, pod, "default", "198.19.5.1")
	addRoute(t, host, "198.19.7.0/24", "198.18.1.2")
	addRoute(t, peer, "198.19.5.0/24", "198.18.1.1")
	hp := nstest.Handle(t, peer)
	lo, err := hp.LinkByName("lo")
	if err != nil {
		t.Fatal(err)
	}
	podAddr, _ := netlink.ParseAddr("198.19.7.1/32")
	if err := hp.AddrAdd(lo, podAddr); err != nil {
		t.Fatal(err)
	}
	nstest.Do(t, host, func() {
		err = os.WriteFile("/proc/sys/net/ipv4/ip_forward", []byte("1"), 0o644)
	})
	if err != nil {
		t.Fatal(err)
	}

	outsideAddr, outsidePeers := listen(t, outside, "198.18.0.2:0")
	peerAddr, peerPeers := listen(t, peer, "198.19.7.1:0")

	// The outside has no route back to the pods: without masquerade nothing connects.
	if _, err := dial(t, pod, outsideAddr, outsidePeers); err == nil {
		t.Fatal("the pod reached the outside before any rule was installed")
	}

	cfg := testCfg
	cfg.IPv6Network, cfg.IPv6Subnet = netip.Prefix{}, netip.Prefix{}
	cfg.BlackholeRoute = false
	mustSync(t, newManager(t, cfg, discard, host))

	from, err := dial(t, pod, outsideAddr, outsidePeers)
	if err != nil {
		t.Fatalf("pod to outside with masquerade: %v", err)
	}
	if want := netip.MustParseAddr("198.18.0.1"); from != want {
		t.Errorf("the outside saw the pod as %s, want the host's %s", from, want)
	}

	from, err = dial(t, pod, peerAddr, peerPeers)
	if err != nil {
		t.Fatalf("pod to a pod behind another host: %v", err)
	}
	if want := netip.MustParseAddr("198.19.5.2"); from != want {
		t.Errorf("the overlay peer saw the pod as %s, want its own %s", from, want)
	}
}

func TestSyncRemovesIptablesLeftovers(t *testing.T) {
	ns := nstest.New(t)
	nft := nftConn(t, ns)

	// The layout iptables-nft gives flanneld's iptables rules: base chains named after
	// the iptables ones, a jump into flanneld's chain, and someone else's rule beside it.
	nat := nft.AddTable(&nftables.Table{Name: "nat", Family: nftables.TableFamilyIPv4})
	post := nft.AddChain(&nftables.Chain{Name: "POSTROUTING", Table: nat,
		Type: nftables.ChainTypeNAT, Hooknum: nftables.ChainHookPostrouting,
		Priority: nftables.ChainPriorityNATSource})
	flannel := nft.AddChain(&nftables.Chain{Name: "FLANNEL-POSTRTG", Table: nat})
	docker := rule{matches: []match{{prefix: netip.MustParsePrefix("172.17.0.0/16")}},
		verdict: masquerade}
	nft.AddRule(&nftables.Rule{Table: nat, Chain: post, Exprs: docker.exprs(ipv4)})
	nft.AddRule(&nftables.Rule{Table: nat, Chain: post,
		Exprs: []expr.Any{&expr.Verdict{Kind: expr.VerdictJump, Chain: "FLANNEL-POSTRTG"}}})
	oldMasq := rule{matches: []match{{prefix: testCfg.Network}}, verdict: masquerade}
	nft.AddRule(&nftables.Rule{Table: nat, Chain: flannel, Exprs: oldMasq.exprs(ipv4)})

	filter := nft.AddTable(&nftables.Table{Name: "filter", Family: nftables.TableFamilyIPv4})
	fwd := nft.AddChain(&nftables.Chain{Name: "FORWARD", Table: filter,
		Type: nftables.ChainTypeFilter, Hooknum: nftables.ChainHookForward,
		Priority: nftables.ChainPriorityFilter})
	nft.AddChain(&nftables.Chain{Name: "FLANNEL-FWD", Table: filter})
	nft.AddRule(&nftables.Rule{Table: filter, Chain: fwd,
		Exprs: []expr.Any{&expr.Verdict{Kind: expr.VerdictJump, Chain: "FLANNEL-FWD"}}})
	if err := nft.Flush(); err != nil {
		t.Fatalf("building iptables-nft tables: %v", err)
	}

	m := newManager(t, testCfg, discard, ns)
	mustSync(t, m)

	for table, names := range map[string][2]string{
		"nat":    {"POSTROUTING", "FLANNEL-POSTRTG"},
		"filter": {"FORWARD", "FLANNEL-FWD"},
	} {
		got := chains(t, nft, ipv4, table)
		if got[names[0]] == nil || got[names[1]] != nil {
			t.Errorf("%s chains %v, want %s without %s",
				table, slices.Sorted(maps.Keys(got)), names[0], names[1])
		}
	}
	if got, want := chainRules(t, nft, ipv4, "nat", "POSTROUTING"),
		[]string{docker.format(ipv4)}; !slices.Equal(got, want) {
		t.Errorf("POSTROUTING holds %q, want only %q", got, want)
	}
	if got := chainRules(t, nft, ipv4, "filter", "FORWARD"); len(got) != 0 {
		t.Errorf("FORWARD holds %q, want nothing", got)
	}

	gen := generation(t, ns)
	if mustSync(t, m) || generation(t, ns) != gen {
		t.Error("a second Sync wrote")
	}
}
