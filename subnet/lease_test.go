package subnet

import (
	"encoding/json"
	"net/netip"
	"strings"
	"testing"
)

// The golden values are the bytes flanneld v0.28.9 writes for each backend (COMPAT 1.3).
func TestLeaseAttrsGoldenJSON(t *testing.T) {
	tests := []struct {
		name  string
		attrs LeaseAttrs
		want  string
	}{
		{
			name: "vxlan",
			attrs: LeaseAttrs{
				PublicIP:    netip.MustParseAddr("192.168.64.3"),
				BackendType: "vxlan",
				BackendData: json.RawMessage(`{"VNI": 1, "VtepMAC": "c6:d2:32:6f:8f:44"}`),
			},
			want: `{"PublicIP":"192.168.64.3","PublicIPv6":null,"BackendType":"vxlan",` +
				`"BackendData":{"VNI":1,"VtepMAC":"c6:d2:32:6f:8f:44"}}`,
		},
		{
			name: "vxlan dual stack",
			attrs: LeaseAttrs{
				PublicIP:      netip.MustParseAddr("192.168.64.3"),
				PublicIPv6:    netip.MustParseAddr("FC00:0:0:0::3"),
				BackendType:   "vxlan",
				BackendData:   json.RawMessage(`{"VNI":1,"VtepMAC":"c6:d2:32:6f:8f:44"}`),
				BackendV6Data: json.RawMessage(`{"VNI":1,"VtepMAC":"c6:d2:32:6f:8f:45"}`),
			},
			want: `{"PublicIP":"192.168.64.3","PublicIPv6":"fc00::3","BackendType":"vxlan",` +
				`"BackendData":{"VNI":1,"VtepMAC":"c6:d2:32:6f:8f:44"},` +
				`"BackendV6Data":{"VNI":1,"VtepMAC":"c6:d2:32:6f:8f:45"}}`,
		},
		{
			name:  "host-gw",
			attrs: LeaseAttrs{PublicIP: netip.MustParseAddr("10.0.0.5"), BackendType: "host-gw"},
			want:  `{"PublicIP":"10.0.0.5","PublicIPv6":null,"BackendType":"host-gw"}`,
		},
		{
			name:  "udp and alloc carry no type",
			attrs: LeaseAttrs{PublicIP: netip.MustParseAddr("10.0.0.5")},
			want:  `{"PublicIP":"10.0.0.5","PublicIPv6":null}`,
		},
		{
			name:  "zero value",
			attrs: LeaseAttrs{},
			want:  `{"PublicIP":"0.0.0.0","PublicIPv6":null}`,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := json.Marshal(tt.attrs)
			if err != nil {
				t.Fatalf("Marshal: %v", err)
			}
			if string(got) != tt.want {
				t.Errorf("Marshal =\n%s\nwant\n%s", got, tt.want)
			}
			var back LeaseAttrs
			if err := json.Unmarshal(got, &back); err != nil {
				t.Fatalf("Unmarshal of own output: %v", err)
			}
			want := tt.attrs
			if !want.PublicIP.IsValid() {
				want.PublicIP = netip.IPv4Unspecified()
			}
			if !EqualAttrs(back, want) {
				t.Errorf("round trip = %+v, want %+v", back, want)
			}
		})
	}
}

func TestLeaseAttrsDecode(t *testing.T) {
	good := []struct {
		name string
		json string
		want LeaseAttrs
	}{
		{"field names in any case", `{"publicip":"10.0.0.1","backendtype":"vxlan","backenddata":{"VNI":1}}`,
			LeaseAttrs{PublicIP: netip.MustParseAddr("10.0.0.1"), BackendType: "vxlan",
				BackendData: json.RawMessage(`{"VNI":1}`)}},
		{"missing PublicIP is 0.0.0.0", `{"BackendType":"host-gw"}`,
			LeaseAttrs{PublicIP: netip.IPv4Unspecified(), BackendType: "host-gw"}},
		{"unknown fields ignored", `{"PublicIP":"10.0.0.1","Extra":[1,2]}`,
			LeaseAttrs{PublicIP: netip.MustParseAddr("10.0.0.1")}},
		{"null BackendData is absent", `{"PublicIP":"10.0.0.1","BackendData":null}`,
			LeaseAttrs{PublicIP: netip.MustParseAddr("10.0.0.1")}},
		{"IPv6", `{"PublicIP":"10.0.0.1","PublicIPv6":"fc00::1"}`,
			LeaseAttrs{PublicIP: netip.MustParseAddr("10.0.0.1"), PublicIPv6: netip.MustParseAddr("fc00::1")}},
	}
	for _, tt := range good {
		t.Run(tt.name, func(t *testing.T) {
			var got LeaseAttrs
			if err := json.Unmarshal([]byte(tt.json), &got); err != nil {
				t.Fatalf("Unmarshal: %v", err)
			}
			if !EqualAttrs(got, tt.want) {
				t.Errorf("got %+v, want %+v", got, tt.want)
			}
		})
	}

	bad := []struct{ name, json, want string }{
		{"empty PublicIP", `{"PublicIP":""}`, "PublicIP"},
		{"null PublicIP", `{"PublicIP":null}`, "PublicIP"},
		{"IPv6 PublicIP", `{"PublicIP":"fc00::1"}`, "not an IPv4"},
		{"empty PublicIPv6", `{"PublicIP":"10.0.0.1","PublicIPv6":""}`, "PublicIPv6"},
		{"IPv4 PublicIPv6", `{"PublicIP":"10.0.0.1","PublicIPv6":"10.0.0.2"}`, "not an IPv6"},
		{"not an object", `"10.0.0.1"`, "decoding lease value"},
		{"null", `null`, "null"},
		{"BackendType not a string", `{"PublicIP":"10.0.0.1","BackendType":7}`, "decoding lease value"},
	}
	for _, tt := range bad {
		t.Run(tt.name, func(t *testing.T) {
			var got LeaseAttrs
			err := json.Unmarshal([]byte(tt.json), &got)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("Unmarshal(%s) error = %v, want one mentioning %q", tt.json, err, tt.want)
			}
		})
	}
}

func TestKeys(t *testing.T) {
	good := []struct {
		key    string
		v4, v6 string
	}{
		{"10.5.52.0-24", "10.5.52.0/24", ""},
		{"10.5.52.0-24&fc00:0:0:1::-64", "10.5.52.0/24", "fc00:0:0:1::/64"},
		{"0.0.0.0-0", "0.0.0.0/0", ""},
		{"10.5.52.0-31", "10.5.52.0/31", ""},
	}
	for _, tt := range good {
		t.Run(tt.key, func(t *testing.T) {
			v4, v6, err := ParseKey(tt.key)
			if err != nil {
				t.Fatalf("ParseKey: %v", err)
			}
			if v4.String() != tt.v4 {
				t.Errorf("v4 = %s, want %s", v4, tt.v4)
			}
			if tt.v6 != "" && v6.String() != tt.v6 || tt.v6 == "" && v6.IsValid() {
				t.Errorf("v6 = %v, want %q", v6, tt.v6)
			}
			if got := MakeKey(v4, v6); got != tt.key {
				t.Errorf("MakeKey = %q, want %q", got, tt.key)
			}
		})
	}

	bad := []string{
		"", "10.5.52.0", "10.5.52.0-", "10.5.52.0-32", "10.5.52.0-+4", "10.5.52.0-x",
		"10.5.52.1-24", "fc00::-64", "10.5.52.0-24&FC00::-64", "10.5.52.0-24&fc00::-128",
		"10.5.52.0-24&10.0.0.0-8", "10.5.52.0-24&fc00::1-64", "1.2.3-8", "config",
	}
	for _, key := range bad {
		if v4, v6, err := ParseKey(key); err == nil {
			t.Errorf("ParseKey(%q) = %v, %v; want an error", key, v4, v6)
		}
	}
}

func TestDecodeLease(t *testing.T) {
	l, err := DecodeLease("10.5.52.0-24",
		[]byte(`{"PublicIP":"192.168.64.3","PublicIPv6":null,"BackendType":"vxlan","BackendData":{"VNI":1,"VtepMAC":"c6:d2:32:6f:8f:44"}}`))
	if err != nil {
		t.Fatalf("DecodeLease: %v", err)
	}
	if l.Subnet != netip.MustParsePrefix("10.5.52.0/24") || l.Attrs.BackendType != "vxlan" {
		t.Errorf("DecodeLease = %+v", l)
	}
	if _, err := DecodeLease("10.5.52.0-24", []byte(`{"PublicIP":""}`)); err == nil ||
		!strings.Contains(err.Error(), "10.5.52.0-24") {
		t.Errorf("DecodeLease of a bad value: error %v does not name the key", err)
	}
}

func FuzzParseKey(f *testing.F) {
	for _, s := range []string{"10.5.52.0-24", "10.5.52.0-24&fc00:0:0:1::-64", "1.2.3.4-31", "x-1&::-0"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, key string) {
		v4, v6, err := ParseKey(key)
		if err != nil {
			return
		}
		if !v4.Addr().Is4() || v4.Masked() != v4 || v4.Bits() > 31 {
			t.Fatalf("ParseKey(%q) accepted IPv4 part %s", key, v4)
		}
		if v6.IsValid() && (!v6.Addr().Is6() || v6.Masked() != v6 || v6.Bits() > 127) {
			t.Fatalf("ParseKey(%q) accepted IPv6 part %s", key, v6)
		}
		// Whatever parses must come back as a key that parses to the same subnets.
		b4, b6, err := ParseKey(MakeKey(v4, v6))
		if err != nil || b4 != v4 || b6 != v6 {
			t.Fatalf("MakeKey(ParseKey(%q)) does not round-trip: %v %v %v", key, b4, b6, err)
		}
	})
}

func FuzzLeaseAttrs(f *testing.F) {
	f.Add([]byte(`{"PublicIP":"192.168.64.3","PublicIPv6":null,"BackendType":"vxlan","BackendData":{"VNI":1,"VtepMAC":"c6:d2:32:6f:8f:44"}}`))
	f.Add([]byte(`{"PublicIP":"10.0.0.5","PublicIPv6":"fc00::5"}`))
	f.Add([]byte(`{"publicip":"10.0.0.5","backenddata":[1]}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		var a LeaseAttrs
		if err := json.Unmarshal(data, &a); err != nil {
			return
		}
		if !a.PublicIP.Is4() {
			t.Fatalf("decoded PublicIP %v is not IPv4", a.PublicIP)
		}
		out, err := json.Marshal(a)
		if err != nil {
			t.Fatalf("Marshal of decoded %+v: %v", a, err)
		}
		var back LeaseAttrs
		if err := json.Unmarshal(out, &back); err != nil || !EqualAttrs(a, back) {
			t.Fatalf("round trip of %s: %+v, %v", out, back, err)
		}
	})
}
