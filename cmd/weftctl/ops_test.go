package main

import (
	"context"
	"encoding/json"
	"net/http/httptest"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/weftnet/weft/internal/logbuf"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/weftnet/weft/internal/etcdtest"
	"github.com/weftnet/weft/overlay"
	"github.com/weftnet/weft/subnet"
)

// writeFile writes content to a new file in the test's directory and returns its path.
func writeFile(t *testing.T, name, content string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

// weftctlCase is one weftctl command line and what it must give.
type weftctlCase struct {
	name   string
	args   []string
	code   int
	stdout []string // parts of stdout
	stderr []string // parts of stderr
	absent []string // in neither
}

func (c weftctlCase) run(t *testing.T, extra ...string) {
	t.Helper()
	code, stdout, stderr := runArgs(append(append([]string(nil), c.args...), extra...)...)
	ok := code == c.code
	for _, w := range c.stdout {
		ok = ok && strings.Contains(stdout, w)
	}
	for _, w := range c.stderr {
		ok = ok && strings.Contains(stderr, w)
	}
	for _, w := range c.absent {
		ok = ok && !strings.Contains(stdout+stderr, w)
	}
	if !ok {
		t.Errorf("weftctl %q = %d\nstdout:\n%s\nstderr:\n%s\nwant %d, stdout with %q, "+
			"stderr with %q, neither with %q", c.args, code, stdout, stderr, c.code,
			c.stdout, c.stderr, c.absent)
	}
}

const goodConfig = `{"Network": "198.19.0.0/16", "SubnetLen": 24,
	"Backend": {"Type": "vxlan", "VNI": 7}}`

func TestConfigCommands(t *testing.T) {
	etcd := etcdtest.Start(t)
	const prefix = "/weft/ctl-config"
	etcdArgs := []string{"-etcd-endpoints", etcd.Endpoints[0], "-etcd-prefix", prefix}
	good := writeFile(t, "good.json", goodConfig)
	bad := writeFile(t, "bad.json", `{"Network": "198.19.0.0/16", "SubnetLen": 33}`)
	notJSON := writeFile(t, "x.json", `{"Network": `)
	noBackend := writeFile(t, "udp.json", `{"Network": "198.19.0.0/16"}`)

	for _, c := range []weftctlCase{
		{name: "validate good", args: []string{"config", "validate", good}, code: 0,
			stdout: []string{"is a valid network config", "SubnetLen       24",
				"SubnetMin       198.19.1.0", "SubnetMax       198.19.255.0",
				"subnets         255", "backend         vxlan"}},
		{name: "validate bad", args: []string{"config", "validate", bad}, code: 1,
			stderr: []string{"weftctl config: validate: " + bad + ": ", "SubnetLen"}},
		{name: "validate not JSON", args: []string{"config", "validate", notJSON}, code: 1,
			stderr: []string{notJSON}},
		{name: "validate default backend", args: []string{"config", "validate", noBackend},
			code: 0, stdout: []string{"udp (no Backend object"}},
		{name: "validate missing file", args: []string{"config", "validate", "/nonexistent"},
			code: 1, stderr: []string{"/nonexistent"}},
		{name: "validate two files", args: []string{"config", "validate", good, bad}, code: 2,
			stderr: []string{"want one FILE"}},
		{name: "get before set", args: []string{"config", "get"}, code: 1,
			stderr: []string{"no network config at " + prefix + "/config"}},
		{name: "set bad", args: []string{"config", "set", bad}, code: 1,
			stderr: []string{"SubnetLen", "nothing stored"}},
		{name: "still nothing", args: []string{"config", "get"}, code: 1},
		{name: "set good", args: []string{"config", "set", good}, code: 0,
			stdout: []string{"stored " + good + " at " + prefix + "/config", "SubnetMin"}},
		{name: "get", args: []string{"config", "get"}, code: 0, stdout: []string{goodConfig}},
		{name: "unknown", args: []string{"config", "frob"}, code: 2,
			stderr: []string{`unknown config command "frob"`}},
	} {
		t.Run(c.name, func(t *testing.T) {
			if c.args[1] == "validate" {
				c.run(t) // offline: no etcd options
				return
			}
			c.run(t, etcdArgs...)
		})
	}

	t.Run("environment", func(t *testing.T) {
		t.Setenv("FLANNELD_ETCD_ENDPOINTS", etcd.Endpoints[0])
		t.Setenv("FLANNELD_ETCD_PREFIX", prefix)
		weftctlCase{args: []string{"config", "get"}, code: 0,
			stdout: []string{goodConfig}}.run(t)
	})
	t.Run("etcd away", func(t *testing.T) {
		weftctlCase{args: []string{"config", "get", "-etcd-endpoints", "http://127.0.0.1:1",
			"-timeout", "300ms"}, code: 1,
			stderr: []string{"etcd at http://127.0.0.1:1 did not answer within 300ms"}}.run(t)
	})
}

// putLease stores a lease key; ttl 0 makes a reservation.
func putLease(t *testing.T, c *clientv3.Client, prefix, key, value string, ttl int64) {
	t.Helper()
	ctx := context.Background()
	var opts []clientv3.OpOption
	if ttl > 0 {
		g, err := c.Grant(ctx, ttl)
		if err != nil {
			t.Fatal(err)
		}
		opts = append(opts, clientv3.WithLease(g.ID))
	}
	if _, err := c.Put(ctx, prefix+"/subnets/"+key, value, opts...); err != nil {
		t.Fatal(err)
	}
}

func TestLeaseCommands(t *testing.T) {
	etcd := etcdtest.Start(t)
	const prefix = "/weft/ctl-leases"
	ctx := context.Background()
	if _, err := etcd.Client.Put(ctx, prefix+"/config", goodConfig); err != nil {
		t.Fatal(err)
	}
	putLease(t, etcd.Client, prefix, "198.19.1.0-24", `{"PublicIP":"198.18.0.1",`+
		`"PublicIPv6":null,"BackendType":"vxlan","BackendData":{"VNI":7,`+
		`"VtepMAC":"6a:1e:33:10:00:01"}}`, 3600)
	putLease(t, etcd.Client, prefix, "198.19.2.0-24",
		`{"PublicIP":"198.18.0.2","PublicIPv6":null}`, 0)
	etcdArgs := []string{"-etcd-endpoints", etcd.Endpoints[0], "-etcd-prefix", prefix}

	for _, c := range []weftctlCase{
		{name: "table", args: []string{"leases"}, code: 0, stdout: []string{
			"SUBNET         PUBLIC IP   BACKEND  VTEP MAC           TTL",
			"198.19.1.0/24  198.18.0.1  vxlan    6a:1e:33:10:00:01  59m",
			"198.19.2.0/24  198.18.0.2  -        -                  reserved"}},
		{name: "reserve outside the range", code: 1,
			args:   []string{"reserve", "198.19.0.0/24", "--public-ip", "198.18.0.9"},
			stderr: []string{"lies outside the range SubnetMin 198.19.1.0 to SubnetMax"}},
		{name: "reserve outside the network", code: 1,
			args:   []string{"reserve", "10.0.0.0/24", "--public-ip", "198.18.0.9"},
			stderr: []string{"10.0.0.0/24 lies outside", "network 198.19.0.0/16"}},
		{name: "reserve misaligned", code: 2,
			args:   []string{"reserve", "198.19.9.1/24", "--public-ip", "198.18.0.9"},
			stderr: []string{"198.19.9.1/24 is not aligned: its network address is 198.19.9.0/24"}},
		{name: "reserve wrong length", code: 1,
			args:   []string{"reserve", "198.19.9.0/25", "--public-ip", "198.18.0.9"},
			stderr: []string{"198.19.9.0/25: the network's SubnetLen is 24"}},
		{name: "reserve overlapping", code: 1,
			args:   []string{"reserve", "198.19.1.0/24", "--public-ip", "198.18.0.9"},
			stderr: []string{"198.19.1.0"}},
		{name: "reserve without a public IP", code: 2, args: []string{"reserve", "198.19.9.0/24"},
			stderr: []string{"-public-ip is required"}},
		{name: "reserve", code: 0,
			args: []string{"reserve", "--public-ip", "198.18.0.9", "198.19.9.0/24"},
			stdout: []string{"reserved 198.19.9.0-24 for 198.18.0.9 at " + prefix +
				"/subnets/198.19.9.0-24"}},
		{name: "unreserve a live lease", code: 1, args: []string{"unreserve", "198.19.1.0/24"},
			stderr: []string{"198.19.1.0-24 is the lease of 198.18.0.1", "not a reservation",
				"-force"}},
		{name: "unreserve", code: 0, args: []string{"unreserve", "198.19.9.0/24"},
			stdout: []string{"removed the reservation 198.19.9.0-24 of 198.18.0.9"}},
		{name: "unreserve again", code: 0, args: []string{"unreserve", "198.19.9.0/24"},
			stdout: []string{"no lease on 198.19.9.0/24; nothing to remove"}},
		{name: "unreserve forced", code: 0,
			args:   []string{"unreserve", "198.19.1.0/24", "--force"},
			stdout: []string{"removed the lease 198.19.1.0-24 of 198.18.0.1"}},
	} {
		t.Run(c.name, func(t *testing.T) { c.run(t, etcdArgs...) })
	}

	resp, err := etcd.Client.Get(ctx, prefix+"/subnets/", clientv3.WithPrefix(),
		clientv3.WithKeysOnly())
	if err != nil || len(resp.Kvs) != 1 || string(resp.Kvs[0].Key) != prefix+
		"/subnets/198.19.2.0-24" {
		t.Errorf("leases left: %v (err %v), want only the first reservation", resp.Kvs, err)
	}

	t.Run("json", func(t *testing.T) {
		code, stdout, stderr := runArgs(append([]string{"leases", "--json"}, etcdArgs...)...)
		var got []leaseView
		if code != 0 || json.Unmarshal([]byte(stdout), &got) != nil || len(got) != 1 ||
			!got[0].Reserved || got[0].PublicIP.String() != "198.18.0.2" {
			t.Errorf("leases --json = %d %s %s", code, stdout, stderr)
		}
	})
}

func TestLeasesWatch(t *testing.T) {
	etcd := etcdtest.Start(t)
	const prefix = "/weft/ctl-watch"
	putLease(t, etcd.Client, prefix, "198.19.1.0-24",
		`{"PublicIP":"198.18.0.1","PublicIPv6":null,"BackendType":"host-gw"}`, 3600)

	var out, errOut logbuf.Buffer
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan int, 1)
	go func() {
		done <- run(ctx, &env{stdout: &out, stderr: &errOut}, []string{"leases", "--watch",
			"--json", "-etcd-endpoints", etcd.Endpoints[0], "-etcd-prefix", prefix})
	}()
	lines := func() []leaseEvent {
		var evs []leaseEvent
		for _, l := range strings.Split(strings.TrimSpace(out.String()), "\n") {
			var ev leaseEvent
			if json.Unmarshal([]byte(l), &ev) == nil {
				evs = append(evs, ev)
			}
		}
		return evs
	}
	waitFor := func(n int) {
		t.Helper()
		deadline := time.Now().Add(10 * time.Second)
		for len(lines()) < n {
			if time.Now().After(deadline) {
				t.Fatalf("%d events within 10s, want %d:\n%s\n%s", len(lines()), n, out.String(),
					errOut.String())
			}
			time.Sleep(20 * time.Millisecond)
		}
	}

	waitFor(1)
	putLease(t, etcd.Client, prefix, "198.19.2.0-24",
		`{"PublicIP":"198.18.0.2","PublicIPv6":null,"BackendType":"host-gw"}`, 3600)
	if _, err := etcd.Client.Delete(context.Background(), prefix+"/subnets/198.19.1.0-24"); err != nil {
		t.Fatal(err)
	}
	waitFor(3)
	cancel()
	if code := <-done; code != 1 && code != 0 {
		t.Errorf("leases --watch exited %d", code)
	}
	evs := lines()
	want := []string{"added 198.19.1.0/24", "added 198.19.2.0/24", "removed 198.19.1.0/24"}
	for i, w := range want {
		if got := evs[i].Event + " " + evs[i].Lease.Subnet.String(); got != w {
			t.Errorf("event %d = %q, want %q", i, got, w)
		}
	}
}

func TestStatusCommand(t *testing.T) {
	var h overlay.Health
	h.SetReady(true)
	srv := httptest.NewServer(h.Handler())
	defer srv.Close()
	addr := strings.TrimPrefix(srv.URL, "http://")

	for _, c := range []weftctlCase{
		{name: "text", args: []string{"status", "--addr", addr}, code: 0,
			stdout: []string{"weftd:", "ready:           yes", "lease:           none yet",
				"peers:           0 programmed, synced never"}},
		{name: "json", args: []string{"status", "--addr", addr, "--json"}, code: 0,
			stdout: []string{`"Ready": true`}},
		{name: "nobody there", args: []string{"status", "--addr", "127.0.0.1:1"}, code: 1,
			stderr: []string{"no weftd answers on 127.0.0.1:1"}},
	} {
		t.Run(c.name, func(t *testing.T) { c.run(t) })
	}
	t.Run("address from the environment", func(t *testing.T) {
		host, port, _ := strings.Cut(addr, ":")
		t.Setenv("FLANNELD_HEALTHZ_IP", host)
		t.Setenv("FLANNELD_HEALTHZ_PORT", port)
		weftctlCase{args: []string{"status"}, code: 0, stdout: []string{"ready:"}}.run(t)
	})
}

func TestWriteStatus(t *testing.T) {
	now := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	l := &subnet.Lease{Subnet: mustPrefix(t, "198.19.5.0/24"),
		Attrs: subnet.LeaseAttrs{PublicIP: mustAddr(t, "198.18.0.5"), BackendType: "vxlan",
			BackendData: json.RawMessage(`{"VNI":7,"VtepMAC":"6a:1e:33:10:00:05"}`)},
		Expiration: now.Add(23 * time.Hour), EtcdLease: 1}
	s := overlay.Status{
		Version: "v1", State: "running: lease 198.19.5.0-24, backend vxlan", Ready: true,
		Started: now.Add(-time.Hour), Network: mustPrefix(t, "198.19.0.0/16"),
		Backend: "vxlan", Lease: overlay.NewLeaseStatus(l), Peers: 2,
		PeersSynced: now.Add(-59 * time.Minute), LeaseRenewals: 3, NetlinkErrors: 1,
		RecentErrors: []overlay.LogEntry{{Time: now.Add(-time.Minute), Level: "warn",
			Subsystem: "backend", Message: "programming peers", Err: "file exists"}},
	}
	var b strings.Builder
	if err := writeStatus(&b, &s, now); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{
		"weftd:           v1, running: lease 198.19.5.0-24, backend vxlan\n",
		"network:         198.19.0.0/16, backend vxlan\n",
		"lease:           198.19.5.0/24, public IP 198.18.0.5\n",
		"expires:         2026-01-03T02:04:05Z (in 23h0m0s)\n",
		"vtep mac:        6a:1e:33:10:00:05\n",
		"peers:           2 programmed, synced 2026-01-02T02:05:05Z (59m0s ago)\n",
		"renewals:        3, 0 failed; lease lost 0 times\n",
		"kernel errors:   1\n",
		"  2026-01-02T03:03:05Z warn  backend: programming peers: file exists\n",
	} {
		if !strings.Contains(b.String(), want) {
			t.Errorf("status lacks %q:\n%s", want, b.String())
		}
	}
}

// FuzzStatus feeds arbitrary JSON through the decoding and printing of a daemon's
// status, as weftctl status receives it from the health port: nothing may panic.
func FuzzStatus(f *testing.F) {
	f.Add(`{"Version":"v1","Ready":true,"Lease":{"Subnet":"198.19.5.0/24",` +
		`"PublicIP":"198.18.0.5","BackendData":{"VtepMAC":"x"}},"RecentErrors":[{}]}`)
	f.Add(`{"Network":"","Lease":{"Reserved":true},"Peers":-1}`)
	f.Fuzz(func(t *testing.T, body string) {
		var s overlay.Status
		if json.Unmarshal([]byte(body), &s) != nil {
			return
		}
		var b strings.Builder
		if err := writeStatus(&b, &s, time.Now()); err != nil {
			t.Fatal(err)
		}
	})
}

func mustPrefix(t *testing.T, s string) netip.Prefix {
	t.Helper()
	p, err := netip.ParsePrefix(s)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func mustAddr(t *testing.T, s string) netip.Addr {
	t.Helper()
	a, err := netip.ParseAddr(s)
	if err != nil {
		t.Fatal(err)
	}
	return a
}
