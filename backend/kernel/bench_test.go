package kernel_test

import (
	"fmt"
	"testing"

	"github.com/weftnet/weft/backend/kernel"
	"github.com/weftnet/weft/backend/kerneltest"
)

// benchPeers is the number of peers of the comparison benchmarks, the size at which the
// daemon's memory is promised.
const benchPeers = 1000

// benchWant returns what each of n peers wants on link: the VXLAN entries of a /26 of
// network past own, a MAC of its own and a tunnel endpoint in 198.18.0.0/15.
func benchWant(link kernel.Link, n int) map[string]kernel.Entries {
	want := make(map[string]kernel.Entries, n)
	for i := range n {
		j := i + 8 // 198.19.2.0/26 onwards, past own's 198.19.1.0/24
		subnet := fmt.Sprintf("198.19.%d.%d/26", j/4, j%4*64)
		mac := kernel.MAC{0x02, 0, 0, 0, byte(i >> 8), byte(i)}
		public := fmt.Sprintf("198.18.%d.%d", i/250, i%250+2)
		want[fmt.Sprintf("peer-%04d", i)] = vxlanPeer(link, subnet, mac, public)
	}
	return want
}

// benchSync sets benchPeers peers on rec, installs them, and then runs Sync b.N times,
// failing on any write: each iteration is one full comparison (listing and diff) with
// nothing to change, which is what the periodic resync costs in a steady state.
func benchSync(b *testing.B, rec *kernel.Reconciler, link kernel.Link, reset func()) {
	b.Helper()
	for o, e := range benchWant(link, benchPeers) {
		rec.Set(o, e)
	}
	if n, err := rec.Sync(); err != nil || n != 3*benchPeers {
		b.Fatalf("first Sync: %d writes, %v; want %d", n, err, 3*benchPeers)
	}
	if got := rec.Installed().Len(); got != 3*benchPeers {
		b.Fatalf("%d entries installed, want %d", got, 3*benchPeers)
	}

	b.ReportAllocs()
	b.ResetTimer()
	for range b.N {
		reset()
		n, err := rec.Sync()
		if err != nil || n != 0 {
			b.Fatalf("Sync in a steady state: %d writes, %v; want none", n, err)
		}
	}
}

// BenchmarkSyncSteady is one full comparison of 1,000 VXLAN peers against a fake kernel
// that holds all their entries. It is mostly the Reconciler's own cost: the fake's
// listings are three sorted slices.
func BenchmarkSyncSteady(b *testing.B) {
	fake := kerneltest.NewFake()
	vx := fake.AddLink("flannel.1")
	rec := kernel.NewReconciler(fake, vxlanScope(vx), discard())
	benchSync(b, rec, vx, fake.ResetCalls)
}

// BenchmarkDiffSteady is Diff alone, for 1,000 VXLAN peers whose entries are all
// installed.
func BenchmarkDiffSteady(b *testing.B) {
	vx := kernel.Link{Index: 5, Name: "flannel.1"}
	want := benchWant(vx, benchPeers)
	var have kernel.Entries
	for _, e := range want {
		have.Neighs = append(have.Neighs, e.Neighs...)
		have.FDB = append(have.FDB, e.FDB...)
		have.Routes = append(have.Routes, e.Routes...)
	}
	for i := range have.Neighs {
		have.Neighs[i].Permanent = true
	}
	for i := range have.FDB {
		have.FDB[i].Permanent = true
	}

	b.ReportAllocs()
	b.ResetTimer()
	for range b.N {
		if ops := kernel.Diff(vxlanScope(vx), want, have); len(ops) != 0 {
			b.Fatalf("Diff of installed entries: %d ops, first %s", len(ops),
				ops[0].Command(vxlanScope(vx)))
		}
	}
}
