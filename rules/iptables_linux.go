package rules

import (
	"fmt"
	"slices"

	"github.com/google/nftables"
	"github.com/google/nftables/expr"
)

// flanneld's own chains in iptables mode, its default, by table. iptables-nft, the
// iptables of current distributions, keeps them in nftables tables of the same names.
var iptablesChains = []struct{ table, chain string }{
	{"nat", "FLANNEL-POSTRTG"},
	{"filter", "FLANNEL-FWD"},
}

// removeIptablesLeftovers deletes the chains flanneld's iptables mode leaves behind in
// family f (it removes nothing when it exits), with the rules that jump to them. Their
// rules would otherwise go on matching beside weft's: after a lease change the old
// masquerade chain exempts only the old subnet, and so masquerades the new subnet's
// traffic inside the overlay. flanneld's own nftables mode clears the same chains.
// Equivalent to:
//
//	iptables -t nat -D POSTROUTING -m comment --comment "flanneld masq" -j FLANNEL-POSTRTG
//	iptables -t nat -F FLANNEL-POSTRTG ; iptables -t nat -X FLANNEL-POSTRTG
//
// and likewise for FLANNEL-FWD in the filter table.
//
// TODO: chains that flanneld made with iptables-legacy live outside nftables, where
// netlink cannot reach them and weft has no iptables binary to call; they stay until
// removed by hand (iptables -t nat -F FLANNEL-POSTRTG), with the cost described above.
func (m *Manager) removeIptablesLeftovers(f family) (bool, error) {
	all, err := m.nft.ListChainsOfTableFamily(f.nftFamily())
	if err != nil {
		return false, fmt.Errorf("listing chains of family %s: %w", f, err)
	}
	var removed []string
	for _, ic := range iptablesChains {
		i := slices.IndexFunc(all, func(c *nftables.Chain) bool {
			return c.Table != nil && c.Table.Name == ic.table && c.Name == ic.chain
		})
		if i < 0 {
			continue
		}
		target := all[i]

		for _, c := range all {
			if c.Table == nil || c.Table.Name != ic.table || c == target {
				continue
			}
			rules, err := m.nft.GetRules(c.Table, c)
			if err != nil {
				return false, fmt.Errorf("reading rules of chain %s in table %s %s: %w",
					c.Name, f, ic.table, err)
			}
			for _, r := range rules {
				if !jumpsTo(r, ic.chain) {
					continue
				}
				r.Table, r.Chain = c.Table, c
				if err := m.nft.DelRule(r); err != nil {
					return false, fmt.Errorf("removing jump to %s from chain %s: %w",
						ic.chain, c.Name, err)
				}
			}
		}
		m.nft.FlushChain(target)
		m.nft.DelChain(target)
		removed = append(removed, ic.table+" "+ic.chain)
	}
	if len(removed) == 0 {
		return false, nil
	}
	if err := m.nft.Flush(); err != nil {
		return false, fmt.Errorf("removing flanneld's iptables chains %v of family %s: %w",
			removed, f, err)
	}
	for _, r := range removed {
		m.log.Info("removed flanneld's iptables chain", "family", f.String(), "chain", r)
	}
	return true, nil
}

// jumpsTo reports whether rule r jumps or goes to chain.
func jumpsTo(r *nftables.Rule, chain string) bool {
	for _, e := range r.Exprs {
		if v, ok := e.(*expr.Verdict); ok && v.Chain == chain &&
			(v.Kind == expr.VerdictJump || v.Kind == expr.VerdictGoto) {
			return true
		}
	}
	return false
}
