package netlab

import (
	"context"
	"fmt"
	"net/netip"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"

	"github.com/weftnet/weft/internal/nstest"
)

// testNS returns a namespace name unique to this test process, in the wt-e- range the
// lab's tests own, and deletes the namespace when the test ends.
func testNS(t *testing.T, suffix string) string {
	t.Helper()
	name := fmt.Sprintf("wt-e-nl%d-%s", os.Getpid(), suffix)
	t.Cleanup(func() {
		if err := Delete(name); err != nil {
			t.Errorf("cleanup: %v", err)
		}
	})
	return name
}

func TestCreateDelete(t *testing.T) {
	nstest.RequireRoot(t)
	name := testNS(t, "cd")
	before, err := netns.Get()
	if err != nil {
		t.Fatal(err)
	}
	defer before.Close()

	if err := Create(name); err != nil {
		t.Fatalf("Create: %v", err)
	}
	if !Exists(name) {
		t.Fatalf("Exists(%s) = false after Create", name)
	}
	if err := Create(name); err == nil || !strings.Contains(err.Error(), "already exists") {
		t.Errorf("second Create = %v, want an 'already exists' error", err)
	}
	names, err := List()
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Contains(names, name) {
		t.Errorf("List() = %v, want it to hold %s", names, name)
	}

	// The new namespace is a different one, with lo up and nothing else.
	h, err := NewHandle(name)
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close()
	links, err := Retry(h.LinkList)
	if err != nil {
		t.Fatal(err)
	}
	if len(links) != 1 || links[0].Attrs().Name != "lo" || links[0].Attrs().Flags&1 == 0 {
		t.Errorf("links in new namespace = %v, want only lo, up", linkNames(links))
	}
	ns, err := Open(name)
	if err != nil {
		t.Fatal(err)
	}
	if ns.Equal(before) {
		t.Error("the new namespace is the test's own")
	}
	ns.Close()

	// The caller's thread stayed where it was.
	after, err := netns.Get()
	if err != nil {
		t.Fatal(err)
	}
	defer after.Close()
	if !after.Equal(before) {
		t.Error("Create moved the calling thread into another namespace")
	}

	if err := Delete(name); err != nil {
		t.Fatalf("Delete: %v", err)
	}
	if Exists(name) {
		t.Errorf("Exists(%s) = true after Delete", name)
	}
	if _, err := os.Stat(Path(name)); !os.IsNotExist(err) {
		t.Errorf("%s still there after Delete: %v", Path(name), err)
	}
	if err := Delete(name); err != nil {
		t.Errorf("Delete of a deleted namespace = %v, want nil", err)
	}
}

func TestSetSysctl(t *testing.T) {
	nstest.RequireRoot(t)
	name := testNS(t, "sy")
	if err := Create(name); err != nil {
		t.Fatal(err)
	}
	if err := SetSysctl(name, "net.ipv4.ip_forward", "1"); err != nil {
		t.Fatalf("SetSysctl: %v", err)
	}
	var got []byte
	err := Do(name, func() error {
		var err error
		got, err = os.ReadFile("/proc/sys/net/ipv4/ip_forward")
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	if strings.TrimSpace(string(got)) != "1" {
		t.Errorf("ip_forward in %s = %q, want 1", name, got)
	}
	if err := SetSysctl(name, "kernel.hostname", "x"); err == nil {
		t.Error("SetSysctl accepted a key outside net.")
	}
}

// pair makes two namespaces joined by a veth pair a0 (198.18.9.1/24) - b0 (198.18.9.2/24).
func pair(t *testing.T) (a, b string) {
	t.Helper()
	nstest.RequireRoot(t)
	a, b = testNS(t, "a"), testNS(t, "b")
	for _, n := range []string{a, b} {
		if err := Create(n); err != nil {
			t.Fatal(err)
		}
	}
	ha, err := NewHandle(a)
	if err != nil {
		t.Fatal(err)
	}
	defer ha.Close()
	hb, err := NewHandle(b)
	if err != nil {
		t.Fatal(err)
	}
	defer hb.Close()
	if err := AddVeth(ha, Veth{Name: "a0", PeerName: "b0", PeerNS: b, MTU: 1400}); err != nil {
		t.Fatalf("AddVeth: %v", err)
	}
	if err := LinkSetup(ha, "a0", netip.MustParsePrefix("198.18.9.1/24"), ""); err != nil {
		t.Fatal(err)
	}
	if err := LinkSetup(hb, "b0", netip.MustParsePrefix("198.18.9.2/24"), ""); err != nil {
		t.Fatal(err)
	}
	for _, h := range []*netlink.Handle{ha, hb} {
		l, err := h.LinkByName(map[*netlink.Handle]string{ha: "a0", hb: "b0"}[h])
		if err != nil {
			t.Fatal(err)
		}
		if l.Attrs().MTU != 1400 {
			t.Errorf("%s MTU = %d, want 1400", l.Attrs().Name, l.Attrs().MTU)
		}
	}
	return a, b
}

func TestPing(t *testing.T) {
	a, b := pair(t)
	p, err := NewPinger(a)
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	ctx := context.Background()

	b2 := netip.MustParseAddr("198.18.9.2")
	a1 := netip.MustParseAddr("198.18.9.1")
	r := p.Ping(ctx, b2, PingOptions{Count: 5, Interval: 10 * time.Millisecond})
	if !r.OK() || r.Received != 5 || r.Min() <= 0 || r.Max() < r.Median() {
		t.Errorf("ping %s to 198.18.9.2 = %+v, want 5 of 5 answered", a, r)
	}

	// An address nobody has is lost, with ErrNoReply saying why.
	r = p.Ping(ctx, netip.MustParseAddr("198.18.9.3"),
		PingOptions{Count: 2, Interval: 10 * time.Millisecond, Timeout: 200 * time.Millisecond})
	if r.OK() || r.Received != 0 || len(r.Lost) != 2 || r.Err == nil {
		t.Errorf("ping to an absent address = %+v, want 2 lost", r)
	}

	// Two pingers in one namespace see only their own replies.
	q, err := NewPinger(b)
	if err != nil {
		t.Fatal(err)
	}
	defer q.Close()
	q2, err := NewPinger(b)
	if err != nil {
		t.Fatal(err)
	}
	defer q2.Close()
	done := make(chan PingResult)
	go func() {
		done <- q2.Ping(ctx, a1, PingOptions{Count: 20, Interval: time.Millisecond})
	}()
	r = q.Ping(ctx, a1, PingOptions{Count: 20, Interval: time.Millisecond})
	r2 := <-done
	if r.Received != 20 || r2.Received != 20 {
		t.Errorf("two pingers in %s received %d and %d of 20", b, r.Received, r2.Received)
	}

	// Until the context ends, Ping keeps going.
	ctx2, cancel := context.WithTimeout(ctx, 300*time.Millisecond)
	defer cancel()
	r = p.Ping(ctx2, b2, PingOptions{Interval: 20 * time.Millisecond})
	if r.Sent < 10 || !r.OK() {
		t.Errorf("continuous ping for 300ms at 50/s = %d sent, %d received", r.Sent, r.Received)
	}
}

func TestStreamAndRoundTrips(t *testing.T) {
	a, b := pair(t)
	ctx := context.Background()
	addr := netip.MustParseAddrPort("198.18.9.2:5201")

	res, err := Stream(ctx, StreamOptions{From: a, To: b, Addr: addr, Streams: 2,
		Duration: 300 * time.Millisecond})
	if err != nil {
		t.Fatalf("Stream: %v", err)
	}
	if res.Bytes < 1<<20 || res.Elapsed < 300*time.Millisecond || res.Gbps() <= 0 {
		t.Errorf("Stream = %d bytes in %s, want at least 1 MiB in 300ms", res.Bytes, res.Elapsed)
	}

	rtts, err := RoundTrips(ctx, a, b, addr, 50)
	if err != nil {
		t.Fatalf("RoundTrips: %v", err)
	}
	if len(rtts) != 50 || rtts[0] <= 0 {
		t.Errorf("RoundTrips = %d samples (first %s), want 50 positive", len(rtts), rtts[0])
	}

	// Nothing listens in a: the stream fails with an error naming the address.
	_, err = Stream(ctx, StreamOptions{From: b, To: a, Addr: addr,
		Duration: 100 * time.Millisecond})
	if err == nil || !strings.Contains(err.Error(), "198.18.9.2:5201") {
		t.Errorf("Stream to an address the receiver lacks = %v, want an error naming it", err)
	}
}

func TestStartInNamespace(t *testing.T) {
	nstest.RequireRoot(t)
	name := testNS(t, "st")
	if err := Create(name); err != nil {
		t.Fatal(err)
	}
	var want uint64
	if err := nsInode(Path(name), &want); err != nil {
		t.Fatal(err)
	}

	cmd := sleeper()
	if err := Start(name, cmd); err != nil {
		t.Fatal(err)
	}
	defer func() {
		cmd.Process.Kill()
		cmd.Wait()
	}()
	var child uint64
	if err := nsInode(fmt.Sprintf("/proc/%d/ns/net", cmd.Process.Pid), &child); err != nil {
		t.Fatal(err)
	}
	if child != want {
		t.Errorf("child's network namespace inode = %d, want %s's %d", child, name, want)
	}
}

func linkNames(links []netlink.Link) []string {
	var names []string
	for _, l := range links {
		names = append(names, l.Attrs().Name)
	}
	return names
}
