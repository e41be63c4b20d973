package rules

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"slices"
	"sync"
	"time"

	"github.com/google/nftables"
	mdnetlink "github.com/mdlayher/netlink"
	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

// Manager keeps the tables, chains and rules of one Config, and its blackhole routes,
// in one network namespace.
type Manager struct {
	cfg  Config
	log  *slog.Logger
	nsFd int
	nft  *nftables.Conn
	nl   *netlink.Handle

	// mu serialises Sync: a resync and a call from the daemon must not interleave.
	mu sync.Mutex
}

// New returns a Manager for cfg in the network namespace ns, which must stay open until
// Close; netns.None() means the caller's namespace. It changes nothing yet: [Manager.Sync]
// does.
func New(cfg Config, log *slog.Logger, ns netns.NsHandle) (*Manager, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	m := &Manager{cfg: cfg, log: log.With("subsystem", "rules")}
	own := ns > 0
	if own {
		m.nsFd = int(ns)
	}

	nft, err := nftables.New(nftables.WithNetNSFd(m.nsFd), nftables.AsLasting())
	if err != nil {
		return nil, fmt.Errorf("opening nftables netlink socket: %w", err)
	}
	var nl *netlink.Handle
	if own {
		nl, err = netlink.NewHandleAt(ns)
	} else {
		nl, err = netlink.NewHandle()
	}
	if err != nil {
		nft.CloseLasting()
		return nil, fmt.Errorf("opening route netlink socket: %w", err)
	}
	m.nft, m.nl = nft, nl
	return m, nil
}

// Close releases the Manager's sockets; call it after Run has returned. The rules and
// routes stay: a restarted daemon finds them in place, and flanneld leaves its own
// behind too.
func (m *Manager) Close() error {
	m.nl.Close()
	return m.nft.CloseLasting()
}

// Run calls [Manager.Sync] every period (flanneld's -iptables-resync) until ctx is
// cancelled, then returns nil. The first call comes after one period: the daemon calls
// Sync itself at startup, where it can act on a failure. Failures here are logged at
// Warn and retried at the next period.
func (m *Manager) Run(ctx context.Context, period time.Duration) error {
	if period <= 0 {
		return fmt.Errorf("rules: resync period %v is not positive", period)
	}
	t := time.NewTicker(period)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
		if _, err := m.Sync(); err != nil {
			m.log.Warn("resyncing rules", "err", err)
		}
	}
}

// Sync reads the tables, chains, rules and blackhole routes back from the kernel and
// repairs whatever differs from the Config, and reports whether it changed anything.
// When everything matches it only reads. A chain whose rules differ in any way is
// rewritten whole in one nftables transaction, so no packet sees it half written; a
// chain of the wrong type, hook, priority or policy is replaced; a table or chain that
// is not wanted (the IPv6 table without an IPv6 network, postrtg without -ip-masq) is
// deleted, and so are the chains flanneld's iptables mode left in iptables-nft's tables
// (FLANNEL-POSTRTG, FLANNEL-FWD) with the jumps to them. Each change is logged at Info.
// Errors name what failed; Sync goes on with the other tables and the routes and
// returns all errors together.
//
// In steady state it is equivalent to `nft list table ip flannel-ipv4` and `ip route
// show type blackhole`; when something differs, to what it repairs, for example:
//
//	nft add table ip flannel-ipv4 { comment "rules for flannel-ipv4" ; }
//	nft 'flush chain ip flannel-ipv4 postrtg ; add rule ip flannel-ipv4 postrtg ...'
//	nft delete chain ip nat FLANNEL-POSTRTG
//	ip route replace blackhole 198.19.5.0/24 metric 4096
func (m *Manager) Sync() (bool, error) {
	m.mu.Lock()
	defer m.mu.Unlock()

	var changed bool
	var errs []error
	for _, f := range []family{ipv4, ipv6} {
		c, err := m.syncTable(f, m.cfg.desired(f))
		changed = changed || c
		if err != nil {
			errs = append(errs, err)
		}
		c, err = m.removeIptablesLeftovers(f)
		changed = changed || c
		if err != nil {
			errs = append(errs, err)
		}
	}
	c, err := m.syncBlackholes()
	changed = changed || c
	if err != nil {
		errs = append(errs, err)
	}
	return changed, errors.Join(errs...)
}

// hookNum returns the netfilter hook number of a chain's hook name.
func hookNum(hook string) (uint32, bool) {
	switch hook {
	case "forward":
		return unix.NF_INET_FORWARD, true
	case "postrouting":
		return unix.NF_INET_POST_ROUTING, true
	}
	return 0, false
}

// sameBase reports whether the kernel's chain have is the base chain c: same type,
// hook, priority, and policy accept.
func sameBase(have *nftables.Chain, c *chain) bool {
	hook, _ := hookNum(c.hook)
	return have.Type == nftables.ChainType(c.kind) &&
		have.Hooknum != nil && uint32(*have.Hooknum) == hook &&
		have.Priority != nil && int32(*have.Priority) == c.priority &&
		have.Policy != nil && *have.Policy == nftables.ChainPolicyAccept
}

func describeChain(c *nftables.Chain) string {
	s := "type " + string(c.Type)
	if c.Hooknum != nil {
		s += fmt.Sprintf(" hook %d", *c.Hooknum)
	}
	if c.Priority != nil {
		s += fmt.Sprintf(" priority %d", *c.Priority)
	}
	if c.Policy != nil {
		s += fmt.Sprintf(" policy %d", *c.Policy)
	}
	return s
}

// syncTable reconciles family f's table with want, nil meaning no table.
//
// Equivalent to, for example:
//
//	nft add table ip flannel-ipv4 { comment "rules for flannel-ipv4" ; }
//	nft add chain ip flannel-ipv4 postrtg { type nat hook postrouting priority srcnat ; ... }
//	nft flush chain ip flannel-ipv4 postrtg ; nft add rule ip flannel-ipv4 postrtg ...
//	nft delete table ip6 flannel-ipv6
func (m *Manager) syncTable(f family, want *table) (bool, error) {
	name := TableIPv4
	if f == ipv6 {
		name = TableIPv6
	}
	log := m.log.With("table", f.String()+" "+name)

	tables, err := m.nft.ListTablesOfFamily(f.nftFamily())
	if err != nil {
		return false, fmt.Errorf("listing nftables tables of family %s: %w", f, err)
	}
	var have *nftables.Table
	for _, t := range tables {
		if t.Name == name {
			have = t
		}
	}

	if want == nil {
		if have == nil {
			return false, nil
		}
		m.nft.DelTable(have)
		if err := m.nft.Flush(); err != nil {
			return false, fmt.Errorf("deleting table %s %s: %w", f, name, err)
		}
		log.Info("removed table: none of its chains is wanted")
		return true, nil
	}

	var haveChains []*nftables.Chain
	if have != nil {
		all, err := m.nft.ListChainsOfTableFamily(f.nftFamily())
		if err != nil {
			return false, fmt.Errorf("listing chains of table %s %s: %w", f, name, err)
		}
		for _, c := range all {
			if c.Table != nil && c.Table.Name == name {
				haveChains = append(haveChains, c)
			}
		}
	}

	changed, fresh, err := m.ensureChains(log, want, have != nil, haveChains)
	if err != nil {
		return changed, err
	}
	c, err := m.ensureRules(log, want, fresh)
	changed = changed || c
	if err != nil {
		return changed, err
	}

	// Chains that are no longer wanted go last, after everything wanted is in place.
	for _, hc := range haveChains {
		if slices.ContainsFunc(want.chains, func(c chain) bool { return c.name == hc.Name }) {
			continue
		}
		m.nft.FlushChain(hc)
		m.nft.DelChain(hc)
		if err := m.nft.Flush(); err != nil {
			return changed, fmt.Errorf("deleting chain %s of table %s %s: %w",
				hc.Name, f, name, err)
		}
		changed = true
		log.Info("removed chain: not wanted", "chain", hc.Name)
	}
	return changed, nil
}

// ensureChains creates the table when it is missing and each wanted chain that is
// missing or not the base chain it should be, in one transaction, with their comments.
// It returns the names of the chains it created, which hold no rules yet.
func (m *Manager) ensureChains(
	log *slog.Logger, want *table, haveTable bool, haveChains []*nftables.Chain,
) (bool, map[string]bool, error) {
	var msgs []mdnetlink.Message
	fresh := map[string]bool{}
	if !haveTable {
		msg, err := newTableMsg(want)
		if err != nil {
			return false, nil, err
		}
		msgs = append(msgs, msg)
		log.Info("creating table")
	}
	for i := range want.chains {
		c := &want.chains[i]
		i := slices.IndexFunc(haveChains, func(hc *nftables.Chain) bool {
			return hc.Name == c.name
		})
		switch {
		case i < 0:
			log.Info("creating chain", "chain", c.name)
		case !sameBase(haveChains[i], c):
			log.Info("replacing chain of the wrong kind", "chain", c.name,
				"was", describeChain(haveChains[i]))
			msg, err := delChainMsg(want, c.name)
			if err != nil {
				return false, nil, err
			}
			msgs = append(msgs, msg)
		default:
			continue
		}
		msg, err := newChainMsg(want, c)
		if err != nil {
			return false, nil, err
		}
		msgs = append(msgs, msg)
		fresh[c.name] = true
	}
	if len(msgs) == 0 {
		return false, fresh, nil
	}
	if err := commitBatch(m.nsFd, msgs); err != nil {
		return false, nil, fmt.Errorf("creating chains in table %s %s: %w",
			want.family, want.name, err)
	}
	return true, fresh, nil
}

// ensureRules rewrites each chain of want whose rules differ from the wanted ones, and
// fills the fresh chains, all in one transaction.
func (m *Manager) ensureRules(
	log *slog.Logger, want *table, fresh map[string]bool,
) (bool, error) {
	nt := &nftables.Table{Name: want.name, Family: want.family.nftFamily()}
	dirty := false
	for i := range want.chains {
		c := &want.chains[i]
		nc := &nftables.Chain{Name: c.name, Table: nt}
		if !fresh[c.name] {
			have, err := m.nft.GetRules(nt, nc)
			if err != nil {
				return false, fmt.Errorf("reading rules of chain %s in table %s %s: %w",
					c.name, want.family, want.name, err)
			}
			diff := diffRules(want.family, have, c.rules)
			if diff == nil {
				continue
			}
			log.Info("rewriting chain: its rules differ", "chain", c.name,
				"rules", len(have), "want", len(c.rules))
			log.Debug("chain differs", "chain", c.name, "diff", diff)
		}

		m.nft.FlushChain(nc)
		for _, r := range c.rules {
			m.nft.AddRule(&nftables.Rule{
				Table:    nt,
				Chain:    nc,
				Exprs:    r.exprs(want.family),
				UserData: r.userData(),
			})
		}
		dirty = true
	}
	if !dirty {
		return false, nil
	}
	if err := m.nft.Flush(); err != nil {
		return false, fmt.Errorf("writing rules of table %s %s: %w", want.family, want.name, err)
	}
	return true, nil
}

// diffRules compares the kernel's rules with the wanted ones and returns, for each
// position where they differ, the two as nft would print them ("-" for a rule missing
// on one side, "?" for one weft does not write). It returns nil when they agree.
func diffRules(f family, have []*nftables.Rule, want []rule) []string {
	var diff []string
	for i := 0; i < max(len(have), len(want)); i++ {
		h, w := "-", "-"
		if i < len(have) {
			h = "?"
			if r, ok := parseRule(f, have[i].Exprs, have[i].UserData); ok {
				h = r.format(f)
			}
		}
		if i < len(want) {
			w = want[i].format(f)
		}
		if h != w {
			diff = append(diff, fmt.Sprintf("#%d have %s, want %s", i, h, w))
		}
	}
	return diff
}

// syncBlackholes keeps the blackhole route for each of this host's subnets when
// -ip-blackhole-route is on and removes it when off, and removes those of the previous
// run's subnets.
func (m *Manager) syncBlackholes() (bool, error) {
	var changed bool
	var errs []error
	for _, s := range []struct{ cur, prev netip.Prefix }{
		{m.cfg.Subnet.Masked(), m.cfg.PrevSubnet.Masked()},
		{m.cfg.IPv6Subnet.Masked(), m.cfg.PrevIPv6Subnet.Masked()},
	} {
		if s.cur.IsValid() {
			c, err := m.syncBlackhole(s.cur)
			changed = changed || c
			if err != nil {
				errs = append(errs, err)
			}
		}
		if s.prev.IsValid() && s.prev != s.cur {
			c, err := m.removeBlackholes(s.prev, "the previous lease's")
			changed = changed || c
			if err != nil {
				errs = append(errs, err)
			}
		}
	}
	return changed, errors.Join(errs...)
}

// syncBlackhole reconciles the blackhole route for the host's own subnet p.
// Equivalent to: ip route replace blackhole 198.19.5.0/24 metric 4096
func (m *Manager) syncBlackhole(p netip.Prefix) (bool, error) {
	routes, err := m.blackholes(p)
	if err != nil {
		return false, err
	}
	var ours *netlink.Route
	var others []netlink.Route
	for i, r := range routes {
		if r.Priority == BlackholeMetric {
			ours = &routes[i]
		} else {
			others = append(others, r)
		}
	}

	if !m.cfg.BlackholeRoute {
		if ours == nil {
			return false, nil
		}
		if err := m.delRoute(ours); err != nil {
			return false, err
		}
		m.log.Info("removed blackhole route: -ip-blackhole-route is off", "dst", p)
		return true, nil
	}

	changed := false
	if ours == nil {
		r := &netlink.Route{
			Dst:      prefixToIPNet(p),
			Type:     unix.RTN_BLACKHOLE,
			Table:    unix.RT_TABLE_MAIN,
			Priority: BlackholeMetric,
		}
		if err := m.nl.RouteReplace(r); err != nil {
			return false, fmt.Errorf("adding blackhole route %s metric %d: %w",
				p, BlackholeMetric, err)
		}
		changed = true
		m.log.Info("added blackhole route", "dst", p, "metric", BlackholeMetric)
	}
	// A blackhole at another metric, such as flanneld's at 0, hides the bridge's route
	// whenever it was there first.
	for i := range others {
		if err := m.delRoute(&others[i]); err != nil {
			return changed, err
		}
		changed = true
		m.log.Info("removed blackhole route at another metric", "dst", p,
			"metric", others[i].Priority)
	}
	return changed, nil
}

// removeBlackholes deletes every blackhole route for p in the main table.
// Equivalent to: ip route del blackhole <p>
func (m *Manager) removeBlackholes(p netip.Prefix, whose string) (bool, error) {
	routes, err := m.blackholes(p)
	if err != nil {
		return false, err
	}
	for i := range routes {
		if err := m.delRoute(&routes[i]); err != nil {
			return i > 0, err
		}
		m.log.Info("removed "+whose+" blackhole route", "dst", p, "metric", routes[i].Priority)
	}
	return len(routes) > 0, nil
}

func (m *Manager) delRoute(r *netlink.Route) error {
	err := m.nl.RouteDel(r)
	if err != nil && !errors.Is(err, unix.ESRCH) && !errors.Is(err, unix.ENOENT) {
		return fmt.Errorf("removing blackhole route %s metric %d: %w", r.Dst, r.Priority, err)
	}
	return nil
}

// blackholes lists the blackhole routes for exactly p in the main table, retrying a dump
// the kernel interrupted.
func (m *Manager) blackholes(p netip.Prefix) ([]netlink.Route, error) {
	fam := netlink.FAMILY_V4
	if p.Addr().Is6() {
		fam = netlink.FAMILY_V6
	}
	filter := &netlink.Route{
		Table: unix.RT_TABLE_MAIN,
		Dst:   prefixToIPNet(p),
		Type:  unix.RTN_BLACKHOLE,
	}
	mask := netlink.RT_FILTER_TABLE | netlink.RT_FILTER_DST | netlink.RT_FILTER_TYPE
	var routes []netlink.Route
	var err error
	for range 5 {
		routes, err = m.nl.RouteListFiltered(fam, filter, mask)
		if !errors.Is(err, netlink.ErrDumpInterrupted) {
			break
		}
	}
	if err != nil {
		return nil, fmt.Errorf("listing blackhole routes for %s: %w", p, err)
	}
	return routes, nil
}

func prefixToIPNet(p netip.Prefix) *net.IPNet {
	return &net.IPNet{IP: p.Addr().AsSlice(), Mask: net.CIDRMask(p.Bits(), p.Addr().BitLen())}
}
