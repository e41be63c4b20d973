package kernel_test

import (
	"errors"
	"io"
	"log/slog"
	"net/netip"
	"slices"
	"strings"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/weftnet/weft/backend/kernel"
	"github.com/weftnet/weft/backend/kerneltest"
)

var (
	network = netip.MustParsePrefix("198.19.0.0/16")
	own     = netip.MustParsePrefix("198.19.1.0/24")
	macA    = mustMAC("02:00:00:00:00:0a")
	macB    = mustMAC("02:00:00:00:00:0b")
	macC    = mustMAC("02:00:00:00:00:0c")
)

func mustMAC(s string) kernel.MAC {
	m, err := kernel.ParseMAC(s)
	if err != nil {
		panic(err)
	}
	return m
}

func discard() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

// vxlanPeer returns what the VXLAN backend wants for a peer on link.
func vxlanPeer(link kernel.Link, subnet string, mac kernel.MAC, public string) kernel.Entries {
	sn := netip.MustParsePrefix(subnet)
	return kernel.Entries{
		Neighs: []kernel.Neigh{{LinkIndex: link.Index, IP: sn.Addr(), MAC: mac}},
		FDB: []kernel.FDBEntry{{LinkIndex: link.Index, MAC: mac,
			Dst: netip.MustParseAddr(public)}},
		Routes: []kernel.Route{{Dst: sn, Gw: sn.Addr(), LinkIndex: link.Index, Onlink: true}},
	}
}

func vxlanScope(link kernel.Link) kernel.Scope {
	return kernel.Scope{
		Network: network,
		Keep:    []netip.Prefix{own},
		Neigh:   link,
		FDB:     link,
		Routes:  []kernel.Link{link},
	}
}

func commands(scope kernel.Scope, ops []kernel.Op) []string {
	var out []string
	for _, op := range ops {
		out = append(out, op.Command(scope))
	}
	return out
}

func checkTranscript(t *testing.T, got, want []string) {
	t.Helper()
	if !slices.Equal(got, want) {
		t.Errorf("commands:\n  %s\nwant:\n  %s", strings.Join(got, "\n  "), strings.Join(want, "\n  "))
	}
}

func TestDiff(t *testing.T) {
	vx := kernel.Link{Index: 5, Name: "flannel.1"}
	eth := kernel.Link{Index: 2, Name: "eth0"}
	scope := vxlanScope(vx)
	peer2 := vxlanPeer(vx, "198.19.2.0/24", macA, "198.18.0.2")
	peer3 := vxlanPeer(vx, "198.19.3.0/24", macB, "198.18.0.3")
	installed := permanent
	join := func(es ...kernel.Entries) kernel.Entries {
		var out kernel.Entries
		for _, e := range es {
			out.Neighs = append(out.Neighs, e.Neighs...)
			out.FDB = append(out.FDB, e.FDB...)
			out.Routes = append(out.Routes, e.Routes...)
		}
		return out
	}

	tests := []struct {
		name string
		want map[string]kernel.Entries
		have kernel.Entries
		cmds []string
	}{
		{
			name: "new peers, route last",
			want: map[string]kernel.Entries{"b": peer3, "a": peer2},
			cmds: []string{
				"ip neigh replace 198.19.2.0 lladdr 02:00:00:00:00:0a dev flannel.1 nud permanent",
				"ip neigh replace 198.19.3.0 lladdr 02:00:00:00:00:0b dev flannel.1 nud permanent",
				"bridge fdb replace 02:00:00:00:00:0a dev flannel.1 dst 198.18.0.2 self permanent",
				"bridge fdb replace 02:00:00:00:00:0b dev flannel.1 dst 198.18.0.3 self permanent",
				"ip route replace 198.19.2.0/24 via 198.19.2.0 dev flannel.1 onlink",
				"ip route replace 198.19.3.0/24 via 198.19.3.0 dev flannel.1 onlink",
			},
		},
		{
			name: "installed as wanted",
			want: map[string]kernel.Entries{"a": peer2},
			have: installed(peer2),
		},
		{
			name: "learnt neighbour is replaced by a permanent one",
			want: map[string]kernel.Entries{"a": peer2},
			have: kernel.Entries{
				Neighs: peer2.Neighs,
				FDB:    installed(peer2).FDB,
				Routes: peer2.Routes,
			},
			cmds: []string{
				"ip neigh replace 198.19.2.0 lladdr 02:00:00:00:00:0a dev flannel.1 nud permanent",
			},
		},
		{
			name: "changed VtepMAC: new entries first, then the old FDB entry goes",
			want: map[string]kernel.Entries{"a": vxlanPeer(vx, "198.19.2.0/24", macC, "198.18.0.2")},
			have: installed(peer2),
			cmds: []string{
				"ip neigh replace 198.19.2.0 lladdr 02:00:00:00:00:0c dev flannel.1 nud permanent",
				"bridge fdb replace 02:00:00:00:00:0c dev flannel.1 dst 198.18.0.2 self permanent",
				"bridge fdb del 02:00:00:00:00:0a dev flannel.1 dst 198.18.0.2 self",
			},
		},
		{
			name: "changed PublicIP: the FDB entry is replaced in place",
			want: map[string]kernel.Entries{"a": vxlanPeer(vx, "198.19.2.0/24", macA, "198.18.0.9")},
			have: installed(peer2),
			cmds: []string{
				"bridge fdb replace 02:00:00:00:00:0a dev flannel.1 dst 198.18.0.9 self permanent",
			},
		},
		{
			name: "extra destinations of a MAC are removed",
			want: map[string]kernel.Entries{"a": peer2},
			have: installed(join(peer2, kernel.Entries{FDB: []kernel.FDBEntry{
				{LinkIndex: vx.Index, MAC: macA, Dst: netip.MustParseAddr("198.18.0.7")},
			}})),
			cmds: []string{
				"bridge fdb replace 02:00:00:00:00:0a dev flannel.1 dst 198.18.0.2 self permanent",
				"bridge fdb del 02:00:00:00:00:0a dev flannel.1 dst 198.18.0.7 self",
			},
		},
		{
			name: "unwanted entries go, route first",
			want: map[string]kernel.Entries{"a": peer2},
			have: installed(join(peer2, peer3)),
			cmds: []string{
				"ip route del 198.19.3.0/24 via 198.19.3.0 dev flannel.1 onlink",
				"bridge fdb del 02:00:00:00:00:0b dev flannel.1 dst 198.18.0.3 self",
				"ip neigh del 198.19.3.0 dev flannel.1",
			},
		},
		{
			name: "entries the backend does not own are left alone",
			have: kernel.Entries{
				// Learnt, not permanent.
				Neighs: []kernel.Neigh{{LinkIndex: vx.Index, IP: netip.MustParseAddr("198.19.4.0"),
					MAC: macA}},
				FDB: []kernel.FDBEntry{
					// Learnt.
					{LinkIndex: vx.Index, MAC: macB, Dst: netip.MustParseAddr("198.18.0.3")},
					// The all-zero default destination.
					{LinkIndex: vx.Index, Dst: netip.MustParseAddr("198.18.0.4"), Permanent: true},
					// Another link.
					{LinkIndex: eth.Index, MAC: macC, Dst: netip.MustParseAddr("198.18.0.5"),
						Permanent: true},
				},
				Routes: []kernel.Route{
					// Outside the network.
					{Dst: netip.MustParsePrefix("10.0.0.0/8"), Gw: netip.MustParseAddr("10.0.0.1"),
						LinkIndex: vx.Index, Onlink: true},
					// The whole network, shorter than any lease.
					{Dst: network, Gw: netip.MustParseAddr("198.19.0.1"), LinkIndex: vx.Index},
					// The host's own subnet.
					{Dst: own, Gw: own.Addr(), LinkIndex: vx.Index, Onlink: true},
					// No next hop.
					{Dst: netip.MustParsePrefix("198.19.5.0/24"), LinkIndex: vx.Index},
					// Another link.
					{Dst: netip.MustParsePrefix("198.19.6.0/24"), Gw: netip.MustParseAddr("198.18.0.6"),
						LinkIndex: eth.Index},
				},
			},
		},
		{
			name: "two owners of one MAC: the first wins",
			want: map[string]kernel.Entries{
				"b": {FDB: []kernel.FDBEntry{{LinkIndex: vx.Index, MAC: macA,
					Dst: netip.MustParseAddr("198.18.0.3")}}},
				"a": {FDB: []kernel.FDBEntry{{LinkIndex: vx.Index, MAC: macA,
					Dst: netip.MustParseAddr("198.18.0.2")}}},
			},
			cmds: []string{
				"bridge fdb replace 02:00:00:00:00:0a dev flannel.1 dst 198.18.0.2 self permanent",
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			checkTranscript(t, commands(scope, kernel.Diff(scope, tt.want, tt.have)), tt.cmds)
		})
	}
}

func TestDiffHostGateway(t *testing.T) {
	eth := kernel.Link{Index: 2, Name: "eth0"}
	scope := kernel.Scope{Network: network, Keep: []netip.Prefix{own}, Routes: []kernel.Link{eth}}
	route := func(dst, gw string) kernel.Route {
		return kernel.Route{Dst: netip.MustParsePrefix(dst), Gw: netip.MustParseAddr(gw),
			LinkIndex: eth.Index}
	}
	want := map[string]kernel.Entries{
		"a": {Routes: []kernel.Route{route("198.19.2.0/24", "198.18.0.2")}},
		"b": {Routes: []kernel.Route{route("198.19.3.0/24", "198.18.0.3")}},
	}
	have := kernel.Entries{Routes: []kernel.Route{
		route("198.19.2.0/24", "198.18.0.2"),
		route("198.19.3.0/24", "198.18.0.99"),
		route("198.19.4.0/24", "198.18.0.4"),
	}}
	checkTranscript(t, commands(scope, kernel.Diff(scope, want, have)), []string{
		"ip route replace 198.19.3.0/24 via 198.18.0.3 dev eth0",
		"ip route del 198.19.4.0/24 via 198.18.0.4 dev eth0",
	})
}

// rig is a Reconciler on a fake kernel with one VXLAN link.
type rig struct {
	fake *kerneltest.Fake
	vx   kernel.Link
	rec  *kernel.Reconciler
}

func newRig(t *testing.T) *rig {
	t.Helper()
	fake := kerneltest.NewFake()
	vx := fake.AddLink("flannel.1")
	rec := kernel.NewReconciler(fake, vxlanScope(vx), discard())
	if err := rec.Load(); err != nil {
		t.Fatal(err)
	}
	fake.ResetCalls()
	return &rig{fake: fake, vx: vx, rec: rec}
}

// apply runs Apply and checks the writes it made, and that it made no read.
func (r *rig) apply(t *testing.T, wantErr bool, cmds ...string) {
	t.Helper()
	r.fake.ResetCalls()
	n, err := r.rec.Apply()
	if (err != nil) != wantErr {
		t.Fatalf("Apply: %v, want error %v", err, wantErr)
	}
	checkTranscript(t, r.fake.Writes(), cmds)
	if n != len(r.fake.Writes()) {
		t.Errorf("Apply reported %d writes, made %d", n, len(r.fake.Writes()))
	}
	if reads := r.fake.Reads(); len(reads) > 0 {
		t.Errorf("Apply read the kernel: %q", reads)
	}
}

// checkState compares what the fake holds, and what the reconciler believes, with want.
func (r *rig) checkState(t *testing.T, want kernel.Entries) {
	t.Helper()
	want = permanent(want)
	if got := r.fake.State(); !got.Equal(want) {
		t.Errorf("kernel state:\n  %+v\nwant:\n  %+v", got, want)
	}
	if got := r.rec.Installed(); !got.Equal(want) {
		t.Errorf("Installed:\n  %+v\nwant:\n  %+v", got, want)
	}
}

func permanent(e kernel.Entries) kernel.Entries {
	e = kernel.Entries{
		Neighs: slices.Clone(e.Neighs),
		FDB:    slices.Clone(e.FDB),
		Routes: slices.Clone(e.Routes),
	}
	for i := range e.Neighs {
		e.Neighs[i].Permanent = true
	}
	for i := range e.FDB {
		e.FDB[i].Permanent = true
	}
	return e
}

func TestReconcilerIncremental(t *testing.T) {
	r := newRig(t)
	peer2 := vxlanPeer(r.vx, "198.19.2.0/24", macA, "198.18.0.2")

	if !r.rec.Set("198.19.2.0-24", peer2) {
		t.Error("Set of a new owner reported no change")
	}
	r.apply(t, false,
		"ip neigh replace 198.19.2.0 lladdr 02:00:00:00:00:0a dev flannel.1 nud permanent",
		"bridge fdb replace 02:00:00:00:00:0a dev flannel.1 dst 198.18.0.2 self permanent",
		"ip route replace 198.19.2.0/24 via 198.19.2.0 dev flannel.1 onlink",
	)
	r.checkState(t, peer2)

	// The same lease re-announced costs nothing.
	if r.rec.Set("198.19.2.0-24", peer2) {
		t.Error("Set of unchanged entries reported a change")
	}
	r.apply(t, false)
	if r.rec.Pending() {
		t.Error("Pending after a clean Apply")
	}

	// A new VtepMAC: replace, then remove the old FDB entry.
	moved := vxlanPeer(r.vx, "198.19.2.0/24", macB, "198.18.0.2")
	r.rec.Set("198.19.2.0-24", moved)
	r.apply(t, false,
		"ip neigh replace 198.19.2.0 lladdr 02:00:00:00:00:0b dev flannel.1 nud permanent",
		"bridge fdb replace 02:00:00:00:00:0b dev flannel.1 dst 198.18.0.2 self permanent",
		"bridge fdb del 02:00:00:00:00:0a dev flannel.1 dst 198.18.0.2 self",
	)
	r.checkState(t, moved)

	r.rec.Remove("198.19.2.0-24")
	r.apply(t, false,
		"ip route del 198.19.2.0/24 via 198.19.2.0 dev flannel.1 onlink",
		"bridge fdb del 02:00:00:00:00:0b dev flannel.1 dst 198.18.0.2 self",
		"ip neigh del 198.19.2.0 dev flannel.1",
	)
	r.checkState(t, kernel.Entries{})
}

func TestReconcilerSyncRepairsDrift(t *testing.T) {
	r := newRig(t)
	peer2 := vxlanPeer(r.vx, "198.19.2.0/24", macA, "198.18.0.2")
	peer3 := vxlanPeer(r.vx, "198.19.3.0/24", macB, "198.18.0.3")
	r.rec.Set("a", peer2)
	r.rec.Set("b", peer3)
	r.apply(t, false,
		"ip neigh replace 198.19.2.0 lladdr 02:00:00:00:00:0a dev flannel.1 nud permanent",
		"ip neigh replace 198.19.3.0 lladdr 02:00:00:00:00:0b dev flannel.1 nud permanent",
		"bridge fdb replace 02:00:00:00:00:0a dev flannel.1 dst 198.18.0.2 self permanent",
		"bridge fdb replace 02:00:00:00:00:0b dev flannel.1 dst 198.18.0.3 self permanent",
		"ip route replace 198.19.2.0/24 via 198.19.2.0 dev flannel.1 onlink",
		"ip route replace 198.19.3.0/24 via 198.19.3.0 dev flannel.1 onlink",
	)

	// Someone deletes a route and an FDB entry by hand and adds a stale peer's entries.
	r.fake.Drop(kernel.Entries{Routes: peer2.Routes, FDB: peer3.FDB})
	stale := vxlanPeer(r.vx, "198.19.9.0/24", macC, "198.18.0.9")
	r.fake.Put(permanent(stale))

	// Apply alone does not notice; Sync does.
	r.apply(t, false)
	r.fake.ResetCalls()
	n, err := r.rec.Sync()
	if err != nil {
		t.Fatal(err)
	}
	checkTranscript(t, r.fake.Reads(), []string{
		"ip neigh show dev flannel.1",
		"bridge fdb show dev flannel.1",
		"ip route show dev flannel.1",
	})
	checkTranscript(t, r.fake.Writes(), []string{
		"bridge fdb replace 02:00:00:00:00:0b dev flannel.1 dst 198.18.0.3 self permanent",
		"ip route replace 198.19.2.0/24 via 198.19.2.0 dev flannel.1 onlink",
		"ip route del 198.19.9.0/24 via 198.19.9.0 dev flannel.1 onlink",
		"bridge fdb del 02:00:00:00:00:0c dev flannel.1 dst 198.18.0.9 self",
		"ip neigh del 198.19.9.0 dev flannel.1",
	})
	if n != 5 {
		t.Errorf("Sync reported %d writes, want 5", n)
	}
	r.checkState(t, kernel.Entries{
		Neighs: append(slices.Clone(peer2.Neighs), peer3.Neighs...),
		FDB:    append(slices.Clone(peer2.FDB), peer3.FDB...),
		Routes: append(slices.Clone(peer2.Routes), peer3.Routes...),
	})

	// A second Sync finds nothing to do.
	r.fake.ResetCalls()
	if n, err := r.rec.Sync(); err != nil || n != 0 {
		t.Errorf("second Sync: %d writes, %v", n, err)
	}
}

func TestReconcilerRepair(t *testing.T) {
	r := newRig(t)
	peer2 := vxlanPeer(r.vx, "198.19.2.0/24", macA, "198.18.0.2")
	r.rec.Set("a", peer2)
	r.apply(t, false,
		"ip neigh replace 198.19.2.0 lladdr 02:00:00:00:00:0a dev flannel.1 nud permanent",
		"bridge fdb replace 02:00:00:00:00:0a dev flannel.1 dst 198.18.0.2 self permanent",
		"ip route replace 198.19.2.0/24 via 198.19.2.0 dev flannel.1 onlink",
	)

	// The route is deleted by hand, and the kernel holds a peer whose owner is not Set
	// yet (its lease has not arrived), with a second destination on peer2's MAC.
	r.fake.Drop(kernel.Entries{Routes: peer2.Routes})
	later := vxlanPeer(r.vx, "198.19.3.0/24", macB, "198.18.0.3")
	extra := kernel.FDBEntry{LinkIndex: r.vx.Index, MAC: macA,
		Dst: netip.MustParseAddr("198.18.0.99"), Permanent: true}
	r.fake.Put(permanent(later))
	r.fake.Put(kernel.Entries{FDB: []kernel.FDBEntry{extra}})

	// Repair lists once, puts the route back and makes the wanted MAC's destination
	// the only one, but leaves the unknown peer alone.
	r.fake.ResetCalls()
	n, err := r.rec.Repair()
	if err != nil {
		t.Fatal(err)
	}
	checkTranscript(t, r.fake.Reads(), []string{
		"ip neigh show dev flannel.1",
		"bridge fdb show dev flannel.1",
		"ip route show dev flannel.1",
	})
	checkTranscript(t, r.fake.Writes(), []string{
		"bridge fdb replace 02:00:00:00:00:0a dev flannel.1 dst 198.18.0.2 self permanent",
		"ip route replace 198.19.2.0/24 via 198.19.2.0 dev flannel.1 onlink",
		"bridge fdb del 02:00:00:00:00:0a dev flannel.1 dst 198.18.0.99 self",
	})
	if n != 3 {
		t.Errorf("Repair reported %d writes, want 3", n)
	}
	r.checkState(t, kernel.Entries{
		Neighs: append(slices.Clone(peer2.Neighs), later.Neighs...),
		FDB:    append(slices.Clone(peer2.FDB), later.FDB...),
		Routes: append(slices.Clone(peer2.Routes), later.Routes...),
	})

	// With everything in place it costs the listing and no write; once the owners are
	// complete, Sync removes what nobody wants.
	r.fake.ResetCalls()
	if n, err := r.rec.Repair(); err != nil || n != 0 || len(r.fake.Reads()) != 3 {
		t.Errorf("second Repair: %d writes, %v, reads %q", n, err, r.fake.Reads())
	}
	if n, err := r.rec.Sync(); err != nil || n != 3 {
		t.Errorf("Sync: %d writes, %v; want the unknown peer's 3 removed", n, err)
	}
	r.checkState(t, kernel.Entries{Neighs: peer2.Neighs, FDB: peer2.FDB, Routes: peer2.Routes})
}

func TestReconcilerLoadKeepsUnknownEntriesUntilSync(t *testing.T) {
	fake := kerneltest.NewFake()
	vx := fake.AddLink("flannel.1")
	peer2 := vxlanPeer(vx, "198.19.2.0/24", macA, "198.18.0.2")
	peer3 := vxlanPeer(vx, "198.19.3.0/24", macB, "198.18.0.3")
	// A previous run left both peers installed.
	fake.Put(permanent(peer2))
	fake.Put(permanent(peer3))

	rec := kernel.NewReconciler(fake, vxlanScope(vx), discard())
	if err := rec.Load(); err != nil {
		t.Fatal(err)
	}
	fake.ResetCalls()

	// The first peer seen is installed already; the other is not touched before Sync.
	rec.Set("a", peer2)
	if n, err := rec.Apply(); n != 0 || err != nil {
		t.Fatalf("Apply: %d writes, %v", n, err)
	}
	if got := fake.State(); !got.Equal(permanent(kernel.Entries{
		Neighs: append(slices.Clone(peer2.Neighs), peer3.Neighs...),
		FDB:    append(slices.Clone(peer2.FDB), peer3.FDB...),
		Routes: append(slices.Clone(peer2.Routes), peer3.Routes...),
	})) {
		t.Errorf("state after Apply: %+v", got)
	}
	if _, err := rec.Sync(); err != nil {
		t.Fatal(err)
	}
	checkTranscript(t, fake.Writes(), []string{
		"ip route del 198.19.3.0/24 via 198.19.3.0 dev flannel.1 onlink",
		"bridge fdb del 02:00:00:00:00:0b dev flannel.1 dst 198.18.0.3 self",
		"ip neigh del 198.19.3.0 dev flannel.1",
	})
}

func TestReconcilerPartialFailure(t *testing.T) {
	r := newRig(t)
	peer2 := vxlanPeer(r.vx, "198.19.2.0/24", macA, "198.18.0.2")
	peer3 := vxlanPeer(r.vx, "198.19.3.0/24", macB, "198.18.0.3")
	r.rec.Set("a", peer2)
	r.rec.Set("b", peer3)

	// The FDB entry of the second peer fails once: its route must wait for it, the
	// first peer is unaffected.
	r.fake.FailWith("bridge fdb replace 02:00:00:00:00:0b", unix.ENOBUFS, 1)
	r.apply(t, true,
		"ip neigh replace 198.19.2.0 lladdr 02:00:00:00:00:0a dev flannel.1 nud permanent",
		"ip neigh replace 198.19.3.0 lladdr 02:00:00:00:00:0b dev flannel.1 nud permanent",
		"bridge fdb replace 02:00:00:00:00:0a dev flannel.1 dst 198.18.0.2 self permanent",
		"bridge fdb replace 02:00:00:00:00:0b dev flannel.1 dst 198.18.0.3 self permanent",
		"ip route replace 198.19.2.0/24 via 198.19.2.0 dev flannel.1 onlink",
	)
	partial := kernel.Entries{
		Neighs: append(slices.Clone(peer2.Neighs), peer3.Neighs...),
		FDB:    peer2.FDB,
		Routes: peer2.Routes,
	}
	r.checkState(t, partial)
	if !r.rec.Pending() {
		t.Error("no work pending after a failure")
	}

	// The next Apply retries only what failed.
	r.apply(t, false,
		"bridge fdb replace 02:00:00:00:00:0b dev flannel.1 dst 198.18.0.3 self permanent",
		"ip route replace 198.19.3.0/24 via 198.19.3.0 dev flannel.1 onlink",
	)
	if r.rec.Pending() {
		t.Error("work pending after a clean Apply")
	}

	// A failed delete leaves the entry installed, and says so.
	r.rec.Remove("b")
	r.fake.FailWith("ip route del", unix.EPERM, 1)
	r.fake.ResetCalls()
	_, err := r.rec.Apply()
	if !errors.Is(err, unix.EPERM) {
		t.Fatalf("Apply error %v, want EPERM", err)
	}
	if !strings.Contains(err.Error(), "deleting route 198.19.3.0/24 via 198.19.3.0 dev flannel.1") {
		t.Errorf("error %q does not name the route", err)
	}
	if !slices.Contains(r.rec.Installed().Routes, peer3.Routes[0]) {
		t.Error("Installed lost a route whose delete failed")
	}
	r.apply(t, false, "ip route del 198.19.3.0/24 via 198.19.3.0 dev flannel.1 onlink")
	r.checkState(t, peer2)
}

func TestReconcilerDeleteOfMissingEntryIsSuccess(t *testing.T) {
	r := newRig(t)
	peer2 := vxlanPeer(r.vx, "198.19.2.0/24", macA, "198.18.0.2")
	r.rec.Set("a", peer2)
	r.apply(t, false,
		"ip neigh replace 198.19.2.0 lladdr 02:00:00:00:00:0a dev flannel.1 nud permanent",
		"bridge fdb replace 02:00:00:00:00:0a dev flannel.1 dst 198.18.0.2 self permanent",
		"ip route replace 198.19.2.0/24 via 198.19.2.0 dev flannel.1 onlink",
	)

	// The entries vanish behind the reconciler's back; removing the peer still succeeds.
	r.fake.Drop(peer2)
	r.rec.Remove("a")
	r.apply(t, false,
		"ip route del 198.19.2.0/24 via 198.19.2.0 dev flannel.1 onlink",
		"bridge fdb del 02:00:00:00:00:0a dev flannel.1 dst 198.18.0.2 self",
		"ip neigh del 198.19.2.0 dev flannel.1",
	)
	r.checkState(t, kernel.Entries{})
}

func TestReconcilerSharedMAC(t *testing.T) {
	r := newRig(t)
	// Two peers advertise one VtepMAC (a cloned machine): the first keeps the FDB entry,
	// and when it leaves the other gets it.
	a := vxlanPeer(r.vx, "198.19.2.0/24", macA, "198.18.0.2")
	b := vxlanPeer(r.vx, "198.19.3.0/24", macA, "198.18.0.3")
	r.rec.Set("a", a)
	r.rec.Set("b", b)
	r.apply(t, false,
		"ip neigh replace 198.19.2.0 lladdr 02:00:00:00:00:0a dev flannel.1 nud permanent",
		"ip neigh replace 198.19.3.0 lladdr 02:00:00:00:00:0a dev flannel.1 nud permanent",
		"bridge fdb replace 02:00:00:00:00:0a dev flannel.1 dst 198.18.0.2 self permanent",
		"ip route replace 198.19.2.0/24 via 198.19.2.0 dev flannel.1 onlink",
		"ip route replace 198.19.3.0/24 via 198.19.3.0 dev flannel.1 onlink",
	)
	r.rec.Remove("a")
	r.apply(t, false,
		"bridge fdb replace 02:00:00:00:00:0a dev flannel.1 dst 198.18.0.3 self permanent",
		"ip route del 198.19.2.0/24 via 198.19.2.0 dev flannel.1 onlink",
		"ip neigh del 198.19.2.0 dev flannel.1",
	)
	r.checkState(t, b)
}

func TestLoadError(t *testing.T) {
	fake := kerneltest.NewFake()
	vx := fake.AddLink("flannel.1")
	rec := kernel.NewReconciler(fake, vxlanScope(vx), discard())
	fake.FailWith("bridge fdb show", unix.EIO, 1)
	err := rec.Load()
	if !errors.Is(err, unix.EIO) || !strings.Contains(err.Error(), "listing FDB entries on flannel.1") {
		t.Errorf("Load error %v, want EIO naming the FDB listing", err)
	}
}

func TestParseMAC(t *testing.T) {
	tests := []struct {
		in      string
		want    string
		wantErr bool
	}{
		{in: "02:42:C6:12:00:01", want: "02:42:c6:12:00:01"},
		{in: "02-42-c6-12-00-01", want: "02:42:c6:12:00:01"},
		{in: "0242.c612.0001", want: "02:42:c6:12:00:01"},
		{in: "02:42:c6:12:00:01:02:03", wantErr: true},
		{in: "", wantErr: true},
		{in: "zz:42:c6:12:00:01", wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			m, err := kernel.ParseMAC(tt.in)
			if (err != nil) != tt.wantErr {
				t.Fatalf("ParseMAC(%q) error %v, want error %v", tt.in, err, tt.wantErr)
			}
			if err == nil && m.String() != tt.want {
				t.Errorf("ParseMAC(%q) = %s, want %s", tt.in, m, tt.want)
			}
		})
	}
}

func FuzzParseMAC(f *testing.F) {
	for _, s := range []string{"02:42:c6:12:00:01", "0242.c612.0001", "01-00-5e-00-00-01", ""} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		m, err := kernel.ParseMAC(s)
		if err != nil {
			return
		}
		again, err := kernel.ParseMAC(m.String())
		if err != nil || again != m {
			t.Errorf("ParseMAC(%q) = %s, which parses back as %s, %v", s, m, again, err)
		}
	})
}
