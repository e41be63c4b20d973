package hostgw

import (
	"context"
	"encoding/json"
	"log/slog"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/weftnet/weft/backend"
	"github.com/weftnet/weft/backend/kernel"
	"github.com/weftnet/weft/backend/kerneltest"
	"github.com/weftnet/weft/subnet"
)

// fakeLeases is a LeaseManager that hands out fixed subnets and records the attributes.
type fakeLeases struct {
	mu       sync.Mutex
	subnet   netip.Prefix
	subnet6  netip.Prefix
	acquired []subnet.LeaseAttrs
}

func (f *fakeLeases) AcquireLease(ctx context.Context, attrs subnet.LeaseAttrs) (*subnet.Lease,
	error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.acquired = append(f.acquired, attrs)
	return &subnet.Lease{Subnet: f.subnet, IPv6Subnet: f.subnet6, Attrs: attrs}, nil
}

func (f *fakeLeases) UpdateLeaseAttrs(ctx context.Context, attrs subnet.LeaseAttrs) error {
	return nil
}

var (
	overlay  = netip.MustParsePrefix("198.19.0.0/16")
	overlay6 = netip.MustParsePrefix("fd00:198:19::/48")
)

func extOf(l kernel.Link) backend.ExternalInterface {
	return backend.ExternalInterface{
		Name:        l.Name,
		Index:       l.Index,
		MTU:         1500,
		IfaceAddr:   netip.MustParseAddr("198.18.0.1"),
		ExtAddr:     netip.MustParseAddr("198.18.0.1"),
		IfaceV6Addr: netip.MustParseAddr("2001:db8::1"),
		ExtV6Addr:   netip.MustParseAddr("2001:db8::1"),
	}
}

func TestRegisterNetwork(t *testing.T) {
	fake := kerneltest.NewFake()
	eth := fake.AddLink("eth0")
	tests := []struct {
		name     string
		ext      func(*backend.ExternalInterface)
		v6       bool
		wantJSON string
		wantErr  string
	}{
		{
			name:     "IPv4",
			wantJSON: `{"PublicIP":"198.18.0.1","PublicIPv6":null,"BackendType":"host-gw"}`,
		},
		{
			name: "dual stack",
			v6:   true,
			wantJSON: `{"PublicIP":"198.18.0.1","PublicIPv6":"2001:db8::1",` +
				`"BackendType":"host-gw"}`,
		},
		{
			name: "behind NAT",
			ext: func(e *backend.ExternalInterface) {
				e.ExtAddr = netip.MustParseAddr("203.0.113.1")
			},
			wantErr: "host-gw backend: public IP 203.0.113.1 differs from eth0's address 198.18.0.1",
		},
		{
			name: "IPv6 behind NAT",
			v6:   true,
			ext: func(e *backend.ExternalInterface) {
				e.ExtV6Addr = netip.MustParseAddr("2001:db8::99")
			},
			wantErr: "public IP 2001:db8::99 differs from eth0's address 2001:db8::1",
		},
		{
			name: "no IPv4 address",
			ext: func(e *backend.ExternalInterface) {
				e.ExtAddr, e.IfaceAddr = netip.Addr{}, netip.Addr{}
			},
			wantErr: `external interface "eth0" has no IPv4 address`,
		},
		{
			name:    "interface gone",
			ext:     func(e *backend.ExternalInterface) { e.Index = 99 },
			wantErr: "host-gw backend: external interface: looking up link 99: link not found",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ext := extOf(eth)
			if tt.ext != nil {
				tt.ext(&ext)
			}
			cfg := &subnet.Config{EnableIPv4: true, Network: overlay, BackendType: TypeName}
			if tt.v6 {
				cfg.EnableIPv6, cfg.IPv6Network = true, overlay6
			}
			lm := &fakeLeases{subnet: netip.MustParsePrefix("198.19.1.0/24")}
			n, err := newBackend(backend.Params{Ext: ext}, fake).RegisterNetwork(
				context.Background(), cfg, lm)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("error %v, want one containing %q", err, tt.wantErr)
				}
				if len(lm.acquired) != 0 {
					t.Error("acquired a lease despite the error")
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			got, _ := json.Marshal(lm.acquired[0])
			if string(got) != tt.wantJSON {
				t.Errorf("lease value %s, want %s", got, tt.wantJSON)
			}
			if n.MTU() != 1500 {
				t.Errorf("MTU %d, want 1500", n.MTU())
			}
		})
	}
}

// runRig runs a host-gw network on a fake kernel.
type runRig struct {
	fake   *kerneltest.Fake
	eth    kernel.Link
	events chan []subnet.Event
	// kicks stand in for the deletion watch's signals.
	kicks chan struct{}
}

// kickedDrift returns a driftFunc that signals once for each receive from kicks.
func kickedDrift(kicks <-chan struct{}) driftFunc {
	return func(ctx context.Context, _ *kernel.DriftFilter, out chan<- struct{}) <-chan struct{} {
		stopped := make(chan struct{})
		go func() {
			defer close(stopped)
			for {
				select {
				case <-ctx.Done():
					return
				case <-kicks:
					select {
					case out <- struct{}{}:
					default:
					}
				}
			}
		}()
		return stopped
	}
}

func newRunRig(t *testing.T, v6 bool, resync time.Duration, before kernel.Entries) *runRig {
	t.Helper()
	fake := kerneltest.NewFake()
	eth := fake.AddLink("eth0")
	fake.Put(before)
	b := newBackend(backend.Params{Ext: extOf(eth), Log: slog.New(slog.DiscardHandler)}, fake)
	b.resync = resync
	kicks := make(chan struct{})
	b.drift = kickedDrift(kicks)
	cfg := &subnet.Config{EnableIPv4: true, Network: overlay, BackendType: TypeName}
	lm := &fakeLeases{subnet: netip.MustParsePrefix("198.19.1.0/24")}
	if v6 {
		cfg.EnableIPv6, cfg.IPv6Network = true, overlay6
		lm.subnet6 = netip.MustParsePrefix("fd00:198:19:1::/64")
	}
	n, err := b.RegisterNetwork(context.Background(), cfg, lm)
	if err != nil {
		t.Fatal(err)
	}
	r := &runRig{fake: fake, eth: eth, events: make(chan []subnet.Event), kicks: kicks}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- n.Run(ctx, r.events) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run: %v", err)
		}
	})
	r.feed()
	fake.ResetCalls()
	return r
}

// feed sends a batch and waits until Run has handled it.
func (r *runRig) feed(events ...subnet.Event) {
	r.events <- events
	r.events <- nil
}

func (r *runRig) writes(t *testing.T, events ...subnet.Event) []string {
	t.Helper()
	r.fake.ResetCalls()
	r.feed(events...)
	if reads := r.fake.Reads(); len(reads) > 0 {
		t.Errorf("handling events read the kernel: %q", reads)
	}
	return r.fake.Writes()
}

func hostgwLease(sn, public string) subnet.Lease {
	return subnet.Lease{
		Subnet: netip.MustParsePrefix(sn),
		Attrs:  subnet.LeaseAttrs{PublicIP: netip.MustParseAddr(public), BackendType: TypeName},
	}
}

func added(l subnet.Lease) subnet.Event   { return subnet.Event{Type: subnet.EventAdded, Lease: l} }
func removed(l subnet.Lease) subnet.Event { return subnet.Event{Type: subnet.EventRemoved, Lease: l} }

func checkCmds(t *testing.T, got []string, want ...string) {
	t.Helper()
	if !slices.Equal(got, want) {
		t.Errorf("writes:\n  %s\nwant:\n  %s", strings.Join(got, "\n  "), strings.Join(want, "\n  "))
	}
}

func route(dst, gw string, link int) kernel.Route {
	return kernel.Route{Dst: netip.MustParsePrefix(dst), Gw: netip.MustParseAddr(gw), LinkIndex: link}
}

func TestPeers(t *testing.T) {
	// eth0 is index 2 in a fresh fake. A route to a peer's subnet via the wrong gateway
	// is there already, next to routes the backend does not own.
	outside := route("10.9.0.0/16", "198.18.0.254", 2)
	own := route("198.19.1.0/24", "198.18.0.1", 2)
	r := newRunRig(t, false, time.Hour, kernel.Entries{Routes: []kernel.Route{
		route("198.19.2.0/24", "198.18.0.99", 2), outside, own,
	}})

	p2 := hostgwLease("198.19.2.0/24", "198.18.0.2")
	checkCmds(t, r.writes(t, added(p2)), "ip route replace 198.19.2.0/24 via 198.18.0.2 dev eth0")
	checkCmds(t, r.writes(t, added(p2)))

	vx := hostgwLease("198.19.3.0/24", "198.18.0.3")
	vx.Attrs.BackendType = "vxlan"
	p4 := hostgwLease("198.19.4.0/24", "198.18.0.4")
	checkCmds(t, r.writes(t, added(vx), added(p4)),
		"ip route replace 198.19.4.0/24 via 198.18.0.4 dev eth0")

	checkCmds(t, r.writes(t, removed(p2)), "ip route del 198.19.2.0/24 via 198.18.0.2 dev eth0")

	want := []kernel.Route{outside, own, route("198.19.4.0/24", "198.18.0.4", 2)}
	if got := r.fake.State().Routes; !slices.Equal(got, want) {
		t.Errorf("routes %+v, want %+v", got, want)
	}
}

func TestResync(t *testing.T) {
	stale := route("198.19.7.0/24", "198.18.0.7", 2)
	r := newRunRig(t, false, 30*time.Millisecond, kernel.Entries{Routes: []kernel.Route{stale}})
	p2 := hostgwLease("198.19.2.0/24", "198.18.0.2")
	r.feed(added(p2))
	want := []kernel.Route{route("198.19.2.0/24", "198.18.0.2", 2)}

	// A route deleted by hand comes back, and the route of a peer that left while the
	// daemon was down goes, at the next resync.
	r.fake.Drop(kernel.Entries{Routes: want})
	deadline := time.Now().Add(5 * time.Second)
	for !slices.Equal(r.fake.State().Routes, want) {
		if time.Now().After(deadline) {
			t.Fatalf("routes %+v, want %+v", r.fake.State().Routes, want)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func TestDeletionRepaired(t *testing.T) {
	stale := route("198.19.7.0/24", "198.18.0.7", 2)
	r := newRunRig(t, false, time.Hour, kernel.Entries{Routes: []kernel.Route{stale}})
	p2 := hostgwLease("198.19.2.0/24", "198.18.0.2")
	r.feed(added(p2))
	want := route("198.19.2.0/24", "198.18.0.2", 2)

	// A route deleted from outside comes back after the watch's signal, with no resync
	// due for an hour. The stale route, of a peer whose lease may yet arrive, is left
	// for the resync.
	r.fake.Drop(kernel.Entries{Routes: []kernel.Route{want}})
	r.kicks <- struct{}{}
	deadline := time.Now().Add(5 * time.Second)
	for !slices.Contains(r.fake.State().Routes, want) {
		if time.Now().After(deadline) {
			t.Fatalf("routes %+v, want %+v among them", r.fake.State().Routes, want)
		}
		time.Sleep(5 * time.Millisecond)
	}
	if !slices.Contains(r.fake.State().Routes, stale) {
		t.Error("the repair removed the stale route")
	}
}

func TestDualStack(t *testing.T) {
	r := newRunRig(t, true, time.Hour, kernel.Entries{})
	p2 := hostgwLease("198.19.2.0/24", "198.18.0.2")
	p2.IPv6Subnet = netip.MustParsePrefix("fd00:198:19:2::/64")
	p2.Attrs.PublicIPv6 = netip.MustParseAddr("2001:db8::2")
	checkCmds(t, r.writes(t, added(p2)),
		"ip route replace 198.19.2.0/24 via 198.18.0.2 dev eth0",
		"ip route replace fd00:198:19:2::/64 via 2001:db8::2 dev eth0")
	checkCmds(t, r.writes(t, removed(p2)),
		"ip route del 198.19.2.0/24 via 198.18.0.2 dev eth0",
		"ip route del fd00:198:19:2::/64 via 2001:db8::2 dev eth0")
}
