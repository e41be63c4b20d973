package subnet

import (
	"encoding/json"
	"errors"
	"net/netip"
	"slices"
	"strings"
	"testing"
)

func mustConfig(t testing.TB, js string) *Config {
	t.Helper()
	cfg, err := ParseConfig([]byte(js))
	if err != nil {
		t.Fatalf("ParseConfig(%s): %v", js, err)
	}
	return cfg
}

func prefixes(ss ...string) []netip.Prefix {
	var out []netip.Prefix
	for _, s := range ss {
		if s == "" {
			out = append(out, netip.Prefix{})
			continue
		}
		out = append(out, netip.MustParsePrefix(s))
	}
	return out
}

func TestFreeSubnets(t *testing.T) {
	s := span{
		network: netip.MustParsePrefix("198.19.0.0/16"),
		bits:    24,
		min:     netip.MustParseAddr("198.19.1.0"),
		max:     netip.MustParseAddr("198.19.5.0"),
	}
	tests := []struct {
		name  string
		span  span
		taken []netip.Prefix
		n     int
		want  []netip.Prefix
	}{
		{
			name: "empty",
			span: s,
			n:    10,
			want: prefixes("198.19.1.0/24", "198.19.2.0/24", "198.19.3.0/24",
				"198.19.4.0/24", "198.19.5.0/24"),
		},
		{
			name: "stops at n",
			span: s,
			n:    2,
			want: prefixes("198.19.1.0/24", "198.19.2.0/24"),
		},
		{
			name:  "skips exact and unsorted leases",
			span:  s,
			taken: prefixes("198.19.4.0/24", "198.19.1.0/24"),
			n:     10,
			want:  prefixes("198.19.2.0/24", "198.19.3.0/24", "198.19.5.0/24"),
		},
		{
			name:  "a shorter reservation covers several candidates",
			span:  s,
			taken: prefixes("198.19.2.0/23"),
			n:     10,
			want:  prefixes("198.19.1.0/24", "198.19.4.0/24", "198.19.5.0/24"),
		},
		{
			name:  "a longer lease inside a candidate takes it",
			span:  s,
			taken: prefixes("198.19.3.128/25", "198.19.3.0/26"),
			n:     10,
			want:  prefixes("198.19.1.0/24", "198.19.2.0/24", "198.19.4.0/24", "198.19.5.0/24"),
		},
		{
			name:  "a block covering everything",
			span:  s,
			taken: prefixes("198.19.0.0/16", "198.19.1.0/24"),
			n:     10,
		},
		{
			name:  "other family and invalid prefixes take nothing",
			span:  s,
			taken: prefixes("fc00::/8", "", "198.18.0.0/16"),
			n:     1,
			want:  prefixes("198.19.1.0/24"),
		},
		{
			name: "ipv6 skips a big block quickly",
			span: span{
				network: netip.MustParsePrefix("fc00::/16"),
				bits:    64,
				min:     netip.MustParseAddr("fc00::"),
				max:     netip.MustParseAddr("fc00:ffff:ffff:ffff::"),
			},
			taken: prefixes("fc00::/20", "", "198.19.1.0/24"),
			n:     2,
			want:  prefixes("fc00:1000::/64", "fc00:1000:0:1::/64"),
		},
		{
			name: "ends at the top of the address space",
			span: span{
				network: netip.MustParsePrefix("255.255.0.0/16"),
				bits:    24,
				min:     netip.MustParseAddr("255.255.254.0"),
				max:     netip.MustParseAddr("255.255.255.0"),
			},
			n:    10,
			want: prefixes("255.255.254.0/24", "255.255.255.0/24"),
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := freeSubnets(tt.span, tt.taken, tt.n)
			if !slices.Equal(got, tt.want) {
				t.Errorf("freeSubnets = %v, want %v", got, tt.want)
			}
		})
	}
}

func TestPickSubnet(t *testing.T) {
	cfg := mustConfig(t, `{"Network": "198.19.0.0/16"}`)
	s := v4Span(cfg)

	t.Run("preferred when free", func(t *testing.T) {
		want := netip.MustParsePrefix("198.19.7.0/24")
		got, err := pickSubnet(s, prefixes("198.19.1.0/24"), want)
		if err != nil || got != want {
			t.Errorf("pickSubnet = %v, %v; want %v", got, err, want)
		}
	})
	t.Run("preferred with host bits", func(t *testing.T) {
		pref := netip.PrefixFrom(netip.MustParseAddr("198.19.7.1"), 24)
		got, err := pickSubnet(s, nil, pref)
		if want := pref.Masked(); err != nil || got != want {
			t.Errorf("pickSubnet = %v, %v; want %v", got, err, want)
		}
	})
	t.Run("preferred but taken", func(t *testing.T) {
		pref := netip.MustParsePrefix("198.19.7.0/24")
		got, err := pickSubnet(s, prefixes("198.19.6.0/23"), pref)
		if err != nil || got == pref || Overlaps(got, netip.MustParsePrefix("198.19.6.0/23")) {
			t.Errorf("pickSubnet = %v, %v; want a free subnet other than %v", got, err, pref)
		}
	})
	t.Run("preferred outside the range", func(t *testing.T) {
		for _, p := range prefixes("198.19.0.0/24", "198.20.1.0/24", "198.19.8.0/25") {
			got, err := pickSubnet(s, nil, p)
			if err != nil || got == p || !inRange(got, 24, s.min, s.max) {
				t.Errorf("pickSubnet(pref %v) = %v, %v; want a subnet in range", p, got, err)
			}
		}
	})
	t.Run("random among the first 100", func(t *testing.T) {
		seen := map[netip.Prefix]bool{}
		for range 200 {
			got, err := pickSubnet(s, nil, netip.Prefix{})
			if err != nil {
				t.Fatal(err)
			}
			if got.Addr().Compare(netip.MustParseAddr("198.19.100.0")) > 0 {
				t.Fatalf("picked %v, beyond the first 100 free subnets", got)
			}
			seen[got] = true
		}
		if len(seen) < 20 {
			t.Errorf("200 picks gave only %d distinct subnets", len(seen))
		}
	})
}

func TestOutOfSubnetsError(t *testing.T) {
	full := func(n int) []netip.Prefix {
		var out []netip.Prefix
		for i := 1; i <= n; i++ {
			out = append(out, netip.PrefixFrom(netip.AddrFrom4([4]byte{198, 19, byte(i), 0}), 24))
		}
		return out
	}
	tests := []struct {
		name   string
		config string
		taken  []netip.Prefix
		want   string
	}{
		{
			name:   "whole network",
			config: `{"Network": "198.19.0.0/16"}`,
			taken:  full(255),
			want:   "out of subnets: no free /24 left in 198.19.0.0/16: 255 leases held",
		},
		{
			name: "narrowed range",
			config: `{"Network": "198.19.0.0/16", "SubnetMin": "198.19.1.0",
				"SubnetMax": "198.19.3.0"}`,
			taken: full(3),
			want: "out of subnets: no free /24 left in 198.19.0.0/16 between 198.19.1.0 " +
				"and 198.19.3.0: 3 leases held",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := mustConfig(t, tt.config)
			_, err := pickSubnet(v4Span(cfg), tt.taken, netip.Prefix{})
			if !errors.Is(err, ErrOutOfSubnets) {
				t.Fatalf("pickSubnet error = %v, want ErrOutOfSubnets", err)
			}
			if err.Error() != tt.want {
				t.Errorf("error text = %q, want %q", err, tt.want)
			}
		})
	}
}

func TestFitsConfig(t *testing.T) {
	v4 := mustConfig(t, `{"Network": "198.19.0.0/16", "SubnetMin": "198.19.2.0",
		"SubnetMax": "198.19.9.0"}`)
	dual := mustConfig(t, `{"Network": "198.19.0.0/16", "EnableIPv6": true,
		"IPv6Network": "fc00:19::/48"}`)
	tests := []struct {
		name   string
		cfg    *Config
		v4, v6 string
		want   bool
	}{
		{name: "inside", cfg: v4, v4: "198.19.2.0/24", want: true},
		{name: "at max", cfg: v4, v4: "198.19.9.0/24", want: true},
		{name: "below min", cfg: v4, v4: "198.19.1.0/24"},
		{name: "above max", cfg: v4, v4: "198.19.10.0/24"},
		{name: "other length", cfg: v4, v4: "198.19.2.0/25"},
		{name: "ipv6 part without ipv6", cfg: v4, v4: "198.19.2.0/24", v6: "fc00:19:0:1::/64"},
		{name: "dual", cfg: dual, v4: "198.19.2.0/24", v6: "fc00:19:0:1::/64", want: true},
		{name: "dual without ipv6 part", cfg: dual, v4: "198.19.2.0/24"},
		{name: "dual ipv6 outside", cfg: dual, v4: "198.19.2.0/24", v6: "fc00:20:0:1::/64"},
		{name: "dual ipv6 length", cfg: dual, v4: "198.19.2.0/24", v6: "fc00:19:0:1::/80"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := prefixes(tt.v4, tt.v6)
			if got := FitsConfig(tt.cfg, p[0], p[1]); got != tt.want {
				t.Errorf("FitsConfig(%s, %s) = %v, want %v", tt.v4, tt.v6, got, tt.want)
			}
		})
	}
}

func TestCheckAttrs(t *testing.T) {
	v4 := mustConfig(t, `{"Network": "198.19.0.0/16"}`)
	dual := mustConfig(t, `{"Network": "198.19.0.0/16", "EnableIPv6": true,
		"IPv6Network": "fc00:19::/48"}`)
	pub := netip.MustParseAddr("198.18.0.1")
	tests := []struct {
		name    string
		cfg     *Config
		attrs   LeaseAttrs
		wantErr string
	}{
		{name: "ok", cfg: v4, attrs: LeaseAttrs{PublicIP: pub,
			BackendData: json.RawMessage(` {"VNI":1}`)}},
		{name: "no public ip", cfg: v4, attrs: LeaseAttrs{}, wantErr: "PublicIP invalid IP"},
		{name: "unspecified", cfg: v4, attrs: LeaseAttrs{PublicIP: netip.IPv4Unspecified()},
			wantErr: "PublicIP 0.0.0.0"},
		{name: "ipv6 public ip", cfg: v4, attrs: LeaseAttrs{PublicIP: netip.MustParseAddr("fc00::1")},
			wantErr: "PublicIP fc00::1"},
		{name: "dual without v6", cfg: dual, attrs: LeaseAttrs{PublicIP: pub},
			wantErr: "PublicIPv6"},
		{name: "backend data not an object", cfg: v4,
			attrs:   LeaseAttrs{PublicIP: pub, BackendData: json.RawMessage(`[1]`)},
			wantErr: "BackendData \"[1]\" is not a JSON object"},
		{name: "backend v6 data invalid", cfg: v4,
			attrs:   LeaseAttrs{PublicIP: pub, BackendV6Data: json.RawMessage(`{`)},
			wantErr: "BackendV6Data"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := checkAttrs(tt.cfg, tt.attrs)
			if tt.wantErr == "" {
				if err != nil {
					t.Errorf("checkAttrs: %v", err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Errorf("checkAttrs error = %v, want one containing %q", err, tt.wantErr)
			}
		})
	}
}

// FuzzFreeSubnets checks the allocator's walk against a brute-force scan of every
// candidate, for random networks and random taken blocks.
func FuzzFreeSubnets(f *testing.F) {
	f.Add([]byte{198, 19, 0, 0}, uint8(16), uint8(4), uint8(10),
		[]byte{198, 19, 1, 0, 24, 198, 19, 4, 0, 23})
	f.Add([]byte{10, 0, 0, 0}, uint8(24), uint8(6), uint8(100), []byte{10, 0, 0, 0, 8})
	f.Add([]byte{255, 255, 255, 0}, uint8(24), uint8(2), uint8(3), []byte{})
	f.Fuzz(func(t *testing.T, base []byte, netBits, extra, n uint8, takenRaw []byte) {
		if len(base) != 4 || netBits > 28 || extra < 2 || extra > 8 || int(netBits)+int(extra) > 30 {
			t.Skip()
		}
		network := netip.PrefixFrom(netip.AddrFrom4([4]byte(base)), int(netBits)).Masked()
		bits := int(netBits) + int(extra)
		var taken []netip.Prefix
		for i := 0; i+5 <= len(takenRaw) && len(taken) < 50; i += 5 {
			a := netip.AddrFrom4([4]byte(takenRaw[i : i+4]))
			taken = append(taken, netip.PrefixFrom(a, int(takenRaw[i+4])%33).Masked())
		}
		cfg := &Config{EnableIPv4: true, Network: network, SubnetLen: bits}
		if err := cfg.validate(); err != nil {
			t.Skip()
		}
		s := v4Span(cfg)

		var want []netip.Prefix
		for a := s.min; a.IsValid() && a.Compare(s.max) <= 0 && len(want) < int(n); {
			cand := netip.PrefixFrom(a, bits)
			if !overlapsAny(cand, taken) {
				want = append(want, cand)
			}
			a = lastAddr(cand).Next()
		}
		got := freeSubnets(s, taken, int(n))
		if !slices.Equal(got, want) {
			t.Fatalf("freeSubnets(%v, taken %v, %d) = %v, want %v", s, taken, n, got, want)
		}
	})
}
