package rules

import (
	"net/netip"
	"slices"
	"strings"
	"testing"
)

var testCfg = Config{
	Network:            netip.MustParsePrefix("198.19.0.0/16"),
	Subnet:             netip.MustParsePrefix("198.19.5.0/24"),
	IPv6Network:        netip.MustParsePrefix("fd00:198:19::/48"),
	IPv6Subnet:         netip.MustParsePrefix("fd00:198:19:5::/64"),
	Masquerade:         true,
	Forward:            true,
	BlackholeRoute:     true,
	DisableFullyRandom: false,
}

// The chains as nft list prints them, written out by hand from flanneld's iptables rules
// (COMPAT 7.3) rather than derived from the code under test.
var (
	wantForward4 = []string{
		`ip saddr 198.19.0.0/16 accept comment "flanneld forward"`,
		`ip daddr 198.19.0.0/16 accept comment "flanneld forward"`,
	}
	wantMasq4 = []string{
		`meta mark & 0x00004000 == 0x00004000 return comment "flanneld masq"`,
		`ip saddr 198.19.5.0/24 ip daddr 198.19.0.0/16 return comment "flanneld masq"`,
		`ip saddr 198.19.0.0/16 ip daddr 198.19.5.0/24 return comment "flanneld masq"`,
		`ip saddr != 198.19.0.0/16 ip daddr 198.19.5.0/24 return comment "flanneld masq"`,
		`ip saddr 198.19.0.0/16 ip daddr != 224.0.0.0/4 masquerade fully-random ` +
			`comment "flanneld masq"`,
		`ip saddr != 198.19.0.0/16 ip daddr 198.19.0.0/16 masquerade fully-random ` +
			`comment "flanneld masq"`,
	}
	wantForward6 = []string{
		`ip6 saddr fd00:198:19::/48 accept comment "flanneld forward"`,
		`ip6 daddr fd00:198:19::/48 accept comment "flanneld forward"`,
	}
	wantMasq6 = []string{
		`meta mark & 0x00004000 == 0x00004000 return comment "flanneld masq"`,
		`ip6 saddr fd00:198:19:5::/64 ip6 daddr fd00:198:19::/48 return comment "flanneld masq"`,
		`ip6 saddr fd00:198:19::/48 ip6 daddr fd00:198:19:5::/64 return comment "flanneld masq"`,
		`ip6 saddr != fd00:198:19::/48 ip6 daddr fd00:198:19:5::/64 return ` +
			`comment "flanneld masq"`,
		`ip6 saddr fd00:198:19::/48 ip6 daddr != ff00::/8 masquerade fully-random ` +
			`comment "flanneld masq"`,
		`ip6 saddr != fd00:198:19::/48 ip6 daddr fd00:198:19::/48 masquerade fully-random ` +
			`comment "flanneld masq"`,
	}
)

func formatChain(f family, c chain) []string {
	var out []string
	for _, r := range c.rules {
		out = append(out, r.format(f))
	}
	return out
}

func TestDesired(t *testing.T) {
	noRandom := testCfg
	noRandom.DisableFullyRandom = true
	masqOnly := testCfg
	masqOnly.Forward = false
	v4only := testCfg
	v4only.IPv6Network, v4only.IPv6Subnet = netip.Prefix{}, netip.Prefix{}
	nothing := testCfg
	nothing.Masquerade, nothing.Forward = false, false

	stripRandom := func(rules []string) []string {
		var out []string
		for _, r := range rules {
			out = append(out, strings.Replace(r, " fully-random", "", 1))
		}
		return out
	}
	type chains map[string][]string
	tests := []struct {
		name     string
		cfg      Config
		want4    chains
		want6    chains
		noTable6 bool
	}{
		{name: "all", cfg: testCfg,
			want4: chains{"forward": wantForward4, "postrtg": wantMasq4},
			want6: chains{"forward": wantForward6, "postrtg": wantMasq6}},
		{name: "no fully-random", cfg: noRandom,
			want4: chains{"forward": wantForward4, "postrtg": stripRandom(wantMasq4)},
			want6: chains{"forward": wantForward6, "postrtg": stripRandom(wantMasq6)}},
		{name: "masquerade only", cfg: masqOnly,
			want4: chains{"postrtg": wantMasq4}, want6: chains{"postrtg": wantMasq6}},
		{name: "IPv4 only", cfg: v4only,
			want4: chains{"forward": wantForward4, "postrtg": wantMasq4}},
		{name: "nothing", cfg: nothing},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			for _, fw := range []struct {
				f    family
				want chains
				name string
			}{{ipv4, tt.want4, TableIPv4}, {ipv6, tt.want6, TableIPv6}} {
				tbl := tt.cfg.desired(fw.f)
				if len(fw.want) == 0 {
					if tbl != nil {
						t.Errorf("%s: got table %s, want none", fw.f, tbl.name)
					}
					continue
				}
				if tbl == nil || tbl.name != fw.name {
					t.Fatalf("%s: got %v, want table %s", fw.f, tbl, fw.name)
				}
				got := chains{}
				for _, c := range tbl.chains {
					got[c.name] = formatChain(fw.f, c)
				}
				for name, rules := range fw.want {
					if !slices.Equal(got[name], rules) {
						t.Errorf("%s chain %s:\n got %q\nwant %q", fw.f, name, got[name], rules)
					}
				}
				if len(got) != len(fw.want) {
					t.Errorf("%s: chains %v, want %d", fw.f, got, len(fw.want))
				}
			}
		})
	}
}

func TestValidate(t *testing.T) {
	tests := []struct {
		name string
		edit func(*Config)
		want string
	}{
		{name: "network of the wrong family", want: "fd00::/64",
			edit: func(c *Config) { c.Network = netip.MustParsePrefix("fd00::/64") }},
		{name: "IPv6 subnet of the wrong family", want: "10.0.0.0/24",
			edit: func(c *Config) { c.IPv6Subnet = netip.MustParsePrefix("10.0.0.0/24") }},
		{name: "subnet outside network", want: "10.9.0.0/24",
			edit: func(c *Config) { c.Subnet = netip.MustParsePrefix("10.9.0.0/24") }},
		{name: "subnet wider than network", want: "198.0.0.0/8",
			edit: func(c *Config) { c.Subnet = netip.MustParsePrefix("198.0.0.0/8") }},
		{name: "masquerade without subnet", want: "198.19.0.0/16",
			edit: func(c *Config) { c.Subnet = netip.Prefix{} }},
		{name: "masquerade without network", want: "198.19.5.0/24",
			edit: func(c *Config) { c.Network = netip.Prefix{} }},
		{name: "previous subnet of the wrong family", want: "fd00::/64",
			edit: func(c *Config) { c.PrevSubnet = netip.MustParsePrefix("fd00::/64") }},
	}
	if err := testCfg.Validate(); err != nil {
		t.Fatalf("the test config is invalid: %v", err)
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := testCfg
			tt.edit(&cfg)
			err := cfg.Validate()
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("error %v, want one naming %s", err, tt.want)
			}
		})
	}
}
