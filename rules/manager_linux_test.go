package rules

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"slices"
	"sync"
	"testing"

	"github.com/google/nftables"
	"github.com/google/nftables/userdata"
	mdnetlink "github.com/mdlayher/netlink"
	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"

	"github.com/weftnet/weft/internal/nstest"
)

var discard = slog.New(slog.NewTextHandler(io.Discard, nil))

// syncBuffer is a log sink a test may read while the code under test writes.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

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
