package vxlan

import (
	"encoding/json"
	"net/netip"
	"strings"
	"testing"

	"github.com/weftnet/weft/backend/kernel"
)

func TestParseOptions(t *testing.T) {
	tests := []struct {
		name    string
		raw     string
		want    Options
		wantErr string
	}{
		{name: "absent", raw: "", want: Options{VNI: 1}},
		{name: "null", raw: "null", want: Options{VNI: 1}},
		{name: "type only", raw: `{"Type":"vxlan"}`, want: Options{VNI: 1}},
		{
			name: "every option",
			raw: `{"Type":"vxlan","VNI":2000,"Port":4789,"GBP":true,"Learning":true,` +
				`"MTU":9000,"DirectRouting":true}`,
			want: Options{VNI: 2000, Port: 4789, GBP: true, Learning: true, MTU: 9000,
				DirectRouting: true},
		},
		{
			name: "names in any case, unknown fields ignored",
			raw:  `{"type":"VXLAN","vni":7,"directrouting":true,"MacPrefix":"0E-2A"}`,
			want: Options{VNI: 7, DirectRouting: true},
		},
		{name: "explicit VNI 0", raw: `{"VNI":0}`, want: Options{VNI: 0}},
		{name: "VNI too large", raw: `{"VNI":16777216}`,
			wantErr: "VNI 16777216 is outside 0 to 16777215"},
		{name: "negative VNI", raw: `{"VNI":-1}`, wantErr: "VNI -1 is outside"},
		{name: "port too large", raw: `{"Port":65536}`, wantErr: "Port 65536 is outside"},
		{name: "negative MTU", raw: `{"MTU":-5}`, wantErr: "MTU -5 is negative"},
		{name: "VNI as a string", raw: `{"VNI":"1"}`,
			wantErr: `decoding vxlan backend options {"VNI":"1"}`},
		{name: "not an object", raw: `[1]`, wantErr: "decoding vxlan backend options [1]"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := ParseOptions(json.RawMessage(tt.raw))
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("ParseOptions(%s) error %v, want one containing %q", tt.raw, err,
						tt.wantErr)
				}
				return
			}
			if err != nil || got != tt.want {
				t.Errorf("ParseOptions(%s) = %+v, %v; want %+v", tt.raw, got, err, tt.want)
			}
		})
	}
}

func TestDeviceMTU(t *testing.T) {
	tests := []struct {
		name    string
		opts    Options
		ext     int
		want    int
		wantErr bool
	}{
		{name: "from the external interface", ext: 1500, want: 1450},
		{name: "from the option", opts: Options{MTU: 9000}, ext: 1500, want: 8950},
		{name: "too small", ext: 100, wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := tt.opts.DeviceMTU(tt.ext)
			if (err != nil) != tt.wantErr || got != tt.want {
				t.Errorf("DeviceMTU(%d) = %d, %v; want %d, error %v", tt.ext, got, err, tt.want,
					tt.wantErr)
			}
		})
	}
}

func TestBackendDataMarshal(t *testing.T) {
	mac, _ := kernel.ParseMAC("c6:d2:32:6f:8f:44")
	got := string(BackendData{VNI: 1, VtepMAC: mac}.Marshal())
	const want = `{"VNI":1,"VtepMAC":"c6:d2:32:6f:8f:44"}`
	if got != want {
		t.Errorf("Marshal = %s, want %s", got, want)
	}
}

func TestParseBackendData(t *testing.T) {
	tests := []struct {
		name    string
		raw     string
		want    string // VtepMAC
		vni     int
		wantErr string
	}{
		{name: "flanneld's form", raw: `{"VNI":1,"VtepMAC":"c6:d2:32:6f:8f:44"}`,
			want: "c6:d2:32:6f:8f:44", vni: 1},
		{name: "any case, any MAC form", raw: `{"vni":2000,"vtepmac":"C6-D2-32-6F-8F-44","x":1}`,
			want: "c6:d2:32:6f:8f:44", vni: 2000},
		{name: "no VNI", raw: `{"VtepMAC":"02:00:00:00:00:01"}`, want: "02:00:00:00:00:01"},
		{name: "empty", raw: ``, wantErr: "missing"},
		{name: "no MAC", raw: `{"VNI":1}`, wantErr: "has no VtepMAC"},
		{name: "MAC not a string", raw: `{"VtepMAC":12}`, wantErr: "decoding "},
		{name: "bad MAC", raw: `{"VtepMAC":"nope"}`, wantErr: `VtepMAC: parsing MAC "nope"`},
		{name: "long MAC", raw: `{"VtepMAC":"00:00:00:00:fe:80:00:00"}`, wantErr: "8 bytes, want 6"},
		{name: "zero MAC", raw: `{"VtepMAC":"00:00:00:00:00:00"}`, wantErr: "not a unicast address"},
		{name: "multicast MAC", raw: `{"VtepMAC":"01:00:5e:00:00:01"}`,
			wantErr: "not a unicast address"},
		{name: "negative VNI", raw: `{"VNI":-1,"VtepMAC":"02:00:00:00:00:01"}`,
			wantErr: "decoding "},
		{name: "not an object", raw: `"c6:d2:32:6f:8f:44"`, wantErr: "decoding "},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := ParseBackendData(json.RawMessage(tt.raw))
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("error %v, want one containing %q", err, tt.wantErr)
				}
				return
			}
			if err != nil || got.VtepMAC.String() != tt.want || got.VNI != tt.vni {
				t.Errorf("= %+v, %v; want VtepMAC %s VNI %d", got, err, tt.want, tt.vni)
			}
		})
	}
}

func FuzzParseBackendData(f *testing.F) {
	for _, s := range []string{
		`{"VNI":1,"VtepMAC":"c6:d2:32:6f:8f:44"}`,
		`{"vtepmac":"0242.c612.0001"}`,
		`{"VNI":1}`,
		`null`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, raw []byte) {
		d, err := ParseBackendData(raw)
		if err != nil {
			return
		}
		if !d.VtepMAC.IsUnicast() {
			t.Fatalf("accepted VtepMAC %s", d.VtepMAC)
		}
		again, err := ParseBackendData(d.Marshal())
		if err != nil || again != d {
			t.Errorf("%s parses as %+v, which round-trips to %+v, %v", raw, d, again, err)
		}
	})
}

func FuzzParseOptions(f *testing.F) {
	for _, s := range []string{
		`{"Type":"vxlan","VNI":2000,"Port":4789,"DirectRouting":true}`,
		`{"vni":0,"mtu":1400}`,
		``,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, raw []byte) {
		o, err := ParseOptions(raw)
		if err != nil {
			return
		}
		if o.VNI < 0 || o.VNI > maxVNI || o.Port < 0 || o.Port > 65535 || o.MTU < 0 {
			t.Errorf("%s accepted as %+v", raw, o)
		}
	})
}

func TestIncompatibility(t *testing.T) {
	spec := deviceSpec{
		Name:      "flannel.1",
		VNI:       1,
		MTU:       1450,
		Local:     netip.MustParseAddr("198.18.0.1"),
		VtepIndex: 2,
	}
	good := deviceState{
		Kind:      "vxlan",
		VNI:       1,
		Port:      8472,
		MTU:       1450,
		Local:     netip.MustParseAddr("198.18.0.1"),
		VtepIndex: 2,
	}
	tests := []struct {
		name   string
		spec   func(*deviceSpec)
		change func(*deviceState)
		want   string
	}{
		{name: "identical"},
		{name: "another MTU is fixed in place", change: func(d *deviceState) { d.MTU = 1400 }},
		{name: "no local address", change: func(d *deviceState) { d.Local = netip.Addr{} }},
		{name: "no underlay link", change: func(d *deviceState) { d.VtepIndex = 0 }},
		{name: "explicit default port", spec: func(s *deviceSpec) { s.Port = 8472 }},
		{name: "not vxlan", change: func(d *deviceState) { d.Kind = "bridge" },
			want: "it is a bridge device"},
		{name: "VNI", change: func(d *deviceState) { d.VNI = 2 }, want: "VNI 2, want 1"},
		{name: "underlay", change: func(d *deviceState) { d.VtepIndex = 3 },
			want: "underlay link index 3, want 2"},
		{name: "local", change: func(d *deviceState) { d.Local = netip.MustParseAddr("198.18.0.9") },
			want: "local address 198.18.0.9, want 198.18.0.1"},
		{name: "group", change: func(d *deviceState) { d.Group = netip.MustParseAddr("239.1.1.1") },
			want: "multicast group 239.1.1.1, want none"},
		{name: "l2miss", change: func(d *deviceState) { d.L2miss = true }, want: "l2miss on, want off"},
		{name: "port", change: func(d *deviceState) { d.Port = 4789 },
			want: "UDP port 4789, want 8472"},
		{name: "configured port", spec: func(s *deviceSpec) { s.Port = 4789 },
			want: "UDP port 8472, want 4789"},
		{name: "gbp", spec: func(s *deviceSpec) { s.GBP = true }, want: "gbp false, want true"},
		{name: "learning", change: func(d *deviceState) { d.Learning = true },
			want: "learning true, want false"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s, d := spec, good
			if tt.spec != nil {
				tt.spec(&s)
			}
			if tt.change != nil {
				tt.change(&d)
			}
			if got := s.incompatibility(d); got != tt.want {
				t.Errorf("incompatibility = %q, want %q", got, tt.want)
			}
		})
	}
}

func TestRandomMAC(t *testing.T) {
	for _, b := range [][6]byte{{0xff, 1, 2, 3, 4, 5}, {0, 0, 0, 0, 0, 0}, {0x01, 9, 9, 9, 9, 9}} {
		m := randomMACFrom(b)
		if m[0]&1 != 0 || m[0]&2 == 0 || [5]byte(m[1:]) != [5]byte(b[1:]) {
			t.Errorf("randomMACFrom(% x) = %s: want unicast, locally administered", b, m)
		}
	}
}

func TestPeerEntries(t *testing.T) {
	mac, _ := kernel.ParseMAC("02:00:00:00:00:0a")
	e := peerEntries(5, peersPeer("198.19.2.0/24", "198.18.0.2"), mac)
	scope := kernel.Scope{Network: netip.MustParsePrefix("198.19.0.0/16"),
		Neigh: kernel.Link{Index: 5, Name: "flannel.1"}}
	scope.FDB, scope.Routes = scope.Neigh, []kernel.Link{scope.Neigh}
	var got []string
	for _, op := range kernel.Diff(scope, map[string]kernel.Entries{"p": e}, kernel.Entries{}) {
		got = append(got, op.Command(scope))
	}
	want := []string{
		"ip neigh replace 198.19.2.0 lladdr 02:00:00:00:00:0a dev flannel.1 nud permanent",
		"bridge fdb replace 02:00:00:00:00:0a dev flannel.1 dst 198.18.0.2 self permanent",
		"ip route replace 198.19.2.0/24 via 198.19.2.0 dev flannel.1 onlink",
	}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("entries:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
}
