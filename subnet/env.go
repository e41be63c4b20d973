package subnet

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"net/netip"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/weftnet/weft/internal/atomicfile"
)

// DefaultEnvFile is where flanneld writes subnet.env unless -subnet-file says otherwise.
const DefaultEnvFile = "/run/flannel/subnet.env"

// Env is the content of subnet.env: what consumers (the CNI flannel plugin, Docker's
// options, hyperd's bridge) need to know about this host's lease.
type Env struct {
	// Network and Subnet are the IPv4 overlay and this host's lease; invalid when the
	// network has no IPv4 part. Subnet holds the lease's network address: the file
	// carries its first host address, as flanneld writes it.
	Network netip.Prefix
	Subnet  netip.Prefix

	IPv6Network netip.Prefix
	IPv6Subnet  netip.Prefix

	MTU    int
	IPMasq bool
}

// Marshal renders e exactly as flanneld does: KEY=value lines, no quotes, in the order
// FLANNEL_NETWORK, FLANNEL_SUBNET, FLANNEL_IPV6_NETWORK, FLANNEL_IPV6_SUBNET, FLANNEL_MTU,
// FLANNEL_IPMASQ. The CNI plugin splits each line at its first '=' and trims nothing.
func (e Env) Marshal() []byte {
	var b bytes.Buffer
	if e.Network.IsValid() && e.Subnet.IsValid() {
		fmt.Fprintf(&b, "FLANNEL_NETWORK=%s\n", e.Network)
		fmt.Fprintf(&b, "FLANNEL_SUBNET=%s\n", FirstHost(e.Subnet))
	}
	if e.IPv6Network.IsValid() && e.IPv6Subnet.IsValid() {
		fmt.Fprintf(&b, "FLANNEL_IPV6_NETWORK=%s\n", e.IPv6Network)
		fmt.Fprintf(&b, "FLANNEL_IPV6_SUBNET=%s\n", FirstHost(e.IPv6Subnet))
	}
	fmt.Fprintf(&b, "FLANNEL_MTU=%d\n", e.MTU)
	fmt.Fprintf(&b, "FLANNEL_IPMASQ=%t\n", e.IPMasq)
	return b.Bytes()
}

// WriteEnvFile writes e to path atomically: readers see the old file or the new one,
// never a part. The parent directory is created (0755) when missing; the file is 0644
// unless an existing file has another mode, which is kept.
func WriteEnvFile(path string, e Env) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return fmt.Errorf("creating directory for %s: %w", path, err)
	}
	return atomicfile.Write(path, e.Marshal(), 0o644)
}

// ReadEnvFile reads the values weftd reuses from a previous run's subnet.env: the
// networks and subnets, with host bits masked (FLANNEL_SUBNET=10.5.52.1/24 gives
// 10.5.52.0/24). A missing file gives an empty Env and no error. A value that is a
// comma list of more than one entry, or that does not parse, is left out; the file
// belongs to the host and a damaged one must not stop the daemon, so the returned error
// only reports what was skipped, alongside whatever did parse.
func ReadEnvFile(path string) (Env, error) {
	data, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return Env{}, nil
	}
	if err != nil {
		return Env{}, fmt.Errorf("reading %s: %w", path, err)
	}
	e, err := ParseEnv(data)
	if err != nil {
		return e, fmt.Errorf("%s: %w", path, err)
	}
	return e, nil
}

// ParseEnv parses subnet.env content. It accepts the shell-like forms that flanneld's
// reader accepts: comments, blank lines, an "export " prefix, single or double quotes.
func ParseEnv(data []byte) (Env, error) {
	var e Env
	var errs []error
	sc := bufio.NewScanner(bytes.NewReader(data))
	sc.Buffer(nil, 1<<20)
	for lineNo := 1; sc.Scan(); lineNo++ {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		line = strings.TrimPrefix(line, "export ")
		key, value, ok := strings.Cut(line, "=")
		if !ok {
			errs = append(errs, fmt.Errorf("line %d: %q is not KEY=value", lineNo, line))
			continue
		}
		key = strings.TrimSpace(key)
		value = unquote(strings.TrimSpace(value))

		var err error
		switch key {
		case "FLANNEL_NETWORK":
			e.Network, err = parseEnvPrefix(value, false)
		case "FLANNEL_SUBNET":
			e.Subnet, err = parseEnvPrefix(value, false)
		case "FLANNEL_IPV6_NETWORK":
			e.IPv6Network, err = parseEnvPrefix(value, true)
		case "FLANNEL_IPV6_SUBNET":
			e.IPv6Subnet, err = parseEnvPrefix(value, true)
		case "FLANNEL_MTU":
			e.MTU, err = strconv.Atoi(value)
			if err == nil && e.MTU < 0 {
				err = errors.New("negative")
			}
		case "FLANNEL_IPMASQ":
			e.IPMasq, err = strconv.ParseBool(value)
		}
		if err != nil {
			errs = append(errs, fmt.Errorf("line %d: %s=%q: %w", lineNo, key, value, err))
		}
	}
	if err := sc.Err(); err != nil {
		errs = append(errs, err)
	}
	return e, errors.Join(errs...)
}

func unquote(v string) string {
	if len(v) >= 2 && (v[0] == '"' || v[0] == '\'') && v[len(v)-1] == v[0] {
		return v[1 : len(v)-1]
	}
	return v
}

// parseEnvPrefix parses a single CIDR; a list of several entries is ignored, as flanneld
// ignores it.
func parseEnvPrefix(v string, v6 bool) (netip.Prefix, error) {
	if strings.Contains(v, ",") {
		parts := strings.Split(v, ",")
		var kept []string
		for _, p := range parts {
			if p = strings.TrimSpace(p); p != "" {
				kept = append(kept, p)
			}
		}
		if len(kept) != 1 {
			return netip.Prefix{}, nil
		}
		v = kept[0]
	}
	p, err := netip.ParsePrefix(v)
	if err != nil {
		return netip.Prefix{}, errors.New("not a CIDR")
	}
	if p.Addr().Is4() == v6 {
		return netip.Prefix{}, errors.New("wrong address family")
	}
	return p.Masked(), nil
}
