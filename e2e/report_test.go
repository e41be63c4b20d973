package e2e

import (
	"errors"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/weftnet/weft/internal/netlab"
	"github.com/weftnet/weft/subnet"
)

func TestStatusText(t *testing.T) {
	lease, err := subnet.DecodeLease("198.19.7.0-24", []byte(`{"PublicIP":"198.18.0.1",`+
		`"PublicIPv6":null,"BackendType":"vxlan","BackendData":{"VNI":2000,`+
		`"VtepMAC":"6a:1b:2c:3d:4e:5f"}}`))
	if err != nil {
		t.Fatal(err)
	}
	ls := leaseStatus(lease)
	if ls.VtepMAC != "6a:1b:2c:3d:4e:5f" || ls.Subnet != netip.MustParsePrefix("198.19.7.0/24") {
		t.Fatalf("leaseStatus = %+v", ls)
	}
	s := &Status{
		Name:     "weft",
		Backend:  "vxlan",
		VNI:      2000,
		Network:  DefaultNetwork,
		Endpoint: EtcdEndpoint(),
		Etcd:     ProcStatus{PID: 10, Running: true},
		Hosts: []HostStatus{
			{Name: "h1", NS: "weft-h1", Underlay: UnderlayAddr(1), Lease: &ls,
				Daemon: ProcStatus{PID: 11, Running: true},
				Pods: []PodState{{Index: 1, NS: "weft-h1-p1",
					Addr:    netip.MustParsePrefix("198.19.7.11/24"),
					Gateway: netip.MustParseAddr("198.19.7.1")}}},
			{Name: "h2", NS: "weft-h2", Underlay: UnderlayAddr(2),
				Daemon: ProcStatus{PID: 12}},
		},
		Outside: &OutsideStatus{NS: OutNS("weft"), Underlay: OutsideAddr()},
	}
	var b strings.Builder
	if err := s.WriteText(&b); err != nil {
		t.Fatal(err)
	}
	out := b.String()
	for _, want := range []string{
		"lab weft: vxlan VNI 2000, network 198.19.0.0/16, etcd http://198.18.0.254:2379 pid 10",
		"h1    weft-h1    198.18.0.1/24  198.19.7.0/24  198.18.0.1  6a:1b:2c:3d:4e:5f  pid 11",
		"h2    weft-h2    198.18.0.2/24  -              -           -                  " +
			"pid 12 (gone)",
		"weft-h1-p1  h1    198.19.7.11/24  198.19.7.1",
		"outside: namespace weft-out, 198.18.0.200/24 on the underlay",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("status text lacks %q:\n%s", want, out)
		}
	}
}

func TestMatrixText(t *testing.T) {
	eps := []Endpoint{
		{Name: "h1-p1", Addr: netip.MustParseAddr("198.19.7.11")},
		{Name: "h2-p1", Addr: netip.MustParseAddr("198.19.8.11")},
	}
	ms := func(f float64) time.Duration { return time.Duration(f * float64(time.Millisecond)) }
	m := &Matrix{Endpoints: eps, Results: [][]netlab.PingResult{
		{{}, {Sent: 3, Received: 3, RTTs: []time.Duration{ms(0.2), ms(0.1), ms(0.3)}}},
		{{Sent: 3, Received: 1, RTTs: []time.Duration{ms(0.5), 0, 0}, Lost: []int{1, 2},
			Err: errors.New("no echo reply")}, {}},
	}}
	failed := m.Failed()
	if len(failed) != 1 || !strings.HasPrefix(failed[0],
		"h2-p1 -> h1-p1 (198.19.7.11): 1 of 3 answered: no echo reply") {
		t.Errorf("Failed() = %q", failed)
	}
	var b strings.Builder
	if err := m.WriteText(&b); err != nil {
		t.Fatal(err)
	}
	out := b.String()
	for _, want := range []string{"median round-trip time of 3", "0.200 ms", "LOST 2/3",
		"1 of 2 pairs failed"} {
		if !strings.Contains(out, want) {
			t.Errorf("matrix text lacks %q:\n%s", want, out)
		}
	}
}
