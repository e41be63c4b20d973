package bridge

import (
	"context"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/weftnet/weft/internal/logbuf"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"

	"github.com/weftnet/weft/internal/nstest"
)

var discard = slog.New(slog.NewTextHandler(io.Discard, nil))

var testCfg = Config{
	Name:   "wt-br0",
	Subnet: netip.MustParsePrefix("198.19.5.0/24"),
	MTU:    1450,
}

func TestEnsureRejectsBadConfig(t *testing.T) {
	tests := []struct {
		name string
		cfg  Config
		want string
	}{
		{name: "long name",
			cfg:  Config{Name: "weft-bridge-0123", Subnet: testCfg.Subnet, MTU: 1450},
			want: `"weft-bridge-0123" is 16 bytes long`},
		{name: "slash", cfg: Config{Name: "br/0", Subnet: testCfg.Subnet, MTU: 1450},
			want: `"br/0"`},
		{name: "empty name", cfg: Config{Subnet: testCfg.Subnet, MTU: 1450}, want: "empty"},
		{name: "no subnet", cfg: Config{Name: "cni0", MTU: 1450}, want: "invalid Prefix"},
		{name: "IPv6 subnet", cfg: Config{Name: "cni0", MTU: 1450,
			Subnet: netip.MustParsePrefix("2001:db8::/64")}, want: "2001:db8::/64"},
		{name: "tiny subnet", cfg: Config{Name: "cni0", MTU: 1450,
			Subnet: netip.MustParsePrefix("198.19.5.0/31")}, want: "198.19.5.0/31"},
		{name: "no MTU", cfg: Config{Name: "cni0", Subnet: testCfg.Subnet}, want: "MTU 0"},
		{name: "huge MTU", cfg: Config{Name: "cni0", Subnet: testCfg.Subnet, MTU: 70000},
			want: "MTU 70000"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			// Validation comes first, so no handle is needed to reach it.
			_, err := Ensure(nil, discard, tt.cfg)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("error %v, want one containing %s", err, tt.want)
			}
		})
	}
}

// ensureIn runs Ensure on a thread inside ns, so that the forwarding switch it writes is
// the namespace's own.
func ensureIn(t *testing.T, ns netns.NsHandle, h *netlink.Handle, log *slog.Logger,
	cfg Config) (Result, error) {
	t.Helper()
	var res Result
	var err error
	nstest.Do(t, ns, func() { res, err = Ensure(h, log, cfg) })
	return res, err
}

// bridgeState is what the tests check of a link.
type bridgeState struct {
	kind  string
	mtu   int
	up    bool
	addrs []netip.Prefix
}

func stateOf(t *testing.T, h *netlink.Handle, name string) bridgeState {
	t.Helper()
	link, err := h.LinkByName(name)
	if err != nil {
		t.Fatalf("looking up %s: %v", name, err)
	}
	have, err := addrs(h, link)
	if err != nil {
		t.Fatal(err)
	}
	return bridgeState{
		kind:  link.Type(),
		mtu:   link.Attrs().MTU,
		up:    link.Attrs().Flags&net.FlagUp != 0,
		addrs: have,
	}
}

func readIPForward(t *testing.T, ns netns.NsHandle) string {
	t.Helper()
	var data []byte
	var err error
	nstest.Do(t, ns, func() { data, err = os.ReadFile(ipForwardPath) })
	if err != nil {
		t.Fatal(err)
	}
	return strings.TrimSpace(string(data))
}

// addPort creates a veth pair in h's namespace with the given MTU and makes one end a
// port of the bridge.
func addPort(t *testing.T, h *netlink.Handle, bridge, name string, mtu int) {
	t.Helper()
	veth := &netlink.Veth{
		LinkAttrs: netlink.LinkAttrs{Name: name, MTU: mtu},
		PeerName:  name + "p",
	}
	if err := h.LinkAdd(veth); err != nil {
		t.Fatalf("adding veth %s: %v", name, err)
	}
	br, err := h.LinkByName(bridge)
	if err != nil {
		t.Fatal(err)
	}
	port, err := h.LinkByName(name)
	if err != nil {
		t.Fatal(err)
	}
	if err := h.LinkSetMaster(port, br); err != nil {
		t.Fatalf("adding %s to %s: %v", name, bridge, err)
	}
}

func TestEnsureCreates(t *testing.T) {
	ns := nstest.New(t)
	h := nstest.Handle(t, ns)
	if got := readIPForward(t, ns); got != "0" {
		t.Fatalf("a new namespace forwards already (ip_forward %s); the test proves nothing", got)
	}

	res, err := ensureIn(t, ns, h, discard, testCfg)
	if err != nil {
		t.Fatalf("Ensure: %v", err)
	}
	if !res.Created || !res.Changed || res.Index == 0 {
		t.Errorf("result %+v, want a created bridge", res)
	}
	got := stateOf(t, h, testCfg.Name)
	want := bridgeState{kind: "bridge", mtu: 1450, up: true,
		addrs: []netip.Prefix{netip.MustParsePrefix("198.19.5.1/24")}}
	if got.kind != want.kind || got.mtu != want.mtu || got.up != want.up ||
		len(got.addrs) != 1 || got.addrs[0] != want.addrs[0] {
		t.Errorf("bridge is %+v, want %+v", got, want)
	}
	if fwd := readIPForward(t, ns); fwd != "1" {
		t.Errorf("ip_forward is %s, want 1", fwd)
	}

	res, err = ensureIn(t, ns, h, discard, testCfg)
	if err != nil || res.Changed || res.Created {
		t.Errorf("second Ensure: %+v, %v; want no change", res, err)
	}
}

func TestEnsurePinsMTU(t *testing.T) {
	for _, mtu := range []int{1450, 1500} {
		t.Run(strconv.Itoa(mtu), func(t *testing.T) {
			ns := nstest.New(t)
			h := nstest.Handle(t, ns)
			cfg := testCfg
			cfg.MTU = mtu
			if _, err := ensureIn(t, ns, h, discard, cfg); err != nil {
				t.Fatalf("Ensure: %v", err)
			}

			addPort(t, h, cfg.Name, "wt-p0", 9000)
			if got := stateOf(t, h, cfg.Name).mtu; got != mtu {
				t.Errorf("bridge MTU is %d after a 9000-byte port joined, want %d", got, mtu)
			}
		})
	}
}

func TestEnsureReplacesOldLease(t *testing.T) {
	ns := nstest.New(t)
	h := nstest.Handle(t, ns)
	br := &netlink.Bridge{LinkAttrs: netlink.LinkAttrs{Name: testCfg.Name}}
	if err := h.LinkAdd(br); err != nil {
		t.Fatal(err)
	}
	// The old lease's gateway, and a stray address in the new subnet that the kernel
	// makes the primary one, so that removing it takes the new address along.
	for _, a := range []string{"198.19.9.1/24", "198.19.5.7/24"} {
		if err := h.AddrAdd(br, toAddr(netip.MustParsePrefix(a))); err != nil {
			t.Fatal(err)
		}
	}

	var logs logbuf.Buffer
	log := slog.New(slog.NewTextHandler(&logs, nil))
	res, err := ensureIn(t, ns, h, log, testCfg)
	if err != nil {
		t.Fatalf("Ensure: %v", err)
	}
	if res.Created || !res.Changed {
		t.Errorf("result %+v, want an adopted, changed bridge", res)
	}
	got := stateOf(t, h, testCfg.Name).addrs
	if len(got) != 1 || got[0] != netip.MustParsePrefix("198.19.5.1/24") {
		t.Errorf("addresses %v, want only 198.19.5.1/24", got)
	}
	var replaced string
	for _, line := range strings.Split(logs.String(), "\n") {
		if strings.Contains(line, "old=198.19.9.1/24") {
			replaced = line
		}
	}
	if !strings.Contains(replaced, "level=INFO") ||
		!strings.Contains(replaced, "addr=198.19.5.1/24") {
		t.Errorf("no Info line names the old and the new address; logs:\n%s", logs.String())
	}
}

func TestEnsureRefusesOtherLink(t *testing.T) {
	ns := nstest.New(t)
	h := nstest.Handle(t, ns)
	veth := &netlink.Veth{
		LinkAttrs: netlink.LinkAttrs{Name: testCfg.Name, MTU: 1400},
		PeerName:  "wt-peer",
	}
	if err := h.LinkAdd(veth); err != nil {
		t.Fatal(err)
	}
	if err := h.AddrAdd(veth, toAddr(netip.MustParsePrefix("198.19.9.1/24"))); err != nil {
		t.Fatal(err)
	}
	before := stateOf(t, h, testCfg.Name)

	_, err := ensureIn(t, ns, h, discard, testCfg)
	if err == nil || !strings.Contains(err.Error(), testCfg.Name) ||
		!strings.Contains(err.Error(), "veth") {
		t.Fatalf("error %v, want one naming %s and its type", err, testCfg.Name)
	}
	after := stateOf(t, h, testCfg.Name)
	if after.kind != before.kind || after.mtu != before.mtu || after.up != before.up ||
		len(after.addrs) != 1 || after.addrs[0] != before.addrs[0] {
		t.Errorf("link changed from %+v to %+v", before, after)
	}
	if fwd := readIPForward(t, ns); fwd != "0" {
		t.Errorf("ip_forward is %s after a refused Ensure, want 0", fwd)
	}
}

func TestKeepRestoresMTU(t *testing.T) {
	ns := nstest.New(t)
	h := nstest.Handle(t, ns)

	// An MTU given when the bridge is created does not pin it: this bridge follows its
	// ports until something sets the MTU in a change of its own.
	br := &netlink.Bridge{LinkAttrs: netlink.LinkAttrs{Name: testCfg.Name, MTU: testCfg.MTU}}
	if err := h.LinkAdd(br); err != nil {
		t.Fatal(err)
	}
	res, err := ensureIn(t, ns, h, discard, testCfg)
	if err != nil || res.Created {
		t.Fatalf("Ensure: %+v, %v", res, err)
	}
	addPort(t, h, testCfg.Name, "wt-p0", 9000)
	if got := stateOf(t, h, testCfg.Name).mtu; got != 9000 {
		t.Fatalf("bridge MTU is %d after a 9000-byte port joined; the kernel no longer "+
			"moves unpinned bridges and this test proves nothing", got)
	}

	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go nstest.Do(t, ns, func() { done <- Keep(ctx, h, discard, testCfg, 20*time.Millisecond) })
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Keep: %v", err)
		}
	}()

	deadline := time.Now().Add(5 * time.Second)
	for stateOf(t, h, testCfg.Name).mtu != testCfg.MTU {
		if time.Now().After(deadline) {
			t.Fatalf("Keep did not restore MTU %d", testCfg.MTU)
		}
		time.Sleep(10 * time.Millisecond)
	}

	// Now pinned: another large port leaves it alone.
	addPort(t, h, testCfg.Name, "wt-p1", 9000)
	if got := stateOf(t, h, testCfg.Name).mtu; got != testCfg.MTU {
		t.Errorf("bridge MTU is %d after a second port joined, want %d", got, testCfg.MTU)
	}
}

func TestKeepRejectsBadPeriod(t *testing.T) {
	err := Keep(context.Background(), nil, discard, testCfg, 0)
	if err == nil || !strings.Contains(err.Error(), "period") {
		t.Errorf("error %v, want one about the period", err)
	}
}

func TestEnsureRemovesHalfMadeBridge(t *testing.T) {
	ns := nstest.New(t)
	h := nstest.Handle(t, ns)
	saved := ipForwardPath
	ipForwardPath = "/nonexistent/ip_forward"
	defer func() { ipForwardPath = saved }()

	_, err := ensureIn(t, ns, h, discard, testCfg)
	if err == nil || !strings.Contains(err.Error(), ipForwardPath) {
		t.Fatalf("error %v, want one naming %s", err, ipForwardPath)
	}
	if _, err := h.LinkByName(testCfg.Name); err == nil {
		t.Error("the bridge created before the failing step is still there")
	}
}
