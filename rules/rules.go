// Package rules keeps the host's share of flannel's netfilter state: the masquerade rules
// that give pod traffic leaving the overlay the host's address, the forward rules that
// let overlay traffic through a host whose forward policy drops, and the blackhole route
// for the host's own subnet. The rules live in nftables under the table, chain and
// comment names flanneld's nftables mode uses, so either daemon finds and replaces the
// other's; the masquerade chain has the meaning of flanneld's iptables rules.
//
// The desired state is computed here without any OS dependency; the reconciler that
// reads it back from the kernel and repairs it through netlink is Linux only.
package rules

import (
	"fmt"
	"net/netip"
	"strings"
)

// Names shared with flanneld. A host can run either daemon over the other's state.
const (
	TableIPv4        = "flannel-ipv4"
	TableIPv6        = "flannel-ipv6"
	ChainForward     = "forward"
	ChainPostrouting = "postrtg"

	// CommentMasq and CommentForward are the comments on every rule of the
	// masquerade and the forward chain, as on flanneld's iptables rules.
	CommentMasq    = "flanneld masq"
	CommentForward = "flanneld forward"
)

// KubeMasqMark is the packet mark bit kube-proxy sets on traffic it masquerades itself;
// the masquerade chain lets such packets through untouched so they are not translated
// twice.
const KubeMasqMark uint32 = 0x4000

// BlackholeMetric is the metric of the blackhole route for the host's own subnet. The
// route must lose to the bridge's own route for the same prefix (metric 0 for IPv4, 256
// for IPv6), which the kernel adds when the bridge gets its address, and win over
// everything shorter. At metric 0 it would shadow the bridge's route whenever it was
// there first, and drop the host's own pods' traffic.
const BlackholeMetric = 4096

// Config is what the rules and the route are made from: flanneld's -ip-masq,
// -iptables-forward-rules, -ip-masq-fully-random-disable and -ip-blackhole-route, the
// network config and this host's lease.
type Config struct {
	// Network and Subnet are the IPv4 overlay and this host's lease in it; invalid
	// when the overlay has no IPv4 part. IPv6Network and IPv6Subnet likewise.
	Network     netip.Prefix
	Subnet      netip.Prefix
	IPv6Network netip.Prefix
	IPv6Subnet  netip.Prefix

	// Masquerade keeps chain postrtg (-ip-masq). Forward keeps chain forward
	// (-iptables-forward-rules, which defaults to true in flanneld).
	Masquerade bool
	Forward    bool

	// DisableFullyRandom drops fully-random from the masquerade rules
	// (-ip-masq-fully-random-disable).
	DisableFullyRandom bool

	// BlackholeRoute keeps a blackhole route for Subnet and IPv6Subnet
	// (-ip-blackhole-route).
	BlackholeRoute bool

	// PrevSubnet and PrevIPv6Subnet are the leases of the previous run, from its
	// subnet.env. When they differ from this run's, their blackhole routes are removed.
	// The rules of a previous lease need no such hint: each chain is rewritten whole.
	PrevSubnet     netip.Prefix
	PrevIPv6Subnet netip.Prefix
}

// Validate returns an error naming the first field that cannot make rules: a prefix of
// the wrong family, a lease outside its network, or masquerade without a lease.
func (c Config) Validate() error {
	checks := []struct {
		name      string
		p         netip.Prefix
		v6, valid bool
	}{
		{"network", c.Network, false, false},
		{"subnet", c.Subnet, false, false},
		{"previous subnet", c.PrevSubnet, false, false},
		{"IPv6 network", c.IPv6Network, true, false},
		{"IPv6 subnet", c.IPv6Subnet, true, false},
		{"previous IPv6 subnet", c.PrevIPv6Subnet, true, false},
	}
	for _, ck := range checks {
		if ck.p.IsValid() && ck.p.Addr().Is6() != ck.v6 {
			return fmt.Errorf("rules: %s %s is of the wrong address family", ck.name, ck.p)
		}
	}
	for _, f := range []struct {
		family          string
		network, subnet netip.Prefix
	}{
		{"IPv4", c.Network, c.Subnet},
		{"IPv6", c.IPv6Network, c.IPv6Subnet},
	} {
		if !f.subnet.IsValid() {
			continue
		}
		if f.network.IsValid() &&
			(f.subnet.Bits() < f.network.Bits() || !f.network.Contains(f.subnet.Addr())) {
			return fmt.Errorf("rules: %s subnet %s is not inside network %s",
				f.family, f.subnet, f.network)
		}
		if c.Masquerade && !f.network.IsValid() {
			return fmt.Errorf("rules: masquerading %s subnet %s needs its network",
				f.family, f.subnet)
		}
	}
	if c.Masquerade && c.Network.IsValid() && !c.Subnet.IsValid() {
		return fmt.Errorf("rules: masquerading for network %s needs this host's subnet", c.Network)
	}
	if c.Masquerade && c.IPv6Network.IsValid() && !c.IPv6Subnet.IsValid() {
		return fmt.Errorf("rules: masquerading for network %s needs this host's subnet",
			c.IPv6Network)
	}
	return nil
}

// family is an nftables table family that weft keeps a table in.
type family uint8

const (
	ipv4 family = iota
	ipv6
)

func (f family) String() string {
	if f == ipv6 {
		return "ip6"
	}
	return "ip"
}

// multicast is the prefix the masquerade chain leaves alone in each family.
func (f family) multicast() netip.Prefix {
	if f == ipv6 {
		return netip.MustParsePrefix("ff00::/8")
	}
	return netip.MustParsePrefix("224.0.0.0/4")
}

// match compares a packet's source or destination address with a prefix.
type match struct {
	dst    bool
	negate bool
	prefix netip.Prefix
}

// verdict is what a rule does with a packet that matches.
type verdict uint8

const (
	accept verdict = iota
	ret
	masquerade
)

// rule is one nftables rule of the few shapes weft writes.
type rule struct {
	// mark, when not zero, matches packets that have all of these mark bits set.
	mark        uint32
	matches     []match
	verdict     verdict
	fullyRandom bool
	comment     string
}

// format renders r the way nft list shows it, for logs and tests.
func (r rule) format(f family) string {
	var parts []string
	if r.mark != 0 {
		parts = append(parts, fmt.Sprintf("meta mark & 0x%08x == 0x%08x", r.mark, r.mark))
	}
	for _, m := range r.matches {
		dir := "saddr"
		if m.dst {
			dir = "daddr"
		}
		s := f.String() + " " + dir + " "
		if m.negate {
			s += "!= "
		}
		if m.prefix.IsSingleIP() {
			s += m.prefix.Addr().String()
		} else {
			s += m.prefix.String()
		}
		parts = append(parts, s)
	}
	switch r.verdict {
	case accept:
		parts = append(parts, "accept")
	case ret:
		parts = append(parts, "return")
	case masquerade:
		if r.fullyRandom {
			parts = append(parts, "masquerade fully-random")
		} else {
			parts = append(parts, "masquerade")
		}
	}
	if r.comment != "" {
		parts = append(parts, fmt.Sprintf("comment %q", r.comment))
	}
	return strings.Join(parts, " ")
}

// chain is a base chain and its rules.
type chain struct {
	name, comment string
	// kind, hook and priority are the chain's nftables type, hook and priority.
	kind     string
	hook     string
	priority int32
	rules    []rule
}

// table is one family's table and its chains.
type table struct {
	family  family
	name    string
	comment string
	chains  []chain
}

// desired returns the table weft wants in family f, or nil when f's table should not
// exist at all: the family has no network, or neither chain is wanted.
func (c Config) desired(f family) *table {
	network, pod := c.Network, c.Subnet
	t := &table{family: f, name: TableIPv4, comment: "rules for flannel-ipv4"}
	if f == ipv6 {
		network, pod = c.IPv6Network, c.IPv6Subnet
		t.name, t.comment = TableIPv6, "rules for flannel-ipv6"
	}
	if !network.IsValid() {
		return nil
	}
	network, pod = network.Masked(), pod.Masked()

	// TODO: an accept here does not outvote a drop elsewhere. Every base chain on the
	// forward hook sees the packet and any of them may drop it, so the FORWARD policy
	// DROP that Docker sets in iptables still drops overlay traffic; flanneld's
	// iptables mode inserts its accepts into that very chain, which weft, without an
	// iptables binary, does not touch. Cost: on such hosts cross-host pod traffic is
	// dropped until the operator accepts it there (iptables -I FORWARD -s <network>
	// -j ACCEPT and the same with -d) or turns Docker's iptables handling off.
	if c.Forward {
		t.chains = append(t.chains, chain{
			name:     ChainForward,
			comment:  "chain to accept flannel traffic",
			kind:     "filter",
			hook:     "forward",
			priority: 0,
			rules: []rule{
				{matches: []match{{prefix: network}}, verdict: accept, comment: CommentForward},
				{matches: []match{{dst: true, prefix: network}}, verdict: accept,
					comment: CommentForward},
			},
		})
	}

	if c.Masquerade && pod.IsValid() {
		random := !c.DisableFullyRandom
		t.chains = append(t.chains, chain{
			name:     ChainPostrouting,
			comment:  "chain to manage traffic masquerading by flannel",
			kind:     "nat",
			hook:     "postrouting",
			priority: 100,
			rules: []rule{
				// kube-proxy masquerades these itself.
				{mark: KubeMasqMark, verdict: ret},
				// Inside the overlay, in either direction, addresses stay.
				{matches: []match{{prefix: pod}, {dst: true, prefix: network}}, verdict: ret},
				{matches: []match{{prefix: network}, {dst: true, prefix: pod}}, verdict: ret},
				// Traffic from outside the overlay to this host's pods keeps its
				// source; that is iptables rule 4, not flanneld's nftables variant,
				// which exempts everything headed into the network and so makes the
				// last rule dead.
				{matches: []match{{negate: true, prefix: network}, {dst: true, prefix: pod}},
					verdict: ret},
				// Pods leaving the overlay, except for multicast.
				{matches: []match{{prefix: network},
					{dst: true, negate: true, prefix: f.multicast()}},
					verdict: masquerade, fullyRandom: random},
				// Anything else headed into the overlay, such as the host's own
				// traffic from an address outside it.
				{matches: []match{{negate: true, prefix: network}, {dst: true, prefix: network}},
					verdict: masquerade, fullyRandom: random},
			},
		})
		for i := range t.chains[len(t.chains)-1].rules {
			t.chains[len(t.chains)-1].rules[i].comment = CommentMasq
		}
	}

	if len(t.chains) == 0 {
		return nil
	}
	return t
}
