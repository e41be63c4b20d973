package e2e

import (
	"net/netip"
	"slices"
	"strings"
	"testing"
)

func TestOutsideNames(t *testing.T) {
	if got := OutNS("weft"); got != "weft-out" {
		t.Errorf("OutNS = %q", got)
	}
	if got := OutsideAddr(); got != netip.MustParsePrefix("198.18.0.200/24") {
		t.Errorf("OutsideAddr = %s", got)
	}
	if got, err := ParseTarget("weft", "out"); err != nil || got != "weft-out" {
		t.Errorf("ParseTarget(out) = %q, %v, want weft-out", got, err)
	}

	tests := []struct {
		lab, ns string
		want    bool
	}{
		{lab: "weft", ns: "weft-out", want: true},
		{lab: "weft", ns: "weft-out2", want: false},
		{lab: "weft", ns: "weft-h1-out", want: false},
		{lab: "weft", ns: "weft-out-h1", want: false},
		{lab: "weft-out", ns: "weft-out-h1", want: true},
	}
	for _, tt := range tests {
		t.Run(tt.lab+"/"+tt.ns, func(t *testing.T) {
			if got := OwnsNamespace(tt.lab, tt.ns); got != tt.want {
				t.Errorf("OwnsNamespace(%q, %q) = %t, want %t", tt.lab, tt.ns, got, tt.want)
			}
		})
	}
}

func TestHostOptionsErrors(t *testing.T) {
	tests := []struct {
		name string
		opts Options
		want string // a part of the error
	}{
		{
			name: "flags for a missing host",
			opts: Options{Hosts: 2, HostFlags: map[int][]string{3: {"-ip-masq"}}},
			want: "daemon flags for h3",
		},
		{
			name: "flags for host 0",
			opts: Options{Hosts: 2, HostFlags: map[int][]string{0: {"-ip-masq"}}},
			want: "daemon flags for h0",
		},
		{
			name: "outside takes host 200's address",
			opts: Options{Hosts: 200, Outside: true},
			want: "hosts 200: the outside namespace takes 198.18.0.200",
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

	o, err := Options{Hosts: 199, Outside: true, Weftctl: "/bin/weftctl"}.withDefaults()
	if err != nil || !o.Outside {
		t.Errorf("199 hosts with the outside namespace: %v", err)
	}
}

func TestHostFlagsAppended(t *testing.T) {
	o, err := Options{
		Hosts:     2,
		Weftctl:   "/bin/weftctl",
		HostFlags: map[int][]string{2: {"-ip-masq", "-iptables-resync", "1"}},
	}.withDefaults()
	if err != nil {
		t.Fatal(err)
	}
	lab := []string{"-etcd-endpoints", EtcdEndpoint(), "-bridge", "cni0"}
	tests := []struct {
		host int
		want []string
	}{
		{host: 1, want: []string{o.Weftd, "-etcd-endpoints", EtcdEndpoint(), "-bridge", "cni0"}},
		{host: 2, want: []string{o.Weftd, "-etcd-endpoints", EtcdEndpoint(), "-bridge", "cni0",
			"-ip-masq", "-iptables-resync", "1"}},
	}
	for _, tt := range tests {
		if got := o.commandLine(tt.host, lab); !slices.Equal(got, tt.want) {
			t.Errorf("h%d: command line %q, want %q", tt.host, got, tt.want)
		}
	}
}
