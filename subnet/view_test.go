package subnet

import (
	"context"
	"log/slog"
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

// enabledHandler wants every record and formats none, as the daemon's tap of the
// registry's records does at Debug.
type enabledHandler struct{}

func (enabledHandler) Enabled(context.Context, slog.Level) bool  { return true }
func (enabledHandler) Handle(context.Context, slog.Record) error { return nil }
func (h enabledHandler) WithAttrs([]slog.Attr) slog.Handler      { return h }
func (h enabledHandler) WithGroup(string) slog.Handler           { return h }

func TestEventListLog(t *testing.T) {
	evs := []Event{
		{Type: EventAdded, Lease: testLease(t, "198.19.1.0-24", "198.18.0.1")},
		{Type: EventRemoved, Lease: testLease(t, "198.19.2.0-24", "198.18.0.2")},
	}
	if got, want := eventList(evs).LogValue().String(),
		"added:198.19.1.0-24 removed:198.19.2.0-24"; got != want {
		t.Errorf("eventList renders %q, want %q", got, want)
	}

	// A batch of 1,000 leases logged at Debug costs nothing while no handler formats it.
	big := make([]Event, 1000)
	for i := range big {
		big[i] = Event{Lease: testLease(t, "198.19.1.0-24", "198.18.0.1")}
	}
	log := slog.New(enabledHandler{})
	allocs := testing.AllocsPerRun(10, func() {
		log.Debug("lease events", "events", eventList(big))
	})
	if allocs > 2 {
		t.Errorf("logging 1,000 events unformatted made %v allocations, want at most 2", allocs)
	}
}
