package subnet

import (
	"net/netip"
	"strings"
	"testing"
)

func testLease(t testing.TB, key, publicIP string) Lease {
	t.Helper()
	v4, v6, err := ParseKey(key)
	if err != nil {
		t.Fatal(err)
	}
	return Lease{Subnet: v4, IPv6Subnet: v6,
		Attrs: LeaseAttrs{PublicIP: netip.MustParseAddr(publicIP)}}
}

// brief renders events as "added:key@publicIP", for compact comparisons.
func brief(evs []Event) string {
	var parts []string
	for _, ev := range evs {
		parts = append(parts,
			ev.Type.String()+":"+ev.Lease.Key()+"@"+ev.Lease.Attrs.PublicIP.String())
	}
	return strings.Join(parts, " ")
}

func TestLeaseView(t *testing.T) {
	const p = "/n/subnets/"
	a := testLease(t, "198.19.1.0-24", "198.18.0.1")
	b := testLease(t, "198.19.2.0-24", "198.18.0.2")
	c := testLease(t, "198.19.3.0-24", "198.18.0.3")
	bMoved := testLease(t, "198.19.2.0-24", "198.18.0.22")
	aRenewed := a
	aRenewed.EtcdLease, aRenewed.ModRevision = 77, 12

	var own netip.Prefix
	v := newLeaseView(func(l *Lease) bool { return l.Subnet == own })
	steps := []struct {
		name string
		do   func() []Event
		want string
	}{
		{
			name: "snapshot",
			do: func() []Event {
				return v.reset(listing{entries: []entry{{key: p + a.Key(), lease: a},
					{key: p + b.Key(), lease: b}}})
			},
			want: "added:198.19.1.0-24@198.18.0.1 added:198.19.2.0-24@198.18.0.2",
		},
		{
			name: "renewal is not delivered",
			do:   func() []Event { return v.put(p+a.Key(), aRenewed) },
		},
		{
			name: "changed value is delivered",
			do:   func() []Event { return v.put(p+b.Key(), bMoved) },
			want: "added:198.19.2.0-24@198.18.0.22",
		},
		{
			name: "delete carries the last value",
			do:   func() []Event { return v.del(p + b.Key()) },
			want: "removed:198.19.2.0-24@198.18.0.22",
		},
		{
			name: "delete of an unknown key is dropped",
			do:   func() []Event { return v.del(p + "198.19.9.0-24") },
		},
		{
			name: "own lease is hidden",
			do: func() []Event {
				own = c.Subnet
				return v.put(p+c.Key(), c)
			},
		},
		{
			name: "own lease changes: old own appears, new own disappears",
			do: func() []Event {
				own = a.Subnet
				return v.refilter()
			},
			want: "removed:198.19.1.0-24@198.18.0.1 added:198.19.3.0-24@198.18.0.3",
		},
		{
			name: "compaction snapshot with a bad value keeps the lease",
			do: func() []Event {
				own = netip.Prefix{}
				return v.reset(listing{
					entries: []entry{{key: p + a.Key(), lease: a}},
					bad:     map[string]bool{p + c.Key(): true},
				})
			},
			want: "added:198.19.1.0-24@198.18.0.1",
		},
		{
			name: "compaction snapshot without a key removes it",
			do: func() []Event {
				return v.reset(listing{entries: []entry{{key: p + b.Key(), lease: b}}})
			},
			want: "removed:198.19.1.0-24@198.18.0.1 removed:198.19.3.0-24@198.18.0.3 " +
				"added:198.19.2.0-24@198.18.0.2",
		},
	}
	for _, s := range steps {
		if got := brief(s.do()); got != s.want {
			t.Fatalf("%s: events %q, want %q", s.name, got, s.want)
		}
	}
}
