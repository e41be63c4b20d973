package peers_test

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/weftnet/weft/internal/logbuf"

	"golang.org/x/sys/unix"

	"github.com/weftnet/weft/backend/kernel"
	"github.com/weftnet/weft/backend/kerneltest"
	"github.com/weftnet/weft/backend/peers"
	"github.com/weftnet/weft/subnet"
)

var network = netip.MustParsePrefix("198.19.0.0/16")

// rig is a Set that programs host-gw style routes on a fake kernel.
type rig struct {
	fake *kerneltest.Fake
	eth  kernel.Link
	set  *peers.Set
	log  *logbuf.Buffer
}

func newRig(t *testing.T) *rig {
	t.Helper()
	fake := kerneltest.NewFake()
	eth := fake.AddLink("eth0", netip.MustParsePrefix("198.18.0.0/24"))
	buf := &logbuf.Buffer{}
	log := slog.New(slog.NewTextHandler(buf, &slog.HandlerOptions{Level: slog.LevelDebug}))
	own := netip.MustParsePrefix("198.19.1.0/24")
	rec := kernel.NewReconciler(fake, kernel.Scope{
		Network: network,
		Keep:    []netip.Prefix{own},
		Routes:  []kernel.Link{eth},
	}, log)
	if err := rec.Load(); err != nil {
		t.Fatal(err)
	}
	rg := &rig{fake: fake, eth: eth, log: buf}
	rg.set = peers.NewSet(peers.Config{
		BackendType: "host-gw",
		Network:     network,
		Own:         own,
		OwnPublicIP: netip.MustParseAddr("198.18.0.1"),
		Entries: func(l *subnet.Lease, p peers.Peer) (kernel.Entries, error) {
			if string(l.Attrs.BackendData) == `"bad"` {
				return kernel.Entries{}, errors.New("malformed backend data")
			}
			// rg.eth, not eth: the link may be replaced, as in TestSetRebind.
			return kernel.Entries{Routes: []kernel.Route{{Dst: p.Subnet, Gw: p.PublicIP,
				LinkIndex: rg.eth.Index}}}, nil
		},
		Log: log,
	}, rec)
	fake.ResetCalls()
	return rg
}

func lease(sn, public, backendType string) subnet.Lease {
	return subnet.Lease{
		Subnet: netip.MustParsePrefix(sn),
		Attrs: subnet.LeaseAttrs{
			PublicIP:    netip.MustParseAddr(public),
			BackendType: backendType,
		},
	}
}

func added(ls ...subnet.Lease) []subnet.Event {
	var out []subnet.Event
	for _, l := range ls {
		out = append(out, subnet.Event{Type: subnet.EventAdded, Lease: l})
	}
	return out
}

func removed(l subnet.Lease) []subnet.Event {
	return []subnet.Event{{Type: subnet.EventRemoved, Lease: l}}
}

func (r *rig) handle(t *testing.T, events []subnet.Event, cmds ...string) {
	t.Helper()
	r.fake.ResetCalls()
	r.set.Handle(events)
	if _, err := r.set.Apply(); err != nil {
		t.Fatalf("Apply: %v", err)
	}
	if got := r.fake.Writes(); !slices.Equal(got, cmds) {
		t.Errorf("writes:\n  %s\nwant:\n  %s", strings.Join(got, "\n  "), strings.Join(cmds, "\n  "))
	}
}

func TestSetHandle(t *testing.T) {
	malformed := lease("198.19.5.0/24", "198.18.0.5", "host-gw")
	malformed.Attrs.BackendData = []byte(`"bad"`)

	tests := []struct {
		name    string
		events  []subnet.Event
		cmds    []string
		peers   int
		logWant string
	}{
		{
			name:    "peers of the backend type are programmed",
			events:  added(lease("198.19.2.0/24", "198.18.0.2", "host-gw")),
			cmds:    []string{"ip route replace 198.19.2.0/24 via 198.18.0.2 dev eth0"},
			peers:   1,
			logWant: `msg="peer added" lease=198.19.2.0-24 public_ip=198.18.0.2`,
		},
		{
			name: "other backend types are ignored",
			events: added(
				lease("198.19.2.0/24", "198.18.0.2", "vxlan"),
				lease("198.19.3.0/24", "198.18.0.3", ""),
			),
			logWant: "ignoring lease of another backend type",
		},
		{
			name: "a malformed lease is skipped, the rest of the batch programmed",
			events: added(
				malformed,
				lease("198.19.3.0/24", "198.18.0.3", "host-gw"),
			),
			cmds:  []string{"ip route replace 198.19.3.0/24 via 198.18.0.3 dev eth0"},
			peers: 1,
			logWant: `level=WARN msg="skipping peer lease" lease=198.19.5.0-24 ` +
				`err="malformed backend data"`,
		},
		{
			name:    "an unusable public IP is skipped",
			events:  added(lease("198.19.2.0/24", "0.0.0.0", "host-gw")),
			logWant: `err="public IP \"0.0.0.0\" is not a usable unicast address"`,
		},
		{
			name:    "this host's public IP is skipped",
			events:  added(lease("198.19.2.0/24", "198.18.0.1", "host-gw")),
			logWant: `err="public IP 198.18.0.1 is this host's own"`,
		},
		{
			name:    "a subnet outside the network is skipped",
			events:  added(lease("10.0.2.0/24", "198.18.0.2", "host-gw")),
			logWant: `err="subnet 10.0.2.0/24 is outside the network 198.19.0.0/16"`,
		},
		{
			name:   "the own lease is ignored",
			events: added(lease("198.19.1.0/24", "198.18.0.1", "host-gw")),
		},
		{
			name:   "removal of an unknown lease does nothing",
			events: removed(lease("198.19.7.0/24", "198.18.0.7", "host-gw")),
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := newRig(t)
			r.handle(t, tt.events, tt.cmds...)
			if r.set.Len() != tt.peers {
				t.Errorf("%d peers, want %d", r.set.Len(), tt.peers)
			}
			if !strings.Contains(r.log.String(), tt.logWant) {
				t.Errorf("log does not say %q:\n%s", tt.logWant, r.log)
			}
		})
	}
}

func TestSetLifecycle(t *testing.T) {
	r := newRig(t)
	l2 := lease("198.19.2.0/24", "198.18.0.2", "host-gw")
	r.handle(t, added(l2), "ip route replace 198.19.2.0/24 via 198.18.0.2 dev eth0")

	// A renewal, the same lease again, costs nothing and logs nothing at Info.
	before := r.log.String()
	r.handle(t, added(l2))
	if after := r.log.String(); strings.Contains(after[len(before):], "level=INFO") {
		t.Errorf("renewal logged at Info: %s", after[len(before):])
	}

	// A new public IP replaces the route.
	moved := lease("198.19.2.0/24", "198.18.0.22", "host-gw")
	r.handle(t, added(moved), "ip route replace 198.19.2.0/24 via 198.18.0.22 dev eth0")

	// A malformed re-announcement keeps what was programmed.
	bad := moved
	bad.Attrs.BackendData = []byte(`"bad"`)
	r.handle(t, added(bad))
	if r.set.Len() != 1 {
		t.Errorf("malformed renewal dropped the peer")
	}

	// The removal carries the lease as last seen.
	r.handle(t, removed(moved), "ip route del 198.19.2.0/24 via 198.18.0.22 dev eth0")
	const gone = `msg="peer removed" lease=198.19.2.0-24 public_ip=198.18.0.22`
	if !strings.Contains(r.log.String(), gone) {
		t.Errorf("removal not logged:\n%s", r.log)
	}

	// A peer that switches to another backend type loses its entries.
	r.handle(t, added(l2), "ip route replace 198.19.2.0/24 via 198.18.0.2 dev eth0")
	r.handle(t, added(lease("198.19.2.0/24", "198.18.0.2", "vxlan")),
		"ip route del 198.19.2.0/24 via 198.18.0.2 dev eth0")
	if r.set.Len() != 0 {
		t.Errorf("%d peers after the type change, want 0", r.set.Len())
	}
}

func TestSetRebind(t *testing.T) {
	r := newRig(t)
	r.handle(t, added(lease("198.19.2.0/24", "198.18.0.2", "host-gw"),
		lease("198.19.3.0/24", "198.18.0.3", "host-gw")),
		"ip route replace 198.19.2.0/24 via 198.18.0.2 dev eth0",
		"ip route replace 198.19.3.0/24 via 198.18.0.3 dev eth0")

	// The link is gone with its routes; a new Reconciler for a fresh one gets every peer.
	r.fake.DeleteLink(r.eth.Index)
	eth := r.fake.AddLink("eth0")
	rec := kernel.NewReconciler(r.fake, kernel.Scope{Network: network,
		Routes: []kernel.Link{eth}}, slog.New(slog.DiscardHandler))
	r.eth = eth
	r.set.Rebind(rec)
	r.fake.ResetCalls()
	if _, err := r.set.Sync(); err != nil {
		t.Fatal(err)
	}
	want := []string{
		"ip route replace 198.19.2.0/24 via 198.18.0.2 dev eth0",
		"ip route replace 198.19.3.0/24 via 198.18.0.3 dev eth0",
	}
	if got := r.fake.Writes(); !slices.Equal(got, want) {
		t.Errorf("writes after Rebind: %q, want %q", got, want)
	}
}

// waitFor polls cond until it holds or a few seconds pass.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func TestRun(t *testing.T) {
	r := newRig(t)
	ctx, cancel := context.WithCancel(context.Background())
	events := make(chan []subnet.Event)
	done := make(chan error, 1)
	const resync = 100 * time.Millisecond
	go func() {
		done <- peers.Run(ctx, events, func() []*peers.Set { return []*peers.Set{r.set} },
			peers.RunOptions{Resync: resync, Log: slog.New(slog.DiscardHandler)})
	}()

	l2 := lease("198.19.2.0/24", "198.18.0.2", "host-gw")
	route := kernel.Route{Dst: l2.Subnet, Gw: l2.Attrs.PublicIP, LinkIndex: r.eth.Index}
	hasRoute := func() bool { return slices.Contains(r.fake.State().Routes, route) }

	// The first write fails; Run retries it.
	r.fake.FailWith("ip route replace", unix.EBUSY, 1)
	events <- added(l2)
	waitFor(t, "the route after a failed write", hasRoute)

	// A route deleted by hand comes back within a resync period or two.
	r.fake.Drop(kernel.Entries{Routes: []kernel.Route{route}})
	waitFor(t, "the route after a resync", hasRoute)

	// Steady state: resyncs list the kernel but write nothing.
	r.fake.ResetCalls()
	time.Sleep(3 * resync)
	if w := r.fake.Writes(); len(w) > 0 {
		t.Errorf("steady state wrote %q", w)
	}
	if len(r.fake.Reads()) == 0 {
		t.Error("no resync happened in three periods")
	}

	// A closed channel does not stop Run; cancelling does.
	close(events)
	time.Sleep(resync)
	select {
	case err := <-done:
		t.Fatalf("Run returned %v after the channel closed", err)
	default:
	}
	cancel()
	if err := <-done; err != nil {
		t.Errorf("Run returned %v", err)
	}
}

func TestRunDo(t *testing.T) {
	r := newRig(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	do := make(chan func())
	done := make(chan error, 1)
	go func() {
		done <- peers.Run(ctx, nil, func() []*peers.Set { return []*peers.Set{r.set} },
			peers.RunOptions{Do: do, Log: slog.New(slog.DiscardHandler)})
	}()

	// Work sent on Do runs on Run's goroutine, and what it changes is applied.
	do <- func() { r.set.Handle(added(lease("198.19.2.0/24", "198.18.0.2", "host-gw"))) }
	waitFor(t, "the route", func() bool { return len(r.fake.State().Routes) == 1 })
	cancel()
	if err := <-done; err != nil {
		t.Errorf("Run returned %v", err)
	}
}

func TestRunDrift(t *testing.T) {
	r := newRig(t)
	ctx, cancel := context.WithCancel(context.Background())
	events := make(chan []subnet.Event)
	drift := make(chan struct{}, 1)
	done := make(chan error, 1)
	const debounce = 50 * time.Millisecond
	go func() {
		done <- peers.Run(ctx, events, func() []*peers.Set { return []*peers.Set{r.set} },
			peers.RunOptions{
				Resync:   time.Hour,
				Drift:    drift,
				Debounce: debounce,
				Log:      slog.New(slog.DiscardHandler),
			})
	}()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run returned %v", err)
		}
	}()
	// feed sends a batch and waits until Run has handled it.
	feed := func(batch []subnet.Event) {
		events <- batch
		events <- nil
	}
	// listings counts the full comparisons recorded since the last ResetCalls.
	listings := func() int {
		n := 0
		for _, c := range r.fake.Reads() {
			if c == "ip route show dev eth0" {
				n++
			}
		}
		return n
	}

	const count = 1000
	var leases []subnet.Lease
	for i := range count {
		leases = append(leases, lease(
			fmt.Sprintf("198.19.%d.%d/26", 2+i/4, i%4*64),
			fmt.Sprintf("198.18.%d.%d", 1+i/250, 2+i%250),
			"host-gw"))
	}
	feed(added(leases...))
	if n := len(r.fake.State().Routes); n != count {
		t.Fatalf("%d routes, want %d", n, count)
	}

	// A route deleted by hand is back soon after the signal, without waiting for the
	// resync an hour away. The route of a peer whose lease has not arrived stays: only
	// a resync, once the leases are surely complete, removes what nobody wants.
	first := kernel.Route{Dst: leases[0].Subnet, Gw: leases[0].Attrs.PublicIP,
		LinkIndex: r.eth.Index}
	unknown := kernel.Route{Dst: netip.MustParsePrefix("198.19.254.0/24"),
		Gw: netip.MustParseAddr("198.18.0.254"), LinkIndex: r.eth.Index}
	r.fake.Put(kernel.Entries{Routes: []kernel.Route{unknown}})
	r.fake.Drop(kernel.Entries{Routes: []kernel.Route{first}})
	r.fake.ResetCalls()
	drift <- struct{}{}
	waitFor(t, "the deleted route", func() bool {
		return slices.Contains(r.fake.State().Routes, first)
	})
	if !slices.Contains(r.fake.State().Routes, unknown) {
		t.Error("the repair removed the route of a peer not known yet")
	}
	if w := r.fake.Writes(); len(w) != 1 {
		t.Errorf("the repair wrote %q, want the one route", w)
	}
	r.fake.Drop(kernel.Entries{Routes: []kernel.Route{unknown}})

	// Removing every peer in one batch signals while the batch is handled, as a watch
	// of the kernel would for each of Run's own deletions, and on after it while the
	// watch catches up. The burst costs one comparison and no write beyond the
	// deletions.
	var gone []subnet.Event
	for _, l := range leases {
		gone = append(gone, removed(l)...)
	}
	r.fake.ResetCalls()
	events <- gone
	stop := make(chan struct{})
	signalled := make(chan struct{})
	go func() {
		defer close(signalled)
		for {
			select {
			case <-stop:
				return
			case drift <- struct{}{}:
			default:
			}
			time.Sleep(time.Millisecond)
		}
	}()
	events <- nil
	time.Sleep(2 * debounce)
	close(stop)
	<-signalled
	waitFor(t, "the comparison after the burst", func() bool { return listings() == 1 })
	time.Sleep(5 * debounce)
	if n := listings(); n != 1 {
		t.Errorf("%d comparisons after the burst, want 1", n)
	}
	if w := r.fake.Writes(); len(w) != count {
		t.Errorf("%d writes for %d removals, want %d", len(w), count, count)
	}

	// A signal with everything in place costs one listing and no write; a renewal and
	// a new peer cost what they cost without signals.
	l2 := lease("198.19.2.0/24", "198.18.0.2", "host-gw")
	feed(added(l2))
	for _, step := range []struct {
		name   string
		do     func()
		writes int
	}{
		{name: "steady state", do: func() {
			drift <- struct{}{}
			waitFor(t, "the comparison", func() bool { return listings() == 1 })
		}, writes: 0},
		{name: "renewal", do: func() { feed(added(l2)) }, writes: 0},
		{name: "new peer", do: func() {
			feed(added(lease("198.19.3.0/24", "198.18.0.3", "host-gw")))
		}, writes: 1},
	} {
		r.fake.ResetCalls()
		step.do()
		if w := r.fake.Writes(); len(w) != step.writes {
			t.Errorf("%s: writes %q, want %d", step.name, w, step.writes)
		}
	}
}
