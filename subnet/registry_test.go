package subnet

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"go.etcd.io/etcd/api/v3/mvccpb"
)

func TestRegistryKeys(t *testing.T) {
	tests := []struct {
		prefix             string
		config, subnets    string
		wantPrefix, lease4 string
	}{
		{prefix: "", config: "/coreos.com/network/config", subnets: "/coreos.com/network/subnets/"},
		{prefix: "/coreos.com/network/", config: "/coreos.com/network/config",
			subnets: "/coreos.com/network/subnets/"},
		{prefix: "/a//b", config: "/a/b/config", subnets: "/a/b/subnets/"},
	}
	for _, tt := range tests {
		t.Run(tt.prefix, func(t *testing.T) {
			r := NewRegistry(nil, tt.prefix, nil)
			if got := r.ConfigKey(); got != tt.config {
				t.Errorf("ConfigKey = %q, want %q", got, tt.config)
			}
			if got := r.SubnetsPrefix(); got != tt.subnets {
				t.Errorf("SubnetsPrefix = %q, want %q", got, tt.subnets)
			}
		})
	}
}

func TestGetConfig(t *testing.T) {
	srv := startEtcd(t)
	r, _ := newTestRegistry(t, srv.Client)
	ctx := testCtx(t)

	_, err := r.GetConfig(ctx)
	if !errors.Is(err, ErrNoConfig) || !strings.Contains(err.Error(), "/weft-test/config") {
		t.Errorf("GetConfig without a config = %v, want ErrNoConfig naming /weft-test/config", err)
	}

	put(t, srv.Client, "/weft-test/config", `{"Network": "198.19.0.0/33"}`, 0)
	_, err = r.GetConfig(ctx)
	if err == nil || errors.Is(err, ErrNoConfig) ||
		!strings.Contains(err.Error(), "/weft-test/config") ||
		!strings.Contains(err.Error(), "198.19.0.0/33") {
		t.Errorf("GetConfig of an invalid config = %v, want an error naming key and value", err)
	}

	if err := r.PutConfig(ctx, []byte(`{"Network": "nope"}`)); err == nil {
		t.Error("PutConfig accepted an invalid config")
	}
	if v, _, _ := getKV(t, srv.Client, "/weft-test/config"); !strings.Contains(v, "/33") {
		t.Errorf("an invalid PutConfig changed the stored config to %s", v)
	}
	if err := r.PutConfig(ctx, []byte(testNet)); err != nil {
		t.Fatalf("PutConfig: %v", err)
	}
	cfg, err := r.GetConfig(ctx)
	if err != nil {
		t.Fatalf("GetConfig: %v", err)
	}
	if cfg.Network.String() != "198.19.0.0/16" || cfg.SubnetLen != 24 || cfg.BackendType != "vxlan" {
		t.Errorf("GetConfig = %+v", cfg)
	}
}

func TestWaitConfig(t *testing.T) {
	t.Parallel()
	srv := startEtcd(t)
	r, logs := newTestRegistry(t, srv.Client)
	ctx := testCtx(t)

	type result struct {
		cfg *Config
		err error
	}
	done := make(chan result, 1)
	go func() {
		cfg, err := r.WaitConfig(ctx)
		done <- result{cfg, err}
	}()

	eventually(t, 5*time.Second, "waiting logged", func() bool {
		return logs.Count("waiting for the network config") > 0
	})
	put(t, srv.Client, r.ConfigKey(), `{"Network": "bad"}`, 0)
	time.Sleep(2500 * time.Millisecond) // two more reads of the same bad config
	put(t, srv.Client, r.ConfigKey(), `{"Network": "198.19.0.0/16", "SubnetLen": 40}`, 0)
	eventually(t, 5*time.Second, "second invalid config logged", func() bool {
		return logs.Count("network config is invalid", "SubnetLen") > 0
	})
	put(t, srv.Client, r.ConfigKey(), testNet, 0)

	var res result
	select {
	case res = <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("WaitConfig did not return after a valid config was written")
	}
	if res.err != nil || res.cfg.Network.String() != "198.19.0.0/16" {
		t.Fatalf("WaitConfig = %+v, %v", res.cfg, res.err)
	}
	if n := logs.Count("waiting for the network config", "key=/weft-test/config"); n != 1 {
		t.Errorf("the wait was logged %d times, want once naming the key", n)
	}
	if n := logs.Count("network config is invalid"); n != 2 {
		t.Errorf("invalid configs were logged %d times, want once for each of 2 errors", n)
	}
}

func TestWaitConfigUnreachable(t *testing.T) {
	t.Parallel()
	c, err := NewEtcdClient(EtcdOptions{Endpoints: []string{"http://127.0.0.1:1"}})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	r, logs := newTestRegistry(t, c)
	r.rpcTimeout = 200 * time.Millisecond

	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	cfg, err := r.WaitConfig(ctx)
	if !errors.Is(err, context.DeadlineExceeded) || cfg != nil {
		t.Fatalf("WaitConfig = %v, %v; want the context's error", cfg, err)
	}
	if n := logs.Count("cannot read the network config", "http://127.0.0.1:1"); n != 1 {
		t.Errorf("unreachable etcd was logged %d times, want once naming the endpoint", n)
	}
}

func TestLeasesListing(t *testing.T) {
	srv := startEtcd(t)
	r, logs := newTestRegistry(t, srv.Client)
	c := srv.Client
	ctx := testCtx(t)

	vx := `{"PublicIP":"198.18.0.1","PublicIPv6":null,"BackendType":"vxlan"}`
	put(t, c, "/weft-test/subnets/198.19.1.0-24", vx, 600)
	put(t, c, "/weft-test/subnets/198.19.2.0-24", `{"PublicIP":"198.18.0.2"}`, 0)
	put(t, c, "/weft-test/subnets/198.19.3.0-24&fc00:19:0:3::-64",
		`{"PublicIP":"198.18.0.3","PublicIPv6":"fc00::3"}`, 600)
	put(t, c, "/weft-test/subnets/garbage", vx, 0)
	put(t, c, "/weft-test/subnets/198.19.4.0-24", `{"PublicIP":""}`, 0)
	put(t, c, "/weft-test/subnets/nested/198.19.5.0-24", vx, 0)
	put(t, c, "/weft-test/subnets-other/198.19.6.0-24", vx, 0)
	put(t, c, "/weft-test/subnetsX", vx, 0)

	for range 3 {
		leases, err := r.Leases(ctx)
		if err != nil {
			t.Fatalf("Leases: %v", err)
		}
		var keys []string
		for _, l := range leases {
			keys = append(keys, l.Key())
		}
		want := "198.19.1.0-24 198.19.2.0-24 198.19.3.0-24&fc00:19:0:3::-64"
		if got := strings.Join(keys, " "); got != want {
			t.Fatalf("Leases keys = %q, want %q", got, want)
		}
		if ttl := time.Until(leases[0].Expiration); ttl < 590*time.Second || ttl > 601*time.Second {
			t.Errorf("lease expires in %v, want about 600s", ttl)
		}
		if !leases[1].Reserved() || !leases[1].Expiration.IsZero() {
			t.Errorf("reservation = %+v, want EtcdLease 0 and no expiration", leases[1])
		}
		if leases[2].Attrs.PublicIPv6.String() != "fc00::3" || leases[0].ModRevision == 0 {
			t.Errorf("dual-stack lease = %+v", leases[2])
		}
	}
	bad := []string{"subnets/garbage", "subnets/198.19.4.0-24", "subnets/nested/198.19.5.0-24"}
	for _, key := range bad {
		if n := logs.Count("not a valid lease", key); n != 1 {
			t.Errorf("bad key %s was logged %d times over 3 listings, want once", key, n)
		}
	}
	if n := logs.Count("subnets-other"); n != 0 {
		t.Errorf("a key outside subnets/ was looked at: %s", logs)
	}

	// A new bad value at the same key is a new warning; a fixed key is forgotten.
	put(t, c, "/weft-test/subnets/198.19.4.0-24", `{"PublicIP":"nope"}`, 0)
	if _, err := r.Leases(ctx); err != nil {
		t.Fatal(err)
	}
	if n := logs.Count("not a valid lease", "subnets/198.19.4.0-24"); n != 2 {
		t.Errorf("a changed bad value was logged %d times in all, want 2", n)
	}
}

// BenchmarkLeases1000 lists a network of 1,000 leases, each on its own etcd lease, with
// the TTL lookups that listing needs, and acquires a lease among them.
func BenchmarkLeases1000(b *testing.B) {
	srv := startEtcd(b)
	r := NewRegistry(srv.Client, "/weft-bench", nil)
	cfg := mustConfig(b, `{"Network": "198.16.0.0/12"}`)
	ctx := testCtx(b)
	for i := range 1000 {
		key := fmt.Sprintf("%s198.%d.%d.0-24", r.SubnetsPrefix(), 16+i/256, i%256)
		put(b, srv.Client, key, leaseValue(fmt.Sprintf("198.18.%d.%d", i/250, i%250+1)), 3600)
	}

	b.Run("list", func(b *testing.B) {
		for b.Loop() {
			leases, err := r.Leases(ctx)
			if err != nil || len(leases) != 1000 {
				b.Fatalf("Leases = %d leases, %v", len(leases), err)
			}
		}
		b.ReportMetric(float64(b.Elapsed().Microseconds())/float64(b.N)/1000, "µs/lease")
	})
	b.Run("acquire", func(b *testing.B) {
		i := 0
		for b.Loop() {
			i++
			attrs := attrsFor(fmt.Sprintf("198.19.%d.%d", i/250, i%250+1))
			if _, err := r.Acquire(ctx, AcquireRequest{Config: cfg, Attrs: attrs}); err != nil {
				b.Fatal(err)
			}
		}
	})
}

// FuzzDecodeKV feeds arbitrary keys and values from etcd to the registry's decoder: it
// must not panic, and any key it accepts must be one the registry is willing to write
// back (a reuse or renewal rewrites the key as found).
func FuzzDecodeKV(f *testing.F) {
	f.Add("/coreos.com/network/subnets/10.5.52.0-24", []byte(`{"PublicIP":"10.0.0.1"}`))
	f.Add("/coreos.com/network/subnets/10.5.52.0-024&fc00:0:0:1::-64",
		[]byte(`{"PublicIP":"10.0.0.1","PublicIPv6":"fc00::1"}`))
	f.Add("/coreos.com/network/subnets/a/10.5.52.0-24", []byte(`{}`))
	f.Add("/coreos.com/network/subnets-x/10.5.52.0-24", []byte(`null`))
	r := NewRegistry(nil, "", nil)
	f.Fuzz(func(t *testing.T, key string, value []byte) {
		l, err := r.decode(&mvccpb.KeyValue{Key: []byte(key), Value: value, Lease: 7})
		if err != nil {
			return
		}
		if err := r.checkKey(key); err != nil {
			t.Fatalf("decoded %q but would not write it back: %v", key, err)
		}
		if l.EtcdLease != 7 || !l.Subnet.Addr().Is4() {
			t.Fatalf("decoded %q as %+v", key, l)
		}
		if _, err := json.Marshal(l.Attrs); err != nil {
			t.Fatalf("decoded value of %q does not encode again: %v", key, err)
		}
	})
}
