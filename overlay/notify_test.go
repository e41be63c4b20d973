package overlay

import (
	"context"
	"encoding/json"
	"net"
	"net/http"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/weftnet/weft/backend"
	"github.com/weftnet/weft/internal/etcdtest"
	"github.com/weftnet/weft/subnet"
)

// notifySocket stands in for systemd's notify socket and keeps every message sent to it.
type notifySocket struct {
	conn *net.UnixConn

	mu   sync.Mutex
	msgs []string
}

// listenNotify opens a notify socket and points NOTIFY_SOCKET at it for the test, with
// a watchdog of WATCHDOG_USEC usec.
func listenNotify(t *testing.T, watchdogUsec string) *notifySocket {
	t.Helper()
	path := filepath.Join(t.TempDir(), "notify.sock")
	conn, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: path, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	t.Setenv("NOTIFY_SOCKET", path)
	t.Setenv("WATCHDOG_USEC", watchdogUsec)
	t.Setenv("WATCHDOG_PID", "")
	s := &notifySocket{conn: conn}
	var wg sync.WaitGroup
	wg.Go(func() {
		buf := make([]byte, 4096)
		for {
			n, err := conn.Read(buf)
			if err != nil {
				return
			}
			s.mu.Lock()
			s.msgs = append(s.msgs, string(buf[:n]))
			s.mu.Unlock()
		}
	})
	t.Cleanup(func() {
		conn.Close()
		wg.Wait()
	})
	return s
}

// messages returns the messages that contain part, in order.
func (s *notifySocket) messages(part string) []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []string
	for _, m := range s.msgs {
		if strings.Contains(m, part) {
			out = append(out, m)
		}
	}
	return out
}

func getStatus(t *testing.T, addr string) Status {
	t.Helper()
	resp, err := http.Get("http://" + addr + "/status")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if ct := resp.Header.Get("Content-Type"); resp.StatusCode != 200 || ct != "application/json" {
		t.Fatalf("/status: %d %s", resp.StatusCode, ct)
	}
	var s Status
	if err := json.NewDecoder(resp.Body).Decode(&s); err != nil {
		t.Fatalf("decoding /status: %v", err)
	}
	return s
}

// TestRunNotifiesSystemd runs the daemon with a notify socket: it reports its stages as
// STATUS=, sends READY=1 only once the backend has taken the peers (or there are none),
// feeds the watchdog, and says STOPPING=1 when it stops. /status follows along.
func TestRunNotifiesSystemd(t *testing.T) {
	tests := []struct {
		name  string
		peers bool
	}{
		{name: "with a peer", peers: true},
		{name: "alone"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			sock := listenNotify(t, "200000")
			etcd := etcdtest.Start(t)
			const prefix = "/weft/notify"
			ctx := context.Background()
			if _, err := etcd.Client.Put(ctx, prefix+"/config",
				`{"Network": "198.19.0.0/16", "Backend": {"Type": "recording"}}`); err != nil {
				t.Fatal(err)
			}
			if tt.peers {
				if _, err := etcd.Client.Put(ctx, prefix+"/subnets/198.19.200.0-24",
					`{"PublicIP":"198.18.0.200","PublicIPv6":null}`); err != nil {
					t.Fatal(err)
				}
			}

			be := &recordingBackend{gate: make(chan struct{})}
			envFile := filepath.Join(t.TempDir(), "subnet.env")
			cfg := Config{
				Etcd:        subnet.EtcdOptions{Endpoints: etcd.Endpoints, Prefix: prefix},
				Interface:   InterfaceSpec{Ifaces: []string{"lo"}},
				SubnetFile:  envFile,
				RenewMargin: subnet.DefaultRenewMargin,
				Backends: backend.Registry{
					"recording": func(p backend.Params) (backend.Backend, error) {
						be.ext = p.Ext
						return be, nil
					}},
				HealthAddr: freeAddr(t),
				Log:        testLog(t),
			}
			runCtx, cancel := context.WithCancel(ctx)
			defer cancel()
			done := make(chan error, 1)
			go func() { done <- Run(runCtx, cfg) }()

			eventually(t, "subnet.env written", 20*time.Second, func() bool {
				e, _ := subnet.ReadEnvFile(envFile)
				return e.Subnet.IsValid()
			})
			if tt.peers {
				// The backend has not taken the peers yet: not ready for systemd.
				time.Sleep(time.Second)
				if m := sock.messages("READY=1"); len(m) > 0 {
					t.Fatalf("READY=1 sent before the backend took the peers: %q", m)
				}
				st := getStatus(t, cfg.HealthAddr)
				if !strings.HasPrefix(st.State, "syncing peers") || !st.Ready ||
					!st.PeersSynced.IsZero() {
					t.Errorf("/status before the sync: %+v", st)
				}
				close(be.gate)
			}
			eventually(t, "READY=1", 10*time.Second, func() bool {
				return len(sock.messages("READY=1")) == 1
			})
			if tt.peers {
				_, _, _, peers := be.state()
				if len(peers) != 1 {
					t.Errorf("backend has %d peers when READY=1 was sent", len(peers))
				}
			}
			for _, want := range []string{"STATUS=waiting for the network config at " +
				prefix + "/config", "STATUS=registering the network", "STATUS=running: lease"} {
				if len(sock.messages(want)) == 0 {
					t.Errorf("no %q among %q", want, sock.messages(""))
				}
			}

			st := getStatus(t, cfg.HealthAddr)
			reg, _, _, _ := be.state()
			if !strings.HasPrefix(st.State, "running: lease "+reg[0].Key()) ||
				st.PeersSynced.IsZero() || st.Lease == nil || st.Lease.Subnet != reg[0].Subnet ||
				st.Backend != "recording" || st.Network.String() != "198.19.0.0/16" ||
				st.Lease.Expiration.Before(time.Now().Add(23*time.Hour)) {
				t.Errorf("/status after the sync: %+v lease %+v", st, st.Lease)
			}
			wantPeers := 0
			if tt.peers {
				wantPeers = 1
			}
			if st.Peers != wantPeers {
				t.Errorf("/status has %d peers, want %d", st.Peers, wantPeers)
			}

			before := len(sock.messages("WATCHDOG=1"))
			time.Sleep(time.Second)
			if n := len(sock.messages("WATCHDOG=1")) - before; n < 5 || n > 12 {
				t.Errorf("%d WATCHDOG=1 in a second with WATCHDOG_USEC=200000, want about 10",
					n)
			}

			cancel()
			if err := <-done; err != nil {
				t.Errorf("Run: %v", err)
			}
			eventually(t, "STOPPING=1", 5*time.Second, func() bool {
				return len(sock.messages("STOPPING=1")) == 1
			})
		})
	}
}

func TestAlive(t *testing.T) {
	const period = time.Second
	tests := []struct {
		name    string
		looping bool
		beatAgo time.Duration
		want    bool
	}{
		{name: "starting", looping: false, beatAgo: time.Hour, want: true},
		{name: "loop turned lately", looping: true, beatAgo: period, want: true},
		{name: "loop stuck", looping: true, beatAgo: 3 * period, want: false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var d daemonState
			d.looping.Store(tt.looping)
			d.beat.Store(time.Now().Add(-tt.beatAgo).UnixNano())
			if got := d.alive(period); got != tt.want {
				t.Errorf("alive = %v, want %v", got, tt.want)
			}
		})
	}
}
