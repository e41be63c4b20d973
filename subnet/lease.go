package subnet

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"net/netip"
	"strconv"
	"strings"
	"time"
)

// LeaseAttrs is the value stored at a lease key: the JSON that flanneld reads and writes.
type LeaseAttrs struct {
	// PublicIP is the host's underlay IPv4 address, the tunnel endpoint peers send to.
	PublicIP netip.Addr
	// PublicIPv6 is the host's underlay IPv6 address; invalid when the host has none.
	PublicIPv6 netip.Addr
	// BackendType is the backend's name as flanneld spells it ("vxlan", "host-gw"); empty
	// for udp and alloc leases, which carry none.
	BackendType string
	// BackendData and BackendV6Data are backend-specific JSON objects, nil when absent.
	BackendData   json.RawMessage
	BackendV6Data json.RawMessage
}

// leaseAttrsJSON mirrors flanneld's LeaseAttrs field for field, so that encoding/json
// produces the same bytes: field order, null for a missing PublicIPv6, omitted empty
// backend fields, compacted raw objects.
type leaseAttrsJSON struct {
	PublicIP      string
	PublicIPv6    *string
	BackendType   string          `json:",omitempty"`
	BackendData   json.RawMessage `json:",omitempty"`
	BackendV6Data json.RawMessage `json:",omitempty"`
}

// MarshalJSON encodes a to the bytes flanneld writes, for example
// {"PublicIP":"198.18.0.1","PublicIPv6":null,"BackendType":"vxlan","BackendData":{...}}.
func (a LeaseAttrs) MarshalJSON() ([]byte, error) {
	v := leaseAttrsJSON{
		PublicIP:      "0.0.0.0",
		BackendType:   a.BackendType,
		BackendData:   a.BackendData,
		BackendV6Data: a.BackendV6Data,
	}
	if a.PublicIP.IsValid() {
		v.PublicIP = a.PublicIP.String()
	}
	if a.PublicIPv6.IsValid() {
		s := a.PublicIPv6.String()
		v.PublicIPv6 = &s
	}
	return json.Marshal(v)
}

// UnmarshalJSON decodes a lease value as leniently as flanneld does: field names match
// without regard to case and unknown fields are ignored. A missing PublicIP decodes as
// 0.0.0.0; a PublicIP that is null, empty or not IPv4, or a PublicIPv6 that is empty or
// not IPv6, is an error.
func (a *LeaseAttrs) UnmarshalJSON(data []byte) error {
	var v struct {
		PublicIP      json.RawMessage
		PublicIPv6    json.RawMessage
		BackendType   string
		BackendData   json.RawMessage
		BackendV6Data json.RawMessage
	}
	if err := json.Unmarshal(data, &v); err != nil {
		return fmt.Errorf("decoding lease value: %w", err)
	}
	if isNull(data) {
		return errors.New("decoding lease value: null")
	}
	out := LeaseAttrs{
		PublicIP:      netip.IPv4Unspecified(),
		BackendType:   v.BackendType,
		BackendData:   v.BackendData,
		BackendV6Data: v.BackendV6Data,
	}
	if v.PublicIP != nil {
		ip, err := parseJSONAddr(v.PublicIP, false)
		if err != nil {
			return fmt.Errorf("decoding lease value: PublicIP %s: %w", v.PublicIP, err)
		}
		out.PublicIP = ip
	}
	if v.PublicIPv6 != nil && !isNull(v.PublicIPv6) {
		ip, err := parseJSONAddr(v.PublicIPv6, true)
		if err != nil {
			return fmt.Errorf("decoding lease value: PublicIPv6 %s: %w", v.PublicIPv6, err)
		}
		out.PublicIPv6 = ip
	}
	if isNull(out.BackendData) {
		out.BackendData = nil
	}
	if isNull(out.BackendV6Data) {
		out.BackendV6Data = nil
	}
	*a = out
	return nil
}

func parseJSONAddr(raw json.RawMessage, v6 bool) (netip.Addr, error) {
	var s string
	if err := json.Unmarshal(raw, &s); err != nil {
		return netip.Addr{}, errors.New("not a string")
	}
	a, err := netip.ParseAddr(s)
	if err != nil || a.Zone() != "" {
		return netip.Addr{}, errors.New("not an IP address")
	}
	if v6 {
		if !a.Is6() || a.Is4In6() {
			return netip.Addr{}, errors.New("not an IPv6 address")
		}
		return a, nil
	}
	if a.Is4In6() {
		a = a.Unmap()
	}
	if !a.Is4() {
		return netip.Addr{}, errors.New("not an IPv4 address")
	}
	return a, nil
}

// Lease is one host's hold on a subnet, as read from or written to etcd.
type Lease struct {
	// Subnet is the IPv4 subnet; every etcd lease key has one.
	Subnet netip.Prefix
	// IPv6Subnet is the IPv6 subnet of a dual-stack lease; invalid otherwise.
	IPv6Subnet netip.Prefix
	Attrs      LeaseAttrs

	// Expiration is when etcd deletes the key unless it is renewed; zero for a
	// reservation, which never expires.
	Expiration time.Time
	// EtcdLease is the etcd lease ID the key is attached to; 0 marks a reservation.
	EtcdLease int64
	// ModRevision is the etcd revision of the key's last change; 0 when unknown.
	ModRevision int64
}

// Reserved reports whether the lease is a reservation: a key written without an etcd
// lease, which never expires and belongs to the host whose PublicIP it names.
func (l *Lease) Reserved() bool { return l.EtcdLease == 0 }

// Key returns the lease's key below <prefix>/subnets/, as flanneld builds it:
// "10.5.52.0-24" or, dual stack, "10.5.52.0-24&fc00:5:0:34::-64".
func (l *Lease) Key() string { return MakeKey(l.Subnet, l.IPv6Subnet) }

// String names the lease by its key, for logs.
func (l *Lease) String() string { return l.Key() }

// MakeKey builds a lease key from its subnets; v6 may be invalid for an IPv4-only lease.
func MakeKey(v4, v6 netip.Prefix) string {
	key := v4.Addr().String() + "-" + strconv.Itoa(v4.Bits())
	if v6.IsValid() {
		key += "&" + v6.Addr().String() + "-" + strconv.Itoa(v6.Bits())
	}
	return key
}

// ParseKey parses a lease key, the last element of <prefix>/subnets/<key>. It accepts what
// flanneld accepts (an IPv4 prefix length of 0 to 31, an IPv6 part in lowercase hex and
// colons with a length of 0 to 127) and additionally rejects subnets with host bits set,
// which no daemon writes and the kernel would not route.
func ParseKey(key string) (v4, v6 netip.Prefix, err error) {
	v4s, v6s, dual := strings.Cut(key, "&")
	v4, err = parseKeyPart(v4s, false)
	if err != nil {
		return netip.Prefix{}, netip.Prefix{}, fmt.Errorf("lease key %q: %w", key, err)
	}
	if dual {
		v6, err = parseKeyPart(v6s, true)
		if err != nil {
			return netip.Prefix{}, netip.Prefix{}, fmt.Errorf("lease key %q: %w", key, err)
		}
	}
	return v4, v6, nil
}

func parseKeyPart(s string, v6 bool) (netip.Prefix, error) {
	addrText, lenText, ok := strings.Cut(s, "-")
	if !ok {
		return netip.Prefix{}, fmt.Errorf("%q has no '-' before the prefix length", s)
	}
	maxLen := 31
	if v6 {
		maxLen = 127
	}
	n, err := strconv.Atoi(lenText)
	if err != nil || n < 0 || n > maxLen || lenText == "" || lenText[0] == '+' {
		return netip.Prefix{}, fmt.Errorf("prefix length %q is not in 0..%d", lenText, maxLen)
	}
	if v6 && strings.Trim(addrText, "0123456789abcdef:") != "" {
		return netip.Prefix{}, fmt.Errorf("%q is not a lowercase IPv6 address", addrText)
	}
	a, err := netip.ParseAddr(addrText)
	if err != nil || a.Is4() == v6 || a.Zone() != "" || a.Is4In6() {
		family := "IPv4"
		if v6 {
			family = "IPv6"
		}
		return netip.Prefix{}, fmt.Errorf("%q is not an %s address", addrText, family)
	}
	p := netip.PrefixFrom(a, n)
	if p.Masked() != p {
		return netip.Prefix{}, fmt.Errorf("%s has host bits set (the subnet is %s)", p, p.Masked())
	}
	return p, nil
}

// DecodeLease builds a Lease from a key's last element and its value.
func DecodeLease(key string, value []byte) (Lease, error) {
	v4, v6, err := ParseKey(key)
	if err != nil {
		return Lease{}, err
	}
	var attrs LeaseAttrs
	if err := json.Unmarshal(value, &attrs); err != nil {
		return Lease{}, fmt.Errorf("lease %s: %w", key, err)
	}
	return Lease{Subnet: v4, IPv6Subnet: v6, Attrs: attrs}, nil
}

// EventType says whether a lease appeared (or changed) or went away.
type EventType int

const (
	// EventAdded means a lease was created, renewed or changed: add or replace it.
	EventAdded EventType = iota
	// EventRemoved means a lease was deleted or expired. The event carries the lease as
	// it was last seen, so that its routes and entries can be found and removed.
	EventRemoved
)

func (t EventType) String() string {
	switch t {
	case EventAdded:
		return "added"
	case EventRemoved:
		return "removed"
	}
	return "EventType(" + strconv.Itoa(int(t)) + ")"
}

// Event is one change to the set of peer leases.
type Event struct {
	Type  EventType
	Lease Lease
}

// SameSubnets reports whether a and b hold the same subnets, the identity of a lease.
func SameSubnets(a, b *Lease) bool {
	return a.Subnet == b.Subnet && a.IPv6Subnet == b.IPv6Subnet
}

// EqualAttrs reports whether two lease values are the same, comparing backend data as
// compacted JSON.
func EqualAttrs(a, b LeaseAttrs) bool {
	return a.PublicIP == b.PublicIP && a.PublicIPv6 == b.PublicIPv6 &&
		a.BackendType == b.BackendType &&
		jsonEqual(a.BackendData, b.BackendData) && jsonEqual(a.BackendV6Data, b.BackendV6Data)
}

func jsonEqual(a, b json.RawMessage) bool {
	if len(a) == 0 || len(b) == 0 {
		return len(a) == len(b)
	}
	var ca, cb bytes.Buffer
	if json.Compact(&ca, a) != nil || json.Compact(&cb, b) != nil {
		return bytes.Equal(a, b)
	}
	return bytes.Equal(ca.Bytes(), cb.Bytes())
}
