package overlay

import (
	"context"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/weftnet/weft/backend"
	"github.com/weftnet/weft/internal/etcdtest"
	"github.com/weftnet/weft/subnet"
)

// recordingBackend is a backend without a data plane that records what the daemon asks
// of it.
type recordingBackend struct {
	ext backend.ExternalInterface
	// beforeAcquire, when set, runs in each RegisterNetwork before the lease is acquired.
	beforeAcquire func()
	// gate, when set, holds each network's Run back from taking events until it is
	// closed.
	gate chan struct{}

	mu sync.Mutex
	// registered are the leases of every RegisterNetwork, in order.
	registered []subnet.Lease
	// running counts Run calls in progress; started counts every Run call.
	running, started int
	// peers holds the peer subnets the running network was told about.
	peers map[string]bool
}

func (b *recordingBackend) RegisterNetwork(ctx context.Context, cfg *subnet.Config,
	lm backend.LeaseManager) (backend.Network, error) {
	if b.beforeAcquire != nil {
		b.beforeAcquire()
	}
	l, err := lm.AcquireLease(ctx, subnet.LeaseAttrs{PublicIP: b.ext.ExtAddr})
	if err != nil {
		return nil, err
	}
	b.mu.Lock()
	b.registered = append(b.registered, *l)
	b.mu.Unlock()
	return &recordingNetwork{b: b, lease: l}, nil
}

func (b *recordingBackend) state() (registered []subnet.Lease, running, started int,
	peers []string) {
	b.mu.Lock()
	defer b.mu.Unlock()
	for p := range b.peers {
		peers = append(peers, p)
	}
	return append([]subnet.Lease(nil), b.registered...), b.running, b.started, peers
}

type recordingNetwork struct {
	b     *recordingBackend
	lease *subnet.Lease
}

func (n *recordingNetwork) Lease() *subnet.Lease { return n.lease }
func (n *recordingNetwork) MTU() int             { return 1400 }

func (n *recordingNetwork) Run(ctx context.Context, events <-chan []subnet.Event) error {
	if n.b.gate != nil {
		select {
		case <-n.b.gate:
		case <-ctx.Done():
			return nil
		}
	}
	n.b.mu.Lock()
	n.b.running++
	n.b.started++
	n.b.peers = map[string]bool{}
	n.b.mu.Unlock()
	defer func() {
		n.b.mu.Lock()
		n.b.running--
		n.b.mu.Unlock()
	}()
	for {
		select {
		case <-ctx.Done():
			return nil
		case batch := <-events:
			n.b.mu.Lock()
			for _, ev := range batch {
				n.b.peers[ev.Lease.Subnet.String()] = ev.Type == subnet.EventAdded
			}
			n.b.mu.Unlock()
		}
	}
}

// eventually polls cond until it holds or the time is up.
func eventually(t *testing.T, what string, timeout time.Duration, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within %v", what, timeout)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// testLog sends the daemon's log to the test's log while the test runs.
func testLog(t *testing.T) *slog.Logger {
	var mu sync.Mutex
	done := false
	t.Cleanup(func() {
		mu.Lock()
		done = true
		mu.Unlock()
	})
	return slog.New(slog.NewTextHandler(writerFunc(func(p []byte) (int, error) {
		mu.Lock()
		defer mu.Unlock()
		if !done {
			t.Log(strings.TrimSuffix(string(p), "\n"))
		}
		return len(p), nil
	}), &slog.HandlerOptions{Level: slog.LevelDebug}))
}

type writerFunc func([]byte) (int, error)

// freeAddr returns a loopback address with a port that was free a moment ago.
func freeAddr(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

// scrape fetches url and checks that the body holds each of want.
func scrape(t *testing.T, url string, want ...string) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatalf("scraping %s: %v", url, err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	for _, w := range want {
		if !strings.Contains(string(body), w) {
			t.Errorf("%s lacks %q:\n%s", url, w, body)
		}
	}
}

func (f writerFunc) Write(p []byte) (int, error) { return f(p) }

// TestRunFollowsTheLease runs the daemon in the test process with a recording backend:
// it registers, writes subnet.env, feeds peer leases to the network, registers again
// when its subnet is taken by another host, and stops everything when cancelled.
func TestRunFollowsTheLease(t *testing.T) {
	etcd := etcdtest.Start(t)
	const prefix = "/weft/run"
	ctx := context.Background()
	if _, err := etcd.Client.Put(ctx, prefix+"/config",
		`{"Network": "198.19.0.0/16", "Backend": {"Type": "recording"}}`); err != nil {
		t.Fatal(err)
	}

	be := &recordingBackend{}
	envFile := filepath.Join(t.TempDir(), "subnet.env")
	cfg := Config{
		Etcd:        subnet.EtcdOptions{Endpoints: etcd.Endpoints, Prefix: prefix},
		Interface:   InterfaceSpec{Ifaces: []string{"lo"}},
		SubnetFile:  envFile,
		RenewMargin: subnet.DefaultRenewMargin,
		Backends: backend.Registry{"recording": func(p backend.Params) (backend.Backend, error) {
			be.ext = p.Ext
			return be, nil
		}},
		HealthAddr: freeAddr(t),
		Log:        testLog(t),
	}
	metricsURL := "http://" + cfg.HealthAddr + "/metrics"

	runCtx, cancel := context.WithCancel(ctx)
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- Run(runCtx, cfg) }()

	readEnv := func() subnet.Env {
		e, _ := subnet.ReadEnvFile(envFile)
		return e
	}
	eventually(t, "subnet.env written", 20*time.Second, func() bool {
		return readEnv().Subnet.IsValid()
	})
	reg, running, _, _ := be.state()
	first := reg[0]
	if len(reg) != 1 || readEnv().Subnet != first.Subnet || readEnv().MTU != 1400 {
		t.Fatalf("registered %v, subnet.env %+v", reg, readEnv())
	}
	eventually(t, "network running", 5*time.Second, func() bool {
		_, running, _, _ = be.state()
		return running == 1
	})

	// A peer appears.
	if _, err := etcd.Client.Put(ctx, prefix+"/subnets/198.19.200.0-24",
		`{"PublicIP":"198.18.0.200","PublicIPv6":null}`); err != nil {
		t.Fatal(err)
	}
	eventually(t, "peer delivered to the network", 10*time.Second, func() bool {
		_, _, _, peers := be.state()
		return len(peers) == 1 && peers[0] == "198.19.200.0/24"
	})
	scrape(t, metricsURL, "weft_ready 1\n", "weft_peers 1\n",
		`weft_lease_info{subnet="`+first.Subnet.String()+`",public_ip="127.0.0.1",`+
			`backend="recording"} 1`, "weft_lease_subnet_changes_total 0\n")

	// Another host takes this host's key: the manager acquires another subnet and the
	// daemon registers the network for it, rewrites subnet.env and restarts Run.
	if _, err := etcd.Client.Put(ctx, prefix+"/subnets/"+first.Key(),
		`{"PublicIP":"198.18.0.201","PublicIPv6":null}`); err != nil {
		t.Fatal(err)
	}
	eventually(t, "registered again", 20*time.Second, func() bool {
		reg, _, _, _ = be.state()
		return len(reg) == 2
	})
	second := reg[1]
	if second.Subnet == first.Subnet {
		t.Fatalf("registered again with the taken subnet %s", first.Subnet)
	}
	eventually(t, "subnet.env rewritten", 10*time.Second, func() bool {
		return readEnv().Subnet == second.Subnet
	})
	eventually(t, "network running again with both peers", 10*time.Second, func() bool {
		_, running, started, peers := be.state()
		return running == 1 && started == 2 && len(peers) == 2
	})
	select {
	case err := <-done:
		t.Fatalf("Run returned %v after the lease changed", err)
	default:
	}
	scrape(t, metricsURL, "weft_ready 1\n", "weft_peers 2\n",
		`weft_lease_info{subnet="`+second.Subnet.String()+`"`,
		"weft_lease_subnet_changes_total 1\n", "weft_data_plane_restarts_total 0\n")

	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("Run after cancel: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Run did not return within 10s of cancel")
	}
	if _, running, _, _ := be.state(); running != 0 {
		t.Errorf("%d network runs still going after Run returned", running)
	}
	if _, err := os.Stat(envFile); err != nil {
		t.Errorf("subnet.env gone after stop: %v", err)
	}
	resp, err := etcd.Client.Get(ctx, prefix+"/subnets/"+second.Key())
	if err != nil || len(resp.Kvs) != 1 {
		t.Errorf("lease %s not left in etcd after stop (err %v)", second.Key(), err)
	}
}

func TestConfigValidate(t *testing.T) {
	good := Config{
		SubnetFile:  "/run/flannel/subnet.env",
		RenewMargin: time.Hour,
		Backends:    backend.Registry{"x": nil},
		Log:         discard(),
	}
	tests := []struct {
		name    string
		edit    func(*Config)
		wantErr string
	}{
		{name: "good", edit: func(*Config) {}},
		{name: "margin zero", edit: func(c *Config) { c.RenewMargin = 0 },
			wantErr: "-subnet-lease-renew-margin 0s"},
		{name: "margin a day", edit: func(c *Config) { c.RenewMargin = 24 * time.Hour },
			wantErr: "-subnet-lease-renew-margin 24h0m0s"},
		{name: "margin 1439m", edit: func(c *Config) { c.RenewMargin = MaxRenewMargin }},
		{name: "margin not whole minutes",
			edit:    func(c *Config) { c.RenewMargin = 90 * time.Second },
			wantErr: "whole minutes"},
		{name: "no subnet file", edit: func(c *Config) { c.SubnetFile = "" },
			wantErr: "-subnet-file"},
		{name: "no backends", edit: func(c *Config) { c.Backends = nil }, wantErr: "no backends"},
		{name: "no logger", edit: func(c *Config) { c.Log = nil }, wantErr: "no logger"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := good
			tt.edit(&c)
			err := c.validate()
			if tt.wantErr == "" {
				if err != nil {
					t.Errorf("validate: %v", err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Errorf("validate = %v, want an error containing %q", err, tt.wantErr)
			}
		})
	}
}
