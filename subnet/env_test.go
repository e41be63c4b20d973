package subnet

import (
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestEnvMarshal(t *testing.T) {
	tests := []struct {
		name string
		env  Env
		want string
	}{
		{
			name: "vxlan, IPv4",
			env: Env{Network: netip.MustParsePrefix("10.5.0.0/16"),
				Subnet: netip.MustParsePrefix("10.5.72.0/24"), MTU: 1450},
			want: "FLANNEL_NETWORK=10.5.0.0/16\nFLANNEL_SUBNET=10.5.72.1/24\n" +
				"FLANNEL_MTU=1450\nFLANNEL_IPMASQ=false\n",
		},
		{
			name: "dual stack with masquerade",
			env: Env{Network: netip.MustParsePrefix("10.5.0.0/16"),
				Subnet:      netip.MustParsePrefix("10.5.72.0/24"),
				IPv6Network: netip.MustParsePrefix("2001:cafe:42::/48"),
				IPv6Subnet:  netip.MustParsePrefix("2001:cafe:42::/64"), MTU: 1472, IPMasq: true},
			want: "FLANNEL_NETWORK=10.5.0.0/16\nFLANNEL_SUBNET=10.5.72.1/24\n" +
				"FLANNEL_IPV6_NETWORK=2001:cafe:42::/48\nFLANNEL_IPV6_SUBNET=2001:cafe:42::1/64\n" +
				"FLANNEL_MTU=1472\nFLANNEL_IPMASQ=true\n",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := string(tt.env.Marshal()); got != tt.want {
				t.Errorf("Marshal =\n%s\nwant\n%s", got, tt.want)
			}
			back, err := ParseEnv([]byte(tt.want))
			if err != nil {
				t.Fatalf("ParseEnv: %v", err)
			}
			if back != tt.env {
				t.Errorf("ParseEnv = %+v, want %+v", back, tt.env)
			}
		})
	}
}

func TestWriteAndReadEnvFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "run", "flannel", "subnet.env")
	env := Env{Network: netip.MustParsePrefix("198.19.0.0/16"),
		Subnet: netip.MustParsePrefix("198.19.7.0/24"), MTU: 1450}
	if err := WriteEnvFile(path, env); err != nil {
		t.Fatalf("WriteEnvFile: %v", err)
	}
	st, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if st.Mode().Perm() != 0o644 {
		t.Errorf("mode = %v, want 0644", st.Mode().Perm())
	}
	entries, _ := os.ReadDir(filepath.Dir(path))
	if len(entries) != 1 {
		t.Errorf("directory holds %d entries, want only subnet.env (no temporary files)", len(entries))
	}
	got, err := ReadEnvFile(path)
	if err != nil || got != env {
		t.Errorf("ReadEnvFile = %+v, %v; want %+v", got, err, env)
	}

	missing, err := ReadEnvFile(filepath.Join(t.TempDir(), "none.env"))
	if err != nil || missing != (Env{}) {
		t.Errorf("ReadEnvFile of a missing file = %+v, %v; want empty and no error", missing, err)
	}

	if err := WriteEnvFile(filepath.Join(path, "below-a-file"), env); err == nil {
		t.Error("WriteEnvFile below a regular file succeeded")
	}
}

func TestParseEnvLenient(t *testing.T) {
	got, err := ParseEnv([]byte("# written by hand\nexport FLANNEL_NETWORK=\"10.5.0.0/16\"\n\n" +
		"FLANNEL_SUBNET='10.5.72.1/24'\nFLANNEL_IPV6_SUBNET=fc00::1/64,fc01::1/64\nFLANNEL_MTU=1450\n"))
	if err != nil {
		t.Fatalf("ParseEnv: %v", err)
	}
	want := Env{Network: netip.MustParsePrefix("10.5.0.0/16"),
		Subnet: netip.MustParsePrefix("10.5.72.0/24"), MTU: 1450}
	if got != want {
		t.Errorf("ParseEnv = %+v, want %+v (a list of two subnets is ignored)", got, want)
	}

	got, err = ParseEnv([]byte("FLANNEL_SUBNET=banana\nFLANNEL_NETWORK=10.5.0.0/16\nnonsense\n"))
	if err == nil || !strings.Contains(err.Error(), "banana") || !strings.Contains(err.Error(), "line 3") {
		t.Errorf("ParseEnv error = %v, want it to name the bad value and line", err)
	}
	if got.Network != netip.MustParsePrefix("10.5.0.0/16") {
		t.Errorf("ParseEnv dropped the good line: %+v", got)
	}
}

func FuzzParseEnv(f *testing.F) {
	f.Add([]byte("FLANNEL_NETWORK=10.5.0.0/16\nFLANNEL_SUBNET=10.5.72.1/24\nFLANNEL_MTU=1450\nFLANNEL_IPMASQ=false\n"))
	f.Add([]byte("export FLANNEL_IPV6_SUBNET='fc00::1/64'\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		e, _ := ParseEnv(data)
		for _, p := range []netip.Prefix{e.Network, e.Subnet} {
			if p.IsValid() && (!p.Addr().Is4() || p.Masked() != p) {
				t.Fatalf("ParseEnv kept IPv4 value %s", p)
			}
		}
		for _, p := range []netip.Prefix{e.IPv6Network, e.IPv6Subnet} {
			if p.IsValid() && (p.Addr().Is4() || p.Masked() != p) {
				t.Fatalf("ParseEnv kept IPv6 value %s", p)
			}
		}
	})
}
