package subnet

import (
	"net/netip"
	"strings"
	"testing"

	clientv3 "go.etcd.io/etcd/client/v3"
)

func TestReserve(t *testing.T) {
	srv := startEtcd(t)
	c := srv.Client
	r, _ := newTestRegistry(t, c)
	ctx := testCtx(t)
	p := r.SubnetsPrefix()
	put(t, c, p+"198.19.1.0-24", leaseValue("198.18.0.1"), 600)
	put(t, c, p+"198.19.2.0-24", leaseValue("198.18.0.2"), 600)
	put(t, c, p+"198.19.9.0-24", `{"PublicIP":""}`, 600)

	tests := []struct {
		name    string
		v4, v6  string
		ip      string
		wantErr string
	}{
		{name: "free subnet", v4: "198.19.5.0/24", ip: "198.18.0.5"},
		{name: "pin a held lease", v4: "198.19.1.0/24", ip: "198.18.0.1"},
		{name: "held by another host", v4: "198.19.2.0/24", ip: "198.18.0.7",
			wantErr: "held by 198.18.0.2"},
		{name: "overlapping", v4: "198.19.0.0/23", ip: "198.18.0.7",
			wantErr: "overlaps lease /weft-test/subnets/198.19.1.0-24"},
		{name: "bad value at the key", v4: "198.19.9.0/24", ip: "198.18.0.9",
			wantErr: "not a valid lease"},
		{name: "host bits", v4: "198.19.6.1/24", ip: "198.18.0.7", wantErr: "host bits"},
		{name: "a /32", v4: "198.19.6.1/32", ip: "198.18.0.7", wantErr: "at most /31"},
		{name: "ipv6 without a public ipv6", v4: "198.19.6.0/24", v6: "fc00:19:0:6::/64",
			ip: "198.18.0.7", wantErr: "PublicIPv6"},
		{name: "no public ip", v4: "198.19.6.0/24", wantErr: "PublicIP"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ps := prefixes(tt.v4, tt.v6)
			if tt.v4 == "198.19.6.1/24" {
				ps[0] = netip.PrefixFrom(netip.MustParseAddr("198.19.6.1"), 24)
			}
			var attrs LeaseAttrs
			if tt.ip != "" {
				attrs = attrsFor(tt.ip)
			}
			before, _ := c.Get(ctx, p, clientv3.WithPrefix())
			l, err := r.Reserve(ctx, ps[0], ps[1], attrs)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("Reserve error = %v, want one containing %q", err, tt.wantErr)
				}
				after, _ := c.Get(ctx, p, clientv3.WithPrefix())
				if after.Header.Revision != before.Header.Revision {
					t.Errorf("a rejected Reserve wrote to etcd")
				}
				return
			}
			if err != nil {
				t.Fatalf("Reserve: %v", err)
			}
			v, id, found := getKV(t, c, p+l.Key())
			if !found || id != 0 || !strings.Contains(v, tt.ip) || !l.Reserved() {
				t.Errorf("%s = %q with etcd lease %d, want a reservation for %s",
					l.Key(), v, id, tt.ip)
			}
		})
	}

	// The reserved host gets its reservation back, and it stays one.
	cfg := mustConfig(t, testNet)
	l, err := r.Acquire(ctx, AcquireRequest{Config: cfg, Attrs: attrsFor("198.18.0.5")})
	if err != nil || l.Key() != "198.19.5.0-24" || !l.Reserved() {
		t.Fatalf("Acquire by the reserved host = %v, %v", l, err)
	}

	if err := r.DeleteLease(ctx, prefixes("198.19.5.0/24")[0], netip.Prefix{}); err != nil {
		t.Fatal(err)
	}
	if _, _, found := getKV(t, c, p+"198.19.5.0-24"); found {
		t.Error("DeleteLease left the key")
	}
	if err := r.DeleteLease(ctx, prefixes("198.19.5.0/24")[0], netip.Prefix{}); err != nil {
		t.Errorf("deleting a deleted lease: %v", err)
	}
	if err := r.DeleteLease(ctx, netip.Prefix{}, netip.Prefix{}); err == nil {
		t.Error("DeleteLease of an invalid subnet succeeded")
	}
}
