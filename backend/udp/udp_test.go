package udp

import (
	"fmt"
	"net/netip"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/weftnet/weft/backend"
)

func paramsFor(ip netip.Addr) backend.Params {
	return backend.Params{Ext: backend.ExternalInterface{
		Name: "eth0", Index: 2, MTU: 1500, IfaceAddr: ip, ExtAddr: ip,
	}}
}

func TestNewRejects(t *testing.T) {
	ok := paramsFor(netip.MustParseAddr("198.18.0.1"))
	with := func(f func(p *backend.Params)) backend.Params {
		p := ok
		f(&p)
		return p
	}
	tests := map[string]struct {
		p    backend.Params
		opts Options
		want string
	}{
		"no interface address": {
			p:    with(func(p *backend.Params) { p.Ext.IfaceAddr = netip.Addr{} }),
			want: "no IPv4 address",
		},
		"IPv6 public address": {
			p:    with(func(p *backend.Params) { p.Ext.ExtAddr = netip.MustParseAddr("fc00::1") }),
			want: "fc00::1",
		},
		"unspecified public address": {
			p:    with(func(p *backend.Params) { p.Ext.ExtAddr = netip.IPv4Unspecified() }),
			want: "0.0.0.0",
		},
		"tiny MTU": {
			p:    with(func(p *backend.Params) { p.Ext.MTU = 95 }),
			want: "MTU 95",
		},
		"negative queues": {p: ok, opts: Options{Queues: -1}, want: "-1 TUN queues"},
	}
	for name, tt := range tests {
		t.Run(name, func(t *testing.T) {
			_, err := NewWithOptions(tt.p, tt.opts)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("NewWithOptions: %v, want an error saying %q", err, tt.want)
			}
		})
	}
	if _, err := New(ok); err != nil {
		t.Errorf("New: %v", err)
	}
}

func TestParseConfig(t *testing.T) {
	tests := map[string]struct {
		raw     string
		want    int
		wantErr string
	}{
		"absent":           {raw: "", want: 8285},
		"type only":        {raw: `{"Type":"udp"}`, want: 8285},
		"port":             {raw: `{"Type":"udp","Port":7890}`, want: 7890},
		"lowercase key":    {raw: `{"type":"udp","port":7891}`, want: 7891},
		"unknown ignored":  {raw: `{"Type":"udp","Colour":"blue"}`, want: 8285},
		"port zero":        {raw: `{"Port":0}`, wantErr: "Port 0"},
		"port too big":     {raw: `{"Port":65536}`, wantErr: "Port 65536"},
		"port as a string": {raw: `{"Port":"8285"}`, wantErr: "decoding udp backend config"},
		"not an object":    {raw: `[1]`, wantErr: "decoding udp backend config"},
	}
	for name, tt := range tests {
		t.Run(name, func(t *testing.T) {
			c, err := parseConfig([]byte(tt.raw))
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Errorf("parseConfig: %v, want an error saying %q", err, tt.wantErr)
				}
				return
			}
			if err != nil || c.Port != tt.want {
				t.Errorf("parseConfig = %+v, %v; want Port %d", c, err, tt.want)
			}
		})
	}
}

func TestTunAddr(t *testing.T) {
	if got := tunAddr(netip.MustParsePrefix("10.5.52.0/24")); got.String() != "10.5.52.0/32" {
		t.Errorf("tunAddr = %v, want 10.5.52.0/32", got)
	}
}

func ipKey(s string) uint32 { return addrKey(netip.MustParseAddr(s)) }

func TestTable(t *testing.T) {
	routes := map[netip.Prefix]netip.AddrPort{
		netip.MustParsePrefix("198.19.1.0/24"):  netip.MustParseAddrPort("198.18.0.1:8285"),
		netip.MustParsePrefix("198.19.2.0/24"):  netip.MustParseAddrPort("198.18.0.2:8285"),
		netip.MustParsePrefix("198.19.2.64/26"): netip.MustParseAddrPort("198.18.0.3:8285"),
		netip.MustParsePrefix("198.19.9.9/24"):  netip.MustParseAddrPort("198.18.0.9:8285"), // host bits
		netip.MustParsePrefix("fc00::/64"):      netip.MustParseAddrPort("198.18.0.4:8285"),
		netip.MustParsePrefix("198.19.3.0/24"):  netip.MustParseAddrPort("[fc00::1]:8285"),
	}
	tab := NewTable(routes)

	tests := map[string]struct {
		dst  string
		want string // peer address, "" for none
	}{
		"first":           {dst: "198.19.1.7", want: "198.18.0.1:8285"},
		"network address": {dst: "198.19.2.0", want: "198.18.0.2:8285"},
		"longest match":   {dst: "198.19.2.100", want: "198.18.0.3:8285"},
		"outside nested":  {dst: "198.19.2.200", want: "198.18.0.2:8285"},
		"masked on build": {dst: "198.19.9.1", want: "198.18.0.9:8285"},
		"no lease":        {dst: "198.19.4.1", want: ""},
		"IPv6 peer":       {dst: "198.19.3.1", want: ""},
	}
	for name, tt := range tests {
		t.Run(name, func(t *testing.T) {
			p := tab.Lookup(ipKey(tt.dst))
			got := ""
			if p != nil {
				got = p.Addr.String()
			}
			if got != tt.want {
				t.Errorf("Lookup(%s) = %q, want %q", tt.dst, got, tt.want)
			}
		})
	}

	if tab.Len() != 4 {
		t.Errorf("Len = %d, want 4", tab.Len())
	}
	if !tab.KnownSource(ipKey("198.18.0.3")) || tab.KnownSource(ipKey("198.18.0.4")) ||
		tab.KnownSource(ipKey("198.18.0.7")) {
		t.Errorf("KnownSource wrong")
	}
	empty := NewTable(nil)
	if empty.Lookup(ipKey("198.19.1.1")) != nil || empty.KnownSource(ipKey("198.18.0.1")) {
		t.Errorf("the empty table found something")
	}
	if p := NewTable(map[netip.Prefix]netip.AddrPort{
		netip.MustParsePrefix("0.0.0.0/0"): netip.MustParseAddrPort("198.18.0.1:1"),
	}).Lookup(ipKey("8.8.8.8")); p == nil {
		t.Errorf("a /0 route matched nothing")
	}
}

// TestTableSwap reads the current table while another goroutine keeps swapping in new
// ones: every read sees a whole table (run it with -race).
func TestTableSwap(t *testing.T) {
	var current atomic.Pointer[Table]
	build := func(gen int) *Table {
		routes := map[netip.Prefix]netip.AddrPort{}
		for i := 0; i < 100; i++ {
			pfx := netip.PrefixFrom(netip.AddrFrom4([4]byte{198, 19, byte(i), 0}), 24)
			routes[pfx] = netip.AddrPortFrom(netip.AddrFrom4([4]byte{198, 18, byte(gen), byte(i)}), 8285)
		}
		return NewTable(routes)
	}
	current.Store(build(0))
	done := make(chan struct{})
	go func() {
		defer close(done)
		for gen := 1; gen < 200; gen++ {
			current.Store(build(gen))
		}
	}()
	for {
		select {
		case <-done:
			return
		default:
		}
		tab := current.Load()
		first := tab.Lookup(ipKey("198.19.0.1")).Addr.Addr().As4()
		last := tab.Lookup(ipKey("198.19.99.1")).Addr.Addr().As4()
		if first[2] != last[2] {
			t.Fatalf("one table mixes generations %d and %d", first[2], last[2])
		}
	}
}

func BenchmarkTableLookup(b *testing.B) {
	routes := map[netip.Prefix]netip.AddrPort{}
	for i := 0; i < 1000; i++ {
		pfx := netip.PrefixFrom(netip.AddrFrom4([4]byte{10, byte(i >> 8), byte(i), 0}), 24)
		routes[pfx] = netip.AddrPortFrom(netip.AddrFrom4([4]byte{198, 18, byte(i >> 8), byte(i)}), 8285)
	}
	tab := NewTable(routes)
	dsts := make([]uint32, 8)
	for i := range dsts {
		dsts[i] = ipKey(fmt.Sprintf("10.%d.%d.7", (i*97)>>8, (i*97)&0xff))
	}
	b.ReportAllocs()
	var i int
	for b.Loop() {
		if tab.Lookup(dsts[i&7]) == nil {
			b.Fatal("miss")
		}
		i++
	}
}

func TestICMPLimiter(t *testing.T) {
	var l icmpLimiter
	now := time.Unix(1000, 0)
	allowed := 0
	for i := 0; i < 200; i++ {
		if l.allow(now) {
			allowed++
		}
	}
	if allowed != icmpBurst {
		t.Errorf("%d allowed at once, want the burst of %d", allowed, icmpBurst)
	}
	if !l.allow(now.Add(1500 * time.Microsecond)) {
		t.Errorf("nothing allowed 1.5 ms later")
	}
	if l.allow(now.Add(1500 * time.Microsecond)) {
		t.Errorf("two allowed 1.5 ms later, at 1000 a second")
	}
}

func TestDropReasonNames(t *testing.T) {
	seen := map[string]bool{}
	for r := DropReason(0); r < NumDropReasons; r++ {
		s := r.String()
		if s == "" || s == "unknown" || seen[s] {
			t.Errorf("reason %d has name %q", r, s)
		}
		seen[s] = true
	}
	if NumDropReasons.String() != "unknown" {
		t.Errorf("NumDropReasons has a name")
	}
	var c Counters
	c.drop(DropTTL, 3)
	if c.Drops(DropTTL) != 3 || c.Drops(-1) != 0 {
		t.Errorf("Drops wrong")
	}
}

func TestParseDatapath(t *testing.T) {
	for _, tc := range []struct {
		name string
		want Options
	}{
		{"", Options{}},
		{DatapathOffload, Options{}},
		{DatapathNoTUNOffload, Options{NoTUNOffload: true}},
		{DatapathNoUDPOffload, Options{NoUDPOffload: true}},
		{DatapathNoOffload, Options{NoTUNOffload: true, NoUDPOffload: true}},
		{DatapathOnePacket, Options{Plain: true}},
	} {
		got, err := ParseDatapath(tc.name)
		if err != nil || got != tc.want {
			t.Errorf("ParseDatapath(%q) = %+v, %v; want %+v", tc.name, got, err, tc.want)
		}
	}
	for _, name := range Datapaths() {
		if _, err := ParseDatapath(name); err != nil {
			t.Errorf("listed data path %q does not parse: %v", name, err)
		}
	}
	_, err := ParseDatapath("fast")
	if err == nil || !strings.Contains(err.Error(), `"fast"`) ||
		!strings.Contains(err.Error(), DatapathOnePacket) {
		t.Errorf("ParseDatapath(fast): error %v, want one naming the value and the choices", err)
	}
}
