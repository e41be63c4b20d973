package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/netip"
	"path"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/weftnet/weft/internal/metrics"
	"github.com/weftnet/weft/internal/netlab"
	"github.com/weftnet/weft/overlay"
	"github.com/weftnet/weft/subnet"
)

// faultOptions returns options for a fault test's lab, called wt-op-<suffix>.
func faultOptions(t *testing.T, suffix string) Options {
	t.Helper()
	o := labOptions(t, suffix)
	o.Name = "wt-op-" + suffix
	return o
}

// hostMetrics scrapes host i's /metrics.
func hostMetrics(t *testing.T, l *Lab, i int) []metrics.Sample {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	body, err := l.HealthGet(ctx, i, "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	samples, err := metrics.Parse(bytes.NewReader(body))
	if err != nil {
		t.Fatalf("/metrics of h%d: %v", i, err)
	}
	return samples
}

// metric returns one sample's value from host i's /metrics, 0 when it is absent.
func metric(t *testing.T, l *Lab, i int, name string, labels ...string) float64 {
	t.Helper()
	v, _ := metrics.Find(hostMetrics(t, l, i), name, labels...)
	return v
}

// hostStatus reads host i's /status.
func hostStatus(t *testing.T, l *Lab, i int) overlay.Status {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	body, err := l.HealthGet(ctx, i, "/status")
	if err != nil {
		t.Fatal(err)
	}
	var s overlay.Status
	if err := json.Unmarshal(body, &s); err != nil {
		t.Fatalf("/status of h%d: %v", i, err)
	}
	return s
}

// waitFor polls cond every 50 ms until it holds, and fails the test after timeout.
func waitFor(t *testing.T, what string, timeout time.Duration, cond func() bool) time.Duration {
	t.Helper()
	start := time.Now()
	for !cond() {
		if time.Since(start) > timeout {
			t.Fatalf("%s: not within %v", what, timeout)
		}
		time.Sleep(50 * time.Millisecond)
	}
	return time.Since(start)
}

// daemonsAlive fails the test for each host whose daemon has exited.
func daemonsAlive(t testing.TB, l *Lab) {
	t.Helper()
	for _, h := range l.State().Hosts {
		if !h.Daemon.alive() {
			t.Errorf("the daemon of %s exited; its log ends:\n%s", h.Name(),
				tailFile(h.Daemon.Log, 20))
		}
	}
}

// steadyPings pings between every ordered pair of pods on different hosts, 20 requests
// a second each, until the returned stop is called; stop returns the results.
func steadyPings(t *testing.T, pods []Endpoint) (stop func() []netlab.PingResult) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	var pairs [][2]Endpoint
	for _, a := range pods {
		for _, b := range pods {
			if a.Name[:strings.Index(a.Name, "-")] != b.Name[:strings.Index(b.Name, "-")] {
				pairs = append(pairs, [2]Endpoint{a, b})
			}
		}
	}
	results := make([]netlab.PingResult, len(pairs))
	var wg sync.WaitGroup
	for k, pr := range pairs {
		p, err := netlab.NewPinger(pr[0].NS)
		if err != nil {
			cancel()
			t.Fatal(err)
		}
		wg.Go(func() {
			defer p.Close()
			results[k] = p.Ping(ctx, pr[1].Addr, netlab.PingOptions{
				Interval: 50 * time.Millisecond,
				Timeout:  time.Second,
			})
			results[k].Src = pr[0].Name
		})
	}
	return func() []netlab.PingResult {
		cancel()
		wg.Wait()
		return results
	}
}

// checkNoLoss fails the test for each run of pings that lost a request or sent fewer
// than min.
func checkNoLoss(t *testing.T, results []netlab.PingResult, min int) {
	t.Helper()
	for _, r := range results {
		if r.Sent < min || !r.OK() {
			t.Errorf("%s -> %s: %d sent, %d answered, lost %v: %v", r.Src, r.Dst, r.Sent,
				r.Received, r.Lost, r.Err)
		}
	}
}

// putLease writes a lease key into the lab's etcd, without an etcd lease.
func putLease(t *testing.T, l *Lab, key, value string) {
	t.Helper()
	c, err := l.Client()
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	k := path.Join(l.State().EtcdPrefix, "subnets", key)
	if _, err := c.Put(ctx, k, value); err != nil {
		t.Fatalf("writing %s: %v", k, err)
	}
}

// deleteKey deletes a key below the lab's subnets prefix.
func deleteKey(t *testing.T, l *Lab, key string) {
	t.Helper()
	c, err := l.Client()
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	k := path.Join(l.State().EtcdPrefix, "subnets", key)
	if _, err := c.Delete(ctx, k); err != nil {
		t.Fatalf("deleting %s: %v", k, err)
	}
}

// fakePeer is a VXLAN lease of a host that does not exist; its routes show that a
// daemon follows the leases.
var fakePeer = subnet.Lease{
	Subnet: mustPrefix("198.19.250.0/24"),
	Attrs: subnet.LeaseAttrs{
		PublicIP:    mustAddr("198.18.0.250"),
		BackendType: "vxlan",
		BackendData: json.RawMessage(fmt.Sprintf(`{"VNI":%d,"VtepMAC":"6a:1e:33:10:00:fa"}`,
			testVNI)),
	},
}

func fakePeerValue() string {
	b, err := json.Marshal(fakePeer.Attrs)
	if err != nil {
		panic(err)
	}
	return string(b)
}

// hasRoute reports whether host i has a route to lease's subnet.
func hasRoute(t *testing.T, l *Lab, i int, lease subnet.Lease) bool {
	t.Helper()
	h, err := netlab.NewHandle(HostNS(l.Name(), i))
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close()
	return len(routesTo(t, h, lease)) > 0
}

func mustPrefix(s string) netip.Prefix { return netip.MustParsePrefix(s) }

func mustAddr(s string) netip.Addr { return netip.MustParseAddr(s) }
