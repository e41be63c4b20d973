package subnet

import (
	"net/netip"
	"strings"
	"testing"
)

func TestParseConfigDefaults(t *testing.T) {
	tests := []struct {
		name      string
		json      string
		subnetLen int
		min, max  string
		backend   string
	}{
		{
			name:      "slash 16 gets slash 24 and skips the first subnet",
			json:      `{"Network":"10.244.0.0/16"}`,
			subnetLen: 24, min: "10.244.1.0", max: "10.244.255.0",
			backend: "udp",
		},
		{
			name:      "slash 23 gets prefix plus two",
			json:      `{"Network":"10.1.0.0/23","Backend":{"Type":"vxlan"}}`,
			subnetLen: 25, min: "10.1.0.128", max: "10.1.1.128",
			backend: "vxlan",
		},
		{
			name:      "slash 28 is the smallest network",
			json:      `{"Network":"10.1.0.0/28","Backend":{"Type":"VXLAN"}}`,
			subnetLen: 30, min: "10.1.0.4", max: "10.1.0.12",
			backend: "vxlan",
		},
		{
			name:      "host bits are masked and field names match in any case",
			json:      `{"network":"10.5.3.7/16","SUBNETLEN":20,"backend":{"type":"host-gw"}}`,
			subnetLen: 20, min: "10.5.16.0", max: "10.5.240.0",
			backend: "host-gw",
		},
		{
			name:      "flannel's documented example",
			json:      `{"Network":"10.0.0.0/8","SubnetLen":20,"SubnetMin":"10.10.0.0","SubnetMax":"10.99.0.0","Backend":{"Type":"udp","Port":7890}}`,
			subnetLen: 20, min: "10.10.0.0", max: "10.99.0.0",
			backend: "udp",
		},
		{
			name:      "unknown fields are ignored",
			json:      `{"Network":"198.19.0.0/16","Colour":"blue","Backend":{"Type":"vxlan","VNI":2000}}`,
			subnetLen: 24, min: "198.19.1.0", max: "198.19.255.0",
			backend: "vxlan",
		},
		{
			name:      "backend without a type",
			json:      `{"Network":"198.19.0.0/16","Backend":{"VNI":2000}}`,
			subnetLen: 24, min: "198.19.1.0", max: "198.19.255.0",
			backend: "",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := ParseConfig([]byte(tt.json))
			if err != nil {
				t.Fatalf("ParseConfig: %v", err)
			}
			if c.SubnetLen != tt.subnetLen {
				t.Errorf("SubnetLen = %d, want %d", c.SubnetLen, tt.subnetLen)
			}
			if got := c.SubnetMin.String(); got != tt.min {
				t.Errorf("SubnetMin = %s, want %s", got, tt.min)
			}
			if got := c.SubnetMax.String(); got != tt.max {
				t.Errorf("SubnetMax = %s, want %s", got, tt.max)
			}
			if c.BackendType != tt.backend {
				t.Errorf("BackendType = %q, want %q", c.BackendType, tt.backend)
			}
			if !c.EnableIPv4 || c.EnableIPv6 {
				t.Errorf("EnableIPv4, EnableIPv6 = %t, %t; want true, false", c.EnableIPv4, c.EnableIPv6)
			}
		})
	}
}

func TestParseConfigIPv6(t *testing.T) {
	c, err := ParseConfig([]byte(`{"Network":"10.5.0.0/16","EnableIPv6":true,` +
		`"IPv6Network":"fc00:5::/48","Backend":{"Type":"vxlan"}}`))
	if err != nil {
		t.Fatalf("ParseConfig: %v", err)
	}
	if c.IPv6SubnetLen != 64 {
		t.Errorf("IPv6SubnetLen = %d, want 64", c.IPv6SubnetLen)
	}
	if want := netip.MustParseAddr("fc00:5:0:1::"); c.IPv6SubnetMin != want {
		t.Errorf("IPv6SubnetMin = %s, want %s", c.IPv6SubnetMin, want)
	}
	if want := netip.MustParseAddr("fc00:5:0:ffff::"); c.IPv6SubnetMax != want {
		t.Errorf("IPv6SubnetMax = %s, want %s", c.IPv6SubnetMax, want)
	}

	c, err = ParseConfig([]byte(`{"EnableIPv4":false,"EnableIPv6":true,"IPv6Network":"fc00::/120"}`))
	if err != nil {
		t.Fatalf("ParseConfig: %v", err)
	}
	if c.IPv6SubnetLen != 122 || c.Network.IsValid() {
		t.Errorf("IPv6-only: IPv6SubnetLen = %d, Network = %v; want 122 and none",
			c.IPv6SubnetLen, c.Network)
	}
}

func TestParseConfigErrors(t *testing.T) {
	tests := []struct {
		name string
		json string
		want []string // substrings the error must contain
	}{
		{"invalid JSON", `{"Network":`, []string{"not a JSON object"}},
		{"not an object", `[1,2]`, []string{"not a JSON object"}},
		{"null", `null`, []string{"not a JSON object"}},
		{"no network", `{"Backend":{"Type":"vxlan"}}`, []string{"Network is missing"}},
		{"IPv6 CIDR in Network", `{"Network":"fc00::/64"}`,
			[]string{"Network", `"fc00::/64"`, "IPv4 CIDR"}},
		{"garbage Network", `{"Network":"ten.five/16"}`, []string{`"ten.five/16"`}},
		{"Network not a string", `{"Network":5}`, []string{"Network", "got 5"}},
		{"SubnetLen 31", `{"Network":"10.0.0.0/8","SubnetLen":31}`,
			[]string{"SubnetLen 31", "at most 30"}},
		{"SubnetLen too short", `{"Network":"10.0.0.0/16","SubnetLen":17}`,
			[]string{"SubnetLen 17", "four subnets", "at least 18"}},
		{"SubnetLen negative", `{"Network":"10.0.0.0/16","SubnetLen":-4}`,
			[]string{"SubnetLen", "-4"}},
		{"network too small", `{"Network":"10.0.0.0/29"}`, []string{"10.0.0.0/29", "too small"}},
		{"SubnetMin off a boundary", `{"Network":"10.0.0.0/16","SubnetMin":"10.0.1.5"}`,
			[]string{"SubnetMin 10.0.1.5", "/24 boundary", "10.0.1.0"}},
		{"SubnetMax outside", `{"Network":"10.0.0.0/16","SubnetMax":"10.1.0.0"}`,
			[]string{"SubnetMax 10.1.0.0", "outside", "10.0.0.0/16"}},
		{"SubnetMin above SubnetMax",
			`{"Network":"10.0.0.0/16","SubnetMin":"10.0.9.0","SubnetMax":"10.0.2.0"}`,
			[]string{"SubnetMin 10.0.9.0", "above", "10.0.2.0"}},
		{"SubnetMin is IPv6", `{"Network":"10.0.0.0/16","SubnetMin":"fc00::"}`,
			[]string{"SubnetMin", `"fc00::"`, "IPv4 address"}},
		{"no stack", `{"EnableIPv4":false,"Network":"10.0.0.0/16"}`, []string{"both false"}},
		{"IPv6 enabled without network", `{"Network":"10.0.0.0/16","EnableIPv6":true}`,
			[]string{"IPv6Network is missing"}},
		{"IPv6SubnetLen 127",
			`{"Network":"10.0.0.0/16","EnableIPv6":true,"IPv6Network":"fc00::/48","IPv6SubnetLen":127}`,
			[]string{"IPv6SubnetLen 127", "at most 126"}},
		{"Backend not an object", `{"Network":"10.0.0.0/16","Backend":"vxlan"}`,
			[]string{"Backend", `"vxlan"`}},
		{"Backend Type not a string", `{"Network":"10.0.0.0/16","Backend":{"Type":1}}`,
			[]string{"Backend.Type", "got 1"}},
		{"EnableIPv6 not a bool", `{"Network":"10.0.0.0/16","EnableIPv6":"yes"}`,
			[]string{"EnableIPv6", `"yes"`}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := ParseConfig([]byte(tt.json))
			if err == nil {
				t.Fatalf("ParseConfig(%s) succeeded, want an error", tt.json)
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not mention %q", err, w)
				}
			}
		})
	}
}

func FuzzParseConfig(f *testing.F) {
	f.Add([]byte(`{"Network":"10.244.0.0/16","Backend":{"Type":"vxlan","VNI":1}}`))
	f.Add([]byte(`{"Network":"10.0.0.0/8","SubnetLen":20,"SubnetMin":"10.10.0.0","SubnetMax":"10.99.0.0"}`))
	f.Add([]byte(`{"EnableIPv6":true,"IPv6Network":"fc00::/48","IPv6SubnetLen":56,"Network":"10.0.0.0/28"}`))
	f.Add([]byte(`{"EnableIPv4":false,"EnableIPv6":true,"IPv6Network":"fc00::/120"}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		c, err := ParseConfig(data)
		if err != nil {
			return
		}
		for _, fam := range c.families() {
			n := *fam.subnetLen
			if n < fam.network.Bits()+2 || n > fam.maxLen {
				t.Fatalf("accepted SubnetLen %d for %s", n, fam.network)
			}
			for _, a := range []netip.Addr{*fam.subnetMin, *fam.subnetMax} {
				if !fam.network.Contains(a) || !aligned(a, n) {
					t.Fatalf("accepted bound %s for %s/%d", a, fam.network, n)
				}
			}
			if fam.subnetMin.Compare(*fam.subnetMax) > 0 {
				t.Fatalf("accepted SubnetMin %s above SubnetMax %s", *fam.subnetMin, *fam.subnetMax)
			}
		}
	})
}
