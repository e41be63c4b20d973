package subnet

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"strings"
	"sync"
	"testing"

	clientv3 "go.etcd.io/etcd/client/v3"
)

func TestAcquireConcurrent(t *testing.T) {
	srv := startEtcd(t)
	cfg := mustConfig(t, `{"Network": "198.19.0.0/16", "SubnetMin": "198.19.10.0",
		"SubnetMax": "198.19.60.0"}`)
	const hosts = 20

	leases := make([]*Lease, hosts)
	errs := make([]error, hosts)
	var wg sync.WaitGroup
	start := make(chan struct{})
	for i := range hosts {
		c := srv.NewClient(t)
		r := NewRegistry(c, "/weft-test", nil)
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			leases[i], errs[i] = r.Acquire(context.Background(), AcquireRequest{
				Config: cfg,
				Attrs:  attrsFor(fmt.Sprintf("198.18.0.%d", i+1)),
			})
		}()
	}
	close(start)
	wg.Wait()

	r, _ := newTestRegistry(t, srv.Client)
	for i, l := range leases {
		if errs[i] != nil {
			t.Fatalf("host %d: Acquire: %v", i, errs[i])
		}
		if !FitsConfig(cfg, l.Subnet, l.IPv6Subnet) {
			t.Errorf("host %d got %s, outside [SubnetMin, SubnetMax]", i, l.Subnet)
		}
		for j := range i {
			if Overlaps(l.Subnet, leases[j].Subnet) {
				t.Errorf("hosts %d and %d both got %s", j, i, l.Subnet)
			}
		}
		key := r.LeaseKey(l.Subnet, l.IPv6Subnet)
		if ttl := ttlOf(t, srv.Client, key); ttl < 86390 || ttl > 86400 {
			t.Errorf("%s has TTL %d, want about 86400", key, ttl)
		}
		v, _, _ := getKV(t, srv.Client, key)
		if want := fmt.Sprintf(`"PublicIP":"198.18.0.%d"`, i+1); !strings.Contains(v, want) {
			t.Errorf("%s = %s, want %s", key, v, want)
		}
	}
	all, err := r.Leases(testCtx(t))
	if err != nil || len(all) != hosts {
		t.Errorf("etcd holds %d leases (%v), want %d", len(all), err, hosts)
	}
}

func TestAcquireWritesFlanneldBytes(t *testing.T) {
	srv := startEtcd(t)
	r, _ := newTestRegistry(t, srv.Client)
	cfg := mustConfig(t, testNet)
	attrs := LeaseAttrs{
		PublicIP:    netip.MustParseAddr("192.168.64.3"),
		BackendType: "vxlan",
		BackendData: []byte(`{ "VNI": 1, "VtepMAC": "c6:d2:32:6f:8f:44" }`),
	}
	l, err := r.Acquire(testCtx(t), AcquireRequest{Config: cfg, Attrs: attrs})
	if err != nil {
		t.Fatal(err)
	}
	got, _, _ := getKV(t, srv.Client, r.LeaseKey(l.Subnet, l.IPv6Subnet))
	want := `{"PublicIP":"192.168.64.3","PublicIPv6":null,"BackendType":"vxlan",` +
		`"BackendData":{"VNI":1,"VtepMAC":"c6:d2:32:6f:8f:44"}}`
	if got != want {
		t.Errorf("stored value\n%s\nwant\n%s", got, want)
	}
	if l.EtcdLease == 0 || l.Expiration.IsZero() || l.ModRevision == 0 {
		t.Errorf("returned lease %+v lacks its etcd lease, expiration or revision", l)
	}
}

func TestAcquireReuse(t *testing.T) {
	const (
		me    = "198.18.0.7"
		other = "198.18.0.8"
	)
	val := func(ip string) string { return fmt.Sprintf(`{"PublicIP":%q}`, ip) }
	type kv struct {
		key, value string
		ttl        int64 // 0: a reservation
	}
	tests := []struct {
		name        string
		config      string
		existing    []kv
		prev        string // FLANNEL_SUBNET of subnet.env
		want        string // key acquired; "" means any new key
		wantGone    []string
		wantKept    []string
		reservation bool
	}{
		{
			name:     "first lease of the public IP in key order",
			existing: []kv{{"198.19.9.0-24", val(me), 600}, {"198.19.30.0-24", val(me), 600}},
			prev:     "198.19.40.0/24",
			want:     "198.19.30.0-24",
			wantKept: []string{"198.19.9.0-24"},
		},
		{
			name:        "a reservation stays a reservation",
			existing:    []kv{{"198.19.5.0-24", val(me), 0}},
			want:        "198.19.5.0-24",
			reservation: true,
		},
		{
			name:     "an incompatible lease is deleted",
			config:   `{"Network": "198.19.0.0/16", "SubnetLen": 25}`,
			existing: []kv{{"198.19.5.0-24", val(me), 600}},
			wantGone: []string{"198.19.5.0-24"},
		},
		{
			name:   "a lease that fits after one that does not",
			config: `{"Network": "198.19.0.0/16", "SubnetMin": "198.19.10.0"}`,
			existing: []kv{{"198.19.3.0-24", val(me), 600}, {"198.19.4.0-24", val(me), 0},
				{"198.19.50.0-24", val(me), 600}},
			want:     "198.19.50.0-24",
			wantGone: []string{"198.19.3.0-24"},
			wantKept: []string{"198.19.4.0-24"},
		},
		{
			name:     "an ipv6 part is incompatible without ipv6",
			existing: []kv{{"198.19.5.0-24&fc00:19:0:5::-64", val(me), 600}},
			prev:     "198.19.5.0/24",
			want:     "198.19.5.0-24",
			wantGone: []string{"198.19.5.0-24&fc00:19:0:5::-64"},
		},
		{
			name:     "an incompatible reservation is kept",
			config:   `{"Network": "198.19.0.0/16", "SubnetMin": "198.19.10.0"}`,
			existing: []kv{{"198.19.5.0-24", val(me), 0}},
			wantKept: []string{"198.19.5.0-24"},
		},
		{
			name:     "the subnet.env subnet when free",
			existing: []kv{{"198.19.9.0-24", val(other), 600}},
			prev:     "198.19.77.0/24",
			want:     "198.19.77.0-24",
			wantKept: []string{"198.19.9.0-24"},
		},
		{
			name:     "not the subnet.env subnet when held",
			existing: []kv{{"198.19.77.0-24", val(other), 600}},
			prev:     "198.19.77.0/24",
			wantKept: []string{"198.19.77.0-24"},
		},
		{
			name:     "not the subnet.env subnet when reserved by a shorter prefix",
			existing: []kv{{"198.19.76.0-23", val(other), 0}},
			prev:     "198.19.77.0/24",
			wantKept: []string{"198.19.76.0-23"},
		},
		{
			name:   "not the subnet.env subnet outside the network",
			config: `{"Network": "198.19.0.0/16", "SubnetMax": "198.19.50.0"}`,
			prev:   "198.19.77.0/24",
		},
	}
	srv := startEtcd(t)
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := NewRegistry(srv.Client, fmt.Sprintf("/weft-test-%d", i), nil)
			for _, e := range tt.existing {
				put(t, srv.Client, r.SubnetsPrefix()+e.key, e.value, e.ttl)
			}
			conf := tt.config
			if conf == "" {
				conf = testNet
			}
			cfg := mustConfig(t, conf)
			req := AcquireRequest{Config: cfg, Attrs: attrsFor(me)}
			if tt.prev != "" {
				req.Subnet = netip.MustParsePrefix(tt.prev)
			}

			l, err := r.Acquire(testCtx(t), req)
			if err != nil {
				t.Fatalf("Acquire: %v", err)
			}
			if tt.want != "" && l.Key() != tt.want {
				t.Errorf("acquired %s, want %s", l.Key(), tt.want)
			}
			if tt.prev != "" && tt.want == "" && l.Subnet.String() == tt.prev {
				t.Errorf("acquired the subnet.env subnet %s, which must not be reused", tt.prev)
			}
			if !FitsConfig(cfg, l.Subnet, l.IPv6Subnet) {
				t.Errorf("acquired %s, which does not fit the config", l.Key())
			}
			for _, e := range tt.existing {
				if e.key == l.Key() {
					continue
				}
				v4, v6, _ := ParseKey(e.key)
				if _, _, found := getKV(t, srv.Client, r.SubnetsPrefix()+e.key); found &&
					(Overlaps(v4, l.Subnet) || Overlaps(v6, l.IPv6Subnet)) {
					t.Errorf("acquired %s overlaps %s", l.Key(), e.key)
				}
			}

			value, id, found := getKV(t, srv.Client, r.SubnetsPrefix()+l.Key())
			if !found || !strings.Contains(value, `"VtepMAC"`) {
				t.Errorf("%s = %q, want the new attributes", l.Key(), value)
			}
			if got := id == 0; got != tt.reservation || l.Reserved() != tt.reservation {
				t.Errorf("%s: etcd lease %d, Reserved %v; want reservation %v",
					l.Key(), id, l.Reserved(), tt.reservation)
			}
			for _, k := range tt.wantGone {
				if _, _, found := getKV(t, srv.Client, r.SubnetsPrefix()+k); found {
					t.Errorf("%s still exists, want it deleted", k)
				}
			}
			for _, k := range tt.wantKept {
				if _, _, found := getKV(t, srv.Client, r.SubnetsPrefix()+k); !found {
					t.Errorf("%s was deleted, want it kept", k)
				}
			}
		})
	}
}

func TestAcquireOutOfSubnets(t *testing.T) {
	srv := startEtcd(t)
	r, _ := newTestRegistry(t, srv.Client)
	cfg := mustConfig(t, `{"Network": "198.19.0.0/28", "SubnetLen": 30}`)
	ctx := testCtx(t)

	var got []string
	for i := range 3 {
		attrs := attrsFor(fmt.Sprintf("198.18.0.%d", i+1))
		l, err := r.Acquire(ctx, AcquireRequest{Config: cfg, Attrs: attrs})
		if err != nil {
			t.Fatalf("Acquire %d: %v", i, err)
		}
		got = append(got, l.Subnet.String())
	}
	_, err := r.Acquire(ctx, AcquireRequest{Config: cfg, Attrs: attrsFor("198.18.0.99")})
	if !errors.Is(err, ErrOutOfSubnets) {
		t.Fatalf("fourth Acquire = %v, want ErrOutOfSubnets (have %v)", err, got)
	}
	want := "no free /30 left in 198.19.0.0/28: 3 leases held"
	if !strings.Contains(err.Error(), want) {
		t.Errorf("error %q does not say %q", err, want)
	}

	// The first host still gets its lease back: it is reused by public IP.
	_, err = r.Acquire(ctx, AcquireRequest{Config: cfg, Attrs: attrsFor("198.18.0.1")})
	if err != nil {
		t.Errorf("reusing a lease in a full network: %v", err)
	}
}

func TestAcquireIPv6AmongIPv4OnlyLeases(t *testing.T) {
	srv := startEtcd(t)
	r, _ := newTestRegistry(t, srv.Client)
	for i := 1; i <= 5; i++ {
		put(t, srv.Client, fmt.Sprintf("%s198.19.%d.0-24", r.SubnetsPrefix(), i),
			fmt.Sprintf(`{"PublicIP":"198.18.0.%d"}`, i), 600)
	}
	put(t, srv.Client, r.SubnetsPrefix()+"198.19.6.0-24&fc00:19:0:6::-64",
		`{"PublicIP":"198.18.0.6","PublicIPv6":"fc00::6"}`, 600)
	cfg := mustConfig(t, `{"Network": "198.19.0.0/16", "SubnetMax": "198.19.7.0",
		"EnableIPv6": true, "IPv6Network": "fc00:19::/48", "IPv6SubnetMax": "fc00:19:0:7::"}`)

	attrs := attrsFor("198.18.0.9")
	attrs.PublicIPv6 = netip.MustParseAddr("fc00::9")
	l, err := r.Acquire(testCtx(t), AcquireRequest{Config: cfg, Attrs: attrs})
	if err != nil {
		t.Fatalf("Acquire: %v", err)
	}
	if l.Subnet.String() != "198.19.7.0/24" {
		t.Errorf("IPv4 subnet %s, want the only free one, 198.19.7.0/24", l.Subnet)
	}
	if !l.IPv6Subnet.IsValid() || Overlaps(l.IPv6Subnet, netip.MustParsePrefix("fc00:19:0:6::/64")) ||
		!FitsConfig(cfg, l.Subnet, l.IPv6Subnet) {
		t.Errorf("IPv6 subnet %s, want a free one in the IPv6 range", l.IPv6Subnet)
	}
	v, _, found := getKV(t, srv.Client, r.LeaseKey(l.Subnet, l.IPv6Subnet))
	if !found || !strings.Contains(v, `"PublicIPv6":"fc00::9"`) {
		t.Errorf("stored dual-stack value %q", v)
	}
}

func TestAcquireLostRace(t *testing.T) {
	srv := startEtcd(t)
	r, _ := newTestRegistry(t, srv.Client)
	cfg := mustConfig(t, testNet)
	prev := netip.MustParsePrefix("198.19.77.0/24")

	// Another host creates the preferred key between our listing and our write.
	thief := `{"PublicIP":"198.18.0.66"}`
	raced := 0
	r.beforeCreate = func(key string) {
		if raced == 0 {
			put(t, srv.Client, key, thief, 600)
		}
		raced++
	}
	req := AcquireRequest{Config: cfg, Attrs: attrsFor("198.18.0.1"), Subnet: prev}
	l, err := r.Acquire(testCtx(t), req)
	if err != nil {
		t.Fatalf("Acquire after a lost race: %v", err)
	}
	if raced != 2 || l.Subnet == prev {
		t.Errorf("created %s after %d attempts, want another subnet at the second", l.Subnet, raced)
	}
	if v, _, _ := getKV(t, srv.Client, r.LeaseKey(prev, netip.Prefix{})); v != thief {
		t.Errorf("the winner's lease became %q", v)
	}
}

func TestAcquireYieldsToEarlierOverlap(t *testing.T) {
	srv := startEtcd(t)
	r, _ := newTestRegistry(t, srv.Client)
	cfg := mustConfig(t, `{"Network": "198.19.0.0/16", "EnableIPv6": true,
		"IPv6Network": "fc00:19::/48"}`)
	attrs := attrsFor("198.18.0.1")
	attrs.PublicIPv6 = netip.MustParseAddr("fc00::1")

	// Another host takes the same IPv4 subnet with another IPv6 subnet, under another key,
	// between our listing and our write: both creations succeed, and ours must yield.
	var first, theirs string
	r.beforeCreate = func(key string) {
		if first != "" {
			return
		}
		first = key
		v4, _, _ := ParseKey(strings.TrimPrefix(key, r.SubnetsPrefix()))
		theirs = r.LeaseKey(v4, netip.MustParsePrefix("fc00:19:0:ffff::/64"))
		put(t, srv.Client, theirs, `{"PublicIP":"198.18.0.2","PublicIPv6":"fc00::2"}`, 600)
	}
	l, err := r.Acquire(testCtx(t), AcquireRequest{Config: cfg, Attrs: attrs})
	if err != nil {
		t.Fatalf("Acquire: %v", err)
	}
	if _, _, found := getKV(t, srv.Client, first); found {
		t.Errorf("the overlapping key %s is still there", first)
	}
	if _, _, found := getKV(t, srv.Client, theirs); !found {
		t.Errorf("the earlier key %s was deleted", theirs)
	}
	v4, _, _ := ParseKey(strings.TrimPrefix(theirs, r.SubnetsPrefix()))
	if l.Subnet == v4 {
		t.Errorf("acquired %s, which overlaps the earlier key %s", l.Key(), theirs)
	}
}

func TestAcquireRejectsBadInput(t *testing.T) {
	srv := startEtcd(t)
	r, _ := newTestRegistry(t, srv.Client)
	v4 := mustConfig(t, testNet)
	dual := mustConfig(t, `{"Network": "198.19.0.0/16", "EnableIPv6": true,
		"IPv6Network": "fc00:19::/48"}`)
	v6only := mustConfig(t, `{"EnableIPv4": false, "EnableIPv6": true,
		"IPv6Network": "fc00:19::/48"}`)
	pub := attrsFor("198.18.0.1")
	tests := []struct {
		name string
		req  AcquireRequest
		want string
	}{
		{name: "no config", req: AcquireRequest{Attrs: pub}, want: "no network config"},
		{name: "ipv6 only", req: AcquireRequest{Config: v6only, Attrs: pub},
			want: "EnableIPv4"},
		{name: "no public ip", req: AcquireRequest{Config: v4}, want: "PublicIP"},
		{name: "dual without public ipv6", req: AcquireRequest{Config: dual, Attrs: pub},
			want: "PublicIPv6"},
		{name: "backend data", req: AcquireRequest{Config: v4, Attrs: LeaseAttrs{
			PublicIP:    netip.MustParseAddr("198.18.0.1"),
			BackendData: []byte(`"x"`),
		}}, want: "BackendData"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := r.Acquire(testCtx(t), tt.req)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("Acquire error = %v, want one mentioning %q", err, tt.want)
			}
		})
	}
	resp, err := srv.Client.Get(testCtx(t), r.SubnetsPrefix(), clientv3.WithPrefix())
	if err != nil || len(resp.Kvs) != 0 {
		t.Errorf("rejected requests wrote %d keys (%v)", len(resp.Kvs), err)
	}
}
