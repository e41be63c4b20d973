package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/netip"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/weftnet/weft/subnet"
)

// leaseView is a lease as weftctl shows it, in a table row or as JSON.
type leaseView struct {
	Subnet      netip.Prefix
	IPv6Subnet  netip.Prefix `json:",omitzero"`
	PublicIP    netip.Addr
	PublicIPv6  netip.Addr `json:",omitzero"`
	BackendType string     `json:",omitempty"`
	VtepMAC     string     `json:",omitempty"`
	Reserved    bool
	// Expiration is when etcd deletes the key unless its host renews it; TTL is the
	// seconds left then. Both are absent for a reservation and in watch events.
	Expiration time.Time `json:",omitzero"`
	TTL        int64     `json:",omitempty"`
}

func viewLease(l subnet.Lease, now time.Time) leaseView {
	v := leaseView{
		Subnet:      l.Subnet,
		IPv6Subnet:  l.IPv6Subnet,
		PublicIP:    l.Attrs.PublicIP,
		PublicIPv6:  l.Attrs.PublicIPv6,
		BackendType: l.Attrs.BackendType,
		VtepMAC:     vtepMAC(l.Attrs.BackendData),
		Reserved:    l.Reserved(),
		Expiration:  l.Expiration.UTC().Truncate(time.Second),
	}
	if !l.Expiration.IsZero() {
		v.TTL = max(int64(l.Expiration.Sub(now).Round(time.Second)/time.Second), 0)
	}
	return v
}

// vtepMAC returns the VtepMAC of VXLAN backend data, "" when there is none.
func vtepMAC(data json.RawMessage) string {
	var d struct{ VtepMAC string }
	if len(data) == 0 || json.Unmarshal(data, &d) != nil {
		return ""
	}
	return d.VtepMAC
}

// ttlText says how long a lease has left: "reserved", "expired", or a duration.
func (v leaseView) ttlText() string {
	switch {
	case v.Reserved:
		return "reserved"
	case v.Expiration.IsZero():
		return "-"
	case v.TTL == 0:
		return "expired"
	}
	return (time.Duration(v.TTL) * time.Second).String()
}

// writeLeaseTable prints one row per lease; the IPv6 columns only when a lease has
// them.
func writeLeaseTable(w io.Writer, leases []leaseView) error {
	v6 := false
	for _, l := range leases {
		v6 = v6 || l.IPv6Subnet.IsValid()
	}
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	if v6 {
		fmt.Fprintln(tw, "SUBNET\tIPV6 SUBNET\tPUBLIC IP\tPUBLIC IPV6\tBACKEND\tVTEP MAC\tTTL")
	} else {
		fmt.Fprintln(tw, "SUBNET\tPUBLIC IP\tBACKEND\tVTEP MAC\tTTL")
	}
	for _, l := range leases {
		cols := []string{l.Subnet.String()}
		if v6 {
			cols = append(cols, orDash(l.IPv6Subnet), l.PublicIP.String(), orDash(l.PublicIPv6))
		} else {
			cols = append(cols, l.PublicIP.String())
		}
		cols = append(cols, dash(l.BackendType), dash(l.VtepMAC), l.ttlText())
		fmt.Fprintln(tw, strings.Join(cols, "\t"))
	}
	return tw.Flush()
}

func dash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

// orDash renders an optional address or prefix.
func orDash[T interface {
	IsValid() bool
	String() string
}](v T) string {
	if !v.IsValid() {
		return "-"
	}
	return v.String()
}

func runLeases(ctx context.Context, e *env, args []string) error {
	fs := newFlagSet(e, "leases", "weftctl leases [--watch] [--json] [flags]")
	ef := addEtcdFlags(fs)
	watch := fs.Bool("watch", false, "after the leases, print each change as it happens "+
		"until interrupted")
	asJSON := fs.Bool("json", false, "print JSON: an array, or one object a line with --watch")
	pos, err := parseArgs(e, fs, args)
	if err != nil {
		return err
	}
	if err := noArgs(pos); err != nil {
		return err
	}
	c, err := ef.connect(e)
	if err != nil {
		return err
	}
	defer c.close()

	if *watch {
		return watchLeases(ctx, e, c, *asJSON)
	}
	cctx, cancel := ef.within(ctx)
	defer cancel()
	leases, err := c.reg.Leases(cctx)
	if err != nil {
		return c.explain(err, ef.timeout)
	}
	now := time.Now()
	views := make([]leaseView, 0, len(leases))
	for _, l := range leases {
		views = append(views, viewLease(l, now))
	}
	if *asJSON {
		b, err := json.MarshalIndent(views, "", "  ")
		if err != nil {
			return err
		}
		_, err = fmt.Fprintf(e.stdout, "%s\n", b)
		return err
	}
	if len(views) == 0 {
		fmt.Fprintf(e.stdout, "no leases under %s\n", c.reg.SubnetsPrefix())
		return nil
	}
	return writeLeaseTable(e.stdout, views)
}

// leaseEvent is one line of `leases --watch --json`.
type leaseEvent struct {
	Time  time.Time
	Event string
	Lease leaseView
}

// watchLeases prints every lease as added, then each change, until ctx is done. etcd
// being away is reported by the registry on stderr, and the watch resumes.
func watchLeases(ctx context.Context, e *env, c *etcdConn, asJSON bool) error {
	out := make(chan []subnet.Event)
	errc := make(chan error, 1)
	wctx, cancel := context.WithCancel(ctx)
	defer cancel()
	go func() { errc <- c.reg.WatchLeases(wctx, subnet.WatchOptions{}, out) }()

	enc := json.NewEncoder(e.stdout)
	for {
		select {
		case <-ctx.Done():
			cancel()
			<-errc
			return nil
		case err := <-errc:
			return err
		case batch := <-out:
			now := time.Now().UTC().Truncate(time.Second)
			for _, ev := range batch {
				v := viewLease(ev.Lease, now)
				if asJSON {
					if err := enc.Encode(leaseEvent{Time: now, Event: ev.Type.String(),
						Lease: v}); err != nil {
						return err
					}
					continue
				}
				line := fmt.Sprintf("%s %-7s %s public-ip %s", now.Format(time.RFC3339),
					ev.Type, v.Subnet, v.PublicIP)
				if v.IPv6Subnet.IsValid() {
					line += fmt.Sprintf(" ipv6 %s public-ipv6 %s", v.IPv6Subnet,
						orDash(v.PublicIPv6))
				}
				line += " backend " + dash(v.BackendType)
				if v.VtepMAC != "" {
					line += " vtep-mac " + v.VtepMAC
				}
				if v.Reserved {
					line += " reserved"
				}
				fmt.Fprintln(e.stdout, line)
			}
		}
	}
}

func runReserve(ctx context.Context, e *env, args []string) error {
	fs := newFlagSet(e, "reserve", "weftctl reserve [flags] SUBNET --public-ip IP")
	ef := addEtcdFlags(fs)
	var publicIP, publicIPv6, ipv6Subnet string
	fs.StringVar(&publicIP, "public-ip", "", "PublicIP of the host the subnet is kept for "+
		"(required)")
	fs.StringVar(&ipv6Subnet, "ipv6-subnet", "", "IPv6 `subnet` to reserve too, on a "+
		"dual-stack network")
	fs.StringVar(&publicIPv6, "public-ipv6", "", "PublicIPv6 of the host, on a dual-stack "+
		"network")
	pos, err := parseArgs(e, fs, args)
	if err != nil {
		return err
	}
	if len(pos) != 1 {
		return usageError{"want one SUBNET argument"}
	}
	v4, err := parseSubnet(pos[0], 4)
	if err != nil {
		return usageError{err.Error()}
	}
	var v6 netip.Prefix
	if ipv6Subnet != "" {
		if v6, err = parseSubnet(ipv6Subnet, 6); err != nil {
			return usageError{err.Error()}
		}
	}
	attrs := subnet.LeaseAttrs{}
	if attrs.PublicIP, err = parseIP("-public-ip", publicIP, 4); err != nil {
		return usageError{err.Error()}
	}
	if !attrs.PublicIP.IsValid() {
		return usageError{"-public-ip is required: the reservation belongs to the host " +
			"with that PublicIP"}
	}
	if attrs.PublicIPv6, err = parseIP("-public-ipv6", publicIPv6, 6); err != nil {
		return usageError{err.Error()}
	}

	c, err := ef.connect(e)
	if err != nil {
		return err
	}
	defer c.close()
	cctx, cancel := ef.within(ctx)
	defer cancel()
	cfg, err := c.reg.GetConfig(cctx)
	if err != nil {
		return c.explain(err, ef.timeout)
	}
	if err := checkFits(cfg, v4, v6); err != nil {
		return err
	}
	l, err := c.reg.Reserve(cctx, v4, v6, attrs)
	if err != nil {
		return c.explain(err, ef.timeout)
	}
	fmt.Fprintf(e.stdout, "reserved %s for %s at %s\n", l.String(), l.Attrs.PublicIP,
		c.reg.LeaseKey(l.Subnet, l.IPv6Subnet))
	return nil
}

// parseSubnet parses a subnet of the given family that must be its own network address.
func parseSubnet(s string, family int) (netip.Prefix, error) {
	p, err := netip.ParsePrefix(s)
	if err != nil || (family == 4) != p.Addr().Is4() || p.Addr().Zone() != "" {
		return netip.Prefix{}, fmt.Errorf("subnet %q is not an IPv%d CIDR like %s", s,
			family, map[int]string{4: "198.19.5.0/24", 6: "fd00:5::/64"}[family])
	}
	if p != p.Masked() {
		return netip.Prefix{}, fmt.Errorf("subnet %s is not aligned: its network address "+
			"is %s", p, p.Masked())
	}
	return p, nil
}

// parseIP parses an optional address option of the given family.
func parseIP(name, s string, family int) (netip.Addr, error) {
	if s == "" {
		return netip.Addr{}, nil
	}
	a, err := netip.ParseAddr(s)
	if err != nil || (family == 4) != a.Is4() || a.Zone() != "" {
		return netip.Addr{}, fmt.Errorf("%s %q is not an IPv%d address", name, s, family)
	}
	return a, nil
}

// checkFits returns an error unless the network config could have allocated v4 (and
// v6): the right length, within SubnetMin..SubnetMax, and an IPv6 part exactly when
// the network is dual stack.
func checkFits(cfg *subnet.Config, v4, v6 netip.Prefix) error {
	if v4.Bits() != cfg.SubnetLen {
		return fmt.Errorf("subnet %s: the network's SubnetLen is %d", v4, cfg.SubnetLen)
	}
	if !cfg.Network.Contains(v4.Addr()) || v4.Addr().Less(cfg.SubnetMin) ||
		cfg.SubnetMax.Less(v4.Addr()) {
		return fmt.Errorf("subnet %s lies outside the range SubnetMin %s to SubnetMax %s of "+
			"network %s", v4, cfg.SubnetMin, cfg.SubnetMax, cfg.Network)
	}
	switch {
	case cfg.EnableIPv6 && !v6.IsValid():
		return fmt.Errorf("network %s is dual stack (IPv6Network %s): give -ipv6-subnet too",
			cfg.Network, cfg.IPv6Network)
	case !cfg.EnableIPv6 && v6.IsValid():
		return fmt.Errorf("-ipv6-subnet %s: network %s has no IPv6Network", v6, cfg.Network)
	}
	if !subnet.FitsConfig(cfg, v4, v6) {
		return fmt.Errorf("IPv6 subnet %s: the network wants IPv6SubnetLen %d within %s to %s",
			v6, cfg.IPv6SubnetLen, cfg.IPv6SubnetMin, cfg.IPv6SubnetMax)
	}
	return nil
}

func runUnreserve(ctx context.Context, e *env, args []string) error {
	fs := newFlagSet(e, "unreserve", "weftctl unreserve [flags] SUBNET")
	ef := addEtcdFlags(fs)
	force := fs.Bool("force", false, "delete the lease even if it is not a reservation; "+
		"its host acquires a lease again at once")
	pos, err := parseArgs(e, fs, args)
	if err != nil {
		return err
	}
	if len(pos) != 1 {
		return usageError{"want one SUBNET argument"}
	}
	v4, err := parseSubnet(pos[0], 4)
	if err != nil {
		return usageError{err.Error()}
	}

	c, err := ef.connect(e)
	if err != nil {
		return err
	}
	defer c.close()
	cctx, cancel := ef.within(ctx)
	defer cancel()
	leases, err := c.reg.Leases(cctx)
	if err != nil {
		return c.explain(err, ef.timeout)
	}
	var found *subnet.Lease
	for i := range leases {
		if leases[i].Subnet == v4 {
			found = &leases[i]
		}
	}
	if found == nil {
		fmt.Fprintf(e.stdout, "no lease on %s; nothing to remove\n", v4)
		return nil
	}
	if !found.Reserved() && !*force {
		return fmt.Errorf("%s is the lease of %s, expiring %s, not a reservation: give "+
			"-force to delete it anyway", found.String(), found.Attrs.PublicIP,
			found.Expiration.UTC().Format(time.RFC3339))
	}
	if err := c.reg.DeleteLease(cctx, found.Subnet, found.IPv6Subnet); err != nil {
		return c.explain(err, ef.timeout)
	}
	what := "reservation"
	if !found.Reserved() {
		what = "lease"
	}
	fmt.Fprintf(e.stdout, "removed the %s %s of %s\n", what, found.String(),
		found.Attrs.PublicIP)
	return nil
}
