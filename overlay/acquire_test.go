package overlay

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"path/filepath"
	"testing"
	"time"

	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	"go.etcd.io/etcd/server/v3/embed"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/weftnet/weft/backend"
	"github.com/weftnet/weft/internal/etcdtest"
	"github.com/weftnet/weft/subnet"
)

func TestTransientEtcdError(t *testing.T) {
	tests := []struct {
		name string
		err  error
		want bool
	}{
		{name: "attempt timed out",
			err: fmt.Errorf("listing leases: %w", context.DeadlineExceeded), want: true},
		{name: "no leader", err: fmt.Errorf("writing lease: %w", rpctypes.ErrNoLeader),
			want: true},
		{name: "request timed out", err: rpctypes.ErrTimeout, want: true},
		{name: "leader changed", err: rpctypes.ErrLeaderChanged, want: true},
		{name: "too many requests", err: rpctypes.ErrTooManyRequests, want: true},
		{name: "connection broke",
			err:  fmt.Errorf("granting: %w", status.Error(codes.Unavailable, "transport closing")),
			want: true},
		{name: "grpc deadline", err: status.Error(codes.DeadlineExceeded, "deadline"),
			want: true},
		{name: "out of subnets",
			err: fmt.Errorf("acquiring: %w", subnet.ErrOutOfSubnets)},
		{name: "wrong password", err: rpctypes.ErrAuthFailed},
		{name: "permission denied", err: rpctypes.ErrPermissionDenied},
		{name: "cancelled", err: context.Canceled},
		{name: "plain", err: errors.New("lease attributes lack a PublicIP")},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := transientEtcdError(tt.err); got != tt.want {
				t.Errorf("transientEtcdError(%v) = %v, want %v", tt.err, got, tt.want)
			}
		})
	}
}

// restartableEtcd is an etcd member that a test can stop and start again on the same
// addresses and data.
type restartableEtcd struct {
	t   *testing.T
	cfg *embed.Config
	e   *embed.Etcd
}

func startRestartableEtcd(t *testing.T) *restartableEtcd {
	t.Helper()
	client := &url.URL{Scheme: "http", Host: freeAddr(t)}
	peer := &url.URL{Scheme: "http", Host: freeAddr(t)}
	r := &restartableEtcd{
		t:   t,
		cfg: etcdtest.Config(filepath.Join(t.TempDir(), "etcd"), "weft-restart", client, peer),
	}
	r.start()
	t.Cleanup(r.stop)
	return r
}

func (r *restartableEtcd) endpoint() string { return r.cfg.ListenClientUrls[0].String() }

func (r *restartableEtcd) start() {
	r.t.Helper()
	e, err := embed.StartEtcd(r.cfg)
	if err != nil {
		r.t.Fatalf("starting etcd: %v", err)
	}
	select {
	case <-e.Server.ReadyNotify():
	case <-time.After(30 * time.Second):
		e.Close()
		r.t.Fatal("etcd not ready within 30s")
	}
	r.e = e
}

func (r *restartableEtcd) stop() {
	if r.e != nil {
		r.e.Close()
		r.e = nil
	}
}

// TestRunWaitsForEtcdDuringAcquisition stops etcd after the daemon has read the network
// config and before it acquires its lease: the daemon logs that etcd does not answer,
// naming it, keeps trying, and acquires the lease once etcd is back.
func TestRunWaitsForEtcdDuringAcquisition(t *testing.T) {
	etcd := startRestartableEtcd(t)
	const prefix = "/weft/acquire"
	cli, err := subnet.NewEtcdClient(subnet.EtcdOptions{Endpoints: []string{etcd.endpoint()}})
	if err != nil {
		t.Fatal(err)
	}
	defer cli.Close()
	ctx := context.Background()
	if _, err := cli.Put(ctx, prefix+"/config",
		`{"Network": "198.19.0.0/16", "Backend": {"Type": "recording"}}`); err != nil {
		t.Fatal(err)
	}

	stopped := make(chan struct{})
	be := &recordingBackend{}
	be.beforeAcquire = func() {
		select {
		case <-stopped:
		default:
			etcd.stop()
			close(stopped)
		}
	}
	log, logs := captureLog(t)
	envFile := filepath.Join(t.TempDir(), "subnet.env")
	cfg := Config{
		Etcd:        subnet.EtcdOptions{Endpoints: []string{etcd.endpoint()}, Prefix: prefix},
		Interface:   InterfaceSpec{Ifaces: []string{"lo"}},
		SubnetFile:  envFile,
		RenewMargin: subnet.DefaultRenewMargin,
		Backends: backend.Registry{"recording": func(p backend.Params) (backend.Backend, error) {
			be.ext = p.Ext
			return be, nil
		}},
		Log:            log,
		acquireTimeout: 500 * time.Millisecond,
	}
	runCtx, cancel := context.WithCancel(ctx)
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- Run(runCtx, cfg) }()

	<-stopped
	eventually(t, "a warning that etcd does not answer", 20*time.Second, func() bool {
		return len(logs.lines("cannot acquire a lease", etcd.endpoint())) > 0
	})
	// Several attempts fail while etcd is away; none ends the daemon.
	time.Sleep(2 * time.Second)
	select {
	case err := <-done:
		t.Fatalf("Run returned while etcd was away: %v", err)
	default:
	}
	if n := len(logs.lines("level=WARN", "cannot acquire a lease")); n != 1 {
		t.Errorf("%d warnings about the unreachable etcd, want 1", n)
	}

	etcd.start()
	eventually(t, "subnet.env written after etcd returned", 30*time.Second, func() bool {
		e, _ := subnet.ReadEnvFile(envFile)
		return e.Subnet.IsValid()
	})
	if len(logs.lines("etcd answers again; lease acquired")) != 1 {
		t.Error("no log line says that etcd answers again")
	}

	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("Run after cancel: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Run did not return within 10s of cancel")
	}
}

// TestRunExitsWhenOutOfSubnets checks that an answer from etcd is not retried: a network
// with room for one lease, already taken, ends Run with an error naming it.
func TestRunExitsWhenOutOfSubnets(t *testing.T) {
	etcd := etcdtest.Start(t)
	const prefix = "/weft/full"
	ctx := context.Background()
	if _, err := etcd.Client.Put(ctx, prefix+"/config", `{"Network": "198.19.0.0/22", `+
		`"SubnetLen": 24, "SubnetMin": "198.19.1.0", "SubnetMax": "198.19.1.0", `+
		`"Backend": {"Type": "recording"}}`); err != nil {
		t.Fatal(err)
	}
	if _, err := etcd.Client.Put(ctx, prefix+"/subnets/198.19.1.0-24",
		`{"PublicIP":"198.18.0.99","PublicIPv6":null}`); err != nil {
		t.Fatal(err)
	}
	be := &recordingBackend{}
	cfg := Config{
		Etcd:        subnet.EtcdOptions{Endpoints: etcd.Endpoints, Prefix: prefix},
		Interface:   InterfaceSpec{Ifaces: []string{"lo"}},
		SubnetFile:  filepath.Join(t.TempDir(), "subnet.env"),
		RenewMargin: subnet.DefaultRenewMargin,
		Backends: backend.Registry{"recording": func(p backend.Params) (backend.Backend, error) {
			be.ext = p.Ext
			return be, nil
		}},
		Log:            testLog(t),
		acquireTimeout: 500 * time.Millisecond,
	}
	rctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	err := Run(rctx, cfg)
	if !errors.Is(err, subnet.ErrOutOfSubnets) {
		t.Fatalf("Run = %v, want an error wrapping ErrOutOfSubnets", err)
	}
}
