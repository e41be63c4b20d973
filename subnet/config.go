package subnet

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"net/netip"
	"strconv"
	"strings"
)

// DefaultBackendType is the backend flanneld uses when the config has no Backend object.
// flanneld's documentation says vxlan, its code says udp; weft follows the code, so that a
// config read by both daemons selects the same data plane.
const DefaultBackendType = "udp"

// Config is the network configuration stored under <prefix>/config, the JSON document
// that every host of one overlay shares. Field names and defaults are flanneld's.
type Config struct {
	EnableIPv4     bool
	EnableIPv6     bool
	EnableNFTables bool

	// Network is the IPv4 overlay; SubnetLen is the length of each host's lease, and
	// SubnetMin..SubnetMax the network addresses a lease may start at.
	Network   netip.Prefix
	SubnetLen int
	SubnetMin netip.Addr
	SubnetMax netip.Addr

	IPv6Network   netip.Prefix
	IPv6SubnetLen int
	IPv6SubnetMin netip.Addr
	IPv6SubnetMax netip.Addr

	// BackendType is the lowercased Backend.Type, DefaultBackendType when Backend is
	// absent, and "" when Backend is present without a Type.
	BackendType string

	// Backend is the raw Backend object (nil when absent). Backends decode their own
	// options from it.
	Backend json.RawMessage
}

// ParseConfig decodes and validates a network configuration. Like flanneld it matches
// field names without regard to case, ignores unknown fields, masks the host bits of
// CIDRs, and fills SubnetLen, SubnetMin and SubnetMax from the network when they are
// absent. Every error names the field and the value at fault.
func ParseConfig(data []byte) (*Config, error) {
	var fields map[string]json.RawMessage
	if err := json.Unmarshal(data, &fields); err != nil {
		return nil, fmt.Errorf("network config is not a JSON object: %w", err)
	}
	if fields == nil {
		return nil, errors.New("network config is not a JSON object: null")
	}
	c := &Config{EnableIPv4: true}
	var errs []error
	check := func(err error) {
		if err != nil {
			errs = append(errs, err)
		}
	}

	check(decodeBool(fields, "EnableIPv4", &c.EnableIPv4))
	check(decodeBool(fields, "EnableIPv6", &c.EnableIPv6))
	check(decodeBool(fields, "EnableNFTables", &c.EnableNFTables))
	check(decodePrefix(fields, "Network", false, &c.Network))
	check(decodePrefix(fields, "IPv6Network", true, &c.IPv6Network))
	check(decodeUint(fields, "SubnetLen", &c.SubnetLen))
	check(decodeUint(fields, "IPv6SubnetLen", &c.IPv6SubnetLen))
	check(decodeAddr(fields, "SubnetMin", false, &c.SubnetMin))
	check(decodeAddr(fields, "SubnetMax", false, &c.SubnetMax))
	check(decodeAddr(fields, "IPv6SubnetMin", true, &c.IPv6SubnetMin))
	check(decodeAddr(fields, "IPv6SubnetMax", true, &c.IPv6SubnetMax))
	check(c.decodeBackend(fields))
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}

	if err := c.validate(); err != nil {
		return nil, err
	}
	return c, nil
}

// lookup finds a field the way encoding/json does: an exact match first, then any
// case-insensitive one.
func lookup(fields map[string]json.RawMessage, name string) (json.RawMessage, bool) {
	if v, ok := fields[name]; ok {
		return v, true
	}
	for k, v := range fields {
		if strings.EqualFold(k, name) {
			return v, true
		}
	}
	return nil, false
}

func isNull(raw json.RawMessage) bool {
	return bytes.Equal(bytes.TrimSpace(raw), []byte("null"))
}

func decodeBool(fields map[string]json.RawMessage, name string, dst *bool) error {
	raw, ok := lookup(fields, name)
	if !ok || isNull(raw) {
		return nil
	}
	if err := json.Unmarshal(raw, dst); err != nil {
		return fmt.Errorf("%s: want true or false, got %s", name, raw)
	}
	return nil
}

func decodeUint(fields map[string]json.RawMessage, name string, dst *int) error {
	raw, ok := lookup(fields, name)
	if !ok || isNull(raw) {
		return nil
	}
	n, err := strconv.ParseUint(string(bytes.TrimSpace(raw)), 10, 8)
	if err != nil {
		return fmt.Errorf("%s: want a prefix length, got %s", name, raw)
	}
	*dst = int(n)
	return nil
}

func decodeString(fields map[string]json.RawMessage, name, example string) (string, bool, error) {
	raw, ok := lookup(fields, name)
	if !ok || isNull(raw) {
		return "", false, nil
	}
	var s string
	if err := json.Unmarshal(raw, &s); err != nil {
		return "", false, fmt.Errorf("%s: want a string like %q, got %s", name, example, raw)
	}
	return s, true, nil
}

func decodePrefix(fields map[string]json.RawMessage, name string, v6 bool, dst *netip.Prefix) error {
	example, family := "10.5.0.0/16", "IPv4"
	if v6 {
		example, family = "fc00:5::/48", "IPv6"
	}
	s, ok, err := decodeString(fields, name, example)
	if err != nil || !ok {
		return err
	}
	p, err := netip.ParsePrefix(s)
	if err != nil || p.Addr().Zone() != "" {
		return fmt.Errorf("%s %q is not an %s CIDR like %q", name, s, family, example)
	}
	if p.Addr().Is4() == v6 || p.Addr().Is4In6() {
		return fmt.Errorf("%s %q is not an %s CIDR like %q", name, s, family, example)
	}
	*dst = p.Masked()
	return nil
}

func decodeAddr(fields map[string]json.RawMessage, name string, v6 bool, dst *netip.Addr) error {
	example, family := "10.5.1.0", "IPv4"
	if v6 {
		example, family = "fc00:5:0:1::", "IPv6"
	}
	s, ok, err := decodeString(fields, name, example)
	if err != nil || !ok {
		return err
	}
	a, err := netip.ParseAddr(s)
	if err != nil || a.Zone() != "" || a.Is4() == v6 || a.Is4In6() {
		return fmt.Errorf("%s %q is not an %s address like %q", name, s, family, example)
	}
	*dst = a
	return nil
}

func (c *Config) decodeBackend(fields map[string]json.RawMessage) error {
	raw, ok := lookup(fields, "Backend")
	if !ok {
		c.BackendType = DefaultBackendType
		return nil
	}
	var obj map[string]json.RawMessage
	if err := json.Unmarshal(raw, &obj); err != nil || obj == nil {
		return fmt.Errorf("Backend: want an object like {\"Type\": \"vxlan\"}, got %s", raw)
	}
	c.Backend = raw
	t, _, err := decodeString(obj, "Type", "vxlan")
	if err != nil {
		return fmt.Errorf("Backend.%w", err)
	}
	c.BackendType = strings.ToLower(t)
	return nil
}

// family describes one address family's part of a Config for validation and allocation.
type family struct {
	name                 string // "" for IPv4, "IPv6" for IPv6: the field-name prefix
	network              netip.Prefix
	subnetLen            *int
	subnetMin, subnetMax *netip.Addr
	maxLen, defaultLen   int // longest SubnetLen allowed, and the default for large networks
}

func (c *Config) families() []family {
	var fs []family
	if c.EnableIPv4 {
		fs = append(fs, family{"", c.Network, &c.SubnetLen, &c.SubnetMin, &c.SubnetMax, 30, 24})
	}
	if c.EnableIPv6 {
		fs = append(fs, family{"IPv6", c.IPv6Network, &c.IPv6SubnetLen, &c.IPv6SubnetMin,
			&c.IPv6SubnetMax, 126, 64})
	}
	return fs
}

// validate applies flanneld's rules and fills the derived fields.
func (c *Config) validate() error {
	if !c.EnableIPv4 && !c.EnableIPv6 {
		return errors.New("EnableIPv4 and EnableIPv6 are both false: no address family to run")
	}
	for _, f := range c.families() {
		if err := f.validate(); err != nil {
			return err
		}
	}
	return nil
}

func (f family) validate() error {
	netName := f.name + "Network"
	if !f.network.IsValid() {
		return fmt.Errorf("%s is missing: set it to the overlay's CIDR", netName)
	}
	bits := f.network.Bits()
	lenName := f.name + "SubnetLen"
	switch n := *f.subnetLen; {
	case n == 0:
		switch {
		case bits > f.maxLen-2:
			return fmt.Errorf("%s %s is too small: the longest useful prefix is /%d",
				netName, f.network, f.maxLen-2)
		case bits <= f.defaultLen-2:
			*f.subnetLen = f.defaultLen
		default:
			*f.subnetLen = bits + 2
		}
	case n > f.maxLen:
		return fmt.Errorf("%s %d is too long: it must be at most %d", lenName, n, f.maxLen)
	case n < bits+2:
		return fmt.Errorf("%s %d is too short for %s %s: the network must hold at least "+
			"four subnets, so SubnetLen must be at least %d", lenName, n, netName, f.network, bits+2)
	}

	n := *f.subnetLen
	size := blockSize(f.network.Addr().BitLen(), n)
	if !f.subnetMin.IsValid() {
		*f.subnetMin, _ = addrAdd(f.network.Addr(), size)
	}
	if !f.subnetMax.IsValid() {
		last := lastAddr(f.network)
		p, _ := last.Prefix(n)
		*f.subnetMax = p.Addr()
	}
	for _, b := range []struct {
		name string
		addr netip.Addr
	}{{f.name + "SubnetMin", *f.subnetMin}, {f.name + "SubnetMax", *f.subnetMax}} {
		if !f.network.Contains(b.addr) {
			return fmt.Errorf("%s %s is outside %s %s", b.name, b.addr, netName, f.network)
		}
		if !aligned(b.addr, n) {
			p, _ := b.addr.Prefix(n)
			return fmt.Errorf("%s %s is not on a /%d boundary (the nearest is %s)",
				b.name, b.addr, n, p.Addr())
		}
	}
	if f.subnetMin.Compare(*f.subnetMax) > 0 {
		return fmt.Errorf("%sSubnetMin %s is above %sSubnetMax %s",
			f.name, *f.subnetMin, f.name, *f.subnetMax)
	}
	return nil
}
