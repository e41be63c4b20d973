package e2e

import (
	"net/netip"
	"strings"
	"testing"

	"github.com/weftnet/weft/subnet"
)

func TestOptionsDefaults(t *testing.T) {
	o, err := Options{Weftctl: "/opt/weft/bin/weftctl"}.withDefaults()
	if err != nil {
		t.Fatal(err)
	}
	if o.Name != "weft" || o.Hosts != 3 || o.Pods != 0 || o.Backend != "vxlan" ||
		o.Network != DefaultNetwork || o.EtcdPrefix != "/coreos.com/network" ||
		o.HealthPort != 8081 || o.StateDir != "/run/weft-lab" || o.Log == nil {
		t.Errorf("defaults = %+v", o)
	}
	if o.Weftd != "/opt/weft/bin/weftd" {
		t.Errorf("Weftd = %q, want the weftd next to weftctl", o.Weftd)
	}
	if got := o.daemonArgv(2); len(got) != 1 || got[0] != o.Weftd {
		t.Errorf("daemonArgv(2) = %q, want weftd", got)
	}
}

func TestOptionsErrors(t *testing.T) {
	tests := []struct {
		name string
		opts Options
		want string // a part of the error
	}{
		{name: "bad name", opts: Options{Name: "Weft"}, want: `lab name "Weft"`},
		{name: "long name", opts: Options{Name: strings.Repeat("a", 41)}, want: "lab name"},
		{name: "too many hosts", opts: Options{Hosts: 254}, want: "hosts 254"},
		{name: "negative pods", opts: Options{Pods: -1}, want: "pods -1"},
		{name: "unknown backend", opts: Options{Backend: "wireguard"}, want: `backend "wireguard"`},
		{name: "vni without vxlan", opts: Options{Backend: "host-gw", VNI: 3}, want: "vni 3"},
		{name: "vni too big", opts: Options{VNI: 1 << 24}, want: "vni 16777216"},
		{
			name: "network overlaps underlay",
			opts: Options{Network: netip.MustParsePrefix("198.18.0.0/16")},
			want: "overlaps the lab's underlay",
		},
		{
			name: "network too small",
			opts: Options{Network: netip.MustParsePrefix("10.0.0.0/31")},
			want: "network config",
		},
		{
			name: "no room for pods",
			opts: Options{Pods: 10, SubnetLen: 28, Network: netip.MustParsePrefix("10.0.0.0/16")},
			want: "pods 10",
		},
		{name: "pods of later daemons", opts: Options{Pods: 1, StartLater: true}, want: "pods 1"},
		{name: "relative prefix", opts: Options{EtcdPrefix: "weft"}, want: `etcd prefix "weft"`},
		{
			name: "daemon for a missing host",
			opts: Options{Hosts: 2, HostDaemons: map[int][]string{3: {"flanneld"}}},
			want: "daemon for h3",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tt.opts.Weftctl = "/bin/weftctl"
			_, err := tt.opts.withDefaults()
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("withDefaults() = %v, want an error containing %q", err, tt.want)
			}
		})
	}
}

func TestNetworkConfig(t *testing.T) {
	tests := []struct {
		name    string
		opts    Options
		backend string
		json    string
	}{
		{
			name:    "vxlan with VNI",
			opts:    Options{Backend: "vxlan", VNI: 2000},
			backend: "vxlan",
			json:    `{"Backend":{"Type":"vxlan","VNI":2000},"Network":"198.19.0.0/16"}`,
		},
		{
			name:    "host-gw",
			opts:    Options{Backend: "host-gw"},
			backend: "host-gw",
			json:    `{"Backend":{"Type":"host-gw"},"Network":"198.19.0.0/16"}`,
		},
		{
			name:    "udp with subnet length",
			opts:    Options{Backend: "udp", SubnetLen: 26},
			backend: "udp",
			json:    `{"Backend":{"Type":"udp"},"Network":"198.19.0.0/16","SubnetLen":26}`,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tt.opts.Weftctl = "/bin/weftctl"
			o, err := tt.opts.withDefaults()
			if err != nil {
				t.Fatal(err)
			}
			got := o.networkConfig()
			if string(got) != tt.json {
				t.Errorf("networkConfig() = %s, want %s", got, tt.json)
			}
			cfg, err := subnet.ParseConfig(got)
			if err != nil {
				t.Fatalf("the config does not parse: %v", err)
			}
			if cfg.BackendType != tt.backend || cfg.Network != o.Network {
				t.Errorf("parsed config = %s %s, want %s %s", cfg.BackendType, cfg.Network,
					tt.backend, o.Network)
			}
		})
	}
}

func TestNames(t *testing.T) {
	if got := WanNS("weft"); got != "weft-wan" {
		t.Errorf("WanNS = %q", got)
	}
	if got := HostNS("weft", 3); got != "weft-h3" {
		t.Errorf("HostNS = %q", got)
	}
	if got := PodNS("weft", 3, 12); got != "weft-h3-p12" {
		t.Errorf("PodNS = %q", got)
	}
	if got := UnderlayAddr(7); got != netip.MustParsePrefix("198.18.0.7/24") {
		t.Errorf("UnderlayAddr(7) = %s", got)
	}
	if got := EtcdEndpoint(); got != "http://198.18.0.254:2379" {
		t.Errorf("EtcdEndpoint = %s", got)
	}
	if got := addrAdd(netip.MustParseAddr("198.19.255.250"), 10); got !=
		netip.MustParseAddr("198.20.0.4") {
		t.Errorf("addrAdd carries wrong: %s", got)
	}
}

func TestOwnsNamespace(t *testing.T) {
	tests := []struct {
		lab, ns string
		want    bool
	}{
		{"weft", "weft-wan", true},
		{"weft", "weft-h1", true},
		{"weft", "weft-h253", true},
		{"weft", "weft-h12-p3", true},
		{"weft", "weft-h254", false},
		{"weft", "weft-h0", false},
		{"weft", "weft-h01", false},
		{"weft", "weft-h1-p0", false},
		{"weft", "weft-h1-p", false},
		{"weft", "weft-h1-p1-x", false},
		{"weft", "weft-hx", false},
		{"weft", "weft-wan2", false},
		{"weft", "weft2-h1", false},
		{"weft", "weft", false},
		{"weft", "weft-demo-h1", false},
		{"weft-h1", "weft-h1", false},
		{"weft-h1", "weft-h1-h1", true},
		{"weft", "weft-h1-h1", false},
	}
	for _, tt := range tests {
		t.Run(tt.lab+"/"+tt.ns, func(t *testing.T) {
			if got := OwnsNamespace(tt.lab, tt.ns); got != tt.want {
				t.Errorf("OwnsNamespace(%q, %q) = %t, want %t", tt.lab, tt.ns, got, tt.want)
			}
		})
	}
}

func TestParseTarget(t *testing.T) {
	tests := []struct {
		target, want string
	}{
		{target: "wan", want: "weft-wan"},
		{target: "h2", want: "weft-h2"},
		{target: "h2-p1", want: "weft-h2-p1"},
		{target: "h2-p", want: ""},
		{target: "../etc", want: ""},
		{target: "", want: ""},
	}
	for _, tt := range tests {
		t.Run(tt.target, func(t *testing.T) {
			got, err := ParseTarget("weft", tt.target)
			if tt.want == "" {
				if err == nil {
					t.Errorf("ParseTarget(%q) = %q, want an error", tt.target, got)
				}
				return
			}
			if err != nil || got != tt.want {
				t.Errorf("ParseTarget(%q) = %q, %v, want %q", tt.target, got, err, tt.want)
			}
		})
	}
}
