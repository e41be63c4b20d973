package bridge

import (
	"bytes"
	"flag"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/weftnet/weft/subnet"
)

var update = flag.Bool("update", false, "rewrite the golden files under testdata/")

// golden compares got with testdata/name, or rewrites the file under -update.
func golden(t *testing.T, name string, got []byte) {
	t.Helper()
	path := filepath.Join("testdata", name)
	if *update {
		if err := os.WriteFile(path, got, 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("reading golden file: %v (run with -update to create it)", err)
	}
	if !bytes.Equal(got, want) {
		t.Errorf("%s differs:\n--- got ---\n%s\n--- want ---\n%s", path, got, want)
	}
}

var testHyperd = HyperdConfig{
	Bridge:          "cni0",
	BridgeIP:        netip.MustParsePrefix("198.19.5.1/24"),
	DisableIptables: true,
}

func TestUpdateHyperdConfigGolden(t *testing.T) {
	tests := []struct {
		name string
		cfg  HyperdConfig
	}{
		{name: "full", cfg: testHyperd},
		{name: "empty", cfg: testHyperd},
		{name: "sections-only", cfg: testHyperd},
		{name: "crlf-colon", cfg: testHyperd},
		{name: "duplicate", cfg: HyperdConfig{
			Bridge:   "br-w",
			BridgeIP: netip.MustParsePrefix("198.19.7.1/24"),
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			in, err := os.ReadFile(filepath.Join("testdata", "hyperd", tt.name+".in"))
			if err != nil {
				t.Fatal(err)
			}
			got, err := UpdateHyperdConfig(in, tt.cfg)
			if err != nil {
				t.Fatalf("UpdateHyperdConfig: %v", err)
			}
			golden(t, filepath.Join("hyperd", tt.name+".golden"), got)

			again, err := UpdateHyperdConfig(got, tt.cfg)
			if err != nil || !bytes.Equal(again, got) {
				t.Errorf("second update changed the file (err %v):\n%s", err, again)
			}
		})
	}
}

// hyperdValues returns the values hyperd would read, by section and key, the last
// occurrence winning.
func hyperdValues(t *testing.T, data []byte) map[string]map[string]string {
	t.Helper()
	_, lines, err := parseINI(data)
	if err != nil {
		t.Fatalf("parsing %q: %v", data, err)
	}
	v := map[string]map[string]string{}
	for _, l := range lines {
		if l.key == "" {
			continue
		}
		if v[l.section] == nil {
			v[l.section] = map[string]string{}
		}
		v[l.section][l.key] = strings.TrimSpace(l.text[l.valueAt:])
	}
	return v
}

func TestUpdateHyperdConfigKeepsUnknownKeys(t *testing.T) {
	in, err := os.ReadFile(filepath.Join("testdata", "hyperd", "full.in"))
	if err != nil {
		t.Fatal(err)
	}
	out, err := UpdateHyperdConfig(in, testHyperd)
	if err != nil {
		t.Fatal(err)
	}
	before, after := hyperdValues(t, in), hyperdValues(t, out)

	for section, keys := range before {
		for key, value := range keys {
			switch {
			case section == hyperdDefaultSection && key == "Bridge":
				value = "cni0"
			case section == hyperdDefaultSection && key == "BridgeIP":
				value = "198.19.5.1/24"
			}
			if got := after[section][key]; got != value {
				t.Errorf("[%s] %s = %q after the update, want %q", section, key, got, value)
			}
		}
	}
	if got := after[hyperdDefaultSection]["DisableIptables"]; got != "true" {
		t.Errorf("DisableIptables = %q, want true", got)
	}
	for _, comment := range []string{"# the bridge the VMs join", "; an option weftd"} {
		if !bytes.Contains(out, []byte(comment)) {
			t.Errorf("comment %q was dropped", comment)
		}
	}
}

func TestUpdateHyperdConfigLeavesDisableIptables(t *testing.T) {
	in := []byte("DisableIptables=true\n")
	cfg := testHyperd
	cfg.DisableIptables = false
	out, err := UpdateHyperdConfig(in, cfg)
	if err != nil {
		t.Fatal(err)
	}
	if got := hyperdValues(t, out)[hyperdDefaultSection]["DisableIptables"]; got != "true" {
		t.Errorf("DisableIptables = %q, want the operator's true kept", got)
	}
}

func TestUpdateHyperdConfigErrors(t *testing.T) {
	tests := []struct {
		name string
		in   string
		cfg  HyperdConfig
		want string
	}{
		{name: "no separator", in: "Kernel=/k\nthis line is wrong\n", cfg: testHyperd,
			want: "line 2"},
		{name: "empty key", in: "# c\n\n= value\n", cfg: testHyperd, want: "line 3"},
		{name: "nameless section", in: "[ ]\n", cfg: testHyperd, want: "line 1"},
		{name: "unclosed quote", in: "\"Bridge=x\n", cfg: testHyperd, want: "line 1"},
		{name: "long bridge", cfg: HyperdConfig{Bridge: "a-very-long-bridge",
			BridgeIP: testHyperd.BridgeIP}, want: `"a-very-long-bridge"`},
		{name: "no address", cfg: HyperdConfig{Bridge: "cni0"}, want: "BridgeIP"},
		{name: "IPv6 address", cfg: HyperdConfig{Bridge: "cni0",
			BridgeIP: netip.MustParsePrefix("2001:db8::1/64")}, want: "2001:db8::1/64"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := UpdateHyperdConfig([]byte(tt.in), tt.cfg)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("error %v, want one mentioning %s", err, tt.want)
			}
		})
	}
}

func TestWriteHyperdConfig(t *testing.T) {
	path := filepath.Join(t.TempDir(), "hyper", "config")

	changed, err := WriteHyperdConfig(path, testHyperd)
	if err != nil || !changed {
		t.Fatalf("first write: changed %v, err %v; want true, nil", changed, err)
	}
	st, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if st.Mode().Perm() != 0o644 {
		t.Errorf("mode %v, want 0644", st.Mode().Perm())
	}

	changed, err = WriteHyperdConfig(path, testHyperd)
	if err != nil || changed {
		t.Errorf("same content: changed %v, err %v; want false, nil", changed, err)
	}
	st2, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if !os.SameFile(st, st2) {
		t.Error("an unchanged config was replaced")
	}

	cfg := testHyperd
	cfg.BridgeIP = netip.MustParsePrefix("198.19.6.1/24")
	changed, err = WriteHyperdConfig(path, cfg)
	if err != nil || !changed {
		t.Errorf("new lease: changed %v, err %v; want true, nil", changed, err)
	}
}

func TestWriteHyperdConfigBadFileUntouched(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "config")
	bad := []byte("Kernel=/k\n[Log\nnot a key\n")
	if err := os.WriteFile(path, bad, 0o600); err != nil {
		t.Fatal(err)
	}

	_, err := WriteHyperdConfig(path, testHyperd)
	if err == nil || !strings.Contains(err.Error(), path) ||
		!strings.Contains(err.Error(), "line 2") {
		t.Fatalf("error %v, want one naming %s and line 2", err, path)
	}
	got, err := os.ReadFile(path)
	if err != nil || !bytes.Equal(got, bad) {
		t.Errorf("file changed to %q (err %v)", got, err)
	}
	entries, _ := os.ReadDir(dir)
	if len(entries) != 1 {
		t.Errorf("directory holds %d entries, want only the config", len(entries))
	}
}

// FuzzUpdateHyperdConfig feeds arbitrary files to the hyperd config updater: it must not
// panic, and whatever it accepts it must turn into a file that hyperd reads with the
// new values, that a second update leaves alone, and that keeps every other line.
func FuzzUpdateHyperdConfig(f *testing.F) {
	for _, name := range []string{"full", "empty", "sections-only", "crlf-colon", "duplicate"} {
		data, err := os.ReadFile(filepath.Join("testdata", "hyperd", name+".in"))
		if err != nil {
			f.Fatal(err)
		}
		f.Add(data)
	}
	f.Add([]byte("\ufeffBridge=x\n"))
	f.Add([]byte("`Bridge` = y\n\"\"\"BridgeIP\"\"\": z"))

	f.Fuzz(func(t *testing.T, in []byte) {
		out, err := UpdateHyperdConfig(in, testHyperd)
		if err != nil {
			return
		}
		v := hyperdValues(t, out)
		for key, want := range map[string]string{
			"Bridge": "cni0", "BridgeIP": "198.19.5.1/24", "DisableIptables": "true",
		} {
			if got := v[hyperdDefaultSection][key]; got != want {
				t.Errorf("%s = %q, want %q in\n%q", key, got, want, out)
			}
		}
		again, err := UpdateHyperdConfig(out, testHyperd)
		if err != nil || !bytes.Equal(again, out) {
			t.Errorf("second update: %v\n%q\n%q", err, out, again)
		}
		_, inLines, _ := parseINI(in)
		_, outLines, _ := parseINI(out)
		if len(outLines) < len(inLines) {
			t.Errorf("%d lines became %d", len(inLines), len(outLines))
		}
	})
}

func TestRenderDockerOpts(t *testing.T) {
	env := subnet.Env{
		Network: netip.MustParsePrefix("10.1.0.0/16"),
		Subnet:  netip.MustParsePrefix("10.1.74.0/24"),
		MTU:     1472,
	}
	masq := env
	masq.IPMasq = true
	v6only := subnet.Env{
		IPv6Network: netip.MustParsePrefix("2001:db8::/48"),
		IPv6Subnet:  netip.MustParsePrefix("2001:db8:0:5::/64"),
		MTU:         1450,
	}
	tests := []struct {
		name string
		env  subnet.Env
		opts DockerOptions
	}{
		{name: "default", env: env},
		{name: "individual", env: env, opts: DockerOptions{Individual: true}},
		{name: "combined", env: env, opts: DockerOptions{Combined: true}},
		{name: "key", env: env, opts: DockerOptions{Key: "DOCKER_NETWORK_OPTIONS"}},
		{name: "omit-ipmasq", env: env, opts: DockerOptions{OmitIPMasq: true}},
		{name: "ipmasq", env: masq},
		{name: "ipv6-only", env: v6only},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := RenderDockerOpts(tt.env, tt.opts)
			if err != nil {
				t.Fatal(err)
			}
			golden(t, filepath.Join("docker", tt.name+".env"), got)
		})
	}
}

func TestRenderDockerOptsErrors(t *testing.T) {
	env := subnet.Env{Subnet: netip.MustParsePrefix("10.1.74.0/24"), MTU: 1450}
	for _, key := range []string{"1ABC", "DOCKER-OPTS", "A B", "X=Y"} {
		_, err := RenderDockerOpts(env, DockerOptions{Key: key})
		if err == nil || !strings.Contains(err.Error(), key) {
			t.Errorf("key %q: error %v, want one naming the key", key, err)
		}
	}
}

func TestWriteDockerOpts(t *testing.T) {
	path := filepath.Join(t.TempDir(), "run", "flannel", "docker")
	env := subnet.Env{Subnet: netip.MustParsePrefix("10.1.74.0/24"), MTU: 1450, IPMasq: true}
	changed, err := WriteDockerOpts(path, env, DockerOptions{})
	if err != nil || !changed {
		t.Fatalf("changed %v, err %v", changed, err)
	}
	got, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	want := `DOCKER_OPT_BIP="--bip=10.1.74.1/24"
DOCKER_OPT_IPMASQ="--ip-masq=false"
DOCKER_OPT_MTU="--mtu=1450"
DOCKER_OPTS=" --bip=10.1.74.1/24 --ip-masq=false --mtu=1450"
`
	if string(got) != want {
		t.Errorf("got\n%s\nwant\n%s", got, want)
	}
	if changed, err := WriteDockerOpts(path, env, DockerOptions{}); err != nil || changed {
		t.Errorf("rewrite: changed %v, err %v; want false, nil", changed, err)
	}
	_, err = WriteDockerOpts(path, env, DockerOptions{Key: "bad key"})
	if err == nil || !strings.Contains(err.Error(), path) {
		t.Errorf("error %v, want one naming %s", err, path)
	}
}

func TestRenderCNIConflist(t *testing.T) {
	tests := []struct {
		name string
		cfg  CNIConfig
	}{
		{name: "default", cfg: CNIConfig{}},
		{name: "default-paths", cfg: CNIConfig{SubnetFile: subnet.DefaultEnvFile, Bridge: "cni0"}},
		{name: "subnet-file", cfg: CNIConfig{SubnetFile: "/run/weft/subnet.env"}},
		{name: "bridge", cfg: CNIConfig{Bridge: "br-weft"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := RenderCNIConflist(tt.cfg)
			if err != nil {
				t.Fatal(err)
			}
			golden(t, filepath.Join("cni", tt.name+".conflist"), got)
		})
	}
}

func TestRenderCNIConflistErrors(t *testing.T) {
	tests := []struct {
		name string
		cfg  CNIConfig
		want string
	}{
		{name: "relative subnet file", cfg: CNIConfig{SubnetFile: "run/subnet.env"},
			want: `"run/subnet.env"`},
		{name: "bad bridge", cfg: CNIConfig{Bridge: "br/0"}, want: `"br/0"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := RenderCNIConflist(tt.cfg)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("error %v, want one naming %s", err, tt.want)
			}
		})
	}
}

func TestWriteCNIConflist(t *testing.T) {
	path := filepath.Join(t.TempDir(), "net.d", "10-flannel.conflist")
	if changed, err := WriteCNIConflist(path, CNIConfig{}); err != nil || !changed {
		t.Fatalf("changed %v, err %v", changed, err)
	}
	if changed, err := WriteCNIConflist(path, CNIConfig{}); err != nil || changed {
		t.Errorf("rewrite: changed %v, err %v; want false, nil", changed, err)
	}
	_, err := WriteCNIConflist(path, CNIConfig{SubnetFile: "x"})
	if err == nil || !strings.Contains(err.Error(), path) {
		t.Errorf("error %v, want one naming %s", err, path)
	}
}

func TestCheckName(t *testing.T) {
	tests := []struct {
		name string
		ok   bool
	}{
		{name: "cni0", ok: true},
		{name: "docker0", ok: true},
		{name: "fifteen-bytes-x", ok: true},
		{name: "sixteen-bytes-xx"},
		{name: ""},
		{name: "."},
		{name: ".."},
		{name: "br/0"},
		{name: "br:0"},
		{name: "br 0"},
		{name: "br%d"},
		{name: "br\x000"},
		{name: "br\xa0"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := CheckName(tt.name)
			if tt.ok != (err == nil) {
				t.Fatalf("CheckName(%q) = %v, want ok %v", tt.name, err, tt.ok)
			}
			if err != nil && tt.name != "" && !strings.Contains(err.Error(), "bridge name") {
				t.Errorf("error %q does not say what was wrong", err)
			}
		})
	}
}
