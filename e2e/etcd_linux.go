package e2e

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"net/url"
	"path/filepath"
	"runtime"
	"sync"
	"time"

	"github.com/vishvananda/netns"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.etcd.io/etcd/server/v3/embed"
	"go.uber.org/zap"
	"google.golang.org/grpc"

	"github.com/weftnet/weft/internal/netlab"
)

// etcdConfig returns the configuration of the lab's etcd: one member, data in the lab's
// directory, client and peer listeners on the wan bridge's address, and no gRPC gateway
// (it would dial the client address from outside the wan namespace).
func etcdConfig(stateDir, name string) *embed.Config {
	client := url.URL{Scheme: "http", Host: net.JoinHostPort(wanAddr.String(), "2379")}
	peer := url.URL{Scheme: "http", Host: net.JoinHostPort(wanAddr.String(), "2380")}

	cfg := embed.NewConfig()
	cfg.Name = "weft-lab-" + name
	cfg.Dir = filepath.Join(labDir(stateDir, name), "etcd")
	cfg.ListenClientUrls = []url.URL{client}
	cfg.AdvertiseClientUrls = []url.URL{client}
	cfg.ListenPeerUrls = []url.URL{peer}
	cfg.AdvertisePeerUrls = []url.URL{peer}
	cfg.InitialCluster = cfg.Name + "=" + peer.String()
	cfg.EnableGRPCGateway = false
	// The data lives on /run, a tmpfs, until the lab goes: syncing buys nothing.
	cfg.UnsafeNoFsync = true
	cfg.Logger = "zap"
	cfg.LogLevel = "error"
	cfg.LogOutputs = []string{"stderr"}
	return cfg
}

// ServeEtcd runs the etcd of the lab called name until ctx is done: the process behind
// `weftctl lab etcd`. Its listeners are opened from a thread inside the lab's wan
// namespace, so they belong to it while the process itself stays in the namespace it was
// started in. That thread stays in the wan namespace until etcd stops, which lets Down
// find the process by namespace even when the lab's state is lost. The data directory is
// below the lab's state directory.
func ServeEtcd(ctx context.Context, stateDir, name string, log *slog.Logger) error {
	if err := CheckName(name); err != nil {
		return err
	}
	ns, err := netlab.Open(WanNS(name))
	if err != nil {
		return err
	}
	defer ns.Close()

	cfg := etcdConfig(stateDir, name)
	started := make(chan error, 1)
	leave := make(chan struct{})
	var wg sync.WaitGroup
	defer wg.Wait()
	defer close(leave)
	var e *embed.Etcd
	wg.Add(1)
	go func() {
		defer wg.Done()
		// Never unlocked: the thread ends with this goroutine rather than going back to
		// the scheduler inside the wan namespace.
		runtime.LockOSThread()
		if err := netns.Set(ns); err != nil {
			started <- fmt.Errorf("entering network namespace %s: %w", WanNS(name), err)
			return
		}
		var err error
		e, err = embed.StartEtcd(cfg)
		started <- err
		<-leave
	}()
	if err := <-started; err != nil {
		return fmt.Errorf("starting etcd of lab %s: %w", name, err)
	}
	defer e.Close()

	select {
	case <-e.Server.ReadyNotify():
		log.Info("etcd ready", "lab", name, "endpoint", EtcdEndpoint(), "dir", cfg.Dir)
	case <-time.After(60 * time.Second):
		return fmt.Errorf("etcd of lab %s: not ready after 60s", name)
	case <-ctx.Done():
		return nil
	}

	select {
	case err := <-e.Err():
		return fmt.Errorf("etcd of lab %s: %w", name, err)
	case <-ctx.Done():
		log.Info("etcd stopping", "lab", name)
		return nil
	}
}

// newEtcdClient returns a client of the etcd of the lab called name. Its connections are
// dialled from inside the lab's wan namespace, the only place the etcd address exists
// besides the hosts.
func newEtcdClient(name string) (*clientv3.Client, error) {
	dial := func(ctx context.Context, addr string) (net.Conn, error) {
		return netlab.Dial(ctx, WanNS(name), "tcp", addr)
	}
	c, err := clientv3.New(clientv3.Config{
		Endpoints:   []string{EtcdEndpoint()},
		DialTimeout: 5 * time.Second,
		DialOptions: []grpc.DialOption{grpc.WithContextDialer(dial)},
		Logger:      zap.NewNop(),
	})
	if err != nil {
		return nil, fmt.Errorf("connecting to etcd of lab %s: %w", name, err)
	}
	return c, nil
}
